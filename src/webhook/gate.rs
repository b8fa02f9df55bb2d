//! The per-bill ordering gate, persisted in Redis.
//!
//! When a bill's event cannot be delivered now (its attempt failed, or its institution is
//! saturated) and moves to a retry tier, it takes the bill's gate: a hash at
//! `ipg:{<institution>}:whgate:<bill>` holding its event id, the tier topic it now waits in
//! and when it is due. Any other event of that bill that comes along while the gate is held
//! is not attempted: it follows the holder into the same tier (same key, so the same
//! partition, behind it) with the holder's due time. The holder releases the gate when it
//! is delivered or dead-lettered (compare-and-delete on its id), so the next event goes.
//! Because the gate lives in Redis and the jobs on Kafka, a restart or a rebalance finds
//! both where they were.

use std::time::Duration;

use redis::Script;

use crate::store::keys;

/// Who holds a bill's gate, where it waits, and when it is due (ms since the epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub id: String,
    pub topic: String,
    pub due_ms: i64,
}

#[derive(Clone)]
pub struct Gate {
    conn: crate::store::Conn,
    release: Script,
    hold: Script,
    ttl: Duration,
}

const RELEASE: &str = r"
if redis.call('HGET', KEYS[1], 'id') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Takes (or moves) the gate for an event unless another event holds it; then answers that
/// holder. KEYS[1] gate. ARGV: 1 id, 2 topic, 3 due (ms), 4 TTL (ms).
/// Returns {} when the gate is the caller's, {id, topic, due} of the other holder otherwise.
const HOLD: &str = r"
local h = redis.call('HMGET', KEYS[1], 'id', 'topic', 'due')
if h[1] and h[1] ~= ARGV[1] then
  return {h[1], h[2] or '', h[3] or '0'}
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'topic', ARGV[2], 'due', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {}
";

impl Gate {
    /// # Errors
    /// An invalid Redis URL, a TLS file that cannot be read.
    pub fn new(
        redis: &crate::store::RedisSettings,
        ttl: Duration,
    ) -> Result<Gate, crate::store::StoreError> {
        Ok(Gate {
            conn: crate::store::connect(redis)?,
            release: Script::new(RELEASE),
            hold: Script::new(HOLD),
            ttl,
        })
    }

    /// # Errors
    /// Redis unavailable.
    pub async fn holder(&self, inst: &str, bill: &str) -> redis::RedisResult<Option<Holder>> {
        let mut c = self.conn.clone();
        let (id, topic, due): (Option<String>, Option<String>, Option<i64>) = redis::cmd("HMGET")
            .arg(keys::webhook_gate(inst, bill))
            .arg("id")
            .arg("topic")
            .arg("due")
            .query_async(&mut c)
            .await?;
        Ok(match (id, topic) {
            (Some(id), Some(topic)) => Some(Holder {
                id,
                topic,
                due_ms: due.unwrap_or(0),
            }),
            _ => None,
        })
    }

    /// Takes (or moves) the gate for `h.id`, atomically: only if it is free or already
    /// held by `h.id`. Returns the other event holding it, which the caller then follows.
    ///
    /// # Errors
    /// Redis unavailable.
    pub async fn hold(
        &self,
        inst: &str,
        bill: &str,
        h: &Holder,
    ) -> redis::RedisResult<Option<Holder>> {
        let mut c = self.conn.clone();
        let other: Vec<String> = self
            .hold
            .key(keys::webhook_gate(inst, bill))
            .arg(&h.id)
            .arg(&h.topic)
            .arg(h.due_ms)
            .arg(self.ttl.as_millis() as u64)
            .invoke_async(&mut c)
            .await?;
        Ok(match other.as_slice() {
            [id, topic, due] => Some(Holder {
                id: id.clone(),
                topic: topic.clone(),
                due_ms: due.parse().unwrap_or(0),
            }),
            _ => None,
        })
    }

    /// Frees the gate if `id` holds it.
    ///
    /// # Errors
    /// Redis unavailable.
    pub async fn release(&self, inst: &str, bill: &str, id: &str) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        self.release
            .key(keys::webhook_gate(inst, bill))
            .arg(id)
            .invoke_async::<i64>(&mut c)
            .await
            .map(|_| ())
    }
}
