//! The dispatcher's loop: one consumer over the webhook topic and every retry tier.
//!
//! A message whose `due_ms` has not come yet stays at the head of its partition: the
//! partition is paused (later messages of that partition that were already fetched queue
//! behind it, in order) and resumed once the head is due. Tiers hold jobs with one delay
//! each, so a tier is FIFO by due time up to the jitter and waiting for its head costs at
//! most that. The loop keeps polling meanwhile, so the consumer stays in its group however
//! long a tier's delay is.
//!
//! Due jobs are handled by a task each, bounded by `webhook.max_in_flight`. A bill's jobs
//! pass through an in-process chain (each waits for the previous job of its bill to settle)
//! and through the persisted gate (`gate`), so one bill's events are attempted one at a
//! time and in order. An offset is stored only once its job is delivered or acknowledged
//! by Kafka on its next topic (retry tier or dead letter), in partition order (`Offsets`).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::TopicPartitionList;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::deliver::{self, Envelope};
use super::gate::{Gate, Holder};
use crate::kafka::offsets::Offsets;
use crate::kafka::publish::{sleep_or_shutdown, Outgoing, Publisher};
use crate::metrics as m;
use crate::protocol::webhook::WebhookJob;
use crate::routing::Routing;

/// The dispatcher's consumer; its last drop, wherever it happens (a blocking lag query
/// that outlived the dispatcher at shutdown), closes it on a thread of its own
/// (`kafka::Closing`), never on a runtime's thread.
pub type WebhookConsumer =
    crate::kafka::Closing<rdkafka::consumer::StreamConsumer<TrackingContext>>;

/// Partitions revoked since the loop last looked: their paused heads are dropped (the
/// next owner consumes them again from the committed offset).
pub use crate::kafka::Revoked;
use crate::kafka::TrackingContext;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Per institution: call slots, jobs waiting for one, and the rate limit.
struct InstLimit {
    slots: Semaphore,
    waiting: AtomicUsize,
    rate: Option<DefaultDirectRateLimiter>,
}

/// Decrements on drop, so every exit path gives the place back.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

enum Item {
    Job(Box<Envelope>),
    Malformed { raw: Vec<u8>, error: String },
}

/// A consumed message and where it came from.
struct Held {
    seq: u64,
    topic: String,
    partition: i32,
    offset: i64,
    /// Index into the tiers; `None` for the main webhook topic.
    tier: Option<usize>,
    item: Item,
}

impl Held {
    fn due_ms(&self) -> i64 {
        match &self.item {
            Item::Job(e) => e.due_ms,
            Item::Malformed { .. } => 0,
        }
    }

    fn bill_key(&self) -> Option<String> {
        match &self.item {
            Item::Job(e) => Some(format!("{}:{}", e.job.institution_code, e.job.bill_hash)),
            Item::Malformed { .. } => None,
        }
    }
}

pub struct Dispatcher {
    pub routing: Arc<Routing>,
    pub publisher: Publisher,
    pub gate: Gate,
    pub http: reqwest::Client,
    pub main_topic: String,
    pub tiers: Vec<String>,
    pub dead_letter: String,
    pub backoff: Vec<Duration>,
    pub jitter: f64,
    pub concurrency: usize,
    pub rate_per_second: u32,
    pub institution_queue: usize,
    pub max_in_flight: usize,
    pub shutdown: CancellationToken,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    limits: Mutex<HashMap<String, Arc<InstLimit>>>,
    /// Bill → (seq, settled signal) of the last job of that bill handed to a task.
    chains: Mutex<HashMap<String, (u64, watch::Receiver<bool>)>>,
    /// seq → (topic index: 0 main, k tier k, created_at ms) of every job held.
    pending: Mutex<HashMap<u64, (usize, i64)>>,
}

impl Dispatcher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        routing: Arc<Routing>,
        publisher: Publisher,
        gate: Gate,
        http: reqwest::Client,
        main_topic: String,
        tiers: Vec<String>,
        dead_letter: String,
        s: &super::WebhookSettings,
        shutdown: CancellationToken,
        retry_initial: Duration,
        retry_max: Duration,
    ) -> Dispatcher {
        Dispatcher {
            routing,
            publisher,
            gate,
            http,
            main_topic,
            tiers,
            dead_letter,
            backoff: s.backoff.clone(),
            jitter: s.jitter,
            concurrency: s.concurrency,
            rate_per_second: s.rate_per_second,
            institution_queue: s.institution_queue,
            max_in_flight: s.max_in_flight,
            shutdown,
            retry_initial,
            retry_max,
            limits: Mutex::default(),
            chains: Mutex::default(),
            pending: Mutex::default(),
        }
    }

    /// Runs until shutdown, then lets the tasks finish (or abandon, uncommitted, what
    /// shutdown interrupted) and commits the stored offsets.
    pub async fn run(
        self: Arc<Self>,
        consumer: Arc<WebhookConsumer>,
        offsets: Arc<Offsets>,
        revoked: Revoked,
    ) {
        let permits = Arc::new(Semaphore::new(self.max_in_flight));
        let mut tasks = JoinSet::new();
        let mut waiting: HashMap<(String, i32), VecDeque<Held>> = HashMap::new();
        let mut seq = 0u64;
        let reporter = tokio::spawn(self.clone().report(consumer.clone()));
        'consume: loop {
            while tasks.try_join_next().is_some() {}
            self.drop_revoked(&revoked, &mut waiting);
            let now = now_ms();
            let ready: Vec<(String, i32)> = waiting
                .iter()
                .filter(|(_, q)| q.front().is_some_and(|h| h.due_ms() <= now))
                .map(|(k, _)| k.clone())
                .collect();
            for key in ready {
                while let Some(h) = waiting
                    .get_mut(&key)
                    .and_then(|q| {
                        q.front()
                            .is_some_and(|h| h.due_ms() <= now)
                            .then(|| q.pop_front())
                    })
                    .flatten()
                {
                    let Some(permit) = acquire(&permits, &self.shutdown).await else {
                        break 'consume;
                    };
                    self.spawn(&mut tasks, h, permit, &consumer, &offsets);
                }
                if waiting.get(&key).is_some_and(VecDeque::is_empty) {
                    waiting.remove(&key);
                    set_paused(&consumer, &key, false);
                }
            }
            let next_due = waiting
                .values()
                .filter_map(VecDeque::front)
                .map(Held::due_ms)
                .min();
            let nap = next_due.map_or(1000, |d| (d - now_ms()).clamp(1, 1000));
            let msg = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(nap as u64)) => continue,
                m = consumer.recv() => m.map(|m| m.detach()),
            };
            // Rebalance callbacks run inside recv(): forget revoked heads before this message
            // (possibly of a partition just assigned again) joins a stale queue.
            self.drop_revoked(&revoked, &mut waiting);
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook consume error");
                    if !sleep_or_shutdown(Duration::from_millis(200), &self.shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            offsets.track(msg.topic(), msg.partition(), msg.offset());
            seq += 1;
            let held = self.parse(seq, &msg);
            self.register(&held);
            let key = (held.topic.clone(), held.partition);
            if let Some(q) = waiting.get_mut(&key) {
                q.push_back(held);
                continue;
            }
            if held.due_ms() > now_ms() {
                set_paused(&consumer, &key, true);
                waiting.insert(key, VecDeque::from([held]));
                continue;
            }
            let Some(permit) = acquire(&permits, &self.shutdown).await else {
                break;
            };
            self.spawn(&mut tasks, held, permit, &consumer, &offsets);
        }
        for h in waiting.into_values().flatten() {
            self.unregister(h.seq);
        }
        while tasks.join_next().await.is_some() {}
        reporter.abort();
        let _ = reporter.await;
        // Asynchronous on purpose: a synchronous commit blocks a thread until the broker
        // answers, for ever if it is gone. Closing the consumer commits the stored offsets
        // once more; an offset that misses both is only a job handled twice.
        match consumer.commit_consumer_state(CommitMode::Async) {
            Ok(()) => tracing::info!("webhook dispatcher: final offset commit sent"),
            Err(e) => tracing::info!(error = %e, "webhook dispatcher: nothing to commit or failed"),
        }
        close(consumer).await;
    }

    fn drop_revoked(
        &self,
        revoked: &Revoked,
        waiting: &mut HashMap<(String, i32), VecDeque<Held>>,
    ) {
        for key in lock(revoked).drain(..) {
            for h in waiting.remove(&key).into_iter().flatten() {
                self.unregister(h.seq);
            }
        }
    }

    fn parse(&self, seq: u64, msg: &OwnedMessage) -> Held {
        let topic = msg.topic().to_owned();
        let tier = self.tiers.iter().position(|t| *t == topic);
        let raw = msg.payload().unwrap_or_default();
        let item = if tier.is_some() {
            serde_json::from_slice::<Envelope>(raw).map_err(|e| e.to_string())
        } else {
            serde_json::from_slice::<WebhookJob>(raw)
                .map(|job| Envelope {
                    job,
                    attempts: Vec::new(),
                    due_ms: 0,
                    reason: None,
                })
                .map_err(|e| e.to_string())
        };
        let item = match item {
            Ok(env) => Item::Job(Box::new(env)),
            Err(error) => Item::Malformed {
                raw: raw.to_vec(),
                error,
            },
        };
        Held {
            seq,
            topic,
            partition: msg.partition(),
            offset: msg.offset(),
            tier,
            item,
        }
    }

    fn register(&self, h: &Held) {
        let created = match &h.item {
            Item::Job(e) => chrono::DateTime::parse_from_rfc3339(&e.job.created_at)
                .map(|t| t.timestamp_millis())
                .unwrap_or_else(|_| now_ms()),
            Item::Malformed { .. } => now_ms(),
        };
        let idx = h.tier.map_or(0, |t| t + 1);
        lock(&self.pending).insert(h.seq, (idx, created));
    }

    fn unregister(&self, seq: u64) {
        lock(&self.pending).remove(&seq);
    }

    /// Hands `h` to a task. The bill's chain is extended here, synchronously, so the
    /// chain follows consumption order.
    fn spawn(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        mut h: Held,
        permit: OwnedSemaphorePermit,
        consumer: &Arc<WebhookConsumer>,
        offsets: &Arc<Offsets>,
    ) {
        let bill = h.bill_key();
        let (done, settled_rx) = watch::channel(false);
        let prev = bill.as_ref().and_then(|b| {
            lock(&self.chains)
                .insert(b.clone(), (h.seq, settled_rx))
                .map(|(_, rx)| rx)
        });
        let (this, consumer, offsets) = (self.clone(), consumer.clone(), offsets.clone());
        tasks.spawn(async move {
            let settled = this.handle(&mut h, prev).await;
            let _ = done.send(true);
            if let Some(b) = bill {
                let mut chains = lock(&this.chains);
                if chains.get(&b).is_some_and(|(s, _)| *s == h.seq) {
                    chains.remove(&b);
                }
            }
            this.unregister(h.seq);
            if settled {
                if let Some(upto) = offsets.complete(&h.topic, h.partition, h.offset) {
                    if let Err(e) = consumer.store_offset(&h.topic, h.partition, upto) {
                        // Revoked meanwhile: the next owner handles the job again.
                        tracing::debug!(error = %e, topic = %h.topic, partition = h.partition, "webhook offset not stored");
                    }
                }
            }
            drop(permit);
        });
    }

    /// Settles one job; `true` once it is delivered or safely on its next topic, `false`
    /// if shutdown interrupted it (its offset stays, so it is consumed again).
    async fn handle(&self, h: &mut Held, prev: Option<watch::Receiver<bool>>) -> bool {
        if let Some(mut rx) = prev {
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = rx.wait_for(|settled| *settled) => {}
            }
            // The previous job may have been abandoned by shutdown: do not overtake it.
            if self.shutdown.is_cancelled() {
                return false;
            }
        }
        let tier = h.tier;
        let topic = h.topic.clone();
        match &mut h.item {
            Item::Malformed { raw, error } => self.dead_letter_raw(&topic, raw, error).await,
            Item::Job(env) => self.settle(env, tier).await,
        }
    }

    async fn settle(&self, env: &mut Envelope, tier: Option<usize>) -> bool {
        let inst_code = env.job.institution_code.clone();
        let bill = env.job.bill_hash.clone();
        let Some(holder) = self.redis(|| self.gate.holder(&inst_code, &bill)).await else {
            return false;
        };
        if let Some(h) = holder.filter(|h| h.id != env.job.id) {
            return self.follow(env, h).await;
        }
        let Some(inst) = self.routing.by_code(&inst_code).cloned() else {
            return self.dead_letter(env, "unknown_institution").await;
        };
        let Some(url) = inst
            .webhook_url
            .clone()
            .or_else(|| env.job.webhook_url.clone())
        else {
            return self.dead_letter(env, "no_webhook_url").await;
        };
        let limit = self.limit(&inst.code);
        if limit.waiting.load(Ordering::Relaxed) >= self.institution_queue {
            // The institution is saturated (slow or down): park the job in a tier rather
            // than hold memory and a partition for it. No attempt is spent.
            metrics::counter!(m::WEBHOOK_RESULTS_TOTAL, "institution" => inst_code.clone(), "result" => "deferred").increment(1);
            return self.schedule(env, tier.unwrap_or(0)).await;
        }
        limit.waiting.fetch_add(1, Ordering::Relaxed);
        let place = Waiting(&limit.waiting);
        let slot = tokio::select! {
            _ = self.shutdown.cancelled() => return false,
            s = limit.slots.acquire() => match s { Ok(s) => s, Err(_) => return false },
        };
        if let Some(rate) = &limit.rate {
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = rate.until_ready() => {}
            }
        }
        let attempt = deliver::call(&self.http, &url, inst.api_key.as_bytes(), &env.job).await;
        drop(slot);
        drop(place);
        metrics::counter!(m::WEBHOOK_ATTEMPTS_TOTAL, "institution" => inst_code.clone(), "outcome" => attempt.outcome.clone()).increment(1);
        metrics::histogram!(m::WEBHOOK_ATTEMPT_SECONDS).record(attempt.duration_ms as f64 / 1000.0);
        if attempt.delivered() {
            if let Ok(created) = chrono::DateTime::parse_from_rfc3339(&env.job.created_at) {
                let age = (now_ms() - created.timestamp_millis()).max(0) as f64 / 1000.0;
                metrics::histogram!(m::WEBHOOK_DELIVERY_SECONDS).record(age);
            }
            metrics::counter!(m::WEBHOOK_RESULTS_TOTAL, "institution" => inst_code.clone(), "result" => "delivered").increment(1);
            tracing::debug!(id = %env.job.id, attempts = env.attempts.len() + 1, "webhook delivered");
            let id = env.job.id.clone();
            return self
                .redis(|| self.gate.release(&inst_code, &bill, &id))
                .await
                .is_some();
        }
        tracing::info!(id = %env.job.id, institution = %inst_code, outcome = %attempt.outcome,
            status = ?attempt.status, error = ?attempt.error, attempt = env.attempts.len() + 1, "webhook attempt failed");
        env.attempts.push(attempt);
        let n = env.attempts.len();
        if n <= self.tiers.len() {
            metrics::counter!(m::WEBHOOK_RESULTS_TOTAL, "institution" => inst_code, "result" => "retry").increment(1);
            self.schedule(env, n - 1).await
        } else {
            self.dead_letter(env, "exhausted").await
        }
    }

    /// Moves the job to tier `t`, due after that tier's delay: takes the bill's gate first,
    /// so later events of the bill follow it even if this process dies right after.
    async fn schedule(&self, env: &mut Envelope, t: usize) -> bool {
        let t = t.min(self.tiers.len() - 1);
        env.due_ms = now_ms() + jittered(self.backoff[t], self.jitter).as_millis() as i64;
        let holder = Holder {
            id: env.job.id.clone(),
            topic: self.tiers[t].clone(),
            due_ms: env.due_ms,
        };
        let (inst, bill) = (env.job.institution_code.clone(), env.job.bill_hash.clone());
        match self.redis(|| self.gate.hold(&inst, &bill, &holder)).await {
            None => false,
            // Another event of the bill took the gate meanwhile: wait behind it.
            Some(Some(other)) => self.follow(env, other).await,
            Some(None) => self.publish(&holder.topic, env).await,
        }
    }

    /// Queues the job, unattempted, behind `h`, an earlier event of its bill that holds the
    /// bill's gate and waits in a tier.
    async fn follow(&self, env: &mut Envelope, h: Holder) -> bool {
        let inst_code = &env.job.institution_code;
        metrics::counter!(m::WEBHOOK_RESULTS_TOTAL, "institution" => inst_code.clone(), "result" => "followed").increment(1);
        tracing::debug!(id = %env.job.id, behind = %h.id, topic = %h.topic, "webhook follows an earlier event of its bill");
        // Not before a second from now: a holder that is overdue but not yet back (a tier
        // paused behind a later head) must not make its followers spin.
        env.due_ms = h.due_ms.max(now_ms() + 1000);
        // A tier removed from the configuration since: wait in the first one instead.
        let topic = if self.tiers.contains(&h.topic) {
            h.topic
        } else {
            self.tiers[0].clone()
        };
        self.publish(&topic, env).await
    }

    /// Dead-letters the job with every attempt, then lets the bill's next event go.
    async fn dead_letter(&self, env: &mut Envelope, reason: &str) -> bool {
        let (inst, bill, id) = (
            env.job.institution_code.clone(),
            env.job.bill_hash.clone(),
            env.job.id.clone(),
        );
        tracing::warn!(%id, institution = %inst, reason, attempts = env.attempts.len(), "webhook dead-lettered");
        metrics::counter!(m::WEBHOOK_RESULTS_TOTAL, "institution" => inst.clone(), "result" => "dead_letter").increment(1);
        env.reason = Some(reason.to_owned());
        env.due_ms = 0;
        if !self.publish(&self.dead_letter, env).await {
            return false;
        }
        self.redis(|| self.gate.release(&inst, &bill, &id))
            .await
            .is_some()
    }

    async fn dead_letter_raw(&self, topic: &str, raw: &[u8], error: &str) -> bool {
        tracing::warn!(%topic, %error, "malformed webhook message dead-lettered");
        metrics::counter!(m::WEBHOOK_RESULTS_TOTAL, "institution" => "", "result" => "malformed")
            .increment(1);
        let body = serde_json::json!({
            "reason": "malformed",
            "error": error,
            "topic": topic,
            "raw": String::from_utf8_lossy(raw),
        });
        let msg = Outgoing {
            topic: self.dead_letter.clone(),
            key: Vec::new(),
            payload: body.to_string().into_bytes(),
            headers: Vec::new(),
            partition: None,
        };
        self.publisher.send(&msg, &self.shutdown).await
    }

    async fn publish(&self, topic: &str, env: &Envelope) -> bool {
        let payload = match serde_json::to_vec(env) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "webhook envelope not serializable");
                return false;
            }
        };
        let msg = Outgoing {
            topic: topic.to_owned(),
            key: env.job.bill_hash.clone().into_bytes(),
            payload,
            headers: vec![("event-id", env.job.id.clone().into_bytes())],
            partition: None,
        };
        self.publisher.send(&msg, &self.shutdown).await
    }

    fn limit(&self, code: &str) -> Arc<InstLimit> {
        lock(&self.limits)
            .entry(code.to_owned())
            .or_insert_with(|| {
                Arc::new(InstLimit {
                    slots: Semaphore::new(self.concurrency),
                    waiting: AtomicUsize::new(0),
                    rate: NonZeroU32::new(self.rate_per_second)
                        .map(|r| RateLimiter::direct(Quota::per_second(r))),
                })
            })
            .clone()
    }

    /// Retries a Redis call with backoff until it answers; `None` if shutdown came first.
    async fn redis<T, F, Fut>(&self, f: F) -> Option<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let mut backoff = self.retry_initial;
        loop {
            match f().await {
                Ok(v) => return Some(v),
                Err(e) => {
                    metrics::counter!(m::RETRIES_TOTAL, "cause" => "store").increment(1);
                    tracing::warn!(error = %e, "webhook gate: redis unavailable, retrying");
                }
            }
            if !sleep_or_shutdown(backoff, &self.shutdown).await {
                return None;
            }
            backoff = (backoff * 2).min(self.retry_max);
        }
    }

    /// Publishes the backlog gauges: jobs held, every second; jobs not yet consumed
    /// (lag of the assigned partitions), every 5 seconds.
    async fn report(self: Arc<Self>, consumer: Arc<WebhookConsumer>) {
        let labels: Vec<String> = std::iter::once("main".to_owned())
            .chain((1..=self.tiers.len()).map(|k| format!("retry{k}")))
            .collect();
        let label_of = |topic: &str| -> String {
            match self.tiers.iter().position(|t| t == topic) {
                Some(k) => labels[k + 1].clone(),
                None => labels[0].clone(),
            }
        };
        let mut tick = 0u64;
        loop {
            if !sleep_or_shutdown(Duration::from_secs(1), &self.shutdown).await {
                return;
            }
            tick += 1;
            if tick.is_multiple_of(5) {
                let c = consumer.clone();
                // librdkafka's offset and watermark queries block: keep them off the workers.
                if let Ok(lags) = tokio::task::spawn_blocking(move || {
                    // Short: shutdown may have to wait for this blocking call.
                    crate::kafka::partition_lags(&**c, Duration::from_millis(500))
                })
                .await
                {
                    let mut by_label: HashMap<String, i64> =
                        labels.iter().map(|l| (l.clone(), 0)).collect();
                    for (topic, _, lag) in lags {
                        *by_label.entry(label_of(&topic)).or_default() += lag;
                    }
                    for (label, lag) in by_label {
                        metrics::gauge!(m::WEBHOOK_BACKLOG, "topic" => label).set(lag as f64);
                    }
                }
            }
            let mut counts = vec![0usize; labels.len()];
            let mut oldest: Option<i64> = None;
            for (idx, created) in lock(&self.pending).values() {
                counts[(*idx).min(labels.len() - 1)] += 1;
                oldest = Some(oldest.map_or(*created, |o| o.min(*created)));
            }
            for (label, n) in labels.iter().zip(counts) {
                metrics::gauge!(m::WEBHOOK_PENDING, "topic" => label.clone()).set(n as f64);
            }
            let age = oldest.map_or(0.0, |o| (now_ms() - o).max(0) as f64 / 1000.0);
            metrics::gauge!(m::WEBHOOK_OLDEST_PENDING_SECONDS).set(age);
        }
    }
}

/// Closes the consumer (leave the group, final auto-commit). librdkafka's close waits
/// for the broker, without end if the broker is gone, so it runs on a thread of its own
/// and is waited for a bounded time: a vanished broker must not hang shutdown (or keep a
/// runtime worker blocked for ever).
async fn close(consumer: Arc<WebhookConsumer>) {
    // The last holder closes it (waited for at most 15 s); a lag query still running
    // holds a copy, whose drop closes it on a thread of its own (`kafka::Closing`).
    if let Ok(consumer) = Arc::try_unwrap(consumer) {
        consumer.close(Duration::from_secs(15)).await;
    }
}

async fn acquire(
    permits: &Arc<Semaphore>,
    shutdown: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    tokio::select! {
        _ = shutdown.cancelled() => None,
        p = permits.clone().acquire_owned() => p.ok(),
    }
}

fn set_paused(consumer: &WebhookConsumer, (topic, partition): &(String, i32), paused: bool) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, *partition);
    let r = if paused {
        consumer.pause(&tpl)
    } else {
        consumer.resume(&tpl)
    };
    if let Err(e) = r {
        // Not fatal: an unpaused partition only means more messages queue in memory.
        tracing::debug!(error = %e, %topic, partition, paused, "webhook pause/resume failed");
    }
}

/// `d` stretched or shrunk at random by up to `fraction`.
pub fn jittered(d: Duration, fraction: f64) -> Duration {
    if fraction <= 0.0 {
        return d;
    }
    // A fresh RandomState is seeded from the OS once per thread and then stepped, which is
    // random enough to spread retries; no RNG crate needed for that.
    let h = std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now());
    let unit = (h >> 11) as f64 / (1u64 << 53) as f64;
    d.mul_f64((1.0 + fraction * (2.0 * unit - 1.0)).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_fraction() {
        let d = Duration::from_millis(10_000);
        for _ in 0..1000 {
            let j = jittered(d, 0.2);
            assert!(
                j >= Duration::from_millis(8_000) && j <= Duration::from_millis(12_000),
                "{j:?}"
            );
        }
        assert_eq!(jittered(d, 0.0), d);
    }
}
