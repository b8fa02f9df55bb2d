//! The resolver: drives payments in doubt at passive institutions to an end. Work is a
//! Redis sorted set per institution (member `<channel>:<ref>`, score = when the next step
//! is due), claimed with a lease so several instances share it and a crashed one's work is
//! picked up after the lease; each step runs under the VA lock, is published on the audit
//! topic, then saved with its next due time. Nothing of it lives in memory.
//!
//! In doubt: check-status after each `check_backoff_ms` delay. SUCCESS → paid (confirmed);
//! PAYMENT_NOT_FOUND → reversing (denied); PAYMENT_ALREADY_REVERSED → reversed; anything
//! else (SUSPECT, timeout, garbage, breaker open) → ask again; past `resolve_window_ms` →
//! reversing (window_expired). Reversing: the reversal after each `reversal_backoff_ms`
//! delay until SUCCESS, PAYMENT_ALREADY_REVERSED or PAYMENT_NOT_FOUND → reversed.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::transition::{self, Call};
use super::Passive;
use crate::error::SwitchError;
use crate::lock::Owner;
use crate::metrics as m;
use crate::store::{keys, Lock};

impl Passive {
    /// One resolution step for `member` of `inst`'s pending set.
    ///
    /// # Errors
    /// Redis unavailable (the lease brings the step back later).
    pub async fn resolve_step(&self, inst: &str, member: &str) -> Result<(), SwitchError> {
        let Some((channel, reference)) = member.split_once(':') else {
            self.inner.store.passive_unschedule(inst, member).await?;
            return Ok(());
        };
        let store = &self.inner.store;
        let now = self.inner.clock.now();
        let now_ms = now.timestamp_millis();
        let Some(rec) = store.passive_payment(inst, channel, reference).await? else {
            store.passive_unschedule(inst, member).await?;
            return Ok(());
        };
        let lock = Lock {
            key: keys::lock(inst, &rec.va_number),
            // Each step is its own attempt: two steps of one payment never share the lock.
            token: Owner::new().token().to_owned(),
        };
        if !store
            .try_lock(&lock.key, &lock.token, self.inner.lock_ttl)
            .await?
        {
            // A payment, a reversal or another resolver holds the VA: come back soon.
            store
                .passive_reschedule(inst, member, now_ms + 1000)
                .await?;
            return Ok(());
        }
        let result = self.resolve_locked(inst, channel, reference, &lock).await;
        if !matches!(result, Ok(true)) {
            self.release(&lock).await;
        }
        result.map(|_| ())
    }

    /// Returns whether the save released the lock.
    async fn resolve_locked(
        &self,
        inst: &str,
        channel: &str,
        reference: &str,
        lock: &Lock,
    ) -> Result<bool, SwitchError> {
        let store = &self.inner.store;
        // Read again under the lock: a channel reversal may have ended it meanwhile.
        let Some(mut rec) = store.passive_payment(inst, channel, reference).await? else {
            return Ok(false);
        };
        let f = self
            .forwarder(inst)
            .ok_or_else(|| SwitchError::Internal(format!("no forwarder for {inst}")))?
            .clone();
        let now = self.inner.clock.now();
        let now_ms = now.timestamp_millis();
        rec.updated_at = self.inner.clock.stamp(now);
        let next = match transition::resolver_call(&mut rec, now_ms) {
            Err(next) => next,
            Ok(call) => {
                let reply = match call {
                    Call::CheckStatus => {
                        self.call(
                            &f,
                            "check-status",
                            &crate::protocol::passive::CheckStatusBody::of(&rec),
                        )
                        .await
                    }
                    Call::Reversal => {
                        self.call(
                            &f,
                            "reversal",
                            &crate::protocol::passive::ReversalBody::of(&rec),
                        )
                        .await
                    }
                };
                let s = &self.inner.settings;
                transition::resolution_replied(call, &mut rec, reply, now_ms, s)
            }
        };
        self.apply(&mut rec, next, Some(lock)).await?;
        Ok(true)
    }

    /// Runs the resolver until `stop`: one loop per passive institution, so a dead one
    /// delays no other.
    pub fn spawn_resolver(&self, stop: CancellationToken) -> Vec<JoinHandle<()>> {
        self.institutions()
            .map(|inst| {
                let this = self.clone();
                let inst = inst.to_owned();
                let stop = stop.clone();
                tokio::spawn(async move { this.resolver_loop(&inst, stop).await })
            })
            .collect()
    }

    async fn resolver_loop(&self, inst: &str, stop: CancellationToken) {
        let s = &self.inner.settings;
        let poll = s.resolve_poll;
        let Some(f) = self.forwarder(inst) else {
            return;
        };
        // A claimed step comes back to the set after the lease if its owner died.
        let lease = f.timeout * 2 + Duration::from_secs(5);
        let batch = (s.max_concurrency / 2).max(1);
        let store = self.store();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(poll) => {}
            }
            if let Ok(n) = store.passive_pending_count(inst).await {
                metrics::gauge!(m::PASSIVE_IN_DOUBT, "institution" => inst.to_owned())
                    .set(n as f64);
            }
            let now_ms = self.inner.clock.now().timestamp_millis();
            let members = match store.passive_claim(inst, now_ms, lease, batch).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(institution = %inst, error = %e, "resolver cannot read its work; retrying");
                    continue;
                }
            };
            let steps = members.iter().map(|m| async move {
                if let Err(e) = self.resolve_step(inst, m).await {
                    tracing::warn!(institution = %inst, error = %e, "resolution step failed; retried after its lease");
                }
            });
            futures::future::join_all(steps).await;
        }
    }
}
