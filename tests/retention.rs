//! The working set (issue 25, docs/retention.md): records leave Redis after their windows,
//! on the switch's own schedule, and nothing leaves that a repeat, a reversal or a
//! check-status needs to be answered truthfully. Real daemon, real redis-server, the
//! Kafka-protocol broker; windows of seconds instead of days.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Hot window 12 s, reference window 300 s (nothing is forgotten during the test), a sweep
/// every 300 ms taking two records of a
/// kind at a time (so it crosses its batches' edges). The journal's windows shrink to fit
/// under the hot one (a change left unjournaled is settled from its full record).
const WINDOWS: &str = r#"
[journal]
append_deadline_ms = 2000
unjournaled_after_ms = 5000
[retention]
hot_window_ms = 12000
reference_window_ms = 300000
sweep_interval_ms = 300
sweep_batch = 2
[switch]
lock_ttl_ms = 8000
lock_wait_ms = 15000
"#;

async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The URL of the Redis node holding `key` (on a cluster, its slot's master).
fn node_of(stack: &Stack, key: &str) -> String {
    if stack.redis.is_cluster() {
        format!("redis://127.0.0.1:{}/", stack.redis.master_of(key))
    } else {
        stack.settings.redis.url.clone()
    }
}

/// Every master's URL (one Redis: its own).
fn masters(stack: &Stack) -> Vec<String> {
    if !stack.redis.is_cluster() {
        return vec![stack.settings.redis.url.clone()];
    }
    let live = stack.redis.live_ports()[0];
    common::cluster::nodes_of(live)
        .into_iter()
        .filter(|n| n.master && !n.failed)
        .map(|n| format!("redis://127.0.0.1:{}/", n.port))
        .collect()
}

/// Every record of every master, key by key (`snapshot`).
async fn snapshot_all(stack: &Stack) -> std::collections::BTreeMap<String, String> {
    let mut all = std::collections::BTreeMap::new();
    for url in masters(stack) {
        all.extend(snapshot(&url).await);
    }
    all
}

/// Fails naming each key whose record differs between `want` and `got`.
fn assert_same(
    want: &std::collections::BTreeMap<String, String>,
    got: &std::collections::BTreeMap<String, String>,
    what: &str,
) {
    let keys: std::collections::BTreeSet<&String> = want.keys().chain(got.keys()).collect();
    let differ: Vec<String> = keys
        .into_iter()
        .filter(|k| want.get(*k) != got.get(*k))
        .map(|k| format!("{k}: {:?} -> {:?}", want.get(k), got.get(k)))
        .collect();
    assert!(
        differ.is_empty(),
        "{what}: {} key(s) differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
}

async fn wait_until<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn reversal(va: &str, payment_ref: &str, amount: u64) -> Value {
    json!({"va_number": va, "payment_ref": payment_ref, "amount": amount})
}

fn status(va: &str, payment_ref: &str) -> Value {
    json!({"payment_ref": payment_ref, "va_number": va, "date": "2026-01-10"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_leave_after_their_windows_and_nothing_is_paid_twice() {
    let port = free_port();
    let stack =
        Stack::start_with(&format!("[api]\nlisten = \"127.0.0.1:{port}\"\n{WINDOWS}")).await;
    let base = format!("http://127.0.0.1:{port}");
    let daemon = stack.daemon();
    http_up(&base).await;
    // Every key of the institution is in its slot: one node holds them all.
    let mut c = redis(&node_of(&stack, &format!("ipg:{{{INST}}}:bills"))).await;

    // An open bill that stays (partial: a second payment of a reference would go through),
    // a closed one that leaves with its window, three payments and a reversal.
    let open = stack
        .create_bill(bill_body("7100000001", "partial", 1_000_000))
        .await;
    let closed = stack
        .create_bill(bill_body("7100000002", "close", 150_000))
        .await;
    let (v1, v2) = (va(PREFIX, "7100000001"), va(PREFIX, "7100000002"));
    stack
        .send("payment", "p1", payment(&v1, "R1", 50_000))
        .await;
    let first = stack.answer("p1").await;
    assert_eq!(first["rc"], "SUCCESS", "{first}");
    let p1_id = first["data"]["payment"]["id"].as_str().unwrap().to_owned();
    let (s, a) = post_channel(&base, "payment", &payment(&v2, "R2", 150_000)).await;
    assert_eq!((s, a["rc"].as_str()), (200, Some("SUCCESS")), "{a}");
    for (id, kind, body) in [
        ("p3", "payment", payment(&v1, "R3", 20_000)),
        ("p3r", "reversal", reversal(&v1, "R3", 20_000)),
    ] {
        stack.send(kind, id, body).await;
        assert_eq!(stack.answer(id).await["rc"], "SUCCESS", "{id}");
        // The reversal in another second than its payment: the compact record keeps when
        // it was paid, not when it was reversed.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let pkey = |r: &str| format!("ipg:{{{INST}}}:pay:{CHANNEL}:{r}");

    // Within the hot window: full records, indexed.
    let full: bool = redis::cmd("HEXISTS")
        .arg(pkey("R1"))
        .arg("doc")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(full);
    // What each kind of record costs (printed; docs/retention.md quotes it).
    let probe = c.clone();
    let usage = |k: String| {
        let mut c = probe.clone();
        async move {
            let n: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&k)
                .query_async(&mut c)
                .await
                .unwrap();
            n.unwrap_or(0)
        }
    };
    let full_bytes = usage(pkey("R2")).await;
    let bill_bytes = usage(format!("ipg:{{{INST}}}:bill:{}", open.hash)).await;
    let va_bytes = usage(format!("ipg:{{{INST}}}:va:{v1}")).await;

    // Past it: each payment becomes its compact record and leaves the indexes; the
    // ledger's entries leave its head (the balance and the sequence stay).
    wait_until("the payments are retired", 40, || {
        let mut c = c.clone();
        let keys = ["R1", "R2", "R3"].map(pkey);
        async move {
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.cmd("HEXISTS").arg(k).arg("doc");
            }
            let full: Vec<bool> = pipe.query_async(&mut c).await.unwrap();
            full.iter().all(|f| !f)
        }
    })
    .await;
    let compact: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(pkey("R1"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(compact["id"], p1_id);
    assert_eq!(compact["amount"], "50000");
    assert_eq!(compact["va_number"], v1);
    let compact_bytes = usage(pkey("R2")).await;
    let binding_key = format!("ipg:ref:{{{CHANNEL}:R2}}");
    let binding_bytes: Option<u64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&binding_key)
        .query_async(&mut redis(&node_of(&stack, &binding_key)).await)
        .await
        .unwrap();
    eprintln!(
        "bytes per record (MEMORY USAGE): full payment {full_bytes}, compact payment \
         {compact_bytes}, binding {}, bill {bill_bytes}, VA pointer {va_bytes}",
        binding_bytes.unwrap_or(0)
    );
    assert!(
        compact_bytes < full_bytes / 4,
        "{compact_bytes} vs {full_bytes}"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(pkey("R1"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 330_000,
        "expires with the reference window: {ttl}"
    );
    let binding = format!("ipg:ref:{{{CHANNEL}:R1}}");
    let binding_ttl: i64 = redis::cmd("PTTL")
        .arg(&binding)
        .query_async(&mut redis(&node_of(&stack, &binding)).await)
        .await
        .unwrap();
    assert!(binding_ttl > 0 && binding_ttl <= 300_000, "{binding_ttl}");
    wait_until("the ledger's head is trimmed", 20, || {
        let mut c = c.clone();
        async move {
            let n: u64 = redis::cmd("LLEN")
                .arg(format!("ipg:{{{INST}}}:ledger"))
                .query_async(&mut c)
                .await
                .unwrap();
            n == 0
        }
    })
    .await;
    let (payments_indexed, ledger_base, balance): (u64, u64, i64) = redis::pipe()
        .cmd("ZCARD")
        .arg(format!("ipg:{{{INST}}}:payments"))
        .cmd("GET")
        .arg(format!("ipg:{{{INST}}}:ledger_base"))
        .cmd("GET")
        .arg(format!("ipg:{{{INST}}}:balance"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!((payments_indexed, ledger_base, balance), (0, 4, 200_000));
    assert!(metric("ipg_retention_retired_total{kind=\"payment\"}") >= 3.0);
    assert!(metric("ipg_retention_retired_total{kind=\"ledger_entry\"}") >= 4.0);
    wait_until("the working set is measured", 10, || async {
        metric("ipg_redis_used_memory_bytes") > 0.0 && metric("ipg_redis_keys") > 0.0
    })
    .await;

    // A repeat of a retired payment, concurrently through both doors: answered "already
    // processed" with the payment's id, never paid again.
    let body = payment(&v1, "R1", 50_000);
    let http = futures::future::join_all((0..3).map(|_| post_channel(&base, "payment", &body)));
    let kafka = async {
        for i in 0..3 {
            stack
                .send("payment", &format!("p1-again-{i}"), body.clone())
                .await;
        }
        let mut out = Vec::new();
        for i in 0..3 {
            out.push(stack.answer(&format!("p1-again-{i}")).await);
        }
        out
    };
    let (http, kafka) = tokio::join!(http, kafka);
    for a in http.iter().map(|(_, a)| a).chain(kafka.iter()) {
        assert_eq!(a["rc"], "BILLER_BILL_ALREADY_PAID", "{a}");
        assert_eq!(a["data"]["payment"]["id"], p1_id.as_str(), "{a}");
        assert_eq!(a["data"]["payment"]["status"], "paid", "{a}");
    }
    assert!(http.iter().all(|(s, _)| *s == 200));
    // Another amount under the same reference: a conflict, as within the window.
    stack
        .send("payment", "p1-other", payment(&v1, "R1", 60_000))
        .await;
    assert_eq!(
        stack.answer("p1-other").await["rc"],
        "BILLER_INVALID_TRANSACTION"
    );
    let bill = stack.stored_bill(&open.hash).await;
    assert_eq!(bill.paid_amount.get(), 50_000, "nothing paid again");
    let paid = stack.journaled_payments().await;
    assert_eq!(paid.len(), 3, "three payments journaled: {paid:?}");

    // A reversal and a check-status of a retired payment get documented answers.
    stack
        .send("reversal", "p1r", reversal(&v1, "R1", 50_000))
        .await;
    let r = stack.answer("p1r").await;
    assert_eq!(r["rc"], "BILLER_INVALID_TRANSACTION", "{r}");
    assert_eq!(r["data"]["payment"]["id"], p1_id.as_str(), "{r}");
    stack
        .send("reversal", "p3r-again", reversal(&v1, "R3", 20_000))
        .await;
    let r = stack.answer("p3r-again").await;
    assert_eq!(r["rc"], "BILLER_PAYMENT_ALREADY_REVERSED", "{r}");
    assert_eq!(r["data"]["payment"]["status"], "reversed", "{r}");
    stack.send("check_status", "cs1", status(&v1, "R1")).await;
    let cs = stack.answer("cs1").await;
    assert_eq!(cs["rc"], "SUCCESS", "{cs}");
    assert_eq!(cs["data"]["payment"]["id"], p1_id.as_str(), "{cs}");
    assert_eq!(cs["data"]["payment"]["amount"], 50_000, "{cs}");
    stack.send("check_status", "cs3", status(&v1, "R3")).await;
    let cs = stack.answer("cs3").await;
    assert_eq!(cs["data"]["payment"]["status"], "reversed", "{cs}");
    stack
        .send("check_status", "cs-wrong-va", status(&v2, "R1"))
        .await;
    assert_eq!(
        stack.answer("cs-wrong-va").await["rc"],
        "BILLER_PAYMENT_NOT_FOUND"
    );

    // The paid bill leaves a window after the sweep first saw it closed; the open one
    // stays, and so does every VA pointer but the closed bill's.
    wait_until("the paid bill leaves", 40, || {
        let mut c = c.clone();
        let key = format!("ipg:{{{INST}}}:bill:{}", closed.hash);
        async move {
            let doc: bool = redis::cmd("HEXISTS")
                .arg(&key)
                .arg("doc")
                .query_async(&mut c)
                .await
                .unwrap();
            !doc
        }
    })
    .await;
    // Its tombstone: its version, so a late event of an older one never brings it back.
    let tombstone: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("ipg:{{{INST}}}:bill:{}", closed.hash))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(
        tombstone.get("gone").map(String::as_str),
        Some("1"),
        "{tombstone:?}"
    );
    assert_eq!(
        tombstone.get("ver").map(String::as_str),
        Some("2"),
        "{tombstone:?}"
    );
    let (v2_points, v1_points, bills): (Option<String>, Option<String>, Vec<String>) =
        redis::pipe()
            .cmd("GET")
            .arg(format!("ipg:{{{INST}}}:va:{v2}"))
            .cmd("GET")
            .arg(format!("ipg:{{{INST}}}:va:{v1}"))
            .cmd("ZRANGE")
            .arg(format!("ipg:{{{INST}}}:bills"))
            .arg(0)
            .arg(-1)
            .query_async(&mut c)
            .await
            .unwrap();
    assert_eq!(v2_points, None, "the VA is free");
    assert_eq!(v1_points.as_deref(), Some(open.hash.as_str()));
    assert!(!bills.contains(&closed.hash) && bills.contains(&open.hash));
    stack.assert_verify_agrees().await;

    // A recovery from the journal (Redis flushed under the running daemon) brings back
    // nothing that left: Redis is what it was, key by key.
    let before = snapshot_all(&stack).await;
    for url in masters(&stack) {
        let _: () = redis::cmd("FLUSHALL")
            .query_async(&mut redis(&url).await)
            .await
            .unwrap();
    }
    stack
        .send("inquiry", "after-flush", inquiry(&v1, "I1"))
        .await;
    assert_eq!(stack.answer("after-flush").await["rc"], "SUCCESS");
    assert_same(
        &before,
        &snapshot_all(&stack).await,
        "the recovery brought back nothing retired",
    );
    // A repeat after the recovery is still not paid again.
    let (_, a) = post_channel(&base, "payment", &payment(&v1, "R1", 50_000)).await;
    assert_eq!(a["rc"], "BILLER_BILL_ALREADY_PAID", "{a}");

    // The freed VA is billed again and paid; the old payment stays in its day's statement.
    let again = stack
        .create_bill(bill_body("7100000002", "close", 70_000))
        .await;
    assert_ne!(again.hash, closed.hash);
    let (_, a) = post_channel(&base, "payment", &payment(&v2, "R4", 70_000)).await;
    assert_eq!(a["rc"], "SUCCESS", "{a}");
    stack.assert_verify_agrees().await;
    daemon.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let cfg = stack.config_file(&dir);
    let today = ipg_switch::clock::Clock::new(chrono::FixedOffset::east_opt(7 * 3600).unwrap())
        .now()
        .date_naive()
        .to_string();
    let out = ipg_bin(
        &cfg,
        &[
            "statement",
            "--date",
            &today,
            "--institution",
            INST,
            "--format",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut refs: Vec<(String, String)> = st["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["reference"].as_str().unwrap().to_owned(),
                l["bill_hash"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    refs.sort();
    refs.dedup();
    for (r, h) in [
        ("R1", &open.hash),
        ("R2", &closed.hash),
        ("R3", &open.hash),
        ("R4", &again.hash),
    ] {
        assert!(
            refs.contains(&(r.to_owned(), h.clone())),
            "{r} on {h} in the statement: {refs:?}"
        );
    }
}

/// A snapshot taken while payments flow, then the journal from the offset it names, gives
/// back exactly what Redis held (issue 25): key by key against a Redis that never lost
/// anything. `restore` reads the snapshot and only the journal after it, and a daemon whose
/// Redis lost its marks recovers the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_taken_under_load_restores_key_by_key() {
    let institution = common::institution::Institution::start("pas-key").await;
    let mut stack = Stack::start_with(
        "[switch]\nlock_ttl_ms = 8000\nlock_wait_ms = 15000\n[log]\nlevel = \"error\"\n",
    )
    .await;
    stack.point_passive(institution.base_url());
    let daemon = stack.daemon();
    let vas: Vec<String> = (0..8)
        .map(|i| va(PREFIX, &format!("72000000{i:02}")))
        .collect();
    for i in 0..8 {
        stack
            .create_bill(bill_body(&format!("72000000{i:02}"), "partial", 10_000_000))
            .await;
    }
    let revoked = stack
        .create_bill(bill_body("7200000050", "close", 90_000))
        .await;
    let sw = stack.switch();
    let sch = sw.routing.by_code(INST).unwrap().clone();
    sw.hosted.revoke_bill(&sch, &revoked.hash).await.unwrap();
    institution.add_bill("7200000099", 75_000);
    stack
        .send(
            "payment",
            "fw",
            payment(&va(PASSIVE_PREFIX, "7200000099"), "FW-1", 75_000),
        )
        .await;
    assert_eq!(stack.answer("fw").await["rc"], "SUCCESS");

    // 240 payments (every sixth reversed) while the snapshot is taken.
    let journal = stack.settings.journal(&stack.broker.bootstrap);
    let store = sw.hosted.store.clone();
    let load = async {
        for k in 0..240u64 {
            let v = &vas[(k % 8) as usize];
            stack
                .send(
                    "payment",
                    &format!("l{k}"),
                    payment(v, &format!("L{k}"), 1_000 + k),
                )
                .await;
            if k % 6 == 5 {
                stack
                    .send(
                        "reversal",
                        &format!("l{k}r"),
                        reversal(v, &format!("L{k}"), 1_000 + k),
                    )
                    .await;
            }
            if k % 40 == 39 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let snap = async {
        // Once the load is well under way.
        wait_until("a third of the load answered", 60, || async {
            stack.responses.all().len() > 80
        })
        .await;
        let taken = journal.take_snapshot(&store, INST).await.unwrap();
        // The passive institution's too (its forwarded payment is its record).
        journal.take_snapshot(&store, "PAS01").await.unwrap();
        taken
    };
    let ((), taken) = tokio::join!(load, snap);
    for k in 0..240u64 {
        assert_eq!(
            stack.answer(&format!("l{k}")).await["rc"],
            "SUCCESS",
            "l{k}"
        );
        if k % 6 == 5 {
            assert_eq!(stack.answer(&format!("l{k}r")).await["rc"], "SUCCESS");
        }
    }
    assert!(taken.events > 0 && taken.journal_offset > 0, "{taken:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.stop().await;
    let before = snapshot_all(&stack).await;
    let mut journal_events = 0u64;
    journal
        .scan(&mut ipg_switch::journal::Quiet, &mut |_| {
            journal_events += 1
        })
        .await
        .unwrap();

    // A newer index record whose parts the broker does not hold (a topic recreated, say):
    // passed over for the snapshot before it, never applied as if whole.
    let mut bogus = taken.clone();
    bogus.snapshot_id = "bogus".into();
    bogus.taken_ms += 1;
    bogus.parts += 5;
    // And a newest one, whole on the broker, whose journal offset is past the journal's end
    // (another journal's): never used, or the journal after the real one would be skipped.
    let mut foreign = taken.clone();
    foreign.taken_ms += 2;
    foreign.journal_offset = 1 << 40;
    for t in [&bogus, &foreign] {
        stack
            .producer
            .send(
                rdkafka::producer::FutureRecord::to(&stack.settings.topics.snapshot_index)
                    .key(INST)
                    .payload(&serde_json::to_string(t).unwrap()),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    // FLUSHALL, then restore from the snapshot and the journal after it.
    for url in masters(&stack) {
        let _: () = redis::cmd("FLUSHALL")
            .query_async(&mut redis(&url).await)
            .await
            .unwrap();
    }
    let report = journal
        .replay(
            &store,
            ipg_switch::journal::From::Snapshots,
            &mut ipg_switch::journal::Quiet,
        )
        .await
        .unwrap();
    eprintln!(
        "restore from the snapshot: {} snapshot events, then {} of the journal's {} events \
         ({:.2} s)",
        report.snapshot_events, report.events, journal_events, report.seconds
    );
    assert_eq!(report.snapshots, 2);
    assert!(report.snapshot_events > taken.events);
    assert!(
        report.events < journal_events,
        "the journal read began at the snapshot's offset: {} of {journal_events}",
        report.events
    );
    assert_same(&before, &snapshot_all(&stack).await, "restored key by key");
    stack.assert_verify_agrees().await;

    // A daemon whose Redis lost everything recovers from the snapshot too.
    for url in masters(&stack) {
        let _: () = redis::cmd("FLUSHALL")
            .query_async(&mut redis(&url).await)
            .await
            .unwrap();
    }
    let loads = metric("ipg_snapshot_loads_total");
    let daemon = stack.daemon();
    stack
        .send("inquiry", "after", inquiry(&vas[0], "I-AFTER"))
        .await;
    assert_eq!(stack.answer("after").await["rc"], "SUCCESS");
    assert!(metric("ipg_snapshot_loads_total") > loads);
    daemon.stop().await;
    assert_same(&before, &snapshot_all(&stack).await, "recovered key by key");
}
