//! Journal events for the benches: one hosted payment's `payment_committed` event as the
//! switch writes it (the fields a statement reads), shared by `statement` and `history`.

use serde_json::json;

/// The event of payment `i` of `amount` rupiah at institution `inst`, made at `at`
/// (RFC 3339), with ledger sequence `seq` and the balance after it (rupiah). Every third
/// payment comes through `other_bank`, the rest through `bank_syariah`.
pub fn payment(inst: &str, i: usize, amount: u64, seq: u64, balance: i64, at: &str) -> Vec<u8> {
    let channel = if i % 3 == 0 {
        "other_bank"
    } else {
        "bank_syariah"
    };
    let reference = format!("REF-{i:07}");
    let doc = json!({"id": format!("id-{i}"), "payment_ref_id": reference, "channel": channel,
        "amount": amount, "type": "payment", "status": "paid",
        "va_number": format!("857499{:010}", i), "bill_hash": format!("h{i:07}"),
        "institution_code": inst, "terminal_id": "atm", "customer_name": "Ahmad",
        "transaction_date": null, "created_at": at, "reversed_at": null});
    serde_json::to_vec(
        &json!({"event_id": format!("{inst}:pay:{channel}:{reference}:paid"),
        "type": "payment_committed", "institution": inst, "time": at,
        "payment": {"channel": channel, "payment_ref_id": reference, "stage": "paid",
            "doc": doc, "answered_bill": {}, "timestamp": at, "ledger_seq": seq,
            "score_ms": 0},
        "ledger": {"seq": seq, "balance_after": balance,
            "entry": {"amount": amount, "balance_after": balance}}}),
    )
    .expect("a JSON value serializes")
}
