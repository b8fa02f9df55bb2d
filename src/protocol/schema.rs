//! The shapes of the Kafka messages the switch reads and writes, as Rust types for their
//! JSON Schema (the AsyncAPI contract, docs/asyncapi.yaml, `ipg-switch contract
//! asyncapi`). The switch reads a channel request field by field
//! ([`super::channel::Envelope::request`], so that every broken input is named and
//! answered); [`ChannelRequestMessage`] states the same fields and rules for a bank's
//! developer, and `tests/contracts.rs` holds it to the parser: every example in
//! docs/protocol.md is valid for both.

use schemars::JsonSchema;
use serde::Serialize;

/// A channel request on `topics.request` (docs/protocol.md "Requests"). Header
/// `signature`: lowercase hex HMAC-SHA256 of the exact value bytes, keyed with the
/// channel's `api_key`. Key: the 16-digit VA number when the body has one.
#[derive(Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChannelRequestMessage {
    /// IPG Payment Channel Inquiry.
    Inquiry {
        channel: ChannelCode,
        request_id: RequestId,
        body: InquiryBody,
    },
    /// IPG Payment Channel Payment.
    Payment {
        channel: ChannelCode,
        request_id: RequestId,
        body: PaymentBody,
    },
    /// IPG Payment Channel Reversal.
    Reversal {
        channel: ChannelCode,
        request_id: RequestId,
        body: ReversalBody,
    },
    /// IPG Payment Channel Check Status.
    CheckStatus {
        channel: ChannelCode,
        request_id: RequestId,
        body: CheckStatusBody,
    },
}

/// A configured channel's code (`[[channels]] code`).
#[derive(Serialize, JsonSchema)]
pub struct ChannelCode(#[schemars(length(min = 1, max = 64))] String);

/// 1-64 printable ASCII characters without spaces; echoed in the answer.
#[derive(Serialize, JsonSchema)]
pub struct RequestId(#[schemars(regex(pattern = r"^[!-~]{1,64}$"))] String);

/// A 16-digit virtual account: the 6-digit prefix (BCN) and 10 digits.
#[derive(Serialize, JsonSchema)]
pub struct VaNumber(#[schemars(regex(pattern = r"^[0-9]{16}$"))] String);

/// A new reference (`ref_id`): 1-64 printable ASCII characters without spaces, not
/// starting with `=`, `+`, `-` or `@` (a spreadsheet formula, decision 11).
#[derive(Serialize, JsonSchema)]
pub struct NewReference(#[schemars(regex(pattern = r"^[!-*,.-<>?A-~][!-~]{0,63}$"))] String);

/// A reference that looks a payment up (`payment_ref`): 1-64 printable ASCII characters
/// without spaces.
#[derive(Serialize, JsonSchema)]
pub struct Reference(#[schemars(regex(pattern = r"^[!-~]{1,64}$"))] String);

/// `Y-m-d H:i:s`, e.g. `2024-12-30 23:18:01` (a day the calendar lacks, `2026-02-30`,
/// fits the pattern and is refused by the switch, `body.transaction_date`).
#[derive(Serialize, JsonSchema)]
pub struct TransactionDate(
    #[schemars(regex(
        pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]) ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$"
    ))]
    String,
);

/// Rupiah, whole and positive: a JSON string of digits (as IPG documents) or a number.
#[derive(Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Amount {
    Text(#[schemars(regex(pattern = r"^[0-9]{1,19}$"))] String),
    Number(#[schemars(range(min = 1))] u64),
}

/// `body` of an inquiry.
#[derive(Serialize, JsonSchema)]
pub struct InquiryBody {
    pub va_number: VaNumber,
    pub ref_id: NewReference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub terminal_id: Option<String>,
    pub transaction_date: TransactionDate,
}

/// `body` of a payment.
#[derive(Serialize, JsonSchema)]
pub struct PaymentBody {
    pub va_number: VaNumber,
    pub ref_id: NewReference,
    pub amount: Amount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub terminal_id: Option<String>,
    pub transaction_date: TransactionDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub customer_name: Option<String>,
}

/// `body` of a reversal: `payment_ref` is the payment's `ref_id`; `va_number` and
/// `bill_id` (the bill hash) are optional cross-checks.
#[derive(Serialize, JsonSchema)]
pub struct ReversalBody {
    pub payment_ref: Reference,
    pub amount: Amount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub bill_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "VaNumber")]
    pub va_number: Option<VaNumber>,
}

/// `body` of a check status: the VA as one `va_number`, or as `prefix` +
/// `virtual_account` (the Passive API's shape); one of the two is required.
#[derive(Serialize, JsonSchema)]
#[schemars(extend("anyOf" = [{"required": ["va_number"]}, {"required": ["prefix", "virtual_account"]}]))]
pub struct CheckStatusBody {
    pub payment_ref: Reference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "VaNumber")]
    pub va_number: Option<VaNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{6}$"))]
    #[schemars(with = "String")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{10}$"))]
    #[schemars(with = "String")]
    pub virtual_account: Option<String>,
    /// `YYYY-mm-dd`, a day of the calendar (RFC 3339 full-date).
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"), extend("format" = "date"))]
    pub date: String,
}

/// One resolution step of a payment in doubt at a passive institution, on
/// `topics.passive_events` (docs/protocol.md "Passive institutions"); key
/// `<channel>|<reference>`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct PassiveAuditEvent {
    /// A new UUID per step.
    pub id: String,
    /// When the step was taken (ISO 8601, the switch's offset).
    pub at: String,
    /// The step's name (e.g. `check_status`, `reversal`, `gave_up`).
    pub step: String,
    /// Its outcome: an rc, or a failure label.
    pub outcome: String,
    /// For people.
    pub detail: String,
    pub institution: String,
    pub channel: String,
    pub reference: String,
    pub va_number: String,
    /// Rupiah.
    pub amount: u64,
    /// The forwarded payment's state after the step.
    pub state: String,
    /// Why the payment went in doubt or is being reversed (a bounded label).
    pub reason: Option<String>,
    /// How it was resolved: `confirmed`, `denied`, `window_expired`, `voided`,
    /// `channel_reversal`.
    pub resolution: Option<String>,
    /// Calls the resolver made in the current state.
    pub attempts: u32,
}
