//! Publishing answers, webhook jobs and dead letters, each retried until the broker
//! acknowledges it (or the daemon shuts down): an offset moves only after that.

use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;

#[derive(Clone)]
pub struct Publisher {
    pub producer: FutureProducer,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

/// One message to publish.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub topic: String,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub headers: Vec<(&'static str, Vec<u8>)>,
    /// A partition chosen by the switch (the journal); `None`: by key, librdkafka's
    /// partitioner.
    pub partition: Option<i32>,
}

impl Outgoing {
    /// A webhook job on `topic`, keyed by its bill (one bill's events in order): the one
    /// place both doors turn an answer's job into a message.
    pub fn webhook_job(topic: &str, w: &crate::domain::QueuedWebhook) -> Outgoing {
        Outgoing {
            topic: topic.to_owned(),
            key: w.key.as_bytes().to_vec(),
            payload: w.job.as_bytes().to_vec(),
            headers: Vec::new(),
            partition: None,
        }
    }

    fn record(&self) -> FutureRecord<'_, [u8], [u8]> {
        let mut headers = OwnedHeaders::new_with_capacity(self.headers.len());
        for (k, v) in &self.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            });
        }
        let r = FutureRecord::to(&self.topic)
            .key(self.key.as_slice())
            .payload(self.payload.as_slice())
            .headers(headers);
        match self.partition {
            Some(p) => r.partition(p),
            None => r,
        }
    }
}

impl Publisher {
    /// Hands `msg` to the producer now, so messages enqueued one after another keep their
    /// order, and returns a future that resolves once the broker acknowledged it: `true`,
    /// or `false` if shutdown interrupted the retries of a failed delivery.
    pub fn enqueue(
        &self,
        msg: Outgoing,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = bool> + Send + 'static {
        let delivered = self.enqueue_at(msg, shutdown);
        async move { delivered.await.is_some() }
    }

    /// [`Publisher::enqueue`], resolving to where the broker put the message:
    /// `(partition, offset)`, or `None` if shutdown interrupted the retries.
    pub fn enqueue_at(
        &self,
        msg: Outgoing,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = Option<(i32, i64)>> + Send + 'static {
        let started = Instant::now();
        let first = self.producer.send_result(msg.record()).ok();
        let this = self.clone();
        async move {
            if let Some(delivery) = first {
                match delivery.await {
                    Ok(Ok(d)) => {
                        m::stage(m::Stage::Publish).record(started.elapsed().as_secs_f64());
                        return Some((d.partition, d.offset));
                    }
                    Ok(Err((e, _))) => {
                        tracing::warn!(topic = %msg.topic, error = %e, "delivery failed, retrying")
                    }
                    Err(_) => tracing::warn!(topic = %msg.topic, "delivery report lost, retrying"),
                }
            }
            this.send_at(&msg, &shutdown).await
        }
    }

    /// Sends until acknowledged. Returns `false` only if shutdown interrupted the retries.
    pub async fn send(&self, msg: &Outgoing, shutdown: &CancellationToken) -> bool {
        self.send_at(msg, shutdown).await.is_some()
    }

    /// Queues `w` as a webhook job on `topic` ([`Outgoing::webhook_job`]), retried until
    /// the broker acknowledges it or shutdown, and counts it (`ipg_webhook_jobs_total`).
    /// Owns what it needs, so a caller that stops waiting may spawn it to finish.
    /// Resolves to `false` at shutdown.
    pub fn send_webhook_job(
        &self,
        topic: &str,
        w: &crate::domain::QueuedWebhook,
        shutdown: &CancellationToken,
    ) -> impl std::future::Future<Output = bool> + Send + 'static {
        let (publisher, shutdown) = (self.clone(), shutdown.clone());
        let (msg, event) = (Outgoing::webhook_job(topic, w), w.event);
        async move {
            let sent = publisher.send(&msg, &shutdown).await;
            if sent {
                metrics::counter!(m::WEBHOOK_JOBS_TOTAL, "event" => event).increment(1);
            }
            sent
        }
    }

    /// [`Publisher::send`], returning where the broker put the message.
    pub async fn send_at(
        &self,
        msg: &Outgoing,
        shutdown: &CancellationToken,
    ) -> Option<(i32, i64)> {
        let started = Instant::now();
        let mut backoff = self.retry_initial;
        loop {
            match self
                .producer
                .send(msg.record(), Timeout::After(Duration::from_secs(5)))
                .await
            {
                Ok(d) => {
                    m::stage(m::Stage::Publish).record(started.elapsed().as_secs_f64());
                    return Some((d.partition, d.offset));
                }
                Err((e, _)) => {
                    metrics::counter!(m::RETRIES_TOTAL, "cause" => "kafka").increment(1);
                    tracing::warn!(topic = %msg.topic, error = %e, backoff_ms = backoff.as_millis() as u64, "publish failed, retrying");
                }
            }
            if !sleep_or_shutdown(backoff, shutdown).await {
                return None;
            }
            backoff = (backoff * 2).min(self.retry_max);
        }
    }
}

/// Sleeps for `d`; `false` if shutdown came first.
pub async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}
