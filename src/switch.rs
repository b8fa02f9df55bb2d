//! The switch: one rule set behind every door. A decoded channel request is routed by its
//! VA prefix to its institution and served as a hosted bill (or, for passive institutions,
//! answered with a documented rc until forwarding exists). The Kafka pipeline and the HTTP
//! API both call [`Switch::handle`].

use std::sync::Arc;

use crate::clock::Clock;
use crate::domain::{Amount, VaNumber};
use crate::error::SwitchError;
use crate::hosted::{Hosted, Outcome, PayInput};
use crate::protocol::{ChannelRequest, RequestBody};
use crate::routing::{Institution, Routing};
use crate::settings::InstitutionMode;

#[derive(Clone)]
pub struct Switch {
    pub routing: Arc<Routing>,
    pub hosted: Hosted,
    pub clock: Clock,
}

impl Switch {
    fn route(&self, va: &str) -> Result<(VaNumber, &Arc<Institution>), SwitchError> {
        let va = VaNumber::parse(va)?;
        let inst = self
            .routing
            .by_prefix(va.prefix())
            .ok_or_else(|| SwitchError::UnknownPrefix(va.prefix().to_owned()))?;
        if inst.mode == InstitutionMode::Passive {
            return Err(SwitchError::PassiveUnavailable(inst.code.clone()));
        }
        Ok((va, inst))
    }

    /// The institution a request is for, when it can be told without Redis (for metrics).
    pub fn institution_of(&self, req: &ChannelRequest) -> Option<&str> {
        let va = req.body.va_number()?;
        let prefix = va.get(..6)?;
        self.routing.by_prefix(prefix).map(|i| i.code.as_str())
    }

    /// Serves one authenticated channel request.
    ///
    /// # Errors
    /// Every refusal as a [`SwitchError`]; see `SwitchError::rc` and `disposition`.
    pub async fn handle(&self, req: &ChannelRequest) -> Result<Outcome, SwitchError> {
        match &req.body {
            RequestBody::Inquiry { va_number, .. } => {
                let (va, inst) = self.route(va_number)?;
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
                let (va, inst) = self.route(va_number)?;
                let input = PayInput {
                    channel: &req.channel,
                    ref_id,
                    amount,
                    terminal_id: terminal_id.as_deref(),
                    transaction_date: Some(transaction_date),
                    customer_name: customer_name.as_deref(),
                };
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
                    Some(v) => self.route(v)?,
                    None => {
                        // The payment's binding says where it was made.
                        let binding = self
                            .hosted
                            .store
                            .reference(&req.channel, payment_ref)
                            .await?
                            .ok_or(SwitchError::PaymentNotFound)?;
                        let va = binding
                            .split('|')
                            .nth(1)
                            .ok_or(SwitchError::PaymentNotFound)?;
                        self.route(va)?
                    }
                };
                self.hosted
                    .reverse(
                        inst,
                        &va,
                        &req.channel,
                        payment_ref,
                        amount,
                        bill_id.as_deref(),
                    )
                    .await
            }
            RequestBody::CheckStatus {
                payment_ref,
                va_number,
                ..
            } => {
                let (va, inst) = self.route(va_number)?;
                self.hosted
                    .check_status(inst, &va, &req.channel, payment_ref)
                    .await
            }
        }
    }
}
