//! The journal (issue 12, docs/journal.md): every change of bills and money is an event in
//! Kafka before it is answered, and Redis is rebuilt from it: after `FLUSHALL` by
//! `restore`, after losing its last writes by the daemon's own recovery.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::institution::Institution;
use common::*;
use serde_json::{json, Value};

async fn flushall(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
}

fn reversal(va: &str, payment_ref: &str, amount: u64) -> Value {
    json!({"va_number": va, "payment_ref": payment_ref, "amount": amount})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_then_restore_gives_back_every_record_key_by_key() {
    let inst = Institution::start("pas-key").await;
    let mut stack = Stack::start().await;
    stack.point_passive(inst.base_url());
    let journal = collect(&stack.broker.bootstrap, &stack.settings.topics.journal);
    let daemon = stack.daemon();

    let close = stack
        .create_bill(bill_body("5100000001", "close", 150_000))
        .await;
    let partial = stack
        .create_bill(bill_body("5100000002", "partial", 300_000))
        .await;
    let revoked = stack
        .create_bill(bill_body("5100000003", "close", 90_000))
        .await;
    let sw = stack.switch();
    let sch = sw.routing.by_code(INST).unwrap().clone();
    sw.hosted.revoke_bill(&sch, &revoked.hash).await.unwrap();

    let v1 = va(PREFIX, "5100000001");
    let v2 = va(PREFIX, "5100000002");
    let pv = va(PASSIVE_PREFIX, "5100000009");
    inst.add_bill("5100000009", 75_000);
    let mut first: HashMap<String, Value> = HashMap::new();
    for (id, kind, body) in [
        ("r1", "payment", payment(&v1, "REF-1", 150_000)),
        ("r2", "payment", payment(&v2, "REF-2", 100_000)),
        ("r3", "payment", payment(&v2, "REF-3", 50_000)),
        ("r4", "reversal", reversal(&v2, "REF-3", 50_000)),
        ("r5", "payment", payment(&pv, "REF-P", 75_000)),
    ] {
        stack.send(kind, id, body).await;
        let a = stack.answer(id).await;
        assert_eq!(a["rc"], "SUCCESS", "{id}: {a}");
        first.insert(id.to_owned(), a);
    }
    // Each change is in the journal once it was answered: 3 bills created, 1 revoked,
    // 3 payments, 1 reversal, the forwarded payment (recorded, then answered).
    let events = journal
        .wait_for("journal events", 30, |m| (m.len() >= 9).then(|| m.to_vec()))
        .await;
    let ids: HashSet<String> = events
        .iter()
        .map(|e| e.json()["event_id"].as_str().unwrap().to_owned())
        .collect();
    for id in [
        format!("{INST}:bill:{}:1", close.hash),
        format!("{INST}:bill:{}:2", revoked.hash),
        format!("{INST}:pay:{CHANNEL}:REF-1:paid"),
        format!("{INST}:pay:{CHANNEL}:REF-3:reversed"),
        format!("PAS01:ppay:{CHANNEL}:REF-P:1"),
    ] {
        assert!(ids.contains(&id), "{id} not journaled: {ids:?}");
    }
    assert_eq!(partial.institution_code, INST);
    daemon.stop().await;

    let url = stack.settings.redis.url.clone();
    let before = snapshot(&url).await;
    assert!(before.len() >= 15, "{before:#?}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = stack.config_file(&dir);
    let out = ipg_bin(&cfg, &["verify"]);
    assert!(
        out.status.success(),
        "verify before: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    flushall(&url).await;
    let out = ipg_bin(&cfg, &["verify"]);
    assert!(!out.status.success(), "verify of an empty Redis must fail");
    assert!(String::from_utf8_lossy(&out.stdout).contains("missing in Redis"));

    let out = ipg_bin(&cfg, &["restore"]);
    assert!(
        out.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("restored: "));
    let after = snapshot(&url).await;
    assert_eq!(
        before, after,
        "Redis after restore differs from before FLUSHALL"
    );
    let out = ipg_bin(&cfg, &["verify", "--json"]);
    assert!(out.status.success());
    let verdict: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["agrees"], true, "{verdict}");
    // Restoring twice changes nothing; a non-empty Redis needs --force.
    assert!(!ipg_bin(&cfg, &["restore"]).status.success());
    assert!(ipg_bin(&cfg, &["restore", "--force"]).status.success());
    assert_eq!(snapshot(&url).await, before);
    // A record no event explains (written by hand, or before the journal) is a difference.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let stray = format!("ipg:{{{INST}}}:bill:STRAY001");
    let _: () = redis::cmd("HSET")
        .arg(&stray)
        .arg("doc")
        .arg("{}")
        .query_async(&mut c)
        .await
        .unwrap();
    let out = ipg_bin(&cfg, &["verify"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("1 record(s) in Redis that no journal event explains"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let _: () = redis::cmd("DEL")
        .arg(&stray)
        .query_async(&mut c)
        .await
        .unwrap();

    // Issue 22 item 12: every record money or a bill is read from is compared, not only
    // those an event names. Each tampering alone makes verify fail, naming the key.
    let tamper: Vec<(Vec<Vec<String>>, Vec<Vec<String>>, String)> = vec![
        // A balance for an institution that has no ledger.
        (
            vec![vec![
                "SET".into(),
                "ipg:{NOLEDGER}:balance".into(),
                "5000000".into(),
            ]],
            vec![vec!["DEL".into(), "ipg:{NOLEDGER}:balance".into()]],
            "ipg:{NOLEDGER}:balance".into(),
        ),
        // A VA pointed at another bill of its institution.
        (
            vec![vec![
                "SET".into(),
                format!("ipg:{{{INST}}}:va:{v1}"),
                partial.hash.clone(),
            ]],
            vec![vec![
                "SET".into(),
                format!("ipg:{{{INST}}}:va:{v1}"),
                close.hash.clone(),
            ]],
            format!("ipg:{{{INST}}}:va:{v1}"),
        ),
        // A payment gone from its institution's index (lists and statements page it).
        (
            vec![vec![
                "ZREM".into(),
                format!("ipg:{{{INST}}}:payments"),
                format!("ipg:{{{INST}}}:pay:{CHANNEL}:REF-1"),
            ]],
            vec![],
            format!("ipg:{{{INST}}}:payments"),
        ),
    ];
    for (break_it, mend, key) in tamper {
        let before_tamper = snapshot(&url).await;
        for cmd in &break_it {
            let _: redis::Value = redis::cmd(&cmd[0])
                .arg(&cmd[1..])
                .query_async(&mut c)
                .await
                .unwrap();
        }
        let out = ipg_bin(&cfg, &["verify"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "verify missed {key}:\n{text}");
        assert!(text.contains(&key), "verify does not name {key}:\n{text}");
        if mend.is_empty() {
            // Put back by restoring (applying is idempotent and fills what is missing).
            assert!(ipg_bin(&cfg, &["restore", "--force"]).status.success());
        }
        for cmd in &mend {
            let _: redis::Value = redis::cmd(&cmd[0])
                .arg(&cmd[1..])
                .query_async(&mut c)
                .await
                .unwrap();
        }
        assert_eq!(snapshot(&url).await, before_tamper, "{key} mended");
        assert!(ipg_bin(&cfg, &["verify"]).status.success(), "{key} mended");
    }

    // The restored switch answers repeats as the first time and pays nothing twice.
    let daemon = stack.daemon();
    for (id, kind, body) in [
        ("r1b", "payment", payment(&v1, "REF-1", 150_000)),
        ("r5b", "payment", payment(&pv, "REF-P", 75_000)),
    ] {
        stack.send(kind, id, body).await;
        let a = stack.answer(id).await;
        let f = &first[&id[..2]];
        assert_eq!(
            (&a["rc"], &a["timestamp"], &a["data"]),
            (&f["rc"], &f["timestamp"], &f["data"]),
            "{id}"
        );
    }
    daemon.stop().await;
    assert_eq!(inst.hits("payment").len(), 1, "forwarded once");
    let (ledger, balance) = stack.ledger().await;
    assert_eq!(ledger.len(), 4);
    assert_eq!(balance, 250_000);
}

/// Copies a Redis data directory (the AOF as it stands) into `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_losing_its_last_writes_loses_no_answered_payment() {
    const BILLS: usize = 500;
    const EACH: u64 = 10_000;
    const PER_BILL: usize = 4;
    const TOTAL: usize = BILLS * PER_BILL;
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let aof = |dir: &std::path::Path| -> Vec<String> {
        [
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--dir",
            dir.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let redis = Redis::start_with(port, &aof(data.path()));
    let mut stack = Stack::start_on(redis, "").await;
    let mut vas = Vec::with_capacity(BILLS);
    let sw = stack.switch();
    let sch = sw.routing.by_code(INST).unwrap().clone();
    for i in 0..BILLS {
        let number = format!("52{i:08}");
        sw.hosted
            .create_bill(&sch, &bill_body(&number, "partial", EACH * PER_BILL as u64))
            .await
            .unwrap();
        vas.push(va(PREFIX, &number));
    }
    let daemon = stack.daemon();
    let (catch_ups0, catch_up_secs0, reapplied0) = (
        metric("ipg_journal_catch_up_duration_seconds_count"),
        metric("ipg_journal_catch_up_duration_seconds_sum"),
        metric("ipg_journal_reapplied_records_total"),
    );
    let started = Instant::now();
    let mut sent: Vec<(String, String, String)> = Vec::with_capacity(TOTAL);
    for round in 0..PER_BILL {
        for (i, v) in vas.iter().enumerate() {
            sent.push((
                format!("q{round}-{i}"),
                format!("PAY-{round}-{i}"),
                v.clone(),
            ));
        }
    }
    let answered = |stack: &Stack| -> usize {
        answers_by_id(&stack.responses.all())
            .values()
            .filter(|a| a[0]["rc"] == "SUCCESS")
            .count()
    };
    let third = TOTAL / 3;
    async fn send(stack: &Stack, sent: &[(String, String, String)], amount: u64) {
        for (id, reference, v) in sent {
            stack
                .send("payment", id, payment(v, reference, amount))
                .await;
        }
    }
    // The first third answered: the AOF as it is now is what the crash will leave.
    send(&stack, &sent[..third], EACH).await;
    while answered(&stack) < third {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let snap = tempfile::tempdir().unwrap();
    copy_dir(&data.path().join("appendonlydir"), snap.path());
    let at_copy = answered(&stack);
    // Half-way through the second third: kill -9, and Redis comes back from the older
    // files, without every write since the copy (whose payments were answered SUCCESS),
    // while the rest of the second third is in flight.
    send(&stack, &sent[third..2 * third], EACH).await;
    while answered(&stack) < third + third / 2 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stack.redis.stop(); // SIGKILL
    let at_kill = answered(&stack);
    std::fs::remove_dir_all(data.path().join("appendonlydir")).unwrap();
    copy_dir(
        &snap.path().join("appendonlydir"),
        &data.path().join("appendonlydir"),
    );
    stack.redis = Redis::start_with(port, &aof(data.path()));
    send(&stack, &sent[2 * third..], EACH).await;

    while answered(&stack) < TOTAL {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "only {} of {TOTAL} answered",
            answered(&stack)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();

    // 0 lost: every payment answered SUCCESS is in Redis; no bill paid twice. (A new
    // switch: the one made before has a connection to the Redis that was killed.)
    let sw = stack.switch();
    let store = &sw.hosted.store;
    for (_, reference, _) in &sent {
        assert!(
            store
                .payment(INST, CHANNEL, reference)
                .await
                .unwrap()
                .is_some(),
            "{reference} was answered SUCCESS and is lost"
        );
    }
    for v in &vas {
        let bill = store.bill_by_va(INST, v).await.unwrap().unwrap().value;
        assert_eq!(bill.paid_amount.get(), EACH * PER_BILL as u64, "{v}");
    }
    let (ledger, balance) = stack.ledger().await;
    assert_eq!(ledger.len(), TOTAL, "one ledger entry per payment");
    assert_eq!(balance, (EACH as usize * TOTAL) as i64);

    // A repeat answers as the first time.
    let firsts = answers_by_id(&stack.responses.all());
    for (id, reference, v) in sent.iter().step_by(97) {
        let again = format!("{id}-again");
        stack
            .send("payment", &again, payment(v, reference, EACH))
            .await;
        let a = stack.answer(&again).await;
        let f = &firsts[id][0];
        assert_eq!(
            (&a["timestamp"], &a["data"]),
            (&f["timestamp"], &f["data"]),
            "{id}"
        );
    }
    daemon.stop().await;

    let journal = stack.settings.journal(&stack.broker.bootstrap);
    let verdict =
        ipg_switch::journal::verify::verify(&journal, store, &mut ipg_switch::journal::Quiet)
            .await
            .unwrap();
    assert!(verdict.agrees(), "{}", verdict.table());
    // The ledger read from Redis in pages (issue 24): pages of 7 cross every edge.
    let paged = ipg_switch::journal::verify::verify_in_pages(
        &journal,
        store,
        &mut ipg_switch::journal::Quiet,
        7,
    )
    .await
    .unwrap();
    assert_eq!(paged.table(), verdict.table());
    let reapplied = metric("ipg_journal_reapplied_records_total") - reapplied0;
    let catch_ups = metric("ipg_journal_catch_up_duration_seconds_count") - catch_ups0;
    let catch_up_secs = metric("ipg_journal_catch_up_duration_seconds_sum") - catch_up_secs0;
    eprintln!(
        "journal recovery: {TOTAL} payments in {:.1} s; AOF copied at {at_copy} answered, \
         Redis killed at {at_kill}; {catch_ups} recovery(ies) took {catch_up_secs:.3} s and \
         set {reapplied} records again",
        elapsed.as_secs_f64()
    );
    assert!(
        at_kill > at_copy && reapplied > 0.0,
        "the test lost no write: copy at {at_copy}, kill at {at_kill}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_between_commit_and_journal_journals_the_payment_on_redelivery() {
    let stack = Stack::start().await;
    let journal = collect(&stack.broker.bootstrap, &stack.settings.topics.journal);
    stack
        .create_bill(bill_body("5300000001", "close", 120_000))
        .await;
    let v = va(PREFIX, "5300000001");
    let dir = tempfile::tempdir().unwrap();
    let cfg = stack.config_file(&dir);
    // The daemon as its own process, with the fault point that aborts it right after the
    // payment's Redis commit, before its journal event is produced.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ipg-switch"))
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .env("IPG_FAULT_AFTER_COMMIT", "abort")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    stack
        .send("payment", "k1", payment(&v, "REF-K", 120_000))
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not reach the fault point"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "aborted at the fault point");
    let id = format!("{INST}:pay:{CHANNEL}:REF-K:paid");
    let store = stack.switch().hosted.store;
    assert!(
        store
            .payment(INST, CHANNEL, "REF-K")
            .await
            .unwrap()
            .is_some(),
        "committed in Redis before the abort"
    );
    assert!(stack.answers("k1").is_empty(), "nothing answered");
    let journaled = |m: &[Received]| {
        m.iter()
            .filter(|e| e.json()["event_id"] == id.as_str())
            .count()
    };
    assert_eq!(journaled(&journal.all()), 0);

    // Started again, the daemon is given the same request (never committed offset): it
    // finds the payment, journals it under the same id, and answers.
    let daemon = stack.daemon();
    let a = stack.answer("k1").await;
    assert_eq!(a["rc"], "SUCCESS", "{a}");
    journal
        .wait_for("the payment's event", 30, |m| {
            (journaled(m) >= 1).then_some(())
        })
        .await;
    daemon.stop().await;
    assert_eq!(journaled(&journal.all()), 1, "journaled once, by event id");
    let (ledger, _) = stack.ledger().await;
    assert_eq!(ledger.len(), 1, "paid once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_redis_is_rebuilt_from_the_journal_before_it_answers() {
    let stack = Stack::start().await;
    let daemon = stack.daemon();
    stack
        .create_bill(bill_body("5400000001", "partial", 200_000))
        .await;
    let v = va(PREFIX, "5400000001");
    stack
        .send("payment", "f1", payment(&v, "REF-F1", 50_000))
        .await;
    let first = stack.answer("f1").await;
    assert_eq!(first["rc"], "SUCCESS", "{first}");
    // FLUSHALL keeps Redis's scripts: only the journal marks' absence (the sentinel every
    // request script checks) tells the switch that its data is gone.
    flushall(&stack.settings.redis.url).await;
    stack
        .send("payment", "f1-again", payment(&v, "REF-F1", 50_000))
        .await;
    let again = stack.answer("f1-again").await;
    assert_eq!(
        (&again["rc"], &again["timestamp"], &again["data"]),
        (&first["rc"], &first["timestamp"], &first["data"]),
        "answered as the first time, from the rebuilt Redis"
    );
    stack
        .send("payment", "f2", payment(&v, "REF-F2", 150_000))
        .await;
    assert_eq!(stack.answer("f2").await["rc"], "SUCCESS");
    stack
        .send("payment", "f3", payment(&v, "REF-F3", 1_000))
        .await;
    let over = stack.answer("f3").await;
    assert_ne!(over["rc"], "SUCCESS", "the bill is paid in full: {over}");
    daemon.stop().await;
    let (ledger, balance) = stack.ledger().await;
    assert_eq!(ledger.len(), 2);
    assert_eq!(balance, 200_000);
}

/// Issue 22 item 11 (decision 9): a reversal that arrives before its payment and finds
/// nothing closes the reference, journaled before it is answered; the late original is
/// refused (hosted: nothing paid; passive: never forwarded), also after FLUSHALL + restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_that_overtakes_its_payment_closes_the_reference() {
    let inst = Institution::start("pas-key").await;
    let mut stack = Stack::start().await;
    stack.point_passive(inst.base_url());
    let journal = collect(&stack.broker.bootstrap, &stack.settings.topics.journal);
    let daemon = stack.daemon();
    stack
        .create_bill(bill_body("5200000001", "close", 150_000))
        .await;
    let v = va(PREFIX, "5200000001");
    let pv = va(PASSIVE_PREFIX, "5200000009");
    inst.add_bill("5200000009", 75_000);

    for (id, kind, body, rc) in [
        (
            "e1",
            "reversal",
            reversal(&v, "LATE-1", 150_000),
            "BILLER_PAYMENT_NOT_FOUND",
        ),
        // The same reversal again: the same answer, the reference stays closed.
        (
            "e2",
            "reversal",
            reversal(&v, "LATE-1", 150_000),
            "BILLER_PAYMENT_NOT_FOUND",
        ),
        (
            "e3",
            "payment",
            payment(&v, "LATE-1", 150_000),
            "BILLER_INVALID_TRANSACTION",
        ),
        (
            "e4",
            "reversal",
            reversal(&pv, "LATE-P", 75_000),
            "BILLER_PAYMENT_NOT_FOUND",
        ),
        (
            "e5",
            "payment",
            payment(&pv, "LATE-P", 75_000),
            "BILLER_INVALID_TRANSACTION",
        ),
        // The bill is still payable under another reference.
        ("e6", "payment", payment(&v, "ON-TIME", 150_000), "SUCCESS"),
    ] {
        stack.send(kind, id, body).await;
        let a = stack.answer(id).await;
        assert_eq!(a["rc"], rc, "{id}: {a}");
        if id == "e3" || id == "e5" {
            assert!(
                a["message"].as_str().unwrap().contains("reversed before"),
                "{id}: {a}"
            );
        }
    }
    assert!(
        inst.hits("payment").is_empty(),
        "the passive institution was never asked to take LATE-P"
    );
    let events = journal
        .wait_for("the void events", 30, |m| {
            let ids: HashSet<String> = m
                .iter()
                .filter_map(|e| e.json()["event_id"].as_str().map(str::to_owned))
                .collect();
            (ids.contains(&format!("{INST}:void:{CHANNEL}:LATE-1"))
                && ids.contains(&format!("PAS01:void:{CHANNEL}:LATE-P")))
            .then_some(ids)
        })
        .await;
    assert!(events.len() >= 3, "{events:?}");
    daemon.stop().await;

    // Rebuilt from the journal, the reference is still closed.
    let url = stack.settings.redis.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let cfg = stack.config_file(&dir);
    let before = snapshot(&url).await;
    flushall(&url).await;
    let out = ipg_bin(&cfg, &["restore"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(snapshot(&url).await, before);
    let out = ipg_bin(&cfg, &["verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let daemon = stack.daemon();
    stack
        .send("payment", "e7", payment(&v, "LATE-1", 150_000))
        .await;
    assert_eq!(stack.answer("e7").await["rc"], "BILLER_INVALID_TRANSACTION");
    daemon.stop().await;
}

/// Issue 24: a journal whose first events the broker dropped (here the embedded broker,
/// which keeps about 5 MiB per partition) is named by `verify` as incomplete, with the
/// partition and how many events are gone, instead of only counts that differ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_a_journal_whose_start_the_broker_dropped() {
    use rdkafka::producer::FutureRecord;
    let stack = Stack::start().await;
    let topic = stack.settings.topics.journal.clone();
    let pad = "x".repeat(1_800);
    for i in 0..3_500 {
        let body = format!("{{\"pad\":\"{pad}{i}\"}}");
        stack
            .producer
            .send(
                FutureRecord::to(&topic)
                    .partition(0)
                    .key("k")
                    .payload(&body),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }
    let journal = stack.settings.journal(&stack.broker.bootstrap);
    let dropped = journal.dropped().await.unwrap();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(dropped[0].0, 0);
    let store = stack.switch().hosted.store;
    let verdict =
        ipg_switch::journal::verify::verify(&journal, &store, &mut ipg_switch::journal::Quiet)
            .await
            .unwrap();
    assert!(!verdict.agrees());
    let note = format!(
        "{topic}[0]: the broker no longer holds this partition's first {}",
        dropped[0].1
    );
    assert!(
        verdict.differences.iter().any(|d| d.starts_with(&note)),
        "{}",
        verdict.table()
    );
}

/// Issue 30, the first broker fault: the broker down for 10 s while payments flow through
/// the Kafka door, some of them in flight in the switch when it goes. Afterwards every
/// payment is answered SUCCESS once its broker is back, each is journaled once and paid
/// once in Redis, and `verify` finds Redis and the journal in agreement.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_down_for_10_s_loses_and_doubles_no_payment() {
    use ipg_switch::kafka::BrokerFault;
    let stack = Stack::start().await;
    let daemon = stack.daemon();
    const N: usize = 20;
    for i in 0..N {
        stack
            .create_bill(bill_body(&format!("70000000{i:02}"), "close", 25_000))
            .await;
    }
    let pay = |i: usize| {
        payment(
            &va(PREFIX, &format!("70000000{i:02}")),
            &format!("BD-{i}"),
            25_000,
        )
    };
    // Warm: the daemon is consuming before the fault.
    stack.send("payment", "bd-0", pay(0)).await;
    assert_eq!(stack.answer("bd-0").await["rc"], "SUCCESS");
    // Half sent and the broker taken down at once, while the switch works on them; the
    // other half sent while it is down (delivered once it is back).
    for i in 1..N / 2 {
        stack.send("payment", &format!("bd-{i}"), pay(i)).await;
    }
    stack.broker.fault(BrokerFault::Down).unwrap();
    let down = Instant::now();
    let later = async {
        for i in N / 2..N {
            stack.send("payment", &format!("bd-{i}"), pay(i)).await;
        }
    };
    let outage = async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        stack.broker.fault(BrokerFault::Up).unwrap();
    };
    tokio::join!(later, outage);
    for i in 0..N {
        let a = stack.answer(&format!("bd-{i}")).await;
        assert_eq!(a["rc"], "SUCCESS", "bd-{i}: {a}");
    }
    let recovered = down.elapsed();
    daemon.stop().await;

    // Each payment once in the journal, each bill paid once in Redis, and they agree.
    let paid = stack.journaled_payments().await;
    let journal = stack.settings.journal(&stack.broker.bootstrap);
    assert_eq!(paid.len(), N, "{paid:?}");
    let store = stack.switch().hosted.store;
    let verdict =
        ipg_switch::journal::verify::verify(&journal, &store, &mut ipg_switch::journal::Quiet)
            .await
            .unwrap();
    assert!(verdict.agrees(), "{}", verdict.table());
    let (ledger, balance) = stack.ledger().await;
    assert_eq!((ledger.len(), balance), (N, 25_000 * N as i64));
    eprintln!(
        "broker down 10 s: {N} payments offered, {N} answered SUCCESS, {} journal events \
         (events journaled again by a repeat count once by id), all answered {:.1} s after \
         the broker went down",
        paid.values().sum::<usize>(),
        recovered.as_secs_f64()
    );
}

/// Issue 24: the demo's embedded broker (gzip, as config/demo.toml) keeps 5,000 payments of
/// one institution (one partition: the mock keeps about 5 MiB of it): afterwards the day's
/// statement lists every payment answered, `verify` agrees, and FLUSHALL + `restore` gives
/// back the same Redis, key by key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_thousand_payments_on_the_demo_broker_agree_in_statement_verify_and_restore() {
    const N: usize = 5_000;
    let stack = Stack::start_with("[kafka.properties]\n\"compression.type\" = \"gzip\"\n").await;
    let url = stack.settings.redis.url.clone();
    stack.create_bill(bill_body("7400000001", "open", 0)).await;
    let daemon = stack.daemon();
    let va = va(PREFIX, "7400000001");
    let day = || {
        ipg_switch::clock::Clock::new(chrono::FixedOffset::east_opt(7 * 3600).unwrap())
            .now()
            .date_naive()
            .to_string()
    };
    let first_day = day();
    for chunk in (0..N).collect::<Vec<_>>().chunks(250) {
        futures::future::join_all(chunk.iter().map(|i| {
            let (id, body) = (format!("big-{i}"), payment(&va, &format!("BIG-{i}"), 1_000));
            let stack = &stack;
            async move { stack.send("payment", &id, body).await }
        }))
        .await;
    }
    let answered = stack
        .responses
        .wait_for("5,000 answers", 600, |msgs| {
            let ok = msgs
                .iter()
                .map(Received::json)
                .filter(|v| v["rc"] == "SUCCESS")
                .count();
            (ok >= N).then_some(ok)
        })
        .await;
    assert_eq!(answered, N);
    daemon.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let cfg = stack.config_file(&dir);
    let run = |args: &[&str]| {
        let out = ipg_bin(&cfg, args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let mut days = vec![first_day, day()];
    days.dedup();
    let mut listed = 0;
    let mut total = 0;
    for d in &days {
        let s: Value = serde_json::from_str(&run(&[
            "statement",
            "--date",
            d,
            "--institution",
            INST,
            "--format",
            "json",
        ]))
        .unwrap();
        for l in s["lines"].as_array().unwrap() {
            if l["type"] == "payment" {
                listed += 1;
                total += l["amount"].as_u64().unwrap();
            }
        }
    }
    assert_eq!((listed, total), (N, 1_000 * N as u64));
    let t = Instant::now();
    run(&["verify"]);
    let verified = t.elapsed();
    let before = snapshot(&url).await;
    flushall(&url).await;
    let t = Instant::now();
    let restored = run(&["restore"]);
    let restore_took = t.elapsed();
    assert_eq!(snapshot(&url).await, before, "Redis after restore");
    run(&["verify"]);
    eprintln!(
        "{N} payments of one institution on the embedded broker (gzip): statement lists \
         {listed}, verify {:.1} s, restore {:.1} s ({})",
        verified.as_secs_f64(),
        restore_took.as_secs_f64(),
        restored.trim()
    );
}
