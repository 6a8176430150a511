//! WebSocket and bundle metrics. Registered on the process registry (see [`crate::metrics`]) the
//! first time the ingress is built, with every label value created up front so that dashboards
//! see zeros instead of gaps before the first connection.

use std::sync::LazyLock;

use prometheus::{IntCounterVec, IntGaugeVec, Opts};

use crate::metrics::metrics;

/// The WebSocket and bundle metrics.
pub struct WsMetrics {
    /// Open WebSocket connections, by side (`client`: to the gateway, `upstream`: to the EL).
    pub connections: IntGaugeVec,
    /// Open subscriptions proxied for clients.
    pub subscriptions: IntGaugeVec,
    /// WebSocket messages, by direction (`client_in`, `client_out`, `upstream_in`,
    /// `upstream_out`) and outcome.
    pub messages: IntCounterVec,
    /// Client connections closed by the gateway or the client, by reason.
    pub closed: IntCounterVec,
    /// Upstream WebSocket connection attempts, by outcome (`ok`, `failed`).
    pub upstream_connects: IntCounterVec,
    /// `eth_sendBundle` calls, by outcome (`forwarded`, `upstream_error`, `refused`) and reason.
    pub bundles: IntCounterVec,
}

/// Label values created at registration, so every series exists from start-up.
const MESSAGES: &[(&str, &str)] = &[
    ("client_in", "text"),
    ("client_in", "invalid"),
    ("client_out", "response"),
    ("client_out", "notification"),
    ("client_out", "dropped"),
    ("upstream_out", "ok"),
    ("upstream_out", "failed"),
    ("upstream_in", "response"),
    ("upstream_in", "notification"),
    ("upstream_in", "unmatched"),
];
const CLOSE_REASONS: &[&str] = &[
    "client_closed",
    "idle",
    "slow_client",
    "pong_timeout",
    "too_large",
    "protocol_error",
    "upstream_lost",
    "shutdown",
    "rejected_over_capacity",
];

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    metrics().registry().register(Box::new(c.clone())).expect("metric registered once");
    c
}

/// The WebSocket and bundle metrics (registered on first use).
pub fn ws_metrics() -> &'static WsMetrics {
    static M: LazyLock<WsMetrics> = LazyLock::new(|| {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            metrics().registry().register(Box::new(g.clone())).expect("metric registered once");
            g
        };
        let m = WsMetrics {
            connections: gauge("ws_connections", "Open WebSocket connections", &["side"]),
            subscriptions: gauge(
                "ws_subscriptions",
                "Open subscriptions proxied for WebSocket clients, by kind",
                &["kind"],
            ),
            messages: counter(
                "ws_messages_total",
                "WebSocket messages by direction and outcome",
                &["direction", "outcome"],
            ),
            closed: counter(
                "ws_closed_total",
                "Client WebSocket connections closed, by reason",
                &["reason"],
            ),
            upstream_connects: counter(
                "ws_upstream_connects_total",
                "Upstream WebSocket connection attempts",
                &["outcome"],
            ),
            bundles: counter(
                "ingress_bundles_total",
                "eth_sendBundle calls handled by the ingress",
                &["outcome", "reason"],
            ),
        };
        for side in ["client", "upstream"] {
            m.connections.with_label_values(&[side]);
        }
        for (d, o) in MESSAGES {
            m.messages.with_label_values(&[d, o]);
        }
        for r in CLOSE_REASONS {
            m.closed.with_label_values(&[r]);
        }
        for o in ["ok", "failed"] {
            m.upstream_connects.with_label_values(&[o]);
        }
        for (o, r) in [("forwarded", "valid"), ("forwarded", "non_interop")] {
            m.bundles.with_label_values(&[o, r]);
        }
        m
    });
    &M
}

/// Counts one message.
pub fn message(direction: &'static str, outcome: &'static str) {
    ws_metrics().messages.with_label_values(&[direction, outcome]).inc();
}

/// Increments a gauge now and decrements it when dropped (also on cancellation).
pub struct GaugeGuard(prometheus::IntGauge);

impl GaugeGuard {
    /// `gauge` + 1 until the guard drops.
    pub fn new(gauge: prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
