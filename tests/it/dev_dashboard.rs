//! `interop-gate dev` shows all three roles working: within 30 s of start every metric the
//! Grafana dashboard queries has a series, every histogram it plots has observations, the
//! revalidator has tracked txs and published invalid ones (chain A reorgs away the message of a
//! tx waiting in chain B's pool), the pool mirror follows chain B's pool over its WebSocket, and
//! the summary line says so.

use std::collections::{BTreeSet, HashMap};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_interop-gate");

/// Sums of every sample per series name (`name` or `name_count`) of a Prometheus scrape.
fn sums(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for l in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let Some((head, value)) = l.rsplit_once(' ') else { continue };
        let name = head.split('{').next().unwrap_or(head).to_owned();
        *out.entry(name).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    out
}

#[tokio::test]
async fn dev_mode_gives_every_dashboard_metric_data_within_30_s() {
    let wanted = crate::dashboard::dashboard_metrics();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(BIN)
        .args(["dev", "--duration-secs", "40", "--summary-secs", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("dev starts");
    let stdout = child.stdout.take().unwrap();
    let (metrics_url, last_summary) = (Arc::new(Mutex::new(None)), Arc::new(Mutex::new(None)));
    let (m, s) = (metrics_url.clone(), last_summary.clone());
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim_start().starts_with("metrics /metrics") {
                *m.lock().unwrap() = line.split_whitespace().last().map(str::to_owned);
            }
            if line.starts_with("sent ") {
                *s.lock().unwrap() = Some(line);
            }
        }
    });
    let http = reqwest::Client::new();
    let histograms = [
        "interop_gate_rpc_request_duration_seconds",
        "interop_gate_external_call_duration_seconds",
        "interop_gate_revalidator_pass_duration_seconds",
        "interop_gate_revalidator_requests_per_pass",
    ];
    let (mut tracked_seen, mut missing) = (false, vec!["(no scrape yet)".to_owned()]);
    while started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(url) = metrics_url.lock().unwrap().clone() else { continue };
        let Ok(resp) = http.get(format!("{url}metrics")).send().await else { continue };
        let text = resp.text().await.unwrap_or_default();
        let sums = sums(&text);
        let exported: BTreeSet<String> = sums
            .keys()
            .map(|n| {
                n.trim_end_matches("_bucket")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_count")
                    .to_owned()
            })
            .collect();
        tracked_seen |= text.lines().any(|l| {
            l.starts_with("interop_gate_revalidator_state{what=\"tracked_txs\"}")
                && l.rsplit_once(' ').is_some_and(|(_, v)| v != "0")
        });
        missing = wanted.difference(&exported).cloned().collect();
        for h in histograms {
            assert!(wanted.contains(h), "the dashboard no longer plots {h}");
            if sums.get(&format!("{h}_count")).copied().unwrap_or(0.0) == 0.0 {
                missing.push(format!("{h} (no observation)"));
            }
        }
        if sums.get("interop_gate_revalidator_invalid_total").copied().unwrap_or(0.0) == 0.0 {
            missing.push("interop_gate_revalidator_invalid_total (nothing published)".into());
        }
        // Chain B speaks WebSocket: the revalidator follows its pool by deltas.
        let mirrored = text.lines().any(|l| {
            l.starts_with("interop_gate_revalidator_mirror_events_total{event=\"added\"}")
                && l.rsplit_once(' ').is_some_and(|(_, v)| v != "0")
        });
        if !mirrored {
            missing.push("revalidator_mirror_events_total{added} (nothing mirrored)".into());
        }
        if !tracked_seen {
            missing.push("revalidator_state{tracked_txs} (never above 0)".into());
        }
        if missing.is_empty() {
            break;
        }
    }
    assert!(missing.is_empty(), "no data within 30 s of dev start: {missing:?}");
    // The summary line shows the revalidator's work.
    let summary = last_summary.lock().unwrap().clone().expect("a summary line");
    let published: u64 = summary
        .split(", ")
        .find_map(|p| p.strip_suffix(" invalid published"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("summary without invalid published: {summary}"));
    assert!(summary.contains(" tracked, ") && summary.contains(" feed entries"), "{summary}");
    assert!(summary.contains("pool mirror: subscription"), "{summary}");
    let _ = published;
    child.kill().await.ok();
}
