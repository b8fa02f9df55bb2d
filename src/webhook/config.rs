//! The `[webhook]` section: how the dispatcher retries, limits and times its calls.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{Section, SettingsError};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Runs the dispatcher inside `ipg-switch run`.
    pub enabled: bool,
    /// Consumer group of the webhook topic and its retry tiers.
    pub group_id: String,
    /// Delay before each retry; one retry topic (tier) per entry, so attempts = 1 + len.
    #[serde(rename = "backoff_ms", deserialize_with = "crate::config::millis_list")]
    pub backoff: Vec<Duration>,
    /// Each delay is stretched or shrunk by up to this fraction at random.
    pub jitter: f64,
    #[serde(
        rename = "request_timeout_ms",
        deserialize_with = "crate::config::millis"
    )]
    pub request_timeout: Duration,
    #[serde(
        rename = "connect_timeout_ms",
        deserialize_with = "crate::config::millis"
    )]
    pub connect_timeout: Duration,
    /// Calls in flight to one institution.
    pub concurrency: usize,
    /// Calls per second to one institution; 0 = unlimited.
    pub rate_per_second: u32,
    /// Jobs of one institution waiting for a call slot; beyond this, new jobs of that
    /// institution go straight to a retry tier (no attempt spent) instead of holding memory.
    pub institution_queue: usize,
    /// Jobs consumed and not yet settled, across institutions; the consumer stops there.
    pub max_in_flight: usize,
    /// Lifetime of a bill's ordering gate; a safety net if a holder were lost.
    #[serde(rename = "gate_ttl_ms", deserialize_with = "crate::config::millis")]
    pub gate_ttl: Duration,
}

/// Its keys, named `webhook.<key>`.
const SECTION: Section = Section("webhook");

impl WebhookSettings {
    /// `kafka_group` is the request consumer's group, which this one must not share (the
    /// two subscribe to different topics).
    ///
    /// # Errors
    /// The first invalid key, named.
    pub fn validate(&self, kafka_group: &str) -> Result<(), SettingsError> {
        if self.group_id.trim().is_empty() {
            return Err(SECTION.bad("group_id", "is empty"));
        }
        if self.group_id == kafka_group {
            return Err(SECTION.bad("group_id", "must differ from kafka.group_id"));
        }
        if self.backoff.is_empty() || self.backoff.len() > 20 {
            return Err(SECTION.bad("backoff_ms", "needs between 1 and 20 delays"));
        }
        if self.backoff.iter().any(Duration::is_zero) {
            return Err(SECTION.bad("backoff_ms", "delays must be positive"));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(SECTION.bad("jitter", "must be between 0 and 1"));
        }
        if self.request_timeout.is_zero() {
            return Err(SECTION.bad("request_timeout_ms", "must be positive"));
        }
        if self.connect_timeout.is_zero() {
            return Err(SECTION.bad("connect_timeout_ms", "must be positive"));
        }
        if self.concurrency == 0 || self.concurrency > 1024 {
            return Err(SECTION.bad("concurrency", "must be between 1 and 1024"));
        }
        if self.institution_queue == 0 {
            return Err(SECTION.bad("institution_queue", "must be at least 1"));
        }
        if self.max_in_flight == 0 || self.max_in_flight > 1_000_000 {
            return Err(SECTION.bad("max_in_flight", "must be between 1 and 1000000"));
        }
        let longest = self
            .backoff
            .iter()
            .fold(Duration::ZERO, |a, b| a.saturating_add(*b));
        if self.gate_ttl <= longest {
            return Err(SECTION.bad(
                "gate_ttl_ms",
                "must exceed the sum of webhook.backoff_ms (a bill's gate outlives its retries)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::Settings;

    fn err(overlay: &str) -> String {
        Settings::from_toml(&[overlay]).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid_and_give_one_tier_per_delay() {
        let s = Settings::from_toml(&[]).unwrap();
        assert!(s.webhook.enabled);
        assert_eq!(
            s.webhook
                .backoff
                .iter()
                .map(|d| d.as_millis())
                .collect::<Vec<_>>(),
            [60_000, 300_000, 1_800_000, 7_200_000, 21_600_000]
        );
        assert_eq!(
            crate::webhook::retry_topics(&s.topics, &s.webhook),
            [
                "ipg.webhook.retry.1",
                "ipg.webhook.retry.2",
                "ipg.webhook.retry.3",
                "ipg.webhook.retry.4",
                "ipg.webhook.retry.5"
            ]
        );
        let all = s.all_topics();
        assert_eq!(all.len(), 14, "{all:?}");
        assert!(all.contains(&"ipg.snapshot.index".to_owned()));
        assert!(all.contains(&"ipg.passive.event".to_owned()));
        assert!(all.contains(&"ipg.journal".to_owned()));
        assert!(all.contains(&"ipg.webhook.dead_letter".to_owned()));
    }

    #[test]
    fn invalid_values_name_their_key() {
        assert!(err("[webhook]\nbackoff_ms = []").contains("webhook.backoff_ms"));
        assert!(err("[webhook]\nbackoff_ms = [1000, 0]").contains("webhook.backoff_ms"));
        assert!(err("[webhook]\njitter = 1.5").contains("webhook.jitter"));
        assert!(err("[webhook]\nconcurrency = 0").contains("webhook.concurrency"));
        assert!(err("[webhook]\ngroup_id = \"ipg-switch\"").contains("webhook.group_id"));
        assert!(err("[webhook]\ngate_ttl_ms = 1000").contains("webhook.gate_ttl_ms"));
        assert!(err("[topics]\nwebhook_dead_letter = \"ipg.dead_letter\"")
            .contains("topics.webhook_dead_letter"));
    }
}
