//! Verdict integrity: no peer answer becomes a verdict unless it is well-formed and about what
//! was asked. Each test reproduces one way real peers misbehave (a broken proxy in front of a
//! filter, an RPC provider that ignores a filter field, an overloaded node, a liar) with an
//! in-process peer speaking HTTP, and shows both promises hold: nothing invalid is forwarded,
//! nothing valid is published invalid.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Bytes, B256, U256};
use common::*;
use interop_gate::config::{Config, PolicyMode, Strategy};
use interop_gate::dev::chain::SimChain;
use interop_gate::dev::el_pool::{generate_pool, MockElPool};
use interop_gate::dev::misbehave::{self, Behaviour, Misbehaving};
use interop_gate::dev::supervisor::MockSupervisor;
use interop_gate::dev::wallet::{dev_signer, sign_1559, TxSpec};
use interop_gate::dev::{spawn_peer, Peer};
use interop_gate::interop::checksum::checksum;
use interop_gate::interop::{encode_entries, Message};
use interop_gate::revalidator::pool::Head;
use interop_gate::revalidator::{start as start_revalidator, PassKind, RunningRevalidator};
use interop_gate::validation::{DynBackend, Engine};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

fn code(v: &Value) -> i64 {
    v["error"]["code"].as_i64().unwrap_or_else(|| panic!("expected an error: {v}"))
}

/// A message whose checksum does not match its log (a forgery).
fn forged(m: Message, salt: u8) -> Message {
    let mut bad = m;
    bad.checksum.0[31] ^= salt.max(1);
    bad
}

fn interop_tx(key: u64, nonce: u64, msgs: &[Message]) -> (Bytes, B256) {
    sign_1559(&dev_signer(key), &TxSpec::interop(DEST, nonce, msgs))
}

async fn send(gw: &Gateway, raw: &Bytes) -> (u16, Value) {
    gw.post(&json!({"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":[raw]})).await
}

async fn rpc(url: &str, method: &str, params: Value) -> Value {
    // One client for the whole test binary: building one per call costs more than the call.
    static CLIENT: std::sync::LazyLock<reqwest::Client> =
        std::sync::LazyLock::new(reqwest::Client::new);
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
    post_json(&CLIENT, url, &body).await.1
}

/// `/readyz` reaches `want` within a few seconds (readiness may be refreshed in the
/// background).
async fn readyz_becomes(gw: &Gateway, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let (status, body) = post_get(&gw.client, &gw.metrics_url("/readyz")).await;
        if status == want {
            return;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {status} ({body}), want {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post_get(client: &reqwest::Client, url: &str) -> (u16, String) {
    let r = client.get(url).send().await.expect("GET");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// The ingress with a misbehaving indexed endpoint and an honest simulated source chain.
struct Rig {
    gw: Gateway,
    chain: Arc<SimChain>,
    _chain_peer: Peer,
    liar: Misbehaving,
    _liar_peer: Peer,
}

async fn rig(b: Behaviour, tweak: impl FnOnce(&mut Config)) -> Rig {
    let chain = SimChain::new(SOURCE, now() - 3_600, 2);
    let chain_peer = spawn_peer("chain", chain.clone(), "127.0.0.1:0").await.unwrap();
    let (liar_peer, liar) = misbehave::spawn(b).await.unwrap();
    let (chain_url, liar_url) = (chain_peer.url(), liar_peer.url());
    let gw = gateway(move |cfg| {
        cfg.ingress.chain_id = DEST;
        cfg.supervisor.endpoints = vec![endpoint("liar", liar_url)];
        cfg.supervisor.timeout_ms = std::time::Duration::from_millis(500);
        cfg.light.chains = vec![light_chain(SOURCE, &[chain_url])];
        cfg.light.reorg_watch_ms = std::time::Duration::ZERO;
        cfg.validation.retry_delay_ms = std::time::Duration::from_millis(50);
        tweak(cfg);
    })
    .await;
    Rig { gw, chain, _chain_peer: chain_peer, liar, _liar_peer: liar_peer }
}

/// A block a minute old with `n` logs; its messages.
fn emit(chain: &SimChain, n: usize, salt: u8) -> Vec<Message> {
    let b = chain.push_block_at(now() - 60, pings(n, salt));
    (0..n).map(|i| chain.message(b.number, i).unwrap()).collect()
}

/// What garbage looks like from a broken proxy or a confused server.
fn garbage() -> Vec<Behaviour> {
    vec![
        Behaviour::Raw(200, "{}".into()),
        Behaviour::Raw(200, "[]".into()),
        Behaviour::Raw(200, "null".into()),
        Behaviour::Raw(200, "<html>bad gateway</html>".into()),
        Behaviour::Raw(200, r#"{"jsonrpc":"2.0","id":1}"#.into()),
        Behaviour::Raw(
            200,
            r#"{"jsonrpc":"2.0","id":1,"result":null,"error":{"code":-320600,"message":"x"}}"#
                .into(),
        ),
        Behaviour::WrongId,
        Behaviour::Result("true".into()),
        Behaviour::Result("{}".into()),
        Behaviour::Result(r#""0x""#.into()),
        Behaviour::Truncated,
        Behaviour::Error(-32000),
        Behaviour::Error(-320700),
    ]
}

#[tokio::test]
async fn garbage_from_the_indexed_endpoint_never_lets_an_invalid_tx_through() {
    for policy in [PolicyMode::Indexed, PolicyMode::Either] {
        let r = rig(Behaviour::Raw(200, "{}".into()), |c| c.validation.policy = policy).await;
        let real = emit(&r.chain, 1, 1);
        for (i, b) in garbage().into_iter().enumerate() {
            r.liar.set(b.clone());
            // A fresh forgery per behaviour, so no cached verdict answers for the peer.
            let (raw, _) = interop_tx(1, i as u64, &[forged(real[0], i as u8 + 1)]);
            let (_, v) = send(&r.gw, &raw).await;
            let want = if policy == PolicyMode::Indexed { -32011 } else { -320600 };
            assert_eq!(code(&v), want, "{policy:?} {b:?}: {v}");
            assert!(!r.gw.upstream.raw_transactions().contains(&raw), "{b:?}: forwarded");
        }
        assert!(r.gw.upstream.raw_transactions().is_empty(), "{policy:?}: nothing forwarded");
        // A valid tx: no verdict from the indexed side fails closed under `indexed`; the light
        // backend's valid verdict suffices under `either`.
        r.liar.set(Behaviour::Raw(200, "{}".into()));
        let (raw, _) = interop_tx(2, 0, &real);
        let (status, v) = send(&r.gw, &raw).await;
        if policy == PolicyMode::Indexed {
            assert_eq!((status, code(&v)), (503, -32011), "{v}");
            readyz_becomes(&r.gw, 503).await;
        } else {
            assert_eq!(status, 200, "{v}");
            assert!(r.gw.upstream.raw_transactions().contains(&raw));
        }
    }
}

#[tokio::test]
async fn a_non_2xx_answer_is_no_answer_whatever_json_it_carries() {
    let r =
        rig(Behaviour::Raw(200, "{}".into()), |c| c.validation.policy = PolicyMode::Indexed).await;
    let real = emit(&r.chain, 1, 2);
    let (raw, hash) = interop_tx(3, 0, &real);
    for (status, body) in [
        (500, r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"internal"}}"#),
        (503, r#"{"jsonrpc":"2.0","id":1,"error":{"code":-320600,"message":"conflict"}}"#),
        (429, r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32016,"message":"rate limited"}}"#),
        (404, r#"{"jsonrpc":"2.0","id":1,"result":null}"#),
    ] {
        r.liar.set(Behaviour::Raw(status, body.into()));
        let (http, v) = send(&r.gw, &raw).await;
        assert_eq!((http, code(&v)), (503, -32011), "HTTP {status}: {v}");
    }
    assert!(r.gw.upstream.raw_transactions().is_empty());
    // The peer recovers: the same tx passes at once (nothing was cached as invalid).
    r.liar.set(Behaviour::Result("null".into()));
    let (http, v) = send(&r.gw, &raw).await;
    assert_eq!((http, &v["result"]), (200, &json!(hash)), "{v}");
    readyz_becomes(&r.gw, 200).await;
}

/// A revalidator on the real engine (indexed backend at `sup_url`) over a mock EL whose pool
/// holds 30 interop txs executing `messages`.
async fn revalidator_rig(
    sup_urls: Vec<String>,
    strategy: Strategy,
    tweak: impl FnOnce(&mut interop_gate::config::RevalidatorConfig),
) -> (RunningRevalidator, Arc<MockElPool>, Peer, Vec<B256>, Vec<Message>, CancellationToken) {
    let head = Head { number: 100, timestamp: now(), base_fee: 100, gas_limit: 30_000_000 };
    let el = Arc::new(MockElPool::new(head, DEST));
    let el_peer = spawn_peer("el", el.clone(), "127.0.0.1:0").await.unwrap();
    let msg = |i: usize| Message {
        chain_id: U256::from(SOURCE),
        block_number: i as u64,
        timestamp: now() - 600 + i as u64,
        log_index: 0,
        checksum: {
            let mut c = alloy_primitives::keccak256((i as u64).to_be_bytes());
            c.0[0] = 3;
            c
        },
    };
    let pool = generate_pool(10, 3, 1, |i| vec![msg(i)]);
    let hashes = pool.iter().map(|t| t.hash).collect();
    let messages = (0..pool.len()).map(msg).collect();
    el.insert(pool);
    let mut engine_cfg = Config::default();
    engine_cfg.supervisor.endpoints =
        sup_urls.into_iter().enumerate().map(|(i, u)| endpoint(&format!("s{i}"), u)).collect();
    engine_cfg.supervisor.strategy = strategy;
    engine_cfg.supervisor.timeout_ms = std::time::Duration::from_millis(300);
    engine_cfg.validation.policy = PolicyMode::Indexed;
    engine_cfg.validation.valid_cache_ttl_secs = std::time::Duration::ZERO;
    let engine: DynBackend = Arc::new(Engine::from_config(&engine_cfg).unwrap());
    let mut cfg = interop_gate::config::RevalidatorConfig {
        enabled: true,
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        el_url: interop_gate::dev::parse_url(&el_peer.url()),
        chain_id: Some(DEST),
        max_unknown_secs: std::time::Duration::from_secs(1),
        request_timeout_ms: std::time::Duration::from_millis(600),
        ..Default::default()
    };
    tweak(&mut cfg);
    let shutdown = CancellationToken::new();
    let reval = start_revalidator(&cfg, engine, shutdown.clone(), false).await.unwrap();
    (reval, el, el_peer, hashes, messages, shutdown)
}

async fn feed_len(reval: &RunningRevalidator) -> usize {
    let page = rpc(&reval.url(), "interop_invalidTransactions", json!([null])).await;
    page["result"]["entries"].as_array().map_or(usize::MAX, Vec::len)
}

#[tokio::test]
async fn the_revalidator_never_publishes_a_tx_when_it_gets_no_answer() {
    let (liar_peer, liar) = misbehave::spawn(Behaviour::Hang).await.unwrap();
    let dead = format!("http://{}/", dead_addr().await);
    // One dead endpoint first, the liar behind it (failover reaches it on every check).
    let (reval, _el, _elp, hashes, messages, shutdown) =
        revalidator_rig(vec![dead, liar_peer.url()], Strategy::First, |_| {}).await;
    let mut no_answer = garbage();
    no_answer.retain(|b| !matches!(b, Behaviour::Error(c) if *c == -320700));
    no_answer.push(Behaviour::Hang);
    no_answer.push(Behaviour::Raw(
        500,
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-320600,"message":"x"}}"#.into(),
    ));
    no_answer.push(Behaviour::Huge(20 * 1024 * 1024));
    // Every kind of no answer, then again after `max_unknown_secs` has passed.
    for round in 0..2 {
        for b in &no_answer {
            liar.set(b.clone());
            let r = reval.core.run_pass(PassKind::Full).await.unwrap();
            assert_eq!(r.invalid_found, 0, "round {round}, {b:?}: {r:?}");
            assert_eq!(feed_len(&reval).await, 0, "round {round}, {b:?}");
        }
        if round == 0 {
            tokio::time::sleep(Duration::from_millis(1_100)).await;
        }
    }
    let status = rpc(&reval.url(), "interop_transactionStatus", json!([hashes[0]])).await;
    assert_eq!(status["result"]["status"], "unknown", "{status}");
    assert!(status["result"]["reason"].is_string(), "{status}");
    // The drop-in answers a non-definitive code, so op-reth / op-geth keep the tx.
    let e = rpc(
        &reval.url(),
        "interop_checkAccessList",
        json!([encode_entries(&messages[..1]), "cross-unsafe", {"timestamp": format!("{:#x}", now())}]),
    )
    .await;
    assert_eq!(code(&e), -32603, "{e}");
    // The peer recovers with real answers: valid txs are valid, nothing was ever published.
    liar.set(Behaviour::Result("null".into()));
    let r = reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!(r.invalid_found, 0);
    let status = rpc(&reval.url(), "interop_transactionStatus", json!([hashes[0]])).await;
    assert_eq!(status["result"]["status"], "valid", "{status}");
    // Positive control: a definitive invalid answer is published (the rig can publish).
    liar.set(Behaviour::Error(-320600));
    let r = reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!(r.invalid_found, hashes.len(), "{r:?}");
    assert_eq!(feed_len(&reval).await, hashes.len());
    shutdown.cancel();
}

#[tokio::test]
async fn logs_of_another_block_never_validate_a_forged_message() {
    let r = rig(Behaviour::Result("null".into()), |c| {
        c.validation.policy = PolicyMode::Light;
        c.light_server.enabled = true;
    })
    .await;
    // The block the forgery names, and the attacker's block whose log it copies.
    let target = r.chain.push_block_at(now() - 120, pings(2, 7));
    let attacker = r.chain.push_block_at(now() - 100, pings(2, 8));
    let light_url = format!("http://{}/", r.gw.running.light_server_addr.unwrap());
    let forgery = |i: usize| {
        let l = &attacker.logs[i % 2];
        Message {
            chain_id: U256::from(SOURCE),
            block_number: target.number,
            timestamp: target.timestamp,
            log_index: (i % 2) as u32,
            checksum: checksum(
                l.address,
                &l.topics,
                &l.data,
                target.number,
                target.timestamp,
                (i % 2) as u32,
                U256::from(SOURCE),
            ),
        }
    };
    // Honest chain: the forgery does not match the target block's log.
    let (raw, _) = interop_tx(4, 0, &[forgery(0)]);
    assert_eq!(code(&send(&r.gw, &raw).await.1), -320600);
    // The chain RPC now ignores the blockHash filter and answers the attacker's block's logs.
    r.chain.set_logs_lie(Some(attacker.number));
    let engine = r.gw.running.engine.clone().unwrap();
    engine.flush_caches();
    engine.light().unwrap().flush();
    let rejected_before = rejected_answers(&r.gw).await;
    for i in 0..10u64 {
        let m = forgery(i as usize);
        let (raw, _) = interop_tx(5, i, &[m]);
        let (status, v) = send(&r.gw, &raw).await;
        assert_eq!((status, code(&v)), (503, -32011), "forgery {i}: {v}");
        let answer = rpc(
            &light_url,
            "interop_checkAccessList",
            json!([encode_entries(&[m]), "unsafe", {"timestamp": format!("{:#x}", now())}]),
        )
        .await;
        assert_eq!(code(&answer), -32603, "light endpoint, forgery {i}: {answer}");
        // Every attempt asks the lying RPC again.
        engine.flush_caches();
        engine.light().unwrap().flush();
    }
    assert!(r.gw.upstream.raw_transactions().is_empty(), "0 of 10 forgeries forwarded");
    assert!(rejected_answers(&r.gw).await > rejected_before, "refused answers are counted");
}

async fn rejected_answers(gw: &Gateway) -> u64 {
    let (_, text) = post_get(&gw.client, &gw.metrics_url("/metrics")).await;
    text.lines()
        .filter(|l| l.starts_with("interop_gate_chain_answers_rejected_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn an_oversize_answer_is_no_answer_and_memory_stays_flat() {
    const HUGE: usize = 200 * 1024 * 1024;
    let r = rig(Behaviour::Huge(HUGE), |c| {
        c.validation.policy = PolicyMode::Indexed;
        c.supervisor.max_response_bytes = 1024 * 1024;
        c.supervisor.timeout_ms = std::time::Duration::from_millis(20_000);
        // Every check its own request, so four huge answers are in flight at once.
        c.supervisor.batch_max_size = 1;
    })
    .await;
    let real = emit(&r.chain, 4, 3);
    let before = rss_kib();
    let sends = (0..4u64).map(|i| {
        let (raw, _) = interop_tx(10 + i, 0, &real[i as usize..i as usize + 1]);
        let gw = &r.gw;
        async move { send(gw, &raw).await }
    });
    for (status, v) in futures::future::join_all(sends).await {
        assert_eq!((status, code(&v)), (503, -32011), "{v}");
    }
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    // Four 200 MiB answers in flight; reading stops at 1 MiB each.
    assert!(grown_mib < 100, "RSS grew {grown_mib} MiB");
    assert!(r.liar.requests() >= 4);
    assert!(r.gw.upstream.raw_transactions().is_empty());
}

#[tokio::test]
async fn the_drop_in_faces_answer_for_the_callers_timestamp_not_their_own_clock() {
    let r = rig(Behaviour::Result("null".into()), |c| {
        c.validation.policy = PolicyMode::Light;
        c.light_server.enabled = true;
    })
    .await;
    let el = Arc::new(MockElPool::new(Head::default(), DEST));
    let el_peer = spawn_peer("el", el.clone(), "127.0.0.1:0").await.unwrap();
    let engine: DynBackend = r.gw.running.engine.clone().unwrap();
    let rcfg = interop_gate::config::RevalidatorConfig {
        enabled: true,
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        el_url: interop_gate::dev::parse_url(&el_peer.url()),
        chain_id: Some(DEST),
        ..Default::default()
    };
    let shutdown = CancellationToken::new();
    let reval = start_revalidator(&rcfg, engine, shutdown.clone(), false).await.unwrap();
    let light_url = format!("http://{}/", r.gw.running.light_server_addr.unwrap());
    let m = emit(&r.chain, 1, 9)[0];
    let entries = encode_entries(&[m]);
    let ask = |url: String, ts: u64| {
        let entries = entries.clone();
        async move {
            let started = Instant::now();
            let d = json!({"timestamp": format!("{ts:#x}"), "timeout": "0x0", "chainID": DEST.to_string()});
            let v = rpc(&url, "interop_checkAccessList", json!([entries, "cross-unsafe", d])).await;
            (v, started.elapsed())
        }
    };
    for url in [light_url, reval.url()] {
        // Executing at the initiating timestamp, or before it: not executable at that time,
        // however long the caller waits.
        for ts in [m.timestamp, m.timestamp - 5] {
            let (v, took) = ask(url.clone(), ts).await;
            assert_eq!(code(&v), -321401, "{url} at {ts}: {v}");
            assert!(took < Duration::from_millis(900), "{url}: answered without a re-test");
        }
        let (v, _) = ask(url.clone(), m.timestamp + 1).await;
        assert_eq!(v["result"], Value::Null, "{url}: {v}");
        assert!(v.get("error").is_none(), "{v}");
    }
    shutdown.cancel();
}

#[tokio::test]
async fn an_invalid_verdict_is_reused_only_for_windows_it_covers() {
    // A message that expires in 300 s: invalid for a 1-day window, valid for the next block.
    let chain = SimChain::new(SOURCE, now() - 8 * 86_400, 2);
    let chain_peer = spawn_peer("chain", chain.clone(), "127.0.0.1:0").await.unwrap();
    let sup = Arc::new(MockSupervisor::new());
    let sup_peer = spawn_peer("sup", sup.clone(), "127.0.0.1:0").await.unwrap();
    let b = chain.push_block_at(now() - 604_800 + 300, pings(1, 4));
    let recent = chain.push_block_at(now() - 10, pings(1, 5));
    let m = chain.message(b.number, 0).unwrap();
    let unknown = forged(chain.message(recent.number, 0).unwrap(), 9);
    let mut cfg = Config::default();
    cfg.light.chains = vec![light_chain(SOURCE, &[chain_peer.url()])];
    cfg.light.reorg_watch_ms = std::time::Duration::ZERO;
    cfg.supervisor.endpoints = vec![endpoint("sup", sup_peer.url())];
    cfg.validation.policy = PolicyMode::Light;
    let light_engine: DynBackend = Arc::new(Engine::from_config(&cfg).unwrap());
    cfg.validation.policy = PolicyMode::Indexed;
    let indexed_engine: DynBackend = Arc::new(Engine::from_config(&cfg).unwrap());
    let req = |msgs: &[Message], ts: u64, timeout: u64| interop_gate::validation::CheckRequest {
        messages: msgs.to_vec().into(),
        min_safety: interop_gate::interop::SafetyLevel::CrossUnsafe,
        descriptor: interop_gate::interop::ExecutingDescriptor {
            timestamp: ts,
            timeout: Some(timeout),
            chain_id: Some(U256::from(DEST)),
        },
    };
    let t = now();
    let day = light_engine.check(&req(&[m], t, 86_400)).await;
    assert!(matches!(day, interop_gate::validation::Verdict::Invalid(_)), "{day:?}");
    let block = light_engine.check(&req(&[m], t, 0)).await;
    assert!(block.is_valid(), "the 1-day verdict must not answer timeout 0: {block:?}");
    let wider = light_engine.check(&req(&[m], t - 10, 90_000)).await;
    assert!(matches!(wider, interop_gate::validation::Verdict::Invalid(_)), "{wider:?}");
    // A fault in the message itself (no such log) holds for any window: spam costs one call.
    for (ts, timeout) in [(t, 7_200), (t + 1, 0), (t + 5, 100), (t - 3, 86_400)] {
        let v = indexed_engine.check(&req(&[unknown], ts, timeout)).await;
        assert!(matches!(v, interop_gate::validation::Verdict::Invalid(_)), "{v:?}");
    }
    assert_eq!(sup.checks(), 1, "one backend call for every window");
}

#[tokio::test]
async fn revalidation_batches_follow_the_supervisor_strategy() {
    // `any`: one endpoint knows nothing (conflicting data), the other knows every message.
    let blind = Arc::new(MockSupervisor::new());
    let blind_peer = spawn_peer("blind", blind.clone(), "127.0.0.1:0").await.unwrap();
    let seeing = Arc::new(MockSupervisor::new());
    seeing.set_accept_all(true);
    let seeing_peer = spawn_peer("seeing", seeing.clone(), "127.0.0.1:0").await.unwrap();
    let (reval, _el, _elp, hashes, _, shutdown) =
        revalidator_rig(vec![blind_peer.url(), seeing_peer.url()], Strategy::Any, |_| {}).await;
    let r = reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!(r.invalid_found, 0, "any: one accept suffices, in a batch too: {r:?}");
    assert!(blind.checks() >= hashes.len() && seeing.checks() >= hashes.len(), "both asked");
    let status = rpc(&reval.url(), "interop_transactionStatus", json!([hashes[0]])).await;
    assert_eq!(status["result"]["status"], "valid", "{status}");
    shutdown.cancel();

    // `quorum = 2` with one endpoint down: no quorum, no verdict, nothing published.
    let dead = format!("http://{}/", dead_addr().await);
    let (reval, _el, _elp, hashes, _, shutdown) =
        revalidator_rig(vec![dead, seeing_peer.url()], Strategy::Quorum, |_| {}).await;
    for _ in 0..2 {
        let r = reval.core.run_pass(PassKind::Full).await.unwrap();
        assert_eq!(r.invalid_found, 0, "{r:?}");
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let status = rpc(&reval.url(), "interop_transactionStatus", json!([hashes[0]])).await;
    assert_eq!(status["result"]["status"], "unknown", "quorum not reached: {status}");
    assert_eq!(feed_len(&reval).await, 0);
    shutdown.cancel();
}

/// A tiny deterministic generator (xorshift64*): the corpus is the same on every run.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One face's answer, normalized: `valid`, `not_yet_known`, `no_answer` or the invalid code.
fn normalized(v: &Value, ingress: bool) -> String {
    match v.get("error") {
        None if ingress && v["result"].is_string() => "valid".into(),
        None if !ingress && v.get("result") == Some(&Value::Null) => "valid".into(),
        None => format!("unexpected answer {v}"),
        Some(e) => match e["code"].as_i64() {
            Some(-321401) | Some(-320400) => "not_yet_known".into(),
            Some(-32011) if ingress => "no_answer".into(),
            Some(-32603) if !ingress => "no_answer".into(),
            Some(c) => c.to_string(),
            None => format!("unexpected error {e}"),
        },
    }
}

#[tokio::test]
async fn the_three_faces_agree_on_a_seeded_corpus() {
    const TIMEOUT: u64 = 7_200;
    const WEEK: u64 = 604_800;
    let t0 = now();
    let chain = SimChain::new(SOURCE, t0 - 8 * 86_400, 2);
    let chain_peer = spawn_peer("chain", chain.clone(), "127.0.0.1:0").await.unwrap();
    // Initiating timestamps around every boundary a verdict has: expiry at the executing
    // timestamp, expiry at the end of the timeout, ordinary recent blocks, blocks "now" and
    // just after (same timestamp, not yet executable), and the last blocks, above `safe`.
    let mut stamps: Vec<u64> = Vec::new();
    for k in 0..12 {
        stamps.push(t0 - WEEK - 3 + k);
    }
    for k in 0..12 {
        stamps.push(t0 - WEEK + TIMEOUT - 3 + k);
    }
    for k in 0..6 {
        stamps.push(t0 - 3_600 + 60 * k);
    }
    for k in 0..6 {
        stamps.push(t0 + k);
    }
    for k in 0..6 {
        stamps.push(t0 - 12 + 2 * k);
    }
    // Messages by group: [expiry and timeout boundaries, recent, now and after, last blocks].
    let mut groups: [Vec<Message>; 4] = Default::default();
    for (i, ts) in stamps.iter().enumerate() {
        let b = chain.push_block_at(*ts, pings(1 + i % 3, i as u8));
        let group = match i {
            0..24 => 0,
            24..30 => 1,
            30..36 => 2,
            _ => 3,
        };
        groups[group].extend((0..b.logs.len()).map(|j| chain.message(b.number, j).unwrap()));
    }
    let head = chain.head().number;
    let el = Arc::new(MockElPool::new(Head::default(), DEST));
    let el_peer = spawn_peer("el", el.clone(), "127.0.0.1:0").await.unwrap();

    let mut rng = Seeded(0x5eed_1234_abcd_0001);
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for safety in ["cross-unsafe", "safe"] {
        let (chain_url, el_url) = (chain_peer.url(), el_peer.url());
        let gw = gateway(move |cfg| {
            cfg.ingress.chain_id = DEST;
            cfg.ingress.min_safety = safety.parse().unwrap();
            cfg.ingress.timeout_secs = TIMEOUT;
            cfg.ingress.sender_rate.per_second = 0;
            cfg.ingress.ip_rate.per_second = 0;
            cfg.light.chains = vec![light_chain(SOURCE, &[chain_url])];
            cfg.light.reorg_watch_ms = std::time::Duration::ZERO;
            cfg.validation.policy = PolicyMode::Light;
            // The ingress's re-test re-stamps its own descriptor; the comparison is about one
            // descriptor, so it is off here (the drop-in faces never re-test).
            cfg.validation.max_retries = 0;
            cfg.light_server.enabled = true;
            cfg.revalidator.enabled = true;
            cfg.revalidator.el_url = interop_gate::dev::parse_url(&el_url);
            cfg.revalidator.chain_id = Some(DEST);
        })
        .await;
        let light_url = format!("http://{}/", gw.running.light_server_addr.unwrap());
        let reval_url = format!("http://{}/", gw.running.revalidator_addr.unwrap());
        for item in 0..100u64 {
            // Half the lists hold one message; the rest 2 to 8.
            let n = if rng.below(2) == 0 { 1 } else { 2 + rng.below(7) as usize };
            let msgs: Vec<Message> = (0..n)
                .map(|_| {
                    // Mostly recent messages, so that multi-message lists can be valid too.
                    let g = match rng.below(10) {
                        0..2 => 0,
                        2..7 => 1,
                        7..8 => 2,
                        _ => 3,
                    };
                    let pool = &groups[g];
                    let mut m = pool[rng.below(pool.len() as u64) as usize];
                    match rng.below(24) {
                        0 => m.checksum.0[9] ^= 0x40,
                        1 => m.log_index += 1,
                        2 => m.block_number += 1,
                        3 => m.timestamp += 1,
                        4 => m.chain_id = U256::from(999),
                        5 => m.block_number = head + 1 + rng.below(3),
                        _ => {}
                    }
                    m
                })
                .collect();
            let (raw, _) = interop_tx(1 + item % 40, item, &msgs);
            // The ingress stamps "now": retry until a call starts and ends in the same second,
            // so the drop-in faces can be asked about exactly that descriptor.
            let (t, at_ingress) = loop {
                let before = now();
                let (_, v) = send(&gw, &raw).await;
                if now() == before {
                    break (before, v);
                }
            };
            let d = json!({"timestamp": format!("{t:#x}"), "timeout": format!("{TIMEOUT:#x}"), "chainID": DEST.to_string()});
            let params = json!([encode_entries(&msgs), safety, d]);
            let at_light = rpc(&light_url, "interop_checkAccessList", params.clone()).await;
            let at_reval = rpc(&reval_url, "interop_checkAccessList", params).await;
            let faces = [
                normalized(&at_ingress, true),
                normalized(&at_light, false),
                normalized(&at_reval, false),
            ];
            assert!(
                faces[0] == faces[1] && faces[1] == faces[2],
                "{safety} item {item} at {t}: ingress {} / light {} / revalidator {} \n{at_ingress}\n{at_light}\n{at_reval}",
                faces[0],
                faces[1],
                faces[2]
            );
            *kinds.entry(faces[0].clone()).or_default() += 1;
        }
    }
    // The corpus exercises every outcome, not just one.
    for k in ["valid", "not_yet_known", "-320600", "-320501"] {
        assert!(kinds.get(k).copied().unwrap_or(0) >= 5, "too few {k}: {kinds:?}");
    }
    println!("three faces agreed on 200 lists: {kinds:?}");
}

#[tokio::test]
async fn oversize_or_garbage_from_the_el_and_the_upstream_is_no_answer() {
    // The revalidator's EL answers a pool bigger than its bound, then garbage: each pass is
    // skipped with the reason kept, and nothing is ever published.
    let (el_peer, el) = misbehave::spawn(Behaviour::Huge(8 * 1024 * 1024)).await.unwrap();
    let sup = Arc::new(MockSupervisor::new());
    let sup_peer = spawn_peer("sup", sup.clone(), "127.0.0.1:0").await.unwrap();
    let mut engine_cfg = Config::default();
    engine_cfg.supervisor.endpoints = vec![endpoint("sup", sup_peer.url())];
    engine_cfg.validation.policy = PolicyMode::Indexed;
    let engine: DynBackend = Arc::new(Engine::from_config(&engine_cfg).unwrap());
    let cfg = interop_gate::config::RevalidatorConfig {
        enabled: true,
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        el_url: interop_gate::dev::parse_url(&el_peer.url()),
        el_max_response_bytes: 1024 * 1024,
        ..Default::default()
    };
    let shutdown = CancellationToken::new();
    let reval = start_revalidator(&cfg, engine, shutdown.clone(), false).await.unwrap();
    for b in
        [Behaviour::Huge(8 * 1024 * 1024), Behaviour::Raw(200, "{}".into()), Behaviour::WrongId]
    {
        el.set(b.clone());
        let e = reval.core.run_pass(PassKind::Full).await.unwrap_err();
        assert!(!e.to_string().is_empty(), "{b:?}");
    }
    let status = rpc(&reval.url(), "interop_revalidationStatus", json!([])).await;
    assert!(status["result"]["lastError"].is_string(), "{status}");
    assert_eq!(feed_len(&reval).await, 0);
    assert_eq!(sup.checks(), 0);
    shutdown.cancel();

    // The ingress's upstream answers more than `upstream.max_response_bytes`: -32603, bounded.
    let (up_peer, _up) = misbehave::spawn(Behaviour::Huge(8 * 1024 * 1024)).await.unwrap();
    let gw = gateway(|cfg| {
        cfg.upstream.url = interop_gate::dev::parse_url(&up_peer.url());
        cfg.upstream.max_response_bytes = 64 * 1024;
    })
    .await;
    let (_, v) = gw.post(&json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]})).await;
    assert_eq!(code(&v), -32603, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("larger than"), "{v}");
}
