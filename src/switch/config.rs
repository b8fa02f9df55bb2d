//! The `[switch]` section: the offset of the switch's clock, the VA lock's lifetime and
//! wait, and the per-instance bill cache.

use std::time::Duration;

use chrono::FixedOffset;
use serde::Deserialize;

use crate::config::{bad, SettingsError};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchSettings {
    /// The offset of every timestamp the switch writes (`+07:00`, WIB), parsed once.
    #[serde(rename = "utc_offset", deserialize_with = "offset_de")]
    pub offset: FixedOffset,
    /// A VA lock older than this is abandoned (its owner died).
    #[serde(rename = "lock_ttl_ms", deserialize_with = "crate::config::millis")]
    pub lock_ttl: Duration,
    /// How long an attempt waits for a VA locked by another.
    #[serde(rename = "lock_wait_ms", deserialize_with = "crate::config::millis")]
    pub lock_wait: Duration,
    /// Bills kept in memory per instance, by VA, so that a payment following its inquiry
    /// commits in one Redis round trip (two on a Redis Cluster, without a read;
    /// `hosted::BillCache`); about 2 KB each (the bill parsed and as stored); 0 keeps none.
    pub bill_cache: usize,
}

/// Serde `deserialize_with` of `switch.utc_offset`: `+HH:MM` or `-HH:MM`.
fn offset_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<FixedOffset, D::Error> {
    let s = String::deserialize(d)?;
    parse_offset(&s)
        .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an offset like +07:00")))
}

fn parse_offset(s: &str) -> Option<FixedOffset> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let secs = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
    FixedOffset::east_opt(sign * secs)
}

impl SwitchSettings {
    /// # Errors
    /// The first invalid key, named.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.lock_ttl < Duration::from_secs(1) {
            return Err(bad("switch.lock_ttl_ms", "must be at least 1000"));
        }
        if self.lock_wait.is_zero() {
            return Err(bad("switch.lock_wait_ms", "must be positive"));
        }
        Ok(())
    }
}
