//! The incoming HTTP/1.1 server of the API and of the operators' endpoint: an accept loop
//! with a bound on every connection's life, instead of `axum::serve`, which sets none.
//!
//! - **A request head must arrive in time** (`header_read_timeout`, hyper's own timer,
//!   also while a kept-alive connection waits for its next request): a client that opens a
//!   connection and sends nothing, or a head byte by byte (slowloris), is closed.
//! - **At most `max_connections` at once**: one over it is accepted and closed at once
//!   (counted), so that slow clients cannot take every socket.
//! - **Shutdown ends within `shutdown_grace`** whatever the clients do: no new connection
//!   is accepted, idle ones are closed, requests in flight may finish until the grace runs
//!   out; connections still open then are dropped.
//!
//! A request's body is read with a deadline of its own by the handlers that read one
//! (`api::read_body`); a handler's work is bounded by the switch's own limits (the VA
//! lock wait, the journal), not cut here: dropping a payment half-way would leave it to
//! the recovery instead of answering it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;

/// The bounds of one server.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest wait for a request head (the first one and each next one on a kept-alive
    /// connection).
    pub header_read_timeout: Duration,
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// How long requests in flight may finish after `stop`; then every connection left is
    /// dropped.
    pub shutdown_grace: Duration,
}

/// One open connection: counted in the gauge and holding its slot until it ends, however it
/// ends (a connection task dropped after the shutdown grace included).
struct Held {
    open: metrics::Gauge,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Held {
    fn new(open: metrics::Gauge, slot: tokio::sync::OwnedSemaphorePermit) -> Held {
        open.increment(1.0);
        Held { open, _slot: slot }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.open.decrement(1.0);
    }
}

/// Serves `app` on `listener` until `stop` is cancelled, then for at most
/// `limits.shutdown_grace` more. `server` labels the metrics (`api`, `ops`).
pub async fn serve(
    server: &'static str,
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut conns = JoinSet::new();
    let open = metrics::gauge!(m::HTTP_CONNECTIONS, "server" => server);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            // Reap finished connections as they end, so the set stays as large as what is open.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(server, error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!(m::HTTP_CONNECTIONS_REFUSED_TOTAL, "server" => server).increment(1);
            drop(stream);
            continue;
        };
        let (app, stop) = (app.clone(), stop.clone());
        let held = Held::new(open.clone(), slot);
        conns.spawn(async move {
            let _held = held;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
            tokio::pin!(conn);
            let ended = tokio::select! {
                r = conn.as_mut() => Some(r),
                _ = stop.cancelled() => None,
            };
            if ended.is_none() {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            server,
            left = conns.len(),
            "connections still open after the shutdown grace: dropped"
        );
        conns.shutdown().await;
    }
}
