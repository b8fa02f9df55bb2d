//! Hosted bills and the rules of paying them: `close` (exactly what remains), `partial`
//! (anything up to what remains) and `open` (any positive amount, never closes). Also the
//! payment record, and what a reversal gives back.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::amount::{Amount, AmountError};
use super::va::{self, VaError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BillType {
    Open,
    Close,
    Partial,
    /// Paid once, at least `total_amount` (SNAP `M`).
    Minimum,
    /// Paid once, more than zero and at most `total_amount` (SNAP `L`).
    Maximum,
    /// Paid any number of times, each at least `total_amount`; stays active (SNAP `N`).
    #[serde(rename = "open_minimum")]
    OpenMinimum,
}

impl BillType {
    /// Whether the bill takes payments for as long as it is active (never `paid`).
    pub fn many_times(self) -> bool {
        matches!(self, BillType::Open | BillType::OpenMinimum)
    }
}

/// Stored status. `Expired` is never stored: it is how an active bill past its
/// `valid_until` is shown (see [`Bill::effective_status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BillStatus {
    Active,
    Paid,
    Revoked,
    Expired,
}

/// A bill line. IPG sends `qty`, `price` and `total` as numbers in requests and as strings
/// in responses; both are read, strings are written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Component {
    pub id: String,
    pub name: String,
    #[serde(
        serialize_with = "as_string",
        deserialize_with = "from_string_or_number"
    )]
    #[schemars(with = "String")]
    pub qty: u64,
    #[serde(
        serialize_with = "as_string",
        deserialize_with = "from_string_or_number"
    )]
    #[schemars(with = "String")]
    pub price: u64,
    #[serde(
        serialize_with = "as_string",
        deserialize_with = "from_string_or_number"
    )]
    #[schemars(with = "String")]
    pub total: u64,
}

fn as_string<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn from_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = Value::deserialize(d)?;
    Amount::from_json(&v)
        .map(Amount::get)
        .map_err(serde::de::Error::custom)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AdditionalData {
    pub key: String,
    pub label: String,
    #[serde(default)]
    pub value: String,
}

/// A hosted bill, as stored in Redis and as answered to channels (IPG Bill model plus
/// `institution_code` and `prefixes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Bill {
    pub hash: String,
    pub institution_code: String,
    pub va_number: String,
    pub prefixes: Vec<String>,
    #[serde(rename = "type")]
    pub bill_type: BillType,
    pub invoice_number: Option<String>,
    pub name: String,
    pub customer_name: String,
    pub customer_email: Option<String>,
    pub customer_phone: Option<String>,
    pub customer_address: Option<String>,
    pub total_amount: Amount,
    pub billed_amount: Amount,
    pub paid_amount: Amount,
    pub description: Option<String>,
    pub ext_description: Option<String>,
    #[serde(serialize_with = "super::iso8601::option")]
    pub valid_until: Option<DateTime<FixedOffset>>,
    pub status: BillStatus,
    #[serde(serialize_with = "super::iso8601::serialize")]
    pub created_at: DateTime<FixedOffset>,
    pub components: Vec<Component>,
    #[serde(default)]
    pub additional_data: Vec<AdditionalData>,
}

/// Why a bill cannot take a payment (or a reversal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillError {
    #[error("bill is already paid")]
    AlreadyPaid,
    #[error("bill has been revoked")]
    Revoked,
    #[error("bill expired at {0}")]
    Expired(String),
    #[error("{0}")]
    Amount(String),
}

impl Bill {
    /// What a channel sees: an active bill past `valid_until` shows as `expired`.
    pub fn effective_status(&self, now: DateTime<FixedOffset>) -> BillStatus {
        match (self.status, self.valid_until) {
            (BillStatus::Active, Some(until)) if now > until => BillStatus::Expired,
            (s, _) => s,
        }
    }

    /// The bill as answered at `now`: status made effective, `va_number` set to the VA the
    /// channel used (a multi-prefix bill has one VA per prefix).
    pub fn view(&self, now: DateTime<FixedOffset>, va: Option<&str>) -> Bill {
        let mut b = self.clone();
        b.status = self.effective_status(now);
        if let Some(va) = va {
            b.va_number = va.to_owned();
        }
        b
    }

    /// What is still due on a `close` or `partial` bill.
    pub fn remaining(&self) -> Amount {
        self.total_amount.saturating_sub(self.paid_amount)
    }

    /// Checks the bill can be paid now.
    ///
    /// # Errors
    /// Paid, revoked or expired bills.
    pub fn check_payable(&self, now: DateTime<FixedOffset>) -> Result<(), BillError> {
        match self.effective_status(now) {
            BillStatus::Active => Ok(()),
            BillStatus::Paid => Err(BillError::AlreadyPaid),
            BillStatus::Revoked => Err(BillError::Revoked),
            BillStatus::Expired => Err(BillError::Expired(
                self.valid_until.map(|t| t.to_rfc3339()).unwrap_or_default(),
            )),
        }
    }

    /// The bill after a payment of `amount` at `now`.
    ///
    /// # Errors
    /// When the bill is not payable or the amount breaks the bill type's rule.
    pub fn apply_payment(
        &self,
        amount: Amount,
        now: DateTime<FixedOffset>,
    ) -> Result<Bill, BillError> {
        self.check_payable(now)?;
        if amount == Amount::ZERO {
            return Err(BillError::Amount("amount must be positive".into()));
        }
        let remaining = self.remaining();
        match self.bill_type {
            BillType::Close if amount != remaining => {
                return Err(BillError::Amount(format!(
                    "close bill must be paid in full: expected {remaining}, got {amount}"
                )))
            }
            BillType::Partial if amount > remaining => {
                return Err(BillError::Amount(format!(
                    "partial payment exceeds the remaining {remaining}: got {amount}"
                )))
            }
            BillType::Minimum | BillType::OpenMinimum if amount < self.total_amount => {
                return Err(BillError::Amount(format!(
                    "this bill takes at least {}: got {amount}",
                    self.total_amount
                )))
            }
            BillType::Maximum if amount > self.total_amount => {
                return Err(BillError::Amount(format!(
                    "this bill takes at most {}: got {amount}",
                    self.total_amount
                )))
            }
            _ => {}
        }
        let paid = self.paid_amount.checked_add(amount).ok_or_else(|| {
            BillError::Amount("total paid would exceed the maximum amount".into())
        })?;
        let mut next = self.clone();
        next.paid_amount = paid;
        if !self.bill_type.many_times() {
            next.billed_amount = next.remaining();
            // A minimum or maximum bill is paid once, whatever the amount it took.
            let once = matches!(self.bill_type, BillType::Minimum | BillType::Maximum);
            if once || next.billed_amount == Amount::ZERO {
                next.billed_amount = Amount::ZERO;
                next.status = BillStatus::Paid;
            }
        }
        Ok(next)
    }

    /// The bill after a payment of `amount` is reversed: the money is owed again and a paid
    /// bill becomes payable. A revoked bill stays revoked.
    pub fn apply_reversal(&self, amount: Amount) -> Bill {
        let mut next = self.clone();
        next.paid_amount = self.paid_amount.saturating_sub(amount);
        if !self.bill_type.many_times() {
            next.billed_amount = next.remaining();
        }
        if next.status == BillStatus::Paid {
            next.status = BillStatus::Active;
        }
        next
    }
}

/// A validated "Create New Bill" request (IPG Active Client API, seed 004).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewBill {
    pub institution_code: String,
    pub number: String,
    pub prefixes: Vec<String>,
    pub bill_type: BillType,
    pub invoice_number: Option<String>,
    pub name: String,
    pub customer_name: String,
    pub customer_email: Option<String>,
    pub customer_phone: Option<String>,
    pub customer_address: Option<String>,
    pub total_amount: Amount,
    pub description: Option<String>,
    pub ext_description: Option<String>,
    pub valid_until: Option<DateTime<FixedOffset>>,
    pub components: Vec<(String, u64, u64, u64)>,
    pub additional_data: Vec<AdditionalData>,
}

/// A create-bill field that is missing or wrong; `field` names it as the request does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct NewBillError {
    pub field: String,
    pub reason: String,
}

fn field_err(field: impl Into<String>, reason: impl Into<String>) -> NewBillError {
    NewBillError {
        field: field.into(),
        reason: reason.into(),
    }
}

fn req_str(obj: &serde_json::Map<String, Value>, f: &str) -> Result<String, NewBillError> {
    match obj.get(f) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(field_err(f, "is required")),
        Some(_) => Err(field_err(f, "must be a string")),
    }
}

fn opt_str(obj: &serde_json::Map<String, Value>, f: &str) -> Result<Option<String>, NewBillError> {
    match obj.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(field_err(f, "must be a string")),
    }
}

fn amount_field(v: Option<&Value>, f: &str) -> Result<u64, NewBillError> {
    Amount::from_json(v.unwrap_or(&Value::Null))
        .map(Amount::get)
        .map_err(|e: AmountError| field_err(f, e.to_string()))
}

impl NewBill {
    /// Reads and validates a Create New Bill body. Deprecated `channel` is accepted and
    /// ignored. `now` is used to refuse a `valid_until` in the past.
    ///
    /// # Errors
    /// The first invalid field, named.
    pub fn from_json(v: &Value, now: DateTime<FixedOffset>) -> Result<NewBill, NewBillError> {
        let obj = v
            .as_object()
            .ok_or_else(|| field_err("body", "must be a JSON object"))?;
        let institution_code = req_str(obj, "institution_code")?;
        let number = req_str(obj, "va_number")?;
        va::check_number(&number).map_err(|e: VaError| {
            field_err(
                "va_number",
                e.to_string().replace("VA number", "va_number (10 digits)"),
            )
        })?;
        let prefixes = match obj.get("prefix") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|p| {
                    p.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| field_err("prefix", "must be strings"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(Value::Array(_)) => return Err(field_err("prefix", "must not be empty")),
            None | Some(Value::Null) => return Err(field_err("prefix", "is required")),
            Some(_) => {
                return Err(field_err(
                    "prefix",
                    "must be a string or an array of strings",
                ))
            }
        };
        let mut seen = Vec::with_capacity(prefixes.len());
        for p in &prefixes {
            va::check_prefix(p)
                .map_err(|_| field_err("prefix", format!("{p:?} is not a 6-digit prefix")))?;
            if seen.contains(p) {
                return Err(field_err("prefix", format!("{p} is listed twice")));
            }
            seen.push(p.clone());
        }
        let bill_type = match obj.get("type") {
            Some(Value::String(t)) => match t.as_str() {
                "close" => BillType::Close,
                "partial" => BillType::Partial,
                "open" => BillType::Open,
                "minimum" => BillType::Minimum,
                "maximum" => BillType::Maximum,
                "open_minimum" => BillType::OpenMinimum,
                other => {
                    return Err(field_err(
                        "type",
                        format!(
                            "must be close, partial, open, minimum, maximum or open_minimum, \
                             got {other:?}"
                        ),
                    ))
                }
            },
            None | Some(Value::Null) => return Err(field_err("type", "is required")),
            Some(_) => return Err(field_err("type", "must be a string")),
        };
        let name = req_str(obj, "name")?;
        let customer_name = req_str(obj, "customer_name")?;
        let total = amount_field(obj.get("total_amount"), "total_amount")?;

        let mut components = Vec::new();
        match obj.get("components") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, c) in items.iter().enumerate() {
                    let f = |k: &str| format!("components.{i}.{k}");
                    let c = c
                        .as_object()
                        .ok_or_else(|| field_err(format!("components.{i}"), "must be an object"))?;
                    let cname = req_str(c, "name").map_err(|e| field_err(f("name"), e.reason))?;
                    let qty = amount_field(c.get("qty"), &f("qty"))?;
                    let price = amount_field(c.get("price"), &f("price"))?;
                    let ctotal = amount_field(c.get("total"), &f("total"))?;
                    if qty.checked_mul(price) != Some(ctotal) {
                        return Err(field_err(
                            f("total"),
                            format!("must equal qty x price = {}", qty.saturating_mul(price)),
                        ));
                    }
                    components.push((cname, qty, price, ctotal));
                }
            }
            Some(_) => return Err(field_err("components", "must be an array")),
        }
        if !components.is_empty() {
            let sum = components
                .iter()
                .try_fold(0u64, |acc, c| acc.checked_add(c.3));
            if sum != Some(total) {
                return Err(field_err(
                    "total_amount",
                    format!(
                        "must equal the sum of component totals ({})",
                        sum.map_or("overflow".into(), |s| s.to_string())
                    ),
                ));
            }
        }
        if total == 0 && bill_type != BillType::Open {
            return Err(field_err(
                "total_amount",
                "must be positive for every bill type but open",
            ));
        }

        let valid_until = match obj.get("valid_until") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                let t = DateTime::parse_from_rfc3339(s).map_err(|_| {
                    field_err("valid_until", "must be an ISO 8601 date-time with offset")
                })?;
                if t <= now {
                    return Err(field_err("valid_until", "must be in the future"));
                }
                Some(t)
            }
            Some(_) => return Err(field_err("valid_until", "must be a string")),
        };
        let additional_data = match obj.get("additional_data") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| field_err("additional_data", e.to_string()))?,
        };

        Ok(NewBill {
            institution_code,
            number,
            prefixes,
            bill_type,
            invoice_number: opt_str(obj, "invoice_number")?,
            name,
            customer_name,
            customer_email: opt_str(obj, "customer_email")?,
            customer_phone: opt_str(obj, "customer_phone")?,
            customer_address: opt_str(obj, "customer_address")?,
            total_amount: Amount::new(total)
                .map_err(|e| field_err("total_amount", e.to_string()))?,
            description: opt_str(obj, "description")?,
            ext_description: opt_str(obj, "ext_description")?,
            valid_until,
            components,
            additional_data,
        })
    }

    /// Whether `b` is the bill this very request issued (a retry of its create): not
    /// revoked, on its VA, with the same invoice number, amounts, type, expiry, name and
    /// customer; a request without an invoice number only while `b` is still active.
    /// Anything else on the VA is another bill.
    pub fn issued_as(&self, b: &Bill) -> bool {
        // Without an invoice number, last term's paid bill of the same name and amount is
        // not this row's: only a bill still active is (give invoice numbers to make a re-run
        // after payments idempotent).
        (self.invoice_number.is_some() || b.status == BillStatus::Active)
            && b.status != BillStatus::Revoked
            && b.institution_code == self.institution_code
            && b.prefixes == self.prefixes
            && b.va_number == format!("{}{}", self.prefixes[0], self.number)
            && b.invoice_number == self.invoice_number
            && b.total_amount == self.total_amount
            && b.bill_type == self.bill_type
            && b.valid_until == self.valid_until
            && b.name == self.name
            && b.customer_name == self.customer_name
    }

    /// The stored bill, given its new `hash` and component ids.
    pub fn into_bill(
        self,
        hash: String,
        now: DateTime<FixedOffset>,
        mut new_id: impl FnMut() -> String,
    ) -> Bill {
        let va_number = format!("{}{}", self.prefixes[0], self.number);
        Bill {
            hash,
            institution_code: self.institution_code,
            va_number,
            prefixes: self.prefixes,
            bill_type: self.bill_type,
            invoice_number: self.invoice_number,
            name: self.name,
            customer_name: self.customer_name,
            customer_email: self.customer_email,
            customer_phone: self.customer_phone,
            customer_address: self.customer_address,
            total_amount: self.total_amount,
            billed_amount: self.total_amount,
            paid_amount: Amount::ZERO,
            description: self.description,
            ext_description: self.ext_description,
            valid_until: self.valid_until,
            status: BillStatus::Active,
            created_at: now,
            components: self
                .components
                .into_iter()
                .map(|(name, qty, price, total)| Component {
                    id: new_id(),
                    name,
                    qty,
                    price,
                    total,
                })
                .collect(),
            additional_data: self.additional_data,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaymentState {
    Paid,
    Reversed,
}

/// A payment on a hosted bill (IPG Payment Schema plus the fields the switch needs to find
/// and reverse it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Payment {
    pub id: String,
    pub payment_ref_id: String,
    pub channel: String,
    pub amount: Amount,
    /// Always `payment`: a reversal changes `status`, it is not a payment of its own.
    #[serde(rename = "type")]
    pub payment_type: String,
    pub status: PaymentState,
    pub va_number: String,
    pub bill_hash: String,
    pub institution_code: String,
    pub terminal_id: Option<String>,
    pub customer_name: Option<String>,
    pub transaction_date: Option<String>,
    #[serde(serialize_with = "super::iso8601::serialize")]
    pub created_at: DateTime<FixedOffset>,
    #[serde(serialize_with = "super::iso8601::option")]
    pub reversed_at: Option<DateTime<FixedOffset>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2026-01-10T10:00:00+07:00").unwrap()
    }

    fn bill(t: BillType, total: u64) -> Bill {
        NewBill::from_json(
            &json!({"institution_code":"SCH01","va_number":"1234567890","prefix":"857499",
                    "type":t,"name":"SPP","customer_name":"A","total_amount":total}),
            now(),
        )
        .unwrap()
        .into_bill("h".into(), now(), || "c".into())
    }

    fn amt(v: u64) -> Amount {
        Amount::new(v).unwrap()
    }

    #[test]
    fn close_bill_takes_exactly_the_remaining_amount() {
        let b = bill(BillType::Close, 100_000);
        assert!(matches!(
            b.apply_payment(amt(50_000), now()),
            Err(BillError::Amount(_))
        ));
        assert!(matches!(
            b.apply_payment(amt(100_001), now()),
            Err(BillError::Amount(_))
        ));
        let paid = b.apply_payment(amt(100_000), now()).unwrap();
        assert_eq!(paid.status, BillStatus::Paid);
        assert_eq!(paid.billed_amount, Amount::ZERO);
        assert_eq!(
            paid.apply_payment(amt(1), now()),
            Err(BillError::AlreadyPaid)
        );
    }

    #[test]
    fn partial_bill_closes_when_nothing_remains() {
        let b = bill(BillType::Partial, 100_000);
        let b = b.apply_payment(amt(60_000), now()).unwrap();
        assert_eq!(
            (b.status, b.paid_amount, b.billed_amount),
            (BillStatus::Active, amt(60_000), amt(40_000))
        );
        assert!(matches!(
            b.apply_payment(amt(40_001), now()),
            Err(BillError::Amount(_))
        ));
        let b = b.apply_payment(amt(40_000), now()).unwrap();
        assert_eq!(b.status, BillStatus::Paid);
    }

    #[test]
    fn a_row_without_invoice_number_matches_only_an_active_bill() {
        let body = json!({"institution_code":"SCH01","va_number":"1234567890","prefix":"857499",
            "type":"close","name":"SPP","customer_name":"A","total_amount":100000});
        let nb = NewBill::from_json(&body, now()).unwrap();
        let b = nb.clone().into_bill("h".into(), now(), || "c".into());
        assert!(nb.issued_as(&b));
        let paid = b
            .apply_payment(Amount::new(100_000).unwrap(), now())
            .unwrap();
        assert!(
            !nb.issued_as(&paid),
            "last term's paid bill is not this row's"
        );
        let mut with_invoice = body.clone();
        with_invoice["invoice_number"] = json!("INV-1");
        let nb = NewBill::from_json(&with_invoice, now()).unwrap();
        let paid = nb
            .clone()
            .into_bill("h".into(), now(), || "c".into())
            .apply_payment(Amount::new(100_000).unwrap(), now())
            .unwrap();
        assert!(nb.issued_as(&paid), "the same invoice, paid since");
    }

    #[test]
    fn minimum_maximum_and_open_minimum_bills_keep_their_bounds() {
        let now = now();
        let m = bill(BillType::Minimum, 100_000);
        assert!(matches!(
            m.apply_payment(Amount::new(99_999).unwrap(), now),
            Err(BillError::Amount(_))
        ));
        let paid = m.apply_payment(Amount::new(150_000).unwrap(), now).unwrap();
        assert_eq!(
            (paid.status, paid.billed_amount, paid.paid_amount.get()),
            (BillStatus::Paid, Amount::ZERO, 150_000)
        );
        assert_eq!(
            paid.apply_payment(Amount::new(100_000).unwrap(), now),
            Err(BillError::AlreadyPaid)
        );
        let back = paid.apply_reversal(Amount::new(150_000).unwrap());
        assert_eq!(
            (back.status, back.billed_amount.get()),
            (BillStatus::Active, 100_000)
        );

        let l = bill(BillType::Maximum, 100_000);
        assert!(matches!(
            l.apply_payment(Amount::new(100_001).unwrap(), now),
            Err(BillError::Amount(_))
        ));
        let paid = l.apply_payment(Amount::new(40_000).unwrap(), now).unwrap();
        assert_eq!(
            (paid.status, paid.billed_amount),
            (BillStatus::Paid, Amount::ZERO),
            "paid once"
        );

        let n = bill(BillType::OpenMinimum, 100_000);
        assert!(matches!(
            n.apply_payment(Amount::new(1).unwrap(), now),
            Err(BillError::Amount(_))
        ));
        let once = n.apply_payment(Amount::new(100_000).unwrap(), now).unwrap();
        let twice = once
            .apply_payment(Amount::new(250_000).unwrap(), now)
            .unwrap();
        assert_eq!(
            (
                twice.status,
                twice.paid_amount.get(),
                twice.billed_amount.get()
            ),
            (BillStatus::Active, 350_000, 100_000)
        );
    }

    #[test]
    fn open_bill_takes_any_positive_amount_and_stays_active() {
        let b = bill(BillType::Open, 0);
        let b = b
            .apply_payment(amt(7), now())
            .unwrap()
            .apply_payment(amt(1_000_000), now())
            .unwrap();
        assert_eq!(
            (b.status, b.paid_amount),
            (BillStatus::Active, amt(1_000_007))
        );
        assert!(matches!(
            b.apply_payment(Amount::ZERO, now()),
            Err(BillError::Amount(_))
        ));
        let full = Bill {
            paid_amount: Amount::MAX,
            ..b
        };
        assert!(matches!(
            full.apply_payment(amt(1), now()),
            Err(BillError::Amount(_))
        ));
    }

    #[test]
    fn revoked_and_expired_bills_are_not_payable() {
        let mut b = bill(BillType::Close, 10);
        b.valid_until = Some(DateTime::parse_from_rfc3339("2026-01-10T09:59:59+07:00").unwrap());
        assert_eq!(b.effective_status(now()), BillStatus::Expired);
        assert!(matches!(
            b.apply_payment(amt(10), now()),
            Err(BillError::Expired(_))
        ));
        b.valid_until = None;
        b.status = BillStatus::Revoked;
        assert_eq!(b.apply_payment(amt(10), now()), Err(BillError::Revoked));
    }

    #[test]
    fn reversal_makes_a_paid_bill_payable_again() {
        let b = bill(BillType::Close, 10)
            .apply_payment(amt(10), now())
            .unwrap();
        let r = b.apply_reversal(amt(10));
        assert_eq!(
            (r.status, r.paid_amount, r.billed_amount),
            (BillStatus::Active, Amount::ZERO, amt(10))
        );
    }

    #[test]
    fn create_bill_validation_names_the_field() {
        let base = json!({"institution_code":"SCH01","va_number":"1234567890","prefix":["857499","857500"],
            "type":"partial","name":"SPP","customer_name":"A","total_amount":"150000",
            "components":[{"name":"SPP","qty":1,"price":100000,"total":100000},{"name":"Buku","qty":"2","price":"25000","total":"50000"}],
            "valid_until":"2026-02-01T00:00:00+07:00"});
        let nb = NewBill::from_json(&base, now()).unwrap();
        assert_eq!(nb.prefixes, vec!["857499", "857500"]);
        let err = |patch: Value| {
            let mut v = base.clone();
            for (k, val) in patch.as_object().unwrap() {
                v[k] = val.clone();
            }
            NewBill::from_json(&v, now()).unwrap_err().field
        };
        assert_eq!(err(json!({"va_number":"123"})), "va_number");
        assert_eq!(err(json!({"prefix":"85749"})), "prefix");
        assert_eq!(err(json!({"prefix":["857499","857499"]})), "prefix");
        assert_eq!(err(json!({"type":"weekly"})), "type");
        assert_eq!(err(json!({"total_amount":"150001"})), "total_amount");
        assert_eq!(err(json!({"total_amount":1.5})), "total_amount");
        assert_eq!(err(json!({"customer_name":null})), "customer_name");
        assert_eq!(
            err(json!({"valid_until":"2025-01-01T00:00:00+07:00"})),
            "valid_until"
        );
        assert_eq!(err(json!({"valid_until":"tomorrow"})), "valid_until");
        assert_eq!(
            err(json!({"components":[{"name":"x","qty":2,"price":5,"total":11}]})),
            "components.0.total"
        );
    }

    #[test]
    fn components_serialize_as_strings_like_ipg() {
        let c = Component {
            id: "i".into(),
            name: "n".into(),
            qty: 1,
            price: 100000,
            total: 100000,
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            json!({"id":"i","name":"n","qty":"1","price":"100000","total":"100000"})
        );
        let back: Component = serde_json::from_value(
            json!({"id":"i","name":"n","qty":1,"price":"100000","total":100000}),
        )
        .unwrap();
        assert_eq!(back, c);
    }
}
