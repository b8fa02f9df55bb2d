//! SNAP's bank-facing virtual-account services (snap-reference.md s3.1-3.3; decisions in
//! docs/snap.md): a body of service 24, 25 or 26 becomes a [`Request`] (and so the very
//! command IPG's doors build, `domain::Command`), and the switch's outcome becomes the
//! answer's `virtualAccountData`.
//!
//! - The VA: `partnerServiceId` (8 characters, the 6-digit prefix (BCN) left-padded with
//!   spaces or zeros) and `customerNo` (the VA's 10 digits; a longer one only with leading
//!   zeros), and `virtualAccountNo`, which must be the two together (padding aside).
//! - Amounts: `{"value": "150000.00", "currency": "IDR"}`: whole rupiah, exactly two
//!   fraction digits `00`, IDR only.
//! - References: `inquiryRequestId`/`paymentRequestId` are IPG's `ref_id` (1-64 printable
//!   characters), so one reference is one transaction through every door.
//!
//! Parsing never panics and names the field it refuses ([`Refusal::Format`],
//! [`Refusal::Mandatory`]).

use chrono::{DateTime, FixedOffset, NaiveDateTime};
use serde_json::{json, Map, Value};

use super::{text, Refusal, Service};
use crate::domain::command::{Action, CheckStatus, Command, Inquiry, Pay};
use crate::domain::{Amount, AmountError, Outcome, Rc, Shown, VaNumber};

/// The VA as the request names it, kept as sent (answers echo it unchanged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub partner_service_id: String,
    pub customer_no: String,
    pub virtual_account_no: String,
    /// The switch's 16-digit VA (prefix + 10 digits).
    pub va: String,
}

/// A parsed request of service 24, 25 or 26.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub service: Service,
    pub identity: Identity,
    /// `inquiryRequestId` (24: the reference; 25, 26: optional, echoed).
    pub inquiry_request_id: Option<String>,
    /// `paymentRequestId` (25: the reference; 26: the payment asked after).
    pub payment_request_id: Option<String>,
    /// `paidAmount` in rupiah (25), or why it is refused by the amount rule.
    pub paid_amount: Option<Result<Amount, AmountError>>,
    /// `virtualAccountName` (25, optional).
    pub virtual_account_name: Option<String>,
    /// `channelCode` (ISO 18245), as text.
    pub channel_code: Option<String>,
    /// `trxDateInit` (24) or `trxDateTime` (25) as IPG's `Y-m-d H:i:s` in the switch's
    /// offset.
    pub transaction_date: Option<String>,
    /// `referenceNo` (25): the bank's own authorization code, echoed.
    pub reference_no: Option<String>,
    /// `flagAdvise` (25): `Y` a retry of the same payment.
    pub flag_advise: Option<String>,
}

fn format(field: &str) -> Refusal {
    Refusal::Format(field.to_owned())
}

fn mandatory(field: &str) -> Refusal {
    Refusal::Mandatory(field.to_owned())
}

/// A string field, at most `max` characters; a JSON number is taken as its digits (some
/// banks send `customerNo` bare, snap-reference.md s9 question 5).
fn string(o: &Map<String, Value>, f: &str, max: usize) -> Result<Option<String>, Refusal> {
    let s = match o.get(f) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        Some(_) => return Err(format(f)),
    };
    if s.chars().count() > max {
        return Err(format(f));
    }
    Ok(Some(s))
}

fn required(o: &Map<String, Value>, f: &str, max: usize) -> Result<String, Refusal> {
    string(o, f, max)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| mandatory(f))
}

/// A reference the switch binds (IPG's `ref_id` rule: 1-64 printable ASCII characters,
/// not starting with a spreadsheet formula character).
fn reference(o: &Map<String, Value>, f: &str) -> Result<Option<String>, Refusal> {
    let Some(r) = string(o, f, 128)? else {
        return Ok(None);
    };
    if r.is_empty() {
        return Ok(None);
    }
    crate::protocol::channel::check_new_reference(f, &r).map_err(|_| format(f))?;
    Ok(Some(r))
}

/// The VA of `partnerServiceId` + `customerNo`, checked against `virtualAccountNo`.
fn identity(o: &Map<String, Value>) -> Result<Identity, Refusal> {
    let psid = required(o, "partnerServiceId", 8)?;
    let customer = required(o, "customerNo", 20)?;
    let vano = required(o, "virtualAccountNo", 28)?;
    let prefix = psid.trim_start_matches(' ');
    let prefix = prefix
        .strip_prefix(&"0".repeat(prefix.len().saturating_sub(6)))
        .unwrap_or(prefix);
    if prefix.len() != 6 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format("partnerServiceId"));
    }
    let number = customer
        .strip_prefix(&"0".repeat(customer.len().saturating_sub(10)))
        .unwrap_or(&customer);
    if number.len() != 10 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format("customerNo"));
    }
    // virtualAccountNo is partnerServiceId followed by customerNo; its padding may differ
    // (spaces or zeros, or none), its digits may not.
    let digits = |s: &str| -> String { s.trim_start_matches([' ', '0']).to_owned() };
    if digits(&vano) != digits(&format!("{psid}{customer}")) {
        return Err(format("virtualAccountNo"));
    }
    let va = format!("{prefix}{number}");
    Ok(Identity {
        partner_service_id: psid,
        customer_no: customer,
        virtual_account_no: vano,
        va,
    })
}

/// An amount object `{"value": "150000.00", "currency": "IDR"}` in rupiah: the value's
/// text has 1-16 integer digits and exactly the fraction `.00`; `currency` is `IDR`.
/// Zero is read (the amount rule refuses it later, in its turn).
///
/// # Errors
/// [`Refusal::Mandatory`] / [`Refusal::Format`] naming `<field>.value` or
/// `<field>.currency`.
pub fn amount(v: Option<&Value>, field: &str) -> Result<Option<u64>, Refusal> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let o = v.as_object().ok_or_else(|| format(field))?;
    let value = match o.get("value") {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => return Err(mandatory(&format!("{field}.value"))),
        Some(_) => return Err(format(&format!("{field}.value"))),
    };
    match o.get("currency") {
        Some(Value::String(c)) if c == "IDR" => {}
        None | Some(Value::Null) => return Err(mandatory(&format!("{field}.currency"))),
        Some(_) => return Err(format(&format!("{field}.currency"))),
    }
    let bad = || format(&format!("{field}.value"));
    let (whole, cents) = value.split_once('.').ok_or_else(bad)?;
    if whole.is_empty()
        || whole.len() > 16
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || cents != "00"
    {
        return Err(bad());
    }
    whole.parse::<u64>().map(Some).map_err(|_| bad())
}

/// A SNAP date (ISO 8601 with a zone: `2024-05-01T10:16:02+07:00`, with or without
/// fraction, or the basic `20201231T235959Z`) as IPG's `Y-m-d H:i:s` in `offset`.
fn date(o: &Map<String, Value>, f: &str, offset: FixedOffset) -> Result<Option<String>, Refusal> {
    let Some(s) = string(o, f, 35)? else {
        return Ok(None);
    };
    let t = DateTime::parse_from_rfc3339(&s)
        .ok()
        .or_else(|| {
            let basic = s.strip_suffix('Z')?;
            NaiveDateTime::parse_from_str(basic, "%Y%m%dT%H%M%S")
                .ok()
                .map(|n| n.and_utc().fixed_offset())
        })
        .ok_or_else(|| format(f))?;
    Ok(Some(
        t.with_timezone(&offset)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
    ))
}

/// Reads a request body of `service` (24, 25 or 26). `offset` is the switch's (IPG dates
/// are local).
///
/// # Errors
/// [`Refusal::BadRequest`] (not JSON, not an object, a repeated name), or the field refused.
pub fn parse(service: Service, body: &[u8], offset: FixedOffset) -> Result<Request, Refusal> {
    let v = crate::protocol::json::parse(body).map_err(|_| Refusal::BadRequest)?;
    let o = v.as_object().ok_or(Refusal::BadRequest)?;
    let identity = identity(o)?;
    let mut r = Request {
        service,
        identity,
        inquiry_request_id: None,
        payment_request_id: None,
        paid_amount: None,
        virtual_account_name: None,
        channel_code: string(o, "channelCode", 4)?,
        transaction_date: None,
        reference_no: None,
        flag_advise: None,
    };
    match service {
        Service::Inquiry => {
            r.inquiry_request_id = Some(
                reference(o, "inquiryRequestId")?.ok_or_else(|| mandatory("inquiryRequestId"))?,
            );
            r.transaction_date = date(o, "trxDateInit", offset)?;
        }
        Service::Payment => {
            r.payment_request_id = Some(
                reference(o, "paymentRequestId")?.ok_or_else(|| mandatory("paymentRequestId"))?,
            );
            r.inquiry_request_id = string(o, "inquiryRequestId", 128)?;
            let paid = amount(o.get("paidAmount"), "paidAmount")?
                .ok_or_else(|| mandatory("paidAmount"))?;
            r.paid_amount = Some(Amount::new(paid));
            r.virtual_account_name = string(o, "virtualAccountName", 255)?;
            r.transaction_date = date(o, "trxDateTime", offset)?;
            r.reference_no = string(o, "referenceNo", 64)?;
            r.flag_advise = match string(o, "flagAdvise", 1)? {
                None => None,
                Some(f) if f == "Y" || f == "N" => Some(f),
                Some(_) => return Err(format("flagAdvise")),
            };
        }
        Service::Status => {
            // The payment asked after: paymentRequestId, else inquiryRequestId (they are
            // one reference at most banks); one of them is needed.
            r.inquiry_request_id = string(o, "inquiryRequestId", 128)?;
            r.payment_request_id = string(o, "paymentRequestId", 128)?;
            if r.payment_request_id.as_deref().unwrap_or("").is_empty()
                && r.inquiry_request_id.as_deref().unwrap_or("").is_empty()
            {
                return Err(mandatory("paymentRequestId"));
            }
        }
        _ => return Err(Refusal::BadRequest),
    }
    Ok(r)
}

impl Request {
    /// The reference the request binds or asks after (IPG `ref_id` / `payment_ref`).
    pub fn reference(&self) -> &str {
        self.payment_request_id
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(self.inquiry_request_id.as_deref())
            .unwrap_or_default()
    }

    /// The switch's command for `channel` (the partner's IPG channel code).
    pub fn command(&self, channel: &str) -> Command {
        let va = VaNumber::parse(&self.identity.va);
        let action = match self.service {
            Service::Payment => Action::Pay(Pay {
                va,
                ref_id: self.reference().to_owned(),
                amount: self
                    .paid_amount
                    .clone()
                    .unwrap_or(Err(AmountError::Missing)),
                terminal_id: self.channel_code.clone(),
                transaction_date: self.transaction_date.clone(),
                customer_name: self.virtual_account_name.clone(),
            }),
            Service::Status => Action::CheckStatus(CheckStatus {
                va,
                payment_ref: self.reference().to_owned(),
                date: None,
            }),
            _ => Action::Inquiry(Inquiry {
                va,
                ref_id: self.reference().to_owned(),
                terminal_id: self.channel_code.clone(),
                transaction_date: self.transaction_date.clone(),
            }),
        };
        Command {
            channel: channel.to_owned(),
            action,
        }
    }

    /// The identity triple and the request ids, as sent: the start of every
    /// `virtualAccountData`.
    fn echo(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let id = &self.identity;
        m.insert(
            "partnerServiceId".into(),
            id.partner_service_id.clone().into(),
        );
        m.insert("customerNo".into(), id.customer_no.clone().into());
        m.insert(
            "virtualAccountNo".into(),
            id.virtual_account_no.clone().into(),
        );
        if let Some(i) = &self.inquiry_request_id {
            m.insert("inquiryRequestId".into(), i.clone().into());
        }
        if let Some(p) = &self.payment_request_id {
            m.insert("paymentRequestId".into(), p.clone().into());
        }
        m
    }

    /// `virtualAccountData` of a refusal (decision: the status `01` and the reason are
    /// given on 24 and 25, as BCA expects; 26's status is its response code).
    pub fn refused_data(&self, message: &str) -> Option<Value> {
        let mut m = self.echo();
        match self.service {
            Service::Inquiry => {
                m.insert("inquiryStatus".into(), "01".into());
                m.insert("inquiryReason".into(), text(message, message));
            }
            Service::Payment => {
                m.insert("paymentFlagStatus".into(), "01".into());
                m.insert("paymentFlagReason".into(), text(message, message));
            }
            _ => return None,
        }
        Some(Value::Object(m))
    }

    /// `virtualAccountData` of a payment answered in doubt (`2022500`): the flag `02`, the
    /// bank asks service 26 for the outcome.
    pub fn in_progress_data(&self) -> Value {
        let mut m = self.echo();
        m.insert("paymentFlagStatus".into(), "02".into());
        m.insert(
            "paymentFlagReason".into(),
            text(
                "In progress: ask Inquiry Status (26)",
                "Dalam proses: cek status (26)",
            ),
        );
        Value::Object(m)
    }

    /// `virtualAccountData` of a successful outcome.
    pub fn success_data(&self, o: &Outcome) -> Value {
        let mut m = self.echo();
        let (bill, payment) = shown(&o.shown);
        if let Some(name) = bill.get("customer_name").and_then(Value::as_str) {
            m.insert("virtualAccountName".into(), name.into());
        }
        match self.service {
            Service::Inquiry => {
                m.insert("inquiryStatus".into(), "00".into());
                m.insert("inquiryReason".into(), text("Success", "Sukses"));
                let (trx_type, due) = payable(&bill);
                m.insert("totalAmount".into(), money(due));
                m.insert("virtualAccountTrxType".into(), trx_type.into());
                let mut detail = Map::new();
                if let Some(n) = bill
                    .get("invoice_number")
                    .and_then(Value::as_str)
                    .or(bill.get("hash").and_then(Value::as_str))
                {
                    detail.insert(
                        "billNo".into(),
                        n.chars().take(18).collect::<String>().into(),
                    );
                }
                if let Some(n) = bill.get("name").and_then(Value::as_str) {
                    detail.insert(
                        "billName".into(),
                        n.chars().take(20).collect::<String>().into(),
                    );
                }
                detail.insert("billAmount".into(), money(due));
                m.insert("billDetails".into(), json!([detail]));
            }
            Service::Payment | Service::Status => {
                let status = payment
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("paid");
                let (flag, english, indonesia) = payment_flag(status);
                m.insert("paymentFlagStatus".into(), flag.into());
                m.insert("paymentFlagReason".into(), text(english, indonesia));
                if let Some(a) = payment.get("amount").and_then(Value::as_u64) {
                    m.insert("paidAmount".into(), money(a));
                }
                if let Some(t) = bill.get("total_amount").and_then(Value::as_u64) {
                    m.insert("totalAmount".into(), money(t));
                }
                if let Some(at) = payment.get("created_at").and_then(Value::as_str) {
                    let key = if self.service == Service::Status {
                        "transactionDate"
                    } else {
                        "trxDateTime"
                    };
                    m.insert(key.into(), at.into());
                }
                if let Some(r) = &self.reference_no {
                    m.insert("referenceNo".into(), r.clone().into());
                }
                if let Some(f) = &self.flag_advise {
                    m.insert("flagAdvise".into(), f.clone().into());
                }
                let mut info = Map::new();
                if let Some(id) = payment.get("id") {
                    info.insert("paymentId".into(), id.clone());
                }
                if let Some(h) = payment.get("bill_hash") {
                    info.insert("billHash".into(), h.clone());
                }
                m.insert("additionalInfo".into(), Value::Object(info));
            }
            _ => {}
        }
        Value::Object(m)
    }
}

/// `paymentFlagStatus` and its reason for a payment's status (hosted: `paid`, `reversed`;
/// forwarded: `forwarding`, `paid`, `refused`, `in_doubt`, `reversing`, `reversed`):
/// `00` only for a payment that stands, `01` for one undone or being undone (the money
/// does not reach the institution), `02` while its outcome is unknown.
pub fn payment_flag(status: &str) -> (&'static str, &'static str, &'static str) {
    match status {
        "paid" => ("00", "Success", "Sukses"),
        "reversed" | "reversing" => ("01", "Reversed", "Dibatalkan"),
        "refused" => ("01", "Refused", "Ditolak"),
        _ => ("02", "In progress", "Dalam proses"),
    }
}

/// A rupiah amount as SNAP writes it.
pub fn money(rupiah: u64) -> Value {
    json!({ "value": format!("{rupiah}.00"), "currency": "IDR" })
}

/// The bill and the payment an outcome shows, as IPG's JSON (empty objects when absent).
fn shown(s: &Shown) -> (Value, Value) {
    match s {
        Shown::Bill(b) => (serde_json::to_value(b).unwrap_or_default(), Value::Null),
        Shown::Payment { bill, payment, .. } => (
            bill.to_value(),
            serde_json::to_value(payment).unwrap_or_default(),
        ),
        // A passive institution's data: IPG's bill list, or its fields with `payment`.
        Shown::Institution(v) => {
            let bill = v.as_array().and_then(|a| a.first()).unwrap_or(v).clone();
            let payment = v.get("payment").cloned().unwrap_or(Value::Null);
            (bill, payment)
        }
        Shown::Retired(v) => (Value::Null, v.get("payment").cloned().unwrap_or_default()),
        Shown::Nothing => (Value::Null, Value::Null),
    }
}

/// The SNAP trx type of a bill (`C` close, `I` partial: what remains, `O` open, `M`
/// minimum, `L` maximum, `N` open minimum: the bound) and what it takes now (rupiah).
fn payable(bill: &Value) -> (&'static str, u64) {
    let n = |f: &str| bill.get(f).and_then(Value::as_u64).unwrap_or(0);
    match bill.get("type").and_then(Value::as_str) {
        Some("open") => ("O", n("total_amount")),
        Some("partial") => ("I", n("total_amount").saturating_sub(n("paid_amount"))),
        Some("minimum") => ("M", n("total_amount")),
        Some("maximum") => ("L", n("total_amount")),
        Some("open_minimum") => ("N", n("total_amount")),
        _ => ("C", n("total_amount")),
    }
}

/// The refusal a switch outcome code stands for on `service` (the table in docs/snap.md).
/// `Success` and `BillerSuspectTransaction` are not refusals (answered 200 and 202).
pub fn refusal_of(rc: Rc, service: Service) -> Refusal {
    match rc {
        Rc::Success | Rc::BillerSuspectTransaction if service == Service::Inquiry => {
            Refusal::Timeout
        }
        Rc::Success | Rc::BillerSuspectTransaction => Refusal::Internal,
        Rc::BillerAuthentication => Refusal::Unauthorized("Unknown client"),
        Rc::BillerInvalidTransaction => Refusal::BadRequest,
        Rc::BillerInvalidTransactionAmount | Rc::BillerBillInvalidAmount => Refusal::InvalidAmount,
        Rc::BillerInvalidVaNumber => Refusal::BillNotFound("Unknown Prefix"),
        Rc::BillerBillAlreadyPaid => Refusal::PaidBill,
        Rc::BillerBillNotFound => Refusal::BillNotFound("Not Found"),
        Rc::BillerPaymentNotFound => Refusal::TransactionNotFound,
        Rc::BillerPaymentAlreadyReversed => Refusal::InvalidStatus,
        Rc::BillerGatewayInvalidResponse => Refusal::External,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wib() -> FixedOffset {
        FixedOffset::east_opt(7 * 3600).unwrap()
    }

    #[test]
    fn a_payment_body_becomes_the_ipg_command() {
        let body = br#"{"partnerServiceId":"  857499","customerNo":"1234567890","virtualAccountNo":"  8574991234567890",
            "virtualAccountName":"Jokul Doe","paymentRequestId":"PR-1","channelCode":6011,
            "paidAmount":{"value":"150000.00","currency":"IDR"},"trxDateTime":"2024-05-01T03:16:02Z",
            "referenceNo":"00113696201","flagAdvise":"N"}"#;
        let r = parse(Service::Payment, body, wib()).unwrap();
        assert_eq!(r.identity.va, "8574991234567890");
        let Action::Pay(p) = r.command("bank").action else {
            panic!("a payment");
        };
        assert_eq!(p.ref_id, "PR-1");
        assert_eq!(p.amount, Amount::new(150_000));
        assert_eq!(p.terminal_id.as_deref(), Some("6011"));
        assert_eq!(p.transaction_date.as_deref(), Some("2024-05-01 10:16:02"));
        assert_eq!(p.customer_name.as_deref(), Some("Jokul Doe"));
    }

    #[test]
    fn va_numbers_amounts_and_references_are_checked_naming_the_field() {
        let base = json!({"partnerServiceId":"  857499","customerNo":"1234567890",
            "virtualAccountNo":"  8574991234567890","paymentRequestId":"PR-1",
            "paidAmount":{"value":"150000.00","currency":"IDR"}});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            parse(Service::Payment, b.to_string().as_bytes(), wib())
        };
        assert!(with("partnerServiceId", json!("00857499")).is_ok());
        let mut long = base.clone();
        long["customerNo"] = json!("00000000001234567890");
        long["virtualAccountNo"] = json!("  85749900000000001234567890");
        let r = parse(Service::Payment, long.to_string().as_bytes(), wib()).unwrap();
        assert_eq!(r.identity.va, "8574991234567890");
        assert_eq!(
            with("customerNo", json!("00000000001234567890")).unwrap_err(),
            format("virtualAccountNo")
        );
        assert!(with("customerNo", json!(1234567890u64)).is_ok());
        assert_eq!(
            with("customerNo", json!("123")).unwrap_err(),
            format("customerNo")
        );
        assert_eq!(
            with("partnerServiceId", json!("  85749")).unwrap_err(),
            format("partnerServiceId")
        );
        assert_eq!(
            with("virtualAccountNo", json!("  8574991234567891")).unwrap_err(),
            format("virtualAccountNo")
        );
        assert_eq!(
            with("paidAmount", json!({"value":"150000.50","currency":"IDR"})).unwrap_err(),
            format("paidAmount.value")
        );
        assert_eq!(
            with("paidAmount", json!({"value":"150000.00","currency":"USD"})).unwrap_err(),
            format("paidAmount.currency")
        );
        assert_eq!(
            with("paidAmount", json!(150000)).unwrap_err(),
            format("paidAmount")
        );
        assert_eq!(
            with("paymentRequestId", json!("")).unwrap_err(),
            mandatory("paymentRequestId")
        );
        assert_eq!(
            with("paymentRequestId", json!("=HYPERLINK(1)")).unwrap_err(),
            format("paymentRequestId")
        );
        assert_eq!(
            with("trxDateTime", json!("yesterday")).unwrap_err(),
            format("trxDateTime")
        );
        assert!(with("trxDateTime", json!("20201231T235959Z")).is_ok());
        assert_eq!(
            parse(Service::Payment, b"{\"a\":1,\"a\":2}", wib()).unwrap_err(),
            Refusal::BadRequest
        );
        assert_eq!(
            parse(Service::Inquiry, b"[1]", wib()).unwrap_err(),
            Refusal::BadRequest
        );
    }

    #[test]
    fn only_a_payment_that_stands_is_flagged_success() {
        for (status, flag) in [
            ("paid", "00"),
            ("reversed", "01"),
            ("reversing", "01"),
            ("refused", "01"),
            ("in_doubt", "02"),
            ("forwarding", "02"),
            ("anything else", "02"),
        ] {
            assert_eq!(payment_flag(status).0, flag, "{status}");
        }
    }

    #[test]
    fn amounts_are_whole_rupiah() {
        for (v, want) in [
            (json!({"value":"0.00","currency":"IDR"}), Ok(Some(0))),
            (
                json!({"value":"9999999999999999.00","currency":"IDR"}),
                Ok(Some(9_999_999_999_999_999)),
            ),
            (
                json!({"value":"1","currency":"IDR"}),
                Err(format("a.value")),
            ),
            (
                json!({"value":"1.0","currency":"IDR"}),
                Err(format("a.value")),
            ),
            (
                json!({"value":"-1.00","currency":"IDR"}),
                Err(format("a.value")),
            ),
            (
                json!({"value":"10000000000000000.00","currency":"IDR"}),
                Err(format("a.value")),
            ),
            (
                json!({"value":1.0,"currency":"IDR"}),
                Err(format("a.value")),
            ),
            (json!({"currency":"IDR"}), Err(mandatory("a.value"))),
            (json!({"value":"1.00"}), Err(mandatory("a.currency"))),
        ] {
            assert_eq!(amount(Some(&v), "a"), want, "{v}");
        }
        assert_eq!(amount(None, "a"), Ok(None));
    }
}
