//! HTTP capacity bench: requests per second and latency of the Payment Channel API
//! (`POST /api/v2/ch/inquiry`, `/payment`) and of SNAP BI's (`/snap/v1.0/transfer-va/
//! inquiry`, `/payment`, docs/snap.md) over real HTTP/1.1 keep-alive connections, in the
//! same run on bills of their own; and the cost of verifying one request's signature
//! (IPG's HMAC-SHA256 over the body, SNAP's string to sign and HMAC-SHA512).
//!
//! `cargo bench --bench http`. One process holds everything, as in `benches/capacity.rs`:
//! the embedded broker, a private `redis-server`, the daemon (`ipg_switch::run`, HTTP API on
//! a free port, webhook dispatcher off so only the switch is measured; webhook jobs are
//! still published to Kafka before each payment is answered) and the client.
//!
//! Runs: a burst of `BENCH_N` signed inquiries (one per hosted bill) with
//! `BENCH_HTTP_CONCURRENCY` requests in flight (default 64, one connection each), the same
//! for payments of the full amount, the same two bursts over SNAP (a token first, then
//! signed calls, one X-EXTERNAL-ID each), then `BENCH_PROBE` requests one at a time. req/s =
//! requests / (first send → last answer); latency = send → whole answer read.
//! Without `--bench` (as under `cargo test --all-targets`) it is a small smoke run.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use ipg_switch::signature;
use serde_json::{json, Value};

use common::{Daemon, Redis, CHANNEL, CHANNEL_KEY, INST, PARTITIONS, PREFIX};

const BILL_TOTAL: u64 = 100_000;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Stats {
    label: String,
    sent: usize,
    not_ok: usize,
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// One signed channel call; `(latency ms, rc)`.
async fn call(http: &reqwest::Client, url: &str, body: Vec<u8>) -> (f64, String) {
    let sig = signature::sign(CHANNEL_KEY.as_bytes(), &body);
    let t = Instant::now();
    let rc = match http
        .post(url)
        .header("X-Channel", CHANNEL)
        .header("Signature", sig)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => match r.json::<Value>().await {
            Ok(v) => v["rc"].as_str().unwrap_or("?").to_owned(),
            Err(e) => format!("bad body: {e}"),
        },
        Err(e) => format!("http error: {e}"),
    };
    (t.elapsed().as_secs_f64() * 1e3, rc)
}

async fn run(
    label: &str,
    http: &reqwest::Client,
    url: &str,
    bodies: Vec<Vec<u8>>,
    in_flight: usize,
) -> Stats {
    let sent = bodies.len();
    let started = Instant::now();
    let results: Vec<(f64, String)> = futures::stream::iter(bodies)
        .map(|b| call(http, url, b))
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let wall = started.elapsed().as_secs_f64();
    let mut lat: Vec<f64> = results.iter().map(|r| r.0).collect();
    lat.sort_by(f64::total_cmp);
    let not_ok = results.iter().filter(|r| r.1 != "SUCCESS").count();
    if let Some(r) = results.iter().find(|r| r.1 != "SUCCESS") {
        eprintln!("  {label}: first not-ok answer: {}", r.1);
    }
    Stats {
        label: label.to_owned(),
        sent,
        not_ok,
        per_s: sent as f64 / wall,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
    }
}

/// A SNAP burst: `bodies` to `service` with `in_flight` at once, each under its own
/// X-EXTERNAL-ID; a `200..` response code counts as SUCCESS.
async fn run_snap(
    label: &str,
    bank: &common::snap::Bank,
    service: &str,
    bodies: Vec<Value>,
    in_flight: usize,
) -> Stats {
    let sent = bodies.len();
    let started = Instant::now();
    let results: Vec<(f64, String)> = futures::stream::iter(bodies.into_iter().enumerate())
        .map(|(i, b)| async move {
            let t = Instant::now();
            let xid = format!("B{service}{i}");
            let (_, v) = bank.call(service, &xid, &b).await;
            let code = v["responseCode"].as_str().unwrap_or("?").to_owned();
            let rc = if code.starts_with("200") {
                "SUCCESS".to_owned()
            } else {
                code
            };
            (t.elapsed().as_secs_f64() * 1e3, rc)
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let wall = started.elapsed().as_secs_f64();
    let mut lat: Vec<f64> = results.iter().map(|r| r.0).collect();
    lat.sort_by(f64::total_cmp);
    let not_ok = results.iter().filter(|r| r.1 != "SUCCESS").count();
    if let Some(r) = results.iter().find(|r| r.1 != "SUCCESS") {
        eprintln!("  {label}: first not-ok answer: {}", r.1);
    }
    Stats {
        label: label.to_owned(),
        sent,
        not_ok,
        per_s: sent as f64 / wall,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
    }
}

fn snap_identity(number: &str) -> Value {
    let psid = format!("  {PREFIX}");
    json!({"partnerServiceId": psid, "customerNo": number,
        "virtualAccountNo": format!("{psid}{number}")})
}

fn snap_inquiry(number: &str, i: usize) -> Value {
    let mut v = snap_identity(number);
    v["inquiryRequestId"] = format!("SI{i}").into();
    v
}

fn snap_payment(number: &str, i: usize) -> Value {
    let mut v = snap_identity(number);
    v["paymentRequestId"] = format!("SP{i}").into();
    v["paidAmount"] = json!({"value": format!("{BILL_TOTAL}.00"), "currency": "IDR"});
    v["virtualAccountName"] = "Ahmad".into();
    v
}

/// Microseconds to verify one request's signature: IPG's (hex HMAC-SHA256 of the body) and
/// SNAP's (minify, SHA-256 of the body, the string to sign, Base64 HMAC-SHA512), over a
/// payment body of each dialect, `rounds` times.
fn signature_cost(rounds: usize) -> (f64, f64) {
    use ipg_switch::signature::snap::{string_to_sign, Hmac512};
    let ipg_body = payment("1000000000", 0);
    let ipg_sig = signature::sign(CHANNEL_KEY.as_bytes(), &ipg_body);
    let verifier = signature::Verifier::new(CHANNEL_KEY.as_bytes());
    let t = Instant::now();
    for _ in 0..rounds {
        assert!(verifier.verify(std::hint::black_box(&ipg_body), &ipg_sig));
    }
    let ipg = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let snap_body = serde_json::to_vec(&snap_payment("1000000000", 0)).unwrap_or_default();
    let (path, token, ts) = (
        "/snap/v1.0/transfer-va/payment",
        "t".repeat(64),
        "2026-01-10T10:00:00+07:00",
    );
    let mac = Hmac512::new(b"snap-bench-secret");
    let sig = mac.sign(&string_to_sign("POST", path, &token, &snap_body, ts));
    let t = Instant::now();
    for _ in 0..rounds {
        let s = string_to_sign("POST", path, &token, std::hint::black_box(&snap_body), ts);
        assert!(mac.verify(&s, &sig));
    }
    let snap = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    (ipg, snap)
}

fn inquiry(number: &str, i: usize) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"va_number": format!("{PREFIX}{number}"), "ref_id": format!("HI{i}"),
        "terminal_id": "atm", "transaction_date": "2026-01-10 10:00:00"}),
    )
    .unwrap_or_default()
}

fn payment(number: &str, i: usize) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"va_number": format!("{PREFIX}{number}"), "ref_id": format!("HP{i}"),
        "amount": BILL_TOTAL.to_string(), "terminal_id": "atm",
        "transaction_date": "2026-01-10 10:00:00", "customer_name": "Ahmad"}),
    )
    .unwrap_or_default()
}

async fn bench(n: usize, probe: usize, in_flight: usize) -> Result<(), String> {
    let probe_settings = common::settings_for("x", "redis://x", "");
    let topics = probe_settings.all_topics();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let broker =
        ipg_switch::kafka::EmbeddedBroker::start(&topics, PARTITIONS).map_err(|e| e.to_string())?;
    let redis = Redis::start();
    let port = common::free_port();
    let extra = format!(
        "[api]\nlisten = \"127.0.0.1:{port}\"\nmax_body_bytes = 65536\n[kafka]\nlinger_ms = 1\n[log]\nlevel = \"error\"\n"
    );
    let mut settings = common::settings_for(&broker.bootstrap, &redis.url(), &extra);
    settings.webhook.enabled = false;
    settings
        .kafka
        .properties
        .insert("fetch.wait.max.ms".into(), "1".into());

    // The channel is a SNAP partner too (a key pair made by openssl for the bench).
    let (private, public) = common::snap::key_pair();
    let snap_secret = "snap-bench-secret";
    if let Some(c) = settings.channels.iter_mut().find(|c| c.code == CHANNEL) {
        c.snap = Some(ipg_switch::routing::config::SnapPartnerSettings {
            client_id: "BENCH-SNAP".into(),
            services: None,
            public_key_file: public.display().to_string(),
            client_secret_env: "UNUSED_IN_BENCH".into(),
            resolved_secret: Some(snap_secret.into()),
            resolved_public_key: std::fs::read_to_string(&public).ok(),
        });
    }
    let sw = ipg_switch::build_switch(&settings).map_err(|e| e.to_string())?;
    let inst = sw.routing.by_code(INST).ok_or("no institution")?.clone();
    let numbers: Vec<String> = (0..2 * n + probe)
        .map(|i| format!("{}", 1_000_000_000u64 + i as u64))
        .collect();
    let created = futures::stream::iter(numbers.iter())
        .map(|num| {
            let (sw, inst) = (&sw, &inst);
            async move {
                sw.hosted
                    .create_bill(inst, &common::bill_body(num, "close", BILL_TOTAL))
                    .await
            }
        })
        .buffer_unordered(64)
        .filter(|r| std::future::ready(r.is_ok()))
        .count()
        .await;
    if created != numbers.len() {
        return Err(format!("created {created} of {} bills", numbers.len()));
    }

    let daemon = Daemon::start(settings);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(in_flight)
        .build()
        .map_err(|e| e.to_string())?;
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            return Err("HTTP API did not come up".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (inq_url, pay_url) = (
        format!("{base}/api/v2/ch/inquiry"),
        format!("{base}/api/v2/ch/payment"),
    );
    println!(
        "ipg-switch HTTP bench: {n} requests per burst, {in_flight} in flight, {} CPUs",
        std::thread::available_parallelism().map_or(0, |c| c.get())
    );
    let burst = &numbers[..n];
    let snap_burst = &numbers[n..2 * n];
    let one = &numbers[2 * n..];
    let bank = common::snap::Bank::sign_in(&base, &private, "BENCH-SNAP", snap_secret).await;
    let rows = vec![
        run(
            "inquiries, burst",
            &http,
            &inq_url,
            burst
                .iter()
                .enumerate()
                .map(|(i, x)| inquiry(x, i))
                .collect(),
            in_flight,
        )
        .await,
        run(
            "payments, burst",
            &http,
            &pay_url,
            burst
                .iter()
                .enumerate()
                .map(|(i, x)| payment(x, i))
                .collect(),
            in_flight,
        )
        .await,
        run_snap(
            "SNAP inquiries (24), burst",
            &bank,
            "inquiry",
            snap_burst
                .iter()
                .enumerate()
                .map(|(i, x)| snap_inquiry(x, i))
                .collect(),
            in_flight,
        )
        .await,
        run_snap(
            "SNAP payments (25), burst",
            &bank,
            "payment",
            snap_burst
                .iter()
                .enumerate()
                .map(|(i, x)| snap_payment(x, i))
                .collect(),
            in_flight,
        )
        .await,
        run(
            "inquiries, one at a time",
            &http,
            &inq_url,
            one.iter()
                .enumerate()
                .map(|(i, x)| inquiry(x, n + i))
                .collect(),
            1,
        )
        .await,
        run(
            "payments, one at a time",
            &http,
            &pay_url,
            one.iter()
                .enumerate()
                .map(|(i, x)| payment(x, n + i))
                .collect(),
            1,
        )
        .await,
    ];
    println!();
    println!("| run | requests | not SUCCESS | req/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    for s in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} |",
            s.label, s.sent, s.not_ok, s.per_s, s.p50_ms, s.p99_ms
        );
    }
    let (ipg_us, snap_us) = signature_cost(20_000);
    println!();
    println!(
        "signature check per request (20,000 rounds, one core): IPG HMAC-SHA256 {ipg_us:.2} µs, \
         SNAP string to sign + HMAC-SHA512 {snap_us:.2} µs"
    );
    daemon.stop().await;
    drop(broker);
    let failed: usize = rows.iter().map(|s| s.not_ok).sum();
    if failed > 0 {
        return Err(format!("{failed} requests were not answered SUCCESS"));
    }
    Ok(())
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this too, without it:
    // then a small smoke run is enough.
    let full = std::env::args().any(|a| a == "--bench");
    let n = env_num("BENCH_N", if full { 10_000 } else { 200 });
    let probe = env_num("BENCH_PROBE", if full { 200 } else { 20 }).max(1);
    let in_flight = env_num("BENCH_HTTP_CONCURRENCY", 64).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(bench(n, probe, in_flight));
    rt.shutdown_timeout(Duration::from_secs(5));
    if let Err(e) = result {
        eprintln!("HTTP bench failed: {e}");
        std::process::exit(1);
    }
}
