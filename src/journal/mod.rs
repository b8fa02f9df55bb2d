//! The journal's readers: the recovery that re-applies what Redis lost, the applier that
//! keeps the per-institution marks, `restore` and `verify` (docs/journal.md).
//!
//! Why the marks are sound: an event is produced only after its Redis commit, and a mark
//! covering it is written only after the event was read back from the journal, so in
//! Redis's ordered log (AOF, replication) the mark always comes after the data it covers.
//! A Redis that loses a suffix of its writes loses the marks of that suffix with it, and
//! re-applying from the marks it still has re-applies exactly the lost tail.

pub mod config;
pub mod snapshot;
pub mod unjournaled;
pub mod verify;
pub mod window;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::kafka::{base_config, KafkaSettings};
use crate::metrics as m;
use crate::store::apply::Applied;
use crate::store::journal::{partition_of, Event, Mark, Recover};
use crate::store::Store;
pub use config::JournalSettings;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal topic {topic}: {reason}")]
    Kafka { topic: String, reason: String },
    #[error("journal: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("journal topic {topic}: no message for {secs} s while {left} partition(s) were not read to their end")]
    Stalled {
        topic: String,
        secs: u64,
        left: usize,
    },
}

/// Where a replay starts in each partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    /// The first offset the broker still has: `restore --from-beginning`, `verify`.
    Beginning,
    /// Each institution's newest snapshot, applied first, then the journal from its offset
    /// (the beginning for an institution without one): `restore`.
    Snapshots,
    /// The institutions' marks (a recovery); an institution without a mark as `Snapshots`.
    Marks,
}

/// What a replay did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Report {
    /// Events applied from snapshots (before the journal).
    pub snapshot_events: u64,
    /// Institutions restored from a snapshot.
    pub snapshots: u64,
    pub events: u64,
    pub records_set: u64,
    pub unreadable: u64,
    pub seconds: f64,
}

/// Reports a replay's progress (a progress bar on a terminal, nothing in the daemon).
pub trait Progress: Send {
    fn start(&mut self, _total: u64) {}
    fn advance(&mut self, _events: u64) {}
}

/// No progress shown.
pub struct Quiet;
impl Progress for Quiet {}

/// The journal topic and how to reach it.
#[derive(Clone)]
pub struct Journal {
    pub bootstrap: String,
    pub kafka: KafkaSettings,
    pub topic: String,
    /// Where snapshots' parts go, and the index of complete snapshots (`snapshot`).
    pub snapshot_topic: String,
    pub snapshot_index_topic: String,
    /// The institutions this switch serves (their marks decide where a recovery starts).
    pub institutions: Vec<String>,
    pub settings: JournalSettings,
}

/// A journal event read back, with its place.
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    /// The record's Kafka timestamp (ms; `CreateTime`, the appending producer's clock).
    pub timestamp_ms: Option<i64>,
    pub event: Event,
}

impl Journal {
    fn reader(&self) -> Result<StreamConsumer, JournalError> {
        base_config(&self.bootstrap, &self.kafka)
            .set(
                "group.id",
                format!("{}.journal-reader", self.kafka.group_id),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("allow.auto.create.topics", "false")
            .set("enable.partition.eof", "false")
            // An offset the broker no longer holds (retention moved on during a read) is
            // an error, never a silent jump to the end of the partition.
            .set("auto.offset.reset", "error")
            .create()
            .map_err(|e| self.kafka_error(e))
    }

    /// The next record of `c`'s assignment, or `Stalled` after `journal.read_timeout_ms`
    /// without one (`left`: the partitions still to read, for the error).
    async fn recv<'c>(
        &self,
        c: &'c StreamConsumer,
        left: usize,
    ) -> Result<rdkafka::message::BorrowedMessage<'c>, JournalError> {
        let stall = self.settings.read_timeout;
        match tokio::time::timeout(stall, c.recv()).await {
            Err(_) => Err(JournalError::Stalled {
                topic: self.topic.clone(),
                secs: stall.as_secs(),
                left,
            }),
            Ok(Err(e)) => Err(self.kafka_error(e)),
            Ok(Ok(m)) => Ok(m),
        }
    }

    fn kafka_error(&self, e: impl std::fmt::Display) -> JournalError {
        JournalError::Kafka {
            topic: self.topic.clone(),
            reason: e.to_string(),
        }
    }

    /// Each partition's (low, high) watermarks of the journal, by partition.
    async fn watermarks(&self, c: &Arc<StreamConsumer>) -> Result<Vec<(i64, i64)>, JournalError> {
        self.watermarks_of(c, &self.topic).await
    }

    /// The partitions whose first events the broker no longer holds (low watermark above
    /// 0: a retention shorter than forever, or a broker that drops old records, such as the
    /// demo's embedded one at about 5 MiB per partition), with how many are gone.
    ///
    /// # Errors
    /// The journal unreadable.
    pub async fn dropped(&self) -> Result<Vec<(i32, i64)>, JournalError> {
        let c = Arc::new(self.reader()?);
        let wm = self.watermarks(&c).await?;
        Ok(wm
            .iter()
            .enumerate()
            .filter(|(_, (low, _))| *low > 0)
            .map(|(p, (low, _))| (p as i32, *low))
            .collect())
    }

    /// Where each partition starts: the lowest mark of the served institutions in it (a
    /// missing mark: the beginning); a partition none of them uses is skipped.
    /// (With `Snapshots`, and for a missing mark, each such institution's newest usable
    /// snapshot is applied here first and it starts at the snapshot's offset.) Returns the
    /// starts and what the snapshots applied (events, institutions).
    async fn starts(
        &self,
        store: &Store,
        from: From,
        wm: &[(i64, i64)],
    ) -> Result<(Vec<i64>, u64, u64), JournalError> {
        let n = wm.len() as i32;
        if from == From::Beginning {
            return Ok((wm.iter().map(|(low, _)| *low).collect(), 0, 0));
        }
        let marks = match from {
            From::Marks => store.journal_marks(&self.institutions).await?,
            _ => vec![None; self.institutions.len()],
        };
        let mut snapshots: Option<HashMap<String, Vec<snapshot::Taken>>> = None;
        let (mut snapshot_events, mut restored) = (0u64, 0u64);
        let mut starts: Vec<Option<i64>> = vec![None; wm.len()];
        for (inst, mark) in self.institutions.iter().zip(marks) {
            let p = partition_of(inst, n);
            let (low, high) = wm[p as usize];
            let at = match mark {
                Some(Mark { partition, offset }) if partition == p => offset.clamp(low, high),
                _ => {
                    // No mark: from its newest snapshot, if the broker holds one.
                    if snapshots.is_none() {
                        snapshots = Some(self.snapshots().await.unwrap_or_else(|e| {
                            tracing::warn!(error = %e, "no snapshot index: the journal is read from its beginning");
                            HashMap::new()
                        }));
                    }
                    // A snapshot past the journal's end belongs to another journal (the
                    // topic was made anew): never used, it would skip what this one holds.
                    let taken: Vec<snapshot::Taken> = (snapshots.as_ref())
                        .and_then(|all| all.get(inst))
                        .map_or(&[][..], Vec::as_slice)
                        .iter()
                        .filter(|t| {
                            let ours = t.journal_offset <= high;
                            if !ours {
                                tracing::error!(institution = %inst, snapshot = %t.snapshot_id, journal_offset = t.journal_offset, journal_end = high, "a snapshot past the journal's end (another journal's?): not used");
                            }
                            ours
                        })
                        .cloned()
                        .collect();
                    let applied = match self.apply_snapshot(store, inst, &taken, n).await {
                        Ok(a) => a,
                        Err(e) => {
                            // Never a recovery stuck on a snapshot: the journal has it all.
                            tracing::warn!(institution = %inst, error = %e, "snapshot not readable: the journal is read from its beginning");
                            None
                        }
                    };
                    match applied {
                        Some((t, events)) => {
                            tracing::info!(institution = %inst, snapshot = %t.snapshot_id, events, journal_offset = t.journal_offset, "applied the institution's newest snapshot; the journal follows from its offset");
                            metrics::counter!(m::SNAPSHOT_LOADS_TOTAL).increment(1);
                            (snapshot_events, restored) = (snapshot_events + events, restored + 1);
                            if t.journal_offset < low {
                                // The broker dropped journal events after the snapshot: its
                                // retention is shorter than the snapshots' spacing.
                                tracing::error!(institution = %inst, snapshot = %t.snapshot_id, journal_offset = t.journal_offset, journal_start = low, "the journal no longer holds the events after the snapshot: what changed in between is lost; keep the journal's retention above two snapshot intervals");
                            }
                            t.journal_offset.max(low)
                        }
                        None => low,
                    }
                }
            };
            let s = &mut starts[p as usize];
            *s = Some(s.map_or(at, |cur| cur.min(at)));
        }
        let starts = starts
            .into_iter()
            .zip(wm)
            .map(|(s, (low, high))| match (s, from) {
                (Some(s), _) => s,
                // A partition no served institution uses: a restore reads it whole.
                (None, From::Snapshots) => *low,
                (None, _) => *high,
            })
            .collect();
        Ok((starts, snapshot_events, restored))
    }

    /// Reads every partition from `starts` up to the high watermarks `wm` taken before
    /// (with `until_ms`, only up to its first record stamped later: [`window`]): each
    /// event goes to `each`, and, with `apply_to`, is applied there in batches of
    /// `journal.batch`. Returns how many events did not parse, and what applying did.
    #[allow(clippy::too_many_arguments)]
    async fn read(
        &self,
        starts: &[i64],
        wm: &[(i64, i64)],
        c: Arc<StreamConsumer>,
        progress: &mut dyn Progress,
        apply_to: Option<&Store>,
        until_ms: Option<i64>,
        each: &mut (dyn FnMut(&Read) + Send),
    ) -> Result<(u64, Applied), JournalError> {
        let mut tpl = TopicPartitionList::new();
        // Each partition's (start, end): a record outside it (one fetched for an earlier
        // assignment of the same consumer) is not read.
        let mut left: HashMap<i32, (i64, i64)> = HashMap::new();
        let mut total = 0u64;
        for (p, (&start, &(_, high))) in starts.iter().zip(wm).enumerate() {
            if start < high {
                tpl.add_partition_offset(&self.topic, p as i32, Offset::Offset(start))
                    .map_err(|e| self.kafka_error(e))?;
                left.insert(p as i32, (start, high));
                total += (high - start) as u64;
            }
        }
        progress.start(total);
        let mut applied = Applied::default();
        if left.is_empty() {
            return Ok((0, applied));
        }
        c.assign(&tpl).map_err(|e| self.kafka_error(e))?;
        let mut batch: Vec<Event> = Vec::with_capacity(self.settings.batch);
        let mut unreadable = 0u64;
        let mut since_progress = 0u64;
        while !left.is_empty() {
            let msg = self.recv(&c, left.len()).await?;
            let (p, off) = (msg.partition(), msg.offset());
            let Some(&(start, end)) = left.get(&p) else {
                continue;
            };
            if off < start {
                continue;
            }
            let late = until_ms.is_some_and(|u| msg.timestamp().to_millis().is_some_and(|t| t > u));
            if off >= end || late {
                left.remove(&p);
                continue;
            }
            match serde_json::from_slice::<Event>(msg.payload().unwrap_or_default()) {
                Ok(event) => {
                    let r = Read {
                        partition: p,
                        offset: off,
                        timestamp_ms: msg.timestamp().to_millis(),
                        event,
                    };
                    each(&r);
                    if apply_to.is_some() {
                        batch.push(r.event);
                    }
                }
                Err(e) => {
                    unreadable += 1;
                    metrics::counter!(m::JOURNAL_UNREADABLE_TOTAL).increment(1);
                    tracing::error!(partition = p, offset = off, error = %e, "journal event that does not parse: skipped");
                }
            }
            since_progress += 1;
            if off + 1 >= end {
                left.remove(&p);
            }
            if batch.len() >= self.settings.batch {
                if let Some(store) = apply_to {
                    let a = store.apply(&batch).await?;
                    applied.events += a.events;
                    applied.records_set += a.records_set;
                }
                batch.clear();
            }
            if since_progress >= 1000 {
                progress.advance(since_progress);
                since_progress = 0;
            }
        }
        if let (Some(store), false) = (apply_to, batch.is_empty()) {
            let a = store.apply(&batch).await?;
            applied.events += a.events;
            applied.records_set += a.records_set;
        }
        progress.advance(since_progress);
        Ok((unreadable, applied))
    }

    /// Applies the journal from `from` to its end as of now, then sets every served
    /// institution's mark to that end (and the mark of every institution seen).
    ///
    /// # Errors
    /// The journal unreadable or stalled, Redis unreachable.
    pub async fn replay(
        &self,
        store: &Store,
        from: From,
        progress: &mut dyn Progress,
    ) -> Result<Report, JournalError> {
        let started = Instant::now();
        let c = Arc::new(self.reader()?);
        let wm = self.watermarks(&c).await?;
        let (starts, snapshot_events, snapshots) = self.starts(store, from, &wm).await?;
        let mut seen: BTreeMap<String, i32> = BTreeMap::new();
        let (unreadable, applied) = self
            .read(
                &starts,
                &wm,
                c,
                progress,
                Some(store),
                None,
                &mut |r: &Read| {
                    if !seen.contains_key(&r.event.institution) {
                        seen.insert(r.event.institution.clone(), r.partition);
                    }
                },
            )
            .await?;
        let n = wm.len() as i32;
        let mut marks: BTreeMap<String, Mark> = BTreeMap::new();
        for inst in self.institutions.iter().chain(seen.keys()) {
            let p = partition_of(inst, n);
            marks.insert(
                inst.clone(),
                Mark {
                    partition: p,
                    offset: wm[p as usize].1,
                },
            );
        }
        let marks: Vec<(String, Mark)> = marks.into_iter().collect();
        store.set_marks(&marks, false).await?;
        metrics::counter!(m::JOURNAL_REAPPLIED_TOTAL).increment(applied.records_set);
        Ok(Report {
            snapshot_events,
            snapshots,
            events: applied.events,
            records_set: applied.records_set,
            unreadable,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Reads the whole journal (for `verify`), handing each event to `each`. Returns how
    /// many events did not parse.
    ///
    /// # Errors
    /// The journal unreadable or stalled.
    pub async fn scan(
        &self,
        progress: &mut dyn Progress,
        each: &mut (dyn FnMut(&Read) + Send),
    ) -> Result<u64, JournalError> {
        let c = Arc::new(self.reader()?);
        let wm = self.watermarks(&c).await?;
        let starts: Vec<i64> = wm.iter().map(|(low, _)| *low).collect();
        Ok(self
            .read(&starts, &wm, c, progress, None, None, each)
            .await?
            .0)
    }
}

impl Recover for Journal {
    fn catch_up<'a>(&'a self, store: &'a Store) -> BoxFuture<'a, Result<(), String>> {
        async move {
            let report = self
                .replay(store, From::Marks, &mut Quiet)
                .await
                .map_err(|e| e.to_string())?;
            metrics::histogram!(m::JOURNAL_CATCH_UP_SECONDS).record(report.seconds);
            tracing::info!(
                events = report.events,
                records_set = report.records_set,
                seconds = report.seconds,
                "journal re-applied from the marks"
            );
            Ok(())
        }
        .boxed()
    }
}

/// The applier's part that runs in steady state: it writes, every
/// `journal.mark_interval_ms`, the marks this process's acknowledged events allow. An
/// event acknowledged at offset `o` of a partition was appended after every event below it,
/// and each of those was produced after its Redis commit: so every served institution of
/// that partition may be marked at `o + 1` (an institution without events there has
/// nothing to cover). Redis already holds all of it, so nothing is read back or re-applied
/// in steady state; the marks go through the request scripts, so a Redis that lost its
/// memory recovers before it gets one, and a missing mark is never created here.
pub fn spawn_marks(journal: Journal, store: Store, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(journal.settings.mark_interval);
        let mut partitions: Option<i32> = None;
        let mut marked: BTreeMap<i32, i64> = BTreeMap::new();
        let mut lag_at = Instant::now();
        let reader = journal.reader().ok().map(Arc::new);
        let mut held: std::collections::VecDeque<(Instant, BTreeMap<i32, i64>)> =
            std::collections::VecDeque::new();
        loop {
            let stopping = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tick.tick() => false,
            };
            if partitions.is_none() || lag_at.elapsed() >= Duration::from_secs(5) {
                lag_at = Instant::now();
                if let Some(c) = &reader {
                    if let Ok(wm) = journal.watermarks(c).await {
                        partitions = Some(wm.len() as i32);
                        for (p, (_, high)) in wm.iter().enumerate() {
                            let at = marked.get(&(p as i32)).copied().unwrap_or(*high);
                            metrics::gauge!(m::JOURNAL_APPLIER_LAG, "partition" => p.to_string())
                                .set((high - at).max(0) as f64);
                        }
                    }
                }
            }
            let Some(n) = partitions else {
                if stopping {
                    return;
                }
                continue;
            };
            // What was acknowledged is held for `mark_delay` before it is marked.
            let acked = store.take_acknowledged();
            if !acked.is_empty() {
                held.push_back((Instant::now(), acked));
            }
            let mut due: BTreeMap<i32, i64> = BTreeMap::new();
            while let Some((at, _)) = held.front() {
                // At a stop the marks not yet due are dropped, not written: the next
                // recovery re-applies a little more, never less than the delay promises.
                if at.elapsed() < journal.settings.mark_delay {
                    break;
                }
                if let Some((_, a)) = held.pop_front() {
                    for (p, o) in a {
                        let e = due.entry(p).or_insert(o);
                        *e = (*e).max(o);
                    }
                }
            }
            let acked = due;
            if !acked.is_empty() {
                let marks: Vec<(String, Mark)> = journal
                    .institutions
                    .iter()
                    .filter_map(|inst| {
                        let p = partition_of(inst, n);
                        acked.get(&p).map(|o| {
                            (
                                inst.clone(),
                                Mark {
                                    partition: p,
                                    offset: *o,
                                },
                            )
                        })
                    })
                    .collect();
                match store.set_marks(&marks, true).await {
                    Ok(()) => marked.extend(acked),
                    Err(e) => {
                        tracing::warn!(error = %e, "journal marks not written; trying again");
                        // Due again at the next tick.
                        let due_now = Instant::now()
                            .checked_sub(journal.settings.mark_delay)
                            .unwrap_or_else(Instant::now);
                        held.push_front((due_now, acked));
                    }
                }
            }
            if stopping {
                return;
            }
        }
    });
}

impl crate::statement::Source for Journal {
    fn day<'a>(
        &'a self,
        scope: &'a crate::statement::Scope,
        day: &'a crate::statement::Day,
    ) -> BoxFuture<'a, Result<crate::statement::DayEvents, String>> {
        async move {
            let institution = match scope {
                crate::statement::Scope::Institution(code) => Some(code.as_str()),
                crate::statement::Scope::Channel(_) => None,
            };
            let w = self
                .window(
                    institution,
                    day.from.timestamp_millis(),
                    day.to.timestamp_millis(),
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok(crate::statement::DayEvents {
                events: w.events,
                opening: w.opening,
                scanned: w.scanned,
            })
        }
        .boxed()
    }
}
