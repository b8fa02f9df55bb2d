//! The Payment Channel API over HTTP (`POST /api/v2/ch/<type>`): an IPG body becomes the
//! very [`ChannelRequest`] (and so the very command) a Kafka envelope decodes to, read by
//! the same code, so both doors accept and refuse exactly the same bodies with the same
//! field names. The body's signature is checked before this
//! (`routing::Routing::authenticate`), over the raw bytes.

use serde_json::{Map, Value};

use super::channel::{ChannelRequest, Envelope, Invalid, RequestType};
use super::json::JsonError;

/// Builds a request from an HTTP body whose channel is already authenticated.
///
/// # Errors
/// Malformed JSON, an invalid `request_id` or body field, named as in the HTTP body.
pub fn request(
    kind: RequestType,
    channel_code: &str,
    request_id: &str,
    body: &[u8],
) -> Result<ChannelRequest, Invalid> {
    let parsed: Value = super::json::parse(body).map_err(|e| match e {
        JsonError::Duplicate { path } => super::channel::duplicate(path),
        JsonError::Malformed(_) => Invalid {
            field: "body".into(),
            reason: e.to_string(),
        },
    })?;
    if !parsed.is_object() {
        return Err(Invalid {
            field: "body".into(),
            reason: "must be a JSON object".into(),
        });
    }
    let mut envelope = Map::new();
    envelope.insert("type".into(), kind.as_str().into());
    envelope.insert("channel".into(), channel_code.into());
    envelope.insert("request_id".into(), request_id.into());
    envelope.insert("body".into(), parsed);
    Envelope::from_object(envelope)
        .and_then(Envelope::request)
        .map_err(|r| Invalid {
            // Over HTTP the body is the whole document: `ref_id`, not `body.ref_id`.
            field: r
                .error
                .field
                .strip_prefix("body.")
                .map(str::to_owned)
                .unwrap_or(r.error.field),
            reason: r.error.reason,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Rc;
    use crate::error::SwitchError;
    use crate::routing::Routing;
    use crate::settings::Settings;
    use crate::signature;

    fn routing() -> Routing {
        (Settings::from_toml(&["[[channels]]\ncode = \"bank\"\napi_key = \"k\"\n"]).unwrap())
            .routing()
    }

    #[test]
    fn builds_the_same_request_as_kafka_and_names_fields_as_sent() {
        let rt = routing();
        let body = br#"{"va_number":"8574991234567890","ref_id":"r1","transaction_date":"2024-12-30 23:18:01"}"#;
        let sig = signature::sign(b"k", body);
        assert!(rt.authenticate("bank", body, Some(&sig)).is_ok());
        let r = request(RequestType::Inquiry, "bank", "id-1", body).unwrap();
        assert_eq!(r.channel(), "bank");
        assert_eq!(
            r.command.action.va().map(crate::domain::VaNumber::as_str),
            Some("8574991234567890")
        );

        let (e, _) = rt.authenticate("bank", body, Some("00")).unwrap_err();
        assert_eq!(e.rc(), Rc::BillerAuthentication);
        let (e, reason) = rt.authenticate("nobody", body, Some(&sig)).unwrap_err();
        assert_eq!(
            (e.rc(), reason),
            (Rc::BillerAuthentication, "unknown_channel")
        );

        let body = br#"{"va_number":"8574991234567890","transaction_date":"2024-12-30 23:18:01"}"#;
        let e = request(RequestType::Inquiry, "bank", "id-1", body).unwrap_err();
        assert_eq!(e.to_string(), "invalid field ref_id: is required");

        let e: SwitchError = request(RequestType::Payment, "bank", "id-1", b"{oops")
            .unwrap_err()
            .into();
        assert_eq!(e.rc(), Rc::BillerInvalidTransaction);
    }
}
