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

/// All metrics of the process.
pub struct Metrics {
    registry: Registry,
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
    /// Current interop mode at the ingress (1 for the active mode label).
    pub interop_mode: IntGaugeVec,
    /// Revalidator gauges (`pool_txs`, `tracked_txs`, `presumed_blocks`, `failsafe`), by what.
    pub revalidator_state: IntGaugeVec,
    /// Backend requests sent by one revalidation pass, by pass kind (`near`, `full`).
    pub revalidator_requests_per_pass: HistogramVec,
    /// Duration of one revalidation pass (pool read included), by pass kind.
    pub revalidator_pass_duration: HistogramVec,
    /// Txs the revalidator published as invalid, by reason.
    pub revalidator_invalid: IntCounterVec,
    /// Drop-in `checkAccessList` calls, by how they were answered (`cache`, `forward`).
    pub revalidator_checks: IntCounterVec,
    /// Pool txs the revalidator skipped, by why (`undecodable`, `over_limit`).
    pub revalidator_skipped: IntCounterVec,
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
        Self {
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
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static M: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &M
}
