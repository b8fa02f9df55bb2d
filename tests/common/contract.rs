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

/// The committed OpenAPI document (docs/openapi.json, generated from the handlers), parsed.
pub fn openapi() -> &'static Value {
    static DOC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        serde_json::from_str(include_str!("../../docs/openapi.json")).expect("docs/openapi.json")
    })
}

/// Whether `path` (as requested) is an instance of the document's `template`
/// (`/api/v2/gw/bill/{hash}`).
fn instance_of(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}') && !p.is_empty()))
}

/// The JSON schema docs/openapi.json gives the answer to `method path` with `status`
/// (falling back to its `default` answer), `None` when the document names no JSON body.
/// Panics when the document has the operation but not the answer: the daemon answered
/// something its contract does not say. A path or method the document does not have
/// (a test of refusals of unknown routes) is `None`.
pub fn openapi_answer_schema(method: &str, path: &str, status: u16) -> Option<Value> {
    let doc = openapi();
    let method = method.to_ascii_lowercase();
    let (template, op) = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(t, item)| instance_of(t, path) && item.get(&method).is_some())
        // A literal segment beats a parameter (`/bill/batch` over `/bill/{hash}`).
        .max_by_key(|(t, _)| t.matches('{').count() == 0)
        .map(|(t, item)| (t.clone(), &item[&method]))?;
    let answers = &op["responses"];
    let mut answer = answers
        .get(status.to_string())
        .or_else(|| answers.get("default"))
        .unwrap_or_else(|| {
            panic!("docs/openapi.json: {method} {template} does not answer {status}")
        });
    if let Some(r) = answer.get("$ref").and_then(Value::as_str) {
        answer = doc
            .pointer(r.trim_start_matches('#'))
            .expect("response $ref");
    }
    answer["content"]["application/json"].get("schema").cloned()
}

/// A validator of `schema` (a part of the OpenAPI document `doc`), its references resolved
/// in `doc`.
pub fn openapi_validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let root = json!({"allOf": [schema], "components": {"schemas": doc["components"]["schemas"]}});
    jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("{schema}: {e}"))
}

/// Panics, naming every violation, unless `body` is what docs/openapi.json says `method
/// path` answers with `status` (a JSON body; other bodies are not checked).
pub fn assert_http_answer(method: &str, path: &str, status: u16, body: &Value) {
    let Some(schema) = openapi_answer_schema(method, path, status) else {
        return;
    };
    if body.is_string() {
        return; // not JSON (a CSV statement, say)
    }
    let v = openapi_validator(openapi(), &schema);
    let errors: Vec<String> = v
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} answered {status} outside docs/openapi.json: {errors:?}\n{body}"
    );
}
