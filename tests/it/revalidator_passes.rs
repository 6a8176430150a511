//! Revalidation passes over real HTTP: the mock EL serves thousands of pool txs, passes place
//! them into presumed blocks and send one backend request per presumed block.

use crate::revalidator_support;

use std::collections::{BTreeMap, HashSet};

use alloy_primitives::{Address, B256};
use interop_gate::dev::el_pool::{generate_pool, MockTx};
use interop_gate::revalidator::pool::{Fees, Head};
use interop_gate::revalidator::PassKind;
use revalidator_support::{harness, msg, HEAD};
use serde_json::{json, Value};

#[tokio::test]
async fn placement_over_http_matches_the_hand_computed_blocks() {
    // Effective gas limit: 200k - 100k margin = 100k. Base fee 100.
    let h = harness(|c| c.near_blocks = 4).await;
    h.el.set_head(Head { gas_limit: 200_000, ..HEAD });
    let dynamic = |max_fee, tip| Fees::dynamic(max_fee, tip);
    let a = Address::repeat_byte(0x0a);
    let (b, c, d, e) = (
        Address::repeat_byte(0x0b),
        Address::repeat_byte(0x0c),
        Address::repeat_byte(0x0d),
        Address::repeat_byte(0x0e),
    );
    let a0 = MockTx::new(a, 0, 40_000, dynamic(1_000, 5), &[msg(1)]);
    let a1 = MockTx::new(a, 1, 40_000, dynamic(1_000, 50), &[msg(2)]);
    let b3 = MockTx::new(b, 3, 40_000, dynamic(1_000, 20), &[]);
    let c0 = MockTx::new(c, 0, 40_000, dynamic(120, 30), &[msg(3)]); // tip capped to 20
    let d0 = MockTx::new(d, 0, 30_000, dynamic(90, 10), &[msg(4)]); // cannot pay the base fee
    let e0 = MockTx::new(e, 0, 21_000, dynamic(1_000, 1), &[]);
    let e2 = MockTx::new(e, 2, 21_000, dynamic(1_000, 1), &[msg(5)]); // after a nonce gap
    h.el.insert([a0.clone(), a1.clone(), b3, c0.clone(), d0.clone(), e0, e2.clone()]);

    let report = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    // By hand: B(20) and C(20: tip capped by its fee cap) tie, B has the lower address; then
    // A0(5), then A1(50) once A0 is out, E0(1), and D last (-10: it cannot pay the base fee).
    // Block 0: B + C = 80k. A0 opens block 1 (40k), A1 fits (80k). E0 opens block 2 (21k),
    // D fits (51k). E2 sits behind a gap: unplaced, checked as if right after block 2.
    assert_eq!(report.presumed_blocks, 3);
    let expect = [
        (&c0, json!(0), 1_000_002),
        (&a0, json!(1), 1_000_004),
        (&a1, json!(1), 1_000_004),
        (&d0, json!(2), 1_000_006),
        (&e2, Value::Null, 1_000_008),
    ];
    for (tx, block, ts) in expect {
        let s = h.rpc("interop_transactionStatus", json!([tx.hash])).await.unwrap();
        assert_eq!(s["presumedBlock"], block, "{}", tx.nonce);
        assert_eq!(s["expectedTimestamp"], ts);
        assert_eq!(s["status"], "valid");
    }
    // One request per group (blocks 0, 1, 2 and the unplaced group), each with its own timestamp.
    assert_eq!((report.blocks_checked, report.requests, report.txs_checked), (4, 4, 5));
    let batches = h.backend.take_batches();
    let mut by_ts: Vec<(u64, usize)> = batches
        .iter()
        .map(|b| {
            let ts: HashSet<u64> = b.iter().map(|r| r.descriptor.timestamp).collect();
            assert_eq!(ts.len(), 1, "one executing timestamp per request");
            (b[0].descriptor.timestamp, b.len())
        })
        .collect();
    by_ts.sort();
    assert_eq!(by_ts, vec![(1_000_002, 1), (1_000_004, 2), (1_000_006, 1), (1_000_008, 1)]);
}

#[tokio::test]
async fn thousands_of_txs_one_request_per_presumed_block() {
    // 5,000 txs from 250 senders, every 10th an interop tx; 2M gas blocks hold ~40 txs.
    let h = harness(|c| {
        c.near_blocks = 4;
        c.max_checks_per_request = 10_000;
    })
    .await;
    h.el.set_head(Head { gas_limit: 2_100_000, ..HEAD });
    let pool = generate_pool(250, 20, 10, |i| vec![msg(i)]);
    let interop: HashSet<B256> =
        pool.iter().filter(|t| !t.access_list.0.is_empty()).map(|t| t.hash).collect();
    assert_eq!(interop.len(), 500);
    h.el.insert(pool);

    // Full pass: every interop tx checked once, one request per presumed block that holds one.
    let full = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!(full.pool_txs, 5_000);
    assert_eq!(full.tracked, 500);
    assert!(full.presumed_blocks > 50, "{full:?}");
    assert_eq!(full.txs_checked, 500);
    assert_eq!(h.backend.batch_calls(), full.requests);
    assert_eq!(full.requests, full.blocks_checked);
    assert_eq!(h.backend.single_calls(), 0);
    let batches = h.backend.take_batches();
    let mut seen_ts = HashSet::new();
    for b in &batches {
        let ts: HashSet<u64> = b.iter().map(|r| r.descriptor.timestamp).collect();
        assert_eq!(ts.len(), 1);
        assert!(seen_ts.insert(b[0].descriptor.timestamp), "one request per presumed block");
    }
    // Each tx's status names the presumed block whose timestamp its check used.
    let mut per_block: BTreeMap<u64, usize> = BTreeMap::new();
    for hash in interop.iter().take(40) {
        let s = h.rpc("interop_transactionStatus", json!([hash])).await.unwrap();
        let block = s["presumedBlock"].as_u64().unwrap();
        assert_eq!(s["expectedTimestamp"].as_u64().unwrap(), HEAD.timestamp + (block + 1) * 2);
        *per_block.entry(block).or_default() += 1;
    }
    assert!(per_block.len() > 1);

    // Near pass: only the next 4 presumed blocks, still one request each.
    let calls_before = h.backend.batch_calls();
    let near = h.reval.core.run_pass(PassKind::Near).await.unwrap();
    assert!(near.blocks_checked >= 1 && near.blocks_checked <= 4, "{near:?}");
    assert_eq!(near.requests, near.blocks_checked);
    assert_eq!(h.backend.batch_calls() - calls_before, near.requests);
    let batches = h.backend.take_batches();
    let max_near_ts = HEAD.timestamp + 4 * 2;
    assert!(batches.iter().flatten().all(|r| r.descriptor.timestamp <= max_near_ts));
    // Near txs are re-checked for one interval (2 s); far ones until the next full pass.
    assert!(batches.iter().flatten().all(|r| r.descriptor.timestamp > HEAD.timestamp));
    assert!(batches.iter().flatten().all(|r| r.descriptor.timeout == Some(2)));
    assert!(near.txs_checked < 500);

    let status = h.rpc("interop_revalidationStatus", json!([])).await.unwrap();
    assert_eq!(status["lastPass"]["kind"], "near");
    assert_eq!(status["lastPass"]["requests"], near.requests);
    assert_eq!(status["tracked"], 500);
    assert_eq!(status["lastPass"]["head"]["number"], HEAD.number);
}

#[tokio::test]
async fn big_blocks_are_split_at_the_request_size_limit() {
    let h = harness(|c| c.max_checks_per_request = 30).await;
    h.el.insert(generate_pool(100, 1, 1, |i| vec![msg(i)]));
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    // 100 txs of <= 101k gas fit one 30M block: one presumed block, 4 requests of <= 30.
    assert_eq!((r.presumed_blocks, r.blocks_checked, r.requests), (1, 1, 4));
    let sizes: Vec<usize> = h.backend.take_batches().iter().map(Vec::len).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 100);
    assert!(sizes.iter().all(|s| *s <= 30));
}

#[tokio::test]
async fn a_tx_that_leaves_the_pool_is_forgotten_but_its_feed_entry_stays() {
    let h = harness(|_| {}).await;
    let pool = generate_pool(10, 2, 2, |i| vec![msg(i)]);
    let bad = pool[0].clone();
    let good = pool[2].clone();
    h.backend.mark_invalid(&msg(0));
    h.el.insert(pool);
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!((r.tracked, r.invalid_found), (10, 1));
    assert_eq!(
        h.rpc("interop_transactionStatus", json!([good.hash])).await.unwrap()["tracked"],
        true
    );

    assert!(h.el.remove(&good.hash) && h.el.remove(&bad.hash));
    let r = h.reval.core.run_pass(PassKind::Near).await.unwrap();
    assert_eq!((r.tracked, r.forgotten), (8, 2));
    for tx in [&good, &bad] {
        let s = h.rpc("interop_transactionStatus", json!([tx.hash])).await.unwrap();
        assert_eq!(s["tracked"], false);
    }
    let (feed, _) = h.drain_feed(Value::Null).await;
    assert_eq!(feed, vec![bad.hash]);
}

#[tokio::test]
async fn undecodable_txs_are_skipped_and_malformed_lists_are_invalid_at_once() {
    let h = harness(|_| {}).await;
    h.el.insert(generate_pool(5, 2, 2, |i| vec![msg(i)]));
    h.el.insert_raw("0x00000000000000000000000000000000000000aa", "0", json!({"hash": "0x12"}));
    // A lookup entry with no checksum after it.
    let mut broken = MockTx::new(
        Address::repeat_byte(0xbb),
        0,
        50_000,
        Fees::Legacy { gas_price: 500 },
        &[msg(77)],
    );
    broken.access_list.0[0].storage_keys.truncate(1);
    h.el.insert([broken.clone()]);
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!((r.pool_txs, r.skipped, r.tracked), (11, 1, 6));
    assert_eq!(r.invalid_found, 1);
    let (feed, _) = h.drain_feed(Value::Null).await;
    assert_eq!(feed, vec![broken.hash]);
    let page = h.rpc("interop_invalidTransactions", json!([null])).await.unwrap();
    assert_eq!(page["entries"][0]["code"], -32602);
    // The malformed tx is never sent to the backend.
    assert_eq!(h.backend.take_batches().iter().flatten().count(), 5);
}

#[tokio::test]
async fn the_background_loop_runs_full_then_near_passes_and_stops_on_shutdown() {
    use interop_gate::dev::el_pool::MockElPool;
    use interop_gate::dev::spawn_peer;
    use interop_gate::revalidator::start;
    use std::sync::Arc;
    use std::time::Duration;

    let el = Arc::new(MockElPool::new(HEAD, 10));
    let peer = spawn_peer("el", el.clone(), "127.0.0.1:0").await.unwrap();
    el.insert(generate_pool(20, 5, 5, |i| vec![msg(i)]));
    let backend = Arc::new(revalidator_support::ScriptedBackend::default());
    let mut cfg = revalidator_support::config(&peer);
    cfg.interval_ms = std::time::Duration::from_millis(50);
    cfg.full_interval_ms = std::time::Duration::from_millis(60_000);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let reval = start(&cfg, backend.clone(), shutdown.clone(), true).await.unwrap();
    let client = reqwest::Client::new();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "interop_revalidationStatus"});
    let mut status = Value::Null;
    for _ in 0..200 {
        status = client.post(reval.url()).json(&body).send().await.unwrap().json().await.unwrap();
        if status["result"]["passes"].as_u64().unwrap_or(0) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = &status["result"];
    assert!(s["passes"].as_u64().unwrap() >= 3, "{status}");
    assert_eq!(s["lastPass"]["kind"], "near", "only the first pass is full within a minute");
    assert_eq!(s["tracked"], 20);
    assert!(el.calls("txpool_content") >= 3);
    // All 20 checked by the first (full) pass, in batches.
    assert!(backend.take_batches().iter().map(Vec::len).sum::<usize>() >= 20);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), reval.join()).await.unwrap().unwrap();
    let polls = el.calls("txpool_content");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(el.calls("txpool_content"), polls, "no pass after shutdown");
}
