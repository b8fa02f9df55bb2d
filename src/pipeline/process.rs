//! One message's journey, top to bottom: decode and verify → route, lock and handle →
//! hand the answer (+ webhook job, + dead letter) to the producer → once Kafka acknowledged
//! it all, let the caller store the offset.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tracing::{field::Empty, Instrument};

use super::Ctx;
use crate::domain::Outcome;
use crate::error::{Disposition, SwitchError};
use crate::kafka::publish::{sleep_or_shutdown, Outgoing};
use crate::lock::Owner;
use crate::metrics as m;
use crate::protocol::channel::Address;
use crate::protocol::{ChannelRequest, ChannelResponse, IpgData};
use crate::routing::Institution;
use crate::switch::Served;

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
    /// The institution for the metric label (`None`: `none`).
    institution: Option<Arc<Institution>>,
}

/// How far [`process`] took a message.
pub enum Step<F> {
    /// Answered: the future resolves to `true` once the answer (+ webhook job, + dead
    /// letter) is acknowledged by Kafka, and the offset may be stored.
    Done(F),
    /// Shutdown interrupted the handling: the message will be consumed again.
    Stopped,
    /// With `park`: the first attempt found the VA's Redis slot unavailable. Handle it
    /// again aside, with this owner (the attempt's; it may hold the VA's lock).
    Park(Owner),
}

enum Handled {
    Final(Served),
    Stopped,
    Park,
}

/// Processes one message up to handing its answer (+ webhook job, + dead letter) to the
/// producer, as the attempt `owner`, retrying while the answer cannot be known; with
/// `park`, a first attempt that finds Redis unavailable returns [`Step::Park`] instead.
pub async fn process(
    ctx: &Arc<Ctx>,
    msg: &Inbound,
    owner: Owner,
    park: bool,
) -> Step<impl Future<Output = bool> + Send + 'static> {
    let span = tracing::info_span!(
        "message",
        topic = %msg.topic,
        partition = msg.partition,
        offset = msg.offset,
        r#type = Empty,
        channel = Empty,
    );
    let answer = async {
        let t = Instant::now();
        let decoded =
            crate::switch::decode(&msg.payload, msg.signature.as_deref(), &ctx.switch.routing);
        m::stage(m::Stage::Decode).record(t.elapsed().as_secs_f64());
        match decoded {
            Ok(req) => {
                let span = tracing::Span::current();
                span.record("type", req.kind.as_str());
                span.record("channel", req.channel());
                match handle_until_final(ctx, &req, &owner, park).await {
                    Handled::Final(served) => Ok(answer_for(ctx, &req, served)),
                    Handled::Stopped => Err(Handled::Stopped),
                    Handled::Park => Err(Handled::Park),
                }
            }
            Err(rej) => {
                tracing::warn!(reason = rej.reason, error = %rej.error, "rejected input");
                Ok(Answer {
                    address: rej.address,
                    outcome: rej.error.outcome(&ctx.switch.clock),
                    dead_letter: Some((rej.reason, rej.error.to_string())),
                    institution: None,
                })
            }
        }
    }
    .instrument(span)
    .await;
    let answer = match answer {
        Ok(a) => a,
        Err(Handled::Park) => return Step::Park(owner),
        Err(_) => return Step::Stopped,
    };

    let acks: Vec<_> = outgoing(ctx, msg, &answer)
        .into_iter()
        .map(|out| ctx.publisher.enqueue(out, ctx.shutdown.clone()))
        .collect();
    let ctx = ctx.clone();
    let received = msg.received;
    Step::Done(async move {
        let all_acked = futures::future::join_all(acks)
            .await
            .into_iter()
            .all(|ok| ok);
        if all_acked {
            record(&ctx, received, &answer);
        }
        all_acked
    })
}

/// Handles a request as the attempt `owner`, retrying while the answer cannot be known
/// (Redis away, VA busy): `Park` instead when `park` and the first attempt found Redis
/// unavailable; `Stopped` if shutdown came first.
async fn handle_until_final(ctx: &Ctx, req: &ChannelRequest, owner: &Owner, park: bool) -> Handled {
    let mut backoff = ctx.retry_initial;
    loop {
        let served = ctx.switch.handle_as(&req.command, owner).await;
        match &served.result {
            Err(e) if e.disposition() == Disposition::Retry => {
                let cause = match e {
                    SwitchError::Store(
                        crate::store::StoreError::Journal(_) | crate::store::StoreError::InDoubt(_),
                    ) => "journal",
                    SwitchError::Store(_) => "store",
                    _ => "busy",
                };
                metrics::counter!(m::RETRIES_TOTAL, "cause" => cause).increment(1);
                if cause == "store" {
                    if park {
                        tracing::warn!(error = %e, "redis slot unavailable: request set aside, retried on its own");
                        return Handled::Park;
                    }
                    // A cluster never pauses the whole consumer for one slot.
                    if !ctx.park {
                        ctx.set_redis_up(false);
                    }
                }
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "cannot answer yet, retrying");
                if !sleep_or_shutdown(backoff, &ctx.shutdown).await {
                    return Handled::Stopped;
                }
                backoff = (backoff * 2).min(ctx.retry_max);
            }
            _ => {
                ctx.set_redis_up(true);
                return Handled::Final(served);
            }
        }
    }
}

fn answer_for(ctx: &Ctx, req: &ChannelRequest, served: Served) -> Answer {
    let address = Some(Address {
        request_id: req.request_id.clone(),
        kind: req.kind.as_str().to_owned(),
        channel: req.channel().to_owned(),
    });
    let Served {
        result,
        institution,
    } = served;
    match result {
        Ok(outcome) => Answer {
            address,
            outcome,
            dead_letter: None,
            institution,
        },
        Err(e) => {
            let dead_letter = (e.disposition() == Disposition::AnswerAndDeadLetter)
                .then(|| (e.reason_code(), e.to_string()));
            if dead_letter.is_some() {
                tracing::warn!(error = %e, "request refused and dead-lettered");
            }
            Answer {
                address,
                outcome: e.outcome(&ctx.switch.clock),
                dead_letter,
                institution,
            }
        }
    }
}

/// The messages one answer produces: the response (when the request can be addressed),
/// the webhook job, the dead-letter entry; the response in IPG's dialect.
fn outgoing(ctx: &Ctx, msg: &Inbound, a: &Answer) -> Vec<Outgoing> {
    let key: Vec<u8> = match (&msg.key, &a.address) {
        (Some(k), _) => k.clone(),
        (None, Some(addr)) => addr.request_id.as_bytes().to_vec(),
        (None, None) => Vec::new(),
    };
    let mut out = Vec::with_capacity(2);
    if let Some(addr) = &a.address {
        let response = ChannelResponse {
            request_id: addr.request_id.clone(),
            kind: addr.kind.clone(),
            channel: addr.channel.clone(),
            rc: a.outcome.rc,
            message: a.outcome.message.clone(),
            timestamp: a.outcome.timestamp.clone(),
            data: (),
        };
        out.push(Outgoing {
            topic: ctx.topics.response.clone(),
            key: key.clone(),
            payload: response.to_bytes_with(IpgData(&a.outcome.shown)),
            headers: Vec::new(),
            partition: None,
        });
    }
    if let Some(w) = &a.outcome.webhook {
        out.push(Outgoing::webhook_job(&ctx.topics.webhook, w));
    }
    if let Some((code, reason)) = &a.dead_letter {
        let mut headers = vec![
            ("reason", reason.as_bytes().to_vec()),
            ("reason_code", code.as_bytes().to_vec()),
            ("source_topic", msg.topic.as_bytes().to_vec()),
            ("source_partition", msg.partition.to_string().into_bytes()),
            ("source_offset", msg.offset.to_string().into_bytes()),
        ];
        if let Some(sig) = &msg.signature {
            headers.push(("signature", sig.as_bytes().to_vec()));
        }
        out.push(Outgoing {
            topic: ctx.topics.dead_letter.clone(),
            key,
            payload: msg.payload.clone(),
            headers,
            partition: None,
        });
    }
    out
}

fn record(ctx: &Ctx, received: Instant, a: &Answer) {
    let kind = m::message_kind(a.address.as_ref().map_or("", |x| x.kind.as_str()));
    let channel = a
        .address
        .as_ref()
        .map(|x| x.channel.as_str())
        .filter(|c| ctx.switch.routing.has_channel(c))
        .unwrap_or("unknown");
    if a.address.is_some() {
        let institution = a.institution.as_ref().map_or("none", |i| i.code.as_str());
        m::count_answer("kafka", kind, channel, institution, a.outcome.rc);
    }
    if let Some((code, _)) = &a.dead_letter {
        metrics::counter!(m::DEAD_LETTERS_TOTAL, "reason" => *code).increment(1);
    }
    if let Some(w) = &a.outcome.webhook {
        metrics::counter!(m::WEBHOOK_JOBS_TOTAL, "event" => w.event).increment(1);
    }
    m::message_seconds(kind).record(received.elapsed().as_secs_f64());
}
