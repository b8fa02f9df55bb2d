//! Typed configuration. Precedence, lowest first: the built-in `config/default.toml` <
//! `config/{IPG_ENV}.toml` (when `IPG_ENV` is set) < the `--config` file < `IPG__SECTION__KEY`
//! environment variables. Unknown keys and invalid values stop start-up with the key named.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use chrono::FixedOffset;
use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

use crate::config::bad;
pub use crate::config::SettingsError;
use crate::domain::va;
pub use crate::domain::InstitutionMode;
pub use crate::kafka::{KafkaSettings, TopicSettings};
pub use crate::routing::{ChannelSettings, InstitutionSettings};
pub use crate::store::RedisSettings;

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
    pub passive: crate::passive::PassiveSettings,
    pub journal: crate::journal::JournalSettings,
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
        all
    }

    /// The journal's readers as configured, reaching the broker at `bootstrap`.
    pub fn journal(&self, bootstrap: &str) -> crate::journal::Journal {
        crate::journal::Journal {
            bootstrap: bootstrap.to_owned(),
            kafka: self.kafka.clone(),
            topic: self.topics.journal.clone(),
            institutions: self.institutions.iter().map(|i| i.code.clone()).collect(),
            settings: self.journal.clone(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSettings {
    pub lanes: usize,
    pub lane_queue: usize,
    pub max_in_flight: usize,
    /// First and longest pause between retries when Redis or Kafka cannot be reached.
    #[serde(
        rename = "retry_initial_ms",
        deserialize_with = "crate::config::millis"
    )]
    pub retry_initial: Duration,
    #[serde(rename = "retry_max_ms", deserialize_with = "crate::config::millis")]
    pub retry_max: Duration,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchSettings {
    /// The offset of every timestamp the switch writes (`+07:00`, WIB), parsed once.
    #[serde(rename = "utc_offset", deserialize_with = "offset_de")]
    pub offset: FixedOffset,
    /// A VA lock older than this is abandoned (its owner died).
    #[serde(rename = "lock_ttl_ms", deserialize_with = "crate::config::millis")]
    pub lock_ttl: Duration,
    /// How long an attempt waits for a VA locked by another.
    #[serde(rename = "lock_wait_ms", deserialize_with = "crate::config::millis")]
    pub lock_wait: Duration,
    /// Bills kept in memory per instance, by VA, so that a payment following its inquiry
    /// commits in one Redis round trip (two on a Redis Cluster, without a read;
    /// `hosted::BillCache`); about 2 KB each (the bill parsed and as stored); 0 keeps none.
    pub bill_cache: usize,
}

/// Serde `deserialize_with` of `switch.utc_offset`: `+HH:MM` or `-HH:MM`.
fn offset_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<FixedOffset, D::Error> {
    let s = String::deserialize(d)?;
    parse_offset(&s)
        .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an offset like +07:00")))
}

fn parse_offset(s: &str) -> Option<FixedOffset> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let secs = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
    FixedOffset::east_opt(sign * secs)
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    pub listen: String,
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

/// Checks a rate limit's two keys.
fn check_rate(key: &str, rate: Option<f64>, burst: Option<u32>) -> Result<(), SettingsError> {
    match rate {
        Some(r) if !(r.is_finite() && r > 0.0 && r <= 1_000_000.0) => Err(bad(
            format!("{key}.rate_per_second"),
            "must be above 0 and at most 1000000",
        )),
        None if burst.is_some() => Err(bad(format!("{key}.burst"), "needs rate_per_second")),
        _ if burst == Some(0) => Err(bad(format!("{key}.burst"), "must be at least 1")),
        _ => Ok(()),
    }
}

fn check_url(key: &str, url: &str) -> Result<(), SettingsError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(bad(key, format!("{url:?} is not an http(s) URL")))
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
        }
        for i in &mut self.institutions {
            i.resolved_key = i.api_key_env.as_ref().and_then(|v| std::env::var(v).ok());
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

    /// Checks every value a bad deployment could get wrong.
    ///
    /// # Errors
    /// The first invalid key, named.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let k = &self.kafka;
        if k.bootstrap_servers.trim().is_empty() {
            return Err(bad("kafka.bootstrap_servers", "is empty"));
        }
        if k.group_id.trim().is_empty() {
            return Err(bad("kafka.group_id", "is empty"));
        }
        if k.topic_partitions < 1 {
            return Err(bad("kafka.topic_partitions", "must be at least 1"));
        }
        if k.topic_replication_factor < 1 && k.topic_replication_factor != -1 {
            return Err(bad(
                "kafka.topic_replication_factor",
                "must be at least 1 (or -1 for the broker default)",
            ));
        }
        if k.session_timeout_ms < 1000 {
            return Err(bad("kafka.session_timeout_ms", "must be at least 1000"));
        }
        let mut topics: std::collections::HashMap<&String, &str> = std::collections::HashMap::new();
        for (name, t) in [
            ("topics.request", &self.topics.request),
            ("topics.response", &self.topics.response),
            ("topics.webhook", &self.topics.webhook),
            ("topics.dead_letter", &self.topics.dead_letter),
            (
                "topics.webhook_retry_prefix",
                &self.topics.webhook_retry_prefix,
            ),
            (
                "topics.webhook_dead_letter",
                &self.topics.webhook_dead_letter,
            ),
            ("topics.passive_events", &self.topics.passive_events),
            ("topics.journal", &self.topics.journal),
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
        if self.redis.url.is_empty() {
            return Err(bad("redis.url", "is empty"));
        }
        if !self.redis.cluster && !self.redis.seed_urls.is_empty() {
            return Err(bad(
                "redis.seed_urls",
                "is for a Redis Cluster: set redis.cluster = true, or remove it",
            ));
        }
        if self.redis.cluster {
            // A cluster has only database 0 (`SELECT` is refused there).
            for (name, u) in std::iter::once(("redis.url", &self.redis.url))
                .chain(self.redis.seed_urls.iter().map(|u| ("redis.seed_urls", u)))
            {
                use redis::IntoConnectionInfo;
                let shown = crate::store::redacted(u);
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
        self.redis.validate_security()?;
        self.kafka.validate_security()?;
        if self.redis.command_timeout.is_zero() {
            return Err(bad("redis.command_timeout_ms", "must be positive"));
        }
        if self.pipeline.lanes == 0 || self.pipeline.lanes > 4096 {
            return Err(bad("pipeline.lanes", "must be between 1 and 4096"));
        }
        if self.pipeline.lane_queue == 0 {
            return Err(bad("pipeline.lane_queue", "must be at least 1"));
        }
        if self.pipeline.max_in_flight == 0 || self.pipeline.max_in_flight > 1_000_000 {
            return Err(bad(
                "pipeline.max_in_flight",
                "must be between 1 and 1000000",
            ));
        }
        if self.pipeline.retry_initial.is_zero()
            || self.pipeline.retry_max < self.pipeline.retry_initial
        {
            return Err(bad(
                "pipeline.retry_max_ms",
                "must be at least pipeline.retry_initial_ms (> 0)",
            ));
        }
        if self.switch.lock_ttl < Duration::from_secs(1) {
            return Err(bad("switch.lock_ttl_ms", "must be at least 1000"));
        }
        if self.switch.lock_wait.is_zero() {
            return Err(bad("switch.lock_wait_ms", "must be positive"));
        }
        if !self.metrics.listen.is_empty()
            && self.metrics.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(bad(
                "metrics.listen",
                format!(
                    "{:?} is not an address like 127.0.0.1:9464",
                    self.metrics.listen
                ),
            ));
        }
        self.webhook.validate(&self.kafka.group_id)?;
        self.api.validate()?;
        self.passive.validate(self.switch.lock_ttl)?;
        self.journal.check()?;
        self.statement.check()?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(bad(
                "log.level",
                format!("{:?} is not a valid filter", self.log.level),
            ));
        }

        let mut codes = HashSet::new();
        for (i, c) in self.channels.iter().enumerate() {
            let key = format!("channels[{i}]");
            if c.code.trim().is_empty() {
                return Err(bad(format!("{key}.code"), "is empty"));
            }
            if !codes.insert(&c.code) {
                return Err(bad(
                    format!("{key}.code"),
                    format!("{:?} is listed twice", c.code),
                ));
            }
            if c.code.contains([':', '{', '}']) {
                return Err(bad(
                    format!("{key}.code"),
                    "must not contain ':', '{' or '}'",
                ));
            }
            crate::routing::config::resolve_key(
                &format!("{key}.api_key"),
                &c.api_key,
                &c.api_key_env,
            )?;
            check_rate(&key, c.rate_per_second, c.burst)?;
        }
        let mut codes = HashSet::new();
        let mut prefixes = HashSet::new();
        for (i, inst) in self.institutions.iter().enumerate() {
            let key = format!("institutions[{i}]");
            if inst.code.trim().is_empty() || inst.code.contains(['{', '}', ':']) {
                return Err(bad(
                    format!("{key}.code"),
                    "must be non-empty, without '{', '}' or ':'",
                ));
            }
            if !codes.insert(&inst.code) {
                return Err(bad(
                    format!("{key}.code"),
                    format!("{:?} is listed twice", inst.code),
                ));
            }
            if inst.prefixes.is_empty() {
                return Err(bad(format!("{key}.prefixes"), "needs at least one prefix"));
            }
            for (j, p) in inst.prefixes.iter().enumerate() {
                if va::check_prefix(p).is_err() {
                    return Err(bad(
                        format!("{key}.prefixes[{j}]"),
                        format!("{p:?} is not a 6-digit prefix"),
                    ));
                }
                if !prefixes.insert(p) {
                    return Err(bad(
                        format!("{key}.prefixes[{j}]"),
                        format!("{p} belongs to another institution"),
                    ));
                }
            }
            crate::routing::config::resolve_key(
                &format!("{key}.api_key"),
                &inst.api_key,
                &inst.api_key_env,
            )?;
            check_rate(&key, inst.rate_per_second, inst.burst)?;
            if let Some(u) = &inst.webhook_url {
                check_url(&format!("{key}.webhook_url"), u)?;
            }
            match (&inst.mode, &inst.base_url) {
                (InstitutionMode::Passive, None) => {
                    return Err(bad(
                        format!("{key}.base_url"),
                        "is required for a passive institution",
                    ))
                }
                (_, Some(u)) => check_url(&format!("{key}.base_url"), u)?,
                _ => {}
            }
            if let Some(t) = inst.timeout {
                crate::passive::config::check_timeout(
                    &format!("{key}.timeout_ms"),
                    t,
                    self.switch.lock_ttl,
                )?;
            }
            if inst.max_concurrency == Some(0) {
                return Err(bad(format!("{key}.max_concurrency"), "must be at least 1"));
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
            kept_forever: vec![self.topics.journal.clone()],
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
    // The defaults list no channel or institution: their fields' types come from here.
    let lists: toml::Table = LIST_TYPES.parse().expect("LIST_TYPES is valid TOML");
    defaults.extend(lists);
    check_table(&defaults, &file, "")
}

/// One `[[channels]]` and one `[[institutions]]` entry with every field, each of its type
/// (the values mean nothing), for [`check_types`].
const LIST_TYPES: &str = r#"
[[channels]]
code = ""
api_key = ""
api_key_env = ""
rate_per_second = 0.0
burst = 0

[[institutions]]
code = ""
name = ""
prefixes = [""]
mode = ""
api_key = ""
api_key_env = ""
webhook_url = ""
base_url = ""
rate_per_second = 0.0
burst = 0
timeout_ms = 0
max_concurrency = 0
response_signature = ""
"#;

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
