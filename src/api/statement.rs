//! `GET /api/v2/gw/statement?date=YYYY-MM-DD`: the calling institution's statement of that
//! business day (docs/statements.md), computed from the day's read of the journal
//! (`journal::window`). JSON in IPG's envelope by default; `Accept: text/csv` gives the
//! CSV with its `#` trailer lines. At most `statement.max_concurrent` are read at once:
//! one more is answered 429 at once (docs/statements.md, "Cost and bounds").

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use chrono::NaiveDate;

use super::auth::Caller;
use super::error::{refuse, refuse_with, Door};
use super::ApiState;
use crate::error::SwitchError;
use crate::metrics as m;
use crate::statement::{Day, Scope, Statement};

/// Counts a statement in flight while it lives (`ipg_history_reads_in_flight`).
struct InFlight;

impl InFlight {
    fn start() -> InFlight {
        metrics::gauge!(m::HISTORY_READS_IN_FLIGHT).increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(m::HISTORY_READS_IN_FLIGHT).decrement(1.0);
    }
}

#[utoipa::path(
    get,
    path = "/statement",
    operation_id = "statement_statement",
    tag = "Institution",
    summary = "Daily Statement",
    description = "The calling institution's statement of one business day, computed from the journal (docs/statements.md): every hosted payment and reversal, every forwarded payment with its status at the close of the day, totals by type and by channel, the closing ledger balance, and a SHA-256 over the canonical CSV body. JSON in the envelope by default; `Accept: text/csv` gives the CSV with `#` trailer lines.",
    params(
        ("date" = String, Query, description = "the business day, YYYY-MM-DD (from statement.cutoff_hour, switch.utc_offset)"),
    ),
    responses(
        (status = 200, description = "The statement", content((ref("#/components/schemas/Envelope") = "application/json"), (String = "text/csv"))),
        (status = 400, description = "date missing or malformed: rc BILLER_INVALID_TRANSACTION", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 429, description = "Too many statements and bulk issuances at once (statement.max_concurrent): nothing done, try again", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
        (status = 503, description = "The journal cannot be read now; try again", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
    ),
    security(("bearer" = [], "signature" = [])),
)]
pub async fn statement(
    State(st): State<ApiState>,
    Extension(c): Extension<Caller>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let clock = st.clock();
    let date = params
        .get("date")
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .ok_or_else(|| {
            refuse(
                &SwitchError::invalid("date", "must be a date like 2026-11-29"),
                Door::Gateway,
                clock,
            )
        })?;
    let Some(source) = &st.statements else {
        return Err(refuse_with(
            StatusCode::SERVICE_UNAVAILABLE,
            &SwitchError::Busy("statements are not served by this instance".into()),
            clock,
        ));
    };
    let Ok(_permit) = st.history.clone().try_acquire_owned() else {
        metrics::counter!(m::HISTORY_READS_REFUSED_TOTAL).increment(1);
        return Err(refuse_with(
            StatusCode::TOO_MANY_REQUESTS,
            &SwitchError::Busy(
                "too many statements are being read (statement.max_concurrent); try again".into(),
            ),
            clock,
        ));
    };
    let _in_flight = InFlight::start();
    let offset = *clock.now().offset();
    let day = Day::new(date, offset, st.cutoff_hour);
    let scope = Scope::Institution(c.0.code.clone());
    let read = source.day(&scope, &day).await.map_err(|e| {
        refuse_with(
            StatusCode::SERVICE_UNAVAILABLE,
            &SwitchError::Busy(format!("the journal cannot be read: {e}")),
            clock,
        )
    })?;
    let s = Statement::of_day(&read, &scope, &day, offset);
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    if wants_csv {
        return Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            s.to_csv(),
        )
            .into_response());
    }
    // Written straight to text: a total past 2^64 rupiah (docs/statements.md) is a JSON
    // number a serde_json Value cannot hold, and must not become null.
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        rc: crate::error::Rc,
        message: &'a str,
        timestamp: String,
        data: &'a Statement,
    }
    let body = serde_json::to_vec(&Envelope {
        rc: crate::error::Rc::Success,
        message: "success",
        timestamp: clock.stamp_now(),
        data: &s,
    })
    .map_err(|e| {
        refuse_with(
            StatusCode::INTERNAL_SERVER_ERROR,
            &SwitchError::Internal(format!("statement not written: {e}")),
            &clock,
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
