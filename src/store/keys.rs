//! Redis key names. Every key of one institution carries the hash tag `{<institution>}`, so
//! each Lua script touches a single slot and the store works on Redis Cluster too. The one
//! exception, the channel-reference index, is a single-key record of its own.
//!
//! An institution's keys start `ipg:{<institution>}:`, spelled out in one `format!` each
//! (one allocation per key: a payment's commit names ten).

pub fn bill_prefix(inst: &str) -> String {
    format!("ipg:{{{inst}}}:bill:")
}

pub fn bill(inst: &str, hash: &str) -> String {
    format!("ipg:{{{inst}}}:bill:{hash}")
}

pub fn bills(inst: &str) -> String {
    format!("ipg:{{{inst}}}:bills")
}

pub fn va(inst: &str, va: &str) -> String {
    format!("ipg:{{{inst}}}:va:{va}")
}

/// Channel codes cannot contain ':' (settings check), so `<channel>:<ref>` is unambiguous.
pub fn payment(inst: &str, channel: &str, reference: &str) -> String {
    format!("ipg:{{{inst}}}:pay:{channel}:{reference}")
}

/// A bill's payments (zset of payment keys scored by their ledger sequence: commit order,
/// the same whatever order the journal is applied in).
pub fn bill_payments(inst: &str, hash: &str) -> String {
    format!("ipg:{{{inst}}}:billpays:{hash}")
}

/// A bill's payments as switches before the journal kept them (a list, in commit order):
/// read, never written.
pub fn legacy_bill_payments(inst: &str, hash: &str) -> String {
    format!("ipg:{{{inst}}}:billpay:{hash}")
}

pub fn payments(inst: &str) -> String {
    format!("ipg:{{{inst}}}:payments")
}

pub fn ledger(inst: &str) -> String {
    format!("ipg:{{{inst}}}:ledger")
}

/// How many entries the retention sweep took off the ledger's head (a count; an entry's
/// sequence is its place in the list plus it). Named in Lua as `<base>ledger_base`.
pub fn ledger_base(inst: &str) -> String {
    format!("ipg:{{{inst}}}:ledger_base")
}

pub fn balance(inst: &str) -> String {
    format!("ipg:{{{inst}}}:balance")
}

pub fn lock(inst: &str, va: &str) -> String {
    format!("ipg:{{{inst}}}:lock:{va}")
}

/// A payment forwarded to a passive institution (hash: `doc`, `rev`).
pub fn passive_payment(inst: &str, channel: &str, reference: &str) -> String {
    format!("ipg:{{{inst}}}:ppay:{channel}:{reference}")
}

/// Every forwarded payment of an institution, scored by creation time (reconciliation).
pub fn passive_payments(inst: &str) -> String {
    format!("ipg:{{{inst}}}:ppays")
}

/// Forwarded payments being resolved, scored by when their next step is due.
pub fn passive_pending(inst: &str) -> String {
    format!("ipg:{{{inst}}}:pdoubt")
}

/// A reversal's void binding of `(channel, reference)` kept in the institution's slot too,
/// beside the payment record it stands for, where `lua/pay.lua` checks it atomically with
/// the commit (docs/protocol.md decision 9).
pub fn void(inst: &str, channel: &str, reference: &str) -> String {
    format!("ipg:{{{inst}}}:void:{channel}:{reference}")
}

pub fn reference(channel: &str, reference: &str) -> String {
    format!("ipg:ref:{{{channel}:{reference}}}")
}

/// How far the journal has been applied for the institution (hash: `partition`, `offset`).
pub fn journal_mark(inst: &str) -> String {
    format!("ipg:{{{inst}}}:journal")
}

/// The institution's changes committed and not yet acknowledged by the journal (zset:
/// score the commit time in ms, member the event id without `<institution>:`), see
/// `store::unjournaled`.
pub fn unjournaled(inst: &str) -> String {
    format!("ipg:{{{inst}}}:unjournaled")
}

/// The lease of the instance taking the institution's snapshot (expires by itself).
pub fn snapshot_lease(inst: &str) -> String {
    format!("ipg:{{{inst}}}:snapshot_lease")
}

/// A bill's webhook ordering gate (the event its later events wait behind), see
/// `webhook::gate`.
pub fn webhook_gate(inst: &str, bill_hash: &str) -> String {
    format!("ipg:{{{inst}}}:whgate:{bill_hash}")
}

/// A bulk issuance job's record (hash: `status`, `format`, `dry_run`, `total`,
/// `created_ms`, `finished_ms`, counts, `last_error`), see `store::batch`.
pub fn batch_job(inst: &str, id: &str) -> String {
    format!("ipg:{{{inst}}}:batchjob:{id}")
}

/// A bulk issuance job's upload, as received (deleted once the job is done).
pub fn batch_job_input(inst: &str, id: &str) -> String {
    format!("ipg:{{{inst}}}:batchjob:{id}:input")
}

/// A bulk issuance job's results (hash: row number -> the row's result as JSON).
pub fn batch_job_results(inst: &str, id: &str) -> String {
    format!("ipg:{{{inst}}}:batchjob:{id}:results")
}

/// The lease of the instance running a bulk issuance job (expires by itself).
pub fn batch_job_lease(inst: &str, id: &str) -> String {
    format!("ipg:{{{inst}}}:batchjob:{id}:lease")
}

/// An institution's bulk issuance jobs kept (zset: job id by creation time, ms).
pub fn batch_jobs(inst: &str) -> String {
    format!("ipg:{{{inst}}}:batchjobs")
}
