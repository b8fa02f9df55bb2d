//! Contracts generated from the code (issue 27): docs/asyncapi.yaml and docs/openapi.json
//! are what `ipg-switch contract asyncapi|openapi` print (editing either by hand fails
//! here), they are valid AsyncAPI 3.0.0 and OpenAPI 3.1 documents, every example in
//! docs/protocol.md is valid for its message, and the messages the daemon sends (answers,
//! webhook jobs, dead letters, journal events) are too.

mod common;

use std::process::Command;

use common::examples::doc_examples;
use common::*;
use serde_json::{json, Value};

fn generated() -> String {
    generated_contract("asyncapi")
}

fn generated_contract(kind: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ipg-switch"))
        .args(["contract", kind])
        .env_remove("IPG_ENV")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_committed_asyncapi_document_is_the_generated_one() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/asyncapi.yaml"))
            .unwrap();
    assert!(
        committed == generated(),
        "docs/asyncapi.yaml differs from the code's: run `cargo run -q -- contract asyncapi > \
         docs/asyncapi.yaml` (never edit it by hand)"
    );
}

#[test]
fn the_committed_openapi_document_is_the_generated_one() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).unwrap();
    assert!(
        committed == generated_contract("openapi"),
        "docs/openapi.json differs from the code's: run `cargo run -q -- contract openapi > \
         docs/openapi.json` (never edit it by hand)"
    );
}

fn openapi_document() -> Value {
    serde_json::from_str(include_str!("../docs/openapi.json")).unwrap()
}

/// Every `$ref` of `v`, found anywhere in it.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[test]
fn the_openapi_document_is_valid_openapi_3_1() {
    let meta: Value = serde_json::from_str(include_str!("data/openapi-3.1.json")).unwrap();
    let v = jsonschema::draft202012::new(&meta).unwrap();
    let doc = openapi_document();
    let errors: Vec<String> = v
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // Every reference names something in the document.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 100, "{}", all.len());
    for r in &all {
        let pointer = r.strip_prefix('#').expect("local $ref");
        assert!(doc.pointer(pointer).is_some(), "{r} names nothing");
    }
    // Every component schema is a valid JSON Schema 2020-12 (OpenAPI 3.1's dialect).
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        assert!(jsonschema::meta::is_valid(schema), "schema {name}");
    }
    // Operation ids are unique (a generated client names its methods by them), every
    // operation answers something, every rc is in the enumeration.
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(
                ids.insert(id.to_owned()),
                "{method} {path}: operationId {id} repeated"
            );
            assert!(
                !op["responses"].as_object().unwrap().is_empty(),
                "{method} {path}"
            );
        }
    }
    let rcs = &doc["components"]["schemas"]["Rc"]["enum"];
    for rc in ipg_switch::error::Rc::ALL {
        assert!(
            rcs.as_array().unwrap().contains(&json!(rc.as_str())),
            "{rc:?}"
        );
    }
}

/// The served document is the configuration's: SNAP's paths under `snap.path_prefix`, none
/// when SNAP is off, the server at `api.listen`; the routes come from the same annotations.
#[test]
fn the_served_openapi_document_follows_the_configuration() {
    let mut settings = ipg_switch::settings::Settings::load(None).unwrap();
    let default = ipg_switch::api::openapi::for_settings(&settings.api, &settings.snap);
    assert_eq!(default, openapi_document());
    settings.snap.path_prefix = "/bi".into();
    settings.api.listen = "10.0.0.1:9000".into();
    let moved = ipg_switch::api::openapi::for_settings(&settings.api, &settings.snap);
    assert!(moved["paths"]["/bi/v1.0/transfer-va/payment"]["post"].is_object());
    assert!(moved["paths"]["/snap/v1.0/transfer-va/payment"].is_null());
    assert_eq!(moved["servers"][0]["url"], "http://10.0.0.1:9000");
    settings.snap.path_prefix = String::new();
    let off = ipg_switch::api::openapi::for_settings(&settings.api, &settings.snap);
    let paths = off["paths"].as_object().unwrap();
    assert!(
        paths.keys().all(|p| !p.contains("/v1.0/")),
        "{:?}",
        paths.keys()
    );
    assert_eq!(paths.len(), 21);
}

/// Every example in docs/openapi.json (request bodies, answers) is valid for its schema,
/// and so is every request example of docs/protocol.md for the HTTP door's body of its
/// type (the same bodies as the Kafka requests).
#[test]
fn every_openapi_example_is_valid_for_its_schema() {
    let doc = openapi_document();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let mut media = Vec::new();
            if let Some(c) = op["requestBody"]["content"].as_object() {
                media.extend(c.values());
            }
            for answer in op["responses"].as_object().unwrap().values() {
                if let Some(c) = answer["content"].as_object() {
                    media.extend(c.values());
                }
            }
            for m in media {
                if let Some(example) = m.get("example") {
                    let v = contract::openapi_validator(&doc, &m["schema"]);
                    contract::assert_valid(&v, &format!("{method} {path}"), example);
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 14, "{checked} examples");
    // protocol.md's Create New Bill body is valid for the HTTP door's.
    let new_bill = contract::openapi_validator(
        &doc,
        &doc["paths"]["/api/v2/gw/bill"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"],
    );
    for bill in examples("bill") {
        contract::assert_valid(&new_bill, "Create New Bill", &bill);
    }
    // docs/api.md's token request is valid for POST /oauth/token's body.
    let token = contract::openapi_validator(
        &doc,
        &doc["paths"]["/oauth/token"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"],
    );
    for ex in doc_examples("api.md", "token-request") {
        let ex: Value = serde_json::from_str(&ex).unwrap();
        contract::assert_valid(&token, "OAuth token request", &ex);
    }
    for request in examples("request") {
        let kind = request["type"].as_str().unwrap().replace('_', "-");
        let schema = &doc["paths"][format!("/api/v2/ch/{kind}")]["post"]["requestBody"]["content"]
            ["application/json"]["schema"];
        let v = contract::openapi_validator(&doc, schema);
        contract::assert_valid(&v, &kind, &request["body"]);
    }
    // And the body schemas refuse what the switch refuses.
    let payment = contract::openapi_validator(
        &doc,
        &doc["paths"]["/api/v2/ch/payment"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"],
    );
    for bad in [
        json!({"va_number": "85749900001", "ref_id": "P1", "amount": "1",
               "transaction_date": "2026-01-10 10:16:02"}),
        json!({"va_number": "8574990000000001", "ref_id": "=cmd", "amount": "1",
               "transaction_date": "2026-01-10 10:16:02"}),
        json!({"va_number": "8574990000000001", "ref_id": "P1", "amount": "1.5",
               "transaction_date": "2026-01-10 10:16:02"}),
    ] {
        assert!(!payment.is_valid(&bad), "{bad}");
    }
}

#[test]
fn the_asyncapi_document_is_valid_asyncapi_3() {
    let meta: Value = serde_json::from_str(include_str!("data/asyncapi-3.0.0.json")).unwrap();
    let v = jsonschema::draft7::new(&meta).unwrap();
    let doc = contract::document();
    let errors: Vec<String> = v
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // Every channel of the configuration's topics is there.
    let addresses: Vec<&str> = doc["channels"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    for topic in [
        "ipg.channel.request",
        "ipg.channel.response",
        "ipg.dead_letter",
        "ipg.webhook.job",
        "ipg.webhook.retry.{tier}",
        "ipg.webhook.dead_letter",
        "ipg.passive.event",
        "ipg.journal",
        "ipg.snapshot",
        "ipg.snapshot.index",
    ] {
        assert!(addresses.contains(&topic), "{topic} missing: {addresses:?}");
    }
    // Every rc is in the response's enumeration.
    let rcs = &doc["components"]["schemas"]["Rc"]["enum"];
    for rc in ipg_switch::error::Rc::ALL {
        assert!(
            rcs.as_array().unwrap().contains(&json!(rc.as_str())),
            "{rc:?}"
        );
    }
}

/// docs/protocol.md's examples of `kind`, parsed.
fn examples(kind: &str) -> Vec<Value> {
    doc_examples("protocol.md", kind)
        .iter()
        .map(|e| serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}")))
        .collect()
}

#[test]
fn every_documented_example_is_valid_for_its_message() {
    let doc = contract::document();
    for (kind, message) in [
        ("request", "ChannelRequest"),
        ("response", "ChannelResponse"),
        ("webhook", "WebhookJob"),
    ] {
        let v = contract::validator(&doc, message);
        for ex in examples(kind) {
            contract::assert_valid(&v, message, &ex);
        }
    }
    // The passive audit events (protocol.md) and the journal's events (journal.md).
    let v = contract::validator(&doc, "PassiveAuditEvent");
    for ex in examples("passive_event") {
        contract::assert_valid(&v, "PassiveAuditEvent", &ex);
    }
    let v = contract::validator(&doc, "JournalEvent");
    for ex in doc_examples("journal.md", "event") {
        let ex: Value = serde_json::from_str(&ex).unwrap();
        contract::assert_valid(&v, "JournalEvent", &ex);
    }
    // And the schema refuses what the switch refuses: a formula-like reference, a short VA,
    // an amount that is not whole, an unknown type.
    let v = contract::validator(&doc, "ChannelRequest");
    let good = &examples("request")[1];
    for (path, bad) in [
        ("/body/ref_id", json!("=HYPERLINK(1)")),
        ("/body/va_number", json!("12345")),
        ("/body/amount", json!("350000.50")),
        ("/type", json!("refund")),
    ] {
        let mut b = good.clone();
        *b.pointer_mut(path).unwrap() = bad;
        assert!(!v.is_valid(&b), "{path} accepted: {b}");
    }
}

/// Messages the running daemon sends are valid for the contract: answers to every request
/// type (and to refusals), the webhook jobs of a payment and its reversal, a dead letter's
/// headers, and the journal's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_the_daemon_sends_are_valid_for_the_contract() {
    let stack = Stack::start().await;
    let daemon = stack.daemon();
    let bill = stack
        .create_bill(bill_body("7700000001", "close", 350_000))
        .await;
    let va = bill.va_number.clone();
    stack.send("inquiry", "c1", inquiry(&va, "CI-1")).await;
    stack
        .send("payment", "c2", payment(&va, "CP-1", "350000"))
        .await;
    stack
        .send(
            "reversal",
            "c3",
            json!({"payment_ref": "CP-1", "amount": 350_000, "va_number": va}),
        )
        .await;
    stack.send("payment", "c4", payment(&va, "CP-2", "1")).await;
    for id in ["c1", "c2", "c3", "c4"] {
        stack.answer(id).await;
    }
    stack.produce_raw(None, b"{not json", None).await;
    stack
        .dead_letters
        .wait_for("a dead letter", 30, |m| (!m.is_empty()).then_some(()))
        .await;
    stack
        .webhooks
        .wait_for("two webhook jobs", 30, |m| (m.len() >= 2).then_some(()))
        .await;
    let doc = contract::document();
    stack.assert_messages_match_the_contract();
    // A dead letter's headers.
    let headers = &doc["components"]["messages"]["DeadLetter"]["headers"];
    let hv = jsonschema::draft7::new(headers).unwrap();
    for m in stack.dead_letters.all() {
        let h: serde_json::Map<String, Value> = m
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        assert!(hv.is_valid(&Value::Object(h.clone())), "{h:?}");
    }
    daemon.stop().await;
    // The journal's events.
    let v = contract::validator(&doc, "JournalEvent");
    let journal = stack.settings.journal(&stack.broker.bootstrap);
    let mut events = Vec::new();
    journal
        .scan(&mut ipg_switch::journal::Quiet, &mut |r| {
            events.push(serde_json::to_value(&r.event).unwrap());
        })
        .await
        .unwrap();
    assert!(events.len() >= 3, "{events:?}");
    for e in &events {
        contract::assert_valid(&v, "JournalEvent", e);
    }
}

/// The request schema is never looser than the switch's parser: over thousands of
/// generated requests (valid and broken fields of every kind), every one the schema
/// accepts is decoded by the switch (`switch::decode`, the Kafka and HTTP doors' reader)
/// into a command, never dead-lettered or refused as broken.
#[test]
fn a_request_the_schema_accepts_is_one_the_switch_decodes() {
    use ipg_switch::settings::Settings;
    use ipg_switch::signature;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let settings =
        Settings::from_toml(&["[[channels]]\ncode = \"bank_syariah\"\napi_key = \"k\"\n"]).unwrap();
    let routing = settings.routing();
    let doc = contract::document();
    let v = contract::validator(&doc, "ChannelRequest");
    let text = |good: &'static [&'static str]| {
        prop_oneof![
            12 => proptest::sample::select(good).prop_map(|s| json!(s)),
            1 => "[ -~]{0,70}".prop_map(|s| json!(s)),
            1 => Just(json!(null)),
            1 => any::<i64>().prop_map(|n| json!(n)),
        ]
    };
    let va = text(&[
        "8574990000000001",
        "8574991234567890",
        "857499000000000",
        "85749900000000011",
    ]);
    let reference = text(&[
        "PAY-1",
        "x",
        "=SUM(A1)",
        "+62",
        "-1",
        "@a",
        "a b",
        "REF/2026/001",
    ]);
    let amount = prop_oneof![
        Just(json!("350000")),
        Just(json!(350000)),
        Just(json!("0")),
        Just(json!(-5)),
        Just(json!(1.5)),
        Just(json!("12.00")),
        Just(json!("")),
        any::<u64>().prop_map(|n| json!(n)),
    ];
    let datetime = text(&[
        "2026-01-10 10:15:00",
        "2026-13-40 99:99:99",
        "2026-01-10T10:15:00",
    ]);
    let date = text(&["2026-01-10", "2026-02-30", "10-01-2026"]);
    let kind = proptest::sample::select(vec![
        "inquiry",
        "payment",
        "reversal",
        "check_status",
        "refund",
    ]);
    let request_id = text(&["req-1", "a", "has space"]);
    let optional = |s: BoxedStrategy<Value>| proptest::option::of(s);
    let strategy = (
        kind,
        request_id,
        (va.clone(), reference.clone(), amount, datetime, date),
        (
            optional(va.boxed()),
            optional(text(&["857499"]).boxed()),
            optional(text(&["0000000001"]).boxed()),
            optional(text(&["atm"]).boxed()),
        ),
    );
    let accepted = std::cell::Cell::new(0u32);
    let mut runner = TestRunner::new(Config {
        cases: 4000,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &strategy,
            |(
                kind,
                request_id,
                (va, reference, amount, datetime, date),
                (va2, prefix, number, terminal),
            )| {
                let mut body = serde_json::Map::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        body.insert(k.to_owned(), v);
                    }
                };
                match kind {
                    "inquiry" | "payment" | "refund" => {
                        put("va_number", Some(va));
                        put("ref_id", Some(reference));
                        put("transaction_date", Some(datetime));
                        put("terminal_id", terminal);
                        if kind != "inquiry" {
                            put("amount", Some(amount));
                        }
                    }
                    "reversal" => {
                        put("payment_ref", Some(reference));
                        put("amount", Some(amount));
                        put("va_number", va2);
                    }
                    _ => {
                        put("payment_ref", Some(reference));
                        put("va_number", va2);
                        put("prefix", prefix);
                        put("virtual_account", number);
                        put("date", Some(date));
                    }
                }
                let msg = json!({"type": kind, "channel": "bank_syariah",
                                 "request_id": request_id, "body": body});
                if v.is_valid(&msg) {
                    accepted.set(accepted.get() + 1);
                    let bytes = serde_json::to_vec(&msg).unwrap();
                    let sig = signature::sign(b"k", &bytes);
                    if let Err(r) = ipg_switch::switch::decode(&bytes, Some(&sig), &routing) {
                        return Err(proptest::test_runner::TestCaseError::fail(format!(
                            "the schema accepts what the switch refuses ({}): {msg}",
                            r.error
                        )));
                    }
                }
                Ok(())
            },
        )
        .unwrap();
    let accepted = accepted.get();
    assert!(
        accepted > 100,
        "too few valid requests generated: {accepted}"
    );
}
