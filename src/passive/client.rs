//! Calls to one passive institution: signed, pooled, bounded in time and concurrency, behind
//! a circuit breaker. A call ends in a [`Reply`]: the institution's answer with a known rc,
//! or a [`Failure`] that says whether the request may have reached it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Semaphore;

use crate::error::Rc;
use crate::metrics as m;
use crate::passive::ResponseSignature;
use crate::protocol::json::JsonError;
use crate::signature;
use crate::signature::SIGNATURE_HEADER;

/// Larger answers are not read: no institution answers a VA request with megabytes.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The institution's answer, with an rc the switch knows.
#[derive(Clone, Debug, PartialEq)]
pub struct Answered {
    pub rc: Rc,
    pub message: String,
    pub data: Value,
}

/// Why a call produced no usable answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// The request never left: breaker open, no call slot in time, connection refused.
    NotSent { label: &'static str, detail: String },
    /// Sent, no answer in time: the institution may have acted on it.
    Timeout,
    /// Sent and answered with something unusable (5xx, not JSON, unknown rc, bad
    /// signature): the institution may have acted on it.
    Invalid { label: &'static str, detail: String },
}

impl Failure {
    /// Whether the institution may have received (and acted on) the request.
    pub fn maybe_received(&self) -> bool {
        !matches!(self, Failure::NotSent { .. })
    }

    /// Bounded label (metrics, audit events).
    pub fn label(&self) -> &'static str {
        match self {
            Failure::NotSent { label, .. } | Failure::Invalid { label, .. } => label,
            Failure::Timeout => "timeout",
        }
    }

    /// Safe to show to a channel: no body, no key.
    pub fn describe(&self) -> String {
        match self {
            Failure::NotSent { detail, .. } | Failure::Invalid { detail, .. } => detail.clone(),
            Failure::Timeout => "the institution did not answer in time".into(),
        }
    }
}

pub type Reply = Result<Answered, Failure>;

/// Consecutive failures open the breaker; while open, calls fail at once; after
/// `open_for`, one call goes through as a probe: success closes it, failure re-opens it.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Debug, Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
    /// A probe in flight since this instant (half-open).
    probe: Option<Instant>,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Breaker {
        Breaker {
            threshold,
            open_for,
            state: Mutex::new(BreakerState::default()),
        }
    }

    /// Whether a call may go now. In the half-open state only one probe goes at a time (a
    /// probe lost for longer than `open_for` makes room for another).
    pub fn allow(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match s.open_until {
            None => true,
            Some(t) if now < t => false,
            Some(_) => match s.probe {
                Some(p) if now.duration_since(p) < self.open_for => false,
                _ => {
                    s.probe = Some(now);
                    true
                }
            },
        }
    }

    /// Records a call's end; returns `Some(open)` when the breaker changed state.
    pub fn record(&self, ok: bool) -> Option<bool> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let was_open = s.open_until.is_some();
        if ok {
            *s = BreakerState::default();
            return was_open.then_some(false);
        }
        s.failures += 1;
        if s.probe.is_some() || s.failures >= self.threshold {
            s.open_until = Some(Instant::now() + self.open_for);
            s.probe = None;
            return (!was_open).then_some(true);
        }
        None
    }
}

/// One passive institution's endpoint and limits.
#[derive(Debug)]
pub struct Forwarder {
    pub code: String,
    pub base_url: String,
    key: Vec<u8>,
    pub timeout: Duration,
    slots: Semaphore,
    response_signature: ResponseSignature,
    pub breaker: Breaker,
}

impl Forwarder {
    pub fn new(
        code: &str,
        base_url: &str,
        key: &str,
        timeout: Duration,
        concurrency: usize,
        response_signature: ResponseSignature,
        breaker: Breaker,
    ) -> Forwarder {
        Forwarder {
            code: code.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            key: key.as_bytes().to_vec(),
            timeout,
            slots: Semaphore::new(concurrency),
            response_signature,
            breaker,
        }
    }

    /// POSTs `body` to `<base_url>/<endpoint>`, signed, and reads the answer. Counts it in
    /// the metrics and the breaker.
    pub async fn call(
        &self,
        http: &reqwest::Client,
        endpoint: &'static str,
        body: &impl serde::Serialize,
    ) -> Reply {
        let started = Instant::now();
        let reply = self.call_inner(http, endpoint, body, started).await;
        let label = match &reply {
            Ok(a) => a.rc.as_str(),
            Err(f) => f.label(),
        };
        metrics::counter!(m::PASSIVE_REQUESTS_TOTAL, "institution" => self.code.clone(),
            "endpoint" => endpoint, "outcome" => label)
        .increment(1);
        if !matches!(
            reply,
            Err(Failure::NotSent {
                label: "breaker_open",
                ..
            })
        ) {
            metrics::histogram!(m::PASSIVE_REQUEST_SECONDS, "institution" => self.code.clone(),
                "endpoint" => endpoint)
            .record(started.elapsed().as_secs_f64());
            m::stage(m::Stage::Institution).record(started.elapsed().as_secs_f64());
            let ok = match &reply {
                Ok(_) => Some(true),
                // A full local queue says nothing about the institution.
                Err(Failure::NotSent { label: "busy", .. }) => None,
                Err(_) => Some(false),
            };
            if let Some(open) = ok.and_then(|ok| self.breaker.record(ok)) {
                metrics::gauge!(m::PASSIVE_BREAKER_OPEN, "institution" => self.code.clone())
                    .set(if open { 1.0 } else { 0.0 });
                if open {
                    tracing::warn!(institution = %self.code, "circuit breaker opened: answering at once until a probe succeeds");
                } else {
                    tracing::info!(institution = %self.code, "circuit breaker closed: institution answers again");
                }
            }
        }
        reply
    }

    async fn call_inner(
        &self,
        http: &reqwest::Client,
        endpoint: &'static str,
        body: &impl serde::Serialize,
        started: Instant,
    ) -> Reply {
        if !self.breaker.allow() {
            return Err(Failure::NotSent {
                label: "breaker_open",
                detail: format!(
                    "institution {} is unavailable (circuit open); retry later",
                    self.code
                ),
            });
        }
        let Ok(Ok(_slot)) = tokio::time::timeout(self.timeout, self.slots.acquire()).await else {
            return Err(Failure::NotSent {
                label: "busy",
                detail: format!("institution {} has too many calls in flight", self.code),
            });
        };
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let left = self.timeout.saturating_sub(started.elapsed());
        let sent = http
            .post(format!("{}/{endpoint}", self.base_url))
            .timeout(left.max(Duration::from_millis(1)))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .header(SIGNATURE_HEADER, signature::sign(&self.key, &bytes))
            .body(bytes)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return Err(Failure::NotSent {
                    label: "connect",
                    detail: format!("institution {} refused the connection", self.code),
                })
            }
            Err(e) if e.is_timeout() => return Err(Failure::Timeout),
            Err(_) => {
                return Err(Failure::Invalid {
                    label: "transport",
                    detail: format!("the call to institution {} failed", self.code),
                })
            }
        };
        let status = resp.status();
        let sig = resp
            .headers()
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let left = self.timeout.saturating_sub(started.elapsed());
        let body = match tokio::time::timeout(left, read_limited(resp)).await {
            Err(_) => return Err(Failure::Timeout),
            Ok(Err(e)) if e.is_timeout() => return Err(Failure::Timeout),
            Ok(Err(_)) | Ok(Ok(None)) => {
                return Err(Failure::Invalid {
                    label: "transport",
                    detail: format!("the answer of institution {} could not be read", self.code),
                })
            }
            Ok(Ok(Some(b))) => b,
        };
        if status.is_server_error() {
            return Err(Failure::Invalid {
                label: "http_5xx",
                detail: format!(
                    "institution {} answered HTTP {}",
                    self.code,
                    status.as_u16()
                ),
            });
        }
        let signed_ok = match (&sig, self.response_signature) {
            (_, ResponseSignature::Off) | (None, ResponseSignature::IfPresent) => true,
            (None, ResponseSignature::Required) => false,
            (Some(s), _) => signature::verify(&self.key, &body, s),
        };
        if !signed_ok {
            return Err(Failure::Invalid {
                label: "bad_signature",
                detail: format!(
                    "the answer of institution {} is not signed with its key",
                    self.code
                ),
            });
        }
        parse_answer(&self.code, status.as_u16(), &body)
    }
}

async fn read_limited(mut resp: reqwest::Response) -> reqwest::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

/// An answer envelope `{rc, message, timestamp, data}` with a known rc (any HTTP status
/// below 500: institutions answer refusals with 4xx and an rc as often as with 200).
fn parse_answer(code: &str, status: u16, body: &[u8]) -> Reply {
    let invalid = |label: &'static str, why: &str| Failure::Invalid {
        label,
        detail: format!("institution {code} answered {why} (HTTP {status})"),
    };
    // A repeated `rc` is refused like broken JSON: the switch never picks one of two
    // outcomes. A name repeated deeper (in `data`, say) decides nothing here: the answer is
    // read as serde_json reads it, and the repeat is logged.
    let v: Value = match crate::protocol::json::parse(body) {
        Ok(v) => v,
        Err(JsonError::Malformed(_)) => return Err(invalid("not_json", "no JSON")),
        Err(JsonError::Duplicate { path }) => {
            if crate::protocol::json::top_level_repeat(body).is_some_and(|n| n == "rc") {
                return Err(invalid("not_json", "JSON repeating rc"));
            }
            tracing::warn!(institution = code, repeated = %path, "institution answered JSON repeating a name; read as its last value");
            serde_json::from_slice(body).map_err(|_| invalid("not_json", "no JSON"))?
        }
    };
    let rc = v
        .get("rc")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("not_json", "JSON without an rc"))?;
    let rc = Rc::ALL
        .into_iter()
        .find(|r| r.as_str() == rc)
        .ok_or_else(|| invalid("unknown_rc", "an unknown rc"))?;
    Ok(Answered {
        rc,
        message: v
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .chars()
            .take(512)
            .collect(),
        data: v.get("data").cloned().unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_threshold_and_probes_once() {
        let b = Breaker::new(2, Duration::from_millis(30));
        assert!(b.allow());
        assert_eq!(b.record(false), None);
        assert_eq!(b.record(false), Some(true));
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow(), "one probe after the open period");
        assert!(!b.allow(), "only one probe at a time");
        assert_eq!(
            b.record(false),
            None,
            "a failed probe re-opens (still open)"
        );
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow());
        assert_eq!(b.record(true), Some(false));
        assert!(b.allow() && b.allow());
    }

    #[test]
    fn answers_need_a_known_rc() {
        assert!(matches!(
            parse_answer("X", 200, br#"{"rc":"SUCCESS","data":{"a":1}}"#),
            Ok(Answered {
                rc: Rc::Success,
                ..
            })
        ));
        assert!(matches!(
            parse_answer("X", 404, br#"{"rc":"BILLER_BILL_NOT_FOUND"}"#),
            Ok(Answered {
                rc: Rc::BillerBillNotFound,
                ..
            })
        ));
        for (body, label) in [
            (&b"<html>"[..], "not_json"),
            (br#"{"status":"ok"}"#, "not_json"),
            (br#"{"rc":"OK"}"#, "unknown_rc"),
        ] {
            assert_eq!(parse_answer("X", 200, body).unwrap_err().label(), label);
        }
    }
}
