//! Liveness and readiness. `/healthz` answers while the process serves; `/readyz` answers 200
//! only when the service can do its job (upstream reachable, validation backends able to give
//! verdicts), so a load balancer or op-conductor can route away from it.
//!
//! `/readyz` sits on the public port too, so it must cost nothing: a background task probes the
//! dependencies every `server.readiness_interval_ms` (as rollup-boost's probes do) and the
//! handler only reads the last result. However often `/readyz` is hit, the backends see one probe
//! per interval. Probing starts with the first `/readyz` request: a service nobody health-checks
//! sends no probes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::conductor::{self, Assessment, ConductorHealth, Parts};
use crate::ingress::forward::Forwarder;
use crate::revalidator::Revalidator;
use crate::validation::DynBackend;

/// What readiness depends on.
#[derive(Clone, Default)]
pub struct Health {
    /// The upstream EL (ingress role).
    pub upstream: Option<Arc<Forwarder>>,
    /// The validation engine.
    pub backend: Option<DynBackend>,
    /// Each configured backend on its own (for the conductor's partial state).
    pub backends: Vec<(&'static str, DynBackend)>,
    /// The revalidator (whether it can read its EL's pool).
    pub revalidator: Option<Arc<Revalidator>>,
    /// A health URL folded into the conductor state (a rollup-boost's `/healthz`).
    pub compose: Option<reqwest::Url>,
}

/// One probe's result: readiness and the `/readyz` body.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// All dependencies answered.
    pub ready: bool,
    /// `{ "ready", "upstream", "validation" }`.
    pub body: serde_json::Value,
    /// What `/conductor` answers.
    pub conductor: Assessment,
}

impl Health {
    /// Probes every dependency (each bounded by `timeout`) and reports.
    pub async fn check(&self, timeout: Duration) -> Snapshot {
        let upstream = match &self.upstream {
            Some(f) => Some(matches!(tokio::time::timeout(timeout, f.probe()).await, Ok(Ok(())))),
            None => None,
        };
        let validation = match &self.backend {
            Some(b) => Some(tokio::time::timeout(timeout, b.ready()).await.unwrap_or(false)),
            None => None,
        };
        let ready = upstream.unwrap_or(true) && validation.unwrap_or(true);
        let backends =
            futures::future::join_all(self.backends.iter().map(|(name, b)| async move {
                (*name, tokio::time::timeout(timeout, b.ready()).await.unwrap_or(false))
            }))
            .await;
        let revalidator_pool = self.revalidator.as_ref().map(|r| pool_readable(&r.status()));
        let composed = match &self.compose {
            Some(url) => Some(probe_url(url, timeout).await),
            None => None,
        };
        let parts = Parts { upstream, validation, backends, revalidator_pool, composed };
        Snapshot {
            ready,
            body: json!({ "ready": ready, "upstream": upstream, "validation": validation }),
            conductor: conductor::assess(&parts),
        }
    }
}

/// True unless the revalidator's latest pool read failed (a failure after its last pass).
fn pool_readable(status: &serde_json::Value) -> bool {
    let Some(err_at) = status["lastErrorAt"].as_u64() else {
        return true;
    };
    status["lastPass"]["startedAt"].as_u64().is_some_and(|pass_at| pass_at > err_at)
}

/// GETs a health URL (rollup-boost's `/healthz`): 200 healthy, 206 partial, anything else
/// (another status, no answer in `timeout`) unavailable.
async fn probe_url(url: &reqwest::Url, timeout: Duration) -> ConductorHealth {
    use std::sync::LazyLock;
    use tracing::Instrument;
    static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(reqwest::Client::new);
    let m = crate::metrics::metrics();
    let start = std::time::Instant::now();
    let span = tracing::debug_span!("conductor_compose");
    let result = CLIENT.get(url.clone()).timeout(timeout).send().instrument(span).await;
    m.external_duration
        .with_label_values(&["conductor_compose", "compose"])
        .observe(start.elapsed().as_secs_f64());
    let (health, outcome) = match result {
        Ok(r) => (ConductorHealth::from_status(r.status().as_u16()), "ok"),
        Err(e) if e.is_timeout() => (ConductorHealth::ServiceUnavailable, "timeout"),
        Err(_) => (ConductorHealth::ServiceUnavailable, "transport"),
    };
    m.external_calls.with_label_values(&["conductor_compose", "compose", outcome]).inc();
    health
}

/// The readiness state and the prober that feeds it. Routers take the [`Readiness`] while the
/// roles are still being assembled; the [`Prober`] starts once [`Health`] is complete.
pub fn readiness(interval: Duration) -> (Readiness, Prober) {
    let (tx, rx) = watch::channel(None);
    let timeout = interval.min(Duration::from_secs(2));
    let demand = Arc::new(Demand::default());
    (
        Readiness { rx, first_wait: timeout * 2, demand: demand.clone() },
        Prober { tx, interval, timeout, demand },
    )
}

/// Set by the first `/readyz` request; the prober waits for it.
#[derive(Default)]
struct Demand {
    seen: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

/// Runs the background probe.
pub struct Prober {
    tx: watch::Sender<Option<Snapshot>>,
    interval: Duration,
    timeout: Duration,
    demand: Arc<Demand>,
}

impl Prober {
    /// Starts probing `health` on the first `/readyz` request, then every interval (each probe
    /// bounded by the interval, at most 2 s), until `shutdown`. Readiness therefore follows a dependency going
    /// down or coming back within about one interval.
    pub fn spawn(self, health: Health, shutdown: CancellationToken) {
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.demand.notify.notified() => {}
            }
            let mut tick = tokio::time::interval(self.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let snap = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    s = health.check(self.timeout) => s,
                };
                if self.tx.send(Some(snap)).is_err() {
                    return; // Nobody serves /readyz any more.
                }
            }
        });
    }
}

/// The last probe result, read by `/readyz`.
#[derive(Clone)]
pub struct Readiness {
    rx: watch::Receiver<Option<Snapshot>>,
    /// How long a request right after start-up waits for the first probe.
    first_wait: Duration,
    demand: Arc<Demand>,
}

impl Readiness {
    /// The last snapshot; right after start-up, waits (bounded) for the first probe instead of
    /// answering "not ready" for a service that may be fine.
    pub async fn current(&self) -> Snapshot {
        if !self.demand.seen.swap(true, std::sync::atomic::Ordering::SeqCst) {
            // `notify_one` keeps a permit if the prober is not waiting yet.
            self.demand.notify.notify_one();
        }
        let mut rx = self.rx.clone();
        let waited = tokio::time::timeout(self.first_wait, rx.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(s)) => s.clone().unwrap_or_else(not_probed),
            _ => self.rx.borrow().clone().unwrap_or_else(not_probed),
        }
    }
}

fn not_probed() -> Snapshot {
    Snapshot {
        ready: false,
        body: json!({ "ready": false, "upstream": null, "validation": null }),
        conductor: Assessment {
            health: ConductorHealth::ServiceUnavailable,
            reasons: vec!["not probed yet".into()],
        },
    }
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(r): State<Readiness>) -> impl IntoResponse {
    let snap = r.current().await;
    let status = if snap.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(snap.body))
}

/// `/healthz` and `/readyz`.
pub fn routes(r: Readiness) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(r)
}

/// `interop_gate_ready{part}` from a probe snapshot (`null` parts are not configured and
/// cannot make the service unready).
fn publish_readiness(snap: &Snapshot) {
    let m = crate::metrics::metrics();
    m.ready.with_label_values(&["all"]).set(i64::from(snap.ready));
    for part in ["upstream", "validation"] {
        let ok = snap.body[part].as_bool().unwrap_or(true);
        m.ready.with_label_values(&[part]).set(i64::from(ok));
    }
}

async fn scrape(State(r): State<Readiness>) -> impl IntoResponse {
    // The background probe's last snapshot: a scrape costs no backend call (and the first one
    // starts the probe, so the readiness alert works without anyone polling /readyz).
    publish_readiness(&r.current().await);
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::metrics().render(),
    )
}

/// The metrics listener: `/metrics` plus the health routes.
pub fn metrics_router(r: Readiness) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state(r.clone()).merge(routes(r))
}
