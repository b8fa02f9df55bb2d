//! SNAP's institution-facing VA services (docs/snap.md "Institutions"): an institution
//! configured as a SNAP partner (`[institutions.snap]`) issues VAs on its hosted bills
//! (27 create VA: IPG's Create New Bill, the same rules and journal), reads them (30),
//! revokes them (31 delete VA) and reads a day's payments (35 report, from the journal as
//! statements are). The steps before the service are [`super::snap::authenticate`]'s and
//! the `X-EXTERNAL-ID` claim, as for the banks' services.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::snap::{answer_with, authenticate, claim_external_id, refusal_of};
use super::{read_body, ApiState};
use crate::domain::InstitutionMode;
use crate::error::SwitchError;
use crate::protocol::snap::manage::{self, VaRef};
use crate::protocol::snap::{Answer, Refusal, Service};
use crate::routing::{Institution, SnapParty};

/// Most rows one report (35) answers; the rest is flagged (`additionalInfo.truncated`).
pub const REPORT_ROWS_MAX: usize = 10_000;

/// A management call admitted: the hosted institution, the body, the `X-EXTERNAL-ID`
/// checked for `what`.
async fn admit(
    st: &ApiState,
    service: Service,
    parts: &axum::http::request::Parts,
    bytes: &[u8],
) -> Result<Arc<Institution>, Refusal> {
    let SnapParty::Institution(code) = authenticate(st, service, parts, bytes).await? else {
        // A bank issues no VAs: these services are the institutions'.
        return Err(Refusal::FeatureNotAllowed);
    };
    st.switch
        .routing
        .by_code(&code)
        .filter(|i| i.mode == InstitutionMode::Hosted)
        .cloned()
        .ok_or(Refusal::FeatureNotAllowed)
}

/// Reads the body, admits the call, runs `serve` and answers it.
async fn handle<F, Fut>(st: ApiState, service: Service, req: Request, serve: F) -> Response
where
    F: FnOnce(ApiState, Arc<Institution>, axum::http::request::Parts, axum::body::Bytes) -> Fut,
    Fut: std::future::Future<Output = Result<(Answer, Map<String, Value>), Refusal>>,
{
    let clock = *st.clock();
    let (parts, body) = req.into_parts();
    let bytes = match read_body(body, &parts.headers, &st.settings, &clock).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let result = match admit(&st, service, &parts, &bytes).await {
        Ok(inst) => {
            let code = inst.code.clone();
            let r = serve(st.clone(), inst, parts, bytes).await;
            crate::metrics::count_answer(
                "snap",
                service.as_str(),
                "none",
                &code,
                if r.is_ok() {
                    crate::domain::Rc::Success
                } else {
                    crate::domain::Rc::BillerInvalidTransaction
                },
            );
            r
        }
        Err(e) => Err(e),
    };
    match result {
        Ok((a, rest)) => answer_with(&st, &a, rest),
        Err(why) => {
            tracing::debug!(service = service.code(), reason = ?why, "snap request refused");
            answer_with(&st, &why.answer(service), Map::new())
        }
    }
}

fn data(v: Value) -> Map<String, Value> {
    Map::from_iter([("virtualAccountData".to_owned(), v)])
}

/// A create's refusal, naming the SNAP field for the IPG one.
fn create_refusal(e: &SwitchError) -> Refusal {
    match e {
        SwitchError::InvalidField { field, reason } => {
            let f = manage::snap_field(field).to_owned();
            if reason.contains("required") {
                Refusal::Mandatory(f)
            } else {
                Refusal::Format(f)
            }
        }
        other => refusal_of(other, Service::CreateVa),
    }
}

/// Service 27.
#[utoipa::path(
    post,
    path = "/snap/v1.0/transfer-va/create-va",
    operation_id = "snap_manage_create_va",
    tag = "SNAP BI",
    summary = "Create VA (an institution issues a bill)",
    description = "SNAP service 27 (docs/snap.md).",
    params(
        super::openapi::SnapHeaders,
    ),
    request_body(content = ref("#/components/schemas/SnapCreateVaRequest"), content_type = "application/json", example = json!({"partnerServiceId": "  857499", "customerNo": "0000000001", "virtualAccountNo": "  8574990000000001", "virtualAccountName": "Ahmad", "trxId": "INV-1", "totalAmount": {"value": "150000.00", "currency": "IDR"}, "virtualAccountTrxType": "C"})),
    responses(
        (status = 200, description = "2002700 Successful", body = ref("#/components/schemas/SnapAnswer"), content_type = "application/json"),
        (status = "default", response = super::openapi::SnapRefusal),
    ),
    security(("snapBearer" = [])),
)]
pub async fn create_va(State(st): State<ApiState>, req: Request) -> Response {
    handle(
        st,
        Service::CreateVa,
        req,
        |st, inst, parts, bytes| async move {
            let offset = *st.clock().now().offset();
            let (va, trx_id, ipg) = manage::create_request(&bytes, &inst.code, offset)?;
            let what = format!("27|{}|{trx_id}", va.va());
            claim_external_id(
                &st,
                &parts.headers,
                &format!("i.{}", inst.code),
                Service::CreateVa,
                &what,
            )
            .await?;
            // Issued idempotently: a retry (its first answer lost) gets the bill issued the
            // first time, whatever happened to it since (paid, expired), never a second.
            match st.switch.hosted.issue(&inst, &ipg, false).await {
                Ok(issued) => Ok((
                    Answer::success(Service::CreateVa),
                    data(manage::va_record(&va, issued.bill())),
                )),
                Err(SwitchError::InvalidField { field, reason })
                    if field == "va_number" && reason.contains("active bill") =>
                {
                    Err(Refusal::VaInUse)
                }
                Err(e) => Err(create_refusal(&e)),
            }
        },
    )
    .await
}

/// The bill on `va` of `inst`, if its `trxId` is the one named (when named).
async fn bill_on(
    st: &ApiState,
    inst: &Institution,
    va: &VaRef,
    trx_id: Option<&str>,
) -> Result<crate::domain::Bill, Refusal> {
    let bill = st
        .switch
        .hosted
        .store
        .bill_by_va(&inst.code, &va.va())
        .await
        .map_err(|_| Refusal::Internal)?
        .ok_or(Refusal::BillNotFound("Not Found"))?
        .value;
    if trx_id.is_some_and(|t| bill.invoice_number.as_deref() != Some(t)) {
        return Err(Refusal::BillNotFound("trxId"));
    }
    Ok(bill.view(st.clock().now(), Some(&va.va())))
}

/// Service 30.
#[utoipa::path(
    post,
    path = "/snap/v1.0/transfer-va/inquiry-va",
    operation_id = "snap_manage_inquiry_va",
    tag = "SNAP BI",
    summary = "Inquiry VA",
    description = "SNAP service 30 (docs/snap.md).",
    params(
        super::openapi::SnapHeaders,
    ),
    request_body(content = ref("#/components/schemas/SnapInquiryVaRequest"), content_type = "application/json", example = json!({"partnerServiceId": "  857499", "customerNo": "0000000001", "virtualAccountNo": "  8574990000000001", "trxId": "INV-1"})),
    responses(
        (status = 200, description = "2003000 Successful", body = ref("#/components/schemas/SnapAnswer"), content_type = "application/json"),
        (status = "default", response = super::openapi::SnapRefusal),
    ),
    security(("snapBearer" = [])),
)]
pub async fn inquiry_va(State(st): State<ApiState>, req: Request) -> Response {
    handle(
        st,
        Service::InquiryVa,
        req,
        |st, inst, parts, bytes| async move {
            let r = manage::va_request(&bytes, true)?;
            let what = format!("30|{}|{}", r.va.va(), r.trx_id.clone().unwrap_or_default());
            claim_external_id(
                &st,
                &parts.headers,
                &format!("i.{}", inst.code),
                Service::InquiryVa,
                &what,
            )
            .await?;
            let bill = bill_on(&st, &inst, &r.va, r.trx_id.as_deref()).await?;
            Ok((
                Answer::success(Service::InquiryVa),
                data(manage::va_record(&r.va, &bill)),
            ))
        },
    )
    .await
}

/// Service 31: the VA's bill revoked (it stops being payable; its payments stay).
#[utoipa::path(
    delete,
    path = "/snap/v1.0/transfer-va/delete-va",
    operation_id = "snap_manage_delete_va",
    tag = "SNAP BI",
    summary = "Delete VA (revokes the bill)",
    description = "SNAP service 31 (docs/snap.md).",
    params(
        super::openapi::SnapHeaders,
    ),
    request_body(content = ref("#/components/schemas/SnapDeleteVaRequest"), content_type = "application/json", example = json!({"partnerServiceId": "  857499", "customerNo": "0000000001", "virtualAccountNo": "  8574990000000001", "trxId": "INV-1"})),
    responses(
        (status = 200, description = "2003100 Successful", body = ref("#/components/schemas/SnapAnswer"), content_type = "application/json"),
        (status = "default", response = super::openapi::SnapRefusal),
    ),
    security(("snapBearer" = [])),
)]
pub async fn delete_va(State(st): State<ApiState>, req: Request) -> Response {
    handle(
        st,
        Service::DeleteVa,
        req,
        |st, inst, parts, bytes| async move {
            let r = manage::va_request(&bytes, false)?;
            let what = format!("31|{}|{}", r.va.va(), r.trx_id.clone().unwrap_or_default());
            claim_external_id(
                &st,
                &parts.headers,
                &format!("i.{}", inst.code),
                Service::DeleteVa,
                &what,
            )
            .await?;
            let bill = bill_on(&st, &inst, &r.va, r.trx_id.as_deref()).await?;
            let revoked = st
                .switch
                .hosted
                .revoke_bill(&inst, &bill.hash)
                .await
                .map_err(|e| refusal_of(&e, Service::DeleteVa))?;
            let mut m = r.va.echo.clone();
            m.insert(
                "trxId".into(),
                revoked.invoice_number.clone().unwrap_or_default().into(),
            );
            m.insert("additionalInfo".into(), json!({"billHash": revoked.hash}));
            Ok((Answer::success(Service::DeleteVa), data(Value::Object(m))))
        },
    )
    .await
}

/// Service 35: the payments of one business day's window on the institution's prefix,
/// read from the journal as statements are (at most `statement.max_concurrent` at once).
#[utoipa::path(
    post,
    path = "/snap/v1.0/transfer-va/report",
    operation_id = "snap_manage_report",
    tag = "SNAP BI",
    summary = "Report: one day's payments",
    description = "SNAP service 35 (docs/snap.md).",
    params(
        super::openapi::SnapHeaders,
    ),
    request_body(content = ref("#/components/schemas/SnapReportRequest"), content_type = "application/json", example = json!({"partnerServiceId": "  857499", "startDate": "2026-01-10", "startTime": "00:00", "endTime": "23:59"})),
    responses(
        (status = 200, description = "2003500 Successful", body = ref("#/components/schemas/SnapAnswer"), content_type = "application/json"),
        (status = "default", response = super::openapi::SnapRefusal),
    ),
    security(("snapBearer" = [])),
)]
pub async fn report(State(st): State<ApiState>, req: Request) -> Response {
    handle(
        st,
        Service::Report,
        req,
        |st, inst, parts, bytes| async move {
            let r = manage::report_request(&bytes)?;
            if !inst.prefixes.contains(&r.prefix) {
                return Err(Refusal::BillNotFound("partnerServiceId"));
            }
            let what = format!("35|{}|{}|{}|{}", r.prefix, r.date, r.from, r.to);
            claim_external_id(
                &st,
                &parts.headers,
                &format!("i.{}", inst.code),
                Service::Report,
                &what,
            )
            .await?;
            let source = st.statements.clone().ok_or(Refusal::Internal)?;
            let Ok(_permit) = st.history.clone().try_acquire_owned() else {
                return Err(Refusal::TooManyRequests);
            };
            let offset = *st.clock().now().offset();
            let day = crate::statement::Day::new(r.date, offset, 0);
            let scope = crate::statement::Scope::Institution(inst.code.clone());
            let read = source
                .day(&scope, &day)
                .await
                .map_err(|_| Refusal::Internal)?;
            let s = crate::statement::Statement::of_day(&read, &scope, &day, offset);
            let mut rows = Vec::new();
            let mut matched = 0usize;
            for line in &s.lines {
                let at = chrono::DateTime::parse_from_rfc3339(&line.time)
                    .map(|t| t.with_timezone(&offset).time());
                let in_window = at.is_ok_and(|t| t >= r.from && t <= r.to);
                if line.kind == "reversal" || !line.va_number.starts_with(&r.prefix) || !in_window {
                    continue;
                }
                matched += 1;
                if rows.len() < REPORT_ROWS_MAX {
                    rows.push(report_row(line, &r.echo_psid));
                }
            }
            let mut rest = Map::new();
            rest.insert("virtualAccountdata".into(), Value::Array(rows));
            rest.insert(
                "additionalInfo".into(),
                json!({"rows": matched, "truncated": matched > REPORT_ROWS_MAX}),
            );
            Ok((Answer::success(Service::Report), rest))
        },
    )
    .await
}

/// Services 28 and 29 (update VA, update status): not offered. IPG's bills are not edited
/// in place (an amount or a due date changed under a bank's inquiry is a payment the
/// customer did not see) and a status is what payments make it: revoke (31) and issue
/// anew (27). Answered `405xx00` once the call is authenticated.
#[utoipa::path(
    put,
    path = "/snap/v1.0/transfer-va/update-va",
    operation_id = "snap_manage_update_va",
    tag = "SNAP BI",
    summary = "Update VA: not supported (4052800)",
    description = "SNAP service 28 (docs/snap.md).",
    params(
        super::openapi::SnapHeaders,
    ),
    request_body(content = ref("#/components/schemas/SnapUpdateRequest"), content_type = "application/json", example = json!({"partnerServiceId": "  857499", "customerNo": "0000000001", "virtualAccountNo": "  8574990000000001"})),
    responses(
        (status = 200, description = "2002800 Successful", body = ref("#/components/schemas/SnapAnswer"), content_type = "application/json"),
        (status = "default", response = super::openapi::SnapRefusal),
    ),
    security(("snapBearer" = [])),
)]
pub async fn update_va(State(st): State<ApiState>, req: Request) -> Response {
    handle(st, Service::UpdateVa, req, |_, _, _, _| async {
        Err::<(Answer, Map<String, Value>), _>(Refusal::NotSupported)
    })
    .await
}

/// Service 29: see [`update_va`].
#[utoipa::path(
    put,
    path = "/snap/v1.0/transfer-va/update-status",
    operation_id = "snap_manage_update_status",
    tag = "SNAP BI",
    summary = "Update status VA: not supported (4052900)",
    description = "SNAP service 29 (docs/snap.md).",
    params(
        super::openapi::SnapHeaders,
    ),
    request_body(content = ref("#/components/schemas/SnapUpdateRequest"), content_type = "application/json", example = json!({"partnerServiceId": "  857499", "customerNo": "0000000001", "virtualAccountNo": "  8574990000000001"})),
    responses(
        (status = 200, description = "2002900 Successful", body = ref("#/components/schemas/SnapAnswer"), content_type = "application/json"),
        (status = "default", response = super::openapi::SnapRefusal),
    ),
    security(("snapBearer" = [])),
)]
pub async fn update_status(State(st): State<ApiState>, req: Request) -> Response {
    handle(st, Service::UpdateStatus, req, |_, _, _, _| async {
        Err::<(Answer, Map<String, Value>), _>(Refusal::NotSupported)
    })
    .await
}

/// One payment of a report (s3.10), from a statement line.
fn report_row(line: &crate::statement::Line, psid: &str) -> Value {
    let number = line.va_number.get(6..).unwrap_or_default();
    let (flag, english, indonesia) = crate::protocol::snap::va::payment_flag(&line.status);
    json!({
        "paymentFlagStatus": flag,
        "paymentFlagReason": crate::protocol::snap::text(english, indonesia),
        "partnerServiceId": psid,
        "customerNo": number,
        "virtualAccountNo": format!("{psid}{number}"),
        "paymentRequestId": line.reference,
        "paidAmount": crate::protocol::snap::va::money(line.amount),
        "trxDateTime": line.time,
        "additionalInfo": {"channel": line.channel, "billHash": line.bill_hash, "status": line.status},
    })
}
