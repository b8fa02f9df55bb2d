//! Applying journal events to Redis, and the per-institution marks of how far that went.
//!
//! Each record of an event is set by its own script (`lua/apply_*.lua`) only if its version
//! is newer: bills by `ver`, payment stages once (they never change), ledger entries by
//! sequence (the balance with the newest), forwarded payments by `rev`, reference bindings
//! with `SET NX`. So applying an event twice, or two events out of order, gives the same
//! Redis. These scripts load themselves (`EVAL` on `NOSCRIPT`): they are what a recovery
//! runs before the request scripts come back (see `Store::eval`).

use redis::Script;

use super::journal::{Event, Mark, Stage};
use super::{calls, keys, Store, StoreError};

pub(super) struct ApplyScripts {
    bill: Script,
    payment: Script,
    ledger: Script,
    passive: Script,
    mark: Script,
}

impl ApplyScripts {
    pub(super) fn new() -> ApplyScripts {
        ApplyScripts {
            bill: Script::new(include_str!("lua/apply_bill.lua")),
            payment: Script::new(include_str!("lua/apply_payment.lua")),
            ledger: Script::new(include_str!("lua/apply_ledger.lua")),
            passive: Script::new(include_str!("lua/apply_passive.lua")),
            mark: Script::new(include_str!("lua/mark.lua")),
        }
    }
}

/// What applying a batch of events changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Events read.
    pub events: u64,
    /// Records that were missing or older in Redis and were set from the journal.
    pub records_set: u64,
    /// Ledger entries the journal puts where Redis holds a different one (never replaced).
    pub conflicts: u64,
}

impl Store {
    /// Applies `events` in one pipeline (see the module). Returns how many records were set.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn apply(&self, events: &[Event]) -> Result<Applied, StoreError> {
        if events.is_empty() {
            return Ok(Applied::default());
        }
        let s = &self.apply;
        // Make sure the apply scripts are known (a Redis that just restarted knows none).
        for script in [&s.bill, &s.payment, &s.ledger, &s.passive] {
            script.prepare_invoke().load_async(&mut self.conn()).await?;
        }
        let mut pipe = redis::pipe();
        let mut counted = 0usize;
        // The windows (docs/retention.md): what is past them is applied as the sweep would
        // have left it, never brought back.
        // Redis's clock, as the sweep and `verify` read it.
        let now_ms = self.redis_time_raw_ms().await?;
        let (hot, forgotten) = (
            self.retention.hot_cutoff(now_ms),
            self.retention.reference_cutoff(now_ms),
        );
        for ev in events {
            let inst = ev.institution.as_str();
            // When the change was committed (an event without a readable time is applied
            // as a recent one).
            let at_ms = chrono::DateTime::parse_from_rfc3339(&ev.time)
                .map_or(now_ms, |t| t.timestamp_millis());
            if let Some(b) = &ev.bill {
                // A bill closed by a payment closed at the payment's time (pay.lua's stamp).
                let closed_ms = ev.payment.as_ref().map_or(at_ms, |p| p.score_ms);
                let closed = b.status != "active" && closed_ms < hot
                    || b.status == "active" && b.valid_until_ms.is_some_and(|u| u < hot);
                let e = calls::ApplyBill {
                    bill: keys::bill(inst, &b.hash),
                    bills: keys::bills(inst),
                    vas: b.va_numbers.iter().map(|va| keys::va(inst, va)).collect(),
                    version: b.version,
                    doc: b.doc.get(),
                    status: &b.status,
                    valid_until_ms: b.valid_until_ms.map(|t| t.to_string()).unwrap_or_default(),
                    hash: &b.hash,
                    created_ms: b.created_ms,
                    retire: if closed { "1" } else { "" },
                    closed_ms,
                    tombstone_until_ms: self.retention.forgotten_at(now_ms),
                };
                pipe.add_command(e.eval(&s.bill).cmd());
                counted += 1;
            }
            // When the payment was made (its `created_at`; a reversal's event carries the
            // reversal's time as its score): the windows count from it.
            if let Some((p, paid)) = ev
                .payment
                .as_ref()
                .map(|p| (p, p.paid_ms()))
                .filter(|(_, paid)| *paid >= forgotten)
            {
                let key = keys::payment(inst, &p.channel, &p.payment_ref_id);
                let doc =
                    serde_json::from_str::<serde_json::Value>(p.doc.get()).unwrap_or_default();
                let text = |f: &str| {
                    doc.get(f)
                        .and_then(|h| h.as_str())
                        .unwrap_or_default()
                        .to_owned()
                };
                let hash = text("bill_hash");
                let e = calls::ApplyPayment {
                    payment: key,
                    bill_payments: keys::bill_payments(inst, &hash),
                    payments: keys::payments(inst),
                    stage: match p.stage {
                        Stage::Paid => "paid",
                        Stage::Reversed => "reversed",
                    },
                    doc: p.doc.get(),
                    answered_bill: ev.answered_bill().unwrap_or_default(),
                    timestamp: &p.timestamp,
                    ledger_seq: p.ledger_seq,
                    // The paid stage's score is its `created_at`; a reversed stage's serves
                    // only the compact record's `paid_ms`.
                    score_ms: paid,
                    retired_until: if paid < hot {
                        self.retention.compact_expiry(paid).to_string()
                    } else {
                        String::new()
                    },
                    id: text("id"),
                    va_number: text("va_number"),
                    amount: doc
                        .get("amount")
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0)
                        .to_string(),
                    bill_hash: hash.clone(),
                };
                pipe.add_command(e.eval(&s.payment).cmd());
                counted += 1;
            }
            if let Some(l) = &ev.ledger {
                if l.seq > 0 {
                    let e = calls::ApplyLedger {
                        ledger: keys::ledger(inst),
                        balance: keys::balance(inst),
                        base: keys::ledger_base(inst),
                        seq: l.seq,
                        entry: l.entry.get(),
                        balance_after: l.balance_after.to_string(),
                        old: if at_ms < hot { "1" } else { "" },
                    };
                    pipe.add_command(e.eval(&s.ledger).cmd());
                    counted += 1;
                }
            }
            if let Some(p) = &ev.passive {
                let expire_at_ms = serde_json::from_str(p.doc.get())
                    .ok()
                    .and_then(|rec| {
                        self.retention
                            .passive_expiry(&rec, p.due_ms.is_some(), now_ms)
                    })
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                let e = calls::ApplyPassive {
                    record: keys::passive_payment(inst, &p.channel, &p.reference),
                    payments: keys::passive_payments(inst),
                    pending: keys::passive_pending(inst),
                    rev: p.rev,
                    doc: p.doc.get(),
                    score_ms: p.score_ms,
                    member: format!("{}:{}", p.channel, p.reference),
                    due_ms: p.due_ms.map(|d| d.to_string()).unwrap_or_default(),
                    expire_at_ms,
                };
                pipe.add_command(e.eval(&s.passive).cmd());
                counted += 1;
            }
            if let Some(b) = ev.binding.as_ref().filter(|_| at_ms >= forgotten) {
                // Its own slot on a cluster: a plain SET NX (the first binding stands), but a
                // reversal's void binding replaces a payment's that left no record, as it
                // did when it was made (Store::void_reference). Either expires at the end of
                // the reference window, counted from the event.
                let until = self.retention.forgotten_at(at_ms);
                let set = pipe
                    .cmd("SET")
                    .arg(keys::reference(&b.channel, &b.reference))
                    .arg(&b.record)
                    .arg("PXAT")
                    .arg(until);
                let void = crate::domain::Binding::is_void(&b.record);
                if !void {
                    set.arg("NX");
                }
                counted += 1;
                if void {
                    pipe.cmd("SET")
                        .arg(keys::void(inst, &b.channel, &b.reference))
                        .arg(&b.record)
                        .arg("PXAT")
                        .arg(until);
                    counted += 1;
                }
            }
        }
        let replies: Vec<redis::Value> = pipe.query_async(&mut self.conn()).await?;
        debug_assert_eq!(replies.len(), counted);
        let records_set = replies
            .iter()
            .filter(|v| matches!(v, redis::Value::Int(1) | redis::Value::Okay))
            .count() as u64;
        let conflicts = replies
            .iter()
            .filter(|v| matches!(v, redis::Value::Int(-1)))
            .count() as u64;
        if conflicts > 0 {
            metrics::counter!(crate::metrics::JOURNAL_CONFLICTS_TOTAL).increment(conflicts);
            tracing::error!(
                conflicts,
                "journal ledger entries found a different entry at their place in Redis: kept \
                 Redis's, run `ipg-switch verify` and reconcile by hand"
            );
        }
        Ok(Applied {
            events: events.len() as u64,
            records_set,
            conflicts,
        })
    }

    /// The journal marks of `institutions` (`None`: never marked).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn journal_marks(
        &self,
        institutions: &[String],
    ) -> Result<Vec<Option<Mark>>, StoreError> {
        let mut pipe = redis::pipe();
        for i in institutions {
            pipe.cmd("HMGET")
                .arg(keys::journal_mark(i))
                .arg("partition")
                .arg("offset");
        }
        let rows: Vec<(Option<i32>, Option<i64>)> = pipe.query_async(&mut self.conn()).await?;
        Ok(rows
            .into_iter()
            .map(|r| match r {
                (Some(partition), Some(offset)) => Some(Mark { partition, offset }),
                _ => None,
            })
            .collect())
    }

    /// Advances marks (never back within a partition). `fenced`: through the request
    /// scripts, so a Redis that lost its memory gets no mark before its recovery (the
    /// applier); otherwise directly (the recovery itself, `restore`).
    ///
    /// # Errors
    /// Redis unreachable, a recovery that failed.
    pub async fn set_marks(
        &self,
        marks: &[(String, Mark)],
        fenced: bool,
    ) -> Result<(), StoreError> {
        for (inst, m) in marks {
            let call = calls::Mark {
                mark: keys::journal_mark(inst),
                partition: m.partition,
                offset: m.offset,
            };
            if fenced {
                let _: i64 = self
                    .eval(call.eval(&self.scripts.mark).institution(inst))
                    .await?;
            } else {
                // Loaded first: a Redis that just restarted knows no script.
                let script = &self.apply.mark;
                script.prepare_invoke().load_async(&mut self.conn()).await?;
                let _: i64 = call
                    .eval(script)
                    .cmd()
                    .query_async(&mut self.conn())
                    .await?;
            }
        }
        Ok(())
    }

    /// Runs a pipeline of reads as it is (no recovery first): `verify`, tests.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn query_raw<T: redis::FromRedisValue>(
        &self,
        pipe: redis::Pipeline,
    ) -> Result<T, StoreError> {
        Ok(pipe.query_async(&mut self.conn()).await?)
    }

    /// How many keys match `pattern` (`SCAN`, never `KEYS`).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn count_keys(&self, pattern: &str) -> Result<u64, StoreError> {
        Ok(self.scan_keys(pattern).await?.len() as u64)
    }

    /// Every key matching `pattern` (`SCAN`, never `KEYS`; on a cluster, every master's).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn scan_keys(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        // A cluster: each master's keyspace in turn (a cursor belongs to one node).
        let nodes = conn.each_node().await?;
        let mut out = Vec::new();
        for node in &nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let (next, keys): (u64, Vec<String>) = conn.on_node(node.as_ref(), &scan).await?;
                out.extend(keys);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(out)
    }

    /// Ledger entries of every institution in Redis.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn count_ledger_entries(&self) -> Result<u64, StoreError> {
        let mut n = 0;
        for k in self.scan_keys("ipg:{*}:ledger").await? {
            let len: u64 = redis::cmd("LLEN")
                .arg(&k)
                .query_async(&mut self.conn())
                .await?;
            n += len;
        }
        Ok(n)
    }
}
