//! A passive institution for the demo, and a small reference of IPG's Passive Client API
//! as ipg-switch calls it: `POST /inquiry`, `/payment`, `/reversal`, `/check-status`,
//! bodies signed with HMAC-SHA256 (`Signature`, lowercase hex) with the institution's key,
//! answers signed the same way. Bills live in memory, loaded from a JSON file.
//!
//! Delay mode: a bill with `"delay_ms": N` answers its `/payment` N ms late (the payment is
//! taken at once, only the answer waits). With N above the switch's `passive.timeout_ms`
//! (5000 by default) the switch answers the channel `BILLER_SUSPECT_TRANSACTION` and its
//! resolver then confirms the payment with `/check-status`: a payment in doubt, resolved.
//!
//! `cargo run --example passive_institution -- LISTEN KEY BILLS.json`
//! (scripts/run-demo.sh starts it on 127.0.0.1:8082 for PST01 of config/demo.toml).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

#[derive(Default)]
struct Books {
    /// virtual_account → (bill, paid).
    bills: HashMap<String, (Value, bool)>,
    /// payment_ref → (virtual_account, amount, reversed).
    payments: HashMap<String, (String, u64, bool)>,
    /// virtual_account → how long its `/payment` answer is held back (delay mode).
    delays: HashMap<String, Duration>,
}

#[derive(Clone)]
struct Institution {
    key: Arc<Vec<u8>>,
    books: Arc<Mutex<Books>>,
}

fn field<'a>(b: &'a Value, name: &str) -> &'a str {
    b.get(name).and_then(Value::as_str).unwrap_or_default()
}

impl Institution {
    fn answer(&self, status: StatusCode, rc: &str, data: Value) -> Response {
        let message = if rc == "SUCCESS" {
            "success".to_owned()
        } else {
            rc.to_lowercase()
        };
        let body = json!({"rc": rc, "message": message,
            "timestamp": chrono::Local::now().to_rfc3339(), "data": data})
        .to_string();
        let sig = ipg_switch::signature::sign(&self.key, body.as_bytes());
        (
            status,
            [
                ("content-type", "application/json"),
                ("signature", sig.as_str()),
            ],
            body,
        )
            .into_response()
    }

    fn handle(&self, endpoint: &str, b: &Value) -> (&'static str, Value) {
        let mut books = self.books.lock().unwrap_or_else(|p| p.into_inner());
        let va = field(b, "virtual_account").to_owned();
        let reference = match field(b, "payment_ref") {
            "" => field(b, "reference_id").to_owned(),
            r => r.to_owned(),
        };
        match endpoint {
            "inquiry" => match books.bills.get(&va) {
                None => ("BILLER_BILL_NOT_FOUND", Value::Null),
                Some((_, true)) => ("BILLER_BILL_ALREADY_PAID", Value::Null),
                Some((bill, false)) => ("SUCCESS", bill.clone()),
            },
            "payment" => {
                if let Some((v, _, false)) = books.payments.get(&reference) {
                    let bill = books.bills.get(v).map(|b| b.0.clone()).unwrap_or_default();
                    return ("SUCCESS", bill); // the same payment again: same answer
                }
                let amount = b.get("amount").and_then(Value::as_u64).unwrap_or(0);
                let Some((bill, paid)) = books.bills.get_mut(&va) else {
                    return ("BILLER_BILL_NOT_FOUND", Value::Null);
                };
                if *paid {
                    return ("BILLER_BILL_ALREADY_PAID", Value::Null);
                }
                if bill["total_amount"].as_u64() != Some(amount) {
                    return ("BILLER_INVALID_TRANSACTION_AMOUNT", Value::Null);
                }
                *paid = true;
                bill["paid_amount"] = json!(amount);
                bill["billed_amount"] = json!(0);
                bill["status"] = json!("paid");
                let bill = bill.clone();
                books.payments.insert(reference, (va, amount, false));
                ("SUCCESS", bill)
            }
            "check-status" => match books.payments.get(&reference) {
                None => ("BILLER_PAYMENT_NOT_FOUND", Value::Null),
                Some((_, _, true)) => ("BILLER_PAYMENT_ALREADY_REVERSED", Value::Null),
                Some((v, amount, false)) => (
                    "SUCCESS",
                    json!({"payment_ref": reference, "virtual_account": v, "amount": amount,
                           "status": "paid"}),
                ),
            },
            "reversal" => {
                let Some((v, amount, reversed)) = books.payments.get_mut(&reference) else {
                    return ("BILLER_PAYMENT_NOT_FOUND", Value::Null);
                };
                if *reversed {
                    return ("BILLER_PAYMENT_ALREADY_REVERSED", Value::Null);
                }
                *reversed = true;
                let (v, amount) = (v.clone(), *amount);
                if let Some((bill, paid)) = books.bills.get_mut(&v) {
                    *paid = false;
                    bill["paid_amount"] = json!(0);
                    bill["billed_amount"] = json!(amount);
                    bill["status"] = json!("active");
                }
                (
                    "SUCCESS",
                    json!({"payment_ref": reference, "status": "reversed"}),
                )
            }
            _ => ("BILLER_INVALID_TRANSACTION", Value::Null),
        }
    }
}

async fn serve(
    State(inst): State<Institution>,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signed = headers
        .get("signature")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| ipg_switch::signature::verify(&inst.key, &body, s));
    if !signed {
        return inst.answer(
            StatusCode::UNAUTHORIZED,
            "BILLER_AUTHENTICATION",
            Value::Null,
        );
    }
    let Ok(b) = serde_json::from_slice::<Value>(&body) else {
        return inst.answer(
            StatusCode::BAD_REQUEST,
            "BILLER_INVALID_TRANSACTION",
            Value::Null,
        );
    };
    let (rc, mut data) = inst.handle(&endpoint, &b);
    let va = field(&b, "virtual_account");
    let delay = match endpoint.as_str() {
        "payment" => inst
            .books
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .delays
            .get(va)
            .copied(),
        _ => None,
    };
    // Answers carry the full 16-digit VA, as in IPG's examples.
    if data.get("va_number").is_some() {
        data["va_number"] = json!(format!(
            "{}{}",
            field(&b, "prefix"),
            field(&b, "virtual_account")
        ));
    }
    match delay {
        Some(d) => {
            println!(
                "{endpoint} {va} -> {rc}, answering in {} ms (delay mode)",
                d.as_millis()
            );
            tokio::time::sleep(d).await;
        }
        None => println!("{endpoint} {va} -> {rc}"),
    }
    inst.answer(StatusCode::OK, rc, data)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, key, bills] = args.as_slice() else {
        return Err("usage: passive_institution LISTEN KEY BILLS.json".into());
    };
    let list: Vec<Value> = serde_json::from_slice(&std::fs::read(bills)?)?;
    let mut books = Books::default();
    for b in list {
        let va = field(&b, "virtual_account").to_owned();
        let amount = b["amount"].as_u64().unwrap_or(0);
        let bill = json!({"hash": format!("p{va}"), "va_number": va, "type": "close",
            "name": b["name"], "customer_name": b["customer_name"], "total_amount": amount,
            "billed_amount": amount, "paid_amount": 0, "status": "active"});
        if let Some(ms) = b.get("delay_ms").and_then(Value::as_u64) {
            books.delays.insert(va.clone(), Duration::from_millis(ms));
        }
        books.bills.insert(va, (bill, false));
    }
    let inst = Institution {
        key: Arc::new(key.as_bytes().to_vec()),
        books: Arc::new(Mutex::new(books)),
    };
    let app = axum::Router::new()
        .route("/ipg/{endpoint}", axum::routing::post(serve))
        .with_state(inst);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("passive institution on http://{listen}/ipg");
    axum::serve(listener, app).await?;
    Ok(())
}
