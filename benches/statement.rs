//! `cargo bench --bench statement`: how long a statement of 100,000 hosted payments takes
//! once its journal events are read (build, CSV, SHA-256), and the same from JSON bytes as
//! the journal holds them (parse included). Prints the numbers; asserts nothing.

mod events;

use std::time::Instant;

use chrono::{Duration, FixedOffset, NaiveDate, TimeZone};
use ipg_switch::statement::{Day, Scope, Statement};
use ipg_switch::store::journal::Event;

const N: usize = 100_000;

fn main() {
    let wib = FixedOffset::east_opt(7 * 3600).unwrap();
    let start = wib.with_ymd_and_hms(2026, 11, 29, 0, 0, 0).unwrap();
    let mut raw: Vec<Vec<u8>> = Vec::with_capacity(N);
    let mut balance: i64 = 0;
    for i in 0..N {
        let at = (start + Duration::milliseconds((i as i64) * 800))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
        let amount = 10_000 + (i as u64 % 90) * 1_000;
        balance += amount as i64;
        raw.push(events::payment(
            "SCH01",
            i,
            amount,
            i as u64 + 1,
            balance,
            &at,
        ));
    }
    let bytes: usize = raw.iter().map(Vec::len).sum();
    let day = Day::new(NaiveDate::from_ymd_opt(2026, 11, 29).unwrap(), wib, 0);
    let scope = Scope::Institution("SCH01".into());
    for run in 1..=3 {
        let t = Instant::now();
        let events: Vec<Event> = raw
            .iter()
            .map(|r| serde_json::from_slice(r).unwrap())
            .collect();
        let parsed = t.elapsed();
        let t = Instant::now();
        let s = Statement::build(&events, &scope, &day, wib);
        let csv = s.to_csv();
        let built = t.elapsed();
        println!(
            "run {run}: {N} payments ({:.1} MB of events): parse {:.2} s, build + CSV + SHA-256 {:.2} s; {} lines, {} bytes of CSV, sha256 {}",
            bytes as f64 / 1e6,
            parsed.as_secs_f64(),
            built.as_secs_f64(),
            s.lines.len(),
            csv.len(),
            &s.sha256[..16]
        );
    }
}
