//! Bulk issuance (issue 28, docs/api.md "Bulk issuance"): a file of bills (a JSON array of
//! Create New Bill bodies, or a CSV whose header names their fields) issued row by row
//! through [`Hosted::issue`], each created or refused on its own, with a result per row.
//! Issuing is idempotent per row: the same file again creates nothing (every row is found
//! as issued, `existing`), so a run cut short (a crash, a lost connection) is finished by
//! running it again.
//!
//! Rows are read whole (at most [`MAX_ROWS`]); a bad row (a field refused, a formula-like
//! cell, a cell that is not UTF-8, a wrong number of cells) is named and never blocks the
//! others. The result file is CSV safe to open in a spreadsheet ([`plain_cell`]).

use chrono::Datelike;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::SwitchError;
use crate::hosted::{Hosted, Issued};
use crate::routing::Institution;
use crate::statement::plain_cell;

pub mod jobs;

/// Most rows one file may hold.
pub const MAX_ROWS: usize = 10_000;

/// Rows issued at once.
pub const CONCURRENCY: usize = 16;

/// A row as read: its place (1 for the first bill) and its Create New Bill body, or why it
/// cannot be one (field, reason).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub row: usize,
    pub body: Result<Value, (String, String)>,
}

/// What became of one row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct RowResult {
    pub row: usize,
    /// `created`, `existing` (issued before by the same row), `valid` (a dry run) or
    /// `refused`.
    pub status: String,
    pub hash: String,
    pub va_number: String,
    /// The field refused, and why.
    pub field: String,
    pub reason: String,
}

impl RowResult {
    /// Created, existing, or valid in a dry run.
    pub fn ok(&self) -> bool {
        self.status != "refused"
    }
}

/// Why a file cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("not a JSON array of bills: {0}")]
    Json(String),
    #[error("CSV header: {0}")]
    Header(String),
    #[error("more than {MAX_ROWS} rows")]
    TooLarge,
}

/// The fields a CSV header may name (Create New Bill's, without `components`, which a
/// cell cannot hold: a bill with components is issued from JSON).
pub const CSV_FIELDS: &[&str] = &[
    "institution_code",
    "va_number",
    "prefix",
    "type",
    "invoice_number",
    "name",
    "customer_name",
    "customer_email",
    "customer_phone",
    "customer_address",
    "total_amount",
    "description",
    "ext_description",
    "valid_until",
];

/// Reads a JSON array of bill bodies.
///
/// # Errors
/// Not JSON, not an array, more than [`MAX_ROWS`].
pub fn read_json(bytes: &[u8]) -> Result<Vec<Row>, FileError> {
    // The array's elements as raw text, at most MAX_ROWS of them (no more is ever held),
    // each then read on its own: a row that repeats a name is that row's refusal.
    let Rows(items) = serde_json::from_slice(bytes).map_err(|e| {
        if e.to_string().contains(TOO_MANY) {
            FileError::TooLarge
        } else {
            FileError::Json(e.to_string())
        }
    })?;
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, raw)| Row {
            row: i + 1,
            body: match crate::protocol::json::parse(raw.get().as_bytes()) {
                Ok(v) if v.is_object() => Ok(v),
                Ok(_) => Err(("row".into(), "must be a JSON object".into())),
                Err(e) => Err((e.field("row").to_owned(), e.to_string())),
            },
        })
        .collect())
}

const TOO_MANY: &str = "more rows than the limit";

/// A JSON array read element by element, refused past [`MAX_ROWS`] elements.
struct Rows<'a>(Vec<&'a serde_json::value::RawValue>);

impl<'de> serde::Deserialize<'de> for Rows<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Elements;
        impl<'de> serde::de::Visitor<'de> for Elements {
            type Value = Rows<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON array of bills")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Rows<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some(raw) = seq.next_element::<&'de serde_json::value::RawValue>()? {
                    if out.len() == MAX_ROWS {
                        return Err(serde::de::Error::custom(TOO_MANY));
                    }
                    out.push(raw);
                }
                Ok(Rows(out))
            }
        }
        d.deserialize_seq(Elements)
    }
}

/// Reads a CSV of bills: a header row of [`CSV_FIELDS`] names, then one bill per record.
/// `institution_code` may be left out (then `institution` is every row's); `prefix` may
/// list several prefixes separated by `;`. A cell starting with `=`, `+`, `-` or `@` (a
/// spreadsheet formula, OWASP "CSV injection") refuses its row naming the field.
///
/// # Errors
/// A header that names an unknown or repeated field, or not UTF-8; more than [`MAX_ROWS`].
pub fn read_csv(bytes: &[u8], institution: &str) -> Result<Vec<Row>, FileError> {
    read_csv_with(bytes, CSV_FIELDS, institution)
}

/// [`read_csv`] with these `columns` allowed; `institution` fills `institution_code` when
/// not empty.
fn read_csv_with(bytes: &[u8], columns: &[&str], institution: &str) -> Result<Vec<Row>, FileError> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes);
    let header: Vec<String> = r
        .byte_headers()
        .map_err(|e| FileError::Header(e.to_string()))?
        .iter()
        .map(|h| {
            std::str::from_utf8(h)
                .map(|s| s.trim().trim_start_matches('\u{feff}').to_owned())
                .map_err(|_| FileError::Header("not UTF-8".into()))
        })
        .collect::<Result<_, _>>()?;
    for (i, h) in header.iter().enumerate() {
        if !columns.contains(&h.as_str()) {
            return Err(FileError::Header(format!(
                "column {} ({h:?}) is not one of {}",
                i + 1,
                columns.join(", ")
            )));
        }
        if header[..i].contains(h) {
            return Err(FileError::Header(format!("column {h:?} appears twice")));
        }
    }
    let mut rows = Vec::new();
    for (i, record) in r.byte_records().enumerate() {
        if rows.len() >= MAX_ROWS {
            return Err(FileError::TooLarge);
        }
        let body = match record {
            Err(e) => Err(("row".into(), format!("unreadable CSV: {e}"))),
            Ok(rec) if rec.len() != header.len() => Err((
                "row".into(),
                format!("has {} cells, the header {}", rec.len(), header.len()),
            )),
            Ok(rec) => csv_body(&header, &rec, institution),
        };
        rows.push(Row { row: i + 1, body });
    }
    Ok(rows)
}

fn csv_body(
    header: &[String],
    rec: &csv::ByteRecord,
    institution: &str,
) -> Result<Value, (String, String)> {
    let mut o = Map::new();
    for (name, cell) in header.iter().zip(rec.iter()) {
        let cell = std::str::from_utf8(cell)
            .map_err(|_| (name.clone(), "is not UTF-8".to_owned()))?
            .trim();
        if cell.is_empty() {
            continue;
        }
        // A phone number's `+62...` is a number, not a formula.
        let phone = name == "customer_phone"
            && cell.strip_prefix('+').is_some_and(|d| {
                !d.is_empty()
                    && d.bytes()
                        .all(|b| b.is_ascii_digit() || b == b' ' || b == b'-')
            });
        if !phone && crate::protocol::channel::FORMULA_START.contains(&cell.as_bytes()[0]) {
            return Err((
                name.clone(),
                "starts with =, +, - or @ (a spreadsheet formula)".into(),
            ));
        }
        let v = match name.as_str() {
            "prefix" if cell.contains(';') => {
                Value::Array(cell.split(';').map(|p| p.trim().into()).collect())
            }
            _ => cell.into(),
        };
        o.insert(name.clone(), v);
    }
    if !institution.is_empty() {
        o.entry("institution_code")
            .or_insert_with(|| institution.into());
    }
    Ok(Value::Object(o))
}

/// An upload's rows for `institution` (CSV when `csv`, else a JSON array), each bill body
/// given `institution_code` when it has none.
///
/// # Errors
/// As [`read_json`] and [`read_csv`].
pub fn read_upload(bytes: &[u8], csv: bool, institution: &str) -> Result<Vec<Row>, FileError> {
    let rows = if csv {
        read_csv(bytes, institution)?
    } else {
        read_json(bytes)?
    };
    Ok(of_institution(rows, institution))
}

/// `rows` with `institution_code` set to `institution` where a body has none.
fn of_institution(mut rows: Vec<Row>, institution: &str) -> Vec<Row> {
    for r in &mut rows {
        if let Ok(Value::Object(b)) = r.body.as_mut() {
            b.entry("institution_code")
                .or_insert_with(|| institution.into());
        }
    }
    rows
}

/// A recurring issue as one request (`POST /api/v2/gw/bill/batch/recurring`, docs/api.md
/// "Recurring issuance"): `{"period": "2027-01", "template": {..}, "customers": "<CSV>"}`,
/// read as [`recurring_rows`] for `institution` (every row's `institution_code`).
///
/// # Errors
/// Not that JSON object; as [`recurring_rows`].
pub fn read_recurring(
    bytes: &[u8],
    institution: &str,
    offset: chrono::FixedOffset,
) -> Result<Vec<Row>, FileError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Recurring<'a> {
        period: String,
        #[serde(borrow)]
        template: &'a serde_json::value::RawValue,
        customers: String,
    }
    let r: Recurring = serde_json::from_slice(bytes).map_err(|e| FileError::Json(e.to_string()))?;
    let rows = recurring_rows(
        r.template.get().as_bytes(),
        r.customers.as_bytes(),
        &r.period,
        offset,
    )?;
    Ok(of_institution(rows, institution))
}

/// Issues every row for `inst` ([`CONCURRENCY`] at a time), calling `progress` after each;
/// the results in row order.
pub async fn issue_all(
    hosted: &Hosted,
    inst: &Institution,
    rows: Vec<Row>,
    dry_run: bool,
    mut progress: impl FnMut(),
) -> Vec<RowResult> {
    let mut out: Vec<RowResult> = futures::stream::iter(rows)
        .map(|r| async move {
            match issue_row(hosted, inst, r, dry_run).await {
                Ok(done) => done,
                Err((row, e)) => result(row, Err(refusal(&e))),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .inspect(|_| progress())
        .collect()
        .await;
    out.sort_by_key(|r| r.row);
    out
}

/// Issues one row: its result, or (with the row) an error that is not the row's fault
/// (Redis or the journal unavailable, the switch busy: `Disposition::Retry`), which a job
/// tries again later instead of recording.
pub(crate) async fn issue_row(
    hosted: &Hosted,
    inst: &Institution,
    r: Row,
    dry_run: bool,
) -> Result<RowResult, (usize, SwitchError)> {
    let outcome = match r.body {
        Err(e) => Err(e),
        Ok(body) => match hosted.issue(inst, &body, dry_run).await {
            Ok(i) => Ok(i),
            Err(e) if e.disposition() == crate::error::Disposition::Retry => {
                return Err((r.row, e));
            }
            Err(e) => Err(refusal(&e)),
        },
    };
    Ok(result(r.row, outcome))
}

fn refusal(e: &SwitchError) -> (String, String) {
    match e {
        SwitchError::InvalidField { field, reason } => (field.clone(), reason.clone()),
        other => ("row".into(), other.to_string()),
    }
}

fn result(row: usize, outcome: Result<Issued, (String, String)>) -> RowResult {
    match outcome {
        Ok(i) => RowResult {
            row,
            status: i.as_str().into(),
            hash: i.bill().hash.clone(),
            va_number: i.bill().va_number.clone(),
            field: String::new(),
            reason: String::new(),
        },
        Err((field, reason)) => RowResult {
            row,
            status: "refused".into(),
            hash: String::new(),
            va_number: String::new(),
            field,
            reason,
        },
    }
}

/// The results as CSV (`row,status,hash,va_number,field,reason`), every text cell safe to
/// open in a spreadsheet.
pub fn results_csv(results: &[RowResult]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(["row", "status", "hash", "va_number", "field", "reason"]);
    for r in results {
        let row = r.row.to_string();
        let _ = w.write_record([
            row.as_str(),
            &r.status,
            &plain_cell(&r.hash),
            &plain_cell(&r.va_number),
            &plain_cell(&r.field),
            &plain_cell(&r.reason),
        ]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// Counts by status: (created, existing, valid, refused).
pub fn counts(results: &[RowResult]) -> (usize, usize, usize, usize) {
    let n = |s: &str| results.iter().filter(|r| r.status == s).count();
    (n("created"), n("existing"), n("valid"), n("refused"))
}

/// A recurring issue (docs/api.md "Recurring issuance"): a bill template, a customer list
/// and a period give that period's bills, one per customer.
///
/// The template is a Create New Bill body without `va_number` and `customer_name` (they
/// come from each customer), plus `due_day` (1-28: the bill is valid until that day of the
/// period, 23:59:59 in the switch's offset). In its text fields `{period}` (`2026-07`) and
/// `{va_number}` are replaced; `invoice_number` defaults to `{period}/{va_number}`,
/// so that each customer's bill of a period is one bill: issuing the same period again
/// creates nothing (every row `existing`). The customer list is a CSV with `va_number`,
/// `customer_name` and optionally `total_amount`, `customer_email`, `customer_phone`,
/// `customer_address` (which override the template's).
///
/// A VA holds one payable bill at a time: a period's bills can be issued once the previous
/// period's are paid or past their due day.
///
/// # Errors
/// A template that is not a JSON object or lacks `due_day`; a period that is not `YYYY-MM`;
/// a customer list whose header names another column.
pub fn recurring_rows(
    template: &[u8],
    customers: &[u8],
    period: &str,
    offset: chrono::FixedOffset,
) -> Result<Vec<Row>, FileError> {
    let t = crate::protocol::json::parse(template).map_err(|e| FileError::Json(e.to_string()))?;
    let Value::Object(mut t) = t else {
        return Err(FileError::Json("the template is not a JSON object".into()));
    };
    let start = chrono::NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d")
        .ok()
        // Exactly YYYY-MM: `2027-1` and `2027-01` must not be two periods.
        .filter(|d| d.format("%Y-%m").to_string() == period)
        .ok_or_else(|| FileError::Json(format!("period {period:?} is not YYYY-MM")))?;
    let due_day = t
        .remove("due_day")
        .and_then(|d| d.as_u64())
        .filter(|d| (1..=28).contains(d))
        .ok_or_else(|| FileError::Json("the template needs due_day, 1 to 28".into()))?;
    let due = start
        .with_day(due_day as u32)
        .and_then(|d| d.and_hms_opt(23, 59, 59))
        .and_then(|d| d.and_local_timezone(offset).single())
        .ok_or_else(|| FileError::Json("due_day is not a day of the period".into()))?;
    t.insert("valid_until".into(), due.to_rfc3339().into());
    t.entry("invoice_number")
        .or_insert_with(|| "{period}/{va_number}".into());
    const COLUMNS: &[&str] = &[
        "va_number",
        "customer_name",
        "total_amount",
        "customer_email",
        "customer_phone",
        "customer_address",
    ];
    let listed = read_csv_with(customers, COLUMNS, "")?;
    Ok(listed
        .into_iter()
        .map(|r| Row {
            row: r.row,
            body: r.body.map(|c| {
                let mut b = t.clone();
                if let Value::Object(c) = c {
                    for (k, v) in c {
                        if k != "institution_code" {
                            b.insert(k, v);
                        }
                    }
                }
                let va = b
                    .get("va_number")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                for v in b.values_mut() {
                    if let Value::String(s) = v {
                        *s = s.replace("{period}", period).replace("{va_number}", &va);
                    }
                }
                Value::Object(b)
            }),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_are_read_and_bad_rows_named() {
        let csv = "\u{feff}va_number,prefix,type,name,customer_name,total_amount\n\
            7600000001,857499,close,SPP,Ahmad,150000\n\
            7600000002,857499;857500,close,SPP,=HYPERLINK(\"x\"),150000\n\
            7600000003,857499,close\n";
        let rows = read_csv(csv.as_bytes(), "SCH01").unwrap();
        assert_eq!(rows.len(), 3);
        let first = rows[0].body.as_ref().unwrap();
        assert_eq!(first["institution_code"], "SCH01");
        assert_eq!(first["total_amount"], "150000");
        assert_eq!(rows[1].body.as_ref().unwrap_err().0, "customer_name");
        assert_eq!(rows[2].body.as_ref().unwrap_err().0, "row");
        assert!(
            read_csv(b"va_number,amount\n1,2\n", "SCH01").is_err(),
            "unknown column"
        );
        assert!(
            read_csv(b"name,name\n1,2\n", "SCH01").is_err(),
            "repeated column"
        );
    }

    #[test]
    fn json_rows_are_read_one_by_one_and_bounded() {
        let rows = read_json(br#"[{"a":1},{"a":1,"a":2},3]"#).unwrap();
        assert!(rows[0].body.is_ok());
        assert_eq!(
            rows[1].body.as_ref().unwrap_err().0,
            "a",
            "a repeated name refuses its row"
        );
        assert_eq!(rows[2].body.as_ref().unwrap_err().0, "row");
        let many = format!("[{}]", vec!["{}"; MAX_ROWS + 1].join(","));
        assert!(matches!(
            read_json(many.as_bytes()),
            Err(FileError::TooLarge)
        ));
        assert!(matches!(read_json(b"{}"), Err(FileError::Json(_))));
    }

    #[test]
    fn phone_numbers_are_not_formulas() {
        let rows = read_csv(
            b"customer_phone,name\n+62 812-3456,SPP\n+cmd,SPP\n",
            "SCH01",
        )
        .unwrap();
        assert_eq!(
            rows[0].body.as_ref().unwrap()["customer_phone"],
            "+62 812-3456"
        );
        assert_eq!(rows[1].body.as_ref().unwrap_err().0, "customer_phone");
    }

    #[test]
    fn a_period_is_exactly_yyyy_mm() {
        let template = br#"{"name":"SPP","due_day":10}"#;
        let wib = chrono::FixedOffset::east_opt(7 * 3600).unwrap();
        assert!(recurring_rows(template, b"va_number,customer_name\n", "2027-1", wib).is_err());
        assert!(recurring_rows(template, b"va_number,customer_name\n", "2027-01", wib).is_ok());
    }

    #[test]
    fn invalid_utf8_cells_are_named() {
        let mut bytes = b"va_number,name\n7600000004,".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        bytes.push(b'\n');
        let rows = read_csv(&bytes, "SCH01").unwrap();
        assert_eq!(
            rows[0].body.as_ref().unwrap_err(),
            &("name".to_owned(), "is not UTF-8".to_owned())
        );
    }

    #[test]
    fn a_period_of_a_template_is_one_bill_per_customer() {
        let template = br#"{"institution_code":"SCH01","prefix":"857499","type":"close",
            "name":"SPP {period}","total_amount":350000,"due_day":10}"#;
        let customers = b"va_number,customer_name,total_amount
0000000101,Aisyah,
0000000102,Bima,300000
";
        let wib = chrono::FixedOffset::east_opt(7 * 3600).unwrap();
        let rows = recurring_rows(template, customers, "2026-07", wib).unwrap();
        let b = rows[1].body.as_ref().unwrap();
        assert_eq!(b["name"], "SPP 2026-07");
        assert_eq!(b["invoice_number"], "2026-07/0000000102");
        assert_eq!(b["valid_until"], "2026-07-10T23:59:59+07:00");
        assert_eq!(b["total_amount"], "300000", "the customer's amount");
        assert_eq!(rows[0].body.as_ref().unwrap()["total_amount"], 350000);
        assert_eq!(b["customer_name"], "Bima");
        assert!(recurring_rows(template, customers, "2026-13", wib).is_err());
        assert!(recurring_rows(br#"{"name":"x"}"#, customers, "2026-07", wib).is_err());
        assert!(recurring_rows(template, b"va_number,amount\n", "2026-07", wib).is_err());
    }

    #[test]
    fn results_are_safe_to_open_in_a_spreadsheet() {
        let r = RowResult {
            row: 3,
            status: "refused".into(),
            hash: String::new(),
            va_number: String::new(),
            field: "customer_name".into(),
            reason: "=cmd|' /C calc'!A0".into(),
        };
        let csv = results_csv(&[r]);
        assert!(csv.contains("'=cmd"), "{csv}");
        assert!(csv.starts_with("row,status,hash,va_number,field,reason\n"));
    }
}
