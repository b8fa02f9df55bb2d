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

/// Runs the binary with only `args` (no configuration, no environment of the test's).
fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipg-switch"))
        .args(args)
        .output()
        .unwrap()
}

/// The entries of one section of a help text (`Commands:`, `Arguments:`, `Options:`): each
/// entry's first line (the command or argument) and its description, empty when it has none.
/// A description is on the entry's line after two spaces or, in clap's next-line layout, on
/// the indented lines under it; `[default: ..]` and `[possible values: ..]` are not one.
fn help_entries(help: &str, section: &str) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            inside = line == section;
            continue;
        }
        let trimmed = line.trim();
        if !inside || trimmed.is_empty() {
            continue;
        }
        let starts_entry = if section == "Commands:" {
            line.starts_with("  ") && !line.starts_with("   ")
        } else {
            let b = trimmed.as_bytes();
            b[0] == b'<'
                || b[0] == b'['
                || (b[0] == b'-' && b.len() > 1 && (b[1] == b'-' || b[1].is_ascii_alphanumeric()))
        };
        if starts_entry {
            let (spec, desc) = trimmed.split_once("  ").unwrap_or((trimmed, ""));
            entries.push((spec.to_owned(), desc.trim().to_owned()));
        } else if let Some(last) = entries.last_mut() {
            last.1.push(' ');
            last.1.push_str(trimmed);
        }
    }
    for (_, desc) in &mut entries {
        let mut kept = String::new();
        let mut depth = 0;
        for ch in desc.chars() {
            match ch {
                '[' => depth += 1,
                ']' if depth > 0 => depth -= 1,
                _ if depth == 0 => kept.push(ch),
                _ => {}
            }
        }
        *desc = kept.trim().to_owned();
    }
    entries
}

/// Every command's help (clap's `--help`) says what each of its arguments and subcommands is,
/// its exit codes, the environment it reads and an example whose command line parses; found
/// by walking the `Commands:` lists from the root, so a command or an argument added later
/// without a doc comment or an `after_help` fails here.
#[test]
fn every_command_and_argument_is_documented() {
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    let mut seen = 0;
    while let Some(path) = todo.pop() {
        seen += 1;
        let name = format!("ipg-switch {}", path.join(" "));
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = bin(&args);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let help = String::from_utf8(out.stdout).unwrap();

        for (cmd, desc) in help_entries(&help, "Commands:") {
            if cmd == "help" {
                continue;
            }
            assert!(
                !desc.is_empty(),
                "{name}: subcommand {cmd} has no description:\n{help}"
            );
            let mut sub = path.clone();
            sub.push(cmd);
            todo.push(sub);
        }
        let args = [
            help_entries(&help, "Arguments:"),
            help_entries(&help, "Options:"),
        ]
        .concat();
        assert!(
            args.iter().any(|(a, _)| a.contains("--config")),
            "{name}:\n{help}"
        );
        for (arg, desc) in &args {
            assert!(
                !desc.is_empty(),
                "{name}: {arg} has no description:\n{help}"
            );
        }

        let exits = help
            .split_once("\nExit codes:\n")
            .unwrap_or_else(|| panic!("{name}: no \"Exit codes:\":\n{help}"))
            .1;
        assert!(
            exits.starts_with("  0  "),
            "{name}: exit code 0 first:\n{help}"
        );
        assert!(exits.contains("\n  2  "), "{name}: exit code 2:\n{help}");
        assert!(help.contains("\nEnvironment"), "{name}:\n{help}");
        assert!(help.contains("IPG__SECTION__KEY"), "{name}:\n{help}");
        if !path.is_empty() && path[0] != "check-config" && path[0] != "contract" {
            // Every command that reaches a system names the variable of each it uses.
            assert!(
                help.contains("IPG__REDIS__URL") || help.contains("IPG__KAFKA__BOOTSTRAP_SERVERS"),
                "{name}:\n{help}"
            );
        }

        // The example: its `ipg-switch` lines parse (clap stops at --help only after reading
        // the arguments before it, so an unknown argument or command fails).
        let example = help
            .split_once("\nExample:\n")
            .unwrap_or_else(|| panic!("{name}: no \"Example:\":\n{help}"))
            .1;
        let lines: Vec<&str> = example
            .lines()
            .map(|l| l.split('#').next().unwrap().trim())
            .filter(|l| l.starts_with("ipg-switch "))
            .collect();
        assert!(
            !lines.is_empty(),
            "{name}: no ipg-switch line in the example:\n{help}"
        );
        for line in lines {
            let mut words: Vec<&str> = line.split_whitespace().skip(1).collect();
            // The example is of this command (or, for a group, of one of its commands).
            let mut rest = words.iter().filter(|w| !w.starts_with('-'));
            if words.first() == Some(&"--config") {
                rest.next();
            }
            assert!(
                path.iter().all(|p| rest.next() == Some(&p.as_str())),
                "{name}: example of another command: {line}"
            );
            words.push("--help");
            let out = bin(&words);
            assert!(
                out.status.success(),
                "{name}: example {line}: {}",
                stderr(&out)
            );
        }
    }
    // The root, 9 commands, bill's 2, webhook's 2, passive's 1.
    assert!(seen >= 15, "{seen} commands");
}

/// `statement` needs one scope, either: the error names both.
#[test]
fn statement_without_a_scope_names_both() {
    let out = bin(&["statement", "--date", "2026-12-06"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("--institution") && err.contains("--channel"),
        "{err}"
    );
    let out = bin(&[
        "statement",
        "--date",
        "2026-12-06",
        "--institution",
        "A",
        "--channel",
        "B",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Each command names on stderr the systems it uses (Redis, the brokers) and says which it
/// does not; a journal topic missing (a broker the daemon never started on) says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_name_their_systems_and_a_missing_topic_its_remedy() {
    let redis = Redis::start();
    // A broker without the switch's topics: no daemon has ever started on it.
    let broker = ipg_switch::kafka::EmbeddedBroker::start(&[], PARTITIONS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&dir, &redis.url());
    let env: &[(&str, &str)] = &[
        ("TEST_INST_KEY", "k"),
        ("IPG__KAFKA__BOOTSTRAP_SERVERS", &broker.bootstrap),
    ];
    let bill = dir.path().join("bill.json");
    std::fs::write(&bill, bill_body("7000000002", "close", 1_000).to_string()).unwrap();
    let uses_both = format!("redis {}, kafka {}", redis.url(), broker.bootstrap);

    let out = ipg(
        &cfg,
        env,
        &["bill", "create", "--file", bill.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&uses_both), "{err}");
    assert!(
        err.contains("does not exist")
            && err.contains("ipg-switch run")
            && err.contains("scripts/run-demo.sh"),
        "{err}"
    );

    let out = ipg(&cfg, env, &["bill", "revoke", "nosuchhh"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&uses_both), "{}", stderr(&out));

    // The journal's readers: the same remedy; they name the broker and no Redis.
    let out = ipg(
        &cfg,
        env,
        &["statement", "--date", "2026-12-06", "--channel", CHANNEL],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("kafka {}; no Redis", broker.bootstrap)),
        "{err}"
    );
    assert!(err.contains("ipg-switch run"), "{err}");

    // passive list reads Redis only, and says so.
    let out = ipg(&cfg, env, &["passive", "list", "--institution", INST]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("redis {}; no broker", redis.url())),
        "{err}"
    );
}

/// `bill import` (issue 28, docs/api.md "Bulk issuance"): 100 good rows among 100 bad ones
/// of 10 kinds, each bad row named with its field; the same file again creates nothing and
/// names the same bills; a dry run creates nothing; a JSON array too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bill_import_issues_each_row_once_and_names_every_bad_row() {
    let redis = Redis::start();
    let topics = settings_for("x", "redis://x", "").all_topics();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let broker = ipg_switch::kafka::EmbeddedBroker::start(&topics, PARTITIONS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&dir, &redis.url());
    let env: &[(&str, &str)] = &[
        ("TEST_INST_KEY", "k"),
        ("IPG__KAFKA__BOOTSTRAP_SERVERS", &broker.bootstrap),
    ];
    let mut csv = b"va_number,prefix,type,name,customer_name,total_amount,valid_until\n".to_vec();
    for i in 0..100 {
        csv.extend(format!("76{i:08},{PREFIX},close,SPP Juli,Siswa {i},150000,\n").as_bytes());
    }
    // A hundred bad rows, ten of each of ten kinds.
    for k in 0..10 {
        for bad in [
            format!("77{k}9000001,{PREFIX},close,SPP,=HYPERLINK(\"x\"),150000,\n"), // formula
            format!("77{k}9000002,{PREFIX},close,,Siswa,150000,\n"),                // no name
            format!("77{k}9000003,{PREFIX},weekly,SPP,Siswa,150000,\n"),            // type
            format!("77{k}9000004,{PREFIX},close,SPP,Siswa,lots,\n"),               // amount
            format!("77{k}9000005,999999,close,SPP,Siswa,150000,\n"),               // prefix
            format!("77{k}90000,{PREFIX},close,SPP,Siswa,150000,\n"),               // va_number
            format!("77{k}9000007,{PREFIX},close,SPP,Siswa,150000,2001-01-01T00:00:00+07:00\n"), // past
            format!("77{k}9000008,{PREFIX},close,SPP\n"), // cells
            format!("77{k}9000010,{PREFIX},close,SPP,Siswa,0,\n"), // zero
        ] {
            csv.extend(bad.as_bytes());
        }
        csv.extend(format!("77{k}9000009,{PREFIX},close,SPP,").as_bytes());
        csv.extend([0xff, 0xfe]); // not UTF-8
        csv.extend(b",150000,\n");
    }
    let file = dir.path().join("term.csv");
    std::fs::write(&file, &csv).unwrap();
    let path = file.to_str().unwrap();
    let result = dir.path().join("term.csv.result.csv");

    let read = |p: &std::path::Path| -> Vec<Vec<String>> {
        let mut r = csv::Reader::from_path(p).unwrap();
        r.records()
            .map(|x| x.unwrap().iter().map(str::to_owned).collect())
            .collect()
    };
    let out = ipg(&cfg, env, &["bill", "import", path, "--institution", INST]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let first = read(&result);
    assert_eq!(first.len(), 200);
    let status = |rows: &[Vec<String>], s: &str| rows.iter().filter(|r| r[1] == s).count();
    assert_eq!(status(&first, "created"), 100);
    let refused: Vec<(String, String)> = first
        .iter()
        .filter(|r| r[1] == "refused")
        .map(|r| (r[4].clone(), r[5].clone()))
        .collect();
    let fields: std::collections::BTreeSet<&str> = refused.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(refused.len(), 100, "{refused:?}");
    for f in [
        "customer_name",
        "name",
        "type",
        "total_amount",
        "prefix",
        "va_number",
        "valid_until",
        "row",
    ] {
        assert!(fields.contains(f), "{f} not named: {refused:?}");
    }
    assert!(
        refused.iter().all(|r| !r.1.is_empty()),
        "every refusal says why"
    );

    // Again: nothing new, the same bills row by row.
    let out = ipg(&cfg, env, &["bill", "import", path, "--institution", INST]);
    assert_eq!(out.status.code(), Some(1));
    let again = read(&result);
    assert_eq!(
        (status(&again, "created"), status(&again, "existing")),
        (0, 100)
    );
    for (a, b) in first.iter().zip(&again) {
        assert_eq!(
            (&a[0], &a[2], &a[3]),
            (&b[0], &b[2], &b[3]),
            "row, hash, VA"
        );
    }

    // A dry run of new rows: valid, nothing created; then a JSON array.
    let json = dir.path().join("more.json");
    let bills: Vec<serde_json::Value> = (0..5)
        .map(|i| bill_body(&format!("77{i:08}"), "open", 0))
        .collect();
    std::fs::write(&json, serde_json::to_vec(&bills).unwrap()).unwrap();
    let jpath = json.to_str().unwrap();
    let out = ipg(&cfg, env, &["bill", "import", jpath, "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dry = read(&dir.path().join("more.json.result.csv"));
    assert_eq!(status(&dry, "valid"), 5);
    let out = ipg(&cfg, env, &["bill", "import", jpath]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        status(&read(&dir.path().join("more.json.result.csv")), "created"),
        5
    );
}

/// Recurring issuance (issue 28, docs/api.md "Recurring issuance"): a template and a
/// customer list give each period's bills, with the customers' own amounts; two periods
/// issued (the first paid in between, as a VA holds one payable bill), a third issued twice:
/// the second time nothing is created; counts and amounts exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recurring_periods_are_issued_once_each() {
    use ipg_switch::issuance;
    let stack = Stack::start().await;
    let daemon = stack.daemon();
    let sw = ipg_switch::build_switch(&stack.settings).unwrap();
    let inst = sw.routing.by_code(INST).unwrap().clone();
    let template = format!(
        r#"{{"institution_code":"{INST}","prefix":"{PREFIX}","type":"close","name":"SPP {{period}}","total_amount":350000,"due_day":28}}"#
    );
    let customers = b"va_number,customer_name,total_amount\n7800000001,Aisyah,\n7800000002,Bima,\n7800000003,Citra,300000\n";
    let wib = chrono::FixedOffset::east_opt(7 * 3600).unwrap();
    let year = chrono::Utc::now()
        .format("%Y")
        .to_string()
        .parse::<i32>()
        .unwrap()
        + 1;
    let mut paid = 0u64;
    for (k, month) in ["01", "02", "03", "03"].iter().enumerate() {
        let period = format!("{year}-{month}");
        let rows = issuance::recurring_rows(template.as_bytes(), customers, &period, wib).unwrap();
        let results = issuance::issue_all(&sw.hosted, &inst, rows, false, || {}).await;
        let (created, existing, _, refused) = issuance::counts(&results);
        let want = if k == 3 { (0, 3, 0) } else { (3, 0, 0) };
        assert_eq!((created, existing, refused), want, "{period}: {results:?}");
        if k == 3 {
            break;
        }
        // Each customer pays the period (their own amount), freeing the VA for the next.
        for (i, r) in results.iter().enumerate() {
            let amount = if i == 2 { 300_000 } else { 350_000 };
            let id = format!("rec-{period}-{i}");
            stack
                .send("payment", &id, payment(&r.va_number, &id, amount))
                .await;
            assert_eq!(stack.answer(&id).await["rc"], "SUCCESS", "{id}");
            paid += amount;
        }
    }
    let (ledger, balance) = stack.ledger().await;
    assert_eq!((ledger.len(), balance), (9, paid as i64));
    assert_eq!(paid, 3 * 1_000_000);
    daemon.stop().await;
    stack.assert_verify_agrees().await;

    // Three bills per VA made within a second or two: from the journal alone each VA points
    // at its newest (the third period's, paid), whatever the whole-second creation times say.
    let _: () = redis::cmd("FLUSHALL")
        .query_async(
            &mut redis::Client::open(stack.settings.redis.url.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    let journal = stack.settings.journal(&stack.broker.bootstrap);
    journal
        .replay(
            &sw.hosted.store,
            ipg_switch::journal::From::Beginning,
            &mut ipg_switch::journal::Quiet,
        )
        .await
        .unwrap();
    for n in ["7800000001", "7800000002", "7800000003"] {
        let b = sw
            .hosted
            .store
            .bill_by_va(INST, &format!("{PREFIX}{n}"))
            .await
            .unwrap()
            .unwrap()
            .value;
        assert_eq!(
            (b.name.as_str(), b.status),
            (
                format!("SPP {year}-03").as_str(),
                ipg_switch::domain::BillStatus::Paid
            ),
            "{n}"
        );
    }
    stack.assert_verify_agrees().await;
}

/// `bill import` killed (SIGKILL) in the middle (issue 28): running the same file again
/// finishes it; every bill exists once, the results are complete, and the journal holds
/// every bill (a create cut short between its commit and its journal event is journaled by
/// the rerun): `verify` agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_import_is_finished_by_running_it_again() {
    let redis = Redis::start();
    let topics = settings_for("x", "redis://x", "").all_topics();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let broker = ipg_switch::kafka::EmbeddedBroker::start(&topics, PARTITIONS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&dir, &redis.url());
    let mut csv = b"va_number,prefix,type,name,customer_name,total_amount\n".to_vec();
    let rows = 3_000;
    for i in 0..rows {
        csv.extend(format!("79{i:08},{PREFIX},close,SPP,Siswa {i},150000\n").as_bytes());
    }
    let file = dir.path().join("big.csv");
    std::fs::write(&file, &csv).unwrap();
    let path = file.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ipg-switch"))
        .arg("--config")
        .arg(&cfg)
        .args(["bill", "import", path, "--institution", INST])
        .env("TEST_INST_KEY", "k")
        .env("IPG__KAFKA__BOOTSTRAP_SERVERS", &broker.bootstrap)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once some bills exist, before it is done.
    let mut conn = redis::Client::open(redis.url().as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let bills = format!("ipg:{{{INST}}}:bills");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let n: u64 = redis::cmd("ZCARD")
            .arg(&bills)
            .query_async(&mut conn)
            .await
            .unwrap();
        if n >= 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the import never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before: u64 = redis::cmd("ZCARD")
        .arg(&bills)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(before < rows as u64, "killed before the end: {before}");

    let env: &[(&str, &str)] = &[
        ("TEST_INST_KEY", "k"),
        ("IPG__KAFKA__BOOTSTRAP_SERVERS", &broker.bootstrap),
    ];
    let out = ipg(&cfg, env, &["bill", "import", path, "--institution", INST]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut r = csv::Reader::from_path(dir.path().join("big.csv.result.csv")).unwrap();
    let results: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(results.len(), rows);
    let existing = results.iter().filter(|r| &r[1] == "existing").count() as u64;
    let created = results.iter().filter(|r| &r[1] == "created").count() as u64;
    assert_eq!(created + existing, rows as u64);
    assert!(
        existing >= before,
        "every bill made before the kill is found: {existing} < {before}"
    );
    let after: u64 = redis::cmd("ZCARD")
        .arg(&bills)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(after, rows as u64, "every bill once");
    let out = ipg(&cfg, env, &["verify"]);
    assert!(
        out.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

/// Two uploads of overlapping rows at once (issue 28): each VA billed once; the row that
/// lost the race is answered `existing` with the winner's bill; a row with the same VA and
/// other data is refused (`va_number`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_of_overlapping_rows_bill_each_va_once() {
    use ipg_switch::issuance;
    let stack = Stack::start().await;
    let sw = ipg_switch::build_switch(&stack.settings).unwrap();
    let inst = sw.routing.by_code(INST).unwrap().clone();
    let csv = |from: usize, to: usize, amount: u64| {
        let mut c = String::from("va_number,prefix,type,name,customer_name,total_amount\n");
        for i in from..to {
            c.push_str(&format!("80{i:08},{PREFIX},close,SPP,Siswa {i},{amount}\n"));
        }
        issuance::read_csv(c.as_bytes(), INST).unwrap()
    };
    // Rows 0-99 and 50-149 (the overlap identical), and 100-109 again with another amount.
    let (a, b, c) = tokio::join!(
        issuance::issue_all(&sw.hosted, &inst, csv(0, 100, 1000), false, || {}),
        issuance::issue_all(&sw.hosted, &inst, csv(50, 150, 1000), false, || {}),
        issuance::issue_all(&sw.hosted, &inst, csv(100, 110, 2000), false, || {}),
    );
    let all: Vec<&issuance::RowResult> = a.iter().chain(&b).chain(&c).collect();
    let mut by_va: std::collections::HashMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for r in all.iter().filter(|r| r.ok()) {
        by_va
            .entry(r.va_number.clone())
            .or_default()
            .insert(r.hash.clone());
    }
    assert_eq!(by_va.len(), 150, "every VA billed");
    assert!(by_va.values().all(|h| h.len() == 1), "one bill per VA");
    let created = all.iter().filter(|r| r.status == "created").count();
    assert_eq!(created, 150, "each VA created once");
    // The identical overlap (50-99) is found as issued by whichever upload came second.
    let existing = all.iter().filter(|r| r.status == "existing").count();
    assert_eq!(existing, 50);
    // Rows 100-109 of other data: one of the two uploads lost each VA, refused by name.
    let refused: Vec<&&issuance::RowResult> = all.iter().filter(|r| !r.ok()).collect();
    assert_eq!(refused.len(), 10, "{refused:?}");
    assert!(refused.iter().all(|r| r.field == "va_number"));
}
