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
pub struct Outgoing<'a> {
    pub topic: &'a str,
    pub key: &'a [u8],
    pub payload: &'a [u8],
    pub headers: &'a [(&'a str, &'a [u8])],
}

impl Publisher {
    /// Sends until acknowledged. Returns `false` only if shutdown interrupted the retries.
    pub async fn send(&self, msg: &Outgoing<'_>, shutdown: &CancellationToken) -> bool {
        let started = Instant::now();
        let mut backoff = self.retry_initial;
        loop {
            let mut headers = OwnedHeaders::new_with_capacity(msg.headers.len());
            for (k, v) in msg.headers {
                headers = headers.insert(Header { key: k, value: Some(*v) });
            }
            let record = FutureRecord::to(msg.topic).key(msg.key).payload(msg.payload).headers(headers);
            match self.producer.send(record, Timeout::After(Duration::from_secs(5))).await {
                Ok(_) => {
                    metrics::histogram!(m::STAGE_SECONDS, "stage" => "publish").record(started.elapsed().as_secs_f64());
                    return true;
                }
                Err((e, _)) => {
                    metrics::counter!(m::RETRIES_TOTAL, "cause" => "kafka").increment(1);
                    tracing::warn!(topic = msg.topic, error = %e, backoff_ms = backoff.as_millis() as u64, "publish failed, retrying");
                }
            }
            if !sleep_or_shutdown(backoff, shutdown).await {
                return false;
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
