//! Scale-out (issue 14): a Redis master killed under a stream of payments on a private
//! Redis Cluster (3 masters + 3 replicas), and one of three switch instances killed under
//! the same stream. Nothing answered `SUCCESS` is lost or paid twice; repeats answer as the
//! first time; the numbers (pause, recovery time, records the journal set again) are
//! printed for docs/operations.md.
mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::redis_cli;
use common::*;
use serde_json::Value;

const EACH: u64 = 10_000;
const PER_BILL: usize = 4;

/// One payment the test sends: request id, payment reference, VA, institution.
#[derive(Clone)]
struct Sent {
    id: String,
    reference: String,
    va: String,
    inst: String,
}

/// IPG_TEST_LOG=1 prints the daemon's log (info, and redis-rs's warnings).
fn log_if_asked() {
    if std::env::var("IPG_TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "ipg_switch=info,redis=warn",
            ))
            .with_writer(std::io::stderr)
            .try_init();
    }
}

async fn send_all(stack: &Stack, sent: &[Sent]) {
    for s in sent {
        stack
            .send("payment", &s.id, payment(&s.va, &s.reference, EACH))
            .await;
    }
}

fn succeeded(stack: &Stack) -> usize {
    answers_by_id(&stack.responses.all())
        .values()
        .filter(|a| a[0]["rc"] == "SUCCESS")
        .count()
}

async fn wait_answered(stack: &Stack, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while succeeded(stack) < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} answered SUCCESS",
            succeeded(stack)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `bills` partial bills of `inst` under `prefix`, `PER_BILL` payments each, in rounds
/// (each round pays every bill once).
async fn bills_and_payments(
    stack: &Stack,
    inst: &str,
    prefix: &str,
    bills: usize,
    tag: &str,
) -> (Vec<String>, Vec<Sent>) {
    let sw = stack.switch();
    let institution = sw.routing.by_code(inst).unwrap().clone();
    let mut vas = Vec::with_capacity(bills);
    for i in 0..bills {
        let number = format!("61{i:08}");
        let mut body = bill_body(&number, "partial", EACH * PER_BILL as u64);
        body["institution_code"] = Value::String(inst.to_owned());
        body["prefix"] = Value::String(prefix.to_owned());
        sw.hosted.create_bill(&institution, &body).await.unwrap();
        vas.push(va(prefix, &number));
    }
    let mut sent = Vec::new();
    for round in 0..PER_BILL {
        for (i, v) in vas.iter().enumerate() {
            sent.push(Sent {
                id: format!("{tag}{round}-{i}"),
                reference: format!("{tag}PAY-{round}-{i}"),
                va: v.clone(),
                inst: inst.to_owned(),
            });
        }
    }
    (vas, sent)
}

/// Every payment answered `SUCCESS` is stored, every bill is paid exactly once over, the
/// ledgers hold one entry per payment, and every answer of a request id is the first one.
async fn nothing_lost_nor_doubled(stack: &Stack, sent: &[Sent], vas: &[(String, String)]) {
    let sw = stack.switch();
    let store = &sw.hosted.store;
    let mut lost = Vec::new();
    for s in sent {
        if store
            .payment(&s.inst, CHANNEL, &s.reference)
            .await
            .unwrap()
            .is_none()
        {
            lost.push(s.reference.clone());
        }
    }
    if !lost.is_empty() {
        let journal = stack.settings.journal(&stack.broker.bootstrap);
        let verdict =
            ipg_switch::journal::verify::verify(&journal, store, &mut ipg_switch::journal::Quiet)
                .await
                .unwrap();
        let first = lost[0].clone();
        let mut found = Vec::new();
        journal
            .scan(&mut ipg_switch::journal::Quiet, &mut |r| {
                let j = serde_json::to_string(&r.event).unwrap();
                if j.contains(&format!("{first}\"")) || j.contains(&format!("{first}:")) {
                    found.push(format!("p{} o{} {j}", r.partition, r.offset));
                }
            })
            .await
            .unwrap();
        eprintln!("events of {first}:\n{}", found.join("\n"));
        panic!(
            "{} answered SUCCESS and lost: {lost:?}\n{}\nrecoveries {} reapplied {}",
            lost.len(),
            verdict.table(),
            metric("ipg_journal_catch_up_duration_seconds_count"),
            metric("ipg_journal_reapplied_records_total")
        );
    }
    for (inst, v) in vas {
        let bill = store.bill_by_va(inst, v).await.unwrap().unwrap().value;
        assert_eq!(bill.paid_amount.get(), EACH * PER_BILL as u64, "{v}");
    }
    let mut per_inst: HashMap<&str, usize> = HashMap::new();
    for s in sent {
        *per_inst.entry(s.inst.as_str()).or_default() += 1;
    }
    for (inst, n) in per_inst {
        let ledger = store.ledger(inst).await.unwrap();
        assert_eq!(ledger.len(), n, "{inst}: one ledger entry per payment");
        assert_eq!(
            store.balance(inst).await.unwrap(),
            (EACH as usize * n) as i64
        );
    }
    for (id, answers) in answers_by_id(&stack.responses.all()) {
        for a in &answers[1..] {
            assert_eq!(
                (&a["rc"], &a["timestamp"], &a["data"]),
                (
                    &answers[0]["rc"],
                    &answers[0]["timestamp"],
                    &answers[0]["data"]
                ),
                "{id} answered twice, differently"
            );
        }
    }
}

/// The longest time between two consecutive answers (of `inst`, by arrival) after `from`,
/// and when it began.
fn longest_gap(stack: &Stack, inst_prefix: &str, from: Instant) -> (Duration, Instant) {
    let mut at: Vec<Instant> = stack
        .responses
        .all()
        .iter()
        .filter(|m| {
            m.json()["request_id"]
                .as_str()
                .is_some_and(|id| id.starts_with(inst_prefix))
        })
        .map(|m| m.at)
        .filter(|t| *t >= from)
        .collect();
    at.sort();
    let mut best = (Duration::ZERO, from);
    let mut prev = from;
    for t in at {
        if t - prev > best.0 {
            best = (t - prev, prev);
        }
        prev = t;
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_master_killed_under_payments_loses_and_doubles_nothing() {
    log_if_asked();
    const BILLS: usize = 500;
    const OTHER_BILLS: usize = 100;
    let redis = Redis::cluster(3, 1);
    // IPG_TEST_EXTRA: a settings layer to try other knobs by hand (`[redis]\n
    // cluster_retries = 3` makes the client give up early, exercising its rebuild from the
    // seeds); IPG_TEST_LOG=1 prints the daemon's log.
    let extra = std::env::var("IPG_TEST_EXTRA").unwrap_or_default();
    let mut stack = Stack::start_on(redis, &extra).await;
    // A second hosted institution whose slot is on another master: it must keep being
    // answered while SCH01's master is down.
    let sch01_master = stack.redis.master_of(&format!("ipg:{{{INST}}}:x"));
    let other_code = (2..100)
        .map(|i| format!("SCH{i:02}"))
        .find(|c| stack.redis.master_of(&format!("ipg:{{{c}}}:x")) != sch01_master)
        .unwrap();
    let mut other = stack.settings.institutions[0].clone();
    other.code = other_code.clone();
    other.name = "Sekolah Lain".into();
    other.prefixes = vec!["857700".into()];
    other.api_key = Some("other-key".into());
    stack.settings.institutions.push(other);

    let (vas, sent) = bills_and_payments(&stack, INST, PREFIX, BILLS, "a").await;
    let (other_vas, other_sent) =
        bills_and_payments(&stack, &other_code, "857700", OTHER_BILLS, "b").await;
    // Interleaved: one of the other institution's payments after every fifth of SCH01's.
    let mut all = Vec::new();
    let mut others = other_sent.iter();
    for (i, s) in sent.iter().enumerate() {
        all.push(s.clone());
        if i % 5 == 4 {
            all.extend(others.next().cloned());
        }
    }
    all.extend(others.cloned());
    let total = all.len();
    let (recoveries0, reapplied0) = (
        metric("ipg_journal_catch_up_duration_seconds_count"),
        metric("ipg_journal_reapplied_records_total"),
    );

    let daemon = stack.daemon();
    let started = Instant::now();
    let third = total / 3;
    send_all(&stack, &all[..third]).await;
    wait_answered(&stack, third, Duration::from_secs(120)).await;
    send_all(&stack, &all[third..2 * third]).await;
    wait_answered(&stack, third + third / 2, Duration::from_secs(120)).await;
    // kill -9 the master of SCH01's slot, with payments in flight, after cutting its
    // replica off for a moment: the replica that takes over misses the writes of that
    // moment (answered SUCCESS), which the journal must give back.
    let replica = stack.redis.replica_of(sch01_master);
    stack.redis.signal(replica, "STOP");
    redis_cli(sch01_master, &["CLIENT", "KILL", "TYPE", "replica"]);
    let cut_at = succeeded(&stack);
    let (_, (at_kill, killed)) = tokio::join!(send_all(&stack, &all[2 * third..]), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let at_kill = succeeded(&stack);
        stack.redis.signal(sch01_master, "KILL");
        stack.redis.signal(replica, "CONT");
        (at_kill, Instant::now())
    });
    wait_answered(&stack, total, Duration::from_secs(300)).await;
    let elapsed = started.elapsed();
    let promoted = stack.redis.master_of(&format!("ipg:{{{INST}}}:x"));
    assert_ne!(promoted, sch01_master, "a replica took over");

    let (pause, pause_from) = longest_gap(&stack, "a", killed);
    let others_in_pause = stack
        .responses
        .all()
        .iter()
        .filter(|m| {
            m.at > pause_from
                && m.at < pause_from + pause
                && m.json()["request_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with('b'))
        })
        .count();
    let mut all_vas: Vec<(String, String)> =
        vas.iter().map(|v| (INST.to_owned(), v.clone())).collect();
    all_vas.extend(other_vas.iter().map(|v| (other_code.clone(), v.clone())));
    nothing_lost_nor_doubled(&stack, &all, &all_vas).await;

    // A repeat answers as the first time.
    let firsts = answers_by_id(&stack.responses.all());
    for s in all.iter().step_by(97) {
        let again = format!("{}-again", s.id);
        stack
            .send("payment", &again, payment(&s.va, &s.reference, EACH))
            .await;
        let a = stack.answer(&again).await;
        let f = &firsts[&s.id][0];
        assert_eq!(
            (&a["timestamp"], &a["data"]),
            (&f["timestamp"], &f["data"]),
            "{}",
            s.id
        );
    }
    // A replica holding the switch's scripts (as a master demoted without a restart does)
    // has them flushed by the daemon within its 5 s check, so that it would answer
    // NOSCRIPT once promoted.
    let some_replica = stack
        .redis
        .replica_of(stack.redis.master_of(&format!("ipg:{{{other_code}}}:x")));
    let sha = redis_cli(
        some_replica,
        &[
            "SCRIPT",
            "LOAD",
            "return 1 -- ipg-switch probe: Redis still knows its scripts",
        ],
    );
    let sha = sha.trim();
    let deadline = Instant::now() + Duration::from_secs(30);
    while redis_cli(some_replica, &["SCRIPT", "EXISTS", sha]).trim() != "0" {
        assert!(
            Instant::now() < deadline,
            "the replica :{some_replica} still holds the scripts"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.stop().await;

    let sw = stack.switch();
    let journal = stack.settings.journal(&stack.broker.bootstrap);
    let verdict = ipg_switch::journal::verify::verify(
        &journal,
        &sw.hosted.store,
        &mut ipg_switch::journal::Quiet,
    )
    .await
    .unwrap();
    assert!(verdict.agrees(), "{}", verdict.table());
    eprintln!(
        "cluster failover: {total} payments ({} of SCH01, {} of {other_code} on another \
         master) in {:.1} s; replica cut off at {cut_at} answered, master :{sch01_master} \
         killed at {at_kill}, replica :{promoted} promoted; SCH01 paused {:.2} s while {others_in_pause} of \
         {other_code}'s payments were answered; {} recovery(ies) set {} records again",
        sent.len(),
        other_sent.len(),
        elapsed.as_secs_f64(),
        pause.as_secs_f64(),
        metric("ipg_journal_catch_up_duration_seconds_count") - recoveries0,
        metric("ipg_journal_reapplied_records_total") - reapplied0,
    );
}

/// `ipg-switch run` as its own process (so it can be killed with SIGKILL).
fn instance(cfg: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ipg-switch"))
        .arg("--config")
        .arg(cfg)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_three_instances_killed_under_payments_loses_and_doubles_nothing() {
    const BILLS: usize = 500;
    let stack = Stack::start().await;
    let (vas, sent) = bills_and_payments(&stack, INST, PREFIX, BILLS, "i").await;
    let total = sent.len();
    let dir = tempfile::tempdir().unwrap();
    let cfg = stack.config_file(&dir);
    // Three instances in one consumer group on one broker.
    let mut instances: Vec<Child> = (0..3).map(|_| instance(&cfg)).collect();

    let started = Instant::now();
    let third = total / 3;
    send_all(&stack, &sent[..third]).await;
    wait_answered(&stack, third, Duration::from_secs(120)).await;
    send_all(&stack, &sent[third..2 * third]).await;
    wait_answered(&stack, third + third / 2, Duration::from_secs(120)).await;
    instances[0].kill().unwrap(); // SIGKILL: no leave-group, no flush
    let _ = instances[0].wait();
    let killed = Instant::now();
    let at_kill = succeeded(&stack);
    send_all(&stack, &sent[2 * third..]).await;
    wait_answered(&stack, total, Duration::from_secs(300)).await;
    let recovered = killed.elapsed();
    let elapsed = started.elapsed();
    let (stall, _) = longest_gap(&stack, "i", killed);

    let all_vas: Vec<(String, String)> = vas.iter().map(|v| (INST.to_owned(), v.clone())).collect();
    nothing_lost_nor_doubled(&stack, &sent, &all_vas).await;
    let repeated = answers_by_id(&stack.responses.all())
        .values()
        .filter(|a| a.len() > 1)
        .count();
    for c in instances.iter_mut().skip(1) {
        let _ = c.kill();
        let _ = c.wait();
    }
    eprintln!(
        "instance killed: {total} payments through 3 instances in {:.1} s; one killed at \
         {at_kill} answered; every payment answered {:.1} s after the kill (longest pause \
         {:.2} s: the group's session timeout, then the partitions' move); {repeated} \
         request(s) answered twice, identically",
        elapsed.as_secs_f64(),
        recovered.as_secs_f64(),
        stall.as_secs_f64(),
    );
}

/// Moves `slot` from the master on `from` to the one on `to` as `redis-cli --cluster
/// reshard` does (IMPORTING/MIGRATING, MIGRATE in small batches, SETSLOT NODE on every
/// master), slowly, so that requests meet both ASK (a key already moved) and MOVED (after
/// the slot changed owner) while it runs. Returns how many keys it moved.
async fn migrate_slot(masters: &[u16], slot: u16, from: u16, to: u16) -> usize {
    let id = |p: u16| redis_cli(p, &["CLUSTER", "MYID"]).trim().to_owned();
    let (from_id, to_id) = (id(from), id(to));
    let s = slot.to_string();
    assert_eq!(
        redis_cli(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]).trim(),
        "OK"
    );
    assert_eq!(
        redis_cli(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]).trim(),
        "OK"
    );
    let mut moved = 0;
    loop {
        let keys: Vec<String> = redis_cli(from, &["CLUSTER", "GETKEYSINSLOT", &s, "10"])
            .lines()
            .map(str::to_owned)
            .filter(|k| !k.is_empty())
            .collect();
        if keys.is_empty() {
            break;
        }
        let port = to.to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        args.extend(keys.iter().map(String::as_str));
        let out = redis_cli(from, &args);
        assert!(
            out.trim() == "OK" || out.trim() == "NOKEY",
            "MIGRATE: {out}"
        );
        moved += keys.len();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for &m in masters {
        redis_cli(m, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
    }
    moved
}

/// Issue 22: a Redis Cluster slot migration under load (the slot of an institution moved
/// to another master while its payments flow) loses and doubles nothing: the cluster
/// client follows `ASK` and `MOVED` (and `TRYAGAIN` of a script whose keys are split
/// mid-migration) within its own retries; what it cannot follow the switch retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrated_under_payments_loses_and_doubles_nothing() {
    const BILLS: usize = 60;
    log_if_asked();
    let redis = Redis::cluster(3, 0);
    let stack = Stack::start_on(redis, "").await;
    let (vas, sent) = bills_and_payments(&stack, INST, PREFIX, BILLS, "m").await;
    let vas: Vec<(String, String)> = vas.into_iter().map(|v| (INST.to_owned(), v)).collect();
    let key = format!("ipg:{{{INST}}}:x");
    let masters = stack.redis.live_ports();
    let slot: u16 = redis_cli(masters[0], &["CLUSTER", "KEYSLOT", &key])
        .trim()
        .parse()
        .unwrap();
    let from = stack.redis.master_of(&key);
    let to = *masters.iter().find(|&&p| p != from).unwrap();
    let retries0 = metric("ipg_retries_total");

    let daemon = stack.daemon();
    let total = sent.len();
    let half = total / 2;
    send_all(&stack, &sent[..half]).await;
    wait_answered(&stack, half / 2, Duration::from_secs(120)).await;
    // The rest while the slot moves: requests meet ASK (keys moved already), TRYAGAIN
    // (a script's keys on both sides) and, after the move, MOVED.
    let (_, moved) = tokio::join!(
        send_all(&stack, &sent[half..]),
        migrate_slot(&masters, slot, from, to)
    );
    wait_answered(&stack, total, Duration::from_secs(180)).await;
    assert_eq!(stack.redis.master_of(&key), to, "the slot moved");
    daemon.stop().await;
    nothing_lost_nor_doubled(&stack, &sent, &vas).await;
    eprintln!(
        "slot {slot} of {INST} moved :{from} -> :{to} ({moved} keys) under {total} payments; \
         requests the switch retried itself: {}",
        metric("ipg_retries_total") - retries0
    );
}
