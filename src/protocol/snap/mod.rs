//! SNAP BI, Bank Indonesia's national open API standard (ASPI "Transfer Kredit - Virtual
//! Account"; `snap-reference.md` beside the project; docs/snap.md for every decision): the
//! second dialect of the switch's doors. This module is wire only: request bodies of the
//! bank-facing services 24 (inquiry), 25 (payment) and 26 (inquiry status) become the
//! switch's commands ([`va`]), and outcomes and refusals become SNAP answers with their
//! 7-digit response codes ([`Refusal`], [`Answer`]). Signatures are `signature::snap`'s,
//! the door is `api::snap`.

pub mod manage;
pub mod va;

/// A SNAP service, by its code (the middle two digits of a response code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// 24 `POST /v1.0/transfer-va/inquiry`.
    Inquiry,
    /// 25 `POST /v1.0/transfer-va/payment`.
    Payment,
    /// 26 `POST /v1.0/transfer-va/status`.
    Status,
    /// 27 `POST /v1.0/transfer-va/create-va` (an institution issues a VA).
    CreateVa,
    /// 30 `POST /v1.0/transfer-va/inquiry-va`.
    InquiryVa,
    /// 28 `PUT /v1.0/transfer-va/update-va`: not supported (docs/snap.md).
    UpdateVa,
    /// 29 `PUT /v1.0/transfer-va/update-status`: not supported (docs/snap.md).
    UpdateStatus,
    /// 31 `DELETE /v1.0/transfer-va/delete-va` (with a JSON body).
    DeleteVa,
    /// 35 `POST /v1.0/transfer-va/report` (with a JSON body).
    Report,
    /// 73 `POST /v1.0/access-token/b2b`.
    AccessToken,
}

impl Service {
    pub const ALL: [Service; 10] = [
        Service::Inquiry,
        Service::Payment,
        Service::Status,
        Service::CreateVa,
        Service::UpdateVa,
        Service::UpdateStatus,
        Service::InquiryVa,
        Service::DeleteVa,
        Service::Report,
        Service::AccessToken,
    ];

    /// The service code (24, 25, 26, 73).
    pub fn code(self) -> u8 {
        match self {
            Service::Inquiry => 24,
            Service::Payment => 25,
            Service::Status => 26,
            Service::CreateVa => 27,
            Service::UpdateVa => 28,
            Service::UpdateStatus => 29,
            Service::InquiryVa => 30,
            Service::DeleteVa => 31,
            Service::Report => 35,
            Service::AccessToken => 73,
        }
    }

    /// The path after the configured prefix (`snap.path_prefix`).
    pub fn path(self) -> &'static str {
        match self {
            Service::Inquiry => "/v1.0/transfer-va/inquiry",
            Service::Payment => "/v1.0/transfer-va/payment",
            Service::Status => "/v1.0/transfer-va/status",
            Service::CreateVa => "/v1.0/transfer-va/create-va",
            Service::UpdateVa => "/v1.0/transfer-va/update-va",
            Service::UpdateStatus => "/v1.0/transfer-va/update-status",
            Service::InquiryVa => "/v1.0/transfer-va/inquiry-va",
            Service::DeleteVa => "/v1.0/transfer-va/delete-va",
            Service::Report => "/v1.0/transfer-va/report",
            Service::AccessToken => "/v1.0/access-token/b2b",
        }
    }

    /// A bounded label for metrics (`inquiry`, `payment`, `status`, `access_token`).
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Inquiry => "inquiry",
            Service::Payment => "payment",
            Service::Status => "status",
            Service::CreateVa => "create_va",
            Service::UpdateVa => "update_va",
            Service::UpdateStatus => "update_status",
            Service::InquiryVa => "inquiry_va",
            Service::DeleteVa => "delete_va",
            Service::Report => "report",
            Service::AccessToken => "access_token",
        }
    }
}

/// Why a SNAP request is refused, in SNAP's own cases (snap-reference.md s6; the table in
/// docs/snap.md). Each becomes `<HTTP status><service><case>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400 00: the body is not JSON, or not an object.
    BadRequest,
    /// 400 01: a field or header present but malformed, named.
    Format(String),
    /// 400 02: a mandatory field or header missing, named.
    Mandatory(String),
    /// 401 00: `Unauthorized. [reason]` (signature, unknown client, stale timestamp).
    Unauthorized(&'static str),
    /// 401 01: the access token is unknown or expired.
    InvalidToken,
    /// 401 03: no access token.
    TokenNotFound,
    /// 403 01: the partner may not use this service.
    FeatureNotAllowed,
    /// 404 00: the payment is not in a state this request needs (already reversed).
    InvalidStatus,
    /// 404 01: no such payment (service 26).
    TransactionNotFound,
    /// 404 12: no bill on the VA, the VA's prefix not served, or the bill revoked.
    BillNotFound(&'static str),
    /// 404 13: the amount is not what the bill takes.
    InvalidAmount,
    /// 404 14: the bill is paid already.
    PaidBill,
    /// 404 18: the reference was used for another VA or amount.
    Inconsistent,
    /// 404 19: the bill expired.
    BillExpired,
    /// 405 00: a SNAP service the switch does not offer (28, 29).
    NotSupported,
    /// 409 00: `X-EXTERNAL-ID` used already today for another request.
    Conflict,
    /// 409 00 with its reason: the VA has an active bill with another `trxId` or amount
    /// (27).
    VaInUse,
    /// 429 00.
    TooManyRequests,
    /// 500 00: a broken invariant.
    General,
    /// 500 01: the switch could not reach its store or broker; safe to retry.
    Internal,
    /// 500 02: a passive institution answered something unusable.
    External,
    /// 504 00: no outcome in time (an inquiry; a payment in doubt is 202).
    Timeout,
}

impl Refusal {
    /// `(HTTP status, case code, message)`.
    pub fn parts(&self) -> (u16, u8, String) {
        match self {
            Refusal::BadRequest => (400, 0, "Bad Request".into()),
            Refusal::Format(f) => (400, 1, format!("Invalid Field Format {{{f}}}")),
            Refusal::Mandatory(f) => (400, 2, format!("Invalid Mandatory Field {{{f}}}")),
            Refusal::Unauthorized(why) => (401, 0, format!("Unauthorized. [{why}]")),
            Refusal::InvalidToken => (401, 1, "Invalid Token (B2B)".into()),
            Refusal::TokenNotFound => (401, 3, "Token Not Found (B2B)".into()),
            Refusal::FeatureNotAllowed => (403, 1, "Feature Not Allowed [service]".into()),
            Refusal::InvalidStatus => (404, 0, "Invalid Transaction Status".into()),
            Refusal::TransactionNotFound => (404, 1, "Transaction Not Found".into()),
            Refusal::BillNotFound(why) => {
                (404, 12, format!("Invalid Bill/Virtual Account [{why}]"))
            }
            Refusal::InvalidAmount => (404, 13, "Invalid Amount".into()),
            Refusal::PaidBill => (404, 14, "Paid Bill".into()),
            Refusal::Inconsistent => (404, 18, "Inconsistent Request".into()),
            Refusal::BillExpired => (404, 19, "Invalid Bill/Virtual Account [Expired]".into()),
            Refusal::NotSupported => (405, 0, "Requested Function Is Not Supported".into()),
            Refusal::Conflict => (409, 0, "Conflict".into()),
            Refusal::VaInUse => (409, 0, "Conflict [VA has an active bill]".into()),
            Refusal::TooManyRequests => (429, 0, "Too Many Requests".into()),
            Refusal::General => (500, 0, "General Error".into()),
            Refusal::Internal => (500, 1, "Internal Server Error".into()),
            Refusal::External => (500, 2, "External Server Error".into()),
            Refusal::Timeout => (504, 0, "Timeout".into()),
        }
    }

    /// The answer to `service`.
    pub fn answer(&self, service: Service) -> Answer {
        let (http, case, message) = self.parts();
        Answer::new(http, service, case, message)
    }
}

/// A SNAP answer's status line: the HTTP status, `responseCode` (7 digits: HTTP status,
/// service, case) and `responseMessage`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub http: u16,
    pub code: String,
    pub message: String,
}

impl Answer {
    pub fn new(http: u16, service: Service, case: u8, message: String) -> Answer {
        Answer {
            http,
            code: format!("{http}{:02}{case:02}", service.code()),
            message,
        }
    }

    /// `200xx00 Successful`.
    pub fn success(service: Service) -> Answer {
        Answer::new(200, service, 0, "Successful".into())
    }

    /// `202xx00 Request In Progress`: a payment committed whose journal append the broker
    /// has not acknowledged in time; the switch completes it, the bank asks service 26.
    pub fn in_progress(service: Service) -> Answer {
        Answer::new(202, service, 0, "Request In Progress".into())
    }
}

/// SNAP's bilingual text (`{"english": .., "indonesia": ..}`).
pub fn text(english: &str, indonesia: &str) -> serde_json::Value {
    serde_json::json!({ "english": english, "indonesia": indonesia })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_status_service_case() {
        assert_eq!(Answer::success(Service::Inquiry).code, "2002400");
        assert_eq!(Answer::in_progress(Service::Payment).code, "2022500");
        assert_eq!(Refusal::PaidBill.answer(Service::Payment).code, "4042514");
        assert_eq!(
            Refusal::TransactionNotFound.answer(Service::Status).code,
            "4042601"
        );
        assert_eq!(
            Refusal::Unauthorized("Signature").answer(Service::AccessToken),
            Answer {
                http: 401,
                code: "4017300".into(),
                message: "Unauthorized. [Signature]".into()
            }
        );
        assert_eq!(
            Refusal::Mandatory("X-EXTERNAL-ID".into())
                .answer(Service::Inquiry)
                .message,
            "Invalid Mandatory Field {X-EXTERNAL-ID}"
        );
    }
}
