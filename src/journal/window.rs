//! A window's read of the journal (issue 24, docs/journal.md "Reading a day"): what a
//! statement, a reconciliation or any other read of history costs grows with the window
//! asked for, not with the journal's total size.
//!
//! Each partition's first offset at or after `from - margin` is found by a binary search
//! over offsets by the records' own Kafka timestamps (the producer's `CreateTime`): about
//! `log2(n)` one-record fetches per partition. Not `offsets_for_times`: real brokers answer
//! it from their time index, but librdkafka's mock cluster (the tests' broker) answers -1,
//! and the switch must read the same on both. From there each partition is read forward
//! until its first record stamped after `to + margin`, or its high watermark as of the
//! read's start. The margin (`journal.time_margin_ms`) covers events produced late (an
//! append retried while the broker was away) and clocks that disagree between instances:
//! an event stamped more than the margin away from the time it records is outside every
//! window that needs it, and `verify` is what finds it (docs/journal.md).
//!
//! An institution's statement also needs its ledger balance at the day's close. When the
//! window holds no ledger entry the institution made in the window, the balance is the one
//! after its last entry before the window: found by reading the institution's partition
//! backwards from the window's start in steps of `journal.batch` offsets (each twice the
//! last, up to 64 of them) until it has read back past that entry's time by the margin (an
//! old entry journaled again later, by a repeat or a check-status, is stamped late and must
//! not pass for the last), or to the partition's start. That read grows with the distance
//! back to the institution's last entry, which is short for an institution in use.

use std::sync::Arc;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{Journal, JournalError, Quiet, Read};
use crate::metrics as m;
use crate::store::journal::{partition_of, Event};

/// What a window's read gave: its events in journal order per partition, the last ledger
/// entry of the institution asked for before the window (sequence, balance after, rupiah),
/// and how many records were read to find them.
#[derive(Debug, Default)]
pub struct Window {
    pub events: Vec<Event>,
    pub opening: Option<(u64, i64)>,
    pub scanned: u64,
}

impl Journal {
    /// The journal's events stamped in `[from_ms - margin, to_ms + margin]` (ms since the
    /// epoch), from the partition of `institution` when given (and then its last ledger
    /// entry before them), or from every partition.
    ///
    /// # Errors
    /// The journal unreadable or stalled.
    pub async fn window(
        &self,
        institution: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Window, JournalError> {
        let margin = self.settings.time_margin.as_millis() as i64;
        let c = Arc::new(self.reader()?);
        let wm = self.watermarks(&c).await?;
        let n = wm.len() as i32;
        let only = institution.map(|i| partition_of(i, n));
        let mut starts = Vec::with_capacity(wm.len());
        let mut scanned = 0u64;
        for (p, &(low, high)) in wm.iter().enumerate() {
            if only.is_some_and(|o| o != p as i32) {
                starts.push(high);
                continue;
            }
            let (at, probes) = self
                .first_at(&c, p as i32, low, high, from_ms.saturating_sub(margin))
                .await?;
            scanned += probes;
            starts.push(at);
        }
        let mut events = Vec::new();
        let mut read = 0u64;
        self.read_until(
            &starts,
            &wm,
            c.clone(),
            Some(to_ms.saturating_add(margin)),
            &mut |r: &Read| {
                read += 1;
                events.push(r.event.clone());
            },
        )
        .await?;
        scanned += read;
        let mut opening = None;
        // The balance at the close is in the window when it holds one of the institution's
        // ledger entries made in the window itself (from <= time < to): every later entry
        // before the close was appended after it, so is in the window too. An entry made
        // before the window may be in it only as a copy appended again later (a repeat or
        // a check-status journals its payment again, stamped now): it does not count.
        let closes_inside = |inst: &str| {
            events.iter().any(|e| {
                e.institution == inst
                    && e.ledger.as_ref().is_some_and(|l| l.seq > 0)
                    && chrono::DateTime::parse_from_rfc3339(&e.time)
                        .is_ok_and(|t| (from_ms..to_ms).contains(&t.timestamp_millis()))
            })
        };
        if let (Some(inst), Some(p)) = (institution.filter(|i| !closes_inside(i)), only) {
            let (low, _) = wm[p as usize];
            let mut end = starts[p as usize];
            // Steps of `journal.batch` records, doubling up to 64 of them: a quiet
            // institution's last entry far back costs a few fetches more, not one per step.
            let mut step_size = self.settings.batch as i64;
            // The entry with the highest sequence so far (seq, balance, its time in ms), and
            // the oldest stamp read: the search ends once it has read back past the found
            // entry's time by the margin (any entry with a higher sequence was made later,
            // so was stamped later), or at the partition's start.
            let mut best: Option<(u64, i64, i64)> = None;
            let mut oldest = i64::MAX;
            while end > low && best.is_none_or(|(_, _, t)| oldest >= t.saturating_sub(margin)) {
                let begin = end.saturating_sub(step_size).max(low);
                step_size = (step_size * 2).min(self.settings.batch as i64 * 64);
                let mut from: Vec<i64> = wm.iter().map(|(_, high)| *high).collect();
                let mut to = wm.clone();
                from[p as usize] = begin;
                to[p as usize].1 = end;
                let mut step = 0u64;
                self.read_until(&from, &to, c.clone(), None, &mut |r: &Read| {
                    step += 1;
                    oldest = oldest.min(r.timestamp_ms.unwrap_or(i64::MIN));
                    if r.event.institution != inst {
                        return;
                    }
                    let Some(l) = r.event.ledger.as_ref().filter(|l| l.seq > 0) else {
                        return;
                    };
                    if best.is_none_or(|(s, _, _)| l.seq > s) {
                        let t = chrono::DateTime::parse_from_rfc3339(&r.event.time)
                            .map_or(i64::MIN, |t| t.timestamp_millis());
                        best = Some((l.seq, l.balance_after, t));
                    }
                })
                .await?;
                scanned += step;
                end = begin;
            }
            opening = best.map(|(seq, balance, _)| (seq, balance));
        }
        metrics::counter!(m::HISTORY_EVENTS_SCANNED_TOTAL).increment(scanned);
        Ok(Window {
            events,
            opening,
            scanned,
        })
    }

    /// The first offset of partition `p` in `[low, high)` whose record is stamped at or
    /// after `at_ms` (`high` when none is), by binary search; and how many records it
    /// fetched. Timestamps are assumed to grow with offsets up to the margin's slack.
    async fn first_at(
        &self,
        c: &Arc<StreamConsumer>,
        p: i32,
        low: i64,
        high: i64,
        at_ms: i64,
    ) -> Result<(i64, u64), JournalError> {
        let (mut lo, mut hi) = (low, high);
        let mut probes = 0u64;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            probes += 1;
            let (off, ts) = self.stamp_at(c, p, mid).await?;
            if ts < at_ms {
                // Every offset up to the one read is before the window.
                lo = (off.max(mid) + 1).min(hi);
            } else {
                hi = mid;
            }
        }
        Ok((lo, probes))
    }

    /// The offset and timestamp (ms) of the first record of partition `p` at or after
    /// `offset` (which the caller knows exists, below the high watermark).
    async fn stamp_at(
        &self,
        c: &Arc<StreamConsumer>,
        p: i32,
        offset: i64,
    ) -> Result<(i64, i64), JournalError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, p, Offset::Offset(offset))
            .map_err(|e| self.kafka_error(e))?;
        c.assign(&tpl).map_err(|e| self.kafka_error(e))?;
        loop {
            let msg = self.recv(c, 1).await?;
            // A record fetched for an earlier assignment is not this one's.
            if msg.partition() != p || msg.offset() < offset {
                continue;
            }
            let ts = msg.timestamp().to_millis().unwrap_or(i64::MAX);
            return Ok((msg.offset(), ts));
        }
    }

    /// [`Journal::read`] without applying, stopping each partition at its first record
    /// stamped after `until_ms` when given.
    async fn read_until(
        &self,
        starts: &[i64],
        wm: &[(i64, i64)],
        c: Arc<StreamConsumer>,
        until_ms: Option<i64>,
        each: &mut (dyn FnMut(&Read) + Send),
    ) -> Result<u64, JournalError> {
        Ok(self
            .read(starts, wm, c, &mut Quiet, None, until_ms, each)
            .await?
            .0)
    }
}
