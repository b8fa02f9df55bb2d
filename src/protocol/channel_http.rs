//! The Payment Channel API over HTTP (`POST /api/v2/ch/<type>`): an IPG body becomes the
//! very [`ChannelRequest`] a Kafka envelope decodes to. The body is authenticated first
//! (HMAC over the raw bytes with the channel's key), then wrapped in an envelope and put
//! through [`channel::decode`], so both doors accept and refuse exactly the same bodies
//! with the same field names.

use serde_json::{json, Value};

use super::channel::{self, ChannelRequest, RequestType};
use crate::error::SwitchError;
use crate::routing::Routing;
use crate::signature;

/// Builds an authenticated request from an HTTP body.
///
/// # Errors
/// Unknown channel or bad signature (`Authentication`), malformed JSON, an invalid
/// `request_id` or body field (`InvalidField`, field named as in the HTTP body).
pub fn request(
    kind: RequestType,
    channel_code: &str,
    request_id: &str,
    body: &[u8],
    sig: &str,
    routing: &Routing,
) -> Result<ChannelRequest, SwitchError> {
    let key = routing
        .channel_key(channel_code)
        .ok_or_else(|| SwitchError::unknown_channel(channel_code))?;
    if !signature::verify(key, body, sig) {
        return Err(SwitchError::Authentication(
            "signature does not match".into(),
        ));
    }
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|e| SwitchError::invalid("body", format!("malformed JSON: {e}")))?;
    if !parsed.is_object() {
        return Err(SwitchError::invalid("body", "must be a JSON object"));
    }
    let envelope = json!({
        "type": kind.as_str(),
        "channel": channel_code,
        "request_id": request_id,
        "body": parsed,
    });
    let bytes = serde_json::to_vec(&envelope).unwrap_or_default();
    // Already authenticated above; decode checks the envelope's own signature, so give it one.
    let inner_sig = signature::sign(key, &bytes);
    channel::decode(&bytes, Some(&inner_sig), routing).map_err(|r| match r.error {
        SwitchError::InvalidField { field, reason } => SwitchError::InvalidField {
            field: field
                .strip_prefix("body.")
                .map(str::to_owned)
                .unwrap_or(field),
            reason,
        },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Rc;
    use crate::settings::Settings;

    fn routing() -> Routing {
        Routing::from_settings(
            &Settings::from_toml(&["[[channels]]\ncode = \"bank\"\napi_key = \"k\"\n"]).unwrap(),
        )
    }

    #[test]
    fn builds_the_same_request_as_kafka_and_names_fields_as_sent() {
        let rt = routing();
        let body = br#"{"va_number":"8574991234567890","ref_id":"r1","transaction_date":"2024-12-30 23:18:01"}"#;
        let sig = signature::sign(b"k", body);
        let r = request(RequestType::Inquiry, "bank", "id-1", body, &sig, &rt).unwrap();
        assert_eq!(r.channel, "bank");
        assert_eq!(r.body.va_number(), Some("8574991234567890"));

        let e = request(RequestType::Inquiry, "bank", "id-1", body, "00", &rt).unwrap_err();
        assert_eq!(e.rc(), Rc::BillerAuthentication);
        let e = request(RequestType::Inquiry, "nobody", "id-1", body, &sig, &rt).unwrap_err();
        assert_eq!(e.rc(), Rc::BillerAuthentication);

        let body = br#"{"va_number":"8574991234567890","transaction_date":"2024-12-30 23:18:01"}"#;
        let sig = signature::sign(b"k", body);
        let e = request(RequestType::Inquiry, "bank", "id-1", body, &sig, &rt).unwrap_err();
        assert_eq!(e.to_string(), "invalid field ref_id: is required");

        let sig = signature::sign(b"k", b"{oops");
        let e = request(RequestType::Payment, "bank", "id-1", b"{oops", &sig, &rt).unwrap_err();
        assert_eq!(e.rc(), Rc::BillerInvalidTransaction);
    }
}
