//! Machine-readable contracts generated from the code (issue 27): the AsyncAPI 3.0.0
//! document of the switch's Kafka side (docs/asyncapi.yaml, written by `ipg-switch
//! contract asyncapi`). Every topic is a channel at the address the configuration gives
//! it, with its key, headers and partitioning rule; every payload is the JSON Schema of
//! the Rust type that writes it (derived with `schemars`, the serializing side), so the
//! document cannot drift from the messages: `tests/contracts.rs` fails when the committed
//! file differs from the generated one, validates it against AsyncAPI 3.0.0's own schema,
//! and validates docs/*.md examples and messages the daemon sends against it.

use schemars::generate::{Contract, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::protocol::schema::{ChannelRequestMessage, PassiveAuditEvent};
use crate::protocol::{ChannelResponse, WebhookJob};
use crate::settings::Settings;

/// Where the message schemas live in the document.
pub const SCHEMAS: &str = "#/components/schemas/";

/// The Kafka binding version of the document's message keys (AsyncAPI Kafka bindings).
const KAFKA_BINDING: &str = "0.5.0";

/// The AsyncAPI 3.0.0 document of the topics `settings` name.
pub fn asyncapi(settings: &Settings) -> Value {
    let mut gen = SchemaSettings::draft07()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.contract = Contract::Serialize;
            s.meta_schema = None;
        })
        .into_generator();
    let request = sub::<ChannelRequestMessage>(&mut gen).to_value();
    let response = sub::<ChannelResponse<Value>>(&mut gen).to_value();
    let webhook = sub::<WebhookJob>(&mut gen).to_value();
    let webhook_envelope = sub::<crate::webhook::deliver::Envelope>(&mut gen).to_value();
    let passive = sub::<PassiveAuditEvent>(&mut gen).to_value();
    let journal = sub::<crate::store::journal::Event>(&mut gen).to_value();
    let part = sub::<crate::journal::snapshot::Part>(&mut gen).to_value();
    let index = sub::<crate::journal::snapshot::Taken>(&mut gen).to_value();
    let schemas: Map<String, Value> = gen
        .take_definitions(true)
        .into_iter()
        .collect::<Map<String, Value>>();
    let t = &settings.topics;
    let tiers = settings.webhook.backoff.len();
    let key = |description: &str| {
        json!({"kafka": {"key": {"type": "string", "description": description},
                          "bindingVersion": KAFKA_BINDING}})
    };
    let text = |description: &str| json!({"type": "string", "description": description});
    let messages = json!({
        "ChannelRequest": {
            "name": "ChannelRequest",
            "title": "Channel request",
            "summary": "A bank's inquiry, payment, reversal or check status (docs/protocol.md \"Requests\").",
            "contentType": "application/json",
            "headers": {"type": "object", "required": ["signature"], "properties": {
                "signature": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$",
                    "description": "hex HMAC-SHA256 of the exact value bytes, keyed with the channel's api_key (header name matched case-insensitively)"}}},
            "payload": request,
            "bindings": key("the 16-digit VA number when the body has one: one VA's requests stay on one partition and are answered in order"),
        },
        "ChannelResponse": {
            "name": "ChannelResponse",
            "title": "Channel response",
            "summary": "One answer per request, with the request's key (docs/protocol.md \"Responses\").",
            "contentType": "application/json",
            "payload": response,
            "bindings": key("the request's key"),
        },
        "DeadLetter": {
            "name": "DeadLetter",
            "title": "Dead letter",
            "summary": "Input that could not be served, as it came (docs/protocol.md \"Dead letters\").",
            "contentType": "application/octet-stream",
            "headers": {"type": "object", "required": ["reason", "reason_code", "source_topic", "source_partition", "source_offset"], "properties": {
                "reason": text("why, for people"),
                "reason_code": {"type": "string", "enum": ["malformed_json", "unaddressable", "bad_signature", "unknown_channel", "invalid_field", "internal"]},
                "source_topic": text("the topic it was read from"),
                "source_partition": text("its partition (decimal)"),
                "source_offset": text("its offset (decimal)"),
                "signature": text("the original signature header, if any")}},
            "payload": {"description": "the original value bytes, unchanged (not necessarily JSON)"},
            "bindings": key("the original key"),
        },
        "WebhookJob": {
            "name": "WebhookJob",
            "title": "Webhook job",
            "summary": "A payment or reversal to notify a hosted institution of (docs/protocol.md \"Webhook jobs\"); body is what the institution receives.",
            "contentType": "application/json",
            "payload": webhook,
            "bindings": key("bill_hash: one bill's events stay on one partition, in order"),
        },
        "WebhookEnvelope": {
            "name": "WebhookEnvelope",
            "title": "Webhook retry or dead letter",
            "summary": "A webhook job with every attempt so far (docs/webhooks.md \"Topics\"); reason on dead letters only.",
            "contentType": "application/json",
            "payload": webhook_envelope,
            "bindings": key("bill_hash"),
        },
        "PassiveAuditEvent": {
            "name": "PassiveAuditEvent",
            "title": "Passive payment resolution step",
            "summary": "One resolution step of a payment in doubt at a passive institution (docs/protocol.md \"Passive institutions\").",
            "contentType": "application/json",
            "payload": passive,
            "bindings": key("<channel>|<reference>"),
        },
        "JournalEvent": {
            "name": "JournalEvent",
            "title": "Journal event",
            "summary": "A committed change of bills or money, the record Redis is rebuilt from (docs/journal.md).",
            "contentType": "application/json",
            "payload": journal,
            "bindings": key("the institution's code: one institution, one partition"),
        },
        "SnapshotPart": {
            "name": "SnapshotPart",
            "title": "Snapshot part",
            "summary": "Part of a snapshot of an institution's working set, events in the journal's shape (docs/retention.md \"Snapshots\").",
            "contentType": "application/json",
            "payload": part,
            "bindings": key("the institution's code"),
        },
        "SnapshotIndex": {
            "name": "SnapshotIndex",
            "title": "Snapshot index record",
            "summary": "One record per complete snapshot: where its parts are and the journal offset it replays from.",
            "contentType": "application/json",
            "payload": index,
            "bindings": key("the institution's code"),
        },
    });
    let channel = |address: &str, message: &str, description: &str| {
        json!({"address": address, "description": description,
               "messages": {message: {"$ref": format!("#/components/messages/{message}")}}})
    };
    let mut retry = channel(
        &format!("{}.{{tier}}", t.webhook_retry_prefix),
        "WebhookEnvelope",
        "Webhook jobs waiting for retry n, delay webhook.backoff_ms[n-1] (one topic per entry).",
    );
    retry["parameters"] = json!({"tier": {
        "description": format!("the retry tier, 1 to {tiers} (webhook.backoff_ms)"),
        "enum": (1..=tiers).map(|n| n.to_string()).collect::<Vec<_>>()}});
    let channels = json!({
        "request": channel(&t.request, "ChannelRequest", "Channel requests from banks (topics.request)."),
        "response": channel(&t.response, "ChannelResponse", "One answer per request (topics.response)."),
        "deadLetter": channel(&t.dead_letter, "DeadLetter", "Input that could not be served (topics.dead_letter)."),
        "webhook": channel(&t.webhook, "WebhookJob", "Webhook jobs for hosted institutions (topics.webhook)."),
        "webhookRetry": retry,
        "webhookDeadLetter": channel(&t.webhook_dead_letter, "WebhookEnvelope", "Webhook jobs that failed every attempt (topics.webhook_dead_letter)."),
        "passiveEvents": channel(&t.passive_events, "PassiveAuditEvent", "Resolution steps of payments in doubt at passive institutions (topics.passive_events)."),
        "journal": channel(&t.journal, "JournalEvent", "The system of record, kept forever (topics.journal, retention.ms = -1)."),
        "snapshot": channel(&t.snapshot, "SnapshotPart", "Snapshots of Redis's working set, in parts (topics.snapshot)."),
        "snapshotIndex": channel(&t.snapshot_index, "SnapshotIndex", "One record per complete snapshot, kept forever (topics.snapshot_index)."),
    });
    let op = |action: &str, channel: &str, summary: &str| json!({"action": action, "channel": {"$ref": format!("#/channels/{channel}")}, "summary": summary});
    let operations = json!({
        "receiveRequest": op("receive", "request", "The switch serves each request once per reference (idempotent under at-least-once delivery)."),
        "sendResponse": op("send", "response", "The answer, sent only once what it promises is journaled."),
        "sendDeadLetter": op("send", "deadLetter", "Broken input, with why; the offset moves on."),
        "sendWebhookJob": op("send", "webhook", "Queued before the payment or reversal is answered."),
        "receiveWebhookJob": op("receive", "webhook", "The webhook dispatcher delivers the job to the institution."),
        "sendWebhookRetry": op("send", "webhookRetry", "A failed delivery, to its next tier."),
        "receiveWebhookRetry": op("receive", "webhookRetry", "Delivered again once due."),
        "sendWebhookDeadLetter": op("send", "webhookDeadLetter", "A job that failed every attempt (see `ipg-switch webhook replay`)."),
        "sendPassiveEvent": op("send", "passiveEvents", "Each resolution step, before the next."),
        "sendJournalEvent": op("send", "journal", "Every change of bills and money, acknowledged before it is answered."),
        "receiveJournalEvent": op("receive", "journal", "Recovery, restore, verify, statements and reconciliation read it."),
        "sendSnapshot": op("send", "snapshot", "A snapshot's parts, then its index record."),
        "sendSnapshotIndex": op("send", "snapshotIndex", "Written last: a snapshot without one is never used."),
    });
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "ipg-switch Kafka API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The Kafka side of ipg-switch: what banks send and receive, what the switch queues for institutions, and the journal it is rebuilt from. Generated from the code by `ipg-switch contract asyncapi`: never edit by hand. Topic names are the configuration's ([topics]); every topic is created through the admin API, never auto-created.",
        },
        "defaultContentType": "application/json",
        "servers": {"kafka": {"host": "{bootstrap}", "protocol": "kafka",
            "description": "The brokers (TLS and SASL per the [kafka] section).",
            "variables": {"bootstrap": {"default": "localhost:9092",
                "description": "kafka.bootstrap_servers (`embedded`: a broker in the daemon's process, for the demo and tests)"}}}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    })
}

/// [`asyncapi`] as YAML.
///
/// # Errors
/// None in practice (a JSON value is always YAML).
pub fn asyncapi_yaml(settings: &Settings) -> String {
    yaml_serde::to_string(&asyncapi(settings)).unwrap_or_default()
}

/// The OpenAPI 3.1 document of the HTTP API `settings` serve, pretty JSON (docs/openapi.json
/// with the defaults; [`crate::api::openapi`]).
pub fn openapi_json(settings: &Settings) -> String {
    let doc = crate::api::openapi::for_settings(&settings.api, &settings.snap);
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

fn sub<T: JsonSchema>(gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
    gen.subschema_for::<T>()
}
