//! The `[redis]` section, owned by the store.

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port/db`, or `rediss://...` for TLS (see `secure`).
    pub url: String,
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
