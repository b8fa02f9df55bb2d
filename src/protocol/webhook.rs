//! The webhook job the switch queues on `topics.webhook` after a payment or a reversal.
//! `body` is exactly what the institution receives (IPG Webhook Call: `event`, `context` =
//! the bill after the event, `payload` = the payment) plus a stable `id` to drop duplicates.

use serde::{Deserialize, Serialize};

use crate::domain::Json;

pub const PAYMENT_RECEIVED: &str = "payment.received";
pub const PAYMENT_REVERSAL: &str = "payment.reversal";

/// What the institution receives (IPG Webhook Call).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WebhookBody {
    pub id: String,
    pub event: String,
    /// The bill after the event (its JSON text, passed through).
    #[schemars(with = "crate::domain::Bill")]
    pub context: Json,
    /// The payment (its JSON text, passed through).
    #[schemars(with = "crate::domain::Payment")]
    pub payload: Json,
}

/// A webhook job on `topics.webhook` (and its retry tiers), key = `bill_hash`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WebhookJob {
    /// Stable event id: `<payment id>:received` or `<payment id>:reversal`.
    pub id: String,
    pub event: String,
    pub institution_code: String,
    pub webhook_url: Option<String>,
    /// Message key: one bill's events stay on one partition, in order.
    pub bill_hash: String,
    pub created_at: String,
    pub body: WebhookBody,
}

impl WebhookJob {
    pub fn new(
        event: &str,
        payment_id: &str,
        institution_code: &str,
        webhook_url: Option<String>,
        bill_hash: &str,
        created_at: String,
        context: Json,
        payload: Json,
    ) -> WebhookJob {
        let suffix = if event == PAYMENT_REVERSAL {
            "reversal"
        } else {
            "received"
        };
        let id = [payment_id, ":", suffix].concat();
        WebhookJob {
            id: id.clone(),
            event: event.to_owned(),
            institution_code: institution_code.to_owned(),
            webhook_url,
            bill_hash: bill_hash.to_owned(),
            created_at,
            body: WebhookBody {
                id,
                event: event.to_owned(),
                context,
                payload,
            },
        }
    }
}
