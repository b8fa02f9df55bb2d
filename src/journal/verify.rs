//! `ipg-switch verify`: folds the whole journal into the records it says Redis must hold
//! (each record at its newest version) and compares them with Redis, record by record:
//! every record the switch reads money or a bill from, not only those an event names.
//! Bills, VA pointers (which bill a VA pays), payments, ledger entries, every balance key
//! (also of an institution with no ledger: it must not exist), forwarded payments, the
//! indexes lists and statements page through (an institution's bills, payments and
//! forwarded payments, a bill's payments), and bindings (one way). A record of any of
//! these kinds that no event explains is a difference.
//!
//! It understands the windows (docs/retention.md): a record past its window may have
//! left Redis (counted `retired`: Redis may hold it or not, and what it holds must agree),
//! a payment past the hot window may be its compact record, the ledger is compared above
//! Redis's `ledger_base`; nothing may leave before its window.

use std::collections::{BTreeMap, BTreeSet};

use super::{Journal, JournalError, Progress, Read};
use crate::store::journal::{Event, Stage};
use crate::store::{keys, Retention, Store};

/// How old a payment is, by the windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Age {
    /// In the hot window: its full record and index places.
    Hot,
    /// Past it: its full record or its compact record, index places optional.
    Retired,
    /// Past the reference window: gone, or about to be.
    Forgotten,
}

/// What the journal says Redis must hold.
#[derive(Default)]
pub struct Expected {
    /// The windows, and the time they are taken at (ms).
    retention: Retention,
    now_ms: i64,
    /// Bill key → the time of the event that set its newest version (ms).
    bill_at: BTreeMap<String, i64>,
    /// Payment key → when paid (ms).
    paid_ms: BTreeMap<String, i64>,
    /// Binding or tombstone key → the time of its event (ms).
    bound_at: BTreeMap<String, i64>,
    /// Bill key → (version, doc, status, until).
    bills: BTreeMap<String, (u64, String, String, String)>,
    /// Payment key → its fields.
    payments: BTreeMap<String, BTreeMap<&'static str, String>>,
    /// Institution → ledger entries by sequence.
    ledgers: BTreeMap<String, BTreeMap<u64, String>>,
    /// Institution → (sequence, balance) of its newest entry.
    balances: BTreeMap<String, (u64, i64)>,
    /// Forwarded payment key → (rev, doc).
    passive: BTreeMap<String, (u64, String)>,
    /// Forwarded payment key → its record's expiry once past the hot window (as
    /// `Retention::passive_expiry` decides for its newest revision).
    passive_expiry: BTreeMap<String, Option<i64>>,
    /// Reference key → binding.
    bindings: BTreeMap<String, String>,
    /// VA key → (created ms, hash) of the newest bill on it (as `apply_bill.lua` decides).
    vas: BTreeMap<String, (i64, String)>,
    /// A reversal's tombstone key (in the institution's slot) → its void binding.
    voids: BTreeMap<String, String>,
    /// Index key (zset) → its members: an institution's bills (hashes), payments and a
    /// bill's payments (payment keys), forwarded payments (`channel:reference`).
    indexes: BTreeMap<String, BTreeSet<String>>,
}

impl Expected {
    /// What the journal says Redis holds at `now_ms` under `retention`.
    pub fn at(retention: Retention, now_ms: i64) -> Expected {
        Expected {
            retention,
            now_ms,
            ..Expected::default()
        }
    }

    /// A bill closed past the hot window (as `Store::apply` decides): it may have left.
    fn bill_retired(&self, key: &str) -> bool {
        let hot = self.retention.hot_cutoff(self.now_ms);
        match (self.bills.get(key), self.bill_at.get(key)) {
            (Some((_, _, status, until)), Some(at)) => {
                if status == "active" {
                    until.parse::<i64>().is_ok_and(|u| u < hot)
                } else {
                    *at < hot
                }
            }
            _ => false,
        }
    }

    /// Expiry is Redis's (`PX`, `PXAT`): a record this close to it may be gone or not.
    fn forgotten_margin(&self) -> i64 {
        self.retention.margin_ms()
    }

    fn payment_age(&self, key: &str) -> Age {
        let paid = self.paid_ms.get(key).copied().unwrap_or(self.now_ms);
        if paid < self.retention.reference_cutoff(self.now_ms) + self.forgotten_margin() {
            Age::Forgotten
        } else if paid < self.retention.hot_cutoff(self.now_ms) {
            Age::Retired
        } else {
            Age::Hot
        }
    }

    fn binding_forgotten(&self, key: &str) -> bool {
        self.bound_at.get(key).is_some_and(|at| {
            *at < self.retention.reference_cutoff(self.now_ms) + self.forgotten_margin()
        })
    }

    /// An index member that may have left with its record: a payment past the hot window,
    /// a retired bill (`index` is `ipg:{I}:bills`).
    fn member_retired(&self, index: &str, member: &str) -> bool {
        if member.starts_with("ipg:{") {
            return self.payment_age(member) >= Age::Retired;
        }
        if let Some(base) = index.strip_suffix("ppays") {
            return self.passive_retired(&format!("{base}ppay:{member}"));
        }
        match index.strip_suffix("bills") {
            Some(base) => self.bill_retired(&format!("{base}bill:{member}")),
            None => false,
        }
    }

    /// A forwarded payment settled past the hot window: out of the index, expiring.
    fn passive_retired(&self, key: &str) -> bool {
        matches!(self.passive_expiry.get(key), Some(Some(_)))
    }

    /// A forwarded payment's record at (or within the margin of) its expiry: it may be gone.
    fn passive_forgotten(&self, key: &str) -> bool {
        matches!(self.passive_expiry.get(key), Some(Some(t)) if *t < self.now_ms + self.forgotten_margin())
    }

    /// Folds one event in: each record kept at its newest version, as applying does.
    pub fn add(&mut self, ev: &Event) {
        let inst = &ev.institution;
        let at_ms = chrono::DateTime::parse_from_rfc3339(&ev.time)
            .map_or(self.now_ms, |t| t.timestamp_millis());
        if let Some(b) = &ev.bill {
            for va in &b.va_numbers {
                let newest = (b.created_ms, b.hash.clone());
                let cur = self.vas.entry(keys::va(inst, va)).or_insert(newest.clone());
                if newest > *cur {
                    *cur = newest;
                }
            }
            self.index(keys::bills(inst), &b.hash);
            let key = keys::bill(inst, &b.hash);
            if self.bills.get(&key).is_none_or(|(v, ..)| *v < b.version) {
                let until = b.valid_until_ms.map(|t| t.to_string()).unwrap_or_default();
                // Closed by a payment: at the payment's time (as applying decides).
                let closed = ev.payment.as_ref().map_or(at_ms, |p| p.score_ms);
                self.bill_at.insert(key.clone(), closed);
                self.bills.insert(
                    key,
                    (b.version, b.doc.get().to_owned(), b.status.clone(), until),
                );
            }
        }
        if let Some(p) = &ev.payment {
            let key = keys::payment(inst, &p.channel, &p.payment_ref_id);
            // When paid: the payment's `created_at` (a reversal's event scores the reversal).
            self.paid_ms.insert(key.clone(), p.paid_ms());
            if p.stage == Stage::Paid {
                self.index(keys::payments(inst), &key);
                let hash = serde_json::from_str::<serde_json::Value>(p.doc.get())
                    .ok()
                    .and_then(|d| d.get("bill_hash")?.as_str().map(str::to_owned))
                    .unwrap_or_default();
                self.index(keys::bill_payments(inst, &hash), &key);
            }
            let f = self.payments.entry(key).or_default();
            let names = match p.stage {
                Stage::Paid => ["doc", "bill", "ts", "lseq"],
                Stage::Reversed => ["rev_doc", "rev_bill", "rev_ts", "rev_lseq"],
            };
            let values = [
                p.doc.get().to_owned(),
                ev.answered_bill().unwrap_or_default(),
                p.timestamp.clone(),
                p.ledger_seq.to_string(),
            ];
            for (n, v) in names.into_iter().zip(values) {
                f.insert(n, v);
            }
        }
        if let Some(l) = &ev.ledger {
            if l.seq > 0 {
                self.ledgers
                    .entry(inst.clone())
                    .or_default()
                    .insert(l.seq, l.entry.get().to_owned());
                let b = self.balances.entry(inst.clone()).or_insert((0, 0));
                if l.seq >= b.0 {
                    *b = (l.seq, l.balance_after);
                }
            }
        }
        if let Some(p) = &ev.passive {
            if p.score_ms > 0 {
                self.index(
                    keys::passive_payments(inst),
                    &format!("{}:{}", p.channel, p.reference),
                );
            }
            let key = keys::passive_payment(inst, &p.channel, &p.reference);
            if self.passive.get(&key).is_none_or(|(r, _)| *r < p.rev) {
                let expiry = serde_json::from_str(p.doc.get()).ok().and_then(|rec| {
                    self.retention
                        .passive_expiry(&rec, p.due_ms.is_some(), self.now_ms)
                });
                self.passive_expiry.insert(key.clone(), expiry);
                self.passive.insert(key, (p.rev, p.doc.get().to_owned()));
            }
        }
        if let Some(b) = &ev.binding {
            let key = keys::reference(&b.channel, &b.reference);
            if crate::domain::Binding::is_void(&b.record) {
                // A reversal's void binding replaced whatever was there (Store::void_reference),
                // and stands as a tombstone in the institution's slot too.
                let void = keys::void(inst, &b.channel, &b.reference);
                self.bound_at.insert(key.clone(), at_ms);
                self.bound_at.insert(void.clone(), at_ms);
                self.bindings.insert(key, b.record.clone());
                self.voids.insert(void, b.record.clone());
            } else if !self.bindings.contains_key(&key) {
                self.bound_at.insert(key.clone(), at_ms);
                self.bindings.insert(key, b.record.clone());
            }
        }
    }
}

impl Expected {
    fn index(&mut self, key: String, member: &str) {
        self.indexes
            .entry(key)
            .or_default()
            .insert(member.to_owned());
    }
}

/// One kind of record: how many the journal has, how many Redis has, how many differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Count {
    pub kind: &'static str,
    pub journal: u64,
    /// Of `journal`, those past their window: Redis may hold them or not.
    pub retired: u64,
    pub redis: u64,
    pub differing: u64,
}

/// The outcome of `verify`.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    pub events: u64,
    pub unreadable: u64,
    pub counts: Vec<Count>,
    /// The first differences (key: what differs), at most `MAX_SHOWN`.
    pub differences: Vec<String>,
    pub total_differences: u64,
}

impl Verdict {
    /// Redis and the journal agree. Bindings are compared one way only: every journaled
    /// binding must be in Redis, but a request refused before anything moved (a wrong
    /// amount, say) binds its reference too and journals nothing.
    pub fn agrees(&self) -> bool {
        self.total_differences == 0
            && self.unreadable == 0
            && self.counts.iter().all(|c| {
                c.kind == "bindings"
                    || (c.journal.saturating_sub(c.retired) <= c.redis && c.redis <= c.journal)
            })
    }

    /// A table a person reads.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<20} {:>10} {:>10} {:>10} {:>10}\n",
            "records", "journal", "retired", "redis", "differing"
        );
        for c in &self.counts {
            out += &format!(
                "{:<20} {:>10} {:>10} {:>10} {:>10}\n",
                c.kind, c.journal, c.retired, c.redis, c.differing
            );
        }
        out += &format!(
            "{} events read, {} unreadable; {}\n",
            self.events,
            self.unreadable,
            if self.agrees() {
                "Redis agrees with the journal".to_owned()
            } else {
                format!("{} difference(s)", self.total_differences)
            }
        );
        for d in &self.differences {
            out += &format!("  {d}\n");
        }
        out
    }
}

const MAX_SHOWN: usize = 20;

struct Diffs {
    shown: Vec<String>,
    total: u64,
}

impl Diffs {
    fn note(&mut self, key: &str, what: impl std::fmt::Display) {
        self.total += 1;
        if self.shown.len() < MAX_SHOWN {
            self.shown.push(format!("{key}: {what}"));
        }
    }
}

/// Compares the fields `fields` of the hash `key` with `want`, noting a `what` missing in
/// Redis or differing (naming the fields). Returns whether it differs.
#[allow(clippy::too_many_arguments)]
async fn hash_differs(
    store: &Store,
    diffs: &mut Diffs,
    key: &str,
    what: &str,
    fields: &[&str],
    want: &[String],
    may_be_gone: bool,
) -> Result<bool, JournalError> {
    let mut hmget = redis::cmd("HMGET");
    hmget.arg(key).arg(fields);
    let mut pipe = redis::pipe();
    pipe.add_command(hmget);
    let (got,): (Vec<Option<String>>,) = store.query_raw(pipe).await?;
    if got.first().cloned().flatten().is_none() {
        if may_be_gone {
            return Ok(false);
        }
        diffs.note(key, format!("{what} missing in Redis"));
        return Ok(true);
    }
    let which: Vec<&str> = fields
        .iter()
        .zip(got.iter().zip(want))
        .filter(|(_, (g, w))| g.as_deref() != Some(w.as_str()))
        .map(|(f, _)| *f)
        .collect();
    if which.is_empty() {
        return Ok(false);
    }
    diffs.note(key, format!("{what} differs ({})", which.join(", ")));
    Ok(true)
}

/// Compares string keys with the values the journal gives them, noting each that differs
/// (`<what> <got>, the journal says <want>`). Returns how many differ.
async fn strings_differ<'a>(
    store: &Store,
    diffs: &mut Diffs,
    want: impl Iterator<Item = (&'a String, &'a str, bool)>,
    what: &str,
) -> Result<u64, JournalError> {
    let mut differing = 0;
    for (key, value, may_be_gone) in want {
        let (got,): (Option<String>,) = store
            .query_raw(redis::pipe().cmd("GET").arg(key).clone())
            .await?;
        if got.as_deref() != Some(value) && !(got.is_none() && may_be_gone) {
            differing += 1;
            diffs.note(key, format!("{what} {got:?}, the journal says {value:?}"));
        }
    }
    Ok(differing)
}

/// Ledger entries read from Redis per `LRANGE`.
const LEDGER_PAGE: usize = 1_000;

/// Reads the whole journal and compares Redis with it.
///
/// # Errors
/// The journal unreadable, Redis unreachable.
pub async fn verify(
    journal: &Journal,
    store: &Store,
    progress: &mut dyn Progress,
) -> Result<Verdict, JournalError> {
    verify_in_pages(journal, store, progress, LEDGER_PAGE).await
}

/// [`verify`], reading each ledger from Redis in pages of `page` entries (`verify` reads
/// 1,000 at a time; tests read small pages to cross their edges).
///
/// # Errors
/// The journal unreadable, Redis unreachable.
pub async fn verify_in_pages(
    journal: &Journal,
    store: &Store,
    progress: &mut dyn Progress,
    page: usize,
) -> Result<Verdict, JournalError> {
    let page = page.max(1);
    let now_ms = store.redis_time_raw_ms().await?;
    let mut expected = Expected::at(store.retention(), now_ms);
    let mut events = 0u64;
    let unreadable = journal
        .scan(progress, &mut |r: &Read| {
            events += 1;
            expected.add(&r.event);
        })
        .await?;
    let mut diffs = Diffs {
        shown: Vec::new(),
        total: 0,
    };
    // A journal whose beginning is gone cannot vouch for what Redis holds from it.
    for (p, gone) in journal.dropped().await? {
        diffs.note(
            &format!("{}[{p}]", journal.topic),
            format!(
                "the broker no longer holds this partition's first {gone} event(s): the \
                 journal is incomplete (a retention shorter than forever, or the demo's \
                 embedded broker, which keeps about 5 MiB per partition)"
            ),
        );
    }
    let mut counts = Vec::new();

    // Bills: a bill closed past the hot window may have left.
    let (mut differing, mut retired) = (0, 0);
    for (key, (ver, doc, status, until)) in &expected.bills {
        let want = [doc.clone(), ver.to_string(), status.clone(), until.clone()];
        let fields = ["doc", "ver", "status", "until"];
        let gone = expected.bill_retired(key);
        retired += u64::from(gone);
        differing +=
            u64::from(hash_differs(store, &mut diffs, key, "bill", &fields, &want, gone).await?);
    }
    counts.push(Count {
        kind: "bills",
        journal: expected.bills.len() as u64,
        retired,
        redis: store.count_keys("ipg:{*}:bill:*").await?,
        differing,
    });

    // Payments: in the hot window the full record; past it the full or the compact record
    // (retire_payment.lua); past the reference window, gone or about to be.
    let (mut differing, mut retired) = (0, 0);
    for (key, fields) in &expected.payments {
        let age = expected.payment_age(key);
        retired += u64::from(age == Age::Forgotten);
        let got: std::collections::HashMap<String, String> = store
            .query_raw::<(std::collections::HashMap<String, String>,)>(
                redis::pipe().cmd("HGETALL").arg(key).clone(),
            )
            .await?
            .0;
        if got.is_empty() {
            if age != Age::Forgotten {
                differing += 1;
                diffs.note(key, "payment missing in Redis");
            }
            continue;
        }
        let bad: Vec<&str> = if got.contains_key("doc") {
            fields
                .iter()
                .filter(|(n, v)| got.get(**n) != Some(*v))
                .map(|(n, _)| *n)
                .collect()
        } else if age == Age::Hot {
            vec!["compact within the hot window"]
        } else {
            // The compact record: what the payment's document and the journal say, the
            // same ledger sequences, reversed or not.
            let doc: serde_json::Value = fields
                .get("doc")
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default();
            let text = |f: &str| {
                doc.get(f).map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            };
            let paid = expected.paid_ms.get(key).map(i64::to_string);
            let want = [
                ("id", text("id")),
                ("va_number", text("va_number")),
                ("amount", text("amount")),
                ("bill_hash", text("bill_hash")),
                ("paid_ms", paid),
                ("lseq", fields.get("lseq").cloned()),
                ("rev_lseq", fields.get("rev_lseq").cloned()),
            ];
            want.into_iter()
                .filter(|(n, w)| got.get(*n) != w.as_ref())
                .map(|(n, _)| n)
                .collect()
        };
        if !bad.is_empty() {
            differing += 1;
            diffs.note(key, format!("payment differs ({})", bad.join(", ")));
        }
    }
    counts.push(Count {
        kind: "payments",
        journal: expected.payments.len() as u64,
        retired,
        redis: store.count_keys("ipg:{*}:pay:*").await?,
        differing,
    });

    // Ledger entries and balances, per institution: the entries above the institution's
    // ledger_base (those below it left with the hot window, and must be older than it).
    let (mut differing, mut in_journal, mut in_redis) = (0, 0, 0);
    let mut insts: Vec<&String> = expected.ledgers.keys().collect();
    insts.dedup();
    let hot = expected.retention.hot_cutoff(now_ms);
    for inst in insts {
        let want = &expected.ledgers[inst];
        let key = keys::ledger(inst);
        let (base,): (Option<u64>,) = store
            .query_raw(
                redis::pipe()
                    .cmd("GET")
                    .arg(keys::ledger_base(inst))
                    .clone(),
            )
            .await?;
        let base = base.unwrap_or(0);
        if let Some(entry) = (base > 0).then(|| want.get(&base)).flatten() {
            let at = serde_json::from_str::<serde_json::Value>(entry)
                .ok()
                .and_then(|e| {
                    chrono::DateTime::parse_from_rfc3339(e.get("created_at")?.as_str()?).ok()
                })
                .map(|t| t.timestamp_millis());
            if at.is_none_or(|t| t >= hot) {
                differing += 1;
                diffs.note(
                    &keys::ledger_base(inst),
                    format!("entry {base} left Redis within the hot window"),
                );
            }
        }
        in_journal += want.range(base + 1..).count() as u64;
        // Read in pages of `page` entries, never one LRANGE of a whole ledger: a
        // verify holds one page of Redis's ledger at a time. Sequence base + 1 is at
        // index 0 of the list.
        let mut page_start = 0usize;
        loop {
            let (got,): (Vec<String>,) = store
                .query_raw(
                    redis::pipe()
                        .cmd("LRANGE")
                        .arg(&key)
                        .arg(page_start)
                        .arg(page_start + page - 1)
                        .clone(),
                )
                .await?;
            in_redis += got.iter().filter(|e| !e.is_empty()).count() as u64;
            // The journal's entries in this page; past Redis's last page, every one left.
            let last = got.len() < page;
            let upto = if last {
                u64::MAX
            } else {
                base + (page_start + page) as u64
            };
            for (seq, entry) in want.range(base + page_start as u64 + 1..=upto) {
                match got.get((*seq - base) as usize - 1 - page_start) {
                    Some(g) if g == entry => {}
                    Some(g) if g.is_empty() => {
                        differing += 1;
                        diffs.note(&key, format!("entry {seq} not applied yet"));
                    }
                    Some(_) => {
                        differing += 1;
                        diffs.note(&key, format!("entry {seq} differs"));
                    }
                    None => {
                        differing += 1;
                        diffs.note(&key, format!("entry {seq} missing in Redis"));
                    }
                }
            }
            if last {
                break;
            }
            page_start += page;
        }
        if let Some((_, balance)) = expected.balances.get(inst) {
            let (got,): (Option<i64>,) = store
                .query_raw(redis::pipe().cmd("GET").arg(keys::balance(inst)).clone())
                .await?;
            if got != Some(*balance) {
                differing += 1;
                diffs.note(
                    &keys::balance(inst),
                    format!("balance is {got:?}, the journal says {balance}"),
                );
            }
        }
    }
    counts.push(Count {
        kind: "ledger entries",
        journal: in_journal,
        retired: 0,
        redis: store.count_ledger_entries().await?.max(in_redis),
        differing,
    });

    // Forwarded payments: one settled past the hot window expires with the reference window.
    let (mut differing, mut retired) = (0, 0);
    for (key, (rev, doc)) in &expected.passive {
        let want = [doc.clone(), rev.to_string()];
        let what = "forwarded payment";
        let gone = expected.passive_forgotten(key);
        retired += u64::from(gone);
        differing += u64::from(
            hash_differs(store, &mut diffs, key, what, &["doc", "rev"], &want, gone).await?,
        );
    }
    counts.push(Count {
        kind: "forwarded payments",
        journal: expected.passive.len() as u64,
        retired,
        redis: store.count_keys("ipg:{*}:ppay:*").await?,
        differing,
    });

    // VA pointers: which bill each VA pays (a retired bill's pointer may have left).
    let bill_of_va = |k: &str, h: &str| match k.split_once(":va:") {
        Some((base, _)) => format!("{base}:bill:{h}"),
        None => String::new(),
    };
    let want = expected.vas.iter().map(|(k, (_, h))| {
        let gone = expected.bill_retired(&bill_of_va(k, h));
        (k, h.as_str(), gone)
    });
    let retired = expected
        .vas
        .iter()
        .filter(|(k, (_, h))| expected.bill_retired(&bill_of_va(k, h)))
        .count() as u64;
    let differing = strings_differ(store, &mut diffs, want, "VA points at").await?;
    counts.push(Count {
        kind: "VA pointers",
        journal: expected.vas.len() as u64,
        retired,
        redis: store.count_keys("ipg:{*}:va:*").await?,
        differing,
    });

    // Balances: every balance key, also of an institution whose journal has no ledger
    // entry (compared above when it has one).
    let mut differing = 0;
    let balance_keys = store.scan_keys("ipg:{*}:balance").await?;
    for key in &balance_keys {
        let known = expected.balances.keys().any(|i| keys::balance(i) == *key);
        if !known {
            let (got,): (Option<String>,) = store
                .query_raw(redis::pipe().cmd("GET").arg(key).clone())
                .await?;
            differing += 1;
            diffs.note(
                key,
                format!("balance is {got:?}, the journal has no ledger entry"),
            );
        }
    }
    counts.push(Count {
        kind: "balances",
        journal: expected.balances.len() as u64,
        retired: 0,
        redis: balance_keys.len() as u64,
        differing,
    });

    // Indexes: each holds every member the journal gives it that is not past its window,
    // and nothing the journal does not give it.
    let (mut differing, mut retired) = (0, 0);
    for (key, members) in &expected.indexes {
        let mut pipe = redis::pipe();
        pipe.cmd("ZCARD").arg(key);
        let (card,): (u64,) = store.query_raw(pipe).await?;
        let (mut missing, mut present, mut required) = (0u64, 0u64, 0u64);
        let all: Vec<&String> = members.iter().collect();
        for chunk in all.chunks(500) {
            let (scores,): (Vec<Option<String>>,) = store
                .query_raw(redis::pipe().cmd("ZMSCORE").arg(key).arg(chunk).clone())
                .await?;
            for (m, s) in chunk.iter().zip(&scores) {
                let gone = expected.member_retired(key, m);
                required += u64::from(!gone);
                present += u64::from(s.is_some());
                missing += u64::from(s.is_none() && !gone);
            }
        }
        retired += u64::from(required == 0);
        if missing > 0 || card != present {
            differing += 1;
            diffs.note(
                key,
                format!(
                    "index has {card} member(s), {missing} of the journal's {} missing, {} \
                     the journal does not give it",
                    members.len(),
                    card.saturating_sub(present)
                ),
            );
        }
    }
    let mut index_keys = 0;
    for pattern in [
        "ipg:{*}:bills",
        "ipg:{*}:payments",
        "ipg:{*}:billpays:*",
        "ipg:{*}:ppays",
    ] {
        index_keys += store.count_keys(pattern).await?;
    }
    counts.push(Count {
        kind: "indexes",
        journal: expected.indexes.len() as u64,
        retired,
        redis: index_keys,
        differing,
    });

    // Reversals' tombstones (they expire with the reference window).
    let want = (expected.voids.iter()).map(|(k, r)| (k, r.as_str(), expected.binding_forgotten(k)));
    let retired = (expected.voids.keys())
        .filter(|k| expected.binding_forgotten(k))
        .count() as u64;
    let differing = strings_differ(store, &mut diffs, want, "tombstone is").await?;
    counts.push(Count {
        kind: "closed references",
        journal: expected.voids.len() as u64,
        retired,
        redis: store.count_keys("ipg:{*}:void:*").await?,
        differing,
    });

    // Reference bindings (they expire with the reference window).
    let want =
        (expected.bindings.iter()).map(|(k, r)| (k, r.as_str(), expected.binding_forgotten(k)));
    let retired = (expected.bindings.keys())
        .filter(|k| expected.binding_forgotten(k))
        .count() as u64;
    let differing = strings_differ(store, &mut diffs, want, "binding is").await?;
    counts.push(Count {
        kind: "bindings",
        journal: expected.bindings.len() as u64,
        retired,
        redis: store.count_keys("ipg:ref:*").await?,
        differing,
    });

    // Records Redis holds that no event explains (written before the journal, by hand, or
    // by a broker whose journal is gone) are differences too; bindings are one-way.
    for c in counts
        .iter()
        .filter(|c| c.kind != "bindings" && c.redis > c.journal)
    {
        diffs.note(
            c.kind,
            format!(
                "{} record(s) in Redis that no journal event explains",
                c.redis - c.journal
            ),
        );
    }

    Ok(Verdict {
        events,
        unreadable,
        counts,
        differences: diffs.shown,
        total_differences: diffs.total,
    })
}
