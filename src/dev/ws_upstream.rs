//! A mock execution client that speaks JSON-RPC over WebSocket as well as HTTP on one port, as
//! anvil, geth and op-geth do: `POST /` is the HTTP JSON-RPC of a [`MockUpstream`], `GET /`
//! upgrades to a WebSocket whose calls are answered by the same mock, plus `eth_subscribe` /
//! `eth_unsubscribe` (`newHeads`). Tests push heads, count open connections and subscriptions,
//! and can drop every connection (an upstream going away).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::upstream::MockUpstream;
use super::{Peer, PEER_LIMITS};
use crate::rpc::server::{encode, parse_request, rpc_router, serve, CallContext, Handler};

struct Client {
    tx: mpsc::Sender<String>,
    subs: Vec<String>,
    kick: CancellationToken,
}

/// The WebSocket side of the mock.
pub struct WsUpstream {
    /// The HTTP mock answering every non-subscription call (and recording them).
    pub mock: Arc<MockUpstream>,
    clients: Mutex<HashMap<u64, Client>>,
    next: AtomicU64,
    open: AtomicUsize,
    accepted: AtomicUsize,
    head: AtomicU64,
}

impl WsUpstream {
    /// Open WebSocket connections.
    pub fn connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// WebSocket connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Open subscriptions over all connections.
    pub fn subscriptions(&self) -> usize {
        self.clients.lock().map(|c| c.values().map(|c| c.subs.len()).sum()).unwrap_or(0)
    }

    /// Sends one `newHeads` notification (with `pad` bytes of extra data) to every subscription;
    /// returns how many were queued.
    pub async fn push_head(&self, pad: usize) -> usize {
        let n = self.head.fetch_add(1, Ordering::SeqCst) + 1;
        let targets: Vec<(mpsc::Sender<String>, String)> = self
            .clients
            .lock()
            .map(|c| {
                c.values().flat_map(|c| c.subs.iter().map(|s| (c.tx.clone(), s.clone()))).collect()
            })
            .unwrap_or_default();
        let mut sent = 0;
        for (tx, sub) in targets {
            let note = json!({
                "jsonrpc": "2.0",
                "method": "eth_subscription",
                "params": { "subscription": sub, "result": {
                    "number": format!("{n:#x}"),
                    "hash": format!("{:#066x}", n),
                    "extraData": format!("0x{}", "ab".repeat(pad)),
                }},
            });
            if tx.send(note.to_string()).await.is_ok() {
                sent += 1;
            }
        }
        sent
    }

    /// Closes every WebSocket connection (the upstream restarting).
    pub fn drop_all(&self) {
        if let Ok(c) = self.clients.lock() {
            for c in c.values() {
                c.kick.cancel();
            }
        }
    }

    fn answer_subscription(&self, id: u64, call: &crate::rpc::types::Call) -> Option<Value> {
        let params: Vec<Value> = call.parse_params().unwrap_or_default();
        let mut clients = self.clients.lock().ok()?;
        let client = clients.get_mut(&id)?;
        match call.method.as_str() {
            "eth_subscribe" => {
                let sub = format!("{:#x}", 0xabc000 + self.next.fetch_add(1, Ordering::SeqCst));
                client.subs.push(sub.clone());
                Some(json!(sub))
            }
            "eth_unsubscribe" => {
                let target = params.first().and_then(Value::as_str).unwrap_or_default();
                let before = client.subs.len();
                client.subs.retain(|s| s != target);
                Some(json!(client.subs.len() < before))
            }
            _ => None,
        }
    }
}

/// Starts the mock on `127.0.0.1:0`: HTTP and WebSocket on one port.
pub async fn spawn_ws_upstream(
    mock: Arc<MockUpstream>,
) -> std::io::Result<(Arc<WsUpstream>, Peer)> {
    let ws = Arc::new(WsUpstream {
        mock: mock.clone(),
        clients: Mutex::new(HashMap::new()),
        next: AtomicU64::new(1),
        open: AtomicUsize::new(0),
        accepted: AtomicUsize::new(0),
        head: AtomicU64::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let router =
        rpc_router("upstream", mock, PEER_LIMITS).route("/", get(upgrade).with_state(ws.clone()));
    let token = stop.clone();
    tokio::spawn(async move {
        let _ = serve(listener, router, token, std::time::Duration::from_secs(1)).await;
    });
    Ok((ws, Peer { addr, stop }))
}

async fn upgrade(
    State(ws): State<Arc<WsUpstream>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    up: WebSocketUpgrade,
) -> Response {
    up.max_message_size(64 << 20).on_upgrade(move |socket| serve_ws(ws, socket, peer))
}

async fn serve_ws(ws: Arc<WsUpstream>, socket: WebSocket, peer: SocketAddr) {
    let id = ws.next.fetch_add(1, Ordering::SeqCst);
    let (tx, mut rx) = mpsc::channel::<String>(1024);
    let kick = CancellationToken::new();
    if let Ok(mut c) = ws.clients.lock() {
        c.insert(id, Client { tx: tx.clone(), subs: Vec::new(), kick: kick.clone() });
    }
    ws.open.fetch_add(1, Ordering::SeqCst);
    ws.accepted.fetch_add(1, Ordering::SeqCst);
    let ctx = CallContext {
        client_ip: peer.ip(),
        request_id: "ws".into(),
        in_batch: false,
        api_key: None,
    };
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            _ = kick.cancelled() => break,
            m = rx.recv() => match m {
                Some(t) => if sink.send(Message::Text(t.into())).await.is_err() { break },
                None => break,
            },
            m = stream.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let Ok(raw) = serde_json::from_str::<Box<serde_json::value::RawValue>>(&t) else { continue };
                    let parsed = parse_request(&raw);
                    let Ok(call) = parsed.call else { continue };
                    let answer = match ws.answer_subscription(id, &call) {
                        Some(v) => Ok(crate::rpc::types::to_raw(&v)),
                        None => ws.mock.call(&ctx, call).await,
                    };
                    let text = encode(&parsed.reply_id, answer.as_deref()).0;
                    if sink.send(Message::Text(text.into())).await.is_err() { break }
                }
                Some(Ok(_)) => {}
                _ => break,
            },
        }
    }
    if let Ok(mut c) = ws.clients.lock() {
        c.remove(&id);
    }
    ws.open.fetch_sub(1, Ordering::SeqCst);
}
