//! The journal topic as the store's [`Sink`]: each event is produced to the partition of
//! its institution (`store::journal::partition_of`) and the append resolves once the broker
//! acknowledged it (`acks=all`, idempotent producer), retried until then or shutdown.

use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use rdkafka::producer::Producer;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::publish::{Outgoing, Publisher};
use super::KafkaSettings;
use crate::store::journal::{partition_of, Sink};

/// Produces journal events to `topic`.
#[derive(Clone)]
pub struct KafkaJournal {
    publisher: Arc<OnceCell<Publisher>>,
    /// How to make the producer at the first event, when none was given (the CLI, tests).
    lazy: Option<Arc<(String, KafkaSettings, Duration, Duration)>>,
    topic: String,
    shutdown: CancellationToken,
    partitions: Arc<OnceCell<i32>>,
    /// Appends on their way, and a wake-up when that count reaches 0.
    in_flight: Arc<(std::sync::atomic::AtomicUsize, tokio::sync::Notify)>,
}

impl KafkaJournal {
    /// Events go through the daemon's `publisher`.
    pub fn new(publisher: Publisher, topic: String, shutdown: CancellationToken) -> KafkaJournal {
        KafkaJournal {
            publisher: Arc::new(OnceCell::new_with(Some(publisher))),
            lazy: None,
            topic,
            shutdown,
            partitions: Arc::new(OnceCell::new()),
            in_flight: Default::default(),
        }
    }

    /// Events go through a producer of its own, made at the first event (so a CLI command
    /// that changes nothing never connects), retried from `retry_initial` to `retry_max`.
    pub fn lazy(
        bootstrap: &str,
        kafka: &KafkaSettings,
        retry_initial: Duration,
        retry_max: Duration,
        topic: String,
    ) -> KafkaJournal {
        KafkaJournal {
            publisher: Arc::new(OnceCell::new()),
            lazy: Some(Arc::new((
                bootstrap.to_owned(),
                kafka.clone(),
                retry_initial,
                retry_max,
            ))),
            topic,
            shutdown: CancellationToken::new(),
            partitions: Arc::new(OnceCell::new()),
            in_flight: Default::default(),
        }
    }

    async fn publisher(&self) -> Result<&Publisher, String> {
        self.publisher
            .get_or_try_init(|| async {
                let Some(l) = &self.lazy else {
                    return Err("no producer for the journal".to_owned());
                };
                let (bootstrap, kafka, retry_initial, retry_max) = &**l;
                let producer = super::create_producer(bootstrap, kafka)
                    .map_err(|e| format!("journal producer: {e}"))?;
                Ok(Publisher {
                    producer,
                    retry_initial: *retry_initial,
                    retry_max: *retry_max,
                })
            })
            .await
    }

    /// The journal topic's partition count, read once from the broker's metadata.
    async fn partitions(&self) -> Result<i32, String> {
        let publisher = self.publisher().await?;
        self.partitions
            .get_or_try_init(|| async {
                let producer = publisher.producer.clone();
                let topic = self.topic.clone();
                tokio::task::spawn_blocking(move || {
                    let md = producer
                        .client()
                        .fetch_metadata(Some(&topic), Duration::from_secs(10))
                        .map_err(|e| format!("journal topic {topic}: {e}"))?;
                    md.topics()
                        .first()
                        .map(|t| t.partitions().len() as i32)
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("journal topic {topic} does not exist"))
                })
                .await
                .map_err(|e| e.to_string())?
            })
            .await
            .copied()
    }
}

impl Sink for KafkaJournal {
    fn append(
        &self,
        institution: &str,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<(i32, i64), String>> {
        let this = self.clone();
        let institution = institution.to_owned();
        self.in_flight
            .0
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let counted = self.in_flight.clone();
        let done = async move {
            let partitions = this.partitions().await?;
            let msg = Outgoing {
                topic: this.topic.clone(),
                partition: Some(partition_of(&institution, partitions)),
                key: institution.into_bytes(),
                payload,
                headers: Vec::new(),
            };
            let publisher = this.publisher().await?;
            publisher
                .enqueue_at(msg, this.shutdown.clone())
                .await
                .ok_or_else(|| "stopping before the journal acknowledged the event".to_owned())
        };
        async move {
            let r = done.await;
            if counted.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
                counted.1.notify_waiters();
            }
            r
        }
        .boxed()
    }

    fn settle(&self) -> BoxFuture<'static, ()> {
        let counted = self.in_flight.clone();
        async move {
            loop {
                let woken = counted.1.notified();
                if counted.0.load(std::sync::atomic::Ordering::Acquire) == 0 {
                    return;
                }
                woken.await;
            }
        }
        .boxed()
    }
}
