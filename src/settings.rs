//! Typed configuration. Precedence, lowest first: the built-in `config/default.toml` <
//! `config/{IPG_ENV}.toml` (when `IPG_ENV` is set) < the `--config` file < `IPG__SECTION__KEY`
//! environment variables. Unknown keys and invalid values stop start-up with the key named.

use std::path::Path;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

use crate::config::bad;
pub use crate::config::SettingsError;
pub use crate::domain::InstitutionMode;
pub use crate::kafka::{KafkaSettings, TopicSettings};
pub use crate::ops::MetricsSettings;
pub use crate::pipeline::PipelineSettings;
pub use crate::routing::{ChannelSettings, InstitutionSettings};
pub use crate::store::RedisSettings;
pub use crate::switch::SwitchSettings;

/// The built-in defaults: `config/default.toml`, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub redis: RedisSettings,
    pub topics: TopicSettings,
    pub pipeline: PipelineSettings,
    pub switch: SwitchSettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
    pub webhook: crate::webhook::WebhookSettings,
    pub api: crate::api::ApiSettings,
    pub snap: crate::api::SnapSettings,
    pub passive: crate::passive::PassiveSettings,
    pub journal: crate::journal::JournalSettings,
    pub retention: crate::store::config::RetentionSettings,
    pub statement: crate::statement::StatementSettings,
    pub reconcile: crate::statement::ReconcileSettings,
    #[serde(default)]
    pub channels: Vec<ChannelSettings>,
    #[serde(default)]
    pub institutions: Vec<InstitutionSettings>,
}

impl Settings {
    /// Every topic the switch creates (`ensure_topics`, the embedded broker): every
    /// `topics.*` setting (request, response, webhook, dead_letter, webhook_dead_letter,
    /// passive_events) plus one webhook retry tier per `webhook.backoff_ms` entry.
    pub fn all_topics(&self) -> Vec<String> {
        let mut all: Vec<String> = self.topics.all().iter().map(|t| (*t).to_owned()).collect();
        all.extend(crate::webhook::retry_topics(&self.topics, &self.webhook));
        all.push(self.topics.webhook_dead_letter.clone());
        all.push(self.topics.passive_events.clone());
        all.push(self.topics.journal.clone());
        all.push(self.topics.snapshot.clone());
        all.push(self.topics.snapshot_index.clone());
        all
    }

    /// The journal's readers as configured, reaching the broker at `bootstrap`.
    pub fn journal(&self, bootstrap: &str) -> crate::journal::Journal {
        crate::journal::Journal {
            bootstrap: bootstrap.to_owned(),
            kafka: self.kafka.clone(),
            topic: self.topics.journal.clone(),
            snapshot_topic: self.topics.snapshot.clone(),
            snapshot_index_topic: self.topics.snapshot_index.clone(),
            institutions: self.institutions.iter().map(|i| i.code.clone()).collect(),
            settings: self.journal.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

impl LogSettings {
    /// # Errors
    /// `log.level` that is not a tracing filter.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if tracing_subscriber::EnvFilter::try_new(&self.level).is_err() {
            return Err(bad(
                "log.level",
                format!("{:?} is not a valid filter", self.level),
            ));
        }
        Ok(())
    }
}

impl Settings {
    /// Loads the layered configuration for the daemon and the CLI.
    ///
    /// # Errors
    /// A file that cannot be read or parsed, an unknown key, an invalid value.
    pub fn load(path: Option<&Path>) -> Result<Settings, SettingsError> {
        let mut b = Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Ok(env) = std::env::var("IPG_ENV") {
            b = b.add_source(File::with_name(&format!("config/{env}.toml")).required(true));
        }
        if let Ok(env) = std::env::var("IPG_ENV") {
            if let Ok(text) = std::fs::read_to_string(format!("config/{env}.toml")) {
                check_types(&text)?;
            }
        }
        if let Some(p) = path {
            if let Ok(text) = std::fs::read_to_string(p) {
                check_types(&text)?;
            }
            b = b.add_source(File::from(p).format(FileFormat::Toml).required(true));
        }
        b = b.add_source(
            Environment::with_prefix("IPG")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        Self::finish(b.build())
    }

    /// Defaults with TOML overlays, no files and no environment: for tests and tools.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn from_toml(overlays: &[&str]) -> Result<Settings, SettingsError> {
        let mut b = Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        for o in overlays {
            check_types(o)?;
            b = b.add_source(File::from_str(o, FileFormat::Toml));
        }
        Self::finish(b.build())
    }

    fn finish(built: Result<Config, config::ConfigError>) -> Result<Settings, SettingsError> {
        let cfg = built.map_err(|e| SettingsError(e.to_string()))?;
        let mut s: Settings = cfg
            .try_deserialize()
            .map_err(|e| SettingsError(e.to_string()))?;
        s.validate()?;
        s.resolve_secrets();
        Ok(s)
    }

    /// Reads every secret named by an `*_env` key once, now (validate has checked each is
    /// set), so the running switch never reads the environment again.
    fn resolve_secrets(&mut self) {
        for c in &mut self.channels {
            c.resolved_key = c.api_key_env.as_ref().and_then(|v| std::env::var(v).ok());
            if let Some(snap) = &mut c.snap {
                snap.resolve();
            }
        }
        for i in &mut self.institutions {
            i.resolved_key = i.api_key_env.as_ref().and_then(|v| std::env::var(v).ok());
            if let Some(snap) = &mut i.snap {
                snap.resolve();
            }
        }
        self.kafka.sasl_password_resolved = self
            .kafka
            .sasl_password_env
            .as_ref()
            .and_then(|v| std::env::var(v).ok());
        self.redis.password_resolved = self
            .redis
            .password_env
            .as_ref()
            .and_then(|v| std::env::var(v).ok());
    }

    /// What a switch that serves requests needs beyond valid values: at least one channel
    /// to take requests from and one institution to route them to (`run`, `check-config`).
    ///
    /// # Errors
    /// The missing list, named.
    pub fn check_serving(&self) -> Result<(), SettingsError> {
        if self.channels.is_empty() {
            return Err(bad(
                "channels",
                "no [[channels]] configured: no bank could send a request",
            ));
        }
        if self.institutions.is_empty() {
            return Err(bad(
                "institutions",
                "no [[institutions]] configured: no VA could be routed",
            ));
        }
        Ok(())
    }

    /// Checks every value a bad deployment could get wrong: each section by its owner,
    /// then the rules across sections (a passive timeout within the VA lock's lifetime, the
    /// webhook group apart from the request group).
    ///
    /// # Errors
    /// The first invalid key, named.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.kafka.validate()?;
        self.topics.validate()?;
        self.redis.validate()?;
        self.pipeline.validate()?;
        self.switch.validate()?;
        self.metrics.validate()?;
        self.webhook.validate(&self.kafka.group_id)?;
        self.api.validate()?;
        self.snap.validate()?;
        self.passive.validate(self.switch.lock_ttl)?;
        self.journal.validate()?;
        self.retention.validate(self.journal.unjournaled_after)?;
        self.statement.validate()?;
        self.log.validate()?;
        crate::routing::config::validate(&self.channels, &self.institutions)?;
        for (i, inst) in self.institutions.iter().enumerate() {
            if let Some(t) = inst.timeout {
                crate::passive::config::check_timeout(
                    &format!("institutions[{i}].timeout_ms"),
                    t,
                    self.switch.lock_ttl,
                )?;
            }
        }
        Ok(())
    }

    /// A channel's HMAC key, resolved (validated at load).
    /// What the webhook dispatcher and `webhook replay` take from the configuration.
    pub fn webhook_wiring(&self) -> crate::webhook::Wiring {
        crate::webhook::Wiring {
            kafka: self.kafka.clone(),
            redis: self.redis.clone(),
            topics: self.topics.clone(),
            webhook: self.webhook.clone(),
            routing: std::sync::Arc::new(self.routing()),
            retry_initial: self.pipeline.retry_initial,
            retry_max: self.pipeline.retry_max,
            all_topics: self.all_topics(),
            kept_forever: vec![
                self.topics.journal.clone(),
                self.topics.snapshot_index.clone(),
            ],
        }
    }

    /// The routing tables of the configured channels and institutions.
    pub fn routing(&self) -> crate::routing::Routing {
        crate::routing::Routing::new(&self.channels, &self.institutions)
    }

    pub fn channel_key(c: &ChannelSettings) -> String {
        c.key()
    }

    /// The institution's key, resolved (validated at load).
    pub fn institution_key(inst: &InstitutionSettings) -> String {
        inst.key()
    }
}

/// The TOML type of `v`, as an operator reads it.
fn toml_type(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "a whole number",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "true or false",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a table",
    }
}

/// Refuses a configuration file whose values have another TOML type than the built-in
/// defaults give the same key: the `config` crate would coerce them (`sandbox = "yes"`
/// into `true`, `lanes = 1.5` into 1). A whole number is accepted where a number is
/// expected. Environment variables are text by nature and stay coerced. Keys the defaults
/// do not have are left to the typed deserialization (unknown keys are refused there).
///
/// # Errors
/// The first key of another type, named.
fn check_types(text: &str) -> Result<(), SettingsError> {
    let Ok(file) = text.parse::<toml::Table>() else {
        return Ok(()); // A syntax error: the config crate reports it with its position.
    };
    let mut defaults: toml::Table = DEFAULT_TOML
        .parse()
        .expect("the built-in config/default.toml is valid TOML");
    // The defaults list no channel or institution: their fields' types come from the
    // structs themselves (`routing::config::list_types`).
    defaults.extend(crate::routing::config::list_types());
    check_table(&defaults, &file, "")
}

fn check_table(
    defaults: &toml::Table,
    file: &toml::Table,
    prefix: &str,
) -> Result<(), SettingsError> {
    use toml::Value as V;
    for (k, v) in file {
        let Some(d) = defaults.get(k) else { continue };
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let same = match (d, v) {
            (V::Table(dt), V::Table(ft)) => {
                check_table(dt, ft, &key)?;
                true
            }
            (V::Array(da), V::Array(fa)) => match da.first() {
                Some(V::Table(entry)) => {
                    for (i, x) in fa.iter().enumerate() {
                        let at = format!("{key}[{i}]");
                        match x {
                            V::Table(t) => check_table(entry, t, &at)?,
                            other => {
                                return Err(bad(
                                    at,
                                    format!("must be a table, not {}", toml_type(other)),
                                ))
                            }
                        }
                    }
                    true
                }
                Some(first) => fa
                    .iter()
                    .all(|x| std::mem::discriminant(x) == std::mem::discriminant(first)),
                None => true,
            },
            (V::Float(_), V::Integer(_)) => true,
            (d, v) => std::mem::discriminant(d) == std::mem::discriminant(v),
        };
        if !same {
            return Err(bad(
                &key,
                format!("must be {}, not {}", toml_type(d), toml_type(v)),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_match_the_contract() {
        let s = Settings::from_toml(&[]).unwrap();
        assert_eq!(
            s.topics.all(),
            [
                "ipg.channel.request",
                "ipg.channel.response",
                "ipg.webhook.job",
                "ipg.dead_letter"
            ]
        );
        assert!(s.kafka.is_embedded());
        assert_eq!(s.switch.offset.local_minus_utc(), 7 * 3600);
    }

    /// A list entry's fields are type-checked from the structs (`routing::config::
    /// list_types`): the renamed duration and the enum included.
    #[test]
    fn list_entries_are_type_checked_from_their_structs() {
        let entry = |field: &str| {
            format!(
                "[[institutions]]\ncode = \"P\"\nname = \"n\"\nprefixes = [\"857600\"]\n\
                 mode = \"passive\"\napi_key = \"k\"\nbase_url = \"http://x\"\n{field}\n"
            )
        };
        for (field, want) in [
            (
                "timeout_ms = \"5000\"",
                "institutions[0].timeout_ms: must be a whole number, not a string",
            ),
            (
                "response_signature = 1",
                "institutions[0].response_signature: must be a string, not a whole number",
            ),
            (
                "max_concurrency = true",
                "institutions[0].max_concurrency: must be a whole number, not true or false",
            ),
            (
                "burst = 1.5",
                "institutions[0].burst: must be a whole number, not a number",
            ),
        ] {
            let e = check_types(&entry(field)).unwrap_err().to_string();
            assert!(e.contains(want), "{field}: {e}");
        }
        let e = check_types("[[channels]]\ncode = \"c\"\nrate_per_second = \"9\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("channels[0].rate_per_second: must be a number"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = Settings::from_toml(&["[kafka]\nbootstrap_server = \"x\""])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bootstrap_server"), "{e}");
        let e = Settings::from_toml(&["[switch]\nutc_offset = \"WIB\""])
            .unwrap_err()
            .to_string();
        assert!(e.contains("switch.utc_offset"), "{e}");
        let e = Settings::from_toml(&["[pipeline]\nlanes = \"many\""])
            .unwrap_err()
            .to_string();
        assert!(e.contains("lanes"), "{e}");
        let e = Settings::from_toml(&[r#"
            [[institutions]]
            code = "A"
            name = "A"
            prefixes = ["12345"]
            mode = "hosted"
            api_key = "k"
        "#])
        .unwrap_err()
        .to_string();
        assert!(e.contains("institutions[0].prefixes[0]"), "{e}");
        let e = Settings::from_toml(&[r#"
            [[institutions]]
            code = "A"
            name = "A"
            prefixes = ["123456"]
            mode = "passive"
            api_key = "k"
        "#])
        .unwrap_err()
        .to_string();
        assert!(e.contains("institutions[0].base_url"), "{e}");
        let e = Settings::from_toml(&["[[channels]]\ncode = \"b\"\n"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("channels[0].api_key"), "{e}");
        let rate = |extra: &str| {
            Settings::from_toml(&[&format!(
                "[[channels]]\ncode = \"b\"\napi_key = \"k\"\n{extra}\n"
            )])
            .unwrap_err()
            .to_string()
        };
        assert!(rate("rate_per_second = 0.0").contains("channels[0].rate_per_second"));
        assert!(rate("burst = 5").contains("channels[0].burst"));
        assert!(rate("rate_per_second = 5.0\nburst = 0").contains("channels[0].burst"));
        assert!(rate("code2 = 1").contains("code2"));
    }
}
