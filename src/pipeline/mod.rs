//! The Kafka loop: consume → (per-VA lanes) process → store offsets in order.
//!
//! Messages for different VAs run concurrently on `pipeline.lanes` lanes; a message's lane
//! is chosen by its key (the VA), so one VA's messages run in order. On a Redis Cluster, a
//! message whose slot does not answer (its master is failing over) is parked: it and the
//! later messages of its VA are retried, in order, by a task of their own, while the lane
//! goes on with other VAs, so a dead master pauses only the VAs of its slots. Parked
//! messages keep their in-flight slot (`pipeline.max_in_flight`): a master down long
//! enough for that many of its requests to arrive stalls consumption (nothing is lost;
//! the consumer waits for the failover as it does on one Redis). An offset is stored
//! only after its answer (and webhook job) is acknowledged, and only once every earlier
//! offset of its partition is too (`offsets`); librdkafka commits stored offsets
//! periodically and once more at shutdown. Delivery is at-least-once; the handlers are
//! idempotent, so a redelivered payment pays once and answers the same.

pub mod config;
pub mod process;

pub use config::PipelineSettings;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::kafka::offsets::Offsets;
use crate::kafka::publish::{sleep_or_shutdown, Publisher};
use crate::kafka::TopicSettings;
use crate::kafka::TrackingContext;
use crate::lock::Owner;
use crate::metrics as m;
use crate::switch::Switch;
use process::{process, Inbound, Step};

/// Everything a lane needs to process a message.
pub struct Ctx {
    pub switch: Switch,
    pub publisher: Publisher,
    pub topics: TopicSettings,
    pub shutdown: CancellationToken,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub redis_up: AtomicBool,
    /// Redis Cluster: a request whose VA's slot does not answer is set aside (parked) and
    /// its lane goes on with other VAs; one Redis: the whole consumer waits for Redis
    /// (every VA would fail alike).
    pub park: bool,
}

impl Ctx {
    pub fn set_redis_up(&self, up: bool) {
        if self.redis_up.swap(up, Ordering::Relaxed) != up {
            metrics::gauge!(m::REDIS_UP).set(if up { 1.0 } else { 0.0 });
            if up {
                tracing::info!("redis is back, consuming again");
            } else {
                tracing::warn!("redis unreachable: pausing consumption until it answers");
            }
        }
    }
}

pub type SwitchConsumer = crate::kafka::Closing<StreamConsumer<TrackingContext>>;

fn lane_of(msg: &Inbound, lanes: usize) -> usize {
    let mut h = DefaultHasher::new();
    match &msg.key {
        Some(k) if !k.is_empty() => k.hash(&mut h),
        // No key: no order to keep, spread by position.
        _ => (msg.partition, msg.offset).hash(&mut h),
    }
    (h.finish() % lanes as u64) as usize
}

/// How many lanes and how much may be in flight.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub lanes: usize,
    pub lane_queue: usize,
    /// Messages consumed and not yet acknowledged (answer published), across all lanes.
    pub max_in_flight: usize,
}

type Work = (Inbound, OwnedSemaphorePermit);

/// Runs the loop until `ctx.shutdown` is cancelled, then drains the lanes and commits.
pub async fn run(
    ctx: Arc<Ctx>,
    consumer: Arc<SwitchConsumer>,
    offsets: Arc<Offsets>,
    limits: Limits,
) {
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    let mut senders = Vec::with_capacity(limits.lanes);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..limits.lanes {
        let (tx, rx) = mpsc::channel::<Work>(limits.lane_queue);
        senders.push(tx);
        workers.spawn(lane(ctx.clone(), consumer.clone(), offsets.clone(), rx));
    }

    consume(&ctx, &consumer, &offsets, &senders, &in_flight).await;

    // Stop fetching, finish what was handed to the lanes and wait for its acknowledgements
    // (work interrupted by shutdown is left uncommitted and will be consumed again), then
    // commit what was stored.
    drop(senders);
    while workers.join_next().await.is_some() {}
    let _all = in_flight.acquire_many(limits.max_in_flight as u32).await;
    let c = consumer.clone();
    let commit =
        tokio::task::spawn_blocking(move || c.commit_consumer_state(CommitMode::Sync)).await;
    match commit {
        Ok(Ok(())) => tracing::info!("final offset commit done"),
        // Nothing consumed since the last commit: not worth a line at info.
        Ok(Err(rdkafka::error::KafkaError::ConsumerCommit(
            rdkafka::types::RDKafkaErrorCode::NoOffset,
        ))) => tracing::debug!("final offset commit: nothing new to commit"),
        Ok(Err(e)) => tracing::warn!(error = %e, "final offset commit failed"),
        Err(e) => tracing::warn!(error = %e, "final offset commit task failed"),
    }
}

async fn consume(
    ctx: &Ctx,
    consumer: &SwitchConsumer,
    offsets: &Offsets,
    lanes: &[mpsc::Sender<Work>],
    in_flight: &Arc<Semaphore>,
) {
    loop {
        if !ctx.redis_up.load(Ordering::Relaxed) && !wait_for_redis(ctx).await {
            return;
        }
        let permit = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            p = in_flight.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let msg = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            m = consumer.recv() => m,
        };
        let inbound = match msg {
            Ok(m) => Inbound {
                topic: m.topic().to_owned(),
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                // Exactly one `signature` header: two are two readings of one request
                // (docs/protocol.md decision 17), refused as unsigned.
                signature: m.headers().and_then(|hs| {
                    let mut sigs = hs
                        .iter()
                        .filter(|h| h.key.eq_ignore_ascii_case("signature"));
                    match (sigs.next(), sigs.next()) {
                        (Some(h), None) => h.value.map(|v| String::from_utf8_lossy(v).into_owned()),
                        _ => None,
                    }
                }),
                received: Instant::now(),
            },
            Err(e) => {
                tracing::warn!(error = %e, "consume error");
                if !sleep_or_shutdown(Duration::from_millis(200), &ctx.shutdown).await {
                    return;
                }
                continue;
            }
        };
        offsets.track(&inbound.topic, inbound.partition, inbound.offset);
        m::inflight().increment(1.0);
        let lane = &lanes[lane_of(&inbound, lanes.len())];
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            r = lane.send((inbound, permit)) => if r.is_err() { return },
        }
    }
}

/// Waits until Redis answers a PING. `false` if shutdown came first.
async fn wait_for_redis(ctx: &Ctx) -> bool {
    let mut backoff = ctx.retry_initial;
    loop {
        if ctx.switch.hosted.store.ping().await.is_ok() {
            ctx.set_redis_up(true);
            return true;
        }
        if !sleep_or_shutdown(backoff, &ctx.shutdown).await {
            return false;
        }
        backoff = (backoff * 2).min(ctx.retry_max);
    }
}

/// A VA's messages set aside in a lane, in arrival order (see [`lane`]).
type Parked =
    Arc<std::sync::Mutex<std::collections::HashMap<Vec<u8>, std::collections::VecDeque<Work>>>>;

/// Handles one lane's messages in order. The lane waits for the handling and for the hand
/// over to the producer, not for Kafka's acknowledgement: a task per message waits for that
/// and then stores the offset (in partition order, through `offsets`). A parked VA's
/// messages go to its queue, which a task of its own works through (`run_parked`).
async fn lane(
    ctx: Arc<Ctx>,
    consumer: Arc<SwitchConsumer>,
    offsets: Arc<Offsets>,
    mut rx: mpsc::Receiver<Work>,
) {
    let parked: Parked = Arc::default();
    while let Some(work) = rx.recv().await {
        let key = work.0.key.clone().unwrap_or_default();
        if ctx.park {
            let mut p = parked.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(q) = p.get_mut(&key) {
                q.push_back(work);
                continue;
            }
        }
        let (msg, permit) = work;
        match process(&ctx, &msg, Owner::new(), ctx.park).await {
            Step::Done(acked) => settle(&consumer, &offsets, msg, permit, acked),
            Step::Stopped => m::inflight().decrement(1.0),
            Step::Park(owner) => {
                metrics::counter!(m::PARKED_TOTAL).increment(1);
                parked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key.clone(), std::collections::VecDeque::new());
                tokio::spawn(run_parked(
                    ctx.clone(),
                    consumer.clone(),
                    offsets.clone(),
                    parked.clone(),
                    key,
                    (msg, permit),
                    owner,
                ));
            }
        }
    }
}

/// Works through a parked VA's queue: its first message with the owner of its first
/// attempt (which may hold the VA's lock), retrying until it is answered, then each later
/// message of the VA in order; the VA goes back to its lane when the queue is empty.
async fn run_parked(
    ctx: Arc<Ctx>,
    consumer: Arc<SwitchConsumer>,
    offsets: Arc<Offsets>,
    parked: Parked,
    key: Vec<u8>,
    first: Work,
    owner: Owner,
) {
    let mut next = Some((first, owner));
    while let Some(((msg, permit), owner)) = next.take() {
        let stopped = match process(&ctx, &msg, owner, false).await {
            Step::Done(acked) => {
                settle(&consumer, &offsets, msg, permit, acked);
                false
            }
            Step::Stopped | Step::Park(_) => {
                m::inflight().decrement(1.0);
                drop(permit);
                true
            }
        };
        let mut p = parked.lock().unwrap_or_else(|e| e.into_inner());
        if stopped {
            // Shutdown: the later messages of this VA are left unanswered too (consumed
            // again after the restart, in order), never answered ahead of this one.
            for _ in p.remove(&key).unwrap_or_default() {
                m::inflight().decrement(1.0);
            }
            return;
        }
        match p
            .get_mut(&key)
            .and_then(std::collections::VecDeque::pop_front)
        {
            Some(w) => next = Some((w, Owner::new())),
            None => {
                p.remove(&key);
            }
        }
    }
}

/// Waits (in a task) for a handled message's acknowledgements, then stores its offset.
fn settle(
    consumer: &Arc<SwitchConsumer>,
    offsets: &Arc<Offsets>,
    msg: Inbound,
    permit: OwnedSemaphorePermit,
    acked: impl std::future::Future<Output = bool> + Send + 'static,
) {
    let (consumer, offsets) = (consumer.clone(), offsets.clone());
    tokio::spawn(async move {
        if acked.await {
            if let Some(done) = offsets.complete(&msg.topic, msg.partition, msg.offset) {
                if let Err(e) = consumer.store_offset(&msg.topic, msg.partition, done) {
                    // The partition was revoked meanwhile: its next owner redoes the work.
                    tracing::debug!(error = %e, partition = msg.partition, offset = done, "offset not stored");
                }
            }
        }
        m::inflight().decrement(1.0);
        drop(permit);
    });
}
