//! VA locks: who owns one, and how long to wait for one.
//!
//! A VA lock (`SET key token NX PX ttl`, released by compare-and-delete) belongs to one
//! **attempt**: one delivery of one request through one door (a Kafka message, an HTTP
//! call, one resolver step). The attempt keeps its [`Owner`] across its own retries (Redis
//! away, a lost reply), so a retry takes back the lock it already holds instead of waiting
//! for it to expire. A concurrent copy of the same request (same channel and reference,
//! arriving twice over Kafka, or over Kafka and HTTP at once) is another attempt with
//! another owner: it waits for the lock, then finds the first copy's record and replays its
//! answer. Owners are never derived from the request's contents, which copies share.

use std::time::{Duration, Instant};

use crate::error::SwitchError;
use crate::metrics as m;

/// The owner token of one attempt: `<instance>:<attempt>`, two random UUIDs (the instance
/// part tells an operator reading a lock key which process holds it).
///
/// An owner also remembers whether it ever went for a VA lock: a payment whose attempt
/// may hold one (a retry after its lock was taken) continues under it instead of paying
/// optimistically, so that the lock is released on every way out (`hosted::Hosted::pay`).
#[derive(Clone, Debug)]
pub struct Owner(String, std::sync::Arc<std::sync::atomic::AtomicBool>);

impl PartialEq for Owner {
    fn eq(&self, other: &Owner) -> bool {
        self.0 == other.0
    }
}

impl Eq for Owner {}

impl Owner {
    /// A new attempt's owner, unique across attempts, processes and instances.
    pub fn new() -> Owner {
        static INSTANCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let instance = INSTANCE.get_or_init(|| uuid::Uuid::new_v4().simple().to_string());
        let mut attempt = uuid::Uuid::encode_buffer();
        let attempt = uuid::Uuid::new_v4().simple().encode_lower(&mut attempt);
        Owner(
            [instance.as_str(), ":", attempt].concat(),
            std::sync::Arc::default(),
        )
    }

    /// The token stored in the lock key.
    pub fn token(&self) -> &str {
        &self.0
    }

    /// Called before this attempt asks for a VA lock: from then on it may hold one.
    pub fn going_for_lock(&self) {
        self.1.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether this attempt ever asked for a VA lock (it may hold one now).
    pub fn may_hold_lock(&self) -> bool {
        self.1.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Default for Owner {
    fn default() -> Self {
        Owner::new()
    }
}

/// How long a VA lock lives (`switch.lock_ttl_ms`: longer than the slowest handling) and
/// how long an attempt waits for one held by another (`switch.lock_wait_ms`).
#[derive(Clone, Copy, Debug)]
pub struct LockTimes {
    pub ttl: Duration,
    pub wait: Duration,
}

/// Waiting for a VA lock held by another attempt: a pause of 2 ms doubling to 200 ms
/// between tries, `Busy` (retry the message later) once `limit` has passed. Counts the
/// contention once and, when the lock is finally taken, the time waited.
pub struct LockWait {
    started: Instant,
    pause: Duration,
    limit: Duration,
}

impl LockWait {
    const FIRST: Duration = Duration::from_millis(2);

    pub fn new(limit: Duration) -> LockWait {
        LockWait {
            started: Instant::now(),
            pause: Self::FIRST,
            limit,
        }
    }

    /// Called after a try found the lock held: sleeps before the next try.
    ///
    /// # Errors
    /// `Busy` once the wait has lasted longer than the limit.
    pub async fn pause(&mut self) -> Result<(), SwitchError> {
        if self.pause == Self::FIRST {
            metrics::counter!(m::LOCK_CONTENDED_TOTAL).increment(1);
        }
        if self.started.elapsed() > self.limit {
            return Err(SwitchError::Busy(
                "VA is locked by another transaction".into(),
            ));
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_millis(200));
        Ok(())
    }

    /// Called once the lock is ours: records the wait, if there was one.
    pub fn taken(&self) {
        if self.pause > Self::FIRST {
            m::stage(m::Stage::LockWait).record(self.started.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attempt_owns_its_own_token() {
        let a = Owner::new();
        let b = Owner::new();
        assert_ne!(a, b);
        // Same process: same instance part, different attempt part.
        assert_eq!(a.token().split(':').next(), b.token().split(':').next());
        assert_eq!(a.clone(), a);
    }
}

/// The one wait for a VA lock, for every path that takes one (hosted payments, reversals
/// and creates; passive forwarding, reversals and the resolver's steps): runs `attempt`,
/// which tries to take the lock (and may do more in the same round trip), until it reports
/// the lock taken with `Some`; between tries it waits as [`LockWait`] does, up to `limit`.
///
/// # Errors
/// `attempt`'s own error; `Busy` once `limit` has passed with the lock still held.
pub async fn take<T, F, Fut>(limit: Duration, mut attempt: F) -> Result<T, SwitchError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, SwitchError>>,
{
    let mut wait = LockWait::new(limit);
    loop {
        if let Some(taken) = attempt().await? {
            wait.taken();
            return Ok(taken);
        }
        wait.pause().await?;
    }
}
