//! The whole HTTP JSON-RPC surface of the ingress and the light endpoint, over real sockets
//! against the real service (`app::start`) and in-process peers (mock EL, mock supervisor,
//! simulated source chain). Each input is one HTTP request: the first byte picks the listener
//! (even: ingress, odd: light endpoint), the bytes up to the first NUL are extra header lines,
//! the rest is the body. Asserts: no panic anywhere in the process (libFuzzer's panic hook aborts
//! on server threads too), every request is answered within 10 s with a well-formed HTTP
//! response, and a JSON content type always carries parseable JSON.
#![no_main]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use interop_gate::app::{start, Running};
use interop_gate::dev::chain::SimChain;
use interop_gate::dev::supervisor::MockSupervisor;
use interop_gate::dev::upstream::MockUpstream;
use interop_gate::dev::{endpoint, light_chain, spawn_peer, Peer};
use libfuzzer_sys::fuzz_target;
use tokio_util::sync::CancellationToken;

struct Env {
    ingress: SocketAddr,
    light: SocketAddr,
    _keep: (tokio::runtime::Runtime, Running, Vec<Peer>),
}

static ENV: LazyLock<Env> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (running, peers) = rt.block_on(async {
        let upstream = Arc::new(MockUpstream::counting());
        let up = spawn_peer("upstream", upstream, "127.0.0.1:0").await.expect("upstream");
        let chain = SimChain::new(901, interop_gate::clock::unix_now() - 3_600, 2);
        let chain_peer = spawn_peer("chain", chain, "127.0.0.1:0").await.expect("chain");
        let sup = Arc::new(MockSupervisor::new());
        let sup_peer = spawn_peer("supervisor", sup, "127.0.0.1:0").await.expect("supervisor");
        let mut cfg = interop_gate::dev::loopback_config();
        cfg.upstream.url = up.url();
        cfg.ingress.chain_id = 10;
        cfg.supervisor.endpoints = vec![endpoint("sup", sup_peer.url())];
        cfg.light.chains = vec![light_chain(901, &[chain_peer.url()])];
        cfg.light.reorg_watch_ms = 0;
        cfg.light_server.enabled = true;
        cfg.server.max_connections = 4096;
        // An incomplete body waits for its timeout: keep it well under the 10 s answer bound.
        cfg.server.header_read_timeout_ms = 2_000;
        cfg.server.body_read_timeout_ms = 2_000;
        cfg.metrics.listen = String::new();
        cfg.admin.listen = String::new();
        cfg.validate().expect("valid config");
        let running = start(cfg, CancellationToken::new()).await.expect("starts");
        (running, vec![up, chain_peer, sup_peer])
    });
    Env {
        ingress: running.rpc_addr.expect("ingress"),
        light: running.light_server_addr.expect("light server"),
        _keep: (rt, running, peers),
    }
});

fuzz_target!(|data: &[u8]| {
    let env = &*ENV;
    let Some((&which, rest)) = data.split_first() else { return };
    let (headers, body) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&[][..], rest),
    };
    let addr = if which % 2 == 0 { env.ingress } else { env.light };
    let mut req = Vec::with_capacity(128 + headers.len() + body.len());
    req.extend_from_slice(b"POST / HTTP/1.1\r\nhost: fuzz\r\nconnection: close\r\n");
    for line in headers.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        req.extend_from_slice(line);
        req.extend_from_slice(b"\r\n");
    }
    if which & 2 == 0 {
        req.extend_from_slice(b"content-type: application/json\r\n");
    }
    req.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    req.extend_from_slice(body);

    let mut s = TcpStream::connect(addr).expect("listener up");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    // The server may answer (400, 413) and close before reading everything: not an error.
    let _ = s.write_all(&req);
    let mut resp = Vec::new();
    match s.read_to_end(&mut resp) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
        Err(e) => panic!("no answer within 10 s: {e}"),
    }
    if resp.is_empty() {
        return; // Closed without an answer (malformed head): hyper's choice, not a hang.
    }
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 "), "not an HTTP response: {text:?}");
    if let Some((head, body)) = text.split_once("\r\n\r\n") {
        let json = head.to_ascii_lowercase().contains("content-type: application/json");
        if json && !body.is_empty() && !head.to_ascii_lowercase().contains("transfer-encoding") {
            assert!(
                serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok(),
                "JSON content type with a body that is not JSON: {body:?}"
            );
        }
    }
});
