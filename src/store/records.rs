//! Hosted records: bills, payments and their idempotency bindings, the institution's ledger
//! and balance; read, committed (`lua/pay.lua`, `lua/reverse.lua`, `lua/create.lua`,
//! `lua/update_bill.lua`) and journaled.

use redis::AsyncCommands;
use serde_json::Value;

use super::*;

impl Store {
    pub(super) fn versioned_bill(
        key: &str,
        doc: Option<String>,
        ver: Option<String>,
    ) -> Result<Option<Versioned<Bill>>, StoreError> {
        match (doc, ver) {
            (Some(doc), Some(version)) => Ok(Some(Versioned {
                value: parse(key, &doc)?,
                version,
                doc,
            })),
            _ => Ok(None),
        }
    }

    pub(super) fn payment_record(
        key: &str,
        fields: Vec<String>,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        if fields.is_empty() {
            return Ok(None);
        }
        let mut m = std::collections::HashMap::new();
        for kv in fields.chunks(2) {
            if let [k, v] = kv {
                m.insert(k.as_str(), v.as_str());
            }
        }
        if !m.contains_key("doc") && m.contains_key("id") {
            return Err(StoreError::Retired(Box::new(Retired::of(key, &m)?)));
        }
        let get = |f: &str| {
            m.get(f).copied().ok_or_else(|| StoreError::Corrupt {
                key: key.into(),
                reason: format!("no {f}"),
            })
        };
        let recorded = |doc: &str, bill: &str, ts: &str| -> Result<Recorded, StoreError> {
            Ok(Recorded {
                payment: parse(key, get(doc)?)?,
                payment_json: parse(key, get(doc)?)?,
                bill: parse(key, get(bill)?)?,
                timestamp: get(ts)?.to_owned(),
            })
        };
        let reversed = if m.contains_key("rev_doc") {
            Some(recorded("rev_doc", "rev_bill", "rev_ts")?)
        } else {
            None
        };
        Ok(Some(PaymentRecord {
            paid: recorded("doc", "bill", "ts")?,
            reversed,
        }))
    }

    /// The bill a VA points to, whatever its status.
    ///
    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn bill_by_va(
        &self,
        inst: &str,
        va: &str,
    ) -> Result<Option<Versioned<Bill>>, StoreError> {
        let va_key = keys::va(inst, va);
        let (doc, ver, _): (Option<String>, Option<String>, Vec<String>) =
            self.eval(self.read_va(inst, &va_key, None)).await?;
        Self::versioned_bill(&va_key, doc, ver)
    }

    /// `lua/read_va.lua`: the bill the VA index `va_key` points to and, with `pkey`, the
    /// payment record under it, in one script call.
    pub(super) fn read_va<'a>(&'a self, inst: &str, va_key: &str, pkey: Option<&str>) -> Eval<'a> {
        calls::ReadVa {
            institution: inst,
            va: va_key,
            payment: pkey,
            bill_prefix: keys::bill_prefix(inst),
        }
        .eval(&self.scripts.read_va)
    }

    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn bill(
        &self,
        inst: &str,
        hash: &str,
    ) -> Result<Option<Versioned<Bill>>, StoreError> {
        let key = keys::bill(inst, hash);
        let (doc, ver): (Option<String>, Option<String>) = self
            .plain(redis::cmd("HMGET").arg(&key).arg("doc").arg("ver").clone())
            .await?;
        Self::versioned_bill(&key, doc, ver)
    }

    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn payment(
        &self,
        inst: &str,
        channel: &str,
        reference: &str,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        let key = keys::payment(inst, channel, reference);
        let fields: Vec<String> = self.plain(redis::cmd("HGETALL").arg(&key).clone()).await?;
        Self::payment_record(&key, fields)
    }

    /// The payment record under `(channel, reference)`, read by a script that checks the
    /// institution's journal mark first (`lua/read_va.lua`): a Redis that lost its data is
    /// rebuilt from the journal before this answers, so a "no such payment" from it can be
    /// acted on (a reversal closes the reference on it).
    ///
    /// # Errors
    /// Redis unreachable, corrupt record, a recovery that failed.
    pub async fn payment_checked(
        &self,
        inst: &str,
        va: &str,
        channel: &str,
        reference: &str,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        let va_key = keys::va(inst, va);
        let pkey = keys::payment(inst, channel, reference);
        let (_, _, pay): (Option<String>, Option<String>, Vec<String>) =
            self.eval(self.read_va(inst, &va_key, Some(&pkey))).await?;
        Self::payment_record(&pkey, pay)
    }

    /// Commits a payment, optimistically: see `lua/pay.lua`. Nothing is written (but the
    /// reference's binding, when `p.binding` asks for it) unless the VA still points at
    /// `p.bill` at its version with the expected document, no other attempt holds the VA
    /// lock and the payment is new.
    ///
    /// # Errors
    /// Redis unreachable, a corrupt record in the reply, the journal (see [`Store::eval`]).
    pub async fn commit_payment(&self, mut p: NewPayment<'_>) -> Result<Paid, StoreError> {
        // On a Redis Cluster the binding has a slot of its own, which the commit script
        // cannot touch: it is bound first, in a round trip of its own.
        if let (Some(binding), true) = (p.binding, self.is_cluster()) {
            let earlier = self
                .bind(&p.payment.channel, &p.payment.payment_ref_id, binding)
                .await?;
            // A void binding (a reversal came first) is left to the script, which replays a
            // payment already made and refuses a new one by the tombstone it checks.
            if let Some(other) = earlier.filter(|e| e != binding && !Binding::is_void(e)) {
                return Ok(Paid::RefConflict(other));
            }
            p.binding = None;
        }
        // The record's keys, for the replies that carry a record (not on the hot path).
        let (inst, payment) = (p.inst, p.payment);
        let pkey = || keys::payment(inst, &payment.channel, &payment.payment_ref_id);
        let (r, stored) = self.commit(journal::Stage::Paid, p).await?;
        let mut r = r.into_iter();
        let word = text(r.next()).unwrap_or_default();
        Ok(match (word.as_str(), stored) {
            ("ok", Some((doc, version))) => Paid::Done(Versioned {
                value: (),
                version: version.to_string(),
                doc,
            }),
            ("ref_conflict", _) => Paid::RefConflict(text(r.next()).unwrap_or_default()),
            ("dup", _) => {
                let fields = r
                    .next()
                    .and_then(|v| redis::from_redis_value::<Vec<String>>(v).ok())
                    .unwrap_or_default();
                Paid::Replay(Self::payment_record(&pkey(), fields)?.ok_or_else(|| {
                    StoreError::Corrupt {
                        key: pkey(),
                        reason: "a duplicate without fields".into(),
                    }
                })?)
            }
            ("locked", _) => Paid::Locked,
            ("stale", _) => Paid::Stale(Self::versioned_bill(
                &keys::va(inst, &payment.va_number),
                text(r.next()),
                text(r.next()),
            )?),
            ("balance_refused", _) => Paid::BalanceRefused(text(r.next()).unwrap_or_default()),
            (other, _) => {
                return Err(StoreError::Corrupt {
                    key: pkey(),
                    reason: format!("pay.lua answered {other:?}"),
                })
            }
        })
    }

    /// Commits a reversal: see `lua/reverse.lua` (same keys and arguments as a payment).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn commit_reversal(&self, p: NewPayment<'_>) -> Result<Commit, StoreError> {
        let (r, _) = self.commit(journal::Stage::Reversed, p).await?;
        let words: Vec<String> = r.into_iter().filter_map(|v| text(Some(v))).collect();
        Ok(verdict(&words))
    }

    /// Runs pay.lua (in its institution's next group: store/group.rs) or reverse.lua and,
    /// when it committed, journals what it committed (the
    /// bill after it, the payment stage, the ledger entry with the sequence and balance the
    /// script gave), returning once the journal has it. The script's reply, as it came,
    /// and, when it committed, the bill's new document as sent and its new version.
    pub(super) async fn commit(
        &self,
        stage: journal::Stage,
        p: NewPayment<'_>,
    ) -> Result<(Vec<redis::Value>, Option<(String, u64)>), StoreError> {
        let script = match stage {
            journal::Stage::Paid => &self.scripts.pay,
            journal::Stage::Reversed => &self.scripts.reverse,
        };
        // Serialized once: the same bytes go to Redis and into the journal event.
        let payment_doc = p.payment_doc.to_owned();
        let ledger_doc = p.ledger_entry.get();
        let next_doc = match p.next_doc {
            Some(doc) => doc.to_owned(),
            None => raw_json(p.next_bill)?,
        };
        let payment_key = keys::payment(p.inst, &p.payment.channel, &p.payment.payment_ref_id);
        let call = calls::Commit {
            institution: p.inst,
            bill: keys::bill(p.inst, &p.bill.value.hash),
            payment: payment_key.clone(),
            bill_payments: keys::bill_payments(p.inst, &p.bill.value.hash),
            payments: keys::payments(p.inst),
            ledger: keys::ledger(p.inst),
            balance: keys::balance(p.inst),
            // Always a key of the institution's slot (Redis Cluster): the VA's lock, released
            // only when the caller passed its token and holds it (payments).
            lock: p.lock.map_or_else(
                || keys::lock(p.inst, &p.payment.va_number),
                |l| l.key.clone(),
            ),
            va: keys::va(p.inst, &p.payment.va_number),
            // A payment's group (pay_group.lua) reads nine keys each: without a binding
            // to set, the payment key stands in (never touched then).
            reference: match (p.binding, stage) {
                (Some(_), _) => Some(keys::reference(
                    &p.payment.channel,
                    &p.payment.payment_ref_id,
                )),
                (None, journal::Stage::Paid) => Some(payment_key),
                (None, journal::Stage::Reversed) => None,
            },
            expected_version: &p.bill.version,
            next_doc: next_doc.get(),
            next_status: status_str(p.next_bill),
            payment_doc: payment_doc.get(),
            // pay.lua stores the new bill doc as the answered bill when this is ''.
            answered_bill: match (stage, p.next_doc) {
                (journal::Stage::Paid, Some(_)) => "",
                _ => p.answered_bill,
            },
            timestamp: p.timestamp,
            ledger_entry_open: journal::entry_open(ledger_doc),
            amount: p.payment.amount.get(),
            score_ms: p.score_ms,
            lock_token: p.lock.map_or("", |l| l.token.as_str()),
            expected_hash: &p.bill.value.hash,
            bill_prefix: keys::bill_prefix(p.inst),
            binding: p.binding.unwrap_or(""),
            // A payment commits only if Redis still holds the very document it was
            // computed from ([`Versioned::doc`]); a reversal checks the version only.
            expected_doc: match stage {
                journal::Stage::Paid => p.bill.doc.as_str(),
                journal::Stage::Reversed => "",
            },
            binding_ttl_ms: self.retention.reference_ms(),
        }
        .eval(script);
        let r: Vec<redis::Value> = match stage {
            // With the payments of its institution in flight beside it (store/group.rs).
            journal::Stage::Paid => {
                let member = group::Member {
                    keys: call.keys,
                    args: call.args,
                };
                self.group_commit(p.inst, member).await?
            }
            journal::Stage::Reversed => self.eval(call).await?,
        };
        if text(r.first().cloned()).as_deref() != Some("ok") {
            return Ok((r, None));
        }
        // The scripts add one to the bill's version.
        let version = p.bill.version.parse::<u64>().unwrap_or(0) + 1;
        let stored = Some((next_doc.get().to_owned(), version));
        if !self.journaled() {
            return Ok((r, stored));
        }
        fault_after_commit();
        let balance = text(r.get(2).cloned()).unwrap_or_else(|| "0".into());
        let seq = text(r.get(1).cloned())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        let event = journal::Event::committed(
            stage,
            &p,
            journal::Committed {
                payment_doc,
                next_doc,
                version,
                ledger_doc,
                seq,
                balance: &balance,
            },
        )?;
        self.append(&event).await?;
        Ok((r, stored))
    }

    /// Stores a new bill and points each of its VAs at it, unless a VA already has a
    /// payable bill (`Commit::Occupied`) or the hash is taken (`Commit::Already`).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn create_bill(&self, bill: &Bill, now_ms: i64) -> Result<Commit, StoreError> {
        let inst = &bill.institution_code;
        let doc = to_json(bill);
        let call = calls::CreateBill {
            institution: inst,
            bill: keys::bill(inst, &bill.hash),
            bills: keys::bills(inst),
            vas: (bill.prefixes.iter())
                .map(|p| keys::va(inst, &format!("{p}{}", &bill.va_number[6..])))
                .collect(),
            doc: &doc,
            bill_prefix: keys::bill_prefix(inst),
            now_ms,
            valid_until_ms: (bill.valid_until)
                .map(|t| t.timestamp_millis().to_string())
                .unwrap_or_default(),
            hash: &bill.hash,
            created_ms: bill.created_at.timestamp_millis(),
        };
        let r: Vec<String> = self.eval(call.eval(&self.scripts.create)).await?;
        let v = verdict(&r);
        if v == Commit::Done {
            let time = bill
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
            let mut ev = journal::Event::bill(
                journal::EventType::BillCreated,
                bill,
                doc,
                1,
                status_str(bill),
                time,
            );
            // The creation as indexed: later than the VA's earlier bills (create.lua).
            if let (Some(b), Some(score)) = (
                ev.bill.as_mut(),
                r.get(1).and_then(|s| s.parse::<i64>().ok()),
            ) {
                b.created_ms = score;
            }
            self.append(&ev).await?;
        }
        Ok(v)
    }

    /// Replaces a bill if its version still matches.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn update_bill(
        &self,
        old: &Versioned<Bill>,
        next: &Bill,
        time: String,
    ) -> Result<Commit, StoreError> {
        let doc = to_json(next);
        let call = calls::UpdateBill {
            institution: &next.institution_code,
            bill: keys::bill(&next.institution_code, &next.hash),
            expected_version: &old.version,
            doc: &doc,
            status: status_str(next),
            closed_ms: chrono::DateTime::parse_from_rfc3339(&time).map_or_else(
                |_| chrono::Utc::now().timestamp_millis(),
                |t| t.timestamp_millis(),
            ),
        };
        let r: Vec<String> = self.eval(call.eval(&self.scripts.update_bill)).await?;
        let v = verdict(&r);
        if v == Commit::Done {
            let version = r.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
            let ev = journal::Event::bill(
                journal::EventType::BillUpdated,
                next,
                doc,
                version,
                status_str(next),
                time,
            );
            self.append(&ev).await?;
        }
        Ok(v)
    }

    /// One round trip for the start of a payment: bind `(channel, reference)` to `binding`
    /// (returning any earlier binding), take the VA lock (or take back our own), and read
    /// the bill and the payment record under it.
    ///
    /// # Errors
    /// Redis unreachable, corrupt record.
    #[allow(clippy::too_many_arguments)]
    pub async fn claim_lock_read(
        &self,
        inst: &str,
        va: &str,
        channel: &str,
        reference: &str,
        binding: &str,
        lock: &Lock,
        ttl: Duration,
    ) -> Result<(Option<String>, LockRead), StoreError> {
        let claim = self.bind_call(channel, reference, binding).cmd();
        // Take the lock and read under it in one script (lua/lock_read.lua): one script
        // call on the hot path, not two.
        let va_key = keys::va(inst, va);
        let pkey = keys::payment(inst, channel, reference);
        let mut pipe = redis::pipe();
        // Two scripts: on a Redis that lost its memory neither runs (NOSCRIPT), so nothing
        // is bound or locked there before the recovery. On a cluster the binding's slot and
        // the institution's may be on two masters (two round trips, sent together), and
        // one may run while the other answers NOSCRIPT: the retry after the recovery is
        // the same attempt (its own binding, its own lock), so that changes nothing.
        pipe.add_command(claim).add_command(
            calls::LockRead {
                institution: inst,
                lock: &lock.key,
                va: &va_key,
                payment: &pkey,
                token: &lock.token,
                ttl_ms: ttl.as_millis() as u64,
                bill_prefix: keys::bill_prefix(inst),
            }
            .eval(&self.scripts.lock_read)
            .cmd(),
        );
        let (claimed, (verdict, doc, ver, pay)): (
            Option<String>,
            (String, Option<String>, Option<String>, Vec<String>),
        ) = self.query_with_scripts(&pipe).await?;
        if verdict != "ok" {
            return Ok((claimed, LockRead::Locked));
        }
        Ok((
            claimed,
            LockRead::Acquired(
                Self::versioned_bill(&va_key, doc, ver)?,
                Self::payment_record(&pkey, pay)?,
            ),
        ))
    }

    /// The first round trip of an optimistic payment without a cached bill: the reference
    /// bound (`SET NX GET`, returning any earlier binding: a refused payment spends its
    /// reference too), then the bill the VA points to and the payment record under
    /// `(channel, reference)`, read in the same round trip. No lock is taken. On a Redis
    /// Cluster the binding's slot is its own: two commands sent together.
    ///
    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn claim_read(
        &self,
        inst: &str,
        va: &str,
        channel: &str,
        reference: &str,
        binding: &str,
    ) -> Result<
        (
            Option<String>,
            Option<Versioned<Bill>>,
            Option<PaymentRecord>,
        ),
        StoreError,
    > {
        let va_key = keys::va(inst, va);
        let pkey = keys::payment(inst, channel, reference);
        let mut pipe = redis::pipe();
        pipe.add_command(self.bind_call(channel, reference, binding).cmd())
            .add_command(self.read_va(inst, &va_key, Some(&pkey)).cmd());
        let (claimed, (doc, ver, pay)): (
            Option<String>,
            (Option<String>, Option<String>, Vec<String>),
        ) = self.query_with_scripts(&pipe).await?;
        Ok((
            claimed,
            Self::versioned_bill(&va_key, doc, ver)?,
            Self::payment_record(&pkey, pay)?,
        ))
    }

    /// Binds `(channel, reference)` to `binding` (`<institution>|<va>|<amount>`) unless it
    /// is bound already: the earlier binding, or `None` when this one is new. One script
    /// call on the reference's own slot (`lua/bind.lua`).
    ///
    /// # Errors
    /// Redis unreachable, a recovery that failed (see [`Store::eval`]).
    pub async fn bind(
        &self,
        channel: &str,
        reference: &str,
        binding: &str,
    ) -> Result<Option<String>, StoreError> {
        self.eval(self.bind_call(channel, reference, binding)).await
    }

    /// `SET NX GET` of a reference binding (Redis >= 7.0, `lua/bind.lua`): binds if new,
    /// returns the earlier binding otherwise.
    pub(super) fn bind_call(&self, channel: &str, reference: &str, binding: &str) -> Eval<'_> {
        calls::Bind {
            reference: keys::reference(channel, reference),
            binding,
            ttl_ms: self.retention.reference_ms(),
        }
        .eval(&self.scripts.bind)
    }

    /// # Errors
    /// Redis unreachable.
    pub async fn reference(
        &self,
        channel: &str,
        reference: &str,
    ) -> Result<Option<String>, StoreError> {
        self.plain(
            redis::cmd("GET")
                .arg(keys::reference(channel, reference))
                .clone(),
        )
        .await
    }

    /// The institution's ledger balance (sum of credits minus debits).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn balance(&self, inst: &str) -> Result<i64, StoreError> {
        let v: Option<i64> = self.conn().get(keys::balance(inst)).await?;
        Ok(v.unwrap_or(0))
    }

    /// The institution's ledger entries, oldest first.
    ///
    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn ledger(&self, inst: &str) -> Result<Vec<Value>, StoreError> {
        let key = keys::ledger(inst);
        let raw: Vec<String> = self.conn().lrange(&key, 0, -1).await?;
        // An empty entry holds the place of one the journal has not re-applied yet.
        raw.iter()
            .filter(|s| !s.is_empty())
            .map(|s| parse(&key, s))
            .collect()
    }

    /// Closes `(channel, reference)` for a reversal of `inst` that found no payment there,
    /// and journals it before the bank is answered (decision 9). `void` is
    /// [`Binding::void_record`] of the reversal's VA and amount. The caller holds the VA
    /// lock, so no payment of this VA commits meanwhile. A binding of a payment of this
    /// institution and VA that left no record (refused, or not yet committed) is replaced;
    /// an earlier void stands; a binding of another VA's payment is left alone (that
    /// reference is spent anyway). Closing it again journals the same event again.
    ///
    /// # Errors
    /// Redis unreachable, the journal append failed.
    pub async fn void_reference(
        &self,
        inst: &str,
        channel: &str,
        reference: &str,
        void: &str,
        time: String,
    ) -> Result<(), StoreError> {
        let stands = match self.bind(channel, reference, void).await? {
            None => void.to_owned(),
            Some(earlier) if Binding::is_void(&earlier) => earlier,
            Some(earlier) => {
                let ours = match (Binding::parse(&earlier), Binding::parse_void(void)) {
                    (Some(b), Some(v)) => {
                        b.institution == v.institution && b.va_number == v.va_number
                    }
                    _ => false,
                };
                if !ours {
                    return Ok(());
                }
                let _: () = self
                    .plain(
                        redis::cmd("SET")
                            .arg(keys::reference(channel, reference))
                            .arg(void)
                            .arg("PX")
                            .arg(self.retention.reference_ms())
                            .clone(),
                    )
                    .await?;
                void.to_owned()
            }
        };
        // The tombstone in the institution's slot, which every hosted commit checks in its
        // own atomic step (on a Redis Cluster the binding's slot is out of its reach).
        let _: () = self
            .plain(
                redis::cmd("SET")
                    .arg(keys::void(inst, channel, reference))
                    .arg(&stands)
                    .arg("PX")
                    .arg(self.retention.reference_ms())
                    .clone(),
            )
            .await?;
        self.append(&journal::Event::voided(
            inst, channel, reference, &stands, time,
        ))
        .await
    }
}
