//! Redis: hosted bills, payments and their idempotency records, the institution ledger, VA
//! locks. Every change that touches more than one key is one Lua script (atomic), and every
//! bill change is a compare-and-set on the bill's version, so a stale read can never write.

pub mod keys;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{Bill, Payment};
use crate::error::Rc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached or did not answer in time: retry, never guess.
    #[error("redis: {0}")]
    Unavailable(#[from] redis::RedisError),
    /// A stored document that does not parse: a bug or a hand edit, not a passing fault.
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

/// A bill and the version its compare-and-set must match.
#[derive(Clone, Debug)]
pub struct Versioned<T> {
    pub value: T,
    pub version: String,
}

/// What the channel was answered, kept so that a repeated request gets the same answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredAnswer {
    pub rc: Rc,
    pub message: String,
    pub timestamp: String,
    pub data: Value,
}

/// A payment with the answers and webhook jobs of its payment and (if any) its reversal.
#[derive(Clone, Debug)]
pub struct PaymentRecord {
    pub payment: Payment,
    pub answer: StoredAnswer,
    pub job: String,
    pub reversal: Option<(StoredAnswer, String)>,
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
}

pub struct NewPayment<'a> {
    pub inst: &'a str,
    pub bill: &'a Versioned<Bill>,
    pub next_bill: &'a Bill,
    pub payment: &'a Payment,
    pub answer: &'a StoredAnswer,
    pub job: &'a str,
    pub ledger_entry: &'a Value,
    pub score_ms: i64,
}

#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    scripts: std::sync::Arc<Scripts>,
}

struct Scripts {
    read_va: Script,
    pay: Script,
    reverse: Script,
    create: Script,
    update_bill: Script,
    unlock: Script,
    claim: Script,
}

fn status_str(b: &Bill) -> &'static str {
    match b.status {
        crate::domain::BillStatus::Active | crate::domain::BillStatus::Expired => "active",
        crate::domain::BillStatus::Paid => "paid",
        crate::domain::BillStatus::Revoked => "revoked",
    }
}

fn parse<T: serde::de::DeserializeOwned>(key: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt { key: key.to_owned(), reason: e.to_string() })
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn verdict(r: &[String]) -> Commit {
    match r.first().map(String::as_str) {
        Some("ok") => Commit::Done,
        Some("dup") | Some("already") | Some("hash_taken") => Commit::Already,
        Some("missing") => Commit::Missing,
        Some("occupied") => Commit::Occupied(r.get(1).cloned().unwrap_or_default()),
        _ => Commit::Conflict,
    }
}

impl Store {
    /// Creates the store. The connection is made lazily and re-made after failures, so the
    /// daemon starts (not ready) while Redis is down.
    ///
    /// # Errors
    /// An invalid URL.
    pub fn new(url: &str, command_timeout: Duration) -> Result<Store, StoreError> {
        let client = redis::Client::open(url)?;
        let cfg = ConnectionManagerConfig::new()
            .set_response_timeout(Some(command_timeout))
            .set_connection_timeout(Some(command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, cfg)?;
        Ok(Store {
            conn,
            scripts: std::sync::Arc::new(Scripts {
                read_va: Script::new(include_str!("lua/read_va.lua")),
                pay: Script::new(include_str!("lua/pay.lua")),
                reverse: Script::new(include_str!("lua/reverse.lua")),
                create: Script::new(include_str!("lua/create.lua")),
                update_bill: Script::new(include_str!("lua/update_bill.lua")),
                unlock: Script::new(include_str!("lua/unlock.lua")),
                claim: Script::new(include_str!("lua/claim.lua")),
            }),
        })
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// # Errors
    /// Redis unreachable.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn()).await?;
        Ok(())
    }

    fn versioned_bill(key: &str, doc: Option<String>, ver: Option<String>) -> Result<Option<Versioned<Bill>>, StoreError> {
        match (doc, ver) {
            (Some(doc), Some(version)) => Ok(Some(Versioned { value: parse(key, &doc)?, version })),
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
        let get = |f: &str| m.get(f).copied().ok_or_else(|| StoreError::Corrupt { key: key.into(), reason: format!("no {f}") });
        let reversal = match (m.get("rev_answer"), m.get("rev_job")) {
            (Some(a), Some(j)) => Some((parse(key, a)?, (*j).to_owned())),
            _ => None,
        };
        Ok(Some(PaymentRecord {
            payment: parse(key, get("doc")?)?,
            answer: parse(key, get("answer")?)?,
            job: get("job")?.to_owned(),
            reversal,
        }))
    }

    /// The bill a VA points to, whatever its status.
    ///
    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn bill_by_va(&self, inst: &str, va: &str) -> Result<Option<Versioned<Bill>>, StoreError> {
        Ok(self.bill_and_payment(inst, va, None).await?.0)
    }

    /// The bill a VA points to and the payment recorded under `(channel, reference)`.
    ///
    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn bill_and_payment(
        &self,
        inst: &str,
        va: &str,
        payment: Option<(&str, &str)>,
    ) -> Result<(Option<Versioned<Bill>>, Option<PaymentRecord>), StoreError> {
        let mut inv = self.scripts.read_va.key(keys::va(inst, va));
        let pkey = payment.map(|(c, r)| keys::payment(inst, c, r));
        if let Some(k) = &pkey {
            inv.key(k);
        }
        inv.arg(keys::bill_prefix(inst));
        let (doc, ver, pay): (Option<String>, Option<String>, Vec<String>) = inv.invoke_async(&mut self.conn()).await?;
        let bill = Self::versioned_bill(&keys::va(inst, va), doc, ver)?;
        let rec = match &pkey {
            Some(k) => Self::payment_record(k, pay)?,
            None => None,
        };
        Ok((bill, rec))
    }

    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn bill(&self, inst: &str, hash: &str) -> Result<Option<Versioned<Bill>>, StoreError> {
        let key = keys::bill(inst, hash);
        let (doc, ver): (Option<String>, Option<String>) =
            redis::cmd("HMGET").arg(&key).arg("doc").arg("ver").query_async(&mut self.conn()).await?;
        Self::versioned_bill(&key, doc, ver)
    }

    /// # Errors
    /// Redis unreachable, corrupt record.
    pub async fn payment(&self, inst: &str, channel: &str, reference: &str) -> Result<Option<PaymentRecord>, StoreError> {
        let key = keys::payment(inst, channel, reference);
        let fields: Vec<String> = redis::cmd("HGETALL").arg(&key).query_async(&mut self.conn()).await?;
        Self::payment_record(&key, fields)
    }

    /// Commits a payment: see `lua/pay.lua`.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn commit_payment(&self, p: NewPayment<'_>) -> Result<Commit, StoreError> {
        let r: Vec<String> = self
            .scripts
            .pay
            .key(keys::bill(p.inst, &p.bill.value.hash))
            .key(keys::payment(p.inst, &p.payment.channel, &p.payment.payment_ref_id))
            .key(keys::bill_payments(p.inst, &p.bill.value.hash))
            .key(keys::payments(p.inst))
            .key(keys::ledger(p.inst))
            .key(keys::balance(p.inst))
            .arg(&p.bill.version)
            .arg(to_json(p.next_bill))
            .arg(status_str(p.next_bill))
            .arg(to_json(p.payment))
            .arg(to_json(p.answer))
            .arg(p.job)
            .arg(to_json(p.ledger_entry))
            .arg(p.payment.amount.get())
            .arg(p.score_ms)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(verdict(&r))
    }

    /// Commits a reversal: see `lua/reverse.lua`.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn commit_reversal(&self, p: NewPayment<'_>) -> Result<Commit, StoreError> {
        let r: Vec<String> = self
            .scripts
            .reverse
            .key(keys::bill(p.inst, &p.bill.value.hash))
            .key(keys::payment(p.inst, &p.payment.channel, &p.payment.payment_ref_id))
            .key(keys::ledger(p.inst))
            .key(keys::balance(p.inst))
            .arg(&p.bill.version)
            .arg(to_json(p.next_bill))
            .arg(status_str(p.next_bill))
            .arg(to_json(p.payment))
            .arg(to_json(p.answer))
            .arg(p.job)
            .arg(to_json(p.ledger_entry))
            .arg(p.payment.amount.get())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(verdict(&r))
    }

    /// Stores a new bill and points each of its VAs at it, unless a VA already has a
    /// payable bill (`Commit::Occupied`) or the hash is taken (`Commit::Already`).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn create_bill(&self, bill: &Bill, now_ms: i64) -> Result<Commit, StoreError> {
        let inst = &bill.institution_code;
        let mut inv = self.scripts.create.key(keys::bill(inst, &bill.hash));
        inv.key(keys::bills(inst));
        for p in &bill.prefixes {
            inv.key(keys::va(inst, &format!("{p}{}", &bill.va_number[6..])));
        }
        let until = bill.valid_until.map(|t| t.timestamp_millis().to_string()).unwrap_or_default();
        let r: Vec<String> = inv
            .arg(to_json(bill))
            .arg(keys::bill_prefix(inst))
            .arg(now_ms)
            .arg(until)
            .arg(&bill.hash)
            .arg(bill.created_at.timestamp_millis())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(verdict(&r))
    }

    /// Replaces a bill if its version still matches.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn update_bill(&self, old: &Versioned<Bill>, next: &Bill) -> Result<Commit, StoreError> {
        let r: Vec<String> = self
            .scripts
            .update_bill
            .key(keys::bill(&next.institution_code, &next.hash))
            .arg(&old.version)
            .arg(to_json(next))
            .arg(status_str(next))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(verdict(&r))
    }

    /// Takes the VA lock if free: `SET NX PX`. Returns whether it was taken.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        let r: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut self.conn())
            .await?;
        Ok(r.is_some())
    }

    /// Releases a lock if `token` still owns it.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn unlock(&self, key: &str, token: &str) -> Result<bool, StoreError> {
        let n: i64 = self.scripts.unlock.key(key).arg(token).invoke_async(&mut self.conn()).await?;
        Ok(n == 1)
    }

    /// Binds `(channel, reference)` to `binding` unless already bound; returns the existing
    /// binding.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn claim_reference(&self, channel: &str, reference: &str, binding: &str) -> Result<Option<String>, StoreError> {
        Ok(self.scripts.claim.key(keys::reference(channel, reference)).arg(binding).invoke_async(&mut self.conn()).await?)
    }

    /// # Errors
    /// Redis unreachable.
    pub async fn reference(&self, channel: &str, reference: &str) -> Result<Option<String>, StoreError> {
        Ok(self.conn().get(keys::reference(channel, reference)).await?)
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
        raw.iter().map(|s| parse(&key, s)).collect()
    }
}
