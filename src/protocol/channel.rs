//! The channel envelope. Request value:
//! `{"type": "inquiry"|"payment"|"reversal"|"check_status", "channel", "request_id", "body"}`
//! with header `signature` = hex HMAC-SHA256 of the exact value bytes (channel's key).
//! Response value: `{"request_id", "type", "channel", "rc", "message", "timestamp", "data"}`.
//! docs/protocol.md shows both with examples that the tests parse.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::json::JsonError;
use crate::domain::command::{self, Action, Command};
use crate::domain::{Amount, Rc, Shown, VaNumber};

/// Longest `request_id` / reference accepted: longer ones are refused, never truncated.
pub const MAX_REF_LEN: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestType {
    Inquiry,
    Payment,
    Reversal,
    CheckStatus,
}

impl RequestType {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Inquiry => "inquiry",
            RequestType::Payment => "payment",
            RequestType::Reversal => "reversal",
            RequestType::CheckStatus => "check_status",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "inquiry" => RequestType::Inquiry,
            "payment" => RequestType::Payment,
            "reversal" => RequestType::Reversal,
            "check_status" => RequestType::CheckStatus,
            _ => return None,
        })
    }
}

/// A decoded, authenticated channel request: its IPG address and the switch's command.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelRequest {
    pub request_id: String,
    pub kind: RequestType,
    pub command: Command,
}

impl ChannelRequest {
    /// The authenticated channel's code.
    pub fn channel(&self) -> &str {
        &self.command.channel
    }
}

/// Who to answer, as far as a broken request could be read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Address {
    pub request_id: String,
    pub kind: String,
    pub channel: String,
}

/// A field of the request that is missing, mistyped or malformed, named as sent
/// (`body.amount`, `request_id`); answered `BILLER_INVALID_TRANSACTION`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid field {field}: {reason}")]
pub struct Invalid {
    pub field: String,
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Input that cannot be read. `address` is `None` when the request cannot be answered
/// (no `request_id`): it then only goes to the dead-letter topic.
#[derive(Debug)]
pub struct Rejected {
    pub address: Option<Address>,
    pub error: Invalid,
    /// Bounded label for the dead-letter metric.
    pub reason: &'static str,
}

/// An envelope whose `request_id` could be read (so it can be answered), before its
/// channel is authenticated and its body read.
#[derive(Debug)]
pub struct Envelope {
    pub address: Address,
    obj: Map<String, Value>,
    /// A name the value repeats: refused once the channel is authenticated.
    repeated: Option<Invalid>,
}

/// A response value. The switch writes `data` from what the outcome shows
/// ([`IpgData`]); a reader (a test, a channel) reads it as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChannelResponse<D = Value> {
    /// The request's `request_id`, echoed.
    pub request_id: String,
    /// The request's `type`: `inquiry`, `payment`, `reversal` or `check_status`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request's channel code.
    pub channel: String,
    pub rc: Rc,
    /// For people; `success` with `SUCCESS`.
    pub message: String,
    /// ISO 8601 with the switch's offset (`switch.utc_offset`).
    pub timestamp: String,
    /// What the outcome shows: `null`; an inquiry's `[bill]`; a payment's, reversal's or
    /// check status's bill with its `payment`; a passive institution's data as it came.
    pub data: D,
}

/// What an outcome shows, as IPG's `data` (Payment Channel API): nothing is `null`; a
/// hosted bill is a one-element list `[bill]` (inquiry); a bill with a payment is the
/// bill's fields and `payment`; a passive institution's data passes through as it came.
#[derive(Clone, Copy, Debug)]
pub struct IpgData<'a>(pub &'a Shown);

impl Serialize for IpgData<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        match self.0 {
            Shown::Nothing => s.serialize_unit(),
            Shown::Bill(b) => [b].serialize(s),
            Shown::Payment {
                bill, payment_json, ..
            } => {
                let mut text = Vec::new();
                splice(bill.get(), payment_json.get(), &mut text);
                let text = String::from_utf8(text).map_err(S::Error::custom)?;
                serde_json::value::RawValue::from_string(text)
                    .map_err(S::Error::custom)?
                    .serialize(s)
            }
            Shown::Institution(v) | Shown::Retired(v) => v.serialize(s),
        }
    }
}

/// A payment's `data`: the bill's fields, then `payment`, spliced from their JSON texts
/// as they were written once (no parse, no second rendering: issue 29), appended to `out`.
/// Both texts are JSON the switch wrote (`Json`), so the result is JSON.
fn splice(bill: &str, payment: &str, out: &mut Vec<u8>) {
    out.push(b'{');
    if let Some(fields) = object_fields(bill).filter(|f| !f.is_empty()) {
        out.extend_from_slice(fields.as_bytes());
        out.push(b',');
    }
    out.extend_from_slice(b"\"payment\":");
    out.extend_from_slice(payment.as_bytes());
    out.push(b'}');
}

impl ChannelResponse<()> {
    /// This response with `data` (its last field) written from `data`: byte for byte what
    /// serde_json renders for the same `ChannelResponse<IpgData>`, but a payment's `data`
    /// ([`splice`]d from texts the switch wrote) goes in as it is, not read through again
    /// (`RawValue::from_string` validates every byte: a seventh of the daemon's work on
    /// a payment's answer before, issue 29). The Kafka door's answers.
    pub fn to_bytes_with(&self, data: IpgData<'_>) -> Vec<u8> {
        let mut out = self.to_bytes();
        // `()` renders as `null`, the last member: `..., "data":null}`.
        match out.strip_suffix(b"\"data\":null}") {
            Some(head) => out.truncate(head.len() + b"\"data\":".len()),
            None => {
                // Not this type's rendering (a field after `data`): the long way.
                let full = ChannelResponse {
                    request_id: self.request_id.clone(),
                    kind: self.kind.clone(),
                    channel: self.channel.clone(),
                    rc: self.rc,
                    message: self.message.clone(),
                    timestamp: self.timestamp.clone(),
                    data,
                };
                return full.to_bytes();
            }
        }
        match data.0 {
            Shown::Payment {
                bill, payment_json, ..
            } => splice(bill.get(), payment_json.get(), &mut out),
            // As `to_bytes` answers a response it cannot render: empty.
            _ => {
                if serde_json::to_writer(&mut out, &data).is_err() {
                    return Vec::new();
                }
            }
        }
        out.push(b'}');
        debug_assert!(
            serde_json::from_slice::<serde::de::IgnoredAny>(&out).is_ok(),
            "an answer's JSON: {}",
            String::from_utf8_lossy(&out)
        );
        out
    }
}

/// The members of a JSON object's text, between its braces and trimmed (`""` for `{}`);
/// `None` when `text` is not an object.
fn object_fields(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    Some(inner.trim())
}

impl IpgData<'_> {
    /// The same `data` as a JSON value.
    pub fn to_value(self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

struct Fields<'a> {
    obj: &'a Map<String, Value>,
    prefix: &'static str,
}

impl<'a> Fields<'a> {
    fn name(&self, f: &str) -> String {
        format!("{}{f}", self.prefix)
    }

    fn req(&self, f: &str) -> Result<String, Invalid> {
        match self.obj.get(f) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                Err(invalid(self.name(f), "is required"))
            }
            Some(_) => Err(invalid(self.name(f), "must be a string")),
        }
    }

    fn opt(&self, f: &str) -> Result<Option<String>, Invalid> {
        match self.obj.get(f) {
            None | Some(Value::Null) => Ok(None),
            // Characters, as decision 12 says, not UTF-8 bytes.
            Some(Value::String(s)) if s.chars().count() <= 128 => Ok(Some(s.clone())),
            Some(Value::String(_)) => Err(invalid(self.name(f), "is longer than 128 characters")),
            Some(_) => Err(invalid(self.name(f), "must be a string")),
        }
    }

    fn reference(&self, f: &str) -> Result<String, Invalid> {
        let s = self.req(f)?;
        check_reference(&self.name(f), &s)?;
        Ok(s)
    }

    fn new_reference(&self, f: &str) -> Result<String, Invalid> {
        let s = self.req(f)?;
        // The field's full name only when refused (issue 29: no `format!` per request).
        check_new_reference(f, &s).map_err(|e| Invalid {
            field: self.name(f),
            reason: e.reason,
        })?;
        Ok(s)
    }

    /// An amount in rupiah, whole and positive; its refusal is the switch's to answer.
    fn amount(&self, f: &str) -> command::Checked<Amount, crate::domain::AmountError> {
        Amount::positive_from_json(self.obj.get(f).unwrap_or(&Value::Null))
    }

    fn datetime(&self, f: &str) -> Result<String, Invalid> {
        let s = self.req(f)?;
        chrono::NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S").map_err(|_| {
            invalid(
                self.name(f),
                "must be Y-m-d H:i:s, e.g. 2024-12-30 23:18:01",
            )
        })?;
        Ok(s)
    }
}

/// The first characters a spreadsheet reads as a formula (OWASP "CSV injection"): a
/// reference never starts with one, so that it is a plain cell in every statement and
/// reconciliation file (decision 11).
pub const FORMULA_START: &[u8] = b"=+-@";

/// References and request ids: 1..=64 printable ASCII characters without spaces.
pub fn check_reference(field: &str, s: &str) -> Result<(), Invalid> {
    if s.len() > MAX_REF_LEN {
        return Err(invalid(
            field,
            format!("is longer than {MAX_REF_LEN} characters"),
        ));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(field, "must be printable ASCII without spaces"));
    }
    Ok(())
}

/// A reference a new payment or inquiry brings (`ref_id`): as [`check_reference`], and not
/// starting with a [`FORMULA_START`] character. References that look a payment up
/// (`payment_ref`) keep the older rule, so that a payment taken before it can still be
/// reversed; `request_id` never reaches a statement.
pub fn check_new_reference(field: &str, s: &str) -> Result<(), Invalid> {
    check_reference(field, s)?;
    if s.bytes().next().is_some_and(|b| FORMULA_START.contains(&b)) {
        return Err(invalid(
            field,
            "must not start with =, +, - or @ (a spreadsheet formula)",
        ));
    }
    Ok(())
}

fn reject(address: Option<Address>, error: Invalid, reason: &'static str) -> Rejected {
    Rejected {
        address,
        error,
        reason,
    }
}

/// Opens one request value as far as its address: JSON, an object, a `request_id`. The
/// channel is authenticated (`routing`) before [`Envelope::request`] reads the rest.
///
/// # Errors
/// A [`Rejected`] for malformed JSON or an envelope without a usable `request_id`
/// (unanswerable: dead-letter only).
pub fn open(payload: &[u8]) -> Result<Envelope, Rejected> {
    let (v, repeated) = match super::json::parse(payload) {
        Ok(v) => (v, None),
        // A repeated name (decision 17) is refused, but the request is still answered when
        // its address can be read without it: the last value of each name, as serde_json
        // reads it, and only when the repeated name is not part of the address.
        Err(JsonError::Duplicate { path })
            if !matches!(path.as_str(), "request_id" | "type" | "channel")
                && !super::json::top_level_repeat(payload)
                    .is_some_and(|n| matches!(n.as_str(), "request_id" | "type" | "channel")) =>
        {
            let v = serde_json::from_slice(payload).unwrap_or(Value::Null);
            (v, Some(duplicate(path)))
        }
        Err(JsonError::Duplicate { path }) => {
            return Err(reject(None, duplicate(path), "malformed_json"))
        }
        Err(e @ JsonError::Malformed(_)) => {
            return Err(reject(
                None,
                invalid("value", e.to_string()),
                "malformed_json",
            ))
        }
    };
    let Value::Object(obj) = v else {
        return Err(reject(
            None,
            invalid("value", "must be a JSON object"),
            "malformed_json",
        ));
    };
    let mut envelope = Envelope::from_object(obj)?;
    envelope.repeated = repeated;
    Ok(envelope)
}

/// The refusal of a name that appears twice in one object (decision 17).
pub(crate) fn duplicate(path: String) -> Invalid {
    invalid(path, super::json::REPEATED)
}

impl Envelope {
    /// An envelope already parsed into a JSON object (the HTTP door builds one).
    ///
    /// # Errors
    /// No usable `request_id` (unanswerable).
    pub fn from_object(obj: Map<String, Value>) -> Result<Envelope, Rejected> {
        let str_of = |k: &str| {
            obj.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let request_id = str_of("request_id");
        if request_id.trim().is_empty() || check_reference("request_id", &request_id).is_err() {
            return Err(reject(
                None,
                invalid("request_id", "is required: 1-64 printable characters"),
                "unaddressable",
            ));
        }
        let address = Address {
            request_id,
            kind: str_of("type"),
            channel: str_of("channel"),
        };
        Ok(Envelope {
            address,
            obj,
            repeated: None,
        })
    }

    /// The channel the envelope claims to come from (to be authenticated).
    pub fn channel(&self) -> &str {
        &self.address.channel
    }

    /// Reads the request type and body, once the channel is authenticated.
    ///
    /// # Errors
    /// An unknown type, a body that is not an object, a missing or mistyped field (named).
    pub fn request(self) -> Result<ChannelRequest, Rejected> {
        let Envelope {
            address: addr,
            obj,
            repeated,
        } = self;
        if let Some(error) = repeated {
            return Err(reject(Some(addr), error, "invalid_field"));
        }
        let request_id = addr.request_id.clone();
        let Some(kind) = RequestType::parse(&addr.kind) else {
            return Err(reject(
                Some(addr),
                invalid("type", "must be inquiry, payment, reversal or check_status"),
                "invalid_field",
            ));
        };
        let body = match obj.get("body") {
            Some(Value::Object(b)) => b,
            _ => {
                return Err(reject(
                    Some(addr),
                    invalid("body", "must be an object"),
                    "invalid_field",
                ))
            }
        };
        let f = Fields {
            obj: body,
            prefix: "body.",
        };
        let parsed = (|| -> Result<Action, Invalid> {
            Ok(match kind {
                RequestType::Inquiry => Action::Inquiry(command::Inquiry {
                    va: VaNumber::parse(&f.req("va_number")?),
                    ref_id: f.new_reference("ref_id")?,
                    terminal_id: f.opt("terminal_id")?,
                    transaction_date: Some(f.datetime("transaction_date")?),
                }),
                RequestType::Payment => Action::Pay(command::Pay {
                    va: VaNumber::parse(&f.req("va_number")?),
                    ref_id: f.new_reference("ref_id")?,
                    amount: f.amount("amount"),
                    terminal_id: f.opt("terminal_id")?,
                    transaction_date: Some(f.datetime("transaction_date")?),
                    customer_name: f.opt("customer_name")?,
                }),
                RequestType::Reversal => Action::Reverse(command::Reverse {
                    payment_ref: f.reference("payment_ref")?,
                    amount: f.amount("amount"),
                    bill_id: f.opt("bill_id")?,
                    va: f.opt("va_number")?.map(|v| VaNumber::parse(&v)),
                }),
                RequestType::CheckStatus => {
                    let va_number = match (
                        f.opt("va_number")?,
                        f.opt("prefix")?,
                        f.opt("virtual_account")?,
                    ) {
                        (Some(va), _, _) => va,
                        (None, Some(p), Some(n)) => format!("{p}{n}"),
                        _ => {
                            return Err(invalid(
                                "body.va_number",
                                "or body.prefix with body.virtual_account is required",
                            ))
                        }
                    };
                    let date = f.req("date")?;
                    NaiveDate::parse_from_str(&date, "%Y-%m-%d")
                        .map_err(|_| invalid("body.date", "must be YYYY-mm-dd"))?;
                    Action::CheckStatus(command::CheckStatus {
                        payment_ref: f.reference("payment_ref")?,
                        va: VaNumber::parse(&va_number),
                        date: Some(date),
                    })
                }
            })
        })();
        match parsed {
            Ok(action) => Ok(ChannelRequest {
                request_id,
                kind,
                command: Command {
                    channel: addr.channel,
                    action,
                },
            }),
            Err(e) => Err(reject(Some(addr), e, "invalid_field")),
        }
    }
}

impl<D: Serialize> ChannelResponse<D> {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::Routing;
    use crate::settings::Settings;
    use crate::signature;
    // Open, authenticate, read: the whole decode, as the Kafka door runs it.
    use crate::switch::decode;

    fn routing() -> Routing {
        (Settings::from_toml(&["[[channels]]\ncode = \"bank\"\napi_key = \"k\"\n"]).unwrap())
            .routing()
    }

    fn signed(v: &Value) -> (Vec<u8>, String) {
        let b = serde_json::to_vec(v).unwrap();
        let s = signature::sign(b"k", &b);
        (b, s)
    }

    /// A bill and a payment with every optional field drawn from `seed`, strings that need
    /// escaping included.
    fn drawn(seed: u64) -> (crate::domain::Bill, crate::domain::Payment) {
        use chrono::DateTime;
        let now = DateTime::parse_from_rfc3339("2026-01-10T10:00:00+07:00").unwrap();
        let words = [
            "SPP",
            "Uang \"Gedung\"",
            "back\\slash",
            "ümlaut ✓",
            "tab\there",
            "😀",
        ];
        let pick = |k: u64| words[((seed >> k) % words.len() as u64) as usize];
        let some = |k: u64| (seed >> k) & 1 == 1;
        let types = [
            "open",
            "close",
            "partial",
            "minimum",
            "maximum",
            "open_minimum",
        ];
        let mut body = serde_json::json!({
            "institution_code": "SCH01", "va_number": format!("{:010}", seed % 10_000_000_000),
            "prefix": "857499", "type": types[(seed % 6) as usize], "name": pick(3),
            "customer_name": pick(7), "total_amount": 1 + seed % 999_999_999_999,
        });
        for (k, field) in [
            (11, "invoice_number"),
            (12, "customer_email"),
            (13, "customer_phone"),
            (14, "customer_address"),
            (15, "description"),
            (16, "ext_description"),
        ] {
            if some(k) {
                body[field] = pick(k + 5).into();
            }
        }
        if some(17) {
            // Components must add up to the total.
            let total = body["total_amount"].as_u64().unwrap();
            body["components"] = serde_json::json!([{"name": pick(18), "qty": 1,
                "price": total.to_string(), "total": total}]);
        }
        if some(19) {
            body["additional_data"] =
                serde_json::json!([{"key": "k", "label": pick(20), "value": pick(21)}]);
        }
        let bill = crate::domain::NewBill::from_json(&body, now)
            .unwrap()
            .into_bill(format!("h{seed}"), now, || "c".into());
        let payment = crate::domain::Payment {
            id: format!("p-{seed}"),
            payment_ref_id: pick(22).to_owned(),
            channel: "bank".into(),
            amount: crate::domain::Amount::new(1 + seed % 1_000_000).unwrap(),
            payment_type: "payment".into(),
            status: if some(23) {
                crate::domain::bill::PaymentState::Paid
            } else {
                crate::domain::bill::PaymentState::Reversed
            },
            va_number: bill.va_number.clone(),
            bill_hash: bill.hash.clone(),
            institution_code: "SCH01".into(),
            terminal_id: some(24).then(|| pick(25).to_owned()),
            customer_name: some(26).then(|| pick(27).to_owned()),
            transaction_date: some(28).then(|| "2026-01-10 10:00:00".to_owned()),
            created_at: now,
            reversed_at: some(29).then_some(now),
        };
        (bill, payment)
    }

    /// The Kafka door's answer (`to_bytes_with`) is, byte for byte, serde_json's rendering
    /// of the same response with its `data`.
    fn answer_bytes_agree(shown: &Shown, message: &str) {
        let head = ChannelResponse {
            request_id: format!("r-{message}"),
            kind: "payment".into(),
            channel: "bank".into(),
            rc: Rc::Success,
            message: message.into(),
            timestamp: "2026-01-10T10:00:00+07:00".into(),
            data: (),
        };
        let full = ChannelResponse {
            request_id: head.request_id.clone(),
            kind: head.kind.clone(),
            channel: head.channel.clone(),
            rc: head.rc,
            message: head.message.clone(),
            timestamp: head.timestamp.clone(),
            data: IpgData(shown),
        };
        assert_eq!(
            String::from_utf8(head.to_bytes_with(IpgData(shown))).unwrap(),
            String::from_utf8(full.to_bytes()).unwrap()
        );
    }

    #[test]
    fn an_answer_without_a_payment_renders_as_serde_json_does() {
        answer_bytes_agree(&Shown::Nothing, "none");
        answer_bytes_agree(
            &Shown::Institution(serde_json::json!({"a": [1, "caf\u{e9} \"q\""], "b": null})),
            "passive",
        );
        answer_bytes_agree(
            &Shown::Retired(serde_json::json!({"payment": {"id": "p"}})),
            "retired",
        );
    }

    /// Issue 29: a payment's answer `data` spliced from the bill's text is, byte for byte,
    /// what the bill's fields then `payment` rendered from values gave, for 2,000 drawn
    /// bills and payments (escapes, unicode, every optional field present or not), and so
    /// is the whole answer (`to_bytes_with`); and the webhook job from texts is the job
    /// from values.
    #[test]
    fn a_payment_answer_from_text_is_the_answer_from_values() {
        use crate::domain::Json;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (bill, payment) = drawn(x);
            let shown = Shown::Payment {
                bill: Json::of(&bill),
                payment: Box::new(payment.clone()),
                payment_json: Json::of(&payment),
            };
            let mut old = serde_json::to_value(&bill).unwrap();
            old["payment"] = serde_json::to_value(&payment).unwrap();
            let new = serde_json::to_string(&IpgData(&shown)).unwrap();
            assert_eq!(new, serde_json::to_string(&old).unwrap());
            assert_eq!(IpgData(&shown).to_value(), old);
            answer_bytes_agree(&shown, payment.payment_ref_id.as_str());
            answer_bytes_agree(&Shown::Bill(Box::new(bill.clone())), &bill.name);
            let job = |c: Json, p: Json| {
                serde_json::to_string(&crate::protocol::WebhookJob::new(
                    "payment.received",
                    &payment.id,
                    "SCH01",
                    None,
                    &bill.hash,
                    "2026-01-10T10:00:00+07:00".into(),
                    c,
                    p,
                ))
                .unwrap()
            };
            let from_values = serde_json::json!({"id": format!("{}:received", payment.id),
                "event": "payment.received", "institution_code": "SCH01", "webhook_url": null,
                "bill_hash": bill.hash, "created_at": "2026-01-10T10:00:00+07:00",
                "body": {"id": format!("{}:received", payment.id), "event": "payment.received",
                         "context": serde_json::to_value(&bill).unwrap(),
                         "payload": serde_json::to_value(&payment).unwrap()}});
            assert_eq!(
                job(Json::of(&bill), Json::of(&payment)),
                from_values.to_string()
            );
            // A job read back from Kafka is sent on as it was queued.
            let back: crate::protocol::WebhookJob =
                serde_json::from_str(&job(Json::of(&bill), Json::of(&payment))).unwrap();
            assert_eq!(
                serde_json::to_string(&back).unwrap(),
                from_values.to_string()
            );
        }
        // A job's texts pass through as written, whitespace and escapes included (the
        // institution's signature is over the bytes sent, so they are what it checks).
        let queued = r#"{"id":"p:received","event":"payment.received","institution_code":"S","webhook_url":null,"bill_hash":"h","created_at":"t","body":{"id":"p:received","event":"payment.received","context":{ "name" : "caf\u00e9" },"payload":{"id": "p"}}}"#;
        let job: crate::protocol::WebhookJob = serde_json::from_str(queued).unwrap();
        assert_eq!(job.body.context.get(), r#"{ "name" : "caf\u00e9" }"#);
        assert_eq!(serde_json::to_string(&job).unwrap(), queued);
        // A bill that is not an object (never written by the switch) shows only `payment`.
        let (_, payment) = drawn(1);
        let shown = Shown::Payment {
            bill: Json::parse("[]").unwrap(),
            payment_json: Json::of(&payment),
            payment: Box::new(payment),
        };
        assert!(IpgData(&shown)
            .to_value()
            .as_object()
            .unwrap()
            .contains_key("payment"));
    }

    #[test]
    fn decodes_a_signed_payment() {
        let (b, s) = signed(
            &serde_json::json!({"type":"payment","channel":"bank","request_id":"r1","body":{
            "va_number":"8574991234567890","ref_id":"ref-1","amount":"100000","terminal_id":"atm",
            "transaction_date":"2024-12-30 23:18:01","customer_name":"John"}}),
        );
        let r = decode(&b, Some(&s), &routing()).unwrap();
        assert_eq!(r.kind, RequestType::Payment);
        assert_eq!(
            r.command.action.va().map(VaNumber::as_str),
            Some("8574991234567890")
        );
    }

    #[test]
    fn rejections_say_whether_they_can_be_answered() {
        let rt = routing();
        let r = decode(b"{not json", None, &rt).unwrap_err();
        assert!(r.address.is_none());
        assert_eq!(r.reason, "malformed_json");
        let (b, s) = signed(&serde_json::json!({"type":"inquiry","channel":"bank","body":{}}));
        assert_eq!(
            decode(&b, Some(&s), &rt).unwrap_err().reason,
            "unaddressable"
        );
        let (b, _) = signed(
            &serde_json::json!({"type":"inquiry","channel":"bank","request_id":"r","body":{}}),
        );
        let r = decode(&b, Some("00"), &rt).unwrap_err();
        assert_eq!(
            (r.error.rc(), r.reason),
            (Rc::BillerAuthentication, "bad_signature")
        );
        let r = decode(&b, None, &rt).unwrap_err();
        assert_eq!(r.error.rc(), Rc::BillerAuthentication);
        let (b, s) = signed(
            &serde_json::json!({"type":"inquiry","channel":"bank","request_id":"r","body":{"va_number":"8574991234567890","ref_id":"x","transaction_date":"30/12/2024"}}),
        );
        let r = decode(&b, Some(&s), &rt).unwrap_err();
        assert_eq!(r.error.rc(), Rc::BillerInvalidTransaction);
        assert!(
            r.error.to_string().contains("body.transaction_date"),
            "{}",
            r.error
        );
        let (b, s) = signed(
            &serde_json::json!({"type":"refund","channel":"bank","request_id":"r","body":{}}),
        );
        assert_eq!(
            decode(&b, Some(&s), &rt).unwrap_err().error.rc(),
            Rc::BillerInvalidTransaction
        );
        let (b, s) = signed(
            &serde_json::json!({"type":"inquiry","channel":"bank","request_id":"r","body":{"va_number":8574991234567890u64,"ref_id":"x","transaction_date":"2024-12-30 23:18:01"}}),
        );
        let r = decode(&b, Some(&s), &rt).unwrap_err();
        assert!(
            r.error.to_string().contains("body.va_number"),
            "{}",
            r.error
        );
    }

    /// Issue 22 item 9: a name repeated in the signed bytes is refused on the Kafka door,
    /// answered (the address is readable) and naming the field; a repeated address field
    /// cannot be answered.
    #[test]
    fn repeated_names_are_refused_and_named() {
        let rt = routing();
        let sign = |raw: &str| {
            (
                raw.as_bytes().to_vec(),
                signature::sign(b"k", raw.as_bytes()),
            )
        };
        let (b, s) = sign(
            r#"{"type":"payment","channel":"bank","request_id":"r1","body":{"va_number":"8574991234567890","ref_id":"ref-1","amount":1,"transaction_date":"2024-12-30 23:18:01","amount":100000}}"#,
        );
        let r = decode(&b, Some(&s), &rt).unwrap_err();
        assert_eq!(r.address.as_ref().unwrap().request_id, "r1");
        assert_eq!(
            (r.error.rc(), r.reason),
            (Rc::BillerInvalidTransaction, "invalid_field")
        );
        assert!(r.error.to_string().contains("body.amount"), "{}", r.error);
        // Unsigned, it is an authentication failure first.
        assert_eq!(
            decode(&b, Some("00"), &rt).unwrap_err().reason,
            "bad_signature"
        );
        let (b, s) = sign(
            r#"{"type":"inquiry","channel":"bank","request_id":"r1","request_id":"r2","body":{}}"#,
        );
        let r = decode(&b, Some(&s), &rt).unwrap_err();
        assert!(r.address.is_none(), "which request_id? neither is answered");
        assert_eq!(r.reason, "malformed_json");
        assert!(r.error.to_string().contains("request_id"), "{}", r.error);
    }

    /// Issue 22 item 13: a new reference never starts like a spreadsheet formula; a
    /// reference that looks a payment up keeps the older rule.
    #[test]
    fn new_references_never_start_like_a_formula() {
        let rt = routing();
        for r in ["=1+2", "+1+2", "-1+2", "@SUM(1,1)", "=HYPERLINK(\"x\")"] {
            let (b, s) = signed(
                &serde_json::json!({"type":"payment","channel":"bank","request_id":"q","body":{
                "va_number":"8574991234567890","ref_id":r,"amount":"1","transaction_date":"2024-12-30 23:18:01"}}),
            );
            let e = decode(&b, Some(&s), &rt).unwrap_err();
            assert_eq!(e.error.rc(), Rc::BillerInvalidTransaction, "{r}");
            assert!(e.error.to_string().contains("body.ref_id"), "{}", e.error);
            let (b, s) = signed(
                &serde_json::json!({"type":"reversal","channel":"bank","request_id":"q","body":{
                "payment_ref":r,"amount":"1"}}),
            );
            assert!(
                decode(&b, Some(&s), &rt).is_ok(),
                "{r}: a lookup still reads it"
            );
        }
        for r in ["A=1", "1-2", "ref@x"] {
            let (b, s) = signed(
                &serde_json::json!({"type":"inquiry","channel":"bank","request_id":"q","body":{
                "va_number":"8574991234567890","ref_id":r,"transaction_date":"2024-12-30 23:18:01"}}),
            );
            assert!(decode(&b, Some(&s), &rt).is_ok(), "{r}");
        }
    }

    #[test]
    fn check_status_takes_either_va_shape() {
        let rt = routing();
        let (b, s) = signed(
            &serde_json::json!({"type":"check_status","channel":"bank","request_id":"r","body":{
            "payment_ref":"p1","prefix":"857499","virtual_account":"1234567890","date":"2024-11-10"}}),
        );
        assert_eq!(
            decode(&b, Some(&s), &rt)
                .unwrap()
                .command
                .action
                .va()
                .map(VaNumber::as_str),
            Some("8574991234567890")
        );
    }
}
