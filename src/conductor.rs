//! op-conductor's rollup-boost health contract, served at `metrics.conductor_path`
//! (`/conductor`) on the metrics listener, so a sequencer whose interop-gate cannot do its job
//! loses leadership.
//!
//! op-conductor reads it through `--rollup-boost.next-enabled` +
//! `--rollup-boost.next-healthcheck-url`: HTTP 200 with
//! `{"rollup_boost_health": "Healthy" | "PartialContent" | "ServiceUnavailable"}` (any other
//! status is an error to it). What the states mean here:
//!
//! - `ServiceUnavailable`: interop-gate cannot validate (the validation policy cannot give a
//!   verdict: with `both`, either backend down) or cannot forward (the ingress's upstream EL does
//!   not answer). Interop txs are refused meanwhile (fail closed).
//! - `PartialContent`: verdicts still come, but something this sequencer depends on is down: one
//!   configured backend is down while the policy can still decide (`either`, `shadow`, or a
//!   backend the policy does not consult), or the revalidator cannot read its EL's pool (it keeps
//!   its last verdicts and publishes nothing new). Another sequencer may be better off.
//! - `Healthy`: everything configured answers.
//!
//! Failsafe is not a state here: it comes from the supervisors, which every sequencer of the
//! cluster shares, so handing leadership over would not help.
//!
//! op-conductor takes one of its two rollup-boost checks (`--rollup-boost.enabled`, rollup-boost's
//! own `/healthz`, or the `next` URL). With a rollup-boost already in the path, set
//! `metrics.conductor_compose_url` to its health URL: its answer (200 healthy, 206 partial,
//! anything else unavailable) is folded in and the worse of the two is served.
//!
//! The state comes from the background readiness probe ([`crate::health`]): a request costs no
//! backend call.

use axum::extract::State;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use serde_json::json;

use crate::health::Readiness;

/// The three states, as op-conductor spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum ConductorHealth {
    /// Everything configured answers.
    Healthy,
    /// Verdicts still come, but a part is down.
    PartialContent,
    /// Cannot validate or cannot forward.
    ServiceUnavailable,
}

impl ConductorHealth {
    /// Maps a rollup-boost `/healthz` status code (200, 206, 503) to a state.
    pub fn from_status(status: u16) -> Self {
        match status {
            200 => Self::Healthy,
            206 => Self::PartialContent,
            _ => Self::ServiceUnavailable,
        }
    }
}

/// What the probe found, part by part (`None`: not configured).
#[derive(Debug, Clone, Default)]
pub struct Parts {
    /// The ingress's upstream EL answers.
    pub upstream: Option<bool>,
    /// The validation policy can give verdicts.
    pub validation: Option<bool>,
    /// Each configured backend (`indexed`, `light`) on its own.
    pub backends: Vec<(&'static str, bool)>,
    /// The revalidator read its EL's pool on its last attempt.
    pub revalidator_pool: Option<bool>,
    /// The composed health URL's answer.
    pub composed: Option<ConductorHealth>,
}

/// The state and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    /// The state.
    pub health: ConductorHealth,
    /// What made it less than healthy (empty when healthy).
    pub reasons: Vec<String>,
}

/// Decides the state from the parts (pure; the rules are in the module doc).
pub fn assess(p: &Parts) -> Assessment {
    let mut health = ConductorHealth::Healthy;
    let mut reasons = Vec::new();
    let mut worse = |to: ConductorHealth, why: String| {
        health = health.max(to);
        reasons.push(why);
    };
    if p.upstream == Some(false) {
        worse(ConductorHealth::ServiceUnavailable, "upstream EL does not answer".into());
    }
    if p.validation == Some(false) {
        worse(ConductorHealth::ServiceUnavailable, "validation policy cannot give verdicts".into());
    }
    for (name, up) in &p.backends {
        if !up {
            worse(ConductorHealth::PartialContent, format!("{name} backend down"));
        }
    }
    if p.revalidator_pool == Some(false) {
        worse(ConductorHealth::PartialContent, "revalidator cannot read the EL's pool".into());
    }
    if let Some(c) = p.composed.filter(|c| *c != ConductorHealth::Healthy) {
        worse(c, format!("composed health URL says {c:?}"));
    }
    Assessment { health, reasons }
}

async fn conductor(State(r): State<Readiness>) -> impl IntoResponse {
    let snap = r.current().await;
    // Always HTTP 200: op-conductor treats any other status as a failed check, not a state.
    Json(json!({
        "rollup_boost_health": snap.conductor.health,
        "version": env!("CARGO_PKG_VERSION"),
        "reasons": snap.conductor.reasons,
    }))
}

/// The route at `path` (nothing when `path` is empty).
pub fn routes(path: &str, r: Readiness) -> Router {
    if path.is_empty() {
        return Router::new();
    }
    Router::new().route(path, get(conductor)).with_state(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConductorHealth::*;

    #[test]
    fn each_part_maps_to_its_state_and_the_worst_wins() {
        assert_eq!(assess(&Parts::default()).health, Healthy);
        let one_down = Parts {
            validation: Some(true),
            backends: vec![("indexed", false), ("light", true)],
            ..Default::default()
        };
        assert_eq!(assess(&one_down).health, PartialContent);
        let cannot = Parts { validation: Some(false), ..one_down.clone() };
        let a = assess(&cannot);
        assert_eq!(a.health, ServiceUnavailable);
        assert_eq!(a.reasons.len(), 2);
        let pool = Parts { revalidator_pool: Some(false), ..Default::default() };
        assert_eq!(assess(&pool).health, PartialContent);
        let up = Parts { upstream: Some(false), ..Default::default() };
        assert_eq!(assess(&up).health, ServiceUnavailable);
        let composed = Parts { composed: Some(PartialContent), ..Default::default() };
        assert_eq!(assess(&composed).health, PartialContent);
        assert_eq!(ConductorHealth::from_status(206), PartialContent);
        assert_eq!(ConductorHealth::from_status(500), ServiceUnavailable);
        assert_eq!(serde_json::to_value(PartialContent).unwrap(), "PartialContent");
    }
}
