//! The Grafana dashboard (`deploy/grafana/interop-gate.json`) only queries metrics the running
//! service exports: every role runs, traffic exercises every path, then each metric name the
//! dashboard's expressions use must appear on `/metrics`.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use interop_gate::dev::chain::SimChain;
use interop_gate::dev::spawn_ws_peer;
use serde_json::{json, Value};

pub(crate) fn dashboard_metrics() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/interop-gate.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut names = BTreeSet::new();
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("interop_gate_") {
                let tail = &rest[i..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                let name = &tail[..end];
                let base = name
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_count");
                names.insert(base.to_owned());
                rest = &tail[end..];
            }
        }
    }
    names
}

#[tokio::test]
async fn every_metric_on_the_dashboard_is_exported() {
    let wanted = dashboard_metrics();
    assert!(wanted.len() >= 15, "{wanted:?}");

    // Every role, against a supervisor that knows nothing (so the backends split) and a chain.
    let dest = SimChain::new(DEST, now() - 3_600, 2);
    // HTTP and WebSocket, as op-geth: the revalidator mirrors its pool.
    let dest_peer = spawn_ws_peer("dest", dest.clone(), "127.0.0.1:0").await.unwrap();
    let (dest_url, dest_ws) = (dest_peer.url(), dest_peer.ws_url());
    let g = interop_gateway(move |c| {
        c.validation.policy = interop_gate::config::PolicyMode::Both;
        c.light.head_ttl_ms = std::time::Duration::from_millis(50);
        c.light_server.enabled = true;
        c.revalidator.enabled = true;
        c.revalidator.el_url = interop_gate::dev::parse_url(&dest_url);
        c.revalidator.el_ws_url = Some(interop_gate::dev::parse_url(&dest_ws));
        c.revalidator.chain_id = Some(DEST);
        c.revalidator.interval_ms = std::time::Duration::from_millis(200);
        c.revalidator.full_interval_ms = std::time::Duration::from_millis(400);
    })
    .await;
    let msgs = g.emit(2, 1);
    // Valid, concurrently twice (coalesced), then again (cache hit).
    let (raw, _) = g.interop_tx(1, 0, &msgs);
    let (a, b) = tokio::join!(g.send(&raw), g.send(&raw));
    assert!(a.1["result"].is_string() && b.1["result"].is_string(), "{a:?} {b:?}");
    assert!(g.send(&raw).await.1["result"].is_string());
    // A split verdict: the chain has the message, the supervisor does not.
    let b = g.chain.push_block_at(now() - 50, pings(1, 2));
    let split = g.chain.message(b.number, 0).unwrap();
    let (raw, _) = g.interop_tx(6, 0, &[split]);
    assert_eq!(g.send(&raw).await.1["error"]["code"], -320600);
    // Not yet known (retried), invalid, and a reorg seen by the light backend.
    let (future, _) =
        g.interop_tx(2, 0, &[interop_gate::interop::Message { block_number: 10_000, ..msgs[0] }]);
    g.send(&future).await;
    let mut bad = msgs[1];
    bad.checksum.0[30] ^= 1;
    let (invalid, _) = g.interop_tx(3, 0, &[bad]);
    g.send(&invalid).await;
    g.chain.reorg(msgs[0].block_number);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (again, _) = g.interop_tx(4, 0, &msgs[..1]);
    g.send(&again).await;
    // Batch traffic, a non-interop tx, a pending invalid interop tx in the watched pool.
    let plain = interop_gate::dev::wallet::sign_1559(
        &interop_gate::dev::wallet::dev_signer(5),
        &interop_gate::dev::wallet::TxSpec::transfer(DEST, 0),
    )
    .0;
    g.gw.post(
        &json!([{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":[plain]}]),
    )
    .await;
    let pooled = post_json(
        &g.gw.client,
        &dest_peer.url(),
        &json!({"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":[invalid]}),
    )
    .await;
    assert!(pooled.1["result"].is_string(), "{pooled:?}");
    // Let the revalidator run passes over that pool, and a drop-in check through its API.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let reval = format!("http://{}/", g.gw.running.revalidator_addr.unwrap());
    let entries = interop_gate::interop::access_list::encode_entries(&msgs[1..]);
    let desc = json!({"timestamp": format!("{:#x}", now()), "timeout": "0x0"});
    post_json(&g.gw.client, &reval, &json!({"jsonrpc":"2.0","id":1,"method":"interop_checkAccessList","params":[entries, "unsafe", desc]})).await;

    let text = reqwest::get(g.gw.metrics_url("/metrics")).await.unwrap().text().await.unwrap();
    let exported: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| {
            n.trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count")
                .to_owned()
        })
        .collect();
    for hard in [
        "interop_gate_reorgs_total",
        "interop_gate_backend_disagreements_total",
        "interop_gate_revalidator_invalid_total",
        "interop_gate_retries_total",
        "interop_gate_coalesced_total",
    ] {
        assert!(wanted.contains(hard) && exported.contains(hard), "{hard}");
    }
    let missing: Vec<_> = wanted.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "dashboard queries metrics the service does not export: {missing:?}"
    );
}
