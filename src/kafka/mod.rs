//! Kafka clients, topic creation through the admin API, and the embedded broker
//! (librdkafka's mock cluster) for `bootstrap_servers = "embedded"`.

pub mod config;
pub mod journal;
pub mod offsets;
pub mod publish;

pub use config::{KafkaSettings, TopicSettings};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;

use crate::metrics as m;
use offsets::Offsets;

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("embedded broker: {0}")]
    Embedded(String),
    #[error("topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
}

/// Settings every client shares: bootstrap list, `kafka.properties`, security.
pub fn base_config(bootstrap: &str, s: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in &s.properties {
        c.set(k, v);
    }
    // The typed security settings (validated at load); the password comes from its
    // environment variable here and is never logged.
    for (k, v) in s.security_properties() {
        c.set(k, v);
    }
    c.set_log_level(RDKafkaLogLevel::Warning);
    c
}

/// Idempotent producer, acks from all in-sync replicas; never creates a topic by producing
/// to it (the switch creates its topics through the admin API, the journal with its
/// retention).
///
/// # Errors
/// Invalid client configuration.
pub fn create_producer(bootstrap: &str, s: &KafkaSettings) -> KafkaResult<FutureProducer> {
    base_config(bootstrap, s)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("allow.auto.create.topics", "false")
        .set("linger.ms", s.linger_ms.to_string())
        .set("message.timeout.ms", s.message_timeout_ms.to_string())
        .create()
}

/// A consumer that stores offsets only when told (at-least-once) and lets librdkafka commit
/// what was stored every `auto_commit_interval_ms`.
///
/// # Errors
/// Invalid client configuration.
pub fn create_consumer(
    bootstrap: &str,
    s: &KafkaSettings,
    ctx: TrackingContext,
) -> KafkaResult<StreamConsumer<TrackingContext>> {
    at_least_once_config(bootstrap, s, &s.group_id).create_with_context(ctx)
}

/// Consumer settings for at-least-once processing in `group`: offsets are stored by the
/// application once its work is acknowledged, committed by librdkafka; no auto-create.
pub fn at_least_once_config(bootstrap: &str, s: &KafkaSettings, group: &str) -> ClientConfig {
    let session = s.session_timeout_ms;
    let mut c = base_config(bootstrap, s);
    c.set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.commit.interval.ms",
            s.auto_commit_interval_ms.to_string(),
        )
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session.to_string())
        .set("heartbeat.interval.ms", (session / 3).max(100).to_string())
        .set("allow.auto.create.topics", "false")
        .set("enable.partition.eof", "false");
    c
}

/// Creates the switch's topics that do not exist yet, through the admin API (never by
/// auto-create); those in `kept_forever` (the journal) with `retention.ms = -1`. Existing
/// topics are left as they are.
///
/// # Errors
/// The broker refuses or cannot be reached.
pub async fn ensure_topics(
    bootstrap: &str,
    s: &KafkaSettings,
    topics: &[String],
    kept_forever: &[String],
) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<_> = base_config(bootstrap, s).create()?;
    let probe: BaseConsumer = base_config(bootstrap, s).create()?;
    let md =
        tokio::task::spawn_blocking(move || probe.fetch_metadata(None, Duration::from_secs(10)))
            .await
            .map_err(|e| KafkaSetupError::Embedded(e.to_string()))??;
    let existing: Vec<String> = md.topics().iter().map(|t| t.name().to_owned()).collect();
    let rf = if s.topic_replication_factor < 0 {
        -1
    } else {
        s.topic_replication_factor
    };
    let wanted = topics;
    let missing: Vec<NewTopic<'_>> = wanted
        .iter()
        .map(String::as_str)
        .filter(|t| !existing.iter().any(|e| e == t))
        .map(|t| {
            let topic = NewTopic::new(t, s.topic_partitions, TopicReplication::Fixed(rf));
            if kept_forever.iter().any(|k| k == t) {
                topic.set("retention.ms", "-1")
            } else {
                topic
            }
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.create_topics(&missing, &opts).await? {
        match r {
            Ok(t) => {
                tracing::info!(topic = %t, partitions = s.topic_partitions, "created topic")
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaSetupError::Topic {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// An in-process Kafka-protocol broker, owned by a thread of its own (the mock cluster is
/// not `Send`). Dropping this stops it.
pub struct EmbeddedBroker {
    pub bootstrap: String,
    control: Option<std::sync::mpsc::Sender<Control>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A fault the embedded broker can be put in (librdkafka's mock cluster:
/// `rdkafka::mocking`), for tests of the switch against a misbehaving broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerFault {
    /// The broker closes its connections and refuses new ones.
    Down,
    /// The broker is back.
    Up,
    /// Every answer of the broker is delayed this long (`Duration::ZERO`: none).
    RoundTrip(std::time::Duration),
    /// The next `count` produce requests (of any client) fail with `error` (e.g.
    /// `RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS`, `RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT`).
    ProduceErrors(rdkafka::types::RDKafkaRespErr, usize),
    /// Every partition of every topic it was started with gets this broker as its leader
    /// (a leader election after a broker failure or a reassignment).
    AllLeadersTo(i32),
    /// The consumer group's coordinator moves to this broker (the old one lost it).
    CoordinatorTo { group: String, broker: i32 },
}

type Control = (BrokerFault, std::sync::mpsc::Sender<Result<(), String>>);

impl EmbeddedBroker {
    /// Starts a one-broker mock cluster with `topics` created (`partitions` each).
    ///
    /// # Errors
    /// The mock cluster cannot start.
    pub fn start(topics: &[&str], partitions: i32) -> Result<EmbeddedBroker, KafkaSetupError> {
        Self::start_brokers(topics, partitions, 1)
    }

    /// [`EmbeddedBroker::start`] with `brokers` brokers (ids 1 to `brokers`; faults that
    /// name no broker apply to broker 1), for tests of leaders and coordinators moving.
    ///
    /// # Errors
    /// The mock cluster cannot start.
    pub fn start_brokers(
        topics: &[&str],
        partitions: i32,
        brokers: i32,
    ) -> Result<EmbeddedBroker, KafkaSetupError> {
        let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        let (tx, rx) = std::sync::mpsc::channel::<Result<String, String>>();
        let (control_tx, control_rx) = std::sync::mpsc::channel::<Control>();
        let thread = std::thread::Builder::new()
            .name("embedded-kafka".into())
            .spawn(move || {
                let cluster = match rdkafka::mocking::MockCluster::new(brokers) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                for t in &topics {
                    if let Err(e) = cluster.create_topic(t, partitions, 1) {
                        let _ = tx.send(Err(format!("{t}: {e}")));
                        return;
                    }
                }
                let _ = tx.send(Ok(cluster.bootstrap_servers()));
                // Faults until the handle is dropped (its sender with it).
                while let Ok((fault, done)) = control_rx.recv() {
                    // Faults that name no broker apply to broker 1.
                    let r = match fault {
                        BrokerFault::Down => cluster.broker_down(1),
                        BrokerFault::Up => cluster.broker_up(1),
                        BrokerFault::RoundTrip(d) => cluster.broker_round_trip_time(1, d),
                        BrokerFault::ProduceErrors(e, n) => {
                            cluster.request_errors(
                                rdkafka::types::RDKafkaApiKey::Produce,
                                &vec![e; n],
                            );
                            Ok(())
                        }
                        BrokerFault::AllLeadersTo(broker) => topics
                            .iter()
                            .flat_map(|t| (0..partitions).map(move |p| (t, p)))
                            .try_for_each(|(t, p)| cluster.partition_leader(t, p, Some(broker))),
                        BrokerFault::CoordinatorTo { group, broker } => cluster
                            .coordinator(rdkafka::mocking::MockCoordinator::Group(group), broker),
                    };
                    let _ = done.send(r.map_err(|e| e.to_string()));
                }
                drop(cluster);
            })
            .map_err(|e| KafkaSetupError::Embedded(e.to_string()))?;
        let bootstrap = rx
            .recv()
            .map_err(|e| KafkaSetupError::Embedded(e.to_string()))?
            .map_err(KafkaSetupError::Embedded)?;
        Ok(EmbeddedBroker {
            bootstrap,
            control: Some(control_tx),
            thread: Some(thread),
        })
    }

    /// Puts the broker in `fault` (or out of it), returning once the mock cluster did.
    ///
    /// # Errors
    /// The mock cluster refused it, or its thread is gone.
    pub fn fault(&self, fault: BrokerFault) -> Result<(), KafkaSetupError> {
        let (done, answer) = std::sync::mpsc::channel();
        let gone = || KafkaSetupError::Embedded("the embedded broker is stopped".into());
        self.control
            .as_ref()
            .ok_or_else(gone)?
            .send((fault, done))
            .map_err(|_| gone())?;
        answer
            .recv()
            .map_err(|_| gone())?
            .map_err(KafkaSetupError::Embedded)
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        drop(self.control.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Partitions taken away by a rebalance, for a loop that holds work per partition (the
/// webhook dispatcher's paused heads).
pub type Revoked = Arc<std::sync::Mutex<Vec<(String, i32)>>>;

/// The one consumer context of both consumers (requests, webhook jobs): forwards
/// librdkafka's logs to tracing, forgets a revoked partition's pending offsets, and tells
/// whoever asked about assignments and revocations.
pub struct TrackingContext {
    /// Which consumer, for log lines (`requests`, `webhook`).
    pub name: &'static str,
    pub offsets: Arc<Offsets>,
    /// Partitions assigned now; reported as `ipg_assigned_partitions` when given.
    pub assigned: Option<Arc<AtomicUsize>>,
    /// Revoked partitions are pushed here when given.
    pub revoked: Option<Revoked>,
    /// Resume every assigned partition (one paused under its previous assignment must
    /// fetch again).
    pub resume_on_assign: bool,
}

impl ClientContext for TrackingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "rdkafka", fac, "{log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "rdkafka", fac, "{log_message}"),
            _ => tracing::debug!(target: "rdkafka", fac, "{log_message}"),
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ConsumerContext for TrackingContext {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts = partitions(tpl);
            tracing::info!(consumer = self.name, ?parts, "partitions revoked");
            // Work still in flight on them will not store offsets; the next owner redoes
            // it and the handlers' idempotency makes that harmless.
            for (t, p) in &parts {
                self.offsets.forget(t, *p);
            }
            if let Some(a) = &self.assigned {
                a.fetch_sub(
                    parts.len().min(a.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
            }
            if let Some(r) = &self.revoked {
                r.lock().unwrap_or_else(|e| e.into_inner()).extend(parts);
            }
        }
    }

    fn post_rebalance(&self, c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                if self.resume_on_assign {
                    let _ = c.resume(tpl);
                }
                let parts = partitions(tpl);
                tracing::info!(consumer = self.name, ?parts, "partitions assigned");
                if let Some(a) = &self.assigned {
                    a.fetch_add(parts.len(), Ordering::Relaxed);
                }
            }
            Rebalance::Error(e) => {
                tracing::warn!(consumer = self.name, error = %e, "rebalance error")
            }
            Rebalance::Revoke(_) => {}
        }
        if let Some(a) = &self.assigned {
            metrics::gauge!(m::ASSIGNED_PARTITIONS).set(a.load(Ordering::Relaxed) as f64);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(consumer = self.name, error = %e, "offset commit failed"),
        }
    }
}

/// A Kafka client whose drop never blocks an async worker. librdkafka's consumer close
/// waits for the group coordinator, forever if the broker is gone (a test tearing down
/// its broker, a broker lost during shutdown), so the close runs on a thread of its own.
pub struct Closing<C: Send + 'static>(Option<C>);

impl<C: Send + 'static> Closing<C> {
    pub fn new(client: C) -> Self {
        Closing(Some(client))
    }

    /// Closes now, waiting at most `limit` (normal shutdown: leave the group promptly so
    /// its partitions move without waiting for the session timeout).
    pub async fn close(mut self, limit: Duration) {
        let Some(client) = self.0.take() else { return };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("kafka-close".into())
            .spawn(move || {
                drop(client);
                let _ = tx.send(());
            });
        if spawned.is_ok() && tokio::time::timeout(limit, rx).await.is_err() {
            tracing::warn!("kafka client close still waiting for the broker; leaving it");
        }
    }
}

impl<C: Send + 'static> std::ops::Deref for Closing<C> {
    type Target = C;
    fn deref(&self) -> &C {
        self.0
            .as_ref()
            .expect("the client is present until close or drop")
    }
}

impl<C: Send + 'static> Drop for Closing<C> {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            let _ = std::thread::Builder::new()
                .name("kafka-close".into())
                .spawn(move || drop(client));
        }
    }
}

/// Lag of every assigned partition: high watermark minus committed offset (minus the low
/// watermark when nothing is committed yet). Blocking: call it from a blocking thread,
/// with a short `timeout` since shutdown may wait for it.
pub fn partition_lags<C: ConsumerContext>(
    c: &impl Consumer<C>,
    timeout: Duration,
) -> Vec<(String, i32, i64)> {
    let Ok(assignment) = c.assignment() else {
        return Vec::new();
    };
    let Ok(committed) = c.committed_offsets(assignment, timeout) else {
        return Vec::new();
    };
    committed
        .elements()
        .iter()
        .filter_map(|e| {
            let (low, high) = c.fetch_watermarks(e.topic(), e.partition(), timeout).ok()?;
            let done = match e.offset() {
                rdkafka::Offset::Offset(o) => o,
                _ => low,
            };
            Some((e.topic().to_owned(), e.partition(), (high - done).max(0)))
        })
        .collect()
}
