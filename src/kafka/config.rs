//! The `[kafka]` and `[topics]` sections, owned by the Kafka adapter.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::{bad, SettingsError};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    pub group_id: String,
    pub topic_partitions: i32,
    pub topic_replication_factor: i32,
    pub session_timeout_ms: u64,
    pub auto_commit_interval_ms: u64,
    pub linger_ms: u64,
    pub message_timeout_ms: u64,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// `plaintext` (default), `ssl`, `sasl_plaintext` or `sasl_ssl` (see `secure`).
    #[serde(default)]
    pub security_protocol: Option<String>,
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `OAUTHBEARER`.
    #[serde(default)]
    pub sasl_mechanism: Option<String>,
    #[serde(default)]
    pub sasl_username: Option<String>,
    /// Name of the environment variable holding the SASL password.
    #[serde(default)]
    pub sasl_password_env: Option<String>,
    /// Never accepted (secrets stay out of files); present only to say so by name.
    #[serde(default)]
    pub sasl_password: Option<String>,
    /// PEM file of the CA that signed the brokers' certificates.
    #[serde(default)]
    pub ssl_ca_location: Option<String>,
    /// PEM files of a client certificate and its key (mutual TLS).
    #[serde(default)]
    pub ssl_certificate_location: Option<String>,
    #[serde(default)]
    pub ssl_key_location: Option<String>,
    /// The SASL password, read once at load from `sasl_password_env`.
    #[serde(skip)]
    pub sasl_password_resolved: Option<String>,
}

impl KafkaSettings {
    /// The `[kafka]` section's values, its security keys included.
    ///
    /// # Errors
    /// The first invalid key, named.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(bad("kafka.bootstrap_servers", "is empty"));
        }
        if self.group_id.trim().is_empty() {
            return Err(bad("kafka.group_id", "is empty"));
        }
        if self.topic_partitions < 1 {
            return Err(bad("kafka.topic_partitions", "must be at least 1"));
        }
        if self.topic_replication_factor < 1 && self.topic_replication_factor != -1 {
            return Err(bad(
                "kafka.topic_replication_factor",
                "must be at least 1 (or -1 for the broker default)",
            ));
        }
        if self.session_timeout_ms < 1000 {
            return Err(bad("kafka.session_timeout_ms", "must be at least 1000"));
        }
        self.validate_guarantees()?;
        self.validate_security()
    }

    /// Refuses `kafka.properties` that would break what the journal and at-least-once
    /// delivery rest on (docs/journal.md): the switch sets these itself, and a file that
    /// says otherwise is refused by name rather than silently overridden.
    fn validate_guarantees(&self) -> Result<(), SettingsError> {
        for (k, v) in &self.properties {
            let why = match k.as_str() {
                "acks" | "request.required.acks" if !matches!(v.as_str(), "all" | "-1") => {
                    "the journal is acknowledged by all in-sync replicas: only \"all\" (or -1)"
                }
                "enable.idempotence" if v != "true" => {
                    "the producer is idempotent (no duplicate or reordered journal event on a retry)"
                }
                "enable.auto.offset.store" if v != "false" => {
                    "an offset is stored only once its request is answered (at-least-once)"
                }
                "allow.auto.create.topics" if v != "false" => {
                    "topics are created by the switch through the admin API, the journal with its retention"
                }
                "message.timeout.ms" | "delivery.timeout.ms" | "linger.ms" | "group.id"
                | "session.timeout.ms" => {
                    "it has a typed key in [kafka] (docs/configuration.md)"
                }
                _ => continue,
            };
            return Err(bad(
                &format!("kafka.properties.{k}"),
                format!("is refused: {why}"),
            ));
        }
        Ok(())
    }

    pub fn is_embedded(&self) -> bool {
        self.bootstrap_servers == "embedded"
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSettings {
    pub request: String,
    pub response: String,
    pub webhook: String,
    pub dead_letter: String,
    /// Webhook retry tiers are `<prefix>.1` .. `<prefix>.N`, N = `webhook.backoff_ms` length.
    pub webhook_retry_prefix: String,
    pub webhook_dead_letter: String,
    /// Audit trail of payments in doubt at passive institutions (every resolution step).
    pub passive_events: String,
    /// The journal: every committed change of money or bills, kept forever
    /// (`retention.ms = -1`); Redis is rebuilt from it (docs/journal.md).
    pub journal: String,
    /// Snapshots of the working set (docs/retention.md "Snapshots"): parts of each
    /// snapshot, keyed by institution. Keep at least two snapshot intervals.
    pub snapshot: String,
    /// One record per complete snapshot (where its parts are, the journal offset it
    /// starts from), kept forever (`retention.ms = -1`; small).
    pub snapshot_index: String,
}

impl TopicSettings {
    /// The `[topics]` section: every name a valid topic name, and no two settings on one
    /// topic.
    ///
    /// # Errors
    /// The first invalid or repeated topic, named.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let mut topics: std::collections::HashMap<&String, &str> = std::collections::HashMap::new();
        for (name, t) in [
            ("topics.request", &self.request),
            ("topics.response", &self.response),
            ("topics.webhook", &self.webhook),
            ("topics.dead_letter", &self.dead_letter),
            ("topics.webhook_retry_prefix", &self.webhook_retry_prefix),
            ("topics.webhook_dead_letter", &self.webhook_dead_letter),
            ("topics.passive_events", &self.passive_events),
            ("topics.journal", &self.journal),
            ("topics.snapshot", &self.snapshot),
            ("topics.snapshot_index", &self.snapshot_index),
        ] {
            if t.is_empty()
                || !t
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return Err(bad(name, format!("{t:?} is not a valid topic name")));
            }
            if let Some(first) = topics.insert(t, name) {
                return Err(bad(
                    name,
                    format!("{t:?} is also {first}: every topic setting needs its own topic"),
                ));
            }
        }
        Ok(())
    }

    pub fn all(&self) -> [&str; 4] {
        [
            &self.request,
            &self.response,
            &self.webhook,
            &self.dead_letter,
        ]
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::Settings;

    fn with_property(k: &str, v: &str) -> Result<Settings, crate::config::SettingsError> {
        Settings::from_toml(&[&format!("[kafka.properties]\n\"{k}\" = \"{v}\"\n")])
    }

    #[test]
    fn properties_that_break_the_journals_guarantees_are_refused_by_name() {
        for (k, v) in [
            ("acks", "1"),
            ("request.required.acks", "0"),
            ("enable.idempotence", "false"),
            ("enable.auto.offset.store", "true"),
            ("allow.auto.create.topics", "true"),
            ("message.timeout.ms", "1000"),
            ("linger.ms", "0"),
        ] {
            let e = with_property(k, v).unwrap_err().to_string();
            assert!(e.contains(&format!("kafka.properties.{k}")), "{k}: {e}");
            assert!(e.contains("refused"), "{k}: {e}");
        }
        for (k, v) in [
            ("acks", "all"),
            ("acks", "-1"),
            ("enable.idempotence", "true"),
            ("fetch.wait.max.ms", "10"),
            ("compression.type", "gzip"),
        ] {
            assert!(with_property(k, v).is_ok(), "{k} = {v}");
        }
    }
}
