//! Rate limits (governor) per channel and per institution: over the limit a request is
//! answered BILLER_GATEWAY_INVALID_RESPONSE ("rate limit exceeded ...; retry later")
//! before any work; reversals are never throttled; other channels and institutions are
//! not affected. Rates are one token per 1000 s, so the count that passes is exact.

mod common;

use common::*;
use serde_json::json;

const LIMITED_PREFIX: &str = "857700";

fn overlay() -> String {
    format!(
        r#"
[[channels]]
code = "{CHANNEL}"
api_key = "{CHANNEL_KEY}"
[[channels]]
code = "tiny_bank"
api_key = "tiny-key"
rate_per_second = 0.001
burst = 2

[[institutions]]
code = "{INST}"
name = "Sekolah"
prefixes = ["{PREFIX}", "{PREFIX2}"]
mode = "hosted"
api_key = "inst-key"
[[institutions]]
code = "LIM01"
name = "Yayasan Kecil"
prefixes = ["{LIMITED_PREFIX}"]
mode = "hosted"
api_key = "lim-key"
rate_per_second = 0.001
burst = 3
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_and_institution_limits() {
    let stack = Stack::start_with(&overlay()).await;
    let daemon = stack.daemon();
    stack
        .create_bill(bill_body("8000000001", "partial", 100_000))
        .await;
    let v = va(PREFIX, "8000000001");

    // tiny_bank: burst 2, then refused; its reversal still goes through the rules.
    for i in 0..4 {
        stack
            .send_as(
                "tiny_bank",
                "tiny-key",
                "inquiry",
                &format!("tiny-{i}"),
                inquiry(&v, "r"),
            )
            .await;
    }
    stack
        .send_as(
            "tiny_bank",
            "tiny-key",
            "reversal",
            "tiny-rev",
            json!({"payment_ref": "NOPE", "amount": 1, "va_number": v}),
        )
        .await;
    let mut ok = 0;
    for i in 0..4 {
        let a = stack.answer(&format!("tiny-{i}")).await;
        match a["rc"].as_str().unwrap() {
            "SUCCESS" => ok += 1,
            "BILLER_GATEWAY_INVALID_RESPONSE" => {
                let msg = a["message"].as_str().unwrap();
                assert!(
                    msg.contains("rate limit exceeded for channel tiny_bank"),
                    "{a}"
                );
            }
            other => panic!("unexpected rc {other}: {a}"),
        }
    }
    assert_eq!(ok, 2);
    assert_eq!(
        stack.answer("tiny-rev").await["rc"],
        "BILLER_PAYMENT_NOT_FOUND"
    );
    // Another channel is not affected.
    stack.send("inquiry", "free-1", inquiry(&v, "r")).await;
    assert_eq!(stack.answer("free-1").await["rc"], "SUCCESS");

    // LIM01: burst 3 across every channel, then refused; SCH01 unaffected.
    let lv = va(LIMITED_PREFIX, "1234567890");
    for i in 0..5 {
        stack
            .send("inquiry", &format!("lim-{i}"), inquiry(&lv, "r"))
            .await;
    }
    let rcs: Vec<String> = answer_rcs(&stack, "lim", 5).await;
    assert_eq!(
        rcs.iter().filter(|r| *r == "BILLER_BILL_NOT_FOUND").count(),
        3,
        "{rcs:?}"
    );
    assert_eq!(
        rcs.iter()
            .filter(|r| *r == "BILLER_GATEWAY_INVALID_RESPONSE")
            .count(),
        2,
        "{rcs:?}"
    );
    stack
        .send("payment", "sch-pay", payment(&v, "P1", 1000))
        .await;
    assert_eq!(stack.answer("sch-pay").await["rc"], "SUCCESS");
    daemon.stop().await;
}

async fn answer_rcs(stack: &Stack, prefix: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            stack.answer(&format!("{prefix}-{i}")).await["rc"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    out
}
