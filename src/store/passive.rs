//! Records of payments forwarded to passive institutions, and the resolver's work queue.
//! Keys: `ipg:{inst}:ppay:<channel>:<ref>` (hash `doc`, `rev`), `ipg:{inst}:ppays` (every
//! forwarded payment by creation time) and `ipg:{inst}:pdoubt` (payments being resolved, by
//! when their next step is due). All three share the institution's hash tag.

use std::time::Duration;

use redis::AsyncCommands;

use super::journal::Event;
use super::{calls, keys, parse, to_json, Lock, Store, StoreError};
use crate::domain::passive::PassivePayment;

/// Result of starting a forwarded payment.
#[derive(Debug)]
pub enum Begin {
    /// Someone else holds the VA lock.
    Locked,
    /// The reference already has a record (the lock is ours).
    Exists(PassivePayment),
    /// Recorded as forwarding (the lock is ours).
    New(PassivePayment),
}

impl Store {
    fn passive_doc(
        key: &str,
        doc: &str,
        rev: Option<String>,
    ) -> Result<PassivePayment, StoreError> {
        let mut p: PassivePayment = parse(key, doc)?;
        p.rev = rev.unwrap_or_default();
        Ok(p)
    }

    /// Takes the VA lock and records `rec` as being forwarded, unless its reference has a
    /// record already (see `lua/passive_begin.lua`).
    ///
    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn passive_begin(
        &self,
        mut rec: PassivePayment,
        lock: &Lock,
        ttl: Duration,
        score_ms: i64,
    ) -> Result<Begin, StoreError> {
        let key = keys::passive_payment(&rec.institution, &rec.channel, &rec.reference);
        let call = calls::PassiveBegin {
            institution: &rec.institution,
            lock: &lock.key,
            record: &key,
            payments: keys::passive_payments(&rec.institution),
            token: &lock.token,
            ttl_ms: ttl.as_millis() as u64,
            doc: to_json(&rec),
            score_ms,
            member: rec.member(),
        };
        let r: Vec<Option<String>> = self.eval(call.eval(&self.scripts.passive_begin)).await?;
        match r.first().and_then(Option::as_deref) {
            Some("locked") => Ok(Begin::Locked),
            Some("exists") => {
                let doc = r.get(1).cloned().flatten().unwrap_or_default();
                let rev = r.get(2).cloned().flatten();
                Ok(Begin::Exists(Self::passive_doc(&key, &doc, rev)?))
            }
            _ => {
                rec.rev = "1".into();
                // Journaled before it is forwarded: a record the institution may act on
                // is never one Redis alone knows.
                self.append(&Event::passive(&rec, 1, score_ms, None))
                    .await?;
                Ok(Begin::New(rec))
            }
        }
    }

    /// Saves `rec` if nobody changed it since it was read, schedules its next resolution
    /// step at `due_ms` (or unschedules it), and releases `unlock` if given. On success
    /// `rec.rev` is the new revision.
    ///
    /// # Errors
    /// Redis unreachable; `Corrupt` if the record changed meanwhile (a lock outlived).
    pub async fn passive_save(
        &self,
        rec: &mut PassivePayment,
        due_ms: Option<i64>,
        unlock: Option<&Lock>,
    ) -> Result<(), StoreError> {
        let key = keys::passive_payment(&rec.institution, &rec.channel, &rec.reference);
        let lock_key = keys::lock(&rec.institution, &rec.va_number);
        let call = calls::PassiveSave {
            institution: &rec.institution,
            record: &key,
            pending: keys::passive_pending(&rec.institution),
            lock: unlock.map_or(lock_key.as_str(), |l| l.key.as_str()),
            payments: keys::passive_payments(&rec.institution),
            doc: to_json(&*rec),
            expected_rev: &rec.rev,
            member: rec.member(),
            due_ms: due_ms.map(|d| d.to_string()).unwrap_or_default(),
            token: unlock.map_or("", |l| l.token.as_str()),
        };
        let r: Vec<String> = self.eval(call.eval(&self.scripts.passive_save)).await?;
        if r.first().map(String::as_str) != Some("ok") {
            return Err(StoreError::Corrupt {
                key,
                reason: "changed by another writer while locked".into(),
            });
        }
        let rev = r.get(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(1);
        rec.rev = rev.to_string();
        // An index score is a ms timestamp (< 2^53), exact through f64.
        let score = r.get(2).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) as i64;
        self.append(&Event::passive(rec, rev, score, due_ms)).await
    }

    /// A forwarded payment's record.
    ///
    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn passive_payment(
        &self,
        inst: &str,
        channel: &str,
        reference: &str,
    ) -> Result<Option<PassivePayment>, StoreError> {
        let key = keys::passive_payment(inst, channel, reference);
        let (doc, rev): (Option<String>, Option<String>) = self
            .plain(redis::cmd("HMGET").arg(&key).arg("doc").arg("rev").clone())
            .await?;
        doc.map(|d| Self::passive_doc(&key, &d, rev)).transpose()
    }

    /// Claims up to `limit` resolution steps due at `now_ms`, each leased for `lease`.
    /// Returns their members (`<channel>:<ref>`).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn passive_claim(
        &self,
        inst: &str,
        now_ms: i64,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let call = calls::PassiveClaim {
            pending: keys::passive_pending(inst),
            now_ms,
            lease_ms: lease.as_millis() as u64,
            limit,
        };
        self.eval(call.eval(&self.scripts.passive_claim)).await
    }

    /// Moves a claimed step to `due_ms` (it stays pending).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn passive_reschedule(
        &self,
        inst: &str,
        member: &str,
        due_ms: i64,
    ) -> Result<(), StoreError> {
        let _: i64 = redis::cmd("ZADD")
            .arg(keys::passive_pending(inst))
            .arg("XX")
            .arg(due_ms)
            .arg(member)
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Drops `member` from the work set (its record is gone).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn passive_unschedule(&self, inst: &str, member: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .conn()
            .zrem(keys::passive_pending(inst), member)
            .await?;
        Ok(())
    }

    /// Payments of `inst` being resolved.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn passive_pending_count(&self, inst: &str) -> Result<u64, StoreError> {
        Ok(self.conn().zcard(keys::passive_pending(inst)).await?)
    }

    /// An institution's forwarded payments, newest first, from `offset`, at most `limit`.
    ///
    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn passive_payments(
        &self,
        inst: &str,
        offset: isize,
        limit: isize,
    ) -> Result<Vec<PassivePayment>, StoreError> {
        let members: Vec<String> = self
            .conn()
            .zrevrange(keys::passive_payments(inst), offset, offset + limit - 1)
            .await?;
        let mut out = Vec::with_capacity(members.len());
        for m in members {
            let Some((channel, reference)) = m.split_once(':') else {
                continue;
            };
            if let Some(p) = self.passive_payment(inst, channel, reference).await? {
                out.push(p);
            }
        }
        Ok(out)
    }
}
