//! Redis key names. Every key of one institution carries the hash tag `{<institution>}`, so
//! each Lua script touches a single slot and the store works on Redis Cluster too. The one
//! exception, the channel-reference index, is a single-key record of its own.

pub fn tag(inst: &str) -> String {
    format!("ipg:{{{inst}}}")
}

pub fn bill_prefix(inst: &str) -> String {
    format!("{}:bill:", tag(inst))
}

pub fn bill(inst: &str, hash: &str) -> String {
    format!("{}:bill:{hash}", tag(inst))
}

pub fn bills(inst: &str) -> String {
    format!("{}:bills", tag(inst))
}

pub fn va(inst: &str, va: &str) -> String {
    format!("{}:va:{va}", tag(inst))
}

/// Channel codes cannot contain ':' (settings check), so `<channel>:<ref>` is unambiguous.
pub fn payment(inst: &str, channel: &str, reference: &str) -> String {
    format!("{}:pay:{channel}:{reference}", tag(inst))
}

/// A bill's payments (zset of payment keys scored by their ledger sequence: commit order,
/// the same whatever order the journal is applied in).
pub fn bill_payments(inst: &str, hash: &str) -> String {
    format!("{}:billpays:{hash}", tag(inst))
}

/// A bill's payments as switches before the journal kept them (a list, in commit order):
/// read, never written.
pub fn legacy_bill_payments(inst: &str, hash: &str) -> String {
    format!("{}:billpay:{hash}", tag(inst))
}

pub fn payments(inst: &str) -> String {
    format!("{}:payments", tag(inst))
}

pub fn ledger(inst: &str) -> String {
    format!("{}:ledger", tag(inst))
}

pub fn balance(inst: &str) -> String {
    format!("{}:balance", tag(inst))
}

pub fn lock(inst: &str, va: &str) -> String {
    format!("{}:lock:{va}", tag(inst))
}

/// A payment forwarded to a passive institution (hash: `doc`, `rev`).
pub fn passive_payment(inst: &str, channel: &str, reference: &str) -> String {
    format!("{}:ppay:{channel}:{reference}", tag(inst))
}

/// Every forwarded payment of an institution, scored by creation time (reconciliation).
pub fn passive_payments(inst: &str) -> String {
    format!("{}:ppays", tag(inst))
}

/// Forwarded payments being resolved, scored by when their next step is due.
pub fn passive_pending(inst: &str) -> String {
    format!("{}:pdoubt", tag(inst))
}

pub fn reference(channel: &str, reference: &str) -> String {
    format!("ipg:ref:{{{channel}:{reference}}}")
}

/// How far the journal has been applied for the institution (hash: `partition`, `offset`).
pub fn journal_mark(inst: &str) -> String {
    format!("{}:journal", tag(inst))
}

/// A bill's webhook ordering gate (the event its later events wait behind), see
/// `webhook::gate`.
pub fn webhook_gate(inst: &str, bill_hash: &str) -> String {
    format!("{}:whgate:{bill_hash}", tag(inst))
}
