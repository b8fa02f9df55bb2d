//! Hosted-bill rules end to end: requests produced to Kafka, answered by the real daemon
//! against a real redis-server.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inquiry_then_payment_then_paid() {
    let stack = Stack::start().await;
    let daemon = stack.daemon();
    let bill = stack.create_bill(bill_body("1000000001", "close", 150_000)).await;
    let v = va(PREFIX, "1000000001");

    stack.send("inquiry", "inq-1", inquiry(&v, "ref-inq-1")).await;
    let a = stack.answer("inq-1").await;
    assert_eq!(a["rc"], "SUCCESS", "{a}");
    assert_eq!(a["type"], "inquiry");
    assert_eq!(a["channel"], CHANNEL);
    assert_eq!(a["data"][0]["hash"], bill.hash.as_str());
    assert_eq!(a["data"][0]["billed_amount"], 150_000);
    assert_eq!(a["data"][0]["status"], "active");
    assert!(a["timestamp"].as_str().unwrap().ends_with("+07:00"), "{a}");

    stack.send("payment", "pay-1", payment(&v, "ref-pay-1", "150000")).await;
    let a = stack.answer("pay-1").await;
    assert_eq!(a["rc"], "SUCCESS", "{a}");
    assert_eq!(a["data"]["status"], "paid");
    assert_eq!(a["data"]["paid_amount"], 150_000);
    assert_eq!(a["data"]["payment"]["payment_ref_id"], "ref-pay-1");

    let job = stack
        .webhooks
        .wait_for("payment.received job", 30, |m| m.iter().map(|r| r.json()).find(|j| j["event"] == "payment.received"))
        .await;
    assert_eq!(job["body"]["context"]["status"], "paid");
    assert_eq!(job["body"]["payload"]["amount"], 150_000);

    stack.send("inquiry", "inq-2", inquiry(&v, "ref-inq-2")).await;
    let a = stack.answer("inq-2").await;
    assert_eq!(a["rc"], "BILLER_BILL_ALREADY_PAID", "{a}");
    assert_eq!(a["data"][0]["status"], "paid");
    let _ = json!(null);
    daemon.stop().await;
}
