//! Money: a whole number of rupiah. Channels send amounts as JSON strings (`"100000"`) or
//! numbers (`100000`); both parse alike, and anything that is not a positive whole number
//! within range is refused with a reason.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A non-negative whole number of rupiah, at most [`Amount::MAX`].
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(transparent)]
#[schemars(rename = "Rupiah")]
pub struct Amount(#[schemars(range(max = 999_999_999_999_999_u64))] u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is missing")]
    Missing,
    #[error("amount must be a whole number of rupiah, got {0}")]
    NotWhole(String),
    #[error("amount must be positive")]
    NotPositive,
    #[error("amount exceeds the maximum of {max}", max = Amount::MAX.0)]
    TooLarge,
    #[error("amount must be a number or a string of digits, got {0}")]
    NotANumber(String),
}

impl Amount {
    /// The largest amount the switch accepts: fifteen nines. Above it a number no longer
    /// survives a round trip through a JSON double (2^53), so it is refused as absurd.
    pub const MAX: Amount = Amount(999_999_999_999_999);
    pub const ZERO: Amount = Amount(0);

    /// # Errors
    /// When `v` exceeds [`Amount::MAX`].
    pub fn new(v: u64) -> Result<Self, AmountError> {
        if v > Self::MAX.0 {
            return Err(AmountError::TooLarge);
        }
        Ok(Self(v))
    }

    pub fn get(self) -> u64 {
        self.0
    }

    /// Parses an amount as a channel sends it, allowing zero (bill totals may be zero).
    ///
    /// # Errors
    /// Fractions, negatives, exponents, overflow, and values that are not numbers.
    pub fn from_json(v: &Value) -> Result<Self, AmountError> {
        match v {
            Value::Null => Err(AmountError::Missing),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    Self::new(u)
                } else if n.as_i64().is_some() {
                    Err(AmountError::NotPositive)
                } else {
                    // A float: never guess at a rounding.
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    if f < 0.0 {
                        Err(AmountError::NotPositive)
                    } else if f > Self::MAX.0 as f64 {
                        Err(AmountError::TooLarge)
                    } else {
                        Err(AmountError::NotWhole(n.to_string()))
                    }
                }
            }
            Value::String(s) => Self::parse_str(s),
            other => Err(AmountError::NotANumber(type_name(other).into())),
        }
    }

    /// Parses a payment amount: like [`Amount::from_json`], and it must be above zero.
    ///
    /// # Errors
    /// As [`Amount::from_json`], and zero.
    pub fn positive_from_json(v: &Value) -> Result<Self, AmountError> {
        let a = Self::from_json(v)?;
        if a.0 == 0 {
            return Err(AmountError::NotPositive);
        }
        Ok(a)
    }

    fn parse_str(s: &str) -> Result<Self, AmountError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(AmountError::Missing);
        }
        // A refusal says what is wrong: negative and fractional only for text that is a
        // number (digits, separators, an exponent), never for "-." or "abc.1".
        let numeric = |s: &str| {
            s.bytes().any(|b| b.is_ascii_digit())
                && s.bytes().all(|b| {
                    b.is_ascii_digit() || matches!(b, b'.' | b',' | b'e' | b'E' | b'+' | b'-')
                })
        };
        if let Some(rest) = t.strip_prefix('-') {
            if numeric(rest) && rest.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return Err(AmountError::NotPositive);
            }
        }
        if t.contains(['.', ',', 'e', 'E']) && numeric(t) {
            return Err(AmountError::NotWhole(t.to_owned()));
        }
        if !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountError::NotANumber(format!("{t:?}")));
        }
        // All digits: anything longer than u64 is simply too large.
        match t.parse::<u64>() {
            Ok(v) => Self::new(v),
            Err(_) => Err(AmountError::TooLarge),
        }
    }

    pub fn checked_add(self, o: Amount) -> Option<Amount> {
        self.0.checked_add(o.0).and_then(|v| Amount::new(v).ok())
    }

    pub fn saturating_sub(self, o: Amount) -> Amount {
        Amount(self.0.saturating_sub(o.0))
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_and_numbers_parse_alike() {
        assert_eq!(Amount::from_json(&json!("100000")).unwrap().get(), 100_000);
        assert_eq!(Amount::from_json(&json!(100000)).unwrap().get(), 100_000);
        assert_eq!(Amount::from_json(&json!(" 5000 ")).unwrap().get(), 5000);
        assert_eq!(Amount::from_json(&json!(0)).unwrap().get(), 0);
    }

    #[test]
    fn refuses_what_is_not_whole_positive_rupiah() {
        assert!(matches!(
            Amount::from_json(&json!("100000.50")),
            Err(AmountError::NotWhole(_))
        ));
        assert!(matches!(
            Amount::from_json(&json!(100000.5)),
            Err(AmountError::NotWhole(_))
        ));
        assert!(matches!(
            Amount::from_json(&json!(1e5)),
            Err(AmountError::NotWhole(_))
        ));
        assert_eq!(Amount::from_json(&json!(-1)), Err(AmountError::NotPositive));
        assert_eq!(
            Amount::from_json(&json!("-100")),
            Err(AmountError::NotPositive)
        );
        assert_eq!(
            Amount::from_json(&json!("99999999999999999999999")),
            Err(AmountError::TooLarge)
        );
        assert_eq!(Amount::from_json(&json!(1e30)), Err(AmountError::TooLarge));
        assert_eq!(
            Amount::from_json(&json!(1_000_000_000_000_000u64)),
            Err(AmountError::TooLarge)
        );
        assert!(matches!(
            Amount::from_json(&json!("abc")),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            Amount::from_json(&json!(true)),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            Amount::from_json(&json!({"v": 1})),
            Err(AmountError::NotANumber(_))
        ));
        assert_eq!(Amount::from_json(&json!(null)), Err(AmountError::Missing));
        assert_eq!(
            Amount::positive_from_json(&json!("0")),
            Err(AmountError::NotPositive)
        );
    }

    #[test]
    fn only_numbers_are_called_negative_or_fractional() {
        for s in ["-.", "-", "abc.1", "E0x", "1.5kg", "e"] {
            assert!(
                matches!(
                    Amount::from_json(&json!(s)),
                    Err(AmountError::NotANumber(_))
                ),
                "{s}"
            );
        }
        assert_eq!(
            Amount::from_json(&json!("-1.5")),
            Err(AmountError::NotPositive)
        );
        assert!(matches!(
            Amount::from_json(&json!("1,000")),
            Err(AmountError::NotWhole(_))
        ));
        assert!(matches!(
            Amount::from_json(&json!("1e5")),
            Err(AmountError::NotWhole(_))
        ));
    }

    #[test]
    fn max_is_accepted_and_addition_is_bounded() {
        assert_eq!(
            Amount::from_json(&json!(999_999_999_999_999u64)).unwrap(),
            Amount::MAX
        );
        assert_eq!(Amount::MAX.checked_add(Amount(1)), None);
    }
}
