//! Secured connections to Kafka (TLS, SASL) and Redis (TLS, mutual TLS, ACL users): the
//! typed settings' rules, how they become client settings, and the one line each connection
//! logs at start (never a secret).
//!
//! Kafka: `kafka.security_protocol` (`plaintext`, `ssl`, `sasl_plaintext`, `sasl_ssl`),
//! `kafka.sasl_mechanism` (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER`),
//! `kafka.sasl_username`, `kafka.sasl_password_env`, `kafka.ssl_ca_location`,
//! `kafka.ssl_certificate_location`, `kafka.ssl_key_location` become librdkafka's
//! `security.protocol`, `sasl.mechanisms`, `sasl.username`, `sasl.password`,
//! `ssl.ca.location`, `ssl.certificate.location`, `ssl.key.location` (librdkafka is built
//! with OpenSSL from vendored sources; GSSAPI/Kerberos is not built in).
//!
//! Redis: `rediss://` in `redis.url` is TLS (rustls); `redis.ca_file` replaces the system's
//! roots, `redis.client_cert_file` + `redis.client_key_file` add a client certificate
//! (mutual TLS); `redis.username` is an ACL user and `redis.password_env` names the
//! environment variable holding its password.
//!
//! Secrets come only from the environment: a password in a file (`kafka.sasl_password`,
//! `redis.password`, a password inside `redis.url`, `sasl.password` or `ssl.key.password`
//! in `kafka.properties`) is refused, with the key named.

use std::path::Path;

use crate::config::{bad, SettingsError};
use crate::kafka::KafkaSettings;
use crate::store::RedisSettings;

/// The value of the environment variable `var`, named by the setting `key`.
///
/// # Errors
/// The variable is unset or empty (the key is named, never the value).
pub fn secret_from_env(key: &str, var: &str) -> Result<String, SettingsError> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(bad(key, format!("environment variable {var} is not set"))),
    }
}

fn readable_file(key: &str, path: &Option<String>) -> Result<(), SettingsError> {
    if let Some(p) = path {
        if !Path::new(p).is_file() || std::fs::File::open(p).is_err() {
            return Err(bad(key, format!("{p:?} is not a readable file")));
        }
    }
    Ok(())
}

/// The TLS files of a connection, `[(key, path)]` for the CA, the client certificate and
/// its key: each only where TLS is on (`tls`, else refused with `unused`), readable, and
/// the certificate with its key or neither.
fn tls_files(
    tls: bool,
    unused: &str,
    [ca, cert, key]: [(&str, &Option<String>); 3],
) -> Result<(), SettingsError> {
    for (name, path) in [ca, cert, key] {
        if path.is_some() && !tls {
            return Err(bad(name, unused));
        }
        readable_file(name, path)?;
    }
    if cert.1.is_some() != key.1.is_some() {
        return Err(bad(
            key.0,
            format!("a client certificate needs both {} and {}", cert.0, key.0),
        ));
    }
    Ok(())
}

/// librdkafka's `security.protocol` values, as written in `kafka.security_protocol`.
const PROTOCOLS: [&str; 4] = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
/// SASL mechanisms librdkafka has built in with OpenSSL (no Cyrus SASL).
const MECHANISMS: [&str; 4] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];
/// Properties that carry secrets: never from a file.
const SECRET_PROPERTIES: [&str; 5] = [
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
    "ssl.key.pem",
];

impl KafkaSettings {
    /// `kafka.security_protocol`, lowercased (`plaintext` when unset).
    pub fn protocol(&self) -> String {
        self.security_protocol
            .as_deref()
            .unwrap_or("plaintext")
            .to_ascii_lowercase()
    }

    /// # Errors
    /// An unknown protocol or mechanism, SASL without its credentials, TLS files that do
    /// not exist, settings a protocol would ignore, a secret given in a file; the key named.
    pub fn validate_security(&self) -> Result<(), SettingsError> {
        let protocol = self.protocol();
        if !PROTOCOLS.contains(&protocol.as_str()) {
            return Err(bad(
                "kafka.security_protocol",
                format!("must be one of {}", PROTOCOLS.join(", ")),
            ));
        }
        if self.is_embedded() && protocol != "plaintext" {
            return Err(bad(
                "kafka.security_protocol",
                "the embedded broker speaks plaintext only; set kafka.bootstrap_servers",
            ));
        }
        if self.sasl_password.is_some() {
            return Err(bad(
                "kafka.sasl_password",
                "secrets are not read from files: put the password in an environment \
                 variable and name it in kafka.sasl_password_env",
            ));
        }
        for k in self.properties.keys() {
            if SECRET_PROPERTIES.contains(&k.as_str()) {
                return Err(bad(
                    &format!("kafka.properties.{k}"),
                    "secrets are not read from files: use kafka.sasl_password_env",
                ));
            }
            if k == "security.protocol" || k.starts_with("sasl.mechanism") {
                return Err(bad(
                    &format!("kafka.properties.{k}"),
                    "set it with kafka.security_protocol / kafka.sasl_mechanism",
                ));
            }
        }
        let sasl = protocol.starts_with("sasl");
        match (&self.sasl_mechanism, sasl) {
            (None, true) => return Err(bad("kafka.sasl_mechanism", "is required for SASL")),
            (Some(_), false) => {
                return Err(bad(
                    "kafka.sasl_mechanism",
                    format!("is only used with sasl_plaintext or sasl_ssl, not {protocol}"),
                ))
            }
            (Some(m), true) => {
                let m = m.to_ascii_uppercase();
                if m == "GSSAPI" {
                    return Err(bad(
                        "kafka.sasl_mechanism",
                        "GSSAPI (Kerberos) is not built into this switch",
                    ));
                }
                if !MECHANISMS.contains(&m.as_str()) {
                    return Err(bad(
                        "kafka.sasl_mechanism",
                        format!("must be one of {}", MECHANISMS.join(", ")),
                    ));
                }
                if m != "OAUTHBEARER" {
                    if self.sasl_username.as_deref().unwrap_or("").is_empty() {
                        return Err(bad("kafka.sasl_username", format!("is required for {m}")));
                    }
                    let Some(var) = &self.sasl_password_env else {
                        return Err(bad(
                            "kafka.sasl_password_env",
                            format!("is required for {m}"),
                        ));
                    };
                    secret_from_env("kafka.sasl_password_env", var)?;
                }
            }
            (None, false) => {
                if self.sasl_username.is_some() || self.sasl_password_env.is_some() {
                    return Err(bad(
                        "kafka.sasl_username",
                        format!("is only used with sasl_plaintext or sasl_ssl, not {protocol}"),
                    ));
                }
            }
        }
        tls_files(
            protocol.ends_with("ssl"),
            &format!("is only used with ssl or sasl_ssl, not {protocol}"),
            [
                ("kafka.ssl_ca_location", &self.ssl_ca_location),
                (
                    "kafka.ssl_certificate_location",
                    &self.ssl_certificate_location,
                ),
                ("kafka.ssl_key_location", &self.ssl_key_location),
            ],
        )?;
        Ok(())
    }

    /// The librdkafka properties the typed security settings stand for (the password read
    /// from its environment variable now).
    pub fn security_properties(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("security.protocol", self.protocol())];
        if let Some(m) = &self.sasl_mechanism {
            out.push(("sasl.mechanisms", m.to_ascii_uppercase()));
        }
        if let Some(u) = &self.sasl_username {
            out.push(("sasl.username", u.clone()));
        }
        if let Some(var) = &self.sasl_password_env {
            let password = self
                .sasl_password_resolved
                .clone()
                .unwrap_or_else(|| std::env::var(var).unwrap_or_default());
            out.push(("sasl.password", password));
        }
        if self.protocol().ends_with("ssl") && self.ssl_ca_location.is_none() {
            // The vendored OpenSSL looks for roots under /usr/local/ssl, which Debian does
            // not have: let librdkafka probe the system's usual CA paths instead.
            out.push(("ssl.ca.location", "probe".to_owned()));
        }
        for (k, v) in [
            ("ssl.ca.location", &self.ssl_ca_location),
            ("ssl.certificate.location", &self.ssl_certificate_location),
            ("ssl.key.location", &self.ssl_key_location),
        ] {
            if let Some(v) = v {
                out.push((k, v.clone()));
            }
        }
        out
    }

    /// What the start-up log says of Kafka's security: never the password.
    pub fn describe_security(&self) -> String {
        let mut s = format!("protocol={}", self.protocol());
        if let Some(m) = &self.sasl_mechanism {
            s += &format!(" mechanism={}", m.to_ascii_uppercase());
        }
        if let Some(u) = &self.sasl_username {
            s += &format!(" user={u}");
        }
        if let Some(v) = &self.sasl_password_env {
            s += &format!(" password=${v}");
        }
        if let Some(ca) = &self.ssl_ca_location {
            s += &format!(" ca={ca}");
        }
        if self.ssl_certificate_location.is_some() {
            s += " client_certificate=yes";
        }
        s
    }
}

/// librdkafka's compiled-in features (`builtin.features`): `ssl`, `sasl_plain`,
/// `sasl_scram`, `sasl_oauthbearer`, ... (comma-separated).
pub fn kafka_builtin_features() -> String {
    use rdkafka::bindings as rd;
    let name = c"builtin.features";
    let mut buf = vec![0u8; 1024];
    let mut size = buf.len();
    // SAFETY: a fresh configuration object, read into a buffer of the size we pass, then
    // destroyed; librdkafka writes at most `size` bytes including the terminating NUL.
    let ok = unsafe {
        let conf = rd::rd_kafka_conf_new();
        let r = rd::rd_kafka_conf_get(conf, name.as_ptr(), buf.as_mut_ptr().cast(), &mut size);
        rd::rd_kafka_conf_destroy(conf);
        r == rd::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK
    };
    if !ok {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl RedisSettings {
    /// Whether `redis.url` asks for TLS (`rediss://`).
    pub fn tls(&self) -> bool {
        self.url.starts_with("rediss://")
    }

    /// # Errors
    /// A password in the file or in the URL, TLS files without `rediss://` or that do not
    /// exist, half a client certificate, an unset password variable; the key named.
    pub fn validate_security(&self) -> Result<(), SettingsError> {
        if self.password.is_some() {
            return Err(bad(
                "redis.password",
                "secrets are not read from files: put the password in an environment \
                 variable and name it in redis.password_env",
            ));
        }
        if let Ok(info) = redis::IntoConnectionInfo::into_connection_info(self.url.as_str()) {
            if info.redis_settings().password().is_some() {
                return Err(bad(
                    "redis.url",
                    "holds a password: give it through redis.password_env instead",
                ));
            }
        } else {
            return Err(bad(
                "redis.url",
                format!("{:?} is not a Redis URL", self.url),
            ));
        }
        tls_files(
            self.tls(),
            "is only used with a rediss:// redis.url (TLS)",
            [
                ("redis.ca_file", &self.ca_file),
                ("redis.client_cert_file", &self.client_cert_file),
                ("redis.client_key_file", &self.client_key_file),
            ],
        )?;
        if let Some(var) = &self.password_env {
            secret_from_env("redis.password_env", var)?;
        }
        Ok(())
    }

    /// What the start-up log says of Redis's security: never the password.
    pub fn describe_security(&self) -> String {
        let mut s = if self.tls() {
            "tls".to_owned()
        } else {
            "plaintext".to_owned()
        };
        if let Some(ca) = &self.ca_file {
            s += &format!(" ca={ca}");
        }
        if self.client_cert_file.is_some() {
            s += " client_certificate=yes";
        }
        if let Some(u) = &self.username {
            s += &format!(" user={u}");
        }
        if let Some(v) = &self.password_env {
            s += &format!(" password=${v}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::Settings;

    fn load(extra: &str) -> Result<Settings, String> {
        Settings::from_toml(&[extra]).map_err(|e| e.to_string())
    }

    #[test]
    fn kafka_security_keys_are_checked_and_named() {
        let remote = "[kafka]\nbootstrap_servers = \"k:9093\"\n";
        for (extra, key) in [
            ("security_protocol = \"tls\"", "kafka.security_protocol"),
            ("security_protocol = \"sasl_ssl\"", "kafka.sasl_mechanism"),
            (
                "security_protocol = \"sasl_ssl\"\nsasl_mechanism = \"GSSAPI\"",
                "kafka.sasl_mechanism",
            ),
            (
                "security_protocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-512\"",
                "kafka.sasl_username",
            ),
            (
                "security_protocol = \"sasl_ssl\"\nsasl_mechanism = \"PLAIN\"\nsasl_username = \"u\"\nsasl_password_env = \"IPG_TEST_UNSET_VAR\"",
                "kafka.sasl_password_env",
            ),
            ("sasl_password = \"hunter2\"", "kafka.sasl_password"),
            (
                "security_protocol = \"ssl\"\nssl_ca_location = \"/no/such/ca.pem\"",
                "kafka.ssl_ca_location",
            ),
            ("ssl_ca_location = \"/etc/hostname\"", "kafka.ssl_ca_location"),
        ] {
            let e = load(&format!("{remote}{extra}\n")).unwrap_err();
            assert!(e.contains(key), "{extra}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        let e = load("[kafka.properties]\n\"sasl.password\" = \"x\"\n").unwrap_err();
        assert!(e.contains("kafka.properties.sasl.password"), "{e}");
        let e = load("[kafka]\nsecurity_protocol = \"ssl\"\n").unwrap_err();
        assert!(e.contains("embedded broker"), "{e}");
        let ok = load(&format!("{remote}security_protocol = \"SSL\"\n")).unwrap();
        assert_eq!(ok.kafka.protocol(), "ssl");
    }

    #[test]
    fn redis_security_keys_are_checked_and_named() {
        for (extra, key) in [
            ("url = \"redis://:pw@127.0.0.1:6379/0\"", "redis.url"),
            ("password = \"pw\"", "redis.password"),
            ("ca_file = \"/etc/hostname\"", "redis.ca_file"),
            (
                "url = \"rediss://127.0.0.1:6379/0\"\nca_file = \"/no/such/ca.pem\"",
                "redis.ca_file",
            ),
            (
                "url = \"rediss://127.0.0.1:6379/0\"\nclient_cert_file = \"/etc/hostname\"",
                "redis.client_key_file",
            ),
            (
                "password_env = \"IPG_TEST_UNSET_VAR\"",
                "redis.password_env",
            ),
        ] {
            let e = load(&format!("[redis]\n{extra}\n")).unwrap_err();
            assert!(e.contains(key), "{extra}: {e}");
            assert!(!e.contains("pw\""), "{e}");
        }
        let ok = load("[redis]\nurl = \"rediss://127.0.0.1:6379/0\"\nusername = \"u\"\n").unwrap();
        assert_eq!(ok.redis.describe_security(), "tls user=u");
    }

    #[test]
    fn librdkafka_has_tls_and_sasl_built_in() {
        let f = super::kafka_builtin_features();
        for want in ["ssl", "sasl_plain", "sasl_scram", "sasl_oauthbearer"] {
            assert!(f.split(',').any(|x| x == want), "{want} missing from {f}");
        }
    }
}
