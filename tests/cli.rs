//! The `ipg-switch` binary: bill create / revoke against a real redis-server, and
//! configuration errors that name their key.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// Runs the binary with `--config cfg`, the environment pairs and the arguments.
fn ipg(cfg: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ipg-switch"));
    c.env_remove("TEST_INST_KEY")
        .arg("--config")
        .arg(cfg)
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn config_file(dir: &tempfile::TempDir, redis_url: &str) -> std::path::PathBuf {
    let path = dir.path().join("switch.toml");
    let toml = format!(
        "[redis]\nurl = \"{redis_url}\"\n\n[[institutions]]\ncode = \"{INST}\"\nname = \"Sekolah\"\n\
         prefixes = [\"{PREFIX}\"]\nmode = \"hosted\"\napi_key_env = \"TEST_INST_KEY\"\n\n\
         [[channels]]\ncode = \"{CHANNEL}\"\napi_key = \"c\"\n"
    );
    std::fs::write(&path, toml).unwrap();
    path
}

const KEY: &[(&str, &str)] = &[("TEST_INST_KEY", "k")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bill_create_and_revoke() {
    let redis = Redis::start();
    let topics = settings_for("x", "redis://x", "").all_topics();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let broker = ipg_switch::kafka::EmbeddedBroker::start(&topics, PARTITIONS).unwrap();
    let journal = collect(&broker.bootstrap, "ipg.journal");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&dir, &redis.url());
    let env: &[(&str, &str)] = &[
        ("TEST_INST_KEY", "k"),
        ("IPG__KAFKA__BOOTSTRAP_SERVERS", &broker.bootstrap),
    ];
    let bill_file = dir.path().join("bill.json");
    std::fs::write(
        &bill_file,
        bill_body("7000000001", "close", 125_000).to_string(),
    )
    .unwrap();
    let bill_path = bill_file.to_str().unwrap();

    // Without the broker nothing is changed: every change is journaled first.
    let out = ipg(
        &cfg,
        &[("TEST_INST_KEY", "k")],
        &["bill", "create", "--file", bill_path],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("embedded"), "{}", stderr(&out));

    let out = ipg(&cfg, env, &["bill", "create", "--file", bill_path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bill: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bill["va_number"], format!("{PREFIX}7000000001"));
    assert_eq!(bill["status"], "active");
    let hash = bill["hash"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 8);

    // One payable bill per VA.
    let again = ipg(&cfg, env, &["bill", "create", "--file", bill_path]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already has an active bill") && stderr(&again).contains(&hash),
        "{}",
        stderr(&again)
    );

    let out = ipg(&cfg, env, &["bill", "revoke", &hash]);
    assert!(out.status.success(), "{}", stderr(&out));
    let revoked: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(revoked["status"], "revoked");
    // Each change was journaled before the command printed it.
    let events: Vec<serde_json::Value> = journal
        .wait_for("three journal events", 30, |m| {
            (m.len() >= 3).then(|| m.iter().map(Received::json).collect())
        })
        .await;
    let ids: Vec<&str> = events
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    // The refused second create journaled the bill it found again (same event id: a
    // create whose journal failed is repaired by its retry).
    assert_eq!(
        ids,
        [
            format!("{INST}:bill:{hash}:1"),
            format!("{INST}:bill:{hash}:1"),
            format!("{INST}:bill:{hash}:2")
        ],
        "{events:?}"
    );
    assert_eq!(events[2]["type"], "bill_updated");
    assert_eq!(events[2]["bill"]["status"], "revoked");

    assert_eq!(
        ipg(&cfg, env, &["bill", "revoke", "nosuchhh"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn configuration_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&dir, "redis://127.0.0.1:1/0");
    for (env, key) in [
        (&[][..], "institutions[0].api_key_env"),
        (
            &[("TEST_INST_KEY", "k"), ("IPG__PIPELINE__LANES", "0")][..],
            "pipeline.lanes",
        ),
        (
            &[("TEST_INST_KEY", "k"), ("IPG__REDIS__URLS", "x")][..],
            "urls",
        ),
    ] {
        let out = ipg(&cfg, env, &["check-config"]);
        assert_eq!(out.status.code(), Some(2), "{key}");
        assert!(stderr(&out).contains(key), "{key}: {}", stderr(&out));
    }
    let out = ipg(&cfg, KEY, &["check-config"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A switch with nothing to serve says so (exit 2), naming what is missing.
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "[redis]\nurl = \"redis://127.0.0.1:1/0\"\n").unwrap();
    let out = ipg(&empty, KEY, &["check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("channels"), "{}", stderr(&out));

    // A CLI command names the Redis it talks to, and says when it cannot reach it.
    let bill = dir.path().join("bill.json");
    std::fs::write(&bill, bill_body("7000000009", "close", 1_000).to_string()).unwrap();
    let out = ipg(
        &cfg,
        &[
            ("TEST_INST_KEY", "k"),
            ("IPG__KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1"),
        ],
        &["bill", "create", "--file", bill.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("redis redis://127.0.0.1:1/0"), "{err}");
    assert!(
        err.contains("cannot reach Redis at redis://127.0.0.1:1/0"),
        "{err}"
    );
    assert_eq!(
        err.matches("Connection refused").count(),
        1,
        "each cause once: {err}"
    );
}
