//! The `[kafka]` and `[topics]` sections, owned by the Kafka adapter.

use std::collections::BTreeMap;

use serde::Deserialize;

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
}

impl TopicSettings {
    pub fn all(&self) -> [&str; 4] {
        [
            &self.request,
            &self.response,
            &self.webhook,
            &self.dead_letter,
        ]
    }
}
