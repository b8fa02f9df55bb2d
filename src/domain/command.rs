//! A channel's request in the switch's own terms: what every door (IPG's Kafka envelope and
//! `POST /api/v2/ch/<type>` today, SNAP next) builds once from its wire format and hands to
//! `switch::Switch::handle`. Nothing here knows a wire format.
//!
//! Fields a door could not read (a missing or mistyped field) are refused at the door. A
//! VA or an amount that was read but breaks its rule is kept here as the refusal it is
//! ([`Checked`]): the switch answers it in its turn, because the order of refusals is part
//! of the contract (docs/protocol.md, "Order of checks": the channel's rate limit, then the
//! VA's shape, its prefix and its institution's rate limit, and only then the amount; a
//! reversal reads its amount first, since it may carry no VA).

use super::{Amount, AmountError, VaError, VaNumber};

/// A value as the door read it, or the rule it breaks, answered when the switch reaches it.
pub type Checked<T, E> = Result<T, E>;

/// One request of an authenticated channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// The channel's code (`[[channels]] code`), already authenticated by the door.
    pub channel: String,
    pub action: Action,
}

/// What the channel asks (IPG's Payment Channel API types; SNAP services 24, 25, 26).
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Inquiry(Inquiry),
    Pay(Pay),
    Reverse(Reverse),
    CheckStatus(CheckStatus),
}

/// Ask what a VA's bill is (IPG `inquiry`; SNAP 24).
#[derive(Clone, Debug, PartialEq)]
pub struct Inquiry {
    pub va: Checked<VaNumber, VaError>,
    /// The channel's reference for this inquiry (IPG `ref_id`).
    pub ref_id: String,
    pub terminal_id: Option<String>,
    /// When the channel asked, as it sent it (IPG: `Y-m-d H:i:s`, Asia/Jakarta).
    pub transaction_date: Option<String>,
}

/// Pay a VA's bill (IPG `payment`; SNAP 25).
#[derive(Clone, Debug, PartialEq)]
pub struct Pay {
    pub va: Checked<VaNumber, VaError>,
    /// The channel's reference of the payment: one reference is one transaction
    /// (decision 8). IPG `ref_id`.
    pub ref_id: String,
    /// Rupiah, a whole positive number.
    pub amount: Checked<Amount, AmountError>,
    pub terminal_id: Option<String>,
    /// When the channel took the payment, as it sent it (IPG: `Y-m-d H:i:s`, Asia/Jakarta).
    pub transaction_date: Option<String>,
    pub customer_name: Option<String>,
}

/// Take a payment back (IPG `reversal`).
#[derive(Clone, Debug, PartialEq)]
pub struct Reverse {
    /// The reference the payment was made under (IPG `payment_ref`).
    pub payment_ref: String,
    /// Rupiah: must equal the payment's amount.
    pub amount: Checked<Amount, AmountError>,
    /// The bill's hash, checked against the payment's bill when given (hosted only).
    pub bill_id: Option<String>,
    /// The VA, when the channel names it; otherwise the payment's binding says.
    pub va: Option<Checked<VaNumber, VaError>>,
}

/// Ask how a payment stands (IPG `check_status`; SNAP 26).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckStatus {
    pub va: Checked<VaNumber, VaError>,
    /// The reference the payment was made under (IPG `payment_ref`).
    pub payment_ref: String,
    /// The payment's day as the channel sent it (IPG `date`, `YYYY-mm-dd`); the payment is
    /// found by its reference, not by this.
    pub date: Option<String>,
}

impl Action {
    /// The VA the request names, when it names one and it has a VA's shape.
    pub fn va(&self) -> Option<&VaNumber> {
        match self {
            Action::Inquiry(Inquiry { va, .. })
            | Action::Pay(Pay { va, .. })
            | Action::CheckStatus(CheckStatus { va, .. }) => va.as_ref().ok(),
            Action::Reverse(Reverse { va, .. }) => va.as_ref().and_then(|v| v.as_ref().ok()),
        }
    }

    /// Whether the request counts against rate limits: money going back never does.
    pub fn is_limited(&self) -> bool {
        !matches!(self, Action::Reverse(_))
    }
}
