//! ipg-switch: a virtual-account bill payment switch between banks (channels) and the
//! institutions that bill through IPG.
//!
//! A request travels: consume (`pipeline`) → decode and verify (`protocol`, `signature`) →
//! route by prefix (`routing`) → lock the VA and apply the bill rules (`hosted`, `domain`,
//! `store`) → publish the answer and webhook job (`kafka::publish`) → store the offset
//! (`kafka::offsets`).
//!
//! Modules by layer; each imports only from its own layer or lower ones (tests/layers.rs
//! keeps it so, listing the back-edges still to remove).
//!
//! L0 vocabulary (pure):
//! - [`domain`]: VA numbers, amounts, bills and payment rules, rc codes, institution
//!   modes, the passive payment record.
//! - [`clock`]: the switch's time and its UTC offset.
//! - [`signature`]: HMAC-SHA256 signatures, the `Signature` header.
//! - [`metrics`]: every metric name, described once; the Prometheus recorder.
//! - [`config`]: the configuration error that names a key.
//!
//! L1 wire:
//! - [`protocol`]: channel envelopes, webhook jobs, passive bodies on the wire.
//!
//! L2 adapters (one per outside system, each owning its config section):
//! - [`store`]: Redis: records, Lua scripts, the connection (`[redis]`).
//! - [`kafka`]: clients, topics, the embedded broker, offsets, the publisher
//!   (`[kafka]`, `[topics]`).
//! - [`http_client`]: the outgoing HTTP client.
//! - [`http_server`]: the incoming HTTP/1.1 server, every connection's life bounded.
//! - [`secure`]: TLS and SASL settings of Kafka and Redis.
//!
//! L3 rules:
//! - [`error`]: the one place an error becomes an rc.
//! - [`routing`]: prefixes to institutions, channel authentication, rate limits
//!   (`[[channels]]`, `[[institutions]]`).
//! - [`lock`]: VA lock owners (one per attempt) and the wait for a held lock.
//! - [`hosted`]: hosted bills: inquiry, payment, reversal, check status, create, revoke.
//! - [`passive`]: forwarding to passive institutions and resolving payments in doubt.
//! - [`switch`]: one rule set for every door (the Kafka pipeline and the HTTP API).
//! - [`statement`]: daily statements and reconciliation from journal events
//!   (`[statement]`, `[reconcile]`).
//! - [`issuance`]: bulk and recurring issuance of bills, row by row, idempotent
//!   (`ipg-switch bill import`/`recur`, `POST /api/v2/gw/bill/batch`).
//!
//! L4 doors and workers:
//! - [`pipeline`]: the Kafka door: per-VA lanes, in-order offsets.
//! - [`api`]: the HTTP door (IPG's Payment Channel and Active Client APIs, OAuth 2.0),
//!   through the same [`switch::Switch::handle`].
//! - [`webhook`]: webhook delivery to institutions, retry tiers, per-bill ordering gate.
//! - [`ops`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`journal`]: reading the journal back: the recovery after Redis lost writes, the
//!   applier's marks, `restore`, `verify` (`[journal]`).
//!
//! L5 composition:
//! - [`settings`]: the whole configuration, composed from each owner's section.
//! - [`app`]: the daemon built once ([`App::build`]) and run ([`App::run`]); `app::build`
//!   builds the switch alone ([`build_switch`]: CLI, tests, benches).
//!
//! [`run`] starts the whole daemon and returns when `shutdown` resolves and the work in
//! flight has drained, so tests run it in-process.

/// The allocator of every binary that links the switch (the daemon, its tests, the
/// benches): mimalloc, whose thread-local heaps free memory allocated on another thread
/// without a lock. With glibc's malloc, a third of the daemon's CPU per payment went to
/// malloc/free and their arena locks (perf, issue 15): a message is allocated on one
/// tokio worker and often freed on another.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod hosted;
pub mod http_client;
pub mod http_server;
pub mod issuance;
pub mod journal;
pub mod kafka;
pub mod lock;
pub mod metrics;
pub mod ops;
pub mod passive;
pub mod pipeline;
pub mod protocol;
pub mod routing;
pub mod secure;
pub mod settings;
pub mod signature;
pub mod statement;
pub mod store;
pub mod switch;
pub mod webhook;

use std::future::Future;

pub use app::build::{build_switch, build_switch_with, BuildError, Journaling};
pub use app::{App, RunError};

/// Runs the daemon until `shutdown` resolves, then drains in-flight work, commits offsets
/// and returns: [`App::build`] then [`App::run`].
///
/// # Errors
/// Start-up failures (see [`RunError`]). Once running, failures of Redis or Kafka are
/// retried, not returned.
pub async fn run(
    settings: settings::Settings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    App::build(settings).await?.run(shutdown).await
}
