//! Hosted-bill rules end to end: requests produced to Kafka, answered by the real daemon
//! against a real redis-server. One stack per test; several requests per stack.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inquiry_then_payment_then_paid() {
    let stack = Stack::start().await;
    let daemon = stack.daemon();
    let bill = stack
        .create_bill(bill_body("1000000001", "close", 150_000))
        .await;
    let v = va(PREFIX, "1000000001");

    stack
        .send("inquiry", "inq-1", inquiry(&v, "ref-inq-1"))
        .await;
    let a = stack.answer("inq-1").await;
    assert_eq!(a["rc"], "SUCCESS", "{a}");
    assert_eq!(a["type"], "inquiry");
    assert_eq!(a["channel"], CHANNEL);
    assert_eq!(a["data"][0]["hash"], bill.hash.as_str());
    assert_eq!(a["data"][0]["va_number"], v.as_str());
    assert_eq!(a["data"][0]["billed_amount"], 150_000);
    assert_eq!(a["data"][0]["status"], "active");
    assert!(a["timestamp"].as_str().unwrap().ends_with("+07:00"), "{a}");

    stack
        .send("payment", "pay-1", payment(&v, "ref-pay-1", "150000"))
        .await;
    let a = stack.answer("pay-1").await;
    assert_eq!(a["rc"], "SUCCESS", "{a}");
    assert_eq!(a["data"]["status"], "paid");
    assert_eq!(a["data"]["paid_amount"], 150_000);
    assert_eq!(a["data"]["billed_amount"], 0);
    assert_eq!(a["data"]["payment"]["payment_ref_id"], "ref-pay-1");
    assert_eq!(a["data"]["payment"]["status"], "paid");

    let job = stack
        .webhooks
        .wait_for("payment.received job", 30, |m| {
            m.iter()
                .find(|r| r.json()["event"] == "payment.received")
                .cloned()
        })
        .await;
    assert_eq!(
        job.key.as_deref(),
        Some(bill.hash.as_str()),
        "webhook jobs are keyed by bill"
    );
    let job = job.json();
    assert_eq!(job["institution_code"], INST);
    assert_eq!(job["body"]["event"], "payment.received");
    assert_eq!(job["body"]["id"], job["id"]);
    assert_eq!(job["body"]["context"]["status"], "paid");
    assert_eq!(job["body"]["payload"]["amount"], 150_000);

    stack
        .send("inquiry", "inq-2", inquiry(&v, "ref-inq-2"))
        .await;
    let a = stack.answer("inq-2").await;
    assert_eq!(a["rc"], "BILLER_BILL_ALREADY_PAID", "{a}");
    assert_eq!(a["data"][0]["status"], "paid");

    stack
        .send("payment", "pay-2", payment(&v, "ref-pay-2", "150000"))
        .await;
    assert_eq!(
        stack.answer("pay-2").await["rc"],
        "BILLER_BILL_ALREADY_PAID"
    );

    let (ledger, balance) = stack.ledger().await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0]["mutation_type"], "credit");
    assert_eq!(ledger[0]["balance_after"], 150_000);
    assert_eq!(balance, 150_000);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn va_numbers_prefixes_and_missing_bills() {
    let stack = Stack::start().await;
    let daemon = stack.daemon();
    let cases = [
        (
            "bad-letters",
            "85749912345678ab".to_owned(),
            "BILLER_INVALID_VA_NUMBER",
        ),
        (
            "bad-short",
            "857499123456789".to_owned(),
            "BILLER_INVALID_VA_NUMBER",
        ),
        (
            "bad-long",
            "85749912345678901".to_owned(),
            "BILLER_INVALID_VA_NUMBER",
        ),
        (
            "unknown-prefix",
            va("999999", "1234567890"),
            "BILLER_INVALID_VA_NUMBER",
        ),
        ("no-bill", va(PREFIX, "5555555555"), "BILLER_BILL_NOT_FOUND"),
        (
            "passive",
            va(PASSIVE_PREFIX, "1234567890"),
            "BILLER_GATEWAY_INVALID_RESPONSE",
        ),
    ];
    for (id, v, _) in &cases {
        stack.send("inquiry", id, inquiry(v, "ref-x")).await;
    }
    for (id, _, rc) in &cases {
        let a = stack.answer(id).await;
        assert_eq!(a["rc"], *rc, "{id}: {a}");
        assert_eq!(a["data"], Value::Null, "{id}: {a}");
    }
    stack
        .send(
            "payment",
            "pay-nobill",
            payment(&va(PREFIX, "5555555555"), "ref-p", "1000"),
        )
        .await;
    assert_eq!(
        stack.answer("pay-nobill").await["rc"],
        "BILLER_BILL_NOT_FOUND"
    );
    // A VA error is the bank's business answer, not broken input: nothing dead-lettered.
    assert!(stack.dead_letters.all().is_empty());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_partial_and_open_amount_rules() {
    let stack = Stack::start().await;
    let daemon = stack.daemon();
    stack
        .create_bill(bill_body("2000000001", "close", 100_000))
        .await;
    let partial = stack
        .create_bill(bill_body("2000000002", "partial", 100_000))
        .await;
    let open = stack.create_bill(bill_body("2000000003", "open", 0)).await;
    let (close_va, partial_va, open_va) = (
        va(PREFIX, "2000000001"),
        va(PREFIX, "2000000002"),
        va(PREFIX, "2000000003"),
    );

    let steps: Vec<(&str, &String, Value, &str)> = vec![
        (
            "c-less",
            &close_va,
            json!("99999"),
            "BILLER_INVALID_TRANSACTION_AMOUNT",
        ),
        (
            "c-more",
            &close_va,
            json!(100001),
            "BILLER_INVALID_TRANSACTION_AMOUNT",
        ),
        ("p-60", &partial_va, json!("60000"), "SUCCESS"),
        (
            "p-50",
            &partial_va,
            json!(50000),
            "BILLER_INVALID_TRANSACTION_AMOUNT",
        ),
        ("p-40", &partial_va, json!(40000), "SUCCESS"),
        ("p-1", &partial_va, json!(1), "BILLER_BILL_ALREADY_PAID"),
        ("o-7", &open_va, json!(7), "SUCCESS"),
        ("o-1m", &open_va, json!("1000000"), "SUCCESS"),
        (
            "amt-fraction",
            &open_va,
            json!("100.50"),
            "BILLER_INVALID_TRANSACTION_AMOUNT",
        ),
        (
            "amt-float",
            &open_va,
            json!(100.5),
            "BILLER_INVALID_TRANSACTION_AMOUNT",
        ),
        (
            "amt-negative",
            &open_va,
            json!(-5),
            "BILLER_INVALID_TRANSACTION_AMOUNT",
        ),
        (
            "amt-zero",
            &open_va,
            json!("0"),
            "BILLER_INVALID_TRANSACTION_AMOUNT",
        ),
        (
            "amt-text",
            &open_va,
            json!("seratus"),
            "BILLER_INVALID_TRANSACTION_AMOUNT",
        ),
        (
            "amt-huge",
            &open_va,
            json!("100000000000000000000"),
            "BILLER_INVALID_TRANSACTION_AMOUNT",
        ),
        (
            "amt-object",
            &open_va,
            json!({"value": 5}),
            "BILLER_INVALID_TRANSACTION_AMOUNT",
        ),
        (
            "amt-missing",
            &open_va,
            Value::Null,
            "BILLER_INVALID_TRANSACTION_AMOUNT",
        ),
        ("c-exact", &close_va, json!("100000"), "SUCCESS"),
    ];
    // One VA's messages are answered in order, so each step sees the previous ones.
    for (id, v, amount, _) in &steps {
        let mut body = payment(v, &format!("ref-{id}"), amount.clone());
        if amount.is_null() {
            body.as_object_mut().unwrap().remove("amount");
        }
        stack.send("payment", id, body).await;
    }
    for (id, _, _, rc) in &steps {
        let a = stack.answer(id).await;
        assert_eq!(a["rc"], *rc, "{id}: {a}");
    }
    let p40 = stack.answer("p-40").await;
    assert_eq!(
        (
            p40["data"]["status"].clone(),
            p40["data"]["paid_amount"].clone()
        ),
        (json!("paid"), json!(100_000))
    );
    let p60 = stack.answer("p-60").await;
    assert_eq!(
        (
            p60["data"]["status"].clone(),
            p60["data"]["billed_amount"].clone()
        ),
        (json!("active"), json!(40_000))
    );

    let o = stack.stored_bill(&open.hash).await;
    assert_eq!(
        (o.paid_amount.get(), format!("{:?}", o.status)),
        (1_000_007, "Active".into())
    );
    assert_eq!(
        stack.stored_bill(&partial.hash).await.paid_amount.get(),
        100_000
    );
    let (_, balance) = stack.ledger().await;
    assert_eq!(balance, 100_000 + 100_000 + 1_000_007);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_revoked_bills_are_not_payable() {
    let stack = Stack::start().await;
    let daemon = stack.daemon();
    let sw = stack.switch();
    let soon = (sw.clock.now() + chrono::Duration::seconds(2)).to_rfc3339();
    let mut body = bill_body("3000000001", "close", 5000);
    body["valid_until"] = json!(soon);
    stack.create_bill(body).await;
    let revoked = stack
        .create_bill(bill_body("3000000002", "close", 5000))
        .await;
    let inst = sw.routing.by_code(INST).unwrap().clone();
    let r = sw.hosted.revoke_bill(&inst, &revoked.hash).await.unwrap();
    assert_eq!(format!("{:?}", r.status), "Revoked");

    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (exp_va, rev_va) = (va(PREFIX, "3000000001"), va(PREFIX, "3000000002"));
    stack
        .send("inquiry", "exp-inq", inquiry(&exp_va, "r1"))
        .await;
    stack
        .send("payment", "exp-pay", payment(&exp_va, "r2", 5000))
        .await;
    stack
        .send("inquiry", "rev-inq", inquiry(&rev_va, "r3"))
        .await;
    stack
        .send("payment", "rev-pay", payment(&rev_va, "r4", 5000))
        .await;
    for (id, status, word) in [
        ("exp-inq", "expired", "expired"),
        ("exp-pay", "expired", "expired"),
        ("rev-inq", "revoked", "revoked"),
        ("rev-pay", "revoked", "revoked"),
    ] {
        let a = stack.answer(id).await;
        assert_eq!(a["rc"], "BILLER_BILL_NOT_FOUND", "{id}: {a}");
        assert!(a["message"].as_str().unwrap().contains(word), "{id}: {a}");
        assert_eq!(a["data"][0]["status"], status, "{id}: {a}");
    }
    // A VA whose bill expired or was revoked can take a new bill.
    stack
        .create_bill(bill_body("3000000002", "close", 7000))
        .await;
    stack
        .send("inquiry", "rev-new", inquiry(&rev_va, "r5"))
        .await;
    let a = stack.answer("rev-new").await;
    assert_eq!(
        (a["rc"].clone(), a["data"][0]["total_amount"].clone()),
        (json!("SUCCESS"), json!(7000))
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_payment_pays_once_and_answers_the_same() {
    let stack = Stack::start().await;
    let daemon = stack.daemon();
    let bill = stack
        .create_bill(bill_body("4000000001", "partial", 100_000))
        .await;
    let other = stack
        .create_bill(bill_body("4000000002", "partial", 100_000))
        .await;
    let (v, v2) = (va(PREFIX, "4000000001"), va(PREFIX, "4000000002"));

    stack
        .send("payment", "dup-1", payment(&v, "REF-DUP", "30000"))
        .await;
    let first = stack.answer("dup-1").await;
    assert_eq!(first["rc"], "SUCCESS");
    // The bank retries with a new request id, and the same message is redelivered as-is.
    stack
        .send("payment", "dup-2", payment(&v, "REF-DUP", 30000))
        .await;
    stack
        .send("payment", "dup-1", payment(&v, "REF-DUP", "30000"))
        .await;
    let second = stack.answer("dup-2").await;
    for k in ["rc", "message", "timestamp", "data"] {
        assert_eq!(first[k], second[k], "{k} differs");
    }
    stack
        .responses
        .wait_for("both answers to dup-1", 30, |m| {
            (m.iter()
                .filter(|r| r.json()["request_id"] == "dup-1")
                .count()
                == 2)
                .then_some(())
        })
        .await;
    let again = stack.answers("dup-1");
    assert_eq!(again[0], again[1]);

    // Same reference, another amount or another VA: refused, nothing paid.
    stack
        .send("payment", "dup-amt", payment(&v, "REF-DUP", "30001"))
        .await;
    stack
        .send("payment", "dup-va", payment(&v2, "REF-DUP", "30000"))
        .await;
    assert_eq!(
        stack.answer("dup-amt").await["rc"],
        "BILLER_INVALID_TRANSACTION"
    );
    assert_eq!(
        stack.answer("dup-va").await["rc"],
        "BILLER_INVALID_TRANSACTION"
    );
    // The same reference from another channel is another transaction.
    stack
        .send_as(
            "other_bank",
            "other-key",
            "payment",
            "other-ch",
            payment(&v2, "REF-DUP", "30000"),
        )
        .await;
    assert_eq!(stack.answer("other-ch").await["rc"], "SUCCESS");

    assert_eq!(
        stack.stored_bill(&bill.hash).await.paid_amount.get(),
        30_000
    );
    assert_eq!(
        stack.stored_bill(&other.hash).await.paid_amount.get(),
        30_000
    );
    let (ledger, balance) = stack.ledger().await;
    assert_eq!((ledger.len(), balance), (2, 60_000));
    // Every webhook job for the repeated payment carries the same event id.
    let ids: Vec<Value> = stack
        .webhooks
        .wait_for("3 jobs for the first bill", 30, |m| {
            let ids: Vec<Value> = m
                .iter()
                .map(|r| r.json())
                .filter(|j| j["bill_hash"] == bill.hash.as_str())
                .map(|j| j["id"].clone())
                .collect();
            (ids.len() >= 3).then_some(ids)
        })
        .await;
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversal_and_check_status() {
    let stack = Stack::start().await;
    let daemon = stack.daemon();
    let bill = stack
        .create_bill(bill_body("5000000001", "close", 80_000))
        .await;
    let v = va(PREFIX, "5000000001");
    let status = |id: &str, r: &str| json!({"payment_ref": r, "va_number": v, "date": "2026-01-10", "_id": id});

    stack
        .send("payment", "pay", payment(&v, "PAY-1", "80000"))
        .await;
    assert_eq!(stack.answer("pay").await["rc"], "SUCCESS");

    stack
        .send("check_status", "cs-1", status("cs-1", "PAY-1"))
        .await;
    let a = stack.answer("cs-1").await;
    assert_eq!(a["rc"], "SUCCESS", "{a}");
    assert_eq!(
        (
            a["data"]["payment"]["status"].clone(),
            a["data"]["status"].clone()
        ),
        (json!("paid"), json!("paid"))
    );
    stack
        .send("check_status", "cs-parts", json!({"payment_ref": "PAY-1", "prefix": PREFIX, "virtual_account": "5000000001", "date": "2026-01-10"}))
        .await;
    assert_eq!(stack.answer("cs-parts").await["rc"], "SUCCESS");
    stack
        .send("check_status", "cs-none", status("cs-none", "NOPE"))
        .await;
    assert_eq!(
        stack.answer("cs-none").await["rc"],
        "BILLER_PAYMENT_NOT_FOUND"
    );

    // Reversal is keyed by the payment reference; the VA is optional.
    let rev = |r: &str, amount: Value| json!({"payment_ref": r, "amount": amount});
    stack
        .send("reversal", "rev-wrong-amt", rev("PAY-1", json!(79_999)))
        .await;
    assert_eq!(
        stack.answer("rev-wrong-amt").await["rc"],
        "BILLER_INVALID_TRANSACTION_AMOUNT"
    );
    stack
        .send("reversal", "rev-unknown", rev("NOPE", json!(80_000)))
        .await;
    assert_eq!(
        stack.answer("rev-unknown").await["rc"],
        "BILLER_PAYMENT_NOT_FOUND"
    );
    stack
        .send(
            "reversal",
            "rev-other-bill",
            json!({"payment_ref": "PAY-1", "amount": 80000, "bill_id": "zzzzzzzz"}),
        )
        .await;
    assert_eq!(
        stack.answer("rev-other-bill").await["rc"],
        "BILLER_PAYMENT_NOT_FOUND"
    );
    stack
        .send(
            "reversal",
            "rev-1",
            json!({"payment_ref": "PAY-1", "amount": 80000, "bill_id": bill.hash}),
        )
        .await;
    let a = stack.answer("rev-1").await;
    assert_eq!(a["rc"], "SUCCESS", "{a}");
    assert_eq!(
        (
            a["data"]["status"].clone(),
            a["data"]["paid_amount"].clone()
        ),
        (json!("active"), json!(0))
    );
    assert_eq!(a["data"]["payment"]["status"], "reversed");
    stack
        .send(
            "reversal",
            "rev-2",
            json!({"payment_ref": "PAY-1", "amount": "80000", "va_number": v}),
        )
        .await;
    let a2 = stack.answer("rev-2").await;
    assert_eq!(a2["rc"], "BILLER_PAYMENT_ALREADY_REVERSED", "{a2}");
    assert_eq!(a2["data"], a["data"]);

    stack
        .send("check_status", "cs-2", status("cs-2", "PAY-1"))
        .await;
    assert_eq!(
        stack.answer("cs-2").await["data"]["payment"]["status"],
        "reversed"
    );
    // Payable again: the same reference stays spent, a new one pays.
    stack.send("inquiry", "inq", inquiry(&v, "i")).await;
    assert_eq!(stack.answer("inq").await["rc"], "SUCCESS");
    stack
        .send("payment", "pay-again", payment(&v, "PAY-2", "80000"))
        .await;
    assert_eq!(stack.answer("pay-again").await["rc"], "SUCCESS");

    let (ledger, balance) = stack.ledger().await;
    let kinds: Vec<&str> = ledger
        .iter()
        .map(|e| e["mutation_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["credit", "debit", "credit"]);
    assert_eq!(ledger[1]["balance_after"], 0);
    assert_eq!(balance, 80_000);
    // The repeated reversal queued its job again, under the same event id.
    let events: Vec<(String, String)> = stack
        .webhooks
        .wait_for("4 jobs", 30, |m| {
            (m.len() >= 4).then(|| {
                m.iter()
                    .map(|r| {
                        (
                            r.json()["id"].as_str().unwrap().to_owned(),
                            r.json()["event"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            })
        })
        .await;
    let mut distinct: Vec<(String, String)> = Vec::new();
    for e in events {
        if !distinct.contains(&e) {
            distinct.push(e);
        }
    }
    let kinds: Vec<&str> = distinct.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(
        kinds,
        ["payment.received", "payment.reversal", "payment.received"]
    );
    daemon.stop().await;
}
