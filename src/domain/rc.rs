//! IPG's response codes (`rc`): the words every answer ends in.

use serde::{Deserialize, Serialize};

/// IPG response codes, as IPG's Payment Channel and Passive Client API pages list them
/// (docs/protocol.md, "Response codes").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Rc {
    Success,
    BillerAuthentication,
    BillerInvalidTransaction,
    BillerInvalidTransactionAmount,
    BillerBillInvalidAmount,
    BillerInvalidVaNumber,
    BillerBillAlreadyPaid,
    BillerBillNotFound,
    BillerPaymentNotFound,
    BillerPaymentAlreadyReversed,
    BillerSuspectTransaction,
    BillerGatewayInvalidResponse,
}

impl Rc {
    pub const ALL: [Rc; 12] = [
        Rc::Success,
        Rc::BillerAuthentication,
        Rc::BillerInvalidTransaction,
        Rc::BillerInvalidTransactionAmount,
        Rc::BillerBillInvalidAmount,
        Rc::BillerInvalidVaNumber,
        Rc::BillerBillAlreadyPaid,
        Rc::BillerBillNotFound,
        Rc::BillerPaymentNotFound,
        Rc::BillerPaymentAlreadyReversed,
        Rc::BillerSuspectTransaction,
        Rc::BillerGatewayInvalidResponse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rc::Success => "SUCCESS",
            Rc::BillerAuthentication => "BILLER_AUTHENTICATION",
            Rc::BillerInvalidTransaction => "BILLER_INVALID_TRANSACTION",
            Rc::BillerInvalidTransactionAmount => "BILLER_INVALID_TRANSACTION_AMOUNT",
            Rc::BillerBillInvalidAmount => "BILLER_BILL_INVALID_AMOUNT",
            Rc::BillerInvalidVaNumber => "BILLER_INVALID_VA_NUMBER",
            Rc::BillerBillAlreadyPaid => "BILLER_BILL_ALREADY_PAID",
            Rc::BillerBillNotFound => "BILLER_BILL_NOT_FOUND",
            Rc::BillerPaymentNotFound => "BILLER_PAYMENT_NOT_FOUND",
            Rc::BillerPaymentAlreadyReversed => "BILLER_PAYMENT_ALREADY_REVERSED",
            Rc::BillerSuspectTransaction => "BILLER_SUSPECT_TRANSACTION",
            Rc::BillerGatewayInvalidResponse => "BILLER_GATEWAY_INVALID_RESPONSE",
        }
    }
}
