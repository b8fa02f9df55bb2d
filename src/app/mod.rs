//! The daemon, built once and run: [`App::build`] starts the embedded broker (or checks
//! the topics of a real one), builds the switch over its store, the Kafka clients and
//! checks Redis's credentials; [`App::run`] starts the doors and workers (metrics, the
//! resolver, the HTTP API, the webhook dispatcher, the pipeline), waits for `shutdown`,
//! and stops them in order: the pipeline drains, the consumer leaves its group, the API,
//! the dispatcher and the resolvers finish, the producer flushes.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, Producer};
use tokio_util::sync::CancellationToken;

use crate::kafka::offsets::Offsets;
use crate::kafka::publish::Publisher;
use crate::kafka::{self, EmbeddedBroker, KafkaSetupError, TrackingContext};
use crate::pipeline::{self, Ctx};
use crate::settings::Settings;
use crate::store::{self, Store, StoreError};
use crate::switch::Switch;
use crate::{api, metrics, ops, passive, webhook};

pub mod build;
pub mod contract;

use build::BuildError;

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

impl From<rdkafka::error::KafkaError> for RunError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        RunError::Kafka(KafkaSetupError::Kafka(e))
    }
}

/// A daemon built and not yet running: its broker, clients and switch.
pub struct App {
    settings: Settings,
    embedded: Option<EmbeddedBroker>,
    bootstrap: String,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    switch: Switch,
    publisher: Publisher,
    producer: FutureProducer,
    consumer: Arc<pipeline::SwitchConsumer>,
    offsets: Arc<Offsets>,
    assigned: Arc<AtomicUsize>,
    token: CancellationToken,
}

impl App {
    /// Builds the daemon from `settings`: metrics recorder, broker and topics, producer,
    /// the switch (its passive audit trail on the producer), Redis's credentials checked,
    /// the request consumer subscribed.
    ///
    /// # Errors
    /// The embedded broker, topic creation, client creation, a Redis that refuses the
    /// credentials or the TLS handshake, an invalid Redis URL.
    pub async fn build(settings: Settings) -> Result<App, RunError> {
        let metrics = metrics::install();
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
            kafka::ensure_topics(
                &bootstrap,
                &settings.kafka,
                &settings.all_topics(),
                &[
                    settings.topics.journal.clone(),
                    settings.topics.snapshot_index.clone(),
                ],
            )
            .await?;
        }
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
        let producer = kafka::create_producer(&bootstrap, &settings.kafka)?;
        let publisher = Publisher {
            producer: producer.clone(),
            retry_initial: settings.pipeline.retry_initial,
            retry_max: settings.pipeline.retry_max,
        };
        let token = CancellationToken::new();
        let switch = build::build_switch_with(
            &settings,
            Some(passive::Audit {
                publisher: publisher.clone(),
                topic: settings.topics.passive_events.clone(),
                shutdown: token.clone(),
            }),
            build::Journaling {
                publisher: publisher.clone(),
                bootstrap: bootstrap.clone(),
                shutdown: token.clone(),
            },
        )?;
        refuse_wrong_redis_credentials(&switch.hosted.store, &settings).await?;
        // A Redis that lost its memory while the daemon was away is caught up with the
        // journal before anything is consumed (a Redis that is down: at its first use).
        if switch.hosted.store.ping().await.is_ok() {
            switch.hosted.store.ensure_ready().await?;
        }
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
        Ok(App {
            settings,
            embedded,
            bootstrap,
            metrics,
            switch,
            publisher,
            producer,
            consumer,
            offsets,
            assigned,
            token,
        })
    }

    /// Runs until `shutdown` resolves (or the pipeline stops), then stops everything in
    /// order and returns once in-flight work is answered and the producer flushed.
    ///
    /// # Errors
    /// The metrics or HTTP listener cannot be bound, the webhook dispatcher cannot start.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), RunError> {
        let (settings, switch, publisher, producer) =
            (self.settings, self.switch, self.publisher, self.producer);
        let (consumer, token) = (self.consumer, self.token);
        if !settings.metrics.listen.is_empty() {
            serve_ops(
                &settings.metrics.listen,
                self.metrics,
                switch.hosted.store.clone(),
                self.assigned,
                token.clone(),
            )
            .await?;
        }
        // Present from the start, so a dashboard can tell "up" from "never reported".
        ::metrics::gauge!(crate::metrics::REDIS_UP).set(1.0);
        spawn_durability_check(
            switch.hosted.store.clone(),
            settings.redis.url.clone(),
            token.clone(),
        );
        if switch.hosted.store.is_cluster() {
            spawn_replica_script_check(switch.hosted.store.clone(), token.clone());
        }
        crate::journal::spawn_marks(
            settings.journal(&self.bootstrap),
            switch.hosted.store.clone(),
            token.clone(),
        );
        crate::journal::unjournaled::spawn(
            crate::journal::unjournaled::Sweep {
                switch: switch.clone(),
                publisher: publisher.clone(),
                webhook_topic: settings.topics.webhook.clone(),
                interval: settings.journal.mark_interval,
                after: settings.journal.unjournaled_after,
                deadline: settings.journal.append_deadline,
            },
            token.clone(),
        );
        crate::journal::snapshot::spawn(
            settings.journal(&self.bootstrap),
            switch.hosted.store.clone(),
            token.clone(),
        );
        crate::store::retention::spawn_sweep(
            switch.hosted.store.clone(),
            switch
                .routing
                .institutions()
                .map(|i| i.code.clone())
                .collect(),
            settings.retention.sweep_interval,
            settings.retention.sweep_batch,
            token.clone(),
        );
        let resolvers = if settings.passive.resolver {
            switch.passive.spawn_resolver(token.clone())
        } else {
            Vec::new()
        };
        // Bulk issuance jobs: submitted over HTTP, run here (and taken up after a restart).
        let jobs = Arc::new(crate::issuance::jobs::Jobs::new(
            switch.hosted.clone(),
            switch.routing.clone(),
            settings.api.batch_job_ttl,
            settings.api.max_batch_jobs,
        ));
        jobs.clone().spawn(token.clone());
        // The HTTP door shares the switch, the producer and the shutdown token with Kafka's.
        let api = api::start(api::Inner {
            switch: switch.clone(),
            publisher: publisher.clone(),
            webhook_topic: settings.topics.webhook.clone(),
            shutdown: token.clone(),
            settings: settings.api.clone(),
            snap: settings.snap.clone(),
            statements: Some(Arc::new(settings.journal(&self.bootstrap))),
            cutoff_hour: settings.statement.cutoff_hour,
            history: Arc::new(tokio::sync::Semaphore::new(
                settings.statement.max_concurrent,
            )),
            settling: Arc::new(tokio::sync::Semaphore::new(api::IN_DOUBT_SETTLING_MAX)),
            jobs,
        })
        .await
        .inspect_err(|_| token.cancel())?;
        // The webhook dispatcher shares the producer and the shutdown token; it drains
        // after the pipeline, so jobs the pipeline published last can still be picked up.
        let dispatcher = if settings.webhook.enabled {
            Some(
                webhook::start(
                    &settings.webhook_wiring(),
                    &self.bootstrap,
                    producer.clone(),
                    token.clone(),
                )
                .inspect_err(|_| token.cancel())?,
            )
        } else {
            None
        };
        tracing::info!(
            topic = %settings.topics.request,
            group = %settings.kafka.group_id,
            lanes = settings.pipeline.lanes,
            institutions = settings.institutions.len(),
            channels = settings.channels.len(),
            "ipg-switch running"
        );
        spawn_lag_reporter(consumer.clone(), producer.clone(), token.clone());
        let park = switch.hosted.store.is_cluster();
        let ctx = Arc::new(Ctx {
            park,
            switch,
            publisher,
            topics: settings.topics.clone(),
            shutdown: token.clone(),
            retry_initial: settings.pipeline.retry_initial,
            retry_max: settings.pipeline.retry_max,
            redis_up: AtomicBool::new(true),
        });
        let limits = pipeline::Limits {
            lanes: settings.pipeline.lanes,
            lane_queue: settings.pipeline.lane_queue,
            max_in_flight: settings.pipeline.max_in_flight,
        };
        let mut pipeline = tokio::spawn(pipeline::run(ctx, consumer.clone(), self.offsets, limits));
        tokio::select! {
            _ = shutdown => {}
            _ = &mut pipeline => tracing::error!("pipeline stopped unexpectedly"),
        }
        tracing::info!("shutting down: draining in-flight messages");
        token.cancel();
        let _ = pipeline.await;
        // Leave the group promptly; if the lag reporter still holds a reference, the last
        // one dropped closes it on a thread of its own.
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
        drop(self.embedded);
        tracing::info!("stopped");
        Ok(())
    }
}

/// Serves `/metrics`, `/healthz`, `/readyz` on `addr` until `stop`.
async fn serve_ops(
    addr: &str,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    store: Store,
    assigned: Arc<AtomicUsize>,
    stop: CancellationToken,
) -> Result<(), RunError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Listen {
            addr: addr.to_owned(),
            source,
        })?;
    tracing::info!(%addr, "metrics and health endpoints listening");
    let app = ops::router(ops::OpsState {
        metrics,
        store,
        assigned,
    });
    // Scraped by Prometheus and probed by orchestrators: few connections, short heads.
    let limits = crate::http_server::Limits {
        header_read_timeout: Duration::from_secs(10),
        max_connections: 64,
        shutdown_grace: Duration::from_secs(5),
    };
    tokio::spawn(crate::http_server::serve(
        "ops", listener, app, limits, stop,
    ));
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

/// At start and every minute: whether Redis's persistence (or its eviction policy) can lose
/// writes the switch has acknowledged (`ipg_redis_durability_risk`), with a warning when that changes. Until the
/// journal makes every record rebuildable, a payment answered SUCCESS lives only in Redis.
fn spawn_durability_check(store: Store, url: String, stop: CancellationToken) {
    let url = store::redacted(&url);
    tokio::spawn(async move {
        let mut last: Option<store::Durability> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        while next_tick(&mut tick, &stop).await {
            let Ok(d) = store.durability().await else {
                continue; // Redis away: ipg_redis_up says so; judge once it is back.
            };
            ::metrics::gauge!(metrics::REDIS_DURABILITY_RISK).set(d.gauge());
            if last.as_ref() != Some(&d) {
                match &d {
                    store::Durability::Safe => {
                        tracing::info!(redis = %url, "Redis persistence: appendonly yes, appendfsync always; no eviction")
                    }
                    store::Durability::AtRisk(why) => {
                        tracing::warn!(redis = %url, "Redis persistence can lose payments the switch acknowledged: {why}")
                    }
                    store::Durability::Unknown(why) => {
                        tracing::warn!(redis = %url, error = %why, "Redis persistence unknown (CONFIG refused): make sure it runs appendonly yes, appendfsync always and maxmemory-policy noeviction")
                    }
                }
            }
            last = Some(d);
        }
    });
}

/// Waits for `tick`'s next tick: `false` once `stop` is cancelled (the periodic tasks'
/// loop condition).
async fn next_tick(tick: &mut tokio::time::Interval, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tick.tick() => true,
    }
}

/// Every 5 s on a Redis Cluster: flushes the scripts of any replica holding them (a master
/// demoted without a restart), so that it answers `NOSCRIPT` once promoted and the
/// journal is re-applied there first (`store::conn`). A task of its own: it opens a
/// connection to each replica (2 s timeouts), and a dead replica must not delay the
/// journal marks, which it once shared a loop with.
fn spawn_replica_script_check(store: Store, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        while next_tick(&mut tick, &stop).await {
            if let Err(e) = store.flush_replica_scripts().await {
                tracing::debug!(error = %e, "replica scripts not checked");
            }
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
        while next_tick(&mut tick, &stop).await {
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
