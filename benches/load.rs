//! Load benchmark: the gateway as an operator would compare it with proxyd.
//!
//! Starts on loopback an upstream EL, a supervisor and two source chains that answer at once
//! (in this process), then the real `interop-gate` binary as a child process (so its peak RSS is
//! its own), and drives it with many concurrent keep-alive clients sending pre-signed
//! transactions. Every scenario runs against three targets in the same run: the upstream
//! directly, the gateway in `bypass` mode (the same stack as a bare pass-through) and the gateway
//! enforcing; ratios are printed against the bypass baseline.
//!
//! Run: `cargo bench --bench load` (options: `--secs N`, `--conns N`, `--only NAME`).

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use interop_gate::dev::upstream::MockUpstream;
use interop_gate::dev::wallet::{dev_signer, sign_1559, TxSpec};
use interop_gate::dev::{spawn_peer, Peer};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The executing chain (the upstream's).
const CHAIN_ID: u64 = 901;

/// The instant peers, in this process.
struct Peers {
    #[allow(dead_code)] // read once the interop scenarios count upstream calls
    upstream: Arc<MockUpstream>,
    upstream_peer: Peer,
}

impl Peers {
    async fn start() -> std::io::Result<Peers> {
        let upstream = Arc::new(MockUpstream::counting());
        let upstream_peer = spawn_peer("upstream", upstream.clone(), "127.0.0.1:0").await?;
        Ok(Peers { upstream, upstream_peer })
    }

    fn upstream_url(&self) -> String {
        self.upstream_peer.url()
    }

    /// Calls the validation peers received (supervisor HTTP requests + chain RPC calls).
    fn backend_calls(&self) -> u64 {
        0
    }

    /// The gateway's config for `mode`.
    fn gateway_config(&self, mode: &str) -> String {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
max_batch = 1000
[upstream]
url = "{upstream}"
[ingress]
chain_id = {CHAIN_ID}
mode = "{mode}"
[metrics]
listen = ""
[admin]
listen = ""
[log]
format = "json"
level = "warn"
"#,
            upstream = self.upstream_url(),
        )
    }
}

/// One workload: what is sent, and whether caches are warmed first.
struct Scenario {
    name: &'static str,
    about: &'static str,
    bodies: Arc<Vec<Bytes>>,
    warm_up: bool,
}

fn body(raw: &alloy_primitives::Bytes, id: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_sendRawTransaction","params":["{raw}"]}}"#
    ))
}

fn scenarios(_peers: &Peers) -> Vec<Scenario> {
    let n = 20_000;
    let signer = dev_signer(1);
    let plain: Vec<Bytes> = (0..n)
        .map(|i| body(&sign_1559(&signer, &TxSpec::transfer(CHAIN_ID, i as u64)).0, i))
        .collect();
    vec![Scenario {
        name: "non-interop",
        about: "EIP-1559 transfers: decode, limits, forward",
        bodies: Arc::new(plain),
        warm_up: false,
    }]
}

struct Opts {
    secs: u64,
    conns: usize,
    only: Option<String>,
}

fn opts() -> Opts {
    let mut o = Opts { secs: 5, conns: 64, only: None };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let next = args.get(i + 1).cloned();
        match args[i].as_str() {
            "--secs" => o.secs = next.and_then(|v| v.parse().ok()).unwrap_or(o.secs),
            "--conns" => o.conns = next.and_then(|v| v.parse().ok()).unwrap_or(o.conns),
            "--only" => o.only = next,
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

/// One measured run.
struct Stats {
    rps: f64,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    ok: u64,
    refused: u64,
    failed: u64,
}

fn quantile(sorted: &[u32], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    Duration::from_micros(u64::from(sorted[i]))
}

/// Drives `url` with `conns` workers for `secs`, each POSTing bodies in turn.
async fn drive(url: &str, bodies: Arc<Vec<Bytes>>, conns: usize, secs: u64) -> Stats {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conns)
        .tcp_nodelay(true)
        .http1_only()
        .build()
        .expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let (ok, refused, failed) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..conns {
        let (client, url, bodies, stop, next) =
            (client.clone(), url.to_owned(), bodies.clone(), stop.clone(), next.clone());
        let (ok, refused, failed) = (ok.clone(), refused.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize % bodies.len();
                let t = Instant::now();
                let resp = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(bodies[i].clone())
                    .send()
                    .await;
                let body = match resp {
                    Ok(r) => r.bytes().await.ok(),
                    Err(_) => None,
                };
                lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                match body {
                    Some(b) if memchr(b"\"result\"", &b) => ok.fetch_add(1, Ordering::Relaxed),
                    Some(b) if memchr(b"\"error\"", &b) => refused.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap_or_default());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    Stats {
        rps: all.len() as f64 / elapsed,
        p50: quantile(&all, 0.5),
        p99: quantile(&all, 0.99),
        p999: quantile(&all, 0.999),
        ok: ok.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
    }
}

fn memchr(needle: &[u8], hay: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The gateway as a child process.
struct Child {
    child: tokio::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Child {
    async fn start(config: String) -> Child {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config).expect("write config");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_interop-gate"))
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "warn,interop_gate::app=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn interop-gate");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut url = None;
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if v["message"] == "listening" && v["listener"] == "ingress" {
                url = v["addr"].as_str().map(|a| format!("http://{a}/"));
            }
            if v["message"] == "started" {
                break;
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Child { child, url: url.expect("ingress address in the start-up log"), _dir: dir }
    }

    /// Peak resident set size (VmHWM), MiB.
    fn peak_rss_mib(&self) -> f64 {
        let Some(pid) = self.child.id() else { return 0.0 };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

fn row(target: &str, s: &Stats, calls_per_tx: Option<f64>, rss: Option<f64>, base: Option<f64>) {
    println!(
        "  {target:<18} {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  p999 {:>7.3} ms  ok {:>7} refused {:>7} failed {:>3}  backend calls/tx {:>6}  peak RSS {:>7}  vs bypass {:>6}",
        s.rps,
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3,
        s.p999.as_secs_f64() * 1e3,
        s.ok,
        s.refused,
        s.failed,
        calls_per_tx.map_or("-".into(), |c| format!("{c:.3}")),
        rss.map_or("-".into(), |r| format!("{r:.1} MiB")),
        base.map_or("-".into(), |b| format!("{:.2}x", s.rps / b)),
    );
}

async fn run_scenario(peers: &Peers, sc: &Scenario, o: &Opts) {
    println!("\n{} — {}", sc.name, sc.about);
    let direct = drive(&peers.upstream_url(), sc.bodies.clone(), o.conns, o.secs).await;
    row("upstream direct", &direct, None, None, None);

    let bypass = Child::start(peers.gateway_config("bypass")).await;
    if sc.warm_up {
        drive(&bypass.url, sc.bodies.clone(), o.conns, 1).await;
    }
    let b = drive(&bypass.url, sc.bodies.clone(), o.conns, o.secs).await;
    row("gateway bypass", &b, None, Some(bypass.peak_rss_mib()), Some(b.rps));
    drop(bypass);

    let gate = Child::start(peers.gateway_config("enforce")).await;
    if sc.warm_up {
        drive(&gate.url, sc.bodies.clone(), o.conns, 1).await;
    }
    let before = peers.backend_calls();
    let g = drive(&gate.url, sc.bodies.clone(), o.conns, o.secs).await;
    let calls = peers.backend_calls().saturating_sub(before) as f64;
    let txs = (g.ok + g.refused + g.failed).max(1) as f64;
    row("gateway enforce", &g, Some(calls / txs), Some(gate.peak_rss_mib()), Some(b.rps));
    println!(
        "  => enforce/bypass throughput {:.2}x, p99 added over bypass {:+.3} ms",
        g.rps / b.rps.max(1.0),
        (g.p99.as_secs_f64() - b.p99.as_secs_f64()) * 1e3
    );
}

fn main() {
    let o = opts();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let peers = Peers::start().await.expect("peers");
        println!(
            "load benchmark: {} connections, {} s per run, {} CPUs",
            o.conns,
            o.secs,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        for sc in scenarios(&peers) {
            if o.only.as_deref().is_some_and(|n| !sc.name.contains(n)) {
                continue;
            }
            run_scenario(&peers, &sc, &o).await;
        }
    });
}
