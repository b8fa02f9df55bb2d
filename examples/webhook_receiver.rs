//! A webhook receiver for the demo, and a small reference of what an institution does with
//! ipg-switch's webhook calls (docs/webhooks.md): `POST <webhook_url>` with the body
//! `{"id", "event", "context", "payload"}`, header `Signature` = lowercase hex
//! HMAC-SHA256 of exactly the body bytes keyed with the institution's API key, and
//! `X-Ipg-Event-Id` = the event's stable id.
//!
//! It checks the signature over the raw bytes (before parsing: re-serialized JSON would not
//! be the bytes that were signed), answers 401 when it does not match and 200 otherwise,
//! and prints each event on stdout. Delivery is at-least-once, so an event id seen before
//! is printed as a repeat and acknowledged again (a real receiver drops it).
//!
//! `cargo run --example webhook_receiver -- LISTEN KEY`
//! (scripts/run-demo.sh starts it on 127.0.0.1:8081 with SCH01's key of config/demo.toml,
//! whose `webhook_url` is `http://127.0.0.1:8081/ipg/webhook`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

#[derive(Clone)]
struct Receiver {
    key: Arc<Vec<u8>>,
    seen: Arc<Mutex<HashSet<String>>>,
}

/// Whether `signature` (hex, either case, surrounding spaces ignored) is the HMAC-SHA256 of
/// `body` with `key`; the MAC comparison is constant-time.
fn signature_ok(key: &[u8], body: &[u8], signature: &str) -> bool {
    let Ok(given) = hex::decode(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

async fn webhook(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signature = header("signature").unwrap_or_default();
    if !signature_ok(&r.key, &body, signature) {
        println!(
            "REFUSED (401): bad or missing Signature header on a {}-byte body",
            body.len()
        );
        return (StatusCode::UNAUTHORIZED, "bad signature\n");
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        println!("REFUSED (400): signed body is not JSON");
        return (StatusCode::BAD_REQUEST, "not JSON\n");
    };
    let id = header("x-ipg-event-id")
        .map(str::to_owned)
        .unwrap_or_else(|| text(&event["id"]));
    let repeat = !r
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone());
    println!(
        "{} id={id} bill={} va={} amount={} channel={} ref={} bill_status={}{}",
        text(&event["event"]),
        text(&event["context"]["hash"]),
        text(&event["context"]["va_number"]),
        text(&event["payload"]["amount"]),
        text(&event["payload"]["channel"]),
        text(&event["payload"]["payment_ref_id"]),
        text(&event["context"]["status"]),
        if repeat {
            " (repeat: already seen, acknowledged again)"
        } else {
            ""
        },
    );
    (StatusCode::OK, "ok\n")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, key] = args.as_slice() else {
        return Err(
            "usage: webhook_receiver LISTEN KEY   (e.g. 127.0.0.1:8081 demo-sch01-key)".into(),
        );
    };
    let receiver = Receiver {
        key: Arc::new(key.as_bytes().to_vec()),
        seen: Arc::new(Mutex::new(HashSet::new())),
    };
    let app = axum::Router::new()
        .route("/ipg/webhook", axum::routing::post(webhook))
        .with_state(receiver);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("webhook receiver on http://{listen}/ipg/webhook");
    axum::serve(listener, app).await?;
    Ok(())
}
