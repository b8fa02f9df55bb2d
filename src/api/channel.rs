//! The Payment Channel API: `POST /api/v2/ch/{inquiry,payment,reversal}` with IPG's bodies,
//! plus `check-status` (the Kafka door's fourth type). A channel names itself with
//! `X-Channel: <code>` and signs the raw body: `Signature` = hex HMAC-SHA256 with its
//! `api_key`, as on Kafka. `X-Request-Id` (optional, 1-64 printable characters; generated
//! when absent) is echoed back and logged. The answer is IPG's envelope
//! `{rc, message, timestamp, data}`: business refusals on 200, as IPG documents.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use super::error::{envelope, refuse, Door};
use super::{one_header, read_body, ApiState};
use crate::domain::Command;
use crate::error::SwitchError;
use crate::metrics as m;
use crate::protocol::{channel_http, RequestType};
use crate::switch::Served;

const X_REQUEST_ID: &str = "x-request-id";

#[utoipa::path(
    post,
    path = "/api/v2/ch/inquiry",
    operation_id = "channel_inquiry",
    tag = "Payment Channel API",
    summary = "Inquiry",
    description = "The bill a VA points to.",
    params(super::openapi::RequestIdHeader),
    request_body(content = ref("#/components/schemas/InquiryBody"), content_type = "application/json", example = json!({"va_number": "8574990000000001", "ref_id": "INQ123456789", "terminal_id": "atm", "transaction_date": "2026-01-10 10:15:00"})),
    responses(super::openapi::ChannelAnswers),
    security(("channel" = [], "signature" = [])),
)]
pub async fn inquiry(st: State<ApiState>, req: Request) -> Response {
    serve(st, RequestType::Inquiry, req).await
}

#[utoipa::path(
    post,
    path = "/api/v2/ch/payment",
    operation_id = "channel_payment",
    tag = "Payment Channel API",
    summary = "Payment",
    description = "Pays a hosted bill; a repeated (channel, ref_id) answers its first result and pays nothing.",
    params(super::openapi::RequestIdHeader),
    request_body(content = ref("#/components/schemas/PaymentBody"), content_type = "application/json", example = json!({"va_number": "8574990000000001", "ref_id": "PAY123456789", "amount": "350000", "terminal_id": "mobile_banking", "transaction_date": "2026-01-10 10:16:02", "customer_name": "Ahmad Fauzi"})),
    responses(super::openapi::ChannelAnswers),
    security(("channel" = [], "signature" = [])),
)]
pub async fn payment(st: State<ApiState>, req: Request) -> Response {
    serve(st, RequestType::Payment, req).await
}

#[utoipa::path(
    post,
    path = "/api/v2/ch/reversal",
    operation_id = "channel_reversal",
    tag = "Payment Channel API",
    summary = "Reversal",
    description = "Reverses a payment of this channel; bill_id is the bill hash.",
    params(super::openapi::RequestIdHeader),
    request_body(content = ref("#/components/schemas/ReversalBody"), content_type = "application/json", example = json!({"payment_ref": "PAY123456789", "amount": 350000, "bill_id": "x24da1dF"})),
    responses(super::openapi::ChannelAnswers),
    security(("channel" = [], "signature" = [])),
)]
pub async fn reversal(st: State<ApiState>, req: Request) -> Response {
    serve(st, RequestType::Reversal, req).await
}

#[utoipa::path(
    post,
    path = "/api/v2/ch/check-status",
    operation_id = "channel_check_status",
    tag = "Payment Channel API",
    summary = "Check status (extension)",
    description = "The Kafka door's check_status over HTTP; not in IPG's Payment Channel API.",
    params(super::openapi::RequestIdHeader),
    request_body(content = ref("#/components/schemas/CheckStatusBody"), content_type = "application/json", example = json!({"payment_ref": "PAY123456789", "prefix": "857499", "virtual_account": "0000000001", "date": "2026-01-10"})),
    responses(super::openapi::ChannelAnswers),
    security(("channel" = [], "signature" = [])),
)]
pub async fn check_status(st: State<ApiState>, req: Request) -> Response {
    serve(st, RequestType::CheckStatus, req).await
}

/// One Payment Channel API call, in steps another dialect's door reuses: the request id,
/// the body ([`read_body`]), the command (this dialect's: headers, signature, body),
/// [`ApiState::serve`], the count, the answer in this dialect.
async fn serve(State(st): State<ApiState>, kind: RequestType, req: Request) -> Response {
    let clock = *st.clock();
    let (parts, body) = req.into_parts();
    let request_id = request_id(&parts.headers);
    let mut resp = match read_body(body, &parts.headers, &st.settings, &clock).await {
        Err(r) => r,
        Ok(bytes) => {
            let served = match command(&st, kind, &parts.headers, &request_id, &bytes) {
                Ok(cmd) => st.serve(&cmd).await,
                Err(e) => Served {
                    result: Err(e),
                    institution: None,
                },
            };
            count(&st, kind, &parts.headers, &served);
            match served.result {
                Ok(o) => envelope(StatusCode::OK, &o),
                Err(e) => {
                    tracing::debug!(request_id = %request_id, r#type = kind.as_str(), error = %e, "channel request refused");
                    refuse(&e, Door::Channel, &clock)
                }
            }
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(X_REQUEST_ID, v);
    }
    resp
}

/// `X-Request-Id` as sent (a header sent twice is refused in [`command`]), or a new UUID.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// The command of an IPG channel call: each header once, `X-Channel` authenticated by the
/// `Signature` over the raw body, then the body read as the Kafka door reads it.
///
/// # Errors
/// `BILLER_AUTHENTICATION` (no channel, no or a bad signature), `BILLER_INVALID_TRANSACTION`
/// (a repeated header, a body field, an `X-Request-Id` that is no reference).
fn command(
    st: &ApiState,
    kind: RequestType,
    headers: &HeaderMap,
    request_id: &str,
    bytes: &[u8],
) -> Result<Command, SwitchError> {
    one_header(headers, X_REQUEST_ID)?;
    let channel = one_header(headers, "x-channel")?
        .ok_or_else(|| SwitchError::Authentication("X-Channel header is required".into()))?;
    let sig = one_header(headers, "signature")?
        .ok_or_else(|| SwitchError::Authentication("Signature header is required".into()))?;
    if let Err((e, _)) = st.switch.routing.authenticate(channel, bytes, Some(sig)) {
        return Err(e);
    }
    let req = channel_http::request(kind, channel, request_id, bytes).map_err(|e| {
        // The envelope's request_id is, over HTTP, the X-Request-Id header.
        if e.field == "request_id" {
            SwitchError::invalid("X-Request-Id", e.reason)
        } else {
            e.into()
        }
    })?;
    Ok(req.command)
}

/// Counted like the Kafka door's answers (`ipg_messages_total`, `door="http"`).
fn count(st: &ApiState, kind: RequestType, headers: &HeaderMap, served: &Served) {
    let channel = headers
        .get("x-channel")
        .and_then(|v| v.to_str().ok())
        .filter(|c| st.switch.routing.has_channel(c))
        .unwrap_or("unknown");
    let rc = match &served.result {
        Ok(o) => o.rc,
        Err(e) => e.rc(),
    };
    m::count_answer(
        "http",
        kind.as_str(),
        channel,
        served.institution_label(),
        rc,
    );
}
