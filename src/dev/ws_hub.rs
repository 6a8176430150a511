//! WebSocket JSON-RPC with `eth_subscribe` for the in-process peers: one serve loop and one
//! subscription registry, shared by the simulated EL pool ([`super::el_pool`]), the simulated
//! chain ([`super::chain`]) and the mock upstream ([`super::ws_upstream`]), so each of them only
//! says which subscriptions it serves and what it announces.
//!
//! A peer serves HTTP JSON-RPC (`POST /`) and this (`GET /` upgrades) on one port, as geth,
//! op-geth, op-reth and anvil do. Calls other than `eth_subscribe` / `eth_unsubscribe` are
//! answered by the peer's HTTP [`Handler`]. Notifications are queued per connection (bounded: a
//! full queue drops the notification for that connection, as a node drops a slow subscriber's).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::{get, MethodRouter};
use futures::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::rpc::server::{encode, parse_request, CallContext, Handler};
use crate::rpc::types::{to_raw, Call, RpcError};

/// The largest frame a peer accepts from its client.
const MAX_FRAME: usize = 64 << 20;

struct Client {
    tx: mpsc::Sender<WsMessage>,
    /// (subscription id, kind).
    subs: Vec<(String, String)>,
    kick: CancellationToken,
}

/// The open connections of one peer and their subscriptions.
pub struct WsHub {
    clients: Mutex<HashMap<u64, Client>>,
    next: AtomicU64,
    open: AtomicUsize,
    accepted: AtomicUsize,
    sub_base: u64,
    queue: usize,
}

impl Default for WsHub {
    /// What the simulated ELs use: room for a burst of 64k notifications per connection.
    fn default() -> Self {
        Self::new(0x5b000, 65_536)
    }
}

impl WsHub {
    /// A hub whose subscription ids count from `sub_base` (hex) and whose connections queue at
    /// most `queue` frames.
    pub fn new(sub_base: u64, queue: usize) -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            sub_base,
            queue,
        }
    }

    fn clients(&self) -> MutexGuard<'_, HashMap<u64, Client>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Open subscriptions over all connections.
    pub fn subscriptions(&self) -> usize {
        self.clients().values().map(|c| c.subs.len()).sum()
    }

    /// True when some connection subscribed to `kind` (announcing costs nothing otherwise).
    pub fn has_subscribers(&self, kind: &str) -> bool {
        self.clients().values().any(|c| c.subs.iter().any(|(_, k)| k == kind))
    }

    /// The targets of a notification: every subscription of `kind` (`None`: every one).
    fn targets(&self, kind: Option<&str>) -> Vec<(mpsc::Sender<WsMessage>, String)> {
        self.clients()
            .values()
            .flat_map(|c| {
                c.subs
                    .iter()
                    .filter(|(_, k)| kind.is_none_or(|want| k == want))
                    .map(|(id, _)| (c.tx.clone(), id.clone()))
            })
            .collect()
    }

    /// Queues `result` to every subscription of `kind` without waiting (a full connection
    /// queue drops it); returns how many were queued.
    pub fn notify(&self, kind: &str, result: &Value) -> usize {
        self.targets(Some(kind))
            .into_iter()
            .filter(|(tx, id)| tx.try_send(note(id, result)).is_ok())
            .count()
    }

    /// Sends `result` to every subscription whatever its kind, waiting for room in each
    /// connection's queue (tests of a slow reader); returns how many were queued.
    pub async fn notify_all_wait(&self, result: &Value) -> usize {
        let mut sent = 0;
        for (tx, id) in self.targets(None) {
            if tx.send(note(&id, result)).await.is_ok() {
                sent += 1;
            }
        }
        sent
    }

    /// Sends `frame` as is to every connection.
    pub fn send_all(&self, frame: WsMessage) {
        for c in self.clients().values() {
            let _ = c.tx.try_send(frame.clone());
        }
    }

    /// Closes every connection (the peer restarting).
    pub fn drop_all(&self) {
        for c in self.clients().values() {
            c.kick.cancel();
        }
    }

    /// Answers `eth_subscribe` (with the kind `accept` gives the params, or its error) and
    /// `eth_unsubscribe`; `None` for any other method.
    fn subscription(
        &self,
        client: u64,
        call: &Call,
        accept: impl FnOnce(&[Value]) -> Result<String, RpcError>,
    ) -> Option<Result<Value, RpcError>> {
        let params: Vec<Value> = call.parse_params().unwrap_or_default();
        match call.method.as_str() {
            "eth_subscribe" => Some(accept(&params).map(|kind| {
                let id = format!("{:#x}", self.sub_base + self.next.fetch_add(1, Ordering::SeqCst));
                if let Some(c) = self.clients().get_mut(&client) {
                    c.subs.push((id.clone(), kind));
                }
                json!(id)
            })),
            "eth_unsubscribe" => {
                let target = params.first().and_then(Value::as_str).unwrap_or_default();
                let removed = self.clients().get_mut(&client).is_some_and(|c| {
                    let before = c.subs.len();
                    c.subs.retain(|(s, _)| s != target);
                    c.subs.len() < before
                });
                Some(Ok(json!(removed)))
            }
            _ => None,
        }
    }
}

fn note(subscription: &str, result: &Value) -> WsMessage {
    let note = json!({"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": subscription, "result": result}});
    WsMessage::Text(note.to_string().into())
}

/// The subscriptions an EL serves the revalidator: `newPendingTransactions` and `newHeads`.
pub fn el_subscription(params: &[Value]) -> Result<String, RpcError> {
    match params.first().and_then(Value::as_str) {
        Some(k @ ("newPendingTransactions" | "newHeads")) => Ok(k.to_owned()),
        _ => Err(RpcError::invalid_params("unsupported subscription")),
    }
}

/// A peer that also speaks WebSocket.
pub trait WsPeer: Send + Sync + 'static {
    /// Its connections.
    fn hub(&self) -> &WsHub;
    /// What answers every call but `eth_subscribe` / `eth_unsubscribe`.
    fn handler(&self) -> &dyn Handler;
    /// The kind of subscription `eth_subscribe(params)` opens, or why it is refused.
    fn subscribe(&self, params: &[Value]) -> Result<String, RpcError>;
}

/// The WebSocket side of `peer` (a `GET` handler), to route at `/` beside its HTTP JSON-RPC
/// `POST /`.
pub fn ws_get<P: WsPeer>(peer: Arc<P>) -> MethodRouter {
    get(upgrade::<P>).with_state(peer)
}

async fn upgrade<P: WsPeer>(
    State(peer): State<Arc<P>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    up: WebSocketUpgrade,
) -> Response {
    up.max_message_size(MAX_FRAME).on_upgrade(move |socket| serve_ws(peer, socket, from))
}

async fn serve_ws<P: WsPeer>(peer: Arc<P>, socket: WebSocket, from: SocketAddr) {
    let hub = peer.hub();
    let id = hub.next.fetch_add(1, Ordering::SeqCst);
    let (tx, mut rx) = mpsc::channel::<WsMessage>(hub.queue);
    let kick = CancellationToken::new();
    hub.clients().insert(id, Client { tx, subs: Vec::new(), kick: kick.clone() });
    hub.open.fetch_add(1, Ordering::SeqCst);
    hub.accepted.fetch_add(1, Ordering::SeqCst);
    let ctx = CallContext {
        client_ip: from.ip(),
        request_id: "ws".into(),
        in_batch: false,
        api_key: None,
    };
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            _ = kick.cancelled() => break,
            m = rx.recv() => match m {
                Some(frame) => if sink.send(frame).await.is_err() { break },
                None => break,
            },
            m = stream.next() => match m {
                Some(Ok(WsMessage::Text(t))) => {
                    let Ok(raw) = serde_json::from_str::<Box<RawValue>>(&t) else { continue };
                    let parsed = parse_request(&raw);
                    let Ok(call) = parsed.call else { continue };
                    let answer = match hub.subscription(id, &call, |p| peer.subscribe(p)) {
                        Some(r) => r.map(|v| to_raw(&v)),
                        None => peer.handler().call(&ctx, call).await,
                    };
                    let text = encode(&parsed.reply_id, answer.as_deref()).0;
                    if sink.send(WsMessage::Text(text.into())).await.is_err() { break }
                }
                Some(Ok(_)) => {}
                _ => break,
            },
        }
    }
    hub.clients().remove(&id);
    hub.open.fetch_sub(1, Ordering::SeqCst);
}
