//! Redis: hosted bills, payments and their idempotency records, the institution ledger, VA
//! locks. Every change that touches more than one key is one Lua script (atomic), and every
//! bill change is a compare-and-set on the bill's version, so a stale read can never write.

pub mod apply;
pub mod config;
pub mod conn;
pub mod journal;
pub mod keys;
pub mod passive;
pub mod query;

use std::time::Duration;

use redis::{AsyncCommands, Script};
use serde::Serialize;
use serde_json::Value;

use crate::domain::{Bill, Binding, Payment};
pub use config::RedisSettings;
pub use conn::{connect, Conn};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached or did not answer in time: retry, never guess.
    #[error("redis: {0}")]
    Unavailable(#[from] redis::RedisError),
    /// A stored document that does not parse: a bug or a hand edit, not a passing fault.
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// The change is committed in Redis but its journal event is not acknowledged (the
    /// broker is away and the daemon is stopping): nothing may be answered yet. A repeat
    /// of the request journals it again and answers as the first time.
    #[error("journal: {0}")]
    Journal(String),
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
    pub bill: Value,
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
    pub payment: &'a Payment,
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
        Eval {
            script,
            keys: Vec::new(),
            args: Vec::new(),
            mark: None,
        }
    }

    /// For a script built with the sentinel: `inst`'s journal mark goes last.
    pub fn institution(mut self, inst: &str) -> Self {
        self.mark = Some(keys::journal_mark(inst));
        self
    }

    pub fn key(mut self, k: impl redis::ToRedisArgs) -> Self {
        self.keys.extend(k.to_redis_args());
        self
    }

    pub fn arg(mut self, a: impl redis::ToRedisArgs) -> Self {
        self.args.extend(a.to_redis_args());
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

impl Store {
    /// Reads Redis's persistence settings (`CONFIG GET appendonly appendfsync`; on a
    /// cluster, of every master).
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
            let d = match got {
                Ok(m) => Durability::of(
                    m.get("appendonly").map_or("", String::as_str),
                    m.get("appendfsync").map_or("", String::as_str),
                ),
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
                pay: guarded(include_str!("lua/pay.lua")),
                reverse: guarded(include_str!("lua/reverse.lua")),
                create: guarded(include_str!("lua/create.lua")),
                update_bill: guarded(include_str!("lua/update_bill.lua")),
                bind: Script::new(include_str!("lua/bind.lua")),
                unlock: Script::new(include_str!("lua/unlock.lua")),
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
        })
    }

    fn conn(&self) -> Conn {
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

    fn versioned_bill(
        key: &str,
        doc: Option<String>,
        ver: Option<String>,
    ) -> Result<Option<Versioned<Bill>>, StoreError> {
        match (doc, ver) {
            (Some(doc), Some(version)) => Ok(Some(Versioned {
                value: parse(key, &doc)?,
                version,
                doc,
            })),
            _ => Ok(None),
        }
    }

    fn payment_record(key: &str, fields: Vec<String>) -> Result<Option<PaymentRecord>, StoreError> {
        if fields.is_empty() {
            return Ok(None);
        }
        let mut m = std::collections::HashMap::new();
        for kv in fields.chunks(2) {
            if let [k, v] = kv {
                m.insert(k.as_str(), v.as_str());
            }
        }
        let get = |f: &str| {
            m.get(f).copied().ok_or_else(|| StoreError::Corrupt {
                key: key.into(),
                reason: format!("no {f}"),
            })
        };
        let recorded = |doc: &str, bill: &str, ts: &str| -> Result<Recorded, StoreError> {
            Ok(Recorded {
                payment: parse(key, get(doc)?)?,
                bill: parse(key, get(bill)?)?,
                timestamp: get(ts)?.to_owned(),
            })
        };
        let reversed = if m.contains_key("rev_doc") {
            Some(recorded("rev_doc", "rev_bill", "rev_ts")?)
        } else {
            None
        };
        Ok(Some(PaymentRecord {
            paid: recorded("doc", "bill", "ts")?,
            reversed,
        }))
    }

    /// The bill a VA points to, whatever its status.
    ///
    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn bill_by_va(
        &self,
        inst: &str,
        va: &str,
    ) -> Result<Option<Versioned<Bill>>, StoreError> {
        let va_key = keys::va(inst, va);
        let (doc, ver, _): (Option<String>, Option<String>, Vec<String>) =
            self.eval(self.read_va(inst, &va_key, None)).await?;
        Self::versioned_bill(&va_key, doc, ver)
    }

    /// `lua/read_va.lua`: the bill the VA index `va_key` points to and, with `pkey`, the
    /// payment record under it, in one script call.
    fn read_va<'a>(&'a self, inst: &str, va_key: &str, pkey: Option<&str>) -> Eval<'a> {
        let mut inv = Eval::new(&self.scripts.read_va)
            .institution(inst)
            .key(va_key);
        if let Some(k) = pkey {
            inv = inv.key(k);
        }
        inv.arg(keys::bill_prefix(inst))
    }

    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn bill(
        &self,
        inst: &str,
        hash: &str,
    ) -> Result<Option<Versioned<Bill>>, StoreError> {
        let key = keys::bill(inst, hash);
        let (doc, ver): (Option<String>, Option<String>) = self
            .plain(redis::cmd("HMGET").arg(&key).arg("doc").arg("ver").clone())
            .await?;
        Self::versioned_bill(&key, doc, ver)
    }

    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn payment(
        &self,
        inst: &str,
        channel: &str,
        reference: &str,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        let key = keys::payment(inst, channel, reference);
        let fields: Vec<String> = self.plain(redis::cmd("HGETALL").arg(&key).clone()).await?;
        Self::payment_record(&key, fields)
    }

    /// The payment record under `(channel, reference)`, read by a script that checks the
    /// institution's journal mark first (`lua/read_va.lua`): a Redis that lost its data is
    /// rebuilt from the journal before this answers, so a "no such payment" from it can be
    /// acted on (a reversal closes the reference on it).
    ///
    /// # Errors
    /// Redis unreachable, corrupt record, a recovery that failed.
    pub async fn payment_checked(
        &self,
        inst: &str,
        va: &str,
        channel: &str,
        reference: &str,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        let va_key = keys::va(inst, va);
        let pkey = keys::payment(inst, channel, reference);
        let (_, _, pay): (Option<String>, Option<String>, Vec<String>) =
            self.eval(self.read_va(inst, &va_key, Some(&pkey))).await?;
        Self::payment_record(&pkey, pay)
    }

    /// Commits a payment, optimistically: see `lua/pay.lua`. Nothing is written (but the
    /// reference's binding, when `p.binding` asks for it) unless the VA still points at
    /// `p.bill` at its version with the expected document, no other attempt holds the VA
    /// lock and the payment is new.
    ///
    /// # Errors
    /// Redis unreachable, a corrupt record in the reply, the journal (see [`Store::eval`]).
    pub async fn commit_payment(&self, mut p: NewPayment<'_>) -> Result<Paid, StoreError> {
        // On a Redis Cluster the binding has a slot of its own, which the commit script
        // cannot touch: it is bound first, in a round trip of its own.
        if let (Some(binding), true) = (p.binding, self.is_cluster()) {
            let earlier = self
                .bind(&p.payment.channel, &p.payment.payment_ref_id, binding)
                .await?;
            // A void binding (a reversal came first) is left to the script, which replays a
            // payment already made and refuses a new one by the tombstone it checks.
            if let Some(other) = earlier.filter(|e| e != binding && !Binding::is_void(e)) {
                return Ok(Paid::RefConflict(other));
            }
            p.binding = None;
        }
        // The record's keys, for the replies that carry a record (not on the hot path).
        let (inst, payment) = (p.inst, p.payment);
        let pkey = || keys::payment(inst, &payment.channel, &payment.payment_ref_id);
        let (r, stored) = self.commit(journal::Stage::Paid, p).await?;
        let mut r = r.into_iter();
        let word = text(r.next()).unwrap_or_default();
        Ok(match (word.as_str(), stored) {
            ("ok", Some((doc, version))) => Paid::Done(Versioned {
                value: (),
                version: version.to_string(),
                doc,
            }),
            ("ref_conflict", _) => Paid::RefConflict(text(r.next()).unwrap_or_default()),
            ("dup", _) => {
                let fields = r
                    .next()
                    .and_then(|v| redis::from_redis_value::<Vec<String>>(v).ok())
                    .unwrap_or_default();
                Paid::Replay(Self::payment_record(&pkey(), fields)?.ok_or_else(|| {
                    StoreError::Corrupt {
                        key: pkey(),
                        reason: "a duplicate without fields".into(),
                    }
                })?)
            }
            ("locked", _) => Paid::Locked,
            ("stale", _) => Paid::Stale(Self::versioned_bill(
                &keys::va(inst, &payment.va_number),
                text(r.next()),
                text(r.next()),
            )?),
            ("balance_refused", _) => Paid::BalanceRefused(text(r.next()).unwrap_or_default()),
            (other, _) => {
                return Err(StoreError::Corrupt {
                    key: pkey(),
                    reason: format!("pay.lua answered {other:?}"),
                })
            }
        })
    }

    /// Commits a reversal: see `lua/reverse.lua` (same keys and arguments as a payment).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn commit_reversal(&self, p: NewPayment<'_>) -> Result<Commit, StoreError> {
        let (r, _) = self.commit(journal::Stage::Reversed, p).await?;
        let words: Vec<String> = r.into_iter().filter_map(|v| text(Some(v))).collect();
        Ok(verdict(&words))
    }

    /// Runs pay.lua or reverse.lua and, when it committed, journals what it committed (the
    /// bill after it, the payment stage, the ledger entry with the sequence and balance the
    /// script gave), returning once the journal has it. The script's reply, as it came,
    /// and, when it committed, the bill's new document as sent and its new version.
    async fn commit(
        &self,
        stage: journal::Stage,
        p: NewPayment<'_>,
    ) -> Result<(Vec<redis::Value>, Option<(String, u64)>), StoreError> {
        let script = match stage {
            journal::Stage::Paid => &self.scripts.pay,
            journal::Stage::Reversed => &self.scripts.reverse,
        };
        // Serialized once: the same bytes go to Redis and into the journal event.
        let payment_doc = raw_json(p.payment)?;
        let ledger_doc = p.ledger_entry.get();
        let next_doc = raw_json(p.next_bill)?;
        let mut call = Eval::new(script)
            .institution(p.inst)
            .key(keys::bill(p.inst, &p.bill.value.hash))
            .key(keys::payment(
                p.inst,
                &p.payment.channel,
                &p.payment.payment_ref_id,
            ))
            .key(keys::bill_payments(p.inst, &p.bill.value.hash))
            .key(keys::payments(p.inst))
            .key(keys::ledger(p.inst))
            .key(keys::balance(p.inst))
            // Always a key of the institution's slot (Redis Cluster): the VA's lock, released
            // only when the caller passed its token and holds it (payments).
            .key(p.lock.map_or_else(
                || keys::lock(p.inst, &p.payment.va_number),
                |l| l.key.clone(),
            ))
            .key(keys::va(p.inst, &p.payment.va_number));
        if p.binding.is_some() {
            call = call.key(keys::reference(
                &p.payment.channel,
                &p.payment.payment_ref_id,
            ));
        }
        let call = call
            .arg(&p.bill.version)
            .arg(next_doc.get())
            .arg(status_str(p.next_bill))
            .arg(payment_doc.get())
            .arg(p.answered_bill)
            .arg(p.timestamp)
            .arg(ledger_doc)
            .arg(p.payment.amount.get())
            .arg(p.score_ms)
            .arg(p.lock.map_or("", |l| l.token.as_str()))
            .arg(&p.bill.value.hash)
            .arg(keys::bill_prefix(p.inst))
            .arg(p.binding.unwrap_or(""))
            // A payment commits only if Redis still holds the very document it was
            // computed from ([`Versioned::doc`]); a reversal checks the version only.
            .arg(match stage {
                journal::Stage::Paid => p.bill.doc.as_str(),
                journal::Stage::Reversed => "",
            });
        let r: Vec<redis::Value> = self.eval(call).await?;
        if text(r.first().cloned()).as_deref() != Some("ok") {
            return Ok((r, None));
        }
        // The scripts add one to the bill's version.
        let version = p.bill.version.parse::<u64>().unwrap_or(0) + 1;
        let stored = Some((next_doc.get().to_owned(), version));
        if !self.journaled() {
            return Ok((r, stored));
        }
        fault_after_commit();
        let balance = text(r.get(2).cloned()).unwrap_or_else(|| "0".into());
        let seq = text(r.get(1).cloned())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        let bill = journal::BillAfter::of(p.next_bill, next_doc, version, status_str(p.next_bill));
        let ledger = Some(journal::LedgerAfter::appended(
            p.inst, seq, ledger_doc, &balance,
        )?);
        // The bill as answered is left out when the event's bill, seen at the answer's
        // (whole-second) timestamp, gives it: only the status depends on the time.
        let answered_bill = match chrono::DateTime::parse_from_rfc3339(p.timestamp) {
            Ok(ts) => {
                let now = ts + chrono::Duration::milliseconds(p.score_ms - ts.timestamp_millis());
                (p.next_bill.effective_status(ts) != p.next_bill.effective_status(now))
                    .then(|| serde_json::value::RawValue::from_string(p.answered_bill.to_owned()))
                    .transpose()
                    .map_err(|e| StoreError::Journal(e.to_string()))?
            }
            Err(_) => Some(
                serde_json::value::RawValue::from_string(p.answered_bill.to_owned())
                    .map_err(|e| StoreError::Journal(e.to_string()))?,
            ),
        };
        let after = journal::PaymentAfter {
            channel: p.payment.channel.clone(),
            payment_ref_id: p.payment.payment_ref_id.clone(),
            stage,
            doc: payment_doc,
            answered_bill,
            timestamp: p.timestamp.to_owned(),
            ledger_seq: seq,
            score_ms: p.score_ms,
        };
        self.append(&journal::Event::payment(
            stage,
            p.payment,
            after,
            Some(bill),
            ledger,
        ))
        .await?;
        Ok((r, stored))
    }

    /// Stores a new bill and points each of its VAs at it, unless a VA already has a
    /// payable bill (`Commit::Occupied`) or the hash is taken (`Commit::Already`).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn create_bill(&self, bill: &Bill, now_ms: i64) -> Result<Commit, StoreError> {
        let inst = &bill.institution_code;
        let doc = to_json(bill);
        let mut inv = Eval::new(&self.scripts.create)
            .institution(inst)
            .key(keys::bill(inst, &bill.hash))
            .key(keys::bills(inst));
        for p in &bill.prefixes {
            inv = inv.key(keys::va(inst, &format!("{p}{}", &bill.va_number[6..])));
        }
        let until = bill
            .valid_until
            .map(|t| t.timestamp_millis().to_string())
            .unwrap_or_default();
        let inv = inv
            .arg(&doc)
            .arg(keys::bill_prefix(inst))
            .arg(now_ms)
            .arg(until)
            .arg(&bill.hash)
            .arg(bill.created_at.timestamp_millis());
        let r: Vec<String> = self.eval(inv).await?;
        let v = verdict(&r);
        if v == Commit::Done {
            let time = bill
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
            let ev = journal::Event::bill(
                journal::EventType::BillCreated,
                bill,
                doc,
                1,
                status_str(bill),
                time,
            );
            self.append(&ev).await?;
        }
        Ok(v)
    }

    /// Replaces a bill if its version still matches.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn update_bill(
        &self,
        old: &Versioned<Bill>,
        next: &Bill,
        time: String,
    ) -> Result<Commit, StoreError> {
        let doc = to_json(next);
        let call = Eval::new(&self.scripts.update_bill)
            .institution(&next.institution_code)
            .key(keys::bill(&next.institution_code, &next.hash))
            .arg(&old.version)
            .arg(&doc)
            .arg(status_str(next));
        let r: Vec<String> = self.eval(call).await?;
        let v = verdict(&r);
        if v == Commit::Done {
            let version = r.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
            let ev = journal::Event::bill(
                journal::EventType::BillUpdated,
                next,
                doc,
                version,
                status_str(next),
                time,
            );
            self.append(&ev).await?;
        }
        Ok(v)
    }

    /// Loads every request script into Redis's script cache: the end of a recovery (see
    /// [`Store::eval`]), never done on a mere `NOSCRIPT`.
    async fn load_scripts(&self) -> Result<(), StoreError> {
        let s = &self.scripts;
        for script in [
            &s.read_va,
            &s.lock_read,
            &s.pay,
            &s.reverse,
            &s.create,
            &s.update_bill,
            &s.bind,
            &s.unlock,
            &s.lock,
            &s.passive_begin,
            &s.passive_save,
            &s.passive_claim,
            &s.probe,
            &s.mark,
        ] {
            script.prepare_invoke().load_async(&mut self.conn()).await?;
        }
        Ok(())
    }

    /// Runs a request script. A Redis that answers `NOSCRIPT` has lost its memory (it
    /// restarted, a replica took over, or its scripts were flushed) and may have lost the
    /// last writes with it: before anything else runs there, the journal is re-applied
    /// from the institutions' marks ([`journal::Recover`]), and only then are the scripts
    /// loaded again and the call retried. Requests that meet the same `NOSCRIPT` meanwhile
    /// wait for that one recovery. Without a journal the scripts are simply loaded.
    ///
    /// # Errors
    /// Redis unreachable; the journal unreadable during a recovery (`Journal`).
    pub async fn eval<T: redis::FromRedisValue>(&self, call: Eval<'_>) -> Result<T, StoreError> {
        let cmd = call.cmd();
        // Borrowed by each attempt: a payment's command holds its documents, copied
        // nowhere on the way out.
        let cmd = &cmd;
        self.fenced(|| {
            let mut conn = self.conn();
            async move { cmd.query_async(&mut conn).await }
        })
        .await
    }

    /// A plain command (a read, or a write of one key), sent in one pipeline behind the
    /// probe script so that it never touches a Redis that lost its memory before the
    /// recovery (see [`Store::eval`]).
    ///
    /// # Errors
    /// Redis unreachable, a recovery that failed.
    pub async fn plain<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        let mut pipe = redis::pipe();
        pipe.add_command(cmd);
        let (v,): (T,) = self.plain_pipe(pipe).await?;
        Ok(v)
    }

    /// [`Store::plain`] for a pipeline of plain commands; the result is the pipeline's.
    ///
    /// # Errors
    /// As [`Store::plain`].
    pub async fn plain_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut probed = redis::pipe();
        probed
            .add_command(Eval::new(&self.scripts.probe).cmd())
            .ignore();
        for c in pipe.cmd_iter() {
            probed.add_command(c.clone());
        }
        let p = &probed;
        self.fenced(|| {
            let mut conn = self.conn();
            async move { p.query_async(&mut conn).await }
        })
        .await
    }

    async fn fenced<T, F, Fut>(&self, run: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        use std::sync::atomic::Ordering;
        let mut attempts = 0;
        loop {
            let seen = self.recovery.generation.load(Ordering::Acquire);
            match run().await {
                Err(e) if is_noscript(&e) && attempts < 3 => {
                    attempts += 1;
                    self.recover(seen).await?;
                }
                r => return Ok(r?),
            }
        }
    }

    /// One recovery at a time; a caller that saw generation `seen` waits for a recovery
    /// already under way instead of starting another.
    async fn recover(&self, seen: u64) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let _one = self.recovery.running.lock().await;
        if self.recovery.generation.load(Ordering::Acquire) != seen {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let done = async {
if let Some(r) = &self.journal.recover {
                // None of this process's events may land after the end the recovery reads.
                self.settle_journal(std::time::Duration::from_secs(30)).await;
                tracing::warn!("Redis does not hold the switch's scripts or journal marks (a first start, a restart, a failover or a flush): re-applying the journal from the marks before answering");
                r.catch_up(self).await.map_err(StoreError::Journal)?;
            }
            self.load_scripts().await
        }
        .await;
        if done.is_ok() {
            self.recovery.generation.fetch_add(1, Ordering::AcqRel);
        }
        done?;
        if self.journal.recover.is_some() {
            tracing::info!(
                seconds = started.elapsed().as_secs_f64(),
                "caught up with the journal; answering again"
            );
        }
        Ok(())
    }

    /// How many recoveries this store ran (see [`Store::eval`]).
    pub fn recoveries(&self) -> u64 {
        self.recovery
            .generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Makes sure Redis knows the request scripts, recovering first if it does not (the
    /// daemon's start).
    ///
    /// # Errors
    /// Redis unreachable, a recovery that failed.
    pub async fn ensure_ready(&self) -> Result<(), StoreError> {
        let _: i64 = self.eval(Eval::new(&self.scripts.probe)).await?;
        Ok(())
    }

    /// One round trip for the start of a payment: bind `(channel, reference)` to `binding`
    /// (returning any earlier binding), take the VA lock (or take back our own), and read
    /// the bill and the payment record under it.
    ///
    /// # Errors
    /// Redis unreachable, corrupt record.
    #[allow(clippy::too_many_arguments)]
    pub async fn claim_lock_read(
        &self,
        inst: &str,
        va: &str,
        channel: &str,
        reference: &str,
        binding: &str,
        lock: &Lock,
        ttl: Duration,
    ) -> Result<(Option<String>, LockRead), StoreError> {
        let claim = self.bind_call(channel, reference, binding).cmd();
        // Take the lock and read under it in one script (lua/lock_read.lua): one script
        // call on the hot path, not two.
        let va_key = keys::va(inst, va);
        let pkey = keys::payment(inst, channel, reference);
        let ttl = ttl.as_millis().to_string();
        let mut pipe = redis::pipe();
        // Two scripts: on a Redis that lost its memory neither runs (NOSCRIPT), so nothing
        // is bound or locked there before the recovery. On a cluster the binding's slot and
        // the institution's may be on two masters (two round trips, sent together), and
        // one may run while the other answers NOSCRIPT: the retry after the recovery is
        // the same attempt (its own binding, its own lock), so that changes nothing.
        pipe.add_command(claim).add_command(
            Eval::new(&self.scripts.lock_read)
                .institution(inst)
                .key(&lock.key)
                .key(&va_key)
                .key(&pkey)
                .arg(&lock.token)
                .arg(&ttl)
                .arg(keys::bill_prefix(inst))
                .cmd(),
        );
        let (claimed, (verdict, doc, ver, pay)): (
            Option<String>,
            (String, Option<String>, Option<String>, Vec<String>),
        ) = self.query_with_scripts(&pipe).await?;
        if verdict != "ok" {
            return Ok((claimed, LockRead::Locked));
        }
        Ok((
            claimed,
            LockRead::Acquired(
                Self::versioned_bill(&va_key, doc, ver)?,
                Self::payment_record(&pkey, pay)?,
            ),
        ))
    }

    /// The first round trip of an optimistic payment without a cached bill: the reference
    /// bound (`SET NX GET`, returning any earlier binding: a refused payment spends its
    /// reference too), then the bill the VA points to and the payment record under
    /// `(channel, reference)`, read in the same round trip. No lock is taken. On a Redis
    /// Cluster the binding's slot is its own: two commands sent together.
    ///
    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn claim_read(
        &self,
        inst: &str,
        va: &str,
        channel: &str,
        reference: &str,
        binding: &str,
    ) -> Result<
        (
            Option<String>,
            Option<Versioned<Bill>>,
            Option<PaymentRecord>,
        ),
        StoreError,
    > {
        let va_key = keys::va(inst, va);
        let pkey = keys::payment(inst, channel, reference);
        let mut pipe = redis::pipe();
        pipe.add_command(self.bind_call(channel, reference, binding).cmd())
            .add_command(self.read_va(inst, &va_key, Some(&pkey)).cmd());
        let (claimed, (doc, ver, pay)): (
            Option<String>,
            (Option<String>, Option<String>, Vec<String>),
        ) = self.query_with_scripts(&pipe).await?;
        Ok((
            claimed,
            Self::versioned_bill(&va_key, doc, ver)?,
            Self::payment_record(&pkey, pay)?,
        ))
    }

    /// Binds `(channel, reference)` to `binding` (`<institution>|<va>|<amount>`) unless it
    /// is bound already: the earlier binding, or `None` when this one is new. One script
    /// call on the reference's own slot (`lua/bind.lua`).
    ///
    /// # Errors
    /// Redis unreachable, a recovery that failed (see [`Store::eval`]).
    pub async fn bind(
        &self,
        channel: &str,
        reference: &str,
        binding: &str,
    ) -> Result<Option<String>, StoreError> {
        self.eval(self.bind_call(channel, reference, binding)).await
    }

    /// `SET NX GET` of a reference binding (Redis >= 7.0, `lua/bind.lua`): binds if new,
    /// returns the earlier binding otherwise.
    fn bind_call(&self, channel: &str, reference: &str, binding: &str) -> Eval<'_> {
        Eval::new(&self.scripts.bind)
            .key(keys::reference(channel, reference))
            .arg(binding)
    }

    /// Runs a pipeline holding `EVALSHA`s, recovering first if Redis lost its scripts
    /// (see [`Store::eval`]).
    async fn query_with_scripts<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        self.fenced(|| {
            let mut conn = self.conn();
            async move { pipe.query_async(&mut conn).await }
        })
        .await
    }

    /// Takes the VA lock if free (`SET NX PX`), or takes it back if `token` already owns
    /// it (a retried message). Returns whether it is ours.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn try_lock(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let call = Eval::new(&self.scripts.lock)
            .key(key)
            .arg(token)
            .arg(ttl.as_millis() as u64);
        let n: i64 = self.eval(call).await?;
        Ok(n == 1)
    }

    /// Releases a lock if `token` still owns it.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn unlock(&self, key: &str, token: &str) -> Result<bool, StoreError> {
        let n: i64 = self
            .eval(Eval::new(&self.scripts.unlock).key(key).arg(token))
            .await?;
        Ok(n == 1)
    }

    /// # Errors
    /// Redis unreachable.
    pub async fn reference(
        &self,
        channel: &str,
        reference: &str,
    ) -> Result<Option<String>, StoreError> {
        self.plain(
            redis::cmd("GET")
                .arg(keys::reference(channel, reference))
                .clone(),
        )
        .await
    }

    /// The institution's ledger balance (sum of credits minus debits).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn balance(&self, inst: &str) -> Result<i64, StoreError> {
        let v: Option<i64> = self.conn().get(keys::balance(inst)).await?;
        Ok(v.unwrap_or(0))
    }

    /// The institution's ledger entries, oldest first.
    ///
    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn ledger(&self, inst: &str) -> Result<Vec<Value>, StoreError> {
        let key = keys::ledger(inst);
        let raw: Vec<String> = self.conn().lrange(&key, 0, -1).await?;
        // An empty entry holds the place of one the journal has not re-applied yet.
        raw.iter()
            .filter(|s| !s.is_empty())
            .map(|s| parse(&key, s))
            .collect()
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
