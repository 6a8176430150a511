//! The pool mirror against the scripted EL over a real WebSocket and HTTP: announced txs,
//! inclusions by sender and nonce, replacements by fee, nonce gaps, a reorg of the executing
//! chain, a socket that drops and comes back, drift repaired by reconciliation, and an EL
//! without subscriptions (full reads on every pass).

use crate::revalidator_support;

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::Address;
use interop_gate::config::RevalidatorConfig;
use interop_gate::dev::el_pool::{spawn_el_pool, MockElPool, MockTx};
use interop_gate::dev::Peer;
use interop_gate::metrics::metrics;
use interop_gate::revalidator::pool::Fees;
use interop_gate::revalidator::{start, PassKind, RunningRevalidator};
use revalidator_support::{msg, ScriptedBackend, HEAD};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

struct Mirrored {
    _peer: Peer,
    reval: RunningRevalidator,
    shutdown: CancellationToken,
}

impl Drop for Mirrored {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn mirrored(el: Arc<MockElPool>, tweak: impl FnOnce(&mut RevalidatorConfig)) -> Mirrored {
    let peer = spawn_el_pool(el.clone()).await.unwrap();
    let mut cfg = RevalidatorConfig {
        enabled: true,
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        el_url: interop_gate::dev::parse_url(&peer.url()),
        el_ws_url: Some(interop_gate::dev::parse_url(&format!("ws://{}/", peer.addr))),
        // Only the reconciliations a test asks for (resubscription, reorg) unless it says so.
        reconcile_interval_ms: Duration::from_secs(3_600),
        el_ws_reconnect_ms: Duration::from_millis(50),
        ..Default::default()
    };
    tweak(&mut cfg);
    let shutdown = CancellationToken::new();
    let backend = Arc::new(ScriptedBackend::default());
    let reval = start(&cfg, backend, shutdown.clone(), false).await.unwrap();
    Mirrored { _peer: peer, reval, shutdown }
}

fn dynamic(tip: u128) -> Fees {
    Fees::dynamic(10_000, tip)
}

impl Mirrored {
    fn status(&self) -> Value {
        self.reval.core.status()["mirror"].clone()
    }

    fn live(&self) -> bool {
        self.status()["mode"] == "subscription"
    }

    fn mirrored(&self, tx: &MockTx) -> bool {
        self.reval.core.follower().unwrap().mirror().contains(&tx.hash)
    }

    fn reconciliations(&self) -> u64 {
        self.status()["reconciliations"].as_u64().unwrap()
    }

    /// Waits (bounded) until `cond` holds; the mirror is fed by its own tasks.
    async fn until(&self, what: &str, cond: impl Fn(&Self) -> bool) {
        for _ in 0..500 {
            if cond(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for: {what} (mirror status {})", self.status());
    }
}

#[tokio::test]
async fn announced_txs_and_inclusions_reach_passes_without_reading_txpool_content() {
    let el = Arc::new(MockElPool::new(HEAD, 10));
    let h = mirrored(el.clone(), |_| {}).await;
    h.until("live", Mirrored::live).await;
    let (a, b) = (Address::repeat_byte(0xa1), Address::repeat_byte(0xb1));
    let a0 = MockTx::new(a, 0, 50_000, dynamic(10), &[msg(1)]);
    let a1 = MockTx::new(a, 1, 50_000, dynamic(10), &[msg(2)]);
    let b0 = MockTx::new(b, 0, 21_000, dynamic(5), &[]);
    el.insert([a0.clone(), a1.clone(), b0.clone()]);
    h.until("three txs mirrored", |h| h.mirrored(&a0) && h.mirrored(&a1) && h.mirrored(&b0)).await;

    let reads = el.calls("txpool_content");
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!((r.pool_txs, r.tracked, r.txs_checked), (3, 2, 2));
    assert_eq!(el.calls("txpool_content"), reads, "a live mirror is read in place");

    // a0 is included: it leaves by sender and nonce, a1 stays.
    el.mine(&[a0.hash], 2);
    h.until("a0 gone", |h| !h.mirrored(&a0)).await;
    assert!(h.mirrored(&a1) && h.mirrored(&b0));
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!((r.pool_txs, r.tracked, r.forgotten), (2, 1, 1));
    assert_eq!(r.head.number, HEAD.number + 1, "passes place on the followed head");
    assert_eq!(el.calls("txpool_content"), reads);
}

#[tokio::test]
async fn replacements_by_fee_and_nonce_gaps_follow_the_el() {
    let el = Arc::new(MockElPool::new(HEAD, 10));
    let h = mirrored(el.clone(), |_| {}).await;
    h.until("live", Mirrored::live).await;
    let (x, y) = (Address::repeat_byte(0xc1), Address::repeat_byte(0xd1));
    let x0 = MockTx::new(x, 0, 50_000, dynamic(10), &[msg(3)]);
    el.insert([x0.clone()]);
    h.until("x0 mirrored", |h| h.mirrored(&x0)).await;
    // A fee bump: same sender and nonce, new hash. The old one leaves the mirror.
    let x0_bumped = MockTx::new(x, 0, 50_000, dynamic(30), &[msg(3)]).salted(1);
    el.insert([x0_bumped.clone()]);
    h.until("replacement mirrored", |h| h.mirrored(&x0_bumped)).await;
    assert!(!h.mirrored(&x0), "the replaced tx left");

    // A nonce gap: y2 waits behind the missing y1, unplaced.
    let y0 = MockTx::new(y, 0, 21_000, dynamic(10), &[msg(4)]);
    let y2 = MockTx::new(y, 2, 21_000, dynamic(10), &[msg(5)]);
    el.insert([y0.clone(), y2.clone()]);
    h.until("y mirrored", |h| h.mirrored(&y0) && h.mirrored(&y2)).await;
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!((r.pool_txs, r.tracked), (3, 3));
    let view = |hash| h.reval.core.transaction_status(&hash);
    assert_eq!(view(y0.hash)["presumedBlock"], 0);
    assert_eq!(view(y2.hash)["presumedBlock"], Value::Null, "behind a nonce gap");
    assert_eq!(view(x0.hash)["tracked"], false);

    // The EL includes a replacement the mirror never saw (announced to nobody): x's nonce 0
    // leaves the mirror by sender and nonce, whatever its hash.
    let x0_other = MockTx::new(x, 0, 50_000, dynamic(50), &[msg(3)]).salted(2);
    el.insert_quietly([x0_other.clone()]);
    el.mine(&[x0_other.hash], 2);
    h.until("x's nonce 0 gone", |h| !h.mirrored(&x0_bumped)).await;
    assert!(h.mirrored(&y0) && h.mirrored(&y2));
}

#[tokio::test]
async fn a_reorg_of_the_executing_chain_puts_dropped_txs_back_by_reconciliation() {
    let el = Arc::new(MockElPool::new(HEAD, 10));
    let h = mirrored(el.clone(), |_| {}).await;
    h.until("live", Mirrored::live).await;
    let z = Address::repeat_byte(0xe1);
    let z0 = MockTx::new(z, 0, 50_000, dynamic(10), &[msg(6)]);
    el.insert([z0.clone()]);
    h.until("z0 mirrored", |h| h.mirrored(&z0)).await;
    el.mine(&[z0.hash], 2);
    h.until("z0 included", |h| !h.mirrored(&z0)).await;

    let reorgs = metrics().revalidator_mirror_events.with_label_values(&["reorg"]).get();
    let repaired = metrics().revalidator_mirror_repairs.with_label_values(&["added"]).get();
    let before = h.reconciliations();
    // Block 101 is replaced by an empty 101': z0 is back in the EL's pool, unannounced.
    el.reorg(1, &[], 2);
    h.until("z0 back after the reorg", |h| h.mirrored(&z0)).await;
    assert!(h.reconciliations() > before, "the reorg triggered a reconciliation");
    assert!(metrics().revalidator_mirror_events.with_label_values(&["reorg"]).get() > reorgs);
    assert!(metrics().revalidator_mirror_repairs.with_label_values(&["added"]).get() > repaired);
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!((r.pool_txs, r.tracked, r.head.number), (1, 1, HEAD.number + 1));
}

#[tokio::test]
async fn a_dropped_subscription_falls_back_to_full_reads_and_resumes() {
    let el = Arc::new(MockElPool::new(HEAD, 10));
    let h = mirrored(el.clone(), |_| {}).await;
    h.until("live", Mirrored::live).await;
    assert_eq!(h.status()["subscriptions"], 1);
    el.set_subscriptions(false);
    el.drop_ws();
    h.until("polling", |h| !h.live()).await;
    // While down, the pool changes and passes read it whole.
    let w = Address::repeat_byte(0xf1);
    let w0 = MockTx::new(w, 0, 50_000, dynamic(10), &[msg(7)]);
    el.insert([w0.clone()]);
    let reads = el.calls("txpool_content");
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!((r.pool_txs, r.tracked), (1, 1));
    assert_eq!(el.calls("txpool_content"), reads + 1, "no mirror: a full read");

    // Back: the mirror re-subscribes, reconciles what it missed, and passes read it again.
    el.set_subscriptions(true);
    h.until("live again", Mirrored::live).await;
    assert_eq!(h.status()["subscriptions"], 2);
    assert!(h.mirrored(&w0), "the tx added while down came in by reconciliation");
    let reads = el.calls("txpool_content");
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!((r.pool_txs, r.tracked), (1, 1));
    assert_eq!(el.calls("txpool_content"), reads);
}

#[tokio::test]
async fn drift_is_repaired_by_the_periodic_reconciliation() {
    let el = Arc::new(MockElPool::new(HEAD, 10));
    let h = mirrored(el.clone(), |c| c.reconcile_interval_ms = Duration::from_millis(100)).await;
    h.until("live", Mirrored::live).await;
    let v = Address::repeat_byte(0x71);
    let evicted = MockTx::new(v, 0, 50_000, dynamic(10), &[msg(8)]);
    el.insert([evicted.clone()]);
    h.until("announced tx mirrored", |h| h.mirrored(&evicted)).await;
    let removed = metrics().revalidator_mirror_repairs.with_label_values(&["removed"]).get();
    let added = metrics().revalidator_mirror_repairs.with_label_values(&["added"]).get();
    // The EL evicts one tx and takes another, neither announced.
    assert!(el.remove(&evicted.hash));
    let unseen = MockTx::new(Address::repeat_byte(0x72), 0, 50_000, dynamic(10), &[msg(9)]);
    el.insert_quietly([unseen.clone()]);
    h.until("drift repaired", |h| !h.mirrored(&evicted) && h.mirrored(&unseen)).await;
    assert!(metrics().revalidator_mirror_repairs.with_label_values(&["removed"]).get() > removed);
    assert!(metrics().revalidator_mirror_repairs.with_label_values(&["added"]).get() > added);
    assert!(h.live(), "reconciling does not interrupt the mirror");
}

#[tokio::test]
async fn an_el_without_subscriptions_is_read_whole_on_every_pass() {
    let el = Arc::new(MockElPool::new(HEAD, 10));
    el.set_subscriptions(false);
    let unsupported = metrics().revalidator_mirror_events.with_label_values(&["unsupported"]).get();
    let h = mirrored(el.clone(), |_| {}).await;
    h.until("refused", |_| {
        metrics().revalidator_mirror_events.with_label_values(&["unsupported"]).get() > unsupported
    })
    .await;
    assert_eq!(h.status()["mode"], "polling");
    let u0 = MockTx::new(Address::repeat_byte(0x81), 0, 50_000, dynamic(10), &[msg(10)]);
    el.insert([u0]);
    let reads = el.calls("txpool_content");
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!((r.pool_txs, r.tracked), (1, 1));
    assert_eq!(el.calls("txpool_content"), reads + 1);
    assert_eq!(el.subscriptions(), 0);
}

fn mirror_event(event: &str) -> u64 {
    metrics().revalidator_mirror_events.with_label_values(&[event]).get()
}

#[tokio::test]
async fn an_el_announcing_hashes_only_is_polled_and_asked_again_only_at_the_reconcile_interval() {
    let el = Arc::new(MockElPool::new(HEAD, 10));
    el.set_hashes_only(true);
    let h = mirrored(el.clone(), |c| c.reconcile_interval_ms = Duration::from_millis(300)).await;
    h.until("live", Mirrored::live).await;
    let unsupported = mirror_event("unsupported");
    let h0 = MockTx::new(Address::repeat_byte(0x91), 0, 50_000, dynamic(10), &[msg(11)]);
    el.insert([h0.clone()]);
    // The first hash ends the subscription: polling, with the reason in the status.
    h.until("polling", |h| !h.live()).await;
    assert!(mirror_event("unsupported") > unsupported);
    let reason = h.status()["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("hashes only"), "{reason}");
    let reads = el.calls("txpool_content");
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!((r.pool_txs, r.tracked), (1, 1), "passes read the pool whole");
    assert!(el.calls("txpool_content") > reads);

    // Not re-asked every el_ws_reconnect_ms (50 ms here) but every reconcile_interval_ms; once
    // the EL sends full objects the mirror is live again.
    el.set_hashes_only(false);
    h.until("live again", Mirrored::live).await;
    assert!(h.mirrored(&h0), "the tx announced by hash came in by reconciliation");
    let h1 = MockTx::new(Address::repeat_byte(0x92), 0, 50_000, dynamic(10), &[msg(12)]);
    el.insert([h1.clone()]);
    h.until("full object mirrored", |h| h.mirrored(&h1)).await;
    assert_eq!(h.status()["reason"], Value::Null);
}

#[tokio::test]
async fn an_over_size_message_drops_the_socket_and_the_mirror_resumes_while_the_api_serves() {
    let el = Arc::new(MockElPool::new(HEAD, 10));
    let h = mirrored(el.clone(), |c| c.el_ws_max_message_bytes = 4_096).await;
    h.until("live", Mirrored::live).await;
    let (lost, subscriptions) = (mirror_event("lost"), h.status()["subscriptions"].clone());
    // 40 messages: an access list of ~5.5 KB, over the 4 KiB bound.
    let msgs: Vec<_> = (20..60).map(msg).collect();
    let big = MockTx::new(Address::repeat_byte(0x93), 0, 500_000, dynamic(10), &msgs);
    el.insert([big.clone()]);
    h.until("socket dropped", |_| mirror_event("lost") > lost).await;
    let reason = h.status()["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("el_ws_max_message_bytes"), "{reason}");
    // The API serves throughout, and a pass reads the pool whole meanwhile.
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!(r.tracked, 1);
    // Resubscribed; the over-size tx came in by the reconciliation (HTTP, its own bound).
    h.until("live again", |h| h.live() && h.status()["subscriptions"] != subscriptions).await;
    assert!(h.mirrored(&big));
    let small = MockTx::new(Address::repeat_byte(0x94), 0, 50_000, dynamic(10), &[msg(13)]);
    el.insert([small.clone()]);
    h.until("small tx mirrored", |h| h.mirrored(&small)).await;
}

#[tokio::test]
async fn heads_beyond_the_queue_are_dropped_counted_and_repaired_by_reconciliation() {
    let el = Arc::new(MockElPool::new(HEAD, 10));
    let h = mirrored(el.clone(), |_| {}).await;
    h.until("live", Mirrored::live).await;
    let txs: Vec<MockTx> = (0..80u8)
        .map(|i| {
            let from = Address::with_last_byte(i).into_array();
            let mut a = from;
            a[0] = 0x5a;
            MockTx::new(Address::from(a), 0, 21_000, dynamic(10), &[])
        })
        .collect();
    el.insert(txs.clone());
    h.until("80 txs mirrored", |h| txs.iter().all(|t| h.mirrored(t))).await;
    let (dropped, removed) = (
        mirror_event("heads_dropped"),
        metrics().revalidator_mirror_repairs.with_label_values(&["removed"]).get(),
    );
    // A slow EL: the follower's first block read stalls while 80 heads arrive (64 queue).
    el.hold_blocks(true);
    for t in &txs {
        el.mine(&[t.hash], 2);
    }
    h.until("heads dropped", |_| mirror_event("heads_dropped") > dropped).await;
    el.hold_blocks(false);
    // Every included tx leaves: by its head, or (dropped heads) by the reconciliation.
    h.until("every included tx gone", |h| txs.iter().all(|t| !h.mirrored(t))).await;
    assert!(
        metrics().revalidator_mirror_repairs.with_label_values(&["removed"]).get() > removed,
        "the reconciliation removed what dropped heads included"
    );
    assert!(h.live());
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!((r.pool_txs, r.head.number), (0, HEAD.number + 80));
}

#[tokio::test]
async fn garbage_truncated_and_unknown_frames_are_skipped_without_dropping_the_socket() {
    use axum::extract::ws::Message as Frame;
    let el = Arc::new(MockElPool::new(HEAD, 10));
    let h = mirrored(el.clone(), |_| {}).await;
    h.until("live", Mirrored::live).await;
    let (undecodable, lost) = (mirror_event("undecodable"), mirror_event("lost"));
    let note = |sub: &str, result: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"{sub}","result":{result}}}}}"#
        )
    };
    for frame in [
        Frame::Text("not json at all".into()),
        Frame::Text(note("0x5b000", "{}")[..40].to_owned().into()), // cut short
        Frame::Text(note("0xdead", r#"{"hash":"0x01"}"#).into()),   // unknown subscription
        Frame::Binary(vec![0xff, 0x00, 0x13].into()),
        Frame::Text(r#"{"jsonrpc":"2.0","id":7,"result":true}"#.into()), // not a notification
    ] {
        el.send_ws(frame);
    }
    // A tx announced after them still arrives on the same socket.
    let g0 = MockTx::new(Address::repeat_byte(0x95), 0, 50_000, dynamic(10), &[msg(14)]);
    el.insert([g0.clone()]);
    h.until("announced tx mirrored", |h| h.mirrored(&g0)).await;
    assert!(mirror_event("undecodable") >= undecodable + 5);
    assert_eq!(mirror_event("lost"), lost);
    assert_eq!(h.status()["subscriptions"], 1, "the socket was kept");
    assert!(h.live());
}

#[tokio::test]
async fn a_socket_breaking_the_websocket_protocol_falls_back_to_polling_and_keeps_retrying() {
    use interop_gate::dev::el_pool::{spawn_broken_ws, BrokenFrame};
    for frame in [BrokenFrame::ReservedOpcode, BrokenFrame::Truncated] {
        let el = Arc::new(MockElPool::new(HEAD, 10));
        let broken = spawn_broken_ws(frame).await.unwrap();
        let url = format!("ws://{}/", broken.addr);
        let h = mirrored(el.clone(), |c| {
            c.el_ws_url = Some(interop_gate::dev::parse_url(&url));
        })
        .await;
        let lost = mirror_event("lost");
        // It subscribes, the frame breaks the socket, it retries: every attempt ends the same.
        h.until("two lost sockets", |_| mirror_event("lost") >= lost + 2).await;
        assert!(!h.live(), "{frame:?}");
        assert!(h.status()["subscriptions"].as_u64().unwrap() >= 2, "{frame:?}");
        let reason = h.status()["reason"].as_str().unwrap_or_default().to_owned();
        assert!(reason.contains("unavailable"), "{frame:?}: {reason}");
        let u0 = MockTx::new(Address::repeat_byte(0x96), 0, 50_000, dynamic(10), &[msg(15)]);
        el.insert([u0]);
        let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
        assert_eq!((r.pool_txs, r.tracked), (1, 1), "{frame:?}: passes read the pool whole");
    }
}

#[tokio::test]
async fn a_pool_of_several_read_batches_is_reconciled_batch_by_batch_to_the_els() {
    // 14,000 txs: over three of the read's 4,096-tx batches, so the mirror takes the read in
    // pieces as it is decoded (no second copy of the pool) and must still end up exact.
    let pool = interop_gate::dev::el_pool::generate_pool(700, 20, 10, |i| vec![msg(i)]);
    let (first, later) = pool.split_at(10_000);
    let el = Arc::new(MockElPool::new(HEAD, 10));
    el.insert_quietly(first.iter().cloned());
    let h = mirrored(el.clone(), |_| {}).await;
    h.until("live with the 10,000 pooled txs", |h| h.live() && h.status()["txs"] == 10_000).await;
    // Unannounced: the EL evicts 1,000 txs (50 senders) and takes 4,000 new ones.
    let (evicted, kept) = first.split_at(1_000);
    for t in evicted {
        assert!(el.remove(&t.hash));
    }
    el.insert_quietly(later.iter().cloned());
    // A periodic read waits 50 times as long as the last one took (a debug build reads 10,000
    // txs slowly): a resubscription reconciles at once.
    let done = h.reconciliations();
    el.drop_ws();
    h.until("a new reconciliation", |h| h.reconciliations() > done).await;
    h.until("the drift repaired", |h| h.status()["txs"] == 13_000).await;
    for t in [&evicted[0], &evicted[999]] {
        assert!(!h.mirrored(t), "evicted {} gone", t.hash);
    }
    for t in [&kept[0], &kept[8_999], &later[0], &later[3_999]] {
        assert!(h.mirrored(t), "{} mirrored", t.hash);
    }
    // Passes read the repaired mirror: every interop tx of the pool is tracked.
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!((r.pool_txs, r.tracked), (13_000, 1_300));
    assert!(h.live(), "reconciling does not interrupt the mirror");
}
