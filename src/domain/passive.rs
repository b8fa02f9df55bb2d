//! The switch's record of a payment forwarded to a passive institution: what the channel
//! asked, what it was answered, and where the payment stands. Check-status and reversal
//! from the channel read it, the resolver drives it, reconciliation lists it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::Amount;
use crate::domain::Rc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassiveState {
    /// The call is under way (the VA is locked). Found so by anyone else, the call was
    /// interrupted: the payment is in doubt.
    Forwarding,
    /// The institution confirmed it (at once, or when asked later).
    Paid,
    /// The institution refused it, or it never reached the institution.
    Refused,
    /// Its outcome is unknown; the switch asks the institution (check-status).
    InDoubt,
    /// It must be undone; the switch sends the reversal until the institution acknowledges.
    Reversing,
    /// Undone (or it never took effect at the institution).
    Reversed,
}

/// `PassivePayment::reason` of a payment refused before anything was sent to the
/// institution (refused connection, breaker open, no call slot): a repeat is forwarded anew.
pub const NOT_SENT: &str = "not_sent";

impl PassiveState {
    pub fn as_str(self) -> &'static str {
        match self {
            PassiveState::Forwarding => "forwarding",
            PassiveState::Paid => "paid",
            PassiveState::Refused => "refused",
            PassiveState::InDoubt => "in_doubt",
            PassiveState::Reversing => "reversing",
            PassiveState::Reversed => "reversed",
        }
    }
}

/// The answer the channel got to the payment, replayed to a repeated request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredAnswer {
    pub rc: Rc,
    pub message: String,
    pub timestamp: String,
    #[serde(default)]
    pub data: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PassivePayment {
    pub institution: String,
    pub channel: String,
    pub reference: String,
    pub va_number: String,
    pub amount: Amount,
    pub terminal: String,
    #[serde(default)]
    pub transaction_date: Option<String>,
    #[serde(default)]
    pub customer_name: Option<String>,
    pub state: PassiveState,
    /// What the channel was answered (absent while forwarding).
    #[serde(default)]
    pub answer: Option<StoredAnswer>,
    /// The institution's data from its confirming answer.
    #[serde(default)]
    pub institution_data: Value,
    /// Why the payment went in doubt or is being reversed (bounded label).
    #[serde(default)]
    pub reason: Option<String>,
    /// How it was resolved: confirmed, denied, window_expired, voided, channel_reversal.
    #[serde(default)]
    pub resolution: Option<String>,
    /// Calls made by the resolver in the current state.
    #[serde(default)]
    pub attempts: u32,
    /// End of the check-status window (ms since the epoch).
    #[serde(default)]
    pub deadline_ms: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    /// The record's revision in Redis (compare-and-set); not stored in the document.
    #[serde(skip)]
    pub rev: String,
}

impl PassivePayment {
    /// A payment about to be forwarded (state `forwarding`), stamped `at`: the channel's
    /// `reference`, `va_number` and `amount` for `institution`; optional fields empty,
    /// `terminal` `other`.
    pub fn forwarding(
        institution: &str,
        channel: &str,
        reference: &str,
        va_number: &str,
        amount: Amount,
        at: &str,
    ) -> PassivePayment {
        PassivePayment {
            institution: institution.to_owned(),
            channel: channel.to_owned(),
            reference: reference.to_owned(),
            va_number: va_number.to_owned(),
            amount,
            terminal: "other".into(),
            transaction_date: None,
            customer_name: None,
            state: PassiveState::Forwarding,
            answer: None,
            institution_data: Value::Null,
            reason: None,
            resolution: None,
            attempts: 0,
            deadline_ms: None,
            created_at: at.to_owned(),
            updated_at: at.to_owned(),
            rev: String::new(),
        }
    }

    /// Refused before anything was sent to the institution: a repeat is forwarded anew.
    pub fn never_sent(&self) -> bool {
        self.state == PassiveState::Refused && self.reason.as_deref() == Some(NOT_SENT)
    }

    /// Settled: paid, refused or reversed; the resolver has nothing left to do with it
    /// (whether a step is still scheduled is the pending set's to say).
    pub fn settled(&self) -> bool {
        matches!(
            self.state,
            PassiveState::Paid | PassiveState::Refused | PassiveState::Reversed
        )
    }

    /// `created_at` and `updated_at` in ms since the epoch (ISO 8601, RFC 3339), if readable.
    pub fn times_ms(&self) -> Option<(i64, i64)> {
        let ms = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.timestamp_millis())
        };
        Some((ms(&self.created_at)?, ms(&self.updated_at)?))
    }

    /// The record's member in the institution's index and pending set.
    pub fn member(&self) -> String {
        format!("{}:{}", self.channel, self.reference)
    }

    /// The payment as check-status and reversal answers show it.
    pub fn view(&self) -> Value {
        serde_json::json!({
            "payment_ref_id": self.reference,
            "channel": self.channel,
            "va_number": self.va_number,
            "amount": self.amount,
            "institution_code": self.institution,
            "status": self.state.as_str(),
            "resolution": self.resolution,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        })
    }
}
