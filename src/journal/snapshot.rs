//! Snapshots of the working set (docs/retention.md "Snapshots"), so a `restore` and a
//! recovery from a missing mark read the last snapshot and the journal after it, not all
//! history.
//!
//! A snapshot of an institution is taken while payments flow: the journal's end offset of
//! the institution's partition is read first, then its records in Redis, written as journal
//! events (`store::snapshot`) in parts of at most [`PART_BYTES`] on `topics.snapshot`
//! (key: the institution, so one partition, in order); once every part is acknowledged, one
//! [`Taken`] record on `topics.snapshot_index` says where they are. Every event below that
//! offset was produced after its commit, so Redis already held it when the reading began;
//! whatever changed during the reading is in the journal from that offset. Applying is
//! idempotent and newest-wins, so the snapshot's events and then the journal from its offset
//! rebuild exactly what Redis held (`tests/retention.rs` checks it key by key). A snapshot
//! whose parts the broker no longer holds is passed over for the one before, and with none,
//! the journal is read from its beginning as before.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Journal, JournalError};
use crate::kafka::base_config;
use crate::metrics as m;
use crate::store::journal::{partition_of, Event};
use crate::store::snapshot::Cursor;
use crate::store::Store;

/// A part's size at most (bytes of JSON), under the brokers' default 1 MiB message limit.
pub const PART_BYTES: usize = 512 * 1024;

/// One complete snapshot of one institution, as `topics.snapshot_index` records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Taken {
    pub institution: String,
    /// `<institution>-<taken_ms>`.
    pub snapshot_id: String,
    /// When its reading began (ms since the epoch, Redis's clock).
    pub taken_ms: i64,
    /// The journal partition of the institution and the offset to replay from.
    pub journal_partition: i32,
    pub journal_offset: i64,
    /// Where its parts are on `topics.snapshot`: one partition, offsets inclusive.
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub parts: u64,
    pub events: u64,
    /// Bytes of its parts (JSON).
    pub bytes: u64,
    /// How long taking it took (ms).
    pub took_ms: u64,
}

/// One part of a snapshot on `topics.snapshot`: events in the journal's own shape.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct Part {
    pub snapshot_id: String,
    pub institution: String,
    pub events: Vec<Event>,
}

impl Journal {
    fn snapshot_producer(&self) -> Result<FutureProducer, JournalError> {
        base_config(&self.bootstrap, &self.kafka)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.max.bytes", "1048576")
            .create()
            .map_err(|e| self.kafka_error(e))
    }

    /// Each partition's (low, high) watermarks of `topic`.
    pub(super) async fn watermarks_of(
        &self,
        c: &Arc<StreamConsumer>,
        topic: &str,
    ) -> Result<Vec<(i64, i64)>, JournalError> {
        let (c, t) = (c.clone(), topic.to_owned());
        let r = tokio::task::spawn_blocking(move || -> Result<Vec<(i64, i64)>, String> {
            let md = c
                .fetch_metadata(Some(&t), Duration::from_secs(10))
                .map_err(|e| e.to_string())?;
            let n = md
                .topics()
                .first()
                .map(|t| t.partitions().len())
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("topic {t} does not exist"))?;
            (0..n as i32)
                .map(|p| {
                    c.fetch_watermarks(&t, p, Duration::from_secs(10))
                        .map_err(|e| e.to_string())
                })
                .collect()
        })
        .await
        .map_err(|e| self.kafka_error(e))?;
        r.map_err(|e| self.kafka_error(e))
    }

    /// Reads `topic`'s records in `ranges` (`(partition, from, to)`, `to` exclusive),
    /// handing each payload to `each`.
    async fn read_ranges(
        &self,
        c: &StreamConsumer,
        topic: &str,
        ranges: &[(i32, i64, i64)],
        each: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<(), JournalError> {
        let mut tpl = TopicPartitionList::new();
        let mut left: HashMap<i32, (i64, i64)> = HashMap::new();
        for &(p, from, to) in ranges {
            if from < to {
                tpl.add_partition_offset(topic, p, Offset::Offset(from))
                    .map_err(|e| self.kafka_error(e))?;
                left.insert(p, (from, to));
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        c.assign(&tpl).map_err(|e| self.kafka_error(e))?;
        while !left.is_empty() {
            let msg = self.recv(c, left.len()).await?;
            let (p, off) = (msg.partition(), msg.offset());
            let Some(&(from, to)) = left.get(&p) else {
                continue;
            };
            if msg.topic() != topic || off < from {
                continue;
            }
            if off >= to {
                left.remove(&p);
                continue;
            }
            each(msg.payload().unwrap_or_default());
            if off + 1 >= to {
                left.remove(&p);
            }
        }
        Ok(())
    }

    /// Takes a snapshot of `inst`'s working set now (see the module). Returns its record,
    /// written to `topics.snapshot_index` last.
    ///
    /// # Errors
    /// The broker or Redis unreachable, the snapshot topics missing.
    pub async fn take_snapshot(&self, store: &Store, inst: &str) -> Result<Taken, JournalError> {
        let started = Instant::now();
        let taken_ms = store.redis_time_ms().await?;
        // A Redis that loses data while it is read (a flush, a failover that lost writes)
        // loses the institution's mark: no snapshot is written from it.
        let marked = || async {
            Ok::<bool, JournalError>(
                store
                    .journal_marks(std::slice::from_ref(&inst.to_owned()))
                    .await?
                    .first()
                    .is_some_and(Option::is_some),
            )
        };
        if !marked().await? {
            return Err(self.kafka_error(format!(
                "{inst} has no journal mark in Redis (not recovered yet): no snapshot"
            )));
        }
        // The journal's end first: everything below it is in Redis already.
        let c = Arc::new(self.reader()?);
        let wm = self.watermarks(&c).await?;
        let journal_partition = partition_of(inst, wm.len() as i32);
        let journal_offset = wm[journal_partition as usize].1;
        let producer = self.snapshot_producer()?;
        let snapshot_id = format!("{inst}-{taken_ms}");
        let head = format!(
            "{{\"snapshot_id\":{},\"institution\":{},\"events\":[",
            serde_json::to_string(&snapshot_id).unwrap_or_default(),
            serde_json::to_string(inst).unwrap_or_default()
        );
        let (mut part, mut in_part) = (head.clone(), 0usize);
        let (mut parts, mut events, mut bytes) = (0u64, 0u64, 0u64);
        let mut placed: Option<(i32, i64, i64)> = None;
        let mut at = Cursor::Start;
        loop {
            let (page, next) = store.snapshot_page(inst, taken_ms, at).await?;
            let done = next == Cursor::Done;
            at = next;
            for e in page {
                let json = serde_json::to_string(&e).unwrap_or_default();
                if in_part > 0 && part.len() + json.len() + 2 > PART_BYTES {
                    part.push_str("]}");
                    let (p, o) = self.send_part(&producer, inst, &part).await?;
                    placed = Some(placed.map_or((p, o, o), |(p0, f, _)| (p0, f, o)));
                    (parts, bytes) = (parts + 1, bytes + part.len() as u64);
                    (part, in_part) = (head.clone(), 0);
                }
                if in_part > 0 {
                    part.push(',');
                }
                part.push_str(&json);
                in_part += 1;
                events += 1;
            }
            if done {
                break;
            }
        }
        if in_part > 0 || parts == 0 {
            part.push_str("]}");
            let (p, o) = self.send_part(&producer, inst, &part).await?;
            placed = Some(placed.map_or((p, o, o), |(p0, f, _)| (p0, f, o)));
            (parts, bytes) = (parts + 1, bytes + part.len() as u64);
        }
        if !marked().await? {
            return Err(self.kafka_error(format!(
                "{inst}'s journal mark left Redis while it was read (Redis lost data): no snapshot"
            )));
        }
        let (partition, first_offset, last_offset) = placed.unwrap_or_default();
        let taken = Taken {
            institution: inst.to_owned(),
            snapshot_id,
            taken_ms,
            journal_partition,
            journal_offset,
            partition,
            first_offset,
            last_offset,
            parts,
            events,
            bytes,
            took_ms: started.elapsed().as_millis() as u64,
        };
        let record = serde_json::to_string(&taken).unwrap_or_default();
        producer
            .send(
                FutureRecord::to(&self.snapshot_index_topic)
                    .key(inst)
                    .payload(&record),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| self.kafka_error(e))?;
        metrics::histogram!(m::SNAPSHOT_SECONDS).record(started.elapsed().as_secs_f64());
        Ok(taken)
    }

    async fn send_part(
        &self,
        producer: &FutureProducer,
        inst: &str,
        part: &str,
    ) -> Result<(i32, i64), JournalError> {
        let delivered = producer
            .send(
                FutureRecord::to(&self.snapshot_topic)
                    .key(inst)
                    .payload(part),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| self.kafka_error(e))?;
        Ok((delivered.partition, delivered.offset))
    }

    /// The institutions' recent complete snapshots on `topics.snapshot_index`, newest
    /// first: the index's last [`INDEX_TAIL`] records per configured institution in each
    /// partition (the index is kept forever; its older records name snapshots whose parts
    /// the broker dropped long ago), so the read costs the same after years.
    ///
    /// # Errors
    /// The broker unreachable, the index topic missing.
    pub async fn snapshots(&self) -> Result<HashMap<String, Vec<Taken>>, JournalError> {
        let c = Arc::new(self.reader()?);
        let wm = self.watermarks_of(&c, &self.snapshot_index_topic).await?;
        let tail = INDEX_TAIL * self.institutions.len().max(1) as i64;
        let ranges: Vec<(i32, i64, i64)> = wm
            .iter()
            .enumerate()
            .map(|(p, (low, high))| (p as i32, (*low).max(high - tail), *high))
            .collect();
        let mut all: HashMap<String, Vec<Taken>> = HashMap::new();
        self.read_ranges(&c, &self.snapshot_index_topic, &ranges, &mut |v| {
            if let Ok(t) = serde_json::from_slice::<Taken>(v) {
                all.entry(t.institution.clone()).or_default().push(t);
            }
        })
        .await?;
        for list in all.values_mut() {
            list.sort_by_key(|t| std::cmp::Reverse(t.taken_ms));
        }
        Ok(all)
    }

    /// Applies the newest snapshot of `inst` in `taken` whose parts the broker still holds
    /// and whose journal partition is the institution's now (`partitions` of the journal).
    /// Returns it and how many events it applied; `None` when there is none to apply.
    ///
    /// # Errors
    /// The broker or Redis unreachable.
    pub async fn apply_snapshot(
        &self,
        store: &Store,
        inst: &str,
        taken: &[Taken],
        partitions: i32,
    ) -> Result<Option<(Taken, u64)>, JournalError> {
        if taken.is_empty() {
            return Ok(None);
        }
        let c = Arc::new(self.reader()?);
        let wm = self.watermarks_of(&c, &self.snapshot_topic).await?;
        let usable = taken.iter().filter(|t| {
            t.journal_partition == partition_of(inst, partitions)
                && wm
                    .get(t.partition as usize)
                    .is_some_and(|(low, high)| *low <= t.first_offset && t.last_offset < *high)
        });
        // Newest first; one found incomplete gives way to the one before.
        for t in usable {
            if let Some(applied) = self.apply_one(store, inst, t).await? {
                return Ok(Some((t.clone(), applied)));
            }
        }
        Ok(None)
    }

    /// Applies the snapshot `t` of `inst`; how many events, or `None` when the broker does
    /// not hold all of it (what it applied changes nothing: applying is idempotent).
    async fn apply_one(
        &self,
        store: &Store,
        inst: &str,
        t: &Taken,
    ) -> Result<Option<u64>, JournalError> {
        // A consumer of its own (nothing fetched for another snapshot's offsets); parts are
        // applied as they come, one at a time: memory is one part.
        let c = self.reader()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.snapshot_topic,
            t.partition,
            Offset::Offset(t.first_offset),
        )
        .map_err(|e| self.kafka_error(e))?;
        c.assign(&tpl).map_err(|e| self.kafka_error(e))?;
        let (mut applied, mut parts) = (0u64, 0u64);
        loop {
            let msg = self.recv(&c, 1).await?;
            let off = msg.offset();
            if msg.topic() != self.snapshot_topic || msg.partition() != t.partition {
                continue;
            }
            if off < t.first_offset {
                continue;
            }
            if off > t.last_offset {
                break;
            }
            if let Ok(p) = serde_json::from_slice::<Part>(msg.payload().unwrap_or_default()) {
                if p.snapshot_id == t.snapshot_id && p.institution == inst {
                    applied += store.apply(&p.events).await?.events;
                    parts += 1;
                }
            }
            if off >= t.last_offset {
                break;
            }
        }
        // Only a whole snapshot stands for the journal below its offset; what a partial one
        // applied changes nothing (applying is idempotent) and the journal is read from
        // its beginning instead.
        if parts != t.parts || applied != t.events {
            tracing::error!(institution = %inst, snapshot = %t.snapshot_id, parts, expected_parts = t.parts, applied, expected_events = t.events, "snapshot incomplete on the broker: not used");
            return Ok(None);
        }
        Ok(Some(applied))
    }
}

/// Records of `topics.snapshot_index` read per configured institution (see
/// [`Journal::snapshots`]): 16 snapshots back, far more than the broker keeps the parts of.
pub const INDEX_TAIL: i64 = 16;

/// When an institution without any snapshot gets its first one after start, at most (a
/// tenth of the interval if that is shorter).
const FIRST_SNAPSHOT_AFTER: Duration = Duration::from_secs(600);

/// Takes, until `stop`, each served institution's snapshot every
/// `journal.snapshot_interval_ms` after the newest on the index (an institution without
/// one: a tenth of the interval after start, at most 10 minutes): one instance at a time
/// per institution (a lease in Redis, `Store::snapshot_lease`, given back when done).
/// Sets `ipg_snapshot_age_seconds` (the oldest institution's newest snapshot),
/// `ipg_snapshot_bytes` and `ipg_snapshot_events` (their sum), counts
/// `ipg_snapshots_total{outcome}`.
pub fn spawn(journal: Journal, store: Store, stop: CancellationToken) {
    let interval = journal.settings.snapshot_interval;
    if interval.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let started_ms = chrono::Utc::now().timestamp_millis();
        let every = (interval / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let first = (interval / 10).min(FIRST_SNAPSHOT_AFTER);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut newest: HashMap<String, Taken> = HashMap::new();
        // A failed snapshot is tried again no sooner than `first` later.
        let mut retry_at: HashMap<String, i64> = HashMap::new();
        let mut known = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = chrono::Utc::now().timestamp_millis();
            // An institution without a snapshot gets its first one soon after start (a
            // fleet restarted more often than the interval would otherwise never take one).
            let due_at = |inst: &str, newest: &HashMap<String, Taken>| match newest.get(inst) {
                Some(t) => t.taken_ms + interval.as_millis() as i64,
                None => started_ms + first.as_millis() as i64,
            };
            let due: Vec<String> = (journal.institutions.iter())
                .filter(|i| !known || due_at(i, &newest) <= now)
                .cloned()
                .collect();
            if !due.is_empty() {
                // Another instance may have taken them: ask the index.
                match journal.snapshots().await {
                    Ok(all) => {
                        known = true;
                        for (inst, list) in all {
                            if let Some(t) = list.into_iter().next() {
                                newest.insert(inst, t);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "snapshots: cannot read the index"),
                }
            }
            let due: Vec<String> = due
                .into_iter()
                .filter(|i| known && due_at(i, &newest) <= now)
                .filter(|i| retry_at.get(i).is_none_or(|t| *t <= now))
                .collect();
            for inst in &due {
                if stop.is_cancelled() {
                    return;
                }
                let lease = match store.snapshot_lease(inst, interval).await {
                    Ok(Some(token)) => token,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(institution = %inst, error = %e, "snapshots: no lease");
                        continue;
                    }
                };
                let taken = journal.take_snapshot(&store, inst).await;
                if let Err(e) = store.release_snapshot_lease(inst, &lease).await {
                    tracing::debug!(institution = %inst, error = %e, "snapshot lease left to expire");
                }
                match taken {
                    Ok(t) => {
                        tracing::info!(institution = %inst, events = t.events, bytes = t.bytes, took_ms = t.took_ms, "snapshot taken");
                        metrics::counter!(m::SNAPSHOTS_TOTAL, "outcome" => "taken").increment(1);
                        newest.insert(inst.clone(), t);
                    }
                    Err(e) => {
                        tracing::warn!(institution = %inst, error = %e, "snapshot failed; tried again later");
                        retry_at.insert(inst.clone(), now + first.as_millis() as i64);
                        metrics::counter!(m::SNAPSHOTS_TOTAL, "outcome" => "failed").increment(1);
                    }
                }
            }
            if known {
                let oldest = (journal.institutions.iter())
                    .map(|i| newest.get(i).map_or(started_ms, |t| t.taken_ms))
                    .min()
                    .unwrap_or(now);
                metrics::gauge!(m::SNAPSHOT_AGE_SECONDS).set((now - oldest) as f64 / 1000.0);
                metrics::gauge!(m::SNAPSHOT_BYTES)
                    .set(newest.values().map(|t| t.bytes).sum::<u64>() as f64);
                metrics::gauge!(m::SNAPSHOT_EVENTS)
                    .set(newest.values().map(|t| t.events).sum::<u64>() as f64);
            }
        }
    });
}
