//! The working set (docs/retention.md): Redis holds open bills, the payments of the hot
//! window, the ledger's recent tail and, for the longer reference window, one compact
//! record per payment; everything older is in the journal only. The switch retires records
//! itself, on its own schedule ([`spawn_sweep`], every instance, idempotent), never through
//! Redis's `maxmemory` eviction (a durability risk the store reports, `Durability::of_memory`):
//!
//! - a payment paid longer than `retention.hot_window_ms` ago becomes its compact record
//!   (`lua/retire_payment.lua`), which expires `retention.reference_window_ms` after the
//!   payment, as its reference's binding does (`SET .. PX`, set with the binding);
//! - a closed bill (paid or revoked and seen so for a window, or expired a window ago) with
//!   no payment left in the hot window leaves, and its VA can be billed again
//!   (`lua/retire_bill.lua`);
//! - the ledger's entries older than the window leave its head (`lua/trim_ledger.lua`;
//!   `ipg:{I}:ledger_base` counts them, so sequences go on).
//!
//! Applying the journal follows the same windows (`store::apply`): a recovery or a
//! `restore` never brings back what left.

use std::collections::HashMap;
use std::time::Duration;

use redis::Script;
use serde::Serialize;

use super::{calls, keys, Store, StoreError};
use crate::metrics as m;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// The windows as the store applies them (`[retention]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    hot_ms: i64,
    reference_ms: i64,
}

impl Default for Retention {
    /// The shipped defaults: 35 days hot, 400 days for references.
    fn default() -> Retention {
        Retention {
            hot_ms: 35 * DAY_MS,
            reference_ms: 400 * DAY_MS,
        }
    }
}

impl Retention {
    pub fn new(hot: Duration, reference: Duration) -> Retention {
        Retention {
            hot_ms: hot.as_millis() as i64,
            reference_ms: reference.as_millis().max(hot.as_millis()) as i64,
        }
    }

    /// From the `[retention]` section.
    pub fn of(s: &super::config::RetentionSettings) -> Retention {
        Retention::new(s.hot_window, s.reference_window)
    }

    /// `retention.reference_window_ms`: a binding's and a compact record's lifetime.
    pub fn reference_ms(&self) -> u64 {
        self.reference_ms as u64
    }

    /// The hot window's start at `now_ms` (ms since the epoch): a payment paid, an entry
    /// made or a bill closed before it is past the window.
    pub fn hot_cutoff(&self, now_ms: i64) -> i64 {
        now_ms - self.hot_ms
    }

    /// The reference window's start at `now_ms`: a payment before it has left Redis
    /// altogether, its binding too.
    pub fn reference_cutoff(&self, now_ms: i64) -> i64 {
        now_ms - self.reference_ms
    }

    /// When a payment made at `paid_ms` is forgotten: its binding's expiry (ms since the
    /// epoch; a binding is set at or before the payment).
    pub fn forgotten_at(&self, paid_ms: i64) -> i64 {
        paid_ms.saturating_add(self.reference_ms)
    }

    /// A margin past the reference window (a tenth of it, at most a day): a compact record
    /// outlives its binding by it, so a repeat never finds its own binding without the
    /// record (clocks differ, a binding is set before its payment's time is taken).
    pub fn margin_ms(&self) -> i64 {
        (self.reference_ms / 10).min(DAY_MS)
    }

    /// A compact record's expiry for a payment made at `paid_ms` (ms since the epoch).
    pub fn compact_expiry(&self, paid_ms: i64) -> i64 {
        self.forgotten_at(paid_ms).saturating_add(self.margin_ms())
    }

    /// Whether a forwarded payment has left the hot window at `now_ms`, and if so when its
    /// record expires (ms since the epoch): settled (`PassivePayment::settled`), nothing
    /// `due` for the resolver, created before the window. It then leaves the index of
    /// forwarded payments and expires a reference window (plus the margin) after its last
    /// change, the answer a repeat replays kept that long. `None`: kept and indexed (also
    /// a record whose times are unreadable).
    pub fn passive_expiry(
        &self,
        rec: &crate::domain::passive::PassivePayment,
        due: bool,
        now_ms: i64,
    ) -> Option<i64> {
        let (created, updated) = rec.times_ms()?;
        (rec.settled() && !due && created < self.hot_cutoff(now_ms))
            .then(|| self.compact_expiry(updated))
    }
}

/// A payment past the hot window, as its compact record keeps it: enough to answer a
/// repeat of its reference ("already processed", with the payment's id), a reversal (too
/// late, or already reversed) and a check-status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Retired {
    /// The payment's id (IPG `payment.id`).
    pub id: String,
    pub channel: String,
    pub payment_ref_id: String,
    pub va_number: String,
    /// Rupiah.
    pub amount: u64,
    pub bill_hash: String,
    /// When it was paid (ms since the epoch).
    #[serde(skip)]
    pub paid_ms: i64,
    /// Whether it was reversed.
    #[serde(skip)]
    pub reversed: bool,
}

impl Retired {
    /// From the compact record's fields under the payment key `key`
    /// (`ipg:{I}:pay:<channel>:<ref>`).
    pub(super) fn of(key: &str, m: &HashMap<&str, &str>) -> Result<Retired, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            key: key.into(),
            reason: reason.into(),
        };
        let (channel, reference) = key
            .split_once(":pay:")
            .and_then(|(_, r)| r.split_once(':'))
            .ok_or_else(|| corrupt("not a payment key"))?;
        let get = |f: &str| m.get(f).copied().ok_or_else(|| corrupt(&format!("no {f}")));
        Ok(Retired {
            id: get("id")?.to_owned(),
            channel: channel.to_owned(),
            payment_ref_id: reference.to_owned(),
            va_number: get("va_number")?.to_owned(),
            amount: get("amount")?.parse().map_err(|_| corrupt("bad amount"))?,
            bill_hash: get("bill_hash")?.to_owned(),
            paid_ms: get("paid_ms")?
                .parse()
                .map_err(|_| corrupt("bad paid_ms"))?,
            reversed: m.contains_key("rev_lseq"),
        })
    }

    /// The record as an answer shows it (IPG `data.payment`): id, reference, channel,
    /// amount, VA, bill hash, status (`paid` | `reversed`) and `created_at` (ISO 8601 in
    /// `clock`'s offset).
    pub fn view(&self, clock: &crate::clock::Clock) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        let at = chrono::DateTime::from_timestamp_millis(self.paid_ms)
            .map(|t| clock.stamp(t.fixed_offset()))
            .unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            let status = if self.reversed { "reversed" } else { "paid" };
            o.insert("status".into(), status.into());
            o.insert("created_at".into(), at.into());
        }
        v
    }
}

/// Scripts outside the request path: the sweep's (loaded once per sweep: a Redis that
/// restarted knows none), a snapshot's and a bulk issuance job's (loaded on `NOSCRIPT`,
/// `Store::eval_loading`).
pub(super) struct RetireScripts {
    payment: Script,
    passive: Script,
    bill: Script,
    ledger: Script,
    /// `lua/snapshot_ledger.lua` (store/snapshot.rs).
    pub(super) snapshot_ledger: Script,
    /// `lua/batch_submit.lua` (store/batch.rs).
    pub(super) batch_submit: Script,
    /// `lua/batch_save.lua` (store/batch.rs).
    pub(super) batch_save: Script,
}

impl RetireScripts {
    pub(super) fn new() -> RetireScripts {
        RetireScripts {
            payment: Script::new(include_str!("lua/retire_payment.lua")),
            passive: Script::new(include_str!("lua/retire_passive.lua")),
            bill: Script::new(include_str!("lua/retire_bill.lua")),
            ledger: Script::new(include_str!("lua/trim_ledger.lua")),
            snapshot_ledger: Script::new(include_str!("lua/snapshot_ledger.lua")),
            batch_submit: Script::new(include_str!("lua/batch_submit.lua")),
            batch_save: Script::new(include_str!("lua/batch_save.lua")),
        }
    }
}

/// What one sweep of one institution retired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub payments: u64,
    /// Forwarded payments (passive institutions) out of the index.
    pub forwarded_payments: u64,
    pub bills: u64,
    pub ledger_entries: u64,
}

/// An entry's `created_at` in ms, if it has one.
fn entry_ms(entry: &str) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct At<'a> {
        #[serde(borrow)]
        created_at: std::borrow::Cow<'a, str>,
    }
    let at: At = serde_json::from_str(entry).ok()?;
    chrono::DateTime::parse_from_rfc3339(&at.created_at)
        .ok()
        .map(|t| t.timestamp_millis())
}

impl Store {
    /// The store with these windows (the default: [`Retention::default`]).
    pub fn with_retention(mut self, retention: Retention) -> Store {
        self.retention = retention;
        self
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Loads the sweep's scripts: once per sweep (a Redis that restarted knows none).
    async fn load_retire_scripts(&self) -> Result<(), StoreError> {
        let s = &self.retire;
        // The snapshot's ledger script too: it is also run by eval_loading, which loads it
        // on NOSCRIPT, but a Redis known to have it answers the first snapshot at once.
        for script in [
            &s.payment,
            &s.passive,
            &s.bill,
            &s.ledger,
            &s.snapshot_ledger,
        ] {
            script.prepare_invoke().load_async(&mut self.conn()).await?;
        }
        Ok(())
    }

    /// Up to `batch` members of the zset `index` scored before the hot window at `now_ms`,
    /// from place `from` of that range, with their scores (ms).
    async fn older_than(
        &self,
        index: &str,
        now_ms: i64,
        from: usize,
        batch: usize,
    ) -> Result<Vec<(String, f64)>, StoreError> {
        let cutoff = self.retention.hot_cutoff(now_ms);
        let (page,): (Vec<(String, f64)>,) = redis::pipe()
            .cmd("ZRANGE")
            .arg(index)
            .arg("-inf")
            .arg(format!("({cutoff}"))
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(from)
            .arg(batch)
            .arg("WITHSCORES")
            .query_async(&mut self.conn())
            .await?;
        Ok(page)
    }

    /// Retires up to `batch` of `inst`'s forwarded payments created before the hot window
    /// at `now_ms`, from place `from` of that part of their index: the settled ones with
    /// nothing due leave the index and expire with the reference window
    /// (`lua/retire_passive.lua`); one still being resolved stays. Returns how many were
    /// retired and where the next sweep goes on (0: the end was reached, start again).
    ///
    /// # Errors
    /// Redis unreachable.
    async fn retire_passives(
        &self,
        inst: &str,
        now_ms: i64,
        from: usize,
        batch: usize,
    ) -> Result<(u64, usize), StoreError> {
        let index = keys::passive_payments(inst);
        let due = self.older_than(&index, now_ms, from, batch).await?;
        if due.is_empty() {
            return Ok((0, 0));
        }
        let mut read = redis::pipe();
        for (member, _) in &due {
            let (channel, reference) = member.split_once(':').unwrap_or((member, ""));
            read.cmd("HMGET")
                .arg(keys::passive_payment(inst, channel, reference))
                .arg("doc")
                .arg("rev");
        }
        let rows: Vec<(Option<String>, Option<String>)> =
            read.query_async(&mut self.conn()).await?;
        let mut pipe = redis::pipe();
        let mut sent = 0usize;
        for ((member, _), (doc, rev)) in due.iter().zip(rows) {
            let rec = doc.as_deref().and_then(|d| {
                serde_json::from_str::<crate::domain::passive::PassivePayment>(d).ok()
            });
            // No record: the script takes the member off. A record still being resolved,
            // or unreadable, stays where it is.
            let expire_at_ms = match (&rec, &rev) {
                (None, None) => 0,
                (Some(rec), Some(_)) => match self.retention.passive_expiry(rec, false, now_ms) {
                    Some(t) => t,
                    None => continue,
                },
                _ => continue,
            };
            let (channel, reference) = member.split_once(':').unwrap_or((member, ""));
            let call = calls::RetirePassive {
                record: keys::passive_payment(inst, channel, reference),
                payments: index.clone(),
                pending: keys::passive_pending(inst),
                rev: rev.unwrap_or_default(),
                member: member.clone(),
                expire_at_ms,
            };
            pipe.add_command(call.eval(&self.retire.passive).cmd());
            sent += 1;
        }
        let (retired, left) = if sent == 0 {
            (0, 0)
        } else {
            let done: Vec<i64> = pipe.query_async(&mut self.conn()).await?;
            (
                done.iter().filter(|d| **d == 1).count() as u64,
                done.iter().filter(|d| **d != 0).count(),
            )
        };
        let next = if due.len() < batch {
            0
        } else {
            from + due.len() - left
        };
        Ok((retired, next))
    }

    /// Retires up to `batch` of `inst`'s payments paid before the hot window at `now_ms`
    /// (`lua/retire_payment.lua`). Returns how many.
    ///
    /// # Errors
    /// Redis unreachable.
    async fn retire_payments(
        &self,
        inst: &str,
        now_ms: i64,
        batch: usize,
    ) -> Result<u64, StoreError> {
        let index = keys::payments(inst);
        let due = self.older_than(&index, now_ms, 0, batch).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let mut read = redis::pipe();
        for (key, _) in &due {
            read.cmd("HMGET")
                .arg(key)
                .arg("doc")
                .arg("lseq")
                .arg("rev_lseq");
        }
        let rows: Vec<(Option<String>, Option<String>, Option<String>)> =
            read.query_async(&mut self.conn()).await?;
        let mut pipe = redis::pipe();
        for ((key, score), (doc, lseq, rev_lseq)) in due.iter().zip(rows) {
            let doc: serde_json::Value = doc
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default();
            let text = |f: &str| doc.get(f).and_then(|v| v.as_str()).unwrap_or_default();
            let paid_ms = *score as i64;
            let call = calls::RetirePayment {
                payment: key.clone(),
                payments: index.clone(),
                bill_payments: keys::bill_payments(inst, text("bill_hash")),
                lseq: lseq.unwrap_or_default(),
                rev_lseq: rev_lseq.unwrap_or_default(),
                id: text("id").to_owned(),
                va_number: text("va_number").to_owned(),
                amount: doc
                    .get("amount")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0)
                    .to_string(),
                bill_hash: text("bill_hash").to_owned(),
                paid_ms,
                expire_at_ms: self.retention.compact_expiry(paid_ms),
            };
            pipe.add_command(call.eval(&self.retire.payment).cmd());
        }
        let done: Vec<i64> = pipe.query_async(&mut self.conn()).await?;
        Ok(done.iter().filter(|d| **d == 1).count() as u64)
    }

    /// Takes `inst`'s ledger entries older than the hot window at `now_ms` off the ledger's
    /// head, up to `batch` (`lua/trim_ledger.lua`). Returns how many.
    ///
    /// # Errors
    /// Redis unreachable.
    async fn trim_ledger(&self, inst: &str, now_ms: i64, batch: usize) -> Result<u64, StoreError> {
        let cutoff = self.retention.hot_cutoff(now_ms);
        let (ledger, base) = (keys::ledger(inst), keys::ledger_base(inst));
        let (read, head): (Option<u64>, Vec<String>) = redis::pipe()
            .cmd("GET")
            .arg(&base)
            .cmd("LRANGE")
            .arg(&ledger)
            .arg(0)
            .arg(batch.saturating_sub(1))
            .query_async(&mut self.conn())
            .await?;
        // Entries are in commit order: the old ones are a prefix. An empty place (an entry
        // the journal has not re-applied yet) ends it.
        let count = head
            .iter()
            .take_while(|e| entry_ms(e).is_some_and(|t| t < cutoff))
            .count();
        if count == 0 {
            return Ok(0);
        }
        let call = calls::TrimLedger {
            ledger,
            base,
            base_read: read.unwrap_or(0),
            count,
        };
        let n: u64 = call
            .eval(&self.retire.ledger)
            .cmd()
            .query_async(&mut self.conn())
            .await?;
        Ok(n)
    }

    /// Examines up to `batch` of `inst`'s bills created before the hot window at `now_ms`,
    /// from place `from` of that part of the bill index, and retires the closed ones
    /// (`lua/retire_bill.lua`). Returns how many were retired and where the next sweep goes
    /// on (0: the end was reached, start again).
    ///
    /// # Errors
    /// Redis unreachable.
    async fn retire_bills(
        &self,
        inst: &str,
        now_ms: i64,
        from: usize,
        batch: usize,
    ) -> Result<(u64, usize), StoreError> {
        let cutoff = self.retention.hot_cutoff(now_ms);
        let index = keys::bills(inst);
        let hashes: Vec<String> = (self.older_than(&index, now_ms, from, batch).await?)
            .into_iter()
            .map(|(h, _)| h)
            .collect();
        if hashes.is_empty() {
            return Ok((0, 0));
        }
        let mut read = redis::pipe();
        for h in &hashes {
            read.cmd("HMGET")
                .arg(keys::bill(inst, h))
                .arg("ver")
                .arg("status")
                .arg("until")
                .arg("doc");
        }
        type Row = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = read.query_async(&mut self.conn()).await?;
        let mut pipe = redis::pipe();
        let mut sent = 0usize;
        for (h, (ver, status, until, doc)) in hashes.iter().zip(rows) {
            let open = status.as_deref() == Some("active")
                && until
                    .as_deref()
                    .and_then(|u| u.parse::<i64>().ok())
                    .is_none_or(|u| u >= cutoff);
            if open && ver.is_some() {
                continue;
            }
            let vas = doc
                .as_deref()
                .and_then(|d| serde_json::from_str::<crate::domain::Bill>(d).ok())
                .map(|b| {
                    (b.prefixes.iter())
                        .filter(|_| b.va_number.len() > 6)
                        .map(|p| keys::va(inst, &format!("{p}{}", &b.va_number[6..])))
                        .collect()
                })
                .unwrap_or_default();
            let call = calls::RetireBill {
                bill: keys::bill(inst, h),
                bills: index.clone(),
                bill_payments: keys::bill_payments(inst, h),
                vas,
                version: ver.unwrap_or_default(),
                hash: h.clone(),
                now_ms,
                cutoff_ms: cutoff,
                tombstone_until_ms: self.retention.forgotten_at(now_ms),
            };
            pipe.add_command(call.eval(&self.retire.bill).cmd());
            sent += 1;
        }
        // 1: retired; -1: an index member without a bill, taken off (both leave the index).
        let (retired, left) = if sent == 0 {
            (0, 0)
        } else {
            let done: Vec<i64> = pipe.query_async(&mut self.conn()).await?;
            (
                done.iter().filter(|d| **d == 1).count() as u64,
                done.iter().filter(|d| **d != 0).count(),
            )
        };
        let next = if hashes.len() < batch {
            0
        } else {
            from + hashes.len() - left
        };
        Ok((retired, next))
    }

    /// One sweep of `inst`: payments, forwarded payments (from `at.passives`), bills (from
    /// `at.bills`), then the ledger, each batch after batch while a whole batch left and
    /// `budget` lasts (a busy institution's day is more than one batch).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn sweep_retention(
        &self,
        inst: &str,
        now_ms: i64,
        at: &mut SweepCursor,
        batch: usize,
        budget: Duration,
    ) -> Result<Swept, StoreError> {
        self.load_retire_scripts().await?;
        let started = std::time::Instant::now();
        let more = |n: u64| n as usize >= batch && started.elapsed() < budget;
        let mut swept = Swept::default();
        loop {
            let n = self.retire_payments(inst, now_ms, batch).await?;
            swept.payments += n;
            if !more(n) {
                break;
            }
        }
        loop {
            let (n, next) = self
                .retire_passives(inst, now_ms, at.passives, batch)
                .await?;
            swept.forwarded_payments += n;
            at.passives = next;
            if next == 0 || started.elapsed() >= budget {
                break;
            }
        }
        loop {
            let (n, next) = self.retire_bills(inst, now_ms, at.bills, batch).await?;
            swept.bills += n;
            at.bills = next;
            if next == 0 || started.elapsed() >= budget {
                break;
            }
        }
        loop {
            let n = self.trim_ledger(inst, now_ms, batch).await?;
            swept.ledger_entries += n;
            if !more(n) {
                break;
            }
        }
        Ok(swept)
    }
}

/// Where an institution's sweep goes on in the index parts whose old members may stay
/// (open bills, forwarded payments still being resolved): places from the start of the
/// part before the hot window; 0 starts again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepCursor {
    pub bills: usize,
    pub passives: usize,
}

/// The working set as it stands: records per kind (every institution's), an estimate of
/// their bytes (`MEMORY USAGE` of a sample of each kind times the count), and Redis's
/// keys and used memory over every master.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkingSet {
    /// `(kind, records, estimated bytes)` for `bill`, `payment` (in the hot window) and
    /// `ledger_entry`.
    pub kinds: Vec<(&'static str, u64, u64)>,
    pub keys: u64,
    pub used_memory: u64,
}

/// Records of each kind sampled for their size.
const SAMPLE: usize = 8;

impl Store {
    /// Measures the working set of `institutions` (see [`WorkingSet`]): a few commands per
    /// institution and per master, whatever the history.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn working_set(&self, institutions: &[String]) -> Result<WorkingSet, StoreError> {
        let (mut bills, mut payments, mut entries) = ((0, 0), (0, 0), (0, 0));
        for inst in institutions {
            let (nb, np, nl, sb, sp): (u64, u64, u64, Vec<String>, Vec<String>) = redis::pipe()
                .cmd("ZCARD")
                .arg(keys::bills(inst))
                .cmd("ZCARD")
                .arg(keys::payments(inst))
                .cmd("LLEN")
                .arg(keys::ledger(inst))
                .cmd("ZRANDMEMBER")
                .arg(keys::bills(inst))
                .arg(SAMPLE)
                .cmd("ZRANDMEMBER")
                .arg(keys::payments(inst))
                .arg(SAMPLE)
                .query_async(&mut self.conn())
                .await?;
            let mut usage = redis::pipe();
            for h in &sb {
                usage.cmd("MEMORY").arg("USAGE").arg(keys::bill(inst, h));
            }
            for k in &sp {
                usage.cmd("MEMORY").arg("USAGE").arg(k);
            }
            usage.cmd("MEMORY").arg("USAGE").arg(keys::ledger(inst));
            let sizes: Vec<Option<u64>> = usage.query_async(&mut self.conn()).await?;
            let avg = |s: &[Option<u64>]| {
                let known: Vec<u64> = s.iter().flatten().copied().collect();
                known.iter().sum::<u64>() / (known.len() as u64).max(1)
            };
            let (b, rest) = sizes.split_at(sb.len());
            let (p, l) = rest.split_at(sp.len());
            bills = (bills.0 + nb, bills.1 + avg(b) * nb);
            payments = (payments.0 + np, payments.1 + avg(p) * np);
            entries = (entries.0 + nl, entries.1 + l.iter().flatten().sum::<u64>());
        }
        let conn = self.conn();
        let (mut keys_total, mut used) = (0u64, 0u64);
        for node in conn.each_node().await? {
            let n: u64 = conn.on_node(node.as_ref(), &redis::cmd("DBSIZE")).await?;
            let info: String = conn
                .on_node(node.as_ref(), redis::cmd("INFO").arg("memory"))
                .await?;
            keys_total += n;
            used += info
                .lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok(WorkingSet {
            kinds: vec![
                ("bill", bills.0, bills.1),
                ("payment", payments.0, payments.1),
                ("ledger_entry", entries.0, entries.1),
            ],
            keys: keys_total,
            used_memory: used,
        })
    }
}

/// Publishes a [`WorkingSet`] as gauges.
fn publish(w: &WorkingSet) {
    for (kind, n, bytes) in &w.kinds {
        metrics::gauge!(m::REDIS_RECORDS, "kind" => *kind).set(*n as f64);
        metrics::gauge!(m::REDIS_RECORD_BYTES, "kind" => *kind).set(*bytes as f64);
    }
    metrics::gauge!(m::REDIS_KEYS).set(w.keys as f64);
    metrics::gauge!(m::REDIS_USED_MEMORY_BYTES).set(w.used_memory as f64);
}

/// Runs the retention sweep until `stop`: every `interval`, each institution of
/// `institutions` in turn, by Redis's clock (`TIME`: every instance sweeps by the same
/// clock, and two sweeping at once retire each record once). Counts
/// `ipg_retention_retired_total{kind}` and measures the working set after each sweep
/// (`ipg_redis_records`, `ipg_redis_record_bytes`, `ipg_redis_keys`,
/// `ipg_redis_used_memory_bytes`).
pub fn spawn_sweep(
    store: Store,
    institutions: Vec<String>,
    interval: Duration,
    batch: usize,
    stop: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cursors: HashMap<String, SweepCursor> = HashMap::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = match store.redis_time_ms().await {
                Ok(now) => now,
                Err(e) => {
                    tracing::warn!(error = %e, "retention sweep: cannot read Redis's clock");
                    continue;
                }
            };
            for inst in &institutions {
                if stop.is_cancelled() {
                    return;
                }
                let from = cursors.entry(inst.clone()).or_default();
                match store
                    .sweep_retention(inst, now, from, batch, interval / 2)
                    .await
                {
                    Ok(s) => {
                        for (kind, n) in [
                            ("payment", s.payments),
                            ("forwarded_payment", s.forwarded_payments),
                            ("bill", s.bills),
                            ("ledger_entry", s.ledger_entries),
                        ] {
                            if n > 0 {
                                metrics::counter!(m::RETENTION_RETIRED_TOTAL, "kind" => kind)
                                    .increment(n);
                            }
                        }
                        if s != Swept::default() {
                            tracing::info!(institution = %inst, payments = s.payments, forwarded_payments = s.forwarded_payments, bills = s.bills, ledger_entries = s.ledger_entries, "retention sweep: records past the hot window left Redis (they stay in the journal)");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(institution = %inst, error = %e, "retention sweep failed; tried again next time");
                    }
                }
            }
            match store.working_set(&institutions).await {
                Ok(w) => publish(&w),
                Err(e) => tracing::debug!(error = %e, "working set not measured"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_times_are_read_from_created_at() {
        let e = r#"{"id":"p:payment","amount":5,"created_at":"2026-01-02T07:00:00+07:00","balance_after":5}"#;
        assert_eq!(entry_ms(e), Some(1_767_312_000_000));
        assert_eq!(entry_ms(""), None);
        assert_eq!(entry_ms("{}"), None);
    }

    #[test]
    fn a_compact_record_names_its_reference() {
        let m: HashMap<&str, &str> = [
            ("id", "P1"),
            ("va_number", "8888010000000001"),
            ("amount", "9223372036854775807"),
            ("bill_hash", "h"),
            ("paid_ms", "1000"),
            ("lseq", "3"),
            ("rev_lseq", "4"),
        ]
        .into_iter()
        .collect();
        let r = Retired::of("ipg:{SCH}:pay:BANK:ref:with:colons", &m).unwrap();
        assert_eq!(r.channel, "BANK");
        assert_eq!(r.payment_ref_id, "ref:with:colons");
        assert_eq!(r.amount, i64::MAX as u64);
        assert!(r.reversed);
        let short: HashMap<&str, &str> = [("id", "P1")].into_iter().collect();
        assert!(Retired::of("ipg:{SCH}:pay:BANK:r", &short).is_err());
    }
}
