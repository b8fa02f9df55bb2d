//! One type per Lua script call: its fields, in declaration order, are the script's `KEYS`
//! and then its `ARGV`, each with the meaning the script's header gives it. The order of a
//! script's positional arguments is written once, here, beside its Lua header (which names
//! the type); the callers in `store/` fill named fields and never count positions. The
//! tests below check each type against its script: no `ARGV[n]` or `KEYS[n]` beyond the
//! type's, every `ARGV` the type sends read by the script, and the header naming the type.
//!
//! Keys are `String`s built by [`super::keys`]; an `Option` key is sent only when `Some`
//! (`redis::ToRedisArgs` writes nothing for `None`), a `Vec` key as one key per element.
//! A *fenced* call (a script built with the journal-mark sentinel, `store::Eval::institution`)
//! names its institution, whose mark goes last.

use redis::Script;

use super::Eval;

/// Declares a script call type:
/// `Name<'a> { [fenced { institution: &'a str }] keys { .. } argv { .. } }`.
macro_rules! script_call {
    (
        $(#[$doc:meta])*
        $name:ident $(<$lt:lifetime>)? {
            $( fenced { $inst:ident : $it:ty } )?
            keys { $( $(#[$kdoc:meta])* $k:ident : $kt:ty, )* }
            argv { $( $(#[$adoc:meta])* $a:ident : $at:ty, )* }
        }
    ) => {
        $(#[$doc])*
        pub(super) struct $name $(<$lt>)? {
            $(
                /// The institution whose journal mark goes last (the sentinel's key).
                pub $inst: $it,
            )?
            $( $(#[$kdoc])* pub $k: $kt, )*
            $( $(#[$adoc])* pub $a: $at, )*
        }

        impl $(<$lt>)? $name $(<$lt>)? {
            /// The names of the script's `KEYS`, in order (a fenced call's journal mark
            /// follows them).
            #[allow(dead_code)]
            pub(super) const KEYS: &'static [&'static str] = &[$(stringify!($k)),*];
            /// The names of the script's `ARGV`, in order.
            #[allow(dead_code)]
            pub(super) const ARGV: &'static [&'static str] = &[$(stringify!($a)),*];

            /// The `EVALSHA` of `script` with these keys and arguments in the script's order.
            pub(super) fn eval<'s>(&self, script: &'s Script) -> Eval<'s> {
                let call = Eval::with_capacity(script, Self::KEYS.len(), Self::ARGV.len());
                $( let call = call.institution(self.$inst); )?
                call $( .key(&self.$k) )* $( .arg(&self.$a) )*
            }
        }
    };
}

script_call! {
    /// `lua/pay.lua` and `lua/reverse.lua` (one layout; reverse.lua reads a part of it):
    /// commit a payment or its reversal. Built by `Store::commit` (store/records.rs).
    Commit<'a> {
        fenced { institution: &'a str }
        keys {
            /// The bill (`ipg:{I}:bill:<hash>`).
            bill: String,
            /// The payment record (`ipg:{I}:pay:<channel>:<ref>`).
            payment: String,
            /// The bill's payments (zset by ledger sequence).
            bill_payments: String,
            /// The institution's payment index (zset by score, ms).
            payments: String,
            /// The institution's ledger (list).
            ledger: String,
            /// The institution's balance (rupiah, Redis's exact integer).
            balance: String,
            /// The VA's lock (always a key of the institution's slot).
            lock: String,
            /// The VA index (`ipg:{I}:va:<va>`).
            va: String,
            /// The reference binding: one Redis only (on a cluster it is bound before, in
            /// its own slot); `None` sends no key.
            reference: Option<String>,
        }
        argv {
            /// The bill version the change was computed from.
            expected_version: &'a str,
            /// The bill's new document (JSON).
            next_doc: &'a str,
            /// The bill's new status (`active` | `paid` | `revoked`).
            next_status: &'a str,
            /// The payment's document (JSON); for a reversal, the reversed payment's.
            payment_doc: &'a str,
            /// The bill as answered (JSON); for a payment, `""` when it is `next_doc` byte
            /// for byte (pay.lua stores that).
            answered_bill: &'a str,
            /// The answer's timestamp (ISO 8601).
            timestamp: &'a str,
            /// The ledger entry, a JSON object without its closing `}` (the script
            /// appends `"balance_after"` and closes it: no string cut in Lua).
            ledger_entry_open: &'a str,
            /// Rupiah.
            amount: u64,
            /// The payment index score (ms since the epoch).
            score_ms: i64,
            /// The caller's lock token, held or not (`''`: none).
            lock_token: &'a str,
            /// The bill hash the VA must still point to.
            expected_hash: &'a str,
            /// The bill key prefix (same hash tag).
            bill_prefix: String,
            /// The binding `<institution>|<va>|<amount>` with `reference`; `''` when bound
            /// before.
            binding: &'a str,
            /// The expected bill document, byte for byte (`''`: version only, reversals).
            expected_doc: &'a str,
            /// The binding's lifetime (ms: `retention.reference_window_ms`).
            binding_ttl_ms: u64,
        }
    }
}

script_call! {
    /// `lua/read_va.lua`: the bill a VA points to and, with `payment`, a payment record.
    /// Built by `Store::read_va` (store/records.rs).
    ReadVa<'a> {
        fenced { institution: &'a str }
        keys {
            /// The VA index.
            va: &'a str,
            /// The payment record to read too; `None` sends no key.
            payment: Option<&'a str>,
        }
        argv {
            /// The bill key prefix (same hash tag).
            bill_prefix: String,
        }
    }
}

script_call! {
    /// `lua/lock_read.lua`: take the VA lock (or take back one's own) and read under it.
    /// Built by `Store::claim_lock_read` (store/records.rs).
    LockRead<'a> {
        fenced { institution: &'a str }
        keys {
            /// The VA's lock.
            lock: &'a str,
            /// The VA index.
            va: &'a str,
            /// The payment record.
            payment: &'a str,
        }
        argv {
            /// The attempt's owner token.
            token: &'a str,
            /// The lock's TTL (ms).
            ttl_ms: u64,
            /// The bill key prefix (same hash tag).
            bill_prefix: String,
        }
    }
}

script_call! {
    /// `lua/create.lua`: store a new bill and point each of its VAs at it. Built by
    /// `Store::create_bill` (store/records.rs).
    CreateBill<'a> {
        fenced { institution: &'a str }
        keys {
            /// The bill.
            bill: String,
            /// The institution's bill index (zset).
            bills: String,
            /// One VA index key per prefix of the bill.
            vas: Vec<String>,
        }
        argv {
            /// The bill's document (JSON).
            doc: &'a str,
            /// The bill key prefix (same hash tag).
            bill_prefix: String,
            /// Now (ms since the epoch).
            now_ms: i64,
            /// `valid_until` (ms since the epoch), or `''`.
            valid_until_ms: String,
            /// The bill's hash.
            hash: &'a str,
            /// The bill index score: its creation (ms since the epoch).
            created_ms: i64,
        }
    }
}

script_call! {
    /// `lua/update_bill.lua`: replace a bill if its version still matches. Built by
    /// `Store::update_bill` (store/records.rs).
    UpdateBill<'a> {
        fenced { institution: &'a str }
        keys {
            /// The bill.
            bill: String,
        }
        argv {
            /// The version the change was computed from.
            expected_version: &'a str,
            /// The new document (JSON).
            doc: &'a str,
            /// The new status.
            status: &'a str,
            /// The change's time (ms since the epoch): a revoked bill's `closed`.
            closed_ms: i64,
        }
    }
}

script_call! {
    /// `lua/bind.lua`: `SET NX GET` of a reference binding. Built by `Store::bind_call`
    /// (store/records.rs), run by `Store::bind` (hosted and passive payments).
    Bind<'a> {
        keys {
            /// The reference binding (`ipg:ref:{<channel>:<ref>}`, its own slot).
            reference: String,
        }
        argv {
            /// `<institution>|<va>|<amount>` (domain::Binding).
            binding: &'a str,
            /// The binding's lifetime (ms: `retention.reference_window_ms`).
            ttl_ms: u64,
        }
    }
}

script_call! {
    /// `lua/lock.lua`: take a VA lock for one attempt. Built by `Store::try_lock`
    /// (store/locks.rs).
    Lock<'a> {
        keys {
            /// The VA's lock.
            lock: &'a str,
        }
        argv {
            /// The attempt's owner token.
            token: &'a str,
            /// The lock's TTL (ms).
            ttl_ms: u64,
        }
    }
}

script_call! {
    /// `lua/unlock.lua`: release a VA lock if the token still holds it. Built by
    /// `Store::unlock` (store/locks.rs).
    Unlock<'a> {
        keys {
            /// The VA's lock.
            lock: &'a str,
        }
        argv {
            /// The owner token that took it.
            token: &'a str,
        }
    }
}

script_call! {
    /// `lua/unjournaled_claim.lua`: claim a change listed as unjournaled for one sweep.
    /// Built by `Store::claim_unjournaled` (store/unjournaled.rs).
    UnjournaledClaim<'a> {
        keys {
            /// The institution's unjournaled list (`ipg:{I}:unjournaled`).
            list: String,
        }
        argv {
            /// The listed member (the event id without `<institution>:`).
            member: &'a str,
            /// The score the sweeper read (ms).
            seen_ms: i64,
            /// The score it moves to when claimed (ms).
            next_ms: i64,
        }
    }
}

script_call! {
    /// `lua/passive_begin.lua`: take the VA lock and record a payment being forwarded.
    /// Built by `Store::passive_begin` (store/passive.rs).
    PassiveBegin<'a> {
        fenced { institution: &'a str }
        keys {
            /// The VA's lock.
            lock: &'a str,
            /// The forwarded payment's record.
            record: &'a str,
            /// The institution's index of forwarded payments.
            payments: String,
        }
        argv {
            /// The attempt's owner token.
            token: &'a str,
            /// The lock's TTL (ms).
            ttl_ms: u64,
            /// The new record's document (JSON).
            doc: String,
            /// The index score (ms since the epoch).
            score_ms: i64,
            /// The index member (`<channel>:<ref>`).
            member: String,
        }
    }
}

script_call! {
    /// `lua/passive_save.lua`: save a forwarded payment's record if unchanged, schedule
    /// its next step, release the lock. Built by `Store::passive_save` (store/passive.rs).
    PassiveSave<'a> {
        fenced { institution: &'a str }
        keys {
            /// The record.
            record: &'a str,
            /// The pending set (zset by due ms).
            pending: String,
            /// The VA's lock.
            lock: &'a str,
            /// The institution's index of forwarded payments.
            payments: String,
        }
        argv {
            /// The record's document (JSON).
            doc: String,
            /// The revision it was read at.
            expected_rev: &'a str,
            /// The index member (`<channel>:<ref>`).
            member: String,
            /// When its next step is due (ms), or `''` (not pending).
            due_ms: String,
            /// The lock token to release, or `''`.
            token: &'a str,
        }
    }
}

script_call! {
    /// `lua/passive_claim.lua`: lease up to `limit` due resolution steps. Built by
    /// `Store::passive_claim` (store/passive.rs).
    PassiveClaim {
        keys {
            /// The pending set.
            pending: String,
        }
        argv {
            /// Now (ms since the epoch).
            now_ms: i64,
            /// The lease (ms).
            lease_ms: u64,
            /// The most steps to claim.
            limit: usize,
        }
    }
}

script_call! {
    /// `lua/apply_bill.lua`: set a bill, its index and its VAs from a journal event. Built
    /// by `Store::apply` (store/apply.rs).
    ApplyBill<'a> {
        keys {
            /// The bill.
            bill: String,
            /// The institution's bill index (zset by creation ms).
            bills: String,
            /// The VA index keys.
            vas: Vec<String>,
        }
        argv {
            /// The bill's version.
            version: u64,
            /// The bill's document (JSON).
            doc: &'a str,
            /// The bill's status.
            status: &'a str,
            /// `valid_until` (ms since the epoch), or `''`.
            valid_until_ms: String,
            /// The bill's hash.
            hash: &'a str,
            /// Its creation (ms since the epoch).
            created_ms: i64,
            /// `1` when the bill is closed past the hot window (it leaves Redis), else `''`.
            retire: &'static str,
            /// When it closed (ms): a paid or revoked bill's `closed`.
            closed_ms: i64,
            /// A retired bill's tombstone expiry (ms since the epoch).
            tombstone_until_ms: i64,
        }
    }
}

script_call! {
    /// `lua/apply_payment.lua`: set a payment record and its indexes from a journal event.
    /// Built by `Store::apply` (store/apply.rs).
    ApplyPayment<'a> {
        keys {
            /// The payment record.
            payment: String,
            /// The bill's payments (zset by ledger sequence).
            bill_payments: String,
            /// The institution's payment index.
            payments: String,
        }
        argv {
            /// `paid` | `reversed`.
            stage: &'a str,
            /// The payment's document (JSON).
            doc: &'a str,
            /// The bill as answered (JSON).
            answered_bill: String,
            /// The answer's timestamp (ISO 8601).
            timestamp: &'a str,
            /// The ledger sequence.
            ledger_seq: u64,
            /// The payment index score (ms): when paid.
            score_ms: i64,
            /// `''` within the hot window, else the compact record's expiry (ms).
            retired_until: String,
            /// The payment's id (compact record).
            id: String,
            /// Its VA number (compact record).
            va_number: String,
            /// Its amount (rupiah, exact integer as text; compact record).
            amount: String,
            /// Its bill's hash (compact record).
            bill_hash: String,
        }
    }
}

script_call! {
    /// `lua/apply_ledger.lua`: set a ledger entry and the balance after it from a journal
    /// event. Built by `Store::apply` (store/apply.rs).
    ApplyLedger<'a> {
        keys {
            /// The institution's ledger (list).
            ledger: String,
            /// The institution's balance.
            balance: String,
            /// The entries taken off the ledger's head (`ipg:{I}:ledger_base`).
            base: String,
        }
        argv {
            /// The ledger sequence.
            seq: u64,
            /// The entry (JSON object).
            entry: &'a str,
            /// The balance after it (rupiah, exact integer as text).
            balance_after: String,
            /// `1` when the entry is past the hot window, else `''`.
            old: &'static str,
        }
    }
}

script_call! {
    /// `lua/apply_passive.lua`: set a forwarded payment's record, index and schedule from a
    /// journal event. Built by `Store::apply` (store/apply.rs).
    ApplyPassive<'a> {
        keys {
            /// The record.
            record: String,
            /// The institution's index of forwarded payments.
            payments: String,
            /// The pending set.
            pending: String,
        }
        argv {
            /// The record's revision.
            rev: u64,
            /// The record's document (JSON).
            doc: &'a str,
            /// The index score (ms; 0 never moves the stored one).
            score_ms: i64,
            /// The index member (`<channel>:<ref>`).
            member: String,
            /// When its next step is due (ms), or `''` (not pending).
            due_ms: String,
            /// A settled payment past the hot window: its record's expiry (ms since the
            /// epoch; out of the index), or `''` (kept and indexed).
            expire_at_ms: String,
        }
    }
}

script_call! {
    /// `lua/retire_passive.lua`: take a settled forwarded payment past the hot window off
    /// the index and give its record the reference window's expiry. Built by
    /// `Store::retire_passives` (store/retention.rs).
    RetirePassive {
        keys {
            /// The record.
            record: String,
            /// The institution's index of forwarded payments.
            payments: String,
            /// The pending set.
            pending: String,
        }
        argv {
            /// The revision read.
            rev: String,
            /// The index member (`<channel>:<ref>`).
            member: String,
            /// The record's expiry (ms since the epoch).
            expire_at_ms: i64,
        }
    }
}

script_call! {
    /// `lua/mark.lua`: set an institution's journal mark. Built by `Store::set_marks`
    /// (store/apply.rs); fenced there by the caller (`Eval::institution`) when the mark
    /// is set by the applier, plain during a recovery.
    Mark {
        keys {
            /// The journal mark (hash: partition, offset).
            mark: String,
        }
        argv {
            /// The journal partition.
            partition: i32,
            /// The Kafka offset.
            offset: i64,
        }
    }
}

script_call! {
    /// `lua/retire_payment.lua`: replace a payment past the hot window by its compact
    /// record. Built by `Store::retire_payments` (store/retention.rs).
    RetirePayment {
        keys {
            /// The payment record.
            payment: String,
            /// The institution's payment index.
            payments: String,
            /// The bill's payments.
            bill_payments: String,
        }
        argv {
            /// The ledger sequence read (`lseq`).
            lseq: String,
            /// The reversal's ledger sequence read, or `''`.
            rev_lseq: String,
            /// The payment's id.
            id: String,
            /// Its VA number.
            va_number: String,
            /// Its amount (rupiah, exact integer as text).
            amount: String,
            /// Its bill's hash.
            bill_hash: String,
            /// When it was paid (ms).
            paid_ms: i64,
            /// The compact record's expiry (ms since the epoch).
            expire_at_ms: i64,
        }
    }
}

script_call! {
    /// `lua/retire_bill.lua`: take a closed bill past the hot window out of Redis. Built by
    /// `Store::retire_bills` (store/retention.rs).
    RetireBill {
        keys {
            /// The bill.
            bill: String,
            /// The institution's bill index.
            bills: String,
            /// The bill's payments.
            bill_payments: String,
            /// The VA index keys (one per prefix).
            vas: Vec<String>,
        }
        argv {
            /// The version read.
            version: String,
            /// The bill's hash.
            hash: String,
            /// Now (ms).
            now_ms: i64,
            /// The hot window's start (ms).
            cutoff_ms: i64,
            /// The tombstone's expiry (ms since the epoch).
            tombstone_until_ms: i64,
        }
    }
}

script_call! {
    /// `lua/trim_ledger.lua`: take the entries past the hot window off the ledger's head.
    /// Built by `Store::trim_ledger` (store/retention.rs).
    TrimLedger {
        keys {
            /// The institution's ledger (list).
            ledger: String,
            /// The entries taken off before (`ipg:{I}:ledger_base`).
            base: String,
        }
        argv {
            /// The base read.
            base_read: u64,
            /// How many to take off.
            count: usize,
        }
    }
}

script_call! {
    /// `lua/snapshot_ledger.lua`: a page of the ledger with its base and the balance, in one
    /// step. Built by `Store::snapshot_page` (store/snapshot.rs).
    SnapshotLedger {
        keys {
            /// The institution's ledger (list).
            ledger: String,
            /// The entries taken off its head (`ipg:{I}:ledger_base`).
            base: String,
            /// The institution's balance.
            balance: String,
        }
        argv {
            /// The first sequence wanted.
            from_seq: u64,
            /// How many entries at most.
            count: usize,
        }
    }
}

script_call! {
    /// `lua/batch_submit.lua`: stores a bulk issuance job once. Built by
    /// `Store::submit_batch_job` (store/batch.rs).
    BatchSubmit<'a> {
        keys {
            /// The job's record (hash).
            job: String,
            /// The job's upload.
            input: String,
            /// The institution's jobs (zset by creation time).
            jobs: String,
        }
        argv {
            /// The job id.
            id: &'a str,
            /// Now, ms since the epoch (Redis's clock).
            now_ms: i64,
            /// How long a job is kept, ms.
            ttl_ms: u64,
            /// Most jobs kept per institution.
            max_jobs: usize,
            /// `json` or `csv`.
            format: &'a str,
            /// 1 for a dry run.
            dry_run: u8,
            /// Rows in the upload.
            total: usize,
            /// The upload as received.
            input_bytes: &'a [u8],
        }
    }
}

script_call! {
    /// `lua/batch_save.lua`: saves a job run's results under its lease. Built by
    /// `Store::save_batch_results` (store/batch.rs).
    BatchSave<'a> {
        keys {
            /// The job's record (hash).
            job: String,
            /// The job's results (hash: row -> JSON).
            results: String,
            /// The job's lease.
            lease: String,
        }
        argv {
            /// The run's lease token.
            token: &'a str,
            /// When the job expires, ms since the epoch.
            expire_at_ms: i64,
            /// The record's fields to set, a JSON object of strings.
            fields: String,
            /// (row, result JSON) pairs, flat: read from `ARGV[4]` on in a loop.
            rows: Vec<String>,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The highest `<table>[n]` index a script reads (`KEYS[#KEYS]`, the sentinel's, and
    /// computed indexes are not numbers and do not count).
    fn highest(lua: &str, table: &str) -> usize {
        let open = format!("{table}[");
        lua.match_indices(&open)
            .filter_map(|(i, _)| {
                let rest = &lua[i + open.len()..];
                let end = rest.find(']')?;
                rest[..end].parse::<usize>().ok()
            })
            .max()
            .unwrap_or(0)
    }

    /// `lua` reads no key or argument the type does not send, reads every argument it
    /// sends (unless `partial`: reverse.lua reads a part of pay.lua's layout), and its
    /// header names the type.
    fn check(file: &str, lua: &str, ty: &str, keys: &[&str], argv: &[&str], partial: bool) {
        let code: String = lua
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        let (k, a) = (highest(&code, "KEYS"), highest(&code, "ARGV"));
        assert!(
            k <= keys.len(),
            "{file} reads KEYS[{k}]; {ty} sends {keys:?}"
        );
        if partial {
            assert!(
                a <= argv.len(),
                "{file} reads ARGV[{a}]; {ty} sends {argv:?}"
            );
        } else {
            assert_eq!(
                a,
                argv.len(),
                "{file} reads ARGV up to {a}; {ty} sends {argv:?}"
            );
        }
        assert!(
            lua.contains(&format!("calls::{ty}")),
            "{file}'s header must name store/calls.rs calls::{ty}"
        );
    }

    macro_rules! checks {
        ($($file:literal => $ty:ident $(, $partial:ident)?;)*) => {
            $(
                check(
                    $file,
                    include_str!(concat!("lua/", $file)),
                    stringify!($ty),
                    $ty::KEYS,
                    $ty::ARGV,
                    false $(|| stringify!($partial) == "partial")?,
                );
            )*
        };
    }

    #[test]
    fn every_script_reads_what_its_call_type_sends() {
        checks! {
            "pay.lua" => Commit;
            "reverse.lua" => Commit, partial;
            "read_va.lua" => ReadVa;
            "lock_read.lua" => LockRead;
            "create.lua" => CreateBill;
            "update_bill.lua" => UpdateBill;
            "bind.lua" => Bind;
            "lock.lua" => Lock;
            "unlock.lua" => Unlock;
            "unjournaled_claim.lua" => UnjournaledClaim;
            "passive_begin.lua" => PassiveBegin;
            "passive_save.lua" => PassiveSave;
            "passive_claim.lua" => PassiveClaim;
            "apply_bill.lua" => ApplyBill;
            "apply_payment.lua" => ApplyPayment;
            "apply_ledger.lua" => ApplyLedger;
            "apply_passive.lua" => ApplyPassive;
            "mark.lua" => Mark;
            "retire_payment.lua" => RetirePayment;
            "retire_passive.lua" => RetirePassive;
            "retire_bill.lua" => RetireBill;
            "trim_ledger.lua" => TrimLedger;
            "snapshot_ledger.lua" => SnapshotLedger;
            "batch_submit.lua" => BatchSubmit;
            // Its rows are read in a loop from ARGV[4] on, never as a literal index.
            "batch_save.lua" => BatchSave, partial;
        }
    }
}
