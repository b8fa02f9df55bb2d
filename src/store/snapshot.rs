//! Reading an institution's working set as events, for a snapshot (`journal::snapshot`,
//! docs/retention.md "Snapshots"). Every record is written as the journal event that sets
//! it (the journal's own shape, applied by `Store::apply` like any event), so a snapshot
//! and the journal after it rebuild Redis through one code path, with the same windows:
//!
//! - a bill: a `bill_updated` event at its version, stamped with when it closed (the
//!   sweep's `closed`, or now);
//! - a payment's full record: its `paid` (and `reversed`) stage with the bill as answered,
//!   and its reference's binding; a compact record: the stages as their ids, VA, amount and
//!   ledger sequences (applied as the compact record again, being past the hot window);
//! - a reversal's tombstone: its void binding, with what is left of its lifetime;
//! - a forwarded payment: its record at its revision, index score and due time;
//! - the ledger: first where its head is (`ledger_base` and the balance, as an entry past
//!   the hot window at that sequence), then every entry at its sequence, read with the base
//!   in one script per page (`lua/snapshot_ledger.lua`), so a trim meanwhile shifts
//!   nothing.
//!
//! Reading is fuzzy (records change while it runs); what changed is in the journal after
//! the offsets taken at its start, and applying is idempotent and newest-wins.

use std::collections::HashMap;

use serde_json::value::RawValue;

use super::journal::{
    BillAfter, BindingAfter, Event, EventType, LedgerAfter, PassiveAfter, PaymentAfter, Stage,
};
use super::{calls, keys, Store, StoreError};
use crate::domain::{Amount, Binding};

/// Keys read per `SCAN` page, and ledger entries per script call.
const PAGE: usize = 500;

/// Where a snapshot's reading is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cursor {
    /// Nothing read yet.
    Start,
    /// Scanning the institution's keys from `cursor` on the master of its slot, the server
    /// whose `run_id` was read at the start (a `SCAN` cursor means nothing on another).
    Keys { run_id: String, cursor: u64 },
    /// Reading the ledger from sequence `next`.
    Ledger { next: u64 },
    /// Done.
    Done,
}

fn raw(s: String) -> Box<RawValue> {
    RawValue::from_string(s)
        .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"))
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn event(inst: &str, id: String, kind: EventType, time_ms: i64) -> Event {
    Event {
        event_id: id,
        kind,
        institution: inst.to_owned(),
        time: iso(time_ms),
        bill: None,
        payment: None,
        ledger: None,
        binding: None,
        passive: None,
    }
}

fn binding_of(inst: &str, va: &str, amount: u64) -> Option<String> {
    Some(
        Binding {
            institution: inst.to_owned(),
            va_number: va.to_owned(),
            amount: Amount::new(amount).ok()?,
        }
        .to_record(),
    )
}

impl Store {
    /// Runs `cmd` (an `EVALSHA` of `script`, a read), loading the script on `NOSCRIPT`:
    /// for scripts outside the request path, which a Redis that restarted may not know.
    pub(super) async fn eval_loading<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        cmd: redis::Cmd,
    ) -> Result<T, StoreError> {
        match cmd.query_async(&mut self.conn()).await {
            // On a Redis Cluster the error comes wrapped ("Pipeline failure: [(Index 0,
            // error: NoScript ...)]"), without the NOSCRIPT kind of its own.
            Err(e) if super::is_noscript(&e) || e.to_string().contains("NoScript") => {
                script.prepare_invoke().load_async(&mut self.conn()).await?;
                Ok(cmd.query_async(&mut self.conn()).await?)
            }
            r => Ok(r?),
        }
    }

    /// Takes the lease to snapshot `inst` for `ttl` (`ipg:{I}:snapshot_lease`, `SET NX PX`):
    /// one instance at a time takes an institution's snapshot. The lease's token when it
    /// was taken (give it back with [`Store::release_snapshot_lease`]), `None` when another
    /// instance holds it.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn snapshot_lease(
        &self,
        inst: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, StoreError> {
        let token = uuid::Uuid::new_v4().to_string();
        let taken: Option<String> = self
            .plain(
                redis::cmd("SET")
                    .arg(keys::snapshot_lease(inst))
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis().max(1) as u64)
                    .clone(),
            )
            .await?;
        Ok(taken.map(|_| token))
    }

    /// Gives back the lease `token` took (only if it still holds it), so a snapshot that
    /// failed is tried again by any instance at its next look, not an interval later.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn release_snapshot_lease(&self, inst: &str, token: &str) -> Result<(), StoreError> {
        self.unlock(&keys::snapshot_lease(inst), token).await?;
        Ok(())
    }

    /// The next page of `inst`'s working set as events, from `at` (start with
    /// [`Cursor::Start`]; [`Cursor::Done`] when nothing is left). `now_ms` stamps records
    /// without a time of their own.
    ///
    /// # Errors
    /// Redis unreachable, a corrupt record.
    pub async fn snapshot_page(
        &self,
        inst: &str,
        now_ms: i64,
        at: Cursor,
    ) -> Result<(Vec<Event>, Cursor), StoreError> {
        match at {
            Cursor::Start => {
                let run_id = self.run_id_of(inst).await?;
                Ok((Vec::new(), Cursor::Keys { run_id, cursor: 0 }))
            }
            Cursor::Keys { run_id, cursor } => {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(format!("ipg:{{{inst}}}:*"))
                    .arg("COUNT")
                    .arg(PAGE);
                // All of them share the institution's hash tag: one slot, one master.
                let (next, found): (u64, Vec<String>) = self
                    .conn()
                    .on_master_of(&keys::journal_mark(inst), &scan)
                    .await?;
                // A failover meanwhile (another server behind the slot) voids the cursor:
                // the snapshot is abandoned, never written with keys left out.
                if self.run_id_of(inst).await? != run_id {
                    return Err(StoreError::Unavailable(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "the institution's master changed while its keys were read",
                    ))));
                }
                let events = self.snapshot_keys(inst, now_ms, &found).await?;
                let at = if next == 0 {
                    Cursor::Ledger { next: 1 }
                } else {
                    Cursor::Keys {
                        run_id,
                        cursor: next,
                    }
                };
                Ok((events, at))
            }
            Cursor::Ledger { next } => self.snapshot_ledger(inst, next).await,
            Cursor::Done => Ok((Vec::new(), Cursor::Done)),
        }
    }

    /// The `run_id` of the server holding `inst`'s keys (`INFO server`).
    async fn run_id_of(&self, inst: &str) -> Result<String, StoreError> {
        let info: String = self
            .conn()
            .on_master_of(&keys::journal_mark(inst), redis::cmd("INFO").arg("server"))
            .await?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .unwrap_or_default()
            .trim()
            .to_owned())
    }

    /// The events of the records among `found` (keys of `inst`); keys that are not records
    /// of their own (indexes, VA pointers, locks, marks, the ledger) are left out.
    async fn snapshot_keys(
        &self,
        inst: &str,
        now_ms: i64,
        found: &[String],
    ) -> Result<Vec<Event>, StoreError> {
        let prefix = format!("ipg:{{{inst}}}:");
        let mut wanted: Vec<(&str, &str)> = Vec::new();
        for k in found {
            let Some(rest) = k.strip_prefix(&prefix) else {
                continue;
            };
            for kind in ["bill:", "pay:", "void:", "ppay:"] {
                if rest.starts_with(kind) {
                    wanted.push((k.as_str(), kind));
                }
            }
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (k, kind) in &wanted {
            match *kind {
                "void:" => {
                    pipe.cmd("GET").arg(k).cmd("PTTL").arg(k);
                }
                "pay:" => {
                    pipe.cmd("HGETALL")
                        .arg(k)
                        .cmd("ZSCORE")
                        .arg(keys::payments(inst))
                        .arg(k);
                }
                "ppay:" => {
                    let member = &k[prefix.len() + "ppay:".len()..];
                    pipe.cmd("HGETALL")
                        .arg(k)
                        .cmd("ZSCORE")
                        .arg(keys::passive_payments(inst))
                        .arg(member)
                        .cmd("ZSCORE")
                        .arg(keys::passive_pending(inst))
                        .arg(member);
                }
                "bill:" => {
                    let hash = &k[prefix.len() + "bill:".len()..];
                    pipe.cmd("HGETALL")
                        .arg(k)
                        .cmd("ZSCORE")
                        .arg(keys::bills(inst))
                        .arg(hash);
                }
                _ => {
                    pipe.cmd("HGETALL").arg(k);
                }
            }
        }
        let replies: Vec<redis::Value> = pipe.query_async(&mut self.conn()).await?;
        let mut replies = replies.into_iter();
        let mut next = || replies.next().unwrap_or(redis::Value::Nil);
        let hash = |v: redis::Value| -> HashMap<String, String> {
            redis::from_redis_value(v).unwrap_or_default()
        };
        let score = |v: redis::Value| -> Option<i64> {
            redis::from_redis_value::<Option<f64>>(v)
                .ok()
                .flatten()
                .map(|s| s as i64)
        };
        let reference_ms = self.retention.reference_ms() as i64;
        let corrupt = |key: &str, reason: &str| StoreError::Corrupt {
            key: key.to_owned(),
            reason: format!("{reason}: no snapshot is taken without it"),
        };
        let mut out = Vec::new();
        for (k, kind) in wanted {
            let name = &k[prefix.len() + kind.len()..];
            match kind {
                "bill:" => {
                    let (h, indexed) = (hash(next()), score(next()));
                    let mut e = bill_event(inst, name, &h, now_ms).map_err(|r| corrupt(k, r))?;
                    // Its creation as indexed (create.lua may have made it later than the
                    // doc's whole second): a VA's newest bill stays the newest.
                    if let (Some(b), Some(ms)) = (e.as_mut().and_then(|e| e.bill.as_mut()), indexed)
                    {
                        b.created_ms = b.created_ms.max(ms);
                    }
                    out.extend(e);
                }
                "pay:" => {
                    let (h, indexed) = (hash(next()), score(next()));
                    let Some((channel, reference)) = name.split_once(':') else {
                        continue;
                    };
                    out.extend(
                        payment_events(inst, channel, reference, &h, indexed)
                            .map_err(|r| corrupt(k, r))?,
                    );
                }
                "void:" => {
                    let record: Option<String> = redis::from_redis_value(next()).ok().flatten();
                    let ttl: i64 = redis::from_redis_value(next()).unwrap_or(-1);
                    let (Some(record), Some((channel, reference))) = (record, name.split_once(':'))
                    else {
                        continue;
                    };
                    // The event's time gives back what is left of its lifetime.
                    let at = if ttl > 0 {
                        now_ms + ttl - reference_ms
                    } else {
                        now_ms
                    };
                    let mut e = event(
                        inst,
                        format!("{inst}:void:{name}"),
                        EventType::ReferenceVoided,
                        at,
                    );
                    e.binding = Some(BindingAfter {
                        channel: channel.to_owned(),
                        reference: reference.to_owned(),
                        record,
                    });
                    out.push(e);
                }
                _ => {
                    let (h, indexed, due) = (hash(next()), score(next()), score(next()));
                    let (Some(doc), Some(rev), Some((channel, reference))) = (
                        h.get("doc"),
                        h.get("rev").and_then(|r| r.parse::<u64>().ok()),
                        name.split_once(':'),
                    ) else {
                        continue;
                    };
                    // As the journal has it (with its reference's binding), the document
                    // byte for byte as stored.
                    let mut e =
                        match serde_json::from_str::<crate::domain::passive::PassivePayment>(doc) {
                            Ok(rec) => Event::passive(&rec, rev, indexed.unwrap_or(0), due),
                            Err(_) => event(
                                inst,
                                format!("{inst}:ppay:{name}:{rev}"),
                                EventType::PassiveRecorded,
                                now_ms,
                            ),
                        };
                    e.passive = Some(PassiveAfter {
                        channel: channel.to_owned(),
                        reference: reference.to_owned(),
                        rev,
                        score_ms: indexed.unwrap_or(0),
                        due_ms: due,
                        doc: raw(doc.clone()),
                    });
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    /// The ledger entry at sequence `seq` as stored, if it is still in the list (read with
    /// the ledger's base in one step: `lua/snapshot_ledger.lua`).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn ledger_entry_at(
        &self,
        inst: &str,
        seq: u64,
    ) -> Result<Option<String>, StoreError> {
        let call = calls::SnapshotLedger {
            ledger: keys::ledger(inst),
            base: keys::ledger_base(inst),
            balance: keys::balance(inst),
            from_seq: seq,
            count: 1,
        };
        let (base, _, entries): (String, String, Vec<String>) = self
            .eval_loading(
                &self.retire.snapshot_ledger,
                call.eval(&self.retire.snapshot_ledger).cmd(),
            )
            .await?;
        if base.parse::<u64>().unwrap_or(0) >= seq {
            return Ok(None);
        }
        Ok(entries.into_iter().next().filter(|e| !e.is_empty()))
    }

    /// A page of the ledger from sequence `next`, with where its head is first.
    async fn snapshot_ledger(
        &self,
        inst: &str,
        next: u64,
    ) -> Result<(Vec<Event>, Cursor), StoreError> {
        let call = calls::SnapshotLedger {
            ledger: keys::ledger(inst),
            base: keys::ledger_base(inst),
            balance: keys::balance(inst),
            from_seq: next,
            count: PAGE,
        };
        let (base, balance, entries): (String, String, Vec<String>) = self
            .eval_loading(
                &self.retire.snapshot_ledger,
                call.eval(&self.retire.snapshot_ledger).cmd(),
            )
            .await?;
        let base: u64 = base.parse().unwrap_or(0);
        let from = next.max(base + 1);
        let mut out = Vec::new();
        if next == 1 && base > 0 {
            // Where the head is: an entry past the hot window at the base's sequence moves
            // the base there and sets the balance (the entries after it set it again).
            let mut e = event(
                inst,
                format!("{inst}:ledger:{base}"),
                EventType::PaymentCommitted,
                0,
            );
            e.ledger = Some(LedgerAfter {
                seq: base,
                balance_after: balance.parse().unwrap_or(0),
                entry: raw("{}".into()),
            });
            out.push(e);
        }
        let read = entries.len();
        for (i, entry) in entries.into_iter().enumerate() {
            if entry.is_empty() {
                continue;
            }
            let seq = from + i as u64;
            let v: serde_json::Value = serde_json::from_str(&entry).unwrap_or_default();
            let at = v
                .get("created_at")
                .and_then(|t| t.as_str())
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or(0, |t| t.timestamp_millis());
            let balance_after = v.get("balance_after").and_then(serde_json::Value::as_i64);
            let Some(balance_after) = balance_after else {
                continue;
            };
            let mut e = event(
                inst,
                format!("{inst}:ledger:{seq}"),
                EventType::PaymentCommitted,
                at,
            );
            e.ledger = Some(LedgerAfter {
                seq,
                balance_after,
                entry: raw(entry),
            });
            out.push(e);
        }
        let at = if read < PAGE {
            Cursor::Done
        } else {
            Cursor::Ledger {
                next: from + read as u64,
            }
        };
        Ok((out, at))
    }
}

/// A bill's event: its record at its version, stamped with when the sweep saw it closed.
/// `Ok(None)` for a key gone since the scan; an error for a record that cannot be read (a
/// snapshot never leaves out silently what the journal before its offset holds).
fn bill_event(
    inst: &str,
    hash: &str,
    h: &HashMap<String, String>,
    now_ms: i64,
) -> Result<Option<Event>, &'static str> {
    if h.is_empty() {
        return Ok(None);
    }
    bill_record_event(inst, hash, h, now_ms)
        .map(Some)
        .ok_or("an unreadable bill record")
}

fn bill_record_event(
    inst: &str,
    hash: &str,
    h: &HashMap<String, String>,
    now_ms: i64,
) -> Option<Event> {
    if h.contains_key("gone") {
        // A retired bill's tombstone: a closed bill at its version, closed long ago, which
        // applying turns into the tombstone again.
        let version: u64 = h.get("ver")?.parse().ok()?;
        let mut e = event(
            inst,
            format!("{inst}:bill:{hash}:{version}"),
            EventType::BillUpdated,
            0,
        );
        e.bill = Some(BillAfter {
            hash: hash.to_owned(),
            version,
            status: "revoked".into(),
            valid_until_ms: None,
            created_ms: 0,
            va_numbers: Vec::new(),
            doc: raw("{}".into()),
        });
        return Some(e);
    }
    let (doc, ver, status) = (h.get("doc")?, h.get("ver")?, h.get("status")?);
    let bill: crate::domain::Bill = serde_json::from_str(doc).ok()?;
    let version: u64 = ver.parse().ok()?;
    let closed = (h.get("closed_ver") == Some(ver))
        .then(|| h.get("closed")?.parse::<i64>().ok())
        .flatten();
    let mut e = event(
        inst,
        format!("{inst}:bill:{hash}:{version}"),
        EventType::BillUpdated,
        closed.unwrap_or(now_ms),
    );
    e.bill = Some(BillAfter::of(&bill, raw(doc.clone()), version, status));
    Some(e)
}

/// A payment record's events: each stage and the reference's binding (none for a key gone
/// since the scan); an error for a record that is neither a full nor a compact record.
fn payment_events(
    inst: &str,
    channel: &str,
    reference: &str,
    h: &HashMap<String, String>,
    indexed: Option<i64>,
) -> Result<Vec<Event>, &'static str> {
    let mut out = Vec::new();
    if h.is_empty() {
        return Ok(out);
    }
    let stage = |stage: Stage,
                 doc: String,
                 bill: Option<String>,
                 ts: String,
                 seq: Option<&String>,
                 score_ms: i64| {
        let mut e = event(
            inst,
            format!(
                "{inst}:pay:{channel}:{reference}:{}",
                match stage {
                    Stage::Paid => "paid",
                    Stage::Reversed => "reversed",
                }
            ),
            match stage {
                Stage::Paid => EventType::PaymentCommitted,
                Stage::Reversed => EventType::PaymentReversed,
            },
            score_ms,
        );
        e.payment = Some(PaymentAfter {
            channel: channel.to_owned(),
            payment_ref_id: reference.to_owned(),
            stage,
            doc: raw(doc),
            answered_bill: bill.map(raw),
            timestamp: ts,
            ledger_seq: seq.and_then(|s| s.parse().ok()).unwrap_or(0),
            score_ms,
        });
        e
    };
    let (va, amount);
    if let Some(doc) = h.get("doc") {
        // The full record.
        let v: serde_json::Value =
            serde_json::from_str(doc).map_err(|_| "an unreadable payment document")?;
        va = v
            .get("va_number")
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_owned();
        amount = v
            .get("amount")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let score_ms = indexed.unwrap_or_else(|| {
            v.get("created_at")
                .and_then(|t| t.as_str())
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or(0, |t| t.timestamp_millis())
        });
        let get = |f: &str| h.get(f).cloned().unwrap_or_default();
        out.push(stage(
            Stage::Paid,
            doc.clone(),
            h.get("bill").cloned(),
            get("ts"),
            h.get("lseq"),
            score_ms,
        ));
        if let Some(rev) = h.get("rev_doc") {
            out.push(stage(
                Stage::Reversed,
                rev.clone(),
                h.get("rev_bill").cloned(),
                get("rev_ts"),
                h.get("rev_lseq"),
                score_ms,
            ));
        }
    } else {
        // The compact record: applied as the compact record again.
        let (Some(id), Some(v), Some(a), Some(paid)) = (
            h.get("id"),
            h.get("va_number"),
            h.get("amount").and_then(|a| a.parse::<u64>().ok()),
            h.get("paid_ms").and_then(|p| p.parse::<i64>().ok()),
        ) else {
            return Err("an unreadable compact payment record");
        };
        let doc = serde_json::json!({
            "id": id,
            "va_number": v,
            "amount": a,
            "bill_hash": h.get("bill_hash").cloned().unwrap_or_default(),
        })
        .to_string();
        (va, amount) = (v.clone(), a);
        out.push(stage(
            Stage::Paid,
            doc.clone(),
            None,
            String::new(),
            h.get("lseq"),
            paid,
        ));
        if h.contains_key("rev_lseq") {
            out.push(stage(
                Stage::Reversed,
                doc,
                None,
                String::new(),
                h.get("rev_lseq"),
                paid,
            ));
        }
    }
    if let (Some(record), Some(first)) = (binding_of(inst, &va, amount), out.first_mut()) {
        first.binding = Some(BindingAfter {
            channel: channel.to_owned(),
            reference: reference.to_owned(),
            record,
        });
    }
    Ok(out)
}
