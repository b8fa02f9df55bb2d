//! Webhook delivery end to end: payments produced to Kafka make real webhook jobs, the
//! daemon's dispatcher delivers them to an HTTP receiver on loopback that records every
//! request and answers 200, 500 or hangs, switchable while the test runs.

mod common;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use ipg_switch::settings::Settings;
use ipg_switch::signature;
use ipg_switch::webhook::replay::{self, Filter};
use serde_json::{json, Value};

const OK: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
struct Hit {
    body: Vec<u8>,
    signature: Option<String>,
    event_id: Option<String>,
    content_type: Option<String>,
    /// The status the receiver answered (0: it hung).
    answered: u16,
}

impl Hit {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn id(&self) -> String {
        self.json()["id"].as_str().unwrap_or_default().to_owned()
    }
}

#[derive(Clone, Default)]
struct Receiver {
    mode: Arc<AtomicU8>,
    hits: Arc<Mutex<Vec<Hit>>>,
    url: String,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mode = r.mode.load(Ordering::SeqCst);
    let answered = match mode {
        OK => 200,
        FAIL => 500,
        _ => 0,
    };
    r.hits.lock().unwrap().push(Hit {
        body: body.to_vec(),
        signature: h("signature"),
        event_id: h("x-ipg-event-id"),
        content_type: h("content-type"),
        answered,
    });
    match mode {
        OK => StatusCode::OK,
        FAIL => StatusCode::INTERNAL_SERVER_ERROR,
        _ => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::OK
        }
    }
}

impl Receiver {
    async fn start(mode: u8) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let r = Receiver {
            mode: Arc::new(AtomicU8::new(mode)),
            hits: Arc::default(),
            url: format!("http://{addr}/ipg/webhook"),
        };
        let app = axum::Router::new().fallback(receive).with_state(r.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        r
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Polls until `f` finds what it wants, or panics after `secs`.
    async fn wait_for<T>(
        &self,
        what: &str,
        secs: u64,
        mut f: impl FnMut(&[Hit]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(t) = f(&self.hits()) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; receiver saw {:?}",
                self.hits()
                    .iter()
                    .map(|h| (h.id(), h.answered))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `id` was answered 200.
    async fn delivered(&self, id: &str, secs: u64) -> Hit {
        self.wait_for(&format!("delivery of {id}"), secs, |hits| {
            hits.iter()
                .find(|h| h.id() == id && h.answered == 200)
                .cloned()
        })
        .await
    }
}

/// Fast retries for tests: `tiers` delays of `delay_ms`.
fn overlay(tiers: usize, delay_ms: u64) -> String {
    let backoff = vec![delay_ms.to_string(); tiers].join(", ");
    format!(
        r#"
        [webhook]
        backoff_ms = [{backoff}]
        jitter = 0.1
        request_timeout_ms = 1500
        connect_timeout_ms = 500
        rate_per_second = 0
        gate_ttl_ms = 600000
        "#
    )
}

/// A stack whose institution SCH01 posts its webhooks to `receiver`.
async fn stack_for(receiver: &Receiver, extra: &str) -> Stack {
    let mut stack = Stack::start_with(extra).await;
    point(&mut stack.settings, INST, receiver);
    stack
}

fn point(settings: &mut Settings, code: &str, receiver: &Receiver) {
    let inst = settings
        .institutions
        .iter_mut()
        .find(|i| i.code == code)
        .expect("institution configured");
    inst.webhook_url = Some(receiver.url.clone());
}

/// Pays a fresh close bill of SCH01; returns the payment's webhook event id.
async fn pay(stack: &Stack, number: &str) -> (String, String) {
    let bill = stack.create_bill(bill_body(number, "close", 50_000)).await;
    let v = va(PREFIX, number);
    let rid = format!("pay-{number}");
    stack
        .send(
            "payment",
            &rid,
            payment(&v, &format!("REF-{number}"), "50000"),
        )
        .await;
    assert_eq!(stack.answer(&rid).await["rc"], "SUCCESS");
    let id = job_id(stack, &bill.hash, "payment.received").await;
    (id, bill.hash)
}

/// The id of the webhook job the switch queued for `bill` and `event`.
async fn job_id(stack: &Stack, bill: &str, event: &str) -> String {
    stack
        .webhooks
        .wait_for(&format!("{event} job of {bill}"), 30, |m| {
            m.iter()
                .map(Received::json)
                .find(|j| j["bill_hash"] == bill && j["event"] == event)
                .map(|j| j["id"].as_str().unwrap().to_owned())
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_signed_body_with_event_id() {
    let receiver = Receiver::start(OK).await;
    let stack = stack_for(&receiver, &overlay(2, 1000)).await;
    let daemon = stack.daemon();
    let (id, bill) = pay(&stack, "2000000001").await;

    let hit = receiver.delivered(&id, 30).await;
    let sig = hit.signature.clone().expect("Signature header");
    assert!(
        signature::verify(b"inst-key", &hit.body, &sig),
        "signature must be the HMAC of the raw body with the institution key"
    );
    assert_eq!(
        sig,
        signature::sign(b"inst-key", &hit.body),
        "lowercase hex"
    );
    assert_eq!(hit.event_id.as_deref(), Some(id.as_str()));
    assert_eq!(hit.content_type.as_deref(), Some("application/json"));
    let body = hit.json();
    assert_eq!(body["event"], "payment.received");
    assert_eq!(body["context"]["hash"], bill.as_str());
    assert_eq!(body["payload"]["amount"], 50_000);
    // What the institution receives is exactly the job's body.
    let job = stack
        .webhooks
        .all()
        .iter()
        .map(Received::json)
        .find(|j| j["id"] == id.as_str())
        .unwrap();
    assert_eq!(body, job["body"]);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_after_a_failure_then_delivers() {
    let receiver = Receiver::start(FAIL).await;
    let stack = stack_for(&receiver, &overlay(3, 1000)).await;
    let daemon = stack.daemon();
    let (id, _) = pay(&stack, "2000000002").await;

    receiver
        .wait_for("a failed attempt", 30, |h| {
            h.iter()
                .find(|h| h.id() == id && h.answered == 500)
                .cloned()
        })
        .await;
    receiver.set(OK);
    let hit = receiver.delivered(&id, 30).await;
    assert_eq!(hit.event_id.as_deref(), Some(id.as_str()));
    for h in receiver.hits() {
        assert_eq!(h.id(), id, "every attempt carries the same event id");
        assert_eq!(h.event_id.as_deref(), Some(id.as_str()));
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_job_is_dead_lettered_with_attempts_and_replayed() {
    let receiver = Receiver::start(FAIL).await;
    let stack = stack_for(&receiver, &overlay(2, 500)).await;
    let dead = collect(
        &stack.broker.bootstrap,
        &stack.settings.topics.webhook_dead_letter,
    );
    let daemon = stack.daemon();
    let (id, _) = pay(&stack, "2000000003").await;

    let letter = dead
        .wait_for("the dead letter", 60, |m| {
            m.iter()
                .map(Received::json)
                .find(|v| v["job"]["id"] == id.as_str())
        })
        .await;
    assert_eq!(letter["reason"], "exhausted");
    let attempts = letter["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "1 + 2 retries: {letter}");
    for a in attempts {
        assert_eq!(a["outcome"], "http_status", "{a}");
        assert_eq!(a["status"], 500, "{a}");
        assert!(a["at"].is_string(), "{a}");
    }
    assert_eq!(
        receiver.hits().iter().filter(|h| h.id() == id).count(),
        3,
        "one request per attempt"
    );

    receiver.set(OK);
    let other = replay::replay(
        &stack.settings.webhook_wiring(),
        &Filter {
            institution: Some("NOPE".into()),
            id: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(other.replayed, 0, "{other:?}");
    let report = replay::replay(
        &stack.settings.webhook_wiring(),
        &Filter {
            institution: Some(INST.into()),
            id: Some(id.clone()),
        },
    )
    .await
    .unwrap();
    assert_eq!(report.replayed, 1, "{report:?}");
    let hit = receiver.delivered(&id, 30).await;
    assert!(signature::verify(
        b"inst-key",
        &hit.body,
        hit.signature.as_deref().unwrap()
    ));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_retry_still_delivers_every_event() {
    let receiver = Receiver::start(FAIL).await;
    let stack = stack_for(&receiver, &overlay(3, 2000)).await;
    let daemon = stack.daemon();
    let (a, _) = pay(&stack, "2000000004").await;
    let (b, _) = pay(&stack, "2000000005").await;
    receiver
        .wait_for("both events failing once", 30, |h| {
            let failed = |id: &str| h.iter().any(|x| x.id() == id && x.answered == 500);
            (failed(&a) && failed(&b)).then_some(())
        })
        .await;
    // Both wait in a retry tier now; the dispatcher stops before they are due (or, if a
    // retry already ran, the job is simply further along). Nothing is lost either way.
    daemon.stop().await;
    receiver.set(OK);
    let daemon = stack.daemon();
    receiver.delivered(&a, 60).await;
    receiver.delivered(&b, 60).await;
    for h in receiver.hits() {
        let id = h.id();
        assert!(id == a || id == b, "unexpected event {id}");
        assert_eq!(h.event_id.as_deref(), Some(id.as_str()));
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_institution_does_not_delay_another() {
    let good = Receiver::start(OK).await;
    let dead = Receiver::start(HANG).await;
    let extra = format!(
        "{}\nconcurrency = 1\ninstitution_queue = 2\n",
        overlay(2, 60_000)
    );
    let mut stack = stack_for(&good, &extra).await;
    let mut other = stack.settings.institutions[0].clone();
    other.code = "SCH02".into();
    other.name = "Sekolah Mati".into();
    other.prefixes = vec!["857700".into()];
    other.api_key = Some("dead-key".into());
    other.webhook_url = Some(dead.url.clone());
    stack.settings.institutions.push(other);
    let daemon = stack.daemon();

    let dead_jobs = 8;
    for i in 0..dead_jobs {
        let number = format!("30000000{i:02}");
        let mut body = bill_body(&number, "close", 10_000);
        body["institution_code"] = json!("SCH02");
        body["prefix"] = json!("857700");
        stack.create_bill(body).await;
        let rid = format!("dead-{i}");
        stack
            .send(
                "payment",
                &rid,
                payment(&va("857700", &number), &format!("D-{i}"), "10000"),
            )
            .await;
    }
    for i in 0..dead_jobs {
        assert_eq!(stack.answer(&format!("dead-{i}")).await["rc"], "SUCCESS");
    }
    dead.wait_for("the dead institution being called", 30, |h| {
        (!h.is_empty()).then_some(())
    })
    .await;

    let (id, _) = pay(&stack, "2000000006").await;
    good.delivered(&id, 30).await;
    // Had SCH01 queued behind SCH02, it would have waited for every one of SCH02's calls
    // (one slot, each hanging until the request timeout).
    assert!(
        dead.hits().len() < dead_jobs,
        "SCH01 waited for SCH02: {} calls to SCH02 first",
        dead.hits().len()
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversal_never_overtakes_its_payment() {
    let receiver = Receiver::start(FAIL).await;
    let stack = stack_for(&receiver, &overlay(3, 3000)).await;
    let daemon = stack.daemon();
    let (received, bill) = pay(&stack, "2000000007").await;
    receiver
        .wait_for("the payment's first attempt failing", 30, |h| {
            h.iter().find(|h| h.id() == received).cloned()
        })
        .await;
    // The payment now waits in a retry tier; the reversal must queue behind it.
    receiver.set(OK);
    stack
        .send(
            "reversal",
            "rev-7",
            json!({"payment_ref": "REF-2000000007", "amount": 50000, "bill_id": bill}),
        )
        .await;
    assert_eq!(stack.answer("rev-7").await["rc"], "SUCCESS");
    let reversal = job_id(&stack, &bill, "payment.reversal").await;
    receiver.delivered(&reversal, 60).await;

    let hits = receiver.hits();
    let first_reversal = hits.iter().position(|h| h.id() == reversal).unwrap();
    let payment_ok = hits
        .iter()
        .position(|h| h.id() == received && h.answered == 200)
        .expect("the payment was delivered");
    assert!(
        payment_ok < first_reversal,
        "the reversal reached the institution before its payment: {:?}",
        hits.iter()
            .map(|h| (h.id(), h.answered))
            .collect::<Vec<_>>()
    );
    // The reversal went through the gate: it followed the payment instead of being tried.
    let rendered = ipg_switch::metrics::install().render();
    assert!(
        rendered
            .lines()
            .any(|l| l.starts_with("ipg_webhook_results_total")
                && l.contains(r#"result="followed""#)
                && l.contains(&format!(r#"institution="{INST}""#))),
        "no follower counted:\n{rendered}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_command_reads_the_dead_letter_topic() {
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let run = |toml: String, args: &[&str]| {
        let path = dir.path().join("switch.toml");
        std::fs::write(&path, toml).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_ipg-switch"))
            .arg("--config")
            .arg(&path)
            .args(args)
            .output()
            .unwrap()
    };
    // The embedded broker lives inside `ipg-switch run`: nothing to replay from.
    let out = run(String::new(), &["webhook", "replay"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("embedded"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\n",
            stack.broker.bootstrap
        ),
        &["webhook", "replay", "--institution", INST],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("replayed 0 job(s)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
