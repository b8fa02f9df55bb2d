//! Pure types and rules of the switch: the command a door builds, VA numbers, amounts, bills
//! and what a payment or a reversal does to a bill, what an answer shows, IPG's response
//! codes, the record of a payment forwarded to a passive institution. No I/O lives here,
//! so every rule is unit-tested next to its code.

pub mod amount;
pub mod bill;
pub mod command;
pub mod iso8601;
pub mod outcome;
pub mod passive;
pub mod rc;
pub mod va;

pub use amount::{Amount, AmountError};
pub use bill::{
    Bill, BillError, BillStatus, BillType, Component, NewBill, NewBillError, Payment, PaymentState,
};
pub use command::Command;
pub use outcome::{Binding, Json, Outcome, QueuedWebhook, Shown};
pub use rc::Rc;
pub use va::{VaError, VaNumber};

/// How an institution is served: `hosted` (its bills live in the switch, IPG's Active
/// Client API) or `passive` (the switch forwards to its own API, IPG's Passive Client API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstitutionMode {
    Hosted,
    Passive,
}

/// What the switch requires of the `Signature` header on an institution's answers. IPG's
/// Passive Client API does not say that answers are signed, so the default accepts an
/// unsigned answer but never a wrongly signed one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseSignature {
    /// Every answer must carry a valid signature.
    Required,
    /// A signature, when present, must be valid.
    IfPresent,
    /// Answers are not checked.
    Off,
}
