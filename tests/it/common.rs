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
    let mut cfg = interop_gate::dev::loopback_config();
    cfg.server.shutdown_grace_ms = std::time::Duration::from_millis(2_000);
    // /readyz follows a peer going down within one probe interval.
    cfg.server.readiness_interval_ms = std::time::Duration::from_millis(100);
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
    cfg.upstream.url = interop_gate::dev::parse_url(&upstream_peer.url());
    tweak(&mut cfg);
    cfg.validate().expect("valid test config");
    let running = start(cfg, CancellationToken::new()).await.expect("service starts");
    Gateway { running, upstream, upstream_peer, client: reqwest::Client::new() }
}

/// Polls `url` until it answers HTTP `want` (bounded: panics after 5 s).
pub async fn wait_status(url: &str, want: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let got = reqwest::get(url).await.map(|r| r.status().as_u16()).unwrap_or(0);
        if got == want {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{url} answers {got}, never {want}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// An address nothing listens on (bound then dropped).
pub async fn dead_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a
}

/// The source chain id of the interop harness, and the executing (upstream) chain's.
pub const SOURCE: u64 = 901;
pub const DEST: u64 = 10;

/// A gateway with both validation backends: a mock supervisor (indexed) and a simulated source
/// chain (light), plus the mock upstream.
pub struct InteropGateway {
    pub gw: Gateway,
    pub chain: Arc<interop_gate::dev::chain::SimChain>,
    pub chain_peer: Peer,
    pub supervisor: Arc<interop_gate::dev::supervisor::MockSupervisor>,
    pub supervisor_peer: Peer,
}

pub use interop_gate::clock::unix_now as now;
pub use interop_gate::dev::{endpoint, light_chain};

/// Logs for a simulated block: `n` pings from one emitter.
pub fn pings(n: usize, salt: u8) -> Vec<interop_gate::dev::chain::SimLog> {
    (0..n)
        .map(|i| interop_gate::dev::chain::SimLog {
            address: alloy_primitives::Address::repeat_byte(0x42),
            topics: vec![
                alloy_primitives::B256::repeat_byte(salt),
                alloy_primitives::B256::with_last_byte(i as u8),
            ],
            data: alloy_primitives::Bytes::from(vec![salt, i as u8]),
        })
        .collect()
}

/// Starts the peers and a gateway that validates against both.
pub async fn interop_gateway(tweak: impl FnOnce(&mut Config)) -> InteropGateway {
    use interop_gate::dev::chain::SimChain;
    use interop_gate::dev::supervisor::MockSupervisor;
    let chain = SimChain::new(SOURCE, now() - 3_600, 2);
    let chain_peer = spawn_peer("chain", chain.clone(), "127.0.0.1:0").await.expect("chain");
    let supervisor = Arc::new(MockSupervisor::new());
    let supervisor_peer =
        spawn_peer("supervisor", supervisor.clone(), "127.0.0.1:0").await.expect("supervisor");
    let (chain_url, sup_url) = (chain_peer.url(), supervisor_peer.url());
    let gw = gateway(move |cfg| {
        cfg.ingress.chain_id = DEST;
        cfg.supervisor.endpoints = vec![endpoint("sup", sup_url)];
        cfg.light.chains = vec![light_chain(SOURCE, &[chain_url])];
        cfg.validation.retry_delay_ms = std::time::Duration::from_millis(300);
        // Tests count chain calls exactly: no background reorg watch unless a test asks.
        cfg.light.reorg_watch_ms = std::time::Duration::ZERO;
        tweak(cfg);
    })
    .await;
    InteropGateway { gw, chain, chain_peer, supervisor, supervisor_peer }
}

impl InteropGateway {
    /// Emits a block with `n` logs (timestamped a minute ago) and returns its messages, known to
    /// the supervisor too.
    pub fn emit(&self, n: usize, salt: u8) -> Vec<interop_gate::interop::Message> {
        let b = self.chain.push_block_at(now() - 60, pings(n, salt));
        let msgs: Vec<_> = (0..n).map(|i| self.chain.message(b.number, i).expect("log")).collect();
        self.supervisor.add_known(msgs.clone());
        msgs
    }

    /// Signs an interop tx from dev key `key` executing `msgs` on DEST.
    pub fn interop_tx(
        &self,
        key: u64,
        nonce: u64,
        msgs: &[interop_gate::interop::Message],
    ) -> (alloy_primitives::Bytes, alloy_primitives::B256) {
        use interop_gate::dev::wallet::{dev_signer, sign_1559, TxSpec};
        sign_1559(&dev_signer(key), &TxSpec::interop(DEST, nonce, msgs))
    }

    pub async fn send(&self, raw: &alloy_primitives::Bytes) -> (u16, Value) {
        self.gw
            .post(&serde_json::json!({"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":[raw]}))
            .await
    }

    /// Whether the upstream received this raw tx.
    pub fn forwarded(&self, raw: &alloy_primitives::Bytes) -> bool {
        self.gw.upstream.raw_transactions().contains(raw)
    }
}

/// Set in a child process started by [`in_fresh_process`].
const FRESH: &str = "INTEROP_GATE_IT_FRESH_PROCESS";

/// Runs `body` in a fresh child process: the same test binary, filtered to the test `name`
/// (its full path, e.g. `admin::some_test`). The integration tests share one process and the
/// metrics registry is process-wide, so a test that asserts an absolute metric value (a gauge a
/// concurrent test could move, a series at 0 before any traffic) runs where no other test runs.
pub fn in_fresh_process<F, Fut>(name: &str, body: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if std::env::var_os(FRESH).is_some() {
        return tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(body());
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = std::process::Command::new(exe)
        .args(["--exact", name, "--test-threads=1", "--nocapture"])
        .env(FRESH, "1")
        .output()
        .expect("spawn the test binary");
    let log =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{name} failed in its fresh process:\n{log}");
    // The child really ran the test (not zero tests because of a wrong name).
    assert!(log.contains("1 passed"), "the child ran no test named {name}:\n{log}");
}
