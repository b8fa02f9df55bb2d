//! Secured infrastructure: a real redis-server with TLS (certificates made here with
//! `openssl`: a CA, a server and a client certificate), client certificates required
//! (mutual TLS), and an ACL user whose password comes from the environment. The hosted
//! payment path runs through it; a wrong CA or a wrong password stops start-up with the key
//! to change named. One test: it sets an environment variable.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const PASSWORD_VAR: &str = "IPG_TEST_REDIS_PASSWORD";
const PASSWORD: &str = "s3cret-acl-password";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl) is needed to make test certificates");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `name` and a certificate it signs for `cn` (with localhost/127.0.0.1 as
/// subject alternative names); returns the paths of the CA certificate, the certificate and
/// its key.
fn ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    dir.join(format!("{name}.crt"))
}

fn signed(dir: &Path, ca: &str, name: &str) -> (PathBuf, PathBuf) {
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            "/CN=localhost",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            &format!("{name}.crt"),
        ],
    );
    (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    )
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// Runs the daemon with `settings` until it stops by itself (start-up error) or 20 s pass.
async fn start_error(settings: ipg_switch::settings::Settings) -> String {
    match tokio::time::timeout(
        Duration::from_secs(20),
        ipg_switch::run(settings, std::future::pending::<()>()),
    )
    .await
    {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(())) => panic!("the daemon stopped without an error"),
        Err(_) => panic!("the daemon started instead of refusing"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_payments_over_mutual_tls_with_an_acl_user() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca_crt = ca(d, "ca");
    let other_ca = ca(d, "other-ca");
    let (server_crt, server_key) = signed(d, "ca", "server");
    let (client_crt, client_key) = signed(d, "ca", "client");
    let port = free_port();
    let redis = Redis::start_with(
        port,
        &[
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            s(&server_crt),
            "--tls-key-file".into(),
            s(&server_key),
            "--tls-ca-cert-file".into(),
            s(&ca_crt),
            "--tls-auth-clients".into(),
            "yes".into(),
            // The default user is off: only the switch's ACL user gets in.
            "--user".into(),
            "default".into(),
            "off".into(),
            "--user".into(),
            "switch".into(),
            "on".into(),
            format!(">{PASSWORD}"),
            "~*".into(),
            "&*".into(),
            "+@all".into(),
        ],
    );
    std::env::set_var(PASSWORD_VAR, PASSWORD);

    let mut stack = Stack::start().await;
    let secured = format!(
        "[redis]\nurl = \"rediss://localhost:{port}/0\"\nca_file = \"{}\"\n\
         client_cert_file = \"{}\"\nclient_key_file = \"{}\"\nusername = \"switch\"\n\
         password_env = \"{PASSWORD_VAR}\"\n",
        s(&ca_crt),
        s(&client_crt),
        s(&client_key)
    );
    stack.settings = settings_for(&stack.broker.bootstrap, "unused", &secured);
    assert_eq!(
        stack.settings.redis.describe_security(),
        format!(
            "tls ca={} client_certificate=yes user=switch password=${PASSWORD_VAR}",
            s(&ca_crt)
        )
    );

    // The hosted payment path, through TLS and the ACL user.
    stack
        .create_bill(bill_body("6000000001", "close", 75_000))
        .await;
    let daemon = stack.daemon();
    let id = stack
        .send(
            "payment",
            "tls-pay",
            payment(&va(PREFIX, "6000000001"), "TLS1", 75_000),
        )
        .await;
    let a = stack.answer(&id).await;
    assert_eq!(a["rc"], "SUCCESS", "{a}");
    let (ledger, balance) = stack.ledger().await;
    assert_eq!((ledger.len(), balance), (1, 75_000));
    daemon.stop().await;

    // An untrusted server certificate: start-up stops, naming redis.ca_file.
    let mut wrong = stack.settings.clone();
    wrong.redis.ca_file = Some(s(&other_ca));
    let e = start_error(wrong).await;
    assert!(e.contains("redis.ca_file"), "{e}");

    // No client certificate where the server requires one: named too.
    let mut wrong = stack.settings.clone();
    wrong.redis.client_cert_file = None;
    wrong.redis.client_key_file = None;
    let e = start_error(wrong).await;
    assert!(e.contains("redis.client_cert_file"), "{e}");

    // A wrong password: start-up stops, naming redis.password_env, never the password.
    std::env::set_var("IPG_TEST_WRONG_PASSWORD", "not-it");
    // Loaded as an operator would (secrets are read once, at load).
    let wrong = settings_for(
        &stack.broker.bootstrap,
        "unused",
        &secured.replace(PASSWORD_VAR, "IPG_TEST_WRONG_PASSWORD"),
    );
    let e = start_error(wrong).await;
    assert!(e.contains("redis.password_env"), "{e}");
    assert!(!e.contains("not-it") && !e.contains(PASSWORD), "{e}");
    drop(redis);

    // Kafka: librdkafka accepts SASL_SSL with SCRAM and a CA file (it loads the CA and checks
    // the mechanism when the client is made). No broker here speaks TLS or SASL (the
    // embedded mock does not), so no round trip: see docs/operations.md.
    std::env::set_var("IPG_TEST_KAFKA_PASSWORD", "kafka-secret");
    let kafka = format!(
        "[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\nsecurity_protocol = \"sasl_ssl\"\n\
         sasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"switch\"\n\
         sasl_password_env = \"IPG_TEST_KAFKA_PASSWORD\"\nssl_ca_location = \"{}\"\n\
         ssl_certificate_location = \"{}\"\nssl_key_location = \"{}\"\n",
        s(&ca_crt),
        s(&client_crt),
        s(&client_key)
    );
    let k = settings_for("127.0.0.1:1", "redis://127.0.0.1:1/0", &kafka);
    assert!(
        !k.kafka.describe_security().contains("kafka-secret"),
        "{}",
        k.kafka.describe_security()
    );
    let _producer =
        ipg_switch::kafka::create_producer("127.0.0.1:1", &k.kafka).expect("SASL_SSL producer");
    let mut bad_ca = k.clone();
    bad_ca.kafka.ssl_ca_location = Some(s(&d.join("san.ext")));
    let e = ipg_switch::kafka::create_producer("127.0.0.1:1", &bad_ca.kafka)
        .err()
        .expect("a CA file that is not a certificate is refused");
    assert!(e.to_string().to_lowercase().contains("ssl"), "{e}");
}
