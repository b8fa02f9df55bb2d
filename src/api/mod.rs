//! The HTTP door (docs/api.md): IPG's Payment Channel API for banks that cannot produce to
//! Kafka, the Active Client API for institutions managing their hosted bills, and OAuth 2.0
//! client credentials. Every channel request goes through [`ApiState::serve`] (and so
//! [`Switch::handle`]), the same rule
//! set as the Kafka pipeline, and its webhook job is queued on `topics.webhook` before the
//! answer leaves, exactly as the pipeline does.
//!
//! - [`auth`]: `POST /oauth/token`, and the Bearer + `Signature` check of `/api/v2/gw/*`.
//! - [`channel`]: `POST /api/v2/ch/{inquiry,payment,reversal,check-status}`.
//! - [`bills`]: create, read, revoke a bill, its payments, sandbox mock payments.
//! - [`lists`]: bill, payment, mutation, institution and account lists, with IPG paging.
//! - [`statement`]: the institution's daily statement (JSON, or CSV on `Accept: text/csv`).
//! - [`snap`]: SNAP BI's access token and VA services 24, 25, 26 (docs/snap.md).
//! - [`error`]: the HTTP status of each refusal.
//! - [`openapi`]: the routes, registered from each handler's `#[utoipa::path]`, and the
//!   OpenAPI 3.1 document generated from them (`GET /openapi.json`, docs/openapi.json).
//! - [`schema`]: the bodies handlers read field by field, as types for that document.

pub mod auth;
pub mod bills;
pub mod channel;
pub mod config;
pub mod error;
pub mod jobs;
pub mod lists;
pub mod openapi;
pub mod schema;
pub mod snap;
pub mod snap_manage;
pub mod statement;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{ApiSettings, SnapSettings};

use crate::clock::Clock;
use crate::domain::Command;
use crate::domain::Outcome;
use crate::error::SwitchError;
use crate::kafka::publish::Publisher;
use crate::metrics as m;
use crate::protocol::json::JsonError;
use crate::switch::{Served, Switch};

/// How long an answer waits for Kafka to take its webhook job when the store has no journal
/// deadline; otherwise `journal.append_deadline_ms`. Past it the job goes on by itself and
/// the channel is answered in doubt.
const WEBHOOK_PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many changes answered in doubt are being settled at once (the HTTP doors
/// refuse changes while the journal is blocked, so only those in the switch when the broker
/// went away get here); one more is logged and counted (`ipg_in_doubt_total`,
/// `outcome="abandoned"`) and left to the bank's repeat or check-status.
pub const IN_DOUBT_SETTLING_MAX: usize = 10_000;

#[derive(Debug, thiserror::Error)]
#[error("api listener on {addr}: {source}")]
pub struct StartError {
    pub addr: String,
    pub source: std::io::Error,
}

/// What every handler shares.
/// What the HTTP door is built from: the shared switch, the producer its webhook jobs go
/// through (and their topic), the daemon's shutdown token, its `[api]` section.
pub struct Inner {
    pub switch: Switch,
    pub publisher: Publisher,
    pub webhook_topic: String,
    pub shutdown: CancellationToken,
    pub settings: ApiSettings,
    /// The `[snap]` section: SNAP BI's door (docs/snap.md).
    pub snap: SnapSettings,
    /// Where `GET /api/v2/gw/statement` reads its events (the journal); `None`: 503.
    pub statements: Option<Arc<dyn crate::statement::Source>>,
    /// `statement.cutoff_hour`.
    pub cutoff_hour: u32,
    /// Statements read at once (`statement.max_concurrent` permits): one more is 429.
    pub history: Arc<tokio::sync::Semaphore>,
    /// Changes answered in doubt being settled ([`IN_DOUBT_SETTLING_MAX`] permits).
    pub settling: Arc<tokio::sync::Semaphore>,
    /// Bulk issuance jobs (`POST /api/v2/gw/bill/batch/jobs`), run by the daemon.
    pub jobs: Arc<crate::issuance::jobs::Jobs>,
}

#[derive(Clone)]
pub struct ApiState(pub Arc<Inner>);

impl std::ops::Deref for ApiState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl ApiState {
    pub fn clock(&self) -> &Clock {
        &self.switch.clock
    }

    /// Serves one command of an authenticated channel through the shared rule set, then
    /// queues its webhook job (if any) and waits for Kafka to take it: an answer never
    /// leaves before the institution's notification is safe. Every HTTP dialect's door
    /// ends here.
    ///
    /// Every wait for the broker is bounded (docs/journal.md, "Broker faults"): while the
    /// journal is blocked a change is refused before anything is done (`Busy`, 503); a
    /// change whose event or webhook job is not acknowledged within
    /// `journal.append_deadline_ms` is answered in doubt (`StoreError::InDoubt`,
    /// `BILLER_SUSPECT_TRANSACTION`) and the switch completes it by itself: it serves the
    /// same command again until it is journaled, then queues its webhook job.
    ///
    /// Refusals: as [`Switch::handle`]; `Busy` while the journal is blocked.
    pub async fn serve(&self, cmd: &Command) -> Served {
        if !matches!(cmd.action, crate::domain::command::Action::Inquiry(_)) {
            if let Err(e) = self.journal_open() {
                return Served {
                    result: Err(e),
                    institution: None,
                };
            }
        }
        let mut served = self.switch.handle(cmd).await;
        served.result = match served.result {
            Ok(outcome) => self.queue_webhook(outcome).await,
            refused => refused,
        };
        if let Err(e) = &served.result {
            if e.is_in_doubt() {
                self.settle_later(cmd.clone());
            }
        }
        served
    }

    /// Whether a change may be taken: refused (`Busy`, 503, nothing done) while the journal
    /// is blocked (`Store::journal_blocked`), so requests do not pile up behind a broker
    /// that cannot take their events.
    ///
    /// # Errors
    /// `Busy` while blocked.
    pub fn journal_open(&self) -> Result<(), SwitchError> {
        match self.switch.hosted.store.journal_blocked() {
            None => Ok(()),
            Some(_) => Err(SwitchError::Busy(
                "the switch's journal (Kafka) is not acknowledging changes".into(),
            )),
        }
    }

    fn webhook_deadline(&self) -> Duration {
        Some(self.switch.hosted.store.journal_deadline())
            .filter(|d| !d.is_zero())
            .unwrap_or(WEBHOOK_PUBLISH_TIMEOUT)
    }

    /// Queues the outcome's webhook job within the deadline; past it the job goes on by
    /// itself and the answer is in doubt (the change is journaled, its notification not yet
    /// safe).
    async fn queue_webhook(&self, outcome: Outcome) -> Result<Outcome, SwitchError> {
        let Some(w) = &outcome.webhook else {
            return Ok(outcome);
        };
        let event = w.event;
        let mut sent = Box::pin(self.publisher.send_webhook_job(
            &self.webhook_topic,
            w,
            &self.shutdown,
        ));
        match tokio::time::timeout(self.webhook_deadline(), &mut sent).await {
            Ok(true) => Ok(outcome),
            Ok(false) => Err(SwitchError::Store(crate::store::StoreError::InDoubt(
                "the switch is stopping before Kafka took the webhook job".into(),
            ))),
            Err(_) => {
                tracing::warn!(
                    event,
                    "webhook job past its deadline: answered in doubt, still on its way"
                );
                tokio::spawn(sent);
                Err(SwitchError::Store(crate::store::StoreError::InDoubt(
                    "Kafka did not take the webhook job in time".into(),
                )))
            }
        }
    }

    /// Completes a change answered in doubt: serves the same command again (a repeat,
    /// answered from what is committed and journaled again under the same event id,
    /// waiting for the append on its way) until it is journaled, then queues its webhook job
    /// with no deadline. A command now refused for good (the bank reversed the payment
    /// meanwhile, say) needs nothing more. Given up at shutdown.
    fn settle_later(&self, cmd: Command) {
        metrics::counter!(m::IN_DOUBT_TOTAL, "door" => "http", "outcome" => "answered")
            .increment(1);
        let Ok(permit) = self.settling.clone().try_acquire_owned() else {
            metrics::counter!(m::IN_DOUBT_TOTAL, "door" => "http", "outcome" => "abandoned")
                .increment(1);
            tracing::error!(channel = %cmd.channel, "too many changes in doubt to settle: left to the bank's repeat or check-status");
            return;
        };
        let st = self.clone();
        metrics::gauge!(m::IN_DOUBT_SETTLING).increment(1.0);
        tokio::spawn(async move {
            let _permit = permit;
            let mut backoff = Duration::from_millis(500);
            let outcome = loop {
                if !crate::kafka::publish::sleep_or_shutdown(backoff, &st.shutdown).await {
                    break "abandoned";
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                match st.switch.handle(&cmd).await.result {
                    // A rate limit refuses the settling's repeat, not the change: try later.
                    Err(e)
                        if e.disposition() == crate::error::Disposition::Retry
                            || matches!(e, SwitchError::RateLimited { .. }) =>
                    {
                        continue
                    }
                    Err(e) => {
                        tracing::warn!(channel = %cmd.channel, error = %e, "a change answered in doubt is now refused: nothing more to settle");
                        break "refused";
                    }
                    Ok(outcome) => {
                        if let Some(w) = &outcome.webhook {
                            let sent =
                                st.publisher
                                    .send_webhook_job(&st.webhook_topic, w, &st.shutdown);
                            if !sent.await {
                                break "abandoned";
                            }
                        }
                        tracing::info!(channel = %cmd.channel, "a change answered in doubt is journaled and announced");
                        break "confirmed";
                    }
                }
            };
            if outcome == "abandoned" {
                tracing::error!(channel = %cmd.channel, "stopping with a change in doubt not settled: left to the bank's repeat or check-status");
            }
            metrics::counter!(m::IN_DOUBT_TOTAL, "door" => "http", "outcome" => outcome)
                .increment(1);
            metrics::gauge!(m::IN_DOUBT_SETTLING).decrement(1.0);
        });
    }
}

/// Reads a body up to `api.max_body_bytes`, within `api.body_read_timeout_ms`; larger ones
/// are refused without reading them in full, slower ones when the time is up.
///
/// # Errors
/// The 413 answer; the 408 answer.
pub async fn read_body(
    body: Body,
    headers: &axum::http::HeaderMap,
    settings: &ApiSettings,
    clock: &Clock,
) -> Result<Bytes, Response> {
    read_body_up_to(body, headers, settings, clock, settings.max_body_bytes).await
}

/// [`read_body`] with its own `limit` (bytes).
///
/// # Errors
/// The 413 answer; the 408 answer.
pub async fn read_body_up_to(
    body: Body,
    headers: &axum::http::HeaderMap,
    settings: &ApiSettings,
    clock: &Clock,
    limit: usize,
) -> Result<Bytes, Response> {
    let too_large = || {
        error::refuse_with(
            StatusCode::PAYLOAD_TOO_LARGE,
            &SwitchError::invalid("body", format!("is larger than {limit} bytes")),
            clock,
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // The only other failure is a client that went away; it will not read the answer.
    match tokio::time::timeout(
        settings.body_read_timeout,
        axum::body::to_bytes(body, limit),
    )
    .await
    {
        Ok(read) => read.map_err(|_| too_large()),
        Err(_) => Err(error::refuse_with(
            StatusCode::REQUEST_TIMEOUT,
            &SwitchError::invalid(
                "body",
                format!(
                    "did not arrive within {} ms",
                    settings.body_read_timeout.as_millis()
                ),
            ),
            clock,
        )),
    }
}

/// The one value of header `name`, if sent. A header the switch decides by (`Signature`,
/// `Authorization`, `X-Channel`, `X-Request-Id`) sent twice is refused: a proxy may read the
/// first and the switch the last (docs/protocol.md decision 17).
///
/// # Errors
/// `InvalidField` naming the header when it is repeated or not visible ASCII.
pub fn one_header<'a>(
    headers: &'a axum::http::HeaderMap,
    name: &str,
) -> Result<Option<&'a str>, SwitchError> {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => v
            .to_str()
            .map(Some)
            .map_err(|_| SwitchError::invalid(name, "must be visible ASCII")),
        (Some(_), Some(_)) => Err(SwitchError::invalid(name, "is sent more than once")),
    }
}

/// Refuses a query string that gives one parameter twice (`?date.0=a&date.0=b`): the
/// signature covers the raw query, and the handlers' maps keep only one of the values.
///
/// # Errors
/// `InvalidField` naming the repeated parameter; a query that is not `application/x-www-
/// form-urlencoded`.
pub fn query_once(uri: &axum::http::Uri) -> Result<(), SwitchError> {
    let axum::extract::Query(pairs) =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|e| SwitchError::invalid("query", e.body_text()))?;
    let mut seen = std::collections::HashSet::new();
    match pairs.into_iter().find(|(k, _)| !seen.insert(k.clone())) {
        Some((k, _)) => Err(SwitchError::invalid(
            k,
            "is given more than once in the query",
        )),
        None => Ok(()),
    }
}

/// Parses a JSON body, naming what is wrong; a name repeated within an object is refused
/// (docs/protocol.md decision 17).
///
/// # Errors
/// `body: malformed JSON ...`; `<path>: appears more than once in its object`.
pub fn json_body(bytes: &[u8]) -> Result<serde_json::Value, SwitchError> {
    crate::protocol::json::parse(bytes).map_err(|e| match e {
        JsonError::Duplicate { path } => {
            SwitchError::invalid(path, crate::protocol::json::REPEATED)
        }
        JsonError::Malformed(_) => SwitchError::invalid("body", e.to_string()),
    })
}

/// The value of header `h` in lowercase ASCII, empty when absent or not text (for
/// `Content-Type` and `Accept` sniffing).
pub(crate) fn header_of(headers: &axum::http::HeaderMap, h: header::HeaderName) -> String {
    headers
        .get(h)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Whether a bulk issuance asks for a dry run (`dry_run=true` or `1`); a real one is
/// refused while the journal is blocked (nothing is done).
///
/// # Errors
/// The refusal to answer when the journal is blocked.
pub(crate) fn dry_run_or_journal_open(
    st: &ApiState,
    params: &std::collections::HashMap<String, String>,
) -> Result<bool, axum::response::Response> {
    let dry_run = matches!(
        params.get("dry_run").map(String::as_str),
        Some("true" | "1")
    );
    if !dry_run {
        st.journal_open()
            .map_err(|e| error::refuse(&e, error::Door::Gateway, st.clock()))?;
    }
    Ok(dry_run)
}

/// The HTTP door's routes ([`openapi::open_routes`], [`openapi::gateway_routes`] behind
/// the Bearer + `Signature` check) with their limits and middleware, and
/// `GET /openapi.json` serving the document generated from the same routes.
pub fn router(state: ApiState) -> Router {
    let max_body = state.settings.max_body_bytes;
    let doc = openapi::for_settings(&state.settings, &state.snap);
    let doc = openapi::Served(Arc::new(
        serde_json::to_string_pretty(&doc).unwrap_or_default(),
    ));
    let gw = openapi::gateway_routes(&state.settings)
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::gateway));
    let (app, _) = utoipa_axum::router::OpenApiRouter::new()
        .merge(openapi::open_routes(&state.snap))
        .nest("/api/v2/gw", gw)
        .split_for_parts();
    app.layer(axum::Extension(doc))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            *state.clock(),
            error::json_errors,
        ))
        .layer(middleware::from_fn(count))
        .layer(middleware::from_fn_with_state(
            keep_alive_hint(state.settings.header_read_timeout),
            keep_alive,
        ))
        .with_state(state)
}

/// `Keep-Alive: timeout=N`, N a second under `api.header_read_timeout_ms`: the server closes
/// a kept-alive connection that sends no request head for that long, so a client that
/// pools connections should not send on one idle longer (RFC 9112 allows the hint; clients
/// that honour it never meet a connection closed under their request).
fn keep_alive_hint(header_read_timeout: Duration) -> header::HeaderValue {
    let secs = header_read_timeout.as_secs().saturating_sub(1).max(1);
    header::HeaderValue::from_str(&format!("timeout={secs}"))
        .unwrap_or(header::HeaderValue::from_static("timeout=1"))
}

async fn keep_alive(State(hint): State<header::HeaderValue>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .insert(header::HeaderName::from_static("keep-alive"), hint);
    resp
}

/// `ipg_http_requests_total{route,status}` and `ipg_http_request_duration_seconds{route}`;
/// the route is the matched pattern (`/api/v2/gw/bill/{hash}`), so labels stay bounded.
async fn count(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let resp = next.run(req).await;
    metrics::histogram!(m::HTTP_SECONDS, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(m::HTTP_REQUESTS_TOTAL, "route" => route, "status" => resp.status().as_str().to_owned())
        .increment(1);
    resp
}

/// Binds `api.listen` and serves until the daemon's shutdown token is cancelled; requests
/// in flight finish first. `None` when the API is off.
///
/// # Errors
/// The address cannot be bound.
pub async fn start(inner: Inner) -> Result<Option<JoinHandle<()>>, StartError> {
    if !inner.settings.enabled() {
        return Ok(None);
    }
    let addr = inner.settings.listen.clone();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| StartError {
            addr: addr.clone(),
            source,
        })?;
    let state = ApiState(Arc::new(inner));
    if state.settings.sandbox {
        tracing::warn!("api.sandbox is on: Fake/Mock payments are enabled");
    }
    tracing::info!(%addr, "HTTP API listening");
    let stop = state.shutdown.clone();
    let limits = state.settings.limits();
    let app = router(state);
    Ok(Some(tokio::spawn(crate::http_server::serve(
        "api", listener, app, limits, stop,
    ))))
}

/// `State` extractor alias, for brevity in handlers.
pub type St = State<ApiState>;

/// A success envelope with `data`.
pub fn ok(clock: &Clock, message: &str, data: serde_json::Value) -> Response {
    error::respond(
        StatusCode::OK,
        &error::Envelope {
            rc: crate::error::Rc::Success,
            message,
            timestamp: &clock.stamp_now(),
            data,
        },
    )
}
