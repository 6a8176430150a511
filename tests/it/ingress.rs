//! The ingress filter end to end over real HTTP: the real app with a mock upstream EL, a mock
//! supervisor (indexed backend) and a simulated source chain (light backend).

use crate::common;

use std::time::{Duration, Instant};

use alloy_primitives::{Bytes, U256};
use common::*;
use interop_gate::dev::wallet::{dev_signer, sign_1559, TxSpec};
use interop_gate::interop::Message;
use serde_json::{json, Value};

fn code(v: &Value) -> i64 {
    v["error"]["code"].as_i64().unwrap_or_else(|| panic!("expected an error: {v}"))
}

fn tampered(m: Message) -> Message {
    let mut bad = m;
    bad.checksum.0[31] ^= 1;
    bad
}

#[tokio::test]
async fn valid_interop_tx_is_forwarded_and_its_answer_returned_verbatim() {
    let g = interop_gateway(|_| {}).await;
    let msgs = g.emit(3, 1);
    let (raw, hash) = g.interop_tx(1, 0, &msgs);
    let (status, v) = g.send(&raw).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"], json!(hash), "the upstream's answer, verbatim");
    assert!(g.forwarded(&raw));
    assert_eq!(g.supervisor.checks(), 1);
    assert_eq!(g.chain.calls("eth_getLogs"), 1, "one getLogs for three messages in one block");
}

#[tokio::test]
async fn invalid_message_is_refused_named_and_never_reaches_the_upstream() {
    let g = interop_gateway(|_| {}).await;
    let msgs = g.emit(2, 2);
    let bad = tampered(msgs[1]);
    let (raw, hash) = g.interop_tx(1, 0, &[msgs[0], bad]);
    let (status, v) = g.send(&raw).await;
    assert_eq!(code(&v), -320600, "{v}");
    assert_eq!(status, 409);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("chain 901") && msg.contains("log 1"), "names the message: {msg}");
    assert_eq!(v["error"]["data"]["txHash"], json!(hash));
    assert_eq!(v["error"]["data"]["message"]["logIndex"], 1);
    assert!(!g.forwarded(&raw), "an invalid tx is never forwarded");
    assert!(g.gw.upstream.received().is_empty());

    // Spam of the same bad tx costs no backend call: the invalid verdict is cached.
    let (sup, logs) = (g.supervisor.checks(), g.chain.all_calls());
    for _ in 0..20 {
        let (_, v) = g.send(&raw).await;
        assert_eq!(code(&v), -320600);
    }
    assert_eq!((g.supervisor.checks(), g.chain.all_calls()), (sup, logs));
}

#[tokio::test]
async fn non_interop_tx_costs_no_backend_call() {
    let g = interop_gateway(|_| {}).await;
    let (raw, hash) = sign_1559(&dev_signer(4), &TxSpec::transfer(DEST, 0));
    let (status, v) = g.send(&raw).await;
    assert_eq!((status, &v["result"]), (200, &json!(hash)));
    assert!(g.forwarded(&raw));
    assert_eq!(g.supervisor.checks(), 0);
    assert_eq!(g.chain.all_calls(), 0);
}

#[tokio::test]
async fn every_submission_method_is_guarded() {
    // Heads re-read within the re-test delay, so a message emitted mid-test is seen.
    let g = interop_gateway(|c| c.light.head_ttl_ms = 100).await;
    let msgs = g.emit(1, 3);
    let (raw, _) = g.interop_tx(1, 0, &[tampered(msgs[0])]);
    for (method, params) in [
        ("eth_sendRawTransactionConditional", json!([raw, {}])),
        ("eth_sendRawTransactionSync", json!([raw])),
    ] {
        let (_, v) =
            g.gw.post(&json!({"jsonrpc":"2.0","id":7,"method":method,"params":params})).await;
        assert_eq!(code(&v), -320600, "{method}: {v}");
    }
    assert!(g.gw.upstream.received().is_empty());
    // A valid interop tx through the conditional method is forwarded with its second param
    // (the condition) untouched.
    let (valid, hash) = g.interop_tx(2, 0, &g.emit(1, 5));
    let condition = json!({"knownAccounts": {}, "blockNumberMax": "0x1000"});
    let body = json!({"jsonrpc":"2.0","id":8,"method":"eth_sendRawTransactionConditional",
        "params":[valid, condition]});
    let (_, v) = g.gw.post(&body).await;
    assert_eq!(v["result"], json!(hash), "{v}");
    let got = g.gw.upstream.received();
    let sent = got.iter().find(|r| r.method == "eth_sendRawTransactionConditional").expect("fwd");
    let params: serde_json::Value = serde_json::from_str(&sent.params).unwrap();
    assert_eq!(params, json!([valid, condition]));
}

#[tokio::test]
async fn a_message_known_within_the_delay_is_accepted_after_one_retest() {
    let g = interop_gateway(|c| {
        c.validation.retry_delay_ms = 800;
        c.light.head_ttl_ms = 100;
    })
    .await;
    // The message's block does not exist yet: the light backend sees it above the head and the
    // supervisor answers future data; 300 ms later both know it.
    let ts = now() - 30;
    let log = pings(1, 9).remove(0);
    let number = g.chain.head().number + 1;
    let m =
        Message::for_log(U256::from(SOURCE), number, ts, 0, log.address, &log.topics, &log.data);
    g.supervisor.set_error(&m, -321401);
    let (raw, hash) = g.interop_tx(2, 0, &[m]);
    let (chain, sup) = (g.chain.clone(), g.supervisor.clone());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let b = chain.push_block_at(ts, vec![log]);
        assert_eq!(chain.message(b.number, 0), Some(m));
        sup.clear_error(&m);
        sup.add_known([m]);
    });
    let t = Instant::now();
    let (status, v) = g.send(&raw).await;
    assert_eq!((status, &v["result"]), (200, &json!(hash)), "{v}");
    assert!(t.elapsed() >= Duration::from_millis(700), "held for the re-test");
    assert!(g.forwarded(&raw));
    assert_eq!(g.supervisor.checks(), 2, "one check, one re-test");
}

#[tokio::test]
async fn a_message_still_unknown_after_the_retest_is_answered_retry_later() {
    let g = interop_gateway(|_| {}).await;
    let head = g.chain.head();
    let m = Message { block_number: head.number + 50, timestamp: now() - 5, ..g.emit(1, 4)[0] };
    g.supervisor.set_error(&m, -321401);
    let (raw, _) = g.interop_tx(1, 0, &[m]);
    let t = Instant::now();
    let (status, v) = g.send(&raw).await;
    assert_eq!(code(&v), -321401, "{v}");
    assert_eq!(status, 422);
    assert!(v["error"]["message"].as_str().unwrap().contains("retry"), "{v}");
    assert!(t.elapsed() >= Duration::from_millis(250));
    assert!(!g.forwarded(&raw));
}

#[tokio::test]
async fn chain_id_caps_and_malformed_lists_are_refused_before_any_remote_call() {
    let g = interop_gateway(|c| {
        c.ingress.max_inbox_entries = 6;
        c.ingress.max_messages = 2;
    })
    .await;
    let msgs = g.emit(4, 5);
    // Wrong chain.
    let (raw, _) = sign_1559(&dev_signer(1), &TxSpec::interop(999, 0, &msgs[..1]));
    let (_, v) = g.send(&raw).await;
    assert_eq!(code(&v), -32602);
    assert!(v["error"]["message"].as_str().unwrap().contains("chain 999"));
    // Over the entry cap (4 messages = 8 entries).
    let (raw, _) = g.interop_tx(1, 0, &msgs);
    let (status, v) = g.send(&raw).await;
    assert_eq!((status, code(&v)), (413, -32022));
    // Three distinct messages (6 entries) exceed max_messages = 2; duplicates do not count.
    let (raw, _) = g.interop_tx(1, 0, &msgs[..3]);
    assert_eq!(code(&g.send(&raw).await.1), -32022);
    let (raw, _) = g.interop_tx(1, 0, &[msgs[0], msgs[1], msgs[0]]);
    assert!(g.send(&raw).await.1["result"].is_string(), "duplicates are de-duplicated");
    // A malformed list: a dangling lookup entry.
    let mut spec = TxSpec::interop(DEST, 1, &msgs[..1]);
    spec.access_list.0[0].storage_keys.pop();
    let (raw, _) = sign_1559(&dev_signer(1), &spec);
    let (_, v) = g.send(&raw).await;
    assert_eq!(code(&v), -32602);
    assert_eq!(v["error"]["data"]["entryIndex"], 0, "{v}");
    assert_eq!(g.supervisor.checks(), 1, "only the de-duplicated valid one was checked");
}

#[tokio::test]
async fn rate_limits_per_ip_and_per_sender() {
    let g = interop_gateway(|c| {
        c.ingress.sender_rate = interop_gate::config::RateLimit { per_second: 1, burst: 1 };
    })
    .await;
    let a = sign_1559(&dev_signer(5), &TxSpec::transfer(DEST, 0)).0;
    let b = sign_1559(&dev_signer(5), &TxSpec::transfer(DEST, 1)).0;
    let c = sign_1559(&dev_signer(6), &TxSpec::transfer(DEST, 0)).0;
    assert!(g.send(&a).await.1["result"].is_string());
    let (status, v) = g.send(&b).await;
    assert_eq!((status, code(&v)), (429, -32017), "same sender again");
    assert!(g.send(&c).await.1["result"].is_string(), "another sender has its own bucket");

    let g = interop_gateway(|c| {
        c.ingress.ip_rate = interop_gate::config::RateLimit { per_second: 1, burst: 2 };
    })
    .await;
    let call = json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]});
    assert_eq!(g.gw.post(&call).await.0, 200);
    assert_eq!(g.gw.post(&call).await.0, 200);
    let (status, v) = g.gw.post(&call).await;
    assert_eq!((status, code(&v)), (429, -32016));
}

async fn admin(g: &InteropGateway, method: &str, params: Value) -> Value {
    let url = format!("http://{}/", g.gw.running.admin_addr.expect("admin"));
    post_json(&g.gw.client, &url, &json!({"jsonrpc":"2.0","id":1,"method":method,"params":params}))
        .await
        .1
}

#[tokio::test]
async fn admin_modes_reject_all_and_bypass() {
    let g = interop_gateway(|_| {}).await;
    let msgs = g.emit(1, 6);
    let (good, _) = g.interop_tx(1, 0, &msgs);
    let (bad, _) = g.interop_tx(1, 1, &[tampered(msgs[0])]);
    let plain = sign_1559(&dev_signer(7), &TxSpec::transfer(DEST, 0)).0;

    assert!(admin(&g, "admin_setInteropMode", json!(["reject-all"])).await["result"].is_string());
    assert_eq!(code(&g.send(&good).await.1), -320602);
    assert!(g.send(&plain).await.1["result"].is_string(), "non-interop still flows");

    admin(&g, "admin_setInteropMode", json!(["bypass"])).await;
    assert!(g.send(&bad).await.1["result"].is_string(), "bypass forwards without checks");
    assert!(g.forwarded(&bad));
    let metrics = reqwest::get(g.gw.metrics_url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("interop_gate_interop_mode{mode=\"bypass\"} 1"), "{metrics}");

    admin(&g, "admin_setInteropMode", json!(["enforce"])).await;
    assert!(g.send(&good).await.1["result"].is_string());
    let status = admin(&g, "admin_status", json!([])).await;
    assert_eq!(status["result"]["interopMode"], "enforce", "{status}");
    let flushed = admin(&g, "admin_flushCaches", json!([])).await;
    assert!(flushed.get("result").is_some(), "{flushed}");
}

#[tokio::test]
async fn backend_down_fails_closed_and_readyz_says_so() {
    let g = interop_gateway(|c| c.supervisor.timeout_ms = 300).await;
    let msgs = g.emit(1, 7);
    g.supervisor_peer.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (raw, _) = g.interop_tx(1, 0, &msgs);
    let (status, v) = g.send(&raw).await;
    assert_eq!((status, code(&v)), (503, -32011), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("retry later"));
    assert!(!g.forwarded(&raw));
    let plain = sign_1559(&dev_signer(8), &TxSpec::transfer(DEST, 0)).0;
    assert!(g.send(&plain).await.1["result"].is_string(), "non-interop unaffected");
    wait_status(&g.gw.metrics_url("/readyz"), 503).await;
}

#[tokio::test]
async fn each_batch_element_is_judged_on_its_own() {
    let g = interop_gateway(|_| {}).await;
    let msgs = g.emit(1, 8);
    let (good, good_hash) = g.interop_tx(1, 0, &msgs);
    let (bad, _) = g.interop_tx(2, 0, &[tampered(msgs[0])]);
    let (plain, plain_hash) = sign_1559(&dev_signer(3), &TxSpec::transfer(DEST, 0));
    let send = |id: u64, raw: &Bytes| json!({"jsonrpc":"2.0","id":id,"method":"eth_sendRawTransaction","params":[raw]});
    let batch = json!([
        send(1, &good),
        send(2, &bad),
        send(3, &plain),
        {"jsonrpc":"2.0","id":4,"method":"eth_sendRawTransaction","params":["0xzz"]},
        {"jsonrpc":"2.0","id":5,"method":"eth_sendRawTransaction","params":[17]},
    ]);
    let (status, v) = g.gw.post(&batch).await;
    assert_eq!(status, 200);
    let by_id = |id: u64| v.as_array().unwrap().iter().find(|e| e["id"] == id).cloned().unwrap();
    assert_eq!(by_id(1)["result"], json!(good_hash));
    assert_eq!(code(&by_id(2)), -320600);
    assert_eq!(by_id(3)["result"], json!(plain_hash));
    assert_eq!(code(&by_id(4)), -32602);
    assert_eq!(code(&by_id(5)), -32602);
    assert_eq!(g.gw.upstream.raw_transactions().len(), 2);
}

#[tokio::test]
async fn hostile_inputs_get_errors_and_the_server_keeps_serving() {
    let g = interop_gateway(|c| {
        c.server.max_body_bytes = 64 * 1024;
        c.ingress.max_inbox_entries = 100;
    })
    .await;
    let cases: Vec<(String, i64)> = vec![
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["0x"]}"#.into(),
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["garbage"]}"#
                .into(),
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":"0x00"}"#.into(),
            -32600,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":[{"a":1}]}"#
                .into(),
            -32602,
        ),
        (r#"{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction"}"#.into(), -32602),
        (
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["0x02{}"]}}"#,
                "ff".repeat(1000)
            ),
            -32602,
        ),
        // Deep JSON, as a batch or in params: refused before parsing (server.max_json_depth).
        (format!("{}1{}", "[".repeat(5000), "]".repeat(5000)), -32600),
        (
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":{}1{}}}"#,
                "[".repeat(3000),
                "]".repeat(3000)
            ),
            -32600,
        ),
        // Within the depth bound, a nested param is still the pipeline's to refuse.
        (
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":{}1{}}}"#,
                "[".repeat(50),
                "]".repeat(50)
            ),
            -32602,
        ),
        ("{".into(), -32700),
        (r#"{"jsonrpc":"2.0","id":{"x":1},"method":1}"#.into(), -32600),
    ];
    for (body, want) in cases {
        let (_, text) = g.gw.post_raw(body.clone()).await;
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON for {body:.80}"));
        let v = if let Value::Array(a) = v { a[0].clone() } else { v };
        assert_eq!(code(&v), want, "{body:.80} -> {text:.200}");
    }
    // A huge access list: refused by size before any remote call.
    let msgs = g.emit(1, 10);
    let mut spec = TxSpec::interop(DEST, 0, &msgs);
    let entries = spec.access_list.0[0].storage_keys.clone();
    for _ in 0..200 {
        spec.access_list.0[0].storage_keys.extend(entries.iter().copied());
    }
    let (raw, _) = sign_1559(&dev_signer(1), &spec);
    let (status, v) = g.send(&raw).await;
    assert_eq!((status, code(&v)), (413, -32022), "{v}");
    let (status, _) = g.gw.post_raw(vec![b'x'; 100 * 1024]).await;
    assert_eq!(status, 413);
    // Still serving.
    let (raw, hash) = g.interop_tx(1, 1, &msgs);
    assert_eq!(g.send(&raw).await.1["result"], json!(hash));
    assert_eq!(g.supervisor.checks(), 1);
}

/// The bound holds, and the in-flight gauge counts the validation while it runs and returns to 0
/// (a process-wide gauge: checked in a process of its own).
#[test]
fn validations_in_flight_are_bounded() {
    common::in_fresh_process("ingress::validations_in_flight_are_bounded", in_flight_bound);
}

async fn in_flight_bound() {
    let g = interop_gateway(|c| {
        c.ingress.max_in_flight = 1;
        // The readiness probe reads the head before the messages below exist; re-read it.
        c.light.head_ttl_ms = 1;
    })
    .await;
    let gauge = || async {
        let text = reqwest::get(g.gw.metrics_url("/metrics")).await.unwrap().text().await.unwrap();
        let line = text.lines().find(|l| l.starts_with("interop_gate_validations_in_flight "));
        line.and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok()).expect("gauge exported")
    };
    assert_eq!(gauge().await, 0);
    let msgs = g.emit(2, 11);
    g.supervisor.set_delay(Duration::from_millis(400));
    let (a, _) = g.interop_tx(1, 0, &msgs[..1]);
    let (b, _) = g.interop_tx(2, 0, &msgs[1..]);
    let (ra, (rb, during)) = tokio::join!(g.send(&a), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let rb = g.send(&b).await;
        (rb, gauge().await)
    });
    assert!(ra.1["result"].is_string(), "{ra:?}");
    assert_eq!((rb.0, code(&rb.1)), (429, -32024), "{rb:?}");
    assert!(!g.forwarded(&b));
    assert_eq!(during, 1, "a's validation is in flight while b is refused");
    assert_eq!(gauge().await, 0, "every slot is given back");
}
