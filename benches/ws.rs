//! WebSocket benchmark: submissions per second over WebSocket through the gateway against
//! WebSocket straight to the upstream, in the same run, and the memory one idle WebSocket
//! connection costs the real binary.
//!
//! Starts on loopback an upstream that speaks JSON-RPC over WebSocket and HTTP on one port and a
//! supervisor that accepts everything (in this process), then the real `interop-gate` binary as a
//! child process (its RSS is its own). Each client connection sends pre-signed transactions one
//! at a time (send, wait for the answer, send the next).
//!
//! Run: `cargo bench --bench ws` (options: `--secs N`, `--conns N`, `--idle N`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};
use futures::{SinkExt, StreamExt};
use interop_gate::dev::chain::{SimChain, SimLog};
use interop_gate::dev::supervisor::MockSupervisor;
use interop_gate::dev::upstream::MockUpstream;
use interop_gate::dev::wallet::{dev_signer, sign_1559, TxSpec};
use interop_gate::dev::ws_upstream::spawn_ws_upstream;
use interop_gate::dev::{spawn_peer, Peer};
use tokio_tungstenite::tungstenite::Message;

#[path = "support/child.rs"]
mod child;
use child::Child;
#[path = "support/self_usage.rs"]
mod self_usage;

const CHAIN_ID: u64 = 10;
const SOURCE: u64 = 901;

struct Opts {
    secs: u64,
    conns: usize,
    idle: usize,
}

fn opts() -> Opts {
    let mut o = Opts { secs: 5, conns: 32, idle: 1_000 };
    let args: Vec<String> = std::env::args().collect();
    for w in args.windows(2) {
        let v = w[1].parse().ok();
        match (w[0].as_str(), v) {
            ("--secs", Some(v)) => o.secs = v as u64,
            ("--conns", Some(v)) => o.conns = v,
            ("--idle", Some(v)) => o.idle = v,
            _ => {}
        }
    }
    o
}

struct Stats {
    rps: f64,
    p50: Duration,
    p99: Duration,
    ok: u64,
    errors: u64,
}

/// `conns` WebSocket clients send `bodies` round robin, one request in flight each, for `secs`.
async fn drive(url: &str, bodies: Arc<Vec<String>>, conns: usize, secs: u64) -> Stats {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (url, bodies) = (url.to_owned(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws connects");
            let (mut ok, mut errors, mut lat) = (0u64, 0u64, Vec::new());
            let mut i = c;
            while Instant::now() < end {
                let t = Instant::now();
                ws.send(Message::text(bodies[i % bodies.len()].clone())).await.expect("send");
                i += conns;
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) => {
                            if t.contains("\"error\"") {
                                errors += 1;
                            } else {
                                ok += 1;
                            }
                            break;
                        }
                        Some(Ok(_)) => continue,
                        _ => return (ok, errors, lat),
                    }
                }
                lat.push(t.elapsed());
            }
            let _ = ws.close(None).await;
            (ok, errors, lat)
        }));
    }
    let start = Instant::now();
    let (mut ok, mut errors, mut lat) = (0, 0, Vec::new());
    for t in tasks {
        if let Ok((o, e, l)) = t.await {
            ok += o;
            errors += e;
            lat.extend(l);
        }
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    lat.sort();
    let q = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p) as usize).copied().unwrap_or_default();
    Stats { rps: (ok + errors) as f64 / elapsed, p50: q(0.5), p99: q(0.99), ok, errors }
}

fn row(target: &str, s: &Stats, base: Option<f64>) {
    println!(
        "  {target:<26} {:>8.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  ok {:>7} errors {:>5}  vs direct {:>6}",
        s.rps,
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3,
        s.ok,
        s.errors,
        base.map_or("-".into(), |b| format!("{:.2}x", s.rps / b.max(1.0))),
    );
}

fn body(raw: &alloy_primitives::Bytes, id: usize) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_sendRawTransaction","params":["{raw}"]}}"#)
}

fn main() {
    let o = opts();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let (_up, up_peer) =
            spawn_ws_upstream(Arc::new(MockUpstream::counting())).await.expect("upstream");
        let supervisor = Arc::new(MockSupervisor::new());
        supervisor.set_accept_all(true);
        let sup_peer: Peer =
            spawn_peer("supervisor", supervisor.clone(), "127.0.0.1:0").await.expect("sup");
        // Distinct messages on a simulated source chain (the supervisor accepts them all).
        let now = interop_gate::clock::unix_now();
        let chain = SimChain::new(SOURCE, now - 7_200, 2);
        let logs = (0..200u64)
            .map(|i| SimLog {
                address: Address::repeat_byte(0x42),
                topics: vec![B256::repeat_byte(1), B256::from(U256::from(i))],
                data: alloy_primitives::Bytes::from(vec![7u8; 32]),
            })
            .collect();
        let block = chain.push_block_at(now - 3_600, logs);
        let n = 2_000usize;
        let plain: Vec<String> = (0..n)
            .map(|i| {
                body(
                    &sign_1559(
                        &dev_signer(1 + i as u64 % 50),
                        &TxSpec::transfer(CHAIN_ID, i as u64),
                    )
                    .0,
                    i,
                )
            })
            .collect();
        let interop: Vec<String> = (0..n)
            .map(|i| {
                let m = chain.message(block.number, i % 200).expect("log");
                let spec = TxSpec::interop(CHAIN_ID, i as u64, &[m]);
                body(&sign_1559(&dev_signer(100 + i as u64 % 50), &spec).0, i)
            })
            .collect();
        let (plain, interop) = (Arc::new(plain), Arc::new(interop));
        let cfg = format!(
            r#"[server]
listen = "127.0.0.1:0"
[upstream]
url = "{up}"
[ingress]
chain_id = {CHAIN_ID}
[validation]
policy = "indexed"
[supervisor]
endpoints = [{{ name = "sup", url = "{sup}" }}]
[websocket]
max_connections = 100000
[metrics]
listen = ""
[admin]
listen = ""
[log]
format = "json"
level = "warn"
"#,
            up = up_peer.url(),
            sup = sup_peer.url(),
        );
        println!(
            "websocket benchmark: {} connections, {} s per run, {} CPUs",
            o.conns,
            o.secs,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let direct_url = format!("ws://{}/", up_peer.addr);
        let direct = drive(&direct_url, plain.clone(), o.conns, o.secs).await;
        row("upstream direct (ws)", &direct, None);
        let gate = Child::start(cfg).await;
        let gw_url = format!("ws://{}/", gate.addr);
        let g = drive(&gw_url, plain.clone(), o.conns, o.secs).await;
        row("gateway ws, non-interop", &g, Some(direct.rps));
        let g = drive(&gw_url, interop.clone(), o.conns, o.secs).await;
        row("gateway ws, interop", &g, Some(direct.rps));

        // Memory per idle connection: RSS of the binary before and after `idle` connections.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = gate.status_kib("VmRSS");
        let mut idle = Vec::with_capacity(o.idle);
        for _ in 0..o.idle {
            idle.push(tokio_tungstenite::connect_async(gw_url.as_str()).await.expect("idle ws").0);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = gate.status_kib("VmRSS");
        println!(
            "  idle connections: {} opened, RSS {:.1} MiB -> {:.1} MiB, {:.1} KiB per connection",
            o.idle,
            before / 1024.0,
            after / 1024.0,
            (after - before) / o.idle.max(1) as f64
        );
        drop(idle);
        drop(gate);
    });
}
