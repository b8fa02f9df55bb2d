//! One message's journey, top to bottom: decode and verify → route, lock and handle →
//! publish the answer (+ webhook job, + dead letter) → let the caller store the offset.

use std::time::Instant;

use tracing::{field::Empty, Instrument};

use super::publish::{sleep_or_shutdown, Outgoing};
use super::Ctx;
use crate::error::{Disposition, SwitchError};
use crate::hosted::Outcome;
use crate::metrics as m;
use crate::protocol::channel::{self, Address};
use crate::protocol::{ChannelRequest, ChannelResponse};

/// A consumed request, owned (the borrowed message cannot cross tasks).
pub struct Inbound {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub signature: Option<String>,
    pub received: Instant,
}

/// What to publish for one request.
struct Answer {
    address: Option<Address>,
    outcome: Outcome,
    dead_letter: Option<(&'static str, String)>,
    institution: String,
}

/// Processes one message. Returns `true` once everything it produced is acknowledged by
/// Kafka (its offset may then be stored), `false` if shutdown interrupted it (it will be
/// consumed again).
pub async fn process(ctx: &Ctx, msg: &Inbound) -> bool {
    let span = tracing::info_span!(
        "message",
        topic = %msg.topic,
        partition = msg.partition,
        offset = msg.offset,
        r#type = Empty,
        channel = Empty,
    );
    async {
        let t = Instant::now();
        let decoded = channel::decode(&msg.payload, msg.signature.as_deref(), &ctx.switch.routing);
        metrics::histogram!(m::STAGE_SECONDS, "stage" => "decode").record(t.elapsed().as_secs_f64());

        let answer = match decoded {
            Ok(req) => {
                let span = tracing::Span::current();
                span.record("type", req.kind.as_str());
                span.record("channel", req.channel.as_str());
                let Some(result) = handle_until_final(ctx, &req).await else {
                    return false;
                };
                answer_for(ctx, &req, result)
            }
            Err(rej) => {
                tracing::warn!(reason = rej.reason, error = %rej.error, "rejected input");
                Answer {
                    address: rej.address,
                    outcome: Outcome::from_error(&rej.error, &ctx.switch.clock),
                    dead_letter: Some((rej.reason, rej.error.to_string())),
                    institution: "none".into(),
                }
            }
        };
        if !publish(ctx, msg, &answer).await {
            return false;
        }
        record(ctx, msg, &answer);
        true
    }
    .instrument(span)
    .await
}

/// Handles a request, retrying while the answer cannot be known (Redis away, VA busy).
/// `None` if shutdown came first.
async fn handle_until_final(ctx: &Ctx, req: &ChannelRequest) -> Option<Result<Outcome, SwitchError>> {
    let mut backoff = ctx.retry_initial;
    loop {
        let result = ctx.switch.handle(req).await;
        match &result {
            Err(e) if e.disposition() == Disposition::Retry => {
                let cause = if matches!(e, SwitchError::Store(_)) { "store" } else { "busy" };
                if cause == "store" {
                    ctx.set_redis_up(false);
                }
                metrics::counter!(m::RETRIES_TOTAL, "cause" => cause).increment(1);
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "cannot answer yet, retrying");
                if !sleep_or_shutdown(backoff, &ctx.shutdown).await {
                    return None;
                }
                backoff = (backoff * 2).min(ctx.retry_max);
            }
            _ => {
                ctx.set_redis_up(true);
                return Some(result);
            }
        }
    }
}

fn answer_for(ctx: &Ctx, req: &ChannelRequest, result: Result<Outcome, SwitchError>) -> Answer {
    let address = Some(Address {
        request_id: req.request_id.clone(),
        kind: req.kind.as_str().to_owned(),
        channel: req.channel.clone(),
    });
    let institution = ctx.switch.institution_of(req).unwrap_or("none").to_owned();
    match result {
        Ok(outcome) => Answer { address, outcome, dead_letter: None, institution },
        Err(e) => {
            let dead_letter = (e.disposition() == Disposition::AnswerAndDeadLetter).then(|| ("invalid_field", e.to_string()));
            if dead_letter.is_some() {
                tracing::warn!(error = %e, "request refused and dead-lettered");
            }
            Answer { address, outcome: Outcome::from_error(&e, &ctx.switch.clock), dead_letter, institution }
        }
    }
}

async fn publish(ctx: &Ctx, msg: &Inbound, a: &Answer) -> bool {
    let key: &[u8] = match (&msg.key, &a.address) {
        (Some(k), _) => k,
        (None, Some(addr)) => addr.request_id.as_bytes(),
        (None, None) => b"",
    };
    let response = a.address.as_ref().map(|addr| {
        ChannelResponse {
            request_id: addr.request_id.clone(),
            kind: addr.kind.clone(),
            channel: addr.channel.clone(),
            rc: a.outcome.rc,
            message: a.outcome.message.clone(),
            timestamp: a.outcome.timestamp.clone(),
            data: a.outcome.data.clone(),
        }
        .to_bytes()
    });
    let send_response = async {
        match &response {
            Some(bytes) => {
                let out = Outgoing { topic: &ctx.topics.response, key, payload: bytes, headers: &[] };
                ctx.publisher.send(&out, &ctx.shutdown).await
            }
            None => true,
        }
    };
    let send_webhook = async {
        match &a.outcome.webhook {
            Some(w) => {
                let out = Outgoing { topic: &ctx.topics.webhook, key: w.key.as_bytes(), payload: w.job.as_bytes(), headers: &[] };
                ctx.publisher.send(&out, &ctx.shutdown).await
            }
            None => true,
        }
    };
    let send_dead_letter = async {
        match &a.dead_letter {
            Some((code, reason)) => {
                let partition = msg.partition.to_string();
                let offset = msg.offset.to_string();
                let mut headers: Vec<(&str, &[u8])> = vec![
                    ("reason", reason.as_bytes()),
                    ("reason_code", code.as_bytes()),
                    ("source_topic", msg.topic.as_bytes()),
                    ("source_partition", partition.as_bytes()),
                    ("source_offset", offset.as_bytes()),
                ];
                if let Some(sig) = &msg.signature {
                    headers.push(("signature", sig.as_bytes()));
                }
                let out = Outgoing { topic: &ctx.topics.dead_letter, key, payload: &msg.payload, headers: &headers };
                ctx.publisher.send(&out, &ctx.shutdown).await
            }
            None => true,
        }
    };
    let (r, w, d) = tokio::join!(send_response, send_webhook, send_dead_letter);
    r && w && d
}

fn record(ctx: &Ctx, msg: &Inbound, a: &Answer) {
    let kind = a
        .address
        .as_ref()
        .map(|x| x.kind.as_str())
        .filter(|k| matches!(*k, "inquiry" | "payment" | "reversal" | "check_status"))
        .unwrap_or("unknown")
        .to_owned();
    let channel = a
        .address
        .as_ref()
        .map(|x| x.channel.as_str())
        .filter(|c| ctx.switch.routing.channel_key(c).is_some())
        .unwrap_or("unknown")
        .to_owned();
    if a.address.is_some() {
        metrics::counter!(m::MESSAGES_TOTAL, "type" => kind.clone(), "channel" => channel, "institution" => a.institution.clone(), "rc" => a.outcome.rc.as_str())
            .increment(1);
    }
    if let Some((code, _)) = &a.dead_letter {
        metrics::counter!(m::DEAD_LETTERS_TOTAL, "reason" => *code).increment(1);
    }
    if let Some(w) = &a.outcome.webhook {
        metrics::counter!(m::WEBHOOK_JOBS_TOTAL, "event" => w.event).increment(1);
    }
    metrics::histogram!(m::MESSAGE_SECONDS, "type" => kind).record(msg.received.elapsed().as_secs_f64());
}
