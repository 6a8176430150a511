//! `eth_sendBundle` and WebSocket submissions through the interop pipeline, end to end: the real
//! app with a mock upstream EL, a mock supervisor (indexed backend) and a simulated source chain
//! (light backend). The same bundle or transaction gets the same answer over HTTP and WebSocket.

use crate::common;

use alloy_primitives::Bytes;
use common::*;
use futures::{SinkExt, StreamExt};
use interop_gate::dev::wallet::{dev_signer, sign_1559, TxSpec};
use interop_gate::interop::Message;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn tampered(m: Message) -> Message {
    let mut bad = m;
    bad.checksum.0[31] ^= 1;
    bad
}

fn bundle(txs: &[&Bytes]) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendBundle", "params": [{
        "txs": txs, "blockNumber": "0x10", "minTimestamp": 0, "revertingTxHashes": [],
    }]})
}

async fn with_bundles(max: usize) -> InteropGateway {
    interop_gateway(move |c| {
        c.upstream.methods.push("eth_sendBundle".into());
        c.ingress.max_bundle_txs = max;
    })
    .await
}

/// One request over a fresh WebSocket to the gateway; the answer as JSON.
async fn over_ws(g: &InteropGateway, req: &Value) -> Value {
    let url = format!("ws://{}/", g.gw.running.rpc_addr.unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws connects");
    ws.send(WsMessage::text(req.to_string())).await.unwrap();
    loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("answer in time")
            .expect("open")
            .expect("no error");
        if let WsMessage::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

fn bundles_forwarded(g: &InteropGateway) -> Vec<Value> {
    g.gw.upstream
        .received()
        .into_iter()
        .filter(|r| r.method == "eth_sendBundle")
        .map(|r| serde_json::from_str(&r.params).unwrap())
        .collect()
}

#[tokio::test]
async fn a_valid_bundle_is_checked_in_one_batch_and_forwarded_verbatim() {
    let g = with_bundles(100).await;
    let a = g.emit(2, 1);
    let b = g.emit(1, 2);
    let (tx0, _) = g.interop_tx(1, 0, &a);
    let (tx1, _) = sign_1559(&dev_signer(2), &TxSpec::transfer(DEST, 0));
    let (tx2, _) = g.interop_tx(3, 0, &b);
    let req = bundle(&[&tx0, &tx1, &tx2]);
    let (status, v) = g.gw.post(&req).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["method"], "eth_sendBundle", "the upstream's answer: {v}");
    assert_eq!(bundles_forwarded(&g), vec![req["params"].clone()], "verbatim, every field kept");
    assert_eq!(g.supervisor.http_requests(), 1, "one batched request for the bundle");
    assert_eq!(g.supervisor.checks(), 2, "one check per interop tx inside it");
}

#[tokio::test]
async fn one_invalid_tx_refuses_the_whole_bundle_naming_its_index() {
    let g = with_bundles(100).await;
    let a = g.emit(2, 3);
    let (ok0, _) = g.interop_tx(1, 0, &a[..1]);
    let (plain, _) = sign_1559(&dev_signer(2), &TxSpec::transfer(DEST, 0));
    let (bad, bad_hash) = g.interop_tx(3, 0, &[tampered(a[1])]);
    let (ok3, _) = g.interop_tx(4, 0, &a);
    let req = bundle(&[&ok0, &plain, &bad, &ok3]);
    let (status, v) = g.gw.post(&req).await;
    assert_eq!(status, 409, "{v}");
    let e = &v["error"];
    assert_eq!(e["code"], -320600, "{v}");
    assert_eq!(e["data"]["index"], 2, "the invalid tx's position in the bundle");
    assert_eq!(e["data"]["txHash"], json!(bad_hash));
    assert_eq!(e["data"]["reason"], "conflicting_data");
    assert!(e["message"].as_str().unwrap().starts_with("bundle transaction 2:"), "{v}");
    assert!(bundles_forwarded(&g).is_empty(), "nothing of the bundle reached the upstream");

    // The same bundle over WebSocket: the same code and data.
    let w = over_ws(&g, &req).await;
    assert_eq!(w["error"], v["error"]);
    assert!(bundles_forwarded(&g).is_empty());

    // An undecodable tx is refused at its index before any backend call.
    let checks = g.supervisor.checks();
    let junk = Bytes::from(vec![0x02, 0xc0]);
    let (_, v) = g.gw.post(&bundle(&[&ok0, &junk])).await;
    assert_eq!(
        (v["error"]["code"].as_i64(), &v["error"]["data"]["index"]),
        (Some(-32602), &json!(1))
    );
    assert_eq!(g.supervisor.checks(), checks);
}

#[tokio::test]
async fn a_bundle_over_the_size_limit_is_refused_before_any_work() {
    let g = with_bundles(2).await;
    let txs: Vec<Bytes> =
        (0..3).map(|i| sign_1559(&dev_signer(10 + i), &TxSpec::transfer(DEST, 0)).0).collect();
    let (status, v) = g.gw.post(&bundle(&txs.iter().collect::<Vec<_>>())).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], -32602);
    assert_eq!(v["error"]["data"], json!({"txs": 3, "limit": 2}));
    assert!(bundles_forwarded(&g).is_empty());
    let (_, v) = g.gw.post(&bundle(&[])).await;
    assert_eq!(v["error"]["code"], -32602, "an empty bundle: {v}");
}

#[tokio::test]
async fn a_bundle_without_interop_txs_costs_no_backend_call() {
    let g = with_bundles(100).await;
    let txs: Vec<Bytes> =
        (0..3).map(|i| sign_1559(&dev_signer(20 + i), &TxSpec::transfer(DEST, 0)).0).collect();
    let req = bundle(&txs.iter().collect::<Vec<_>>());
    let (status, v) = g.gw.post(&req).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(bundles_forwarded(&g), vec![req["params"].clone()]);
    assert_eq!((g.supervisor.checks(), g.chain.all_calls()), (0, 0));
}

#[tokio::test]
async fn bundles_are_refused_unless_configured_and_fail_closed_without_an_answer() {
    let g = interop_gateway(|_| {}).await;
    let (tx, _) = sign_1559(&dev_signer(1), &TxSpec::transfer(DEST, 0));
    let (status, v) = g.gw.post(&bundle(&[&tx])).await;
    assert_eq!((status, v["error"]["code"].as_i64()), (403, Some(-32601)), "{v}");

    // Both backends down: no verdict, the bundle is refused (fail closed), not forwarded.
    let g = with_bundles(100).await;
    let msgs = g.emit(1, 4);
    let (itx, _) = g.interop_tx(1, 0, &msgs);
    g.supervisor_peer.stop();
    g.chain_peer.stop();
    let (status, v) = g.gw.post(&bundle(&[&tx, &itx])).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], -32011);
    assert_eq!(v["error"]["data"]["index"], 1);
    assert!(bundles_forwarded(&g).is_empty());
}

#[tokio::test]
async fn websocket_submissions_take_the_http_pipeline() {
    let g = interop_gateway(|_| {}).await;
    let msgs = g.emit(2, 5);
    let (good, hash) = g.interop_tx(1, 0, &msgs);
    let req = |raw: &Bytes| json!({"jsonrpc": "2.0", "id": "s-1", "method": "eth_sendRawTransaction", "params": [raw]});
    let v = over_ws(&g, &req(&good)).await;
    assert_eq!(v, json!({"jsonrpc": "2.0", "result": hash, "id": "s-1"}));
    assert!(g.forwarded(&good));

    let (bad, _) = g.interop_tx(2, 0, &[tampered(msgs[0])]);
    let w = over_ws(&g, &req(&bad)).await;
    let (_, h) = g.send(&bad).await;
    assert_eq!(w["error"]["code"], -320600, "{w}");
    assert_eq!(w["error"], h["error"], "the same code, message and data as over HTTP");
    assert!(!g.forwarded(&bad));
}

#[tokio::test]
async fn a_bundle_pays_the_interop_sender_limit_for_each_interop_tx_only() {
    let g = interop_gateway(|c| {
        c.upstream.methods.push("eth_sendBundle".into());
        c.ingress.interop_sender_rate = interop_gate::config::RateLimit { per_second: 1, burst: 1 };
    })
    .await;
    let a = g.emit(2, 5);
    // The plain tx of the same sender costs nothing of its interop budget.
    let (plain, _) = sign_1559(&dev_signer(5), &TxSpec::transfer(DEST, 0));
    let (first, _) = g.interop_tx(5, 1, &a[..1]);
    let (second, second_hash) = g.interop_tx(5, 2, &a[1..]);
    let (status, v) = g.gw.post(&bundle(&[&plain, &first, &second])).await;
    assert_eq!(status, 429, "{v}");
    let e = &v["error"];
    assert_eq!(e["code"], -32017, "{v}");
    assert_eq!(e["data"]["index"], 2, "the second interop tx is over the limit");
    assert_eq!(e["data"]["txHash"], json!(second_hash));
    assert_eq!(e["data"]["reason"], "interop_sender_rate_limited");
    assert_eq!(g.supervisor.checks(), 0, "refused before any backend call");
    assert!(bundles_forwarded(&g).is_empty());
}
