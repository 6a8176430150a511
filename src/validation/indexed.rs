//! The indexed backend: op-supervisor compatible `checkAccessList` endpoints.
//!
//! One pooled [`RpcClient`] per endpoint (never a connection per check). Answers are classified
//! by code only, exactly as op-reth and proxyd do (protocol.md): failsafe is a hard reject,
//! `-321401`/`-320400` are "not yet known", `-32603` and transport failures are no answer, every
//! other error is a definitive invalid.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::{join_all, BoxFuture};
use serde_json::value::RawValue;

use super::{Backend, CheckRequest, Rejection, Verdict};
use crate::config::{Namespace, Strategy, SupervisorConfig};
use crate::interop::access_list::encode_entries;
use crate::interop::{ExecutingDescriptor, SafetyLevel};
use crate::metrics::metrics;
use crate::rpc::client::{http_client, ClientError, RpcClient};
use crate::rpc::codes;
use crate::rpc::types::RpcError;

/// Classifies a supervisor's JSON-RPC error by its code (the message is kept for humans).
pub fn classify_error(e: &RpcError) -> Verdict {
    let reason = format!("supervisor: {}", e.message);
    match e.code {
        codes::SUP_FAILSAFE => Verdict::Invalid(Rejection::new(e.code, reason)),
        codes::SUP_FUTURE_DATA | codes::SUP_UNINITIALIZED => {
            Verdict::NotYetKnown(Rejection::new(e.code, reason))
        }
        codes::INTERNAL_ERROR => Verdict::Unavailable(reason),
        // Not an answer about the messages: a wrong namespace or a proxy in front of the
        // supervisor refusing the call (rate limits, size, busy). Treating these as
        // definitive would make a revalidator evict a whole pool; fail closed instead.
        codes::METHOD_NOT_FOUND
        | codes::INVALID_REQUEST
        | codes::PARSE_ERROR
        | codes::NO_BACKEND
        | codes::BATCH_TOO_LARGE
        | codes::BODY_TOO_LARGE
        | codes::RATE_LIMITED
        | codes::SENDER_RATE_LIMITED
        | codes::OVER_CAPACITY => Verdict::Unavailable(reason),
        // Every other code, including -32602 and the -3205xx..-3215xx range, is definitive.
        code => Verdict::Invalid(Rejection::new(code, reason)),
    }
}

/// The wire params of one check.
type Params<'a> = (Vec<alloy_primitives::B256>, SafetyLevel, &'a ExecutingDescriptor);

fn params(req: &CheckRequest) -> Params<'_> {
    (encode_entries(&req.messages), req.min_safety, &req.descriptor)
}

fn verdict_of(req: &CheckRequest, answer: Result<Box<RawValue>, ClientError>) -> Verdict {
    match answer {
        Ok(_) => Verdict::Valid { until: req.descriptor.end().unwrap_or(u64::MAX) },
        Err(ClientError::Rpc { error, .. }) => classify_error(&error),
        Err(e) => Verdict::Unavailable(e.to_string()),
    }
}

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
    /// Builds the clients from `[supervisor]`; `None` when no endpoint is configured.
    pub fn from_config(cfg: &SupervisorConfig) -> Result<Option<Self>, String> {
        if cfg.endpoints.is_empty() {
            return Ok(None);
        }
        let http = http_client(16);
        let mut endpoints = Vec::with_capacity(cfg.endpoints.len());
        for (i, e) in cfg.endpoints.iter().enumerate() {
            let url = reqwest::Url::parse(&e.url)
                .map_err(|err| format!("supervisor.endpoints[{i}].url: {err}"))?;
            let name = if e.name.is_empty() { format!("supervisor-{i}") } else { e.name.clone() };
            let client = RpcClient::new(
                "supervisor",
                name,
                url,
                Duration::from_millis(cfg.timeout_ms),
                http.clone(),
            );
            let healthy_gauge =
                metrics().endpoint_healthy.with_label_values(&["supervisor", client.name()]);
            healthy_gauge.set(1);
            endpoints.push(Endpoint { client, unhealthy_until: Mutex::new(None), healthy_gauge });
        }
        Ok(Some(Self {
            endpoints,
            method: match cfg.namespace {
                Namespace::Interop => "interop_checkAccessList",
                Namespace::Supervisor => "supervisor_checkAccessList",
            },
            strategy: cfg.strategy,
            quorum: cfg.quorum.max(1),
            unhealthy_for: Duration::from_millis(cfg.unhealthy_ms),
            next: AtomicUsize::new(0),
        }))
    }

    async fn ask(&self, ep: &Endpoint, req: &CheckRequest) -> Verdict {
        let answer = ep.client.call_raw(self.method, &params(req)).await;
        if let Err(e) = &answer {
            if e.is_no_answer() {
                ep.mark(false, self.unhealthy_for);
            }
        } else {
            ep.mark(true, self.unhealthy_for);
        }
        verdict_of(req, answer)
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

    async fn failover(&self, req: &CheckRequest, start: usize) -> Verdict {
        let mut last = Verdict::Unavailable("no supervisor endpoint".into());
        for i in self.order(start) {
            let v = self.ask(&self.endpoints[i], req).await;
            if !matches!(v, Verdict::Unavailable(_)) {
                return v;
            }
            last = v;
        }
        last
    }

    async fn any(&self, req: &CheckRequest) -> Verdict {
        let all = join_all(self.endpoints.iter().map(|e| self.ask(e, req))).await;
        // Failsafe is a hard reject under every strategy, even when another endpoint accepts.
        if let Some(fs) = all.iter().find(|v| v.is_failsafe()) {
            return fs.clone();
        }
        if let Some(v) = all.iter().find(|v| v.is_valid()) {
            return v.clone();
        }
        pick_worst(all)
    }

    async fn quorum(&self, req: &CheckRequest) -> Verdict {
        let all = join_all(self.endpoints.iter().map(|e| self.ask(e, req))).await;
        if let Some(fs) = all.iter().find(|v| v.is_failsafe()) {
            return fs.clone();
        }
        let definitive: Vec<&Verdict> = all
            .iter()
            .filter(|v| matches!(v, Verdict::Valid { .. } | Verdict::Invalid(_)))
            .collect();
        let valid = definitive.iter().filter(|v| v.is_valid()).count();
        if valid > 0 && valid < definitive.len() {
            metrics().disagreements.with_label_values(&["supervisor_quorum"]).inc();
            tracing::warn!(
                valid,
                invalid = definitive.len() - valid,
                "supervisor endpoints disagree"
            );
            return Verdict::Invalid(Rejection::new(
                codes::SUP_CONFLICTING_DATA,
                "supervisor endpoints disagree on this message",
            ));
        }
        if definitive.len() >= self.quorum {
            return definitive[0].clone();
        }
        if let Some(n) = all.iter().find(|v| matches!(v, Verdict::NotYetKnown(_))) {
            return n.clone();
        }
        Verdict::Unavailable(format!(
            "{} of {} supervisor endpoints gave a definitive answer, {} needed",
            definitive.len(),
            all.len(),
            self.quorum
        ))
    }
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
        Box::pin(async move {
            if req.messages.is_empty() {
                return Verdict::Valid { until: req.descriptor.end().unwrap_or(u64::MAX) };
            }
            match self.strategy {
                Strategy::First => self.failover(req, 0).await,
                Strategy::Health => {
                    let start = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
                    self.failover(req, start).await
                }
                Strategy::Any => self.any(req).await,
                Strategy::Quorum => self.quorum(req).await,
            }
        })
    }

    /// One HTTP request (a JSON-RPC batch) per call, to the first healthy endpoint, failing over
    /// to the next when it gives no answer. Quorum and any send the batch to every endpoint.
    fn check_batch<'a>(&'a self, reqs: &'a [CheckRequest]) -> BoxFuture<'a, Vec<Verdict>> {
        Box::pin(async move {
            if reqs.is_empty() {
                return Vec::new();
            }
            let wire: Vec<Params<'_>> = reqs.iter().map(params).collect();
            let mut last = String::from("no supervisor endpoint");
            for i in self.order(0) {
                let ep = &self.endpoints[i];
                match ep.client.batch(self.method, &wire).await {
                    Ok(answers) => {
                        ep.mark(true, self.unhealthy_for);
                        return reqs.iter().zip(answers).map(|(r, a)| verdict_of(r, a)).collect();
                    }
                    Err(ClientError::Rpc { error, .. }) => {
                        let v = classify_error(&error);
                        return reqs.iter().map(|_| v.clone()).collect();
                    }
                    Err(e) => {
                        ep.mark(false, self.unhealthy_for);
                        last = e.to_string();
                    }
                }
            }
            reqs.iter().map(|_| Verdict::Unavailable(last.clone())).collect()
        })
    }

    /// An active probe: an empty access list, which every supervisor answers `null` cheaply
    /// (the protocol says an empty list passes). Ready when one endpoint answers.
    fn ready(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let probe = CheckRequest {
                messages: Vec::new().into(),
                min_safety: SafetyLevel::Unsafe,
                descriptor: ExecutingDescriptor {
                    timestamp: crate::clock::unix_now(),
                    timeout: None,
                    chain_id: None,
                },
            };
            let answers = join_all(self.endpoints.iter().map(|e| self.ask(e, &probe))).await;
            answers.iter().any(|v| !matches!(v, Verdict::Unavailable(_)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified_like_op_reth_and_proxyd() {
        let v = |code| classify_error(&RpcError::new(code, "x"));
        assert!(v(codes::SUP_FAILSAFE).is_failsafe());
        assert!(matches!(v(codes::SUP_FUTURE_DATA), Verdict::NotYetKnown(_)));
        assert!(matches!(v(codes::SUP_UNINITIALIZED), Verdict::NotYetKnown(_)));
        assert!(matches!(v(codes::INTERNAL_ERROR), Verdict::Unavailable(_)));
        for code in [codes::METHOD_NOT_FOUND, codes::RATE_LIMITED, codes::OVER_CAPACITY] {
            assert!(matches!(v(code), Verdict::Unavailable(_)), "{code}: a proxy's refusal");
        }
        for code in [
            codes::SUP_SKIPPED_DATA,
            codes::SUP_UNKNOWN_CHAIN,
            codes::SUP_CONFLICTING_DATA,
            codes::SUP_INEFFECTIVE_DATA,
            codes::SUP_OUT_OF_ORDER,
            codes::SUP_AWAITING_REPLACEMENT,
            codes::SUP_ITER_STOP,
            codes::SUP_OUT_OF_SCOPE,
            codes::SUP_NO_PARENT_OF_FIRST,
            codes::SUP_MISSED_DATA,
            codes::SUP_DATA_CORRUPTION,
            codes::INVALID_PARAMS,
        ] {
            assert!(matches!(v(code), Verdict::Invalid(ref r) if r.code == code), "{code}");
        }
    }
}
