//! End to end: how long after `anvil_reorg` removes an initiating message does the executing tx
//! leave an EL's pool, for an EL that sweeps like op-geth and one that follows the feed?
//!
//! - Source chain: anvil from e2e/node_modules (`npm ci --prefix e2e`), one contract-creation
//!   log per trial (init code `LOG0`), then `anvil_reorg` of the block that holds it.
//! - interop-gate: the real app, revalidator enabled with its defaults (`interval_ms` 2000), light
//!   backend on the anvil (`policy = "light"`, `min_safety = "unsafe"`).
//! - Feed stand-in: a mock EL pool the revalidator reads (`txpool_content` over HTTP), and a
//!   task that follows the feed with `interop-gate-client`'s `Follower` (push) and removes each
//!   yielded hash from that pool.
//! - op-geth stand-in: the same tx in its own pool, swept every `SWEEP_SECS` (12, as op-geth)
//!   through `interop_checkAccessList` on the revalidator's drop-in (descriptor now + 86400, as
//!   op-geth sends), dropping what is refused as invalid.
//!
//! Each reorg happens at a random phase of the sweep (and of the revalidator's passes).
//! `TRIALS=10 SWEEP_SECS=12 cargo bench --bench feed_latency` prints median and max per stand-in.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};
use interop_gate::dev::el_pool::{MockElPool, MockTx};
use interop_gate::dev::{light_chain, spawn_peer};
use interop_gate::interop::{encode_entries, Message};
use interop_gate::revalidator::pool::{Fees, Head};
use interop_gate_client::{
    CheckOutcome, Client, Descriptor, Follower, FollowerConfig, MemoryCursor, NoHooks,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

const SOURCE: u64 = 911;
const DEST: u64 = 912;

async fn rpc(http: &reqwest::Client, url: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let v: Value = http.post(url).json(&body).send().await.unwrap().json().await.unwrap();
    assert!(v.get("error").is_none(), "{method}: {v}");
    v["result"].clone()
}

fn hex_u64(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

fn now() -> u64 {
    interop_gate::clock::unix_now()
}

fn head() -> Head {
    Head { number: 100 + now(), timestamp: now(), base_fee: 100, gas_limit: 30_000_000 }
}

/// Emits one log (a contract creation whose init code is `LOG0`) and returns its message.
async fn emit(http: &reqwest::Client, url: &str, from: &str) -> (Message, u64) {
    let tx = json!({"from": from, "data": "0x60006000a000", "gas": "0x186a0"});
    let hash = rpc(http, url, "eth_sendTransaction", json!([tx])).await;
    let mut receipt = Value::Null;
    for _ in 0..200 {
        receipt = rpc(http, url, "eth_getTransactionReceipt", json!([hash.clone()])).await;
        if !receipt.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let log = &receipt["logs"][0];
    let number = hex_u64(&log["blockNumber"]);
    let block =
        rpc(http, url, "eth_getBlockByNumber", json!([format!("{number:#x}"), false])).await;
    let origin: Address = log["address"].as_str().unwrap().parse().unwrap();
    let msg = Message::for_log(
        U256::from(SOURCE),
        number,
        hex_u64(&block["timestamp"]),
        hex_u64(&log["logIndex"]) as u32,
        origin,
        &[],
        &[],
    );
    (msg, number)
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median =
        if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
    (median, *v.last().unwrap())
}

#[tokio::main]
async fn main() {
    let trials: usize = std::env::var("TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let sweep = Duration::from_secs(
        std::env::var("SWEEP_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(12),
    );
    let anvil = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("e2e/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    if !anvil.exists() {
        eprintln!("anvil not found at {}: npm ci --prefix e2e first", anvil.display());
        return;
    }
    let mut child = Command::new(&anvil)
        .args(["--port", "0", "--host", "127.0.0.1", "--chain-id", &SOURCE.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next_line().await.unwrap().expect("anvil listens");
        if let Some(a) = line.strip_prefix("Listening on ") {
            break a.trim().to_string();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let source = format!("http://{addr}");
    let http = reqwest::Client::new();
    let accounts = rpc(&http, &source, "eth_accounts", json!([])).await;
    let from = accounts[0].as_str().unwrap().to_owned();

    // The feed stand-in's pool, read by the revalidator.
    let el = Arc::new(MockElPool::new(head(), DEST));
    let el_peer = spawn_peer("el", el.clone(), "127.0.0.1:0").await.unwrap();
    let mut cfg = interop_gate::dev::loopback_config();
    cfg.ingress.enabled = false;
    cfg.validation.policy = interop_gate::config::PolicyMode::Light;
    cfg.light.chains = vec![light_chain(SOURCE, std::slice::from_ref(&source))];
    cfg.revalidator.enabled = true;
    cfg.revalidator.el_url = el_peer.url();
    cfg.revalidator.chain_id = DEST;
    cfg.revalidator.min_safety = interop_gate::interop::SafetyLevel::Unsafe;
    let shutdown = CancellationToken::new();
    let app = interop_gate::app::start(cfg, shutdown.clone()).await.expect("starts");
    let reval = format!("http://{}/", app.revalidator_addr.unwrap());
    let client = Client::new(reval.clone(), Duration::from_secs(5)).unwrap();

    // When each stand-in dropped each tx.
    let dropped: Arc<Mutex<HashMap<(&'static str, B256), Instant>>> = Arc::default();

    // Feed stand-in: follow, remove.
    let (el2, d2, url2) = (el.clone(), dropped.clone(), reval.clone());
    tokio::spawn(async move {
        let mut f = Follower::new(
            FollowerConfig::new(url2),
            Box::new(MemoryCursor::default()),
            Box::new(NoHooks),
        )
        .unwrap();
        loop {
            for h in f.next().await.hashes() {
                if el2.remove(&h) {
                    d2.lock().unwrap().insert(("feed", h), Instant::now());
                }
            }
        }
    });

    // op-geth stand-in: its own pool, swept every `sweep` through checkAccessList.
    let geth_pool: Arc<Mutex<HashMap<B256, Vec<B256>>>> = Arc::default();
    let (gp, d3, c3) = (geth_pool.clone(), dropped.clone(), client.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(sweep);
        loop {
            tick.tick().await;
            let txs: Vec<(B256, Vec<B256>)> =
                gp.lock().unwrap().iter().map(|(h, e)| (*h, e.clone())).collect();
            for (hash, entries) in txs {
                let d =
                    Descriptor { timestamp: now(), timeout: Some(86_400), chain_id: Some(DEST) };
                if let Ok(CheckOutcome::Refused { code, .. }) =
                    c3.check_access_list(&entries, "unsafe", d).await
                {
                    // No answer (-32603) and not-yet-known (-321401) keep the tx, as op-geth.
                    if code != -32603 && code != -321401 {
                        gp.lock().unwrap().remove(&hash);
                        d3.lock().unwrap().insert(("geth", hash), Instant::now());
                    }
                }
            }
        }
    });

    let (mut feed, mut geth) = (Vec::new(), Vec::new());
    for trial in 0..trials {
        let (msg, number) = emit(&http, &source, &from).await;
        // The executing timestamp must be after the message's.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        el.set_head(head());
        let mut a = [0u8; 20];
        a[..8].copy_from_slice(&(trial as u64 + 1).to_be_bytes());
        let fees = Fees::Dynamic { max_fee: 2_000, max_priority_fee: 1 };
        let tx = MockTx::new(Address::from(a), 0, 60_000, fees, &[msg]);
        el.insert([tx.clone()]);
        geth_pool.lock().unwrap().insert(tx.hash, encode_entries(&[msg]));
        // Steady state first: the revalidator has judged it valid.
        let start = Instant::now();
        loop {
            let s = client.transaction_status(tx.hash).await.unwrap();
            if s.status.as_deref() == Some("valid") {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "never valid: {s:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A random phase against the sweep and the revalidator's pass interval, as in life.
        let sweep_ms = sweep.as_millis() as u64;
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..sweep_ms.max(1)))).await;
        let head_number = hex_u64(&rpc(&http, &source, "eth_blockNumber", json!([])).await);
        let t0 = Instant::now();
        rpc(&http, &source, "anvil_reorg", json!([head_number - number + 1, []])).await;
        loop {
            let got = {
                let d = dropped.lock().unwrap();
                d.get(&("feed", tx.hash)).copied().zip(d.get(&("geth", tx.hash)).copied())
            };
            if let Some((f, g)) = got {
                let (f, g) = ((f - t0).as_secs_f64(), (g - t0).as_secs_f64());
                println!("trial {trial}: feed follower {f:.2} s, op-geth-style sweep {g:.2} s");
                feed.push(f);
                geth.push(g);
                break;
            }
            assert!(t0.elapsed() < sweep * 3 + Duration::from_secs(30), "tx never dropped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let (fm, fx) = stats(feed);
    let (gm, gx) = stats(geth);
    println!(
        "{trials} trials, anvil_reorg -> tx out of the pool: feed follower median {fm:.2} s max {fx:.2} s; op-geth-style sweep every {} s median {gm:.2} s max {gx:.2} s",
        sweep.as_secs()
    );
    shutdown.cancel();
    app.wait().await;
}
