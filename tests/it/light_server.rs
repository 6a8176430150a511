//! The light-mode supervisor endpoint on the wire: golden request/response pairs (checked byte for
//! byte; regenerate with `UPDATE_GOLDEN=1` after a deliberate change and review the diff), the
//! failsafe switch on the admin listener, block hashes and sync status, and the ingress using
//! this endpoint as its indexed backend.

use crate::common;

use std::path::PathBuf;

use alloy_primitives::U256;
use common::*;
use interop_gate::dev::chain::SimChain;
use interop_gate::dev::spawn_peer;
use interop_gate::interop::access_list::encode_entries;
use interop_gate::interop::Message;
use serde_json::{json, Value};

/// Deterministic chain: genesis at this time, a block every 2 s.
const GENESIS: u64 = 1_700_000_000;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden/light-server")
}

async fn post_text(url: &str, body: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("sent");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

#[tokio::test]
async fn golden_wire_exchanges() {
    let chain = SimChain::new(SOURCE, GENESIS, 2);
    for i in 0..5u8 {
        chain.push_block(pings(3, i));
    }
    let peer = spawn_peer("chain", chain.clone(), "127.0.0.1:0").await.unwrap();
    let mut cfg = loopback_config();
    cfg.ingress.enabled = false;
    cfg.light_server.enabled = true;
    cfg.light.chains = vec![light_chain(SOURCE, &[peer.url()])];
    // Interop activates between blocks 1 (GENESIS + 2) and 2 (GENESIS + 4): block 2 is the
    // activation block, its messages and earlier ones are invalid.
    cfg.light.chains[0].interop_time = Some(GENESIS + 3);
    let running = interop_gate::app::start(cfg, Default::default()).await.unwrap();
    let url = format!("http://{}/", running.light_server_addr.unwrap());
    let admin = format!("http://{}/", running.admin_addr.unwrap());

    let m = chain.message(3, 1).unwrap();
    let activation = chain.message(2, 0).unwrap();
    let pre_activation = chain.message(1, 0).unwrap();
    let mut bad = m;
    bad.checksum.0[31] ^= 1;
    let hex = |ms: &[Message]| json!(encode_entries(ms));
    let exec = m.timestamp + 100;
    let desc = json!({ "timestamp": format!("{exec:#x}"), "timeout": "0x0", "chainID": "10" });
    let call = |method: &str, params: Value| {
        json!({"jsonrpc":"2.0","id":1,"method":method,"params":params}).to_string()
    };
    let cases: Vec<(&str, String)> = vec![
        ("check-valid", call("interop_checkAccessList", json!([hex(&[m]), "cross-unsafe", desc]))),
        (
            "check-valid-old-name",
            call("supervisor_checkAccessList", json!([hex(&[m]), "unsafe", desc])),
        ),
        ("check-empty-list", call("interop_checkAccessList", json!([[], "unsafe", desc]))),
        (
            "check-conflicting-checksum",
            call("interop_checkAccessList", json!([hex(&[bad]), "unsafe", desc])),
        ),
        (
            "check-unknown-chain",
            call(
                "interop_checkAccessList",
                json!([hex(&[Message { chain_id: U256::from(7u64), ..m }]), "unsafe", desc]),
            ),
        ),
        (
            "check-future-block",
            call(
                "interop_checkAccessList",
                json!([hex(&[Message { block_number: 99, ..m }]), "unsafe", desc]),
            ),
        ),
        (
            "check-expired",
            call(
                "interop_checkAccessList",
                json!([hex(&[m]), "unsafe", { "timestamp": format!("{:#x}", m.timestamp + 604_801) }]),
            ),
        ),
        (
            "check-malformed-entries",
            call(
                "interop_checkAccessList",
                json!([[format!("0x01{}", "00".repeat(31))], "unsafe", desc]),
            ),
        ),
        ("check-bad-safety", call("interop_checkAccessList", json!([hex(&[m]), "Safe", desc]))),
        (
            "check-activation-block",
            call("interop_checkAccessList", json!([hex(&[activation]), "unsafe", desc])),
        ),
        (
            "check-before-activation",
            call("interop_checkAccessList", json!([hex(&[pre_activation]), "unsafe", desc])),
        ),
        ("failsafe-get", call("admin_getFailsafeEnabled", json!([]))),
        (
            "block-hash",
            call("interop_getBlockHashByNumber", json!([format!("{SOURCE:#x}"), "0x3"])),
        ),
        // Every block selector op-interop-filter reads, and what its Go client sends
        // (chainID as a decimal string, rpc.BlockNumber as hex).
        ("block-hash-go-client", call("interop_getBlockHashByNumber", json!(["901", "0x3"]))),
        ("block-hash-latest", call("interop_getBlockHashByNumber", json!(["901", "latest"]))),
        ("block-hash-json-number", call("interop_getBlockHashByNumber", json!(["901", 3]))),
        ("block-hash-decimal-string", call("interop_getBlockHashByNumber", json!(["901", "3"]))),
        ("block-hash-not-found", call("interop_getBlockHashByNumber", json!(["901", 999]))),
        ("block-hash-unknown-chain", call("interop_getBlockHashByNumber", json!(["999", 3]))),
        (
            "block-hash-unsupported-tag",
            call("interop_getBlockHashByNumber", json!(["901", "safe"])),
        ),
        (
            "block-hash-legacy-name",
            call("supervisor_getBlockHashByNumber", json!(["901", "latest"])),
        ),
        ("sync-status", call("interop_syncStatus", json!([]))),
        (
            "messages-valid",
            call(
                "supervisor_checkMessagesV2",
                json!([[wire(&chain, 3, 1, None)], "cross-unsafe", desc]),
            ),
        ),
        (
            "messages-valid-interop-name",
            call("interop_checkMessages", json!([[wire(&chain, 3, 1, None)], "unsafe", desc])),
        ),
        (
            "messages-wrong-payload",
            call(
                "supervisor_checkMessagesV2",
                json!([[wire(&chain, 3, 1, Some(2))], "unsafe", desc]),
            ),
        ),
        (
            "messages-decimal-chain-id",
            call(
                "supervisor_checkMessagesV2",
                json!([[{ "identifier": { "origin": format!("{:#x}", alloy_primitives::Address::repeat_byte(0x42)), "blockNumber": "0x3", "logIndex": "0x1", "timestamp": format!("{:#x}", m.timestamp), "chainID": "901" }, "payloadHash": format!("{:#x}", alloy_primitives::B256::ZERO) }], "unsafe", desc]),
            ),
        ),
    ];
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    std::fs::create_dir_all(golden_dir()).unwrap();
    let exchange = |name: &str, req: String, resp: String| {
        let path = golden_dir().join(format!("{name}.json"));
        let text = format!("{req}\n{resp}\n");
        if update {
            std::fs::write(&path, &text).unwrap();
        } else {
            let want = std::fs::read_to_string(&path)
                .unwrap_or_else(|_| panic!("missing {}: run with UPDATE_GOLDEN=1", path.display()));
            assert_eq!(text, want, "{name}: the wire changed");
        }
    };
    for (name, req) in cases {
        let (status, resp) = post_text(&url, &req).await;
        assert_eq!(status, 200, "supervisor-style: errors are HTTP 200 ({name})");
        exchange(name, req, resp);
    }
    // Failsafe on the admin listener: every check then fails with -320602.
    let (_, on) = post_text(&admin, &call("admin_setFailsafeEnabled", json!([true]))).await;
    assert!(on.contains("\"result\""), "{on}");
    let req = call("interop_checkAccessList", json!([hex(&[m]), "unsafe", desc]));
    let (_, resp) = post_text(&url, &req).await;
    exchange("check-in-failsafe", req, resp);
    let (_, resp) = post_text(&url, &call("admin_getFailsafeEnabled", json!([]))).await;
    assert!(resp.contains("\"result\":true"), "{resp}");
    let (_, resp) = post_text(&url, &call("admin_setFailsafeEnabled", json!([false]))).await;
    assert!(resp.contains("-32601"), "not settable on the public port: {resp}");
    running.shutdown();
}

/// op-supervisor's `Message` JSON for log `index` of block `number`: its identifier and payload
/// hash (optionally the payload of another log of the block: a wrong message).
fn wire(chain: &SimChain, number: u64, index: usize, payload_of: Option<usize>) -> Value {
    let b = chain.block(number).expect("block");
    let l = &b.logs[index];
    let p = &b.logs[payload_of.unwrap_or(index)];
    json!({
        "identifier": {
            "origin": l.address,
            "blockNumber": format!("{number:#x}"),
            "logIndex": format!("{index:#x}"),
            "timestamp": format!("{:#x}", b.timestamp),
            "chainID": format!("{SOURCE:#x}"),
        },
        "payloadHash": interop_gate::interop::checksum::payload_hash(&p.topics, &p.data),
    })
}

#[tokio::test]
async fn the_message_form_and_the_access_list_form_give_the_same_answers() {
    let chain = SimChain::new(SOURCE, now() - 3_600, 2);
    for i in 0..4u8 {
        chain.push_block_at(now() - 600 + 60 * i as u64, pings(3, i));
    }
    let peer = spawn_peer("chain", chain.clone(), "127.0.0.1:0").await.unwrap();
    let el =
        std::sync::Arc::new(interop_gate::dev::el_pool::MockElPool::new(Default::default(), DEST));
    let el_peer = spawn_peer("el", el, "127.0.0.1:0").await.unwrap();
    let mut cfg = loopback_config();
    cfg.ingress.enabled = false;
    cfg.light_server.enabled = true;
    cfg.revalidator.enabled = true;
    cfg.revalidator.el_url = interop_gate::dev::parse_url(&el_peer.url());
    cfg.light.chains = vec![light_chain(SOURCE, &[peer.url()])];
    cfg.light.reorg_watch_ms = std::time::Duration::ZERO;
    cfg.validation.policy = interop_gate::config::PolicyMode::Light;
    let running = interop_gate::app::start(cfg, Default::default()).await.unwrap();
    let faces = [
        format!("http://{}/", running.light_server_addr.unwrap()),
        format!("http://{}/", running.revalidator_addr.unwrap()),
    ];
    // Real messages, a wrong payload, and identifiers moved one field each.
    let mut lists: Vec<Vec<Value>> = Vec::new();
    for n in 1..=4u64 {
        for i in 0..3 {
            lists.push(vec![wire(&chain, n, i, None)]);
            lists.push(vec![wire(&chain, n, i, Some((i + 1) % 3))]);
            for (field, moved) in [
                ("blockNumber", format!("{:#x}", n + 1)),
                ("logIndex", format!("{:#x}", i + 3)),
                ("chainID", "0x7".to_string()),
                ("blockNumber", "0x63".to_string()),
            ] {
                let mut w = wire(&chain, n, i, None);
                w["identifier"][field] = json!(moved);
                lists.push(vec![w]);
            }
        }
        lists.push((0..3).map(|i| wire(&chain, n, i, None)).collect());
    }
    let exec = now();
    let desc = json!({ "timestamp": format!("{exec:#x}"), "timeout": "0x1c20", "chainID": DEST.to_string() });
    let mut seen = std::collections::BTreeSet::new();
    for list in &lists {
        // The access-list form of the same messages, built with the project's own encoder.
        let messages: Vec<Message> = list
            .iter()
            .map(|w| {
                let id = &w["identifier"];
                let h = |f: &str| {
                    u64::from_str_radix(id[f].as_str().unwrap().trim_start_matches("0x"), 16)
                        .unwrap()
                };
                let origin: alloy_primitives::Address =
                    id["origin"].as_str().unwrap().parse().unwrap();
                let payload: alloy_primitives::B256 =
                    w["payloadHash"].as_str().unwrap().parse().unwrap();
                let chain_id = U256::from(h("chainID"));
                Message {
                    chain_id,
                    block_number: h("blockNumber"),
                    timestamp: h("timestamp"),
                    log_index: h("logIndex") as u32,
                    checksum: interop_gate::interop::checksum::checksum_from_log_hash(
                        interop_gate::interop::checksum::log_hash(origin, payload),
                        h("blockNumber"),
                        h("timestamp"),
                        h("logIndex") as u32,
                        chain_id,
                    ),
                }
            })
            .collect();
        for url in &faces {
            let body = |method: &str, first: Value| {
                json!({"jsonrpc":"2.0","id":1,"method":method,"params":[first, "cross-unsafe", desc]}).to_string()
            };
            let (_, by_messages) =
                post_text(url, &body("supervisor_checkMessagesV2", json!(list))).await;
            let (_, by_entries) =
                post_text(url, &body("interop_checkAccessList", json!(encode_entries(&messages))))
                    .await;
            assert_eq!(by_messages, by_entries, "{url}: {list:?}");
            let v: Value = serde_json::from_str(&by_messages).unwrap();
            seen.insert(v["error"]["code"].as_i64().unwrap_or(0));
        }
    }
    // Valid (0), conflicting data, unknown chain and future data all occurred.
    for code in [0, -320600, -320501, -321401] {
        assert!(seen.contains(&code), "{code} never occurred: {seen:?}");
    }
    running.shutdown();
}

#[tokio::test]
async fn ingress_uses_the_light_endpoint_as_its_indexed_backend() {
    let chain = SimChain::new(SOURCE, now() - 3_600, 2);
    let peer = spawn_peer("chain", chain.clone(), "127.0.0.1:0").await.unwrap();
    let mut cfg = loopback_config();
    cfg.ingress.enabled = false;
    cfg.light_server.enabled = true;
    cfg.light.chains = vec![light_chain(SOURCE, &[peer.url()])];
    let sup = interop_gate::app::start(cfg, Default::default()).await.unwrap();
    let sup_url = format!("http://{}/", sup.light_server_addr.unwrap());
    let chain_url = peer.url();
    let gw = gateway(move |c| {
        c.ingress.chain_id = DEST;
        c.supervisor.endpoints = vec![endpoint("light-sup", sup_url)];
        c.light.chains = vec![light_chain(SOURCE, &[chain_url])];
    })
    .await;
    let b = chain.push_block_at(now() - 60, pings(2, 3));
    let m = chain.message(b.number, 1).unwrap();
    let mut bad = m;
    bad.checksum.0[2] ^= 1;
    let send = |msgs: Vec<Message>, nonce| {
        let (raw, _) = interop_gate::dev::wallet::sign_1559(
            &interop_gate::dev::wallet::dev_signer(1),
            &interop_gate::dev::wallet::TxSpec::interop(DEST, nonce, &msgs),
        );
        json!({"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":[raw]})
    };
    let (_, ok) = gw.post(&send(vec![m], 0)).await;
    assert!(ok["result"].is_string(), "{ok}");
    let (_, v) = gw.post(&send(vec![bad], 1)).await;
    assert_eq!(v["error"]["code"], -320600, "{v}");
    assert_eq!(gw.upstream.raw_transactions().len(), 1);
    // Both backends read the chain: the endpoint and the gateway's own light backend.
    assert_eq!(chain.calls("eth_getLogs"), 2);
    sup.shutdown();
}
