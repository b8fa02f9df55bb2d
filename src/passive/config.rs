//! The `[passive]` section: how the switch calls passive institutions and resolves payments
//! left in doubt. `timeout_ms`, `max_concurrency` and `response_signature` can be set per
//! institution as well (`[[institutions]]`), overriding these defaults.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{Section, SettingsError};
pub use crate::domain::ResponseSignature;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveSettings {
    /// One call's whole time limit (connect + send + answer). Must leave the VA lock room:
    /// at most `switch.lock_ttl_ms` - 1000.
    #[serde(rename = "timeout_ms", deserialize_with = "crate::config::millis")]
    pub timeout: Duration,
    #[serde(
        rename = "connect_timeout_ms",
        deserialize_with = "crate::config::millis"
    )]
    pub connect_timeout: Duration,
    /// Calls in flight to one institution; further calls wait (within `timeout_ms`).
    pub max_concurrency: usize,
    pub response_signature: ResponseSignature,
    /// Consecutive failed calls (timeout, refused, 5xx, garbage) that open the breaker.
    pub breaker_failures: u32,
    /// How long an open breaker answers at once before it lets one call through as a probe.
    #[serde(rename = "breaker_open_ms", deserialize_with = "crate::config::millis")]
    pub breaker_open: Duration,
    /// Runs the resolver of payments in doubt inside `ipg-switch run`.
    pub resolver: bool,
    /// How often the resolver looks for due work.
    #[serde(rename = "resolve_poll_ms", deserialize_with = "crate::config::millis")]
    pub resolve_poll: Duration,
    /// How long a payment in doubt is checked before it is reversed unconfirmed.
    #[serde(
        rename = "resolve_window_ms",
        deserialize_with = "crate::config::millis"
    )]
    pub resolve_window: Duration,
    /// Delay before each check-status of a payment in doubt (the last one repeats).
    #[serde(
        rename = "check_backoff_ms",
        deserialize_with = "crate::config::millis_list"
    )]
    pub check_backoff: Vec<Duration>,
    /// Delay before each retry of a reversal (the last one repeats; never given up).
    #[serde(
        rename = "reversal_backoff_ms",
        deserialize_with = "crate::config::millis_list"
    )]
    pub reversal_backoff: Vec<Duration>,
}

/// Its keys, named `passive.<key>`.
const SECTION: Section = Section("passive");

impl PassiveSettings {
    /// `lock_ttl`: the VA lock's lifetime, which a forward must never outlive.
    ///
    /// # Errors
    /// The first invalid key, named.
    pub fn validate(&self, lock_ttl: Duration) -> Result<(), SettingsError> {
        check_timeout("passive.timeout_ms", self.timeout, lock_ttl)?;
        if self.connect_timeout.is_zero() || self.connect_timeout > self.timeout {
            return Err(SECTION.bad("connect_timeout_ms", "must be between 1 and timeout_ms"));
        }
        if self.max_concurrency == 0 {
            return Err(SECTION.bad("max_concurrency", "must be at least 1"));
        }
        if self.breaker_failures == 0 {
            return Err(SECTION.bad("breaker_failures", "must be at least 1"));
        }
        if self.breaker_open.is_zero() {
            return Err(SECTION.bad("breaker_open_ms", "must be positive"));
        }
        if self.resolve_poll.is_zero() {
            return Err(SECTION.bad("resolve_poll_ms", "must be positive"));
        }
        if self.resolve_window.is_zero() {
            return Err(SECTION.bad("resolve_window_ms", "must be positive"));
        }
        for (key, list) in [
            ("check_backoff_ms", &self.check_backoff),
            ("reversal_backoff_ms", &self.reversal_backoff),
        ] {
            if list.is_empty() || list.iter().any(Duration::is_zero) {
                return Err(SECTION.bad(key, "must list at least one positive delay"));
            }
        }
        Ok(())
    }
}

/// A forward must end (time out) while its VA lock is still held, with a second to spare.
///
/// # Errors
/// `key` named when `timeout_ms` is 0 or too close to the lock's lifetime.
pub fn check_timeout(
    key: &str,
    timeout: Duration,
    lock_ttl: Duration,
) -> Result<(), SettingsError> {
    const SPARE: Duration = Duration::from_secs(1);
    if timeout.is_zero() || timeout.saturating_add(SPARE) > lock_ttl {
        return Err(crate::config::bad(
            key,
            format!(
                "must be between 1 and switch.lock_ttl_ms - 1000 ({}), so the VA stays \
                 locked for the whole call",
                crate::config::ms(lock_ttl.saturating_sub(SPARE))
            ),
        ));
    }
    Ok(())
}

/// Delay number `attempt` (0-based) of `list`, the last one repeating.
pub fn backoff(list: &[Duration], attempt: u32) -> Duration {
    list.get(attempt as usize)
        .or(list.last())
        .copied()
        .unwrap_or(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use crate::settings::Settings;

    fn err(overlay: &str) -> String {
        Settings::from_toml(&[overlay]).unwrap_err().to_string()
    }

    #[test]
    fn invalid_values_name_their_key() {
        assert!(err("[passive]\ntimeout_ms = 0").contains("passive.timeout_ms"));
        // The VA lock must outlive the call.
        assert!(err("[passive]\ntimeout_ms = 15000").contains("passive.timeout_ms"));
        assert!(err("[passive]\nmax_concurrency = 0").contains("passive.max_concurrency"));
        assert!(err("[passive]\ncheck_backoff_ms = []").contains("passive.check_backoff_ms"));
        assert!(err("[passive]\nreversal_backoff_ms = [0]").contains("passive.reversal_backoff_ms"));
        assert!(err("[passive]\nresponse_signature = \"maybe\"").contains("response_signature"));
        let inst = r#"
            [[institutions]]
            code = "P1"
            name = "P"
            prefixes = ["123456"]
            mode = "passive"
            api_key = "k"
            base_url = "http://127.0.0.1:9"
            timeout_ms = 20000
        "#;
        assert!(
            err(inst).contains("institutions[0].timeout_ms"),
            "{}",
            err(inst)
        );
    }

    #[test]
    fn backoff_repeats_its_last_delay() {
        use std::time::Duration;
        let l = [Duration::from_millis(100), Duration::from_millis(200)];
        let ms = |a| super::backoff(&l, a).as_millis();
        assert_eq!((ms(0), ms(1), ms(2), ms(9)), (100, 200, 200, 200));
    }
}
