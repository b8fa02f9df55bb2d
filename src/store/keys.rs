//! Redis key names. Every key of one institution carries the hash tag `{<institution>}`, so
//! each Lua script touches a single slot and the store works on Redis Cluster too. The one
//! exception, the channel-reference index, is a single-key record of its own.
//!
//! An institution's keys start `ipg:{<institution>}:`, each spelled out as one `concat` of
//! its parts (one allocation per key, no formatting machinery: a payment's commit names
//! ten).

pub fn bill_prefix(inst: &str) -> String {
    ["ipg:{", inst, "}:bill:"].concat()
}

pub fn bill(inst: &str, hash: &str) -> String {
    ["ipg:{", inst, "}:bill:", hash].concat()
}

pub fn bills(inst: &str) -> String {
    ["ipg:{", inst, "}:bills"].concat()
}

pub fn va(inst: &str, va: &str) -> String {
    ["ipg:{", inst, "}:va:", va].concat()
}

/// Channel codes cannot contain ':' (settings check), so `<channel>:<ref>` is unambiguous.
pub fn payment(inst: &str, channel: &str, reference: &str) -> String {
    ["ipg:{", inst, "}:pay:", channel, ":", reference].concat()
}

/// A bill's payments (zset of payment keys scored by their ledger sequence: commit order,
/// the same whatever order the journal is applied in).
pub fn bill_payments(inst: &str, hash: &str) -> String {
    ["ipg:{", inst, "}:billpays:", hash].concat()
}

/// A bill's payments as switches before the journal kept them (a list, in commit order):
/// read, never written.
pub fn legacy_bill_payments(inst: &str, hash: &str) -> String {
    ["ipg:{", inst, "}:billpay:", hash].concat()
}

pub fn payments(inst: &str) -> String {
    ["ipg:{", inst, "}:payments"].concat()
}

pub fn ledger(inst: &str) -> String {
    ["ipg:{", inst, "}:ledger"].concat()
}

/// How many entries the retention sweep took off the ledger's head (a count; an entry's
/// sequence is its place in the list plus it). Named in Lua as `<base>ledger_base`.
pub fn ledger_base(inst: &str) -> String {
    ["ipg:{", inst, "}:ledger_base"].concat()
}

pub fn balance(inst: &str) -> String {
    ["ipg:{", inst, "}:balance"].concat()
}

pub fn lock(inst: &str, va: &str) -> String {
    ["ipg:{", inst, "}:lock:", va].concat()
}

/// A payment forwarded to a passive institution (hash: `doc`, `rev`).
pub fn passive_payment(inst: &str, channel: &str, reference: &str) -> String {
    ["ipg:{", inst, "}:ppay:", channel, ":", reference].concat()
}

/// Every forwarded payment of an institution, scored by creation time (reconciliation).
pub fn passive_payments(inst: &str) -> String {
    ["ipg:{", inst, "}:ppays"].concat()
}

/// Forwarded payments being resolved, scored by when their next step is due.
pub fn passive_pending(inst: &str) -> String {
    ["ipg:{", inst, "}:pdoubt"].concat()
}

/// A reversal's void binding of `(channel, reference)` kept in the institution's slot too,
/// beside the payment record it stands for, where `lua/pay.lua` checks it atomically with
/// the commit (docs/protocol.md decision 9).
pub fn void(inst: &str, channel: &str, reference: &str) -> String {
    ["ipg:{", inst, "}:void:", channel, ":", reference].concat()
}

pub fn reference(channel: &str, reference: &str) -> String {
    ["ipg:ref:{", channel, ":", reference, "}"].concat()
}

/// How far the journal has been applied for the institution (hash: `partition`, `offset`).
pub fn journal_mark(inst: &str) -> String {
    ["ipg:{", inst, "}:journal"].concat()
}

/// The institution's changes committed and not yet acknowledged by the journal (zset:
/// score the commit time in ms, member the event id without `<institution>:`), see
/// `store::unjournaled`.
pub fn unjournaled(inst: &str) -> String {
    ["ipg:{", inst, "}:unjournaled"].concat()
}

/// The lease of the instance taking the institution's snapshot (expires by itself).
pub fn snapshot_lease(inst: &str) -> String {
    ["ipg:{", inst, "}:snapshot_lease"].concat()
}

/// A bill's webhook ordering gate (the event its later events wait behind), see
/// `webhook::gate`.
pub fn webhook_gate(inst: &str, bill_hash: &str) -> String {
    ["ipg:{", inst, "}:whgate:", bill_hash].concat()
}

/// A bulk issuance job's record (hash: `status`, `format`, `dry_run`, `total`,
/// `created_ms`, `finished_ms`, counts, `last_error`), see `store::batch`.
pub fn batch_job(inst: &str, id: &str) -> String {
    ["ipg:{", inst, "}:batchjob:", id].concat()
}

/// A bulk issuance job's upload, as received (deleted once the job is done).
pub fn batch_job_input(inst: &str, id: &str) -> String {
    ["ipg:{", inst, "}:batchjob:", id, ":input"].concat()
}

/// A bulk issuance job's results (hash: row number -> the row's result as JSON).
pub fn batch_job_results(inst: &str, id: &str) -> String {
    ["ipg:{", inst, "}:batchjob:", id, ":results"].concat()
}

/// The lease of the instance running a bulk issuance job (expires by itself).
pub fn batch_job_lease(inst: &str, id: &str) -> String {
    ["ipg:{", inst, "}:batchjob:", id, ":lease"].concat()
}

/// An institution's bulk issuance jobs kept (zset: job id by creation time, ms).
pub fn batch_jobs(inst: &str) -> String {
    ["ipg:{", inst, "}:batchjobs"].concat()
}

#[cfg(test)]
mod tests {
    /// The names are the documented ones (docs/operations.md, the Lua scripts).
    #[test]
    fn keys_are_spelled_as_documented() {
        assert_eq!(
            super::bill("SCH01", "x24da1dF"),
            "ipg:{SCH01}:bill:x24da1dF"
        );
        assert_eq!(
            super::va("SCH01", "8574990000000001"),
            "ipg:{SCH01}:va:8574990000000001"
        );
        assert_eq!(
            super::payment("SCH01", "bank", "R1"),
            "ipg:{SCH01}:pay:bank:R1"
        );
        assert_eq!(super::reference("bank", "R1"), "ipg:ref:{bank:R1}");
        assert_eq!(super::balance("SCH01"), "ipg:{SCH01}:balance");
        assert_eq!(
            super::batch_job_input("SCH01", "ab"),
            "ipg:{SCH01}:batchjob:ab:input"
        );
    }
}
