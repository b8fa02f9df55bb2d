//! ipg-switch: a virtual-account bill payment switch between banks (channels) and the
//! institutions that bill through IPG.
//!
//! A request travels: consume (`pipeline`) → decode and verify (`protocol`, `signature`) →
//! route by prefix (`routing`) → lock the VA and apply the bill rules (`hosted`, `domain`,
//! `store`) → publish the answer and webhook job (`kafka::publish`) → store the offset
//! (`kafka::offsets`).
//!
//! Modules by layer; each imports only from its own layer or lower ones (tests/layers.rs
//! keeps it so, listing the back-edges still to remove).
//!
//! L0 vocabulary (pure):
//! - [`domain`]: VA numbers, amounts, bills and payment rules, rc codes, institution
//!   modes, the passive payment record.
//! - [`clock`]: the switch's time and its UTC offset.
//! - [`signature`]: HMAC-SHA256 signatures, the `Signature` header.
//! - [`metrics`]: every metric name, described once; the Prometheus recorder.
//! - [`config`]: the configuration error that names a key.
//!
//! L1 wire:
//! - [`protocol`]: channel envelopes, webhook jobs, passive bodies on the wire.
//!
//! L2 adapters (one per outside system, each owning its config section):
//! - [`store`]: Redis: records, Lua scripts, the connection (`[redis]`).
//! - [`kafka`]: clients, topics, the embedded broker, offsets, the publisher
//!   (`[kafka]`, `[topics]`).
//! - [`http_client`]: the outgoing HTTP client.
//! - [`secure`]: TLS and SASL settings of Kafka and Redis.
//!
//! L3 rules:
//! - [`error`]: the one place an error becomes an rc.
//! - [`routing`]: prefixes to institutions, channel authentication, rate limits
//!   (`[[channels]]`, `[[institutions]]`).
//! - [`lock`]: VA lock owners (one per attempt) and the wait for a held lock.
//! - [`hosted`]: hosted bills: inquiry, payment, reversal, check status, create, revoke.
//! - [`passive`]: forwarding to passive institutions and resolving payments in doubt.
//! - [`switch`]: one rule set for every door (the Kafka pipeline and the HTTP API).
//!
//! L4 doors and workers:
//! - [`pipeline`]: the Kafka door: per-VA lanes, in-order offsets.
//! - [`api`]: the HTTP door (IPG's Payment Channel and Active Client APIs, OAuth 2.0),
//!   through the same [`switch::Switch::handle`].
//! - [`webhook`]: webhook delivery to institutions, retry tiers, per-bill ordering gate.
//! - [`ops`]: `/metrics`, `/healthz`, `/readyz`.
//!
//! L5 composition:
//! - [`settings`]: the whole configuration, composed from each owner's section.
//! - this file: [`build_switch`] and [`run`], which build and run the daemon.
//!
//! [`run`] starts the whole daemon and returns when `shutdown` resolves and the work in
//! flight has drained, so tests run it in-process.

pub mod api;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod hosted;
pub mod http_client;
pub mod kafka;
pub mod lock;
pub mod metrics;
pub mod ops;
pub mod passive;
pub mod pipeline;
pub mod protocol;
pub mod routing;
pub mod secure;
pub mod settings;
pub mod signature;
pub mod store;
pub mod switch;
pub mod webhook;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::hosted::Hosted;
use crate::kafka::offsets::Offsets;
use crate::kafka::publish::Publisher;
use crate::kafka::{EmbeddedBroker, KafkaSetupError, TrackingContext};
use crate::pipeline::Ctx;
use crate::settings::Settings;
use crate::store::{Store, StoreError};
use crate::switch::Switch;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Redis answered, but refused who we are or how we connect: a configuration error that
    /// waiting will not fix (the key to change is named).
    #[error("{key}: {reason}")]
    RedisRefused { key: &'static str, reason: String },
    #[error(transparent)]
    Kafka(#[from] KafkaSetupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("metrics listener on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("webhook dispatcher: {0}")]
    Webhook(#[from] webhook::WebhookError),
    #[error(transparent)]
    Api(#[from] api::StartError),
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Why the switch could not be assembled from settings.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("HTTP client for passive institutions: {0}")]
    Http(#[from] reqwest::Error),
}

impl From<rdkafka::error::KafkaError> for RunError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        RunError::Kafka(KafkaSetupError::Kafka(e))
    }
}

/// The switch (routing, hosted bill rules, passive forwarding) over a Redis store, as
/// settings describe it.
///
/// # Errors
/// An invalid Redis URL, an HTTP client that cannot be built.
pub fn build_switch(settings: &Settings) -> Result<Switch, BuildError> {
    let store = Store::new(&settings.redis)?;
    let clock = Clock::new(settings.switch.offset());
    Ok(Switch {
        routing: Arc::new(settings.routing()),
        passive: passive::Passive::new(
            &settings.passive,
            &settings.institutions,
            lock::LockTimes {
                ttl: settings.switch.lock_ttl(),
                wait: settings.switch.lock_wait(),
            },
            store.clone(),
            clock,
        )?,
        hosted: Hosted {
            store,
            clock,
            lock_ttl: settings.switch.lock_ttl(),
            lock_wait: settings.switch.lock_wait(),
        },
        clock,
    })
}

/// Runs the daemon until `shutdown` resolves, then drains in-flight work, commits offsets
/// and returns.
///
/// # Errors
/// Start-up failures: the embedded broker, topic creation, client creation, the metrics
/// listener. Once running, failures of Redis or Kafka are retried, not returned.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let metrics_handle = metrics::install();
    let embedded = if settings.kafka.is_embedded() {
        let topics = settings.all_topics();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let b = EmbeddedBroker::start(&topics, settings.kafka.topic_partitions)?;
        tracing::info!(bootstrap = %b.bootstrap, "embedded Kafka-protocol broker started; point clients at it");
        Some(b)
    } else {
        None
    };
    let bootstrap = embedded.as_ref().map_or_else(
        || settings.kafka.bootstrap_servers.clone(),
        |b| b.bootstrap.clone(),
    );
    if embedded.is_none() {
        kafka::ensure_topics(&bootstrap, &settings.kafka, &settings.all_topics()).await?;
    }

    let switch = build_switch(&settings)?;
    tracing::info!(
        redis = %store::redacted(&settings.redis.url),
        security = %settings.redis.describe_security(),
        "redis connection"
    );
    tracing::info!(
        bootstrap = %bootstrap,
        security = %settings.kafka.describe_security(),
        "kafka connection"
    );
    refuse_wrong_redis_credentials(&switch.hosted.store, &settings).await?;
    let producer = kafka::create_producer(&bootstrap, &settings.kafka)?;
    let offsets = Arc::new(Offsets::default());
    let assigned = Arc::new(AtomicUsize::new(0));
    let consumer = Arc::new(kafka::Closing::new(kafka::create_consumer(
        &bootstrap,
        &settings.kafka,
        TrackingContext {
            name: "requests",
            offsets: offsets.clone(),
            assigned: Some(assigned.clone()),
            revoked: None,
            resume_on_assign: false,
        },
    )?));
    consumer.subscribe(&[settings.topics.request.as_str()])?;

    let token = CancellationToken::new();
    if !settings.metrics.listen.is_empty() {
        let addr = settings.metrics.listen.clone();
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| RunError::Listen {
                addr: addr.clone(),
                source,
            })?;
        tracing::info!(%addr, "metrics and health endpoints listening");
        let app = ops::router(ops::OpsState {
            metrics: metrics_handle,
            store: switch.hosted.store.clone(),
            assigned,
        });
        let stop = token.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "metrics endpoint stopped");
            }
        });
    }

    let ctx = Arc::new(Ctx {
        switch,
        publisher: Publisher {
            producer: producer.clone(),
            retry_initial: Duration::from_millis(settings.pipeline.retry_initial_ms),
            retry_max: Duration::from_millis(settings.pipeline.retry_max_ms),
        },
        topics: settings.topics.clone(),
        shutdown: token.clone(),
        retry_initial: Duration::from_millis(settings.pipeline.retry_initial_ms),
        retry_max: Duration::from_millis(settings.pipeline.retry_max_ms),
        redis_up: AtomicBool::new(true),
    });
    // Present from the start, so a dashboard can tell "up" from "never reported".
    ::metrics::gauge!(metrics::REDIS_UP).set(1.0);
    spawn_durability_check(
        ctx.switch.hosted.store.clone(),
        settings.redis.url.clone(),
        token.clone(),
    );
    ctx.switch.passive.set_audit(passive::Audit {
        publisher: ctx.publisher.clone(),
        topic: settings.topics.passive_events.clone(),
        shutdown: token.clone(),
    });
    let resolvers = if settings.passive.resolver {
        ctx.switch.passive.spawn_resolver(token.clone())
    } else {
        Vec::new()
    };
    // The HTTP door shares the switch, the producer and the shutdown token with Kafka's.
    let api = api::start(api::Inner {
        switch: ctx.switch.clone(),
        publisher: ctx.publisher.clone(),
        webhook_topic: settings.topics.webhook.clone(),
        shutdown: token.clone(),
        settings: settings.api.clone(),
    })
    .await
    .inspect_err(|_| token.cancel())?;
    tracing::info!(
        topic = %settings.topics.request,
        group = %settings.kafka.group_id,
        lanes = settings.pipeline.lanes,
        institutions = settings.institutions.len(),
        channels = settings.channels.len(),
        "ipg-switch running"
    );
    let limits = pipeline::Limits {
        lanes: settings.pipeline.lanes,
        lane_queue: settings.pipeline.lane_queue,
        max_in_flight: settings.pipeline.max_in_flight,
    };
    // The webhook dispatcher shares the producer and the shutdown token; it drains after
    // the pipeline, so jobs the pipeline published last can still be picked up.
    let dispatcher = if settings.webhook.enabled {
        Some(
            webhook::start(
                &settings.webhook_wiring(),
                &bootstrap,
                producer.clone(),
                token.clone(),
            )
            .inspect_err(|_| token.cancel())?,
        )
    } else {
        None
    };
    spawn_lag_reporter(consumer.clone(), producer.clone(), token.clone());
    let mut pipeline = tokio::spawn(pipeline::run(ctx, consumer.clone(), offsets, limits));
    tokio::select! {
        _ = shutdown => {}
        _ = &mut pipeline => tracing::error!("pipeline stopped unexpectedly"),
    }
    tracing::info!("shutting down: draining in-flight messages");
    token.cancel();
    let _ = pipeline.await;
    // Leave the group promptly; if the lag reporter still holds a reference, the last one
    // dropped closes it on a thread of its own.
    if let Ok(c) = Arc::try_unwrap(consumer) {
        c.close(Duration::from_secs(15)).await;
    }
    if let Some(a) = api {
        let _ = a.await;
    }
    if let Some(d) = dispatcher {
        let _ = d.await;
    }
    for r in resolvers {
        let _ = r.await;
    }
    let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await;
    drop(embedded);
    tracing::info!("stopped");
    Ok(())
}

/// One PING at start: a Redis that is down is waited for (the daemon starts, not ready),
/// but one that refuses the credentials or the TLS handshake is a configuration error, so
/// start-up stops with the key to change named.
///
/// # Errors
/// `RedisRefused` for a wrong user/password, an untrusted server certificate or a refused
/// client certificate.
async fn refuse_wrong_redis_credentials(
    store: &Store,
    settings: &Settings,
) -> Result<(), RunError> {
    let Err(StoreError::Unavailable(e)) = store.ping().await else {
        return Ok(());
    };
    let text = e.to_string();
    let r = &settings.redis;
    let refused = |key: &'static str, what: &str| RunError::RedisRefused {
        key,
        reason: format!("{what} ({}): {text}", store::redacted(&r.url)),
    };
    if e.kind() == redis::ErrorKind::AuthenticationFailed
        || text.contains("WRONGPASS")
        || text.contains("NOAUTH")
        || text.contains("NOPERM")
    {
        let key = if r.password_env.is_some() {
            "redis.password_env"
        } else {
            "redis.username"
        };
        return Err(refused(key, "Redis refused the user or password"));
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate")
        || lower.contains("unknownissuer")
        || lower.contains("tls")
        || lower.contains("handshake")
    {
        // The server's alert refuses our certificate (or its absence); anything else about
        // certificates is the server's, judged against redis.ca_file.
        let key = if lower.contains("alert") || lower.contains("certificaterequired") {
            "redis.client_cert_file"
        } else {
            "redis.ca_file"
        };
        return Err(refused(key, "TLS with Redis failed"));
    }
    tracing::warn!(redis = %store::redacted(&r.url), error = %text, "Redis not reachable yet; starting, not ready until it is");
    Ok(())
}

/// At start and every minute: whether Redis's persistence can lose writes the switch has
/// acknowledged (`ipg_redis_durability_risk`), with a warning when that changes. Until the
/// journal makes every record rebuildable, a payment answered SUCCESS lives only in Redis.
fn spawn_durability_check(store: Store, url: String, stop: CancellationToken) {
    let url = store::redacted(&url);
    tokio::spawn(async move {
        let mut last: Option<store::Durability> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Ok(d) = store.durability().await else {
                continue; // Redis away: ipg_redis_up says so; judge once it is back.
            };
            ::metrics::gauge!(metrics::REDIS_DURABILITY_RISK).set(d.gauge());
            if last.as_ref() != Some(&d) {
                match &d {
                    store::Durability::Safe => {
                        tracing::info!(redis = %url, "Redis persistence: appendonly yes, appendfsync always")
                    }
                    store::Durability::AtRisk(why) => {
                        tracing::warn!(redis = %url, "Redis persistence can lose payments the switch acknowledged: {why}")
                    }
                    store::Durability::Unknown(why) => {
                        tracing::warn!(redis = %url, error = %why, "Redis persistence unknown (CONFIG refused): make sure it runs appendonly yes and appendfsync always")
                    }
                }
            }
            last = Some(d);
        }
    });
}

/// Every few seconds: the request topic's lag per assigned partition (high watermark minus
/// committed offset) and the producer's unacknowledged messages.
fn spawn_lag_reporter(
    consumer: Arc<pipeline::SwitchConsumer>,
    producer: rdkafka::producer::FutureProducer,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            ::metrics::gauge!(metrics::PRODUCER_QUEUE).set(f64::from(producer.in_flight_count()));
            let c = consumer.clone();
            // librdkafka's offset and watermark queries block: keep them off the workers.
            let Ok(lags) = tokio::task::spawn_blocking(move || {
                kafka::partition_lags(&**c, Duration::from_secs(2))
            })
            .await
            else {
                continue;
            };
            for (_, partition, lag) in lags {
                ::metrics::gauge!(metrics::CONSUMER_LAG, "partition" => partition.to_string())
                    .set(lag as f64);
            }
        }
    });
}
