//! How a refusal is answered over HTTP: the rc and message come from
//! [`SwitchError::rc`]/[`SwitchError::message`] (the one place an error becomes an rc);
//! this file only adds the HTTP status, in one match.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::clock::Clock;
use crate::domain::BillError;
use crate::domain::Outcome;
use crate::error::{Disposition, SwitchError};
use crate::protocol::IpgData;
use crate::store::StoreError;

/// Which API answers: channels read business refusals from `rc` on a 200 (as IPG's
/// Payment Channel API documents only 200), institutions get REST statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    Channel,
    Gateway,
}

/// The HTTP status of a refusal.
pub fn status_of(e: &SwitchError, door: Door) -> StatusCode {
    if door == Door::Channel && matches!(e, SwitchError::Store(StoreError::InDoubt(_))) {
        // A business answer to a channel: BILLER_SUSPECT_TRANSACTION, as a passive
        // institution's silence is answered (docs/journal.md, "Broker faults").
        return StatusCode::OK;
    }
    if e.disposition() == Disposition::Retry {
        // Redis away or the VA busy: nothing was decided, the caller must try again.
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match e {
        SwitchError::Authentication(_) => StatusCode::UNAUTHORIZED,
        SwitchError::InvalidField { .. } => StatusCode::BAD_REQUEST,
        SwitchError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        SwitchError::Store(StoreError::Corrupt { .. }) | SwitchError::Internal(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ if door == Door::Channel => StatusCode::OK,
        SwitchError::BillNotFound | SwitchError::PaymentNotFound => StatusCode::NOT_FOUND,
        SwitchError::Bill(BillError::Revoked | BillError::Expired(_), _) => StatusCode::GONE,
        SwitchError::ReferenceConflict(_)
        | SwitchError::ReversedBeforePayment(_)
        | SwitchError::AlreadyReversed(_)
        | SwitchError::AlreadyProcessed(..)
        | SwitchError::TooLateToReverse(..)
        | SwitchError::Bill(..) => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// IPG's answer envelope `{rc, message, timestamp, data}` over HTTP.
#[derive(serde::Serialize)]
pub struct Envelope<'a, D> {
    pub rc: crate::domain::Rc,
    pub message: &'a str,
    pub timestamp: &'a str,
    pub data: D,
}

/// The IPG envelope of an outcome (its `data` as [`IpgData`] renders it).
pub fn envelope(status: StatusCode, o: &Outcome) -> Response {
    respond(
        status,
        &Envelope {
            rc: o.rc,
            message: &o.message,
            timestamp: &o.timestamp,
            data: IpgData(&o.shown),
        },
    )
}

/// An envelope as the answer, with `WWW-Authenticate` on a 401.
pub fn respond<D: serde::Serialize>(status: StatusCode, body: &Envelope<'_, D>) -> Response {
    let mut r = (status, Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

/// A refusal as answered, with the status its error calls for.
pub fn refuse(e: &SwitchError, door: Door, clock: &Clock) -> Response {
    refuse_with(status_of(e, door), e, clock)
}

/// A refusal with an explicit status (e.g. 404 for another institution's resource, 413).
pub fn refuse_with(status: StatusCode, e: &SwitchError, clock: &Clock) -> Response {
    if status.is_server_error() {
        tracing::warn!(error = %e, status = status.as_u16(), "HTTP request not served");
    }
    envelope(status, &e.outcome(clock))
}

/// Every HTTP error in the documented shape: an error response that is not already the
/// JSON envelope (a path no route has, a method a route does not take, a query or path
/// the extractor could not read, a body over the limit) is answered as one, with an rc by
/// its status and the reason in `message`. Handlers' own refusals pass untouched.
pub async fn json_errors(
    axum::extract::State(clock): axum::extract::State<Clock>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    // axum's own rejections say what was wrong in a short text; nothing longer is kept.
    let text = axum::body::to_bytes(body, 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match status {
        StatusCode::NOT_FOUND if text.is_empty() => format!("no such endpoint: {method} {path}"),
        StatusCode::METHOD_NOT_ALLOWED => format!("{path} does not take {method}"),
        _ if text.is_empty() => status.canonical_reason().unwrap_or("HTTP error").to_owned(),
        _ => text.into_owned(),
    };
    let rc = match status {
        StatusCode::UNAUTHORIZED => crate::error::Rc::BillerAuthentication,
        StatusCode::TOO_MANY_REQUESTS => crate::error::Rc::BillerGatewayInvalidResponse,
        s if s.is_server_error() => crate::error::Rc::BillerGatewayInvalidResponse,
        _ => crate::error::Rc::BillerInvalidTransaction,
    };
    let mut out = respond(
        status,
        &Envelope {
            rc,
            message: &message,
            timestamp: &clock.stamp_now(),
            data: (),
        },
    );
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_by_door() {
        let unavailable = SwitchError::Busy("x".into());
        assert_eq!(
            status_of(&unavailable, Door::Channel),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_of(&SwitchError::BillNotFound, Door::Channel),
            StatusCode::OK
        );
        assert_eq!(
            status_of(&SwitchError::BillNotFound, Door::Gateway),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of(&SwitchError::invalid("va_number", "x"), Door::Gateway),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(&SwitchError::Authentication("x".into()), Door::Channel),
            StatusCode::UNAUTHORIZED
        );
    }
}
