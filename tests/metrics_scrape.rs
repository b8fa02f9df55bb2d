//! The operators' endpoint end to end: the real daemon with `[metrics] listen` on a free
//! port, a payment and a malformed message through Kafka, then `/metrics`, `/healthz` and
//! `/readyz` fetched over plain HTTP/1.1 as Prometheus and a kubelet would. The series that
//! deploy/prometheus/alerts.yml and the Grafana dashboard rely on must be there, and, when
//! promtool is installed (scripts/validate-deploy.sh installs it), the exposition must pass
//! `promtool check metrics`.
//!
//! The metrics recorder is process-global: this file holds one test so the values are this
//! test's own.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `GET path` on 127.0.0.1:port with `Connection: close`; returns (status, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port} for {path}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).expect("response is UTF-8");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header/body separator in {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

async fn get(port: u16, path: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || http_get(port, path))
        .await
        .unwrap()
}

/// One sample of the text exposition: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                (name.to_owned(), parse_labels(body))
            }
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

fn parse_labels(mut body: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !body.is_empty() {
        let (key, rest) = body.split_once("=\"").expect("label=\"value\"");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (_, '\\') => match chars.next().expect("escape").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        body = rest[end + 1..].trim_start_matches(',');
    }
    labels
}

/// The first sample named `name` whose labels include every `(key, value)` of `want`.
fn find<'a>(samples: &'a [Sample], name: &str, want: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        s.name == name
            && want
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

fn promtool() -> Option<String> {
    let bin = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())
        .map(|_| bin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_healthz_readyz_over_http() {
    let port = free_port();
    let stack = Stack::start_with(&format!(
        r#"
        [metrics]
        listen = "127.0.0.1:{port}"
        "#
    ))
    .await;
    let daemon = stack.daemon();

    // The process answers /healthz as soon as the listener is up.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics listener 127.0.0.1:{port} never came up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = get(port, "/healthz").await;
    assert_eq!(status, 200, "/healthz: {body}");

    stack
        .create_bill(bill_body("3000000001", "close", 150_000))
        .await;
    let v = va(PREFIX, "3000000001");
    stack
        .send(
            "payment",
            "metrics-pay-1",
            payment(&v, "ref-metrics-1", "150000"),
        )
        .await;
    stack.produce_raw(Some(&v), b"{not json", None).await;

    let a = stack.answer("metrics-pay-1").await;
    assert_eq!(a["rc"], "SUCCESS", "{a}");
    stack
        .dead_letters
        .wait_for("the malformed message's dead letter", 30, |m| {
            m.iter()
                .find(|r| {
                    r.headers.get("reason_code").map(String::as_str) == Some("malformed_json")
                })
                .cloned()
        })
        .await;

    // /readyz: Redis answers and the consumer holds partitions.
    let (status, body) = get(port, "/readyz").await;
    assert_eq!(status, 200, "/readyz: {body}");
    let ready: serde_json::Value = serde_json::from_str(&body).expect("/readyz is JSON");
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["redis"], true, "{ready}");
    assert_eq!(ready["assigned_partitions"], PARTITIONS, "{ready}");

    // Metrics are recorded once the broker acknowledged the answer, which may be a moment
    // after the test read it: poll until everything is there and nothing is in flight.
    let mut missing = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (samples, last) = loop {
        let (status, body) = get(port, "/metrics").await;
        assert_eq!(status, 200, "/metrics: {body}");
        let samples = parse_samples(&body);
        missing.clear();
        let wanted: &[(&str, &[(&str, &str)])] = &[
            (
                "ipg_messages_total",
                &[
                    ("type", "payment"),
                    ("rc", "SUCCESS"),
                    ("channel", CHANNEL),
                    ("institution", INST),
                ],
            ),
            ("ipg_dead_letters_total", &[("reason", "malformed_json")]),
            (
                "ipg_message_duration_seconds_bucket",
                &[("type", "payment")],
            ),
            ("ipg_message_duration_seconds_count", &[("type", "payment")]),
            ("ipg_stage_duration_seconds_bucket", &[("stage", "redis")]),
            ("ipg_stage_duration_seconds_bucket", &[("stage", "decode")]),
            ("ipg_webhook_jobs_total", &[("event", "payment.received")]),
            ("ipg_paid_rupiah_total", &[("institution", INST)]),
            ("ipg_inflight_messages", &[]),
            ("ipg_assigned_partitions", &[]),
            // Reported every 5 s for the assigned partitions.
            ("ipg_consumer_lag_messages", &[("partition", "0")]),
            ("ipg_producer_queue_messages", &[]),
        ];
        for (name, labels) in wanted {
            if find(&samples, name, labels).is_none() {
                missing.push(format!("{name}{labels:?}"));
            }
        }
        let settled = find(&samples, "ipg_inflight_messages", &[]).is_some_and(|s| s.value == 0.0);
        if missing.is_empty() && settled {
            break (samples, body);
        }
        assert!(
            Instant::now() < deadline,
            "after 30 s, missing series {missing:?} (or requests still in flight) in:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let value = |name: &str, labels: &[(&str, &str)]| find(&samples, name, labels).unwrap().value;
    assert_eq!(
        value(
            "ipg_messages_total",
            &[("type", "payment"), ("rc", "SUCCESS")]
        ),
        1.0
    );
    assert_eq!(
        value("ipg_dead_letters_total", &[("reason", "malformed_json")]),
        1.0
    );
    assert_eq!(
        value("ipg_paid_rupiah_total", &[("institution", INST)]),
        150_000.0
    );
    assert_eq!(
        value("ipg_webhook_jobs_total", &[("event", "payment.received")]),
        1.0
    );
    assert_eq!(value("ipg_assigned_partitions", &[]), f64::from(PARTITIONS));
    // Histograms: cumulative buckets up to +Inf, which equals _count.
    let inf = value(
        "ipg_message_duration_seconds_bucket",
        &[("type", "payment"), ("le", "+Inf")],
    );
    assert_eq!(inf, 1.0);
    assert_eq!(
        value("ipg_message_duration_seconds_count", &[("type", "payment")]),
        inf
    );
    assert!(
        samples
            .iter()
            .filter(|s| s.name == "ipg_stage_duration_seconds_bucket"
                && s.labels.get("stage").map(String::as_str) == Some("redis"))
            .all(|s| s.labels.contains_key("le")),
        "every redis stage bucket has an le label"
    );
    // The stages' series are made once per process (metrics::stage): they must record.
    for stage in ["decode", "redis", "journal", "publish"] {
        assert!(
            value("ipg_stage_duration_seconds_count", &[("stage", stage)]) >= 1.0,
            "stage {stage} recorded nothing"
        );
    }
    for (name, kind) in [
        ("ipg_messages_total", "counter"),
        ("ipg_dead_letters_total", "counter"),
        ("ipg_message_duration_seconds", "histogram"),
        ("ipg_stage_duration_seconds", "histogram"),
        ("ipg_inflight_messages", "gauge"),
    ] {
        assert!(
            last.contains(&format!("# TYPE {name} {kind}")),
            "no `# TYPE {name} {kind}` in:\n{last}"
        );
        assert!(
            last.contains(&format!("# HELP {name} ")),
            "no `# HELP {name}` in:\n{last}"
        );
    }

    // The exposition passes Prometheus' own linter, when it is installed.
    match promtool() {
        None => eprintln!(
            "note: promtool not found (set PROMTOOL or run scripts/validate-deploy.sh, which \
             installs it): skipping `promtool check metrics`"
        ),
        Some(bin) => {
            let mut child = Command::new(&bin)
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(last.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics failed ({}):\n{}{}\n--- scraped text ---\n{last}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    daemon.stop().await;
}
