//! A mock execution client that speaks JSON-RPC over WebSocket as well as HTTP on one port, as
//! anvil, geth and op-geth do: `POST /` is the HTTP JSON-RPC of a [`MockUpstream`], `GET /`
//! upgrades to a WebSocket whose calls are answered by the same mock, plus `eth_subscribe` /
//! `eth_unsubscribe` (`newHeads`). Tests push heads, count open connections and subscriptions,
//! and can drop every connection (an upstream going away).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::upstream::MockUpstream;
use super::ws_hub::{ws_get, WsHub, WsPeer};
use super::{Peer, PEER_LIMITS};
use crate::rpc::server::{rpc_router, serve, Handler};
use crate::rpc::types::RpcError;

/// The WebSocket side of the mock.
pub struct WsUpstream {
    /// The HTTP mock answering every non-subscription call (and recording them).
    pub mock: Arc<MockUpstream>,
    ws: WsHub,
    head: AtomicU64,
}

impl WsUpstream {
    /// Open WebSocket connections.
    pub fn connections(&self) -> usize {
        self.ws.connections()
    }

    /// WebSocket connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.ws.accepted()
    }

    /// Open subscriptions over all connections.
    pub fn subscriptions(&self) -> usize {
        self.ws.subscriptions()
    }

    /// Sends one `newHeads` notification (with `pad` bytes of extra data) to every subscription,
    /// waiting for room in each connection's queue; returns how many were queued.
    pub async fn push_head(&self, pad: usize) -> usize {
        let n = self.head.fetch_add(1, Ordering::SeqCst) + 1;
        let head = json!({
            "number": format!("{n:#x}"),
            "hash": format!("{:#066x}", n),
            "extraData": format!("0x{}", "ab".repeat(pad)),
        });
        self.ws.notify_all_wait(&head).await
    }

    /// Closes every WebSocket connection (the upstream restarting).
    pub fn drop_all(&self) {
        self.ws.drop_all();
    }
}

impl WsPeer for WsUpstream {
    fn hub(&self) -> &WsHub {
        &self.ws
    }

    fn handler(&self) -> &dyn Handler {
        &*self.mock
    }

    /// Any subscription is accepted; every one gets the heads [`WsUpstream::push_head`] sends.
    fn subscribe(&self, params: &[Value]) -> Result<String, RpcError> {
        Ok(params.first().and_then(Value::as_str).unwrap_or("newHeads").to_owned())
    }
}

/// Starts the mock on `127.0.0.1:0`: HTTP and WebSocket on one port.
pub async fn spawn_ws_upstream(
    mock: Arc<MockUpstream>,
) -> std::io::Result<(Arc<WsUpstream>, Peer)> {
    // A small queue per connection, so a test's slow reader pushes back on `push_head`.
    let ws = Arc::new(WsUpstream {
        mock: mock.clone(),
        ws: WsHub::new(0xabc000, 1024),
        head: AtomicU64::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let router = rpc_router("upstream", mock, PEER_LIMITS).route("/", ws_get(ws.clone()));
    let token = stop.clone();
    tokio::spawn(async move {
        let _ = serve(listener, router, token, std::time::Duration::from_secs(1)).await;
    });
    Ok((ws, Peer { addr, stop }))
}
