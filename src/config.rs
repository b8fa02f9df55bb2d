//! Configuration vocabulary every component's settings share: the error that names the key
//! at fault. Each component owns its section's type and its `validate`; `settings` only
//! composes them.

/// A configuration that cannot work, with the key at fault named first
/// (`kafka.sasl_mechanism: must be one of ...`).
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct SettingsError(pub String);

/// `key: why`.
pub fn bad(key: impl std::fmt::Display, why: impl std::fmt::Display) -> SettingsError {
    SettingsError(format!("{key}: {why}"))
}
