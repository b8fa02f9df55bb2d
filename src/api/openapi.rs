//! The OpenAPI 3.1 document of the HTTP door, generated from the code (issue 27,
//! docs/contracts.md): every route is registered through utoipa-axum's [`OpenApiRouter`]
//! from its handler's `#[utoipa::path]` (method, path, parameters, bodies, answers,
//! security), so the router and the document cannot name different paths; the bodies'
//! JSON Schemas come from the Rust types ([`super::schema`], the domain's bills and
//! payments) through schemars, the same derive the AsyncAPI contract uses. Served at
//! `GET /openapi.json` for the routes this configuration serves, and written to
//! docs/openapi.json by `ipg-switch contract openapi` with the defaults.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use schemars::generate::{Contract, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};
use utoipa::openapi::{RefOr, ResponseBuilder};
use utoipa::{OpenApi, ToResponse};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::schema as s;
use super::{auth, bills, channel, jobs, lists, snap, snap_manage, statement};
use super::{ApiSettings, ApiState, SnapSettings};
use crate::domain::{Bill, Payment};
use crate::issuance::jobs::JobView;

/// The SNAP paths' prefix in the handlers' annotations (`snap.path_prefix`'s default); a
/// configured prefix replaces it in the routes and the served document.
pub const SNAP_DEFAULT_PREFIX: &str = "/snap";

/// The IPG routes outside `/api/v2/gw` (Payment Channel API, OAuth, this document) and the
/// SNAP routes under `snap.path_prefix` (none when SNAP is off).
pub fn open_routes(snap: &SnapSettings) -> OpenApiRouter<ApiState> {
    let mut r = OpenApiRouter::new()
        .routes(routes!(auth::token))
        .routes(routes!(channel::inquiry))
        .routes(routes!(channel::payment))
        .routes(routes!(channel::reversal))
        .routes(routes!(channel::check_status))
        .routes(routes!(openapi_json));
    if snap.enabled() {
        let p = snap.path_prefix.as_str();
        r = r
            .routes(under(p, routes!(snap::token)))
            .routes(under(p, routes!(snap::inquiry)))
            .routes(under(p, routes!(snap::payment)))
            .routes(under(p, routes!(snap::status)))
            .routes(under(p, routes!(snap_manage::create_va)))
            .routes(under(p, routes!(snap_manage::update_va)))
            .routes(under(p, routes!(snap_manage::update_status)))
            .routes(under(p, routes!(snap_manage::inquiry_va)))
            .routes(under(p, routes!(snap_manage::delete_va)))
            .routes(under(p, routes!(snap_manage::report)));
    }
    r
}

/// The Active Client API, relative to `/api/v2/gw` (the caller adds the Bearer +
/// `Signature` check); uploads take `api.max_batch_bytes`.
pub fn gateway_routes(settings: &ApiSettings) -> OpenApiRouter<ApiState> {
    let upload = || DefaultBodyLimit::max(settings.max_batch_bytes);
    OpenApiRouter::new()
        .routes(routes!(bills::create, lists::bills))
        .routes(routes!(bills::batch).layer(upload()))
        .routes(routes!(jobs::submit).layer(upload()))
        .routes(routes!(jobs::recurring).layer(upload()))
        .routes(routes!(jobs::status))
        .routes(routes!(jobs::results))
        .routes(routes!(bills::info, bills::revoke))
        .routes(routes!(bills::payments))
        .routes(routes!(bills::mock))
        .routes(routes!(lists::payments))
        .routes(routes!(lists::mutations))
        .routes(routes!(lists::institutions))
        .routes(routes!(lists::institution))
        .routes(routes!(lists::accounts))
        .routes(routes!(statement::statement))
}

/// A SNAP route moved from [`SNAP_DEFAULT_PREFIX`] to `prefix`.
fn under(
    prefix: &str,
    (schemas, mut paths, method_router): utoipa_axum::router::UtoipaMethodRouter<ApiState>,
) -> utoipa_axum::router::UtoipaMethodRouter<ApiState> {
    if prefix != SNAP_DEFAULT_PREFIX {
        paths.paths = std::mem::take(&mut paths.paths)
            .into_iter()
            .map(|(path, item)| {
                let rest = path.strip_prefix(SNAP_DEFAULT_PREFIX).unwrap_or(&path);
                (format!("{prefix}{rest}"), item)
            })
            .collect();
    }
    (schemas, paths, method_router)
}

/// The document as served: what [`document`] made for this configuration.
#[derive(Clone)]
pub struct Served(pub Arc<String>);

#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi_openapi_json",
    tag = "Meta",
    summary = "This document",
    description = "The OpenAPI 3.1 document of the routes this switch serves, generated from its code (docs/contracts.md).",
    responses(
        (status = 200, description = "OpenAPI 3.1 document", content_type = "application/json"),
    ),
)]
/// `GET /openapi.json`.
pub async fn openapi_json(Extension(doc): Extension<Served>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.as_str().to_owned(),
    )
        .into_response()
}

/// The refusals many operations share, as `components.responses`; each is IPG's envelope.
macro_rules! refusal {
    ($name:ident, $description:literal) => {
        #[doc = $description]
        pub struct $name;
        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
                (stringify!($name), envelope_response($description))
            }
        }
    };
}

refusal!(
    Invalid,
    "Validation failure: rc BILLER_INVALID_TRANSACTION, the field named in message"
);
refusal!(
    Unauthorized,
    "Bad or expired token, bad or missing Signature: rc BILLER_AUTHENTICATION"
);
refusal!(TooLarge, "Body larger than api.max_body_bytes");
refusal!(
    RateLimited,
    "Over a rate limit: rc BILLER_GATEWAY_INVALID_RESPONSE"
);
refusal!(
    Unavailable,
    "Redis unavailable or the VA busy: nothing decided, send the same request again (rc BILLER_GATEWAY_INVALID_RESPONSE)"
);

fn envelope_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::Content::new(Some(utoipa::openapi::Ref::from_schema_name("Envelope"))),
        )
        .build()
        .into()
}

/// What the document says besides its paths: title, tags, security schemes, the shared
/// refusals.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ipg-switch HTTP API",
        description = "IPG's Payment Channel API and Active Client API as served by ipg-switch, with OAuth 2.0 client credentials, and SNAP BI's virtual-account services beside them. Generated from the code (`ipg-switch contract openapi`); decisions where IPG's documentation is silent: docs/api.md, docs/snap.md."
    ),
    tags(
        (name = "Authentication"),
        (name = "Payment Channel API"),
        (name = "Bill"),
        (name = "Payment"),
        (name = "Account"),
        (name = "Institution"),
        (name = "Meta"),
        (name = "SNAP BI", description = "Bank Indonesia's national open API standard beside IPG, on the same bills (docs/snap.md)"),
    ),
    components(responses(Invalid, Unauthorized, TooLarge, RateLimited, Unavailable, SnapRefusal)),
)]
struct Frame;

/// The OpenAPI 3.1 document of `open` and `gateway` (nested at `/api/v2/gw`), served at
/// `http://<api.listen>`, with every schema its operations name.
///
/// # Panics
/// Never: every schema is derived at compile time; a `$ref` without a schema is caught by
/// `tests/contracts.rs`.
pub fn document(
    open: OpenApiRouter<ApiState>,
    gateway: OpenApiRouter<ApiState>,
    settings: &ApiSettings,
) -> Value {
    let paths = OpenApiRouter::<ApiState>::with_openapi(Frame::openapi())
        .merge(open)
        .nest("/api/v2/gw", gateway)
        .into_openapi();
    let mut doc = serde_json::to_value(&paths).unwrap_or_default();
    doc["servers"] = json!([{"url": format!("http://{}", settings.listen)}]);
    doc["components"]["securitySchemes"] = security_schemes();
    doc["components"]["schemas"] = Value::Object(schemas());
    doc
}

/// [`document`] of what `settings` serve.
pub fn for_settings(settings: &ApiSettings, snap: &SnapSettings) -> Value {
    document(open_routes(snap), gateway_routes(settings), settings)
}

fn security_schemes() -> Value {
    json!({
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "access_token from POST /oauth/token"},
        "signature": {"type": "apiKey", "in": "header", "name": "Signature",
                      "description": "Lowercase hex HMAC-SHA256 with the API key (institution's for /api/v2/gw, channel's for /api/v2/ch). POST/DELETE: over the raw body bytes. GET: over the raw query string exactly as sent (the bytes after '?', empty when none)."},
        "channel": {"type": "apiKey", "in": "header", "name": "X-Channel",
                    "description": "The channel code, as configured under [[channels]]"},
        "snapBearer": {"type": "http", "scheme": "bearer",
                       "description": "SNAP BI B2B access token from POST /snap/v1.0/access-token/b2b (service 73); every SNAP call is also signed: X-SIGNATURE = Base64 HMAC-SHA512(client secret, METHOD:path:token:hex(sha256(minified body)):X-TIMESTAMP) (docs/snap.md)"},
    })
}

/// The JSON Schemas the operations name by `#/components/schemas/<name>`, derived from the
/// Rust types (JSON Schema 2020-12, OpenAPI 3.1's dialect).
fn schemas() -> Map<String, Value> {
    let mut gen = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            // What a client may meet: a field the switch leaves out is optional, as in a
            // request (the requests are read, so this is their contract too).
            s.contract = Contract::Deserialize;
            s.meta_schema = None;
        })
        .into_generator();
    fn add<T: JsonSchema>(gen: &mut schemars::SchemaGenerator) {
        gen.subschema_for::<T>();
    }
    let g = &mut gen;
    add::<s::Envelope>(g);
    add::<s::ChannelAnswer>(g);
    add::<crate::protocol::schema::InquiryBody>(g);
    add::<crate::protocol::schema::PaymentBody>(g);
    add::<crate::protocol::schema::ReversalBody>(g);
    add::<crate::protocol::schema::CheckStatusBody>(g);
    add::<s::TokenRequest>(g);
    add::<s::Token>(g);
    add::<s::NewBill>(g);
    add::<s::RevokeRequest>(g);
    add::<s::Answer<Bill>>(g);
    add::<s::Page<Bill>>(g);
    add::<s::Answer<s::BillWithPayment>>(g);
    add::<s::ListAnswer<Payment>>(g);
    add::<s::Page<s::PaymentWithBill>>(g);
    add::<s::Page<s::Mutation>>(g);
    add::<s::Page<s::Institution>>(g);
    add::<s::Answer<s::Institution>>(g);
    add::<s::Page<s::Account>>(g);
    add::<s::BatchRows>(g);
    add::<s::RecurringRequest>(g);
    add::<s::Answer<s::BatchResult>>(g);
    add::<s::Answer<JobView>>(g);
    add::<s::Answer<s::BatchJobResults>>(g);
    add::<s::SnapAnswer>(g);
    add::<s::SnapTokenRequest>(g);
    add::<s::SnapInquiryRequest>(g);
    add::<s::SnapPaymentRequest>(g);
    add::<s::SnapStatusRequest>(g);
    add::<s::SnapCreateVaRequest>(g);
    add::<s::SnapUpdateRequest>(g);
    add::<s::SnapInquiryVaRequest>(g);
    add::<s::SnapDeleteVaRequest>(g);
    add::<s::SnapReportRequest>(g);
    gen.take_definitions(true).into_iter().collect()
}

/// `(name, required, description, integer bounds)` of parameters several operations share
/// (a string without bounds).
type Shared = [(&'static str, bool, &'static str, Option<(u64, u64)>)];

fn parameters(
    location: utoipa::openapi::path::ParameterIn,
    shared: &Shared,
) -> Vec<utoipa::openapi::path::Parameter> {
    use utoipa::openapi::path::ParameterBuilder;
    use utoipa::openapi::{ObjectBuilder, Required, Type};
    shared
        .iter()
        .map(|(name, required, description, bounds)| {
            let schema = match bounds {
                Some((min, max)) => ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(*min))
                    .maximum(Some(*max)),
                None => ObjectBuilder::new().schema_type(Type::String),
            };
            ParameterBuilder::new()
                .name(*name)
                .parameter_in(location.clone())
                .required(if *required {
                    Required::True
                } else {
                    Required::False
                })
                .description(Some(*description))
                .schema(Some(schema))
                .build()
        })
        .collect()
}

/// SNAP BI's signed-call headers (docs/snap.md, snap-reference.md s4), every transfer-va
/// service.
pub struct SnapHeaders;

impl utoipa::IntoParams for SnapHeaders {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        parameters(
            utoipa::openapi::path::ParameterIn::Header,
            &[
                (
                    "X-TIMESTAMP",
                    true,
                    "ISO 8601 with a zone; within snap.timestamp_skew_ms of the switch's clock",
                    None,
                ),
                (
                    "X-SIGNATURE",
                    true,
                    "Base64 HMAC-SHA512 over the string to sign (docs/snap.md)",
                    None,
                ),
                ("X-PARTNER-ID", true, "the partner's client id", None),
                (
                    "X-EXTERNAL-ID",
                    true,
                    "1-36 printable characters, unique per partner, service and day",
                    None,
                ),
                (
                    "CHANNEL-ID",
                    true,
                    "the PJP's channel id (not interpreted)",
                    None,
                ),
            ],
        )
    }
}

/// IPG's paging of lists (docs/api.md "Lists").
pub struct Paging;

impl utoipa::IntoParams for Paging {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        parameters(
            utoipa::openapi::path::ParameterIn::Query,
            &[
                ("page", false, "page number, from 1", Some((1, 1_000_000))),
                (
                    "per_page",
                    false,
                    "page size, 1-100 (default 15)",
                    Some((1, 100)),
                ),
            ],
        )
    }
}

/// The days a list covers and its order (docs/api.md "Lists").
pub struct Period;

impl utoipa::IntoParams for Period {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        parameters(
            utoipa::openapi::path::ParameterIn::Query,
            &[
                (
                    "date.0",
                    false,
                    "first day, inclusive, YYYY-MM-DD in switch.utc_offset",
                    None,
                ),
                (
                    "date.1",
                    false,
                    "last day, inclusive, YYYY-MM-DD in switch.utc_offset",
                    None,
                ),
                ("order", false, "asc or desc (default desc)", None),
            ],
        )
    }
}

/// A SNAP refusal: the HTTP status is the `responseCode`'s first three digits.
pub struct SnapRefusal;

impl<'r> ToResponse<'r> for SnapRefusal {
    fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
        (
            "SnapRefusal",
            ResponseBuilder::new()
                .description("A refusal: the HTTP status is the responseCode's first three digits")
                .content(
                    "application/json",
                    utoipa::openapi::Content::new(Some(utoipa::openapi::Ref::from_schema_name(
                        "SnapAnswer",
                    ))),
                )
                .build()
                .into(),
        )
    }
}

/// The Payment Channel API's answers, every `/api/v2/ch/*` operation: its answer (HTTP 200
/// with the rc, a refusal included) and the shared refusals.
pub struct ChannelAnswers;

impl utoipa::IntoResponses for ChannelAnswers {
    fn responses() -> std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        let shared = |name: &str| {
            RefOr::Ref(utoipa::openapi::Ref::new(format!(
                "#/components/responses/{name}"
            )))
        };
        let answered = ResponseBuilder::new()
            .description("Answered: rc SUCCESS or a business refusal (BILLER_BILL_NOT_FOUND, BILLER_BILL_ALREADY_PAID, ...)")
            .content(
                "application/json",
                utoipa::openapi::Content::new(Some(utoipa::openapi::Ref::from_schema_name(
                    "ChannelAnswer",
                ))),
            )
            .build();
        [
            ("200".to_owned(), answered.into()),
            ("400".to_owned(), shared("Invalid")),
            ("401".to_owned(), shared("Unauthorized")),
            ("413".to_owned(), shared("TooLarge")),
            ("429".to_owned(), shared("RateLimited")),
            ("503".to_owned(), shared("Unavailable")),
        ]
        .into()
    }
}

/// `X-Request-Id`, which every Payment Channel operation takes.
pub struct RequestIdHeader;

impl utoipa::IntoParams for RequestIdHeader {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        parameters(
            utoipa::openapi::path::ParameterIn::Header,
            &[(
                "X-Request-Id",
                false,
                "1-64 printable characters; generated when absent; echoed back",
                None,
            )],
        )
    }
}
