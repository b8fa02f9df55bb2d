//! Passive institutions (IPG's Passive Client API): the institution keeps its bills and
//! the switch forwards each channel request to its `/inquiry`, `/payment`, `/reversal` and
//! `/check-status`, signed with the institution's key (`client`).
//!
//! Money rules: a payment is forwarded under the VA lock and recorded (`record`) before and
//! after the call; a repeated `(channel, reference)` replays its first answer and is never
//! forwarded twice. A payment whose outcome is unknown (timeout, `BILLER_SUSPECT_TRANSACTION`,
//! an interrupted call) is answered `BILLER_SUSPECT_TRANSACTION` at once and resolved by the
//! switch (`resolve`): check-status until the institution confirms or denies, then, if
//! denied or never confirmed in the window, a reversal retried until acknowledged. A payment
//! the institution may have received but answered with garbage (5xx, not JSON, unknown rc,
//! bad signature) is answered `BILLER_GATEWAY_INVALID_RESPONSE` and reversed the same way
//! (voided), so the channel's failure is true at the institution too. The state lives in
//! Redis, each step is published on `topics.passive_events`.

pub mod client;
pub mod config;
/// The forwarded payment's record lives in `domain` (the store keeps it, the rules drive it).
pub use crate::domain::passive as record;
pub mod resolve;
pub mod transition;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub use config::{PassiveSettings, ResponseSignature};

use crate::clock::Clock;
use crate::domain::InstitutionMode;
use crate::domain::{Amount, VaNumber};
use crate::domain::{Binding, Outcome, Shown};
use crate::error::{Rc, SwitchError};
use crate::hosted::PayInput;
use crate::kafka::publish::{Outgoing, Publisher};
use crate::lock::{self, LockTimes, Owner};
use crate::metrics as m;
use crate::protocol::passive::{InquiryBody, PaymentBody, ReversalBody};
use crate::routing::Institution;
use crate::routing::InstitutionSettings;
use crate::store::passive::Begin;
use crate::store::{keys, Lock, Store};
use client::{Answered, Breaker, Forwarder, Reply};
use record::{PassivePayment, PassiveState};
use transition::{gateway, message_or, with_payment};

/// Where resolution steps are published: the daemon's producer, passed in when the switch
/// is built.
pub struct Audit {
    pub publisher: Publisher,
    pub topic: String,
    pub shutdown: CancellationToken,
}

#[derive(Clone)]
pub struct Passive {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    clock: Clock,
    http: reqwest::Client,
    forwarders: HashMap<String, Arc<Forwarder>>,
    lock_ttl: Duration,
    lock_wait: Duration,
    settings: PassiveSettings,
    audit: Option<Audit>,
}

/// The answer to a channel reversal the switch accepted and delivers itself.
use transition::{ChannelReversal, REVERSAL_QUEUED};

/// A passive institution's data as an answer shows it: passed through; `null` shows nothing.
fn institution_data(data: Value) -> Shown {
    match data {
        Value::Null => Shown::Nothing,
        d => Shown::Institution(d),
    }
}

impl Passive {
    /// # Errors
    /// The HTTP client cannot be built (TLS backend).
    pub fn new(
        p: &PassiveSettings,
        institutions: &[InstitutionSettings],
        lock: LockTimes,
        store: Store,
        clock: Clock,
        audit: Option<Audit>,
    ) -> reqwest::Result<Passive> {
        let mut forwarders = HashMap::new();
        let mut longest = p.timeout;
        let mut widest = p.max_concurrency;
        for i in institutions {
            if i.mode != InstitutionMode::Passive {
                continue;
            }
            let timeout = i.timeout.unwrap_or(p.timeout);
            longest = longest.max(timeout);
            widest = widest.max(i.max_concurrency.unwrap_or(p.max_concurrency));
            forwarders.insert(
                i.code.clone(),
                Arc::new(Forwarder::new(
                    &i.code,
                    i.base_url.as_deref().unwrap_or_default(),
                    &i.key(),
                    timeout,
                    i.max_concurrency.unwrap_or(p.max_concurrency),
                    i.response_signature.unwrap_or(p.response_signature),
                    Breaker::new(p.breaker_failures, p.breaker_open),
                )),
            );
        }
        // Idle connections kept per host: enough for the widest institution's calls.
        let http = crate::http_client::client(longest, p.connect_timeout, widest)?;
        Ok(Passive {
            inner: Arc::new(Inner {
                store,
                clock,
                http,
                forwarders,
                lock_ttl: lock.ttl,
                lock_wait: lock.wait,
                settings: p.clone(),
                audit,
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn forwarder(&self, code: &str) -> Option<&Arc<Forwarder>> {
        self.inner.forwarders.get(code)
    }

    pub fn institutions(&self) -> impl Iterator<Item = &str> {
        self.inner.forwarders.keys().map(String::as_str)
    }

    fn forwarder_of(&self, inst: &Institution) -> Result<&Arc<Forwarder>, SwitchError> {
        self.forwarder(&inst.code).ok_or_else(|| {
            SwitchError::Internal(format!(
                "no forwarder for passive institution {}",
                inst.code
            ))
        })
    }

    async fn call(
        &self,
        f: &Forwarder,
        endpoint: &'static str,
        body: &impl serde::Serialize,
    ) -> Reply {
        f.call(&self.inner.http, endpoint, body).await
    }

    /// An answer showing the institution's data (`Shown::Institution`; `null` for none).
    fn outcome(&self, rc: Rc, message: String, data: Value) -> Outcome {
        Outcome {
            rc,
            message,
            timestamp: self.inner.clock.stamp_now(),
            shown: institution_data(data),
            webhook: None,
        }
    }

    /// # Errors
    /// A forwarder missing for a passive institution (a bug).
    pub async fn inquiry(
        &self,
        inst: &Institution,
        va: &VaNumber,
        channel: &str,
        ref_id: &str,
        terminal: Option<&str>,
    ) -> Result<Outcome, SwitchError> {
        let f = self.forwarder_of(inst)?;
        let body = InquiryBody::new(va, channel, ref_id, terminal);
        Ok(match self.call(f, "inquiry", &body).await {
            Ok(Answered { rc, message, data }) => {
                // IPG's Passive inquiry answers one bill; the channel contract is a list.
                let data = match data {
                    Value::Object(_) if rc == Rc::Success => Value::Array(vec![data]),
                    d => d,
                };
                self.outcome(rc, message_or(&message, rc), data)
            }
            Err(e) => {
                let (rc, msg) = gateway(e.describe());
                self.outcome(rc, msg, Value::Null)
            }
        })
    }

    /// Takes the VA lock (waiting up to `lock_wait` for another holder) and runs `begin`.
    async fn begin(
        &self,
        rec: &PassivePayment,
        lock: &Lock,
        score_ms: i64,
    ) -> Result<Begin, SwitchError> {
        lock::take(self.inner.lock_wait, || async {
            Ok(
                match self
                    .inner
                    .store
                    .passive_begin(rec.clone(), lock, self.inner.lock_ttl, score_ms)
                    .await?
                {
                    Begin::Locked => None,
                    other => Some(other),
                },
            )
        })
        .await
    }

    /// Takes the VA lock for `owner`, waiting up to `lock_wait`.
    async fn lock(&self, inst: &str, va: &VaNumber, owner: &Owner) -> Result<Lock, SwitchError> {
        let lock = Lock {
            key: keys::lock(inst, va.as_str()),
            token: owner.token().to_owned(),
        };
        lock::take(self.inner.lock_wait, || async {
            Ok(self
                .inner
                .store
                .try_lock(&lock.key, &lock.token, self.inner.lock_ttl)
                .await?
                .then_some(()))
        })
        .await?;
        Ok(lock)
    }

    async fn release(&self, lock: &Lock) {
        if let Err(e) = self.inner.store.unlock(&lock.key, &lock.token).await {
            tracing::warn!(error = %e, "could not release VA lock");
        }
    }

    /// Forwards a payment: bind the reference, lock the VA and record the payment, call the
    /// institution, record the outcome and release the lock in one script.
    ///
    /// # Errors
    /// Bad amount, reference reused for another transaction, VA busy, Redis unavailable.
    pub async fn pay(
        &self,
        inst: &Institution,
        va: &VaNumber,
        p: PayInput<'_>,
    ) -> Result<Outcome, SwitchError> {
        let amount = p.amount;
        let f = self.forwarder_of(inst)?;
        let bind = Binding::new(&inst.code, va, amount).to_record();
        let store = &self.inner.store;
        if let Some(earlier) = store
            .bind(p.channel, p.ref_id, &bind)
            .await?
            .filter(|prev| *prev != bind)
        {
            return Err(SwitchError::reference_taken(p.ref_id, &earlier));
        }
        let lock = Lock {
            key: keys::lock(&inst.code, va.as_str()),
            token: p.owner.token().to_owned(),
        };
        let now = self.inner.clock.now();
        let stamp = self.inner.clock.stamp(now);
        let rec = PassivePayment {
            terminal: p.terminal_id.unwrap_or("other").to_owned(),
            transaction_date: p.transaction_date.map(str::to_owned),
            customer_name: p.customer_name.map(str::to_owned),
            ..PassivePayment::forwarding(
                &inst.code,
                p.channel,
                p.ref_id,
                va.as_str(),
                amount,
                &stamp,
            )
        };
        let begun = match self.begin(&rec, &lock, now.timestamp_millis()).await {
            Ok(b) => b,
            Err(e) => {
                // The record may be written and its journal event late (in doubt): the
                // lock it took is released now, not at its TTL (a no-op if never taken).
                self.release(&lock).await;
                return Err(e);
            }
        };
        let result = match self.closed_meanwhile(begun, p.ref_id, &bind, &lock).await {
            Ok(begun) => self.pay_begun(begun, f, va, amount, &lock).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            // Whatever failed after the lock was taken (Redis), the VA is not left locked
            // for the whole TTL: a copy then finds the record and judges it (in doubt if
            // the call was made).
            self.release(&lock).await;
        }
        result
    }

    /// A payment recorded now, under the VA lock, whose reference a reversal closed after
    /// this attempt bound it and before it took the lock (decision 9): refused before
    /// anything reaches the institution, its record saved `refused` (journaled) and the
    /// lock released with it. Any other `begun` passes on.
    async fn closed_meanwhile(
        &self,
        begun: Begin,
        ref_id: &str,
        bind: &str,
        lock: &Lock,
    ) -> Result<Begin, SwitchError> {
        // A new record, or one never sent that is about to be judged anew: both would
        // reach the institution now.
        let channel = match &begun {
            Begin::New(rec) => rec.channel.clone(),
            Begin::Exists(rec) if rec.never_sent() => rec.channel.clone(),
            _ => return Ok(begun),
        };
        let store = &self.inner.store;
        let Some(void) = store
            .bind(&channel, ref_id, bind)
            .await?
            .filter(|b| Binding::is_void(b))
        else {
            return Ok(begun);
        };
        match begun {
            Begin::New(mut rec) => {
                rec.state = PassiveState::Refused;
                rec.reason = Some("reversed before its payment arrived".into());
                rec.updated_at = self.inner.clock.stamp_now();
                store.passive_save(&mut rec, None, Some(lock)).await?;
            }
            // Refused already (never sent): nothing to save; the lock goes with the error.
            _ => self.release(lock).await,
        }
        Err(SwitchError::reference_taken(ref_id, &void))
    }

    /// The payment once the VA is locked and its record read or created.
    async fn pay_begun(
        &self,
        begun: Begin,
        f: &Forwarder,
        va: &VaNumber,
        amount: Amount,
        lock: &Lock,
    ) -> Result<Outcome, SwitchError> {
        let store = &self.inner.store;
        let mut rec = match begun {
            Begin::Exists(mut rec)
                if rec.never_sent() && rec.va_number == va.as_str() && rec.amount == amount =>
            {
                // Nothing of it reached the institution (refused connection, breaker open):
                // nothing can be in doubt, so it is judged anew, as hosted refusals are (P5).
                rec.state = PassiveState::Forwarding;
                rec.answer = None;
                rec.reason = None;
                // Forwarded now: check-status asks the institution about today.
                rec.created_at = self.inner.clock.stamp_now();
                rec.updated_at = rec.created_at.clone();
                store.passive_save(&mut rec, None, None).await?;
                rec
            }
            Begin::Exists(rec) => {
                // Journaled again (same event id): the first attempt may have stopped
                // between its commit and its journal event.
                store.rejournal_passive(&rec).await?;
                return self.replay_payment(rec, va, amount, lock).await;
            }
            Begin::New(rec) => rec,
            // `begin` waits out a held lock; should it ever return one, retry later.
            Begin::Locked => {
                return Err(SwitchError::Busy(
                    "VA is locked by another transaction".into(),
                ))
            }
        };
        let reply = self.call(f, "payment", &PaymentBody::of(&rec)).await;
        self.settle_payment(&mut rec, reply, lock).await
    }

    /// Records what the institution answered to a payment and answers the channel.
    async fn settle_payment(
        &self,
        rec: &mut PassivePayment,
        reply: Reply,
        lock: &Lock,
    ) -> Result<Outcome, SwitchError> {
        let now = self.inner.clock.now();
        rec.updated_at = self.inner.clock.stamp(now);
        let next =
            transition::payment_replied(rec, reply, now.timestamp_millis(), &self.inner.settings);
        self.apply(rec, next, Some(lock)).await?;
        Ok(self.replayed(rec))
    }

    /// Marks the payment in doubt: answered SUSPECT, resolution scheduled.
    async fn in_doubt(
        &self,
        rec: &mut PassivePayment,
        reason: &str,
        lock: Option<&Lock>,
    ) -> Result<Outcome, SwitchError> {
        let now = self.inner.clock.now();
        rec.updated_at = self.inner.clock.stamp(now);
        let next = transition::in_doubt(rec, reason, now.timestamp_millis(), &self.inner.settings);
        self.apply(rec, next, lock).await?;
        Ok(self.replayed(rec))
    }

    /// Carries out a transition: publishes its step (if any), then saves the record with
    /// its next due time, releasing `lock` if given.
    async fn apply(
        &self,
        rec: &mut PassivePayment,
        next: transition::Next,
        lock: Option<&Lock>,
    ) -> Result<(), SwitchError> {
        if let Some(st) = &next.step {
            self.emit(rec, st.name, &st.outcome, &st.detail, lock).await;
        }
        self.inner
            .store
            .passive_save(rec, next.due_ms, lock)
            .await?;
        Ok(())
    }

    /// The answer recorded for the payment, as the channel got it.
    fn replayed(&self, rec: &PassivePayment) -> Outcome {
        match &rec.answer {
            Some(a) => Outcome {
                rc: a.rc,
                message: a.message.clone(),
                timestamp: a.timestamp.clone(),
                shown: institution_data(a.data.clone()),
                webhook: None,
            },
            None => self.outcome(
                Rc::BillerSuspectTransaction,
                "payment outcome unknown".into(),
                rec.view(),
            ),
        }
    }

    async fn replay_payment(
        &self,
        mut rec: PassivePayment,
        va: &VaNumber,
        amount: Amount,
        lock: &Lock,
    ) -> Result<Outcome, SwitchError> {
        if rec.va_number != va.as_str() || rec.amount != amount {
            self.release(lock).await;
            return Err(SwitchError::ReferenceConflict(rec.reference));
        }
        if rec.state == PassiveState::Forwarding {
            // The call that recorded it never recorded its end (a crash, Redis lost after the
            // call): nobody knows whether the institution took it.
            return self.in_doubt(&mut rec, "interrupted", Some(lock)).await;
        }
        self.release(lock).await;
        metrics::counter!(m::DUPLICATES_TOTAL, "type" => "payment").increment(1);
        Ok(self.replayed(&rec))
    }

    /// A reversal from the channel, forwarded under the VA lock. If the institution cannot
    /// be reached it is accepted and delivered by the switch (store-and-forward).
    ///
    /// # Errors
    /// Unknown payment, already reversed, amount mismatch, VA busy, Redis unavailable.
    pub async fn reverse(
        &self,
        inst: &Institution,
        va: &VaNumber,
        channel: &str,
        payment_ref: &str,
        amount: Amount,
        owner: &Owner,
    ) -> Result<Outcome, SwitchError> {
        let f = self.forwarder_of(inst)?;
        let lock = self.lock(&inst.code, va, owner).await?;
        let result = self
            .reverse_locked(f, va, &inst.code, channel, payment_ref, amount, &lock)
            .await;
        if !matches!(result, Ok((_, true))) {
            self.release(&lock).await;
        }
        result.map(|(o, _)| o)
    }

    /// Returns the outcome and whether the save released the lock.
    #[allow(clippy::too_many_arguments)]
    async fn reverse_locked(
        &self,
        f: &Forwarder,
        va: &VaNumber,
        inst: &str,
        channel: &str,
        payment_ref: &str,
        amount: Amount,
        lock: &Lock,
    ) -> Result<(Outcome, bool), SwitchError> {
        let store = &self.inner.store;
        let found = store.passive_payment(inst, channel, payment_ref).await?;
        // No payment, or one refused on this VA (never sent, it would be judged anew when
        // repeated): under the VA lock the reference is closed before the bank hears "not
        // found" (decision 9), so a payment that comes later is refused, never forwarded.
        if found
            .as_ref()
            .is_none_or(|r| r.state == PassiveState::Refused && r.va_number == va.as_str())
        {
            let void = Binding::new(inst, va, amount).void_record();
            store
                .void_reference(
                    inst,
                    channel,
                    payment_ref,
                    &void,
                    self.inner.clock.stamp_now(),
                )
                .await?;
            return Err(SwitchError::PaymentNotFound);
        }
        // Made on another VA: not this channel's payment to reverse here.
        let mut rec = match found {
            Some(r) if r.va_number == va.as_str() => r,
            _ => return Err(SwitchError::PaymentNotFound),
        };
        match rec.state {
            PassiveState::Reversed => {
                metrics::counter!(m::DUPLICATES_TOTAL, "type" => "reversal").increment(1);
                return Err(SwitchError::AlreadyReversed(Shown::Institution(
                    json!({ "payment": rec.view() }),
                )));
            }
            _ if amount != rec.amount => {
                return Err(SwitchError::Bill(
                    crate::domain::BillError::Amount(format!(
                        "reversal amount must equal the payment amount {}",
                        rec.amount
                    )),
                    None,
                ))
            }
            PassiveState::Reversing => {
                // A reversal is already on its way (an earlier copy of this request queued
                // it, or the switch is voiding the payment): answer as that copy was
                // answered, never forward a second one.
                metrics::counter!(m::DUPLICATES_TOTAL, "type" => "reversal").increment(1);
                let data = json!({ "payment": rec.view() });
                return Ok((
                    self.outcome(Rc::Success, REVERSAL_QUEUED.into(), data),
                    false,
                ));
            }
            _ => {}
        }
        let reply = self.call(f, "reversal", &ReversalBody::of(&rec)).await;
        let now = self.inner.clock.now();
        rec.updated_at = self.inner.clock.stamp(now);
        let settings = &self.inner.settings;
        match transition::channel_reversal_replied(
            &mut rec,
            reply,
            now.timestamp_millis(),
            settings,
        ) {
            ChannelReversal::Reversed(next, data) => {
                self.apply(&mut rec, next, Some(lock)).await?;
                let data = with_payment(&data, rec.view());
                Ok((self.outcome(Rc::Success, "success".into(), data), true))
            }
            ChannelReversal::Refused(rc, message, data) => {
                Ok((self.outcome(rc, message, data), false))
            }
            ChannelReversal::Queued(next) => {
                self.apply(&mut rec, next, Some(lock)).await?;
                let data = json!({ "payment": rec.view() });
                Ok((
                    self.outcome(Rc::Success, REVERSAL_QUEUED.into(), data),
                    true,
                ))
            }
        }
    }

    /// Check-status from the channel, answered from the switch's record: the switch is
    /// the one that told the channel what happened.
    ///
    /// # Errors
    /// Unknown payment (or one on another VA, or one that never took effect), Redis
    /// unavailable.
    pub async fn check_status(
        &self,
        inst: &Institution,
        va: &VaNumber,
        channel: &str,
        payment_ref: &str,
    ) -> Result<Outcome, SwitchError> {
        let rec = self
            .inner
            .store
            .passive_payment(&inst.code, channel, payment_ref)
            .await?
            .filter(|r| r.va_number == va.as_str())
            .ok_or(SwitchError::PaymentNotFound)?;
        let data = with_payment(&rec.institution_data, rec.view());
        Ok(match rec.state {
            PassiveState::Refused => return Err(SwitchError::PaymentNotFound),
            PassiveState::Forwarding | PassiveState::InDoubt => self.outcome(
                Rc::BillerSuspectTransaction,
                "payment outcome unknown; the switch is confirming it with the institution".into(),
                data,
            ),
            PassiveState::Paid | PassiveState::Reversing | PassiveState::Reversed => {
                self.outcome(Rc::Success, "success".into(), data)
            }
        })
    }

    /// Publishes one resolution step on the audit topic (waits for Kafka's ack, renewing
    /// `lock` meanwhile) and counts it. Without a producer (CLI, tests of the switch alone) the step is only logged.
    async fn emit(
        &self,
        rec: &PassivePayment,
        step: &'static str,
        outcome: &str,
        detail: &str,
        lock: Option<&Lock>,
    ) {
        metrics::counter!(m::PASSIVE_RESOLUTIONS_TOTAL, "institution" => rec.institution.clone(),
            "step" => step)
        .increment(1);
        tracing::info!(
            institution = %rec.institution,
            channel = %rec.channel,
            reference = %rec.reference,
            step,
            outcome,
            "passive payment resolution step"
        );
        let Some(a) = &self.inner.audit else {
            return;
        };
        let event = crate::protocol::schema::PassiveAuditEvent {
            id: uuid::Uuid::new_v4().to_string(),
            at: self.inner.clock.stamp_now(),
            step: step.to_owned(),
            outcome: outcome.to_owned(),
            detail: detail.to_owned(),
            institution: rec.institution.clone(),
            channel: rec.channel.clone(),
            reference: rec.reference.clone(),
            va_number: rec.va_number.clone(),
            amount: rec.amount.get(),
            state: rec.state.as_str().to_owned(),
            reason: rec.reason.clone(),
            resolution: rec.resolution.clone(),
            attempts: rec.attempts,
        };
        let msg = Outgoing {
            topic: a.topic.clone(),
            key: rec.member().into_bytes(),
            payload: serde_json::to_vec(&event).unwrap_or_default(),
            headers: Vec::new(),
            partition: None,
        };
        let send = a.publisher.send(&msg, &a.shutdown);
        let Some(lock) = lock else {
            send.await;
            return;
        };
        // The publisher waits for Kafka's ack however long Kafka is away; the VA lock must
        // not expire meanwhile, or another attempt would act on this payment too. Renewed
        // every third of its TTL, by its owner only.
        tokio::pin!(send);
        let mut renew = tokio::time::interval(self.inner.lock_ttl / 3);
        renew.tick().await;
        loop {
            tokio::select! {
                _ = &mut send => return,
                _ = renew.tick() => {
                    match self.inner.store.try_lock(&lock.key, &lock.token, self.inner.lock_ttl).await {
                        Ok(true) => {}
                        Ok(false) => tracing::error!(member = %rec.member(), "VA lock lost while publishing a resolution step"),
                        Err(e) => tracing::warn!(error = %e, "could not renew the VA lock while publishing"),
                    }
                }
            }
        }
    }
}
