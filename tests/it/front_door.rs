//! The public front door under abuse, over real sockets against the real service: slow clients,
//! connection floods, idle keep-alive, spoofed X-Forwarded-For, deep JSON, /readyz floods,
//! shutdown with forwarded calls in flight, and the in-flight validation gauge.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHAIN_ID: &str = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#;

fn request(body: &str) -> String {
    format!(
        "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads until the peer closes (or `within` passes); returns what was read and whether the
/// connection was closed by the server.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into(), false),
        }
    }
}

/// Sends `prefix` then `drip` one byte every `every`, while watching for the server to close.
/// Returns (closed by the server before the drip finished, time from connect to close, what the
/// server wrote).
async fn drip(
    addr: SocketAddr,
    prefix: &str,
    drip: &str,
    every: Duration,
) -> (bool, Duration, String) {
    let start = Instant::now();
    let s = TcpStream::connect(addr).await.expect("connect");
    let (mut r, mut w) = s.into_split();
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    return (start.elapsed(), String::from_utf8_lossy(&out).into_owned())
                }
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    });
    let mut finished = w.write_all(prefix.as_bytes()).await.is_ok();
    for b in drip.bytes() {
        if reader.is_finished() {
            finished = false;
            break;
        }
        tokio::time::sleep(every).await;
        if w.write_all(&[b]).await.is_err() {
            finished = false;
            break;
        }
    }
    if finished && reader.is_finished() {
        finished = false;
    }
    let (at, text) =
        tokio::time::timeout(Duration::from_secs(30), reader).await.expect("closed").expect("task");
    (!finished, at, text)
}

async fn chain_id_ok(gw: &Gateway) -> bool {
    let (status, v) = gw.post(&serde_json::from_str(CHAIN_ID).unwrap()).await;
    status == 200 && v["result"] == "0xa"
}

#[tokio::test]
async fn slowloris_headers_are_cut_within_the_timeout_while_a_legit_client_is_served() {
    let gw =
        gateway(|c| c.server.header_read_timeout_ms = std::time::Duration::from_millis(400)).await;
    let addr = gw.running.rpc_addr.unwrap();
    // Headers one byte per 100 ms: finishing them would take 10 s.
    let header = format!("x-slow: {}\r\n\r\n", "a".repeat(90));
    let slow: Vec<_> = (0..20)
        .map(|_| {
            let h = header.clone();
            tokio::spawn(async move {
                drip(addr, "POST / HTTP/1.1\r\nhost: x\r\n", &h, Duration::from_millis(100)).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(chain_id_ok(&gw).await, "a legit client is served during the attack");
    let mut worst = Duration::ZERO;
    for t in slow {
        let (cut, at, _) = t.await.unwrap();
        assert!(cut, "a slowloris connection must be cut before its headers complete");
        worst = worst.max(at);
    }
    println!("slowloris: 20 connections, header timeout 400 ms, last cut after {worst:?}");
    assert!(chain_id_ok(&gw).await);
    let m = reqwest::get(gw.metrics_url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        m.contains(
            r#"interop_gate_connections_cut_total{listener="ingress",reason="header_timeout"}"#
        ),
        "{m}"
    );
}

#[tokio::test]
async fn slow_body_is_cut_with_408_while_a_legit_client_is_served() {
    let gw =
        gateway(|c| c.server.body_read_timeout_ms = std::time::Duration::from_millis(400)).await;
    let addr = gw.running.rpc_addr.unwrap();
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":["slow-{}"]}}"#,
        "a".repeat(60)
    );
    let head = format!(
        "POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let slow: Vec<_> = (0..10)
        .map(|_| {
            let (h, b) = (head.clone(), body.clone());
            tokio::spawn(async move { drip(addr, &h, &b, Duration::from_millis(100)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(chain_id_ok(&gw).await, "a legit client is served during the attack");
    for t in slow {
        let (cut, at, text) = t.await.unwrap();
        assert!(cut, "a slow body must be cut before it completes");
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("request body not received within 400 ms"), "{text}");
        println!("slow body cut after {at:?}");
    }
    let forwarded = gw.upstream.received().iter().filter(|r| r.params.contains("slow-")).count();
    assert_eq!(forwarded, 0, "no slow body reached the upstream");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_and_busy_ones_kept() {
    let gw = gateway(|c| {
        c.server.idle_timeout_ms = std::time::Duration::from_millis(300);
        c.server.header_read_timeout_ms = std::time::Duration::from_millis(5_000);
    })
    .await;
    let mut s = TcpStream::connect(gw.running.rpc_addr.unwrap()).await.unwrap();
    // Requests spaced closer than the idle timeout keep the connection.
    for _ in 0..4 {
        s.write_all(request(CHAIN_ID).as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("0xa"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then silence: closed by the server (well before the 5 s header timeout).
    let t = Instant::now();
    let (rest, closed) = read_until_closed(&mut s, Duration::from_secs(4)).await;
    assert!(closed && rest.is_empty(), "idle keep-alive connection closed: {rest:?}");
    println!("idle keep-alive closed after {:?}", t.elapsed());
}

#[tokio::test]
async fn connection_cap_refuses_new_connections_fast_and_keeps_serving_established_ones() {
    let gw = gateway(|c| {
        c.server.max_connections = 50;
        c.server.header_read_timeout_ms = std::time::Duration::from_millis(60_000);
    })
    .await;
    let addr = gw.running.rpc_addr.unwrap();
    // An established keep-alive client, connected before the flood.
    let mut established = TcpStream::connect(addr).await.unwrap();
    established.write_all(request(CHAIN_ID).as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    assert!(established.read(&mut buf).await.unwrap() > 0);

    let mut flood = Vec::new();
    for _ in 0..200 {
        flood.push(TcpStream::connect(addr).await.expect("the kernel accepts the SYN"));
    }
    // Connections over the cap are answered 503 and closed at once, without sending anything.
    let outcomes = futures::future::join_all(
        flood.iter_mut().map(|s| read_until_closed(s, Duration::from_millis(500))),
    )
    .await;
    let mut refused = 0;
    for (text, closed) in outcomes {
        if closed {
            assert!(text.is_empty() || text.starts_with("HTTP/1.1 503"), "{text}");
            refused += 1;
        }
    }
    assert!(refused >= 150, "at most 50 held, {refused} of 200 refused");

    // The established client is still served.
    established.write_all(request(CHAIN_ID).as_bytes()).await.unwrap();
    let n = established.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("0xa"));
    // A new client is refused promptly (never left hanging) while the flood holds the cap...
    let fresh = reqwest::Client::new();
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        fresh.post(gw.rpc_url()).body(CHAIN_ID).header("content-type", "application/json").send(),
    )
    .await
    .expect("answered or refused, not hanging");
    if let Ok(r) = r {
        assert_eq!(r.status(), 503);
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], -32024);
    }
    // ...and served as soon as the flood goes away.
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = fresh
            .post(gw.rpc_url())
            .body(CHAIN_ID)
            .header("content-type", "application/json")
            .send()
            .await;
        if let Ok(r) = r {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "served again once connections close");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn spoofed_forwarded_for_is_ignored_from_untrusted_peers() {
    let limited = |c: &mut interop_gate::config::Config, trusted: &str| {
        c.ingress.ip_rate = interop_gate::config::RateLimit { per_second: 5, burst: 5 };
        c.server.trusted_proxies = vec![trusted.parse().unwrap()];
        c.server.trusted_proxy_depth = 1;
    };
    let body = serde_json::from_str::<Value>(CHAIN_ID).unwrap();
    // The proxies are in 10/8; this client connects from 127.0.0.1 and lies.
    let gw = gateway(|c| limited(c, "10.0.0.0/8")).await;
    let mut ok = 0;
    for i in 0..100u32 {
        let r = gw
            .client
            .post(gw.rpc_url())
            .header("x-forwarded-for", format!("203.0.{}.{}", i / 250, i % 250 + 1))
            .json(&body)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            ok += 1;
        } else {
            assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], -32016);
        }
    }
    assert!(ok <= 10, "{ok} of 100 passed a 5/s limit with spoofed X-Forwarded-For");

    // From a trusted proxy (127/8 here), the header names the client: each has its own bucket.
    let gw = gateway(|c| limited(c, "127.0.0.0/8")).await;
    for i in 0..20u32 {
        let r = gw
            .client
            .post(gw.rpc_url())
            .header("x-forwarded-for", format!("1.2.3.4, 203.0.113.{}", i + 1))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "client {i} behind the trusted proxy is not limited");
    }
}

#[tokio::test]
async fn deep_json_is_refused_and_never_forwarded() {
    let gw = gateway(|_| {}).await;
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{}1{}]}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (status, text) = gw.post_raw(deep).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((status, v["error"]["code"].as_i64()), (400, Some(-32600)), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("nests deeper than 128 levels"));
    // Brackets inside strings do not count; a legit request still passes.
    let legit = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"eth_call","params":["{}",{{"a":[[1]]}}]}}"#,
        "[".repeat(1000)
    );
    let (status, _) = gw.post_raw(legit).await;
    assert_eq!(status, 200);
    let forwarded: Vec<_> =
        gw.upstream.received().into_iter().filter(|r| r.method == "eth_call").collect();
    assert_eq!(forwarded.len(), 1, "only the legit call reached the upstream");
    assert!(forwarded[0].params.starts_with(r#"["[[["#));
}

#[tokio::test]
async fn readyz_hits_cost_no_backend_calls() {
    // A long interval: only the first probe runs during the test.
    let g = interop_gateway(|c| {
        c.server.readiness_interval_ms = std::time::Duration::from_millis(3_600_000)
    })
    .await;
    let ready = reqwest::get(g.gw.metrics_url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body, json!({"ready": true, "upstream": true, "validation": true}));
    let before = (
        g.gw.upstream.calls(),
        g.supervisor.http_requests(),
        g.chain.calls("eth_getBlockByNumber"),
    );
    let urls = [g.gw.metrics_url("/readyz"), format!("{}readyz", g.gw.rpc_url())];
    let hits = futures::future::join_all((0..200).map(|i| {
        let (c, u) = (g.gw.client.clone(), urls[i % 2].clone());
        async move { c.get(u).send().await.unwrap().status().as_u16() }
    }))
    .await;
    assert!(hits.iter().all(|s| *s == 200));
    let after = (
        g.gw.upstream.calls(),
        g.supervisor.http_requests(),
        g.chain.calls("eth_getBlockByNumber"),
    );
    assert_eq!(before, after, "200 /readyz hits cost 0 backend calls");
}

#[tokio::test]
async fn readiness_follows_the_upstream_going_down_and_coming_back() {
    let gw =
        gateway(|c| c.server.readiness_interval_ms = std::time::Duration::from_millis(100)).await;
    let url = gw.metrics_url("/readyz");
    wait_status(&url, 200).await;
    let addr = gw.upstream_peer.addr;
    gw.upstream_peer.stop();
    let t = Instant::now();
    wait_status(&url, 503).await;
    println!("not ready {:?} after the upstream went down", t.elapsed());
    let v: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert_eq!(v["upstream"], false);
    // The upstream comes back on the same address.
    let _back = interop_gate::dev::spawn_peer("upstream", gw.upstream.clone(), &addr.to_string())
        .await
        .expect("rebind");
    let t = Instant::now();
    wait_status(&url, 200).await;
    println!("ready again {:?} after the upstream came back", t.elapsed());
}

#[tokio::test]
async fn shutdown_with_200_forwarded_calls_in_flight_answers_all_200() {
    // Grace far shorter than the upstream's answer time: the drain must wait for forwarded calls.
    let gw = gateway(|c| {
        c.server.shutdown_grace_ms = std::time::Duration::from_millis(100);
        c.upstream.timeout_ms = std::time::Duration::from_millis(5_000);
    })
    .await;
    gw.upstream.set_delay(Duration::from_millis(1_500));
    let body: Value = serde_json::from_str(CHAIN_ID).unwrap();
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let (c, u, b) = (reqwest::Client::new(), gw.rpc_url(), body.clone());
            tokio::spawn(async move { post_json(&c, &u, &b).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.upstream.calls() < 200 {
        assert!(Instant::now() < deadline, "only {} forwarded", gw.upstream.calls());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.running.shutdown();
    let mut answered = 0;
    for c in calls {
        let (status, v) = c.await.unwrap();
        assert_eq!((status, &v["result"]), (200, &json!("0xa")), "{v}");
        answered += 1;
    }
    assert_eq!(answered, 200);
    tokio::time::timeout(Duration::from_secs(10), gw.running.wait()).await.expect("stops");
}

#[tokio::test]
async fn validation_gauge_returns_to_zero_after_clients_drop_mid_request() {
    let g = interop_gateway(|c| c.supervisor.timeout_ms = std::time::Duration::from_millis(60_000))
        .await;
    g.supervisor.set_delay(Duration::from_secs(30));
    let msgs = g.emit(1, 9);
    let gauge = || async {
        let m = reqwest::get(g.gw.metrics_url("/metrics")).await.unwrap().text().await.unwrap();
        m.lines()
            .find_map(|l| l.strip_prefix("interop_gate_validations_in_flight "))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(-1)
    };
    let clients: Vec<_> = (0..10u64)
        .map(|k| {
            let (raw, _) = g.interop_tx(k + 1, 0, &msgs);
            let (c, u) = (reqwest::Client::new(), g.gw.rpc_url());
            tokio::spawn(async move {
                let body = json!({"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":[raw]});
                c.post(u).json(&body).send().await
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while gauge().await < 10 {
        assert!(Instant::now() < deadline, "validations never reached the backend");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The clients go away mid-validation.
    for c in clients {
        c.abort();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while gauge().await != 0 {
        assert!(Instant::now() < deadline, "gauge stuck at {}", gauge().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
