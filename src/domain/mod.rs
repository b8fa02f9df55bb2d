//! Pure types and rules of the switch: VA numbers, amounts, bills and what a payment or a
//! reversal does to a bill. No I/O lives here, so every rule is unit-tested next to its code.

pub mod amount;
pub mod bill;
pub mod va;

pub use amount::{Amount, AmountError};
pub use bill::{
    Bill, BillError, BillStatus, BillType, Component, NewBill, NewBillError, Payment, PaymentState,
};
pub use va::{VaError, VaNumber};
