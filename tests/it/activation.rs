//! Interop activation per source chain (`[[light.chains]] interop_time`) against a simulated
//! chain over real HTTP: the light backend refuses messages in the activation block and before it
//! (-320600), accepts the next block, resolves the activation block once, treats a chain that has
//! not reached its fork time as "not yet", and changes nothing for a chain without the key. Then
//! the same boundary through the ingress (a real gateway).

use crate::common;

use std::sync::Arc;

use alloy_primitives::U256;
use common::*;
use interop_gate::config::{LightConfig, ValidationConfig};
use interop_gate::dev::chain::SimChain;
use interop_gate::dev::{spawn_peer, Peer};
use interop_gate::interop::{ExecutingDescriptor, Message, SafetyLevel};
use interop_gate::validation::light::LightBackend;
use interop_gate::validation::{Backend, CheckRequest, Verdict};

fn req(msgs: &[Message], exec: u64) -> CheckRequest {
    CheckRequest {
        messages: msgs.to_vec().into(),
        min_safety: SafetyLevel::CrossUnsafe,
        descriptor: ExecutingDescriptor {
            timestamp: exec,
            timeout: Some(600),
            chain_id: Some(U256::from(DEST)),
        },
    }
}

fn rejection(v: &Verdict) -> (i64, String) {
    match v {
        Verdict::Invalid(r) | Verdict::NotYetKnown(r) => (r.code, r.reason.clone()),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// A chain with genesis an hour ago and `blocks` blocks of one log each, 2 s apart.
async fn chain(blocks: u64) -> (Arc<SimChain>, Peer) {
    let chain = SimChain::new(SOURCE, now() - 3_600, 2);
    for i in 0..blocks {
        chain.push_block(pings(1, i as u8));
    }
    let peer = spawn_peer("chain", chain.clone(), "127.0.0.1:0").await.unwrap();
    (chain, peer)
}

fn backend(peer: &Peer, interop_time: Option<u64>) -> LightBackend {
    let mut c = light_chain(SOURCE, &[peer.url()]);
    c.interop_time = interop_time;
    let cfg = LightConfig {
        chains: vec![c],
        head_ttl_ms: std::time::Duration::from_millis(50),
        ..Default::default()
    };
    LightBackend::from_config(&cfg, &ValidationConfig::default()).unwrap()
}

#[tokio::test]
async fn activation_block_is_refused_and_the_next_block_accepted() {
    let (chain, peer) = chain(300).await;
    // Unaligned fork time: one second after block 199, so block 200 is the activation block.
    let t = chain.block(199).unwrap().timestamp + 1;
    let light = backend(&peer, Some(t));
    let msg = |n| chain.message(n, 0).unwrap();

    let v = light.check(&req(&[msg(200)], now())).await;
    let (code, why) = rejection(&v);
    assert!(matches!(v, Verdict::Invalid(_)), "{v:?}");
    assert_eq!(code, -320600);
    assert!(why.contains("activation block 200"), "{why}");
    let searched = chain.calls("eth_getBlockByNumber");
    assert!(searched <= 14, "latest + a binary search over 301 blocks, got {searched}");

    let v = light.check(&req(&[msg(201)], now())).await;
    assert!(v.is_valid(), "the block after the activation block: {v:?}");
    // Before the fork time: refused from the timestamp alone, no lookup.
    let before = chain.calls("eth_getBlockByNumber");
    let v = light.check(&req(&[msg(199)], now())).await;
    assert_eq!(rejection(&v).0, -320600);
    assert!(rejection(&v).1.contains("before chain 901's interop activation"), "{v:?}");
    assert_eq!(chain.calls("eth_getBlockByNumber"), before, "no lookup for a pre-fork message");
    // A tx mixing a valid message and the activation block's is refused whole.
    let v = light.check(&req(&[msg(250), msg(200)], now())).await;
    assert_eq!(rejection(&v).0, -320600);
    // The activation block is resolved once: later checks only read the message's own block.
    let before = chain.calls("eth_getBlockByNumber");
    let v = light.check(&req(&[msg(260)], now())).await;
    assert!(v.is_valid(), "{v:?}");
    assert!(chain.calls("eth_getBlockByNumber") - before <= 2, "no new search");
}

#[tokio::test]
async fn chain_without_interop_time_is_unchanged() {
    let (chain, peer) = chain(10).await;
    let light = backend(&peer, None);
    for n in [1, 5, 10] {
        let v = light.check(&req(&[chain.message(n, 0).unwrap()], now())).await;
        assert!(v.is_valid(), "block {n}: {v:?}");
    }
}

#[tokio::test]
async fn chain_that_has_not_reached_its_fork_time_has_no_valid_message_yet() {
    let (chain, peer) = chain(5).await;
    let t = chain.head().timestamp + 100;
    let light = backend(&peer, Some(t));
    let exec = t + 60;
    // Every existing block is before the fork time: invalid, whatever comes later.
    let v = light.check(&req(&[chain.message(5, 0).unwrap()], exec)).await;
    assert_eq!(rejection(&v).0, -320600, "{v:?}");
    // A message claiming a time after the fork, in a block that does not exist yet: not yet.
    let future = Message { block_number: 7, timestamp: t + 2, ..chain.message(5, 0).unwrap() };
    let v = light.check(&req(&[future], exec)).await;
    assert!(matches!(v, Verdict::NotYetKnown(_)), "{v:?}");
    assert_eq!(rejection(&v).0, -321401);
    // The chain gets there: the first block at the fork time is the activation block (refused),
    // the one after is valid. Nothing stale was kept while it had not.
    let activation = chain.push_block_at(t, pings(1, 40));
    let next = chain.push_block_at(t + 2, pings(1, 41));
    tokio::time::sleep(std::time::Duration::from_millis(60)).await; // head_ttl_ms = 50
    let v = light.check(&req(&[chain.message(activation.number, 0).unwrap()], exec)).await;
    assert_eq!(rejection(&v).0, -320600, "{v:?}");
    assert!(rejection(&v).1.contains(&format!("activation block {}", activation.number)));
    let v = light.check(&req(&[chain.message(next.number, 0).unwrap()], exec)).await;
    assert!(v.is_valid(), "{v:?}");
}

#[tokio::test]
async fn chain_rpc_down_while_resolving_is_no_answer_not_a_verdict() {
    let (chain, peer) = chain(20).await;
    let t = chain.block(10).unwrap().timestamp;
    let m = chain.message(15, 0).unwrap();
    peer.stop();
    let light = backend(&peer, Some(t));
    let v = light.check(&req(&[m], now())).await;
    assert!(matches!(v, Verdict::Unavailable(_)), "{v:?}");
}

#[tokio::test]
async fn ingress_refuses_the_activation_block_and_forwards_the_next() {
    // Fork time 100 s ago: `emit` puts blocks at now - 60, so the first emitted block is the
    // activation block and the second one is after it.
    let t = now() - 100;
    let g = interop_gateway(|c| c.light.chains[0].interop_time = Some(t)).await;
    let activation = g.emit(1, 1);
    let after = g.emit(1, 2);
    let (raw, _) = g.interop_tx(1, 0, &activation);
    let (status, v) = g.send(&raw).await;
    assert_eq!(v["error"]["code"], -320600, "{v}");
    assert_eq!(status, 409);
    assert!(v["error"]["message"].as_str().unwrap().contains("activation block"), "{v}");
    assert!(!g.forwarded(&raw));
    let (raw, hash) = g.interop_tx(1, 1, &after);
    let (_, v) = g.send(&raw).await;
    assert_eq!(v["result"], serde_json::json!(hash), "{v}");
    assert!(g.forwarded(&raw));
}
