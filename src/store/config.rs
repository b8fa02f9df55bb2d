//! The `[redis]` section, owned by the store.

use serde::Deserialize;

use crate::config::{bad, SettingsError};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port/db`, or `rediss://...` for TLS (see `secure`).
    pub url: String,
    /// `true`: `url` is a seed node of a Redis Cluster (its nodes are found from it), and
    /// the store speaks Cluster (redis-rs's cluster client). Env `IPG__REDIS__CLUSTER`.
    #[serde(default)]
    pub cluster: bool,
    /// More seed nodes of the cluster (`redis://host:port`), tried when `url` is down: at
    /// the start, and when the client is made again after its commands kept failing (a
    /// failover it did not follow). Give one per master. Cluster only.
    #[serde(default)]
    pub seed_urls: Vec<String>,
    /// Cluster only: how many times one command follows `MOVED`/`ASK` or waits for a
    /// failover (50-500 ms apart) before its error goes back to the request, which the
    /// Kafka door retries and the HTTP door answers 503.
    #[serde(default = "default_cluster_retries")]
    pub cluster_retries: u32,
    /// Most payments of one institution committed in one script call (group commit, issue
    /// 29): those that arrive while one of its commits is in flight go together in the
    /// next (no wait when idle). `1` commits each alone.
    #[serde(default = "default_group_commit_max")]
    pub group_commit_max: usize,
    /// A slower command counts as Redis unavailable (retried).
    #[serde(
        rename = "command_timeout_ms",
        deserialize_with = "crate::config::millis"
    )]
    pub command_timeout: std::time::Duration,
    /// PEM file of the CA that signed the server's certificate (instead of the system's).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// PEM files of a client certificate and its key (mutual TLS).
    #[serde(default)]
    pub client_cert_file: Option<String>,
    #[serde(default)]
    pub client_key_file: Option<String>,
    /// ACL user (Redis 6+); the default user when unset.
    #[serde(default)]
    pub username: Option<String>,
    /// Name of the environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Never accepted (secrets stay out of files); present only to say so by name.
    #[serde(default)]
    pub password: Option<String>,
    /// The password, read once at load from `password_env`.
    #[serde(skip)]
    pub password_resolved: Option<String>,
}

fn default_cluster_retries() -> u32 {
    6
}

fn default_group_commit_max() -> usize {
    32
}

impl RedisSettings {
    /// The `[redis]` section's values, its security keys included.
    ///
    /// # Errors
    /// The first invalid key, named.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.url.is_empty() {
            return Err(bad("redis.url", "is empty"));
        }
        if !self.cluster && !self.seed_urls.is_empty() {
            return Err(bad(
                "redis.seed_urls",
                "is for a Redis Cluster: set redis.cluster = true, or remove it",
            ));
        }
        if self.cluster {
            // A cluster has only database 0 (`SELECT` is refused there).
            for (name, u) in std::iter::once(("redis.url", &self.url))
                .chain(self.seed_urls.iter().map(|u| ("redis.seed_urls", u)))
            {
                use redis::IntoConnectionInfo;
                let shown = super::redacted(u);
                match u.as_str().into_connection_info() {
                    Err(e) => return Err(bad(name, format!("{shown}: {e}"))),
                    Ok(i) if i.redis_settings().db() != 0 => {
                        return Err(bad(
                            name,
                            format!("{shown}: a Redis Cluster has only database 0"),
                        ))
                    }
                    Ok(_) => {}
                }
            }
        }
        self.validate_security()?;
        if !(1..=256).contains(&self.group_commit_max) {
            return Err(bad(
                "redis.group_commit_max",
                "must be 1 to 256 (payments in one script call, which Redis runs whole)",
            ));
        }
        if self.command_timeout.is_zero() {
            return Err(bad("redis.command_timeout_ms", "must be positive"));
        }
        Ok(())
    }
}

/// The `[retention]` section: what stays in Redis and for how long (docs/retention.md).
/// Redis holds the working set (open bills, payments of the hot window, the ledger's recent
/// tail, compact per-reference records); everything older stays in the journal only.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// A payment's full record (document, answered bill, timestamp), its places in the
    /// payment indexes, a closed bill and the ledger's entries stay in Redis this long after
    /// the payment, the closing or the entry (ms). Reversals and full check-status answers
    /// are served within it.
    #[serde(rename = "hot_window_ms", deserialize_with = "crate::config::millis")]
    pub hot_window: std::time::Duration,
    /// A payment's compact record (`id`, VA, amount, bill, when paid, whether reversed) and
    /// its reference binding stay this long after the payment (ms): a repeat of the
    /// reference is never paid again within it.
    #[serde(
        rename = "reference_window_ms",
        deserialize_with = "crate::config::millis"
    )]
    pub reference_window: std::time::Duration,
    /// How often each instance sweeps what left its window (ms).
    #[serde(
        rename = "sweep_interval_ms",
        deserialize_with = "crate::config::millis"
    )]
    pub sweep_interval: std::time::Duration,
    /// Records examined per institution per kind per sweep, at most.
    pub sweep_batch: usize,
}

impl RetentionSettings {
    /// # Errors
    /// Windows out of order, a zero interval or batch.
    pub fn validate(&self, unjournaled_after: std::time::Duration) -> Result<(), SettingsError> {
        // A change an instance left unjournaled is settled from its full record: it must
        // still be there.
        if self.hot_window <= unjournaled_after * 2 {
            return Err(bad(
                "retention.hot_window_ms",
                "must be above twice journal.unjournaled_after_ms",
            ));
        }
        if self.reference_window < self.hot_window {
            return Err(bad(
                "retention.reference_window_ms",
                "must be at least retention.hot_window_ms",
            ));
        }
        if self.sweep_interval.is_zero() || self.sweep_interval > self.hot_window {
            return Err(bad(
                "retention.sweep_interval_ms",
                "must be above 0 and at most retention.hot_window_ms",
            ));
        }
        if self.sweep_batch == 0 || self.sweep_batch > 10_000 {
            return Err(bad("retention.sweep_batch", "must be 1 to 10000"));
        }
        Ok(())
    }
}
