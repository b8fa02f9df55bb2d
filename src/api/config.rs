//! The `[api]` section: where the HTTP API listens and its limits.

use serde::Deserialize;

use crate::config::{Section, SettingsError};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// `host:port`; empty turns the HTTP API off.
    pub listen: String,
    /// Bodies above this are refused (413) before being read in full.
    pub max_body_bytes: usize,
    /// The same for a bulk issuance's body (`POST /api/v2/gw/bill/batch` and
    /// `/bill/batch/jobs`).
    pub max_batch_bytes: usize,
    /// How long a bulk issuance job (its record, upload and results) is kept in Redis
    /// after it was submitted.
    #[serde(
        rename = "batch_job_ttl_secs",
        deserialize_with = "crate::config::secs"
    )]
    pub batch_job_ttl: std::time::Duration,
    /// Most bulk issuance jobs kept per institution at once (one more is 429).
    pub max_batch_jobs: usize,
    /// Lifetime of an OAuth 2.0 access token.
    #[serde(rename = "token_ttl_secs", deserialize_with = "crate::config::secs")]
    pub token_ttl: std::time::Duration,
    /// Enables Fake/Mock Payment & Reversal: moves no real money, so never in production.
    pub sandbox: bool,
    /// Longest wait for a request head, also between requests on a kept-alive connection.
    #[serde(
        rename = "header_read_timeout_ms",
        deserialize_with = "crate::config::millis"
    )]
    pub header_read_timeout: std::time::Duration,
    /// Longest wait for a request body once its head arrived (408 after it).
    #[serde(
        rename = "body_read_timeout_ms",
        deserialize_with = "crate::config::millis"
    )]
    pub body_read_timeout: std::time::Duration,
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// At shutdown, how long requests in flight may finish before the connections left
    /// are dropped.
    #[serde(
        rename = "shutdown_grace_ms",
        deserialize_with = "crate::config::millis"
    )]
    pub shutdown_grace: std::time::Duration,
}

/// Its keys, named `api.<key>`.
const SECTION: Section = Section("api");

impl ApiSettings {
    pub fn enabled(&self) -> bool {
        !self.listen.is_empty()
    }

    /// The bounds of the API's connections.
    pub fn limits(&self) -> crate::http_server::Limits {
        crate::http_server::Limits {
            header_read_timeout: self.header_read_timeout,
            max_connections: self.max_connections,
            shutdown_grace: self.shutdown_grace,
        }
    }

    /// # Errors
    /// The first invalid key, named.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.enabled() && self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(SECTION.bad(
                "listen",
                format!("{:?} is not an address like 127.0.0.1:8080", self.listen),
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(SECTION.bad("max_body_bytes", "must be between 1024 and 16777216"));
        }
        if !(self.max_body_bytes..=64 * 1024 * 1024).contains(&self.max_batch_bytes) {
            return Err(SECTION.bad(
                "max_batch_bytes",
                "must be between api.max_body_bytes and 67108864",
            ));
        }
        if !(60..=30 * 86_400).contains(&self.batch_job_ttl.as_secs()) {
            return Err(SECTION.bad("batch_job_ttl_secs", "must be between 60 and 2592000"));
        }
        if !(1..=1_000).contains(&self.max_batch_jobs) {
            return Err(SECTION.bad("max_batch_jobs", "must be between 1 and 1000"));
        }
        for (key, d) in [
            ("header_read_timeout_ms", self.header_read_timeout),
            ("body_read_timeout_ms", self.body_read_timeout),
            ("shutdown_grace_ms", self.shutdown_grace),
        ] {
            if !(100..=600_000).contains(&d.as_millis()) {
                return Err(SECTION.bad(key, "must be between 100 and 600000"));
            }
        }
        if !(1..=65_536).contains(&self.max_connections) {
            return Err(SECTION.bad("max_connections", "must be between 1 and 65536"));
        }
        // A token that outlives a day defeats rotating secrets as a way to revoke it.
        if !(1..=86_400).contains(&self.token_ttl.as_secs()) {
            return Err(SECTION.bad("token_ttl_secs", "must be between 1 and 86400"));
        }
        Ok(())
    }
}

/// The `[snap]` section: SNAP BI's door on the `[api]` listener (docs/snap.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapSettings {
    /// Where SNAP's paths start (`/snap` serves `/snap/v1.0/transfer-va/inquiry`); `""`
    /// turns the SNAP door off.
    pub path_prefix: String,
    /// Lifetime of a B2B access token (SNAP: 900 s).
    #[serde(rename = "token_ttl_secs", deserialize_with = "crate::config::secs")]
    pub token_ttl: std::time::Duration,
    /// How far `X-TIMESTAMP` may be from the switch's clock, either way.
    #[serde(
        rename = "timestamp_skew_ms",
        deserialize_with = "crate::config::millis"
    )]
    pub timestamp_skew: std::time::Duration,
}

const SNAP: Section = Section("snap");

impl SnapSettings {
    pub fn enabled(&self) -> bool {
        !self.path_prefix.is_empty()
    }

    /// # Errors
    /// The first invalid key, named.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let p = &self.path_prefix;
        if !p.is_empty()
            && (!p.starts_with('/')
                || p.ends_with('/')
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b)))
        {
            return Err(SNAP.bad(
                "path_prefix",
                "must be \"\" or a path like /snap (letters, digits, - _ . /; no trailing /)",
            ));
        }
        if !(60..=3600).contains(&self.token_ttl.as_secs()) {
            return Err(SNAP.bad("token_ttl_secs", "must be between 60 and 3600"));
        }
        if !(1_000..=3_600_000).contains(&self.timestamp_skew.as_millis()) {
            return Err(SNAP.bad("timestamp_skew_ms", "must be between 1000 and 3600000"));
        }
        Ok(())
    }
}
