//! Issue 30: the broker misbehaves while payments come over HTTP (docs/journal.md, "Broker
//! faults"). Every wait for the broker is bounded: a payment whose journal event is not
//! acknowledged within `journal.append_deadline_ms` is answered in doubt
//! (`BILLER_SUSPECT_TRANSACTION`), new changes are refused with a fast 503 while the journal
//! is blocked, `/readyz` says so, and once the broker is back the switch journals and
//! announces by itself what it answered in doubt, though the bank never repeats.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use ipg_switch::kafka::BrokerFault;
use serde_json::Value;

/// `/readyz` of the daemon's ops listener: (HTTP status, body).
async fn readyz(base: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Payment events in the journal by event id, and how many times each is there.
async fn journaled_payments(stack: &Stack) -> HashMap<String, usize> {
    let journal = stack.settings.journal(&stack.broker.bootstrap);
    let mut paid: HashMap<String, usize> = HashMap::new();
    journal
        .scan(&mut ipg_switch::journal::Quiet, &mut |r| {
            if let Some(p) = &r.event.payment {
                if p.stage == ipg_switch::store::journal::Stage::Paid {
                    *paid.entry(r.event.event_id.clone()).or_default() += 1;
                }
            }
        })
        .await
        .unwrap();
    paid
}

/// The case issue 30 was filed for: the broker frozen under HTTP channel payments, and the
/// bank never repeats. Before the fix the requests got no answer at all and the bills stayed
/// paid in Redis with no event and no webhook job. Now every request is answered within its
/// deadline, and afterwards every payment in force is journaled once and announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_broker_under_http_payments_answers_in_time_and_settles_without_repeats() {
    let (api, ops) = (free_port(), free_port());
    let stack = Stack::start_with(&format!(
        "[api]\nlisten = \"127.0.0.1:{api}\"\n[metrics]\nlisten = \"127.0.0.1:{ops}\"\n\
         [journal]\nappend_deadline_ms = 2000\n"
    ))
    .await;
    let (base, ops) = (
        format!("http://127.0.0.1:{api}"),
        format!("http://127.0.0.1:{ops}"),
    );
    let daemon = stack.daemon();
    http_up(&base).await;
    const IN_DOUBT: usize = 6;
    const REFUSED: usize = 3;
    let mut hashes = Vec::new();
    for i in 0..=IN_DOUBT + REFUSED {
        let bill = stack
            .create_bill(bill_body(&format!("71000000{i:02}"), "close", 40_000))
            .await;
        hashes.push(bill.hash);
    }
    let pay = |i: usize| {
        payment(
            &va(PREFIX, &format!("71000000{i:02}")),
            &format!("FZ-{i}"),
            40_000,
        )
    };
    // Warm: one payment answered SUCCESS with the broker up.
    let (status, a) = post_channel(&base, "payment", &pay(0)).await;
    assert_eq!((status, a["rc"].as_str()), (200, Some("SUCCESS")), "{a}");
    assert_eq!(readyz(&ops).await.0, 200);

    // The broker goes away; payments arrive at once.
    stack.broker.fault(BrokerFault::Down).unwrap();
    let down = Instant::now();
    let answers = futures::future::join_all((1..=IN_DOUBT).map(|i| {
        let (base, body) = (base.clone(), pay(i));
        async move {
            let t = Instant::now();
            let r = post_channel(&base, "payment", &body).await;
            (r, t.elapsed())
        }
    }))
    .await;
    for ((status, a), took) in &answers {
        assert_eq!(
            (*status, a["rc"].as_str()),
            (200, Some("BILLER_SUSPECT_TRANSACTION")),
            "{a}"
        );
        // Answered at the deadline, far below a bank's timeout (no timing assert beyond
        // "bounded": the machine may be slow, but never 30 s slow).
        assert!(*took < Duration::from_secs(30), "answered after {took:?}");
    }
    // Blocked: the journal cannot take changes, so none is taken (a fast 503, nothing done)
    // and the ops endpoint says why.
    let (status, body) = readyz(&ops).await;
    assert_eq!(
        (status, &body["journal"]),
        (503, &Value::Bool(false)),
        "{body}"
    );
    for i in IN_DOUBT + 1..=IN_DOUBT + REFUSED {
        let (status, a) = post_channel(&base, "payment", &pay(i)).await;
        assert_eq!(status, 503, "{a}");
        assert!(
            a["message"].as_str().unwrap().contains("nothing was done"),
            "{a}"
        );
        // Inquiries still answer from Redis: the bill is unpaid.
        let (status, q) = post_channel(
            &base,
            "inquiry",
            &inquiry(&va(PREFIX, &format!("71000000{i:02}")), &format!("Q-{i}")),
        )
        .await;
        assert_eq!((status, q["rc"].as_str()), (200, Some("SUCCESS")), "{q}");
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    stack.broker.fault(BrokerFault::Up).unwrap();

    // No repeat from the bank. The switch journals and announces what it answered in doubt.
    let jobs = stack
        .webhooks
        .wait_for("a payment.received job per payment in force", 120, |msgs| {
            let mut bills: Vec<String> = msgs
                .iter()
                .filter(|m| m.json()["event"] == "payment.received")
                .filter_map(|m| m.key.clone())
                .collect();
            bills.sort();
            bills.dedup();
            (bills.len() > IN_DOUBT).then_some(bills)
        })
        .await;
    let settled = down.elapsed();
    let mut ready = readyz(&ops).await;
    let until = Instant::now() + Duration::from_secs(60);
    while ready.0 != 200 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ready = readyz(&ops).await;
    }
    assert_eq!(ready.0, 200, "{}", ready.1);
    let mut expected = hashes[..=IN_DOUBT].to_vec();
    expected.sort();
    assert_eq!(jobs, expected);
    daemon.stop().await;

    // In force afterwards: exactly the payments answered SUCCESS or in doubt, each journaled
    // (once by id) and paid once; nothing answered 503 is in force; Redis and the journal agree.
    let paid = journaled_payments(&stack).await;
    assert_eq!(paid.len(), IN_DOUBT + 1, "{paid:?}");
    let (ledger, balance) = stack.ledger().await;
    assert_eq!(
        (ledger.len(), balance),
        (IN_DOUBT + 1, 40_000 * (IN_DOUBT as i64 + 1))
    );
    let journal = stack.settings.journal(&stack.broker.bootstrap);
    let verdict = ipg_switch::journal::verify::verify(
        &journal,
        &stack.switch().hosted.store,
        &mut ipg_switch::journal::Quiet,
    )
    .await
    .unwrap();
    assert!(verdict.agrees(), "{}", verdict.table());
    eprintln!(
        "broker frozen 10 s under HTTP: {} payments offered, 1 SUCCESS before, {IN_DOUBT} \
         answered in doubt (slowest {:.1} s), {REFUSED} refused 503 while blocked; in force \
         afterwards {} (journaled {} events for {} ids), all announced {:.1} s after the \
         broker went down, no repeat sent",
        1 + IN_DOUBT + REFUSED,
        answers
            .iter()
            .map(|(_, t)| t.as_secs_f64())
            .fold(0.0, f64::max),
        ledger.len(),
        paid.values().sum::<usize>(),
        paid.len(),
        settled.as_secs_f64()
    );
}
