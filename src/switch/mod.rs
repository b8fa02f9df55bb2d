//! The switch: one rule set behind every door. Each door reads its wire format into a
//! [`Command`] (`crate::domain::command`); the switch routes it by its VA prefix to its
//! institution and serves it as a hosted bill, or forwards it to a passive institution's
//! own API, and answers a dialect-free [`Outcome`] that the door renders. The Kafka
//! pipeline and the HTTP API both call [`Switch::handle_as`].

use std::sync::Arc;

pub mod config;

pub use config::SwitchSettings;

use crate::clock::Clock;
use crate::domain::command::{Action, Checked, Command};
use crate::domain::InstitutionMode;
use crate::domain::{Binding, Outcome};
use crate::domain::{VaError, VaNumber};
use crate::error::SwitchError;
use crate::hosted::{Hosted, PayInput};
use crate::lock::Owner;
use crate::metrics as m;
use crate::passive::Passive;
use crate::protocol::channel::{self, Address};
use crate::protocol::ChannelRequest;
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

/// What the switch made of one command: the outcome or the refusal, and the institution
/// the command was for, when it got that far or its VA names one (a metric label).
#[derive(Debug)]
pub struct Served {
    pub result: Result<Outcome, SwitchError>,
    pub institution: Option<Arc<Institution>>,
}

impl Served {
    /// The institution's code, or `none` (the metric label).
    pub fn institution_label(&self) -> &str {
        self.institution
            .as_ref()
            .map_or("none", |i| i.code.as_str())
    }
}

impl Switch {
    /// The VA's institution. `limited`: the request counts against the institution's rate
    /// limit (reversals never do: money going back is never throttled).
    fn route(
        &self,
        va: &Checked<VaNumber, VaError>,
        limited: bool,
        routed: &mut Option<Arc<Institution>>,
    ) -> Result<(VaNumber, Arc<Institution>), SwitchError> {
        let va = va.clone()?;
        let inst = self
            .routing
            .by_prefix(va.prefix())
            .ok_or_else(|| SwitchError::UnknownPrefix(va.prefix().to_owned()))?;
        *routed = Some(inst.clone());
        if limited {
            if let Some(l) = &inst.limiter {
                check_limit(l, "institution", &inst.code)?;
            }
        }
        Ok((va, inst.clone()))
    }

    /// Serves one command as a new attempt (see [`crate::lock`]).
    pub async fn handle(&self, cmd: &Command) -> Served {
        self.handle_as(cmd, &Owner::new()).await
    }

    /// Serves one command for the attempt `owner`: a door that retries the same delivery
    /// (Redis away, VA busy) passes the same owner each time, so the retry takes back the
    /// VA lock it holds; a concurrent copy of the request is another attempt and waits for
    /// the lock, then replays the first copy's answer.
    ///
    /// Refusals come in one order whatever the door (docs/protocol.md, "Order of checks"):
    /// the channel's rate limit; the VA's shape, its prefix, its institution's rate limit;
    /// the amount (a reversal's amount first, before its VA or its binding is looked up);
    /// then the rules of the bill or the institution. Every refusal is a [`SwitchError`];
    /// see `SwitchError::rc` and `disposition`.
    pub async fn handle_as(&self, cmd: &Command, owner: &Owner) -> Served {
        // The label of a request refused before routing: the institution its VA names.
        let mut institution = cmd
            .action
            .va()
            .and_then(|va| self.routing.by_prefix(va.prefix()))
            .cloned();
        let result = self.serve(cmd, owner, &mut institution).await;
        Served {
            result,
            institution,
        }
    }

    async fn serve(
        &self,
        cmd: &Command,
        owner: &Owner,
        routed: &mut Option<Arc<Institution>>,
    ) -> Result<Outcome, SwitchError> {
        let channel = cmd.channel.as_str();
        let limited = cmd.action.is_limited();
        if limited {
            if let Some(l) = self
                .routing
                .channel(channel)
                .and_then(|c| c.limiter.as_ref())
            {
                check_limit(l, "channel", channel)?;
            }
        }
        match &cmd.action {
            Action::Inquiry(q) => {
                let (va, inst) = self.route(&q.va, limited, routed)?;
                if inst.mode == InstitutionMode::Passive {
                    return self
                        .passive
                        .inquiry(&inst, &va, channel, &q.ref_id, q.terminal_id.as_deref())
                        .await;
                }
                self.hosted.inquiry(&inst, &va).await
            }
            Action::Pay(p) => {
                let (va, inst) = self.route(&p.va, limited, routed)?;
                let input = PayInput {
                    channel,
                    ref_id: &p.ref_id,
                    amount: p.amount.clone()?,
                    terminal_id: p.terminal_id.as_deref(),
                    transaction_date: p.transaction_date.as_deref(),
                    customer_name: p.customer_name.as_deref(),
                    owner,
                };
                if inst.mode == InstitutionMode::Passive {
                    return self.passive.pay(&inst, &va, input).await;
                }
                self.hosted.pay(&inst, &va, input).await
            }
            Action::Reverse(r) => {
                let amount = r.amount.clone()?;
                let (va, inst) = match &r.va {
                    Some(v) => self.route(v, false, routed)?,
                    None => {
                        // The payment's binding says where it was made.
                        let binding = self
                            .hosted
                            .store
                            .reference(channel, &r.payment_ref)
                            .await?
                            .and_then(|r| Binding::parse(&r))
                            .ok_or(SwitchError::PaymentNotFound)?;
                        self.route(&VaNumber::parse(&binding.va_number), false, routed)?
                    }
                };
                if inst.mode == InstitutionMode::Passive {
                    // The institution's bill ids are its own: the payment is found by its
                    // reference, and bill_id is not checked.
                    return self
                        .passive
                        .reverse(&inst, &va, channel, &r.payment_ref, amount, owner)
                        .await;
                }
                self.hosted
                    .reverse(
                        &inst,
                        &va,
                        channel,
                        &r.payment_ref,
                        amount,
                        r.bill_id.as_deref(),
                        owner,
                    )
                    .await
            }
            Action::CheckStatus(c) => {
                let (va, inst) = self.route(&c.va, limited, routed)?;
                if inst.mode == InstitutionMode::Passive {
                    return self
                        .passive
                        .check_status(&inst, &va, channel, &c.payment_ref)
                        .await;
                }
                self.hosted
                    .check_status(&inst, &va, channel, &c.payment_ref)
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
