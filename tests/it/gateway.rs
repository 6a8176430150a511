//! Issue 2: the JSON-RPC gateway core against an in-process upstream over real HTTP.

use crate::common;

use std::time::{Duration, Instant};

use common::{dead_addr, gateway, post_json, wait_status};
use serde_json::{json, Value};

#[tokio::test]
async fn forwards_allowed_methods_and_echoes_ids_exactly() {
    let gw = gateway(|_| {}).await;
    gw.upstream.set_answer("eth_getBalance", Ok(json!({"odd": [1, "two", {"three": null}]})));
    for id in ["1", "0", "-7", "12345678901234567890123456789", "1.5e3", "\"abc\"", "\"\"", "null"]
    {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_getBalance","params":["0x00",  "latest"]}}"#
        );
        let (status, text) = gw.post_raw(body).await;
        assert_eq!(status, 200, "{text}");
        // Byte-exact id echo (the raw JSON text, not a re-encoded number).
        assert!(text.contains(&format!(r#""id":{id}"#)), "id {id} not echoed exactly: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["result"], json!({"odd": [1, "two", {"three": null}]}));
        assert_eq!(v["jsonrpc"], "2.0");
    }
    let got = gw.upstream.received();
    assert_eq!(got.len(), 8);
    assert!(got.iter().all(|r| r.method == "eth_getBalance"));
    assert_eq!(serde_json::from_str::<Value>(&got[0].params).unwrap(), json!(["0x00", "latest"]));
}

#[tokio::test]
async fn upstream_errors_come_back_verbatim() {
    let gw = gateway(|_| {}).await;
    let err = interop_gate::rpc::RpcError::new(-32000, "nonce too low")
        .with_data(json!({"have": 3, "want": 5}));
    gw.upstream.set_answer("eth_call", Err(err));
    let (status, v) =
        gw.post(&json!({"jsonrpc":"2.0","id":9,"method":"eth_call","params":[{}]})).await;
    assert_eq!(status, 200);
    assert_eq!(
        v["error"],
        json!({"code": -32000, "message": "nonce too low", "data": {"have": 3, "want": 5}})
    );
    assert_eq!(v["id"], 9);
}

#[tokio::test]
async fn refuses_methods_off_the_allow_list_without_touching_upstream() {
    let gw = gateway(|_| {}).await;
    let (status, v) = gw
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"debug_traceTransaction","params":["0x1"]}))
        .await;
    assert_eq!(status, 403);
    assert_eq!(v["error"]["code"], -32601);
    assert!(v["error"]["message"].as_str().unwrap().contains("debug_traceTransaction"));
    assert!(gw.upstream.received().is_empty());
}

#[tokio::test]
async fn json_rpc_spec_errors() {
    let gw = gateway(|_| {}).await;
    let cases: &[(&str, u16, i64)] = &[
        ("{not json", 400, -32700),
        ("", 400, -32700),
        ("[]", 400, -32600),
        ("42", 400, -32600),
        (r#"{"id":1,"method":"eth_chainId"}"#, 400, -32600),
        (r#"{"jsonrpc":"1.0","id":1,"method":"eth_chainId"}"#, 400, -32600),
        (r#"{"jsonrpc":"2.0","id":1,"method":5}"#, 400, -32600),
        (r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":"x"}"#, 400, -32600),
        (r#"{"jsonrpc":"2.0","id":{"a":1},"method":"eth_chainId"}"#, 400, -32600),
        (r#"{"jsonrpc":"2.0","id":[1],"method":"eth_chainId"}"#, 400, -32600),
    ];
    for (body, status, code) in cases {
        let (s, text) = gw.post_raw(body.to_string()).await;
        assert_eq!(s, *status, "{body}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["code"], *code, "{body}: {text}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        // An id that could not be read is answered as null.
        assert!(v.get("id").is_some());
    }
    assert!(gw.upstream.received().is_empty());
    // Deeply nested JSON is refused whole before parsing (server.max_json_depth), not a crash;
    // the server keeps serving.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (s, text) = gw.post_raw(deep).await;
    assert_eq!(s, 400, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["error"]["code"], -32600);
    let deep_obj = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{}1{}]}}"#,
        r#"{"a":"#.repeat(20_000),
        "}".repeat(20_000)
    );
    let (s, text) = gw.post_raw(deep_obj).await;
    assert_eq!(s, 400, "{text}");
    assert!(text.contains("nests deeper than 128 levels"), "{text}");
    let (s, v) = gw.post(&json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})).await;
    assert_eq!((s, v["result"].clone()), (200, json!("0xa")));
}

#[tokio::test]
async fn batches_route_each_element_and_skip_notifications() {
    let gw = gateway(|_| {}).await;
    let batch = json!([
        {"jsonrpc":"2.0","id":"a","method":"eth_chainId"},
        {"jsonrpc":"2.0","id":"b","method":"admin_peers"},
        7,
        {"jsonrpc":"2.0","method":"eth_blockNumber"},
        {"jsonrpc":"2.0","id":null,"method":"eth_blockNumber","params":[]},
    ]);
    let (status, v) = gw.post(&batch).await;
    assert_eq!(status, 200);
    let arr = v.as_array().expect("batch answer");
    assert_eq!(arr.len(), 4, "notification must not be answered: {v}");
    assert_eq!(arr[0], json!({"jsonrpc":"2.0","result":"0xa","id":"a"}));
    assert_eq!(arr[1]["error"]["code"], -32601);
    assert_eq!(arr[1]["id"], "b");
    assert_eq!(arr[2]["error"]["code"], -32600);
    assert_eq!(arr[2]["id"], Value::Null);
    assert_eq!(arr[3], json!({"jsonrpc":"2.0","result":"0x1","id":null}));
    // The notification was executed (forwarded), just not answered.
    let methods: Vec<_> = gw.upstream.received().into_iter().map(|r| r.method).collect();
    assert_eq!(methods.iter().filter(|m| *m == "eth_blockNumber").count(), 2);
    assert_eq!(methods.len(), 3);
}

#[tokio::test]
async fn notifications_alone_get_no_content() {
    let gw = gateway(|_| {}).await;
    let (s, text) = gw.post_raw(r#"{"jsonrpc":"2.0","method":"eth_chainId"}"#).await;
    assert_eq!((s, text.as_str()), (204, ""));
    let (s, text) = gw.post_raw(r#"[{"jsonrpc":"2.0","method":"eth_chainId"},{"jsonrpc":"2.0","method":"eth_blockNumber"}]"#).await;
    assert_eq!((s, text.as_str()), (204, ""));
    assert_eq!(gw.upstream.received().len(), 3);
}

#[tokio::test]
async fn size_limits_refuse_before_any_work() {
    let gw = gateway(|c| {
        c.server.max_body_bytes = 1024;
        c.server.max_batch = 3;
    })
    .await;
    let big = json!({"jsonrpc":"2.0","id":1,"method":"eth_call","params":["x".repeat(2000)]});
    let (s, v) = gw.post(&big).await;
    assert_eq!(s, 413);
    assert_eq!(v["error"]["code"], -32021);
    let batch: Vec<Value> =
        (0..4).map(|i| json!({"jsonrpc":"2.0","id":i,"method":"eth_chainId"})).collect();
    let (s, v) = gw.post(&json!(batch)).await;
    assert_eq!(s, 413);
    assert_eq!(v["error"]["code"], -32014);
    assert!(v["error"]["message"].as_str().unwrap().contains("limit is 3"));
    assert!(gw.upstream.received().is_empty(), "no partial work");
    // A chunked body without Content-Length is limited too.
    let stream = futures::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(vec![b' '; 200])));
    let (s, text) = gw.post_raw(reqwest::Body::wrap_stream(stream)).await;
    assert_eq!(s, 413, "{text}");
}

#[tokio::test]
async fn unreachable_or_slow_upstream_gives_clear_errors() {
    let dead = dead_addr().await;
    let gw = gateway(|c| c.upstream.url = interop_gate::dev::parse_url(&format!("http://{dead}/")))
        .await;
    let (s, v) = gw.post(&json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})).await;
    assert_eq!(s, 200);
    assert_eq!(v["error"]["code"], -32603);
    assert!(v["error"]["message"].as_str().unwrap().contains("upstream unavailable"), "{v}");

    let gw = gateway(|c| c.upstream.timeout_ms = std::time::Duration::from_millis(200)).await;
    gw.upstream.set_delay(Duration::from_secs(5));
    let t = Instant::now();
    let (_, v) = gw.post(&json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})).await;
    assert_eq!(v["error"]["code"], -32603);
    assert!(v["error"]["message"].as_str().unwrap().contains("upstream timeout"), "{v}");
    assert!(t.elapsed() < Duration::from_secs(4), "must not hang on a slow upstream");
}

#[tokio::test]
async fn status_health_ready_and_metrics() {
    let gw = gateway(|_| {}).await;
    let text = gw.client.get(gw.rpc_url()).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("interop-gate"));
    for url in [gw.metrics_url("/healthz"), format!("{}healthz", gw.rpc_url())] {
        assert_eq!(gw.client.get(url).send().await.unwrap().status(), 200);
    }
    let r = gw.client.get(gw.metrics_url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["upstream"], true);

    let (_, _) = gw.post(&json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})).await;
    let (_, _) = gw.post(&json!({"jsonrpc":"2.0","id":1,"method":"nope_nope"})).await;
    let m = gw.client.get(gw.metrics_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(m.contains(r#"interop_gate_rpc_requests_total{listener="ingress",method="eth_chainId",outcome="ok"}"#), "{m}");
    assert!(
        m.contains(r#"method="other",outcome="method_not_found""#),
        "unknown methods share one label: {m}"
    );
    assert!(m.contains("interop_gate_rpc_request_duration_seconds_bucket"));
    assert!(m.contains(r#"interop_gate_external_calls_total{endpoint="upstream",outcome="ok",target="upstream"}"#), "{m}");

    // Upstream gone: not ready.
    gw.upstream_peer.stop();
    wait_status(&gw.metrics_url("/readyz"), 503).await;
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let gw = gateway(|_| {}).await;
    let body = json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId"});
    let r = gw
        .client
        .post(gw.rpc_url())
        .header("x-request-id", "abc-123")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = gw.client.post(gw.rpc_url()).json(&body).send().await.unwrap();
    assert!(!r.headers()["x-request-id"].is_empty());
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let gw = gateway(|_| {}).await;
    gw.upstream.set_delay(Duration::from_millis(600));
    let url = gw.rpc_url();
    let client = gw.client.clone();
    let in_flight = tokio::spawn(async move {
        post_json(&client, &url, &json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.running.shutdown();
    let (s, v) = in_flight.await.unwrap();
    assert_eq!((s, v["result"].clone()), (200, json!("0xa")), "in-flight request completed");
    let addr = gw.rpc_url();
    tokio::time::timeout(Duration::from_secs(5), gw.running.wait())
        .await
        .expect("stops in bounded time");
    let fresh = reqwest::Client::new().post(addr).json(&json!({})).send().await;
    assert!(fresh.is_err(), "no new connections after shutdown");
}
