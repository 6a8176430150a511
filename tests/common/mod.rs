//! Shared test harness: starts the real service with `127.0.0.1:0` listeners against in-process
//! peers, and a small JSON-RPC-over-HTTP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use interop_gate::app::{start, Running};
use interop_gate::config::Config;
use interop_gate::dev::upstream::MockUpstream;
use interop_gate::dev::{spawn_peer, Peer};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A config whose every listener binds an ephemeral loopback port.
pub fn loopback_config() -> Config {
    let mut cfg = Config::default();
    cfg.server.listen = "127.0.0.1:0".into();
    cfg.metrics.listen = "127.0.0.1:0".into();
    cfg.admin.listen = "127.0.0.1:0".into();
    cfg.light_server.listen = "127.0.0.1:0".into();
    cfg.revalidator.listen = "127.0.0.1:0".into();
    cfg.server.shutdown_grace_ms = 2_000;
    cfg
}

/// The service plus its mock upstream.
pub struct Gateway {
    pub running: Running,
    pub upstream: Arc<MockUpstream>,
    pub upstream_peer: Peer,
    pub client: reqwest::Client,
}

impl Gateway {
    pub fn rpc_url(&self) -> String {
        format!("http://{}/", self.running.rpc_addr.expect("ingress enabled"))
    }

    pub fn metrics_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.metrics_addr.expect("metrics enabled"))
    }

    /// POSTs a raw body; returns status and body text.
    pub async fn post_raw(&self, body: impl Into<reqwest::Body>) -> (u16, String) {
        post_raw(&self.client, &self.rpc_url(), body).await
    }

    /// POSTs JSON; returns status and parsed JSON (Null for an empty body).
    pub async fn post(&self, body: &Value) -> (u16, Value) {
        post_json(&self.client, &self.rpc_url(), body).await
    }
}

pub async fn post_raw(
    client: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body read"))
}

pub async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let (status, text) = post_raw(client, url, serde_json::to_vec(body).expect("json")).await;
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON response")
    };
    (status, v)
}

/// Starts a mock upstream and the service (config adjusted by `tweak`).
pub async fn gateway(tweak: impl FnOnce(&mut Config)) -> Gateway {
    let upstream = Arc::new(MockUpstream::new());
    let upstream_peer =
        spawn_peer("upstream", upstream.clone(), "127.0.0.1:0").await.expect("bind upstream");
    let mut cfg = loopback_config();
    cfg.upstream.url = upstream_peer.url();
    tweak(&mut cfg);
    cfg.validate().expect("valid test config");
    let running = start(cfg, CancellationToken::new()).await.expect("service starts");
    Gateway { running, upstream, upstream_peer, client: reqwest::Client::new() }
}

/// An address nothing listens on (bound then dropped).
pub async fn dead_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a
}
