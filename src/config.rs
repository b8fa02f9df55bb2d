//! Configuration vocabulary every component's settings share: the error that names the key
//! at fault, and durations typed as they are read (`*_ms` keys are whole milliseconds,
//! `*_secs` whole seconds; the key names stay as documented). Each component owns its section's type and its `validate`; `settings` only
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

/// One section's keys, for its owner's `validate`: `Section("api").bad("listen", why)`
/// is `api.listen: why`, as [`bad`] says it.
#[derive(Clone, Copy, Debug)]
pub struct Section(pub &'static str);

impl Section {
    /// `<section>.<key>: why`.
    pub fn bad(self, key: &str, why: impl std::fmt::Display) -> SettingsError {
        bad(format_args!("{}.{key}", self.0), why)
    }
}

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Serde `deserialize_with`: a `*_ms` key (whole milliseconds) as a [`Duration`].
///
/// # Errors
/// Not a whole non-negative number.
pub fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

/// Serde `deserialize_with`: an optional `*_ms` key as a [`Duration`].
///
/// # Errors
/// Not a whole non-negative number.
pub fn opt_millis<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Option::<u64>::deserialize(d).map(|o| o.map(Duration::from_millis))
}

/// Serde `serialize_with` of an optional `*_ms` key: whole milliseconds, or nothing.
///
/// # Errors
/// The serializer's own.
pub fn ser_opt_millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&ms(*d)),
        None => s.serialize_none(),
    }
}

/// Serde `deserialize_with`: a list of milliseconds (`*_backoff_ms`) as [`Duration`]s.
///
/// # Errors
/// Not a list of whole non-negative numbers.
pub fn millis_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    Vec::<u64>::deserialize(d).map(|v| v.into_iter().map(Duration::from_millis).collect())
}

/// Serde `deserialize_with`: a `*_secs` key (whole seconds) as a [`Duration`].
///
/// # Errors
/// Not a whole non-negative number.
pub fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}

/// `d` in whole milliseconds, as the `*_ms` keys say it (for messages and librdkafka).
pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
