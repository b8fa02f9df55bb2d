//! The operators' HTTP endpoint: `/metrics` (Prometheus), `/healthz` (process alive) and
//! `/readyz` (Redis answers, the consumer has partitions and the journal is not blocked).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::config::{bad, SettingsError};
use crate::store::Store;

#[derive(Clone)]
pub struct OpsState {
    pub metrics: PrometheusHandle,
    pub store: Store,
    pub assigned: Arc<AtomicUsize>,
}

pub fn router(state: OpsState) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<OpsState>| async move { s.metrics.render() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(state)
}

async fn ready(State(s): State<OpsState>) -> (StatusCode, Json<serde_json::Value>) {
    let redis = s.store.ping().await.is_ok();
    let partitions = s.assigned.load(Ordering::Relaxed);
    // An append past its deadline and not yet acknowledged: changes cannot be journaled.
    let journal = s.store.journal_blocked().is_none();
    let ok = redis && partitions > 0 && journal;
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(
            json!({"ready": ok, "redis": redis, "assigned_partitions": partitions, "journal": journal}),
        ),
    )
}

/// The `[metrics]` section: where `/metrics`, `/healthz` and `/readyz` listen ("" turns
/// them off).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    pub listen: String,
}

impl MetricsSettings {
    /// # Errors
    /// `metrics.listen` that is not an address.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !self.listen.is_empty() && self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(bad(
                "metrics.listen",
                format!("{:?} is not an address like 127.0.0.1:9464", self.listen),
            ));
        }
        Ok(())
    }
}
