//! The one place where an error becomes an IPG response code (`rc`) and a disposition:
//! answer the channel, answer and dead-letter the input, or retry later without answering.

use crate::domain::{AmountError, BillError, VaError};
use crate::store::StoreError;

pub use crate::domain::Rc;

/// Why a channel request was not served. Every variant but `Store` is final: the request
/// is answered with [`SwitchError::rc`]. `Store` means Redis could not be asked, so the
/// switch knows nothing and must retry rather than guess.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// The channel (or institution) could not be authenticated: unknown, no signature, or a
    /// signature that does not match. Never retried: the sender must fix its request.
    #[error("authentication failed: {0}")]
    Authentication(String),
    #[error("invalid field {field}: {reason}")]
    InvalidField { field: String, reason: String },
    #[error("invalid VA number: {0}")]
    InvalidVa(#[from] VaError),
    #[error("prefix {0} is not served by this switch")]
    UnknownPrefix(String),
    #[error("invalid amount: {0}")]
    InvalidAmount(#[from] AmountError),
    #[error("bill not found")]
    BillNotFound,
    /// The bill's rule refuses the request; with the bill as its VA sees it, when known.
    #[error("{0}")]
    Bill(BillError, Option<Box<crate::domain::Bill>>),
    #[error("reference {0} was already used for another transaction")]
    ReferenceConflict(String),
    /// A reversal of this reference came first and found no payment (decision 9): the
    /// bank was told it is reversed, so the payment is never made.
    #[error("reference {0} was reversed before its payment arrived (the reversal was answered BILLER_PAYMENT_NOT_FOUND): this payment is refused")]
    ReversedBeforePayment(String),
    #[error("payment not found")]
    PaymentNotFound,
    #[error("payment already reversed")]
    AlreadyReversed(crate::domain::Shown),
    /// A repeat of a payment past the hot window (docs/retention.md): its compact record
    /// says it was made (answered `BILLER_BILL_ALREADY_PAID` with the payment's id and
    /// `data.payment` as [`Retired::view`](crate::store::Retired::view) shows it); never paid
    /// twice.
    #[error("reference {} was already processed as payment {}", .0.payment_ref_id, .0.id)]
    AlreadyProcessed(Box<crate::store::Retired>, serde_json::Value),
    /// A reversal of a payment past the hot window (docs/retention.md): the switch no
    /// longer reverses it (`BILLER_INVALID_TRANSACTION`, with `data.payment`).
    #[error("payment {} is past the reversal window", .0.id)]
    TooLateToReverse(Box<crate::store::Retired>, serde_json::Value),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Over a configured rate limit: refused before any work, safe to send again later.
    #[error("rate limit exceeded for {scope} {code}; retry later")]
    RateLimited { scope: &'static str, code: String },
    /// Another transaction holds the VA or keeps changing the bill: retry later.
    #[error("busy: {0}")]
    Busy(String),
    /// A broken invariant (a payment whose bill is gone): answered, logged, never retried.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What the pipeline does with a request that ended in an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Answer the channel with the rc.
    Answer,
    /// Answer and keep the original bytes on the dead-letter topic: the input was broken.
    AnswerAndDeadLetter,
    /// Do not answer, do not move the offset: try again later.
    Retry,
}

impl From<crate::protocol::channel::Invalid> for SwitchError {
    fn from(e: crate::protocol::channel::Invalid) -> Self {
        SwitchError::InvalidField {
            field: e.field,
            reason: e.reason,
        }
    }
}

impl SwitchError {
    /// A channel code no `[[channels]]` entry has (shown quoted, at most 64 characters).
    pub fn unknown_channel(code: &str) -> Self {
        let shown: String = code.chars().take(64).collect();
        SwitchError::Authentication(format!(
            "unknown channel {shown:?}: no such channel is configured in this switch"
        ))
    }

    /// A payment whose reference `ref_id` is bound already to `earlier`, another
    /// transaction's binding or a reversal's void one.
    pub fn reference_taken(ref_id: &str, earlier: &str) -> Self {
        if crate::domain::Binding::is_void(earlier) {
            SwitchError::ReversedBeforePayment(ref_id.to_owned())
        } else {
            SwitchError::ReferenceConflict(ref_id.to_owned())
        }
    }

    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SwitchError::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn rc(&self) -> Rc {
        match self {
            SwitchError::Authentication(_) => Rc::BillerAuthentication,
            SwitchError::InvalidField { .. }
            | SwitchError::ReferenceConflict(_)
            | SwitchError::ReversedBeforePayment(_)
            | SwitchError::TooLateToReverse(..) => Rc::BillerInvalidTransaction,
            SwitchError::AlreadyProcessed(..) => Rc::BillerBillAlreadyPaid,
            SwitchError::InvalidVa(_) | SwitchError::UnknownPrefix(_) => Rc::BillerInvalidVaNumber,
            SwitchError::InvalidAmount(_) => Rc::BillerInvalidTransactionAmount,
            SwitchError::BillNotFound => Rc::BillerBillNotFound,
            SwitchError::Bill(e, _) => match e {
                BillError::AlreadyPaid => Rc::BillerBillAlreadyPaid,
                BillError::Revoked | BillError::Expired(_) => Rc::BillerBillNotFound,
                BillError::Amount(_) => Rc::BillerInvalidTransactionAmount,
            },
            SwitchError::PaymentNotFound => Rc::BillerPaymentNotFound,
            SwitchError::AlreadyReversed(_) => Rc::BillerPaymentAlreadyReversed,
            SwitchError::RateLimited { .. } => Rc::BillerGatewayInvalidResponse,
            SwitchError::Store(StoreError::InDoubt(_)) => Rc::BillerSuspectTransaction,
            SwitchError::Store(_) | SwitchError::Busy(_) | SwitchError::Internal(_) => {
                Rc::BillerGatewayInvalidResponse
            }
        }
    }

    /// Whether the change may be in force though its journal event or webhook job is not
    /// yet acknowledged (`StoreError::InDoubt`): answered `BILLER_SUSPECT_TRANSACTION`.
    pub fn is_in_doubt(&self) -> bool {
        matches!(self, SwitchError::Store(StoreError::InDoubt(_)))
    }

    pub fn disposition(&self) -> Disposition {
        match self {
            SwitchError::Store(
                StoreError::Unavailable(_) | StoreError::Journal(_) | StoreError::InDoubt(_),
            )
            | SwitchError::Busy(_) => Disposition::Retry,
            SwitchError::Authentication(_)
            | SwitchError::InvalidField { .. }
            | SwitchError::Internal(_) => Disposition::AnswerAndDeadLetter,
            _ => Disposition::Answer,
        }
    }

    /// Bounded label for a dead-letter entry of this error.
    pub fn reason_code(&self) -> &'static str {
        match self {
            SwitchError::Authentication(_) => "bad_signature",
            SwitchError::Internal(_) | SwitchError::Store(_) => "internal",
            _ => "invalid_field",
        }
    }

    /// The answer to a request refused with this error, stamped now.
    pub fn outcome(&self, clock: &crate::clock::Clock) -> crate::domain::Outcome {
        crate::domain::Outcome {
            rc: self.rc(),
            message: self.message(),
            timestamp: clock.stamp_now(),
            shown: self.shown(),
            webhook: None,
        }
    }

    /// What the answer shows, when the error has something to show (the paid bill, the
    /// reversed payment).
    pub fn shown(&self) -> crate::domain::Shown {
        use crate::domain::Shown;
        match self {
            SwitchError::Bill(_, Some(b)) => Shown::Bill(b.clone()),
            SwitchError::AlreadyReversed(s) => s.clone(),
            SwitchError::AlreadyProcessed(_, v) | SwitchError::TooLateToReverse(_, v) => {
                Shown::Retired(serde_json::json!({ "payment": v }))
            }
            _ => Shown::Nothing,
        }
    }

    /// The `message` of the answer: short, safe to show, never a secret; it says what is
    /// wrong and whether sending the same request again can help.
    pub fn message(&self) -> String {
        match self {
            SwitchError::Store(StoreError::Unavailable(_)) => {
                "the switch's store (Redis) is unavailable; nothing was done: send the same \
                 request again"
                    .into()
            }
            SwitchError::Busy(why) => {
                format!("busy: {why}; nothing was done: send the same request again")
            }
            SwitchError::Store(StoreError::Journal(_)) => {
                "the switch could not yet record this in its journal (Kafka); send the same \
                 request again: it is answered as the first time, never done twice"
                    .into()
            }
            SwitchError::Store(StoreError::InDoubt(_)) => {
                "in doubt: the switch recorded this but its journal (Kafka) has not confirmed it \
                 yet; the switch completes it by itself once Kafka is back. Check the status or \
                 send the same request again: it is answered as the first time, never done twice"
                    .into()
            }
            SwitchError::Store(StoreError::Corrupt { .. }) | SwitchError::Internal(_) => {
                "internal error (logged for the switch's operator); check the status before \
                 sending it again"
                    .into()
            }
            SwitchError::AlreadyProcessed(r, v) => format!(
                "reference {} was already processed as payment {} at {}; it is past the \
                 switch's hot window, so only this is kept of it (docs/retention.md): it is \
                 never paid twice",
                r.payment_ref_id,
                r.id,
                v.get("created_at")
                    .and_then(|t| t.as_str())
                    .unwrap_or_default()
            ),
            SwitchError::TooLateToReverse(r, v) => format!(
                "payment {} of {} is past the switch's reversal window \
                 (retention.hot_window_ms, docs/retention.md): it cannot be reversed here",
                r.id,
                v.get("created_at")
                    .and_then(|t| t.as_str())
                    .unwrap_or_default()
            ),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rc_names_match_ipg() {
        for rc in Rc::ALL {
            assert_eq!(
                serde_json::to_value(rc).unwrap(),
                serde_json::Value::String(rc.as_str().into())
            );
        }
    }
}
