//! The sweep that settles what an instance left half-done: a change committed in Redis
//! whose journal event was never acknowledged because the instance stopped, crashed or was
//! killed in between (its channel got no answer, or an answer in doubt). The commit scripts
//! list each change in `ipg:{I}:unjournaled` until its event is acknowledged
//! (`store::unjournaled`); every `journal.mark_interval_ms` one task takes off what this
//! process saw acknowledged (twice the append deadline ago: time for its door to queue the
//! webhook job), and every sweep another journals again, under the same event id,
//! each change listed longer than `journal.unjournaled_after_ms`, and queues the webhook
//! job that announces it (docs/journal.md, "Broker faults"). Several instances may sweep
//! at once: a change is claimed by one (`Store::claim_unjournaled`: a compare-and-set of
//! its score), and one claimed by an instance that stops is due again a window later.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::kafka::publish::Publisher;
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
    /// `journal.append_deadline_ms`: an acknowledged change stays listed twice this long
    /// (its door may still be queueing its webhook job), and a sweep's webhook job waits
    /// at most this long.
    pub deadline: Duration,
}

/// Runs, until `stop`, two tasks: one takes acknowledged changes off the lists every
/// `interval` (never behind a sweep), the other sweeps every quarter of the window.
pub fn spawn(sweep: Sweep, stop: CancellationToken) {
    let store = sweep.switch.hosted.store.clone();
    store.forget_in_batches();
    let hold = sweep.deadline * 2;
    let (forget_stop, interval) = (stop.clone(), sweep.interval);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = forget_stop.cancelled() => true,
                _ = tick.tick() => false,
            };
            if let Err(e) = store.forget_acknowledged(hold).await {
                tracing::warn!(error = %e, "could not take acknowledged changes off the unjournaled lists");
            }
            if stopping {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval((sweep.after / 4).max(sweep.interval));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let institutions: Vec<Arc<Institution>> =
                sweep.switch.routing.institutions().cloned().collect();
            let mut listed = 0u64;
            for inst in &institutions {
                if stop.is_cancelled() {
                    return;
                }
                settle_institution(&sweep, inst, &stop).await;
                listed += sweep
                    .switch
                    .hosted
                    .store
                    .unjournaled_count(&inst.code)
                    .await
                    .unwrap_or(0);
            }
            metrics::gauge!(m::UNJOURNALED_CHANGES).set(listed as f64);
        }
    });
}

/// Settles the institution's changes listed longer than the window.
async fn settle_institution(sweep: &Sweep, inst: &Institution, stop: &CancellationToken) {
    let store = &sweep.switch.hosted.store;
    let after_ms = sweep.after.as_millis() as i64;
    let now = match store.redis_time_ms().await {
        Ok(now) => now,
        Err(e) => {
            tracing::warn!(error = %e, "unjournaled sweep: cannot read Redis's clock");
            return;
        }
    };
    let due = match store
        .unjournaled_due(&inst.code, now - after_ms, SWEEP_LIMIT)
        .await
    {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(institution = %inst.code, error = %e, "unjournaled sweep: cannot read the list");
            return;
        }
    };
    for (member, score) in due {
        match store
            .claim_unjournaled(&inst.code, &member, score, now + after_ms)
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
                    let sent = sweep
                        .publisher
                        .send_webhook_job(&sweep.webhook_topic, &w, stop);
                    if !matches!(tokio::time::timeout(sweep.deadline, sent).await, Ok(true)) {
                        // Stopping, or the broker away: still listed, due a window later.
                        return;
                    }
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
