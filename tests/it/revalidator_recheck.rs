//! Event-driven re-checks: a source-chain reorg at block N re-checks at once exactly the tracked
//! txs with a message on that chain at N or after, one request per presumed block (with that
//! block's timestamp), and nothing else.

use crate::revalidator_support;

use alloy_primitives::{Address, U256};
use interop_gate::dev::el_pool::MockTx;
use interop_gate::interop::Message;
use interop_gate::revalidator::pool::{Fees, Head};
use interop_gate::revalidator::PassKind;
use revalidator_support::{harness, msg, HEAD};
use serde_json::json;

#[tokio::test]
async fn a_reorg_rechecks_only_the_txs_in_affected_blocks_one_request_per_presumed_block() {
    // Effective gas limit 100k: t1 fills block 0, t2 and t3 share block 1, t4 is in block 2.
    let h = harness(|_| {}).await;
    h.el.set_head(Head { gas_limit: 200_000, ..HEAD });
    let fees = |tip| Fees::dynamic(10_000, tip);
    let other_chain = Message { chain_id: U256::from(902), ..msg(30) };
    let t1 = MockTx::new(Address::repeat_byte(1), 0, 60_000, fees(50), &[msg(10)]);
    let t2 = MockTx::new(Address::repeat_byte(2), 0, 60_000, fees(40), &[msg(11)]);
    let t3 = MockTx::new(Address::repeat_byte(3), 0, 30_000, fees(30), &[msg(20)]);
    let t4 = MockTx::new(Address::repeat_byte(4), 0, 21_000, fees(20), &[other_chain]);
    h.el.insert([t1.clone(), t2.clone(), t3.clone(), t4.clone()]);
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!((r.tracked, r.presumed_blocks), (4, 3));
    h.backend.take_batches();
    let (calls, reads) = (h.backend.batch_calls(), h.el.calls("txpool_content"));

    // Chain 901 reorged from block 15: only t3 (block 20) rests on it; it is now invalid.
    h.backend.mark_invalid(&msg(20));
    let r = h.reval.core.recheck_reorged(U256::from(901), 15).await;
    assert_eq!((r.txs, r.requests, r.invalid_found), (1, 1, 1));
    let batches = h.backend.take_batches();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].len(), 1);
    assert_eq!(batches[0][0].messages[..], [msg(20)]);
    assert_eq!(batches[0][0].descriptor.timestamp, 1_000_004, "t3's presumed block 1");
    let (feed, _) = h.drain_feed(json!(null)).await;
    assert_eq!(feed, vec![t3.hash]);

    // From block 10: t1 (block 0) and t2 (block 1); t3 is already published, t4 is on another
    // chain. Two requests, each with its presumed block's timestamp.
    let r = h.reval.core.recheck_reorged(U256::from(901), 10).await;
    assert_eq!((r.txs, r.requests, r.invalid_found), (2, 2, 0));
    let mut got: Vec<(u64, Vec<Message>)> = h
        .backend
        .take_batches()
        .into_iter()
        .map(|b| {
            assert_eq!(b.len(), 1);
            (b[0].descriptor.timestamp, b[0].messages.to_vec())
        })
        .collect();
    got.sort_by_key(|(ts, _)| *ts);
    assert_eq!(got, vec![(1_000_002, vec![msg(10)]), (1_000_004, vec![msg(11)])]);

    // A reorg above every message touches nothing: no request at all.
    let r = h.reval.core.recheck_reorged(U256::from(901), 1_000).await;
    assert_eq!((r.txs, r.requests), (0, 0));
    assert_eq!(h.backend.batch_calls(), calls + 3);
    assert_eq!(h.el.calls("txpool_content"), reads, "a re-check does not read the pool");
}

/// The real app (revalidator and light backend, no ingress) against a simulated source chain
/// and the mock EL, with the light backend's watch every 50 ms and passes far apart (every
/// 60 s: after the first, at start, anything that happens is event-driven).
struct EventApp {
    running: interop_gate::app::Running,
    chain: std::sync::Arc<interop_gate::dev::chain::SimChain>,
    _peers: (interop_gate::dev::Peer, interop_gate::dev::Peer),
    http: reqwest::Client,
}

impl Drop for EventApp {
    fn drop(&mut self) {
        self.running.shutdown();
    }
}

/// Chain 901 with blocks 1..=10 of two logs each; the EL's pool holds `txs(chain)` at start.
async fn event_app(
    min_safety: interop_gate::interop::SafetyLevel,
    txs: impl FnOnce(&interop_gate::dev::chain::SimChain) -> Vec<MockTx>,
) -> EventApp {
    use crate::common::{now, pings, SOURCE};
    use interop_gate::dev::chain::SimChain;
    use interop_gate::dev::el_pool::MockElPool;
    use interop_gate::dev::{light_chain, parse_url, spawn_peer};
    use std::time::Duration;

    let chain = SimChain::new(SOURCE, now() - 3_600, 2);
    for i in 1..=10u8 {
        chain.push_block(pings(2, i));
    }
    let chain_peer = spawn_peer("chain", chain.clone(), "127.0.0.1:0").await.unwrap();
    let el = std::sync::Arc::new(MockElPool::new(
        Head { number: 100, timestamp: now(), base_fee: 100, gas_limit: 200_000 },
        10,
    ));
    el.insert(txs(&chain));
    let el_peer = spawn_peer("el", el.clone(), "127.0.0.1:0").await.unwrap();
    let mut cfg = crate::common::loopback_config();
    cfg.ingress.enabled = false;
    cfg.light.chains = vec![light_chain(SOURCE, &[chain_peer.url()])];
    cfg.light.reorg_watch_ms = Duration::from_millis(50);
    cfg.validation.policy = interop_gate::config::PolicyMode::Light;
    cfg.revalidator.enabled = true;
    cfg.revalidator.el_url = parse_url(&el_peer.url());
    cfg.revalidator.min_safety = min_safety;
    cfg.revalidator.interval_ms = Duration::from_secs(60);
    cfg.revalidator.full_interval_ms = Duration::from_secs(60);
    cfg.validate().unwrap();
    let running =
        interop_gate::app::start(cfg, tokio_util::sync::CancellationToken::new()).await.unwrap();
    let app =
        EventApp { running, chain, _peers: (chain_peer, el_peer), http: reqwest::Client::new() };
    app.until("the first pass", |s| s["passes"] == 1).await;
    app
}

impl EventApp {
    async fn rpc(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let url = format!("http://{}/", self.running.revalidator_addr.unwrap());
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let (_, v) = crate::common::post_json(&self.http, &url, &body).await;
        v["result"].clone()
    }

    async fn status(&self) -> serde_json::Value {
        self.rpc("interop_revalidationStatus", json!([])).await
    }

    async fn tx(&self, t: &MockTx) -> String {
        let v = self.rpc("interop_transactionStatus", json!([t.hash])).await;
        v["status"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits (bounded: 10 s) until the status satisfies `cond`.
    async fn until(&self, what: &str, cond: impl Fn(&serde_json::Value) -> bool) {
        for _ in 0..1_000 {
            if cond(&self.status().await) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}: {}", self.status().await);
    }

    /// Waits (bounded: 10 s) until each tx has the status wanted.
    async fn until_txs(&self, want: &[(&MockTx, &str)]) {
        for _ in 0..1_000 {
            let mut all = true;
            for (t, s) in want {
                all &= self.tx(t).await == *s;
            }
            if all {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let mut got = Vec::new();
        for (t, _) in want {
            got.push(self.tx(t).await);
        }
        panic!("txs never reached {:?}: {got:?}", want.iter().map(|w| w.1).collect::<Vec<_>>());
    }

    /// `rechecks.{cause}` as (events, txs, requests, invalidFound).
    async fn rechecks(&self, cause: &str) -> (u64, u64, u64, u64) {
        let r = &self.status().await["rechecks"][cause];
        let n = |k: &str| r[k].as_u64().unwrap();
        (n("events"), n("txs"), n("requests"), n("invalidFound"))
    }
}

fn tip(t: u128) -> Fees {
    Fees::dynamic(10_000, t)
}

#[tokio::test]
async fn a_reorg_seen_by_the_watch_rechecks_only_the_affected_presumed_block_through_the_app() {
    use interop_gate::interop::SafetyLevel;
    // Effective gas limit 100k: p fills presumed block 0, q and r share block 1, s is in block 2.
    let mut txs = Vec::new();
    let h = event_app(SafetyLevel::CrossUnsafe, |c| {
        let m = |n, i| c.message(n, i).unwrap();
        txs = vec![
            MockTx::new(Address::repeat_byte(1), 0, 60_000, tip(50), &[m(3, 0)]),
            MockTx::new(Address::repeat_byte(2), 0, 60_000, tip(40), &[m(7, 0)]),
            MockTx::new(Address::repeat_byte(3), 0, 30_000, tip(30), &[m(9, 1)]),
            MockTx::new(Address::repeat_byte(4), 0, 21_000, tip(20), &[m(2, 0)]),
        ];
        txs.clone()
    })
    .await;
    let [p, q, r, s] = [&txs[0], &txs[1], &txs[2], &txs[3]];
    h.until_txs(&[(p, "valid"), (q, "valid"), (r, "valid"), (s, "valid")]).await;
    assert_eq!(h.status().await["lastPass"]["presumedBlocks"], 3);
    let before = h.rechecks("reorg").await;

    // Blocks 7..=10 are replaced by blocks without logs: q and r lose their messages. The
    // watch sees one reorg from block 7; the re-check asks about presumed block 1 only.
    h.chain.reorg(7);
    h.until_txs(&[(q, "invalid"), (r, "invalid")]).await;
    let after = h.rechecks("reorg").await;
    assert_eq!(
        (after.1 - before.1, after.2 - before.2, after.3 - before.3),
        (2, 1, 2),
        "two txs, one request (their presumed block), two published"
    );
    assert_eq!((h.tx(p).await, h.tx(s).await), ("valid".into(), "valid".into()));
    assert_eq!(h.status().await["passes"], 1, "no interval pass did it");
    let feed = h.rpc("interop_invalidTransactions", json!([null])).await;
    let mut published: Vec<String> =
        feed["entries"].as_array().unwrap().iter().map(|e| e["hash"].to_string()).collect();
    published.sort();
    let mut want = vec![json!(q.hash).to_string(), json!(r.hash).to_string()];
    want.sort();
    assert_eq!(published, want);
}

#[tokio::test]
async fn a_safe_head_reaching_waiting_blocks_rechecks_only_the_waiting_txs_at_once() {
    use interop_gate::interop::SafetyLevel;
    // `safe` trails `latest` (10) by 4: blocks up to 6 are safe. Presumed block 0: b1 (waits on
    // block 8) and c (block 10); block 1: b2 (block 8) and a (block 3, safe already).
    let mut txs = Vec::new();
    let h = event_app(SafetyLevel::Safe, |c| {
        let m = |n, i| c.message(n, i).unwrap();
        txs = vec![
            MockTx::new(Address::repeat_byte(1), 0, 60_000, tip(50), &[m(8, 0)]),
            MockTx::new(Address::repeat_byte(2), 0, 30_000, tip(40), &[m(10, 0)]),
            MockTx::new(Address::repeat_byte(3), 0, 60_000, tip(30), &[m(8, 1)]),
            MockTx::new(Address::repeat_byte(4), 0, 21_000, tip(20), &[m(3, 0)]),
        ];
        txs.clone()
    })
    .await;
    let [b1, c, b2, a] = [&txs[0], &txs[1], &txs[2], &txs[3]];
    h.until_txs(&[(b1, "pending"), (c, "pending"), (b2, "pending"), (a, "valid")]).await;
    let safe_reads = || h.chain.calls("eth_getBlockByNumber:safe");
    // Something waits on `safe`: the watch reads it every tick.
    let reads = safe_reads();
    for _ in 0..500 {
        if safe_reads() > reads + 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(safe_reads() > reads + 1, "the watch follows `safe` while txs wait on it");
    let before = h.rechecks("head").await;

    // `safe` reaches block 8: b1 and b2 are re-checked at once, one request for each presumed
    // block, without c (block 10) or a.
    h.chain.set_depths(2, 8);
    h.until_txs(&[(b1, "valid"), (b2, "valid")]).await;
    let mid = h.rechecks("head").await;
    assert_eq!((mid.1 - before.1, mid.2 - before.2, mid.3 - before.3), (2, 2, 0));
    assert_eq!(h.tx(c).await, "pending", "block 10 is not safe yet");

    // `safe` reaches block 10: c alone.
    h.chain.set_depths(0, 8);
    h.until_txs(&[(c, "valid")]).await;
    let end = h.rechecks("head").await;
    assert_eq!((end.1 - mid.1, end.2 - mid.2), (1, 1));
    assert_eq!(h.status().await["passes"], 1, "no interval pass did it");

    // Nothing waits any more: the watch stops reading `safe` (only `latest` each tick).
    let latest_reads = || h.chain.calls("eth_getBlockByNumber:latest");
    let (safe, latest) = (safe_reads(), latest_reads());
    while latest_reads() < latest + 3 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(safe_reads(), safe);
}
