//! Wire formats: the channel request/response envelopes on Kafka and the webhook job the
//! switch queues for institutions. Decoding never panics: every broken input becomes a
//! [`channel::Rejected`] that says whether it can still be answered.

pub mod channel;
pub mod channel_http;
pub mod json;
pub mod passive;
pub mod schema;
pub mod snap;
pub mod webhook;

pub use channel::{ChannelRequest, ChannelResponse, IpgData, Rejected, RequestType};
pub use webhook::WebhookJob;
