//! docs/protocol.md cannot drift from the code: every request example decodes (signed
//! with a test key), every response, webhook and bill example parses with the types the
//! daemon uses, and every rc is documented.

use ipg_switch::error::Rc;
use ipg_switch::protocol::channel::ChannelResponse;
use ipg_switch::protocol::WebhookJob;
use ipg_switch::settings::Settings;
use ipg_switch::switch::decode;
use ipg_switch::{domain::NewBill, signature};

#[path = "common/examples.rs"]
mod examples;

fn examples(kind: &str) -> Vec<String> {
    examples::doc_examples("protocol.md", kind)
}

#[test]
fn request_examples_decode() {
    let settings =
        Settings::from_toml(&["[[channels]]\ncode = \"bank_syariah\"\napi_key = \"k\"\n"]).unwrap();
    let routing = settings.routing();
    for ex in examples("request") {
        let sig = signature::sign(b"k", ex.as_bytes());
        if let Err(r) = decode(ex.as_bytes(), Some(&sig), &routing) {
            panic!("documented request does not decode ({}): {ex}", r.error);
        }
    }
}

#[test]
fn response_webhook_and_bill_examples_parse() {
    for ex in examples("response") {
        let r: ChannelResponse = serde_json::from_str(&ex).unwrap_or_else(|e| panic!("{e}: {ex}"));
        assert!(r.timestamp.ends_with("+07:00"));
    }
    for ex in examples("webhook") {
        let j: WebhookJob = serde_json::from_str(&ex).unwrap_or_else(|e| panic!("{e}: {ex}"));
        assert_eq!(j.id, j.body.id);
    }
    let now = chrono::DateTime::parse_from_rfc3339("2026-01-10T10:00:00+07:00").unwrap();
    for ex in examples("bill") {
        let v: serde_json::Value = serde_json::from_str(&ex).unwrap();
        NewBill::from_json(&v, now).unwrap_or_else(|e| panic!("{e}: {ex}"));
    }
}

#[test]
fn every_rc_is_documented() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol.md")).unwrap();
    for rc in Rc::ALL {
        assert!(
            doc.contains(&format!("| `{}` |", rc.as_str())),
            "{} missing from the rc table",
            rc.as_str()
        );
    }
}
