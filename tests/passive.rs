//! Passive institutions: the real daemon forwards channel requests to a real HTTP server on
//! loopback that plays the institution (tests/common/institution.rs), and resolves payments
//! left in doubt on its own.

mod common;

use std::time::Duration;

use common::institution::{Institution, Mode};
use common::*;
use serde_json::{json, Value};

const KEY: &str = "pas-key";
const NUMBER: &str = "1234567890";

/// Short timeouts and delays so resolution happens within a test.
fn overlay(window_ms: u64) -> String {
    format!(
        r#"
        [passive]
        timeout_ms = 700
        connect_timeout_ms = 300
        resolve_poll_ms = 50
        resolve_window_ms = {window_ms}
        check_backoff_ms = [150]
        reversal_backoff_ms = [150]
        breaker_failures = 3
        breaker_open_ms = 600
        "#
    )
}

async fn stack_for(inst: &Institution, window_ms: u64) -> Stack {
    let mut stack = Stack::start_with(&overlay(window_ms)).await;
    point(&mut stack, inst.base_url());
    stack
}

/// A stack pointed at `inst`, a reader of the audit topic, and the daemon running.
async fn running(inst: &Institution, window_ms: u64) -> (Stack, Collected, Daemon) {
    let stack = stack_for(inst, window_ms).await;
    let events = collect(
        &stack.broker.bootstrap,
        &stack.settings.topics.passive_events,
    );
    let daemon = stack.daemon();
    (stack, events, daemon)
}

fn point(stack: &mut Stack, url: String) {
    let i = stack
        .settings
        .institutions
        .iter_mut()
        .find(|i| i.code == "PAS01")
        .unwrap();
    i.base_url = Some(url);
}

/// Three inquiries answered 503 by the institution: its circuit breaker opens.
async fn trip_breaker(inst: &Institution, stack: &Stack, tag: &str) {
    inst.set_mode("inquiry", Mode::Status(503));
    for i in 0..3 {
        let id = format!("{tag}-{i}");
        stack
            .send("inquiry", &id, inquiry(&pva(NUMBER), "ref-inq"))
            .await;
        assert_eq!(
            stack.answer(&id).await["rc"],
            "BILLER_GATEWAY_INVALID_RESPONSE"
        );
    }
}

fn pva(number: &str) -> String {
    va(PASSIVE_PREFIX, number)
}

fn reversal(va: &str, payment_ref: &str, amount: u64) -> Value {
    json!({"va_number": va, "payment_ref": payment_ref, "amount": amount})
}

fn check_status(va: &str, payment_ref: &str) -> Value {
    json!({"va_number": va, "payment_ref": payment_ref, "date": "2026-01-10"})
}

fn documented_event() -> Value {
    let ex = &common::examples::doc_examples("protocol.md", "passive_event")[0];
    serde_json::from_str(ex).unwrap()
}

/// The audit events of one payment reference, in order (steps). Every audit event read so
/// far must be valid for the contract (docs/asyncapi.yaml, PassiveAuditEvent).
async fn steps_until(events: &Collected, reference: &str, last: &str) -> Vec<String> {
    let steps = events
        .wait_for(&format!("step {last} of {reference}"), 30, |msgs| {
            let steps: Vec<String> = msgs
                .iter()
                .map(Received::json)
                .filter(|e| e["reference"] == reference)
                .map(|e| e["step"].as_str().unwrap_or_default().to_owned())
                .collect();
            steps.iter().any(|s| s == last).then_some(steps)
        })
        .await;
    let v = contract::validator(&contract::document(), "PassiveAuditEvent");
    for e in events.all().iter().map(Received::json) {
        contract::assert_valid(&v, "PassiveAuditEvent", &e);
    }
    steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwards_signed_requests_and_passes_rcs_through() {
    let inst = Institution::start(KEY).await;
    inst.add_bill(NUMBER, 150_000);
    let stack = stack_for(&inst, 60_000).await;
    let daemon = stack.daemon();

    stack
        .send("inquiry", "inq", inquiry(&pva(NUMBER), "ref-inq"))
        .await;
    stack
        .send(
            "inquiry",
            "inq-none",
            inquiry(&pva("5555555555"), "ref-inq2"),
        )
        .await;
    let a = stack.answer("inq").await;
    assert_eq!(a["rc"], "SUCCESS", "{a}");
    assert!(
        a["data"].is_array(),
        "one bill becomes the channel's list: {a}"
    );
    assert_eq!(a["data"][0]["total_amount"], 150_000, "{a}");
    let a = stack.answer("inq-none").await;
    assert_eq!(a["rc"], "BILLER_BILL_NOT_FOUND", "{a}");

    // The institution's refusal passes through and nothing is paid.
    stack
        .send(
            "payment",
            "pay-bad",
            payment(&pva(NUMBER), "ref-bad", "1000"),
        )
        .await;
    let a = stack.answer("pay-bad").await;
    assert_eq!(a["rc"], "BILLER_INVALID_TRANSACTION_AMOUNT", "{a}");

    stack
        .send("payment", "pay", payment(&pva(NUMBER), "ref-pay", "150000"))
        .await;
    let first = stack.answer("pay").await;
    assert_eq!(first["rc"], "SUCCESS", "{first}");
    assert_eq!(first["data"]["payment"]["status"], "paid", "{first}");
    assert_eq!(inst.payment_state("ref-pay").as_deref(), Some("paid"));

    // Delivered again: the same answer, and the institution is not asked twice.
    stack
        .send(
            "payment",
            "pay-again",
            payment(&pva(NUMBER), "ref-pay", "150000"),
        )
        .await;
    let again = stack.answer("pay-again").await;
    for f in ["rc", "message", "timestamp", "data"] {
        assert_eq!(first[f], again[f], "{f}: {first} vs {again}");
    }
    // Same reference, another amount: refused, never forwarded.
    stack
        .send(
            "payment",
            "pay-other",
            payment(&pva(NUMBER), "ref-pay", "100"),
        )
        .await;
    assert_eq!(
        stack.answer("pay-other").await["rc"],
        "BILLER_INVALID_TRANSACTION"
    );
    let payments = inst.hits("payment");
    assert_eq!(payments.len(), 2, "{payments:?}");

    // The forwarded body: IPG's Passive shape, signed with the institution's key.
    let body = &payments[1];
    assert_eq!(body["virtual_account"], NUMBER);
    assert_eq!(body["prefix"], PASSIVE_PREFIX);
    assert_eq!(body["channel"], CHANNEL);
    assert_eq!(body["reference_id"], "ref-pay");
    assert_eq!(body["payment_ref"], "ref-pay");
    assert_eq!(body["amount"], 150_000);
    assert_eq!(body["terminal"], "atm");
    assert_eq!(inst.bad_signatures(), 0);

    stack
        .send("check_status", "cs", check_status(&pva(NUMBER), "ref-pay"))
        .await;
    let a = stack.answer("cs").await;
    assert_eq!(a["rc"], "SUCCESS", "{a}");
    assert_eq!(a["data"]["payment"]["status"], "paid", "{a}");
    stack
        .send(
            "check_status",
            "cs-none",
            check_status(&pva(NUMBER), "ref-nope"),
        )
        .await;
    assert_eq!(
        stack.answer("cs-none").await["rc"],
        "BILLER_PAYMENT_NOT_FOUND"
    );

    // Reversal: found by its reference (no va_number needed), forwarded, recorded.
    stack
        .send(
            "reversal",
            "rev",
            json!({"payment_ref": "ref-pay", "amount": 150000}),
        )
        .await;
    let a = stack.answer("rev").await;
    assert_eq!(a["rc"], "SUCCESS", "{a}");
    assert_eq!(inst.payment_state("ref-pay").as_deref(), Some("reversed"));
    stack
        .send(
            "reversal",
            "rev2",
            reversal(&pva(NUMBER), "ref-pay", 150_000),
        )
        .await;
    assert_eq!(
        stack.answer("rev2").await["rc"],
        "BILLER_PAYMENT_ALREADY_REVERSED"
    );
    assert_eq!(
        inst.hits("reversal").len(),
        1,
        "the second reversal is answered locally"
    );
    stack
        .send(
            "reversal",
            "rev-none",
            reversal(&pva(NUMBER), "ref-none", 1),
        )
        .await;
    assert_eq!(
        stack.answer("rev-none").await["rc"],
        "BILLER_PAYMENT_NOT_FOUND"
    );

    // Reconciliation sees every forwarded payment with its outcome.
    let listed = stack
        .switch()
        .passive
        .store()
        .passive_payments("PAS01", 0, 10)
        .await
        .unwrap();
    let states: Vec<(String, &str)> = listed
        .iter()
        .map(|p| (p.reference.clone(), p.state.as_str()))
        .collect();
    assert!(
        states.contains(&("ref-pay".into(), "reversed")),
        "{states:?}"
    );
    assert!(
        states.contains(&("ref-bad".into(), "refused")),
        "{states:?}"
    );

    // The same list from the command line, filtered by state.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("switch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[redis]\n{}[[institutions]]\ncode = \"PAS01\"\nname = \"P\"\n\
             prefixes = [\"{PASSIVE_PREFIX}\"]\nmode = \"passive\"\napi_key = \"{KEY}\"\n\
             base_url = \"{}\"\n",
            stack.redis.toml_lines(),
            inst.base_url()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipg-switch"))
        .args(["--config", cfg.to_str().unwrap(), "passive", "list"])
        .args(["--institution", "PAS01", "--state", "reversed"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["reference"], "ref-pay");
    assert_eq!(lines[0]["amount"], 150_000);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unusable_answers_become_gateway_invalid_response() {
    let inst = Institution::start(KEY).await;
    inst.add_bill(NUMBER, 10_000);
    let stack = stack_for(&inst, 60_000).await;
    let daemon = stack.daemon();
    inst.push_modes(
        "inquiry",
        vec![
            Mode::Status(500),
            Mode::Garbage,
            Mode::WrongSignature,
            Mode::Rc("BILLER_WHATEVER"),
            Mode::Hang,
        ],
    );
    // One at a time, so the modes meet the requests in order.
    for (i, why) in [
        "5xx",
        "not json",
        "wrong signature",
        "unknown rc",
        "timeout",
    ]
    .iter()
    .enumerate()
    {
        let id = format!("inq-{i}");
        stack
            .send("inquiry", &id, inquiry(&pva(NUMBER), "ref-inq"))
            .await;
        let a = stack.answer(&id).await;
        assert_eq!(a["rc"], "BILLER_GATEWAY_INVALID_RESPONSE", "{why}: {a}");
        assert_eq!(a["data"], Value::Null, "{why}: {a}");
    }
    daemon.stop().await;

    // A refused connection: nothing was sent, nothing to undo.
    let mut stack = stack;
    point(&mut stack, format!("http://127.0.0.1:{}/ipg", free_port()));
    let daemon = stack.daemon();
    stack
        .send(
            "payment",
            "pay-refused",
            payment(&pva(NUMBER), "ref-refused", "10000"),
        )
        .await;
    let a = stack.answer("pay-refused").await;
    assert_eq!(a["rc"], "BILLER_GATEWAY_INVALID_RESPONSE", "{a}");
    let rec = stack
        .switch()
        .passive
        .store()
        .passive_payment("PAS01", CHANNEL, "ref-refused")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.state.as_str(), "refused");
    assert_eq!(rec.reason.as_deref(), Some("not_sent"));
    daemon.stop().await;

    // The institution is back: the same payment, never sent before, is judged anew (P5),
    // not answered the old refusal again.
    let mut stack = stack;
    point(&mut stack, inst.base_url());
    let daemon = stack.daemon();
    stack
        .send(
            "payment",
            "pay-again",
            payment(&pva(NUMBER), "ref-refused", "10000"),
        )
        .await;
    let again = stack.answer("pay-again").await;
    assert_eq!(again["rc"], "SUCCESS", "{again}");
    assert_ne!(again["timestamp"], a["timestamp"]);
    assert_eq!(inst.hits("payment").len(), 1);
    // Now it was sent and answered: a repeat replays, never forwards again.
    stack
        .send(
            "payment",
            "pay-thrice",
            payment(&pva(NUMBER), "ref-refused", "10000"),
        )
        .await;
    assert_eq!(stack.answer("pay-thrice").await, {
        let mut x = again.clone();
        x["request_id"] = "pay-thrice".into();
        x
    });
    assert_eq!(inst.hits("payment").len(), 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbled_payment_answer_is_voided_by_a_reversal() {
    let inst = Institution::start(KEY).await;
    inst.add_bill(NUMBER, 10_000);
    let (stack, events, daemon) = running(&inst, 60_000).await;
    // The institution takes the payment but answers with a wrong signature: the channel
    // is told it failed, so the switch makes it fail at the institution too.
    inst.push_modes("payment", vec![Mode::WrongSignature]);
    stack
        .send(
            "payment",
            "pay",
            payment(&pva(NUMBER), "ref-garbled", "10000"),
        )
        .await;
    let a = stack.answer("pay").await;
    assert_eq!(a["rc"], "BILLER_GATEWAY_INVALID_RESPONSE", "{a}");
    let steps = steps_until(&events, "ref-garbled", "reversed").await;
    assert_eq!(steps, ["voided", "reversed"]);
    assert_eq!(
        inst.payment_state("ref-garbled").as_deref(),
        Some("reversed")
    );
    assert_eq!(inst.paid_total(NUMBER), 0);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timed_out_payment_is_confirmed_by_check_status() {
    let inst = Institution::start(KEY).await;
    inst.add_bill(NUMBER, 25_000);
    let (stack, events, daemon) = running(&inst, 60_000).await;
    // Paid at the institution, but its answer comes after the switch stopped waiting; the
    // first check-status is also inconclusive.
    inst.push_modes(
        "payment",
        vec![Mode::SlowThenNormal(Duration::from_secs(3))],
    );
    inst.push_modes("check-status", vec![Mode::Suspect]);
    stack
        .send("payment", "pay", payment(&pva(NUMBER), "ref-slow", "25000"))
        .await;
    let a = stack.answer("pay").await;
    assert_eq!(a["rc"], "BILLER_SUSPECT_TRANSACTION", "{a}");
    let steps = steps_until(&events, "ref-slow", "confirmed").await;
    assert_eq!(steps, ["in_doubt", "check_status", "confirmed"]);
    // The event has exactly the documented shape (docs/protocol.md, passive_event).
    let confirmed = events
        .all()
        .iter()
        .map(Received::json)
        .find(|e| e["reference"] == "ref-slow" && e["step"] == "confirmed")
        .unwrap();
    let documented = documented_event();
    let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&confirmed), keys(&documented));
    assert_eq!(confirmed["state"], "paid");
    assert_eq!(confirmed["reason"], "timeout");
    assert_eq!(confirmed["va_number"], pva(NUMBER));
    let checks = inst.hits("check-status");
    assert_eq!(checks[0]["payment_ref"], "ref-slow");
    assert_eq!(checks[0]["virtual_account"], NUMBER);
    assert_eq!(checks[0]["date"].as_str().unwrap().len(), 10, "{checks:?}");

    stack
        .send("check_status", "cs", check_status(&pva(NUMBER), "ref-slow"))
        .await;
    let a = stack.answer("cs").await;
    assert_eq!(a["rc"], "SUCCESS", "{a}");
    assert_eq!(a["data"]["payment"]["resolution"], "confirmed", "{a}");
    // The first answer stays the answer to a repeat of the payment.
    stack
        .send(
            "payment",
            "pay-again",
            payment(&pva(NUMBER), "ref-slow", "25000"),
        )
        .await;
    assert_eq!(
        stack.answer("pay-again").await["rc"],
        "BILLER_SUSPECT_TRANSACTION"
    );
    assert_eq!(inst.hits("payment").len(), 1);
    assert!(inst.hits("reversal").is_empty());
    assert_eq!(inst.paid_total(NUMBER), 25_000);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suspect_payment_denied_or_unconfirmed_is_reversed() {
    let inst = Institution::start(KEY).await;
    inst.add_bill(NUMBER, 10_000);
    inst.add_bill("2222222222", 20_000);
    let (stack, events, daemon) = running(&inst, 1_500).await;

    // Denied: the institution answered SUSPECT without taking it; check-status says so.
    inst.push_modes("payment", vec![Mode::Suspect]);
    stack
        .send(
            "payment",
            "pay-denied",
            payment(&pva(NUMBER), "ref-denied", "10000"),
        )
        .await;
    assert_eq!(
        stack.answer("pay-denied").await["rc"],
        "BILLER_SUSPECT_TRANSACTION"
    );
    let steps = steps_until(&events, "ref-denied", "reversed").await;
    assert_eq!(steps, ["in_doubt", "denied", "reversed"]);

    // Never confirmed: the institution took it, then never answers check-status; after the
    // window the switch reverses it, retrying the reversal until it is acknowledged.
    inst.set_mode("check-status", Mode::Status(503));
    inst.push_modes("payment", vec![Mode::SuspectApplied]);
    inst.push_modes("reversal", vec![Mode::Hang, Mode::Status(502)]);
    stack
        .send(
            "payment",
            "pay-lost",
            payment(&pva("2222222222"), "ref-lost", "20000"),
        )
        .await;
    assert_eq!(
        stack.answer("pay-lost").await["rc"],
        "BILLER_SUSPECT_TRANSACTION"
    );
    let steps = steps_until(&events, "ref-lost", "reversed").await;
    assert_eq!(steps.first().map(String::as_str), Some("in_doubt"));
    assert!(steps.contains(&"window_expired".to_owned()), "{steps:?}");
    let attempts = steps.iter().filter(|s| *s == "reversal_attempt").count();
    assert_eq!(attempts, 2, "{steps:?}");
    assert_eq!(inst.payment_state("ref-lost").as_deref(), Some("reversed"));
    assert_eq!(inst.paid_total("2222222222"), 0);

    stack
        .send(
            "check_status",
            "cs",
            check_status(&pva("2222222222"), "ref-lost"),
        )
        .await;
    let a = stack.answer("cs").await;
    assert_eq!(a["data"]["payment"]["status"], "reversed", "{a}");
    assert_eq!(a["data"]["payment"]["resolution"], "window_expired", "{a}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payment_in_doubt_survives_a_restart() {
    let inst = Institution::start(KEY).await;
    inst.add_bill(NUMBER, 30_000);
    let (stack, events, daemon) = running(&inst, 120_000).await;
    inst.set_mode("check-status", Mode::Status(500));
    inst.push_modes("payment", vec![Mode::HangApplied]);
    stack
        .send(
            "payment",
            "pay",
            payment(&pva(NUMBER), "ref-restart", "30000"),
        )
        .await;
    assert_eq!(
        stack.answer("pay").await["rc"],
        "BILLER_SUSPECT_TRANSACTION"
    );
    steps_until(&events, "ref-restart", "check_status").await;
    daemon.stop().await;

    // Nothing in memory survives; the next daemon finds the work in Redis.
    inst.set_mode("check-status", Mode::Normal);
    let daemon = stack.daemon();
    let steps = steps_until(&events, "ref-restart", "confirmed").await;
    assert_eq!(steps.first().map(String::as_str), Some("in_doubt"));
    assert_eq!(inst.paid_total(NUMBER), 30_000);
    assert!(inst.hits("reversal").is_empty());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn breaker_opens_on_a_dead_institution_and_closes_when_it_answers() {
    let inst = Institution::start(KEY).await;
    inst.add_bill(NUMBER, 10_000);
    let stack = stack_for(&inst, 60_000).await;
    let daemon = stack.daemon();
    trip_breaker(&inst, &stack, "down").await;
    // Open: answered at once, the institution is not called.
    stack
        .send("inquiry", "open", inquiry(&pva(NUMBER), "ref-inq"))
        .await;
    let a = stack.answer("open").await;
    assert_eq!(a["rc"], "BILLER_GATEWAY_INVALID_RESPONSE");
    assert!(
        a["message"].as_str().unwrap().contains("circuit open"),
        "{a}"
    );
    assert_eq!(inst.hits("inquiry").len(), 3);

    // After the open period one probe goes through; it succeeds, the breaker closes.
    inst.set_mode("inquiry", Mode::Normal);
    tokio::time::sleep(Duration::from_millis(700)).await;
    for id in ["probe", "closed"] {
        stack
            .send("inquiry", id, inquiry(&pva(NUMBER), "ref-inq"))
            .await;
        assert_eq!(stack.answer(id).await["rc"], "SUCCESS", "{id}");
    }
    assert_eq!(inst.hits("inquiry").len(), 5);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payment_interrupted_mid_call_is_in_doubt_not_forwarded_again() {
    let inst = Institution::start(KEY).await;
    inst.add_bill(NUMBER, 40_000);
    let stack = stack_for(&inst, 60_000).await;
    let events = collect(
        &stack.broker.bootstrap,
        &stack.settings.topics.passive_events,
    );
    leave_crashed_payment(&stack, "ref-crash", 40_000).await;

    let daemon = stack.daemon();
    stack
        .send(
            "payment",
            "redelivered",
            payment(&pva(NUMBER), "ref-crash", "40000"),
        )
        .await;
    let a = stack.answer("redelivered").await;
    assert_eq!(a["rc"], "BILLER_SUSPECT_TRANSACTION", "{a}");
    // The institution never saw it: check-status denies, the reversal closes the books.
    let steps = steps_until(&events, "ref-crash", "reversed").await;
    assert_eq!(steps, ["in_doubt", "denied", "reversed"]);
    assert!(
        inst.hits("payment").is_empty(),
        "never forwarded a second time"
    );
    daemon.stop().await;
}

/// What a daemon that died during a payment's call leaves behind: the reference bound, the
/// record "forwarding", and a VA lock that expires on its own (300 ms).
async fn leave_crashed_payment(stack: &Stack, reference: &str, amount: u64) {
    use ipg_switch::passive::record::PassivePayment;
    let switch = stack.switch();
    let store = switch.passive.store();
    let amount = ipg_switch::domain::Amount::new(amount).unwrap();
    let va = ipg_switch::domain::VaNumber::parse(&pva(NUMBER)).unwrap();
    let binding = ipg_switch::domain::Binding::new("PAS01", &va, amount);
    store
        .bind(CHANNEL, reference, &binding.to_record())
        .await
        .unwrap();
    let rec = PassivePayment {
        terminal: "atm".into(),
        ..PassivePayment::forwarding(
            "PAS01",
            CHANNEL,
            reference,
            va.as_str(),
            amount,
            "2026-01-10T10:00:00+07:00",
        )
    };
    let dead = ipg_switch::store::Lock {
        key: ipg_switch::store::keys::lock("PAS01", &pva(NUMBER)),
        token: "dead-daemon".into(),
    };
    store
        .passive_begin(rec, &dead, Duration::from_millis(300), 0)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queued_reversal_is_not_undone_by_a_late_copy_of_the_payment() {
    let inst = Institution::start(KEY).await;
    inst.add_bill(NUMBER, 40_000);
    let stack = stack_for(&inst, 60_000).await;
    let events = collect(
        &stack.broker.bootstrap,
        &stack.settings.topics.passive_events,
    );
    leave_crashed_payment(&stack, "ref-late", 40_000).await;
    tokio::time::sleep(Duration::from_millis(400)).await; // the dead lock expires
                                                          // The channel reverses while the institution does not answer: accepted, queued.
    inst.set_mode("reversal", Mode::Hang);
    let daemon = stack.daemon();
    stack
        .send(
            "reversal",
            "rev-late",
            reversal(&pva(NUMBER), "ref-late", 40_000),
        )
        .await;
    let r = stack.answer("rev-late").await;
    assert_eq!(r["rc"], "SUCCESS", "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("reversal accepted"),
        "{r}"
    );
    // A late copy of the payment (a redelivery) must not reopen it as in doubt.
    stack
        .send(
            "payment",
            "pay-late",
            payment(&pva(NUMBER), "ref-late", "40000"),
        )
        .await;
    stack.answer("pay-late").await;
    inst.set_mode("reversal", Mode::Normal);
    let steps = steps_until(&events, "ref-late", "reversed").await;
    assert!(!steps.iter().any(|s| s == "in_doubt"), "{steps:?}");
    let rec = stack
        .switch()
        .passive
        .store()
        .passive_payment("PAS01", CHANNEL, "ref-late")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.state.as_str(), "reversed");
    assert!(inst.hits("payment").is_empty());
    daemon.stop().await;
}

/// Issue 22 item 11 (review): a forwarded payment refused without reaching the institution
/// (breaker open) would be judged anew when repeated; a reversal of it in between closes
/// the reference, so the repeat is refused and never forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_of_a_payment_never_sent_closes_its_reference() {
    let inst = Institution::start(KEY).await;
    inst.add_bill(NUMBER, 10_000);
    let stack = stack_for(&inst, 60_000).await;
    let daemon = stack.daemon();
    trip_breaker(&inst, &stack, "trip").await;
    // The breaker is open: the payment is not sent, and refused.
    stack
        .send("payment", "ns-pay", payment(&pva(NUMBER), "NS-1", 10_000))
        .await;
    assert_eq!(
        stack.answer("ns-pay").await["rc"],
        "BILLER_GATEWAY_INVALID_RESPONSE"
    );
    stack
        .send("reversal", "ns-rev", reversal(&pva(NUMBER), "NS-1", 10_000))
        .await;
    assert_eq!(
        stack.answer("ns-rev").await["rc"],
        "BILLER_PAYMENT_NOT_FOUND"
    );
    // The institution answers again; the same payment repeated is refused, not forwarded.
    inst.set_mode("inquiry", Mode::Normal);
    tokio::time::sleep(Duration::from_millis(700)).await;
    stack
        .send("payment", "ns-again", payment(&pva(NUMBER), "NS-1", 10_000))
        .await;
    let a = stack.answer("ns-again").await;
    assert_eq!(a["rc"], "BILLER_INVALID_TRANSACTION", "{a}");
    assert!(inst.hits("payment").is_empty(), "never forwarded");
    assert_eq!(inst.paid_total(NUMBER), 0);
    daemon.stop().await;
}

/// A settled forwarded payment past the hot window (docs/retention.md, "Forwarded
/// payments"): it leaves the index of forwarded payments, its record stays for the
/// reference window with an expiry, and a repeat is answered as the first time without the
/// institution being asked again. A restore from the journal leaves it the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_settled_forwarded_payment_leaves_the_hot_window_and_still_answers_repeats() {
    let inst = Institution::start(KEY).await;
    inst.add_bill(NUMBER, 150_000);
    let windows = r#"
        [journal]
        append_deadline_ms = 500
        unjournaled_after_ms = 1500
        [retention]
        hot_window_ms = 4000
        reference_window_ms = 300000
        sweep_interval_ms = 200
        sweep_batch = 2
    "#;
    let mut stack = Stack::start_with(&(overlay(60_000) + windows)).await;
    point(&mut stack, inst.base_url());
    let daemon = stack.daemon();
    stack
        .send("payment", "old", payment(&pva(NUMBER), "ref-old", "150000"))
        .await;
    let first = stack.answer("old").await;
    assert_eq!(first["rc"], "SUCCESS", "{first}");

    let record = format!("ipg:{{PAS01}}:ppay:{CHANNEL}:ref-old");
    let index = "ipg:{PAS01}:ppays";
    let member = format!("{CHANNEL}:ref-old");
    // The institution's keys share its hash tag: on a cluster, its slot's master holds them.
    let url = if stack.redis.is_cluster() {
        format!("redis://127.0.0.1:{}/", stack.redis.master_of(&record))
    } else {
        stack.settings.redis.url.clone()
    };
    let mut redis = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let left = |r: redis::aio::MultiplexedConnection| {
        let (member, record) = (member.clone(), record.clone());
        async move {
            let (score, ttl): (Option<f64>, i64) = redis::pipe()
                .cmd("ZSCORE")
                .arg(index)
                .arg(&member)
                .cmd("PTTL")
                .arg(&record)
                .query_async(&mut r.clone())
                .await
                .unwrap();
            (score, ttl)
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (score, ttl) = left(redis.clone()).await;
        if score.is_none() {
            // Out of the index, the record kept for the reference window.
            assert!(
                ttl > 200_000,
                "the record expires with the reference window: {ttl}"
            );
            let bytes: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&record)
                .query_async(&mut redis)
                .await
                .unwrap();
            eprintln!("MEMORY USAGE of a settled forwarded payment's record: {bytes:?} bytes");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never left the index");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack
        .send(
            "payment",
            "old-again",
            payment(&pva(NUMBER), "ref-old", "150000"),
        )
        .await;
    let again = stack.answer("old-again").await;
    for f in ["rc", "message", "timestamp", "data"] {
        assert_eq!(first[f], again[f], "{f}: {first} vs {again}");
    }
    assert_eq!(inst.hits("payment").len(), 1, "asked once");
    stack
        .send(
            "check_status",
            "cs-old",
            check_status(&pva(NUMBER), "ref-old"),
        )
        .await;
    let a = stack.answer("cs-old").await;
    assert_eq!(a["data"]["payment"]["status"], "paid", "{a}");
    daemon.stop().await;
    stack.assert_verify_agrees().await;

    // From the journal alone: the same record, out of the index, expiring.
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut redis)
        .await
        .unwrap();
    let journal = stack.settings.journal(&stack.broker.bootstrap);
    journal
        .replay(
            &stack.switch().hosted.store,
            ipg_switch::journal::From::Beginning,
            &mut ipg_switch::journal::Quiet,
        )
        .await
        .unwrap();
    let (score, ttl) = left(redis.clone()).await;
    assert_eq!(score, None, "restored out of the index");
    assert!(ttl > 200_000, "restored with its expiry: {ttl}");
    stack.assert_verify_agrees().await;
}
