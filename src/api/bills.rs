//! One institution's bills over the Active Client API: Create New Bill, Get Bill
//! Information (`GET /api/v2/gw/bill/{hash}`), Revoke Bill, Get Bill Payments, and the
//! sandbox's Fake/Mock Payment & Reversal. Every lookup is under the caller's own keys
//! (`ipg:{<institution>}:...`), so another institution's bill is simply not found.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use serde_json::Value;

use super::auth::Caller;
use super::error::{envelope, refuse, refuse_with, Door};
use super::{json_body, ok, ApiState};
use crate::domain::command::{self, Action, Command};
use crate::domain::{Amount, Bill, VaNumber};
use crate::error::SwitchError;
use crate::store::Versioned;

/// The channel code sandbox payments are recorded under (a real channel cannot be named
/// so by accident: it is documented as reserved).
pub const MOCK_CHANNEL: &str = "ipg_sandbox";

type Reply = Result<Response, Response>;

/// Bill hashes are short alphanumeric ids; anything else cannot name a bill.
fn plausible_hash(h: &str) -> bool {
    !h.is_empty() && h.len() <= 64 && h.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The caller's bill `hash`, or the 404 answer.
async fn own_bill(st: &ApiState, c: &Caller, hash: &str) -> Result<Versioned<Bill>, Response> {
    let clock = st.clock();
    if !plausible_hash(hash) {
        return Err(refuse(&SwitchError::BillNotFound, Door::Gateway, clock));
    }
    match st.switch.hosted.bill(&c.0.code, hash).await {
        Ok(Some(b)) => Ok(b),
        Ok(None) => Err(refuse(&SwitchError::BillNotFound, Door::Gateway, clock)),
        Err(e) => Err(refuse(&e, Door::Gateway, clock)),
    }
}

fn view(st: &ApiState, b: &Bill) -> Value {
    serde_json::to_value(b.view(st.clock().now(), None)).unwrap_or_default()
}

/// `POST /api/v2/gw/bill`: the body's `institution_code` must be the caller's.
#[utoipa::path(
    post,
    path = "/bill",
    operation_id = "bills_create",
    tag = "Bill",
    summary = "Create New Bill",
    description = "institution_code must be the token's institution; every prefix must be the institution's; one active bill per VA.",
    request_body(content = ref("#/components/schemas/NewBill"), content_type = "application/json"),
    responses(
        (status = 400, response = super::openapi::Invalid),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 413, response = super::openapi::TooLarge),
        (status = 503, response = super::openapi::Unavailable),
        (status = 200, description = "Created", body = ref("#/components/schemas/BillAnswer"), content_type = "application/json"),
    ),
    security(("bearer" = [], "signature" = [])),
)]
pub async fn create(
    State(st): State<ApiState>,
    Extension(c): Extension<Caller>,
    body: Bytes,
) -> Reply {
    let clock = st.clock();
    st.journal_open()
        .map_err(|e| refuse(&e, Door::Gateway, clock))?;
    let v = json_body(&body).map_err(|e| refuse(&e, Door::Gateway, clock))?;
    let bill = st
        .switch
        .hosted
        .create_bill(&c.0, &v)
        .await
        .map_err(|e| refuse(&e, Door::Gateway, clock))?;
    tracing::info!(institution = %c.0.code, bill = %bill.hash, "bill created over HTTP");
    Ok(ok(clock, "success", view(&st, &bill)))
}

/// `POST /api/v2/gw/bill/batch[?dry_run=true]` (docs/api.md "Bulk issuance"): a JSON array
/// of Create New Bill bodies, or a CSV (`Content-Type: text/csv`) whose header names their
/// fields, each row issued on its own for the caller (`institution_code` the caller's, or
/// absent), at most 10,000 rows and `api.max_batch_bytes`. Answers the counts and a result
/// per row (`Accept: text/csv`: the result CSV); a file that cannot be read is 400 `body`.
#[utoipa::path(
    post,
    path = "/bill/batch",
    operation_id = "bills_batch",
    tag = "Bill",
    summary = "Bulk issuance: many bills, each row on its own (docs/api.md, Bulk issuance)",
    params(
        ("dry_run" = Option<bool>, Query, description = "check every row, create nothing"),
    ),
    request_body(content((ref("#/components/schemas/BatchRows") = "application/json"), (String = "text/csv")), description = "At most 10,000 rows and api.max_batch_bytes"),
    responses(
        (status = 200, description = "Counts and a result per row (created, existing, valid, refused with field and reason); with Accept: text/csv the result CSV", content((ref("#/components/schemas/BatchResultAnswer") = "application/json"), (String = "text/csv"))),
        (status = 400, description = "The body is not a readable file (BILLER_INVALID_TRANSACTION, field body)", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
        (status = 429, description = "Too many statements and bulk issuances at once (statement.max_concurrent): nothing done, try again", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
    ),
    security(("bearer" = [], "signature" = [])),
)]
pub async fn batch(
    State(st): State<ApiState>,
    Extension(c): Extension<Caller>,
    Query(params): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Reply {
    use crate::issuance;
    let clock = st.clock();
    // Heavy calls share statement.max_concurrent with statements: one more is 429 at once.
    let Ok(_permit) = st.history.clone().try_acquire_owned() else {
        return Err(refuse_with(
            StatusCode::TOO_MANY_REQUESTS,
            &SwitchError::Busy(
                "too many bulk issuances or statements at once (statement.max_concurrent); \
                 try again"
                    .into(),
            ),
            clock,
        ));
    };
    let dry_run = super::dry_run_or_journal_open(&st, &params)?;
    let csv = super::header_of(&headers, axum::http::header::CONTENT_TYPE).starts_with("text/csv");
    let rows = issuance::read_upload(&body, csv, &c.0.code).map_err(|e| {
        refuse(
            &SwitchError::invalid("body", e.to_string()),
            Door::Gateway,
            clock,
        )
    })?;
    let results = issuance::issue_all(&st.switch.hosted, &c.0, rows, dry_run, || {}).await;
    let (created, existing, valid, refused) = issuance::counts(&results);
    tracing::info!(institution = %c.0.code, created, existing, valid, refused, "bulk issuance over HTTP");
    if super::header_of(&headers, axum::http::header::ACCEPT).contains("text/csv") {
        return Ok(axum::response::IntoResponse::into_response((
            [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            issuance::results_csv(&results),
        )));
    }
    Ok(ok(
        clock,
        "success",
        serde_json::json!({
            "created": created,
            "existing": existing,
            "valid": valid,
            "refused": refused,
            "rows": results,
        }),
    ))
}

/// `GET /api/v2/gw/bill/{hash}`.
#[utoipa::path(
    get,
    path = "/bill/{hash}",
    operation_id = "bills_info",
    tag = "Bill",
    summary = "Get Bill Information",
    params(
        ("hash" = String, Path, description = "the bill's hash"),
    ),
    responses(
        (status = 401, response = super::openapi::Unauthorized),
        (status = 503, response = super::openapi::Unavailable),
        (status = 200, description = "The bill", body = ref("#/components/schemas/BillAnswer"), content_type = "application/json"),
        (status = 404, description = "No such bill of this institution: rc BILLER_BILL_NOT_FOUND", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
    ),
    security(("bearer" = [], "signature" = [])),
)]
pub async fn info(
    State(st): State<ApiState>,
    Extension(c): Extension<Caller>,
    Path(hash): Path<String>,
) -> Reply {
    let b = own_bill(&st, &c, &hash).await?;
    Ok(ok(st.clock(), "success", view(&st, &b.value)))
}

/// `DELETE /api/v2/gw/bill/{hash}`.
#[utoipa::path(
    delete,
    path = "/bill/{hash}",
    operation_id = "bills_revoke",
    tag = "Bill",
    summary = "Revoke Bill",
    description = "The bill stops being payable; its payments stay. message is \"Billing revoked.\". A bill paid in full cannot be revoked (409).",
    params(
        ("hash" = String, Path, description = "the bill's hash"),
    ),
    request_body(content = ref("#/components/schemas/RevokeRequest"), content_type = "application/json"),
    responses(
        (status = 401, response = super::openapi::Unauthorized),
        (status = 503, response = super::openapi::Unavailable),
        (status = 200, description = "Revoked", body = ref("#/components/schemas/BillAnswer"), content_type = "application/json"),
        (status = 404, description = "No such bill of this institution", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
        (status = 409, description = "Already paid: rc BILLER_BILL_ALREADY_PAID", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
    ),
    security(("bearer" = [], "signature" = [])),
)]
pub async fn revoke(
    State(st): State<ApiState>,
    Extension(c): Extension<Caller>,
    Path(hash): Path<String>,
) -> Reply {
    let clock = st.clock();
    st.journal_open()
        .map_err(|e| refuse(&e, Door::Gateway, clock))?;
    own_bill(&st, &c, &hash).await?;
    let bill = st
        .switch
        .hosted
        .revoke_bill(&c.0, &hash)
        .await
        .map_err(|e| refuse(&e, Door::Gateway, clock))?;
    tracing::info!(institution = %c.0.code, bill = %hash, "bill revoked over HTTP");
    Ok(ok(clock, "Billing revoked.", view(&st, &bill)))
}

/// `GET /api/v2/gw/bill/{hash}/payment`: every payment of the bill, oldest first, each as
/// it stands now (`status` `paid` or `reversed`).
#[utoipa::path(
    get,
    path = "/bill/{hash}/payment",
    operation_id = "bills_payments",
    tag = "Bill",
    summary = "Get Bill Payments",
    params(
        ("hash" = String, Path, description = "the bill's hash"),
    ),
    responses(
        (status = 401, response = super::openapi::Unauthorized),
        (status = 503, response = super::openapi::Unavailable),
        (status = 200, description = "Every payment of the bill, oldest first", body = ref("#/components/schemas/PaymentListAnswer"), content_type = "application/json"),
        (status = 404, description = "No such bill of this institution", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
    ),
    security(("bearer" = [], "signature" = [])),
)]
pub async fn payments(
    State(st): State<ApiState>,
    Extension(c): Extension<Caller>,
    Path(hash): Path<String>,
) -> Reply {
    let clock = st.clock();
    own_bill(&st, &c, &hash).await?;
    let recs = st
        .switch
        .hosted
        .store
        .bill_payment_records(&c.0.code, &hash)
        .await
        .map_err(|e| refuse(&e.into(), Door::Gateway, clock))?;
    let data: Vec<Value> = recs
        .iter()
        .map(|r| serde_json::to_value(r.current()).unwrap_or_default())
        .collect();
    Ok(ok(clock, "success", Value::Array(data)))
}

/// `GET /api/v2/gw/bill/{hash}/mock?type=payment[&amount=N][&ref=R]` or
/// `?type=reversal&ref=R[&amount=N]` (sandbox only): a payment or reversal as channel
/// `ipg_sandbox` would send it, through the same handler as every channel.
#[utoipa::path(
    get,
    path = "/bill/{hash}/mock",
    operation_id = "bills_mock",
    tag = "Bill",
    summary = "Fake/Mock Payment & Reversal (sandbox only)",
    description = "Only when api.sandbox = true (403 otherwise). Runs a payment or reversal as channel ipg_sandbox through the same rules as every channel.",
    params(
        ("hash" = String, Path, description = "the bill's hash"),
        ("type" = Option<String>, Query, description = "payment (default) or reversal"),
        ("amount" = Option<String>, Query, description = "payment: default the billed amount; reversal: default the payment's amount"),
        ("ref" = Option<String>, Query, description = "payment reference (generated for a payment when absent; required for a reversal)"),
    ),
    responses(
        (status = 400, response = super::openapi::Invalid),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 503, response = super::openapi::Unavailable),
        (status = 200, description = "As the Payment Channel API answers", body = ref("#/components/schemas/BillWithPaymentAnswer"), content_type = "application/json"),
        (status = 403, description = "Sandbox off", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
        (status = 404, description = "No such bill of this institution", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
    ),
    security(("bearer" = [], "signature" = [])),
)]
pub async fn mock(
    State(st): State<ApiState>,
    Extension(c): Extension<Caller>,
    Path(hash): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let clock = *st.clock();
    if !st.settings.sandbox {
        return Err(refuse_with(
            StatusCode::FORBIDDEN,
            &SwitchError::invalid("api.sandbox", "Fake/Mock payments are disabled"),
            &clock,
        ));
    }
    let bill = own_bill(&st, &c, &hash).await?.value;
    let reference = q.get("ref").cloned();
    // The same shape the channel door enforces on references.
    if reference
        .as_deref()
        .is_some_and(|r| r.is_empty() || r.len() > 64 || !r.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(refuse(
            &SwitchError::invalid("ref", "must be 1-64 printable characters without spaces"),
            Door::Gateway,
            &clock,
        ));
    }
    // Read as a channel's string amount is read: whole, positive rupiah.
    let read = |a: String| Amount::positive_from_json(&Value::String(a));
    let amount = q.get("amount").cloned().map(read);
    let action = match q.get("type").map(String::as_str) {
        Some("payment") | None => Action::Pay(command::Pay {
            va: VaNumber::parse(&bill.va_number),
            ref_id: reference.unwrap_or_else(|| {
                format!("MOCK{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
            }),
            amount: amount.unwrap_or_else(|| read(bill.billed_amount.to_string())),
            terminal_id: Some("other".into()),
            transaction_date: Some(clock.now().format("%Y-%m-%d %H:%M:%S").to_string()),
            customer_name: None,
        }),
        Some("reversal") => {
            let Some(reference) = reference else {
                return Err(refuse(
                    &SwitchError::invalid("ref", "is required for a reversal"),
                    Door::Gateway,
                    &clock,
                ));
            };
            let amount = match amount {
                Some(a) => a,
                None => match st
                    .switch
                    .hosted
                    .store
                    .payment(&c.0.code, MOCK_CHANNEL, &reference)
                    .await
                {
                    Ok(Some(r)) => Ok(r.paid.payment.amount),
                    // Past the hot window: the reversal is answered from the compact record.
                    Err(crate::store::StoreError::Retired(r)) => {
                        crate::domain::Amount::new(r.amount)
                    }
                    Ok(None) => {
                        return Err(refuse(&SwitchError::PaymentNotFound, Door::Gateway, &clock))
                    }
                    Err(e) => return Err(refuse(&e.into(), Door::Gateway, &clock)),
                },
            };
            Action::Reverse(command::Reverse {
                payment_ref: reference,
                amount,
                bill_id: Some(bill.hash.clone()),
                va: Some(VaNumber::parse(&bill.va_number)),
            })
        }
        Some(_) => {
            return Err(refuse(
                &SwitchError::invalid("type", "must be payment or reversal"),
                Door::Gateway,
                &clock,
            ))
        }
    };
    let cmd = Command {
        channel: MOCK_CHANNEL.into(),
        action,
    };
    match st.serve(&cmd).await.result {
        Ok(o) => Ok(envelope(StatusCode::OK, &o)),
        Err(e) => Err(refuse(&e, Door::Gateway, &clock)),
    }
}
