//! Concurrent copies of one request through both doors at once (HTTP and Kafka): a VA lock
//! belongs to one attempt, so a copy waits for the first and replays its answer. One
//! forward per request and per reversal at a passive institution; one credit and one debit
//! for a hosted bill; never a 5xx for a race.

mod common;

use std::time::Duration;

use common::institution::{Institution, Mode};
use common::*;
use serde_json::{json, Value};

const PAS_KEY: &str = "pas-key";

/// A stack with the HTTP API on a free port; `extra` is more config.
async fn stack_with_api(extra: &str) -> (Stack, String) {
    let port = free_port();
    let stack = Stack::start_with(&format!(
        "[api]\nlisten = \"127.0.0.1:{port}\"\n[switch]\nlock_ttl_ms = 8000\nlock_wait_ms = 15000\n{extra}"
    ))
    .await;
    (stack, format!("http://127.0.0.1:{port}"))
}

/// Sends `body` as `kind` three times over HTTP and twice over Kafka, all at once; returns
/// the five answers (HTTP status 200 for the Kafka ones) once all arrived.
async fn five_copies(
    stack: &Stack,
    base: &str,
    kind: &str,
    body: Value,
    tag: &str,
) -> Vec<(u16, Value)> {
    let http = (0..3).map(|_| post_channel(base, kind, &body));
    let kafka = async {
        for i in 0..2 {
            stack.send(kind, &format!("{tag}-k{i}"), body.clone()).await;
        }
        let mut out = Vec::new();
        for i in 0..2 {
            let a = stack.answer(&format!("{tag}-k{i}")).await;
            out.push((200, a));
        }
        out
    };
    let (mut answers, kafka) = tokio::join!(futures::future::join_all(http), kafka);
    answers.extend(kafka);
    answers
}

fn rcs(answers: &[(u16, Value)]) -> Vec<String> {
    answers
        .iter()
        .map(|(s, v)| format!("{s} {}", v["rc"].as_str().unwrap_or("?")))
        .collect()
}

/// Five copies of a reversal: the first reverses, the other four hear it was already done;
/// none is refused for the race.
fn one_reversal_four_already(answers: &[(u16, Value)]) {
    let codes = rcs(answers);
    let count = |want: &str| codes.iter().filter(|c| *c == want).count();
    assert_eq!(count("200 SUCCESS"), 1, "{codes:?}");
    assert_eq!(count("200 BILLER_PAYMENT_ALREADY_REVERSED"), 4, "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passive_copies_through_both_doors_are_forwarded_once() {
    let inst = Institution::start(PAS_KEY).await;
    let (mut stack, base) = stack_with_api("[passive]\ntimeout_ms = 2000\n").await;
    stack.point_passive(inst.base_url());
    let va = va(PASSIVE_PREFIX, "7000000001");
    inst.add_bill("7000000001", 150_000);
    inst.set_mode("payment", Mode::SlowThenNormal(Duration::from_secs(1)));
    inst.set_mode("reversal", Mode::SlowThenNormal(Duration::from_secs(1)));
    let daemon = stack.daemon();
    http_up(&base).await;

    let pay = payment(&va, "CPY-P1", 150_000);
    let answers = five_copies(&stack, &base, "payment", pay.clone(), "cpy-pay").await;
    assert_eq!(inst.hits("payment").len(), 1, "forwarded once");
    assert!(
        answers
            .iter()
            .all(|(s, v)| *s == 200 && v["rc"] == "SUCCESS"),
        "every copy answered as the first: {:?}",
        rcs(&answers)
    );
    let stamps: Vec<&Value> = answers.iter().map(|(_, v)| &v["timestamp"]).collect();
    assert!(
        stamps.iter().all(|t| *t == stamps[0]),
        "one answer, replayed: {stamps:?}"
    );

    let rev = json!({"va_number": va, "payment_ref": "CPY-P1", "amount": 150_000});
    let answers = five_copies(&stack, &base, "reversal", rev, "cpy-rev").await;
    assert_eq!(inst.hits("reversal").len(), 1, "reversal forwarded once");
    one_reversal_four_already(&answers);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hosted_copies_through_both_doors_pay_and_reverse_once() {
    let (stack, base) = stack_with_api("").await;
    stack
        .create_bill(bill_body("7000000002", "close", 80_000))
        .await;
    let va = va(PREFIX, "7000000002");
    let daemon = stack.daemon();
    http_up(&base).await;

    let answers = five_copies(
        &stack,
        &base,
        "payment",
        payment(&va, "CPY-H1", 80_000),
        "cph-pay",
    )
    .await;
    assert!(
        answers
            .iter()
            .all(|(s, v)| *s == 200 && v["rc"] == "SUCCESS"),
        "{:?}",
        rcs(&answers)
    );
    let ids: Vec<&Value> = answers
        .iter()
        .map(|(_, v)| &v["data"]["payment"]["id"])
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "one payment: {ids:?}");

    let rev = json!({"va_number": va, "payment_ref": "CPY-H1", "amount": 80_000});
    let answers = five_copies(&stack, &base, "reversal", rev, "cph-rev").await;
    one_reversal_four_already(&answers);
    let (ledger, balance) = stack.ledger().await;
    assert_eq!(ledger.len(), 2, "one credit, one debit: {ledger:?}");
    assert_eq!(balance, 0);
    daemon.stop().await;
}
