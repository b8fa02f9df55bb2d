//! Hosted bills (IPG's Active Client API): the bills live in Redis and the switch answers
//! inquiries, payments, reversals and status checks itself, under the rules of
//! `domain::bill`. Institutions create and revoke their bills here too.
//!
//! Money moves only in one script that checks the bill it was computed from is still the
//! one Redis holds (its VA, its version, its very document) and that no other attempt
//! holds the VA lock: optimistically after an inquiry, under the lock after a lost race;
//! so neither two instances nor two prefixes of one bill can overpay it, and a repeated
//! `(channel, reference)` replays its first answer and pays nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::{Amount, Bill, NewBill, Payment, PaymentState, Shown, VaNumber};
use crate::error::{Rc, SwitchError};
use crate::lock::{self, Owner};
use crate::metrics as m;
use crate::protocol::webhook::{WebhookJob, PAYMENT_RECEIVED, PAYMENT_REVERSAL};
use crate::routing::Institution;
use crate::store::journal::Stage;
use crate::store::{
    keys, Commit, Lock, LockRead, NewPayment, Paid, PaymentRecord, Recorded, Store, StoreError,
    Versioned,
};

/// A ledger entry's direction: a payment credits the institution, its reversal debits it.
#[derive(Clone, Copy)]
enum Entry {
    Credit,
    Debit,
}

impl Entry {
    fn mutation_type(self) -> &'static str {
        match self {
            Entry::Credit => "credit",
            Entry::Debit => "debit",
        }
    }
}

/// How often a compare-and-set may lose to a concurrent writer before the message is
/// retried later as a whole.
const CAS_ATTEMPTS: usize = 8;

pub use crate::domain::{Binding, Outcome, QueuedWebhook};

fn queued(event: &'static str, bill_hash: &str, job: String) -> Option<QueuedWebhook> {
    Some(QueuedWebhook {
        key: bill_hash.to_owned(),
        event,
        job,
    })
}

/// Inputs of a payment, as the channel sent them.
pub struct PayInput<'a> {
    pub channel: &'a str,
    pub ref_id: &'a str,
    /// Parsed once, before any rule runs (a whole positive number of rupiah).
    pub amount: Amount,
    pub terminal_id: Option<&'a str>,
    pub transaction_date: Option<&'a str>,
    pub customer_name: Option<&'a str>,
    /// The attempt serving this request: it owns the VA lock it takes.
    pub owner: &'a Owner,
}

/// What [`Hosted::issue`] did with a bill body.
#[derive(Clone, Debug, PartialEq)]
pub enum Issued {
    /// Created now.
    Created(Bill),
    /// Issued before by the same request: nothing created.
    Existing(Bill),
    /// Valid and would be created (a dry run; the bill has no hash).
    Valid(Bill),
}

impl Issued {
    pub fn bill(&self) -> &Bill {
        match self {
            Issued::Created(b) | Issued::Existing(b) | Issued::Valid(b) => b,
        }
    }

    /// `created`, `existing` or `valid`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Issued::Created(_) => "created",
            Issued::Existing(_) => "existing",
            Issued::Valid(_) => "valid",
        }
    }
}

#[derive(Clone)]
pub struct Hosted {
    pub store: Store,
    pub clock: Clock,
    pub lock_ttl: Duration,
    pub lock_wait: Duration,
    /// The bill last seen for each VA: see [`BillCache`].
    pub bills: BillCache,
}

/// The bill last seen for each VA (by its inquiry, or by the payment this instance
/// committed), kept to let the payment that follows an inquiry commit in one Redis round
/// trip (issue 15). A hint, never an answer: inquiries always read Redis, and a payment
/// commits only if the VA still points at this bill at this version with this very
/// document (`lua/pay.lua`), so a stale entry costs a round trip, never a wrong payment; a
/// rule that refuses a cached bill is checked again on a fresh read. On a Redis Cluster the
/// reference's binding has a slot of its own, so a cached payment there takes two round
/// trips (bind, then commit) and saves the read, not the round trip. `switch.bill_cache`
/// entries at most (about 2 KB each; beyond that quick_cache evicts by its CLOCK-Pro
/// policy, keeping the bills used recently and often); 0 keeps none.
#[derive(Clone)]
pub struct BillCache(Option<Arc<quick_cache::sync::Cache<String, Arc<Versioned<Bill>>>>>);

impl BillCache {
    /// A cache of at most `entries` bills (0: none).
    pub fn new(entries: usize) -> BillCache {
        BillCache((entries > 0).then(|| Arc::new(quick_cache::sync::Cache::new(entries))))
    }

    fn key(inst: &str, va: &VaNumber) -> String {
        [inst, "|", va.as_str()].concat()
    }

    fn get(&self, inst: &str, va: &VaNumber) -> Option<Arc<Versioned<Bill>>> {
        self.0.as_ref()?.get(&Self::key(inst, va))
    }

    fn put(&self, inst: &str, va: &VaNumber, bill: Arc<Versioned<Bill>>) {
        if let Some(c) = &self.0 {
            c.insert(Self::key(inst, va), bill);
        }
    }

    fn forget(&self, inst: &str, va: &VaNumber) {
        if let Some(c) = &self.0 {
            c.remove(&Self::key(inst, va));
        }
    }
}

/// A bill with its payment, as payment, reversal and check-status answer it.
fn bill_with_payment(bill: &Bill, payment: &Payment) -> Shown {
    Shown::Payment {
        bill: crate::domain::Json::of(bill),
        payment_json: crate::domain::Json::of(payment),
        payment: Box::new(payment.clone()),
    }
}

fn new_id() -> String {
    Uuid::new_v4().to_string()
}

/// Redis would not move an institution's balance: past the int64 range it keeps (the
/// amount is refused, nothing was written) or a balance key that is not an integer (a bug
/// or a hand edit).
fn balance_refused(inst: &str, why: &str) -> SwitchError {
    if why.contains("overflow") {
        SwitchError::Bill(
            crate::domain::BillError::Amount(format!(
                "the ledger balance of {inst} would leave the range the switch keeps \
                 (-{max} to {max} rupiah); nothing was paid",
                max = i64::MAX
            )),
            None,
        )
    } else {
        SwitchError::Internal(format!("the ledger balance of {inst} cannot move: {why}"))
    }
}

/// A payment `bill` refused by its rule (`apply_payment`): the refusal with the bill as
/// it stands, viewed through `va`, for the answer's data.
fn payment_refused(
    e: crate::domain::BillError,
    bill: &Bill,
    now: chrono::DateTime<chrono::FixedOffset>,
    va: &VaNumber,
) -> SwitchError {
    SwitchError::Bill(e, Some(Box::new(bill.view(now, Some(va.as_str())))))
}

/// A ledger entry as stored (the commit script appends its `balance_after`): an
/// account mutation of IPG's Get Account Mutations, in this field order.
#[derive(serde::Serialize)]
struct LedgerEntry<'a> {
    /// `<payment id>:credit` or `<payment id>:debit`.
    id: String,
    mutation_type: &'a str,
    /// Rupiah.
    amount: Amount,
    payment_id: &'a str,
    payment_ref_id: &'a str,
    channel: &'a str,
    va_number: &'a str,
    bill_hash: &'a str,
    /// ISO 8601 in the switch's offset.
    created_at: String,
}

/// What a payment's or reversal's commit script is given, from what [`Hosted::prepare`]
/// made (no lock, binding or expected document: a payment sets its own).
fn commit_input<'a>(
    inst: &'a Institution,
    bill: &'a Versioned<Bill>,
    next: &'a Bill,
    prepared: &'a (Recorded, bool, Box<serde_json::value::RawValue>),
    now: chrono::DateTime<chrono::FixedOffset>,
) -> NewPayment<'a> {
    let (recorded, answered_is_next, ledger) = prepared;
    NewPayment {
        inst: &inst.code,
        bill,
        next_bill: next,
        next_doc: answered_is_next.then_some(&*recorded.bill.0),
        payment: &recorded.payment,
        payment_doc: &recorded.payment_json.0,
        answered_bill: recorded.bill.get(),
        timestamp: &recorded.timestamp,
        ledger_entry: ledger,
        score_ms: now.timestamp_millis(),
        lock: None,
        binding: None,
    }
}

/// An 8-character bill hash like IPG's (`x24da1dF`).
fn new_hash() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let bytes = Uuid::new_v4().into_bytes();
    bytes[..8]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

impl Hosted {
    /// The refusal of a payment whose reference is bound to `earlier`. A reversal's void
    /// binding is journaled again first (same event id), so that a refusal never stands on
    /// a void only Redis holds (its reversal's append may have failed).
    async fn reference_taken(&self, inst: &str, p: &PayInput<'_>, earlier: &str) -> SwitchError {
        // Only a void of this institution is this institution's to journal again.
        if Binding::parse_void(earlier).is_some_and(|v| v.institution == inst) {
            let now = self.clock.stamp_now();
            if let Err(e) = self
                .store
                .void_reference(inst, p.channel, p.ref_id, earlier, now)
                .await
            {
                return e.into();
            }
        }
        SwitchError::reference_taken(p.ref_id, earlier)
    }

    /// Holds the VA lock around `f`, released by its owner only (compare-and-delete).
    async fn locked<T>(
        &self,
        inst: &str,
        va: &VaNumber,
        token: &str,
        f: impl std::future::Future<Output = Result<T, SwitchError>>,
    ) -> Result<T, SwitchError> {
        let key = keys::lock(inst, va.as_str());
        lock::take(self.lock_wait, || async {
            Ok(self
                .store
                .try_lock(&key, token, self.lock_ttl)
                .await?
                .then_some(()))
        })
        .await?;
        let result = f.await;
        if let Err(e) = self.store.unlock(&key, token).await {
            // The TTL frees it; the work itself is already committed or refused.
            tracing::warn!(va = %va.masked(), error = %e, "could not release VA lock");
        }
        result
    }

    /// # Errors
    /// Not found, not payable (with the bill as data), Redis unavailable.
    pub async fn inquiry(&self, inst: &Institution, va: &VaNumber) -> Result<Outcome, SwitchError> {
        let Some(bill) = self.store.bill_by_va(&inst.code, va.as_str()).await? else {
            return Err(SwitchError::BillNotFound);
        };
        // The payment that follows an inquiry starts from this bill (one round trip).
        let bill = Arc::new(bill);
        self.bills.put(&inst.code, va, bill.clone());
        let now = self.clock.now();
        let view = Box::new(bill.value.view(now, Some(va.as_str())));
        if let Err(e) = bill.value.check_payable(now) {
            return Err(SwitchError::Bill(e, Some(view)));
        }
        Ok(Outcome {
            rc: Rc::Success,
            message: "success".into(),
            timestamp: self.clock.stamp(now),
            shown: Shown::Bill(view),
            webhook: None,
        })
    }

    /// # Errors
    /// Bad amount, reference reused for another transaction, bill not found or not payable,
    /// amount against the bill's rule, Redis unavailable.
    ///
    /// Optimistic first (issue 15): without the VA lock, from the bill cached by the VA's
    /// inquiry (one Redis round trip on one Redis) or a read of it (two), one commit script
    /// that writes only if the VA still points at that bill at that version and nobody
    /// holds the lock. If it lost to a concurrent change or found the VA locked, the
    /// payment is made under the VA lock, as before.
    ///
    /// A repeat of a payment past the hot window is answered from its compact record
    /// (`SwitchError::AlreadyProcessed`, docs/retention.md), never paid again.
    pub async fn pay(
        &self,
        inst: &Institution,
        va: &VaNumber,
        p: PayInput<'_>,
    ) -> Result<Outcome, SwitchError> {
        let (amount, ref_id, token) = (p.amount, p.ref_id, p.owner.token().to_owned());
        match self.pay_hot(inst, va, p).await {
            Err(SwitchError::Store(StoreError::Retired(r))) => {
                // Found under the lock or by the commit: the lock, if this attempt took
                // it on the way, is released (only by its own token).
                let lock = Lock {
                    key: keys::lock(&inst.code, va.as_str()),
                    token,
                };
                self.release(&lock).await;
                if r.va_number != va.as_str() || r.amount != amount.get() {
                    return Err(SwitchError::ReferenceConflict(ref_id.to_owned()));
                }
                metrics::counter!(m::DUPLICATES_TOTAL, "type" => "payment").increment(1);
                let view = r.view(&self.clock);
                Err(SwitchError::AlreadyProcessed(r, view))
            }
            other => other,
        }
    }

    async fn pay_hot(
        &self,
        inst: &Institution,
        va: &VaNumber,
        p: PayInput<'_>,
    ) -> Result<Outcome, SwitchError> {
        let amount = p.amount;
        let bind = Binding::new(&inst.code, va, amount).to_record();
        let lock = Lock {
            key: keys::lock(&inst.code, va.as_str()),
            token: p.owner.token().to_owned(),
        };
        // An attempt that went for the lock before (a retry) may hold it: it goes on under
        // it, and the lock is released on every way out.
        if !p.owner.may_hold_lock() {
            if let Some(outcome) = self.pay_optimistic(inst, va, &p, &bind, &lock).await? {
                return Ok(outcome);
            }
        }
        p.owner.going_for_lock();
        let (bill, rec) = lock::take(self.lock_wait, || async {
            let started = Instant::now();
            // One round trip: bind the reference, take the lock, read under it. Binding
            // again after a wait is a no-op (SET NX GET finds our own binding).
            let (claimed, read) = self
                .store
                .claim_lock_read(
                    &inst.code,
                    va.as_str(),
                    p.channel,
                    p.ref_id,
                    &bind,
                    &lock,
                    self.lock_ttl,
                )
                .await?;
            m::stage(m::Stage::Redis).record(started.elapsed().as_secs_f64());
            // A void binding with the payment recorded (a Redis rebuilt after a reversal
            // closed it) is replayed, not refused; while the VA is locked, wait to know.
            let recorded = matches!(read, LockRead::Acquired(_, Some(_)));
            let locked = matches!(read, LockRead::Locked);
            if let Some(earlier) = claimed
                .filter(|c| c.as_str() != bind && !(Binding::is_void(c) && (recorded || locked)))
            {
                if matches!(read, LockRead::Acquired(..)) {
                    self.release(&lock).await;
                }
                return Err(self.reference_taken(&inst.code, &p, &earlier).await);
            }
            Ok(match read {
                LockRead::Acquired(bill, rec) => Some((bill, rec)),
                LockRead::Locked => None,
            })
        })
        .await?;
        match self
            .pay_locked(inst, va, amount, &p, bill, rec, &lock)
            .await
        {
            // The commit script released the lock with the payment.
            Ok((outcome, true)) => Ok(outcome),
            other => {
                self.release(&lock).await;
                other.map(|(o, _)| o)
            }
        }
    }

    /// One payment attempt without the VA lock. `None` when it cannot decide alone: it
    /// lost to a concurrent change of the bill, found the VA locked by another attempt,
    /// or a rule refused a cached (maybe stale) bill; the caller pays under the lock.
    async fn pay_optimistic(
        &self,
        inst: &Institution,
        va: &VaNumber,
        p: &PayInput<'_>,
        bind: &str,
        lock: &Lock,
    ) -> Result<Option<Outcome>, SwitchError> {
        // A cached bill commits in one round trip, the commit binding the reference (two
        // on a Redis Cluster, where the binding's slot is its own: see
        // `Store::commit_payment`). Without one, the reference is bound and the bill read
        // in one round trip first. `fresh`: the bill was just read (and the reference
        // bound).
        let (bill, fresh) = match self.bills.get(&inst.code, va) {
            Some(bill) => (bill, false),
            None => {
                let t = Instant::now();
                let (claimed, bill, rec) = self
                    .store
                    .claim_read(&inst.code, va.as_str(), p.channel, p.ref_id, bind)
                    .await?;
                m::stage(m::Stage::Redis).record(t.elapsed().as_secs_f64());
                if let Some(earlier) = claimed
                    .filter(|c| c.as_str() != bind && !(Binding::is_void(c) && rec.is_some()))
                {
                    return Err(self.reference_taken(&inst.code, p, &earlier).await);
                }
                if let Some(rec) = rec {
                    return self.replay_payment(inst, rec, va, p.amount).await.map(Some);
                }
                let Some(bill) = bill else {
                    return Err(SwitchError::BillNotFound);
                };
                (Arc::new(bill), true)
            }
        };
        let now = self.clock.now();
        let next = match bill.value.apply_payment(p.amount, now) {
            Ok(next) => next,
            // A refusal is only ever decided on what Redis holds now.
            Err(_) if !fresh => {
                self.bills.forget(&inst.code, va);
                return Ok(None);
            }
            Err(e) => return Err(payment_refused(e, &bill.value, now, va)),
        };
        // The commit binds the reference (a no-op when this attempt bound it just before)
        // wherever the script can reach the binding's key, that is on one Redis: a reversal
        // that closed the reference in between (decision 9) is then seen atomically.
        let binding = (!fresh || !self.store.is_cluster()).then_some(bind);
        let (verdict, recorded) = self
            .commit_payment(inst, va, p, &bill, &next, now, lock, binding)
            .await?;
        match verdict {
            Paid::Done(stored) => Ok(Some(self.committed(inst, p, va, next, stored, recorded))),
            Paid::Replay(rec) => self.replay_payment(inst, rec, va, p.amount).await.map(Some),
            Paid::RefConflict(earlier) => Err(self.reference_taken(&inst.code, p, &earlier).await),
            Paid::BalanceRefused(why) => Err(balance_refused(&inst.code, &why)),
            Paid::Stale(current) => {
                metrics::counter!(m::CAS_CONFLICTS_TOTAL).increment(1);
                // The next payment of this VA starts from what Redis holds now.
                match current {
                    Some(b) => self.bills.put(&inst.code, va, Arc::new(b)),
                    None => self.bills.forget(&inst.code, va),
                }
                Ok(None)
            }
            Paid::Locked => Ok(None),
        }
    }

    /// The payment record of a payment of `p` on `next` (the bill after it).
    fn new_payment(
        &self,
        inst: &Institution,
        va: &VaNumber,
        p: &PayInput<'_>,
        next: &Bill,
        now: chrono::DateTime<chrono::FixedOffset>,
    ) -> Payment {
        Payment {
            id: new_id(),
            payment_ref_id: p.ref_id.to_owned(),
            channel: p.channel.to_owned(),
            amount: p.amount,
            payment_type: "payment".into(),
            status: PaymentState::Paid,
            va_number: va.to_string(),
            bill_hash: next.hash.clone(),
            institution_code: inst.code.clone(),
            terminal_id: p.terminal_id.map(str::to_owned),
            customer_name: p.customer_name.map(str::to_owned),
            transaction_date: p.transaction_date.map(str::to_owned),
            created_at: now,
            reversed_at: None,
        }
    }

    /// After a payment's commit (`Paid::Done`: `next` stored at `stored`'s version as its
    /// document): counts its rupiah, caches the bill for the VA's next payment, and answers.
    fn committed(
        &self,
        inst: &Institution,
        p: &PayInput<'_>,
        va: &VaNumber,
        next: Bill,
        stored: Versioned<()>,
        recorded: Recorded,
    ) -> Outcome {
        m::count_paid(&inst.code, p.amount.get());
        let bill = Versioned {
            value: next,
            version: stored.version,
            doc: stored.doc,
        };
        self.bills.put(&inst.code, va, Arc::new(bill));
        self.answer_of(PAYMENT_RECEIVED, inst, recorded)
    }

    async fn release(&self, lock: &Lock) {
        if let Err(e) = self.store.unlock(&lock.key, &lock.token).await {
            // The TTL frees it; the work itself is already committed or refused.
            tracing::warn!(error = %e, "could not release VA lock");
        }
    }

    /// The first answer to a payment found committed, once its journal event is durable
    /// (journaled again under the same id: the first attempt may have stopped between the
    /// commit and the journal).
    async fn replay_payment(
        &self,
        inst: &Institution,
        rec: PaymentRecord,
        va: &VaNumber,
        amount: Amount,
    ) -> Result<Outcome, SwitchError> {
        let paid = &rec.paid.payment;
        if paid.va_number != va.as_str() || paid.amount != amount {
            return Err(SwitchError::ReferenceConflict(paid.payment_ref_id.clone()));
        }
        metrics::counter!(m::DUPLICATES_TOTAL, "type" => "payment").increment(1);
        self.store
            .rejournal_payment(&inst.code, &paid.channel, &paid.payment_ref_id, Stage::Paid)
            .await?;
        let reversed = rec.reversed.is_some();
        let mut outcome = self.answer_of(PAYMENT_RECEIVED, inst, rec.paid);
        // After a reversal the payment's event is long delivered; re-sending it then would
        // only arrive behind the reversal.
        if reversed {
            outcome.webhook = None;
        }
        Ok(outcome)
    }

    /// Settles a change an instance left listed as unjournaled (`store::unjournaled`: it
    /// stopped between the commit and the journal's acknowledgement): journals it again
    /// under its event id and returns the webhook job that announces it, if the institution
    /// must hear of it (a payment not reversed since, or a reversal). `member` is the
    /// listed event id without `<institution>:`: `pay:<channel>:<ref>:paid|reversed` or
    /// `bill:<hash>:<version>` (the bill is journaled as it is now). A member naming
    /// nothing Redis holds (lost with Redis's tail, say) needs nothing.
    ///
    /// # Errors
    /// Redis unavailable, a corrupt record, the journal not acknowledging (in doubt).
    pub async fn settle_unjournaled(
        &self,
        inst: &Institution,
        member: &str,
    ) -> Result<Option<QueuedWebhook>, SwitchError> {
        if let Some(rest) = member.strip_prefix("bill:") {
            let hash = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
            self.store.rejournal_bill(&inst.code, hash).await?;
            return Ok(None);
        }
        let Some(rest) = member.strip_prefix("pay:") else {
            return Ok(None);
        };
        let (rest, stage) = match (rest.strip_suffix(":paid"), rest.strip_suffix(":reversed")) {
            (Some(r), _) => (r, Stage::Paid),
            (_, Some(r)) => (r, Stage::Reversed),
            _ => return Ok(None),
        };
        let Some((channel, reference)) = rest.split_once(':') else {
            return Ok(None);
        };
        let rec = match self.store.payment(&inst.code, channel, reference).await {
            Ok(Some(rec)) => rec,
            // Gone, or past the hot window (longer than any change stays unjournaled).
            Ok(None) | Err(StoreError::Retired(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        self.store
            .rejournal_payment(&inst.code, channel, reference, stage)
            .await?;
        let announced = match (stage, rec.reversed) {
            // After a reversal the payment's event would only arrive behind it.
            (Stage::Paid, Some(_)) => None,
            (Stage::Paid, None) => self.answer_of(PAYMENT_RECEIVED, inst, rec.paid).webhook,
            (Stage::Reversed, Some(r)) => self.answer_of(PAYMENT_REVERSAL, inst, r).webhook,
            (Stage::Reversed, None) => None,
        };
        Ok(announced)
    }

    /// The SUCCESS answer to a payment or reversal and its webhook job, built from what was
    /// recorded; the same record always gives the same answer.
    fn answer_of(&self, event: &'static str, inst: &Institution, r: Recorded) -> Outcome {
        let Recorded {
            payment,
            payment_json,
            bill,
            timestamp,
        } = r;
        let job = WebhookJob::new(
            event,
            &payment.id,
            &inst.code,
            inst.webhook_url.clone(),
            &payment.bill_hash,
            timestamp.clone(),
            bill,
            payment_json,
        );
        let webhook = queued(
            event,
            &payment.bill_hash,
            serde_json::to_string(&job).unwrap_or_default(),
        );
        Outcome {
            rc: Rc::Success,
            message: "success".into(),
            timestamp,
            // The job's bill, taken back, not copied.
            shown: Shown::Payment {
                bill: job.body.context,
                payment: Box::new(payment),
                payment_json: job.body.payload,
            },
            webhook,
        }
    }

    /// Pays under the VA lock, starting from what was read when it was taken. Returns the
    /// outcome and whether the commit released the lock.
    #[allow(clippy::too_many_arguments)]
    async fn pay_locked(
        &self,
        inst: &Institution,
        va: &VaNumber,
        amount: Amount,
        p: &PayInput<'_>,
        mut bill: Option<Versioned<Bill>>,
        mut rec: Option<PaymentRecord>,
        lock: &Lock,
    ) -> Result<(Outcome, bool), SwitchError> {
        for _ in 0..CAS_ATTEMPTS {
            if let Some(rec) = rec.take() {
                return self
                    .replay_payment(inst, rec, va, amount)
                    .await
                    .map(|o| (o, false));
            }
            let Some(current) = bill.take() else {
                return Err(SwitchError::BillNotFound);
            };
            let now = self.clock.now();
            let next = current
                .value
                .apply_payment(amount, now)
                .map_err(|e| payment_refused(e, &current.value, now, va))?;
            // Bound already, by the lock's round trip.
            let (verdict, recorded) = self
                .commit_payment(inst, va, p, &current, &next, now, lock, None)
                .await?;
            match verdict {
                Paid::Done(stored) => {
                    let outcome = self.committed(inst, p, va, next, stored, recorded);
                    return Ok((outcome, true));
                }
                Paid::Replay(r) => rec = Some(r),
                Paid::RefConflict(earlier) => {
                    return Err(self.reference_taken(&inst.code, p, &earlier).await)
                }
                Paid::BalanceRefused(why) => return Err(balance_refused(&inst.code, &why)),
                // Someone changed the bill without the lock (a revoke, a new bill on the
                // VA): decide again on what the script read.
                Paid::Stale(b) => {
                    metrics::counter!(m::CAS_CONFLICTS_TOTAL).increment(1);
                    bill = b;
                }
                // The lock outlived its TTL and another attempt took it: retry the message.
                Paid::Locked => {
                    return Err(SwitchError::Busy(
                        "the VA lock expired during the payment".into(),
                    ))
                }
            }
        }
        Err(SwitchError::Busy("bill is changing too fast".into()))
    }

    /// The bill as answered and the ledger entry of a payment or reversal about to be
    /// committed, and what its answer is built from.
    fn prepare(
        &self,
        entry: Entry,
        va: &VaNumber,
        next: &Bill,
        payment: Payment,
        now: chrono::DateTime<chrono::FixedOffset>,
    ) -> (Recorded, bool, Box<serde_json::value::RawValue>) {
        let ledger = self.ledger_entry(entry.mutation_type(), &payment, now);
        // The bill as answered is the bill after the change itself, as a rule (seen by the
        // VA it is stored with, in its stored status): then it is written once and that
        // text is also the bill's new document (issue 29).
        let answered_is_next =
            next.effective_status(now) == next.status && next.va_number == va.as_str();
        let bill = if answered_is_next {
            crate::domain::Json::of(next)
        } else {
            crate::domain::Json::of(&next.view(now, Some(va.as_str())))
        };
        let recorded = Recorded {
            bill,
            timestamp: self.clock.stamp(now),
            payment_json: crate::domain::Json::of(&payment),
            payment,
        };
        (recorded, answered_is_next, ledger)
    }

    /// Commits the payment `p` (`lua/pay.lua`) that makes `bill` into `next`; Redis must
    /// still hold `bill` byte for byte (cached, read just before, or read under the lock: a
    /// recovery between the read and the commit may have given its version other
    /// contents); with `binding`, the script binds the reference (a cached bill on one
    /// Redis; else it was bound before).
    /// Returns the verdict and what was recorded (the answer is built from it).
    #[allow(clippy::too_many_arguments)]
    async fn commit_payment(
        &self,
        inst: &Institution,
        va: &VaNumber,
        p: &PayInput<'_>,
        bill: &Versioned<Bill>,
        next: &Bill,
        now: chrono::DateTime<chrono::FixedOffset>,
        lock: &Lock,
        binding: Option<&str>,
    ) -> Result<(Paid, Recorded), SwitchError> {
        let payment = self.new_payment(inst, va, p, next, now);
        let prepared = self.prepare(Entry::Credit, va, next, payment, now);
        let t = Instant::now();
        let verdict = self
            .store
            .commit_payment(NewPayment {
                lock: Some(lock),
                binding,
                ..commit_input(inst, bill, next, &prepared, now)
            })
            .await?;
        m::stage(m::Stage::Redis).record(t.elapsed().as_secs_f64());
        Ok((verdict, prepared.0))
    }

    /// Commits a reversal (`lua/reverse.lua`). Returns the verdict and what was recorded.
    async fn commit_reversal(
        &self,
        inst: &Institution,
        va: &VaNumber,
        bill: &Versioned<Bill>,
        next: &Bill,
        payment: Payment,
        now: chrono::DateTime<chrono::FixedOffset>,
    ) -> Result<(Commit, Recorded), SwitchError> {
        let prepared = self.prepare(Entry::Debit, va, next, payment, now);
        let verdict = self
            .store
            .commit_reversal(commit_input(inst, bill, next, &prepared, now))
            .await?;
        Ok((verdict, prepared.0))
    }

    fn ledger_entry(
        &self,
        mutation_type: &str,
        p: &Payment,
        now: chrono::DateTime<chrono::FixedOffset>,
    ) -> Box<serde_json::value::RawValue> {
        let entry = LedgerEntry {
            id: [p.id.as_str(), ":", mutation_type].concat(),
            mutation_type,
            amount: p.amount,
            payment_id: &p.id,
            payment_ref_id: &p.payment_ref_id,
            channel: &p.channel,
            va_number: &p.va_number,
            bill_hash: &p.bill_hash,
            created_at: self.clock.stamp(now),
        };
        serde_json::value::to_raw_value(&entry).expect("a ledger entry always serializes")
    }

    /// # Errors
    /// Unknown payment, already reversed (answered, with the webhook job again), amount
    /// mismatch, Redis unavailable.
    pub async fn reverse(
        &self,
        inst: &Institution,
        va: &VaNumber,
        channel: &str,
        payment_ref: &str,
        amount: Amount,
        bill_id: Option<&str>,
        owner: &Owner,
    ) -> Result<Outcome, SwitchError> {
        self.locked(&inst.code, va, owner.token(), async {
            for _ in 0..CAS_ATTEMPTS {
                let mut rec = match self.store.payment(&inst.code, channel, payment_ref).await {
                    Err(StoreError::Retired(r)) => return Err(self.too_late(r, va)),
                    other => other?,
                };
                if rec.is_none() {
                    // Asked again through a script that checks the journal mark: a Redis
                    // that lost its data is rebuilt before "not found" closes a reference.
                    rec = self
                        .store
                        .payment_checked(&inst.code, va.as_str(), channel, payment_ref)
                        .await?;
                }
                let Some(rec) = rec else {
                    // Under the VA lock: no payment can be committed on this VA meanwhile.
                    // The reference is closed before the bank hears "not found" (decision 9).
                    let void = Binding::new(&inst.code, va, amount).void_record();
                    self.store
                        .void_reference(
                            &inst.code,
                            channel,
                            payment_ref,
                            &void,
                            self.clock.stamp_now(),
                        )
                        .await?;
                    return Err(SwitchError::PaymentNotFound);
                };
                let paid = &rec.paid.payment;
                if paid.va_number != va.as_str() || bill_id.is_some_and(|b| b != paid.bill_hash) {
                    return Err(SwitchError::PaymentNotFound);
                }
                if let Some(reversed) = &rec.reversed {
                    // Answered as already reversed, with the reversal's data; its webhook job
                    // is queued again (same event id) in case the first one was lost.
                    metrics::counter!(m::DUPLICATES_TOTAL, "type" => "reversal").increment(1);
                    self.store
                        .rejournal_payment(&inst.code, channel, payment_ref, Stage::Reversed)
                        .await?;
                    let mut o = self.answer_of(PAYMENT_REVERSAL, inst, reversed.clone());
                    o.rc = Rc::BillerPaymentAlreadyReversed;
                    o.message = "payment already reversed".into();
                    o.timestamp = self.clock.stamp_now();
                    return Ok(o);
                }
                if amount != paid.amount {
                    return Err(SwitchError::Bill(
                        crate::domain::BillError::Amount(format!(
                            "reversal amount must equal the payment amount {}",
                            paid.amount
                        )),
                        None,
                    ));
                }
                // The payment's own event first, in case its first attempt stopped between
                // the commit and the journal: a reversal never stands without its payment.
                self.store
                    .rejournal_payment(&inst.code, channel, payment_ref, Stage::Paid)
                    .await?;
                let bill = self.bill_of(inst, paid).await?;
                let now = self.clock.now();
                let next = bill.value.apply_reversal(amount);
                let mut payment = paid.clone();
                payment.status = PaymentState::Reversed;
                payment.reversed_at = Some(now);
                let (verdict, recorded) = self
                    .commit_reversal(inst, va, &bill, &next, payment, now)
                    .await?;
                match verdict {
                    Commit::Done => {
                        self.bills.forget(&inst.code, va);
                        return Ok(self.answer_of(PAYMENT_REVERSAL, inst, recorded));
                    }
                    Commit::Missing => return Err(SwitchError::PaymentNotFound),
                    Commit::BalanceRefused(why) => return Err(balance_refused(&inst.code, &why)),
                    _ => metrics::counter!(m::CAS_CONFLICTS_TOTAL).increment(1),
                }
            }
            Err(SwitchError::Busy("bill is changing too fast".into()))
        })
        .await
    }

    /// A reversal of a payment past the hot window: already reversed (answered so, from
    /// the compact record), or too late (docs/retention.md); another VA's is not found.
    fn too_late(&self, r: Box<crate::store::Retired>, va: &VaNumber) -> SwitchError {
        if r.va_number != va.as_str() {
            return SwitchError::PaymentNotFound;
        }
        let view = r.view(&self.clock);
        if r.reversed {
            metrics::counter!(m::DUPLICATES_TOTAL, "type" => "reversal").increment(1);
            return SwitchError::AlreadyReversed(Shown::Retired(
                serde_json::json!({ "payment": view }),
            ));
        }
        SwitchError::TooLateToReverse(r, view)
    }

    /// # Errors
    /// Unknown payment (or one made on another VA), Redis unavailable.
    pub async fn check_status(
        &self,
        inst: &Institution,
        va: &VaNumber,
        channel: &str,
        payment_ref: &str,
    ) -> Result<Outcome, SwitchError> {
        let rec = match self.store.payment(&inst.code, channel, payment_ref).await {
            Err(StoreError::Retired(r)) if r.va_number == va.as_str() => {
                // Past the hot window: what its compact record keeps (docs/retention.md).
                return Ok(Outcome {
                    rc: Rc::Success,
                    message: "success (past the hot window: the payment as the switch keeps \
                              it; its day's statement has the rest)"
                        .into(),
                    timestamp: self.clock.stamp_now(),
                    shown: Shown::Retired(serde_json::json!({ "payment": r.view(&self.clock) })),
                    webhook: None,
                });
            }
            Err(StoreError::Retired(_)) => return Err(SwitchError::PaymentNotFound),
            other => other?.ok_or(SwitchError::PaymentNotFound)?,
        };
        let payment = rec.current();
        if payment.va_number != va.as_str() {
            return Err(SwitchError::PaymentNotFound);
        }
        // A bank asks after a timeout, exactly when an attempt may have stopped between
        // the commit and the journal: what is answered is journaled first.
        self.store
            .rejournal_payment(&inst.code, channel, payment_ref, Stage::Paid)
            .await?;
        if rec.reversed.is_some() {
            self.store
                .rejournal_payment(&inst.code, channel, payment_ref, Stage::Reversed)
                .await?;
        }
        let bill = self.bill_of(inst, payment).await?;
        let now = self.clock.now();
        Ok(Outcome {
            rc: Rc::Success,
            message: "success".into(),
            timestamp: self.clock.stamp(now),
            shown: bill_with_payment(&bill.value.view(now, Some(va.as_str())), payment),
            webhook: None,
        })
    }

    /// Creates a hosted bill from a Create New Bill body for `inst`.
    ///
    /// # Errors
    /// Invalid fields (named), a prefix of another institution, a VA with a payable bill
    /// already, Redis unavailable.
    pub async fn create_bill(&self, inst: &Institution, body: &Value) -> Result<Bill, SwitchError> {
        let now = self.clock.now();
        let nb = self.new_bill(inst, body, now)?;
        self.create_new(inst, nb, now).await
    }

    /// Issues a bill idempotently (SNAP's create VA, bulk issuance: docs/api.md "Bulk
    /// issuance"): a body whose bill this very request issued before (its VA holds a bill,
    /// not revoked, with the same invoice number, amount, type, expiry, name and customer:
    /// [`NewBill::issued_as`]) is answered with that bill, whatever happened to it since
    /// (paid, expired), and nothing is created; otherwise the bill is created. `dry_run`
    /// checks everything (the VA free or the same bill) and creates nothing.
    ///
    /// # Errors
    /// As [`Hosted::create_bill`]: invalid fields (named), another prefix, the VA holding
    /// another payable bill, Redis unavailable.
    pub async fn issue(
        &self,
        inst: &Institution,
        body: &Value,
        dry_run: bool,
    ) -> Result<Issued, SwitchError> {
        let now = self.clock.now();
        // Found as issued whatever happened since, its expiry passed included: read the
        // body as of its own past first (a retry after the due date is not a new bill).
        let epoch = chrono::DateTime::from_timestamp(0, 0)
            .unwrap_or_default()
            .fixed_offset();
        let nb = match self.new_bill(inst, body, epoch) {
            Ok(nb) => nb,
            Err(_) => self.new_bill(inst, body, now)?,
        };
        let va = format!("{}{}", nb.prefixes[0], nb.number);
        let found = self.store.bill_by_va(&inst.code, &va).await?;
        if let Some(b) = found.as_ref().filter(|b| nb.issued_as(&b.value)) {
            // A create cut short between its commit and its journal event (a killed
            // import): journaled now, under the same event id.
            let member = format!("bill:{}:{}", b.value.hash, b.version);
            if self.store.is_unjournaled(&inst.code, &member).await? {
                self.store.rejournal_bill(&inst.code, &b.value.hash).await?;
            }
            return Ok(Issued::Existing(b.value.clone()));
        }
        // Anything else is checked as a new bill now (a past valid_until is refused).
        let nb = self.new_bill(inst, body, now)?;
        let on_va = found.map(|b| b.value);
        if dry_run {
            if let Some(b) = on_va.filter(|b| b.check_payable(now).is_ok()) {
                return Err(SwitchError::invalid(
                    "va_number",
                    format!("already has an active bill ({}); revoke it first", b.hash),
                ));
            }
            return Ok(Issued::Valid(nb.into_bill(String::new(), now, new_id)));
        }
        match self.create_new(inst, nb.clone(), now).await {
            Ok(b) => Ok(Issued::Created(b)),
            Err(e @ SwitchError::InvalidField { .. }) => {
                // Another copy of this request won the race: its bill.
                match self.store.bill_by_va(&inst.code, &va).await? {
                    Some(b) if nb.issued_as(&b.value) => Ok(Issued::Existing(b.value)),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// A Create New Bill body read for `inst` (its own code and prefixes).
    fn new_bill(
        &self,
        inst: &Institution,
        body: &Value,
        now: chrono::DateTime<chrono::FixedOffset>,
    ) -> Result<NewBill, SwitchError> {
        let nb =
            NewBill::from_json(body, now).map_err(|e| SwitchError::invalid(e.field, e.reason))?;
        if nb.institution_code != inst.code {
            return Err(SwitchError::invalid(
                "institution_code",
                format!("is not {}", inst.code),
            ));
        }
        if let Some(p) = nb.prefixes.iter().find(|p| !inst.prefixes.contains(p)) {
            return Err(SwitchError::invalid(
                "prefix",
                format!("{p} does not belong to institution {}", inst.code),
            ));
        }
        Ok(nb)
    }

    async fn create_new(
        &self,
        inst: &Institution,
        nb: NewBill,
        now: chrono::DateTime<chrono::FixedOffset>,
    ) -> Result<Bill, SwitchError> {
        for _ in 0..CAS_ATTEMPTS {
            let bill = nb.clone().into_bill(new_hash(), now, new_id);
            match self
                .store
                .create_bill(&bill, now.timestamp_millis())
                .await?
            {
                Commit::Done => return Ok(bill),
                Commit::Occupied(h) => {
                    // A create retried after its journal failed finds its own bill here:
                    // journaled before the refusal names it.
                    self.store.rejournal_bill(&inst.code, &h).await?;
                    return Err(SwitchError::invalid(
                        "va_number",
                        format!("already has an active bill ({h}); revoke it first"),
                    ));
                }
                _ => continue, // hash collision: draw another
            }
        }
        Err(SwitchError::Busy("could not allocate a bill hash".into()))
    }

    /// Revokes a bill: it stops being payable; its payments stay. Revoking twice is a no-op.
    ///
    /// # Errors
    /// Unknown bill, a bill already paid in full, Redis unavailable.
    pub async fn revoke_bill(&self, inst: &Institution, hash: &str) -> Result<Bill, SwitchError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(bill) = self.store.bill(&inst.code, hash).await? else {
                return Err(SwitchError::BillNotFound);
            };
            let mut next = bill.value.clone();
            match next.status {
                crate::domain::BillStatus::Revoked => {
                    // Revoked already: journaled again, in case the first revoke stopped
                    // between its commit and its journal event.
                    self.store.rejournal_bill(&inst.code, hash).await?;
                    return Ok(next);
                }
                crate::domain::BillStatus::Paid => {
                    return Err(SwitchError::Bill(
                        crate::domain::BillError::AlreadyPaid,
                        None,
                    ))
                }
                _ => next.status = crate::domain::BillStatus::Revoked,
            }
            let time = self.clock.stamp_now();
            if self.store.update_bill(&bill, &next, time).await? == Commit::Done {
                return Ok(next);
            }
        }
        Err(SwitchError::Busy("bill is changing too fast".into()))
    }

    /// The bill a payment was made on; its absence is a broken invariant.
    async fn bill_of(
        &self,
        inst: &Institution,
        payment: &Payment,
    ) -> Result<Versioned<Bill>, SwitchError> {
        self.store
            .bill(&inst.code, &payment.bill_hash)
            .await?
            .ok_or_else(|| {
                SwitchError::Internal(format!(
                    "bill {} of a payment is missing",
                    payment.bill_hash
                ))
            })
    }

    /// A bill by hash, for the CLI and the API.
    ///
    /// # Errors
    /// Redis unavailable.
    pub async fn bill(
        &self,
        inst: &str,
        hash: &str,
    ) -> Result<Option<Versioned<Bill>>, SwitchError> {
        Ok(self.store.bill(inst, hash).await?)
    }
}
