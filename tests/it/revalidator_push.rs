//! The invalid feed pushed over WebSocket, with a real tokio-tungstenite client against the
//! revalidator's listener: every entry once, resumption by cursor after a disconnect, a slow
//! subscriber cut and resumed, unsubscribe, plain calls over the socket, and refusals.

use crate::revalidator_support;

use std::collections::HashSet;
use std::time::Duration;

use alloy_primitives::{Address, B256};
use futures::{SinkExt, StreamExt};
use interop_gate::dev::el_pool::{generate_pool, MockTx};
use interop_gate::revalidator::pool::Fees;
use interop_gate::revalidator::PassKind;
use revalidator_support::{harness, msg, Harness};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(h: &Harness) -> Ws {
    let url = format!("ws://{}/", h.reval.addr);
    tokio_tungstenite::connect_async(url).await.expect("ws connects").0
}

async fn send(ws: &mut Ws, id: u64, method: &str, params: Value) {
    let v = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    ws.send(Message::text(v.to_string())).await.expect("sent");
}

/// The next text message as JSON (pings skipped), within a generous bound.
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message in time")
            .expect("connection open")
            .expect("no error");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON"),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => continue,
        }
    }
}

/// Subscribes; returns the id and the first page (sent at once, with the starting cursor).
async fn subscribe(ws: &mut Ws, opts: Value) -> (String, Value) {
    send(ws, 1, "interop_subscribe", json!(["invalidTransactions", opts])).await;
    let v = recv(ws).await;
    assert_eq!(v["id"], 1, "{v}");
    let sub = v["result"].as_str().expect("a subscription id").to_owned();
    let first = page(ws, &sub).await;
    (sub, first)
}

/// The next notification's page (asserting it is for `sub`).
async fn page(ws: &mut Ws, sub: &str) -> Value {
    let v = recv(ws).await;
    assert_eq!(v["method"], "interop_subscription", "{v}");
    assert_eq!(v["params"]["subscription"], sub);
    v["params"]["result"].clone()
}

fn hashes(page: &Value) -> Vec<B256> {
    page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["hash"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn subscribers_get_each_invalid_tx_once_and_resume_by_cursor_without_loss_or_repeat() {
    let h = harness(|_| {}).await;
    let pool = generate_pool(20, 5, 1, |i| vec![msg(i)]);
    h.el.insert(pool.clone());
    h.reval.core.run_pass(PassKind::Full).await.unwrap();
    let start =
        h.rpc("interop_invalidTransactions", json!([null])).await.unwrap()["cursor"].clone();

    let mut ws = connect(&h).await;
    let (sub, empty) = subscribe(&mut ws, json!({})).await;
    assert_eq!((empty["cursor"].clone(), empty["entries"].clone()), (start.clone(), json!([])));
    for i in [3, 7, 11] {
        h.backend.mark_invalid(&msg(i));
    }
    h.reval.core.run_pass(PassKind::Full).await.unwrap();
    let first = page(&mut ws, &sub).await;
    // Exactly what the cursor feed serves from the same cursor, fields and cursor included.
    let polled = h.rpc("interop_invalidTransactions", json!([start])).await.unwrap();
    assert_eq!(first["entries"], polled["entries"]);
    assert_eq!(first["cursor"], polled["cursor"]);
    assert_eq!(first["truncated"], false);
    let e = &first["entries"][0];
    assert_eq!(e["code"], -320600);
    assert!(e["detectedAt"].as_u64().unwrap() > 1_600_000_000);
    let mut seen: Vec<B256> = hashes(&first);
    let mut cursor = first["cursor"].clone();

    // Disconnected while two more are published: resuming from the cursor brings exactly them.
    drop(ws);
    for i in [20, 40] {
        h.backend.mark_invalid(&msg(i));
    }
    h.reval.core.run_pass(PassKind::Full).await.unwrap();
    let mut ws = connect(&h).await;
    let (sub, caught_up) = subscribe(&mut ws, json!({ "fromCursor": cursor })).await;
    assert_eq!(caught_up["entries"].as_array().unwrap().len(), 2);
    seen.extend(hashes(&caught_up));
    cursor = caught_up["cursor"].clone();
    // Then live.
    h.backend.mark_invalid(&msg(60));
    h.reval.core.run_pass(PassKind::Full).await.unwrap();
    let live = page(&mut ws, &sub).await;
    seen.extend(hashes(&live));
    let want: HashSet<B256> = [3, 7, 11, 20, 40, 60].iter().map(|i| pool[*i].hash).collect();
    assert_eq!(seen.len(), want.len(), "no repeats");
    assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), want, "no loss");
    assert_ne!(live["cursor"], cursor);

    // A cursor this process never issued: everything kept, flagged truncated.
    let mut ws2 = connect(&h).await;
    let (sub2, all) = subscribe(&mut ws2, json!({ "fromCursor": "0x1" })).await;
    assert_eq!(all["truncated"], true);
    assert_eq!(all["entries"].as_array().unwrap().len(), 6);

    // Unsubscribed: nothing more is pushed; plain calls are answered on the same socket.
    send(&mut ws, 2, "interop_unsubscribe", json!([sub])).await;
    assert_eq!(recv(&mut ws).await["result"], true);
    send(&mut ws, 3, "interop_unsubscribe", json!([sub])).await;
    assert_eq!(recv(&mut ws).await["result"], false);
    h.backend.mark_invalid(&msg(80));
    h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!(
        hashes(&page(&mut ws2, &sub2).await),
        vec![pool[80].hash],
        "the other still gets it"
    );
    send(&mut ws, 4, "interop_transactionStatus", json!([pool[80].hash])).await;
    let v = recv(&mut ws).await;
    assert_eq!(
        (v["id"].clone(), v["result"]["status"].clone()),
        (json!(4), json!("invalid")),
        "{v}"
    );
}

#[tokio::test]
async fn bad_subscriptions_batches_and_connections_over_the_cap_are_refused() {
    let h = harness(|c| c.push_max_connections = 1).await;
    let mut ws = connect(&h).await;
    send(&mut ws, 1, "interop_subscribe", json!(["newHeads"])).await;
    assert_eq!(recv(&mut ws).await["error"]["code"], -32602);
    send(&mut ws, 2, "interop_subscribe", json!(["invalidTransactions", {"fromCursor": "zz"}]))
        .await;
    assert_eq!(recv(&mut ws).await["error"]["code"], -32602);
    send(&mut ws, 3, "interop_subscribe", json!(["invalidTransactions", {"from": 1}])).await;
    assert_eq!(recv(&mut ws).await["error"]["code"], -32602);
    ws.send(Message::text(r#"[{"jsonrpc":"2.0","id":1,"method":"interop_revalidationStatus"}]"#))
        .await
        .unwrap();
    assert_eq!(recv(&mut ws).await["error"]["code"], -32600);
    for _ in 0..interop_gate::revalidator::push::MAX_SUBSCRIPTIONS {
        subscribe(&mut ws, json!(null)).await;
    }
    send(&mut ws, 5, "interop_subscribe", json!(["invalidTransactions"])).await;
    assert_eq!(recv(&mut ws).await["error"]["code"], -32024);
    // One connection is the cap: the next upgrade is refused with HTTP 503.
    let url = format!("ws://{}/", h.reval.addr);
    let err = tokio_tungstenite::connect_async(url).await.expect_err("refused");
    assert!(err.to_string().contains("503"), "{err}");
    // HTTP JSON-RPC on the same listener is unaffected.
    assert!(h.rpc("interop_revalidationStatus", json!([])).await.is_ok());
}

/// `interop_gate_revalidator_push_closed_total{reason="slow_client"}`.
fn slow_closes() -> u64 {
    let text = interop_gate::metrics::metrics().render();
    text.lines()
        .find(|l| {
            l.starts_with("interop_gate_revalidator_push_closed_total{reason=\"slow_client\"}")
        })
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_is_cut_and_resumes_by_cursor_losing_nothing() {
    let h = harness(|c| {
        c.push_send_queue = 2;
        c.feed_capacity = 200_000;
        c.max_tracked = 200_000;
        c.max_pool_txs = 200_000;
    })
    .await;
    h.reval.core.run_pass(PassKind::Full).await.unwrap();
    let mut ws = connect(&h).await;
    let (_, first) = subscribe(&mut ws, json!({})).await;
    let before = slow_closes();
    // The client reads nothing while batches of invalid txs are published, until it is cut.
    let mut published = Vec::new();
    let mut round = 0u64;
    while slow_closes() == before {
        assert!(round < 40, "never cut: the server buffers for a client that does not read");
        let txs: Vec<MockTx> = (0..4_000u64)
            .map(|n| {
                let i = (round * 4_000 + n) as usize + 1_000;
                h.backend.mark_invalid(&msg(i));
                let mut a = [0u8; 20];
                a[..8].copy_from_slice(&round.to_be_bytes());
                a[8..16].copy_from_slice(&n.to_be_bytes());
                let fees = Fees::Dynamic { max_fee: 2_000, max_priority_fee: 1 };
                MockTx::new(Address::from(a), 0, 50_000, fees, &[msg(i)])
            })
            .collect();
        published.extend(txs.iter().map(|t| t.hash));
        h.el.insert(txs);
        h.reval.core.run_pass(PassKind::Full).await.unwrap();
        round += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What reached the client before the cut, up to the last whole page.
    let mut seen: Vec<B256> = Vec::new();
    let mut cursor = first["cursor"].clone();
    let mut close_code = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("ends") {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                seen.extend(hashes(&v["params"]["result"]));
                cursor = v["params"]["result"]["cursor"].clone();
            }
            Some(Ok(Message::Close(c))) => {
                close_code = c.map(|c| (u16::from(c.code), c.reason.to_string()));
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    if let Some((code, reason)) = &close_code {
        assert_eq!(*code, 1008, "{reason}");
        assert!(reason.contains("fromCursor"), "{reason}");
    }
    assert!(seen.len() < published.len(), "cut before everything was delivered");
    // Resume from the last cursor: the rest, nothing twice.
    let mut ws = connect(&h).await;
    let (sub, mut p) = subscribe(&mut ws, json!({ "fromCursor": cursor })).await;
    loop {
        assert_eq!(p["truncated"], false);
        seen.extend(hashes(&p));
        if seen.len() >= published.len() {
            break;
        }
        p = page(&mut ws, &sub).await;
    }
    assert_eq!(seen.len(), published.len(), "no repeats");
    assert_eq!(
        seen.into_iter().collect::<HashSet<_>>(),
        published.into_iter().collect::<HashSet<_>>(),
        "no loss"
    );
}
