//! The switch: one rule set behind every door. A decoded channel request is routed by its
//! VA prefix to its institution and served as a hosted bill, or forwarded to a passive
//! institution's own API. The Kafka pipeline and the HTTP
//! API both call [`Switch::handle`].

use std::sync::Arc;

pub mod config;

pub use config::SwitchSettings;

use crate::clock::Clock;
use crate::domain::InstitutionMode;
use crate::domain::{Amount, VaNumber};
use crate::domain::{Binding, Outcome};
use crate::error::SwitchError;
use crate::hosted::{Hosted, PayInput};
use crate::lock::Owner;
use crate::metrics as m;
use crate::passive::Passive;
use crate::protocol::channel::{self, Address};
use crate::protocol::{ChannelRequest, RequestBody, RequestType};
use crate::routing::{Institution, Limiter, Routing};

/// A channel request that cannot be served as read: who to answer (if anyone), why, and a
/// bounded reason label for the dead-letter metric.
#[derive(Debug)]
pub struct Rejected {
    pub address: Option<Address>,
    pub error: SwitchError,
    pub reason: &'static str,
}

impl From<channel::Rejected> for Rejected {
    fn from(r: channel::Rejected) -> Self {
        Rejected {
            address: r.address,
            error: r.error.into(),
            reason: r.reason,
        }
    }
}

/// Reads one Kafka request value: open the envelope (wire), authenticate its channel over
/// the exact bytes (before anything else is read), then read the body.
///
/// # Errors
/// Malformed JSON or no `request_id` (unanswerable), an unknown channel or a bad signature
/// (`BILLER_AUTHENTICATION`), an unknown type or a missing/mistyped field
/// (`BILLER_INVALID_TRANSACTION`).
pub fn decode(
    payload: &[u8],
    signature: Option<&str>,
    routing: &Routing,
) -> Result<ChannelRequest, Rejected> {
    let envelope = channel::open(payload)?;
    if let Err((error, reason)) = routing.authenticate(envelope.channel(), payload, signature) {
        return Err(Rejected {
            address: Some(envelope.address),
            error,
            reason,
        });
    }
    Ok(envelope.request()?)
}

#[derive(Clone)]
pub struct Switch {
    pub routing: Arc<Routing>,
    pub hosted: Hosted,
    pub passive: Passive,
    pub clock: Clock,
}

impl Switch {
    /// The VA's institution. `limited`: the request counts against the institution's rate
    /// limit (reversals never do: money going back is never throttled).
    fn route(&self, va: &str, limited: bool) -> Result<(VaNumber, &Arc<Institution>), SwitchError> {
        let va = VaNumber::parse(va)?;
        let inst = self
            .routing
            .by_prefix(va.prefix())
            .ok_or_else(|| SwitchError::UnknownPrefix(va.prefix().to_owned()))?;
        if limited {
            if let Some(l) = &inst.limiter {
                check_limit(l, "institution", &inst.code)?;
            }
        }
        Ok((va, inst))
    }

    /// The institution a request is for, when it can be told without Redis (for metrics).
    pub fn institution_of(&self, req: &ChannelRequest) -> Option<&str> {
        let va = req.body.va_number()?;
        let prefix = va.get(..6)?;
        self.routing.by_prefix(prefix).map(|i| i.code.as_str())
    }

    /// Serves one authenticated channel request as a new attempt (see [`crate::lock`]).
    ///
    /// # Errors
    /// Every refusal as a [`SwitchError`]; see `SwitchError::rc` and `disposition`.
    pub async fn handle(&self, req: &ChannelRequest) -> Result<Outcome, SwitchError> {
        self.handle_as(req, &Owner::new()).await
    }

    /// Serves one authenticated channel request for the attempt `owner`: a door that
    /// retries the same delivery (Redis away, VA busy) passes the same owner each time, so
    /// the retry takes back the VA lock it holds; a concurrent copy of the request is
    /// another attempt and waits for the lock, then replays the first copy's answer.
    ///
    /// # Errors
    /// Every refusal as a [`SwitchError`]; see `SwitchError::rc` and `disposition`.
    pub async fn handle_as(
        &self,
        req: &ChannelRequest,
        owner: &Owner,
    ) -> Result<Outcome, SwitchError> {
        let limited = req.kind != RequestType::Reversal;
        if limited {
            if let Some(l) = self
                .routing
                .channel(&req.channel)
                .and_then(|c| c.limiter.as_ref())
            {
                check_limit(l, "channel", &req.channel)?;
            }
        }
        match &req.body {
            RequestBody::Inquiry {
                va_number,
                ref_id,
                terminal_id,
                ..
            } => {
                let (va, inst) = self.route(va_number, limited)?;
                if inst.mode == InstitutionMode::Passive {
                    return self
                        .passive
                        .inquiry(inst, &va, &req.channel, ref_id, terminal_id.as_deref())
                        .await;
                }
                self.hosted.inquiry(inst, &va).await
            }
            RequestBody::Payment {
                va_number,
                ref_id,
                amount,
                terminal_id,
                transaction_date,
                customer_name,
            } => {
                let (va, inst) = self.route(va_number, limited)?;
                // VA and amount are parsed here, once, before any rule runs.
                let amount = Amount::positive_from_json(amount)?;
                let input = PayInput {
                    channel: &req.channel,
                    ref_id,
                    amount,
                    terminal_id: terminal_id.as_deref(),
                    transaction_date: Some(transaction_date),
                    customer_name: customer_name.as_deref(),
                    owner,
                };
                if inst.mode == InstitutionMode::Passive {
                    return self.passive.pay(inst, &va, input).await;
                }
                self.hosted.pay(inst, &va, input).await
            }
            RequestBody::Reversal {
                payment_ref,
                amount,
                bill_id,
                va_number,
            } => {
                let amount = Amount::positive_from_json(amount)?;
                let (va, inst) = match va_number {
                    Some(v) => self.route(v, false)?,
                    None => {
                        // The payment's binding says where it was made.
                        let binding = self
                            .hosted
                            .store
                            .reference(&req.channel, payment_ref)
                            .await?
                            .and_then(|r| Binding::parse(&r))
                            .ok_or(SwitchError::PaymentNotFound)?;
                        self.route(&binding.va_number, false)?
                    }
                };
                if inst.mode == InstitutionMode::Passive {
                    // The institution's bill ids are its own: the payment is found by its
                    // reference, and bill_id is not checked.
                    return self
                        .passive
                        .reverse(inst, &va, &req.channel, payment_ref, amount, owner)
                        .await;
                }
                self.hosted
                    .reverse(
                        inst,
                        &va,
                        &req.channel,
                        payment_ref,
                        amount,
                        bill_id.as_deref(),
                        owner,
                    )
                    .await
            }
            RequestBody::CheckStatus {
                payment_ref,
                va_number,
                ..
            } => {
                let (va, inst) = self.route(va_number, limited)?;
                if inst.mode == InstitutionMode::Passive {
                    return self
                        .passive
                        .check_status(inst, &va, &req.channel, payment_ref)
                        .await;
                }
                self.hosted
                    .check_status(inst, &va, &req.channel, payment_ref)
                    .await
            }
        }
    }
}

fn check_limit(l: &Limiter, scope: &'static str, code: &str) -> Result<(), SwitchError> {
    if l.allow() {
        return Ok(());
    }
    metrics::counter!(m::RATE_LIMITED_TOTAL, "scope" => scope, "code" => code.to_owned())
        .increment(1);
    Err(SwitchError::RateLimited {
        scope,
        code: code.to_owned(),
    })
}
