//! `validation::receipts` against live blocks of a real node: anvil (from e2e/'s npm packages)
//! in Ethereum and in OP Stack mode. Every block the test mines is fetched through
//! `fetch_verified` with a real HTTP JSON-RPC call and must yield exactly the logs `eth_getLogs`
//! returns for it; a proxy that changes one byte of the receipts answer is caught.
//!
//! Skipped, with a notice, when anvil is not installed (`npm ci --prefix e2e --no-audit --no-fund`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use alloy_primitives::{Address, Bytes, B256};
use interop_gate::validation::receipts::{fetch_verified, Limits, ReceiptsError, VerifiedLog};
use serde_json::{json, value::RawValue, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn anvil_path() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("e2e/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    // CI installs the e2e packages before the tests: there a missing anvil is a failure.
    assert!(p.exists() || std::env::var_os("CI").is_none(), "anvil missing in CI: {}", p.display());
    p.exists().then_some(p)
}

struct Anvil {
    url: String,
    http: reqwest::Client,
    _child: Child,
}

impl Anvil {
    async fn start(path: &PathBuf, args: &[&str]) -> Self {
        let mut child = Command::new(path)
            .args(["--port", "0", "--host", "127.0.0.1"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(a) = line.strip_prefix("Listening on ") {
                    return a.trim().to_string();
                }
            }
            panic!("anvil exited before listening");
        })
        .await
        .unwrap();
        // Keep draining stdout so anvil never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { url: format!("http://{addr}"), http: reqwest::Client::new(), _child: child }
    }

    /// One JSON-RPC call; the raw `result` or the error as text (what the light backend's
    /// client hands `fetch_verified`).
    async fn call_raw(&self, method: &str, params: Value) -> Result<Box<RawValue>, String> {
        #[derive(serde::Deserialize)]
        struct Answer {
            // `null` is a result (block not found), not a missing one.
            #[serde(default, deserialize_with = "present")]
            result: Option<Box<RawValue>>,
            error: Option<Value>,
        }
        fn present<'de, D: serde::Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Box<RawValue>>, D::Error> {
            serde::Deserialize::deserialize(d).map(Some)
        }
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let a: Answer = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        match (a.result, a.error) {
            (Some(r), None) => Ok(r),
            (_, e) => Err(format!("{method}: {e:?}")),
        }
    }

    async fn call(&self, method: &str, params: Value) -> Value {
        let r = self.call_raw(method, params).await.unwrap();
        serde_json::from_str(r.get()).unwrap()
    }

    async fn accounts(&self) -> Vec<String> {
        serde_json::from_value(self.call("eth_accounts", json!([])).await).unwrap()
    }

    /// Deploys a contract whose runtime emits `LOG2(calldata, 0xaa, caller)` then
    /// `LOG1(calldata[0..32], 0xbb)`. Returns its address.
    async fn deploy_emitter(&self, from: &str) -> String {
        // init: CODECOPY the 17-byte runtime at offset 10 to memory 0 and RETURN it.
        // runtime: CALLDATACOPY(0, 0, CALLDATASIZE); LOG2(0, CALLDATASIZE, 0xaa, CALLER);
        //          LOG1(0, 32, 0xbb); STOP
        let code = "0x6011600a5f3960115ff3365f5f373360aa365fa260bb60205fa100";
        let tx = self
            .call("eth_sendTransaction", json!([{ "from": from, "data": code, "gas": "0x30000" }]))
            .await;
        // anvil mines on its own task: the receipt appears shortly after the hash.
        let mut receipt = Value::Null;
        for _ in 0..250 {
            receipt = self.call("eth_getTransactionReceipt", json!([tx])).await;
            if !receipt.is_null() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(receipt["status"], "0x1", "deploy failed: {receipt}");
        receipt["contractAddress"].as_str().unwrap().to_string()
    }

    /// Verifies every block from 0 to `latest` and compares with `eth_getLogs`; returns how
    /// many logs were verified.
    async fn verify_all_blocks(&self) -> usize {
        let latest = self.call("eth_blockNumber", json!([])).await;
        let latest =
            u64::from_str_radix(latest.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
        let mut verified = 0;
        for n in 0..=latest {
            let header = self.call("eth_getBlockByNumber", json!([format!("{n:#x}"), false])).await;
            let hash: B256 = header["hash"].as_str().unwrap().parse().unwrap();
            let block = fetch_verified(
                |m: &'static str, p: Value| self.call_raw(m, p),
                hash,
                &Limits::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("block {n}: {e}"));
            assert_eq!(block.header.number, n);
            assert_eq!(block.header.hash, hash);
            let logs = self.call("eth_getLogs", json!([{ "blockHash": hash }])).await;
            assert_eq!(block.logs, parse_logs(&logs), "block {n}");
            verified += block.logs.len();
        }
        verified
    }
}

fn quantity(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

fn parse_logs(logs: &Value) -> Vec<VerifiedLog> {
    logs.as_array()
        .unwrap()
        .iter()
        .map(|l| VerifiedLog {
            address: l["address"].as_str().unwrap().parse::<Address>().unwrap(),
            topics: serde_json::from_value(l["topics"].clone()).unwrap(),
            data: l["data"].as_str().unwrap().parse::<Bytes>().unwrap(),
            log_index: quantity(&l["logIndex"]),
            transaction_index: quantity(&l["transactionIndex"]),
        })
        .collect()
}

/// Sends txs of types 0, 1 and 2 (from three dev accounts) into one block, a second block with
/// one more, and returns the hash of the first.
async fn mine_mixed_block(node: &Anvil, emitter: &str) -> B256 {
    let acc = node.accounts().await;
    node.call("evm_setAutomine", json!([false])).await;
    let gas = "0x30000";
    node.call(
        "eth_sendTransaction",
        json!([{ "from": acc[1], "to": emitter, "data": "0x0102", "gas": gas, "type": "0x0", "gasPrice": "0xb2d05e00" }]),
    )
    .await;
    node.call(
        "eth_sendTransaction",
        json!([{ "from": acc[2], "to": emitter, "data": format!("0x{}", "ab".repeat(40)), "gas": gas, "type": "0x1", "gasPrice": "0xb2d05e00", "accessList": [{ "address": emitter, "storageKeys": [] }] }]),
    )
    .await;
    node.call(
        "eth_sendTransaction",
        json!([{ "from": acc[3], "to": emitter, "data": "0x", "gas": gas, "type": "0x2", "maxFeePerGas": "0xb2d05e00", "maxPriorityFeePerGas": "0x1" }]),
    )
    .await;
    node.call("evm_mine", json!([])).await;
    let block = node.call("eth_getBlockByNumber", json!(["latest", false])).await;
    assert_eq!(block["transactions"].as_array().unwrap().len(), 3, "{block}");
    node.call(
        "eth_sendTransaction",
        json!([{ "from": acc[4], "to": emitter, "data": "0x77", "gas": gas }]),
    )
    .await;
    node.call("evm_mine", json!([])).await;
    block["hash"].as_str().unwrap().parse().unwrap()
}

/// A prague anvil with the emitter deployed and one mixed block mined (its hash); `None` (with a
/// notice) when anvil is not installed.
async fn node_with_mixed_block() -> Option<(Anvil, B256)> {
    let Some(path) = anvil_path() else {
        eprintln!("SKIPPED: anvil not installed (npm ci --prefix e2e --no-audit --no-fund)");
        return None;
    };
    let node = Anvil::start(&path, &["--hardfork", "prague"]).await;
    let acc = node.accounts().await;
    let emitter = node.deploy_emitter(&acc[0]).await;
    let mixed = mine_mixed_block(&node, &emitter).await;
    Some((node, mixed))
}

#[tokio::test]
async fn live_anvil_blocks_verify_and_match_eth_get_logs() {
    let Some((node, mixed)) = node_with_mixed_block().await else { return };
    // 3 txs with 2 logs each, then 1 more; block 0 and the deploy block have none.
    assert_eq!(node.verify_all_blocks().await, 8);

    // The same block through a proxy that changes one data byte of the receipts answer.
    let lying = |m: &'static str, p: Value| {
        let node = &node;
        async move {
            let r = node.call_raw(m, p).await?;
            if m != "eth_getBlockReceipts" {
                return Ok(r);
            }
            let mut v: Value = serde_json::from_str(r.get()).map_err(|e| e.to_string())?;
            v[1]["logs"][0]["data"] = json!(format!("0x{}ac", "ab".repeat(39)));
            RawValue::from_string(v.to_string()).map_err(|e| e.to_string())
        }
    };
    let err = fetch_verified(lying, mixed, &Limits::default()).await.unwrap_err();
    assert!(matches!(err, ReceiptsError::ReceiptsRootMismatch { .. }), "{err:?}");
}

#[tokio::test]
async fn live_op_stack_blocks_with_deposit_receipts_verify() {
    let Some(path) = anvil_path() else {
        eprintln!("SKIPPED: anvil not installed (npm ci --prefix e2e --no-audit --no-fund)");
        return;
    };
    let node = Anvil::start(&path, &["--network", "optimism"]).await;
    let acc = node.accounts().await;
    let emitter = node.deploy_emitter(&acc[0]).await;
    node.call("evm_setAutomine", json!([false])).await;
    for (i, from) in acc[1..3].iter().enumerate() {
        // anvil in OP mode turns these into deposit transactions (type 0x7e).
        node.call(
            "eth_sendTransaction",
            json!([{ "from": from, "to": emitter, "data": format!("0x{i:02x}"), "gas": "0x30000",
                     "type": "0x7e", "sourceHash": B256::repeat_byte(i as u8 + 1), "mint": "0x0",
                     "isSystemTx": false }]),
        )
        .await;
    }
    node.call(
        "eth_sendTransaction",
        json!([{ "from": acc[3], "to": emitter, "data": "0x33", "gas": "0x30000", "type": "0x2", "maxFeePerGas": "0xb2d05e00", "maxPriorityFeePerGas": "0x1" }]),
    )
    .await;
    node.call("evm_mine", json!([])).await;
    let receipts = node.call("eth_getBlockReceipts", json!(["latest"])).await;
    let deposits = receipts
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"].as_str().unwrap().eq_ignore_ascii_case("0x7e"))
        .count();
    assert_eq!(deposits, 2, "{receipts}");
    assert_eq!(node.verify_all_blocks().await, 6);
}

/// A chain RPC in front of anvil that lies consistently: the data of one log, in both
/// `eth_getLogs` and `eth_getBlockReceipts` answers, with every block field left true.
async fn lying_proxy(
    upstream: String,
    fake_data: String,
) -> (String, tokio_util::sync::CancellationToken) {
    use axum::extract::State;
    use axum::Json;
    async fn handle(
        State((up, fake)): State<(String, String)>,
        Json(req): Json<Value>,
    ) -> Json<Value> {
        let mut answer: Value = reqwest::Client::new()
            .post(&up)
            .json(&req)
            .send()
            .await
            .expect("anvil answers")
            .json()
            .await
            .expect("JSON");
        match req["method"].as_str() {
            Some("eth_getLogs") => answer["result"][0]["data"] = json!(fake),
            Some("eth_getBlockReceipts") => {
                if let Some(rs) = answer["result"].as_array_mut() {
                    if let Some(r) =
                        rs.iter_mut().find(|r| !r["logs"].as_array().unwrap().is_empty())
                    {
                        r["logs"][0]["data"] = json!(fake);
                    }
                }
            }
            _ => {}
        }
        Json(answer)
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    let app =
        axum::Router::new().fallback(axum::routing::post(handle)).with_state((upstream, fake_data));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(token.cancelled_owned()).await;
    });
    (url, stop)
}

#[tokio::test]
async fn verify_receipts_catches_a_chain_rpc_that_lies_consistently() {
    use interop_gate::config::{ChainRpcConfig, LightConfig, ValidationConfig};
    use interop_gate::interop::checksum::checksum;
    use interop_gate::interop::{ExecutingDescriptor, Message, SafetyLevel};
    use interop_gate::validation::light::LightBackend;
    use interop_gate::validation::{Backend, CheckRequest, Verdict};
    let Some((node, hash)) = node_with_mixed_block().await else { return };
    let block = node.call("eth_getBlockByHash", json!([hash, false])).await;
    let (number, timestamp) = (quantity(&block["number"]), quantity(&block["timestamp"]));
    let log = &parse_logs(&node.call("eth_getLogs", json!([{ "blockHash": hash }])).await)[0];
    let chain = alloy_primitives::U256::from(31_337);
    let message = |data: &[u8]| Message {
        chain_id: chain,
        block_number: number,
        timestamp,
        log_index: 0,
        checksum: checksum(log.address, &log.topics, data, number, timestamp, 0, chain),
    };
    let fake = Bytes::from(vec![0xee; log.data.len()]);
    let (genuine, forged) = (message(&log.data), message(&fake));
    let (liar_url, stop) = lying_proxy(node.url.clone(), format!("{fake}")).await;
    let backend = |url: &str, verify: bool| {
        let light = LightConfig {
            chains: vec![ChainRpcConfig {
                chain_id: interop_gate::interop::ChainId::from(31_337u64),
                endpoints: vec![interop_gate::dev::endpoint("rpc", url.to_string())],
                agreement: false,
                verify_receipts: verify,
                interop_time: None,
            }],
            ..Default::default()
        };
        LightBackend::from_config(&light, &ValidationConfig::default()).unwrap()
    };
    let req = |m: Message| CheckRequest {
        messages: vec![m].into(),
        min_safety: SafetyLevel::Unsafe,
        descriptor: ExecutingDescriptor {
            timestamp: timestamp + 10,
            timeout: None,
            chain_id: None,
        },
    };
    // An honest node: the genuine message is valid, the forgery invalid, with or without proof.
    for verify in [false, true] {
        let b = backend(&node.url, verify);
        assert!(b.check(&req(genuine)).await.is_valid(), "verify={verify}");
        assert!(matches!(b.check(&req(forged)).await, Verdict::Invalid(_)), "verify={verify}");
    }
    // A consistent liar passes the block-field checks: without proof the forgery is "valid"
    // (the limit of every peer's design); with proof it is no answer, never valid.
    assert!(backend(&liar_url, false).check(&req(forged)).await.is_valid());
    let proven = backend(&liar_url, true);
    assert!(matches!(proven.check(&req(forged)).await, Verdict::Unavailable(_)));
    assert!(matches!(proven.check(&req(genuine)).await, Verdict::Unavailable(_)));
    let text = interop_gate::metrics::metrics().render();
    assert!(text.contains(r#"why="receipts_root""#), "the refused answer is counted");
    stop.cancel();
}
