//! A fake passive institution: an axum server playing IPG's Passive Client API
//! (`POST /ipg/inquiry`, `/ipg/payment`, `/ipg/reversal`, `/ipg/check-status`), with
//! signed JSON envelopes, in-memory bills and payments, and scriptable failure modes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use ipg_switch::signature;
use serde_json::{json, Value};

/// The endpoints the fake institution serves, under `/ipg/`.
pub const ENDPOINTS: [&str; 4] = ["inquiry", "payment", "reversal", "check-status"];

/// Timestamp every answer carries.
pub const TIMESTAMP: &str = "2026-11-22T10:00:00+07:00";

/// Key used to sign answers in [`Mode::WrongSignature`].
pub const WRONG_KEY: &str = "not-the-key";

/// How an endpoint answers a (correctly signed) request.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Answer per the normal rules.
    Normal,
    /// Apply the request first (state changes happen), then sleep, then answer normally.
    SlowThenNormal(Duration),
    /// No processing; reply with that HTTP status and body "internal error" (text/plain).
    Status(u16),
    /// No processing; 200 with body `<html>oops</html>` (not JSON), signed.
    Garbage,
    /// Process normally, but sign the answer with the wrong key [`WRONG_KEY`].
    WrongSignature,
    /// No processing; answer that rc, signed.
    Rc(&'static str),
    /// No processing; answer rc `BILLER_SUSPECT_TRANSACTION`, signed.
    Suspect,
    /// Apply the request, then answer rc `BILLER_SUSPECT_TRANSACTION`.
    SuspectApplied,
    /// No processing; sleep 1 hour (the client times out).
    Hang,
    /// Apply the request, then sleep 1 hour.
    HangApplied,
}

#[derive(Clone, Debug)]
struct Bill {
    amount: u64,
    paid: bool,
}

#[derive(Clone, Debug)]
struct Payment {
    virtual_account: String,
    amount: u64,
    state: &'static str,
    /// The `data` of the SUCCESS answer, replayed on an idempotent retry.
    data: Value,
}

#[derive(Default)]
struct Inner {
    bills: HashMap<String, Bill>,
    payments: HashMap<String, Payment>,
    hits: HashMap<String, Vec<Value>>,
    bad_signatures: usize,
    modes: HashMap<String, Mode>,
    queued: HashMap<String, VecDeque<Mode>>,
}

/// A running fake institution; cheap to clone (shared state).
#[derive(Clone)]
pub struct Institution {
    inner: Arc<Mutex<Inner>>,
    port: u16,
    key: Arc<str>,
}

/// A normal-rule answer: (rc, message, data).
type Answer = (&'static str, String, Value);

fn answer(rc: &'static str, data: Value) -> Answer {
    let message = match rc {
        "SUCCESS" => "success".to_owned(),
        other => other
            .trim_start_matches("BILLER_")
            .to_lowercase()
            .replace('_', " "),
    };
    (rc, message, data)
}

fn text(body: &Value, field: &str) -> String {
    match body.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn amount(body: &Value) -> Option<u64> {
    match body.get("amount")? {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn bill_object(va: &str, prefix: &str, amount: u64, paid: bool) -> Value {
    json!({
        "hash": format!("h{va}"),
        "va_number": format!("{prefix}{va}"),
        "type": "close",
        "name": "SPP",
        "customer_name": "Budi",
        "total_amount": amount,
        "billed_amount": amount,
        "paid_amount": if paid { amount } else { 0 },
        "status": if paid { "paid" } else { "active" },
    })
}

impl Inner {
    /// Runs the normal rule for `endpoint`, changing state, and returns its answer.
    fn apply(&mut self, endpoint: &str, body: &Value) -> Answer {
        match endpoint {
            "inquiry" => {
                let va = text(body, "virtual_account");
                let prefix = text(body, "prefix");
                match self.bills.get(&va) {
                    None => answer("BILLER_BILL_NOT_FOUND", Value::Null),
                    Some(b) if b.paid => answer("BILLER_BILL_ALREADY_PAID", Value::Null),
                    Some(b) => answer("SUCCESS", bill_object(&va, &prefix, b.amount, false)),
                }
            }
            "payment" => {
                let va = text(body, "virtual_account");
                let prefix = text(body, "prefix");
                let payment_ref = match text(body, "payment_ref") {
                    r if r.is_empty() => text(body, "reference_id"),
                    r => r,
                };
                if let Some(p) = self.payments.get(&payment_ref) {
                    if p.state == "paid" {
                        return answer("SUCCESS", p.data.clone());
                    }
                }
                let Some(bill) = self.bills.get_mut(&va) else {
                    return answer("BILLER_BILL_NOT_FOUND", Value::Null);
                };
                if bill.paid {
                    return answer("BILLER_BILL_ALREADY_PAID", Value::Null);
                }
                if amount(body) != Some(bill.amount) {
                    return answer("BILLER_INVALID_TRANSACTION_AMOUNT", Value::Null);
                }
                bill.paid = true;
                let data = bill_object(&va, &prefix, bill.amount, true);
                self.payments.insert(
                    payment_ref,
                    Payment {
                        virtual_account: va,
                        amount: bill.amount,
                        state: "paid",
                        data: data.clone(),
                    },
                );
                answer("SUCCESS", data)
            }
            "check-status" => {
                let payment_ref = text(body, "payment_ref");
                match self.payments.get(&payment_ref) {
                    None => answer("BILLER_PAYMENT_NOT_FOUND", Value::Null),
                    Some(p) if p.state == "reversed" => {
                        answer("BILLER_PAYMENT_ALREADY_REVERSED", Value::Null)
                    }
                    Some(p) => answer(
                        "SUCCESS",
                        json!({
                            "payment_ref": payment_ref,
                            "virtual_account": p.virtual_account,
                            "amount": p.amount,
                            "status": "paid",
                        }),
                    ),
                }
            }
            "reversal" => {
                let payment_ref = text(body, "payment_ref");
                match self.payments.get_mut(&payment_ref) {
                    None => answer("BILLER_PAYMENT_NOT_FOUND", Value::Null),
                    Some(p) if p.state == "reversed" => {
                        answer("BILLER_PAYMENT_ALREADY_REVERSED", Value::Null)
                    }
                    Some(p) => {
                        p.state = "reversed";
                        if let Some(b) = self.bills.get_mut(&p.virtual_account) {
                            b.paid = false;
                        }
                        answer(
                            "SUCCESS",
                            json!({"payment_ref": payment_ref, "status": "reversed"}),
                        )
                    }
                }
            }
            _ => answer("BILLER_INVALID_REQUEST", Value::Null),
        }
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(body))
        .unwrap()
}

fn signed(status: StatusCode, content_type: &str, key: &str, bytes: Vec<u8>) -> Response {
    let sig = signature::sign(key.as_bytes(), &bytes);
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header("Signature", sig)
        .body(Body::from(bytes))
        .unwrap()
}

fn envelope(status: StatusCode, key: &str, (rc, message, data): Answer) -> Response {
    let bytes = serde_json::to_vec(&json!({
        "rc": rc,
        "message": message,
        "timestamp": TIMESTAMP,
        "data": data,
    }))
    .unwrap();
    signed(status, "application/json", key, bytes)
}

async fn handle(
    State(inst): State<Institution>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(endpoint) = uri
        .path()
        .strip_prefix("/ipg/")
        .filter(|e| ENDPOINTS.contains(e))
        .map(str::to_owned)
    else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    if method != Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let key: &str = &inst.key;
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let sig_ok = headers
        .get("signature")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| signature::verify(key.as_bytes(), &body, s));

    // Record, pick the mode and apply state changes under the lock; never sleep holding it.
    let (mode, applied) = {
        let mut inner = inst.inner.lock().unwrap();
        inner
            .hits
            .entry(endpoint.clone())
            .or_default()
            .push(parsed.clone());
        if !sig_ok {
            inner.bad_signatures += 1;
            drop(inner);
            return envelope(
                StatusCode::UNAUTHORIZED,
                key,
                answer("BILLER_AUTHENTICATION", Value::Null),
            );
        }
        let mode = inner
            .queued
            .get_mut(&endpoint)
            .and_then(VecDeque::pop_front)
            .or_else(|| inner.modes.get(&endpoint).cloned())
            .unwrap_or(Mode::Normal);
        let applies = matches!(
            mode,
            Mode::Normal
                | Mode::SlowThenNormal(_)
                | Mode::WrongSignature
                | Mode::SuspectApplied
                | Mode::HangApplied
        );
        let applied = applies.then(|| inner.apply(&endpoint, &parsed));
        (mode, applied)
    };

    match mode {
        Mode::Normal => envelope(StatusCode::OK, key, applied.unwrap()),
        Mode::WrongSignature => envelope(StatusCode::OK, WRONG_KEY, applied.unwrap()),
        Mode::SlowThenNormal(d) => {
            tokio::time::sleep(d).await;
            envelope(StatusCode::OK, key, applied.unwrap())
        }
        Mode::Status(code) => plain(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "internal error",
        ),
        Mode::Garbage => signed(
            StatusCode::OK,
            "application/json",
            key,
            b"<html>oops</html>".to_vec(),
        ),
        Mode::Rc(rc) => envelope(StatusCode::OK, key, answer(rc, Value::Null)),
        Mode::Suspect | Mode::SuspectApplied => envelope(
            StatusCode::OK,
            key,
            answer("BILLER_SUSPECT_TRANSACTION", Value::Null),
        ),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            plain(StatusCode::GATEWAY_TIMEOUT, "internal error")
        }
        Mode::HangApplied => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            envelope(StatusCode::OK, key, applied.unwrap())
        }
    }
}

impl Institution {
    /// Binds 127.0.0.1 on a free port and serves in the background.
    pub async fn start(key: &str) -> Institution {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let inst = Institution {
            inner: Arc::default(),
            port,
            key: Arc::from(key),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inst.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        inst
    }

    /// `http://127.0.0.1:{port}/ipg`
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/ipg", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Adds an unpaid close bill for the 10-digit VA number (without prefix).
    pub fn add_bill(&self, virtual_account: &str, amount: u64) {
        self.inner.lock().unwrap().bills.insert(
            virtual_account.to_owned(),
            Bill {
                amount,
                paid: false,
            },
        );
    }

    /// Sets the default mode of an endpoint ("inquiry", "payment", "reversal", "check-status").
    pub fn set_mode(&self, endpoint: &str, mode: Mode) {
        self.inner
            .lock()
            .unwrap()
            .modes
            .insert(endpoint.to_owned(), mode);
    }

    /// Queues one-shot modes, consumed in order by the next correctly signed calls of
    /// `endpoint`, before its default mode applies again.
    pub fn push_modes(&self, endpoint: &str, modes: Vec<Mode>) {
        self.inner
            .lock()
            .unwrap()
            .queued
            .entry(endpoint.to_owned())
            .or_default()
            .extend(modes);
    }

    /// Request bodies received by `endpoint`, in order (`Value::Null` if not JSON),
    /// including those with bad signatures.
    pub fn hits(&self, endpoint: &str) -> Vec<Value> {
        self.inner
            .lock()
            .unwrap()
            .hits
            .get(endpoint)
            .cloned()
            .unwrap_or_default()
    }

    /// How many requests had a missing or wrong `Signature` header.
    pub fn bad_signatures(&self) -> usize {
        self.inner.lock().unwrap().bad_signatures
    }

    /// "paid", "reversed", or `None` if the payment is unknown.
    pub fn payment_state(&self, payment_ref: &str) -> Option<String> {
        self.inner
            .lock()
            .unwrap()
            .payments
            .get(payment_ref)
            .map(|p| p.state.to_owned())
    }

    /// Sum of the amounts of the payments currently "paid" for `virtual_account`.
    pub fn paid_total(&self, virtual_account: &str) -> u64 {
        self.inner
            .lock()
            .unwrap()
            .payments
            .values()
            .filter(|p| p.state == "paid" && p.virtual_account == virtual_account)
            .map(|p| p.amount)
            .sum()
    }

    /// Polls `f` every 20 ms until it returns `Some`, or panics naming `what` after `secs`.
    pub async fn wait_for<T>(
        &self,
        secs: u64,
        what: &str,
        f: impl Fn(&Institution) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(t) = f(self) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {secs}s waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
