//! How many calls the gateway makes to its validation peers (issue 22): valid verdicts that
//! live as long as the reorg watch vouches for them, header fetches shared by concurrent
//! checks, and refusals that need no peer at all.

use std::time::Duration;

use serde_json::Value;

use crate::common::{interop_gateway, InteropGateway};

/// Sends `raw` until the gateway refuses it (at most ~5 s): the reorg watch runs in the
/// background, so the test waits for its effect instead of guessing its timing.
async fn until_refused(g: &InteropGateway, raw: &alloy_primitives::Bytes) -> Value {
    for _ in 0..100 {
        let (_, body) = g.send(raw).await;
        if body.get("error").is_some() {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway kept accepting the tx");
}

#[tokio::test]
async fn valid_verdicts_outlive_the_short_ttl_while_the_reorg_watch_runs_and_a_reorg_still_drops_them(
) {
    let g = interop_gateway(|c| {
        c.light.reorg_watch_ms = Duration::from_millis(50);
        // The short lifetime (watch off) would be over long before the second send.
        c.validation.valid_cache_ttl_secs = Duration::ZERO;
    })
    .await;
    let msgs = g.emit(1, 31);
    let (raw, _) = g.interop_tx(41, 0, &msgs);
    let (_, first) = g.send(&raw).await;
    assert!(first.get("result").is_some(), "{first}");
    let checks = g.supervisor.checks();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, again) = g.send(&raw).await;
    assert!(again.get("result").is_some(), "{again}");
    assert_eq!(g.supervisor.checks(), checks, "the cached valid verdict answered");

    // The block is replaced: the watch sees it and the verdict is re-verified (and now fails).
    g.chain.reorg(msgs[0].block_number);
    let refused = until_refused(&g, &raw).await;
    assert_eq!(refused["error"]["code"], -320600, "{refused}");
    assert!(g.supervisor.checks() > checks, "the backends were asked again");
}

#[tokio::test]
async fn without_the_reorg_watch_valid_verdicts_keep_the_short_ttl() {
    let g = interop_gateway(|c| {
        c.light.reorg_watch_ms = Duration::ZERO;
        c.validation.valid_cache_ttl_secs = Duration::ZERO;
    })
    .await;
    let msgs = g.emit(1, 32);
    let (raw, _) = g.interop_tx(42, 0, &msgs);
    let (_, first) = g.send(&raw).await;
    assert!(first.get("result").is_some(), "{first}");
    let checks = g.supervisor.checks();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, again) = g.send(&raw).await;
    assert!(again.get("result").is_some(), "{again}");
    assert_eq!(g.supervisor.checks(), checks + 1, "no watch: re-verified after the short TTL");
}

#[tokio::test]
async fn concurrent_checks_of_new_blocks_read_at_most_two_headers_per_block() {
    const BLOCKS: u64 = 5;
    const TXS_PER_BLOCK: usize = 16;
    let g = interop_gateway(|c| {
        // Counted per block: `latest` is not re-read on a timer during the test, and no watch
        // reads headers in the background (its cost is one call per tick, tested below).
        c.light.head_ttl_ms = Duration::from_secs(60);
        c.light.reorg_watch_ms = Duration::ZERO;
    })
    .await;
    let before = g.chain.calls("eth_getBlockByNumber");
    for b in 0..BLOCKS {
        let msgs = g.emit(TXS_PER_BLOCK, 60 + b as u8);
        let txs: Vec<_> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| g.interop_tx(2_000 + b * 100 + i as u64, 0, &[*m]).0)
            .collect();
        let answers = futures::future::join_all(txs.iter().map(|raw| g.send(raw))).await;
        for (_, body) in &answers {
            assert!(body.get("result").is_some(), "block {b}: {body}");
        }
    }
    let calls = g.chain.calls("eth_getBlockByNumber") - before;
    assert!(
        calls <= 2 * BLOCKS,
        "{calls} header calls for {BLOCKS} new blocks of {TXS_PER_BLOCK} concurrent txs each"
    );
    assert_eq!(g.chain.calls("eth_getLogs"), BLOCKS, "one eth_getLogs per block");
}

#[tokio::test]
async fn the_reorg_watch_reads_one_header_per_tick_and_announces_a_gap_it_cannot_see_across() {
    use interop_gate::config::{LightConfig, ValidationConfig};
    use interop_gate::dev::chain::SimChain;
    use interop_gate::dev::{light_chain, spawn_peer};
    use interop_gate::validation::light::LightBackend;

    use crate::common::{now, pings, SOURCE};

    let chain = SimChain::new(SOURCE, now() - 86_400, 2);
    for _ in 0..10 {
        chain.push_block_at(now() - 600, Vec::new());
    }
    let peer = spawn_peer("chain", chain.clone(), "127.0.0.1:0").await.unwrap();
    let cfg =
        LightConfig { chains: vec![light_chain(SOURCE, &[peer.url()])], ..Default::default() };
    let light = LightBackend::from_config(&cfg, &ValidationConfig::default()).unwrap();
    let mut reorgs = light.subscribe_reorgs();
    let c = light.chain(&alloy_primitives::U256::from(SOURCE)).unwrap().clone();
    let headers = || chain.calls("eth_getBlockByNumber");

    c.watch_once(64).await; // the first walk learns the chain
    let before = headers();
    chain.push_block_at(now() - 60, pings(1, 70));
    c.watch_once(64).await;
    assert_eq!(headers() - before, 1, "one new block: only `latest` is read");
    let before = headers();
    c.watch_once(64).await;
    assert_eq!(headers() - before, 1, "nothing new: only `latest` is read");
    let before = headers();
    for _ in 0..3 {
        chain.push_block_at(now() - 60, Vec::new());
    }
    c.watch_once(64).await;
    assert_eq!(headers() - before, 3, "three new blocks: `latest` and the two parents");
    assert!(reorgs.try_recv().is_err(), "no reorg so far");

    // More new blocks than the walk may cover: a reorg below them cannot be ruled out.
    for _ in 0..70 {
        chain.push_block_at(now() - 60, Vec::new());
    }
    c.watch_once(64).await;
    let ev = reorgs.try_recv().expect("a gap is announced");
    assert_eq!(ev.old, alloy_primitives::B256::ZERO, "{ev:?}");
    assert_eq!(ev.chain_id, alloy_primitives::U256::from(SOURCE));
}

/// `raw` (an EIP-1559 tx) re-signed with `r = 0`: it decodes, but no sender recovers from it.
fn unrecoverable(raw: &alloy_primitives::Bytes) -> alloy_primitives::Bytes {
    use alloy_consensus::{Signed, TxEnvelope};
    use alloy_eips::eip2718::{Decodable2718, Encodable2718};
    use alloy_primitives::{Signature, U256};
    let Ok(TxEnvelope::Eip1559(signed)) = TxEnvelope::decode_2718(&mut raw.as_ref()) else {
        panic!("an EIP-1559 tx");
    };
    let sig = *signed.signature();
    let zero = Signature::new(U256::ZERO, sig.s(), sig.v());
    let env = TxEnvelope::Eip1559(Signed::new_unhashed(signed.tx().clone(), zero));
    alloy_primitives::Bytes::from(env.encoded_2718())
}

#[tokio::test]
async fn an_interop_tx_whose_signature_recovers_no_sender_is_refused_before_any_backend_call() {
    let g = interop_gateway(|_| {}).await;
    let msgs = g.emit(1, 33);
    let (good, _) = g.interop_tx(43, 0, &msgs);
    let bad = unrecoverable(&good);
    let (status, body) = g.send(&bad).await;
    assert_eq!(body["error"]["code"], -32602, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap_or_default().contains("cannot recover the sender"),
        "{body}"
    );
    assert_eq!(body["error"]["data"]["reason"], "undecodable", "{body}");
    assert_eq!(status, 400);
    assert_eq!(g.supervisor.checks(), 0, "no supervisor call");
    assert_eq!(g.chain.all_calls(), 0, "no chain call");
    assert!(!g.forwarded(&bad));
    // The same messages signed properly pass: the refusal was the signature's.
    let (_, ok) = g.send(&good).await;
    assert!(ok.get("result").is_some(), "{ok}");
}

#[tokio::test]
async fn a_sender_limit_needs_the_sender_so_a_plain_tx_without_one_is_refused_only_then() {
    use interop_gate::dev::wallet::{dev_signer, sign_1559, TxSpec};
    let (good, _) = sign_1559(&dev_signer(44), &TxSpec::transfer(crate::common::DEST, 0));
    let bad = unrecoverable(&good);
    let call = serde_json::json!({"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":[bad]});
    // No sender limit: nothing at the gateway needs the sender; the EL judges the signature.
    let free = interop_gateway(|_| {}).await;
    let (_, body) = free.gw.post(&call).await;
    assert!(body.get("result").is_some(), "{body}");
    assert!(free.forwarded(&bad), "forwarded without recovering its sender");
    // A sender limit needs the sender: refused, never forwarded.
    let limited = interop_gateway(|c| {
        c.ingress.sender_rate = interop_gate::config::RateLimit { per_second: 100, burst: 100 };
    })
    .await;
    let (_, body) = limited.gw.post(&call).await;
    assert_eq!(body["error"]["code"], -32602, "{body}");
    assert!(!limited.forwarded(&bad));
}
