//! Prometheus metrics. The registry is the one process-wide global: every metric is registered
//! once here, so names and labels live in one place and the dashboard test can list them.
//!
//! Label rule: endpoints are labelled by their configured *name*, never by URL (URLs carry
//! credentials); methods by name only when the listener knows them (else `other`), so
//! cardinality stays bounded whatever clients send.

use std::sync::LazyLock;

use prometheus::{
    exponential_buckets, Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::config::Config;

/// The package version, the git commit and the rustc that built it (see `build.rs`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Short git commit of the build, or `unknown` when built outside a git checkout.
pub const COMMIT: &str = env!("INTEROP_GATE_COMMIT");
/// `rustc --version` of the build, or `unknown`.
pub const RUSTC: &str = env!("INTEROP_GATE_RUSTC");
/// What `--version` prints after the program name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("INTEROP_GATE_COMMIT"),
    ", ",
    env!("INTEROP_GATE_RUSTC"),
    ")"
);

/// All metrics of the process.
pub struct Metrics {
    registry: Registry,
    /// Unprefixed metrics with conventional names (`process_*` from the process collector).
    plain: Registry,
    /// Always 1; the labels say which build runs (`version`, `commit`, `rustc`).
    pub build_info: IntGaugeVec,
    /// What `/readyz` would answer (1 ready, 0 not), by part (`all`, `upstream`, `validation`),
    /// probed when `/metrics` is scraped.
    pub ready: IntGaugeVec,
    /// Requests served, by listener, method and outcome (`ok` or an error label).
    pub rpc_requests: IntCounterVec,
    /// Time to answer one call, by listener and method.
    pub rpc_duration: HistogramVec,
    /// HTTP requests that carried a batch, by listener.
    pub rpc_batches: IntCounterVec,
    /// Calls to external services, by target (`upstream`, `supervisor`, `chain`), endpoint name
    /// and outcome (`ok`, `rpc_error`, `timeout`, `transport`, `http_status`, `too_large`, `decode`).
    pub external_calls: IntCounterVec,
    /// Latency of calls to external services, by target and endpoint name.
    pub external_duration: HistogramVec,
    /// Verdicts, by deciding component (`indexed`, `light`, `policy`, ...), verdict kind and reason.
    pub verdicts: IntCounterVec,
    /// Cache lookups, by cache and result (`hit`, `miss`).
    pub cache: IntCounterVec,
    /// Identical concurrent work merged into one call, by what was merged.
    pub coalesced: IntCounterVec,
    /// Checks per wire request sent by a backend's batching layer (single checks gathered
    /// while another batch was in flight), by backend.
    pub check_batch_size: HistogramVec,
    /// Single checks a batching layer gave no answer because its queue was full, by backend.
    pub check_batch_queue_full: IntCounterVec,
    /// Re-tests after delay, by outcome.
    pub retries: IntCounterVec,
    /// Split verdicts between the two backends.
    pub disagreements: IntCounterVec,
    /// Endpoint health (1 healthy, 0 marked unhealthy), by target and endpoint name.
    pub endpoint_healthy: IntGaugeVec,
    /// Canonical blocks the light backend saw replaced, by chain.
    pub reorgs: IntCounterVec,
    /// Chain RPC answers refused as not about what was asked (logs of another block, a header
    /// of another height, a receipts root that does not match), by chain, endpoint and why.
    pub chain_answers_rejected: IntCounterVec,
    /// Transactions handled by the ingress, by outcome (`forwarded`, `refused`) and reason.
    pub ingress_txs: IntCounterVec,
    /// Validations currently in flight at the ingress.
    pub validations_in_flight: IntGauge,
    /// Open client connections, by listener.
    pub connections_open: IntGaugeVec,
    /// Connections refused because the listener was at its connection cap, by listener.
    pub connections_refused: IntCounterVec,
    /// Connections cut by a timeout, by listener and reason (`header_timeout`, `idle_timeout`).
    pub connections_cut: IntCounterVec,
    /// Current interop mode at the ingress (1 for the active mode label).
    pub interop_mode: IntGaugeVec,
    /// Revalidator gauges (`pool_txs`, `tracked_txs`, `presumed_blocks`, `failsafe`), by what.
    pub revalidator_state: IntGaugeVec,
    /// Backend requests sent by one revalidation pass, by pass kind (`near`, `full`, and
    /// `event`: a re-check driven by a source-chain reorg).
    pub revalidator_requests_per_pass: HistogramVec,
    /// Duration of one revalidation pass (pool read included), by pass kind.
    pub revalidator_pass_duration: HistogramVec,
    /// Txs the revalidator published as invalid, by reason.
    pub revalidator_invalid: IntCounterVec,
    /// Drop-in `checkAccessList` calls, by how they were answered (`cache`, `forward`).
    pub revalidator_checks: IntCounterVec,
    /// Pool txs the revalidator skipped, by why (`undecodable`, `over_limit`).
    pub revalidator_skipped: IntCounterVec,
    /// Pool-mirror deltas, by event (`added`, `replaced`, `known`, `over_limit`, `undecodable`,
    /// `included`, `reorg`, `heads_dropped`, `subscribed`, `lost`, `unsupported`).
    pub revalidator_mirror_events: IntCounterVec,
    /// Txs a reconciliation repaired in the pool mirror, by kind (`added`: missed, `removed`:
    /// stale). Non-zero means announcements alone drifted.
    pub revalidator_mirror_repairs: IntCounterVec,
    /// Whether the shared Redis answered the last call (1) or not (0); 0 without `[redis]`.
    pub redis_up: IntGauge,
    /// Decisions taken without Redis because it failed, by what (`limits`, `verdicts`) and the
    /// path taken (`local`, `allow`, `refuse`, `backend`).
    pub redis_fallbacks: IntCounterVec,
    /// Shared rate-limit decisions by where their tokens came from: `lease` (this replica's
    /// leased tokens, no Redis call) or `redis` (one script call).
    pub rate_decisions: IntCounterVec,
    /// Leased rate-limit tokens by event: `leased` (taken from Redis beyond the one a decision
    /// spends) and `dropped` (expired or evicted unspent: the under-admission leases cost).
    pub rate_lease_tokens: IntCounterVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    // 50 µs .. ~26 s.
    let buckets = exponential_buckets(0.00005, 2.0, 20).expect("valid buckets");
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("metric registered once");
    h
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("metric registered once");
    g
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new_custom(Some("interop_gate".into()), None).expect("valid registry");
        let validations_in_flight =
            IntGauge::new("validations_in_flight", "Validations in flight at the ingress")
                .expect("valid metric");
        r.register(Box::new(validations_in_flight.clone())).expect("metric registered once");
        let build_info = gauge_vec(
            &r,
            "build_info",
            "Build of the running binary (always 1)",
            &["version", "commit", "rustc"],
        );
        build_info.with_label_values(&[VERSION, COMMIT, RUSTC]).set(1);
        let plain = Registry::new();
        #[cfg(target_os = "linux")]
        {
            // CPU, RSS, open fds, start time: what every Prometheus target exports.
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            plain.register(Box::new(pc)).expect("process collector registered once");
        }
        let redis_up = IntGauge::new("redis_up", "Whether the shared Redis answered the last call")
            .expect("valid metric");
        r.register(Box::new(redis_up.clone())).expect("metric registered once");
        Self {
            plain,
            build_info,
            ready: gauge_vec(&r, "ready", "Readiness as /readyz reports it (1 ready)", &["part"]),
            rpc_requests: counter(
                &r,
                "rpc_requests_total",
                "JSON-RPC calls served",
                &["listener", "method", "outcome"],
            ),
            rpc_duration: histogram(
                &r,
                "rpc_request_duration_seconds",
                "Time to answer one JSON-RPC call",
                &["listener", "method"],
            ),
            rpc_batches: counter(
                &r,
                "rpc_batches_total",
                "HTTP requests carrying a JSON-RPC batch",
                &["listener"],
            ),
            external_calls: counter(
                &r,
                "external_calls_total",
                "Calls to external services",
                &["target", "endpoint", "outcome"],
            ),
            external_duration: histogram(
                &r,
                "external_call_duration_seconds",
                "Latency of calls to external services",
                &["target", "endpoint"],
            ),
            verdicts: counter(
                &r,
                "verdicts_total",
                "Validation verdicts",
                &["component", "verdict", "reason"],
            ),
            cache: counter(&r, "cache_lookups_total", "Cache lookups", &["cache", "result"]),
            coalesced: counter(
                &r,
                "coalesced_total",
                "Identical concurrent work merged into one call",
                &["what"],
            ),
            check_batch_size: {
                // 1 .. 1024 checks.
                let buckets = exponential_buckets(1.0, 2.0, 11).expect("valid buckets");
                let opts = HistogramOpts::new(
                    "check_batch_size",
                    "Checks per wire request sent by a batching layer",
                )
                .buckets(buckets);
                let h = HistogramVec::new(opts, &["backend"]).expect("valid metric");
                r.register(Box::new(h.clone())).expect("metric registered once");
                h
            },
            check_batch_queue_full: counter(
                &r,
                "check_batch_queue_full_total",
                "Single checks given no answer because the batching queue was full",
                &["backend"],
            ),
            retries: counter(&r, "retries_total", "Re-tests after delay", &["outcome"]),
            reorgs: counter(&r, "reorgs_total", "Canonical blocks seen replaced", &["chain"]),
            chain_answers_rejected: counter(
                &r,
                "chain_answers_rejected_total",
                "Chain RPC answers refused as not about what was asked",
                &["chain", "endpoint", "why"],
            ),
            disagreements: counter(
                &r,
                "backend_disagreements_total",
                "Split verdicts between backends",
                &["kind"],
            ),
            endpoint_healthy: gauge_vec(
                &r,
                "endpoint_healthy",
                "Endpoint health (1 healthy, 0 unhealthy)",
                &["target", "endpoint"],
            ),
            ingress_txs: counter(
                &r,
                "ingress_transactions_total",
                "Transactions handled by the ingress",
                &["outcome", "reason"],
            ),
            validations_in_flight,
            connections_open: gauge_vec(
                &r,
                "connections_open",
                "Open client connections",
                &["listener"],
            ),
            connections_refused: counter(
                &r,
                "connections_refused_total",
                "Connections refused at the connection cap",
                &["listener"],
            ),
            connections_cut: counter(
                &r,
                "connections_cut_total",
                "Connections cut by a header or idle timeout",
                &["listener", "reason"],
            ),
            interop_mode: gauge_vec(
                &r,
                "interop_mode",
                "Active interop mode at the ingress (1 = active)",
                &["mode"],
            ),
            revalidator_state: gauge_vec(
                &r,
                "revalidator_state",
                "Revalidator pool and pass state",
                &["what"],
            ),
            revalidator_requests_per_pass: {
                // 1 .. 2048 requests.
                let buckets = exponential_buckets(1.0, 2.0, 12).expect("valid buckets");
                let opts = HistogramOpts::new(
                    "revalidator_requests_per_pass",
                    "Backend requests per revalidation pass",
                )
                .buckets(buckets);
                let h = HistogramVec::new(opts, &["kind"]).expect("valid metric");
                r.register(Box::new(h.clone())).expect("metric registered once");
                h
            },
            revalidator_pass_duration: histogram(
                &r,
                "revalidator_pass_duration_seconds",
                "Duration of one revalidation pass",
                &["kind"],
            ),
            revalidator_invalid: counter(
                &r,
                "revalidator_invalid_total",
                "Txs published as invalid by the revalidator",
                &["reason"],
            ),
            revalidator_checks: counter(
                &r,
                "revalidator_checks_total",
                "Drop-in checkAccessList calls by answer source",
                &["answer"],
            ),
            revalidator_skipped: counter(
                &r,
                "revalidator_skipped_txs_total",
                "Pool txs skipped by the revalidator",
                &["why"],
            ),
            revalidator_mirror_events: counter(
                &r,
                "revalidator_mirror_events_total",
                "Pool-mirror deltas taken from the EL, by event",
                &["event"],
            ),
            revalidator_mirror_repairs: counter(
                &r,
                "revalidator_mirror_repairs_total",
                "Txs a full reconciliation repaired in the pool mirror, by kind",
                &["kind"],
            ),
            redis_up,
            redis_fallbacks: counter(
                &r,
                "redis_fallbacks_total",
                "Decisions taken without the shared Redis, by what and path taken",
                &["what", "path"],
            ),
            rate_decisions: counter(
                &r,
                "shared_rate_decisions_total",
                "Shared rate-limit decisions by where their tokens came from (lease, redis)",
                &["path"],
            ),
            rate_lease_tokens: counter(
                &r,
                "shared_rate_lease_tokens_total",
                "Rate-limit tokens leased from Redis, and leased tokens dropped unspent",
                &["event"],
            ),
            registry: r,
        }
    }

    /// The registry, for extra registrations by roles.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let mut families = self.registry.gather();
        families.extend(self.plain.gather());
        let _ = TextEncoder::new().encode(&families, &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static M: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &M
}

/// Every label value a call site may use, so [`init_series`] can export them at 0.
pub mod labels {
    /// `external_calls_total{outcome}`: `ok` and every `ClientError::kind`.
    pub const CALL_OUTCOMES: [&str; 7] =
        ["ok", "rpc_error", "timeout", "transport", "http_status", "too_large", "decode"];
    /// `verdicts_total{verdict, reason}`: each verdict kind with its usual reasons.
    pub const VERDICTS: [(&str, &str); 7] = [
        ("valid", "ok"),
        ("invalid", "conflicting_data"),
        ("invalid", "unknown_chain"),
        ("invalid", "failsafe"),
        ("not_yet_known", "future_data"),
        ("not_yet_known", "uninitialized"),
        ("unavailable", "unavailable"),
    ];
    /// `retries_total{outcome}`.
    pub const RETRY_OUTCOMES: [&str; 5] =
        ["accepted", "invalid", "still_unknown", "unavailable", "queue_full"];
    /// `backend_disagreements_total{kind}`.
    pub const DISAGREEMENTS: [&str; 4] =
        ["backends_split", "shadow_split", "supervisor_quorum", "chain_endpoints"];
    /// `ingress_transactions_total{outcome, reason}` for forwarded txs.
    pub const FORWARD_REASONS: [&str; 3] = ["non_interop", "bypass", "valid"];
    /// `cache_lookups_total{cache, result}`.
    pub const CACHE: [(&str, &str); 8] = [
        ("verdict", "miss"),
        ("verdict_invalid", "hit"),
        ("verdict_soft_invalid", "hit"),
        ("verdict_valid", "hit"),
        ("block_logs", "hit"),
        ("block_logs", "miss"),
        ("headers", "hit"),
        ("headers", "miss"),
    ];
    /// `revalidator_invalid_total{reason}`.
    pub const REVALIDATOR_INVALID: [&str; 4] =
        ["conflicting_data", "unknown_chain", "internal_error", "other"];
    /// `revalidator_state{what}`.
    pub const REVALIDATOR_STATE: [&str; 6] =
        ["pool_txs", "tracked_txs", "presumed_blocks", "failsafe", "mirror_live", "mirror_txs"];
    /// `revalidator_mirror_events_total{event}`.
    pub const REVALIDATOR_MIRROR_EVENTS: [&str; 11] = [
        "added",
        "replaced",
        "known",
        "over_limit",
        "undecodable",
        "included",
        "reorg",
        "heads_dropped",
        "subscribed",
        "lost",
        "unsupported",
    ];
}

/// The name the light backend gives an endpoint of a `[[light.chains]]` entry, and the chain's
/// label (its decimal id), mirroring `LightBackend::from_config`.
fn light_chain_labels(c: &crate::config::ChainRpcConfig) -> (String, Vec<String>) {
    let label = c.chain_id.to_string();
    let names = c
        .endpoints
        .iter()
        .enumerate()
        .map(|(j, e)| if e.name.is_empty() { format!("chain-{label}-{j}") } else { e.name.clone() })
        .collect();
    (label, names)
}

/// Creates, at 0, every labelled series the service can already name at start-up: endpoints
/// (by configured name) with every call outcome, chains, verdict kinds, retry and refusal
/// outcomes, allow-listed methods, revalidator pass kinds. A series that appears only after its
/// first event leaves dashboards empty on a healthy system and makes `increase()` miss that first
/// event, so everything knowable is exported from the start. Called once by `app::start`.
pub fn init_series(cfg: &Config) {
    let m = metrics();
    // Redis fallbacks (0 for ever without `[redis] url`), so the alert sees the first one.
    m.redis_fallbacks.with_label_values(&["limits", cfg.redis.on_error.as_str()]).inc_by(0);
    m.redis_fallbacks.with_label_values(&["verdicts", "backend"]).inc_by(0);
    let needs_engine = cfg.ingress.enabled || cfg.revalidator.enabled;
    let mut targets: Vec<(&'static str, String)> = Vec::new();
    if cfg.ingress.enabled {
        targets.push(("upstream", "upstream".into()));
    }
    if cfg.revalidator.enabled {
        targets.push(("el", "el".into()));
    }
    if needs_engine {
        targets.extend(cfg.supervisor.endpoints.iter().map(|e| ("supervisor", e.name.clone())));
    }
    let uses_light = needs_engine || cfg.light_server.enabled;
    let chains: Vec<_> = if uses_light {
        cfg.light.chains.iter().map(light_chain_labels).collect()
    } else {
        Vec::new()
    };
    for (label, names) in &chains {
        m.reorgs.with_label_values(&[label]).inc_by(0);
        for name in names {
            for why in crate::validation::light::REJECTED_ANSWER_REASONS {
                m.chain_answers_rejected.with_label_values(&[label, name, why]).inc_by(0);
            }
        }
        targets.extend(names.iter().map(|n| ("chain", n.clone())));
    }
    for (target, name) in &targets {
        m.external_duration.with_label_values(&[*target, name.as_str()]);
        for outcome in labels::CALL_OUTCOMES {
            m.external_calls.with_label_values(&[*target, name.as_str(), outcome]).inc_by(0);
        }
    }
    for e in &cfg.supervisor.endpoints {
        if needs_engine {
            // The indexed backend sets 1 when it builds the endpoint; 0 only after a failure.
            m.endpoint_healthy.with_label_values(&["supervisor", &e.name]);
        }
    }

    let has_backend = !cfg.supervisor.endpoints.is_empty() || !cfg.light.chains.is_empty();
    if needs_engine && has_backend {
        let mut components = vec!["engine"];
        if !cfg.supervisor.endpoints.is_empty() {
            components.push("indexed");
            m.check_batch_size.with_label_values(&["indexed"]);
            m.check_batch_queue_full.with_label_values(&["indexed"]).inc_by(0);
        }
        if !cfg.light.chains.is_empty() {
            components.push("light");
        }
        for c in components {
            for (verdict, reason) in labels::VERDICTS {
                m.verdicts.with_label_values(&[c, verdict, reason]).inc_by(0);
            }
        }
        if cfg.ingress.enabled {
            // Retry-after-delay runs in the ingress only.
            for o in labels::RETRY_OUTCOMES {
                m.retries.with_label_values(&[o]).inc_by(0);
            }
        }
        for k in labels::DISAGREEMENTS {
            m.disagreements.with_label_values(&[k]).inc_by(0);
        }
        m.coalesced.with_label_values(&["verdict"]).inc_by(0);
    }
    if needs_engine || cfg.light_server.enabled {
        for (cache, result) in labels::CACHE {
            m.cache.with_label_values(&[cache, result]).inc_by(0);
        }
    }

    if cfg.ingress.enabled {
        for reason in labels::FORWARD_REASONS {
            for outcome in ["forwarded", "upstream_error"] {
                m.ingress_txs.with_label_values(&[outcome, reason]).inc_by(0);
            }
        }
        for reason in crate::ingress::refusal::Refusal::LABELS {
            m.ingress_txs.with_label_values(&["refused", reason]).inc_by(0);
        }
        m.rpc_batches.with_label_values(&["ingress"]).inc_by(0);
        for method in &cfg.upstream.methods {
            m.rpc_requests.with_label_values(&["ingress", method, "ok"]).inc_by(0);
            m.rpc_duration.with_label_values(&["ingress", method]);
        }
        m.rpc_requests.with_label_values(&["ingress", "other", "method_not_found"]).inc_by(0);
    }

    if cfg.revalidator.enabled {
        for kind in ["near", "full", "event"] {
            m.revalidator_requests_per_pass.with_label_values(&[kind]);
            m.revalidator_pass_duration.with_label_values(&[kind]);
        }
        for reason in labels::REVALIDATOR_INVALID {
            m.revalidator_invalid.with_label_values(&[reason]).inc_by(0);
        }
        for answer in ["cache", "forward"] {
            m.revalidator_checks.with_label_values(&[answer]).inc_by(0);
        }
        for why in ["undecodable", "over_limit"] {
            m.revalidator_skipped.with_label_values(&[why]).inc_by(0);
        }
        for what in labels::REVALIDATOR_STATE {
            m.revalidator_state.with_label_values(&[what]);
        }
        if cfg.revalidator.el_ws_url.is_some() {
            for event in labels::REVALIDATOR_MIRROR_EVENTS {
                m.revalidator_mirror_events.with_label_values(&[event]).inc_by(0);
            }
            for kind in ["added", "removed"] {
                m.revalidator_mirror_repairs.with_label_values(&[kind]).inc_by(0);
            }
        }
    }
}
