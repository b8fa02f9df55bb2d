//! Redis: hosted bills, payments and their idempotency records, the institution ledger, VA
//! locks. Every change that touches more than one key is one Lua script (atomic), and every
//! bill change is a compare-and-set on the bill's version, so a stale read can never write.
//!
//! The store's types and connection live here; its jobs each in a file of their own:
//! `runner.rs` (every script call, the scripts' loading and the recovery fence),
//! `records.rs` (bills, payments, bindings, ledger and balance), `locks.rs` (VA locks),
//! `passive.rs` (forwarded payments), `apply.rs` (journal events applied), `query.rs`
//! (lists), `journal.rs` (events and their append).

pub mod apply;
pub mod batch;
mod calls;
pub mod config;
pub mod conn;
mod group;
pub mod journal;
pub mod keys;
mod locks;
pub mod passive;
pub mod query;
mod records;
pub mod retention;
mod runner;
pub mod snapshot;
pub mod unjournaled;

use std::time::Duration;

use redis::Script;
use serde::Serialize;

use crate::domain::{Bill, Binding, Payment};
pub use config::RedisSettings;
pub use conn::{connect, Conn};
pub use retention::{Retention, Retired};

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached or did not answer in time: retry, never guess.
    #[error("redis: {0}")]
    Unavailable(#[from] redis::RedisError),
    /// A stored document that does not parse: a bug or a hand edit, not a passing fault.
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// The journal cannot be read (a recovery that must re-apply it before anything is
    /// answered) or an event cannot be built: nothing may be answered yet; retried.
    #[error("journal: {0}")]
    Journal(String),
    /// The change is committed in Redis and its journal event is on its way, but the broker
    /// did not acknowledge it within `journal.append_deadline_ms`. The append goes on by
    /// itself until acknowledged (a repeat of the same event waits for it instead of
    /// producing another); the channel is told the outcome is in doubt
    /// (`BILLER_SUSPECT_TRANSACTION`) and a repeat or a check-status is answered as the
    /// first time once the broker is back (docs/journal.md, "Broker faults").
    #[error("journal: in doubt: {0}")]
    InDoubt(String),
    /// The payment is past the hot window: Redis keeps only its compact record (its id,
    /// VA, amount, bill, when paid, whether reversed), from which a repeat, a reversal or
    /// a check-status is answered (docs/retention.md).
    #[error("payment {} is past the hot window", .0.id)]
    Retired(Box<Retired>),
}

/// A bill and the version its compare-and-set must match.
#[derive(Clone, Debug)]
pub struct Versioned<T> {
    pub value: T,
    pub version: String,
    /// The document exactly as Redis holds it at `version` (JSON): an optimistic payment
    /// from a cached bill commits only if Redis still holds these very bytes
    /// (`lua/pay.lua`), so a version number that came back with other contents (a Redis
    /// rebuilt from the journal behind the cache) can never match.
    pub doc: String,
}

/// One event of a payment as it was answered: the payment and the bill right after it, and
/// the answer's timestamp. The answer and the webhook job are rebuilt from these, so a
/// repeated request gets the very same answer while each fact is stored once.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub payment: Payment,
    /// The payment's JSON text, written once (Redis, the journal, the job, the answer).
    pub payment_json: crate::domain::Json,
    /// The bill view as answered, kept as its JSON text (written once).
    pub bill: crate::domain::Json,
    pub timestamp: String,
}

/// A payment and, once reversed, its reversal.
#[derive(Clone, Debug)]
pub struct PaymentRecord {
    pub paid: Recorded,
    pub reversed: Option<Recorded>,
}

impl PaymentRecord {
    /// The payment as it stands now.
    pub fn current(&self) -> &Payment {
        &self.reversed.as_ref().unwrap_or(&self.paid).payment
    }
}

/// Result of a compare-and-set commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Commit {
    Done,
    /// The payment already exists (payment) or is already reversed (reversal).
    Already,
    /// The bill changed since it was read: read again.
    Conflict,
    /// The payment to reverse does not exist.
    Missing,
    /// The payment to reverse left the hot window meanwhile (its compact record is left).
    Retired,
    /// Create: a VA already has a payable bill (its hash).
    Occupied(String),
    /// Payment or reversal: Redis refused to move the institution's balance (it would leave
    /// the int64 range Redis keeps, or the key is not an integer); nothing was written.
    /// Redis's own error text.
    BalanceRefused(String),
}

/// A VA lock held by one owner token.
#[derive(Clone, Debug)]
pub struct Lock {
    pub key: String,
    pub token: String,
}

/// Result of trying to take a VA lock and read under it.
#[derive(Debug)]
pub enum LockRead {
    /// Someone else holds the lock; nothing was read.
    Locked,
    /// The lock is ours; the bill and the payment record as they are now.
    Acquired(Option<Versioned<Bill>>, Option<PaymentRecord>),
}

pub struct NewPayment<'a> {
    pub inst: &'a str,
    pub bill: &'a Versioned<Bill>,
    pub next_bill: &'a Bill,
    /// `next_bill` as JSON when the caller wrote it already (the bill as answered is the
    /// bill itself, byte for byte): not written again, and a payment's commit sends it
    /// once (pay.lua stores it as the answered bill too). `None`: written here.
    pub next_doc: Option<&'a serde_json::value::RawValue>,
    pub payment: &'a Payment,
    /// `payment` as JSON, written once.
    pub payment_doc: &'a serde_json::value::RawValue,
    /// The bill as answered (JSON) and the answer's timestamp.
    pub answered_bill: &'a str,
    pub timestamp: &'a str,
    /// The ledger entry (a JSON object, without its `balance_after`, which the script
    /// appends).
    pub ledger_entry: &'a serde_json::value::RawValue,
    pub score_ms: i64,
    /// The lock the commit releases on success (payments only): the caller's, held or
    /// not (an optimistic payment holds none and only checks nobody else does).
    pub lock: Option<&'a Lock>,
    /// A payment from a cached bill: the reference binding (`<institution>|<va>|<amount>`),
    /// set by the commit script itself (`SET NX GET`; on a Redis Cluster, where it has a
    /// slot of its own, by [`Store::bind`] just before). `None` when it was bound with the
    /// read that gave the bill.
    pub binding: Option<&'a str>,
}

/// How a payment's commit script (`lua/pay.lua`) ended.
#[derive(Debug)]
pub enum Paid {
    /// Committed (and journaled); the lock, if the caller held it, released. The bill's
    /// new version and document, as stored (the bill itself is the caller's `next_bill`).
    Done(Versioned<()>),
    /// The reference is bound to another payment: the earlier binding.
    RefConflict(String),
    /// The payment was committed before: its record, to replay the first answer.
    Replay(PaymentRecord),
    /// Another attempt holds the VA lock; nothing was written.
    Locked,
    /// The VA does not point at the expected bill at the expected version: the bill it
    /// points to now (`None`: no bill), so the caller decides again without a read.
    Stale(Option<Versioned<Bill>>),
    /// Redis refused to move the balance (int64 range, or not an integer): its error.
    BalanceRefused(String),
}

#[derive(Clone)]
pub struct Store {
    conn: Conn,
    scripts: std::sync::Arc<Scripts>,
    apply: std::sync::Arc<apply::ApplyScripts>,
    journal: journal::Wiring,
    recovery: std::sync::Arc<Recovery>,
    retention: Retention,
    retire: std::sync::Arc<retention::RetireScripts>,
    /// The institutions' group commits in flight (issue 29, store/group.rs).
    groups: std::sync::Arc<group::Groups>,
}

/// Who may load the request scripts back into Redis, and how many times it did: see
/// [`Store::eval`].
#[derive(Default)]
struct Recovery {
    running: tokio::sync::Mutex<()>,
    generation: std::sync::atomic::AtomicU64,
}

/// `EVALSHA` of one of the store's request scripts with its keys and arguments. Never
/// `EVAL` and never a load on `NOSCRIPT`: a Redis that does not know the script lost its
/// memory (see [`Store::eval`]).
pub struct Eval<'a> {
    script: &'a Script,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
    mark: Option<String>,
}

/// Put in front of every script that reads or changes an institution's records: the
/// institution's journal mark (`ipg:{I}:journal`, always the last key) must exist, or
/// Redis lost data the switch wrote (`FLUSHALL`, eviction, a replica that never had it)
/// and the journal is re-applied before the call runs again (see [`Store::eval`]).
const SENTINEL: &str = "\
-- The institution's journal mark is the last key; without it Redis lost data: the journal
-- is re-applied before this runs again (store::Store::eval).
if redis.call('EXISTS', KEYS[#KEYS]) == 0 then
  return redis.error_reply('IPGRECOVER the journal mark of this institution is missing')
end
";

fn guarded(body: &str) -> Script {
    Script::new(&format!("{SENTINEL}{body}"))
}

impl<'a> Eval<'a> {
    pub fn new(script: &'a Script) -> Eval<'a> {
        Eval::with_capacity(script, 0, 0)
    }

    /// Room for `keys` keys and `args` arguments made at once (a call type knows its
    /// counts: `store::calls`).
    pub fn with_capacity(script: &'a Script, keys: usize, args: usize) -> Eval<'a> {
        Eval {
            script,
            keys: Vec::with_capacity(keys),
            args: Vec::with_capacity(args),
            mark: None,
        }
    }

    /// For a script built with the sentinel: `inst`'s journal mark goes last.
    pub fn institution(mut self, inst: &str) -> Self {
        self.mark = Some(keys::journal_mark(inst));
        self
    }

    /// Adds `k`'s key(s), written straight into the call (no vector of its own).
    pub fn key(mut self, k: impl redis::ToRedisArgs) -> Self {
        k.write_redis_args(&mut self.keys);
        self
    }

    /// Adds `a`'s argument(s), written straight into the call.
    pub fn arg(mut self, a: impl redis::ToRedisArgs) -> Self {
        a.write_redis_args(&mut self.args);
        self
    }

    pub fn cmd(&self) -> redis::Cmd {
        let mut c = redis::cmd("EVALSHA");
        c.arg(self.script.get_hash())
            .arg(self.keys.len() + usize::from(self.mark.is_some()))
            .arg(&self.keys);
        if let Some(m) = &self.mark {
            c.arg(m);
        }
        c.arg(&self.args);
        c
    }
}

/// The test fault point of issue 12: with `IPG_FAULT_AFTER_COMMIT=abort` in its
/// environment, the process aborts right after a payment's Redis commit, before its
/// journal event is produced (tests/journal.rs). Read once.
fn fault_after_commit() {
    static FAULT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *FAULT.get_or_init(|| std::env::var("IPG_FAULT_AFTER_COMMIT").is_ok_and(|v| v == "abort")) {
        std::process::abort();
    }
}

/// Redis lost its memory (`NOSCRIPT`: restart, failover, script flush) or its data (the
/// sentinel's `IPGRECOVER`: flush, eviction): a recovery is due before the call runs.
fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
        || e.code() == Some("IPGRECOVER")
        // An error of a pipelined script has no code of its own (redis-rs keeps the
        // pipeline's): the sentinel's text names it.
        || e.to_string().contains("IPGRECOVER")
}

struct Scripts {
    read_va: Script,
    lock_read: Script,
    pay: Script,
    reverse: Script,
    create: Script,
    update_bill: Script,
    /// `SET NX GET` of a reference binding as a script: on a Redis that lost its memory
    /// it is refused (`NOSCRIPT`) instead of binding before the recovery.
    bind: Script,
    unlock: Script,
    unjournaled_claim: Script,
    lock: Script,
    passive_begin: Script,
    passive_save: Script,
    passive_claim: Script,
    /// `return 1`: put in front of plain reads, so a Redis that lost its memory is noticed
    /// before anything read from it is answered.
    probe: Script,
    mark: Script,
}

fn status_str(b: &Bill) -> &'static str {
    match b.status {
        crate::domain::BillStatus::Active | crate::domain::BillStatus::Expired => "active",
        crate::domain::BillStatus::Paid => "paid",
        crate::domain::BillStatus::Revoked => "revoked",
    }
}

fn parse<T: serde::de::DeserializeOwned>(key: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `v` as JSON text that needs no second parse to go into a journal event.
fn raw_json<T: Serialize>(v: &T) -> Result<Box<serde_json::value::RawValue>, StoreError> {
    serde_json::value::to_raw_value(v).map_err(|e| StoreError::Journal(e.to_string()))
}

/// A reply item as text (a bulk string, or an integer in decimal); `None` for nil.
fn text(v: Option<redis::Value>) -> Option<String> {
    v.and_then(|v| redis::from_redis_value::<Option<String>>(v).ok().flatten())
}

fn verdict(r: &[String]) -> Commit {
    match r.first().map(String::as_str) {
        Some("ok") => Commit::Done,
        Some("dup") | Some("already") | Some("hash_taken") => Commit::Already,
        Some("missing") => Commit::Missing,
        Some("retired") => Commit::Retired,
        Some("occupied") => Commit::Occupied(r.get(1).cloned().unwrap_or_default()),
        Some("balance_refused") => Commit::BalanceRefused(r.get(1).cloned().unwrap_or_default()),
        _ => Commit::Conflict,
    }
}

/// `url` without its password (`redis://user:****@host:port/db`), for logs and messages.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:****@{host}")
        }
        None => url.to_owned(),
    }
}

/// What Redis's persistence settings promise about writes the switch has acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `appendonly yes` and `appendfsync always`: every write is on disk before Redis
    /// replies, so a crash loses nothing the switch answered.
    Safe,
    /// A crash can lose acknowledged writes; why (the settings found).
    AtRisk(String),
    /// The settings cannot be read (`CONFIG` forbidden, as on many managed Redis services).
    Unknown(String),
}

impl Durability {
    /// The value of `ipg_redis_durability_risk`: 1 at risk, 0 safe, -1 unknown.
    pub fn gauge(&self) -> f64 {
        match self {
            Durability::Safe => 0.0,
            Durability::AtRisk(_) => 1.0,
            Durability::Unknown(_) => -1.0,
        }
    }

    /// Judges `CONFIG GET appendonly` and `appendfsync` answers.
    pub fn of(appendonly: &str, appendfsync: &str) -> Durability {
        match (appendonly, appendfsync) {
            ("yes", "always") => Durability::Safe,
            ("yes", other) => Durability::AtRisk(format!(
                "appendfsync is {other:?}: a crash loses up to a second of acknowledged payments; \
                 set appendfsync always"
            )),
            _ => Durability::AtRisk(
                "appendonly is off: a crash loses every payment since the last snapshot; \
                 set appendonly yes and appendfsync always"
                    .into(),
            ),
        }
    }
}

impl Durability {
    /// Judges `CONFIG GET maxmemory maxmemory-policy` answers: with a memory limit, any
    /// policy but `noeviction` lets Redis drop keys the switch relies on (a payment record,
    /// a balance, a VA lock: `volatile-*` policies pick keys with a TTL, such as locks). The
    /// switch decides what leaves Redis by its own rules, never Redis's eviction.
    pub fn of_memory(maxmemory: &str, policy: &str) -> Durability {
        if maxmemory.is_empty() || maxmemory == "0" || policy == "noeviction" || policy.is_empty() {
            return Durability::Safe;
        }
        Durability::AtRisk(format!(
            "maxmemory-policy is {policy:?} with maxmemory {maxmemory}: Redis may evict the \
             switch's records or locks when full; set maxmemory-policy noeviction"
        ))
    }
}

impl Store {
    /// Reads Redis's persistence and eviction settings (`CONFIG GET append*`, `maxmemory*`;
    /// on a cluster, of every master): safe only with `appendonly yes`, `appendfsync always`
    /// and, under a memory limit, `maxmemory-policy noeviction`.
    ///
    /// # Errors
    /// Redis unreachable. A refused `CONFIG` is not an error: `Durability::Unknown`.
    pub async fn durability(&self) -> Result<Durability, StoreError> {
        let conn = self.conn();
        // A cluster: every master's, and the first at risk (or unknown) is the answer.
        let nodes = conn.each_node().await?;
        let mut verdict = Durability::Safe;
        for node in &nodes {
            let mut cmd = redis::cmd("CONFIG");
            cmd.arg("GET").arg("append*");
            let got: redis::RedisResult<std::collections::HashMap<String, String>> =
                conn.on_node(node.as_ref(), &cmd).await;
            // One pattern per CONFIG GET: Redis 6 takes no more.
            let mut cmd = redis::cmd("CONFIG");
            cmd.arg("GET").arg("maxmemory*");
            let memory: redis::RedisResult<std::collections::HashMap<String, String>> = match got {
                Ok(_) => conn.on_node(node.as_ref(), &cmd).await,
                Err(_) => Ok(Default::default()),
            };
            let got = got.and_then(|mut m| {
                m.extend(memory?);
                Ok(m)
            });
            let d = match got {
                Ok(m) => {
                    let get = |k: &str| m.get(k).map_or("", String::as_str);
                    match Durability::of(get("appendonly"), get("appendfsync")) {
                        Durability::Safe => {
                            Durability::of_memory(get("maxmemory"), get("maxmemory-policy"))
                        }
                        at_risk => at_risk,
                    }
                }
                Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
                    return Err(e.into())
                }
                Err(e) => Durability::Unknown(e.to_string()),
            };
            match (node, d) {
                (_, Durability::Safe) => {}
                (Some((host, port)), Durability::AtRisk(why)) => {
                    return Ok(Durability::AtRisk(format!("{host}:{port}: {why}")))
                }
                (_, d @ Durability::AtRisk(_)) => return Ok(d),
                (_, d) => verdict = d,
            }
        }
        Ok(verdict)
    }

    /// Creates the store. The connection is made lazily and re-made after failures, so the
    /// daemon starts (not ready) while Redis is down.
    ///
    /// # Errors
    /// An invalid URL, a TLS file that cannot be read.
    pub fn new(settings: &RedisSettings) -> Result<Store, StoreError> {
        let conn = connect(settings)?;
        Ok(Store {
            conn,
            scripts: std::sync::Arc::new(Scripts {
                read_va: guarded(include_str!("lua/read_va.lua")),
                lock_read: guarded(include_str!("lua/lock_read.lua")),
                // pay.lua once per payment of a group (store/group.rs): a call of one when idle.
                pay: guarded(
                    &include_str!("lua/pay_group.lua")
                        .replace("--[[pay.lua]]", include_str!("lua/pay.lua")),
                ),
                reverse: guarded(include_str!("lua/reverse.lua")),
                create: guarded(include_str!("lua/create.lua")),
                update_bill: guarded(include_str!("lua/update_bill.lua")),
                bind: Script::new(include_str!("lua/bind.lua")),
                unlock: Script::new(include_str!("lua/unlock.lua")),
                unjournaled_claim: Script::new(include_str!("lua/unjournaled_claim.lua")),
                lock: Script::new(include_str!("lua/lock.lua")),
                passive_begin: guarded(include_str!("lua/passive_begin.lua")),
                passive_save: guarded(include_str!("lua/passive_save.lua")),
                passive_claim: Script::new(include_str!("lua/passive_claim.lua")),
                probe: Script::new("return 1 -- ipg-switch probe: Redis still knows its scripts"),
                // The applier's: guarded, so it only advances a mark that exists (a flushed
                // Redis gets its marks from the recovery, never from the applier), and a
                // script of its own (its SHA differs from the recovery's unguarded one).
                mark: guarded(include_str!("lua/mark.lua")),
            }),
            apply: std::sync::Arc::new(apply::ApplyScripts::new()),
            journal: journal::Wiring::default(),
            recovery: std::sync::Arc::new(Recovery::default()),
            retention: Retention::default(),
            retire: std::sync::Arc::new(retention::RetireScripts::new()),
            groups: std::sync::Arc::new(group::Groups::new(settings.group_commit_max)),
        })
    }

    pub(super) fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// On a cluster, flushes the scripts of any replica holding them (see
    /// [`conn::Conn::flush_replica_scripts`]); how many were flushed.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn flush_replica_scripts(&self) -> Result<usize, StoreError> {
        Ok(self
            .conn()
            .flush_replica_scripts(self.scripts.probe.get_hash())
            .await?)
    }

    /// Whether this store is on a Redis Cluster (`redis.cluster`).
    pub fn is_cluster(&self) -> bool {
        self.conn.is_cluster()
    }

    /// Whether Redis answers (`/readyz`). On a cluster, whether one of its nodes answers:
    /// a master failing over stops only its slots, not the instance's readiness.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.conn().ping_any().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_of_persistence_settings() {
        assert_eq!(Durability::of("yes", "always"), Durability::Safe);
        assert_eq!(Durability::of("yes", "always").gauge(), 0.0);
        for (aof, fsync) in [
            ("yes", "everysec"),
            ("yes", "no"),
            ("no", "always"),
            ("", ""),
        ] {
            let d = Durability::of(aof, fsync);
            assert!(matches!(d, Durability::AtRisk(_)), "{aof} {fsync}");
            assert_eq!(d.gauge(), 1.0);
        }
        assert_eq!(Durability::Unknown("NOPERM".into()).gauge(), -1.0);
    }

    /// A script missing from `Store::load_scripts` is never loaded: its first `EVALSHA`
    /// answers `NOSCRIPT` for ever (a plain script has no recovery to load it).
    #[test]
    fn every_script_of_the_store_is_loaded() {
        let src = include_str!("mod.rs");
        let start = src.find("struct Scripts {").unwrap();
        let body = &src[start..start + src[start..].find("\n}").unwrap()];
        let fields: Vec<&str> = body
            .lines()
            .filter_map(|l| l.trim().strip_suffix(": Script,"))
            .collect();
        assert!(fields.len() > 10, "{fields:?}");
        let runner = include_str!("runner.rs");
        for f in fields {
            assert!(
                runner.contains(&format!("&s.{f},")),
                "script {f} is not in Store::load_scripts (store/runner.rs)"
            );
        }
    }

    #[test]
    fn durability_of_eviction_settings() {
        assert_eq!(Durability::of_memory("0", "allkeys-lru"), Durability::Safe);
        assert_eq!(Durability::of_memory("", ""), Durability::Safe);
        assert_eq!(
            Durability::of_memory("1073741824", "noeviction"),
            Durability::Safe
        );
        for policy in [
            "allkeys-lru",
            "volatile-lru",
            "volatile-ttl",
            "allkeys-random",
        ] {
            match Durability::of_memory("1073741824", policy) {
                Durability::AtRisk(why) => assert!(why.contains("noeviction"), "{why}"),
                other => panic!("{policy}: {other:?}"),
            }
        }
    }

    #[test]
    fn redacted_urls_hide_passwords_only() {
        assert_eq!(
            redacted("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(redacted("redis://:pw@h:1/0"), "redis://:****@h:1/0");
        assert_eq!(redacted("redis://user:p@ss@h:1"), "redis://user:****@h:1");
        assert_eq!(redacted("not a url"), "not a url");
    }
}
