//! What the switch answers to a channel request, and the reference binding that makes a
//! `(channel, reference)` mean one transaction.

use serde_json::value::RawValue;
use serde_json::Value;

use super::{Amount, Bill, Payment, Rc, VaNumber};

/// A JSON document kept as the text it was written as (a bill view, a payment): serialized
/// once where it is made, then copied into Redis, the journal, the webhook job and the
/// answer without being parsed or written again (docs/capacity.md, issue 29). Compared by
/// its text.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
#[schemars(inline)]
pub struct Json(#[schemars(with = "Value")] pub Box<RawValue>);

impl Json {
    /// `value` written as JSON text.
    ///
    /// # Panics
    /// Never for the switch's own types (their serialization cannot fail).
    pub fn of<T: serde::Serialize + ?Sized>(value: &T) -> Json {
        Json(serde_json::value::to_raw_value(value).expect("a switch type always serializes"))
    }

    /// The stored text `text`, checked to be JSON.
    ///
    /// # Errors
    /// `text` is not JSON.
    pub fn parse(text: &str) -> Result<Json, serde_json::Error> {
        RawValue::from_string(text.to_owned()).map(Json)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The document as a JSON value (for the slower doors that edit it).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.get()).unwrap_or_default()
    }
}

impl PartialEq for Json {
    fn eq(&self, other: &Json) -> bool {
        self.get() == other.get()
    }
}

impl From<Value> for Json {
    fn from(v: Value) -> Json {
        Json::of(&v)
    }
}

/// What the switch answers, in no dialect: the response code, a message, when (ISO 8601,
/// the switch's offset), what the answer shows, and the webhook job to queue with it
/// (already JSON). Each door renders it in its own dialect (IPG's envelope `rc`, `message`,
/// `timestamp`, `data`: `protocol::channel::IpgData`).
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub rc: Rc,
    pub message: String,
    pub timestamp: String,
    pub shown: Shown,
    pub webhook: Option<QueuedWebhook>,
}

/// What an answer shows besides its code.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Shown {
    /// Nothing (IPG: `data: null`).
    #[default]
    Nothing,
    /// A hosted bill as its VA sees it now: an inquiry, or a refusal that shows the bill
    /// (IPG: `data: [bill]`).
    Bill(Box<Bill>),
    /// A hosted bill (as recorded with the payment: [`Bill`]'s JSON) and the payment made,
    /// reversed or asked after (IPG: the bill's fields with `payment`).
    /// `payment_json` is the payment's JSON text, as written once.
    Payment {
        bill: Json,
        payment: Box<Payment>,
        payment_json: Json,
    },
    /// A passive institution's own answer data (IPG Passive Client API), with the switch's
    /// record of a forwarded payment under `payment` where there is one. Passed through.
    Institution(Value),
    /// A payment past the hot window, as its compact record keeps it
    /// (`{"payment": {...}}`, docs/retention.md).
    Retired(Value),
}

/// A webhook job for `topics.webhook`, keyed by bill hash so one bill's events stay in order.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedWebhook {
    pub key: String,
    pub event: &'static str,
    pub job: String,
}

/// The prefix of a binding a reversal left ([`Binding::void_record`]).
const VOID: &str = "void|";

/// What a `(channel, reference)` was first used for: institution, VA and amount (decision
/// 8: one reference is one transaction; a later use with another VA or amount is refused).
/// Stored as `<institution>|<va>|<amount>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub institution: String,
    pub va_number: String,
    pub amount: Amount,
}

impl Binding {
    pub fn new(institution: &str, va: &VaNumber, amount: Amount) -> Binding {
        Binding {
            institution: institution.to_owned(),
            va_number: va.to_string(),
            amount,
        }
    }

    /// The stored form, `<institution>|<va>|<amount>`.
    pub fn to_record(&self) -> String {
        format!("{}|{}|{}", self.institution, self.va_number, self.amount)
    }

    /// The binding a reversal leaves when it finds no payment under `(channel, reference)`
    /// (decision 9): `void|<institution>|<va>|<amount>`. It is never a payment's own
    /// binding, so a payment that comes later with that reference is refused.
    pub fn void_record(&self) -> String {
        format!("{VOID}{}", self.to_record())
    }

    /// Whether a stored binding is a reversal's [`Binding::void_record`].
    pub fn is_void(record: &str) -> bool {
        record.starts_with(VOID)
    }

    /// A stored void binding's institution, VA and amount; `None` for anything else.
    pub fn parse_void(record: &str) -> Option<Binding> {
        record.strip_prefix(VOID).and_then(Binding::parse)
    }

    /// A stored binding; `None` for anything else.
    pub fn parse(record: &str) -> Option<Binding> {
        let mut parts = record.split('|');
        let (institution, va_number, amount) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || institution.is_empty() || va_number.is_empty() {
            return None;
        }
        Some(Binding {
            institution: institution.to_owned(),
            va_number: va_number.to_owned(),
            amount: amount
                .parse::<u64>()
                .ok()
                .and_then(|a| Amount::new(a).ok())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_round_trips_and_nothing_else_parses() {
        let b = Binding::new(
            "SCH01",
            &VaNumber::parse("8574991234567890").unwrap(),
            Amount::new(150_000).unwrap(),
        );
        assert_eq!(b.to_record(), "SCH01|8574991234567890|150000");
        assert_eq!(Binding::parse(&b.to_record()), Some(b));
        for bad in [
            "",
            "a|b",
            "a|b|c",
            "a|b|1|2",
            "|8574991234567890|1",
            "a|b|-1",
        ] {
            assert_eq!(Binding::parse(bad), None, "{bad:?}");
        }
    }
}
