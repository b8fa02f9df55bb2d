//! The 16-digit virtual-account number: a 6-digit prefix (BCN) that names the institution,
//! then the 10-digit number of the bill within it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Length of the institution prefix (BCN).
pub const PREFIX_LEN: usize = 6;
/// Length of the bill number an institution chooses.
pub const NUMBER_LEN: usize = 10;

/// A validated 16-digit VA number.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VaNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaError {
    #[error("VA number must be {expected} digits, got {got} characters")]
    Length { expected: usize, got: usize },
    #[error("VA number must contain digits only")]
    NotDigits,
}

fn digits(s: &str, len: usize) -> Result<(), VaError> {
    if s.len() != len {
        return Err(VaError::Length {
            expected: len,
            got: s.chars().count(),
        });
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VaError::NotDigits);
    }
    Ok(())
}

/// Checks a 6-digit prefix.
///
/// # Errors
/// When `s` is not exactly six ASCII digits.
pub fn check_prefix(s: &str) -> Result<(), VaError> {
    digits(s, PREFIX_LEN)
}

/// Checks a 10-digit bill number.
///
/// # Errors
/// When `s` is not exactly ten ASCII digits.
pub fn check_number(s: &str) -> Result<(), VaError> {
    digits(s, NUMBER_LEN)
}

impl VaNumber {
    /// Parses a full 16-digit VA number.
    ///
    /// # Errors
    /// When `s` is not exactly sixteen ASCII digits.
    pub fn parse(s: &str) -> Result<Self, VaError> {
        digits(s, PREFIX_LEN + NUMBER_LEN)?;
        Ok(Self(s.to_owned()))
    }

    /// Joins a prefix and a bill number.
    ///
    /// # Errors
    /// When either part has the wrong length or is not digits.
    pub fn from_parts(prefix: &str, number: &str) -> Result<Self, VaError> {
        check_prefix(prefix)?;
        check_number(number)?;
        Ok(Self(format!("{prefix}{number}")))
    }

    pub fn prefix(&self) -> &str {
        &self.0[..PREFIX_LEN]
    }

    pub fn number(&self) -> &str {
        &self.0[PREFIX_LEN..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The VA with its middle digits hidden, for logs: `857499******7890`.
    pub fn masked(&self) -> String {
        format!("{}******{}", &self.0[..6], &self.0[12..])
    }
}

impl TryFrom<String> for VaNumber {
    type Error = VaError;
    fn try_from(s: String) -> Result<Self, VaError> {
        Self::parse(&s)
    }
}

impl From<VaNumber> for String {
    fn from(v: VaNumber) -> String {
        v.0
    }
}

impl fmt::Display for VaNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_prefix_and_number() {
        let va = VaNumber::parse("8574991234567890").unwrap();
        assert_eq!(va.prefix(), "857499");
        assert_eq!(va.number(), "1234567890");
        assert_eq!(va.masked(), "857499******7890");
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(matches!(
            VaNumber::parse("857499123456789"),
            Err(VaError::Length { .. })
        ));
        assert!(matches!(
            VaNumber::parse("85749912345678901"),
            Err(VaError::Length { .. })
        ));
        assert_eq!(VaNumber::parse("85749912345678a0"), Err(VaError::NotDigits));
        assert!(VaNumber::parse("８５７４９９１２３４５６７８９０").is_err());
        assert!(VaNumber::from_parts("85749", "12345678901").is_err());
        assert_eq!(
            VaNumber::from_parts("857499", "1234567890")
                .unwrap()
                .as_str(),
            "8574991234567890"
        );
    }
}
