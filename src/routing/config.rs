//! The `[[channels]]` and `[[institutions]]` lists, owned by routing: who may send
//! requests (and with which key), and which institution serves which prefixes.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::config::{bad, SettingsError};
use crate::domain::{va, InstitutionMode};

#[derive(Clone, Debug, Deserialize, Serialize)]
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
    /// The channel as a SNAP BI partner (`[channels.snap]`, docs/snap.md): absent, it
    /// cannot use the SNAP door.
    #[serde(default)]
    pub snap: Option<SnapPartnerSettings>,
}

/// A channel's SNAP identity (docs/snap.md, "Partners"): the client id it presents
/// (`X-CLIENT-KEY` for a token, `X-PARTNER-ID` on every call), the RSA public key its
/// token requests are verified with, and the client secret its calls are signed with,
/// from an environment variable only (never in a file).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnapPartnerSettings {
    pub client_id: String,
    /// A PEM file: `BEGIN PUBLIC KEY` (X.509 SubjectPublicKeyInfo) or `BEGIN RSA PUBLIC KEY`.
    pub public_key_file: String,
    /// The environment variable holding the client secret (HMAC-SHA512 key).
    pub client_secret_env: String,
    /// The SNAP service codes it may call (absent: every one of its side's: a bank 24, 25,
    /// 26; an institution 27, 28, 29, 30, 31, 35).
    #[serde(default)]
    pub services: Option<Vec<u8>>,
    /// The secret and the key's PEM, read once at load (`Settings` fills them).
    #[serde(skip)]
    pub resolved_secret: Option<String>,
    #[serde(skip)]
    pub resolved_public_key: Option<String>,
}

/// The SNAP services a bank calls (24 inquiry, 25 payment, 26 status).
pub const BANK_SERVICES: [u8; 3] = [24, 25, 26];
/// The SNAP services an institution calls (27-31 its VAs, 35 report).
pub const INSTITUTION_SERVICES: [u8; 6] = [27, 28, 29, 30, 31, 35];

impl SnapPartnerSettings {
    /// # Errors
    /// An empty or overlong client id, a key file that cannot be read or is no RSA public
    /// key, a secret variable unset or empty; named under `key`.
    fn validate(&self, key: &str, side: &[u8]) -> Result<(), SettingsError> {
        if let Some(services) = &self.services {
            if let Some(s) = services.iter().find(|s| !side.contains(s)) {
                return Err(bad(
                    format!("{key}.services"),
                    format!("{s} is not a service of this side: {side:?}"),
                ));
            }
        }
        let id = &self.client_id;
        if id.is_empty() || id.len() > 36 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(
                format!("{key}.client_id"),
                "must be 1-36 printable characters without spaces",
            ));
        }
        let pem = std::fs::read_to_string(&self.public_key_file).map_err(|e| {
            bad(
                format!("{key}.public_key_file"),
                format!("{:?} cannot be read: {e}", self.public_key_file),
            )
        })?;
        let bits = crate::signature::snap::RsaPublicKey::from_pem(&pem)
            .map_err(|e| bad(format!("{key}.public_key_file"), e.to_string()))?
            .bits();
        if !(2048..=8192).contains(&bits) {
            return Err(bad(
                format!("{key}.public_key_file"),
                format!("is a {bits}-bit RSA key: SNAP signatures take 2048 to 8192 bits"),
            ));
        }
        match std::env::var(&self.client_secret_env) {
            Ok(v) if !v.is_empty() => Ok(()),
            _ => Err(bad(
                format!("{key}.client_secret_env"),
                format!(
                    "environment variable {:?} is not set",
                    self.client_secret_env
                ),
            )),
        }
    }

    /// Reads the secret and the key file (validated before).
    pub fn resolve(&mut self) {
        self.resolved_secret = std::env::var(&self.client_secret_env).ok();
        self.resolved_public_key = std::fs::read_to_string(&self.public_key_file).ok();
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
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
        deserialize_with = "crate::config::opt_millis",
        serialize_with = "crate::config::ser_opt_millis"
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
    /// The institution as a SNAP partner (`[institutions.snap]`, docs/snap.md): it may
    /// then issue and manage its VAs over SNAP (services 27, 30, 31, 35).
    #[serde(default)]
    pub snap: Option<SnapPartnerSettings>,
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

/// The `[[channels]]` and `[[institutions]]` lists: each entry's values, codes and prefixes
/// unique across entries. (An institution's own `timeout_ms` against `switch.lock_ttl_ms`
/// is a rule across sections: `Settings::validate`.)
///
/// # Errors
/// The first invalid key, named with its entry (`institutions[2].prefixes[0]`).
pub fn validate(
    channels: &[ChannelSettings],
    institutions: &[InstitutionSettings],
) -> Result<(), SettingsError> {
    let mut codes = HashSet::new();
    let mut snap_ids = HashSet::new();
    for (i, c) in channels.iter().enumerate() {
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
        resolve_key(&format!("{key}.api_key"), &c.api_key, &c.api_key_env)?;
        check_rate(&key, c.rate_per_second, c.burst)?;
        if let Some(snap) = &c.snap {
            snap.validate(&format!("{key}.snap"), &BANK_SERVICES)?;
            if !snap_ids.insert(&snap.client_id) {
                return Err(bad(
                    format!("{key}.snap.client_id"),
                    format!("{:?} is another channel's", snap.client_id),
                ));
            }
        }
    }
    let mut codes = HashSet::new();
    let mut prefixes = HashSet::new();
    for (i, inst) in institutions.iter().enumerate() {
        let key = format!("institutions[{i}]");
        // '|' separates a reference binding's fields, and a binding starting "void|" is a
        // reversal's (domain::Binding): a code must never make one look like the other.
        if inst.code.trim().is_empty()
            || inst.code.contains(['{', '}', ':', '|'])
            || inst.code.eq_ignore_ascii_case("void")
        {
            return Err(bad(
                format!("{key}.code"),
                "must be non-empty, without '{', '}', ':' or '|', and not \"void\"",
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
        resolve_key(&format!("{key}.api_key"), &inst.api_key, &inst.api_key_env)?;
        check_rate(&key, inst.rate_per_second, inst.burst)?;
        if let Some(snap) = &inst.snap {
            snap.validate(&format!("{key}.snap"), &INSTITUTION_SERVICES)?;
            if !snap_ids.insert(&snap.client_id) {
                return Err(bad(
                    format!("{key}.snap.client_id"),
                    format!("{:?} is another partner's", snap.client_id),
                ));
            }
        }
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
        if inst.max_concurrency == Some(0) {
            return Err(bad(format!("{key}.max_concurrency"), "must be at least 1"));
        }
    }
    Ok(())
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

/// One `[[channels]]` and one `[[institutions]]` entry with every field set to a value of
/// its type (the values mean nothing), as TOML: what `settings` checks the types of a
/// file's list entries against. Both are struct literals without `..`, so a field added to
/// either struct does not compile until it is given here, and is then checked too.
pub fn list_types() -> toml::Table {
    let channel = ChannelSettings {
        code: String::new(),
        api_key: Some(String::new()),
        api_key_env: Some(String::new()),
        rate_per_second: Some(0.0),
        burst: Some(0),
        resolved_key: None,
        snap: Some(SnapPartnerSettings {
            client_id: String::new(),
            public_key_file: String::new(),
            client_secret_env: String::new(),
            services: Some(vec![0]),
            resolved_secret: None,
            resolved_public_key: None,
        }),
    };
    let institution = InstitutionSettings {
        code: String::new(),
        name: String::new(),
        prefixes: vec![String::new()],
        mode: InstitutionMode::Hosted,
        api_key: Some(String::new()),
        api_key_env: Some(String::new()),
        webhook_url: Some(String::new()),
        base_url: Some(String::new()),
        rate_per_second: Some(0.0),
        burst: Some(0),
        timeout: Some(std::time::Duration::ZERO),
        max_concurrency: Some(0),
        response_signature: Some(crate::domain::ResponseSignature::Off),
        resolved_key: None,
        snap: Some(SnapPartnerSettings {
            client_id: String::new(),
            public_key_file: String::new(),
            client_secret_env: String::new(),
            services: Some(vec![0]),
            resolved_secret: None,
            resolved_public_key: None,
        }),
    };
    let entry = |v: toml::Value| toml::Value::Array(vec![v]);
    let mut out = toml::Table::new();
    out.insert(
        "channels".into(),
        entry(toml::Value::try_from(&channel).expect("a channel entry is TOML")),
    );
    out.insert(
        "institutions".into(),
        entry(toml::Value::try_from(&institution).expect("an institution entry is TOML")),
    );
    out
}
