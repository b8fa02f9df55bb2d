//! SNAP's institution-facing VA services (snap-reference.md s3.4-3.10; docs/snap.md): 27
//! create VA, 30 inquiry VA, 31 delete VA and 35 report, read into the switch's own terms
//! (an IPG Create New Bill body, a VA, a day's window), and the VA record and report rows
//! written back. Wire only: the door (`api::snap_manage`) does the work.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use serde_json::{json, Map, Value};

use super::va::{amount, money};
use super::Refusal;
use crate::domain::Bill;

fn format(f: &str) -> Refusal {
    Refusal::Format(f.to_owned())
}

fn mandatory(f: &str) -> Refusal {
    Refusal::Mandatory(f.to_owned())
}

fn object(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    match crate::protocol::json::parse(body) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(Refusal::BadRequest),
    }
}

fn string(o: &Map<String, Value>, f: &str, max: usize) -> Result<Option<String>, Refusal> {
    match o.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => {
            Ok(Some(s.clone()).filter(|s| !s.is_empty()))
        }
        Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err(format(f)),
    }
}

/// The VA a management request names: the 6-digit prefix (BCN) of `partnerServiceId` and
/// the 10 digits of `customerNo` (the padding rules of services 24-26), the three fields as
/// sent for the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaRef {
    pub prefix: String,
    pub number: String,
    pub echo: Map<String, Value>,
}

impl VaRef {
    pub fn va(&self) -> String {
        format!("{}{}", self.prefix, self.number)
    }
}

fn va_ref(o: &Map<String, Value>) -> Result<VaRef, Refusal> {
    let psid = string(o, "partnerServiceId", 8)?.ok_or_else(|| mandatory("partnerServiceId"))?;
    let customer = string(o, "customerNo", 20)?.ok_or_else(|| mandatory("customerNo"))?;
    let prefix = psid.trim_start_matches(' ');
    let prefix = prefix
        .strip_prefix(&"0".repeat(prefix.len().saturating_sub(6)))
        .unwrap_or(prefix);
    if prefix.len() != 6 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format("partnerServiceId"));
    }
    let number = customer
        .strip_prefix(&"0".repeat(customer.len().saturating_sub(10)))
        .unwrap_or(&customer);
    if number.len() != 10 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format("customerNo"));
    }
    let vano = string(o, "virtualAccountNo", 28)?.unwrap_or_else(|| format!("{psid}{customer}"));
    let digits = |s: &str| s.trim_start_matches([' ', '0']).to_owned();
    if digits(&vano) != digits(&format!("{psid}{customer}")) {
        return Err(format("virtualAccountNo"));
    }
    let mut echo = Map::new();
    echo.insert("partnerServiceId".into(), psid.clone().into());
    echo.insert("customerNo".into(), customer.clone().into());
    echo.insert("virtualAccountNo".into(), vano.into());
    Ok(VaRef {
        prefix: prefix.to_owned(),
        number: number.to_owned(),
        echo,
    })
}

/// A request naming a VA and optionally its `trxId` (30, 31).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaRequest {
    pub va: VaRef,
    pub trx_id: Option<String>,
}

/// Reads a service 30 or 31 body (`trxId` required by 30, optional for 31).
///
/// # Errors
/// The field refused.
pub fn va_request(body: &[u8], trx_id_required: bool) -> Result<VaRequest, Refusal> {
    let o = object(body)?;
    let va = va_ref(&o)?;
    let trx_id = string(&o, "trxId", 64)?;
    if trx_id_required && trx_id.is_none() {
        return Err(mandatory("trxId"));
    }
    Ok(VaRequest { va, trx_id })
}

/// A service 27 body as the VA and the IPG Create New Bill body of `institution`
/// (docs/snap.md "Create VA"): `customerNo` -> `va_number`, the prefix -> `prefix`,
/// `virtualAccountName` -> `customer_name`, `trxId` -> `invoice_number`, `totalAmount` ->
/// `total_amount`, `virtualAccountTrxType` C/I/O -> `close`/`partial`/`open`, `expiredDate`
/// -> `valid_until` (a date-time without a zone is the switch's), the first bill detail's
/// `billName` (else its description, else `trxId`) -> `name`. Trx types: C close, I and X
/// partial, O open, M minimum, L maximum, N open_minimum.
///
/// # Errors
/// The field refused; a trx type outside ASPI's (BCA's V and W) as a format error of
/// `virtualAccountTrxType`.
pub fn create_request(
    body: &[u8],
    institution: &str,
    offset: FixedOffset,
) -> Result<(VaRef, String, Value), Refusal> {
    let o = object(body)?;
    let va = va_ref(&o)?;
    let name =
        string(&o, "virtualAccountName", 255)?.ok_or_else(|| mandatory("virtualAccountName"))?;
    let trx_id = string(&o, "trxId", 64)?.ok_or_else(|| mandatory("trxId"))?;
    let kind = match string(&o, "virtualAccountTrxType", 1)?.as_deref() {
        None | Some("C") => "close",
        // X (many payments, their sum at most the bill) is IPG's partial.
        Some("I") | Some("X") => "partial",
        Some("O") => "open",
        Some("M") => "minimum",
        Some("L") => "maximum",
        Some("N") => "open_minimum",
        Some(_) => return Err(format("virtualAccountTrxType")),
    };
    let total = amount(o.get("totalAmount"), "totalAmount")?;
    let total = match (total, kind) {
        (Some(t), _) => t,
        (None, "open") => 0,
        (None, _) => return Err(mandatory("totalAmount")),
    };
    let detail = o
        .get("billDetails")
        .and_then(Value::as_array)
        .and_then(|d| d.first())
        .cloned()
        .unwrap_or_default();
    let bill_name = detail
        .get("billName")
        .and_then(Value::as_str)
        .or_else(|| detail["billDescription"]["indonesia"].as_str())
        .or_else(|| detail["billDescription"]["english"].as_str())
        .unwrap_or(&trx_id)
        .to_owned();
    let valid_until = match string(&o, "expiredDate", 25)? {
        None => None,
        Some(s) => Some(
            DateTime::parse_from_rfc3339(&s)
                .ok()
                .or_else(|| {
                    NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S")
                        .ok()
                        .and_then(|n| n.and_local_timezone(offset).single())
                })
                .ok_or_else(|| format("expiredDate"))?
                .to_rfc3339(),
        ),
    };
    let mut ipg = json!({
        "institution_code": institution,
        "va_number": va.number,
        "prefix": va.prefix,
        "type": kind,
        "name": bill_name,
        "customer_name": name,
        "total_amount": total,
        "invoice_number": trx_id,
    });
    if let Some(v) = valid_until {
        ipg["valid_until"] = v.into();
    }
    for (snap, field) in [
        ("virtualAccountEmail", "customer_email"),
        ("virtualAccountPhone", "customer_phone"),
    ] {
        if let Some(v) = string(&o, snap, 255)? {
            ipg[field] = v.into();
        }
    }
    Ok((va, trx_id, ipg))
}

/// The SNAP field an IPG Create New Bill field stands for (a refusal of the create names
/// the field the partner sent).
pub fn snap_field(ipg: &str) -> &str {
    match ipg.split('.').next().unwrap_or(ipg) {
        "va_number" => "customerNo",
        "prefix" | "institution_code" => "partnerServiceId",
        "type" => "virtualAccountTrxType",
        "name" => "billDetails",
        "customer_name" => "virtualAccountName",
        "customer_email" => "virtualAccountEmail",
        "customer_phone" => "virtualAccountPhone",
        "total_amount" | "components" => "totalAmount",
        "invoice_number" => "trxId",
        "valid_until" => "expiredDate",
        other => other,
    }
}

/// The VA record of `bill` (s3.4) under the VA `va` as the request named it.
pub fn va_record(va: &VaRef, bill: &Bill) -> Value {
    let mut m = va.echo.clone();
    m.insert(
        "virtualAccountName".into(),
        bill.customer_name.clone().into(),
    );
    if let Some(e) = &bill.customer_email {
        m.insert("virtualAccountEmail".into(), e.clone().into());
    }
    if let Some(p) = &bill.customer_phone {
        m.insert("virtualAccountPhone".into(), p.clone().into());
    }
    m.insert(
        "trxId".into(),
        bill.invoice_number
            .clone()
            .unwrap_or_else(|| bill.hash.clone())
            .into(),
    );
    m.insert("totalAmount".into(), money(bill.total_amount.get()));
    let trx_type = match bill.bill_type {
        crate::domain::BillType::Close => "C",
        crate::domain::BillType::Partial => "I",
        crate::domain::BillType::Open => "O",
        crate::domain::BillType::Minimum => "M",
        crate::domain::BillType::Maximum => "L",
        crate::domain::BillType::OpenMinimum => "N",
    };
    m.insert("virtualAccountTrxType".into(), trx_type.into());
    m.insert(
        "billDetails".into(),
        json!([{
            "billNo": bill.invoice_number.clone().unwrap_or_default().chars().take(18).collect::<String>(),
            "billName": bill.name.chars().take(20).collect::<String>(),
            "billAmount": money(bill.total_amount.get()),
        }]),
    );
    if let Some(u) = bill.valid_until {
        m.insert("expiredDate".into(), u.to_rfc3339().into());
    }
    m.insert(
        "additionalInfo".into(),
        json!({
            "billHash": bill.hash,
            "status": serde_json::to_value(bill.status).unwrap_or_default(),
            "paidAmount": money(bill.paid_amount.get()),
        }),
    );
    Value::Object(m)
}

/// A service 35 window: one business day (`startDate`, and `endDate` if given, the same
/// day), from `startTime` to `endTime` (`HH:mm`, defaults `00:00` and `23:59`; seconds and
/// an offset, as ASPI's own sample sends, are read and the offset ignored: times are the
/// switch's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRequest {
    pub prefix: String,
    pub date: NaiveDate,
    pub from: NaiveTime,
    pub to: NaiveTime,
    pub echo_psid: String,
}

/// `HH:mm`, or `HH:mm:ss`, optionally followed by an offset (ignored: times are the
/// switch's). Without seconds a start is the minute's first second and an end its last.
fn time(
    o: &Map<String, Value>,
    f: &str,
    default: NaiveTime,
    end: bool,
) -> Result<NaiveTime, Refusal> {
    let Some(s) = string(o, f, 14)? else {
        return Ok(default);
    };
    let hm = s.get(..5).ok_or_else(|| format(f))?;
    let t = NaiveTime::parse_from_str(hm, "%H:%M").map_err(|_| format(f))?;
    let zone = |z: Option<&str>| matches!(z, None | Some("+") | Some("-") | Some("Z"));
    match s.get(5..6) {
        Some(":") => {
            let hms = s.get(..8).ok_or_else(|| format(f))?;
            let t = NaiveTime::parse_from_str(hms, "%H:%M:%S").map_err(|_| format(f))?;
            zone(s.get(8..9)).then_some(t).ok_or_else(|| format(f))
        }
        z if zone(z) => Ok(if end {
            t + chrono::Duration::seconds(59)
        } else {
            t
        }),
        _ => Err(format(f)),
    }
}

/// Reads a service 35 body (POST with a JSON body; docs/snap.md question 8).
///
/// # Errors
/// The field refused; a window longer than one day is `endDate`'s format error.
pub fn report_request(body: &[u8]) -> Result<ReportRequest, Refusal> {
    let o = object(body)?;
    let psid = string(&o, "partnerServiceId", 8)?.ok_or_else(|| mandatory("partnerServiceId"))?;
    let prefix = psid.trim_start_matches(' ');
    let prefix = prefix
        .strip_prefix(&"0".repeat(prefix.len().saturating_sub(6)))
        .unwrap_or(prefix);
    if prefix.len() != 6 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format("partnerServiceId"));
    }
    let date = string(&o, "startDate", 10)?.ok_or_else(|| mandatory("startDate"))?;
    let date = NaiveDate::parse_from_str(&date, "%Y-%m-%d").map_err(|_| format("startDate"))?;
    if let Some(end) = string(&o, "endDate", 10)? {
        if NaiveDate::parse_from_str(&end, "%Y-%m-%d").ok() != Some(date) {
            return Err(format("endDate"));
        }
    }
    let midnight = NaiveTime::MIN;
    let last = NaiveTime::from_hms_opt(23, 59, 59).unwrap_or(midnight);
    let from = time(&o, "startTime", midnight, false)?;
    let to = time(&o, "endTime", last, true)?;
    Ok(ReportRequest {
        prefix: prefix.to_owned(),
        date,
        from,
        to,
        echo_psid: psid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wib() -> FixedOffset {
        FixedOffset::east_opt(7 * 3600).unwrap()
    }

    #[test]
    fn a_create_va_body_becomes_an_ipg_create_body() {
        let body = br#"{"partnerServiceId":"  857499","customerNo":"00000000007300000042",
            "virtualAccountNo":"  85749900000000007300000042","virtualAccountName":"Jokul Doe",
            "virtualAccountEmail":"jokul@example.com","trxId":"INV-02-00001",
            "totalAmount":{"value":"150000.00","currency":"IDR"},
            "billDetails":[{"billName":"SPP Januari"}],"virtualAccountTrxType":"C",
            "expiredDate":"2030-05-31T23:59:59"}"#;
        let (va, trx, ipg) = create_request(body, "SCH01", wib()).unwrap();
        assert_eq!(va.va(), "8574997300000042");
        assert_eq!(trx, "INV-02-00001");
        assert_eq!(
            ipg,
            json!({"institution_code":"SCH01","va_number":"7300000042","prefix":"857499",
                "type":"close","name":"SPP Januari","customer_name":"Jokul Doe",
                "total_amount":150000,"invoice_number":"INV-02-00001",
                "valid_until":"2030-05-31T23:59:59+07:00","customer_email":"jokul@example.com"})
        );
        let m = |k: &str, v: Value| {
            let mut o: Value = serde_json::from_slice(body).unwrap();
            o[k] = v;
            create_request(o.to_string().as_bytes(), "SCH01", wib()).unwrap_err()
        };
        assert_eq!(
            m("virtualAccountTrxType", json!("V")),
            format("virtualAccountTrxType")
        );
        assert_eq!(
            m("totalAmount", json!({"value":"1.50","currency":"IDR"})),
            format("totalAmount.value")
        );
        assert_eq!(m("trxId", Value::Null), mandatory("trxId"));
        assert_eq!(m("expiredDate", json!("tomorrow")), format("expiredDate"));
    }

    #[test]
    fn a_report_is_one_day() {
        let r = report_request(br#"{"partnerServiceId":"  857499","startDate":"2024-05-01","startTime":"14:56:11+07:00","endDate":"2024-05-01","endTime":"23:59"}"#).unwrap();
        assert_eq!(r.prefix, "857499");
        assert_eq!(r.from, NaiveTime::from_hms_opt(14, 56, 11).unwrap());
        assert_eq!(r.to, NaiveTime::from_hms_opt(23, 59, 59).unwrap());
        let r = report_request(br#"{"partnerServiceId":"  857499","startDate":"2024-05-01","startTime":"10:00","endTime":"10:30"}"#).unwrap();
        assert_eq!(
            (r.from, r.to),
            (
                NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
                NaiveTime::from_hms_opt(10, 30, 59).unwrap()
            )
        );
        assert_eq!(
            report_request(br#"{"partnerServiceId":"  857499","startDate":"2024-05-01","endDate":"2024-05-02"}"#).unwrap_err(),
            format("endDate")
        );
        assert_eq!(
            report_request(br#"{"partnerServiceId":"  857499"}"#).unwrap_err(),
            mandatory("startDate")
        );
        assert_eq!(
            report_request(
                br#"{"partnerServiceId":"  857499","startDate":"2024-05-01","startTime":"25:00"}"#
            )
            .unwrap_err(),
            format("startTime")
        );
    }
}
