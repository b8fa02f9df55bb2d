//! Daily statements and reconciliation (issue 16, docs/statements.md): from the journal,
//! exact lines and totals, the business day's edges, the same bytes after FLUSHALL +
//! restore, and every kind of mismatch a bank's file can show.

mod common;

use std::time::Duration;

use chrono::{FixedOffset, NaiveDate};
use common::institution::{Institution, Mode};
use common::*;
use ipg_switch::statement::{Day, Scope, Statement};
use ipg_switch::store::journal::Event;
use serde_json::{json, Value};

fn wib() -> FixedOffset {
    FixedOffset::east_opt(7 * 3600).unwrap()
}

/// A hosted payment stage's event as the switch journals it (the fields a statement
/// reads): paid at `paid_at`, and with `reversed_at` its reversal.
fn stage(
    reference: &str,
    channel: &str,
    amount: u64,
    paid_at: &str,
    reversed_at: Option<&str>,
    seq: u64,
    balance: i64,
) -> Event {
    let (stage, kind, at) = match reversed_at {
        None => ("paid", "payment_committed", paid_at),
        Some(r) => ("reversed", "payment_reversed", r),
    };
    let doc = json!({"id": format!("id-{reference}"), "payment_ref_id": reference, "channel": channel,
        "amount": amount, "type": "payment", "status": stage, "va_number": "8574991234567890",
        "bill_hash": "h1", "institution_code": "SCH01", "terminal_id": null, "customer_name": null,
        "transaction_date": null, "created_at": paid_at, "reversed_at": reversed_at});
    serde_json::from_value(json!({
        "event_id": format!("SCH01:pay:{channel}:{reference}:{stage}"), "type": kind,
        "institution": "SCH01", "time": at,
        "payment": {"channel": channel, "payment_ref_id": reference, "stage": stage, "doc": doc,
            "answered_bill": {}, "timestamp": at, "ledger_seq": seq, "score_ms": 0},
        "ledger": {"seq": seq, "balance_after": balance, "entry": {"balance_after": balance}}
    }))
    .unwrap()
}

/// LATE paid at 23:59:59 on the 28th and reversed on the 29th, MIDNIGHT paid at 00:00:00
/// on the 29th, OTHER through a second channel.
fn two_days() -> Vec<Event> {
    vec![
        stage(
            "LATE",
            CHANNEL,
            100_000,
            "2026-11-28T23:59:59+07:00",
            None,
            1,
            100_000,
        ),
        stage(
            "MIDNIGHT",
            CHANNEL,
            50_000,
            "2026-11-29T00:00:00+07:00",
            None,
            2,
            150_000,
        ),
        stage(
            "OTHER",
            "other_bank",
            7_000,
            "2026-11-29T08:00:00+07:00",
            None,
            3,
            157_000,
        ),
        stage(
            "LATE",
            CHANNEL,
            100_000,
            "2026-11-28T23:59:59+07:00",
            Some("2026-11-29T09:00:00+07:00"),
            4,
            57_000,
        ),
    ]
}

#[test]
fn the_business_day_has_exact_edges_and_status_at_its_close() {
    let mut events = two_days();
    // Journaled again under the same id: counted once.
    events.push(events[1].clone());
    let day = |d: &str, cutoff: u32| {
        Day::new(
            NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap(),
            wib(),
            cutoff,
        )
    };
    let sch = Scope::Institution(INST.into());

    let d28 = Statement::build(&events, &sch, &day("2026-11-28", 0), wib());
    assert_eq!(d28.lines.len(), 1);
    assert_eq!(
        (
            d28.lines[0].reference.as_str(),
            d28.lines[0].status.as_str()
        ),
        ("LATE", "paid"),
        "reversed only the next day: paid at the close of the 28th"
    );
    assert_eq!(d28.closing_balance, Some(100_000));
    assert_eq!(d28.from, "2026-11-28T00:00:00+07:00");
    assert_eq!(d28.to, "2026-11-29T00:00:00+07:00");

    let d29 = Statement::build(&events, &sch, &day("2026-11-29", 0), wib());
    let got: Vec<(&str, &str, &str, u64)> = d29
        .lines
        .iter()
        .map(|l| {
            (
                l.reference.as_str(),
                l.kind.as_str(),
                l.status.as_str(),
                l.amount,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("MIDNIGHT", "payment", "paid", 50_000),
            ("OTHER", "payment", "paid", 7_000),
            ("LATE", "reversal", "reversed", 100_000),
        ]
    );
    assert_eq!(d29.totals["payment"].count, 2);
    assert_eq!(d29.totals["payment"].amount, 57_000);
    assert_eq!(d29.totals["reversal"].amount, 100_000);
    assert_eq!(
        d29.totals_by_counterparty["other_bank"]["payment"].amount,
        7_000
    );
    assert_eq!(d29.closing_balance, Some(57_000));

    // A channel's statement; a cut-off at 08:00 moves OTHER into the 29th's day and the
    // rest into the 28th's.
    let ch = Statement::build(
        &events,
        &Scope::Channel("other_bank".into()),
        &day("2026-11-29", 0),
        wib(),
    );
    assert_eq!(ch.lines.len(), 1);
    assert_eq!(ch.closing_balance, None);
    let cut = Statement::build(&events, &sch, &day("2026-11-28", 8), wib());
    let refs: Vec<&str> = cut.lines.iter().map(|l| l.reference.as_str()).collect();
    assert_eq!(refs, ["LATE", "MIDNIGHT"]);

    // The hash is over the canonical body and does not move between builds.
    let again = Statement::build(events.iter().rev(), &sch, &day("2026-11-29", 0), wib());
    assert_eq!(
        d29.sha256, again.sha256,
        "the journal's order does not change a statement"
    );
    assert_eq!(d29.to_csv(), again.to_csv());
}

fn reversal(va: &str, payment_ref: &str, amount: u64) -> Value {
    json!({"va_number": va, "payment_ref": payment_ref, "amount": amount})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_days_statement_is_exact_stable_and_reconciles_every_kind_of_mismatch() {
    let inst = Institution::start("pas-key").await;
    let overlay = r#"
        [passive]
        timeout_ms = 700
        connect_timeout_ms = 300
        resolve_poll_ms = 50
        resolve_window_ms = 600000
        check_backoff_ms = [600000]
        reversal_backoff_ms = [100]
    "#;
    let mut stack = Stack::start_with(overlay).await;
    stack.point_passive(inst.base_url());
    let daemon = stack.daemon();
    for (n, kind, total) in [
        ("6100000001", "partial", 1_000_000),
        ("6100000002", "partial", 1_000_000),
    ] {
        stack.create_bill(bill_body(n, kind, total)).await;
    }
    let (v1, v2) = (va(PREFIX, "6100000001"), va(PREFIX, "6100000002"));
    inst.add_bill("6100000009", 40_000);
    inst.add_bill("6100000008", 30_000);
    let (pd, pv) = (
        va(PASSIVE_PREFIX, "6100000009"),
        va(PASSIVE_PREFIX, "6100000008"),
    );
    let mut expect_rc = vec![];
    for (id, kind, body) in [
        ("s1", "payment", payment(&v1, "P1", 10_000)),
        ("s3", "payment", payment(&v1, "P3", 30_000)),
        ("s3r", "reversal", reversal(&v1, "P3", 30_000)),
        ("s4", "payment", payment(&v2, "P4", 40_000)),
        ("s5", "payment", payment(&v2, "P5", 50_000)),
    ] {
        stack.send(kind, id, body).await;
        expect_rc.push((id, "SUCCESS"));
    }
    stack
        .send_as(
            "other_bank",
            "other-key",
            "payment",
            "s2",
            payment(&v1, "P2", 20_000),
        )
        .await;
    expect_rc.push(("s2", "SUCCESS"));
    // A forwarded payment left in doubt, and one the switch voids (an answer it cannot
    // trust, reversed by the resolver).
    inst.push_modes("payment", vec![Mode::Suspect]);
    stack
        .send("payment", "sd", payment(&pd, "PD", 40_000))
        .await;
    // Answered before the institution's next mode is set: one mode per call.
    assert_eq!(stack.answer("sd").await["rc"], "BILLER_SUSPECT_TRANSACTION");
    inst.push_modes("payment", vec![Mode::Garbage]);
    stack
        .send("payment", "sv", payment(&pv, "PV", 30_000))
        .await;
    for (id, rc) in &expect_rc {
        assert_eq!(stack.answer(id).await["rc"], *rc, "{id}");
    }
    let sv = stack.answer("sv").await;
    assert_ne!(sv["rc"], "SUCCESS", "{sv}");
    // The voided one is reversed at the institution.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while inst.hits("reversal").is_empty() {
        assert!(std::time::Instant::now() < deadline, "PV was not voided");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let cfg = stack.config_file(&dir);
    let today = ipg_switch::clock::Clock::new(wib())
        .now()
        .date_naive()
        .to_string();
    let run = |args: &[&str]| {
        let out = ipg_bin(&cfg, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let json_of = |text: &str| -> Value { serde_json::from_str(text).unwrap() };
    let sch = json_of(&run(&[
        "statement",
        "--date",
        &today,
        "--institution",
        INST,
        "--format",
        "json",
    ]));
    let lines: Vec<(String, String, String, u64)> = sch["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["reference"].as_str().unwrap().to_owned(),
                l["type"].as_str().unwrap().to_owned(),
                l["status"].as_str().unwrap().to_owned(),
                l["amount"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            ("P1".into(), "payment".into(), "paid".into(), 10_000),
            ("P2".into(), "payment".into(), "paid".into(), 20_000),
            ("P3".into(), "payment".into(), "reversed".into(), 30_000),
            ("P3".into(), "reversal".into(), "reversed".into(), 30_000),
            ("P4".into(), "payment".into(), "paid".into(), 40_000),
            ("P5".into(), "payment".into(), "paid".into(), 50_000),
        ]
    );
    assert_eq!(
        sch["totals"]["payment"],
        json!({"count": 5, "amount": 150_000})
    );
    assert_eq!(
        sch["totals"]["reversal"],
        json!({"count": 1, "amount": 30_000})
    );
    assert_eq!(
        sch["totals_by_counterparty"]["other_bank"]["payment"]["amount"],
        20_000
    );
    assert_eq!(sch["closing_balance"], 120_000);

    let chan = json_of(&run(&[
        "statement",
        "--date",
        &today,
        "--channel",
        CHANNEL,
        "--format",
        "json",
    ]));
    let forwarded: Vec<(String, String)> = chan["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["type"] == "forwarded_payment")
        .map(|l| {
            (
                l["reference"].as_str().unwrap().to_owned(),
                l["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut forwarded = forwarded;
    forwarded.sort();
    assert_eq!(
        forwarded,
        [
            ("PD".into(), "in_doubt".into()),
            ("PV".into(), "reversed".into())
        ],
        "{chan}"
    );

    // The same bytes twice, and after FLUSHALL + restore.
    let csv = run(&["statement", "--date", &today, "--institution", INST]);
    assert_eq!(
        run(&["statement", "--date", &today, "--institution", INST]),
        csv
    );
    let client = redis::Client::open(stack.settings.redis.url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    run(&["restore"]);
    assert_eq!(
        run(&["statement", "--date", &today, "--institution", INST]),
        csv
    );
    let hash = csv.lines().last().unwrap().trim_start_matches("# sha256,");
    assert_eq!(
        hash,
        sch["sha256"].as_str().unwrap(),
        "one hash for CSV and JSON"
    );

    // Reconcile the bank's own file of the channel's debits.
    let write = |name: &str, rows: &[(&str, &str, u64)]| {
        let path = dir.path().join(name);
        let mut text = String::from("reference,va_number,amount,time\n");
        for (r, v, a) in rows {
            text += &format!("{r},{v},{a},{today}T10:00:00+07:00\n");
        }
        std::fs::write(&path, text).unwrap();
        path
    };
    let reconcile = |file: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "reconcile",
            "--channel",
            CHANNEL,
            "--date",
            &today,
            "--file",
        ];
        args.push(file.to_str().unwrap());
        args.extend(extra);
        ipg_bin(&cfg, &args)
    };
    let clean = write(
        "clean.csv",
        &[
            ("P1", &v1, 10_000),
            ("P4", &v2, 40_000),
            ("P5", &v2, 50_000),
            ("PD", &pd, 40_000),
        ],
    );
    let out = reconcile(&clean, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let seeded = write(
        "seeded.csv",
        &[
            ("P1", &v1, 10_000),
            ("P5", &v2, 49_000),
            ("GHOST", &v2, 5_000),
            ("PD", &pd, 40_000),
        ],
    );
    let out = reconcile(&seeded, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let refs = |k: &str| -> Vec<String> {
        r[k].as_array()
            .unwrap()
            .iter()
            .map(|x| {
                x.get("reference")
                    .or_else(|| x.get(0).and_then(|b| b.get("reference")))
                    .and_then(Value::as_str)
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(refs("matched"), ["P1", "PD"]);
    assert_eq!(refs("only_at_bank"), ["GHOST"]);
    assert_eq!(refs("only_at_switch"), ["P4"]);
    assert_eq!(refs("mismatched"), ["P5"]);
    let table = reconcile(&seeded, &[]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.starts_with("matched 2, only at the bank 1, only at the switch 1, mismatched 1"),
        "{text}"
    );
}

/// The fenced block after `marker` in docs/statements.md.
fn doc_block(marker: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/statements.md"))
        .unwrap();
    let at = doc
        .find(&format!("<!-- example: {marker} -->"))
        .unwrap_or_else(|| panic!("docs/statements.md has no {marker} example"));
    let rest = &doc[at..];
    let start = rest.find("```").unwrap();
    let start = start + rest[start..].find('\n').unwrap() + 1;
    let end = start + rest[start..].find("```").unwrap();
    rest[start..end].to_owned()
}

#[test]
fn the_documented_statement_and_reconciliation_are_what_the_code_prints() {
    let events = two_days();
    let day = Day::new(NaiveDate::from_ymd_opt(2026, 11, 29).unwrap(), wib(), 0);
    let s = Statement::build(&events, &Scope::Institution(INST.into()), &day, wib());
    let csv = s.to_csv();
    let documented = doc_block("statement-csv");
    assert_eq!(
        documented, csv,
        "docs/statements.md shows another statement:\n{csv}"
    );

    let bank = "reference,va_number,amount,time\n\
                MIDNIGHT,8574991234567890,50000,2026-11-29T00:00:03+07:00\n\
                GHOST,8574991234567890,25000,2026-11-29T10:00:00+07:00\n";
    assert_eq!(doc_block("bank-csv"), bank);
    let settings = ipg_switch::settings::Settings::from_toml(&[""]).unwrap();
    let rows = ipg_switch::statement::read_bank_csv(bank.as_bytes(), &settings.reconcile).unwrap();
    let ch = Statement::build(&events, &Scope::Channel(CHANNEL.into()), &day, wib());
    let r = ipg_switch::statement::Reconciliation::of(&rows, &ch);
    let table = r.table();
    assert_eq!(
        doc_block("reconcile-table"),
        table,
        "docs/statements.md shows another table:\n{table}"
    );
    assert!(!r.clean());
}

/// Issue 22 item 15: sums of money never wrap. 18,496 payments of 999,999,999,999,999 on one
/// channel in a day add up past 2^64; the totals (and the CSV that prints them) are exact.
#[test]
fn totals_past_two_to_the_64_are_exact() {
    const MAX: u64 = 999_999_999_999_999;
    const N: u64 = 18_496;
    let events: Vec<Event> = (1..=N)
        .map(|i| {
            stage(
                &format!("BIG{i}"),
                CHANNEL,
                MAX,
                "2026-11-29T10:00:00+07:00",
                None,
                i,
                0,
            )
        })
        .collect();
    let day = Day::new(NaiveDate::from_ymd_opt(2026, 11, 29).unwrap(), wib(), 0);
    let exact = u128::from(MAX) * u128::from(N);
    assert!(exact > u128::from(u64::MAX), "the edge is past 2^64");
    for scope in [
        Scope::Channel(CHANNEL.into()),
        Scope::Institution(INST.into()),
    ] {
        let s = Statement::build(&events, &scope, &day, wib());
        assert_eq!(s.totals["payment"].count, N);
        assert_eq!(s.totals["payment"].amount, exact);
        let party = s.totals_by_counterparty.values().next().unwrap();
        assert_eq!(party["payment"].amount, exact);
        assert!(s
            .to_csv()
            .contains(&format!("# total,payment,{N},{exact}\n")));
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            json.contains(&format!("\"amount\":{exact}")),
            "JSON keeps it exact"
        );
    }
}

/// Issue 22 item 14: reconciliation matches multisets. A bank file (BOM, CRLF) listing one
/// debit twice is not clean: the second debit is `only_at_bank`, whatever its amount.
#[test]
fn a_debit_listed_twice_at_the_bank_is_a_finding() {
    let events = two_days();
    let day = Day::new(NaiveDate::from_ymd_opt(2026, 11, 29).unwrap(), wib(), 0);
    let ch = Statement::build(&events, &Scope::Channel(CHANNEL.into()), &day, wib());
    let settings = ipg_switch::settings::Settings::from_toml(&[""]).unwrap();
    let reconcile = |bank: &str| {
        let rows =
            ipg_switch::statement::read_bank_csv(bank.as_bytes(), &settings.reconcile).unwrap();
        ipg_switch::statement::Reconciliation::of(&rows, &ch)
    };
    let row =
        |amount: u64| format!("MIDNIGHT,8574991234567890,{amount},2026-11-29T00:00:03+07:00\r\n");
    let head = "\u{feff}reference,va_number,amount,time\r\n";

    // Once: clean (the BOM and CRLF are read as they are meant).
    let once = reconcile(&format!("{head}{}", row(50_000)));
    assert!(once.clean(), "{}", once.table());

    // Twice, the same amount: one matched, the second debit only at the bank.
    let twice = reconcile(&format!("{head}{}{}", row(50_000), row(50_000)));
    assert!(!twice.clean());
    assert_eq!(twice.matched.len(), 1);
    assert_eq!(twice.only_at_bank.len(), 1);
    assert_eq!(twice.only_at_bank[0].reference, "MIDNIGHT");

    // Twice with different amounts, the wrong one first: the right one still matches.
    let other = reconcile(&format!("{head}{}{}", row(1), row(50_000)));
    assert_eq!(other.matched.len(), 1);
    assert_eq!(other.only_at_bank.len(), 1);
    assert_eq!(other.only_at_bank[0].amount, 1);

    // Twice, neither right: one mismatched, one only at the bank; the switch's payment is
    // paired once.
    let wrong = reconcile(&format!("{head}{}{}", row(1), row(2)));
    assert_eq!(wrong.mismatched.len(), 1);
    assert_eq!(wrong.only_at_bank.len(), 1);
    assert!(wrong.only_at_switch.is_empty());
}

/// Issue 22 item 13: a text cell never becomes a spreadsheet formula. A reference taken
/// before the intake rule (`=1+2`, `+1+2`, `-1+2`, `@SUM(1,1)`, `=HYPERLINK(...)`) is
/// written with a leading `'` in the CSV (and the SHA-256 covers what is written); the
/// JSON keeps the reference as it is.
#[test]
fn statement_cells_are_never_formulas() {
    let refs = [
        "=1+2",
        "+1+2",
        "-1+2",
        "@SUM(1,1)",
        "=HYPERLINK(\"http://x\",\"y\")",
    ];
    let events: Vec<Event> = refs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            stage(
                r,
                CHANNEL,
                1_000,
                "2026-11-29T10:00:00+07:00",
                None,
                i as u64 + 1,
                0,
            )
        })
        .collect();
    let day = Day::new(NaiveDate::from_ymd_opt(2026, 11, 29).unwrap(), wib(), 0);
    let s = Statement::build(&events, &Scope::Channel(CHANNEL.into()), &day, wib());
    let body = s.csv_lines();
    let mut rows = csv::ReaderBuilder::new().from_reader(body.as_bytes());
    let cells: Vec<String> = rows
        .records()
        .map(|r| r.unwrap().get(2).unwrap().to_owned())
        .collect();
    assert_eq!(cells.len(), refs.len());
    for c in &cells {
        assert!(c.starts_with('\''), "{c} would be a formula");
        assert!(refs.contains(&&c[1..]));
    }
    assert!(s.lines.iter().all(|l| refs.contains(&l.reference.as_str())));
}

/// `e` as the same event of institution `code` (its ids and documents renamed).
fn of_institution(e: &Event, code: &str) -> Event {
    let text = serde_json::to_string(e).unwrap().replace(INST, code);
    serde_json::from_str(&text).unwrap()
}

/// Issue 24: a day's statement read by time (`journal::window`) is the statement the whole
/// journal gives (the oracle, `Statement::build` over every event), at the day's edges
/// (23:59:59 and 00:00:00, a cut-off hour), for an event produced late within the margin,
/// a duplicate event, a quiet day whose closing balance lies days back behind other
/// institutions' events, and other institutions in the same partition and in another;
/// and a day's read fetches far fewer records than the journal holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_days_read_of_the_journal_is_the_whole_journals_statement() {
    use ipg_switch::statement::Source;
    use ipg_switch::store::journal::partition_of;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let probe = settings_for("x", "redis://x", "");
    let topic = probe.topics.journal.clone();
    let broker = ipg_switch::kafka::EmbeddedBroker::start(&[&topic], PARTITIONS).unwrap();
    let settings = settings_for(
        &broker.bootstrap,
        "redis://x",
        "[journal]\ntime_margin_ms = 600000\nbatch = 7\n",
    );
    let journal = settings.journal(&broker.bootstrap);
    let mine = partition_of(INST, PARTITIONS);
    let code = |same: bool| {
        (0..100)
            .map(|i| format!("X{i:02}"))
            .find(|c| (partition_of(c, PARTITIONS) == mine) == same)
            .unwrap()
    };
    let (neighbour, stranger) = (code(true), code(false));

    // (Kafka timestamp, event) in produce order. SCH01's sequence grows with time.
    let at = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .timestamp_millis()
    };
    let mut produced: Vec<(i64, Event)> = Vec::new();
    let mut seq = 0u64;
    let mut balance = 0i64;
    for d in 1..=5 {
        for h in [8, 12, 16] {
            seq += 1;
            balance += 1_000;
            let t = format!("2026-11-{d:02}T{h:02}:00:00+07:00");
            let e = stage(
                &format!("OLD{d}-{h}"),
                CHANNEL,
                1_000,
                &t,
                None,
                seq,
                balance,
            );
            produced.push((at(&t), e));
        }
    }
    // Others' events every hour from the 5th to the 30th, in SCH01's partition and not.
    for d in 5..=30 {
        for h in 0..24 {
            let t = format!("2026-11-{d:02}T{h:02}:30:00+07:00");
            let e = stage(&format!("N{d}-{h}"), CHANNEL, 10, &t, None, 1, 10);
            produced.push((at(&t), of_institution(&e, &neighbour)));
            produced.push((at(&t), of_institution(&e, &stranger)));
        }
    }
    // The two days of the test above, after SCH01's old payments.
    let days = two_days();
    for e in &days {
        let mut e = e.clone();
        if let Some(l) = e.ledger.as_mut() {
            l.seq += seq;
            l.balance_after += balance;
        }
        let t = at(&e.time);
        produced.push((t, e));
    }
    // Paid at 23:59:30 on the 28th, produced 5.5 minutes late (an append retried): within
    // the 10-minute margin. And one event journaled twice.
    // (Its ledger entry left out: this test's sequence of SCH01 is already dealt.)
    let mut late = stage(
        "LATEPROD",
        CHANNEL,
        3_000,
        "2026-11-28T23:59:30+07:00",
        None,
        0,
        0,
    );
    late.ledger = None;
    produced.push((at("2026-11-29T00:05:00+07:00"), late));
    produced.push((at("2026-11-29T10:00:00+07:00"), days[2].clone()));
    // An old payment of SCH01 journaled again, stamped now (a check-status or a repeat
    // does that), on the quiet 20th and on the 28th: its old ledger entry must not pass
    // for the institution's last.
    let old = produced[1].1.clone();
    produced.push((at("2026-11-20T12:00:00+07:00"), old.clone()));
    produced.push((at("2026-11-28T12:00:00+07:00"), old));
    produced.sort_by_key(|(t, _)| *t);

    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .unwrap();
    for (t, e) in &produced {
        let body = serde_json::to_vec(e).unwrap();
        producer
            .send(
                FutureRecord::to(&topic)
                    .partition(partition_of(&e.institution, PARTITIONS))
                    .key(e.institution.as_bytes())
                    .payload(&body)
                    .timestamp(*t),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }
    let all: Vec<Event> = produced.iter().map(|(_, e)| e.clone()).collect();
    let in_partition = produced
        .iter()
        .filter(|(_, e)| partition_of(&e.institution, PARTITIONS) == mine)
        .count() as u64;

    let date = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
    let scopes = [
        Scope::Institution(INST.into()),
        Scope::Channel(CHANNEL.into()),
        Scope::Channel("other_bank".into()),
    ];
    for d in [
        "2026-11-03",
        "2026-11-20",
        "2026-11-28",
        "2026-11-29",
        "2026-12-02",
    ] {
        for (scope, cutoff) in scopes.iter().map(|s| (s, 0)).chain([(&scopes[0], 8)]) {
            let day = Day::new(date(d), wib(), cutoff);
            let oracle = Statement::build(&all, scope, &day, wib());
            let read = journal.day(scope, &day).await.unwrap();
            let got = Statement::of_day(&read, scope, &day, wib());
            assert_eq!(
                (got.to_csv(), got.closing_balance),
                (oracle.to_csv(), oracle.closing_balance),
                "{scope:?} {d} cut-off {cutoff}: the day's read differs from the whole journal's"
            );
            if let (Scope::Institution(_), "2026-11-20") = (scope, d) {
                // A quiet day: its closing balance is SCH01's last before it, 15 days
                // back behind hundreds of its neighbour's events; still read in steps.
                assert_eq!(got.closing_balance, Some(15_000));
                assert!(got.lines.is_empty());
            }
            if matches!(scope, Scope::Institution(_)) && d != "2026-11-20" {
                assert!(
                    read.scanned < in_partition / 4,
                    "{d}: {} records read for a day of a partition of {in_partition}",
                    read.scanned
                );
            }
        }
    }
    let d29 = Statement::of_day(
        &journal
            .day(&scopes[0], &Day::new(date("2026-11-28"), wib(), 0))
            .await
            .unwrap(),
        &scopes[0],
        &Day::new(date("2026-11-28"), wib(), 0),
        wib(),
    );
    assert!(
        d29.lines.iter().any(|l| l.reference == "LATEPROD"),
        "an event produced late within the margin is in its day"
    );
}
