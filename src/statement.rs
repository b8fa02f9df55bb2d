//! Daily statements and reconciliation (docs/statements.md), computed from journal events
//! only, so the same day gives the same bytes before and after Redis is rebuilt.
//!
//! A business day runs from `date` at `statement.cutoff_hour` to the next day's, in the
//! switch's offset (`switch.utc_offset`; midnight WIB by default). A statement lists every
//! hosted payment and reversal of that day and every payment forwarded to a passive
//! institution that day, with its status at the close of the day; counts and totals (in
//! rupiah) by type and by counterparty; the institution's closing ledger balance; and a
//! SHA-256 over its canonical body (the CSV lines: header and one line per movement, each
//! ending in `\n`), so two parties compare one number.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone};
use futures::future::BoxFuture;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::passive::PassivePayment;
use crate::domain::Payment;
use crate::store::journal::{Event, EventType, Stage};

/// Where a statement's events come from: the journal, read by time (`journal::window`),
/// so a day's statement costs that day's events, not the journal's whole history.
pub trait Source: Send + Sync {
    /// What a statement of `scope` for `day` needs: the events stamped in the day and its
    /// margin (`journal.time_margin_ms`), from the institution's own partition for an
    /// institution, with its last ledger entry before them.
    ///
    /// # Errors
    /// The journal cannot be read: a message naming why.
    fn day<'a>(
        &'a self,
        scope: &'a Scope,
        day: &'a Day,
    ) -> BoxFuture<'a, Result<DayEvents, String>>;
}

/// A day's events as read from the journal ([`Source::day`]).
#[derive(Debug, Default)]
pub struct DayEvents {
    /// In journal order per partition.
    pub events: Vec<Event>,
    /// The institution's last ledger entry before `events` (sequence, balance after in
    /// rupiah): its balance at the close when the day and its margin hold no entry.
    pub opening: Option<(u64, i64)>,
    /// Journal records read to find them (the read's cost).
    pub scanned: u64,
}

/// Whose statement: an institution's (with its closing balance) or a channel's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Institution(String),
    Channel(String),
}

/// A business day: `[from, to)`.
#[derive(Clone, Copy, Debug)]
pub struct Day {
    pub date: NaiveDate,
    pub from: DateTime<FixedOffset>,
    pub to: DateTime<FixedOffset>,
}

impl Day {
    /// The business day `date`, starting at `cutoff_hour` (0-23) in `offset`.
    pub fn new(date: NaiveDate, offset: FixedOffset, cutoff_hour: u32) -> Day {
        let start = date
            .and_hms_opt(cutoff_hour.min(23), 0, 0)
            .expect("an hour of 0-23 is a time");
        let from = offset
            .from_local_datetime(&start)
            .single()
            .expect("a fixed offset has one local time");
        Day {
            date,
            from,
            to: from + Duration::days(1),
        }
    }

    fn contains(&self, t: &DateTime<FixedOffset>) -> bool {
        *t >= self.from && *t < self.to
    }
}

/// One movement of the day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Line {
    /// When it was committed (ISO 8601, the switch's offset).
    pub time: String,
    pub channel: String,
    pub reference: String,
    pub institution: String,
    pub va_number: String,
    /// The hosted bill's hash; empty for a forwarded payment.
    pub bill_hash: String,
    /// Rupiah.
    pub amount: u64,
    /// `payment`, `reversal` (hosted) or `forwarded_payment` (passive).
    #[serde(rename = "type")]
    pub kind: String,
    /// At the close of the day: `paid` or `reversed` (hosted); `paid`, `refused`,
    /// `in_doubt`, `reversing` or `reversed` (forwarded).
    pub status: String,
}

/// Count and rupiah of one group of lines. `amount` is 128 bits wide: one line carries up
/// to 999,999,999,999,999 rupiah (decision 7), so a day's sum can pass 2^64 (about 18,447
/// lines at the maximum), and a sum of money is exact or refused, never wrapped. 2^128
/// rupiah would take 3.4e23 such lines. Written as a plain JSON number (RFC 8259 numbers
/// have no bound; a reader of these totals must keep integers beyond 2^53 exact).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Total {
    pub count: u64,
    pub amount: u128,
}

impl Total {
    /// Adds one line of `amount` rupiah.
    fn add(&mut self, amount: u64) {
        self.count += 1;
        self.amount += u128::from(amount);
    }
}

/// A business day's statement.
#[derive(Clone, Debug, Serialize)]
pub struct Statement {
    /// `institution` or `channel`.
    pub scope: String,
    pub code: String,
    pub date: String,
    pub from: String,
    pub to: String,
    pub lines: Vec<Line>,
    /// By `type`.
    pub totals: BTreeMap<String, Total>,
    /// By counterparty (channels of an institution, institutions of a channel), then type.
    pub totals_by_counterparty: BTreeMap<String, BTreeMap<String, Total>>,
    /// The institution's ledger balance at the close of the day (rupiah); none for a
    /// channel's statement.
    pub closing_balance: Option<i64>,
    /// SHA-256 (hex) of the canonical body: [`Statement::csv_lines`].
    pub sha256: String,
}

const HEADER: &str = "time,channel,reference,institution,va_number,bill_hash,amount,type,status";

fn stamp(t: &DateTime<FixedOffset>, offset: FixedOffset) -> String {
    t.with_timezone(&offset)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

fn in_scope(scope: &Scope, institution: &str, channel: &str) -> bool {
    match scope {
        Scope::Institution(c) => c == institution,
        Scope::Channel(c) => c == channel,
    }
}

impl Statement {
    /// The statement of `scope` for `day`, from `events` (journal order; an event journaled
    /// again under the same id counts once): the whole journal, or at least the day's
    /// events with the ledger entries before its close (see [`Statement::of_day`]).
    pub fn build<'a>(
        events: impl IntoIterator<Item = &'a Event>,
        scope: &Scope,
        day: &Day,
        offset: FixedOffset,
    ) -> Statement {
        Self::seeded(events, None, scope, day, offset)
    }

    /// The statement of `scope` for `day` from a day's read of the journal: its events,
    /// and for the closing balance the last ledger entry before them.
    pub fn of_day(read: &DayEvents, scope: &Scope, day: &Day, offset: FixedOffset) -> Statement {
        Self::seeded(&read.events, read.opening, scope, day, offset)
    }

    fn seeded<'a>(
        events: impl IntoIterator<Item = &'a Event>,
        opening: Option<(u64, i64)>,
        scope: &Scope,
        day: &Day,
        offset: FixedOffset,
    ) -> Statement {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut lines = Vec::new();
        let mut reversed_by_close: HashSet<(String, String, String)> = HashSet::new();
        let mut paid: Vec<Payment> = Vec::new();
        let mut forwarded: HashMap<(String, String, String), (u64, PassivePayment)> =
            HashMap::new();
        let mut closing: Option<(u64, i64)> = opening;
        for ev in events {
            if !seen.insert(ev.event_id.as_str()) {
                continue;
            }
            let before_close = DateTime::parse_from_rfc3339(&ev.time)
                .map(|t| t < day.to)
                .unwrap_or(false);
            if let (Scope::Institution(code), Some(l), true) = (scope, &ev.ledger, before_close) {
                if &ev.institution == code && closing.is_none_or(|(s, _)| l.seq > s) {
                    closing = Some((l.seq, l.balance_after));
                }
            }
            match (ev.kind, &ev.payment, &ev.passive) {
                (EventType::PaymentCommitted, Some(p), _) if p.stage == Stage::Paid => {
                    if let Ok(pay) = serde_json::from_str::<Payment>(p.doc.get()) {
                        paid.push(pay);
                    }
                }
                (EventType::PaymentReversed, Some(p), _) => {
                    let Ok(pay) = serde_json::from_str::<Payment>(p.doc.get()) else {
                        continue;
                    };
                    let at = pay.reversed_at.unwrap_or(pay.created_at);
                    if at < day.to {
                        reversed_by_close.insert((
                            pay.institution_code.clone(),
                            pay.channel.clone(),
                            pay.payment_ref_id.clone(),
                        ));
                    }
                    if day.contains(&at) && in_scope(scope, &pay.institution_code, &pay.channel) {
                        lines.push(Line {
                            time: stamp(&at, offset),
                            channel: pay.channel.clone(),
                            reference: pay.payment_ref_id.clone(),
                            institution: pay.institution_code.clone(),
                            va_number: pay.va_number.clone(),
                            bill_hash: pay.bill_hash.clone(),
                            amount: pay.amount.get(),
                            kind: "reversal".into(),
                            status: "reversed".into(),
                        });
                    }
                }
                (EventType::PassiveRecorded, _, Some(p)) if before_close => {
                    if let Ok(rec) = serde_json::from_str::<PassivePayment>(p.doc.get()) {
                        let key = (
                            rec.institution.clone(),
                            rec.channel.clone(),
                            rec.reference.clone(),
                        );
                        let newer = forwarded.get(&key).is_none_or(|(r, _)| p.rev > *r);
                        if newer {
                            forwarded.insert(key, (p.rev, rec));
                        }
                    }
                }
                _ => {}
            }
        }
        for pay in paid {
            if !day.contains(&pay.created_at)
                || !in_scope(scope, &pay.institution_code, &pay.channel)
            {
                continue;
            }
            let key = (
                pay.institution_code.clone(),
                pay.channel.clone(),
                pay.payment_ref_id.clone(),
            );
            lines.push(Line {
                time: stamp(&pay.created_at, offset),
                channel: pay.channel,
                reference: pay.payment_ref_id,
                institution: pay.institution_code,
                va_number: pay.va_number,
                bill_hash: pay.bill_hash,
                amount: pay.amount.get(),
                kind: "payment".into(),
                status: if reversed_by_close.contains(&key) {
                    "reversed"
                } else {
                    "paid"
                }
                .into(),
            });
        }
        for (_, (_, rec)) in forwarded {
            let Ok(at) = DateTime::parse_from_rfc3339(&rec.created_at) else {
                continue;
            };
            if !day.contains(&at) || !in_scope(scope, &rec.institution, &rec.channel) {
                continue;
            }
            let status = match rec.state.as_str() {
                // A call cut off before its answer is in doubt until resolved.
                "forwarding" => "in_doubt",
                s => s,
            };
            lines.push(Line {
                time: stamp(&at, offset),
                channel: rec.channel,
                reference: rec.reference,
                institution: rec.institution,
                va_number: rec.va_number,
                bill_hash: String::new(),
                amount: rec.amount.get(),
                kind: "forwarded_payment".into(),
                status: status.into(),
            });
        }
        // A total order of the lines: the same lines read in another order (the journal's
        // partitions interleave differently on every read) give the same bytes, even for
        // one reference at one time at two institutions (a channel's statement).
        lines.sort_by(|a, b| {
            (&a.time, &a.channel, &a.reference, &a.kind, &a.institution).cmp(&(
                &b.time,
                &b.channel,
                &b.reference,
                &b.kind,
                &b.institution,
            ))
        });
        let mut totals: BTreeMap<String, Total> = BTreeMap::new();
        let mut by_party: BTreeMap<String, BTreeMap<String, Total>> = BTreeMap::new();
        for l in &lines {
            totals.entry(l.kind.clone()).or_default().add(l.amount);
            let party = match scope {
                Scope::Institution(_) => &l.channel,
                Scope::Channel(_) => &l.institution,
            };
            by_party
                .entry(party.clone())
                .or_default()
                .entry(l.kind.clone())
                .or_default()
                .add(l.amount);
        }
        let (kind, code) = match scope {
            Scope::Institution(c) => ("institution", c.clone()),
            Scope::Channel(c) => ("channel", c.clone()),
        };
        let mut s = Statement {
            scope: kind.into(),
            code,
            date: day.date.to_string(),
            from: stamp(&day.from, offset),
            to: stamp(&day.to, offset),
            lines,
            totals,
            totals_by_counterparty: by_party,
            closing_balance: match scope {
                Scope::Institution(_) => Some(closing.map_or(0, |(_, b)| b)),
                Scope::Channel(_) => None,
            },
            sha256: String::new(),
        };
        s.sha256 = hex::encode(Sha256::digest(s.csv_lines().as_bytes()));
        s
    }

    /// The canonical body: the CSV header and one line per movement, each ending in `\n`
    /// (RFC 4180 quoting, by the `csv` crate). Text cells pass through [`plain_cell`], so
    /// the body (and the SHA-256 over it) is what a spreadsheet shows, never a formula.
    pub fn csv_lines(&self) -> String {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        let _ = w.write_record(HEADER.split(','));
        for l in &self.lines {
            let amount = l.amount.to_string();
            let _ = w.write_record(
                [
                    &l.time,
                    &l.channel,
                    &l.reference,
                    &l.institution,
                    &l.va_number,
                    &l.bill_hash,
                    &amount,
                    &l.kind,
                    &l.status,
                ]
                .map(|c| plain_cell(c).into_owned()),
            );
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }

    /// The statement as CSV: the canonical body, then `#` lines with the totals, the
    /// closing balance and the SHA-256.
    pub fn to_csv(&self) -> String {
        let mut out = self.csv_lines();
        out += &format!(
            "# statement,{},{},{},{}\n",
            self.scope, self.code, self.from, self.to
        );
        for (kind, t) in &self.totals {
            out += &format!("# total,{kind},{},{}\n", t.count, t.amount);
        }
        for (party, kinds) in &self.totals_by_counterparty {
            for (kind, t) in kinds {
                out += &format!("# total_by,{party},{kind},{},{}\n", t.count, t.amount);
            }
        }
        if let Some(b) = self.closing_balance {
            out += &format!("# closing_balance,{b}\n");
        }
        out += &format!("# sha256,{}\n", self.sha256);
        out
    }
}

/// A text cell as a spreadsheet must show it: one that starts with a character a
/// spreadsheet reads as a formula (`=`, `+`, `-`, `@`, tab, carriage return; OWASP "CSV
/// injection") gets a leading `'`, which spreadsheets take as "text" and do not show.
/// References cannot start so since decision 11 was tightened; records journaled before
/// that, and any other text, are written guarded. Amount cells are digits and pass as they
/// are.
pub fn plain_cell(s: &str) -> std::borrow::Cow<'_, str> {
    match s.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{s}").into(),
        _ => s.into(),
    }
}

/// The `[statement]` section.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementSettings {
    /// The hour (0-23, the switch's offset) a business day starts at.
    pub cutoff_hour: u32,
    /// Statements read from the journal at once over HTTP; one more is answered 429.
    pub max_concurrent: usize,
}

impl StatementSettings {
    /// # Errors
    /// An hour past 23.
    pub fn validate(&self) -> Result<(), crate::config::SettingsError> {
        if self.cutoff_hour > 23 {
            return Err(crate::config::bad(
                "statement.cutoff_hour",
                "must be 0 to 23",
            ));
        }
        if self.max_concurrent == 0 || self.max_concurrent > 1000 {
            return Err(crate::config::bad(
                "statement.max_concurrent",
                "must be 1 to 1000",
            ));
        }
        Ok(())
    }
}

/// How a bank's file names its columns (`[reconcile]`): its header names for the
/// reference, the VA, the amount (rupiah, digits) and the time; the delimiter.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileSettings {
    pub reference_column: String,
    pub va_column: String,
    pub amount_column: String,
    pub time_column: String,
    pub delimiter: char,
}

/// One debit in the bank's file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BankRow {
    pub reference: String,
    pub va_number: String,
    pub amount: u64,
    pub time: String,
}

/// Reads the bank's CSV with `cols`.
///
/// # Errors
/// A missing column (named), a row that is not CSV, an amount that is not whole rupiah.
pub fn read_bank_csv(data: &[u8], cols: &ReconcileSettings) -> Result<Vec<BankRow>, String> {
    let mut r = csv::ReaderBuilder::new()
        .delimiter(u8::try_from(cols.delimiter).map_err(|_| "delimiter must be ASCII")?)
        .trim(csv::Trim::All)
        .from_reader(data);
    let header = r.headers().map_err(|e| e.to_string())?.clone();
    let at = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("the file has no column {name:?} (header: {header:?})"))
    };
    let (ri, vi, ai, ti) = (
        at(&cols.reference_column)?,
        at(&cols.va_column)?,
        at(&cols.amount_column)?,
        at(&cols.time_column)?,
    );
    let mut out = Vec::new();
    for (n, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| format!("row {}: {e}", n + 2))?;
        let get = |i: usize| rec.get(i).unwrap_or_default().to_owned();
        let amount = get(ai);
        out.push(BankRow {
            reference: get(ri),
            va_number: get(vi),
            amount: amount
                .parse()
                .map_err(|_| format!("row {}: amount {amount:?} is not whole rupiah", n + 2))?,
            time: get(ti),
        });
    }
    Ok(out)
}

/// What reconciling found, by kind.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Reconciliation {
    pub matched: Vec<BankRow>,
    /// The bank debited, the switch has no payment: the dangerous kind.
    pub only_at_bank: Vec<BankRow>,
    /// The switch has a payment the bank does not list.
    pub only_at_switch: Vec<Line>,
    /// The same reference with another VA or amount: (the bank's, the switch's).
    pub mismatched: Vec<(BankRow, Line)>,
}

impl Reconciliation {
    /// The bank's debits against the channel statement's payments that stand at the close
    /// of the day (paid hosted payments and forwarded payments not refused or reversed),
    /// matched as multisets per reference: one bank row to one payment at most. Rows of one
    /// reference pair first where VA and amount agree, then in file order as mismatched;
    /// a bank row left over (the same debit listed twice: a customer debited twice) is
    /// `only_at_bank`, a payment left over is `only_at_switch`.
    pub fn of(bank: &[BankRow], statement: &Statement) -> Reconciliation {
        let mut switch: BTreeMap<&str, Vec<&Line>> = BTreeMap::new();
        for l in &statement.lines {
            let stands = match l.kind.as_str() {
                "payment" => l.status == "paid",
                "forwarded_payment" => !matches!(l.status.as_str(), "refused" | "reversed"),
                _ => false,
            };
            if stands {
                switch.entry(&l.reference).or_default().push(l);
            }
        }
        let mut at_bank: BTreeMap<&str, Vec<&BankRow>> = BTreeMap::new();
        for b in bank {
            at_bank.entry(&b.reference).or_default().push(b);
        }
        let mut out = Reconciliation::default();
        for (reference, mut rows) in at_bank {
            let mut lines = switch.remove(reference).unwrap_or_default();
            // Exact pairs first, so that a repeated row never hides the one that matches.
            rows.retain(|b| {
                let Some(i) = lines
                    .iter()
                    .position(|l| l.va_number == b.va_number && l.amount == b.amount)
                else {
                    return true;
                };
                lines.remove(i);
                out.matched.push((*b).clone());
                false
            });
            let mut lines = lines.into_iter();
            for b in rows {
                match lines.next() {
                    Some(l) => out.mismatched.push((b.clone(), l.clone())),
                    None => out.only_at_bank.push(b.clone()),
                }
            }
            out.only_at_switch.extend(lines.cloned());
        }
        out.only_at_switch
            .extend(switch.into_values().flatten().cloned());
        out.only_at_switch
            .sort_by(|a, b| (&a.reference, &a.time).cmp(&(&b.reference, &b.time)));
        out
    }

    /// Everything matched.
    pub fn clean(&self) -> bool {
        self.only_at_bank.is_empty() && self.only_at_switch.is_empty() && self.mismatched.is_empty()
    }

    /// A table a person reads.
    pub fn table(&self) -> String {
        let mut out = format!(
            "matched {}, only at the bank {}, only at the switch {}, mismatched {}\n",
            self.matched.len(),
            self.only_at_bank.len(),
            self.only_at_switch.len(),
            self.mismatched.len()
        );
        let row = |kind: &str, r: &str, va: &str, bank: String, sw: String| {
            format!("{kind:<15} {r:<24} {va:<17} {bank:>15} {sw:>15}\n")
        };
        if !self.clean() {
            out += &row(
                "finding",
                "reference",
                "va_number",
                "bank amount".into(),
                "switch amount".into(),
            );
        }
        for b in &self.only_at_bank {
            out += &row(
                "only_at_bank",
                &b.reference,
                &b.va_number,
                b.amount.to_string(),
                "-".into(),
            );
        }
        for l in &self.only_at_switch {
            out += &row(
                "only_at_switch",
                &l.reference,
                &l.va_number,
                "-".into(),
                l.amount.to_string(),
            );
        }
        for (b, l) in &self.mismatched {
            let va = if b.va_number == l.va_number {
                b.va_number.clone()
            } else {
                format!("{}/{}", b.va_number, l.va_number)
            };
            out += &row(
                "mismatched",
                &b.reference,
                &va,
                b.amount.to_string(),
                l.amount.to_string(),
            );
        }
        out
    }
}
