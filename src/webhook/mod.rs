//! The webhook dispatcher: delivers the jobs the switch queues on `topics.webhook` to each
//! institution's `webhook_url`, signed as IPG's Webhook Call is (see docs/webhooks.md).
//!
//! - [`dispatch`]: the consumer loop over the webhook topic and its retry tiers, per-bill
//!   order, per-institution limits, offsets stored only once a job is settled.
//! - [`gate`]: the per-bill ordering gate in Redis.
//! - [`deliver`]: one signed HTTP call, attempt records, the retry/dead-letter envelope.
//! - [`replay`]: re-sends dead-lettered jobs (`ipg-switch webhook replay`).
//!
//! Topics: `topics.webhook` (jobs as the switch queued them) → on failure
//! `<topics.webhook_retry_prefix>.<n>` (tier n, delay `webhook.backoff_ms[n-1]`) → after
//! the last attempt `topics.webhook_dead_letter`, with every attempt's outcome.

pub mod config;
pub mod deliver;
pub mod dispatch;
pub mod gate;
pub mod replay;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use tokio_util::sync::CancellationToken;

pub use config::WebhookSettings;

use crate::kafka::offsets::Offsets;
use crate::kafka::publish::Publisher;
use crate::kafka::TrackingContext;
use crate::kafka::{self, KafkaSetupError};
use crate::kafka::{KafkaSettings, TopicSettings};
use crate::routing::Routing;
use crate::store::RedisSettings;
use dispatch::{Dispatcher, WebhookConsumer};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("kafka.bootstrap_servers is \"embedded\": the embedded broker lives inside `ipg-switch run`; point this command at the real brokers")]
    NeedsBroker,
    #[error("reading {topic}: {reason}")]
    Read { topic: String, reason: String },
}

/// The retry tier topics, in order: `<prefix>.1` .. `<prefix>.N`, one per
/// `webhook.backoff_ms` entry.
pub fn retry_topics(topics: &TopicSettings, webhook: &WebhookSettings) -> Vec<String> {
    (1..=webhook.backoff.len())
        .map(|n| format!("{}.{n}", topics.webhook_retry_prefix))
        .collect()
}

/// What the dispatcher and `webhook replay` take from the configuration: each section as
/// its owner typed it, the routing table, the retry pacing (`pipeline.retry_*`), and every
/// topic the switch creates (for the standalone dispatcher). Built by `settings`.
#[derive(Clone)]
pub struct Wiring {
    pub kafka: KafkaSettings,
    pub redis: RedisSettings,
    pub topics: TopicSettings,
    pub webhook: WebhookSettings,
    pub routing: Arc<Routing>,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub all_topics: Vec<String>,
    /// Topics created with `retention.ms = -1` (the journal).
    pub kept_forever: Vec<String>,
}

fn create_consumer(
    bootstrap: &str,
    s: &Wiring,
    ctx: TrackingContext,
) -> Result<WebhookConsumer, KafkaError> {
    kafka::at_least_once_config(bootstrap, &s.kafka, &s.webhook.group_id)
        // Jobs waiting in a tier are held in memory behind a paused head; keep the
        // prefetch small so that stays bounded.
        .set("queued.max.messages.kbytes", "8192")
        .create_with_context(ctx)
        .map(kafka::Closing::new)
}

/// Starts the dispatcher on `producer` (shared with the switch when run inside the daemon);
/// it runs until `shutdown` is cancelled, then drains and commits.
///
/// # Errors
/// Client creation (Kafka, Redis URL, HTTP/TLS).
pub fn start(
    settings: &Wiring,
    bootstrap: &str,
    producer: FutureProducer,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, WebhookError> {
    let w = &settings.webhook;
    let gate = gate::Gate::new(&settings.redis, w.gate_ttl)?;
    let http = crate::http_client::client(w.request_timeout, w.connect_timeout, w.concurrency)?;
    let offsets = Arc::new(Offsets::default());
    let revoked = Arc::new(Mutex::new(Vec::new()));
    let consumer = Arc::new(create_consumer(
        bootstrap,
        settings,
        TrackingContext {
            name: "webhook",
            offsets: offsets.clone(),
            assigned: None,
            revoked: Some(revoked.clone()),
            resume_on_assign: true,
        },
    )?);
    let tiers = retry_topics(&settings.topics, w);
    let mut topics: Vec<&str> = vec![settings.topics.webhook.as_str()];
    topics.extend(tiers.iter().map(String::as_str));
    consumer.subscribe(&topics)?;
    let (retry_initial, retry_max) = (settings.retry_initial, settings.retry_max);
    let d = Arc::new(Dispatcher::new(
        settings.routing.clone(),
        Publisher {
            producer,
            retry_initial,
            retry_max,
        },
        gate,
        http,
        settings.topics.webhook.clone(),
        tiers,
        settings.topics.webhook_dead_letter.clone(),
        w,
        shutdown,
        retry_initial,
        retry_max,
    ));
    tracing::info!(
        group = %w.group_id,
        tiers = d.tiers.len(),
        concurrency = w.concurrency,
        "webhook dispatcher running"
    );
    Ok(tokio::spawn(d.run(consumer, offsets, revoked)))
}

/// `ipg-switch webhook run`: the dispatcher alone, against real brokers, until `shutdown`.
///
/// # Errors
/// An embedded broker setting, topic creation, client creation.
pub async fn run_standalone(
    settings: Wiring,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), WebhookError> {
    crate::metrics::install();
    if settings.kafka.is_embedded() {
        return Err(WebhookError::NeedsBroker);
    }
    let bootstrap = settings.kafka.bootstrap_servers.clone();
    kafka::ensure_topics(
        &bootstrap,
        &settings.kafka,
        &settings.all_topics,
        &settings.kept_forever,
    )
    .await?;
    let producer = kafka::create_producer(&bootstrap, &settings.kafka)?;
    let token = CancellationToken::new();
    let mut handle = start(&settings, &bootstrap, producer.clone(), token.clone())?;
    tokio::select! {
        _ = shutdown => {}
        _ = &mut handle => tracing::error!("webhook dispatcher stopped unexpectedly"),
    }
    token.cancel();
    let _ = handle.await;
    let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await;
    Ok(())
}
