//! How a refusal is answered over HTTP: the rc and message come from
//! [`SwitchError::rc`]/[`SwitchError::message`] (the one place an error becomes an rc);
//! this file only adds the HTTP status, in one match.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::clock::Clock;
use crate::domain::BillError;
use crate::domain::Outcome;
use crate::error::{Disposition, SwitchError};
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
        | SwitchError::AlreadyReversed(_)
        | SwitchError::Bill(..) => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// The IPG envelope `{rc, message, timestamp, data}` of an outcome.
pub fn envelope(status: StatusCode, o: &Outcome) -> Response {
    let body = json!({
        "rc": o.rc,
        "message": o.message,
        "timestamp": o.timestamp,
        "data": o.data,
    });
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
