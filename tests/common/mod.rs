//! Test harness: a real `redis-server` on a free port, a Kafka-protocol broker (librdkafka's
//! mock cluster, reached over TCP), and the real daemon run in-process through
//! `ipg_switch::run`. Every stack has its own broker and Redis, so tests run in parallel.
#![allow(dead_code)]
pub mod cluster;
pub mod contract;
pub mod examples;
pub mod institution;
pub mod snap;

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipg_switch::kafka::EmbeddedBroker;
use ipg_switch::settings::Settings;
use ipg_switch::signature;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

pub const CHANNEL: &str = "bank_syariah";
pub const CHANNEL_KEY: &str = "channel-secret-key";
pub const INST: &str = "SCH01";
pub const PREFIX: &str = "857499";
pub const PREFIX2: &str = "857500";
pub const PASSIVE_PREFIX: &str = "857600";
pub const PARTITIONS: i32 = 3;

/// The value of the first series of `name` in this process's metrics (0 when absent).
pub fn metric(name: &str) -> f64 {
    ipg_switch::metrics::install()
        .render()
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A TCP port on 127.0.0.1 that nothing listens on now.
///
/// Taken below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), so no outgoing
/// connection (the daemon's, redis-cli's, the broker's) can take it as its source port
/// between this call and the server's bind; and never the same twice in one test process, so
/// two servers started at once (two test clusters, say) cannot both be handed it. A port
/// from `bind(":0")` had neither guarantee: CI saw a cluster node die on a port taken that
/// way, and two test clusters merge.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, RandomState};
    use std::sync::OnceLock;
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    // A range of its own below the ephemeral one (well above the well-known ports).
    let low = 10_000u16.min(ephemeral_low / 2);
    let span = u64::from(ephemeral_low - low);
    let mut given = GIVEN.get_or_init(Default::default).lock().unwrap();
    let seed = RandomState::new();
    for attempt in 0u64.. {
        assert!(attempt < 100_000, "no free port below {ephemeral_low}");
        let port = low + (seed.hash_one(attempt) % span) as u16;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    unreachable!()
}

/// `process_id` of `INFO server` from the Redis answering on `port` (plain TCP), if any.
fn server_pid(port: u16) -> Option<u32> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).ok()?;
    let mut c = client.get_connection().ok()?;
    let info: String = redis::cmd("INFO").arg("server").query(&mut c).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A private `redis-server`, killed on drop; or, with `IPG_TEST_REDIS=cluster`, a private
/// Redis Cluster (3 masters + 3 replicas) whose first node this is.
pub struct Redis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
    /// The cluster's other nodes (empty: a single Redis).
    pub peers: Vec<Redis>,
}

/// Whether this test run puts the switch on a Redis Cluster (`IPG_TEST_REDIS=cluster`).
pub fn cluster_mode() -> bool {
    std::env::var("IPG_TEST_REDIS").is_ok_and(|v| v == "cluster")
}

impl Redis {
    /// A single Redis, or a cluster with `IPG_TEST_REDIS=cluster`.
    pub fn start() -> Redis {
        if cluster_mode() {
            return Self::cluster(3, 1);
        }
        Self::start_on(free_port())
    }

    /// Whether this is a cluster (see [`Redis::cluster`]).
    pub fn is_cluster(&self) -> bool {
        !self.peers.is_empty()
    }

    /// The `[redis]` lines that point the switch here (for a configuration file).
    pub fn toml_lines(&self) -> String {
        format!("url = \"{}\"\n{}", self.url(), self.cluster_lines())
    }

    /// `cluster = true` and every node as a seed, for a cluster; nothing for one Redis.
    pub fn cluster_lines(&self) -> String {
        if !self.is_cluster() {
            return String::new();
        }
        let seeds: Vec<String> = self
            .peers
            .iter()
            .map(|p| format!("\"redis://127.0.0.1:{}\"", p.port))
            .collect();
        format!("cluster = true\nseed_urls = [{}]\n", seeds.join(", "))
    }

    /// The settings layer a cluster needs on top of [`settings_toml`] (empty for one Redis).
    pub fn settings_layer(&self) -> String {
        if self.is_cluster() {
            format!("[redis]\n{}", self.cluster_lines())
        } else {
            String::new()
        }
    }

    pub fn start_on(port: u16) -> Redis {
        Self::start_with(port, &[])
    }

    /// A redis-server listening on `port` (plain or, with `--port 0 --tls-port`, TLS) with
    /// `extra` arguments after the test defaults.
    pub fn start_with(port: u16, extra: &[String]) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let bin = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let tls = extra.iter().any(|a| a == "--tls-port");
        let plain_port = if tls { 0 } else { port };
        let child = Command::new(&bin)
            .args([
                "--port",
                &plain_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin} (run scripts/test.sh, which installs it): {e}")
            });
        let mut r = Redis {
            child,
            port,
            _dir: dir,
            peers: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {port}"
            );
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!("redis-server on {port} exited at start: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The port answers: it must be this redis-server (not another process that had the
        // port, while ours failed to bind and exited).
        if !tls {
            // A server that has just opened its port may not answer INFO yet (seen once in
            // CI: `None` from a redis-server that was ours): ask again for a while.
            let mut pid = server_pid(port);
            let asked = Instant::now() + Duration::from_secs(5);
            while pid.is_none() && Instant::now() < asked {
                std::thread::sleep(Duration::from_millis(50));
                pid = server_pid(port);
            }
            assert_eq!(
                pid,
                Some(r.child.id()),
                "port {port} is answered by another process; redis-server there exited: {:?}",
                r.child.try_wait()
            );
        }
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The `redis-server` child's process id (to freeze it with SIGSTOP in a test).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running daemon; `stop()` shuts it down as SIGTERM would.
pub struct Daemon {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), ipg_switch::RunError>>,
}

impl Daemon {
    pub fn start(settings: Settings) -> Daemon {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(ipg_switch::run(settings, async move {
            let _ = rx.await;
        }));
        Daemon {
            stop: Some(tx),
            handle,
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let r = tokio::time::timeout(Duration::from_secs(60), &mut self.handle).await;
        r.expect("daemon did not stop within 60 s")
            .expect("daemon task panicked")
            .expect("daemon failed");
    }
}

/// Every message of a topic, collected in the background.
#[derive(Clone, Default)]
pub struct Collected {
    msgs: Arc<Mutex<Vec<Received>>>,
}

#[derive(Clone, Debug)]
pub struct Received {
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: HashMap<String, String>,
    pub partition: i32,
    /// When the collector read it.
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.value).unwrap_or(Value::Null)
    }
}

impl Collected {
    pub fn all(&self) -> Vec<Received> {
        self.msgs.lock().unwrap().clone()
    }

    /// Polls until `f` finds what it wants, or panics after `secs`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        secs: u64,
        mut f: impl FnMut(&[Received]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(t) = f(&self.msgs.lock().unwrap()) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; have {} messages",
                self.msgs.lock().unwrap().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn collect(bootstrap: &str, topic: &str) -> Collected {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("test-reader-{topic}"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let out = Collected::default();
    let sink = out.msgs.clone();
    tokio::spawn(async move {
        loop {
            match c.recv().await {
                Ok(m) => {
                    let mut headers = HashMap::new();
                    if let Some(hs) = m.headers() {
                        for h in hs.iter() {
                            headers.insert(
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            );
                        }
                    }
                    sink.lock().unwrap().push(Received {
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        value: m.payload().unwrap_or_default().to_vec(),
                        headers,
                        partition: m.partition(),
                        at: Instant::now(),
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    out
}

/// Broker + Redis + settings, and clients that play the bank.
pub struct Stack {
    pub broker: EmbeddedBroker,
    pub redis: Redis,
    pub settings: Settings,
    pub producer: FutureProducer,
    pub responses: Collected,
    pub webhooks: Collected,
    pub dead_letters: Collected,
}

pub fn settings_for(bootstrap: &str, redis_url: &str, extra: &str) -> Settings {
    Settings::from_toml(&[&settings_toml(bootstrap, redis_url), extra]).unwrap()
}

/// The tests' configuration as TOML (for a daemon run as its own process).
pub fn settings_toml(bootstrap: &str, redis_url: &str) -> String {
    format!(
        r#"
        [kafka]
        bootstrap_servers = "{bootstrap}"
        group_id = "ipg-switch-test"
        session_timeout_ms = 3000
        auto_commit_interval_ms = 200
        topic_partitions = {PARTITIONS}
        [kafka.properties]
        # The mock broker holds an empty fetch for the whole wait; real brokers answer early.
        "fetch.wait.max.ms" = "10"
        [redis]
        url = "{redis_url}"
        command_timeout_ms = 500
        [pipeline]
        lanes = 16
        retry_initial_ms = 50
        retry_max_ms = 500
        [switch]
        lock_ttl_ms = 5000
        lock_wait_ms = 5000
        [journal]
        # Above the default (5 s): a loaded test machine must not answer in doubt by chance.
        append_deadline_ms = 10000
        [passive]
        timeout_ms = 1000
        connect_timeout_ms = 500
        resolve_poll_ms = 50
        [metrics]
        listen = ""
        [api]
        listen = ""
        [log]
        level = "warn"

        [[channels]]
        code = "{CHANNEL}"
        api_key = "{CHANNEL_KEY}"
        [[channels]]
        code = "other_bank"
        api_key = "other-key"

        [[institutions]]
        code = "{INST}"
        name = "Sekolah Contoh"
        prefixes = ["{PREFIX}", "{PREFIX2}"]
        mode = "hosted"
        api_key = "inst-key"
        webhook_url = "http://127.0.0.1:9/webhook"

        [[institutions]]
        code = "PAS01"
        name = "Pesantren Pasif"
        prefixes = ["{PASSIVE_PREFIX}"]
        mode = "passive"
        api_key = "pas-key"
        base_url = "http://127.0.0.1:9/ipg"
        "#
    )
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with("").await
    }

    pub async fn start_with(extra: &str) -> Stack {
        Self::start_on(Redis::start(), extra).await
    }

    /// A stack over a Redis of the test's own (persistence, a directory it keeps).
    pub async fn start_on(redis: Redis, extra: &str) -> Stack {
        Self::start_on_brokers(redis, extra, 1).await
    }

    /// A stack whose embedded broker has `brokers` brokers (leaders and coordinators can
    /// move between them).
    pub async fn start_on_brokers(redis: Redis, extra: &str, brokers: i32) -> Stack {
        let probe = settings_for("x", "redis://x", "");
        let topics = probe.all_topics();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let broker = EmbeddedBroker::start_brokers(&topics, PARTITIONS, brokers).unwrap();
        let settings = Settings::from_toml(&[
            &settings_toml(&broker.bootstrap, &redis.url()),
            &redis.settings_layer(),
            extra,
        ])
        .unwrap();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &broker.bootstrap)
            .create()
            .unwrap();
        let responses = collect(&broker.bootstrap, &settings.topics.response);
        let webhooks = collect(&broker.bootstrap, &settings.topics.webhook);
        let dead_letters = collect(&broker.bootstrap, &settings.topics.dead_letter);
        Stack {
            broker,
            redis,
            settings,
            producer,
            responses,
            webhooks,
            dead_letters,
        }
    }

    pub fn daemon(&self) -> Daemon {
        Daemon::start(self.settings.clone())
    }

    /// Creates a hosted bill through the same code path the CLI uses.
    pub async fn create_bill(&self, body: Value) -> ipg_switch::domain::Bill {
        let sw = ipg_switch::build_switch(&self.settings).unwrap();
        let code = body["institution_code"].as_str().unwrap().to_owned();
        let inst = sw.routing.by_code(&code).unwrap().clone();
        sw.hosted.create_bill(&inst, &body).await.unwrap()
    }

    pub async fn produce_raw(&self, key: Option<&str>, value: &[u8], signature: Option<&str>) {
        let mut rec = FutureRecord::<str, [u8]>::to(&self.settings.topics.request).payload(value);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(s) = signature {
            rec = rec.headers(OwnedHeaders::new().insert(Header {
                key: "signature",
                value: Some(s),
            }));
        }
        self.producer
            .send(rec, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    /// Signs and produces a request; returns its request_id.
    pub async fn send(&self, kind: &str, request_id: &str, body: Value) -> String {
        self.send_as(CHANNEL, CHANNEL_KEY, kind, request_id, body)
            .await
    }

    pub async fn send_as(
        &self,
        channel: &str,
        key: &str,
        kind: &str,
        request_id: &str,
        body: Value,
    ) -> String {
        let value = serde_json::to_vec(
            &json!({"type": kind, "channel": channel, "request_id": request_id, "body": body}),
        )
        .unwrap();
        let sig = signature::sign(key.as_bytes(), &value);
        let va = body
            .get("va_number")
            .and_then(Value::as_str)
            .map(str::to_owned);
        self.produce_raw(va.as_deref(), &value, Some(&sig)).await;
        request_id.to_owned()
    }

    /// The (first) answer to `request_id`.
    pub async fn answer(&self, request_id: &str) -> Value {
        self.responses
            .wait_for(&format!("answer to {request_id}"), 60, |msgs| {
                msgs.iter()
                    .map(Received::json)
                    .find(|v| v["request_id"] == request_id)
            })
            .await
    }

    /// Every answer to `request_id` seen so far.
    pub fn answers(&self, request_id: &str) -> Vec<Value> {
        self.responses
            .all()
            .iter()
            .map(Received::json)
            .filter(|v| v["request_id"] == request_id)
            .collect()
    }
}

pub fn va(prefix: &str, number: &str) -> String {
    format!("{prefix}{number}")
}

pub fn bill_body(number: &str, kind: &str, total: u64) -> Value {
    json!({
        "institution_code": INST,
        "va_number": number,
        "prefix": PREFIX,
        "type": kind,
        "name": "SPP Januari",
        "customer_name": "Ahmad",
        "total_amount": total,
        "invoice_number": format!("INV/{number}"),
    })
}

pub fn inquiry(va: &str, ref_id: &str) -> Value {
    json!({"va_number": va, "ref_id": ref_id, "terminal_id": "atm", "transaction_date": "2026-01-10 10:00:00"})
}

pub fn payment(va: &str, ref_id: &str, amount: impl Into<Value>) -> Value {
    json!({"va_number": va, "ref_id": ref_id, "amount": amount.into(), "terminal_id": "atm",
           "transaction_date": "2026-01-10 10:00:00", "customer_name": "Ahmad"})
}

impl Stack {
    pub fn switch(&self) -> ipg_switch::switch::Switch {
        ipg_switch::build_switch(&self.settings).unwrap()
    }

    /// The bill as stored now.
    /// Fails unless `verify` finds Redis and the journal in agreement.
    pub async fn assert_verify_agrees(&self) {
        let journal = self.settings.journal(&self.broker.bootstrap);
        let verdict = ipg_switch::journal::verify::verify(
            &journal,
            &self.switch().hosted.store,
            &mut ipg_switch::journal::Quiet,
        )
        .await
        .unwrap();
        assert!(verdict.agrees(), "{}", verdict.table());
        self.assert_messages_match_the_contract();
    }

    /// Every response and webhook job the daemon sent in this test is valid for the
    /// AsyncAPI contract (docs/asyncapi.yaml): the contract is sampled by every test that
    /// checks `verify`.
    pub fn assert_messages_match_the_contract(&self) {
        let doc = contract::document();
        for (collected, message) in [
            (&self.responses, "ChannelResponse"),
            (&self.webhooks, "WebhookJob"),
        ] {
            let v = contract::validator(&doc, message);
            for m in collected.all() {
                contract::assert_valid(&v, message, &m.json());
            }
        }
    }

    /// Paid-stage payment events in the journal by event id, and how many times each is
    /// there (a change journaled again carries the same id).
    pub async fn journaled_payments(&self) -> HashMap<String, usize> {
        let journal = self.settings.journal(&self.broker.bootstrap);
        let mut paid: HashMap<String, usize> = HashMap::new();
        journal
            .scan(&mut ipg_switch::journal::Quiet, &mut |r| {
                if let Some(p) = &r.event.payment {
                    if p.stage == ipg_switch::store::journal::Stage::Paid {
                        *paid.entry(r.event.event_id.clone()).or_default() += 1;
                    }
                }
            })
            .await
            .unwrap();
        paid
    }

    /// [`Stack::journaled_payments`], read again for up to `secs` until it holds `ids` ids
    /// (the broker's high watermark may trail its last acknowledged appends by a moment);
    /// what is still missing then is missing, and the ids it misses are printed beside
    /// what Redis still lists as unjournaled.
    pub async fn journaled_payments_settled(
        &self,
        ids: usize,
        secs: u64,
    ) -> HashMap<String, usize> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let paid = self.journaled_payments().await;
            if paid.len() >= ids || std::time::Instant::now() >= deadline {
                if paid.len() < ids {
                    let listed = self
                        .switch()
                        .hosted
                        .store
                        .unjournaled_count(INST)
                        .await
                        .unwrap_or(0);
                    eprintln!(
                        "journal holds {} of {ids} payment ids after {secs} s; {listed} change(s) still listed as unjournaled",
                        paid.len()
                    );
                }
                return paid;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub async fn stored_bill(&self, hash: &str) -> ipg_switch::domain::Bill {
        self.switch()
            .hosted
            .store
            .bill(INST, hash)
            .await
            .unwrap()
            .expect("bill exists")
            .value
    }

    pub async fn ledger(&self) -> (Vec<Value>, i64) {
        let store = self.switch().hosted.store;
        (
            store.ledger(INST).await.unwrap(),
            store.balance(INST).await.unwrap(),
        )
    }
}

impl Stack {
    /// Like `produce_raw`; returns where the record landed: `(partition, offset)`.
    pub async fn produce_raw_at(
        &self,
        key: Option<&str>,
        value: Option<&[u8]>,
        signature: Option<&str>,
    ) -> (i32, i64) {
        let mut rec = FutureRecord::<str, [u8]>::to(&self.settings.topics.request);
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(s) = signature {
            rec = rec.headers(OwnedHeaders::new().insert(Header {
                key: "signature",
                value: Some(s),
            }));
        }
        let d = self
            .producer
            .send(rec, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        (d.partition, d.offset)
    }

    /// Produces a tombstone (a record with a key and no value at all); returns
    /// `(partition, offset)`.
    pub async fn produce_tombstone(&self, key: &str) -> (i32, i64) {
        self.produce_raw_at(Some(key), None, None).await
    }
}

/// Signs an envelope with `key`; returns the exact value bytes and the signature header.
pub fn signed_envelope(
    channel: &str,
    key: &str,
    kind: &str,
    request_id: &str,
    body: Value,
) -> (Vec<u8>, String) {
    let value = serde_json::to_vec(
        &json!({"type": kind, "channel": channel, "request_id": request_id, "body": body}),
    )
    .unwrap();
    let sig = signature::sign(key.as_bytes(), &value);
    (value, sig)
}

/// Every answer in `msgs`, grouped by request id, in arrival order.
pub fn answers_by_id(msgs: &[Received]) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for v in msgs.iter().map(Received::json) {
        if let Some(id) = v["request_id"].as_str() {
            out.entry(id.to_owned()).or_default().push(v.clone());
        }
    }
    out
}

/// One Payment Channel API call (`POST /api/v2/ch/{kind}`) as [`CHANNEL`], signed; returns
/// the HTTP status and the JSON answer (or the text as a JSON string).
pub async fn post_channel(base: &str, kind: &str, body: &Value) -> (u16, Value) {
    let raw = serde_json::to_vec(body).unwrap();
    let sig = signature::sign(CHANNEL_KEY.as_bytes(), &raw);
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v2/ch/{kind}"))
        .header("X-Channel", CHANNEL)
        .header("Signature", sig)
        .header("Content-Type", "application/json")
        .body(raw)
        .send()
        .await
        .expect("HTTP request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Waits until the HTTP API answers on `base` (the daemon starts it asynchronously).
pub async fn http_up(base: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{base}/openapi.json")).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "HTTP API did not come up on {base}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every record of `ipg:*` as text, key by key; leaving out what is not a record (VA locks,
/// webhook gates, API tokens, the journal marks, the unjournaled lists) and the resolver's due times (moved by its
/// own claims).
pub async fn snapshot(url: &str) -> std::collections::BTreeMap<String, String> {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("ipg:*")
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await
            .unwrap();
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let mut out = std::collections::BTreeMap::new();
    for k in keys {
        if k.contains(":lock:")
            || k.contains(":whgate:")
            || k.starts_with("ipg:token:")
            || k.ends_with(":journal")
            || k.ends_with(":unjournaled")
        {
            continue;
        }
        let t: String = redis::cmd("TYPE")
            .arg(&k)
            .query_async(&mut c)
            .await
            .unwrap();
        let v = match t.as_str() {
            "string" => redis::cmd("GET")
                .arg(&k)
                .query_async::<String>(&mut c)
                .await
                .unwrap(),
            "hash" => {
                let m: std::collections::BTreeMap<String, String> = redis::cmd("HGETALL")
                    .arg(&k)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                format!("{m:?}")
            }
            // The resolver's due times move with its own claims: members only.
            "list" | "zset" if t == "list" || k.ends_with(":pdoubt") => {
                let range = if t == "list" { "LRANGE" } else { "ZRANGE" };
                let l: Vec<String> = redis::cmd(range)
                    .arg(&k)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                format!("{l:?}")
            }
            "zset" => {
                let l: Vec<(String, String)> = redis::cmd("ZRANGE")
                    .arg(&k)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(&mut c)
                    .await
                    .unwrap();
                format!("{l:?}")
            }
            other => format!("<{other}>"),
        };
        out.insert(k, v);
    }
    out
}

impl Stack {
    /// Points the passive institution PAS01 at `base_url` (a test institution).
    pub fn point_passive(&mut self, base_url: String) {
        self.settings
            .institutions
            .iter_mut()
            .find(|i| i.code == "PAS01")
            .expect("PAS01 is configured")
            .base_url = Some(base_url);
    }

    /// The stack's configuration as a file in `dir`, for the binary.
    pub fn config_file(&self, dir: &tempfile::TempDir) -> std::path::PathBuf {
        let path = dir.path().join("switch.toml");
        let url = &self.settings.redis.url;
        let toml = settings_toml(&self.broker.bootstrap, url).replace(
            &format!("url = \"{url}\"\n"),
            &format!("url = \"{url}\"\n{}", self.redis.cluster_lines()),
        );
        std::fs::write(&path, toml).unwrap();
        path
    }
}

/// Runs the `ipg-switch` binary with `--config cfg` and `args`.
pub fn ipg_bin(cfg: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ipg-switch"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .output()
        .unwrap()
}
