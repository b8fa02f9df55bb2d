//! The HTTP bodies of docs/openapi.json as Rust types for their JSON Schema (issue 27,
//! `ipg-switch contract openapi`). What a handler writes from a real type (a bill, a
//! payment, a job, the envelope) is described by that type's own `JsonSchema`; what it reads
//! field by field (so that every broken input is named and answered, docs/api.md) or builds
//! as a JSON object is stated here, beside the handlers, and held to them by the contract
//! fuzzer (`scripts/contract-fuzz.sh`) and `tests/contracts.rs`. Money is whole rupiah
//! (integers) on IPG's side and SNAP's `"150000.00"` strings on SNAP's.
#![allow(dead_code)] // schema-only types: never built, only described

use schemars::JsonSchema;
use serde_json::{Map, Value};

use crate::domain::bill::AdditionalData;
use crate::domain::{Bill, Payment, Rc};
use crate::issuance::jobs::JobView;
use crate::issuance::RowResult;
use crate::protocol::schema::Amount as RequestAmount;

/// IPG's answer envelope (docs/api.md "Answers") of a refusal: `data` is `null`, or the
/// bill where the rc shows one (an already paid bill, say).
#[derive(JsonSchema)]
pub struct Envelope {
    pub rc: Rc,
    pub message: String,
    #[schemars(extend("format" = "date-time", "examples" = ["2026-01-10T10:00:00+07:00"]))]
    pub timestamp: String,
    pub data: Option<Value>,
}

/// IPG's answer envelope with its `data` (docs/api.md "Answers"): `{rc, message,
/// timestamp, data}`; `timestamp` is ISO 8601 in the switch's offset.
#[derive(JsonSchema)]
#[schemars(rename = "{T}Answer")]
pub struct Answer<T> {
    pub rc: Rc,
    pub message: String,
    #[schemars(extend("format" = "date-time", "examples" = ["2026-01-10T10:00:00+07:00"]))]
    pub timestamp: String,
    pub data: T,
}

/// A page of a list (IPG's paging, docs/api.md "Lists"): the envelope, `data` the page's
/// items, and where the page stands.
#[derive(JsonSchema)]
#[schemars(rename = "{T}Page")]
pub struct Page<T> {
    pub rc: Rc,
    pub message: String,
    #[schemars(extend("format" = "date-time"))]
    pub timestamp: String,
    pub data: Vec<T>,
    pub current_page: u64,
    /// The first item's place (from 1); `null` on an empty page.
    pub from: Option<u64>,
    pub last_page: u64,
    #[schemars(extend("examples" = [15]))]
    pub per_page: u64,
    /// The last item's place; `null` on an empty page.
    pub to: Option<u64>,
    pub total: u64,
}

/// A list answered whole (not paged) in the envelope, e.g. a bill's payments.
#[derive(JsonSchema)]
#[schemars(rename = "{T}ListAnswer")]
pub struct ListAnswer<T> {
    pub rc: Rc,
    pub message: String,
    #[schemars(extend("format" = "date-time"))]
    pub timestamp: String,
    pub data: Vec<T>,
}

/// The Payment Channel API's answer (`/api/v2/ch/*`, docs/api.md "Answers").
#[derive(JsonSchema)]
pub struct ChannelAnswer {
    pub rc: Rc,
    pub message: String,
    #[schemars(extend("format" = "date-time"))]
    pub timestamp: String,
    /// `null` when there is nothing to show (most refusals); a passive institution's data
    /// passes through as it came.
    pub data: Option<ChannelData>,
}

/// What a Payment Channel answer shows of a hosted bill ([`crate::api::error::IpgData`]).
#[derive(JsonSchema)]
#[serde(untagged)]
pub enum ChannelData {
    /// An inquiry's bill, or the bill a refusal is about (a wrong amount, say), as a
    /// one-element list.
    Bills(Vec<Bill>),
    /// A payment's, reversal's or check status's bill with its `payment`.
    BillWithPayment(Box<BillWithPayment>),
}

/// A bill with the payment an answer is about (Payment Channel answers, sandbox mock).
#[derive(JsonSchema)]
pub struct BillWithPayment {
    #[serde(flatten)]
    pub bill: Bill,
    pub payment: Option<Payment>,
}

/// A payment with its bill as it stood after the payment (Get Payments).
#[derive(JsonSchema)]
pub struct PaymentWithBill {
    #[serde(flatten)]
    pub payment: Payment,
    pub bill: Option<Bill>,
}

/// The JSON body of a bulk issuance: at most 10,000 Create New Bill bodies
/// (`institution_code` the caller's, or absent).
#[derive(JsonSchema)]
pub struct BatchRows(#[schemars(length(max = 10000))] Vec<Map<String, Value>>);

/// What a synchronous bulk issuance answers: the counts and a result per row.
#[derive(JsonSchema)]
pub struct BatchResult {
    pub created: u64,
    pub existing: u64,
    pub valid: u64,
    pub refused: u64,
    pub rows: Vec<RowResult>,
}

/// A job and its rows so far (`GET .../jobs/{job_id}/results`).
#[derive(JsonSchema)]
pub struct BatchJobResults {
    #[serde(flatten)]
    pub job: JobView,
    pub rows: Vec<RowResult>,
}

/// Revoke Bill takes no fields; any JSON object (or no body) is accepted.
#[derive(JsonSchema)]
pub struct RevokeRequest {}

#[derive(JsonSchema)]
pub struct TokenRequest {
    #[schemars(extend("enum" = ["client_credentials"]))]
    pub grant_type: String,
    /// institution code
    pub client_id: String,
    /// institution API key
    pub client_secret: String,
    #[schemars(extend("default" = "*"))]
    pub scope: Option<String>,
}

#[derive(JsonSchema)]
pub struct Token {
    #[schemars(extend("examples" = ["Bearer"]))]
    pub token_type: Option<String>,
    #[schemars(extend("examples" = ["3600"]))]
    pub expires_in: Option<String>,
    pub access_token: Option<String>,
}

#[derive(JsonSchema)]
pub struct NewBillComponents {
    pub name: String,
    pub qty: RequestAmount,
    pub price: RequestAmount,
    pub total: RequestAmount,
}

#[derive(JsonSchema)]
pub struct NewBill {
    pub institution_code: String,
    /// 10 digits
    #[schemars(extend("examples" = ["1234567890"]))]
    pub va_number: String,
    /// 6-digit prefix(es) of the institution
    pub prefix: serde_json::Value,
    #[schemars(extend("enum" = ["close", "partial", "open", "minimum", "maximum", "open_minimum"]))]
    pub r#type: String,
    pub name: String,
    pub customer_name: String,
    pub total_amount: RequestAmount,
    pub invoice_number: Option<String>,
    pub customer_email: Option<String>,
    pub customer_phone: Option<String>,
    pub customer_address: Option<String>,
    pub description: Option<String>,
    pub ext_description: Option<String>,
    /// in the future
    #[schemars(extend("format" = "date-time"))]
    pub valid_until: Option<String>,
    pub components: Option<Vec<NewBillComponents>>,
    pub additional_data: Option<Vec<AdditionalData>>,
}

#[derive(JsonSchema)]
pub struct Mutation {
    pub id: Option<String>,
    #[schemars(extend("enum" = ["credit", "debit"]))]
    pub mutation_type: Option<String>,
    pub amount: Option<u64>,
    pub payment_id: Option<String>,
    pub payment_ref_id: Option<String>,
    pub channel: Option<String>,
    pub va_number: Option<String>,
    pub bill_hash: Option<String>,
    #[schemars(extend("format" = "date-time"))]
    pub created_at: Option<String>,
    pub balance_after: Option<u64>,
}

#[derive(JsonSchema)]
pub struct Institution {
    pub code: Option<String>,
    pub name: Option<String>,
    #[schemars(extend("enum" = ["hosted", "passive"]))]
    pub mode: Option<String>,
    pub prefixes: Option<Vec<String>>,
    pub webhook_url: Option<String>,
}

#[derive(JsonSchema)]
pub struct Account {
    /// the institution code
    pub hash: Option<String>,
    pub institution_code: Option<String>,
    pub account_holder: Option<String>,
    pub bank_code: Option<String>,
    pub account_number: Option<String>,
    pub balance: Option<u64>,
}

#[derive(JsonSchema)]
pub struct SnapAmount {
    #[schemars(regex(pattern = r"^[0-9]{1,16}\.00$"))]
    #[schemars(extend("examples" = ["150000.00"]))]
    pub value: String,
    #[schemars(extend("enum" = ["IDR"]))]
    pub currency: String,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecurringRequest {
    /// YYYY-MM
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}$"))]
    pub period: String,
    /// a Create New Bill body without va_number and customer_name, plus due_day (1-28)
    pub template: serde_json::Map<String, serde_json::Value>,
    /// CSV: va_number, customer_name, and optionally total_amount, customer_email, customer_phone, customer_address
    pub customers: String,
}

/// The VA every SNAP transfer-va service names (snap-reference.md, services 24-35):
/// `partnerServiceId` is the BCN left-padded with spaces to 8, `virtualAccountNo` that
/// and `customerNo`.
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapVa {
    #[schemars(length(max = 8), extend("examples" = ["  857499"]))]
    pub partner_service_id: String,
    #[schemars(length(max = 20), extend("examples" = ["0000000001"]))]
    pub customer_no: String,
    #[schemars(length(max = 28), extend("examples" = ["  8574990000000001"]))]
    pub virtual_account_no: String,
}

/// A SNAP answer (every service): `responseCode` is the HTTP status, the service code and
/// the case (docs/snap.md, Response codes), with the service's own fields.
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapAnswer {
    #[schemars(regex(pattern = r"^[0-9]{7}$"))]
    pub response_code: String,
    pub response_message: String,
    pub virtual_account_data: Option<Map<String, Value>>,
    /// Service 35's rows (lower-case d, as ASPI writes it).
    #[serde(rename = "virtualAccountdata")]
    pub virtual_account_rows: Option<Vec<Map<String, Value>>>,
    pub additional_info: Option<Map<String, Value>>,
}

/// Service 73, B2B access token: signed `X-CLIENT-KEY`/`X-TIMESTAMP`/`X-SIGNATURE`
/// (SHA256withRSA).
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapTokenRequest {
    #[schemars(extend("enum" = ["client_credentials"]))]
    pub grant_type: String,
    pub additional_info: Option<Map<String, Value>>,
}

/// Service 24, inquiry.
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapInquiryRequest {
    #[serde(flatten)]
    pub va: SnapVa,
    #[schemars(length(max = 64))]
    pub inquiry_request_id: String,
    pub trx_date_init: Option<String>,
    pub channel_code: Option<u64>,
}

/// Service 25, payment.
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapPaymentRequest {
    #[serde(flatten)]
    pub va: SnapVa,
    #[schemars(length(max = 64))]
    pub payment_request_id: String,
    pub paid_amount: SnapAmount,
    pub virtual_account_name: Option<String>,
    pub trx_date_time: Option<String>,
    pub reference_no: Option<String>,
    #[schemars(extend("enum" = ["Y", "N"]))]
    pub flag_advise: Option<String>,
}

/// Service 26, inquiry status: by `paymentRequestId` or `inquiryRequestId`.
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapStatusRequest {
    #[serde(flatten)]
    pub va: SnapVa,
    pub payment_request_id: Option<String>,
    pub inquiry_request_id: Option<String>,
}

/// Service 27, create VA (a hosted bill).
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapCreateVaRequest {
    #[serde(flatten)]
    pub va: SnapVa,
    pub virtual_account_name: String,
    #[schemars(length(max = 64))]
    pub trx_id: String,
    pub total_amount: Option<SnapAmount>,
    #[schemars(extend("enum" = ["C", "I", "O", "M", "L", "N", "X"]))]
    pub virtual_account_trx_type: Option<String>,
    pub expired_date: Option<String>,
    pub bill_details: Option<Vec<Map<String, Value>>>,
}

/// Services 28 (update VA) and 29 (update status): the VA and the fields to change.
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapUpdateRequest {
    #[serde(flatten)]
    pub va: SnapVa,
}

/// Service 30, inquiry VA.
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapInquiryVaRequest {
    #[serde(flatten)]
    pub va: SnapVa,
    pub trx_id: String,
}

/// Service 31, delete VA.
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapDeleteVaRequest {
    #[serde(flatten)]
    pub va: SnapVa,
    pub trx_id: Option<String>,
}

/// Service 35, report: the payments of a day (or a span of it).
#[derive(JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapReportRequest {
    pub partner_service_id: String,
    #[schemars(extend("format" = "date"))]
    pub start_date: String,
    pub start_time: Option<String>,
    #[schemars(extend("format" = "date"))]
    pub end_date: Option<String>,
    pub end_time: Option<String>,
}
