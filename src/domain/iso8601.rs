//! `DateTime<FixedOffset>` written as chrono's own `Serialize` writes it (RFC 3339: seconds
//! with as many fractional digits as needed, 0, 3, 6 or 9; `Z` for a zero offset), but
//! formatted once and written as one string: chrono's impl goes through `collect_str`,
//! which passes every fragment of the text through serde_json's escaper one call at a
//! time (issue 29: ~1.7 k instructions per timestamp, three timestamps per payment).
//! Used with `#[serde(serialize_with = ...)]`; reading stays chrono's.

use chrono::{DateTime, FixedOffset, SecondsFormat};
use serde::Serializer;

/// The text chrono's `Serialize` gives `t`.
pub fn text(t: &DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `#[serde(serialize_with = "crate::domain::iso8601::serialize")]`.
///
/// # Errors
/// The serializer's.
pub fn serialize<S: Serializer>(t: &DateTime<FixedOffset>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&text(t))
}

/// `#[serde(serialize_with = "crate::domain::iso8601::option")]` (`None` is `null`).
///
/// # Errors
/// The serializer's.
pub fn option<S: Serializer>(t: &Option<DateTime<FixedOffset>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[derive(serde::Serialize)]
    struct Ours(#[serde(serialize_with = "serialize")] DateTime<FixedOffset>);

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Byte for byte chrono's rendering: any instant from 0001 to 9999, any offset
        /// (whole minutes, ±23:59, zero among them), any nanosecond (0, ms, µs, ns digits).
        #[test]
        fn writes_what_chrono_writes(
            secs in -62_135_596_800i64..253_402_300_799,
            nanos in prop_oneof![Just(0u32), (0u32..1000).prop_map(|m| m * 1_000_000), (0u32..1_000_000).prop_map(|u| u * 1000), 0u32..1_000_000_000],
            offset_min in prop_oneof![Just(0i32), Just(420), -1439i32..1440],
        ) {
            let tz = FixedOffset::east_opt(offset_min * 60).unwrap();
            let Some(t) = tz.timestamp_opt(secs, nanos).single() else { return Ok(()) };
            prop_assert_eq!(serde_json::to_string(&Ours(t)).unwrap(), serde_json::to_string(&t).unwrap());
        }
    }
}
