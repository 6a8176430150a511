//! Metrics on a freshly started service, before any client traffic: every labelled series the
//! service can name from its config exists (at 0), the build and process metrics are there, and
//! every `interop_gate_*` metric the alert rules (`deploy/prometheus/alerts.yml`) use is exported.
//! The registry is process-wide and the integration tests share one process, so the test re-runs
//! itself in a fresh child process (the same test binary, filtered to this one test) and the
//! scrape sees a registry no other test has touched.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use interop_gate::dev::chain::SimChain;
use interop_gate::dev::spawn_peer;
use interop_gate::dev::supervisor::MockSupervisor;

/// The value of the series `name{labels...}` (labels matched as a subset), if exported.
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (head, value) = l.rsplit_once(' ')?;
        let (n, rest) = head.split_once('{').unwrap_or((head, "}"));
        if n != name {
            return None;
        }
        let all = labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        all.then(|| value.parse().ok()).flatten()
    })
}

/// Metric names (`interop_gate_*`) the alert rules' expressions use.
fn alert_metrics() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/alerts.yml");
    let text = std::fs::read_to_string(path).expect("alerts.yml");
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim_start();
        // Only expressions: `expr:` lines and the continuation lines of a `expr: |` block.
        if line.starts_with("summary:") || line.starts_with("description:") || line.starts_with('#')
        {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("interop_gate_") {
            let tail = &rest[i..];
            let end =
                tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            names.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    names
}

/// Every `runbook_url` of alerts.yml points at a heading that exists in docs/operations.md.
fn runbook_anchors_exist() {
    let root = env!("CARGO_MANIFEST_DIR");
    let rules = std::fs::read_to_string(format!("{root}/deploy/prometheus/alerts.yml")).unwrap();
    let docs = std::fs::read_to_string(format!("{root}/docs/operations.md")).unwrap();
    // GitHub's anchor of a heading: lower case, spaces to dashes, punctuation dropped.
    let anchors: BTreeSet<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| {
            h.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let alerts = rules.lines().filter(|l| l.trim_start().starts_with("- alert:")).count();
    let urls: Vec<&str> =
        rules.lines().filter_map(|l| l.trim().strip_prefix("runbook_url: ")).collect();
    assert_eq!(urls.len(), alerts, "every alert has a runbook_url");
    for url in urls {
        let url = url.trim_matches('"');
        let (file, anchor) = url.split_once('#').expect("an anchor");
        assert_eq!(file, "docs/operations.md", "{url}");
        assert!(anchors.contains(anchor), "no section #{anchor} in docs/operations.md");
    }
}

#[test]
fn every_known_series_and_every_alert_metric_is_exported_before_any_traffic() {
    common::in_fresh_process(
        "metrics_init::every_known_series_and_every_alert_metric_is_exported_before_any_traffic",
        scrape_a_fresh_service,
    );
}

async fn scrape_a_fresh_service() {
    runbook_anchors_exist();
    let chain = SimChain::new(SOURCE, now() - 3_600, 2);
    let chain_peer = spawn_peer("chain", chain.clone(), "127.0.0.1:0").await.unwrap();
    let el = SimChain::new(DEST, now() - 3_600, 2);
    let el_peer = spawn_peer("el", el.clone(), "127.0.0.1:0").await.unwrap();
    let sup = Arc::new(MockSupervisor::new());
    let sup_peer = spawn_peer("sup", sup.clone(), "127.0.0.1:0").await.unwrap();
    let (chain_url, sup_url, el_url) = (chain_peer.url(), sup_peer.url(), el_peer.url());
    let gw = gateway(move |c| {
        c.ingress.chain_id = DEST;
        c.supervisor.endpoints = vec![endpoint("sup-a", sup_url)];
        c.light.chains = vec![light_chain(SOURCE, &[chain_url])];
        c.light.reorg_watch_ms = std::time::Duration::ZERO;
        c.light_server.enabled = true;
        c.revalidator.enabled = true;
        c.revalidator.el_url = interop_gate::dev::parse_url(&el_url);
        c.revalidator.chain_id = Some(DEST);
    })
    .await;
    let text = reqwest::get(gw.metrics_url("/metrics")).await.unwrap().text().await.unwrap();
    let has = |name: &str, labels: &[(&str, &str)]| {
        assert!(series(&text, name, labels).is_some(), "{name}{labels:?} missing:\n{text}");
    };
    let zero = |name: &str, labels: &[(&str, &str)]| {
        assert_eq!(series(&text, name, labels), Some(0.0), "{name}{labels:?}:\n{text}");
    };

    assert_eq!(
        series(
            &text,
            "interop_gate_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", interop_gate::metrics::COMMIT),
                ("rustc", interop_gate::metrics::RUSTC)
            ]
        ),
        Some(1.0)
    );
    assert_ne!(interop_gate::metrics::COMMIT, "", "build.rs sets the commit");
    has("process_resident_memory_bytes", &[]);
    has("process_cpu_seconds_total", &[]);
    has("process_open_fds", &[]);
    has("interop_gate_ready", &[("part", "all")]);

    // Endpoints (by name) with every outcome, per target.
    for (target, endpoint) in [("upstream", "upstream"), ("supervisor", "sup-a"), ("chain", "c0")] {
        for outcome in
            ["ok", "rpc_error", "timeout", "transport", "http_status", "too_large", "decode"]
        {
            has(
                "interop_gate_external_calls_total",
                &[("target", target), ("endpoint", endpoint), ("outcome", outcome)],
            );
        }
        has(
            "interop_gate_external_call_duration_seconds_count",
            &[("target", target), ("endpoint", endpoint)],
        );
    }
    has("interop_gate_external_calls_total", &[("target", "el"), ("outcome", "timeout")]);
    assert_eq!(series(&text, "interop_gate_endpoint_healthy", &[("endpoint", "sup-a")]), Some(1.0));
    // Chains, verdict kinds, disagreements, retries.
    zero("interop_gate_reorgs_total", &[("chain", &SOURCE.to_string())]);
    for why in interop_gate::validation::light::REJECTED_ANSWER_REASONS {
        zero(
            "interop_gate_chain_answers_rejected_total",
            &[("chain", &SOURCE.to_string()), ("why", why)],
        );
    }
    for component in ["engine", "indexed", "light"] {
        for (verdict, reason) in
            [("valid", "ok"), ("invalid", "conflicting_data"), ("not_yet_known", "future_data")]
        {
            zero(
                "interop_gate_verdicts_total",
                &[("component", component), ("verdict", verdict), ("reason", reason)],
            );
        }
        zero(
            "interop_gate_verdicts_total",
            &[("component", component), ("verdict", "unavailable")],
        );
    }
    for kind in ["backends_split", "supervisor_quorum", "chain_endpoints"] {
        zero("interop_gate_backend_disagreements_total", &[("kind", kind)]);
    }
    for outcome in ["accepted", "invalid", "still_unknown", "unavailable", "queue_full"] {
        zero("interop_gate_retries_total", &[("outcome", outcome)]);
    }
    // Ingress outcomes and allow-listed methods.
    for reason in ["unavailable", "reject_all", "conflicting_data", "not_yet_known"] {
        zero(
            "interop_gate_ingress_transactions_total",
            &[("outcome", "refused"), ("reason", reason)],
        );
    }
    zero(
        "interop_gate_ingress_transactions_total",
        &[("outcome", "forwarded"), ("reason", "valid")],
    );
    for method in ["eth_sendRawTransaction", "eth_chainId", "eth_getTransactionReceipt"] {
        zero(
            "interop_gate_rpc_requests_total",
            &[("listener", "ingress"), ("method", method), ("outcome", "ok")],
        );
    }
    assert_eq!(
        series(&text, "interop_gate_interop_mode", &[("mode", "bypass")]),
        Some(0.0),
        "every mode exported"
    );
    // Revalidator.
    for kind in ["near", "full"] {
        has("interop_gate_revalidator_pass_duration_seconds_count", &[("kind", kind)]);
    }
    zero("interop_gate_revalidator_checks_total", &[("answer", "cache")]);
    zero("interop_gate_revalidator_checks_total", &[("answer", "forward")]);
    zero("interop_gate_revalidator_invalid_total", &[("reason", "conflicting_data")]);
    has("interop_gate_revalidator_state", &[("what", "failsafe")]);

    // Every metric an alert rule uses is exported, already now.
    let wanted = alert_metrics();
    assert!(wanted.len() >= 8, "{wanted:?}");
    let exported: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let missing: Vec<_> = wanted.iter().filter(|w| !exported.contains(w.as_str())).collect();
    assert!(missing.is_empty(), "alerts use metrics the service does not export: {missing:?}");
    gw.running.shutdown();
}
