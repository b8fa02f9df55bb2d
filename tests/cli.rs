//! The `ipg-switch` binary: bill create / revoke against a real redis-server, and
//! configuration errors that name their key.

mod common;

use std::process::Command;

use common::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ipg-switch"))
}

fn config_file(dir: &tempfile::TempDir, redis_url: &str) -> std::path::PathBuf {
    let path = dir.path().join("switch.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[redis]
url = "{redis_url}"

[[institutions]]
code = "{INST}"
name = "Sekolah"
prefixes = ["{PREFIX}"]
mode = "hosted"
api_key_env = "TEST_INST_KEY"
"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn bill_create_and_revoke() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&dir, &redis.url());
    let bill_file = dir.path().join("bill.json");
    std::fs::write(
        &bill_file,
        bill_body("7000000001", "close", 125_000).to_string(),
    )
    .unwrap();

    let out = bin()
        .env("TEST_INST_KEY", "k")
        .args(["--config"])
        .arg(&cfg)
        .args(["bill", "create", "--file"])
        .arg(&bill_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bill: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bill["va_number"], format!("{PREFIX}7000000001"));
    assert_eq!(bill["status"], "active");
    let hash = bill["hash"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 8);

    // One payable bill per VA.
    let again = bin()
        .env("TEST_INST_KEY", "k")
        .arg("--config")
        .arg(&cfg)
        .args(["bill", "create", "--file"])
        .arg(&bill_file)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("already has an active bill") && err.contains(&hash),
        "{err}"
    );

    let out = bin()
        .env("TEST_INST_KEY", "k")
        .arg("--config")
        .arg(&cfg)
        .args(["bill", "revoke", &hash])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(revoked["status"], "revoked");

    let missing = bin()
        .env("TEST_INST_KEY", "k")
        .arg("--config")
        .arg(&cfg)
        .args(["bill", "revoke", "nosuchhh"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn configuration_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&dir, "redis://127.0.0.1:1/0");
    // The institution's key comes from an unset environment variable.
    let out = bin()
        .arg("--config")
        .arg(&cfg)
        .arg("check-config")
        .env_remove("TEST_INST_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("institutions[0].api_key_env"));

    let out = bin()
        .arg("--config")
        .arg(&cfg)
        .arg("check-config")
        .env("TEST_INST_KEY", "k")
        .env("IPG__PIPELINE__LANES", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pipeline.lanes"));

    let out = bin()
        .arg("--config")
        .arg(&cfg)
        .arg("check-config")
        .env("TEST_INST_KEY", "k")
        .env("IPG__REDIS__URLS", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("urls"));

    let out = bin()
        .arg("--config")
        .arg(&cfg)
        .arg("check-config")
        .env("TEST_INST_KEY", "k")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
