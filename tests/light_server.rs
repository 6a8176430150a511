//! The light-mode supervisor endpoint on the wire: golden request/response pairs (checked byte for
//! byte; regenerate with `UPDATE_GOLDEN=1` after a deliberate change and review the diff), the
//! failsafe switch on the admin listener, block hashes and sync status, and the ingress using
//! this endpoint as its indexed backend.

mod common;

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
