//! The pipeline around the rules: poison and forged input, restarts mid-stream, Redis going
//! away, and shutdown draining. Real daemon, mock Kafka broker over TCP, real redis-server.
//! One stack per test.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Few lanes with one-message queues: a stop finds most of a backlog not yet handed out.
const SHORT_QUEUES: &str = "[pipeline]\nlanes = 4\nlane_queue = 1\n";

/// Every answer for `ids` equals the first one on the fields a repeat must keep.
fn assert_repeats_identical(by_id: &HashMap<String, Vec<Value>>) {
    for (id, answers) in by_id {
        for a in &answers[1..] {
            for k in ["rc", "message", "timestamp", "data"] {
                assert_eq!(
                    answers[0][k], a[k],
                    "{id}: repeated answer differs in {k}: {} vs {a}",
                    answers[0]
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_and_do_not_stall_the_partition() {
    let stack = Stack::start().await;
    let daemon = stack.daemon();
    stack
        .create_bill(bill_body("6000000001", "close", 50_000))
        .await;
    let v = va(PREFIX, "6000000001");

    // All on one key: one partition, one lane, in this order.
    let malformed =
        br#"{"type": "inquiry", "channel": "bank_syariah", "request_id": "poison-1", "body": {"#
            .to_vec();
    let array = serde_json::to_vec(&json!([{"type": "inquiry", "channel": CHANNEL, "request_id": "poison-2", "body": inquiry(&v, "r")}])).unwrap();
    let no_id = serde_json::to_vec(
        &json!({"type": "inquiry", "channel": CHANNEL, "body": inquiry(&v, "r")}),
    )
    .unwrap();
    let no_id_sig = ipg_switch::signature::sign(CHANNEL_KEY.as_bytes(), &no_id);
    let at = [
        stack.produce_raw_at(Some(&v), Some(&malformed), None).await,
        stack.produce_raw_at(Some(&v), Some(&array), None).await,
        stack
            .produce_raw_at(Some(&v), Some(&no_id), Some(&no_id_sig))
            .await,
        stack.produce_tombstone(&v).await,
    ];
    stack
        .send("inquiry", "after-poison", inquiry(&v, "ref-after"))
        .await;

    let a = stack.answer("after-poison").await;
    assert_eq!(
        a["rc"], "SUCCESS",
        "the partition must move past poison: {a}"
    );

    let expected: [(&str, &[u8], &str); 4] = [
        ("malformed JSON", &malformed, "malformed_json"),
        ("JSON array", &array, "malformed_json"),
        ("no request_id", &no_id, "unaddressable"),
        ("tombstone", b"", "malformed_json"),
    ];
    let dls = stack
        .dead_letters
        .wait_for("4 dead letters", 30, |m| (m.len() >= 4).then(|| m.to_vec()))
        .await;
    assert_eq!(
        dls.len(),
        4,
        "exactly the 4 poison messages are dead-lettered: {dls:?}"
    );
    for (((what, bytes, code), dl), (partition, offset)) in expected.iter().zip(&dls).zip(at) {
        assert_eq!(dl.value, *bytes, "{what}: the original bytes are kept");
        assert_eq!(
            dl.headers.get("reason_code").map(String::as_str),
            Some(*code),
            "{what}: {:?}",
            dl.headers
        );
        assert!(
            dl.headers.get("reason").is_some_and(|r| !r.is_empty()),
            "{what}: a reason is given: {:?}",
            dl.headers
        );
        assert_eq!(
            dl.headers.get("source_topic"),
            Some(&stack.settings.topics.request),
            "{what}"
        );
        assert_eq!(
            dl.key.as_deref(),
            Some(v.as_str()),
            "{what}: dead letter keeps the key"
        );
        assert_eq!(
            dl.headers.get("source_partition"),
            Some(&partition.to_string()),
            "{what}"
        );
        assert_eq!(
            dl.headers.get("source_offset"),
            Some(&offset.to_string()),
            "{what}"
        );
    }
    assert!(
        at.iter().all(|(p, _)| *p == at[0].0),
        "one key, one partition: {at:?}"
    );

    // Nothing answered but the valid inquiry (answers to the poison would precede it on the
    // same partition, so they would be here by now).
    let ids: Vec<Value> = stack
        .responses
        .all()
        .iter()
        .map(|r| r.json()["request_id"].clone())
        .collect();
    assert_eq!(ids, [json!("after-poison")], "poison is never answered");

    // The offsets moved past the poison: a restarted daemon does not see it again.
    daemon.stop().await;
    let daemon = stack.daemon();
    stack
        .send("inquiry", "after-restart", inquiry(&v, "ref-after-2"))
        .await;
    assert_eq!(stack.answer("after-restart").await["rc"], "SUCCESS");
    assert_eq!(
        stack.dead_letters.all().len(),
        4,
        "poison was not consumed again after a restart"
    );
    daemon.stop().await;
}

/// A forged or invalid request and what must come of it.
struct Case {
    id: &'static str,
    value: Vec<u8>,
    /// The signature header, when one is sent.
    signature: Option<String>,
    rc: &'static str,
    reason_code: &'static str,
    /// A field the answer's `message` must name.
    field: Option<&'static str>,
}

impl Case {
    fn new(
        id: &'static str,
        kind: &str,
        body: Value,
        rc: &'static str,
        reason_code: &'static str,
    ) -> Case {
        let (value, sig) = signed_envelope(CHANNEL, CHANNEL_KEY, kind, id, body);
        Case {
            id,
            value,
            signature: Some(sig),
            rc,
            reason_code,
            field: None,
        }
    }

    fn auth(id: &'static str, reason_code: &'static str) -> Case {
        Case::new(
            id,
            "inquiry",
            Value::Null,
            "BILLER_AUTHENTICATION",
            reason_code,
        )
    }

    fn invalid(id: &'static str, kind: &str, body: Value, field: &'static str) -> Case {
        Case {
            field: Some(field),
            ..Case::new(
                id,
                kind,
                body,
                "BILLER_INVALID_TRANSACTION",
                "invalid_field",
            )
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_invalid_requests_are_answered_dead_lettered_and_pay_nothing() {
    let stack = Stack::start().await;
    let daemon = stack.daemon();
    let bill = stack
        .create_bill(bill_body("6100000001", "close", 150_000))
        .await;
    let v = va(PREFIX, "6100000001");

    let wrong_key = {
        let (value, sig) = signed_envelope(
            CHANNEL,
            "not-the-channel-key",
            "inquiry",
            "auth-wrong-key",
            inquiry(&v, "r1"),
        );
        Case {
            value,
            signature: Some(sig),
            ..Case::auth("auth-wrong-key", "bad_signature")
        }
    };
    let no_header = {
        let (value, _) = signed_envelope(
            CHANNEL,
            CHANNEL_KEY,
            "inquiry",
            "auth-no-header",
            inquiry(&v, "r2"),
        );
        Case {
            value,
            signature: None,
            ..Case::auth("auth-no-header", "bad_signature")
        }
    };
    let unknown_channel = {
        let (value, sig) = signed_envelope(
            "no_such_bank",
            "whatever",
            "inquiry",
            "auth-unknown-channel",
            inquiry(&v, "r3"),
        );
        Case {
            value,
            signature: Some(sig),
            ..Case::auth("auth-unknown-channel", "unknown_channel")
        }
    };
    let tampered = {
        let (mut value, sig) = signed_envelope(
            CHANNEL,
            CHANNEL_KEY,
            "payment",
            "auth-tampered",
            payment(&v, "ref-tamper-1", "150000"),
        );
        let at = value
            .windows(12)
            .position(|w| w == b"ref-tamper-1")
            .unwrap();
        value[at + 11] = b'2'; // still a valid, payable payment, but no longer what was signed
        Case {
            value,
            signature: Some(sig),
            ..Case::auth("auth-tampered", "bad_signature")
        }
    };
    let mut va_number = inquiry(&v, "ref-n");
    va_number["va_number"] = json!(8_574_996_100_000_001u64);
    let mut bad_date = payment(&v, "ref-date", "150000"); // payable, but for the date
    bad_date["transaction_date"] = json!("10/01/2026 10:00");
    let cases = [
        wrong_key,
        no_header,
        unknown_channel,
        tampered,
        Case::invalid("bad-type", "refund", inquiry(&v, "r4"), "type"),
        Case::invalid(
            "bad-body",
            "inquiry",
            json!(["not", "an", "object"]),
            "body",
        ),
        Case::invalid("bad-va-type", "inquiry", va_number, "body.va_number"),
        Case::invalid("bad-date", "payment", bad_date, "body.transaction_date"),
    ];
    // All on the bill's key: one lane, in order; none may hold up the next.
    let mut at = HashMap::new();
    for c in &cases {
        at.insert(
            c.id,
            stack
                .produce_raw_at(Some(&v), Some(&c.value), c.signature.as_deref())
                .await,
        );
    }

    for c in &cases {
        let a = stack.answer(c.id).await;
        assert_eq!(a["rc"], c.rc, "{}: {a}", c.id);
        assert_eq!(a["data"], Value::Null, "{}: {a}", c.id);
        if let Some(field) = c.field {
            assert!(
                a["message"].as_str().unwrap_or_default().contains(field),
                "{}: message names {field}: {a}",
                c.id
            );
        }
    }
    assert_eq!(
        stack.answer("bad-type").await["type"],
        "refund",
        "the answer echoes what was sent"
    );

    let dls = stack
        .dead_letters
        .wait_for("8 dead letters", 30, |m| {
            (m.len() >= cases.len()).then(|| m.to_vec())
        })
        .await;
    assert_eq!(dls.len(), cases.len(), "{dls:?}");
    for c in &cases {
        let id = c.id;
        let dl = dls
            .iter()
            .find(|d| d.value == c.value)
            .unwrap_or_else(|| panic!("{id}: original bytes not dead-lettered"));
        assert_eq!(
            dl.headers.get("reason_code").map(String::as_str),
            Some(c.reason_code),
            "{id}: {:?}",
            dl.headers
        );
        assert_eq!(
            dl.headers.get("source_topic"),
            Some(&stack.settings.topics.request),
            "{id}"
        );
        let (partition, offset) = at[id];
        assert_eq!(
            dl.headers.get("source_partition"),
            Some(&partition.to_string()),
            "{id}"
        );
        assert_eq!(
            dl.headers.get("source_offset"),
            Some(&offset.to_string()),
            "{id}"
        );
        assert_eq!(
            dl.headers.get("signature"),
            c.signature.as_ref(),
            "{id}: the signature header travels with it"
        );
    }

    // Nothing was paid, by the tampered payment or the one with a bad date.
    let stored = stack.stored_bill(&bill.hash).await;
    assert_eq!(stored.paid_amount.get(), 0);
    assert_eq!(format!("{:?}", stored.status), "Active");
    let (ledger, balance) = stack.ledger().await;
    assert_eq!((ledger.len(), balance), (0, 0));
    stack
        .send("inquiry", "still-payable", inquiry(&v, "r5"))
        .await;
    assert_eq!(stack.answer("still-payable").await["rc"], "SUCCESS");
    assert!(
        stack.webhooks.all().is_empty(),
        "no webhook job for refused input"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_stream_pays_every_bill_exactly_once() {
    const N: usize = 150;
    // Short lane queues: at the stop, most requests are still unconsumed or merely fetched,
    // not handed to a lane, so the second daemon has real work left.
    let stack = Stack::start_with(SHORT_QUEUES).await;
    let sw = stack.switch();
    let inst = sw.routing.by_code(INST).unwrap().clone();
    let mut bills = Vec::with_capacity(N);
    for i in 0..N {
        let total = 10_000 + 100 * i as u64;
        let bill = sw
            .hosted
            .create_bill(&inst, &bill_body(&format!("7{i:09}"), "close", total))
            .await
            .unwrap();
        bills.push((bill, total));
    }
    let ids: Vec<String> = (0..N).map(|i| format!("rs-{i}")).collect();
    futures::future::join_all((0..N).map(|i| {
        let v = va(PREFIX, &format!("7{i:09}"));
        stack.send(
            "payment",
            &ids[i],
            payment(&v, &format!("RS-REF-{i}"), bills[i].1.to_string()),
        )
    }))
    .await;

    let daemon = stack.daemon();
    stack
        .responses
        .wait_for("30 answers", 60, |m| {
            (answers_by_id(m).len() >= 30).then_some(())
        })
        .await;
    let at_stop = answers_by_id(&stack.responses.all()).len();
    daemon.stop().await;
    let before_restart = answers_by_id(&stack.responses.all()).len();

    let daemon = stack.daemon();
    let by_id = stack
        .responses
        .wait_for("every answer", 120, |m| {
            let by_id = answers_by_id(m);
            ids.iter().all(|id| by_id.contains_key(id)).then_some(by_id)
        })
        .await;
    daemon.stop().await;
    let repeats: usize = by_id.values().map(|a| a.len() - 1).sum();
    eprintln!("restart_mid_stream: {at_stop} answered at the stop, {before_restart}/{N} after it drained, {repeats} repeated answers");

    assert_eq!(
        by_id.len(),
        N,
        "no answers to unknown ids: {:?}",
        by_id
            .keys()
            .filter(|k| !ids.contains(k))
            .collect::<Vec<_>>()
    );
    for (id, answers) in &by_id {
        for a in answers {
            assert_eq!(a["rc"], "SUCCESS", "{id}: {a}");
        }
    }
    assert_repeats_identical(&by_id);
    for (bill, total) in &bills {
        let stored = stack.stored_bill(&bill.hash).await;
        assert_eq!(stored.paid_amount.get(), *total, "{}", bill.va_number);
        assert_eq!(format!("{:?}", stored.status), "Paid", "{}", bill.va_number);
    }
    let (ledger, balance) = stack.ledger().await;
    assert_eq!(ledger.len(), N, "one ledger credit per bill");
    assert_eq!(balance, bills.iter().map(|(_, t)| *t as i64).sum::<i64>());
}

/// Freezes a process with SIGSTOP; resumes it (SIGCONT) when dropped, also on panic.
struct Frozen(String);

impl Frozen {
    fn freeze(pid: u32) -> Frozen {
        let pid = pid.to_string();
        let ok = std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -STOP {pid} failed");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_holds_the_answer_until_it_is_back() {
    let stack = Stack::start().await;
    let bill = stack
        .create_bill(bill_body("8000000001", "close", 90_000))
        .await;
    let v = va(PREFIX, "8000000001");
    let daemon = stack.daemon();
    stack
        .send("inquiry", "warm-up", inquiry(&v, "ref-warm"))
        .await;
    assert_eq!(stack.answer("warm-up").await["rc"], "SUCCESS");

    let frozen = Frozen::freeze(stack.redis.pid());
    stack
        .send("payment", "pay-frozen", payment(&v, "REF-FROZEN", "90000"))
        .await;
    // Proving absence needs a fixed wait; Redis commands time out after 500 ms meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        stack.answers("pay-frozen").is_empty(),
        "answered without Redis: {:?}",
        stack.answers("pay-frozen")
    );
    assert!(
        stack.dead_letters.all().is_empty(),
        "a Redis outage is not broken input"
    );
    drop(frozen);

    let a = stack.answer("pay-frozen").await;
    assert_eq!(a["rc"], "SUCCESS", "{a}");
    assert_eq!(a["data"]["status"], "paid", "{a}");
    let stored = stack.stored_bill(&bill.hash).await;
    assert_eq!(stored.paid_amount.get(), 90_000);
    let (ledger, balance) = stack.ledger().await;
    assert_eq!((ledger.len(), balance), (1, 90_000), "paid once");
    daemon.stop().await;
    assert_repeats_identical(&answers_by_id(&stack.responses.all()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_and_the_next_daemon_answers_the_rest() {
    const N: usize = 100;
    let stack = Stack::start_with(SHORT_QUEUES).await;
    let sw = stack.switch();
    let inst = sw.routing.by_code(INST).unwrap().clone();
    for b in 0..10 {
        sw.hosted
            .create_bill(
                &inst,
                &bill_body(&format!("81000000{b:02}"), "close", 20_000),
            )
            .await
            .unwrap();
    }
    let ids: Vec<String> = (0..N).map(|i| format!("drain-{i}")).collect();
    futures::future::join_all((0..N).map(|i| {
        let v = va(PREFIX, &format!("81000000{:02}", i % 10));
        stack.send("inquiry", &ids[i], inquiry(&v, &format!("DR-{i}")))
    }))
    .await;

    let daemon = stack.daemon();
    stack
        .responses
        .wait_for("a first answer", 60, |m| (!m.is_empty()).then_some(()))
        .await;
    let at_stop = answers_by_id(&stack.responses.all()).len();
    daemon.stop().await;
    let before_restart = answers_by_id(&stack.responses.all()).len();

    let daemon = stack.daemon();
    let by_id = stack
        .responses
        .wait_for("all 100 answers", 120, |m| {
            let by_id = answers_by_id(m);
            ids.iter().all(|id| by_id.contains_key(id)).then_some(by_id)
        })
        .await;
    daemon.stop().await;
    let repeats: usize = by_id.values().map(|a| a.len() - 1).sum();
    eprintln!("shutdown_drains: {at_stop} answered at the stop, {before_restart}/{N} after it drained, {repeats} repeated answers");
    let missing: Vec<&String> = ids.iter().filter(|id| !by_id.contains_key(*id)).collect();
    assert!(missing.is_empty(), "{missing:?}");
    assert_eq!(by_id.len(), N);
    for (id, answers) in &by_id {
        for a in answers {
            assert_eq!(a["rc"], "SUCCESS", "{id}: {a}");
        }
    }
    assert!(stack.dead_letters.all().is_empty());
}
