//! The indexed backend: op-interop-filter / op-supervisor compatible `checkAccessList`
//! endpoints.
//!
//! One pooled [`RpcClient`] per endpoint (never a connection per check). Answers are read by the
//! shared wire contract ([`super::codec`]): only `"result": null` is valid, only a documented
//! supervisor code is a definitive invalid, everything else is no answer.
//!
//! Single checks and batches are one code path: a check is a batch of one (sent as a plain
//! JSON-RPC call), a batch is one HTTP request per endpoint asked, and every strategy means the
//! same for both: `first`/`health` re-ask the next endpoint only for the checks still without an
//! answer; `any` and `quorum` ask every endpoint and combine each check's answers on its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::{join_all, BoxFuture};

use super::codec::{params, verdict_of, Params};
use super::{Backend, CheckRequest, Rejection, Verdict};
use crate::config::{Namespace, Strategy, SupervisorConfig};
use crate::interop::{ExecutingDescriptor, SafetyLevel};
use crate::metrics::metrics;
use crate::rpc::client::{http_client, RpcClient};
use crate::rpc::codes;

struct Endpoint {
    client: RpcClient,
    unhealthy_until: Mutex<Option<Instant>>,
    /// Its `endpoint_healthy` series, looked up once (it is set on every answer).
    healthy_gauge: prometheus::IntGauge,
}

impl Endpoint {
    fn healthy(&self) -> bool {
        self.unhealthy_until.lock().map(|u| u.is_none_or(|t| Instant::now() >= t)).unwrap_or(true)
    }

    fn mark(&self, ok: bool, unhealthy_for: Duration) {
        if let Ok(mut u) = self.unhealthy_until.lock() {
            *u = if ok { None } else { Some(Instant::now() + unhealthy_for) };
        }
        self.healthy_gauge.set(i64::from(ok));
    }
}

/// The indexed supervisor backend over one or more endpoints.
pub struct IndexedBackend {
    endpoints: Vec<Endpoint>,
    method: &'static str,
    strategy: Strategy,
    quorum: usize,
    unhealthy_for: Duration,
    next: AtomicUsize,
}

impl IndexedBackend {
    /// Builds the clients from `[supervisor]` (URLs were parsed with the config, so nothing can
    /// fail); `None` when no endpoint is configured.
    pub fn from_config(cfg: &SupervisorConfig) -> Option<Self> {
        if cfg.endpoints.is_empty() {
            return None;
        }
        let http = http_client(16);
        let mut endpoints = Vec::with_capacity(cfg.endpoints.len());
        for (i, e) in cfg.endpoints.iter().enumerate() {
            let url = e.url.clone();
            let name = if e.name.is_empty() { format!("supervisor-{i}") } else { e.name.clone() };
            let client = RpcClient::new("supervisor", name, url, cfg.timeout_ms, http.clone())
                .with_max_response_bytes(cfg.max_response_bytes);
            let healthy_gauge =
                metrics().endpoint_healthy.with_label_values(&["supervisor", client.name()]);
            healthy_gauge.set(1);
            endpoints.push(Endpoint { client, unhealthy_until: Mutex::new(None), healthy_gauge });
        }
        Some(Self {
            endpoints,
            method: match cfg.namespace {
                Namespace::Interop => "interop_checkAccessList",
                Namespace::Supervisor => "supervisor_checkAccessList",
            },
            strategy: cfg.strategy,
            quorum: cfg.quorum.max(1),
            unhealthy_for: cfg.unhealthy_ms,
            next: AtomicUsize::new(0),
        })
    }

    /// Applies a new `supervisor.timeout_ms` to the calls that start from now on (reload).
    pub fn set_timeout(&self, timeout: Duration) {
        for e in &self.endpoints {
            e.client.set_timeout(timeout);
        }
    }

    /// Asks one endpoint about every request in one HTTP request (a plain call for one, a
    /// JSON-RPC batch for more) and reads each answer strictly. The endpoint is healthy when it
    /// gave at least one JSON-RPC answer.
    async fn ask(&self, ep: &Endpoint, reqs: &[CheckRequest]) -> Vec<Verdict> {
        let answers = match reqs {
            [one] => vec![ep.client.call_raw(self.method, &params(one)).await],
            many => {
                let wire: Vec<Params<'_>> = many.iter().map(params).collect();
                match ep.client.batch(self.method, &wire).await {
                    Ok(answers) => answers,
                    Err(e) => many.iter().map(|_| Err(e.clone())).collect(),
                }
            }
        };
        let answered =
            answers.iter().any(|a| a.as_ref().map_or_else(|e| !e.is_no_answer(), |_| true));
        ep.mark(answered, self.unhealthy_for);
        reqs.iter().zip(answers).map(|(r, a)| verdict_of(r, a)).collect()
    }

    /// Endpoint indices in the order to try: healthy ones first (from `start`), then the rest.
    fn order(&self, start: usize) -> Vec<usize> {
        let n = self.endpoints.len();
        let rotated = (0..n).map(|i| (start + i) % n);
        let (mut healthy, sick): (Vec<_>, Vec<_>) =
            rotated.partition(|&i| self.endpoints[i].healthy());
        healthy.extend(sick);
        healthy
    }

    /// `first` / `health`: the checks still without an answer go to the next endpoint.
    async fn failover(&self, reqs: &[CheckRequest], start: usize) -> Vec<Verdict> {
        let mut verdicts: Vec<Verdict> =
            reqs.iter().map(|_| Verdict::Unavailable("no supervisor endpoint".into())).collect();
        let mut pending: Vec<usize> = (0..reqs.len()).collect();
        for i in self.order(start) {
            if pending.is_empty() {
                break;
            }
            let asked: Vec<CheckRequest> = pending.iter().map(|&k| reqs[k].clone()).collect();
            let got = self.ask(&self.endpoints[i], &asked).await;
            let mut still = Vec::new();
            for (k, v) in pending.into_iter().zip(got) {
                if matches!(v, Verdict::Unavailable(_)) {
                    still.push(k);
                }
                verdicts[k] = v;
            }
            pending = still;
        }
        verdicts
    }

    /// `any` / `quorum`: every endpoint is asked about every check; each check's answers are
    /// combined on their own.
    async fn all(&self, reqs: &[CheckRequest]) -> Vec<Verdict> {
        let answers = join_all(self.endpoints.iter().map(|e| self.ask(e, reqs))).await;
        (0..reqs.len())
            .map(|k| {
                let per_endpoint: Vec<Verdict> = answers.iter().map(|a| a[k].clone()).collect();
                match self.strategy {
                    Strategy::Quorum => combine_quorum(per_endpoint, self.quorum),
                    _ => combine_any(per_endpoint),
                }
            })
            .collect()
    }
}

/// `any`: failsafe from any endpoint rejects (a hard reject under every strategy); else one
/// accept suffices; else the worst answer.
pub fn combine_any(all: Vec<Verdict>) -> Verdict {
    if let Some(fs) = all.iter().find(|v| v.is_failsafe()) {
        return fs.clone();
    }
    if let Some(v) = all.iter().find(|v| v.is_valid()) {
        return v.clone();
    }
    pick_worst(all)
}

/// `quorum`: failsafe from any endpoint rejects; definitive verdicts that disagree reject (and
/// are counted); `quorum` agreeing definitive verdicts decide; else not-yet-known if any said
/// so; else no answer.
pub fn combine_quorum(all: Vec<Verdict>, quorum: usize) -> Verdict {
    if let Some(fs) = all.iter().find(|v| v.is_failsafe()) {
        return fs.clone();
    }
    let definitive: Vec<&Verdict> =
        all.iter().filter(|v| matches!(v, Verdict::Valid { .. } | Verdict::Invalid(_))).collect();
    let valid = definitive.iter().filter(|v| v.is_valid()).count();
    if valid > 0 && valid < definitive.len() {
        metrics().disagreements.with_label_values(&["supervisor_quorum"]).inc();
        tracing::warn!(valid, invalid = definitive.len() - valid, "supervisor endpoints disagree");
        return Verdict::Invalid(Rejection::new(
            codes::SUP_CONFLICTING_DATA,
            "supervisor endpoints disagree on this message",
        ));
    }
    if definitive.len() >= quorum {
        return definitive[0].clone();
    }
    if let Some(n) = all.iter().find(|v| matches!(v, Verdict::NotYetKnown(_))) {
        return n.clone();
    }
    Verdict::Unavailable(format!(
        "{} of {} supervisor endpoints gave a definitive answer, {quorum} needed",
        definitive.len(),
        all.len(),
    ))
}

/// Without an accept: a definitive invalid beats not-yet-known beats no answer.
fn pick_worst(all: Vec<Verdict>) -> Verdict {
    let rank = |v: &Verdict| match v {
        Verdict::Invalid(r) if r.code == codes::SUP_FAILSAFE => 0,
        Verdict::Invalid(_) => 1,
        Verdict::NotYetKnown(_) => 2,
        Verdict::Unavailable(_) => 3,
        Verdict::Valid { .. } => 4,
    };
    all.into_iter()
        .min_by_key(rank)
        .unwrap_or_else(|| Verdict::Unavailable("no supervisor endpoint".into()))
}

impl Backend for IndexedBackend {
    fn name(&self) -> &'static str {
        "indexed"
    }

    fn check<'a>(&'a self, req: &'a CheckRequest) -> BoxFuture<'a, Verdict> {
        Box::pin(
            async move { super::only_verdict(self.check_batch(std::slice::from_ref(req)).await) },
        )
    }

    /// One HTTP request per endpoint asked, whatever the number of checks. A check without
    /// messages passes without being sent (the protocol says an empty list passes).
    fn check_batch<'a>(&'a self, reqs: &'a [CheckRequest]) -> BoxFuture<'a, Vec<Verdict>> {
        Box::pin(async move {
            let valid =
                |r: &CheckRequest| Verdict::Valid { until: r.descriptor.end().unwrap_or(u64::MAX) };
            let sent: Vec<usize> =
                (0..reqs.len()).filter(|&k| !reqs[k].messages.is_empty()).collect();
            let mut out: Vec<Verdict> = reqs.iter().map(valid).collect();
            if sent.is_empty() {
                return out;
            }
            let asked: Vec<CheckRequest> = sent.iter().map(|&k| reqs[k].clone()).collect();
            let verdicts = match self.strategy {
                Strategy::First => self.failover(&asked, 0).await,
                Strategy::Health => {
                    let start = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
                    self.failover(&asked, start).await
                }
                Strategy::Any | Strategy::Quorum => self.all(&asked).await,
            };
            for (k, v) in sent.into_iter().zip(verdicts) {
                out[k] = v;
            }
            out
        })
    }

    /// An active probe: an empty access list, which every supervisor answers `null` cheaply
    /// (the protocol says an empty list passes). Ready when one endpoint answers exactly that.
    fn ready(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let probe = CheckRequest {
                messages: Vec::new().into(),
                min_safety: SafetyLevel::CrossUnsafe,
                descriptor: ExecutingDescriptor {
                    timestamp: crate::clock::unix_now(),
                    timeout: None,
                    chain_id: None,
                },
            };
            let probe = std::slice::from_ref(&probe);
            let answers = join_all(self.endpoints.iter().map(|e| self.ask(e, probe))).await;
            answers.iter().flatten().any(Verdict::is_valid)
        })
    }
}
