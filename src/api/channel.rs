//! The Payment Channel API: `POST /api/v2/ch/{inquiry,payment,reversal}` with IPG's bodies,
//! plus `check-status` (the Kafka door's fourth type). A channel names itself with
//! `X-Channel: <code>` and signs the raw body: `Signature` = hex HMAC-SHA256 with its
//! `api_key`, as on Kafka. `X-Request-Id` (optional, 1-64 printable characters; generated
//! when absent) is echoed back and logged. The answer is IPG's envelope
//! `{rc, message, timestamp, data}`: business refusals on 200, as IPG documents.

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::response::Response;

use super::error::{envelope, refuse, Door};
use super::{one_header, read_body, ApiState};
use crate::error::SwitchError;
use crate::metrics as m;
use crate::protocol::{channel_http, RequestType};

const X_REQUEST_ID: &str = "x-request-id";

pub async fn inquiry(st: State<ApiState>, req: Request) -> Response {
    serve(st, RequestType::Inquiry, req).await
}

pub async fn payment(st: State<ApiState>, req: Request) -> Response {
    serve(st, RequestType::Payment, req).await
}

pub async fn reversal(st: State<ApiState>, req: Request) -> Response {
    serve(st, RequestType::Reversal, req).await
}

pub async fn check_status(st: State<ApiState>, req: Request) -> Response {
    serve(st, RequestType::CheckStatus, req).await
}

async fn serve(State(st): State<ApiState>, kind: RequestType, req: Request) -> Response {
    let clock = *st.clock();
    let (parts, body) = req.into_parts();
    // A header sent twice is refused below (`one_header`); these reads only label.
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let request_id = header(X_REQUEST_ID)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut resp = match read_body(body, &parts.headers, &st.settings, &clock).await {
        Err(r) => r,
        Ok(bytes) => {
            let mut institution = None;
            let answered = async {
                one_header(&parts.headers, X_REQUEST_ID)?;
                let channel = one_header(&parts.headers, "x-channel")?.ok_or_else(|| {
                    SwitchError::Authentication("X-Channel header is required".into())
                })?;
                let sig = one_header(&parts.headers, "signature")?.ok_or_else(|| {
                    SwitchError::Authentication("Signature header is required".into())
                })?;
                if let Err((e, _)) = st.switch.routing.authenticate(channel, &bytes, Some(sig)) {
                    return Err(e);
                }
                let req =
                    channel_http::request(kind, channel, &request_id, &bytes).map_err(|e| {
                        // The envelope's request_id is, over HTTP, the X-Request-Id header.
                        if e.field == "request_id" {
                            SwitchError::invalid("X-Request-Id", e.reason)
                        } else {
                            e.into()
                        }
                    })?;
                institution = st.switch.institution_of(&req).map(str::to_owned);
                st.serve(&req).await
            }
            .await;
            // Counted like the Kafka door's answers (ipg_messages_total, door="http").
            let channel = header("x-channel")
                .filter(|c| st.switch.routing.has_channel(c))
                .unwrap_or("unknown");
            let rc = match &answered {
                Ok(o) => o.rc,
                Err(e) => e.rc(),
            };
            m::count_answer(
                "http",
                kind.as_str(),
                channel,
                institution.as_deref().unwrap_or("none"),
                rc,
            );
            match answered {
                Ok(o) => envelope(axum::http::StatusCode::OK, &o),
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
