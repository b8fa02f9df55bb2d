//! The `[[channels]]` and `[[institutions]]` lists, owned by routing: who may send
//! requests (and with which key), and which institution serves which prefixes.

use serde::Deserialize;

use crate::config::{bad, SettingsError};
use crate::domain::InstitutionMode;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSettings {
    pub code: String,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Requests per second this channel may send (absent: unlimited).
    #[serde(default)]
    pub rate_per_second: Option<f64>,
    /// Requests allowed at once above the rate (default: one second's worth).
    #[serde(default)]
    pub burst: Option<u32>,
    /// The key of `api_key_env`, read once at load (`Settings` fills it).
    #[serde(skip)]
    pub resolved_key: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstitutionSettings {
    pub code: String,
    pub name: String,
    pub prefixes: Vec<String>,
    pub mode: InstitutionMode,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub webhook_url: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    /// Requests per second routed to this institution (absent: unlimited).
    #[serde(default)]
    pub rate_per_second: Option<f64>,
    /// Requests allowed at once above the rate (default: one second's worth).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Passive only: overrides `passive.timeout_ms` for this institution.
    #[serde(
        default,
        rename = "timeout_ms",
        deserialize_with = "crate::config::opt_millis"
    )]
    pub timeout: Option<std::time::Duration>,
    /// Passive only: overrides `passive.max_concurrency` for this institution.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// Passive only: overrides `passive.response_signature` for this institution.
    #[serde(default)]
    pub response_signature: Option<crate::domain::ResponseSignature>,
    /// The key of `api_key_env`, read once at load (`Settings` fills it).
    #[serde(skip)]
    pub resolved_key: Option<String>,
}

/// A key given inline or through an environment variable (so secrets stay out of files).
pub fn resolve_key(
    key: &str,
    inline: &Option<String>,
    env: &Option<String>,
) -> Result<String, SettingsError> {
    match (inline, env) {
        (Some(_), Some(_)) => Err(bad(key, "set api_key or api_key_env, not both")),
        (Some(k), None) if !k.is_empty() => Ok(k.clone()),
        (None, Some(var)) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(v),
            _ => Err(bad(
                format!("{key}_env"),
                format!("environment variable {var} is not set"),
            )),
        },
        _ => Err(bad(key, "is required")),
    }
}

impl ChannelSettings {
    /// The channel's HMAC key (inline or from its environment variable; read at load).
    pub fn key(&self) -> String {
        match (&self.api_key, &self.resolved_key) {
            (Some(inline), _) => inline.clone(),
            (None, Some(from_env)) => from_env.clone(),
            (None, None) => resolve_key("", &self.api_key, &self.api_key_env).unwrap_or_default(),
        }
    }
}

impl InstitutionSettings {
    /// The institution's key (inline or from its environment variable; read at load).
    pub fn key(&self) -> String {
        match (&self.api_key, &self.resolved_key) {
            (Some(inline), _) => inline.clone(),
            (None, Some(from_env)) => from_env.clone(),
            (None, None) => resolve_key("", &self.api_key, &self.api_key_env).unwrap_or_default(),
        }
    }
}
