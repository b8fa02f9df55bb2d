//! The Active Client API's lists, with IPG's paging fields (`current_page`, `from`,
//! `last_page`, `per_page`, `to`, `total`) and filters (`date.0`/`date.1` as inclusive
//! `YYYY-MM-DD` days in the switch's `utc_offset`, `q`, `order_by`, `order`): bills,
//! payments, account mutations, and the caller's own institution and account.
//!
//! Unfiltered lists in creation order are paged inside Redis (`ZRANGE BYSCORE LIMIT`,
//! `LRANGE`). A keyword or another sort order needs the whole date window in memory, so
//! that window is capped ([`SCAN_MAX`]) and a wider one is refused with a request to
//! narrow `date.0`/`date.1`, instead of letting one call load an institution's history.

use std::cmp::Ordering;
use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{NaiveDate, TimeZone};
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::{refuse, refuse_with, Door};
use super::ApiState;
use crate::clock::Clock;
use crate::error::{Rc, SwitchError};
use crate::routing::Institution;
use crate::store::query::{Index, Window};

/// IPG's page size.
pub const PER_PAGE: u64 = 15;
/// Most entries a filtered or re-sorted list reads.
pub const SCAN_MAX: u64 = 10_000;

type Reply = Result<Response, Response>;
type Params = HashMap<String, String>;

/// Paging and filters as asked.
#[derive(Debug)]
struct Paging {
    page: u64,
    per_page: u64,
    window: Window,
    day_from: Option<String>,
    day_to: Option<String>,
    q: Option<String>,
    order_by: Option<String>,
    desc: bool,
}

impl Paging {
    fn offset(&self) -> u64 {
        (self.page - 1) * self.per_page
    }
}

fn day(p: &Params, key: &str) -> Result<Option<NaiveDate>, SwitchError> {
    p.get(key)
        .filter(|s| !s.is_empty())
        .map(|s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| SwitchError::invalid(key, "must be a date like 2026-01-31"))
        })
        .transpose()
}

fn paging(p: &Params, clock: &Clock, order_fields: &[&str]) -> Result<Paging, SwitchError> {
    let number = |key: &str, default: u64, max: u64| -> Result<u64, SwitchError> {
        match p.get(key).filter(|s| !s.is_empty()) {
            None => Ok(default),
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    SwitchError::invalid(key, format!("must be a number from 1 to {max}"))
                }),
        }
    };
    let page = number("page", 1, 1_000_000)?;
    let per_page = number("per_page", PER_PAGE, 100)?;
    let (d0, d1) = (day(p, "date.0")?, day(p, "date.1")?);
    if let (Some(a), Some(b)) = (d0, d1) {
        if b < a {
            return Err(SwitchError::invalid("date.1", "must not be before date.0"));
        }
    }
    let offset = *clock.now().offset();
    let start_ms = |d: NaiveDate| {
        offset
            .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
            .single()
            .map(|t| t.timestamp_millis())
    };
    let window = Window {
        from_ms: d0.and_then(start_ms),
        to_ms: d1
            .and_then(|d| d.succ_opt())
            .and_then(start_ms)
            .map(|ms| ms - 1),
    };
    let order_by = p.get("order_by").filter(|s| !s.is_empty()).cloned();
    if let Some(o) = &order_by {
        if !order_fields.contains(&o.as_str()) {
            return Err(SwitchError::invalid(
                "order_by",
                format!("must be one of {}", order_fields.join(", ")),
            ));
        }
    }
    let desc = match p.get("order").map(|s| s.to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Err(SwitchError::invalid("order", "must be asc or desc")),
    };
    Ok(Paging {
        page,
        per_page,
        window,
        day_from: d0.map(|d| d.to_string()),
        day_to: d1.map(|d| d.to_string()),
        q: p.get("q")
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty()),
        order_by: order_by.filter(|o| o != "created_at"),
        desc,
    })
}

/// The list envelope: IPG's envelope plus its paging fields.
fn page_reply(clock: &Clock, p: &Paging, total: u64, data: Vec<Value>) -> Response {
    let n = data.len() as u64;
    let (from, to) = if n == 0 {
        (Value::Null, Value::Null)
    } else {
        (json!(p.offset() + 1), json!(p.offset() + n))
    };
    Json(json!({
        "rc": Rc::Success,
        "message": "success",
        "timestamp": clock.stamp_now(),
        "current_page": p.page,
        "data": data,
        "from": from,
        "last_page": total.div_ceil(p.per_page).max(1),
        "per_page": p.per_page,
        "to": to,
        "total": total,
    }))
    .into_response()
}

/// Sort order of two JSON values: numbers by value, strings (and ISO 8601 times with one
/// offset) lexically, null first.
fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

fn matches_q(v: &Value, q: &str, fields: &[&str]) -> bool {
    fields.iter().any(|f| match &v[*f] {
        Value::String(s) => s.to_lowercase().contains(q),
        Value::Null => false,
        other => other.to_string().contains(q),
    })
}

/// Sorts (stable: ties keep creation order), pages, and answers a list held in memory.
/// `rows` are oldest first.
fn page_in_memory(clock: &Clock, p: &Paging, mut rows: Vec<Value>) -> Response {
    if let Some(field) = &p.order_by {
        rows.sort_by(|a, b| cmp_values(&a[field.as_str()], &b[field.as_str()]));
    }
    if p.desc {
        rows.reverse();
    }
    let total = rows.len() as u64;
    let data = rows
        .into_iter()
        .skip(p.offset() as usize)
        .take(p.per_page as usize)
        .collect();
    page_reply(clock, p, total, data)
}

/// IPG lists take `institution_code`; here the token decides, so a different one is refused
/// rather than silently answered with the caller's own data.
fn check_institution_param(p: &Params, c: &Caller) -> Result<(), SwitchError> {
    match p.get("institution_code") {
        Some(code) if !code.is_empty() && *code != c.0.code => Err(SwitchError::invalid(
            "institution_code",
            "is not the institution of the access token",
        )),
        _ => Ok(()),
    }
}

const BILL_ORDER: &[&str] = &[
    "created_at",
    "va_number",
    "invoice_number",
    "name",
    "customer_name",
    "type",
    "status",
    "total_amount",
    "billed_amount",
    "paid_amount",
    "valid_until",
];
const BILL_Q: &[&str] = &[
    "va_number",
    "invoice_number",
    "name",
    "customer_name",
    "type",
    "status",
];

/// Payments and ledger entries older than the hot window have left Redis (docs/retention.md):
/// a window that starts before it is refused, naming where those days are read (the day's
/// statement, from the journal), instead of answered short.
fn hot_window_only(st: &ApiState, p: &Paging, what: &str) -> Result<(), SwitchError> {
    let cutoff =
        (st.switch.hosted.store.retention()).hot_cutoff(chrono::Utc::now().timestamp_millis());
    match p.window.from_ms {
        Some(from) if from < cutoff => {
            let since = chrono::DateTime::from_timestamp_millis(cutoff)
                .map(|t| st.clock().stamp(t.fixed_offset()))
                .unwrap_or_default();
            Err(SwitchError::invalid(
                "date.0",
                format!(
                    "{what} before {since} have left the switch's working set \
                     (retention.hot_window_ms): read those days from GET \
                     /api/v2/gw/statement?date=YYYY-MM-DD"
                ),
            ))
        }
        _ => Ok(()),
    }
}

fn too_wide(what: &str) -> SwitchError {
    SwitchError::invalid(
        "date.0",
        format!("more than {SCAN_MAX} {what} in the date range: narrow it with date.0/date.1"),
    )
}

/// A listing over one of the institution's time indexes (bills or payments): straight
/// from the index, one page, when nothing filters or orders it; otherwise every row in the
/// date window (at most `SCAN_MAX`) read, filtered by `q` over `q_fields` and by `exact`
/// field values, ordered and paged in memory. `rows` turns index members into rows.
#[allow(clippy::too_many_arguments)]
async fn list_index<F, Fut>(
    st: &ApiState,
    c: &Caller,
    params: &Params,
    ix: Index,
    order_fields: &[&str],
    q_fields: &[&str],
    exact_fields: &[&str],
    what: &str,
    rows: F,
) -> Reply
where
    F: Fn(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Value>, crate::store::StoreError>>,
{
    let clock = st.clock();
    let fail = |e: SwitchError| refuse(&e, Door::Gateway, clock);
    check_institution_param(params, c).map_err(fail)?;
    let p = paging(params, clock, order_fields).map_err(fail)?;
    if ix == Index::Payments {
        hot_window_only(st, &p, what).map_err(fail)?;
    }
    let exact: Vec<(&str, &String)> = exact_fields
        .iter()
        .filter_map(|k| params.get(*k).filter(|v| !v.is_empty()).map(|v| (*k, v)))
        .collect();
    let store = &st.switch.hosted.store;
    let inst = c.0.code.as_str();
    let total = store
        .index_count(inst, ix, p.window)
        .await
        .map_err(|e| fail(e.into()))?;
    if p.q.is_none() && p.order_by.is_none() && exact.is_empty() {
        let members = store
            .index_members(inst, ix, p.window, p.desc, p.offset(), p.per_page)
            .await
            .map_err(|e| fail(e.into()))?;
        let data = rows(members).await.map_err(|e| fail(e.into()))?;
        return Ok(page_reply(clock, &p, total, data));
    }
    if total > SCAN_MAX {
        return Err(fail(too_wide(what)));
    }
    let members = store
        .index_members(inst, ix, p.window, false, 0, SCAN_MAX)
        .await
        .map_err(|e| fail(e.into()))?;
    let rows = rows(members)
        .await
        .map_err(|e| fail(e.into()))?
        .into_iter()
        .filter(|v| {
            exact
                .iter()
                .all(|(k, want)| v[*k].as_str() == Some(want.as_str()))
        })
        .filter(|v| p.q.as_deref().is_none_or(|q| matches_q(v, q, q_fields)))
        .collect();
    Ok(page_in_memory(clock, &p, rows))
}

/// `GET /api/v2/gw/bill`.
#[utoipa::path(
    get,
    path = "/bill",
    operation_id = "lists_bills",
    tag = "Bill",
    summary = "Get Bill List",
    params(
        super::openapi::Paging,
        super::openapi::Period,
        ("q" = Option<String>, Query, description = "keyword over va_number, invoice_number, name, customer_name, type, status"),
        ("order_by" = Option<String>, Query, description = "created_at (default), va_number, invoice_number, name, customer_name, type, status, total_amount, billed_amount, paid_amount, valid_until"),
        ("institution_code" = Option<String>, Query, description = "optional; must be the token's institution"),
    ),
    responses(
        (status = 400, response = super::openapi::Invalid),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 503, response = super::openapi::Unavailable),
        (status = 200, description = "A page of bills, newest first by default", body = ref("#/components/schemas/BillPage"), content_type = "application/json"),
    ),
    security(("bearer" = [], "signature" = [])),
)]
pub async fn bills(
    State(st): State<ApiState>,
    Extension(c): Extension<Caller>,
    Query(params): Query<Params>,
) -> Reply {
    let now = st.clock().now();
    let store = st.switch.hosted.store.clone();
    let inst = c.0.code.clone();
    let rows = |hashes: Vec<String>| {
        let (store, inst) = (store.clone(), inst.clone());
        async move {
            let bills = store.bills_by_hash(&inst, &hashes).await?;
            Ok(bills
                .iter()
                .map(|b| serde_json::to_value(b.value.view(now, None)).unwrap_or_default())
                .collect())
        }
    };
    list_index(
        &st,
        &c,
        &params,
        Index::Bills,
        BILL_ORDER,
        BILL_Q,
        &[],
        "bills",
        rows,
    )
    .await
}

const PAYMENT_ORDER: &[&str] = &[
    "created_at",
    "amount",
    "va_number",
    "channel",
    "payment_ref_id",
    "status",
];
const PAYMENT_Q: &[&str] = &["va_number", "payment_ref_id", "channel", "type"];

/// A payment as listed: the payment as it stands now, with `bill` as it stood right after
/// the payment's last event (payment or reversal).
fn payment_row(r: &crate::store::PaymentRecord) -> Value {
    let last = r.reversed.as_ref().unwrap_or(&r.paid);
    let mut v = serde_json::to_value(&last.payment).unwrap_or_default();
    if let Value::Object(o) = &mut v {
        o.insert("bill".into(), last.bill.to_value());
    }
    v
}

/// `GET /api/v2/gw/payment`: also filters `va_number`, `type`, `status` (exact).
#[utoipa::path(
    get,
    path = "/payment",
    operation_id = "lists_payments",
    tag = "Payment",
    summary = "Get Payment List",
    params(
        super::openapi::Paging,
        super::openapi::Period,
        ("q" = Option<String>, Query, description = "keyword over va_number, payment_ref_id, channel, type"),
        ("va_number" = Option<String>, Query, description = "exact VA"),
        ("type" = Option<String>, Query, description = "exact type (payment)"),
        ("status" = Option<String>, Query, description = "paid or reversed"),
        ("order_by" = Option<String>, Query, description = "created_at (default), amount, va_number, channel, payment_ref_id, status"),
        ("institution_code" = Option<String>, Query, description = "optional; must be the token's institution"),
    ),
    responses(
        (status = 400, response = super::openapi::Invalid),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 503, response = super::openapi::Unavailable),
        (status = 200, description = "A page of payments, each with its bill as it stood after the payment's last event", body = ref("#/components/schemas/PaymentWithBillPage"), content_type = "application/json"),
    ),
    security(("bearer" = [], "signature" = [])),
)]
pub async fn payments(
    State(st): State<ApiState>,
    Extension(c): Extension<Caller>,
    Query(params): Query<Params>,
) -> Reply {
    let store = st.switch.hosted.store.clone();
    let rows = |keys: Vec<String>| {
        let store = store.clone();
        async move {
            Ok(store
                .payments_by_key(&keys)
                .await?
                .iter()
                .map(payment_row)
                .collect())
        }
    };
    let exact = ["va_number", "type", "status"];
    list_index(
        &st,
        &c,
        &params,
        Index::Payments,
        PAYMENT_ORDER,
        PAYMENT_Q,
        &exact,
        "payments",
        rows,
    )
    .await
}

/// Ledger entries read per round trip when filtering.
const LEDGER_CHUNK: isize = 1000;

/// `GET /api/v2/gw/account/{account-hash}/mutation`: the account hash is the institution
/// code (one ledger per institution). Newest first unless `order=asc`; filters
/// `mutation_type` (`credit`/`debit`) and `date.0`/`date.1`.
#[utoipa::path(
    get,
    path = "/account/{account}/mutation",
    operation_id = "lists_mutations",
    tag = "Account",
    summary = "Get Account Mutations",
    params(
        ("account" = String, Path, description = "the institution code (one ledger account per institution)"),
        ("mutation_type" = Option<String>, Query, description = "credit or debit"),
        super::openapi::Paging,
        super::openapi::Period,
    ),
    responses(
        (status = 400, response = super::openapi::Invalid),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 503, response = super::openapi::Unavailable),
        (status = 200, description = "A page of ledger entries, newest first by default", body = ref("#/components/schemas/MutationPage"), content_type = "application/json"),
        (status = 404, description = "Not the token's account", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
    ),
    security(("bearer" = [], "signature" = [])),
)]
pub async fn mutations(
    State(st): State<ApiState>,
    Extension(c): Extension<Caller>,
    Path(account): Path<String>,
    Query(params): Query<Params>,
) -> Reply {
    let clock = st.clock();
    let fail = |e: SwitchError| refuse(&e, Door::Gateway, clock);
    if account != c.0.code {
        return Err(refuse_with(
            StatusCode::NOT_FOUND,
            &SwitchError::invalid("account-hash", "no such account"),
            clock,
        ));
    }
    let p = paging(&params, clock, &["created_at"]).map_err(fail)?;
    hot_window_only(&st, &p, "mutations").map_err(fail)?;
    let kind = params.get("mutation_type").filter(|s| !s.is_empty());
    if kind.is_some_and(|k| k != "credit" && k != "debit") {
        return Err(fail(SwitchError::invalid(
            "mutation_type",
            "must be credit or debit",
        )));
    }
    let store = &st.switch.hosted.store;
    let inst = c.0.code.as_str();
    let len = store.ledger_len(inst).await.map_err(|e| fail(e.into()))? as isize;
    if kind.is_none() && p.day_from.is_none() && p.day_to.is_none() {
        let (per, off) = (p.per_page as isize, p.offset() as isize);
        let (start, stop) = if p.desc {
            ((len - off - per).max(0), len - off - 1)
        } else {
            (off, off + per - 1)
        };
        let mut data = if stop < 0 || start >= len {
            Vec::new()
        } else {
            store
                .ledger_range(inst, start, stop)
                .await
                .map_err(|e| fail(e.into()))?
        };
        if p.desc {
            data.reverse();
        }
        return Ok(page_reply(clock, &p, len as u64, data));
    }
    // The ledger is in time order: read back from the newest until before `date.0`.
    let day_of = |v: &Value| {
        v["created_at"]
            .as_str()
            .and_then(|s| s.get(..10))
            .map(str::to_owned)
    };
    let mut rows = Vec::new();
    let mut stop = len - 1;
    'scan: while stop >= 0 {
        if (len - 1 - stop) as u64 >= SCAN_MAX * 5 {
            return Err(fail(too_wide("mutations")));
        }
        let start = (stop - LEDGER_CHUNK + 1).max(0);
        let chunk = store
            .ledger_range(inst, start, stop)
            .await
            .map_err(|e| fail(e.into()))?;
        for v in chunk.into_iter().rev() {
            let d = day_of(&v).unwrap_or_default();
            if p.day_from.as_ref().is_some_and(|from| d < *from) {
                break 'scan;
            }
            let in_range = p.day_to.as_ref().is_none_or(|to| d <= *to);
            if in_range && kind.is_none_or(|k| v["mutation_type"].as_str() == Some(k)) {
                rows.push(v);
            }
        }
        stop = start - 1;
    }
    rows.reverse(); // oldest first, as page_in_memory expects
    Ok(page_in_memory(clock, &p, rows))
}

fn detail(i: &Institution) -> Value {
    json!({
        "code": i.code,
        "name": i.name,
        "mode": match i.mode {
            crate::domain::InstitutionMode::Hosted => "hosted",
            crate::domain::InstitutionMode::Passive => "passive",
        },
        "prefixes": i.prefixes,
        "webhook_url": i.webhook_url,
    })
}

/// The 404 answer when `code` is not the caller's own institution.
fn not_own(c: &Caller, code: &str, clock: &Clock) -> Option<Response> {
    (code != c.0.code).then(|| {
        refuse_with(
            StatusCode::NOT_FOUND,
            &SwitchError::invalid("institution-code", "no such institution"),
            clock,
        )
    })
}

/// `GET /api/v2/gw/institution`: the institutions the caller may see, i.e. itself.
#[utoipa::path(
    get,
    path = "/institution",
    operation_id = "lists_institutions",
    tag = "Institution",
    summary = "Institution List",
    description = "The institutions the caller may see: itself.",
    params(
        super::openapi::Paging,
    ),
    responses(
        (status = 401, response = super::openapi::Unauthorized),
        (status = 200, description = "A page of institutions", body = ref("#/components/schemas/InstitutionPage"), content_type = "application/json"),
    ),
    security(("bearer" = [], "signature" = [])),
)]
pub async fn institutions(
    State(st): State<ApiState>,
    Extension(c): Extension<Caller>,
    Query(params): Query<Params>,
) -> Reply {
    let clock = st.clock();
    let p =
        paging(&params, clock, &["created_at"]).map_err(|e| refuse(&e, Door::Gateway, clock))?;
    Ok(page_in_memory(clock, &p, vec![detail(&c.0)]))
}

/// `GET /api/v2/gw/institution/{institution-code}`: the caller's own only.
#[utoipa::path(
    get,
    path = "/institution/{code}",
    operation_id = "lists_institution",
    tag = "Institution",
    summary = "Institution Detail",
    params(
        ("code" = String, Path, description = "the token's institution"),
    ),
    responses(
        (status = 401, response = super::openapi::Unauthorized),
        (status = 200, description = "The institution", body = ref("#/components/schemas/InstitutionAnswer"), content_type = "application/json"),
        (status = 404, description = "Not the token's institution", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
    ),
    security(("bearer" = [], "signature" = [])),
)]
pub async fn institution(
    State(st): State<ApiState>,
    Extension(c): Extension<Caller>,
    Path(code): Path<String>,
) -> Reply {
    let clock = st.clock();
    if let Some(r) = not_own(&c, &code, clock) {
        return Err(r);
    }
    Ok(super::ok(clock, "success", detail(&c.0)))
}

/// `GET /api/v2/gw/institution/{institution-code}/account`: the institution's one ledger
/// account (hash = institution code) with its balance. No bank accounts are configured
/// here, so a `bank_code` filter matches nothing.
#[utoipa::path(
    get,
    path = "/institution/{code}/account",
    operation_id = "lists_accounts",
    tag = "Institution",
    summary = "Institution Account List",
    params(
        ("code" = String, Path, description = "the token's institution"),
        ("bank_code" = Option<String>, Query, description = "no bank accounts are configured: any value matches nothing"),
        super::openapi::Paging,
    ),
    responses(
        (status = 401, response = super::openapi::Unauthorized),
        (status = 503, response = super::openapi::Unavailable),
        (status = 200, description = "The institution's ledger account", body = ref("#/components/schemas/AccountPage"), content_type = "application/json"),
        (status = 404, description = "Not the token's institution", body = ref("#/components/schemas/Envelope"), content_type = "application/json"),
    ),
    security(("bearer" = [], "signature" = [])),
)]
pub async fn accounts(
    State(st): State<ApiState>,
    Extension(c): Extension<Caller>,
    Path(code): Path<String>,
    Query(params): Query<Params>,
) -> Reply {
    let clock = st.clock();
    if let Some(r) = not_own(&c, &code, clock) {
        return Err(r);
    }
    let p =
        paging(&params, clock, &["created_at"]).map_err(|e| refuse(&e, Door::Gateway, clock))?;
    if params.get("bank_code").is_some_and(|b| !b.is_empty()) {
        return Ok(page_in_memory(clock, &p, Vec::new()));
    }
    let balance = st
        .switch
        .hosted
        .store
        .balance(&c.0.code)
        .await
        .map_err(|e| refuse(&e.into(), Door::Gateway, clock))?;
    let account = json!({
        "hash": c.0.code,
        "institution_code": c.0.code,
        "account_holder": c.0.name,
        "bank_code": null,
        "account_number": null,
        "balance": balance,
    });
    Ok(page_in_memory(clock, &p, vec![account]))
}
