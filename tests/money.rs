//! Money through Redis's Lua scripts stays exact: balances and `balance_after` past 2^53
//! (where a Lua number, a double, starts rounding) and up to the int64 range Redis keeps;
//! a payment that would leave that range is refused with nothing written.

mod common;

use common::*;
use serde_json::Value;

const MAX_AMOUNT: u64 = 999_999_999_999_999;

fn balance_after(entry: &Value) -> i64 {
    entry["balance_after"]
        .as_i64()
        .unwrap_or_else(|| panic!("balance_after is an exact integer: {entry}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_past_two_to_the_53_stay_exact() {
    let stack = Stack::start().await;
    for i in 0..11u64 {
        let total = if i < 10 { MAX_AMOUNT } else { 1 };
        stack
            .create_bill(bill_body(&format!("80000000{i:02}"), "close", total))
            .await;
    }
    let daemon = stack.daemon();
    for i in 0..11u64 {
        let total = if i < 10 { MAX_AMOUNT } else { 1 };
        let id = stack
            .send(
                "payment",
                &format!("big-{i}"),
                payment(
                    &va(PREFIX, &format!("80000000{i:02}")),
                    &format!("BIG{i}"),
                    total,
                ),
            )
            .await;
        assert_eq!(stack.answer(&id).await["rc"], "SUCCESS");
    }
    let (ledger, balance) = stack.ledger().await;
    // 10 x 999,999,999,999,999 + 1 = 9,999,999,999,999,991 (2^53 = 9,007,199,254,740,992).
    let expected: i64 = 9_999_999_999_999_991;
    assert_eq!(balance, expected);
    assert_eq!(ledger.len(), 11);
    let mut running = 0i64;
    for e in &ledger {
        running += e["amount"].as_i64().unwrap();
        assert_eq!(balance_after(e), running, "ledger entry {e}");
    }
    assert_eq!(balance_after(ledger.last().unwrap()), expected);

    // A reversal past 2^53 too.
    let id = stack
        .send(
            "reversal",
            "big-rev",
            serde_json::json!({"va_number": va(PREFIX, "8000000003"), "payment_ref": "BIG3",
                               "amount": MAX_AMOUNT}),
        )
        .await;
    assert_eq!(stack.answer(&id).await["rc"], "SUCCESS");
    let (ledger, balance) = stack.ledger().await;
    assert_eq!(balance, expected - MAX_AMOUNT as i64);
    assert_eq!(balance_after(ledger.last().unwrap()), balance);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_past_the_int64_range_is_refused_with_nothing_written() {
    let stack = Stack::start().await;
    stack
        .create_bill(bill_body("8100000001", "close", 10))
        .await;
    stack.create_bill(bill_body("8100000002", "close", 5)).await;
    // The institution's balance, 5 short of i64::MAX (what Redis's INCRBY keeps).
    let mut c = redis::Client::open(stack.redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let start = i64::MAX - 5;
    let _: () = redis::cmd("SET")
        .arg(format!("ipg:{{{INST}}}:balance"))
        .arg(start)
        .query_async(&mut c)
        .await
        .unwrap();
    let daemon = stack.daemon();

    let id = stack
        .send(
            "payment",
            "over",
            payment(&va(PREFIX, "8100000001"), "OVER1", 10),
        )
        .await;
    let a = stack.answer(&id).await;
    assert_eq!(a["rc"], "BILLER_INVALID_TRANSACTION_AMOUNT", "{a}");
    let (ledger, balance) = stack.ledger().await;
    assert!(ledger.is_empty(), "nothing written: {ledger:?}");
    assert_eq!(balance, start);
    let bill = stack
        .switch()
        .hosted
        .store
        .payment(INST, CHANNEL, "OVER1")
        .await
        .unwrap();
    assert!(bill.is_none(), "no payment recorded");

    let id = stack
        .send(
            "payment",
            "edge",
            payment(&va(PREFIX, "8100000002"), "EDGE1", 5),
        )
        .await;
    assert_eq!(stack.answer(&id).await["rc"], "SUCCESS");
    let (ledger, balance) = stack.ledger().await;
    assert_eq!(balance, i64::MAX);
    assert_eq!(balance_after(&ledger[0]), i64::MAX);
    daemon.stop().await;
}
