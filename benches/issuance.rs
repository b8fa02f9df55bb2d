//! `cargo bench --bench issuance`: bulk issuance of 10,000 bills (issue 28, docs/api.md
//! "Bulk issuance") through the switch's own path, as `ipg-switch bill import` runs it: a
//! CSV read, every row issued through `Hosted::issue` (16 at a time, each created bill
//! journaled), then the same file again (nothing created), and `verify`. Prints the time,
//! rows/s, the process's memory growth and the journal's events; asserts the counts.
//!
//! One process holds everything, as the other benches: the embedded broker, a private
//! `redis-server`, the switch. `BENCH_ROWS` changes the row count (default 10,000).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use ipg_switch::issuance;

use common::{Redis, INST, PARTITIONS, PREFIX};

/// The process's resident memory (kB, Linux `VmRSS`), 0 elsewhere.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rows: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if std::env::args().any(|a| a == "--bench") {
            10_000
        } else {
            200
        });
    let probe = common::settings_for("x", "redis://x", "");
    let topics = probe.all_topics();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let broker = ipg_switch::kafka::EmbeddedBroker::start(&topics, PARTITIONS).expect("broker");
    let redis = Redis::start();
    let mut settings = common::settings_for(
        &broker.bootstrap,
        &redis.url(),
        "[log]\nlevel = \"error\"\n",
    );
    // One institution's 10,000 bill events go to one journal partition, more than the
    // embedded (mock) broker's ~5 MiB per partition uncompressed: gzip, as the demo does.
    settings
        .kafka
        .properties
        .insert("compression.type".into(), "gzip".into());
    let sw = ipg_switch::build_switch(&settings).expect("switch");
    let inst = sw.routing.by_code(INST).expect("institution").clone();

    let mut csv =
        String::from("va_number,prefix,type,invoice_number,name,customer_name,total_amount\n");
    for i in 0..rows {
        csv.push_str(&format!(
            "{n:010},{PREFIX},close,SPP/2026/07/{n},SPP Juli 2026,Siswa {i},350000\n",
            n = 3_000_000_000u64 + i as u64
        ));
    }
    println!(
        "bulk issuance bench: {rows} rows ({:.1} MB of CSV), {} CPUs",
        csv.len() as f64 / 1e6,
        std::thread::available_parallelism().map_or(0, |c| c.get())
    );
    println!();
    println!("| run | rows | created | existing | refused | seconds | rows/s | RSS growth MB |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut first = Vec::new();
    for run in ["first upload", "the same upload again"] {
        let before = rss_kb();
        let t = Instant::now();
        let read = issuance::read_csv(csv.as_bytes(), INST).expect("the CSV reads");
        let results = issuance::issue_all(&sw.hosted, &inst, read, false, || {}).await;
        let secs = t.elapsed().as_secs_f64();
        let (created, existing, _, refused) = issuance::counts(&results);
        println!(
            "| {run} | {} | {created} | {existing} | {refused} | {secs:.2} | {:.0} | {:.1} |",
            results.len(),
            results.len() as f64 / secs,
            rss_kb().saturating_sub(before) as f64 / 1024.0
        );
        assert_eq!(refused, 0, "{:?}", results.iter().find(|r| !r.ok()));
        if first.is_empty() {
            assert_eq!(created, rows);
            first = results;
        } else {
            assert_eq!((created, existing), (0, rows));
            assert!(
                first.iter().zip(&results).all(|(a, b)| a.hash == b.hash),
                "the same bills, row by row"
            );
        }
    }
    let journal = settings.journal(&broker.bootstrap);
    let t = Instant::now();
    let verdict = ipg_switch::journal::verify::verify(
        &journal,
        &sw.hosted.store,
        &mut ipg_switch::journal::Quiet,
    )
    .await
    .expect("verify");
    println!();
    println!(
        "verify: {} journal events read in {:.2} s, agrees: {}",
        verdict.events,
        t.elapsed().as_secs_f64(),
        verdict.agrees()
    );
    assert!(verdict.agrees(), "{}", verdict.table());
    drop(broker);
}
