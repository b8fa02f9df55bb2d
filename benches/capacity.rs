//! Capacity bench: how many requests per second the daemon answers, against the pass-through
//! ceiling of the same broker in the same run.
//!
//! `cargo bench --bench capacity`. One process holds everything: the embedded Kafka-protocol
//! broker (librdkafka's mock cluster), a private `redis-server`, the daemon (`ipg_switch::run`),
//! the "bank" producer and a timestamping reader of the output topics.
//!
//! Runs, in order:
//! 1. ceiling: a consumer group on `bench.ceiling.in` copies every message to
//!    `bench.ceiling.out` with the daemon's own producer and consumer settings
//!    (`kafka::create_producer` / `kafka::create_consumer`), `lanes` copies in flight, no
//!    handling, no Redis;
//! 2. daemon, inquiries: one signed inquiry per hosted bill;
//! 3. daemon, payments: one payment of the full amount per hosted bill;
//! 4. daemon, passive inquiries: one inquiry per VA of a passive institution, forwarded by the
//!    daemon over HTTP to the tests' fake institution (tests/common/institution.rs, an axum
//!    server on 127.0.0.1 playing IPG's Passive Client API, one close bill per VA) that
//!    answers every call after sleeping 5 ms;
//! 5. daemon, passive payments: one payment per passive VA (new reference each), forwarded the
//!    same way: bind the reference, lock the VA and record the payment (`passive_begin.lua`),
//!    the 5 ms HTTP call, record the answer and unlock (`passive_save.lua`).
//!
//! The passive institution's `max_concurrency` is set to the daemon's lanes, so its calls in
//! flight are bounded by the lanes (64 by default: at most 64 / 5 ms = 12,800 calls/s), not by
//! the default 32. The fake checks each request's `Signature` and signs its answers; the
//! bench warns if a request was badly signed. It runs on the bench's own tokio runtime, so
//! its CPU counts under "tokio workers".
//!
//! Each burst is `BENCH_N` messages (default 10,000) produced as fast as the producer takes
//! them. msgs/s = messages / (first produce → last answer received); latency = produce call →
//! answer received by the reader (so in a burst it is mostly queueing). A small "one at a
//! time" probe measures latency with a single message in flight, for each of the routes.
//!
//! Knobs (environment): BENCH_N, BENCH_PROBE (one-at-a-time messages, default 200),
//! BENCH_LANES (default 64; also the ceiling's copies in flight), BENCH_LANE_QUEUE (default 32),
//! BENCH_LINGER_MS (the daemon's `kafka.linger_ms`; default: the shipped default),
//! BENCH_BANK_LINGER_MS (the bank's producer's linger.ms, default 1: a bank's own setting,
//! not the switch's),
//! BENCH_FETCH_WAIT_MS (default 1; every consumer's fetch.wait.max.ms: the mock broker holds an
//! empty fetch for the whole wait and does not answer early when data arrives, unlike a real
//! broker, so librdkafka's 500 ms default would add up to 500 ms per hop when a consumer is idle).
//! BENCH_INSTITUTIONS (default 1): hosted institutions the bills are spread over. With
//! `IPG_TEST_REDIS=cluster` the Redis is a private cluster of 3 masters + 3 replicas (the
//! tests' harness) and the institutions are picked on different masters; the bench then
//! prints each node's CPU per burst (INFO commandstats are the first node's only).
//! Two open-loop runs of hosted payments (BENCH_OPEN_SECS each, default 5): produced at a
//! fixed 1,000/s right after the probes (the daemon's topics still nearly empty: the mock
//! broker's lookup is linear in a partition's length), and at 70 % of the burst's
//! payments/s after the bursts; latency from each message's scheduled send to its answer in
//! an HDR histogram (p50/p99/p99.9/max). As in the bursts (and in IPG's flow), each run's
//! payments follow an (untimed) burst of inquiries over the same VAs.
//! And Redis memory per hosted bill and per settled payment (`INFO memory` around the
//! seeding and the burst).
//! Without `--bench` (as under `cargo test --all-targets`) it is a small smoke run.

#[path = "../tests/common/mod.rs"]
mod common;

use common::institution::{self, Institution, Mode};

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ipg_switch::kafka::offsets::Offsets;
use ipg_switch::kafka::{self, TrackingContext};
use ipg_switch::settings::{InstitutionMode, Settings};
use ipg_switch::signature;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

use common::{Daemon, Redis, CHANNEL, CHANNEL_KEY, INST, PARTITIONS, PREFIX};

const CEIL_IN: &str = "bench.ceiling.in";
const CEIL_OUT: &str = "bench.ceiling.out";
const BILL_TOTAL: u64 = 100_000;
/// Marks the start of the payment burst for callgrind: run the bench under
/// `valgrind --tool=callgrind --zero-before=ipg_bench_payments_begin
/// --dump-before=ipg_bench_payments_end` (scripts/callgrind-payments.sh) and the dump holds
/// the instructions of the burst only, per function (the daemon's: under tokio's workers).
#[inline(never)]
#[no_mangle]
pub extern "C" fn ipg_bench_payments_begin() {
    // A body of its own (a static of its own): identical empty functions are folded into
    // one address by the linker, and callgrind would see the end at the beginning.
    MARKS.0.fetch_add(1, Ordering::Relaxed);
}

/// Marks the end of the payment burst for callgrind (see [`ipg_bench_payments_begin`]).
#[inline(never)]
#[no_mangle]
pub extern "C" fn ipg_bench_payments_end() {
    MARKS.1.fetch_add(1, Ordering::Relaxed);
}

/// With `BENCH_REDIS_CALLGRIND` set (`CALLGRIND_REDIS=1 scripts/callgrind-payments.sh`:
/// redis-server itself runs under callgrind), zeroes (`-z`) or dumps (`-d`) Redis's
/// instruction counts, so that the dump holds Redis's work for the payment burst only.
fn redis_callgrind(redis: &Redis, what: &str) {
    if std::env::var_os("BENCH_REDIS_CALLGRIND").is_some() {
        let done = std::process::Command::new("callgrind_control")
            .args([what, &redis.pid().to_string()])
            .stdout(std::process::Stdio::null())
            .status();
        eprintln!("callgrind_control {what} redis-server: {done:?}");
    }
}

/// How many times each callgrind marker ran.
static MARKS: (AtomicUsize, AtomicUsize) = (AtomicUsize::new(0), AtomicUsize::new(0));

/// The highest rate of the second open-loop run (70 % of the payment burst's rate).
const OPEN_MAX_RATE: f64 = 14_000.0;
/// How long a burst may take before its missing answers count as lost.
const BURST_DEADLINE: Duration = Duration::from_secs(120);

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Knobs {
    n: usize,
    /// Hosted institutions the bills are spread over (BENCH_INSTITUTIONS, default 1).
    institutions: usize,
    /// Seconds of each open-loop run (BENCH_OPEN_SECS, default 5).
    open_secs: usize,
    probe: usize,
    lanes: usize,
    /// The daemon's `kafka.linger_ms`; `None`: the shipped default.
    linger_ms: Option<usize>,
    /// The bank's producer's linger.ms.
    bank_linger_ms: usize,
    fetch_wait_ms: usize,
}

// ---------------------------------------------------------------------------------------
// Reader: one thread polling the output topics, recording when each request_id arrived.

#[derive(serde::Deserialize)]
struct Answer {
    request_id: Option<String>,
    rc: Option<String>,
}

struct Seen {
    at: Instant,
    /// `None` for the ceiling's copies (a request has no rc).
    rc: Option<String>,
}

#[derive(Default)]
struct Board {
    seen: HashMap<String, Seen>,
    duplicates: usize,
    unparsable: usize,
}

struct Reader {
    board: Arc<Mutex<Board>>,
    notify: Arc<tokio::sync::Notify>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    fn start(bootstrap: &str, topics: &[&str], fetch_wait_ms: usize) -> Reader {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "bench-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            // The mock broker holds an empty fetch for the full fetch.wait.max.ms and does not
            // cut it short when data arrives, so a long wait would show up as latency.
            .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
            .create()
            .expect("reader consumer");
        let mut tpl = TopicPartitionList::new();
        for t in topics {
            for p in 0..PARTITIONS {
                tpl.add_partition_offset(t, p, Offset::Beginning).unwrap();
            }
        }
        c.assign(&tpl).expect("assign reader");
        let board = Arc::new(Mutex::new(Board::default()));
        let notify = Arc::new(tokio::sync::Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let (b, n, s) = (board.clone(), notify.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("bench-reader".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    let Some(r) = c.poll(Duration::from_millis(50)) else {
                        continue;
                    };
                    let at = Instant::now();
                    let Ok(m) = r else { continue };
                    let parsed: Option<Answer> =
                        m.payload().and_then(|p| serde_json::from_slice(p).ok());
                    let mut board = b.lock().unwrap();
                    match parsed {
                        Some(Answer {
                            request_id: Some(id),
                            rc,
                        }) => {
                            if board.seen.contains_key(&id) {
                                board.duplicates += 1;
                            } else {
                                board.seen.insert(id, Seen { at, rc });
                            }
                        }
                        _ => board.unparsable += 1,
                    }
                    drop(board);
                    n.notify_waiters();
                }
            })
            .expect("reader thread");
        Reader {
            board,
            notify,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits for one id's answer; `None` after `timeout`.
    async fn wait_one(&self, id: &str, timeout: Duration) -> Option<(Instant, Option<String>)> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            if let Some(s) = self.board.lock().unwrap().seen.get(id) {
                return Some((s.at, s.rc.clone()));
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), notified).await;
        }
    }

    /// Waits until every id has an answer or `timeout` passes. Checks from the first id not
    /// seen yet, so a wait costs little while answers stream in.
    async fn wait_all(&self, ids: &[String], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut first_missing = 0;
        loop {
            {
                let b = self.board.lock().unwrap();
                while first_missing < ids.len() && b.seen.contains_key(&ids[first_missing]) {
                    first_missing += 1;
                }
            }
            if first_missing == ids.len() || Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The bank side: pre-built messages, produced as fast as the producer queue takes them.

struct Outbound {
    id: String,
    key: String,
    value: Vec<u8>,
    signature: String,
}

fn request(kind: &str, id: String, body: Value) -> Outbound {
    let value = serde_json::to_vec(
        &json!({"type": kind, "channel": CHANNEL, "request_id": id, "body": body}),
    )
    .unwrap();
    let signature = signature::sign(CHANNEL_KEY.as_bytes(), &value);
    let key = body["va_number"].as_str().unwrap_or_default().to_owned();
    Outbound {
        id,
        key,
        value,
        signature,
    }
}

/// One inquiry per VA: request ids `<tag>-<i>`, references `<tag>-ref-<i>`.
fn inquiries(vas: &[String], tag: &str) -> Vec<Outbound> {
    vas.iter()
        .enumerate()
        .map(|(i, v)| {
            let body = common::inquiry(v, &format!("{tag}-ref-{i}"));
            request("inquiry", format!("{tag}-{i}"), body)
        })
        .collect()
}

/// One payment of `BILL_TOTAL` per VA, named as [`inquiries`] names them.
fn payments(vas: &[String], tag: &str) -> Vec<Outbound> {
    vas.iter()
        .enumerate()
        .map(|(i, v)| {
            let body = common::payment(v, &format!("{tag}-ref-{i}"), BILL_TOTAL.to_string());
            request("payment", format!("{tag}-{i}"), body)
        })
        .collect()
}

fn record<'a>(topic: &'a str, m: &'a Outbound) -> FutureRecord<'a, str, [u8]> {
    FutureRecord::to(topic)
        .key(m.key.as_str())
        .payload(m.value.as_slice())
        .headers(OwnedHeaders::new().insert(Header {
            key: "signature",
            value: Some(m.signature.as_str()),
        }))
}

/// Enqueues every message; returns each one's produce instant (same order) and when the last
/// one was enqueued. Panics if the broker refuses one.
async fn produce_all(
    producer: &FutureProducer,
    topic: &str,
    msgs: &[Outbound],
) -> (Vec<Instant>, Instant) {
    let mut sent = Vec::with_capacity(msgs.len());
    let mut deliveries = Vec::with_capacity(msgs.len());
    for m in msgs {
        let mut rec = record(topic, m);
        loop {
            let at = Instant::now();
            match producer.send_result(rec) {
                Ok(d) => {
                    sent.push(at);
                    deliveries.push(d);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => panic!("produce to {topic}: {e}"),
            }
        }
    }
    let enqueued = Instant::now();
    for d in deliveries {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => panic!("delivery to {topic}: {e}"),
            Err(_) => panic!("delivery to {topic} cancelled"),
        }
    }
    (sent, enqueued)
}

/// Latencies of an open-loop run (ms), from an HDR histogram.
struct OpenLoop {
    rate: f64,
    sent: usize,
    answered: usize,
    not_ok: usize,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

/// The IPG flow, inquiry then payment: an untimed burst of inquiries over `vas`, then their
/// payments offered at `rate` ([`open_loop`]).
async fn open_loop_after_inquiries(
    producer: &FutureProducer,
    topic: &str,
    reader: &Reader,
    vas: &[String],
    rate: f64,
) -> OpenLoop {
    let tag = format!("open{}", rate as u64);
    let inq = inquiries(vas, &format!("{tag}-inq"));
    let _ = burst("open-loop inquiries", producer, topic, reader, &inq).await;
    open_loop(producer, topic, reader, &payments(vas, &tag), rate).await
}

/// Open loop: message `i` is produced at `t0 + i / rate`, whatever the answers do (a late
/// producer catches up at once), and its latency runs from that scheduled time to its
/// answer, so a stall counts against every message scheduled during it (no coordinated
/// omission). Latencies go into an HDR histogram (`hdrhistogram`, µs, 3 significant
/// digits).
async fn open_loop(
    producer: &FutureProducer,
    topic: &str,
    reader: &Reader,
    msgs: &[Outbound],
    rate: f64,
) -> OpenLoop {
    let t0 = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut scheduled = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let at = t0 + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at).await;
        scheduled.push(at.into_std());
        let mut rec = record(topic, m);
        loop {
            match producer.send_result(rec) {
                // Not awaited: the answer is what is timed.
                Ok(_delivery) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => panic!("produce to {topic}: {e}"),
            }
        }
    }
    let ids: Vec<String> = msgs.iter().map(|m| m.id.clone()).collect();
    reader.wait_all(&ids, BURST_DEADLINE).await;
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
        .expect("histogram bounds");
    let b = reader.board.lock().unwrap();
    let (mut answered, mut not_ok) = (0, 0);
    for (m, at) in msgs.iter().zip(&scheduled) {
        let Some(seen) = b.seen.get(&m.id) else {
            continue;
        };
        answered += 1;
        if seen.rc.as_deref() != Some("SUCCESS") {
            not_ok += 1;
        }
        h.saturating_record(seen.at.saturating_duration_since(*at).as_micros() as u64);
    }
    let ms = |us: u64| us as f64 / 1e3;
    OpenLoop {
        rate,
        sent: msgs.len(),
        answered,
        not_ok,
        p50_ms: ms(h.value_at_quantile(0.50)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
    }
}

/// `used_memory` of `INFO memory`, summed over `ports` (bytes).
async fn used_memory(ports: &[u16]) -> u64 {
    let mut total = 0;
    for p in ports {
        let info = redis_cmd(&format!("redis://127.0.0.1:{p}/0"), &["INFO", "memory"]).await;
        total += info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

// ---------------------------------------------------------------------------------------
// The passive route's institution: the tests' fake (tests/common/institution.rs, IPG's
// Passive Client API over loopback HTTP), answering every call after `PASSIVE_DELAY`.

/// How long the fake institution takes to answer each call.
const PASSIVE_DELAY: Duration = Duration::from_millis(5);

/// Points the harness's passive institution (PAS01) at `fake`, `max_concurrency` calls in
/// flight, and makes every endpoint of the fake answer after `PASSIVE_DELAY`.
fn point_passive(
    settings: &mut Settings,
    fake: &Institution,
    max_concurrency: usize,
) -> Result<(), String> {
    for endpoint in institution::ENDPOINTS {
        fake.set_mode(endpoint, Mode::SlowThenNormal(PASSIVE_DELAY));
    }
    // A forward must leave the VA lock a second (passive.timeout_ms's rule).
    let timeout = settings
        .switch
        .lock_ttl
        .saturating_sub(Duration::from_secs(1))
        .min(Duration::from_secs(5));
    let i = settings
        .institutions
        .iter_mut()
        .find(|i| i.mode == InstitutionMode::Passive)
        .ok_or("the harness's settings have no passive institution")?;
    i.base_url = Some(fake.base_url());
    i.max_concurrency = Some(max_concurrency);
    i.timeout = Some(timeout);
    i.rate_per_second = None;
    settings.validate().map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------
// Results.

#[derive(Default)]
struct Stats {
    label: String,
    sent: usize,
    answered: usize,
    not_ok: usize,
    msgs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    enqueue_ms: f64,
    rcs: BTreeMap<String, usize>,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn stats(
    label: &str,
    reader: &Reader,
    msgs: &[Outbound],
    sent: &[Instant],
    enqueued: Option<Instant>,
) -> Stats {
    let b = reader.board.lock().unwrap();
    let mut lat = Vec::with_capacity(msgs.len());
    let mut last = None::<Instant>;
    let mut s = Stats {
        label: label.to_owned(),
        sent: msgs.len(),
        ..Stats::default()
    };
    for (m, at) in msgs.iter().zip(sent) {
        let Some(seen) = b.seen.get(&m.id) else {
            continue;
        };
        s.answered += 1;
        lat.push(seen.at.saturating_duration_since(*at).as_secs_f64() * 1e3);
        last = Some(last.map_or(seen.at, |l| l.max(seen.at)));
        if let Some(rc) = &seen.rc {
            if rc != "SUCCESS" {
                s.not_ok += 1;
                *s.rcs.entry(rc.clone()).or_default() += 1;
            }
        }
    }
    lat.sort_by(f64::total_cmp);
    s.p50_ms = percentile(&lat, 0.50);
    s.p99_ms = percentile(&lat, 0.99);
    s.max_ms = lat.last().copied().unwrap_or(f64::NAN);
    if let (Some(first), Some(last)) = (sent.first(), last) {
        s.msgs_per_s = s.answered as f64 / last.duration_since(*first).as_secs_f64();
    }
    s.enqueue_ms = enqueued
        .zip(sent.first())
        .map_or(f64::NAN, |(e, f)| e.duration_since(*f).as_secs_f64() * 1e3);
    s
}

/// A burst: every message produced at once, then wait for every answer.
async fn burst(
    label: &str,
    producer: &FutureProducer,
    topic: &str,
    reader: &Reader,
    msgs: &[Outbound],
) -> Stats {
    let (sent, enqueued) = produce_all(producer, topic, msgs).await;
    let ids: Vec<String> = msgs.iter().map(|m| m.id.clone()).collect();
    reader.wait_all(&ids, BURST_DEADLINE).await;
    stats(label, reader, msgs, &sent, Some(enqueued))
}

/// One message in flight at a time.
async fn one_at_a_time(
    label: &str,
    producer: &FutureProducer,
    topic: &str,
    reader: &Reader,
    msgs: &[Outbound],
) -> Stats {
    let mut sent = Vec::with_capacity(msgs.len());
    for m in msgs {
        sent.push(Instant::now());
        producer
            .send(record(topic, m), Timeout::After(Duration::from_secs(10)))
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
        if reader
            .wait_one(&m.id, Duration::from_secs(30))
            .await
            .is_none()
        {
            break;
        }
    }
    let mut s = stats(label, reader, &msgs[..sent.len()], &sent, None);
    s.sent = msgs.len();
    s
}

// ---------------------------------------------------------------------------------------
// Where time goes: CPU per thread group (from /proc) and the daemon's own stage metrics.

const CLK_TCK: f64 = 100.0;

/// (comm, ticks) of a /proc stat line.
fn parse_stat(s: &str) -> Option<(String, u64, i32)> {
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_owned();
    let f: Vec<&str> = s[close + 2..].split_whitespace().collect();
    // After ")": state(3) ppid(4) ... utime(14) stime(15)
    let ppid = f.get(1)?.parse().ok()?;
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((comm, ticks, ppid))
}

fn thread_group(comm: &str) -> &'static str {
    if comm.starts_with("tokio-r") {
        "tokio workers (daemon, ceiling copier)"
    } else if comm.starts_with("capacity") {
        "main thread (bench driver: produce, wait)"
    } else if comm == "rdk:mock" {
        "rdk:mock (the broker)"
    } else if comm.starts_with("rdk:") {
        "rdk:main/broker (all clients)"
    } else if comm.starts_with("producer poll") {
        "FutureProducer polling threads"
    } else if comm == "bench-reader" {
        "bench reader thread"
    } else {
        "other threads"
    }
}

#[derive(Clone, Default)]
struct CpuSnap {
    threads: HashMap<String, (String, u64)>,
    redis: u64,
    /// Each redis-server's ticks, by port (one entry for a single Redis).
    nodes: BTreeMap<u16, u64>,
    at: Option<Instant>,
}

fn cpu_snapshot(redis_ports: &[u16]) -> CpuSnap {
    let mut snap = CpuSnap {
        at: Some(Instant::now()),
        ..CpuSnap::default()
    };
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            if let Some((comm, ticks, _)) = std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .as_deref()
                .and_then(parse_stat)
            {
                snap.threads
                    .insert(e.file_name().to_string_lossy().into_owned(), (comm, ticks));
            }
        }
    }
    // The redis-server children started by common::Redis (matched by their ports).
    let me = std::process::id() as i32;
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let p = e.path();
            let Some((comm, ticks, ppid)) = std::fs::read_to_string(p.join("stat"))
                .ok()
                .as_deref()
                .and_then(parse_stat)
            else {
                continue;
            };
            if ppid != me || !comm.starts_with("redis-server") {
                continue;
            }
            let cmd = std::fs::read(p.join("cmdline")).unwrap_or_default();
            // redis-server rewrites its title to "redis-server 127.0.0.1:PORT".
            let cmd = String::from_utf8_lossy(&cmd);
            for &p in redis_ports {
                let port = p.to_string();
                if cmd.split('\0').any(|a| a == port) || cmd.contains(&format!(":{port}")) {
                    snap.redis += ticks;
                    *snap.nodes.entry(p).or_default() += ticks;
                }
            }
        }
    }
    snap
}

/// % of one core per group between two snapshots.
fn cpu_diff(a: &CpuSnap, b: &CpuSnap) -> (BTreeMap<&'static str, f64>, f64) {
    let wall = b.at.unwrap().duration_since(a.at.unwrap()).as_secs_f64();
    let mut groups: BTreeMap<&'static str, f64> = BTreeMap::new();
    for (tid, (comm, ticks)) in &b.threads {
        let before = a.threads.get(tid).map_or(0, |(_, t)| *t);
        *groups.entry(thread_group(comm)).or_default() += ticks.saturating_sub(before) as f64;
    }
    groups.insert(
        "redis-server (separate process)",
        b.redis.saturating_sub(a.redis) as f64,
    );
    for v in groups.values_mut() {
        *v = *v / CLK_TCK / wall * 100.0;
    }
    (groups, wall)
}

/// `_sum` and `_count` of every daemon histogram, keyed by series.
fn scrape() -> HashMap<String, f64> {
    let text = ipg_switch::metrics::install().render();
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or_default();
        if name.ends_with("_sum") || name.ends_with("_count") {
            if let Ok(v) = value.parse::<f64>() {
                out.insert(series.to_owned(), v);
            }
        }
    }
    out
}

/// Mean ms per observation of the daemon's histograms between two scrapes.
fn stage_means(a: &HashMap<String, f64>, b: &HashMap<String, f64>) -> Vec<(String, f64, f64)> {
    let mut out = Vec::new();
    for (series, sum) in b {
        let Some((name, labels)) = series.split_once('{') else {
            continue;
        };
        let Some(base) = name.strip_suffix("_sum") else {
            continue;
        };
        let count_key = format!("{base}_count{{{labels}");
        let d_sum = sum - a.get(series).copied().unwrap_or(0.0);
        let d_count =
            b.get(&count_key).copied().unwrap_or(0.0) - a.get(&count_key).copied().unwrap_or(0.0);
        if d_count > 0.0 {
            let short = base.trim_start_matches("ipg_").trim_end_matches("_seconds");
            out.push((format!("{short}{{{labels}"), d_sum / d_count * 1e3, d_count));
        }
    }
    out.sort_by(|x, y| x.0.cmp(&y.0));
    out
}

struct Internals {
    label: String,
    cpu: BTreeMap<&'static str, f64>,
    stages: Vec<(String, f64, f64)>,
    /// Seconds between the two CPU snapshots, and messages answered in them.
    wall: f64,
    answered: usize,
}

impl Internals {
    /// CPU microseconds per answered message spent by `pct` % of one core over the burst.
    fn us_per_msg(&self, pct: f64) -> f64 {
        pct / 100.0 * self.wall / self.answered.max(1) as f64 * 1e6
    }
}

async fn measured<F: std::future::Future<Output = Stats>>(
    label: &str,
    redis_ports: &[u16],
    f: F,
) -> (Stats, Internals) {
    let (c0, m0) = (cpu_snapshot(redis_ports), scrape());
    let s = f.await;
    let (c1, m1) = (cpu_snapshot(redis_ports), scrape());
    let (cpu, wall) = cpu_diff(&c0, &c1);
    if c1.nodes.len() > 1 {
        let per: Vec<String> = c1
            .nodes
            .iter()
            .map(|(port, t)| {
                let before = c0.nodes.get(port).copied().unwrap_or(0);
                format!(
                    ":{port} {:.0}%",
                    t.saturating_sub(before) as f64 / CLK_TCK / wall * 100.0
                )
            })
            .collect();
        println!(
            "  {label}: redis-server CPU per node (% of a core): {}",
            per.join(", ")
        );
    }
    let answered = s.answered;
    (
        s,
        Internals {
            label: label.to_owned(),
            cpu,
            stages: stage_means(&m0, &m1),
            wall,
            answered,
        },
    )
}

// ---------------------------------------------------------------------------------------
// The ceiling: a plain consumer group copying each message to another topic.

fn start_ceiling(
    settings: &Settings,
    bootstrap: &str,
    concurrency: usize,
) -> (
    tokio::task::JoinHandle<()>,
    Arc<StreamConsumer<TrackingContext>>,
) {
    let mut s = settings.clone();
    s.kafka.group_id = "bench-ceiling".into();
    let ctx = TrackingContext {
        name: "bench",
        offsets: Arc::new(Offsets::default()),
        assigned: Some(Arc::new(AtomicUsize::new(0))),
        revoked: None,
        resume_on_assign: false,
    };
    let consumer =
        Arc::new(kafka::create_consumer(bootstrap, &s.kafka, ctx).expect("ceiling consumer"));
    consumer.subscribe(&[CEIL_IN]).expect("subscribe ceiling");
    let producer = kafka::create_producer(bootstrap, &s.kafka).expect("ceiling producer");
    let c = consumer.clone();
    let task = tokio::spawn(async move {
        let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
        loop {
            let m = match c.recv().await {
                Ok(m) => m,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let key = m.key().map(<[u8]>::to_vec);
            let payload = m.payload().map(<[u8]>::to_vec).unwrap_or_default();
            let (topic, partition, offset) = (m.topic().to_owned(), m.partition(), m.offset());
            drop(m);
            let permit = permits.clone().acquire_owned().await.expect("semaphore");
            let (producer, c) = (producer.clone(), c.clone());
            tokio::spawn(async move {
                loop {
                    let mut rec = FutureRecord::<[u8], [u8]>::to(CEIL_OUT).payload(&payload);
                    if let Some(k) = &key {
                        rec = rec.key(k.as_slice());
                    }
                    if producer
                        .send(rec, Timeout::After(Duration::from_secs(5)))
                        .await
                        .is_ok()
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let _ = c.store_offset(&topic, partition, offset);
                drop(permit);
            });
        }
    });
    (task, consumer)
}

// ---------------------------------------------------------------------------------------

fn fmt_int(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let s = format!("{}", v.round() as i64);
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn fmt_ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "-".into()
    }
}

/// `ceiling`: the ceiling's msgs/s, for a "% ceiling" column (bursts only).
fn print_table(title: &str, rows: &[&Stats], with_rate: bool, ceiling: Option<f64>) {
    println!("{title}");
    print!(
        "  {:<34} {:>6} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11}",
        "run", "sent", "answered", "not-ok", "msgs/s", "p50 ms", "p99 ms", "max ms", "enqueue ms"
    );
    if ceiling.is_some() {
        print!(" {:>9}", "% ceiling");
    }
    println!();
    for s in rows {
        print!(
            "  {:<34} {:>6} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11}",
            s.label,
            s.sent,
            s.answered,
            s.not_ok,
            if with_rate {
                fmt_int(s.msgs_per_s)
            } else {
                "-".into()
            },
            fmt_ms(s.p50_ms),
            fmt_ms(s.p99_ms),
            fmt_ms(s.max_ms),
            fmt_ms(s.enqueue_ms),
        );
        if let Some(c) = ceiling {
            let pct = s.msgs_per_s / c * 100.0;
            print!(
                " {:>9}",
                if pct.is_finite() {
                    format!("{pct:.1}")
                } else {
                    "-".into()
                }
            );
        }
        println!();
    }
}

async fn bench(k: Knobs) -> Result<(), String> {
    let wall = Instant::now();
    let probe = common::settings_for("x", "redis://x", "");
    // Every topic the daemon needs (the webhook tiers included), plus the ceiling's two.
    let all = probe.all_topics();
    let mut topics: Vec<&str> = all.iter().map(String::as_str).collect();
    topics.extend([CEIL_IN, CEIL_OUT]);
    let broker =
        ipg_switch::kafka::EmbeddedBroker::start(&topics, PARTITIONS).map_err(|e| e.to_string())?;
    let redis = Redis::start();
    let linger = k
        .linger_ms
        .map(|l| format!("linger_ms = {l}\n"))
        .unwrap_or_default();
    let extra = format!(
        "[pipeline]\nlanes = {}\n[kafka]\n{linger}[log]\nlevel = \"error\"\n",
        k.lanes
    );
    let extra = match std::env::var("BENCH_LANE_QUEUE") {
        Ok(q) => extra.replace("[kafka]", &format!("lane_queue = {q}\n[kafka]")),
        Err(_) => extra,
    };
    let mut settings = Settings::from_toml(&[
        &common::settings_toml(&broker.bootstrap, &redis.url()),
        &redis.settings_layer(),
        &extra,
    ])
    .map_err(|e| e.to_string())?;
    // BENCH_INSTITUTIONS hosted institutions share the bills; on a cluster (IPG_TEST_REDIS=
    // cluster) each on a master of its own as far as there are masters.
    let mut hosted: Vec<(String, String)> = vec![(INST.to_owned(), PREFIX.to_owned())];
    let mut masters_used = Vec::new();
    if redis.is_cluster() {
        masters_used.push(redis.master_of(&format!("ipg:{{{INST}}}:x")));
    }
    for i in 2..100 {
        if hosted.len() >= k.institutions {
            break;
        }
        let code = format!("SCH{i:02}");
        if redis.is_cluster() {
            let m = redis.master_of(&format!("ipg:{{{code}}}:x"));
            if masters_used.contains(&m) && masters_used.len() < redis.ports().len() / 2 {
                continue;
            }
            masters_used.push(m);
        }
        let prefix = format!("8577{:02}", hosted.len());
        let mut other = settings.institutions[0].clone();
        other.code = code.clone();
        other.prefixes = vec![prefix.clone()];
        settings.institutions.push(other);
        hosted.push((code, prefix));
    }
    // The switch's capacity alone: the webhook dispatcher would spend the same CPUs calling
    // the harness's unreachable webhook URL.
    settings.webhook.enabled = false;
    settings
        .kafka
        .properties
        .insert("fetch.wait.max.ms".into(), k.fetch_wait_ms.to_string());
    let bootstrap = broker.bootstrap.clone();

    // The passive route's institution, reached over loopback HTTP.
    let pas_key = settings
        .institutions
        .iter()
        .find(|i| i.mode == InstitutionMode::Passive)
        .map(Settings::institution_key)
        .ok_or("the harness's settings have no passive institution")?;
    let fake = Institution::start(&pas_key).await;
    point_passive(&mut settings, &fake, k.lanes)?;

    println!(
        "ipg-switch capacity bench: {} msgs per burst, {} partitions, lanes = {} (lane_queue {}; ceiling copies in flight {}), \
         linger.ms = {} (the bank's {}), fetch.wait.max.ms = {}, {} CPUs",
        k.n,
        PARTITIONS,
        settings.pipeline.lanes,
        settings.pipeline.lane_queue,
        settings.pipeline.lanes,
        settings.kafka.linger_ms,
        k.bank_linger_ms,
        k.fetch_wait_ms,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Hosted bills: n for the bursts, probe more for one-at-a-time payments.
    let t = Instant::now();
    let sw = ipg_switch::build_switch(&settings).map_err(|e| e.to_string())?;
    let insts: Vec<_> = hosted
        .iter()
        .map(|(code, _)| sw.routing.by_code(code).cloned())
        .collect::<Option<Vec<_>>>()
        .ok_or("no institution")?;
    // Bills: the bursts', the one-at-a-time probes', then the open-loop runs' (1,000/s and
    // up to OPEN_MAX_RATE/s for `open_secs` each).
    let open_bills = (1_000 + OPEN_MAX_RATE as usize) * k.open_secs;
    let numbers: Vec<String> = (0..k.n + k.probe + open_bills)
        .map(|i| format!("{}", 1_000_000_000u64 + i as u64))
        .collect();
    let mem_before_bills = used_memory(&redis.ports()).await;
    let created = futures::stream::iter(numbers.iter().enumerate())
        .map(|(i, n)| {
            let (sw, inst) = (&sw, &insts[i % insts.len()]);
            let mut body = common::bill_body(n, "close", BILL_TOTAL);
            body["institution_code"] = json!(inst.code);
            body["prefix"] = json!(hosted[i % hosted.len()].1);
            async move { sw.hosted.create_bill(inst, &body).await }
        })
        .buffer_unordered(64)
        .filter(|r| std::future::ready(r.is_ok()))
        .count()
        .await;
    if created != numbers.len() {
        return Err(format!("created {created} of {} bills", numbers.len()));
    }
    let seed_s = t.elapsed().as_secs_f64();
    let bytes_per_bill = used_memory(&redis.ports())
        .await
        .saturating_sub(mem_before_bills) as f64
        / created as f64;
    println!(
        "seeded {} hosted bills in {:.2} s ({} bills/s, 64 concurrent)",
        created,
        seed_s,
        fmt_int(created as f64 / seed_s)
    );
    let vas: Vec<String> = numbers
        .iter()
        .enumerate()
        .map(|(i, n)| common::va(&hosted[i % hosted.len()].1, n))
        .collect();
    println!(
        "hosted institutions: {}{}",
        hosted
            .iter()
            .map(|(c, p)| format!("{c} ({p})"))
            .collect::<Vec<_>>()
            .join(", "),
        if redis.is_cluster() {
            format!(
                "; Redis Cluster of {} nodes, institutions' masters {:?}",
                redis.ports().len(),
                masters_used
            )
        } else {
            "; one Redis".into()
        }
    );
    let (vas, open_vas) = vas.split_at(k.n + k.probe);
    let (burst_vas, probe_vas) = vas.split_at(k.n);
    // Passive VAs: the institution keeps the bills.
    let pas_vas: Vec<String> = (0..k.n + k.probe)
        .map(|i| {
            let number = (2_000_000_000u64 + i as u64).to_string();
            fake.add_bill(&number, BILL_TOTAL);
            common::va(common::PASSIVE_PREFIX, &number)
        })
        .collect();
    let (pas_burst_vas, pas_probe_vas) = pas_vas.split_at(k.n);

    let reader = Reader::start(
        &bootstrap,
        &[&settings.topics.response, CEIL_OUT],
        k.fetch_wait_ms,
    );
    let bank: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", k.bank_linger_ms.to_string())
        .create()
        .map_err(|e| e.to_string())?;
    let mut internals = Vec::new();

    // 1. Ceiling.
    let (task, consumer) = start_ceiling(&settings, &bootstrap, settings.pipeline.lanes);
    let warm = request(
        "inquiry",
        "ceil-warm".into(),
        common::inquiry(&probe_vas[0], "ceil-warm"),
    );
    produce_all(&bank, CEIL_IN, std::slice::from_ref(&warm)).await;
    reader
        .wait_one("ceil-warm", Duration::from_secs(60))
        .await
        .ok_or("ceiling warm-up copy never arrived")?;
    let msgs = inquiries(probe_vas, "ceil-1");
    let ceil_one = one_at_a_time("ceiling copy, 1 in flight", &bank, CEIL_IN, &reader, &msgs).await;
    let msgs = inquiries(burst_vas, "ceil");
    let (ceil, int) = measured(
        "ceiling copy",
        &redis.ports(),
        burst(
            "ceiling copy (pass-through)",
            &bank,
            CEIL_IN,
            &reader,
            &msgs,
        ),
    )
    .await;
    internals.push(int);
    task.abort();
    let _ = task.await;
    tokio::time::sleep(Duration::from_millis(200)).await; // in-flight copies finish
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;

    // 2./3. Daemon.
    let daemon = Daemon::start(settings.clone());
    let warm = request(
        "inquiry",
        "daemon-warm".into(),
        common::inquiry(&probe_vas[0], "daemon-warm"),
    );
    produce_all(&bank, &settings.topics.request, std::slice::from_ref(&warm)).await;
    let (_, rc) = reader
        .wait_one("daemon-warm", Duration::from_secs(60))
        .await
        .ok_or("daemon warm-up answer never arrived")?;
    if rc.as_deref() != Some("SUCCESS") {
        return Err(format!("warm-up inquiry answered {rc:?}"));
    }
    let topic = settings.topics.request.clone();

    let msgs = inquiries(probe_vas, "inq-1");
    let inq_one = one_at_a_time("daemon inquiry, 1 in flight", &bank, &topic, &reader, &msgs).await;
    let msgs = payments(probe_vas, "pay-1");
    let pay_one = one_at_a_time("daemon payment, 1 in flight", &bank, &topic, &reader, &msgs).await;

    // Open loop at 1,000 payments/s first, while the daemon's topics are nearly empty: the
    // mock broker's message lookup is linear in a partition's length, so after the bursts
    // (20,000+ messages on the request and response topics) it measures the mock.
    let mut open = Vec::new();
    let first = ((1_000 * k.open_secs) as usize).min(open_vas.len());
    let (open_now, left) = open_vas.split_at(first);
    open.push(open_loop_after_inquiries(&bank, &topic, &reader, open_now, 1_000.0).await);

    let msgs = inquiries(burst_vas, "inq");
    let (inq, int) = measured(
        "daemon inquiries",
        &redis.ports(),
        burst("daemon inquiries", &bank, &topic, &reader, &msgs),
    )
    .await;
    internals.push(int);
    let msgs = payments(burst_vas, "pay");
    redis_cmd(&redis.url(), &["CONFIG", "RESETSTAT"]).await;
    let mem_before_pay = used_memory(&redis.ports()).await;
    redis_callgrind(&redis, "-z");
    ipg_bench_payments_begin();
    let (pay, int) = measured(
        "daemon payments",
        &redis.ports(),
        burst("daemon payments", &bank, &topic, &reader, &msgs),
    )
    .await;
    ipg_bench_payments_end();
    redis_callgrind(&redis, "-d");
    internals.push(int);
    let stats = redis_cmd(&redis.url(), &["INFO", "commandstats"]).await;
    if std::env::var_os("BENCH_REDIS_CALLGRIND").is_some() {
        // For scripts/callgrind-payments.sh, which stops the bench here.
        let evalsha = stats.lines().find(|l| l.starts_with("cmdstat_evalsha:"));
        eprintln!(
            "payment burst: answered {} {}",
            pay.answered,
            evalsha.unwrap_or("cmdstat_evalsha:calls=0")
        );
    }
    let bytes_per_payment = used_memory(&redis.ports())
        .await
        .saturating_sub(mem_before_pay) as f64
        / pay.answered.max(1) as f64;

    // Open loop at 70 % of the burst's payments/s (after the bursts: it needs their rate).
    let rate = (0.7 * pay.msgs_per_s).clamp(100.0, OPEN_MAX_RATE);
    let count = ((rate * k.open_secs as f64) as usize).min(left.len());
    open.push(open_loop_after_inquiries(&bank, &topic, &reader, &left[..count], rate).await);

    // 4./5. Daemon, passive route.
    let warm = request(
        "inquiry",
        "pas-warm".into(),
        common::inquiry(&pas_probe_vas[0], "pas-warm"),
    );
    produce_all(&bank, &topic, std::slice::from_ref(&warm)).await;
    let (_, rc) = reader
        .wait_one("pas-warm", Duration::from_secs(60))
        .await
        .ok_or("passive warm-up answer never arrived")?;
    if rc.as_deref() != Some("SUCCESS") {
        return Err(format!("passive warm-up inquiry answered {rc:?}"));
    }
    let msgs = inquiries(pas_probe_vas, "pinq-1");
    let pinq_one = one_at_a_time(
        "passive inquiry, 1 in flight",
        &bank,
        &topic,
        &reader,
        &msgs,
    )
    .await;
    let msgs = payments(pas_probe_vas, "ppay-1");
    let ppay_one = one_at_a_time(
        "passive payment, 1 in flight",
        &bank,
        &topic,
        &reader,
        &msgs,
    )
    .await;
    let msgs = inquiries(pas_burst_vas, "pinq");
    let (pinq, int) = measured(
        "passive inquiries",
        &redis.ports(),
        burst(
            "passive inquiries (5 ms inst.)",
            &bank,
            &topic,
            &reader,
            &msgs,
        ),
    )
    .await;
    internals.push(int);
    let msgs = payments(pas_burst_vas, "ppay");
    redis_cmd(&redis.url(), &["CONFIG", "RESETSTAT"]).await;
    let (ppay, int) = measured(
        "passive payments",
        &redis.ports(),
        burst(
            "passive payments (5 ms inst.)",
            &bank,
            &topic,
            &reader,
            &msgs,
        ),
    )
    .await;
    internals.push(int);
    let pas_stats = redis_cmd(&redis.url(), &["INFO", "commandstats"]).await;

    daemon.stop().await;

    // Report.
    println!();
    println!("redis-server during the payment burst (INFO commandstats; usec_per_call is Redis CPU per call):");
    for line in stats.lines().filter(|l| l.starts_with("cmdstat_")) {
        println!("  {line}");
    }
    println!();
    println!("redis-server during the passive payment burst (INFO commandstats):");
    for line in pas_stats.lines().filter(|l| l.starts_with("cmdstat_")) {
        println!("  {line}");
    }
    println!();
    print_table(&format!("bursts: {} messages produced at once; msgs/s = answered / (first produce -> last answer)", k.n), &[&ceil, &inq, &pay, &pinq, &ppay], true, Some(ceil.msgs_per_s));
    println!();
    print_table(
        &format!(
            "one at a time: {} messages, each produced after the previous answer",
            k.probe
        ),
        &[&ceil_one, &inq_one, &pay_one, &pinq_one, &ppay_one],
        false,
        None,
    );
    println!();
    println!("latency = produce call -> answer read back by the bench; enqueue ms = time to hand the whole burst to the producer");
    println!();
    println!(
        "payments  = {:.1} % of the ceiling's msgs/s (target >= 50 %)",
        pay.msgs_per_s / ceil.msgs_per_s * 100.0
    );
    println!(
        "inquiries = {:.1} % of the ceiling's msgs/s",
        inq.msgs_per_s / ceil.msgs_per_s * 100.0
    );
    let pas_bound = k.lanes as f64 / PASSIVE_DELAY.as_secs_f64();
    println!(
        "passive inquiries = {:.1} % of the ceiling's msgs/s, {:.1} % of {} calls/s ({} in flight x {} ms)",
        pinq.msgs_per_s / ceil.msgs_per_s * 100.0,
        pinq.msgs_per_s / pas_bound * 100.0,
        fmt_int(pas_bound),
        k.lanes,
        PASSIVE_DELAY.as_millis()
    );
    println!(
        "passive payments  = {:.1} % of the ceiling's msgs/s, {:.1} % of {} calls/s",
        ppay.msgs_per_s / ceil.msgs_per_s * 100.0,
        ppay.msgs_per_s / pas_bound * 100.0,
        fmt_int(pas_bound)
    );
    let bad = fake.bad_signatures();
    let calls: usize = institution::ENDPOINTS
        .iter()
        .map(|e| fake.hits(e).len())
        .sum();
    println!("fake institution: {calls} calls, {bad} badly signed");
    if bad > 0 {
        println!("WARNING: {bad} requests reached the fake institution without a valid Signature");
    }
    println!();
    println!(
        "CPU during each burst, % of one core ({} cores = {} %):",
        2, 200
    );
    let groups: Vec<&'static str> = {
        let mut g: Vec<&'static str> = internals
            .iter()
            .flat_map(|i| i.cpu.keys().copied())
            .collect();
        g.sort_unstable();
        g.dedup();
        g
    };
    print!("  {:<40}", "thread group");
    for i in &internals {
        print!(" {:>17}", i.label);
    }
    println!();
    for g in &groups {
        print!("  {:<40}", g);
        for i in &internals {
            print!(
                " {:>17}",
                format!("{:.0}", i.cpu.get(g).copied().unwrap_or(0.0))
            );
        }
        println!();
    }
    print!("  {:<40}", "total");
    for i in &internals {
        print!(" {:>17}", format!("{:.0}", i.cpu.values().sum::<f64>()));
    }
    println!();
    println!();
    println!("CPU per answered message, microseconds (same groups; every process on the box):");
    for g in &groups {
        print!("  {:<40}", g);
        for i in &internals {
            let us = i.us_per_msg(i.cpu.get(g).copied().unwrap_or(0.0));
            print!(" {:>17}", format!("{us:.1}"));
        }
        println!();
    }
    print!("  {:<40}", "total");
    for i in &internals {
        let us = i.us_per_msg(i.cpu.values().sum::<f64>());
        print!(" {:>17}", format!("{us:.1}"));
    }
    println!();
    println!(
        "payments/s / inquiries/s = {:.2} (hosted, same run)",
        pay.msgs_per_s / inq.msgs_per_s
    );
    println!();
    println!("daemon's own histograms during each burst (mean ms per observation, observations):");
    for i in internals.iter().skip(1) {
        println!("  {}:", i.label);
        for (series, mean, count) in &i.stages {
            println!("    {:<48} {:>9.2} ms  x{}", series, mean, count);
        }
    }
    for s in [
        &ceil, &inq, &pay, &pinq, &ppay, &ceil_one, &inq_one, &pay_one, &pinq_one, &ppay_one,
    ] {
        if !s.rcs.is_empty() {
            println!("  not-ok rcs in {}: {:?}", s.label, s.rcs);
        }
    }
    let b = reader.board.lock().unwrap();
    println!(
        "reader: {} duplicate answers, {} unparsable messages",
        b.duplicates, b.unparsable
    );
    drop(b);
    println!();
    println!(
        "open loop: hosted payments produced at a fixed rate for {} s, each run after an inquiry burst over its VAs; latency = scheduled send -> answer read back (HDR histogram, no coordinated omission)",
        k.open_secs
    );
    println!(
        "  {:>8} {:>7} {:>8} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "rate/s", "sent", "answered", "not-ok", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for o in &open {
        println!(
            "  {:>8} {:>7} {:>8} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            fmt_int(o.rate),
            o.sent,
            o.answered,
            o.not_ok,
            o.p50_ms,
            o.p99_ms,
            o.p999_ms,
            o.max_ms
        );
    }
    println!();
    println!(
        "Redis memory (INFO used_memory{}): {:.0} bytes per hosted bill (seeding), {:.0} bytes per settled hosted payment (the payment burst: record, ledger entry, binding, bill's payment index)",
        if redis.is_cluster() { ", summed over every node, replicas included" } else { "" },
        bytes_per_bill,
        bytes_per_payment
    );
    println!("bench wall time {:.1} s", wall.elapsed().as_secs_f64());

    let missing: Vec<String> = [
        &ceil, &inq, &pay, &pinq, &ppay, &ceil_one, &inq_one, &pay_one, &pinq_one, &ppay_one,
    ]
    .iter()
    .filter(|s| s.answered < s.sent)
    .map(|s| format!("{}: {} of {} answered", s.label, s.answered, s.sent))
    .collect();
    drop(reader);
    drop(redis);
    drop(broker);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("answers missing: {}", missing.join("; ")))
    }
}

/// One Redis command on a fresh connection, its reply as text.
async fn redis_cmd(url: &str, args: &[&str]) -> String {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let v: redis::Value = cmd.query_async(&mut conn).await.expect("redis command");
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        redis::Value::VerbatimString { text, .. } => text,
        other => format!("{other:?}"),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this too, without it:
    // then a small smoke run is enough.
    let full = std::env::args().any(|a| a == "--bench");
    let knobs = Knobs {
        n: env_num("BENCH_N", if full { 10_000 } else { 300 }),
        institutions: env_num("BENCH_INSTITUTIONS", 1).max(1),
        open_secs: env_num("BENCH_OPEN_SECS", if full { 5 } else { 1 }).max(1),
        probe: env_num("BENCH_PROBE", if full { 200 } else { 20 }).max(1),
        lanes: env_num("BENCH_LANES", 64),
        linger_ms: std::env::var("BENCH_LINGER_MS")
            .ok()
            .and_then(|v| v.parse().ok()),
        bank_linger_ms: env_num("BENCH_BANK_LINGER_MS", 1),
        fetch_wait_ms: env_num("BENCH_FETCH_WAIT_MS", 1),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(bench(knobs));
    rt.shutdown_timeout(Duration::from_secs(5));
    if let Err(e) = result {
        eprintln!("capacity bench failed: {e}");
        std::process::exit(1);
    }
}
