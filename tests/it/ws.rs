//! JSON-RPC over WebSocket on the ingress listener, end to end: the real app, a real WebSocket
//! client (tokio-tungstenite) and an in-process upstream that speaks JSON-RPC over WebSocket and
//! HTTP on one port (as anvil and geth do), with `newHeads` subscriptions.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use interop_gate::app::{start, Running};
use interop_gate::config::Config;
use interop_gate::dev::upstream::MockUpstream;
use interop_gate::dev::ws_upstream::{spawn_ws_upstream, WsUpstream};
use interop_gate::dev::Peer;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct WsGateway {
    running: Running,
    up: Arc<WsUpstream>,
    _up_peer: Peer,
}

impl WsGateway {
    fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.running.rpc_addr.expect("ingress"))
    }

    async fn connect(&self) -> Ws {
        tokio_tungstenite::connect_async(self.ws_url("/")).await.expect("ws connects").0
    }

    async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.running.metrics_addr.expect("metrics"));
        reqwest::get(url).await.expect("metrics").text().await.expect("body")
    }
}

async fn ws_gateway(tweak: impl FnOnce(&mut Config)) -> WsGateway {
    let (up, up_peer) = spawn_ws_upstream(Arc::new(MockUpstream::new())).await.expect("upstream");
    let mut cfg = loopback_config();
    cfg.upstream.url = interop_gate::dev::parse_url(&up_peer.url());
    tweak(&mut cfg);
    cfg.validate().expect("valid test config");
    let running = start(cfg, CancellationToken::new()).await.expect("service starts");
    WsGateway { running, up, _up_peer: up_peer }
}

/// Sends a JSON value as a text frame.
async fn send(ws: &mut Ws, v: &Value) {
    ws.send(Message::text(v.to_string())).await.expect("sent");
}

/// The next text message as JSON (skipping pings), within a generous bound.
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer in time")
            .expect("connection open")
            .expect("no error");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON"),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => continue,
        }
    }
}

/// Reads until the server closes; returns the close frame's code, if one came.
async fn closed(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(c))) => return c.map(|c| c.code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// Polls `f` until it holds (bounded); the condition is what is asserted, not the time.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

fn call(id: Value, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

#[tokio::test]
async fn calls_are_proxied_to_the_upstream_websocket_with_client_ids_kept() {
    let g = ws_gateway(|_| {}).await;
    let mut ws = g.connect().await;
    send(&mut ws, &call(json!("abc"), "eth_blockNumber", json!([]))).await;
    assert_eq!(recv(&mut ws).await, json!({"jsonrpc":"2.0","result":"0x1","id":"abc"}));
    send(
        &mut ws,
        &json!([
            call(json!(7), "eth_chainId", json!([])),
            call(json!(8), "eth_getBalance", json!(["0x00", "latest"]))
        ]),
    )
    .await;
    let v = recv(&mut ws).await;
    let answers = v.as_array().expect("a batch answer");
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0], json!({"jsonrpc":"2.0","result":"0xa","id":7}));
    assert_eq!(answers[1]["id"], 8);
    assert_eq!(answers[1]["result"]["params"], json!(["0x00", "latest"]), "params verbatim");
    // The calls went over the upstream's WebSocket: one connection for this client.
    assert_eq!(g.up.accepted(), 1);
    assert_eq!(g.up.mock.received().len(), 3);

    // The gateway's own checks answer without the upstream.
    send(&mut ws, &call(json!(9), "debug_traceTransaction", json!([]))).await;
    assert_eq!(recv(&mut ws).await["error"]["code"], -32601);
    send(&mut ws, &json!({"id": 10, "method": "eth_chainId"})).await;
    assert_eq!(recv(&mut ws).await["error"]["code"], -32600, "jsonrpc member missing");
    ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(recv(&mut ws).await["error"]["code"], -32700);
    send(&mut ws, &json!([])).await;
    assert_eq!(recv(&mut ws).await["error"]["code"], -32600, "empty batch");
    assert_eq!(g.up.mock.received().len(), 3);

    // A second path serves the same.
    let (mut ws2, _) = tokio_tungstenite::connect_async(g.ws_url("/ws")).await.unwrap();
    send(&mut ws2, &call(json!(1), "eth_chainId", json!([]))).await;
    assert_eq!(recv(&mut ws2).await["result"], "0xa");
}

#[tokio::test]
async fn new_heads_are_relayed_and_the_upstream_subscription_ends_with_the_client() {
    let g = ws_gateway(|_| {}).await;
    let mut ws = g.connect().await;
    send(&mut ws, &call(json!(1), "eth_subscribe", json!(["newHeads"]))).await;
    let sub = recv(&mut ws).await["result"].as_str().expect("a subscription id").to_owned();
    assert_eq!(g.up.subscriptions(), 1);
    for _ in 0..3 {
        assert_eq!(g.up.push_head(0).await, 1);
        let n = recv(&mut ws).await;
        assert_eq!(n["method"], "eth_subscription");
        assert_eq!(n["params"]["subscription"], json!(sub), "the id the client was given");
    }
    // A second client gets only its own notifications.
    let mut other = g.connect().await;
    send(&mut other, &call(json!(1), "eth_chainId", json!([]))).await;
    recv(&mut other).await;

    // Unsubscribe, subscribe again, then leave: the upstream connection and its subscription go.
    send(&mut ws, &call(json!(2), "eth_unsubscribe", json!([sub]))).await;
    assert_eq!(recv(&mut ws).await["result"], true);
    assert_eq!(g.up.subscriptions(), 0);
    send(&mut ws, &call(json!(3), "eth_subscribe", json!(["newHeads"]))).await;
    recv(&mut ws).await;
    assert_eq!(g.up.subscriptions(), 1);
    assert_eq!(g.up.connections(), 2);
    drop(ws);
    eventually("the client's upstream connection closed", || g.up.connections() == 1).await;
    assert_eq!(g.up.subscriptions(), 0);

    // Subscription kinds not configured are refused.
    send(&mut other, &call(json!(4), "eth_subscribe", json!(["somethingElse"]))).await;
    assert_eq!(recv(&mut other).await["error"]["code"], -32602);
}

#[tokio::test]
async fn too_many_subscriptions_are_refused_until_one_is_closed() {
    let g = ws_gateway(|c| c.websocket.max_subscriptions = 2).await;
    let mut ws = g.connect().await;
    let mut subs = Vec::new();
    for i in 0..2 {
        send(&mut ws, &call(json!(i), "eth_subscribe", json!(["newHeads"]))).await;
        subs.push(recv(&mut ws).await["result"].as_str().unwrap().to_owned());
    }
    send(&mut ws, &call(json!(3), "eth_subscribe", json!(["newHeads"]))).await;
    let v = recv(&mut ws).await;
    assert_eq!(v["error"]["code"], -32024, "{v}");
    assert_eq!(g.up.subscriptions(), 2, "the refused one never reached the upstream");
    send(&mut ws, &call(json!(4), "eth_unsubscribe", json!([subs[0]]))).await;
    assert_eq!(recv(&mut ws).await["result"], true);
    send(&mut ws, &call(json!(5), "eth_subscribe", json!(["newHeads"]))).await;
    assert!(recv(&mut ws).await["result"].is_string());
}

#[tokio::test]
async fn an_oversize_message_closes_the_connection_with_1009() {
    let g = ws_gateway(|c| c.websocket.max_message_bytes = 1024).await;
    let mut ws = g.connect().await;
    send(&mut ws, &call(json!(1), "eth_chainId", json!(["x".repeat(900)]))).await;
    assert!(recv(&mut ws).await.get("result").is_some(), "under the limit is served");
    send(&mut ws, &call(json!(2), "eth_chainId", json!(["x".repeat(4096)]))).await;
    assert_eq!(closed(&mut ws).await, Some(CloseCode::Size));
    assert!(g.metrics().await.contains("interop_gate_ws_closed_total{reason=\"too_large\"}"));
}

#[tokio::test]
async fn a_flood_hits_the_same_per_ip_limit_as_http() {
    let g = ws_gateway(|c| {
        c.ingress.ip_rate = interop_gate::config::RateLimit { per_second: 1, burst: 3 };
    })
    .await;
    let mut ws = g.connect().await;
    for i in 0..10 {
        send(&mut ws, &call(json!(i), "eth_chainId", json!([]))).await;
    }
    let mut limited = 0;
    let mut ids = Vec::new();
    for _ in 0..10 {
        let v = recv(&mut ws).await;
        ids.push(v["id"].as_i64().unwrap());
        if v["error"]["code"] == -32016 {
            limited += 1;
        }
    }
    ids.sort();
    assert_eq!(ids, (0..10).collect::<Vec<_>>(), "every message answered, ids kept");
    assert!(limited >= 1, "the burst of 3 is exceeded");
    // The bucket is the client IP's, shared with HTTP.
    let http = reqwest::Client::new();
    let url = format!("http://{}/", g.running.rpc_addr.unwrap());
    let (status, v) = post_json(&http, &url, &call(json!(1), "eth_chainId", json!([]))).await;
    assert_eq!((status, v["error"]["code"].as_i64()), (429, Some(-32016)), "{v}");
}

#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected_not_buffered_for() {
    let g = ws_gateway(|c| c.websocket.send_queue = 4).await;
    let mut ws = g.connect().await;
    send(&mut ws, &call(json!(1), "eth_subscribe", json!(["newHeads"]))).await;
    recv(&mut ws).await;
    // From now on the client reads nothing; the upstream publishes 64 KiB heads.
    let mut pushed = 0;
    while g.up.connections() > 0 && pushed < 5_000 {
        g.up.push_head(32 * 1024).await;
        pushed += 1;
        tokio::task::yield_now().await;
    }
    eventually("the gateway dropped the slow client and its upstream link", || {
        g.up.connections() == 0
    })
    .await;
    assert!(pushed < 5_000, "disconnected after {pushed} notifications, not buffered");
    let m = g.metrics().await;
    assert!(!m.contains("interop_gate_ws_closed_total{reason=\"slow_client\"} 0"), "{m}");
}

#[tokio::test]
async fn an_idle_connection_is_closed_but_a_subscribed_one_is_kept() {
    let g =
        ws_gateway(|c| c.websocket.idle_timeout_ms = std::time::Duration::from_millis(300)).await;
    let mut idle = g.connect().await;
    let mut subscribed = g.connect().await;
    send(&mut subscribed, &call(json!(1), "eth_subscribe", json!(["newHeads"]))).await;
    recv(&mut subscribed).await;
    assert_eq!(closed(&mut idle).await, Some(CloseCode::Normal));
    // The subscribed client outlived the idle one's timeout and still gets heads.
    g.up.push_head(0).await;
    assert_eq!(recv(&mut subscribed).await["method"], "eth_subscription");
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_at_the_upgrade() {
    let g = ws_gateway(|c| c.websocket.max_connections = 1).await;
    let mut first = g.connect().await;
    let err = tokio_tungstenite::connect_async(g.ws_url("/")).await.expect_err("refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(r) => assert_eq!(r.status(), 503),
        e => panic!("expected HTTP 503, got {e}"),
    }
    send(&mut first, &call(json!(1), "eth_chainId", json!([]))).await;
    assert_eq!(recv(&mut first).await["result"], "0xa");
    drop(first);
    // The slot is given back when the connection goes.
    let mut again = None;
    for _ in 0..100 {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(g.ws_url("/")).await {
            again = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a new connection is accepted after the first closed");
}

#[tokio::test]
async fn upstream_websocket_down_gives_clear_errors_then_reconnects() {
    let dead = dead_addr().await;
    let g = ws_gateway(|c| {
        c.upstream.ws_url = Some(interop_gate::dev::parse_url(&format!("ws://{dead}/")));
        c.websocket.reconnect_backoff_ms = std::time::Duration::from_millis(60_000);
    })
    .await;
    let mut ws = g.connect().await;
    send(&mut ws, &call(json!(1), "eth_blockNumber", json!([]))).await;
    let v = recv(&mut ws).await;
    assert_eq!(v["error"]["code"], -32603, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("upstream websocket unavailable"), "{msg}");
    // Within the backoff, calls fail fast without a new attempt.
    send(&mut ws, &call(json!(2), "eth_blockNumber", json!([]))).await;
    let msg = recv(&mut ws).await["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("next attempt in"), "{msg}");

    // A live upstream that drops its connections: plain calls reconnect, subscribers are told.
    let g = ws_gateway(|_| {}).await;
    let mut plain = g.connect().await;
    let mut subscriber = g.connect().await;
    send(&mut plain, &call(json!(1), "eth_blockNumber", json!([]))).await;
    assert_eq!(recv(&mut plain).await["result"], "0x1");
    send(&mut subscriber, &call(json!(1), "eth_subscribe", json!(["newHeads"]))).await;
    recv(&mut subscriber).await;
    g.up.drop_all();
    assert_eq!(closed(&mut subscriber).await, Some(CloseCode::Again), "resubscribe elsewhere");
    let mut answered = None;
    for i in 0..50 {
        send(&mut plain, &call(json!(i), "eth_blockNumber", json!([]))).await;
        let v = recv(&mut plain).await;
        if v.get("result").is_some() {
            answered = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered.is_some(), "a later call reconnected");
    assert_eq!(g.up.accepted(), 3, "two first connections and one reconnection");
}

#[tokio::test]
async fn calls_in_flight_per_connection_are_bounded() {
    let g = ws_gateway(|c| c.websocket.max_in_flight = 2).await;
    g.up.mock.set_delay(Duration::from_millis(300));
    let mut ws = g.connect().await;
    for i in 0..3 {
        send(&mut ws, &call(json!(i), "eth_blockNumber", json!([]))).await;
    }
    // The third is refused at once, before the two slow ones are answered.
    let first = recv(&mut ws).await;
    assert_eq!(first["error"]["code"], -32024, "{first}");
    assert_eq!(first["id"], 2, "answered under its own id");
    let mut ids: Vec<i64> = Vec::new();
    for _ in 0..2 {
        ids.push(recv(&mut ws).await["id"].as_i64().unwrap());
    }
    ids.sort();
    assert_eq!(ids, vec![0, 1]);
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed() {
    let g =
        ws_gateway(|c| c.websocket.ping_interval_ms = std::time::Duration::from_millis(100)).await;
    let mut ws = g.connect().await;
    send(&mut ws, &call(json!(1), "eth_subscribe", json!(["newHeads"]))).await;
    recv(&mut ws).await;
    assert_eq!(g.up.connections(), 1);
    // The client stops reading, so it never answers a ping: it is cut, its upstream link too.
    eventually("the silent client and its upstream link are closed", || g.up.connections() == 0)
        .await;
    drop(ws);
}

#[tokio::test]
async fn an_api_key_sent_at_the_upgrade_gets_its_tier_limit_instead_of_the_ip_limit() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let g = ws_gateway(|c| {
        c.ingress.ip_rate = interop_gate::config::RateLimit { per_second: 1, burst: 2 };
        c.ingress.api_tiers.insert(
            "unlimited".into(),
            interop_gate::config::RateLimit { per_second: 0, burst: 0 },
        );
        c.ingress.api_keys.insert("ws-key-0123456789abcdef".into(), "unlimited".into());
    })
    .await;
    let mut req = g.ws_url("/").into_client_request().expect("request");
    req.headers_mut().insert("x-api-key", "ws-key-0123456789abcdef".parse().expect("header"));
    let (mut keyed, _) = tokio_tungstenite::connect_async(req).await.expect("ws connects");
    for i in 0..6 {
        send(&mut keyed, &call(json!(i), "eth_chainId", json!([]))).await;
        let v = recv(&mut keyed).await;
        assert_eq!(v["result"], "0xa", "keyed call {i} is not IP-limited: {v}");
    }
    // The same IP without a key has the anonymous per-IP burst of 2.
    let mut anonymous = g.connect().await;
    let mut limited = 0;
    for i in 0..6 {
        send(&mut anonymous, &call(json!(i), "eth_chainId", json!([]))).await;
        if recv(&mut anonymous).await["error"]["code"] == -32016 {
            limited += 1;
        }
    }
    assert!(limited >= 1, "the anonymous client hits the per-IP limit");
}

#[tokio::test]
async fn a_message_nested_deeper_than_the_bound_is_refused_before_the_upstream() {
    let g = ws_gateway(|c| c.server.max_json_depth = 8).await;
    let mut ws = g.connect().await;
    let mut deep = json!(1);
    for _ in 0..20 {
        deep = json!([deep]);
    }
    send(&mut ws, &call(json!(1), "eth_call", deep)).await;
    let v = recv(&mut ws).await;
    assert_eq!(v["error"]["code"], -32600, "{v}");
    assert_eq!(g.up.mock.received().len(), 0, "nothing reached the upstream");
    // The connection keeps serving.
    send(&mut ws, &call(json!(2), "eth_chainId", json!([]))).await;
    assert_eq!(recv(&mut ws).await["result"], "0xa");
}
