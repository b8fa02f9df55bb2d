//! Issue 22 item 10: connection lifetimes have bounds (tokio-rs/axum #2741). Clients that
//! open connections and send a request head byte by byte, or never finish a body, are
//! closed; connections over `api.max_connections` are closed at once and counted; the
//! daemon stops within its grace whatever the clients do; and a well-behaved client is
//! served meanwhile. One test per process: the metrics recorder is process-global.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Waits (bounded) until the server closes `s`: a read that returns 0 or fails.
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An answer (the 408 of a body that never came): read on until the close.
            Ok(Ok(_)) => continue,
        }
    }
}

/// Waits (bounded) until the daemon's `/metrics` shows `series` with `value`; no timing
/// is asserted, only that it comes.
async fn metric_becomes(metrics_port: u16, series: &str, value: u64) {
    let line = format!("{series} {value}\n");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains(&line) {
            return;
        }
        assert!(Instant::now() < deadline, "{series} never became {value}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A connection that has sent part of a request head and nothing more.
async fn slow_head(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"POST /api/v2/ch/inquiry HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_closed_capped_and_never_hold_the_shutdown() {
    let (api_port, metrics_port) = (free_port(), free_port());
    let stack = Stack::start_with(&format!(
        "[api]\nlisten = \"127.0.0.1:{api_port}\"\nheader_read_timeout_ms = 3000\n\
         body_read_timeout_ms = 1000\nmax_connections = 8\nshutdown_grace_ms = 2000\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
    ))
    .await;
    let base = format!("http://127.0.0.1:{api_port}");
    let daemon = stack.daemon();
    http_up(&base).await;

    // Eight slow heads take every slot (once the probe's own connection is gone); the
    // ninth and tenth are closed as soon as they are accepted, and counted.
    let open = "ipg_http_connections{server=\"api\"}";
    metric_becomes(metrics_port, open, 0).await;
    let mut slow = Vec::new();
    for _ in 0..8 {
        slow.push(slow_head(api_port).await);
    }
    metric_becomes(metrics_port, open, 8).await;
    let mut over = Vec::new();
    for _ in 0..2 {
        over.push(slow_head(api_port).await);
    }
    metric_becomes(
        metrics_port,
        "ipg_http_connections_refused_total{server=\"api\"}",
        2,
    )
    .await;
    for s in &mut over {
        assert!(
            closed_by_server(s, Duration::from_secs(15)).await,
            "a connection over max_connections is closed"
        );
    }
    // Each slow head is closed once its head is late (3 s here), not held for ever.
    for s in &mut slow {
        assert!(
            closed_by_server(s, Duration::from_secs(15)).await,
            "a request head that never ends is closed"
        );
    }
    // A body announced and never sent: 408 in the documented shape, then closed.
    let mut s = TcpStream::connect(("127.0.0.1", api_port)).await.unwrap();
    s.write_all(
        b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"grant",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("\"rc\":\"BILLER_INVALID_TRANSACTION\""),
        "{answer}"
    );

    // The slots are free again: a client that behaves is served.
    let r = reqwest::get(format!("{base}/openapi.json")).await.unwrap();
    assert_eq!(r.status(), 200);
    // It is told how long an idle kept-alive connection lives (a second under the 3 s).
    assert_eq!(r.headers()["keep-alive"], "timeout=2");

    daemon.stop().await;

    // Slow clients at shutdown, with a head timeout far beyond the test's patience: the
    // daemon stops within its grace, not when they leave (before: never; Daemon::stop
    // fails after 60 s), and their connections are closed.
    let mut settings = stack.settings.clone();
    settings.api.header_read_timeout = Duration::from_secs(600);
    settings.api.shutdown_grace = Duration::from_secs(1);
    let daemon = Daemon::start(settings);
    http_up(&base).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(slow_head(api_port).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    daemon.stop().await;
    eprintln!(
        "daemon stopped {:?} after the signal, 4 slow clients connected",
        started.elapsed()
    );
    for s in &mut held {
        assert!(closed_by_server(s, Duration::from_secs(5)).await);
    }
}
