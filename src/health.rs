//! Liveness and readiness. `/healthz` answers while the process serves; `/readyz` answers 200
//! only when the service can do its job (upstream reachable, validation backends able to give
//! verdicts), so a load balancer or op-conductor can route away from it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use crate::ingress::forward::Forwarder;
use crate::validation::DynBackend;

/// What readiness depends on.
#[derive(Clone, Default)]
pub struct Health {
    /// The upstream EL (ingress role).
    pub upstream: Option<Arc<Forwarder>>,
    /// The validation engine.
    pub backend: Option<DynBackend>,
}

impl Health {
    /// Probes every dependency (bounded by a short timeout each) and reports.
    pub async fn check(&self) -> (bool, serde_json::Value) {
        const PROBE: Duration = Duration::from_secs(2);
        let upstream = match &self.upstream {
            Some(f) => Some(matches!(tokio::time::timeout(PROBE, f.probe()).await, Ok(Ok(())))),
            None => None,
        };
        let validation = match &self.backend {
            Some(b) => Some(tokio::time::timeout(PROBE, b.ready()).await.unwrap_or(false)),
            None => None,
        };
        let ready = upstream.unwrap_or(true) && validation.unwrap_or(true);
        (ready, json!({ "ready": ready, "upstream": upstream, "validation": validation }))
    }
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(h): State<Arc<Health>>) -> impl IntoResponse {
    let (ready, body) = h.check().await;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}

/// `/healthz` and `/readyz`.
pub fn routes(h: Arc<Health>) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(h)
}

/// The metrics listener: `/metrics` plus the health routes.
pub fn metrics_router(h: Arc<Health>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    crate::metrics::metrics().render(),
                )
            }),
        )
        .merge(routes(h))
}
