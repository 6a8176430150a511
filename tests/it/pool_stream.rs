//! The streamed `txpool_content` read against the whole-body one, over real HTTP: the same
//! peer answer (a pool, malformed results, a JSON-RPC error, a wrong id, a truncated or
//! oversize body, no answer) must give the same txs, counts and error class through both; and
//! the real revalidator reads a multi-megabyte pool through the streamed path.

use std::time::Duration;

use interop_gate::dev::el_pool::{generate_pool, MockTx};
use interop_gate::dev::misbehave::{self, Behaviour};
use interop_gate::metrics::metrics;
use interop_gate::revalidator::error::PoolError;
use interop_gate::revalidator::pool::decode_txpool_content;
use interop_gate::revalidator::pool_stream::{read_txpool_content, Decoded};
use interop_gate::revalidator::PassKind;
use interop_gate::rpc::client::http_client;
use interop_gate::rpc::RpcClient;
use serde_json::{json, Value};

use crate::revalidator_support::{harness, msg};

/// A `txpool_content` result holding `pool` (checksummed senders, decimal nonces, as geth).
fn content(pool: &[MockTx]) -> Value {
    let mut pending = serde_json::Map::new();
    for t in pool {
        let by_nonce = pending.entry(t.from.to_checksum(None)).or_insert_with(|| json!({}));
        by_nonce[t.nonce.to_string()] = t.to_json(10);
    }
    json!({ "pending": pending, "queued": {} })
}

/// What a read produced: kept hashes (sorted) and counts, or the error class.
fn summary(r: Result<Decoded, PoolError>) -> Result<(Vec<String>, usize, usize), String> {
    match r {
        Ok((txs, bad, over)) => {
            let mut h: Vec<String> = txs.iter().map(|t| t.hash.to_string()).collect();
            h.sort();
            Ok((h, bad, over))
        }
        Err(PoolError::Decode(_)) => Err("result shape".into()),
        Err(PoolError::El(e)) => Err(e.kind().into()),
    }
}

/// The whole-body read `ElPool` used before: `call_raw`, then the slice decoder.
async fn whole_body(rpc: &RpcClient, max_txs: usize) -> Result<Decoded, PoolError> {
    let raw = rpc.call_raw("txpool_content", &[(); 0]).await.map_err(PoolError::El)?;
    decode_txpool_content(raw.get(), max_txs)
}

#[tokio::test]
async fn streamed_and_whole_body_reads_agree_on_every_answer() {
    let (peer, el) = misbehave::spawn(Behaviour::Hang).await.unwrap();
    let endpoint = "pool-stream-agreement";
    let client = |endpoint: &str, timeout_ms: u64| {
        RpcClient::new(
            "el",
            endpoint,
            interop_gate::dev::parse_url(&peer.url()),
            Duration::from_millis(timeout_ms),
            http_client(2),
        )
        .with_max_response_bytes(4 * 1024 * 1024)
    };
    // A debug build decodes a few MB/s: a generous bound, and a short one for `Hang`.
    let (rpc, impatient) = (client(endpoint, 30_000), client(endpoint, 300));
    // ~2,000 txs: about 1 MB, many HTTP chunks.
    let pool = content(&generate_pool(200, 10, 3, |i| vec![msg(i)]));
    let mut messy = content(&generate_pool(3, 2, 1, |i| vec![msg(i)]));
    let sender = messy["pending"].as_object().unwrap().keys().next().unwrap().clone();
    messy["pending"][&sender]["7"] = json!({"hash": "0x12"});
    messy["pending"][&sender]["8"] = json!(5);
    messy["pending"]["0x00000000000000000000000000000000000000aa"] = json!([1, 2]);
    messy["pending"]["0x00000000000000000000000000000000000000bb"] = json!(null);
    let ok = |body: String| Behaviour::Result(body);
    // (what, the peer's answer, max_txs, expected kept/undecodable/over or error class)
    type Case = (&'static str, Behaviour, usize, Result<(usize, usize, usize), &'static str>);
    let cases: Vec<Case> = vec![
        ("a pool", ok(pool.to_string()), 10_000, Ok((2_000, 0, 0))),
        ("a pool over max_txs", ok(pool.to_string()), 1_500, Ok((1_500, 0, 500))),
        ("bad senders and txs", ok(messy.to_string()), 100, Ok((6, 4, 0))),
        ("a result that is not an object", ok("[1]".into()), 100, Err("result shape")),
        ("a null result", ok("null".into()), 100, Err("result shape")),
        ("pending not a map", ok(r#"{"pending":5}"#.into()), 100, Err("result shape")),
        ("a JSON-RPC error", Behaviour::Error(-32601), 100, Err("rpc_error")),
        ("a wrong id", Behaviour::WrongId, 100, Err("decode")),
        ("not JSON-RPC", Behaviour::Raw(200, "{}".into()), 100, Err("decode")),
        (
            "a body cut short",
            Behaviour::Raw(200, r#"{"jsonrpc":"2.0","id":1,"result":{"pending":{"#.into()),
            100,
            Err("decode"),
        ),
        ("trailing garbage", Behaviour::Raw(200, format!("{} x", json!({}))), 100, Err("decode")),
        ("a broken connection", Behaviour::Truncated, 100, Err("transport")),
        ("a body over the bound", Behaviour::Huge(8 * 1024 * 1024), 100, Err("too_large")),
        ("a 503", Behaviour::Raw(503, "{}".into()), 100, Err("http_status")),
        ("no answer", Behaviour::Hang, 100, Err("timeout")),
    ];
    let calls = |outcome: &str| {
        metrics().external_calls.with_label_values(&["el", endpoint, outcome]).get()
    };
    for (name, behaviour, max_txs, expected) in cases {
        let before = calls("ok");
        let rpc = if matches!(behaviour, Behaviour::Hang) { &impatient } else { &rpc };
        el.set(behaviour);
        let streamed = summary(read_txpool_content(rpc, max_txs).await);
        let whole = summary(whole_body(rpc, max_txs).await);
        let counts = streamed.as_ref().map(|(h, b, o)| (h.len(), *b, *o));
        assert_eq!(counts.map_err(String::as_str), expected, "{name}");
        if !matches!(&whole, Ok((_, _, over)) if *over > 0) {
            assert_eq!(streamed, whole, "{name}");
        } else {
            // Past max_txs the whole-body decoder keeps whichever txs its hash map yields.
            let len = |r: &Result<(Vec<String>, usize, usize), String>| {
                r.as_ref().map(|(h, b, o)| (h.len(), *b, *o)).ok()
            };
            assert_eq!(len(&streamed), len(&whole), "{name}");
        }
        // Both calls are counted under the endpoint's labels, with the same outcome: a body
        // read in full is `ok` whatever it said, as `call_raw` counts it.
        if matches!(expected, Ok(_) | Err("result shape" | "rpc_error" | "decode")) {
            assert_eq!(calls("ok") - before, 2, "{name}");
        }
    }
    for kind in ["transport", "too_large", "http_status", "timeout"] {
        assert_eq!(calls(kind), 2, "{kind} counted once for each read");
    }
}

#[tokio::test]
async fn the_revalidator_reads_a_large_pool_through_the_streamed_path() {
    // ~6,000 txs (about 3 MB of JSON, many chunks) with one undecodable tx, and a pool bound
    // below it; a debug build decodes a few MB/s, hence the generous EL timeout.
    let h = harness(|cfg| {
        cfg.max_pool_txs = 5_000;
        cfg.el_timeout_ms = Duration::from_secs(30);
    })
    .await;
    h.el.insert_quietly(generate_pool(600, 10, 10, |i| vec![msg(i)]));
    h.el.insert_raw("0x00000000000000000000000000000000000000aa", "0", json!({"hash": "0x12"}));
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!(r.pool_txs, 5_000);
    assert_eq!(r.skipped, 1 + 1_000, "one undecodable and 1,000 over the bound, or 1,001 over");
    assert!(r.tracked > 0 && r.tracked <= 600, "{}", r.tracked);
}

#[tokio::test]
async fn a_reconciliation_read_that_fails_after_its_first_batches_changes_nothing() {
    // The EL's WebSocket announces one tx; its HTTP answers `txpool_content` with 10,000 txs
    // (several of the read's 4,096-tx batches, handed to the mirror as they are decoded) under
    // another request's id. That is no answer: the mirror keeps only what it was announced and
    // never goes live on it.
    let announcer = std::sync::Arc::new(interop_gate::dev::el_pool::MockElPool::new(
        crate::revalidator_support::HEAD,
        10,
    ));
    let ws_peer = interop_gate::dev::el_pool::spawn_el_pool(announcer.clone()).await.unwrap();
    let pool = content(&generate_pool(1_000, 10, 10, |i| vec![msg(i)]));
    let body = json!({"jsonrpc": "2.0", "id": 987_654_321u64, "result": pool}).to_string();
    let (bad_peer, bad) = misbehave::spawn(Behaviour::Raw(200, body)).await.unwrap();
    let h = harness(|cfg| {
        cfg.el_url = interop_gate::dev::parse_url(&bad_peer.url());
        cfg.el_ws_url = Some(interop_gate::dev::parse_url(&format!("ws://{}/", ws_peer.addr)));
        cfg.el_timeout_ms = Duration::from_secs(30);
        cfg.reconcile_interval_ms = Duration::from_millis(100);
    })
    .await;
    let a = MockTx::new(alloy_primitives::Address::repeat_byte(0xa1), 0, 50_000, fee(), &[]);
    let follower = h.reval.core.follower().unwrap();
    for _ in 0..200 {
        announcer.insert([a.clone()]);
        if follower.mirror().contains(&a.hash) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Each read asks for the head and the pool: a third request means the first read is over.
    for _ in 0..3_000 {
        if bad.requests() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(bad.requests() >= 3, "the follower reconciled");
    let status = h.reval.core.status()["mirror"].clone();
    assert_eq!(status["txs"], 1, "{status}");
    assert_eq!(status["mode"], "polling", "{status}");
    assert!(follower.mirror().contains(&a.hash));
}

fn fee() -> interop_gate::revalidator::pool::Fees {
    interop_gate::revalidator::pool::Fees::dynamic(10_000, 10)
}
