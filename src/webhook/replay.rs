//! `ipg-switch webhook replay`: reads the webhook dead-letter topic from its beginning to
//! its current end and re-publishes the matching jobs, as the switch queued them (attempts
//! reset), to `topics.webhook`, keyed by bill. Dead letters stay where they are (Kafka is
//! append-only), so replaying twice sends twice; the receiver drops repeats by event id.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

use super::deliver::Envelope;
use super::WebhookError;
use super::Wiring;
use crate::kafka;
use crate::kafka::KafkaSettings;

/// Which dead letters to replay; `None` matches all.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub institution: Option<String>,
    pub id: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Dead-letter messages read.
    pub read: usize,
    /// Jobs re-published (distinct event ids that matched).
    pub replayed: usize,
    /// Messages that are not a job envelope (malformed input), skipped.
    pub skipped: usize,
}

/// Replays the dead letters that match `filter`.
///
/// # Errors
/// An embedded broker setting, the broker unreachable, a publish not acknowledged.
pub async fn replay(settings: &Wiring, filter: &Filter) -> Result<Report, WebhookError> {
    if settings.kafka.is_embedded() {
        return Err(WebhookError::NeedsBroker);
    }
    let bootstrap = settings.kafka.bootstrap_servers.clone();
    let topic = settings.topics.webhook_dead_letter.clone();
    let s = settings.kafka.clone();
    let raw = tokio::task::spawn_blocking(move || read_all(&bootstrap, &s, &topic))
        .await
        .map_err(|e| WebhookError::Read {
            topic: settings.topics.webhook_dead_letter.clone(),
            reason: e.to_string(),
        })??;
    let mut report = Report {
        read: raw.len(),
        ..Report::default()
    };
    let producer = kafka::create_producer(&settings.kafka.bootstrap_servers, &settings.kafka)?;
    let mut seen = HashSet::new();
    for payload in raw {
        let Ok(env) = serde_json::from_slice::<Envelope>(&payload) else {
            report.skipped += 1;
            continue;
        };
        let job = env.job;
        if filter
            .institution
            .as_ref()
            .is_some_and(|c| *c != job.institution_code)
            || filter.id.as_ref().is_some_and(|i| *i != job.id)
            || !seen.insert(job.id.clone())
        {
            continue;
        }
        let value = serde_json::to_vec(&job).map_err(|e| WebhookError::Read {
            topic: settings.topics.webhook.clone(),
            reason: e.to_string(),
        })?;
        producer
            .send(
                FutureRecord::to(&settings.topics.webhook)
                    .key(job.bill_hash.as_bytes())
                    .payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| WebhookError::Kafka(e))?;
        tracing::info!(id = %job.id, institution = %job.institution_code, "webhook job replayed");
        report.replayed += 1;
    }
    Ok(report)
}

/// Every payload of `topic` up to its high watermarks at the time of the call.
fn read_all(bootstrap: &str, s: &KafkaSettings, topic: &str) -> Result<Vec<Vec<u8>>, WebhookError> {
    let timeout = Duration::from_secs(10);
    let consumer: BaseConsumer = kafka::base_config(bootstrap, s)
        .set(
            "group.id",
            format!("ipg-switch-replay-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        let (lo, hi) = consumer.fetch_watermarks(topic, p, timeout)?;
        if hi > lo {
            ends.insert(p, hi);
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(WebhookError::Read {
                topic: topic.to_owned(),
                reason: "did not reach the end within 120 s".into(),
            });
        }
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m?;
        out.push(m.payload().unwrap_or_default().to_vec());
        if ends
            .get(&m.partition())
            .is_some_and(|end| m.offset() + 1 >= *end)
        {
            ends.remove(&m.partition());
        }
    }
    Ok(out)
}
