//! One webhook call, and the records a job carries between topics.
//!
//! The body sent is `job.body` serialized once; the `Signature` header is the lowercase hex
//! HMAC-SHA256 of exactly those bytes with the institution's API key (IPG's Webhook Call),
//! and `X-Ipg-Event-Id` repeats the body's stable `id` so receivers can drop duplicates
//! without parsing. Any 2xx is delivered; redirects are not followed (a signed POST is not
//! re-sent elsewhere), so a 3xx is a failure like any other non-2xx.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::protocol::webhook::WebhookJob;
use crate::signature;

pub use crate::signature::SIGNATURE_HEADER;
pub const EVENT_ID_HEADER: &str = "X-Ipg-Event-Id";

/// One attempt's outcome, kept with the job through the retry tiers into the dead letter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Attempt {
    /// When the call started (RFC 3339, UTC).
    pub at: String,
    /// `delivered`, `http_status`, `timeout`, `connect` or `error` (also the metric label).
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

impl Attempt {
    pub fn delivered(&self) -> bool {
        self.outcome == "delivered"
    }
}

/// A job on a retry tier or the webhook dead-letter topic: the job as the switch queued
/// it, every attempt so far, and when it is due (ms since the epoch).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Envelope {
    pub job: WebhookJob,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    #[serde(default)]
    pub due_ms: i64,
    /// Dead letters only: `exhausted`, `unknown_institution` or `no_webhook_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// POSTs the job's body to `url`, signed with `key`.
pub async fn call(http: &reqwest::Client, url: &str, key: &[u8], job: &WebhookJob) -> Attempt {
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let started = Instant::now();
    let body = match serde_json::to_vec(&job.body) {
        Ok(b) => b,
        Err(e) => {
            return Attempt {
                at,
                outcome: "error".into(),
                status: None,
                error: Some(format!("body: {e}")),
                duration_ms: 0,
            }
        }
    };
    let sig = signature::sign(key, &body);
    let sent = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, sig)
        .header(EVENT_ID_HEADER, &job.id)
        .body(body)
        .send()
        .await;
    let (outcome, status, error) = match sent {
        Ok(r) if r.status().is_success() => ("delivered", Some(r.status().as_u16()), None),
        Ok(r) => (
            "http_status",
            Some(r.status().as_u16()),
            Some(format!("HTTP {}", r.status())),
        ),
        Err(e) if e.is_timeout() => ("timeout", None, Some(e.to_string())),
        Err(e) if e.is_connect() => ("connect", None, Some(error_chain(&e))),
        Err(e) => ("error", None, Some(error_chain(&e))),
    };
    Attempt {
        at,
        outcome: outcome.into(),
        status,
        error,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

/// reqwest's top-level message alone says little ("error sending request"); keep causes.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_and_a_plain_job_is_not_one() {
        let job = WebhookJob::new(
            "payment.received",
            "p1",
            "SCH01",
            None,
            "hash",
            "2026-01-10T10:00:00+07:00".into(),
            serde_json::json!({"hash": "hash"}).into(),
            serde_json::json!({"id": "p1"}).into(),
        );
        let env = Envelope {
            job: job.clone(),
            attempts: vec![Attempt {
                at: "2026-01-10T03:00:00.000Z".into(),
                outcome: "http_status".into(),
                status: Some(500),
                error: Some("HTTP 500".into()),
                duration_ms: 3,
            }],
            due_ms: 42,
            reason: None,
        };
        let bytes = serde_json::to_vec(&env).unwrap();
        assert_eq!(serde_json::from_slice::<Envelope>(&bytes).unwrap(), env);
        // Replay tells dead letters from stray input by this.
        let plain = serde_json::to_vec(&job).unwrap();
        assert!(serde_json::from_slice::<Envelope>(&plain).is_err());
    }
}
