//! Bulk issuance jobs over the Active Client API (docs/api.md "Bulk issuance jobs"): an
//! upload submitted as a job, its status polled, its per-row results fetched as JSON or
//! CSV. The job itself runs in the background (`issuance::jobs`) and survives a restart.
//!
//! - `POST /api/v2/gw/bill/batch/jobs[?dry_run=true]`: the same body as
//!   `POST /api/v2/gw/bill/batch`; `202 Accepted` with the job and a `Location`, or
//!   `200` with the job the same upload made before.
//! - `POST /api/v2/gw/bill/batch/recurring[?dry_run=true]`: a recurring issue
//!   (`{"period", "template", "customers"}`) as a job, answered the same way.
//! - `GET /api/v2/gw/bill/batch/jobs/{job_id}`: the job (status, counts).
//! - `GET /api/v2/gw/bill/batch/jobs/{job_id}/results`: its rows so far (all of them once
//!   `done`), JSON, or CSV with `Accept: text/csv`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::auth::Caller;
use super::error::{refuse, refuse_with, Door};
use super::{header_of, ok, ApiState};
use crate::error::SwitchError;
use crate::issuance;
use crate::issuance::jobs::Format;
use crate::store::batch::Submitted;

type Reply = Result<Response, Response>;

/// A job id is 32 lowercase hex digits; anything else names no job.
fn plausible_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn no_such_job(st: &ApiState) -> Response {
    refuse_with(
        StatusCode::NOT_FOUND,
        &SwitchError::invalid(
            "job_id",
            "no such bulk issuance job of this institution (or no longer kept: api.batch_job_ttl_secs)",
        ),
        st.clock(),
    )
}

/// `POST /api/v2/gw/bill/batch/jobs`.
#[utoipa::path(
    post,
    path = "/bill/batch/jobs",
    operation_id = "jobs_submit",
    tag = "Bill",
    summary = "Bulk issuance as a job: submitted, run in the background, polled (docs/api.md, Bulk issuance jobs)",
    params(
        ("dry_run" = Option<bool>, Query, description = "check every row, create nothing"),
    ),
    request_body(content((ref("#/components/schemas/BatchRows") = "application/json"), (String = "text/csv")), description = "At most 10,000 rows and api.max_batch_bytes"),
    responses(
        (status = 202, description = "The job, queued; Location names it", body = ref("#/components/schemas/BatchJobAnswer"), content_type = "application/json", headers(("Location" = String, description = ""))),
        (status = 200, description = "The same upload was submitted before: that job, as it is", body = ref("#/components/schemas/BatchJobAnswer"), content_type = "application/json", headers(("Location" = String, description = ""))),
        (status = 400, description = "The body is not a readable file (BILLER_INVALID_TRANSACTION, field body)", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
        (status = 429, description = "The institution keeps api.max_batch_jobs jobs already", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
    ),
    security(("bearer" = [], "signature" = [])),
)]
pub async fn submit(
    State(st): State<ApiState>,
    Extension(c): Extension<Caller>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let format = if header_of(&headers, header::CONTENT_TYPE).starts_with("text/csv") {
        Format::Csv
    } else {
        Format::Json
    };
    submit_as(st, c, params, format, body).await
}

/// `POST /api/v2/gw/bill/batch/recurring`.
#[utoipa::path(
    post,
    path = "/bill/batch/recurring",
    operation_id = "jobs_recurring",
    tag = "Bill",
    summary = "Recurring issuance as a job: a template, a customer list and a period (docs/api.md, Recurring issuance)",
    params(
        ("dry_run" = Option<bool>, Query, description = "check every row, create nothing"),
    ),
    request_body(content = ref("#/components/schemas/RecurringRequest"), content_type = "application/json", description = "At most 10,000 customers and api.max_batch_bytes"),
    responses(
        (status = 202, description = "The job, queued; Location names it", body = ref("#/components/schemas/BatchJobAnswer"), content_type = "application/json", headers(("Location" = String, description = ""))),
        (status = 200, description = "The same request was submitted before: that job, as it is", body = ref("#/components/schemas/BatchJobAnswer"), content_type = "application/json", headers(("Location" = String, description = ""))),
        (status = 400, description = "The body is not a readable file (BILLER_INVALID_TRANSACTION, field body)", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
        (status = 429, description = "The institution keeps api.max_batch_jobs jobs already", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
    ),
    security(("bearer" = [], "signature" = [])),
)]
pub async fn recurring(
    State(st): State<ApiState>,
    Extension(c): Extension<Caller>,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Reply {
    submit_as(st, c, params, Format::Recurring, body).await
}

async fn submit_as(
    st: ApiState,
    c: Caller,
    params: HashMap<String, String>,
    format: Format,
    body: Bytes,
) -> Reply {
    let clock = st.clock();
    let dry_run = super::dry_run_or_journal_open(&st, &params)?;
    let (id, found) = match st.jobs.submit(&c.0, format, dry_run, &body).await {
        Ok(x) => x,
        Err(e @ SwitchError::Busy(_)) => {
            return Err(refuse_with(StatusCode::TOO_MANY_REQUESTS, &e, clock));
        }
        Err(e) => return Err(refuse(&e, Door::Gateway, clock)),
    };
    let view = match st.jobs.view(&c.0.code, &id).await {
        Ok(Some(v)) => v,
        Ok(None) => return Err(no_such_job(&st)),
        Err(e) => return Err(refuse(&e, Door::Gateway, clock)),
    };
    tracing::info!(institution = %c.0.code, job = %id, total = view.total, new = found == Submitted::Created, "bulk issuance job submitted");
    let data = serde_json::to_value(&view).unwrap_or_default();
    let mut resp = ok(clock, "success", data);
    if found == Submitted::Created {
        *resp.status_mut() = StatusCode::ACCEPTED;
    }
    if let Ok(loc) = format!("/api/v2/gw/bill/batch/jobs/{id}").parse() {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

/// `GET /api/v2/gw/bill/batch/jobs/{job_id}`.
#[utoipa::path(
    get,
    path = "/bill/batch/jobs/{job_id}",
    operation_id = "jobs_status",
    tag = "Bill",
    summary = "A bulk issuance job's status and counts",
    params(
        ("job_id" = String, Path),
    ),
    responses(
        (status = 200, description = "The job", body = ref("#/components/schemas/BatchJobAnswer"), content_type = "application/json"),
        (status = 404, description = "No such job of this institution, or no longer kept (api.batch_job_ttl_secs)", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
    ),
    security(("bearer" = [], "signature" = [])),
)]
pub async fn status(
    State(st): State<ApiState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Reply {
    if !plausible_id(&id) {
        return Err(no_such_job(&st));
    }
    match st.jobs.view(&c.0.code, &id).await {
        Ok(Some(v)) => Ok(ok(
            st.clock(),
            "success",
            serde_json::to_value(&v).unwrap_or_default(),
        )),
        Ok(None) => Err(no_such_job(&st)),
        Err(e) => Err(refuse(&e, Door::Gateway, st.clock())),
    }
}

/// `GET /api/v2/gw/bill/batch/jobs/{job_id}/results`.
#[utoipa::path(
    get,
    path = "/bill/batch/jobs/{job_id}/results",
    operation_id = "jobs_results",
    tag = "Bill",
    summary = "A bulk issuance job's result per row so far (all rows once done)",
    params(
        ("job_id" = String, Path),
    ),
    responses(
        (status = 200, description = "The job and its rows (row, status, hash, va_number, field, reason); with Accept: text/csv the result CSV, the job's status in X-Job-Status", content((ref("#/components/schemas/BatchJobResultsAnswer") = "application/json"), (String = "text/csv"))),
        (status = 404, description = "No such job of this institution, or no longer kept (api.batch_job_ttl_secs)", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
    ),
    security(("bearer" = [], "signature" = [])),
)]
pub async fn results(
    State(st): State<ApiState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Reply {
    if !plausible_id(&id) {
        return Err(no_such_job(&st));
    }
    let (view, rows) = match st.jobs.results(&c.0.code, &id).await {
        Ok(Some(x)) => x,
        Ok(None) => return Err(no_such_job(&st)),
        Err(e) => return Err(refuse(&e, Door::Gateway, st.clock())),
    };
    if header_of(&headers, header::ACCEPT).contains("text/csv") {
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::HeaderName::from_static("x-job-status"),
                    view.status.clone(),
                ),
            ],
            issuance::results_csv(&rows),
        )
            .into_response());
    }
    let mut data = serde_json::to_value(&view).unwrap_or_default();
    data["rows"] = serde_json::to_value(&rows).unwrap_or_default();
    Ok(ok(st.clock(), "success", data))
}
