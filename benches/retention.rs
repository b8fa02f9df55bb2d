//! `cargo bench --bench retention`: the working set over 60 simulated days (issue 25). The
//! daemon (`ipg_switch::run`) on a private `redis-server` and a Kafka-protocol broker
//! (librdkafka's mock cluster, over TCP; gzip, 32 partitions, 32 hosted institutions each
//! on a partition of its own: the mock keeps about 5 MiB per partition), with windows
//! scaled down: a simulated day is `BENCH_DAY_MS` (5,000 ms of wall time, on a fixed
//! schedule), the hot window 5 days, the reference window 15. Every day: 32 × 10 new
//! `close` bills paid in full that day (they leave after the hot window) and payments on
//! 32 × 50 open `partial` bills, through the Kafka door, `BENCH_PER_DAY` (3,400) in all. At
//! each day's end it prints Redis's `used_memory` and keys (after a `SCAN`, which makes
//! Redis drop the keys whose expiry passed: it reclaims them lazily and by sampling
//! otherwise), the journal's events, and the time to read that day from the journal by time
//! (`Journal::window`, one institution). After the last day: snapshots of
//! every institution, two more days, then `restore` from the snapshots and `restore
//! --from-beginning`, each into an emptied Redis: time and events read, and the keys each
//! leaves. Asserts nothing but that every payment was answered SUCCESS.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipg_switch::settings::Settings;
use ipg_switch::signature;
use ipg_switch::store::journal::partition_of;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

use common::{Daemon, Redis, CHANNEL, CHANNEL_KEY};

const PARTITIONS: i32 = 32;
const INSTITUTIONS: usize = 32;
const OPEN_BILLS: usize = 50;
const CLOSE_BILLS: usize = 10;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Institution codes whose journal partitions all differ.
fn codes() -> Vec<String> {
    let mut used = HashSet::new();
    (0..10_000)
        .map(|i| format!("R{i:04}"))
        .filter(|c| used.insert(partition_of(c, PARTITIONS)))
        .take(INSTITUTIONS)
        .collect()
}

/// Answers seen on the response topic, by request id (a thread polling a consumer).
struct Answers {
    seen: Arc<Mutex<std::collections::HashMap<String, String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Answers {
    fn start(bootstrap: &str, topic: &str) -> Answers {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "retention-bench")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        c.assign(&tpl).unwrap();
        let seen = Arc::new(Mutex::new(std::collections::HashMap::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(Ok(m)) = c.poll(Duration::from_millis(50)) else {
                    continue;
                };
                if let Some(v) = m
                    .payload()
                    .and_then(|p| serde_json::from_slice::<Value>(p).ok())
                {
                    if let (Some(id), Some(rc)) = (v["request_id"].as_str(), v["rc"].as_str()) {
                        s.lock().unwrap().insert(id.to_owned(), rc.to_owned());
                    }
                }
            }
        });
        Answers { seen, stop }
    }

    /// Waits until every id is answered (at most `timeout`); returns how many were not
    /// SUCCESS and how many are missing.
    async fn wait(&self, ids: &[String], timeout: Duration) -> (usize, usize) {
        let deadline = Instant::now() + timeout;
        loop {
            let (bad, missing) = {
                let s = self.seen.lock().unwrap();
                let missing = ids.iter().filter(|i| !s.contains_key(*i)).count();
                let bad = ids
                    .iter()
                    .filter(|i| s.get(*i).is_some_and(|rc| rc != "SUCCESS"))
                    .count();
                (bad, missing)
            };
            if missing == 0 || Instant::now() > deadline {
                return (bad, missing);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Answers {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn redis_info(url: &str) -> (u64, u64) {
    let mut c = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut c)
        .await
        .unwrap();
    let used = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let keys: u64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    (used, keys)
}

/// Walks the keyspace once: Redis drops each key whose expiry has passed as `SCAN` meets
/// it, so what is counted next is what is live.
async fn reclaim(url: &str) {
    let mut c = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut cursor = 0u64;
    loop {
        let (next, _): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await
            .unwrap();
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

async fn flushall(url: &str) {
    let mut c = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
}

fn journal_events(bootstrap: &str, topic: &str) -> (i64, i64) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let (mut low, mut high) = (0, 0);
    for p in 0..PARTITIONS {
        let (l, h) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        low += l;
        high += h;
    }
    (low, high)
}

fn bill(code: &str, prefix: &str, number: &str, kind: &str, total: u64) -> Value {
    json!({
        "institution_code": code, "va_number": number, "prefix": prefix, "type": kind,
        "name": "SPP", "customer_name": "Ahmad", "total_amount": total,
        "invoice_number": format!("INV/{number}"),
    })
}

/// Produces one signed payment request; returns its request id.
async fn pay(
    producer: &FutureProducer,
    topic: &str,
    id: String,
    va: String,
    amount: u64,
) -> String {
    let body = common::payment(&va, &format!("ref-{id}"), amount);
    let value = serde_json::to_vec(
        &json!({"type": "payment", "channel": CHANNEL, "request_id": id, "body": body}),
    )
    .unwrap();
    let sig = signature::sign(CHANNEL_KEY.as_bytes(), &value);
    producer
        .send(
            FutureRecord::to(topic)
                .key(va.as_str())
                .payload(&value)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "signature",
                    value: Some(sig.as_str()),
                })),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
    id
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let day_ms = env_num("BENCH_DAY_MS", 5_000);
    let days = env_num("BENCH_DAYS", 60);
    let per_day = env_num("BENCH_PER_DAY", 3_400);
    let probe = common::settings_for("x", "redis://x", "");
    let all = probe.all_topics();
    let topics: Vec<&str> = all.iter().map(String::as_str).collect();
    let broker = ipg_switch::kafka::EmbeddedBroker::start(&topics, PARTITIONS).unwrap();
    let redis = Redis::start();
    let extra = format!(
        "[kafka]\ntopic_partitions = {PARTITIONS}\nlinger_ms = 5\n\
         [kafka.properties]\n\"compression.type\" = \"gzip\"\n\
         [journal]\nappend_deadline_ms = 2000\nunjournaled_after_ms = 5000\n\
         snapshot_interval_ms = 0\ntime_margin_ms = 0\n\
         [retention]\nhot_window_ms = {}\nreference_window_ms = {}\nsweep_interval_ms = {}\n\
         sweep_batch = 2000\n[log]\nlevel = \"error\"\n",
        5 * day_ms,
        15 * day_ms,
        (day_ms / 8).max(100)
    );
    let mut settings = Settings::from_toml(&[
        &common::settings_toml(&broker.bootstrap, &redis.url()),
        &redis.settings_layer(),
        &extra,
    ])
    .unwrap();
    settings.webhook.enabled = false;
    // 16 hosted institutions, each on a journal partition of its own.
    let template = settings.institutions[0].clone();
    settings.institutions.retain(|i| i.code != template.code);
    let codes = codes();
    let mut insts = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        let prefix = format!("86{i:04}");
        let mut s = template.clone();
        s.code = code.clone();
        s.prefixes = vec![prefix.clone()];
        settings.institutions.push(s);
        insts.push((code.clone(), prefix));
    }
    println!(
        "retention bench: {days} simulated days of {day_ms} ms, {per_day} payments a day over \
         {INSTITUTIONS} institutions ({OPEN_BILLS} open bills each, {CLOSE_BILLS} new close bills \
         a day each); hot window 5 days, reference window 15; {PARTITIONS} partitions, gzip"
    );
    let switch = ipg_switch::build_switch(&settings).unwrap();
    let create = |code: &str, prefix: &str, number: String, kind: &str, total: u64| {
        let sw = switch.clone();
        let inst = sw.routing.by_code(code).unwrap().clone();
        let body = bill(code, prefix, &number, kind, total);
        async move { sw.hosted.create_bill(&inst, &body).await.unwrap() }
    };
    let mut open_vas = Vec::new();
    for (code, prefix) in &insts {
        let made = futures::future::join_all((0..OPEN_BILLS).map(|b| {
            create(
                code,
                prefix,
                format!("1{b:09}"),
                "partial",
                1_000_000_000_000,
            )
        }))
        .await;
        open_vas.extend(
            made.into_iter()
                .map(|b| format!("{prefix}{}", &b.va_number[6..])),
        );
    }
    let daemon = Daemon::start(settings.clone());
    let answers = Answers::start(&broker.bootstrap, &settings.topics.response);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let journal = settings.journal(&broker.bootstrap);
    let url = redis.url();
    let request = settings.topics.request.clone();

    println!(
        "{:>4} {:>9} {:>12} {:>9} {:>10} {:>14} {:>12} {:>9}",
        "day",
        "payments",
        "used_memory",
        "keys",
        "journal",
        "day read (ms)",
        "day events",
        "late (ms)"
    );
    let mut memory: Vec<u64> = Vec::new();
    let mut sent_total = 0u64;
    let mut not_ok = 0usize;
    let t0 = Instant::now() + Duration::from_secs(1);
    let run_day = |d: u64| {
        let (switch, producer, request, open_vas, insts) = (
            switch.clone(),
            producer.clone(),
            request.clone(),
            open_vas.clone(),
            insts.clone(),
        );
        async move {
            // Each day on a fixed schedule from the first: a slow day does not stretch the
            // windows, which are wall time.
            let start = t0 + Duration::from_millis(day_ms * (d - 1));
            if let Some(wait) = start.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            let start_ms = chrono::Utc::now().timestamp_millis();
            // The day's close bills, paid in full through the day.
            let mut closing = Vec::new();
            for (code, prefix) in &insts {
                for b in 0..CLOSE_BILLS {
                    closing.push((code.clone(), prefix.clone(), format!("2{d:04}{b:05}")));
                }
            }
            let sw = switch.clone();
            let made = futures::future::join_all(closing.iter().map(|(code, prefix, n)| {
                let sw = sw.clone();
                let inst = sw.routing.by_code(code).unwrap().clone();
                let body = bill(code, prefix, n, "close", 50_000);
                async move { sw.hosted.create_bill(&inst, &body).await.unwrap() }
            }))
            .await;
            let close_vas: Vec<String> = made
                .iter()
                .zip(&closing)
                .map(|(b, (_, prefix, _))| format!("{prefix}{}", &b.va_number[6..]))
                .collect();
            let open_count = per_day.saturating_sub(close_vas.len() as u64);
            let total = open_count + close_vas.len() as u64;
            let mut ids = Vec::with_capacity(total as usize);
            let chunks = 20u64;
            for c in 0..chunks {
                let mut sends = Vec::new();
                for k in (c * total / chunks)..((c + 1) * total / chunks) {
                    let id = format!("d{d}-{k}");
                    let (va, amount) = if k < open_count {
                        (
                            open_vas[(k as usize * 7 + d as usize) % open_vas.len()].clone(),
                            1_000 + (k % 97) * 100,
                        )
                    } else {
                        (close_vas[(k - open_count) as usize].clone(), 50_000)
                    };
                    sends.push(pay(&producer, &request, id, va, amount));
                }
                ids.extend(futures::future::join_all(sends).await);
                // Paced over the first 80 % of the day, leaving the rest for the answers and
                // the day's measurements.
                let due = Duration::from_millis(day_ms * 8 * (c + 1) / (chunks * 10));
                if let Some(left) = due.checked_sub(start.elapsed()) {
                    tokio::time::sleep(left).await;
                }
            }
            (ids, start_ms)
        }
    };
    for d in 1..=days {
        let (ids, start_ms) = run_day(d).await;
        let (bad, missing) = answers.wait(&ids, Duration::from_secs(120)).await;
        not_ok += bad + missing;
        sent_total += ids.len() as u64;
        let end_ms = chrono::Utc::now().timestamp_millis();
        reclaim(&url).await;
        let (used, keys) = redis_info(&url).await;
        memory.push(used);
        let (_, events) = journal_events(&broker.bootstrap, &settings.topics.journal);
        let t = Instant::now();
        let w = journal
            .window(Some(&insts[0].0), start_ms, end_ms)
            .await
            .unwrap();
        // How far past its end the day's measurements finished (the schedule slips then).
        let end = t0 + Duration::from_millis(day_ms * d);
        let late = Instant::now().saturating_duration_since(end).as_millis();
        println!(
            "{d:>4} {:>9} {:>12} {:>9} {:>10} {:>14.1} {:>12} {late:>9}",
            ids.len(),
            used,
            keys,
            events,
            t.elapsed().as_secs_f64() * 1000.0,
            w.events.len()
        );
    }
    let at = |d: usize| memory.get(d.saturating_sub(1)).copied().unwrap_or(0) as f64;
    if days >= 60 {
        println!(
            "used_memory day 60 / day 30: {:.3} (target: within 10 %)",
            at(60) / at(30).max(1.0)
        );
    }
    println!("{sent_total} payments, {not_ok} not answered SUCCESS");

    // Snapshots, two more days, then the two restores.
    let store = switch.hosted.store.clone();
    let t = Instant::now();
    let (mut snap_events, mut snap_bytes) = (0, 0);
    for (code, _) in &insts {
        let taken = journal.take_snapshot(&store, code).await.unwrap();
        snap_events += taken.events;
        snap_bytes += taken.bytes;
    }
    println!(
        "snapshots of {INSTITUTIONS} institutions: {snap_events} events, {snap_bytes} bytes, {:.2} s",
        t.elapsed().as_secs_f64()
    );
    for d in days + 1..=days + 2 {
        let (ids, _) = run_day(d).await;
        let (bad, missing) = answers.wait(&ids, Duration::from_secs(120)).await;
        not_ok += bad + missing;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    daemon.stop().await;
    reclaim(&url).await;
    let (used_before, keys_before) = redis_info(&url).await;
    let (low, high) = journal_events(&broker.bootstrap, &settings.topics.journal);
    println!(
        "before the restores: used_memory {used_before}, {keys_before} keys; journal {high} events \
         ({low} no longer held by the broker)"
    );
    for from in [
        ipg_switch::journal::From::Snapshots,
        ipg_switch::journal::From::Beginning,
    ] {
        flushall(&url).await;
        let r = journal
            .replay(&store, from, &mut ipg_switch::journal::Quiet)
            .await
            .unwrap();
        reclaim(&url).await;
        let (used, keys) = redis_info(&url).await;
        println!(
            "restore {from:?}: {} snapshot events + {} journal events in {:.2} s; then \
             used_memory {used}, {keys} keys",
            r.snapshot_events, r.events, r.seconds
        );
    }
    println!("{not_ok} payments not answered SUCCESS in all");
    drop(answers);
}
