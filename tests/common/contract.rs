//! The AsyncAPI contract (docs/asyncapi.yaml, generated from the code) as validators of
//! each message's payload: the docs' examples and the messages the daemon sends in the
//! integration tests must be valid for it.

use serde_json::{json, Value};

/// The committed AsyncAPI document, parsed.
pub fn document() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/asyncapi.yaml"))
        .expect("docs/asyncapi.yaml");
    yaml_serde::from_str(&text).expect("docs/asyncapi.yaml is YAML")
}

/// A validator of `message`'s payload (a name under `components.messages`).
pub fn validator(doc: &Value, message: &str) -> jsonschema::Validator {
    let payload = &doc["components"]["messages"][message]["payload"];
    assert!(
        payload.is_object(),
        "no message {message} in docs/asyncapi.yaml"
    );
    let root = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "allOf": [payload],
        "components": {"schemas": doc["components"]["schemas"]},
    });
    jsonschema::draft7::new(&root).unwrap_or_else(|e| panic!("{message}'s schema: {e}"))
}

/// Panics, naming every violation, unless `value` is a valid `message` payload.
pub fn assert_valid(v: &jsonschema::Validator, message: &str, value: &Value) {
    let errors: Vec<String> = v
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not a valid {message} per docs/asyncapi.yaml: {errors:?}\n{value}"
    );
}
