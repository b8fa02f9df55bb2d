//! The journal's events: every committed change of a bill, a payment, the ledger or a
//! forwarded payment, as the full after-state of each record it set, with that record's
//! version. Redis is a view of the journal (docs/journal.md): applying an event sets each
//! record only if its version is newer, so applying twice, or out of order, gives the same
//! state.
//!
//! The store builds an event right after its commit script succeeds and hands it to the
//! [`Sink`] (the daemon's Kafka producer, `kafka::journal`); the commit call returns only
//! once the sink says the broker acknowledged it, so no door answers before its event is
//! durable. A repeat of a request that finds its change already committed journals it
//! again under the same `event_id` (`Store::rejournal_*`): a crash between the commit and
//! the acknowledgement is repaired by the redelivery.

use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{keys, Store, StoreError};
use crate::domain::passive::PassivePayment;
use crate::domain::{Bill, Binding, Payment, VaNumber};

/// Where events go: appends one and resolves once it is durable (acknowledged by every
/// in-sync replica of the journal topic).
pub trait Sink: Send + Sync {
    /// Appends `payload` (an [`Event`] as JSON) keyed by `institution`; resolves to where
    /// it landed: `(partition, offset)`.
    ///
    /// # Errors
    /// The event could not be made durable (the daemon is shutting down): a message that
    /// names why.
    fn append(
        &self,
        institution: &str,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<(i32, i64), String>>;

    /// Resolves once no append of this process is on its way (a recovery waits for it
    /// before it reads the journal's end, so none of ours lands after).
    fn settle(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// Rebuilds what Redis lost: run by the store when Redis no longer knows its scripts (it
/// restarted, failed over or was flushed of scripts) before any request touches it again.
pub trait Recover: Send + Sync {
    /// Re-applies the journal from the institutions' marks to its end as of now.
    ///
    /// # Errors
    /// The journal cannot be read; a message that names why.
    fn catch_up<'a>(&'a self, store: &'a Store) -> BoxFuture<'a, Result<(), String>>;
}

/// What an event records (`type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A hosted bill was created (Create New Bill, CLI `bill create`).
    BillCreated,
    /// A hosted bill changed outside a payment (revoked).
    BillUpdated,
    /// A hosted payment: the bill, the payment record, the ledger credit, the binding.
    PaymentCommitted,
    /// A hosted reversal: the bill, the payment record's reversal, the ledger debit.
    PaymentReversed,
    /// A forwarded (passive) payment's record changed: new, answered, in doubt, resolved.
    PassiveRecorded,
    /// A reversal found no payment under its reference and closed it (decision 9): the
    /// event's `binding` is the void binding a later payment is refused by.
    ReferenceVoided,
}

/// One journal event. `event_id` is stable: the same change journaled again carries the
/// same id (`<institution>:bill:<hash>:<version>`, `<institution>:pay:<channel>:<ref>:paid`
/// or `:reversed`, `<institution>:ppay:<channel>:<ref>:<rev>`).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Event {
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The institution's code: the event's Kafka key (one institution, one partition).
    pub institution: String,
    /// When the change was committed (ISO 8601, the switch's offset).
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill: Option<BillAfter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentAfter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerAfter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<BindingAfter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<PassiveAfter>,
}

/// A hosted bill after the change: its document exactly as stored, and its version (the
/// compare-and-set counter, 1 at creation, +1 per change).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BillAfter {
    pub hash: String,
    pub version: u64,
    /// `active`, `paid` or `revoked` (the stored status; expiry is computed on read).
    pub status: String,
    /// `valid_until` in ms since the epoch, if the bill expires.
    pub valid_until_ms: Option<i64>,
    /// `created_at` in ms since the epoch (orders two bills of one VA).
    pub created_ms: i64,
    /// Every VA that points at the bill (one per prefix).
    pub va_numbers: Vec<String>,
    #[schemars(with = "serde_json::Value")]
    pub doc: Box<RawValue>,
}

/// What a commit script gave back and was sent, for [`Event::committed`].
pub struct Committed<'a> {
    /// The payment document, as sent to Redis.
    pub payment_doc: Box<RawValue>,
    /// The bill after the change, as sent to Redis, and its new version.
    pub next_doc: Box<RawValue>,
    pub version: u64,
    /// The ledger entry as sent (without `balance_after`), its sequence and the balance
    /// after it, as the script answered.
    pub ledger_doc: &'a str,
    pub seq: u64,
    pub balance: &'a str,
}

/// Which half of a payment record an event sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Paid,
    Reversed,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Paid => "paid",
            Stage::Reversed => "reversed",
        }
    }
}

/// A hosted payment record's stage: the payment document, the bill as answered, the
/// answer's timestamp, and the sequence number of its ledger entry. A stage never
/// changes once written, so applying it again is a no-op.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PaymentAfter {
    pub channel: String,
    pub payment_ref_id: String,
    pub stage: Stage,
    #[schemars(with = "serde_json::Value")]
    pub doc: Box<RawValue>,
    /// The bill as the answer showed it. Left out when it is the event's `bill` as seen at
    /// `timestamp` by the paying VA (`Bill::view`), which is nearly always: it is then
    /// derived (see [`Event::answered_bill`]), a third less to write and keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Value>")]
    pub answered_bill: Option<Box<RawValue>>,
    pub timestamp: String,
    /// Sequence number (1-based) of the stage's ledger entry; 0 when unknown (a record
    /// written before the journal existed).
    pub ledger_seq: u64,
    /// The payment's `created_at` in ms (its place in the institution's payment index).
    pub score_ms: i64,
}

impl PaymentAfter {
    /// When the payment was made (ms): its document's `created_at` (a reversal's event
    /// scores the reversal), else `score_ms`. The retention windows count from it.
    pub fn paid_ms(&self) -> i64 {
        serde_json::from_str::<serde_json::Value>(self.doc.get())
            .ok()
            .and_then(|d| chrono::DateTime::parse_from_rfc3339(d.get("created_at")?.as_str()?).ok())
            .map_or(self.score_ms, |t| t.timestamp_millis())
    }
}

/// One ledger entry, exactly as stored, at its sequence number; the institution's balance
/// is `balance_after` of the entry with the highest sequence (rupiah, exact).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LedgerAfter {
    pub seq: u64,
    pub balance_after: i64,
    #[schemars(with = "serde_json::Value")]
    pub entry: Box<RawValue>,
}

/// The channel reference bound to its transaction (`<institution>|<va>|<amount>`).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BindingAfter {
    pub channel: String,
    pub reference: String,
    pub record: String,
}

/// A forwarded payment's record after the change, at its revision (1 when recorded, +1
/// per change), and when its next resolution step is due (`None`: not being resolved).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PassiveAfter {
    pub channel: String,
    pub reference: String,
    pub rev: u64,
    pub score_ms: i64,
    pub due_ms: Option<i64>,
    #[schemars(with = "serde_json::Value")]
    pub doc: Box<RawValue>,
}

fn raw(json: String) -> Box<RawValue> {
    RawValue::from_string(json)
        .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"))
}

/// `entry` (a JSON object) without its closing `}`: what `lua/pay.lua` and `reverse.lua`
/// take, to append `"balance_after"` and close it.
pub fn entry_open(entry: &str) -> &str {
    debug_assert!(entry.ends_with('}'), "ledger entry {entry}");
    entry.strip_suffix('}').unwrap_or(entry)
}

/// `entry` (a JSON object) with `"balance_after":<balance>` appended, byte for byte as
/// `lua/pay.lua` stores it.
pub fn entry_with_balance(entry: &str, balance: &str) -> String {
    [entry_open(entry), ",\"balance_after\":", balance, "}"].concat()
}

impl LedgerAfter {
    /// The entry a commit script stored at `seq`: `entry` (a JSON object without its
    /// balance) with `balance` (the script's reply, rupiah as decimal digits) appended as
    /// [`entry_with_balance`] does.
    ///
    /// # Errors
    /// `Corrupt` when `balance` is not an integer (the balance key of `inst`); `Journal`
    /// when the entry is not JSON (retried, as any journal failure).
    pub fn appended(
        inst: &str,
        seq: u64,
        entry: &str,
        balance: &str,
    ) -> Result<LedgerAfter, StoreError> {
        Ok(LedgerAfter {
            seq,
            balance_after: balance.parse().map_err(|_| StoreError::Corrupt {
                key: keys::balance(inst),
                reason: format!("balance {balance:?} is not an integer"),
            })?,
            entry: RawValue::from_string(entry_with_balance(entry, balance))
                .map_err(|e| StoreError::Journal(e.to_string()))?,
        })
    }
}

impl BillAfter {
    /// `bill` as stored (`doc`, its exact JSON) at `version` with stored `status`.
    pub fn of(bill: &Bill, doc: Box<RawValue>, version: u64, status: &str) -> BillAfter {
        let suffix = bill.va_number.get(6..).unwrap_or_default();
        BillAfter {
            hash: bill.hash.clone(),
            version,
            status: status.to_owned(),
            valid_until_ms: bill.valid_until.map(|t| t.timestamp_millis()),
            created_ms: bill.created_at.timestamp_millis(),
            va_numbers: bill
                .prefixes
                .iter()
                .map(|p| format!("{p}{suffix}"))
                .collect(),
            doc,
        }
    }
}

impl Event {
    /// The payment stage's bill as answered, exactly as the switch stored it: carried, or
    /// derived from the event's bill (its after-state) seen at the answer's timestamp by
    /// the paying VA. `None` for an event without a payment stage.
    pub fn answered_bill(&self) -> Option<String> {
        let p = self.payment.as_ref()?;
        if let Some(a) = &p.answered_bill {
            return Some(a.get().to_owned());
        }
        let bill: Bill = serde_json::from_str(self.bill.as_ref()?.doc.get()).ok()?;
        let payment: Payment = serde_json::from_str(p.doc.get()).ok()?;
        let at = chrono::DateTime::parse_from_rfc3339(&p.timestamp).ok()?;
        serde_json::to_value(bill.view(at, Some(&payment.va_number)))
            .ok()
            .map(|v| v.to_string())
    }

    /// The event of a bill created or changed outside a payment.
    pub fn bill(
        kind: EventType,
        bill: &Bill,
        doc: String,
        version: u64,
        status: &str,
        time: String,
    ) -> Event {
        let inst = &bill.institution_code;
        Event {
            event_id: format!("{inst}:bill:{}:{version}", bill.hash),
            kind,
            institution: inst.clone(),
            time,
            bill: Some(BillAfter::of(bill, raw(doc), version, status)),
            payment: None,
            ledger: None,
            binding: None,
            passive: None,
        }
    }

    /// The event of a payment stage: `payment` (as stored), the bill after it, the ledger
    /// entry.
    pub fn payment(
        stage: Stage,
        payment: &Payment,
        after: PaymentAfter,
        bill: Option<BillAfter>,
        ledger: Option<LedgerAfter>,
    ) -> Event {
        let inst = &payment.institution_code;
        let binding = (stage == Stage::Paid)
            .then(|| VaNumber::parse(&payment.va_number).ok())
            .flatten()
            .map(|va| BindingAfter {
                channel: payment.channel.clone(),
                reference: payment.payment_ref_id.clone(),
                record: Binding::new(inst, &va, payment.amount).to_record(),
            });
        Event {
            event_id: [
                inst.as_str(),
                ":pay:",
                &payment.channel,
                ":",
                &payment.payment_ref_id,
                ":",
                stage.as_str(),
            ]
            .concat(),
            kind: match stage {
                Stage::Paid => EventType::PaymentCommitted,
                Stage::Reversed => EventType::PaymentReversed,
            },
            institution: inst.clone(),
            time: after.timestamp.clone(),
            bill,
            payment: Some(after),
            ledger,
            binding,
            passive: None,
        }
    }

    /// The event of a forwarded payment's record at revision `rev`.
    /// The event of a payment or reversal `p` that its script committed: the bill after it
    /// (the script added one to its version), the payment's stage, the ledger entry the
    /// script appended at `seq` with the balance after it. The documents are the very
    /// bytes sent to Redis.
    ///
    /// # Errors
    /// A balance that is not an integer; an answered bill that is not JSON.
    pub fn committed(
        stage: Stage,
        p: &super::NewPayment<'_>,
        c: Committed<'_>,
    ) -> Result<Event, StoreError> {
        let bill = BillAfter::of(
            p.next_bill,
            c.next_doc,
            c.version,
            super::status_str(p.next_bill),
        );
        let ledger = Some(LedgerAfter::appended(
            p.inst,
            c.seq,
            c.ledger_doc,
            c.balance,
        )?);
        // The bill as answered is left out when the event's bill, seen at the answer's
        // (whole-second) timestamp, gives it: only the status depends on the time.
        let answered_bill = match chrono::DateTime::parse_from_rfc3339(p.timestamp) {
            Ok(ts) => {
                let now = ts + chrono::Duration::milliseconds(p.score_ms - ts.timestamp_millis());
                (p.next_bill.effective_status(ts) != p.next_bill.effective_status(now))
                    .then(|| RawValue::from_string(p.answered_bill.to_owned()))
                    .transpose()
                    .map_err(|e| StoreError::Journal(e.to_string()))?
            }
            Err(_) => Some(
                RawValue::from_string(p.answered_bill.to_owned())
                    .map_err(|e| StoreError::Journal(e.to_string()))?,
            ),
        };
        let after = PaymentAfter {
            channel: p.payment.channel.clone(),
            payment_ref_id: p.payment.payment_ref_id.clone(),
            stage,
            doc: c.payment_doc,
            answered_bill,
            timestamp: p.timestamp.to_owned(),
            ledger_seq: c.seq,
            score_ms: p.score_ms,
        };
        Ok(Event::payment(stage, p.payment, after, Some(bill), ledger))
    }

    /// A reversal that found no payment closed `(channel, reference)` with the void binding
    /// `record` ([`Binding::void_record`]) at `time`. Its id is stable: the same reference
    /// closed again is the same event.
    pub fn voided(inst: &str, channel: &str, reference: &str, record: &str, time: String) -> Event {
        Event {
            event_id: format!("{inst}:void:{channel}:{reference}"),
            kind: EventType::ReferenceVoided,
            institution: inst.to_owned(),
            time,
            bill: None,
            payment: None,
            ledger: None,
            binding: Some(BindingAfter {
                channel: channel.to_owned(),
                reference: reference.to_owned(),
                record: record.to_owned(),
            }),
            passive: None,
        }
    }

    pub fn passive(rec: &PassivePayment, rev: u64, score_ms: i64, due_ms: Option<i64>) -> Event {
        let inst = &rec.institution;
        let binding = VaNumber::parse(&rec.va_number).ok().map(|va| BindingAfter {
            channel: rec.channel.clone(),
            reference: rec.reference.clone(),
            record: Binding::new(inst, &va, rec.amount).to_record(),
        });
        Event {
            event_id: format!("{inst}:ppay:{}:{}:{rev}", rec.channel, rec.reference),
            kind: EventType::PassiveRecorded,
            institution: inst.clone(),
            time: rec.updated_at.clone(),
            bill: None,
            payment: None,
            ledger: None,
            binding,
            passive: Some(PassiveAfter {
                channel: rec.channel.clone(),
                reference: rec.reference.clone(),
                rev,
                score_ms,
                due_ms,
                doc: raw(serde_json::to_string(rec).unwrap_or_default()),
            }),
        }
    }
}

/// How far the journal has been applied for one institution: the next offset to read in
/// its partition. Kept in the institution's own key (`ipg:{<inst>}:journal`), so on a
/// Redis Cluster it lives on the master of the data it covers and rolls back with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub partition: i32,
    pub offset: i64,
}

/// The journal half of the store: the sink events go to, and the recovery run when Redis
/// lost its scripts.
#[derive(Clone, Default)]
pub(super) struct Wiring {
    pub sink: Option<Arc<dyn Sink>>,
    pub recover: Option<Arc<dyn Recover>>,
    /// Per journal partition, the offset after the newest acknowledged event of this
    /// process: the marks to write next (see [`Store::take_acknowledged`]).
    pub acked: Arc<std::sync::Mutex<std::collections::BTreeMap<i32, i64>>>,
    /// How long a caller waits for an append (`journal.append_deadline_ms`; zero: as long
    /// as it takes).
    pub deadline: std::time::Duration,
    /// Appends past their deadline, still on their way.
    pub late: Arc<Late>,
    /// Acknowledged events the commit scripts listed as unjournaled, to take off the list.
    pub unjournaled: Arc<super::unjournaled::Acknowledged>,
}

/// An append still on its way after its caller stopped waiting, awaited by repeats.
type OnItsWay = futures::future::Shared<BoxFuture<'static, Result<(i32, i64), String>>>;

/// The appends that missed their deadline and are still on their way to the broker, by
/// event id: a repeat of the same event waits for the one on its way instead of producing
/// another (so a long outage does not pile copies up in the producer's queue). While any
/// is here the journal is *blocked* (`Store::journal_blocked`).
#[derive(Default)]
pub(super) struct Late {
    state: std::sync::Mutex<LateState>,
}

#[derive(Default)]
struct LateState {
    by_event: std::collections::HashMap<String, OnItsWay>,
    since: Option<std::time::Instant>,
}

impl Late {
    fn get(&self, event_id: &str) -> Option<OnItsWay> {
        self.state.lock().ok()?.by_event.get(event_id).cloned()
    }

    /// Lists `on_its_way` unless an append of the same event is listed already (two first
    /// appends of one event, a repeat racing the original: repeats wait for the first).
    fn insert(&self, event_id: String, on_its_way: OnItsWay) {
        if let Ok(mut st) = self.state.lock() {
            st.by_event.entry(event_id).or_insert(on_its_way);
            if st.since.is_none() {
                st.since = Some(std::time::Instant::now());
                metrics::gauge!(crate::metrics::JOURNAL_BLOCKED).set(1.0);
                tracing::error!("journal blocked: an append is past journal.append_deadline_ms; changes over HTTP are refused until the broker acknowledges again");
            }
            metrics::gauge!(crate::metrics::JOURNAL_LATE_APPENDS).set(st.by_event.len() as f64);
        }
    }

    /// Takes `on_its_way` off, if it is the one listed for the event.
    fn remove(&self, event_id: &str, on_its_way: &OnItsWay) {
        if let Ok(mut st) = self.state.lock() {
            if st
                .by_event
                .get(event_id)
                .is_some_and(|listed| listed.ptr_eq(on_its_way))
            {
                st.by_event.remove(event_id);
            }
            metrics::gauge!(crate::metrics::JOURNAL_LATE_APPENDS).set(st.by_event.len() as f64);
            if st.by_event.is_empty() {
                if let Some(since) = st.since.take() {
                    let blocked = since.elapsed();
                    metrics::gauge!(crate::metrics::JOURNAL_BLOCKED).set(0.0);
                    metrics::counter!(crate::metrics::JOURNAL_BLOCKED_SECONDS_TOTAL)
                        .increment(blocked.as_secs());
                    tracing::warn!(
                        blocked_ms = blocked.as_millis() as u64,
                        "journal unblocked: every late append is acknowledged"
                    );
                }
            }
        }
    }

    fn since(&self) -> Option<std::time::Instant> {
        self.state.lock().ok()?.since
    }
}

/// The sink gave up before the broker acknowledged (the daemon is stopping): the change is
/// committed and listed as unjournaled, so the channel hears it is in doubt.
fn given_up(why: String) -> StoreError {
    StoreError::InDoubt(format!(
        "the journal gave up before the broker acknowledged: {why}"
    ))
}

fn in_doubt(deadline: std::time::Duration) -> StoreError {
    StoreError::InDoubt(format!(
        "the broker did not acknowledge the event within {} ms",
        deadline.as_millis()
    ))
}

impl Store {
    /// Sends `event` to the journal and waits for it to be durable. Without a sink (a
    /// library user that journals nothing) it does nothing.
    ///
    /// The wait is bounded by `journal.append_deadline_ms`: past it the append goes on by
    /// itself until the broker acknowledges it (or the daemon stops), and the caller gets
    /// `StoreError::InDoubt`. A later append of the same `event_id` (a repeat) while it is
    /// on its way waits for it, within the same deadline, rather than producing a copy.
    ///
    /// # Errors
    /// `StoreError::InDoubt` past the deadline, or when the sink gave up before the broker
    /// acknowledged (the daemon is stopping).
    pub async fn append(&self, event: &Event) -> Result<(), StoreError> {
        let Some(sink) = &self.journal.sink else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let deadline = self.journal.deadline;
        if let Some(on_its_way) = self.journal.late.get(&event.event_id) {
            return match tokio::time::timeout(deadline, on_its_way).await {
                Ok(r) => r.map(|_| ()).map_err(given_up),
                Err(_) => Err(in_doubt(deadline)),
            };
        }
        let payload = serde_json::to_vec(event).unwrap_or_default();
        let acked = self.journal.acked.clone();
        let listed = super::unjournaled::member_of(event).map(|m| {
            (
                self.journal.unjournaled.clone(),
                event.institution.clone(),
                m,
            )
        });
        // Set once the caller stopped waiting: a change answered in doubt stays listed as
        // unjournaled after its acknowledgement, so the sweep announces it even when this
        // process stops before its own settling does (a second announcement has the same id).
        let answered_in_doubt = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let in_doubt_flag = answered_in_doubt.clone();
        let appended = sink.append(&event.institution, payload);
        let mut appended = Box::pin(async move {
            let r = appended.await;
            if let Ok((partition, offset)) = r {
                if let Ok(mut acked) = acked.lock() {
                    let next = acked.entry(partition).or_insert(0);
                    *next = (*next).max(offset + 1);
                }
                if let Some((unjournaled, inst, member)) = listed {
                    if !in_doubt_flag.load(std::sync::atomic::Ordering::Acquire) {
                        unjournaled.note(&inst, member);
                    }
                }
            }
            r
        });
        let r = if deadline.is_zero() {
            appended.await
        } else {
            match tokio::time::timeout(deadline, &mut appended).await {
                Ok(r) => r,
                Err(_) => {
                    // The append goes on by itself; repeats of this event wait for it.
                    answered_in_doubt.store(true, std::sync::atomic::Ordering::Release);
                    let on_its_way = (Box::pin(appended) as BoxFuture<'static, _>).shared();
                    let late = self.journal.late.clone();
                    let id = event.event_id.clone();
                    late.insert(id.clone(), on_its_way.clone());
                    tracing::warn!(event_id = %id, institution = %event.institution, "journal append past its deadline: answered in doubt, still on its way");
                    tokio::spawn(async move {
                        if let Err(e) = on_its_way.clone().await {
                            tracing::error!(event_id = %id, error = %e, "a late journal append was given up (the daemon is stopping): the change stays listed as unjournaled for the sweep");
                        }
                        late.remove(&id, &on_its_way);
                    });
                    return Err(in_doubt(deadline));
                }
            }
        };
        r.map_err(given_up)?;
        crate::metrics::stage(crate::metrics::Stage::Journal)
            .record(started.elapsed().as_secs_f64());
        if !self.journal.unjournaled.batched() {
            // No daemon task takes acknowledged changes off in batches (a command line):
            // now. A failure leaves it listed; a daemon's sweep journals it again.
            if let Err(e) = self.forget_acknowledged(std::time::Duration::ZERO).await {
                tracing::warn!(error = %e, "could not take an acknowledged change off the unjournaled list");
            }
        }
        Ok(())
    }

    /// Whether the journal is blocked, and since when: an append of this process is past
    /// `journal.append_deadline_ms` and not yet acknowledged. The HTTP doors refuse
    /// changes meanwhile (503, nothing done) and `/readyz` is not ready; it unblocks by
    /// itself once the broker acknowledges every late append.
    pub fn journal_blocked(&self) -> Option<std::time::Instant> {
        self.journal.late.since()
    }

    /// `journal.append_deadline_ms` (zero: no deadline, a store without a journal).
    pub fn journal_deadline(&self) -> std::time::Duration {
        self.journal.deadline
    }

    /// Takes, per journal partition, the offset after the newest event this process had
    /// acknowledged since the last call. Every event of that partition below it was
    /// appended before it, hence committed in Redis before it: each served institution of
    /// the partition may be marked there (`journal::spawn_marks`).
    pub fn take_acknowledged(&self) -> std::collections::BTreeMap<i32, i64> {
        self.journal
            .acked
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default()
    }

    /// Waits (at most `limit`) until no journal append of this process is on its way.
    pub async fn settle_journal(&self, limit: std::time::Duration) {
        if let Some(sink) = &self.journal.sink {
            let _ = tokio::time::timeout(limit, sink.settle()).await;
        }
    }

    /// Whether events go to a journal.
    pub fn journaled(&self) -> bool {
        self.journal.sink.is_some()
    }

    /// The store with `sink` receiving every committed change and `recover` run when Redis
    /// lost its scripts. Call before cloning the store.
    /// Appends wait at most `deadline` (zero: as long as it takes) before a commit call
    /// returns `StoreError::InDoubt`.
    pub fn with_journal(
        mut self,
        sink: Arc<dyn Sink>,
        recover: Arc<dyn Recover>,
        deadline: std::time::Duration,
    ) -> Store {
        self.journal = Wiring {
            sink: Some(sink),
            recover: Some(recover),
            acked: Default::default(),
            deadline,
            late: Default::default(),
            unjournaled: Default::default(),
        };
        self
    }

    /// Journals again, under the same event id, a payment stage found committed (a repeat
    /// of the request): its record, its ledger entry, the bill as it is now.
    ///
    /// # Errors
    /// Redis unreachable, corrupt record, the journal unavailable.
    pub async fn rejournal_payment(
        &self,
        inst: &str,
        channel: &str,
        reference: &str,
        stage: Stage,
    ) -> Result<(), StoreError> {
        if !self.journaled() {
            return Ok(());
        }
        let key = keys::payment(inst, channel, reference);
        let fields: std::collections::HashMap<String, String> =
            self.plain(redis::cmd("HGETALL").arg(&key).clone()).await?;
        let (doc_f, bill_f, ts_f, seq_f) = match stage {
            Stage::Paid => ("doc", "bill", "ts", "lseq"),
            Stage::Reversed => ("rev_doc", "rev_bill", "rev_ts", "rev_lseq"),
        };
        let (Some(doc), Some(answered), Some(ts)) =
            (fields.get(doc_f), fields.get(bill_f), fields.get(ts_f))
        else {
            return Ok(());
        };
        let payment: Payment = super::parse(&key, doc)?;
        let seq: u64 = fields.get(seq_f).and_then(|s| s.parse().ok()).unwrap_or(0);
        let bill = self.bill_after(inst, &payment.bill_hash).await?;
        let ledger = if seq > 0 {
            // Its place is the sequence less the entries the retention sweep took off, read
            // with them in one step; an entry taken off is journaled without its ledger
            // (its own event has it).
            self.ledger_entry_at(inst, seq)
                .await?
                .and_then(|e| ledger_after(seq, e))
        } else {
            None
        };
        let after = PaymentAfter {
            channel: channel.to_owned(),
            payment_ref_id: reference.to_owned(),
            stage,
            doc: raw(doc.clone()),
            answered_bill: Some(raw(answered.clone())),
            timestamp: ts.clone(),
            ledger_seq: seq,
            score_ms: payment.created_at.timestamp_millis(),
        };
        self.append(&Event::payment(stage, &payment, after, bill, ledger))
            .await
    }

    /// Journals again a bill as it is now (a revoke repeated on a revoked bill).
    ///
    /// # Errors
    /// Redis unreachable, corrupt record, the journal unavailable.
    pub async fn rejournal_bill(&self, inst: &str, hash: &str) -> Result<(), StoreError> {
        if !self.journaled() {
            return Ok(());
        }
        if let Some(b) = self.bill_after(inst, hash).await? {
            let bill: Bill = super::parse(hash, b.doc.get())?;
            // A created bill as created; a later version at its creation is unknown, and
            // now is never earlier than it (the retention windows count from it).
            let time = if b.version == 1 {
                bill.created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
            } else {
                chrono::Utc::now()
                    .with_timezone(bill.created_at.offset())
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
            };
            let doc = b.doc.get().to_owned();
            let mut ev = Event::bill(
                EventType::BillUpdated,
                &bill,
                doc,
                b.version,
                &b.status,
                time,
            );
            if b.version == 1 {
                ev.kind = EventType::BillCreated;
            }
            if let Some(after) = ev.bill.as_mut() {
                after.created_ms = b.created_ms;
            }
            self.append(&ev).await?;
        }
        Ok(())
    }

    /// Journals again a forwarded payment's record as it is now (a repeat found it).
    ///
    /// # Errors
    /// Redis unreachable, the journal unavailable.
    pub async fn rejournal_passive(&self, rec: &PassivePayment) -> Result<(), StoreError> {
        if !self.journaled() {
            return Ok(());
        }
        let member = rec.member();
        let (score, due): (Option<f64>, Option<f64>) = self
            .plain_pipe(
                redis::pipe()
                    .cmd("ZSCORE")
                    .arg(keys::passive_payments(&rec.institution))
                    .arg(&member)
                    .cmd("ZSCORE")
                    .arg(keys::passive_pending(&rec.institution))
                    .arg(&member)
                    .clone(),
            )
            .await?;
        let rev = rec.rev.parse().unwrap_or(1);
        // Scores are ms timestamps (< 2^53): exact as doubles.
        let ev = Event::passive(rec, rev, score.unwrap_or(0.0) as i64, due.map(|d| d as i64));
        self.append(&ev).await
    }

    /// A stored bill as an event's after-state.
    async fn bill_after(&self, inst: &str, hash: &str) -> Result<Option<BillAfter>, StoreError> {
        let key = keys::bill(inst, hash);
        // (doc, ver, status) of the record, and its index score.
        type Read = (
            (Option<String>, Option<String>, Option<String>),
            Option<f64>,
        );
        let ((doc, ver, status), indexed): Read = self
            .plain_pipe(
                redis::pipe()
                    .cmd("HMGET")
                    .arg(&key)
                    .arg("doc")
                    .arg("ver")
                    .arg("status")
                    .cmd("ZSCORE")
                    .arg(keys::bills(inst))
                    .arg(hash)
                    .clone(),
            )
            .await?;
        let (Some(doc), Some(ver)) = (doc, ver) else {
            return Ok(None);
        };
        let bill: Bill = super::parse(&key, &doc)?;
        let mut after = BillAfter::of(
            &bill,
            raw(doc),
            ver.parse().unwrap_or(1),
            status.as_deref().unwrap_or("active"),
        );
        // Its creation as indexed (create.lua may have made it later than the doc's whole
        // second, so that its VA's newest bill stays the newest when this is applied).
        if let Some(ms) = indexed {
            after.created_ms = after.created_ms.max(ms as i64);
        }
        Ok(Some(after))
    }
}

/// A stored ledger entry at `seq` as an event's after-state; `None` for anything that is
/// not an entry with an integer `balance_after`.
pub fn ledger_after(seq: u64, entry: String) -> Option<LedgerAfter> {
    let v: serde_json::Value = serde_json::from_str(&entry).ok()?;
    Some(LedgerAfter {
        seq,
        balance_after: v.get("balance_after")?.as_i64()?,
        entry: RawValue::from_string(entry).ok()?,
    })
}

/// The journal partition of an institution's events: FNV-1a (32-bit) of its code modulo
/// the partition count. Fixed here, not left to a client's partitioner, so the catch-up
/// knows where an institution's events are.
pub fn partition_of(institution: &str, partitions: i32) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in institution.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % partitions.max(1) as u32) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_entries_get_their_balance_as_lua_appends_it() {
        assert_eq!(
            entry_with_balance(r#"{"id":"x","amount":5}"#, "9007199254740993"),
            r#"{"id":"x","amount":5,"balance_after":9007199254740993}"#
        );
        let l = ledger_after(3, entry_with_balance(r#"{"a":1}"#, "-7")).unwrap();
        assert_eq!((l.seq, l.balance_after), (3, -7));
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        // FNV-1a of "SCH01": a fixed function, so these never change between releases.
        assert_eq!(partition_of("SCH01", 1), 0);
        let p = partition_of("SCH01", 6);
        assert_eq!(p, partition_of("SCH01", 6));
        for inst in ["A", "SCH01", "PST02", "YYS03", ""] {
            assert!((0..6).contains(&partition_of(inst, 6)));
        }
    }
}
