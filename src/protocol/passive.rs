//! The bodies the switch sends to a passive institution (IPG's Passive Client API:
//! inquiry, payment, reversal, check-status), typed. Field names and order are IPG's and
//! what the switch has always sent; the body is signed over its exact bytes.

use serde::Serialize;

use crate::domain::passive::PassivePayment;
use crate::domain::{Amount, VaNumber};

/// `POST <base_url>/inquiry`: the VA asked about (IPG's `bill_mode` is always `single`).
#[derive(Debug, Serialize)]
pub struct InquiryBody<'a> {
    pub virtual_account: &'a str,
    pub channel: &'a str,
    pub prefix: &'a str,
    pub reference_id: &'a str,
    pub bill_mode: &'static str,
    /// IPG's terminal list, `other` when the channel named none.
    pub terminal: &'a str,
}

impl<'a> InquiryBody<'a> {
    pub fn new(
        va: &'a VaNumber,
        channel: &'a str,
        ref_id: &'a str,
        terminal: Option<&'a str>,
    ) -> Self {
        InquiryBody {
            virtual_account: va.number(),
            channel,
            prefix: va.prefix(),
            reference_id: ref_id,
            bill_mode: "single",
            terminal: terminal.unwrap_or("other"),
        }
    }
}

/// The VA of a record as IPG splits it: 6-digit prefix (BCN), then the number.
fn split(rec: &PassivePayment) -> (&str, &str) {
    rec.va_number.split_at(6.min(rec.va_number.len()))
}

/// `POST <base_url>/payment`: a forwarded payment (`amount` in rupiah; `date` the channel's
/// `transaction_date`).
#[derive(Debug, Serialize)]
pub struct PaymentBody<'a> {
    pub virtual_account: &'a str,
    pub channel: &'a str,
    pub prefix: &'a str,
    pub reference_id: &'a str,
    pub payment_ref: &'a str,
    pub bill_mode: &'static str,
    pub terminal: &'a str,
    pub amount: Amount,
    pub customer_name: Option<&'a str>,
    pub date: Option<&'a str>,
}

impl<'a> PaymentBody<'a> {
    pub fn of(rec: &'a PassivePayment) -> Self {
        let (prefix, number) = split(rec);
        PaymentBody {
            virtual_account: number,
            channel: &rec.channel,
            prefix,
            reference_id: &rec.reference,
            payment_ref: &rec.reference,
            bill_mode: "single",
            terminal: &rec.terminal,
            amount: rec.amount,
            customer_name: rec.customer_name.as_deref(),
            date: rec.transaction_date.as_deref(),
        }
    }
}

/// `POST <base_url>/reversal`: the forwarded payment taken back (`amount` in rupiah).
#[derive(Debug, Serialize)]
pub struct ReversalBody<'a> {
    pub payment_ref: &'a str,
    pub amount: Amount,
    pub reference_id: &'a str,
    pub virtual_account: &'a str,
    pub channel: &'a str,
    pub prefix: &'a str,
}

impl<'a> ReversalBody<'a> {
    pub fn of(rec: &'a PassivePayment) -> Self {
        let (prefix, number) = split(rec);
        ReversalBody {
            payment_ref: &rec.reference,
            amount: rec.amount,
            reference_id: &rec.reference,
            virtual_account: number,
            channel: &rec.channel,
            prefix,
        }
    }
}

/// `POST <base_url>/check-status`: the resolver asking after a payment in doubt; `date` is
/// the day it was made (`YYYY-mm-dd`, the switch's offset).
#[derive(Debug, Serialize)]
pub struct CheckStatusBody<'a> {
    pub channel: &'a str,
    pub prefix: &'a str,
    pub virtual_account: &'a str,
    pub payment_ref: &'a str,
    pub date: &'a str,
}

impl<'a> CheckStatusBody<'a> {
    pub fn of(rec: &'a PassivePayment) -> Self {
        let (prefix, number) = split(rec);
        CheckStatusBody {
            channel: &rec.channel,
            prefix,
            virtual_account: number,
            payment_ref: &rec.reference,
            date: rec.created_at.get(..10).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &impl Serialize) -> String {
        serde_json::to_string(v).unwrap()
    }

    /// The bytes are what the switch sent before these types (the institution checks the
    /// signature over them, and its own parser may care about order).
    #[test]
    fn bodies_are_the_bytes_sent_before() {
        let mut rec = PassivePayment::forwarding(
            "PAS01",
            "bank",
            "REF-1",
            "8576001234567890",
            Amount::new(75_000).unwrap(),
            "2026-12-06T10:00:00+07:00",
        );
        rec.transaction_date = Some("2026-12-06 09:59:00".into());
        assert_eq!(
            text(&PaymentBody::of(&rec)),
            r#"{"virtual_account":"1234567890","channel":"bank","prefix":"857600","reference_id":"REF-1","payment_ref":"REF-1","bill_mode":"single","terminal":"other","amount":75000,"customer_name":null,"date":"2026-12-06 09:59:00"}"#
        );
        assert_eq!(
            text(&ReversalBody::of(&rec)),
            r#"{"payment_ref":"REF-1","amount":75000,"reference_id":"REF-1","virtual_account":"1234567890","channel":"bank","prefix":"857600"}"#
        );
        assert_eq!(
            text(&CheckStatusBody::of(&rec)),
            r#"{"channel":"bank","prefix":"857600","virtual_account":"1234567890","payment_ref":"REF-1","date":"2026-12-06"}"#
        );
        let va = VaNumber::parse("8576001234567890").unwrap();
        assert_eq!(
            text(&InquiryBody::new(&va, "bank", "INQ-1", None)),
            r#"{"virtual_account":"1234567890","channel":"bank","prefix":"857600","reference_id":"INQ-1","bill_mode":"single","terminal":"other"}"#
        );
    }
}
