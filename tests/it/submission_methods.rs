//! The submission methods with their own rules: `eth_sendRawTransactionSync` (EIP-7966) has its
//! own upstream timeout and answers EIP-7966's timeout error (code 4, the tx hash as data) when
//! the gateway stops waiting for a tx it already forwarded; the upstream's own errors pass
//! through. `ingress.conditional_interop` validates or refuses interop txs sent with
//! `eth_sendRawTransactionConditional`.

use crate::common;

use std::time::Duration;

use common::*;
use interop_gate::config::ConditionalInterop;
use interop_gate::dev::wallet::{dev_signer, sign_1559, TxSpec};
use interop_gate::rpc::types::RpcError;
use serde_json::{json, Value};

fn sync_call(raw: &alloy_primitives::Bytes) -> Value {
    json!({"jsonrpc":"2.0","id":3,"method":"eth_sendRawTransactionSync","params":[raw]})
}

#[tokio::test]
async fn sync_submission_that_outlasts_its_timeout_answers_eip7966_timeout_with_the_hash() {
    let gw = gateway(|c| {
        c.ingress.chain_id = DEST;
        c.upstream.sync_timeout_ms = std::time::Duration::from_millis(300);
    })
    .await;
    gw.upstream.set_delay(Duration::from_secs(3));
    let (raw, hash) = sign_1559(&dev_signer(1), &TxSpec::transfer(DEST, 0));
    let (status, v) = gw.post(&sync_call(&raw)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["error"]["code"], 4, "EIP-7966 timeout, never -32603: {v}");
    assert_eq!(v["error"]["data"], json!(hash), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("wasn't processed in 300 ms"), "{v}");
    assert_eq!(gw.upstream.raw_transactions(), vec![raw], "it was forwarded");
}

#[tokio::test]
async fn sync_submission_has_its_own_longer_timeout() {
    let gw = gateway(|c| {
        c.ingress.chain_id = DEST;
        c.upstream.timeout_ms = std::time::Duration::from_millis(200);
        c.upstream.sync_timeout_ms = std::time::Duration::from_millis(10_000);
    })
    .await;
    gw.upstream.set_delay(Duration::from_millis(600));
    let (raw, hash) = sign_1559(&dev_signer(1), &TxSpec::transfer(DEST, 0));
    let (_, v) = gw.post(&sync_call(&raw)).await;
    assert_eq!(v["result"], json!(hash), "waited past upstream.timeout_ms: {v}");
    // Everything else keeps upstream.timeout_ms, and a plain submission's timeout stays -32603.
    let (_, v) = gw.post(&json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})).await;
    assert_eq!(v["error"]["code"], -32603, "{v}");
    let (raw, _) = sign_1559(&dev_signer(1), &TxSpec::transfer(DEST, 1));
    let (_, v) = gw
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":[raw]}))
        .await;
    assert_eq!(v["error"]["code"], -32603, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("upstream timeout"), "{v}");
}

#[tokio::test]
async fn upstream_own_sync_timeout_errors_pass_through_verbatim() {
    let gw = gateway(|c| c.ingress.chain_id = DEST).await;
    for (nonce, code) in [(0u64, 4i64), (1, -32002)] {
        let (raw, hash) = sign_1559(&dev_signer(1), &TxSpec::transfer(DEST, nonce));
        let answer = RpcError::new(
            code,
            "The transaction was added to the mempool but wasn't processed in 30s.",
        )
        .with_data(json!(hash));
        gw.upstream.set_answer("eth_sendRawTransactionSync", Err(answer));
        let (_, v) = gw.post(&sync_call(&raw)).await;
        assert_eq!(v["error"]["code"], code, "{v}");
        assert_eq!(v["error"]["data"], json!(hash), "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("30s"), "the EL's words: {v}");
    }
}

#[tokio::test]
async fn interop_sync_submission_is_validated_then_waits() {
    let g = interop_gateway(|c| c.upstream.sync_timeout_ms = std::time::Duration::from_millis(300))
        .await;
    g.gw.upstream.set_delay(Duration::from_secs(3));
    let msgs = g.emit(1, 5);
    let (raw, hash) = g.interop_tx(2, 0, &msgs);
    let (_, v) = g.gw.post(&sync_call(&raw)).await;
    assert_eq!((v["error"]["code"].clone(), v["error"]["data"].clone()), (json!(4), json!(hash)));
    assert!(g.forwarded(&raw));
}

fn conditional(raw: &alloy_primitives::Bytes) -> Value {
    json!({"jsonrpc":"2.0","id":5,"method":"eth_sendRawTransactionConditional","params":[raw, {}]})
}

#[tokio::test]
async fn conditional_interop_validate_checks_and_forwards() {
    let g = interop_gateway(|c| {
        assert_eq!(c.ingress.conditional_interop, ConditionalInterop::Validate, "the default");
    })
    .await;
    let msgs = g.emit(1, 6);
    let (raw, hash) = g.interop_tx(3, 0, &msgs);
    let (_, v) = g.gw.post(&conditional(&raw)).await;
    assert_eq!(v["result"], json!(hash), "{v}");
    assert!(g.forwarded(&raw));
    assert_eq!(g.supervisor.checks(), 1, "validated");
}

#[tokio::test]
async fn conditional_interop_refuse_refuses_interop_only() {
    let g = interop_gateway(|c| c.ingress.conditional_interop = ConditionalInterop::Refuse).await;
    let msgs = g.emit(1, 7);
    let (raw, hash) = g.interop_tx(3, 0, &msgs);
    let (status, v) = g.gw.post(&conditional(&raw)).await;
    assert_eq!((status, v["error"]["code"].clone()), (403, json!(-32601)), "{v}");
    assert_eq!(v["error"]["data"]["txHash"], json!(hash), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("eth_sendRawTransaction"), "{v}");
    assert!(!g.forwarded(&raw));
    assert_eq!((g.supervisor.checks(), g.chain.all_calls()), (0, 0), "no backend call");
    // The same tx through eth_sendRawTransaction is validated and forwarded.
    let (_, v) = g.send(&raw).await;
    assert_eq!(v["result"], json!(hash), "{v}");
    // A non-interop conditional tx is forwarded as before.
    let (raw, hash) = sign_1559(&dev_signer(4), &TxSpec::transfer(DEST, 0));
    let (_, v) = g.gw.post(&conditional(&raw)).await;
    assert_eq!(v["result"], json!(hash), "{v}");
}
