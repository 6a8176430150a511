//! The embedded devnet and the in-process peers (upstream EL, supervisor, chain RPC). Tests,
//! benches and `interop-gate dev` share these, so every peer speaks the real JSON-RPC wire format
//! over real HTTP on loopback.

pub mod chain;
pub mod devnet;
pub mod el_pool;
pub mod misbehave;
pub mod redis_server;
pub mod supervisor;
pub mod upstream;
pub mod wallet;
pub mod wallet_rpc;
pub mod ws_hub;
pub mod ws_upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::rpc::server::{rpc_router, serve, Handler, Limits};

/// A peer serving on `127.0.0.1` with the socket it bound (no pick-then-rebind race).
pub struct Peer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Peer {
    /// `http://addr/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// `ws://addr/` (peers started by [`spawn_ws_peer`]).
    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Stops serving (connections in flight finish).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A default config whose every listener binds an ephemeral loopback port (tests, `dev`).
pub fn loopback_config() -> crate::config::Config {
    let mut cfg = crate::config::Config::default();
    let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.server.listen = any_port;
    cfg.metrics.listen = Some(any_port);
    cfg.admin.listen = Some(any_port);
    cfg.light_server.listen = any_port;
    cfg.revalidator.listen = any_port;
    cfg.server.shutdown_grace_ms = std::time::Duration::from_secs(1);
    cfg
}

/// A supervisor or chain endpoint entry.
pub fn endpoint(name: &str, url: String) -> crate::config::EndpointConfig {
    crate::config::EndpointConfig { name: name.into(), url: parse_url(&url) }
}

/// Parses a URL this process built itself (a peer's `http://127.0.0.1:port/`); panics on a
/// malformed one, which is a bug in the caller, never input from the network.
pub fn parse_url(url: &str) -> url::Url {
    url::Url::parse(url).unwrap_or_else(|e| panic!("a URL built by the dev harness: {url}: {e}"))
}

/// A `[[light.chains]]` entry for `chain_id` over `urls` (named `c0`, `c1`, ...), failover.
pub fn light_chain(chain_id: u64, urls: &[String]) -> crate::config::ChainRpcConfig {
    crate::config::ChainRpcConfig {
        chain_id: crate::interop::ChainId::from(chain_id),
        endpoints: urls
            .iter()
            .enumerate()
            .map(|(i, u)| endpoint(&format!("c{i}"), u.clone()))
            .collect(),
        agreement: false,
        verify_receipts: false,
        interop_time: None,
    }
}

/// Generous limits for peers: they model servers, not the gateway.
pub const PEER_LIMITS: Limits = Limits {
    max_body_bytes: 64 << 20,
    max_batch: 100_000,
    trusted_proxy_depth: 0,
    error_status: false,
};

/// Serves `peer` as JSON-RPC on `addr`, over HTTP (`POST /`) and WebSocket (`GET /`, with its
/// subscriptions) on one port, as geth, op-geth and op-reth do. The WebSocket URL is
/// `ws://{addr}/`.
pub async fn spawn_ws_peer<P: ws_hub::WsPeer + Handler>(
    name: &'static str,
    peer: Arc<P>,
    addr: &str,
) -> std::io::Result<Peer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let router = rpc_router(name, peer.clone(), PEER_LIMITS).route("/", ws_hub::ws_get(peer));
    let token = stop.clone();
    tokio::spawn(async move {
        let _ = serve(listener, router, token, std::time::Duration::from_secs(1)).await;
    });
    Ok(Peer { addr, stop })
}

/// Serves `handler` as JSON-RPC on `addr` (use `127.0.0.1:0` for an ephemeral port).
pub async fn spawn_peer(
    name: &'static str,
    handler: Arc<dyn Handler>,
    addr: &str,
) -> std::io::Result<Peer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let router = rpc_router(name, handler, PEER_LIMITS);
    let token = stop.clone();
    tokio::spawn(async move {
        let _ = serve(listener, router, token, std::time::Duration::from_secs(1)).await;
    });
    Ok(Peer { addr, stop })
}
