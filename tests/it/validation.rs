//! The validation backends against real HTTP peers on 127.0.0.1: the light backend over
//! simulated chains, the indexed backend over mock supervisors, and the engine's cache and
//! coalescing (asserting how many calls the peers received).

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::U256;
use common::*;
use interop_gate::config::{
    Config, LightConfig, Namespace, PolicyMode, Strategy, SupervisorConfig, ValidationConfig,
};
use interop_gate::dev::chain::SimChain;
use interop_gate::dev::supervisor::MockSupervisor;
use interop_gate::dev::{spawn_peer, Peer};
use interop_gate::interop::{ExecutingDescriptor, Message, SafetyLevel};
use interop_gate::validation::indexed::IndexedBackend;
use interop_gate::validation::light::LightBackend;
use interop_gate::validation::{Backend, CheckRequest, Engine, Verdict};

fn req(msgs: &[Message], safety: SafetyLevel, ts: u64, timeout: u64) -> CheckRequest {
    CheckRequest {
        messages: msgs.to_vec().into(),
        min_safety: safety,
        descriptor: ExecutingDescriptor {
            timestamp: ts,
            timeout: Some(timeout),
            chain_id: Some(U256::from(DEST)),
        },
    }
}

fn now_req(msgs: &[Message]) -> CheckRequest {
    req(msgs, SafetyLevel::CrossUnsafe, now(), 3_600)
}

fn code(v: &Verdict) -> i64 {
    match v {
        Verdict::Invalid(r) | Verdict::NotYetKnown(r) => r.code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn reason(v: &Verdict) -> String {
    match v {
        Verdict::Invalid(r) | Verdict::NotYetKnown(r) => r.reason.clone(),
        other => format!("{other:?}"),
    }
}

struct Light {
    backend: LightBackend,
    chain: Arc<SimChain>,
    _peer: Peer,
}

async fn light(tweak: impl FnOnce(&mut LightConfig)) -> Light {
    let chain = SimChain::new(SOURCE, now() - 86_400, 2);
    let peer = spawn_peer("chain", chain.clone(), "127.0.0.1:0").await.unwrap();
    let mut cfg =
        LightConfig { chains: vec![light_chain(SOURCE, &[peer.url()])], ..Default::default() };
    cfg.head_ttl_ms = std::time::Duration::from_millis(50);
    tweak(&mut cfg);
    let backend = LightBackend::from_config(&cfg, &ValidationConfig::default()).unwrap();
    Light { backend, chain, _peer: peer }
}

fn emit(chain: &SimChain, n: usize, ago: u64) -> Vec<Message> {
    let b = chain.push_block_at(now() - ago, pings(n, 1));
    (0..n).map(|i| chain.message(b.number, i).unwrap()).collect()
}

#[tokio::test]
async fn light_recomputes_every_message_from_the_block_logs() {
    let l = light(|_| {}).await;
    let msgs = emit(&l.chain, 4, 120);
    let v = l.backend.check(&now_req(&msgs)).await;
    assert!(v.is_valid(), "{v:?}");
    assert_eq!(l.chain.calls("eth_getLogs"), 1, "one getLogs for four messages in one block");

    let m = msgs[2];
    let mut bad = m;
    bad.checksum.0[5] ^= 1;
    let v = l.backend.check(&now_req(&[bad])).await;
    assert_eq!(code(&v), -320600);
    assert!(reason(&v).contains("checksum"), "{v:?}");

    // Wrong origin: a checksum computed for another emitter.
    let b = l.chain.block(m.block_number).unwrap();
    let log = &b.logs[2];
    let other = Message::for_log(
        m.chain_id,
        m.block_number,
        m.timestamp,
        2,
        alloy_primitives::Address::repeat_byte(7),
        &log.topics,
        &log.data,
    );
    assert_eq!(code(&l.backend.check(&now_req(&[other])).await), -320600);
    // Wrong log index: the checksum of log 2 declared at index 3, and an index past the end.
    let v = l.backend.check(&now_req(&[Message { log_index: 3, ..m }])).await;
    assert_eq!(code(&v), -320600);
    let v = l.backend.check(&now_req(&[Message { log_index: 9, ..m }])).await;
    assert!(reason(&v).contains("no log at index 9"), "{v:?}");
    // Timestamp mismatch.
    let v = l.backend.check(&now_req(&[Message { timestamp: m.timestamp - 1, ..m }])).await;
    assert!(reason(&v).contains("timestamp"), "{v:?}");
    assert_eq!(l.chain.calls("eth_getLogs"), 1, "all from the one cached block");
}

#[tokio::test]
async fn light_timing_rules_future_blocks_and_unknown_chains() {
    let l = light(|_| {}).await;
    let m = emit(&l.chain, 1, 120)[0];
    // A block above the head: future data, retryable, never out-of-scope.
    let future = Message { block_number: m.block_number + 10, ..m };
    let v = l.backend.check(&now_req(&[future])).await;
    assert!(matches!(v, Verdict::NotYetKnown(_)) && code(&v) == -321401, "{v:?}");
    // Executing before (or at) the initiating timestamp: not yet.
    let v = l.backend.check(&req(&[m], SafetyLevel::Unsafe, m.timestamp, 0)).await;
    assert!(matches!(v, Verdict::NotYetKnown(_)), "same timestamp refused by default: {v:?}");
    // Expiry: valid at exactly init + 7 days, expired one second later, and the timeout counts.
    let week = 604_800;
    assert!(l
        .backend
        .check(&req(&[m], SafetyLevel::Unsafe, m.timestamp + week, 0))
        .await
        .is_valid());
    let v = l.backend.check(&req(&[m], SafetyLevel::Unsafe, m.timestamp + week + 1, 0)).await;
    assert!(reason(&v).contains("expired"), "{v:?}");
    let v = l.backend.check(&req(&[m], SafetyLevel::Unsafe, m.timestamp + week - 10, 11)).await;
    assert!(reason(&v).contains("expires"), "{v:?}");
    // Unknown chain, including a chain id above u64.
    for id in [U256::from(12345u64), U256::MAX - U256::from(3)] {
        let v = l.backend.check(&now_req(&[Message { chain_id: id, ..m }])).await;
        assert_eq!(code(&v), -320501, "{v:?}");
    }
}

#[tokio::test]
async fn light_safety_levels_follow_the_block_tags() {
    let l = light(|_| {}).await;
    l.chain.set_depths(3, 6);
    let m = emit(&l.chain, 1, 200)[0];
    for _ in 0..4 {
        l.chain.push_block_at(now() - 100, Vec::new());
    }
    // Head is m + 4: safe (depth 3) covers it, finalized (depth 6) does not yet.
    for s in
        [SafetyLevel::Unsafe, SafetyLevel::CrossUnsafe, SafetyLevel::LocalSafe, SafetyLevel::Safe]
    {
        assert!(l.backend.check(&req(&[m], s, now(), 0)).await.is_valid(), "{s:?}");
    }
    let v = l.backend.check(&req(&[m], SafetyLevel::Finalized, now(), 0)).await;
    assert!(matches!(v, Verdict::NotYetKnown(_)) && reason(&v).contains("finalized"), "{v:?}");
    for _ in 0..2 {
        l.chain.push_block_at(now() - 90, Vec::new());
    }
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(l.backend.check(&req(&[m], SafetyLevel::Finalized, now(), 0)).await.is_valid());
}

#[tokio::test]
async fn light_survives_a_reorg_without_restart() {
    let l = light(|_| {}).await;
    let mut reorgs = l.backend.subscribe_reorgs();
    let m = emit(&l.chain, 2, 120)[1];
    assert!(l.backend.check(&now_req(&[m])).await.is_valid());
    l.chain.reorg(m.block_number);
    tokio::time::sleep(Duration::from_millis(80)).await; // past head_ttl_ms
    let v = l.backend.check(&now_req(&[m])).await;
    assert_eq!(code(&v), -320600, "the message left the canonical chain: {v:?}");
    assert_eq!(l.chain.calls("eth_getLogs"), 2, "the replaced block's logs were fetched anew");
    let ev = reorgs.try_recv().expect("reorg event");
    assert_eq!(ev.number, m.block_number);
}

#[tokio::test]
async fn light_fails_over_and_checks_agreement() {
    let dead = dead_addr().await;
    let chain = SimChain::new(SOURCE, now() - 86_400, 2);
    let peer = spawn_peer("chain", chain.clone(), "127.0.0.1:0").await.unwrap();
    let cfg = LightConfig {
        chains: vec![light_chain(SOURCE, &[format!("http://{dead}/"), peer.url()])],
        timeout_ms: std::time::Duration::from_millis(500),
        ..Default::default()
    };
    let b = LightBackend::from_config(&cfg, &ValidationConfig::default()).unwrap();
    let m = emit(&chain, 1, 100)[0];
    assert!(b.check(&now_req(&[m])).await.is_valid(), "the second endpoint answered");

    // Two endpoints that disagree (different chains behind them) with agreement on: no verdict.
    let other = SimChain::new(SOURCE, now() - 86_400, 2);
    let other_peer = spawn_peer("chain", other.clone(), "127.0.0.1:0").await.unwrap();
    other.push_block_at(now() - 100, pings(1, 2));
    let mut c = light_chain(SOURCE, &[peer.url(), other_peer.url()]);
    c.agreement = true;
    let cfg = LightConfig { chains: vec![c], ..Default::default() };
    let b = LightBackend::from_config(&cfg, &ValidationConfig::default()).unwrap();
    let v = b.check(&now_req(&[m])).await;
    assert!(matches!(v, Verdict::Unavailable(ref why) if why.contains("disagree")), "{v:?}");
}

#[tokio::test]
async fn light_concurrent_checks_share_one_fetch_per_block() {
    let l = Arc::new(light(|_| {}).await);
    l.chain.set_delay(Duration::from_millis(100));
    let msgs = emit(&l.chain, 8, 100);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (l, m) = (l.clone(), msgs[i]);
            tokio::spawn(async move { l.backend.check(&now_req(&[m])).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().is_valid());
    }
    assert_eq!(l.chain.calls("eth_getLogs"), 1, "coalesced");
}

struct Sup {
    mock: Arc<MockSupervisor>,
    peer: Peer,
}

async fn sup() -> Sup {
    let mock = Arc::new(MockSupervisor::new());
    let peer = spawn_peer("supervisor", mock.clone(), "127.0.0.1:0").await.unwrap();
    Sup { mock, peer }
}

fn indexed(
    urls: &[String],
    strategy: Strategy,
    tweak: impl FnOnce(&mut SupervisorConfig),
) -> IndexedBackend {
    let mut cfg = SupervisorConfig {
        endpoints: urls
            .iter()
            .enumerate()
            .map(|(i, u)| endpoint(&format!("s{i}"), u.clone()))
            .collect(),
        strategy,
        timeout_ms: std::time::Duration::from_millis(500),
        ..Default::default()
    };
    tweak(&mut cfg);
    IndexedBackend::from_config(&cfg).unwrap()
}

fn msg(i: u8) -> Message {
    Message::for_log(
        U256::from(SOURCE),
        10 + u64::from(i),
        now() - 100,
        u32::from(i),
        alloy_primitives::Address::repeat_byte(i),
        &[],
        &[i],
    )
}

#[tokio::test]
async fn indexed_classifies_every_code_on_the_wire() {
    let s = sup().await;
    let b = indexed(&[s.peer.url()], Strategy::First, |_| {});
    let m = msg(1);
    s.mock.add_known([m]);
    assert!(b.check(&now_req(&[m])).await.is_valid());
    for (code_, kind) in [
        (-320602, "invalid"),
        (-321401, "not_yet_known"),
        (-320400, "not_yet_known"),
        (-32603, "unavailable"),
        (-320500, "invalid"),
        (-320501, "invalid"),
        (-320600, "invalid"),
        (-320601, "invalid"),
        (-320900, "invalid"),
        (-320901, "invalid"),
        (-321000, "invalid"),
        (-321100, "invalid"),
        (-321200, "invalid"),
        (-321500, "invalid"),
        (-321501, "invalid"),
        (-32602, "invalid"),
    ] {
        s.mock.force_error(code_);
        let v = b.check(&now_req(&[m])).await;
        assert_eq!(v.kind(), kind, "{code_}: {v:?}");
        if kind != "unavailable" {
            assert_eq!(code(&v), code_);
        }
    }
    s.mock.force_error(0);
    s.mock.set_failsafe(true);
    assert!(b.check(&now_req(&[m])).await.is_failsafe());
}

#[tokio::test]
async fn indexed_timeouts_failover_and_health() {
    let (a, c) = (sup().await, sup().await);
    let m = msg(2);
    a.mock.add_known([m]);
    c.mock.add_known([m]);
    a.mock.set_delay(Duration::from_millis(800));
    let b = indexed(&[a.peer.url(), c.peer.url()], Strategy::First, |_| {});
    assert!(
        b.check(&now_req(&[m])).await.is_valid(),
        "timed out on the first, answered by the second"
    );
    assert_eq!(c.mock.checks(), 1);
    // Health: the slow endpoint is now marked unhealthy and skipped.
    let h = indexed(&[a.peer.url(), c.peer.url()], Strategy::Health, |s| {
        s.unhealthy_ms = std::time::Duration::from_millis(60_000)
    });
    for _ in 0..4 {
        assert!(h.check(&now_req(&[m])).await.is_valid());
    }
    assert_eq!(a.mock.checks(), 2, "the slow one: once by `first`, once by `health`, then skipped");
    // Everything down: no answer, never valid.
    let dead = format!("http://{}/", dead_addr().await);
    let d = indexed(&[dead], Strategy::First, |_| {});
    assert!(matches!(d.check(&now_req(&[m])).await, Verdict::Unavailable(_)));
    assert!(!d.ready().await);
}

#[tokio::test]
async fn indexed_quorum_any_and_the_old_namespace() {
    let (a, c) = (sup().await, sup().await);
    let m = msg(3);
    a.mock.add_known([m]);
    // `any`: one accept suffices.
    let any = indexed(&[a.peer.url(), c.peer.url()], Strategy::Any, |_| {});
    assert!(any.check(&now_req(&[m])).await.is_valid());
    // `quorum` of 2: a split rejects and is counted.
    let q = indexed(&[a.peer.url(), c.peer.url()], Strategy::Quorum, |s| s.quorum = 2);
    let v = q.check(&now_req(&[m])).await;
    assert_eq!(code(&v), -320600, "{v:?}");
    assert!(reason(&v).contains("disagree"));
    c.mock.add_known([m]);
    assert!(q.check(&now_req(&[m])).await.is_valid());
    c.mock.set_failsafe(true);
    assert!(q.check(&now_req(&[m])).await.is_failsafe(), "failsafe from any endpoint rejects");
    // supervisor_ namespace, a chain id above u64 on the wire.
    let old = indexed(&[a.peer.url()], Strategy::First, |s| s.namespace = Namespace::Supervisor);
    let big = Message { chain_id: U256::MAX - U256::from(1), ..msg(4) };
    a.mock.add_known([big]);
    assert!(old.check(&now_req(&[big])).await.is_valid());
}

#[tokio::test]
async fn indexed_batch_is_one_http_request() {
    let s = sup().await;
    let b = indexed(&[s.peer.url()], Strategy::First, |_| {});
    let msgs: Vec<Message> = (0..50).map(|i| msg(i as u8)).collect();
    s.mock.add_known(msgs[..40].iter().copied());
    let reqs: Vec<_> = msgs.iter().map(|m| now_req(&[*m])).collect();
    let verdicts = b.check_batch(&reqs).await;
    assert_eq!(s.mock.http_requests(), 1);
    assert_eq!(s.mock.checks(), 50);
    assert_eq!(verdicts.iter().filter(|v| v.is_valid()).count(), 40);
}

#[tokio::test]
async fn engine_coalesces_caches_and_counts() {
    let s = sup().await;
    let chain = SimChain::new(SOURCE, now() - 86_400, 2);
    let peer = spawn_peer("chain", chain.clone(), "127.0.0.1:0").await.unwrap();
    let mut cfg = Config::default();
    cfg.supervisor.endpoints = vec![endpoint("sup", s.peer.url())];
    cfg.light.chains = vec![light_chain(SOURCE, &[peer.url()])];
    let engine = Arc::new(Engine::from_config(&cfg).unwrap());
    let msgs = emit(&chain, 2, 100);
    s.mock.add_known(msgs.clone());
    s.mock.set_delay(Duration::from_millis(100));
    // 50 identical concurrent checks: one supervisor call, one getLogs.
    let r = now_req(&msgs);
    let all = futures::future::join_all((0..50).map(|_| engine.check(&r))).await;
    assert!(all.iter().all(Verdict::is_valid));
    assert_eq!((s.mock.checks(), chain.calls("eth_getLogs")), (1, 1));
    // A valid verdict is reused while the window covers it.
    assert!(engine.check(&r).await.is_valid());
    assert_eq!(s.mock.checks(), 1);
    // Invalid spam: one call, then the cache.
    let mut bad = msgs[0];
    bad.checksum.0[9] ^= 1;
    for _ in 0..30 {
        assert_eq!(code(&engine.check(&now_req(&[bad])).await), -320600);
    }
    assert_eq!(s.mock.checks(), 2);
    engine.flush_caches();
    engine.check(&now_req(&[bad])).await;
    assert_eq!(s.mock.checks(), 3, "flushed");
}

#[tokio::test]
async fn policies_combine_and_fail_closed() {
    let s = sup().await;
    let chain = SimChain::new(SOURCE, now() - 86_400, 2);
    let peer = spawn_peer("chain", chain.clone(), "127.0.0.1:0").await.unwrap();
    let m = emit(&chain, 1, 100)[0];
    let build = |policy| {
        let mut cfg = Config::default();
        cfg.supervisor.endpoints = vec![endpoint("sup", s.peer.url())];
        cfg.light.chains = vec![light_chain(SOURCE, &[peer.url()])];
        cfg.validation.policy = policy;
        cfg.validation.retry_delay_ms = std::time::Duration::from_millis(10);
        Engine::from_config(&cfg).unwrap()
    };
    // The supervisor does not know it, the chain has it: a split.
    let both = build(PolicyMode::Both);
    assert_eq!(code(&both.check(&now_req(&[m])).await), -320600);
    assert!(build(PolicyMode::Either).check(&now_req(&[m])).await.is_valid());
    assert!(build(PolicyMode::Light).check(&now_req(&[m])).await.is_valid());
    assert!(!build(PolicyMode::Indexed).check(&now_req(&[m])).await.is_valid());
    assert!(!build(PolicyMode::Shadow).check(&now_req(&[m])).await.is_valid(), "indexed decides");
    let text = interop_gate::metrics::metrics().render();
    assert!(text.contains("backend_disagreements_total{kind=\"backends_split\"}"), "counted");
    // A policy that needs a backend that is not configured does not start.
    let mut cfg = Config::default();
    cfg.light.chains = vec![light_chain(SOURCE, &[peer.url()])];
    let e = Engine::from_config(&cfg).err().expect("both needs the indexed backend");
    assert!(e.to_string().contains("supervisor"), "{e}");
}

#[tokio::test]
async fn a_reorg_drops_cached_valid_verdicts_without_waiting_for_a_check() {
    let chain = SimChain::new(SOURCE, now() - 86_400, 2);
    let peer = spawn_peer("chain", chain.clone(), "127.0.0.1:0").await.unwrap();
    let mut cfg = Config::default();
    cfg.light.chains = vec![light_chain(SOURCE, &[peer.url()])];
    cfg.light.head_ttl_ms = std::time::Duration::from_millis(50);
    cfg.validation.policy = PolicyMode::Light;
    cfg.validation.valid_cache_ttl_secs = std::time::Duration::from_secs(600);
    let engine = Engine::from_config(&cfg).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    engine.light().unwrap().spawn_reorg_watch(Duration::from_millis(100), stop.clone());
    let m = emit(&chain, 1, 100)[0];
    assert!(engine.check(&now_req(&[m])).await.is_valid());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = chain.calls("eth_getLogs");
    assert!(engine.check(&now_req(&[m])).await.is_valid(), "cached");
    assert_eq!(chain.calls("eth_getLogs"), before, "a cache hit");
    chain.reorg(m.block_number);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let v = engine.check(&now_req(&[m])).await;
    assert_eq!(code(&v), -320600, "the watch saw the reorg and the verdict was re-verified: {v:?}");
    stop.cancel();
}
