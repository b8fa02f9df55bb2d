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

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
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
    conn: ConnectionManager,
    release: Script,
    ttl: Duration,
}

const RELEASE: &str = r"
if redis.call('HGET', KEYS[1], 'id') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

impl Gate {
    /// # Errors
    /// An invalid Redis URL.
    pub fn new(url: &str, command_timeout: Duration, ttl: Duration) -> redis::RedisResult<Gate> {
        let client = redis::Client::open(url)?;
        let cfg = ConnectionManagerConfig::new()
            .set_response_timeout(Some(command_timeout))
            .set_connection_timeout(Some(command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        Ok(Gate {
            conn: ConnectionManager::new_lazy_with_config(client, cfg)?,
            release: Script::new(RELEASE),
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

    /// Takes (or moves) the gate for `h.id`. Only called by an event that found the gate
    /// free or held by itself, so a plain overwrite is right.
    ///
    /// # Errors
    /// Redis unavailable.
    pub async fn hold(&self, inst: &str, bill: &str, h: &Holder) -> redis::RedisResult<()> {
        let key = keys::webhook_gate(inst, bill);
        let mut c = self.conn.clone();
        redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(&key)
            .arg("id")
            .arg(&h.id)
            .arg("topic")
            .arg(&h.topic)
            .arg("due")
            .arg(h.due_ms)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(self.ttl.as_millis() as u64)
            .ignore()
            .query_async::<()>(&mut c)
            .await
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
