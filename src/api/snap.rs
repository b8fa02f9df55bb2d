//! SNAP BI's door (docs/snap.md): services 73 (B2B access token), 24 (VA inquiry), 25 (VA
//! payment) and 26 (inquiry status) at `<snap.path_prefix>/v1.0/...`, on the same bills,
//! rules, journal and webhooks as IPG's doors: a SNAP call becomes the very command an IPG
//! call does ([`crate::protocol::snap::va`]) and goes through [`ApiState::serve`].
//!
//! The steps of a transactional call, in order (snap-reference.md s4.3): the Bearer token
//! (401xx03 none, 401xx01 unknown or expired), `X-PARTNER-ID` the token's partner (401xx00),
//! `X-TIMESTAMP` read (400xx01) and within `snap.timestamp_skew_ms` (401xx00), `X-SIGNATURE`
//! (HMAC-SHA512 over the bytes received, 401xx00), `CHANNEL-ID` (400xx02), the body
//! (400xx00/01/02), `X-EXTERNAL-ID` unique per partner and day (409xx00), then the switch.
//! Checking the id after the signature keeps unauthenticated callers from burning ids.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{one_header, read_body, ApiState};
use crate::domain::{BillError, Rc};
use crate::error::SwitchError;
use crate::metrics as m;
use crate::protocol::snap::va::{self, Request as SnapRequest};
use crate::protocol::snap::{Answer, Refusal, Service};
use crate::routing::{SnapPartner, SnapParty};
use crate::signature::snap as sig;
use crate::store::StoreError;

#[utoipa::path(
    post,
    path = "/snap/v1.0/transfer-va/inquiry",
    operation_id = "snap_inquiry",
    tag = "SNAP BI",
    summary = "VA inquiry (a bank asks for the bill)",
    description = "SNAP service 24 (docs/snap.md).",
    params(
        super::openapi::SnapHeaders,
    ),
    request_body(content = ref("#/components/schemas/SnapInquiryRequest"), content_type = "application/json", example = json!({"partnerServiceId": "  857499", "customerNo": "0000000001", "virtualAccountNo": "  8574990000000001", "inquiryRequestId": "SNAP-INQ-1"})),
    responses(
        (status = 200, description = "2002400 Successful", body = ref("#/components/schemas/SnapAnswer"), content_type = "application/json"),
        (status = "default", response = super::openapi::SnapRefusal),
    ),
    security(("snapBearer" = [])),
)]
pub async fn inquiry(st: State<ApiState>, req: Request) -> Response {
    transactional(st, Service::Inquiry, req).await
}

#[utoipa::path(
    post,
    path = "/snap/v1.0/transfer-va/payment",
    operation_id = "snap_payment",
    tag = "SNAP BI",
    summary = "VA payment",
    description = "SNAP service 25 (docs/snap.md).",
    params(
        super::openapi::SnapHeaders,
    ),
    request_body(content = ref("#/components/schemas/SnapPaymentRequest"), content_type = "application/json", example = json!({"partnerServiceId": "  857499", "customerNo": "0000000001", "virtualAccountNo": "  8574990000000001", "paymentRequestId": "SNAP-PAY-1", "paidAmount": {"value": "350000.00", "currency": "IDR"}})),
    responses(
        (status = 200, description = "2002500 Successful", body = ref("#/components/schemas/SnapAnswer"), content_type = "application/json"),
        (status = "default", response = super::openapi::SnapRefusal),
    ),
    security(("snapBearer" = [])),
)]
pub async fn payment(st: State<ApiState>, req: Request) -> Response {
    transactional(st, Service::Payment, req).await
}

#[utoipa::path(
    post,
    path = "/snap/v1.0/transfer-va/status",
    operation_id = "snap_status",
    tag = "SNAP BI",
    summary = "VA inquiry status",
    description = "SNAP service 26 (docs/snap.md).",
    params(
        super::openapi::SnapHeaders,
    ),
    request_body(content = ref("#/components/schemas/SnapStatusRequest"), content_type = "application/json", example = json!({"partnerServiceId": "  857499", "customerNo": "0000000001", "virtualAccountNo": "  8574990000000001", "paymentRequestId": "SNAP-PAY-1"})),
    responses(
        (status = 200, description = "2002600 Successful", body = ref("#/components/schemas/SnapAnswer"), content_type = "application/json"),
        (status = "default", response = super::openapi::SnapRefusal),
    ),
    security(("snapBearer" = [])),
)]
pub async fn status(st: State<ApiState>, req: Request) -> Response {
    transactional(st, Service::Status, req).await
}

/// A SNAP answer: the status of its code, `X-TIMESTAMP`, the body
/// `{responseCode, responseMessage, ..rest}`.
pub(super) fn answer_with(st: &ApiState, a: &Answer, rest: Map<String, Value>) -> Response {
    let mut body = Map::new();
    body.insert("responseCode".into(), a.code.clone().into());
    body.insert("responseMessage".into(), a.message.clone().into());
    body.extend(rest);
    let status = StatusCode::from_u16(a.http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, axum::Json(Value::Object(body))).into_response();
    if let Ok(v) = HeaderValue::from_str(&st.clock().stamp_now()) {
        r.headers_mut().insert("x-timestamp", v);
    }
    r
}

fn refused(st: &ApiState, service: Service, why: &Refusal) -> Response {
    answer_with(st, &why.answer(service), Map::new())
}

/// A header sent once (a repeated one is a format error, as on IPG's doors), `None` when
/// absent or empty.
fn header<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Refusal> {
    match one_header(h, name) {
        Ok(v) => Ok(v.filter(|v| !v.is_empty())),
        Err(_) => Err(Refusal::Format(name.to_ascii_uppercase())),
    }
}

fn mandatory_header<'a>(h: &'a HeaderMap, name: &str) -> Result<&'a str, Refusal> {
    header(h, name)?.ok_or_else(|| Refusal::Mandatory(name.to_ascii_uppercase()))
}

/// `X-TIMESTAMP` read (ISO 8601 with a zone, any fraction) and within the skew.
fn fresh_timestamp(st: &ApiState, t: &str) -> Result<(), Refusal> {
    let at = chrono::DateTime::parse_from_rfc3339(t)
        .map_err(|_| Refusal::Format("X-TIMESTAMP".into()))?;
    let skew = (st.clock().now().timestamp_millis() - at.timestamp_millis()).unsigned_abs();
    if skew > st.snap.timestamp_skew.as_millis() as u64 {
        return Err(Refusal::Unauthorized("Timestamp"));
    }
    Ok(())
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The record of a SNAP token: `snap:<channel>|<fingerprint>` for a bank,
/// `snapi:<institution>|<fingerprint>` for an institution (an IPG institution's OAuth token
/// never reads as either, and a secret changed kills its tokens).
fn token_record(party: &SnapParty, p: &SnapPartner) -> String {
    match party {
        SnapParty::Channel(c) => format!("snap:{c}|{}", p.secret_fingerprint),
        SnapParty::Institution(i) => format!("snapi:{i}|{}", p.secret_fingerprint),
    }
}

/// Service 73: `POST <prefix>/v1.0/access-token/b2b`.
#[utoipa::path(
    post,
    path = "/snap/v1.0/access-token/b2b",
    operation_id = "snap_token",
    tag = "SNAP BI",
    summary = "B2B access token",
    description = "SNAP service 73 (docs/snap.md).",
    request_body(content = ref("#/components/schemas/SnapTokenRequest"), content_type = "application/json", example = json!({"grantType": "client_credentials"})),
    responses(
        (status = 200, description = "2007300 Successful", body = ref("#/components/schemas/SnapAnswer"), content_type = "application/json"),
        (status = "default", response = super::openapi::SnapRefusal),
    ),
)]
pub async fn token(State(st): State<ApiState>, req: Request) -> Response {
    let service = Service::AccessToken;
    let clock = *st.clock();
    let (parts, body) = req.into_parts();
    let bytes = match read_body(body, &parts.headers, &st.settings, &clock).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match issue(&st, &parts.headers, &bytes).await {
        Ok((client, rest)) => {
            let mut r = answer_with(&st, &Answer::success(service), rest);
            if let Ok(v) = HeaderValue::from_str(&client) {
                r.headers_mut().insert("x-client-key", v);
            }
            r
        }
        Err(why) => {
            tracing::debug!(reason = ?why, "snap access token refused");
            refused(&st, service, &why)
        }
    }
}

async fn issue(
    st: &ApiState,
    h: &HeaderMap,
    bytes: &[u8],
) -> Result<(String, Map<String, Value>), Refusal> {
    let client = mandatory_header(h, "x-client-key")?;
    let timestamp = mandatory_header(h, "x-timestamp")?;
    let signature = mandatory_header(h, "x-signature")?;
    let v = crate::protocol::json::parse(bytes).map_err(|_| Refusal::BadRequest)?;
    match v.get("grantType") {
        Some(Value::String(g)) if g == "client_credentials" => {}
        None | Some(Value::Null) => return Err(Refusal::Mandatory("grantType".into())),
        Some(_) => return Err(Refusal::Format("grantType".into())),
    }
    let (party, partner) = st
        .switch
        .routing
        .snap_partner(client)
        .ok_or(Refusal::Unauthorized("Unknown client"))?;
    fresh_timestamp(st, timestamp)?;
    let signed = sig::token_string_to_sign(client, timestamp);
    if !partner.public_key.verify(signed.as_bytes(), signature) {
        return Err(Refusal::Unauthorized("Signature"));
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let ttl = st.snap.token_ttl.as_secs();
    st.switch
        .hosted
        .store
        .put_token(
            &sha256_hex(token.as_bytes()),
            &token_record(party, partner),
            ttl,
        )
        .await
        .map_err(|_| Refusal::Internal)?;
    tracing::info!(client, "snap access token issued");
    let mut rest = Map::new();
    rest.insert("accessToken".into(), token.into());
    rest.insert("tokenType".into(), "Bearer".into());
    rest.insert("expiresIn".into(), ttl.to_string().into());
    rest.insert("additionalInfo".into(), json!({}));
    Ok((client.to_owned(), rest))
}

/// The party and partner a Bearer token stands for.
async fn partner_of<'a>(
    st: &'a ApiState,
    h: &HeaderMap,
) -> Result<(String, SnapParty, &'a SnapPartner), Refusal> {
    let token = header(h, "authorization")?
        .and_then(super::auth::bearer_token)
        .ok_or(Refusal::TokenNotFound)?;
    let record = st
        .switch
        .hosted
        .store
        .token(&sha256_hex(token.as_bytes()))
        .await
        .map_err(|_| Refusal::Internal)?
        .ok_or(Refusal::InvalidToken)?;
    let routing = &st.switch.routing;
    let (party, partner, fp) = if let Some(r) = record.strip_prefix("snap:") {
        let (code, fp) = r.rsplit_once('|').ok_or(Refusal::InvalidToken)?;
        let p = routing.channel(code).and_then(|c| c.snap.as_ref());
        (SnapParty::Channel(code.to_owned()), p, fp)
    } else if let Some(r) = record.strip_prefix("snapi:") {
        let (code, fp) = r.rsplit_once('|').ok_or(Refusal::InvalidToken)?;
        let p = routing.by_code(code).and_then(|i| i.snap.as_ref());
        (SnapParty::Institution(code.to_owned()), p, fp)
    } else {
        return Err(Refusal::InvalidToken);
    };
    // The partner's secret changed (or it left the configuration): its tokens died with it.
    let partner = partner
        .filter(|p| p.secret_fingerprint == fp)
        .ok_or(Refusal::InvalidToken)?;
    Ok((token.to_owned(), party, partner))
}

/// A signed SNAP call of a known partner: the token, `X-PARTNER-ID`, `X-TIMESTAMP`,
/// `X-SIGNATURE` over the bytes received, `CHANNEL-ID` (module docs, steps 1-5).
pub(super) async fn authenticate(
    st: &ApiState,
    service: Service,
    parts: &axum::http::request::Parts,
    bytes: &[u8],
) -> Result<SnapParty, Refusal> {
    let h = &parts.headers;
    let (token, party, partner) = partner_of(st, h).await?;
    let partner_id = mandatory_header(h, "x-partner-id")?;
    if partner_id != partner.client_id {
        return Err(Refusal::Unauthorized("Unknown client"));
    }
    let timestamp = mandatory_header(h, "x-timestamp")?;
    fresh_timestamp(st, timestamp)?;
    let signature = mandatory_header(h, "x-signature")?;
    let endpoint = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let signed = sig::string_to_sign(parts.method.as_str(), endpoint, &token, bytes, timestamp);
    if !partner.mac.verify(&signed, signature) {
        return Err(Refusal::Unauthorized("Signature"));
    }
    mandatory_header(h, "channel-id")?;
    if !partner.allows(service.code()) {
        return Err(Refusal::FeatureNotAllowed);
    }
    Ok(party)
}

/// An `X-EXTERNAL-ID` claimed: the id, the day and service it counts in
/// (`<day>:<service>`), and the value this request set, if it was the first to claim it.
pub(super) struct Claim {
    pub xid: String,
    pub day: String,
    pub own: Option<String>,
}

/// Claims `X-EXTERNAL-ID` for `what` (the service and the business reference) under
/// `owner` (a channel code, or `i.<institution>`) for `service` (ids are unique per partner,
/// service and day: snap-reference.md s7.1): `Ok` when free or claimed by the same request
/// (a retry), `409xx00` when claimed by another. The stored value is `what` and a nonce of
/// this request, so only the request that claimed it may give it back.
pub(super) async fn claim_external_id(
    st: &ApiState,
    h: &HeaderMap,
    owner: &str,
    service: Service,
    what: &str,
) -> Result<Claim, Refusal> {
    let xid = match header(h, "x-external-id")? {
        Some(x) if x.len() <= 36 && x.bytes().all(|b| b.is_ascii_graphic()) => x,
        Some(_) => return Err(Refusal::Format("X-EXTERNAL-ID".into())),
        None => return Err(Refusal::Mandatory("X-EXTERNAL-ID".into())),
    };
    let (day, ttl) = external_id_day(st);
    let day = format!("{day}:{}", service.code());
    let value = format!("{what}#{}", uuid::Uuid::new_v4().simple());
    let claim = |own| Claim {
        xid: xid.to_owned(),
        day: day.clone(),
        own,
    };
    match st
        .switch
        .hosted
        .store
        .claim_external_id(owner, &day, xid, &value, ttl)
        .await
    {
        Ok(None) => Ok(claim(Some(value.clone()))),
        Ok(Some(earlier)) if earlier.rsplit_once('#').map(|(w, _)| w) == Some(what) => {
            Ok(claim(None))
        }
        Ok(Some(_)) => Err(Refusal::Conflict),
        Err(_) => Err(Refusal::Internal),
    }
}

/// The business day of an `X-EXTERNAL-ID` (the switch's offset) and how long its claim is
/// kept: to the next midnight, plus an hour for clocks that differ.
fn external_id_day(st: &ApiState) -> (String, u64) {
    let now = st.clock().now();
    let day = now.date_naive();
    let next = day
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis() - now.offset().local_minus_utc() as i64 * 1000)
        .unwrap_or(now.timestamp_millis());
    let ttl = (next - now.timestamp_millis()).max(0) as u64 + 3_600_000;
    (day.to_string(), ttl)
}

/// What a transactional call got as far as the switch.
struct Call {
    channel: String,
    request: SnapRequest,
    claim: Claim,
}

/// Headers, token, signature, body and `X-EXTERNAL-ID`, in that order (module docs).
async fn admit(
    st: &ApiState,
    service: Service,
    parts: &axum::http::request::Parts,
    bytes: &[u8],
) -> Result<Call, (Refusal, Option<SnapRequest>)> {
    let plain = |r: Refusal| (r, None);
    let channel = match authenticate(st, service, parts, bytes)
        .await
        .map_err(plain)?
    {
        SnapParty::Channel(c) => c,
        // An institution pays no bills: the bank-facing services are the banks'.
        SnapParty::Institution(_) => return Err(plain(Refusal::FeatureNotAllowed)),
    };
    let request = va::parse(service, bytes, *st.clock().now().offset()).map_err(plain)?;
    let what = format!("{}|{}", service.code(), request.reference());
    let claim = match claim_external_id(st, &parts.headers, &channel, service, &what).await {
        Ok(c) => c,
        Err(r) => return Err((r, Some(request))),
    };
    Ok(Call {
        channel,
        request,
        claim,
    })
}

/// The SNAP refusal of a switch error on `service` (the table in docs/snap.md).
pub(super) fn refusal_of(e: &SwitchError, service: Service) -> Refusal {
    match e {
        SwitchError::Authentication(_) => Refusal::Unauthorized("Unknown client"),
        SwitchError::InvalidField { field, reason } if reason.contains("required") => {
            Refusal::Mandatory(field.clone())
        }
        SwitchError::InvalidField { field, .. } => Refusal::Format(field.clone()),
        SwitchError::InvalidVa(_) => Refusal::Format("virtualAccountNo".into()),
        SwitchError::UnknownPrefix(_) => Refusal::BillNotFound("Unknown Prefix"),
        SwitchError::InvalidAmount(_) | SwitchError::Bill(BillError::Amount(_), _) => {
            Refusal::InvalidAmount
        }
        SwitchError::BillNotFound => Refusal::BillNotFound("Not Found"),
        SwitchError::Bill(BillError::AlreadyPaid, _) | SwitchError::AlreadyProcessed(..) => {
            Refusal::PaidBill
        }
        SwitchError::Bill(BillError::Revoked, _) => Refusal::BillNotFound("Revoked"),
        SwitchError::Bill(BillError::Expired(_), _) => Refusal::BillExpired,
        SwitchError::ReferenceConflict(_) | SwitchError::ReversedBeforePayment(_) => {
            Refusal::Inconsistent
        }
        SwitchError::PaymentNotFound => Refusal::TransactionNotFound,
        SwitchError::AlreadyReversed(_) | SwitchError::TooLateToReverse(..) => {
            Refusal::InvalidStatus
        }
        SwitchError::RateLimited { .. } => Refusal::TooManyRequests,
        SwitchError::Store(StoreError::Corrupt { .. }) | SwitchError::Internal(_) => {
            Refusal::General
        }
        SwitchError::Store(StoreError::InDoubt(_)) if service == Service::Inquiry => {
            Refusal::Timeout
        }
        SwitchError::Store(_) | SwitchError::Busy(_) => Refusal::Internal,
    }
}

/// Whether a payment's outcome is unknown: answered in doubt, or Redis or the journal
/// failed on the way (a script may have run before its answer was lost). A bank reads any
/// code but 200/202 as failed and refunds (snap-reference.md s7.5), so these are `202`;
/// `Busy` (the VA locked, nothing tried) stays a 5xx.
fn outcome_unknown(e: &SwitchError) -> bool {
    e.is_in_doubt()
        || matches!(
            e,
            SwitchError::Store(StoreError::Unavailable(_) | StoreError::Journal(_))
        )
}

/// Services 24, 25, 26.
async fn transactional(State(st): State<ApiState>, service: Service, req: Request) -> Response {
    let clock = *st.clock();
    let (parts, body) = req.into_parts();
    let bytes = match read_body(body, &parts.headers, &st.settings, &clock).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let call = match admit(&st, service, &parts, &bytes).await {
        Ok(c) => c,
        Err((why, request)) => {
            m::count_answer(
                "snap",
                service.as_str(),
                "unknown",
                "none",
                Rc::BillerInvalidTransaction,
            );
            tracing::debug!(service = service.code(), reason = ?why, "snap request refused");
            let rest = request
                .and_then(|r| r.refused_data(&why.parts().2))
                .map(|d| Map::from_iter([("virtualAccountData".to_owned(), d)]))
                .unwrap_or_default();
            return answer_with(&st, &why.answer(service), rest);
        }
    };
    let cmd = call.request.command(&call.channel);
    let served = st.serve(&cmd).await;
    let rc = match &served.result {
        Ok(o) => o.rc,
        Err(e) => e.rc(),
    };
    m::count_answer(
        "snap",
        service.as_str(),
        &call.channel,
        served.institution_label(),
        rc,
    );
    let r = &call.request;
    let (a, data) = match &served.result {
        Ok(o) if o.rc == Rc::Success => (Answer::success(service), Some(r.success_data(o))),
        // In doubt: in progress (flag 02), never a failure a bank would refund on.
        Ok(o)
            if o.rc == Rc::BillerSuspectTransaction
                && matches!(service, Service::Payment | Service::Status) =>
        {
            (Answer::in_progress(service), Some(r.in_progress_data()))
        }
        Err(e) if service == Service::Payment && outcome_unknown(e) => {
            (Answer::in_progress(service), Some(r.in_progress_data()))
        }
        Ok(o) => {
            let why = va::refusal_of(o.rc, service);
            let a = why.answer(service);
            let data = r.refused_data(&o.message);
            (a, data)
        }
        Err(e) => {
            let why = refusal_of(e, service);
            let a = why.answer(service);
            let data = r.refused_data(&a.message);
            (a, data)
        }
    };
    if let (true, Some(own)) = (a.http >= 500, &call.claim.own) {
        // Nothing was decided: the partner may send the same X-EXTERNAL-ID again.
        let (store, c) = (&st.switch.hosted.store, &call.claim);
        if let Err(e) = store
            .release_external_id(&call.channel, &c.day, &c.xid, own)
            .await
        {
            tracing::warn!(error = %e, "snap: X-EXTERNAL-ID of a request not served left claimed");
        }
    }
    let rest = data
        .map(|d| Map::from_iter([("virtualAccountData".to_owned(), d)]))
        .unwrap_or_default();
    answer_with(&st, &a, rest)
}
