//! The `[passive]` section: how the switch calls passive institutions and resolves payments
//! left in doubt. `timeout_ms`, `max_concurrency` and `response_signature` can be set per
//! institution as well (`[[institutions]]`), overriding these defaults.

use std::time::Duration;

use serde::Deserialize;

use crate::config::SettingsError;

/// What the switch requires of the `Signature` header on an institution's answers. IPG's
/// Passive Client API does not say that answers are signed, so the default accepts an
/// unsigned answer but never a wrongly signed one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseSignature {
    /// Every answer must carry a valid signature.
    Required,
    /// A signature, when present, must be valid.
    IfPresent,
    /// Answers are not checked.
    Off,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveSettings {
    /// One call's whole time limit (connect + send + answer). Must leave the VA lock room:
    /// at most `switch.lock_ttl_ms` - 1000.
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Calls in flight to one institution; further calls wait (within `timeout_ms`).
    pub max_concurrency: usize,
    pub response_signature: ResponseSignature,
    /// Consecutive failed calls (timeout, refused, 5xx, garbage) that open the breaker.
    pub breaker_failures: u32,
    /// How long an open breaker answers at once before it lets one call through as a probe.
    pub breaker_open_ms: u64,
    /// Runs the resolver of payments in doubt inside `ipg-switch run`.
    pub resolver: bool,
    /// How often the resolver looks for due work.
    pub resolve_poll_ms: u64,
    /// How long a payment in doubt is checked before it is reversed unconfirmed.
    pub resolve_window_ms: u64,
    /// Delay before each check-status of a payment in doubt (the last one repeats).
    pub check_backoff_ms: Vec<u64>,
    /// Delay before each retry of a reversal (the last one repeats; never given up).
    pub reversal_backoff_ms: Vec<u64>,
}

fn bad(key: &str, why: impl std::fmt::Display) -> SettingsError {
    SettingsError(format!("passive.{key}: {why}"))
}

impl PassiveSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// `lock_ttl_ms`: the VA lock's lifetime, which a forward must never outlive.
    ///
    /// # Errors
    /// The first invalid key, named.
    pub fn validate(&self, lock_ttl_ms: u64) -> Result<(), SettingsError> {
        check_timeout("passive.timeout_ms", self.timeout_ms, lock_ttl_ms)?;
        if self.connect_timeout_ms == 0 || self.connect_timeout_ms > self.timeout_ms {
            return Err(bad(
                "connect_timeout_ms",
                "must be between 1 and timeout_ms",
            ));
        }
        if self.max_concurrency == 0 {
            return Err(bad("max_concurrency", "must be at least 1"));
        }
        if self.breaker_failures == 0 {
            return Err(bad("breaker_failures", "must be at least 1"));
        }
        if self.breaker_open_ms == 0 {
            return Err(bad("breaker_open_ms", "must be positive"));
        }
        if self.resolve_poll_ms == 0 {
            return Err(bad("resolve_poll_ms", "must be positive"));
        }
        if self.resolve_window_ms == 0 {
            return Err(bad("resolve_window_ms", "must be positive"));
        }
        for (key, list) in [
            ("check_backoff_ms", &self.check_backoff_ms),
            ("reversal_backoff_ms", &self.reversal_backoff_ms),
        ] {
            if list.is_empty() || list.contains(&0) {
                return Err(bad(key, "must list at least one positive delay"));
            }
        }
        Ok(())
    }
}

/// A forward must end (time out) while its VA lock is still held, with a second to spare.
///
/// # Errors
/// `key` named when `timeout_ms` is 0 or too close to the lock's lifetime.
pub fn check_timeout(key: &str, timeout_ms: u64, lock_ttl_ms: u64) -> Result<(), SettingsError> {
    if timeout_ms == 0 || timeout_ms.saturating_add(1000) > lock_ttl_ms {
        return Err(SettingsError(format!(
            "{key}: must be between 1 and switch.lock_ttl_ms - 1000 ({}), so the VA stays \
             locked for the whole call",
            lock_ttl_ms.saturating_sub(1000)
        )));
    }
    Ok(())
}

/// Delay number `attempt` (0-based) of `list`, the last one repeating.
pub fn backoff(list: &[u64], attempt: u32) -> Duration {
    let i = (attempt as usize).min(list.len().saturating_sub(1));
    Duration::from_millis(list.get(i).copied().unwrap_or(1000))
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
        let l = [100, 200];
        let ms = |a| super::backoff(&l, a).as_millis();
        assert_eq!((ms(0), ms(1), ms(2), ms(9)), (100, 200, 200, 200));
    }
}
