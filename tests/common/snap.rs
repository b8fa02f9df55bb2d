//! A SNAP BI client for the tests and benches (docs/snap.md): an RSA key pair made by
//! `openssl` (which also signs the token requests: an implementation other than the
//! switch's), the B2B access token, HMAC-SHA512-signed calls.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use ipg_switch::signature::snap::{string_to_sign, Hmac512};
use serde_json::Value;

/// An RSA key pair made by openssl in a fresh directory: (private key PEM path, public).
pub fn key_pair() -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("ipg-snap-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (private, public) = (dir.join("partner.key"), dir.join("partner.pub"));
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private)
        .stderr(Stdio::null())
        .status()
        .expect("openssl (scripts/test.sh installs it)")
        .success();
    assert!(ok, "openssl genpkey");
    let ok = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl pkey -pubout");
    (private, public)
}

/// Base64 SHA256withRSA of `message` by openssl (an implementation other than the switch's).
pub fn rsa_sign(private: &PathBuf, message: &str) -> String {
    use base64::Engine;
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(private)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    base64::engine::general_purpose::STANDARD.encode(out.stdout)
}

pub fn now() -> String {
    chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).unwrap())
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// A SNAP partner's client: its token and how it signs.
pub struct Bank {
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
    /// `X-PARTNER-ID`.
    pub client_id: String,
    /// Its client secret (HMAC-SHA512 key).
    pub secret: String,
}

impl Bank {
    /// Asks for a token signed with `private`: the answer's status and body.
    pub async fn token_with(base: &str, private: &PathBuf, client: &str) -> (u16, Value) {
        let ts = now();
        let sig = rsa_sign(private, &format!("{client}|{ts}"));
        let r = reqwest::Client::new()
            .post(format!("{base}/snap/v1.0/access-token/b2b"))
            .header("Content-Type", "application/json")
            .header("X-TIMESTAMP", &ts)
            .header("X-CLIENT-KEY", client)
            .header("X-SIGNATURE", sig)
            .body(r#"{"grantType":"client_credentials","additionalInfo":{}}"#)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.json().await.unwrap_or(Value::Null);
        super::contract::assert_http_answer("POST", "/snap/v1.0/access-token/b2b", status, &body);
        (status, body)
    }

    /// A partner signed in with `private` as `client_id`.
    pub async fn sign_in(base: &str, private: &PathBuf, client_id: &str, secret: &str) -> Bank {
        let (status, t) = Bank::token_with(base, private, client_id).await;
        assert_eq!(status, 200, "token: {t}");
        Bank {
            base: base.to_owned(),
            http: reqwest::Client::new(),
            token: t["accessToken"].as_str().unwrap_or_default().to_owned(),
            client_id: client_id.to_owned(),
            secret: secret.to_owned(),
        }
    }

    /// One signed call; `tamper` may change the headers after signing.
    pub async fn call_with(
        &self,
        service: &str,
        xid: &str,
        body: &Value,
        timestamp: &str,
        tamper: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> (u16, Value) {
        let raw = serde_json::to_string(body).unwrap();
        let path = format!("/snap/v1.0/transfer-va/{service}");
        let s = string_to_sign("POST", &path, &self.token, raw.as_bytes(), timestamp);
        let sig = Hmac512::new(self.secret.as_bytes()).sign(&s);
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .header("Authorization", format!("Bearer {}", self.token))
            .header("X-TIMESTAMP", timestamp)
            .header("X-SIGNATURE", sig)
            .header("X-PARTNER-ID", &self.client_id)
            .header("X-EXTERNAL-ID", xid)
            .header("CHANNEL-ID", "95231")
            .body(raw);
        let r = tamper(req).send().await.unwrap();
        let status = r.status().as_u16();
        assert!(
            r.headers().contains_key("x-timestamp"),
            "SNAP answers carry X-TIMESTAMP"
        );
        let body = r.json().await.unwrap_or(Value::Null);
        // Every answer is what docs/openapi.json says (the services' POSTs).
        super::contract::assert_http_answer("POST", &path, status, &body);
        (status, body)
    }

    pub async fn call(&self, service: &str, xid: &str, body: &Value) -> (u16, Value) {
        self.call_with(service, xid, body, &now(), |r| r).await
    }
}
