//! The integrators' client (`crates/interop-gate-client`) against the real revalidator: the
//! follower yields every published-invalid tx once while the revalidator is killed and restarted
//! mid-stream (push, and polling only), and the typed calls.

use crate::revalidator_support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::B256;
use interop_gate::dev::el_pool::{generate_pool, MockElPool};
use interop_gate::dev::spawn_peer;
use interop_gate::interop::encode_entries;
use interop_gate::revalidator::{start, PassKind, RunningRevalidator};
use interop_gate_client::{
    CheckOutcome, Client, CursorStore, Descriptor, Follower, FollowerConfig, Hooks, MemoryCursor,
    Via,
};
use revalidator_support::{config, msg, ScriptedBackend, HEAD};
use tokio_util::sync::CancellationToken;

/// Counts what the follower reports.
#[derive(Default)]
struct Counted {
    errors: Mutex<usize>,
    truncated: Mutex<usize>,
    sources: Mutex<Vec<Via>>,
}

impl Hooks for Counted {
    fn on_error(&self, _: &interop_gate_client::Error, _: Duration) {
        *self.errors.lock().unwrap() += 1;
    }
    fn on_truncated(&self) {
        *self.truncated.lock().unwrap() += 1;
    }
    fn on_source(&self, via: Via) {
        self.sources.lock().unwrap().push(via);
    }
}

/// Polls `f` until it holds (bounded); the condition is what is asserted.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

async fn run_revalidator(
    el: &interop_gate::dev::Peer,
    listen: &str,
    backend: Arc<ScriptedBackend>,
) -> (RunningRevalidator, CancellationToken) {
    let mut cfg = config(el);
    cfg.listen = listen.into();
    let shutdown = CancellationToken::new();
    (start(&cfg, backend, shutdown.clone(), false).await.expect("starts"), shutdown)
}

async fn follow_through_a_restart(push: bool) {
    let el = Arc::new(MockElPool::new(HEAD, 10));
    let el_peer = spawn_peer("el", el.clone(), "127.0.0.1:0").await.unwrap();
    let backend = Arc::new(ScriptedBackend::default());
    let pool = generate_pool(10, 4, 1, |i| vec![msg(i)]);
    el.insert(pool.clone());
    let (reval, shutdown) = run_revalidator(&el_peer, "127.0.0.1:0", backend.clone()).await;
    let listen = reval.addr.to_string();
    reval.core.run_pass(PassKind::Full).await.unwrap();

    // The consumer drops each yielded hash from the pool, as a reth pool task would with
    // `remove_transactions`.
    let mut cfg = FollowerConfig::new(reval.url());
    cfg.push = push;
    cfg.poll_interval = Duration::from_millis(20);
    cfg.backoff = (Duration::from_millis(20), Duration::from_millis(200));
    let hooks = Arc::new(Counted::default());
    let cursor = MemoryCursor::default();
    let mut follower =
        Follower::new(cfg, Box::new(cursor.clone()), Box::new(hooks.clone())).unwrap();
    let got: Arc<Mutex<Vec<B256>>> = Arc::default();
    let (got2, el2) = (got.clone(), el.clone());
    let consumer = tokio::spawn(async move {
        loop {
            let batch = follower.next().await;
            for h in batch.hashes() {
                el2.remove(&h);
                got2.lock().unwrap().push(h);
            }
        }
    });

    for i in [1, 5, 9] {
        backend.mark_invalid(&msg(i));
    }
    reval.core.run_pass(PassKind::Full).await.unwrap();
    eventually("the first three", || got.lock().unwrap().len() == 3).await;

    // Killed mid-stream; two more go bad while it is down; it restarts on the same address
    // (a new process would: a new feed, cursors from the old run are recognised as such).
    shutdown.cancel();
    reval.join().await.unwrap();
    for i in [20, 33] {
        backend.mark_invalid(&msg(i));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (reval, shutdown) = run_revalidator(&el_peer, &listen, backend.clone()).await;
    reval.core.run_pass(PassKind::Full).await.unwrap();
    eventually("the two published after the restart", || got.lock().unwrap().len() >= 5).await;
    // Then live again.
    backend.mark_invalid(&msg(38));
    reval.core.run_pass(PassKind::Full).await.unwrap();
    eventually("the live one", || got.lock().unwrap().len() >= 6).await;
    // A pass more publishes nothing the consumer already dropped.
    reval.core.run_pass(PassKind::Full).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    consumer.abort();
    let got = got.lock().unwrap().clone();
    let want: HashSet<B256> = [1, 5, 9, 20, 33, 38].iter().map(|i| pool[*i].hash).collect();
    assert_eq!(got.len(), want.len(), "nothing repeated: {got:?}");
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), want, "nothing lost");
    assert!(*hooks.errors.lock().unwrap() >= 1, "the outage was reported");
    assert!(*hooks.truncated.lock().unwrap() >= 1, "the restart was noticed");
    let sources = hooks.sources.lock().unwrap().clone();
    if push {
        assert_eq!(sources.first(), Some(&Via::Push));
        assert!(sources.iter().filter(|v| **v == Via::Push).count() >= 2, "{sources:?}");
    } else {
        assert!(sources.iter().all(|v| *v == Via::Poll));
    }
    assert!(cursor.load().is_some(), "the cursor was persisted through the hook");
    shutdown.cancel();
}

#[tokio::test]
async fn the_follower_yields_every_invalid_tx_once_across_a_revalidator_restart_over_push() {
    follow_through_a_restart(true).await;
}

#[tokio::test]
async fn the_follower_yields_every_invalid_tx_once_across_a_revalidator_restart_polling_only() {
    follow_through_a_restart(false).await;
}

#[tokio::test]
async fn typed_calls_read_status_and_the_drop_in_check() {
    let h = revalidator_support::harness(|_| {}).await;
    let pool = generate_pool(4, 5, 2, |i| vec![msg(i)]);
    h.el.insert(pool.clone());
    h.backend.mark_invalid(&msg(2));
    h.reval.core.run_pass(PassKind::Full).await.unwrap();
    let c = Client::new(h.reval.url(), Duration::from_secs(5)).unwrap();
    let s = c.transaction_status(pool[2].hash).await.unwrap();
    assert!(s.tracked);
    assert_eq!(s.status.as_deref(), Some("invalid"));
    assert_eq!(s.last_verdict.unwrap()["code"], -320600);
    let s = c.transaction_status(pool[4].hash).await.unwrap();
    assert_eq!(s.status.as_deref(), Some("valid"));
    assert!(!c.transaction_status(B256::repeat_byte(9)).await.unwrap().tracked);
    let page = c.invalid_transactions(None).await.unwrap();
    assert_eq!(page.entries.iter().map(|e| e.hash).collect::<Vec<_>>(), vec![pool[2].hash]);
    let now = interop_gate::clock::unix_now();
    let d = Descriptor { timestamp: now, timeout: Some(0), chain_id: Some(10) };
    let bad = c.check_access_list(&encode_entries(&[msg(2)]), "cross-unsafe", d).await.unwrap();
    assert!(matches!(bad, CheckOutcome::Refused { code: -320600, .. }), "{bad:?}");
    let ok = c.check_access_list(&encode_entries(&[msg(4)]), "cross-unsafe", d).await.unwrap();
    assert_eq!(ok, CheckOutcome::Valid);
    let dead = Client::new(
        format!("http://{}/", crate::common::dead_addr().await),
        Duration::from_secs(1),
    )
    .unwrap();
    assert!(matches!(
        dead.transaction_status(pool[2].hash).await,
        Err(interop_gate_client::Error::Transport(_))
    ));
}
