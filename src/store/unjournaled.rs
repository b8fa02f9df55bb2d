//! Changes committed in Redis whose journal event is not acknowledged yet: the commit
//! scripts (`lua/pay.lua`, `lua/reverse.lua`, `lua/create.lua`, `lua/update_bill.lua`) list
//! each in `ipg:{I}:unjournaled` (a zset: score the commit time in ms, member the event id
//! without its `<I>:` prefix, e.g. `pay:<channel>:<ref>:paid`, `bill:<hash>:<version>`),
//! and the store takes it off once the broker acknowledged the event. What stays longer
//! than `journal.unjournaled_after_ms` was left by an instance that stopped (or was
//! killed) between its commit and the acknowledgement: `journal::unjournaled` journals it
//! again and announces it (docs/journal.md, "Broker faults").
//!
//! The set holds only changes on their way (about one `mark_interval_ms` of them in steady
//! state, those of an outage while the broker is away): it never grows with history.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::journal::Event;
use super::{keys, Store, StoreError};

/// The acknowledged events still listed, by institution, and whether a background task
/// takes them off in batches (the daemon) or each append does it at once (the CLI).
#[derive(Default)]
pub(super) struct Acknowledged {
    /// Per institution, in the order acknowledged: when, and the listed member.
    by_institution: Mutex<HashMap<String, VecDeque<(Instant, String)>>>,
    batched: AtomicBool,
}

impl Acknowledged {
    /// Notes that `event` was acknowledged, if a commit script listed it.
    pub(super) fn note(&self, event_institution: &str, member: String) {
        if let Ok(mut m) = self.by_institution.lock() {
            m.entry(event_institution.to_owned())
                .or_default()
                .push_back((Instant::now(), member));
        }
    }

    /// Takes, per institution, the members acknowledged at least `hold` ago.
    fn take_older_than(&self, hold: Duration) -> Vec<(String, Vec<String>)> {
        let Ok(mut m) = self.by_institution.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (inst, q) in m.iter_mut() {
            let mut due = Vec::new();
            while q.front().is_some_and(|(at, _)| at.elapsed() >= hold) {
                if let Some((_, member)) = q.pop_front() {
                    due.push(member);
                }
            }
            if !due.is_empty() {
                out.push((inst.clone(), due));
            }
        }
        m.retain(|_, q| !q.is_empty());
        out
    }

    pub(super) fn batched(&self) -> bool {
        self.batched.load(Ordering::Relaxed)
    }
}

/// The member a commit script listed for `event` (its id without `<institution>:`), or
/// `None` for events no script lists (forwarded payments, closed references).
pub(super) fn member_of(event: &Event) -> Option<String> {
    let member = event
        .event_id
        .strip_prefix(event.institution.as_str())?
        .strip_prefix(':')?;
    (member.starts_with("pay:") || member.starts_with("bill:")).then(|| member.to_owned())
}

impl Store {
    /// From now on acknowledged events are taken off the list by
    /// [`Store::forget_acknowledged`] (called every `journal.mark_interval_ms` by the
    /// daemon), not by each append.
    pub fn forget_in_batches(&self) {
        self.journal
            .unjournaled
            .batched
            .store(true, Ordering::Relaxed);
    }

    /// Takes off `ipg:{I}:unjournaled` every change whose event was acknowledged at least
    /// `hold` ago: one `ZREM` per institution. The daemon holds them for twice the append
    /// deadline, the time its door may still take to queue the change's webhook job, so a
    /// process that stops in between leaves the change listed and the sweep announces it.
    ///
    /// # Errors
    /// Redis unreachable (what was taken is lost: the sweep journals those again, harmless).
    pub async fn forget_acknowledged(&self, hold: Duration) -> Result<(), StoreError> {
        let taken = self.journal.unjournaled.take_older_than(hold);
        for (inst, members) in taken {
            self.forget_unjournaled(&inst, &members).await?;
        }
        Ok(())
    }

    /// Takes `members` off the institution's list of unjournaled changes.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn forget_unjournaled(
        &self,
        inst: &str,
        members: &[String],
    ) -> Result<(), StoreError> {
        if members.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(keys::unjournaled(inst)).arg(members);
        let _: i64 = self.plain(cmd).await?;
        Ok(())
    }

    /// At most `limit` changes of the institution listed as unjournaled since before
    /// `before_ms` (ms since the epoch), oldest first, with their scores.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn unjournaled_due(
        &self,
        inst: &str,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut cmd = redis::cmd("ZRANGEBYSCORE");
        cmd.arg(keys::unjournaled(inst))
            .arg("-inf")
            .arg(format!("({before_ms}"))
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(limit);
        let got: Vec<(String, f64)> = self.plain(cmd).await?;
        Ok(got.into_iter().map(|(m, s)| (m, s as i64)).collect())
    }

    /// Claims a listed change for one sweep (`lua/unjournaled_claim.lua`): only if its
    /// score is still `seen_ms` (no other instance claimed it since, and it was not taken
    /// off), it moves to `next_ms`, when it is due again should this sweeper stop first.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn claim_unjournaled(
        &self,
        inst: &str,
        member: &str,
        seen_ms: i64,
        next_ms: i64,
    ) -> Result<bool, StoreError> {
        let claimed: i64 = self
            .eval(
                super::calls::UnjournaledClaim {
                    list: keys::unjournaled(inst),
                    member,
                    seen_ms,
                    next_ms,
                }
                .eval(&self.scripts.unjournaled_claim),
            )
            .await?;
        Ok(claimed == 1)
    }

    /// Redis's own clock (ms since the epoch): the scripts stamp the list with it, so the
    /// sweep's windows never depend on the daemon's clock agreeing with Redis's.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn redis_time_ms(&self) -> Result<i64, StoreError> {
        let (secs, micros): (i64, i64) = self.plain(redis::cmd("TIME")).await?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// Redis's clock as [`Store::redis_time_ms`], read as it is (no probe, no recovery
    /// first): for the recovery itself (`Store::apply`) and `verify`, which must work on a
    /// Redis that lost its scripts.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn redis_time_raw_ms(&self) -> Result<i64, StoreError> {
        let ((secs, micros),): ((i64, i64),) =
            self.query_raw(redis::pipe().cmd("TIME").clone()).await?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// Whether the change `member` (`bill:<hash>:<version>`, `pay:<channel>:<ref>:paid`...)
    /// of `inst` is listed as unjournaled: committed, its journal event not (yet) known to
    /// be acknowledged.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn is_unjournaled(&self, inst: &str, member: &str) -> Result<bool, StoreError> {
        let score: Option<f64> = self
            .plain(
                redis::cmd("ZSCORE")
                    .arg(keys::unjournaled(inst))
                    .arg(member)
                    .clone(),
            )
            .await?;
        Ok(score.is_some())
    }

    /// How many changes of the institution are listed as unjournaled.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn unjournaled_count(&self, inst: &str) -> Result<u64, StoreError> {
        self.plain(redis::cmd("ZCARD").arg(keys::unjournaled(inst)).clone())
            .await
    }
}
