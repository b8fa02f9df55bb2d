//! `cargo bench --bench history`: what a day's statement costs as the journal grows (issue
//! 24). A Kafka-protocol broker (librdkafka's mock cluster, over TCP) gets journal events
//! of 20 institutions, a payment each every few minutes over a month, in three bursts that
//! bring the journal to 2,000, 10,000 and 40,000 events (fresh topic, 16 partitions: the
//! mock keeps about 5 MiB per partition). After each burst it prints, for one
//! institution: the statement of a day with no payments inside the history, of the last
//! day (full), of a day after the history, and of a channel's last day, each read by time
//! (`statement::Source::day`): wall time and records read; and the old whole-journal read
//! (`Journal::scan`) for comparison; then the memory 20 day reads at once hold, and
//! what the old read (every event collected) adds. Asserts nothing; three runs of each read.

mod events;

use std::time::{Duration, Instant};

use chrono::{FixedOffset, NaiveDate, TimeZone};
use ipg_switch::kafka::EmbeddedBroker;
use ipg_switch::settings::Settings;
use ipg_switch::statement::{Day, Scope, Source, Statement};
use ipg_switch::store::journal::partition_of;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

const PARTITIONS: i32 = 16;
const INSTITUTIONS: usize = 20;
const SIZES: [usize; 3] = [2_000, 10_000, 40_000];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let wib = FixedOffset::east_opt(7 * 3600).unwrap();
    let topic = "ipg.journal.history-bench";
    let broker = EmbeddedBroker::start(&[topic], PARTITIONS).unwrap();
    let settings = Settings::from_toml(&[&format!(
        "[kafka]\nbootstrap_servers = \"{b}\"\ngroup_id = \"history-bench\"\n\
         topic_partitions = {PARTITIONS}\n[kafka.properties]\n\"fetch.wait.max.ms\" = \"10\"\n\
         [topics]\njournal = \"{topic}\"\n[metrics]\nlisten = \"\"\n[api]\nlisten = \"\"\n",
        b = broker.bootstrap
    )])
    .unwrap();
    let journal = settings.journal(&broker.bootstrap);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let codes: Vec<String> = (0..INSTITUTIONS).map(|i| format!("INST{i:02}")).collect();
    let mut seqs = vec![0u64; INSTITUTIONS];
    // 40,000 payments spread from Nov 1 to Dec 5, one every ~75 s; none on Nov 15.
    let start = wib.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let step_ms = 35 * 24 * 3600 * 1000 / SIZES[2] as i64;
    let mut made = 0usize;
    let mut last = start.date_naive();
    let date = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
    for size in SIZES {
        let t = Instant::now();
        let mut sends = Vec::new();
        while made < size {
            let at = start + chrono::Duration::milliseconds(made as i64 * step_ms);
            made += 1;
            if at.date_naive() == date("2026-11-15") {
                continue;
            }
            last = at.date_naive();
            let k = made % INSTITUTIONS;
            seqs[k] += 1;
            let stamp = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
            let body = events::payment(
                &codes[k],
                made,
                10_000,
                seqs[k],
                seqs[k] as i64 * 10_000,
                &stamp,
            );
            let p = partition_of(&codes[k], PARTITIONS);
            let producer = producer.clone();
            let ms = at.timestamp_millis();
            sends.push(async move {
                producer
                    .send(
                        FutureRecord::to(topic)
                            .partition(p)
                            .key(&[] as &[u8])
                            .payload(&body)
                            .timestamp(ms),
                        Duration::from_secs(30),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| e)
            });
            if sends.len() >= 500 {
                for r in futures::future::join_all(sends.drain(..)).await {
                    r.unwrap();
                }
            }
        }
        for r in futures::future::join_all(sends.drain(..)).await {
            r.unwrap();
        }
        println!(
            "journal at {made} events ({:.1} s to produce the burst); last day {last}",
            t.elapsed().as_secs_f64()
        );
        let inst = Scope::Institution(codes[1].clone());
        let reads = [
            (
                "empty day inside the history (2026-11-15)",
                inst.clone(),
                date("2026-11-15"),
            ),
            ("last day, one institution", inst.clone(), last),
            (
                "a day after the history",
                inst.clone(),
                last + chrono::Days::new(10),
            ),
            (
                "last day, a channel",
                Scope::Channel("bank_syariah".into()),
                last,
            ),
        ];
        for (what, scope, d) in &reads {
            let day = Day::new(*d, wib, 0);
            let mut times = Vec::new();
            let mut shown = (0u64, 0usize);
            for _ in 0..3 {
                let t = Instant::now();
                let read = journal.day(scope, &day).await.unwrap();
                let s = Statement::of_day(&read, scope, &day, wib);
                times.push(t.elapsed().as_secs_f64() * 1e3);
                shown = (read.scanned, s.lines.len());
            }
            println!(
                "  {what}: {:.0} / {:.0} / {:.0} ms, {} records read, {} lines",
                times[0], times[1], times[2], shown.0, shown.1
            );
        }
        let t = Instant::now();
        let mut all = 0u64;
        journal
            .scan(&mut ipg_switch::journal::Quiet, &mut |_| all += 1)
            .await
            .unwrap();
        println!(
            "  the whole journal read once (the old statement's read): {:.0} ms, {all} records",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    // Memory: 20 day reads at once, then the old read (every event collected), measured as
    // the growth of the process's resident memory (VmRSS) while their results are held
    // (its peak is already set by the bursts above).
    let last_day = Day::new(last, wib, 0);
    let scope = Scope::Institution(codes[1].clone());
    let before = rss_kb();
    let t = Instant::now();
    let reads = (0..20).map(|_| journal.day(&scope, &last_day));
    let got = futures::future::join_all(reads).await;
    assert!(got.iter().all(Result::is_ok));
    println!(
        "20 day reads at once: {:.0} ms, resident memory +{} kB with their {} events held",
        t.elapsed().as_secs_f64() * 1e3,
        rss_kb().saturating_sub(before),
        got.iter().flatten().map(|r| r.events.len()).sum::<usize>()
    );
    drop(got);
    let before = rss_kb();
    let mut events = Vec::new();
    journal
        .scan(&mut ipg_switch::journal::Quiet, &mut |r| {
            events.push(r.event.clone())
        })
        .await
        .unwrap();
    println!(
        "the old read of one statement (every event collected, {}): resident memory +{} kB",
        events.len(),
        rss_kb().saturating_sub(before)
    );
}

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
