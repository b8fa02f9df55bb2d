//! The sweep that settles what an instance left half-done: a change committed in Redis
//! whose journal event was never acknowledged because the instance stopped, crashed or was
//! killed in between (its channel got no answer, or an answer in doubt). The commit scripts
//! list each change in `ipg:{I}:unjournaled` until its event is acknowledged
//! (`store::unjournaled`); every `journal.mark_interval_ms` this task takes off what this
//! process saw acknowledged, and every sweep it journals again, under the same event id,
//! each change listed longer than `journal.unjournaled_after_ms`, and queues the webhook
//! job that announces it (docs/journal.md, "Broker faults"). Several instances may sweep
//! at once: a change is claimed by one (`Store::claim_unjournaled`), and one claimed by an
//! instance that stops is due again a window later.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::kafka::publish::{Outgoing, Publisher};
use crate::metrics as m;
use crate::routing::Institution;
use crate::switch::Switch;

/// Changes settled per institution per sweep, at most.
const SWEEP_LIMIT: usize = 100;

/// What the sweep needs: the switch (its store and hosted rules), where webhook jobs go,
/// and the windows.
pub struct Sweep {
    pub switch: Switch,
    pub publisher: Publisher,
    pub webhook_topic: String,
    /// `journal.mark_interval_ms`: how often acknowledged changes are taken off the list.
    pub interval: Duration,
    /// `journal.unjournaled_after_ms`: a change listed this long was left by an instance.
    pub after: Duration,
}

/// Runs the sweep until `stop`.
pub fn spawn(sweep: Sweep, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let store = sweep.switch.hosted.store.clone();
    store.forget_in_batches();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(sweep.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Sweeps run a quarter of the window apart (at least a tick).
        let every = (sweep.after / 4).max(sweep.interval);
        let mut last_sweep = tokio::time::Instant::now();
        loop {
            let stopping = tokio::select! {
                _ = stop.cancelled() => true,
                _ = tick.tick() => false,
            };
            if let Err(e) = store.forget_acknowledged().await {
                tracing::warn!(error = %e, "could not take acknowledged changes off the unjournaled lists");
            }
            if stopping {
                return;
            }
            if last_sweep.elapsed() < every {
                continue;
            }
            last_sweep = tokio::time::Instant::now();
            let institutions: Vec<Arc<Institution>> =
                sweep.switch.routing.institutions().cloned().collect();
            let mut listed = 0u64;
            for inst in &institutions {
                if stop.is_cancelled() {
                    return;
                }
                settle_institution(&sweep, inst, &stop).await;
                listed += store.unjournaled_count(&inst.code).await.unwrap_or(0);
            }
            metrics::gauge!(m::UNJOURNALED_CHANGES).set(listed as f64);
        }
    })
}

/// Settles the institution's changes listed longer than the window.
async fn settle_institution(sweep: &Sweep, inst: &Institution, stop: &CancellationToken) {
    let store = &sweep.switch.hosted.store;
    let after_ms = sweep.after.as_millis() as i64;
    let before = match store.redis_time_ms().await {
        Ok(now) => now - after_ms,
        Err(e) => {
            tracing::warn!(error = %e, "unjournaled sweep: cannot read Redis's clock");
            return;
        }
    };
    let due = match store.unjournaled_due(&inst.code, before, SWEEP_LIMIT).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(institution = %inst.code, error = %e, "unjournaled sweep: cannot read the list");
            return;
        }
    };
    for (member, score) in due {
        match store
            .claim_unjournaled(&inst.code, &member, score, after_ms)
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(institution = %inst.code, error = %e, "unjournaled sweep: cannot claim");
                return;
            }
        }
        let kind = member.split(':').next().unwrap_or("other").to_owned();
        match sweep.switch.hosted.settle_unjournaled(inst, &member).await {
            Ok(webhook) => {
                if let Some(w) = webhook {
                    let msg = Outgoing::webhook_job(&sweep.webhook_topic, &w);
                    if !sweep.publisher.send(&msg, stop).await {
                        // Stopping: still listed, due again a window later.
                        return;
                    }
                    metrics::counter!(m::WEBHOOK_JOBS_TOTAL, "event" => w.event).increment(1);
                }
                if let Err(e) = store
                    .forget_unjournaled(&inst.code, std::slice::from_ref(&member))
                    .await
                {
                    tracing::warn!(institution = %inst.code, error = %e, "unjournaled sweep: settled but still listed (settled again later, harmless)");
                }
                tracing::warn!(institution = %inst.code, change = %member, "a change left unjournaled by a stopped instance is journaled and announced");
                metrics::counter!(m::UNJOURNALED_SETTLED_TOTAL, "kind" => kind).increment(1);
            }
            Err(e) => {
                // Still listed (claimed a window later): the broker or Redis is away.
                tracing::warn!(institution = %inst.code, change = %member, error = %e, "unjournaled sweep: not settled yet");
            }
        }
    }
}
