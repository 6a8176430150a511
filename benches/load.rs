//! Load benchmark: the gateway as an operator would compare it with proxyd.
//!
//! Starts on loopback an upstream EL, a supervisor and two source chains that answer at once
//! (in this process), then the real `interop-gate` binary as a child process (so its peak RSS is
//! its own), and drives it with many concurrent keep-alive clients sending pre-signed
//! transactions. Every scenario runs against three targets in the same run: the upstream
//! directly, the gateway in `bypass` mode (the same stack as a bare pass-through) and the gateway
//! enforcing; ratios are printed against the bypass baseline.
//!
//! A last part (`shared`, needs `redis-server` on PATH; `support/shared.rs`) compares, in the
//! same run, the local rate limiter against limits shared through a real Redis (one replica,
//! then three replicas behind a client-side round robin), and counts the backend calls shared
//! invalid verdicts save when distinct invalid txs are each sent to three replicas.
//!
//! Run: `cargo bench --bench load` (options: `--secs N`, `--conns N`, `--only NAME`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};
use bytes::Bytes;
use interop_gate::dev::chain::{SimChain, SimLog};
use interop_gate::dev::supervisor::MockSupervisor;
use interop_gate::dev::upstream::MockUpstream;
use interop_gate::dev::wallet::{dev_signer, sign_1559, TxSpec};
use interop_gate::dev::{spawn_peer, Peer};
use interop_gate::interop::Message;

#[path = "support/child.rs"]
mod child;
use child::Child;
#[path = "support/shared.rs"]
mod shared;

/// The executing chain (the upstream's) and the source chain of the messages.
const CHAIN_ID: u64 = 10;
const SOURCE: u64 = 901;
/// The preloaded source chain: blocks and logs per block (distinct messages).
const BLOCKS: u64 = 200;
const LOGS_PER_BLOCK: u64 = 100;

/// The instant peers, in this process.
struct Peers {
    #[allow(dead_code)] // kept alive; calls are counted by the gateway's own metrics elsewhere
    upstream: Arc<MockUpstream>,
    upstream_peer: Peer,
    supervisor: Arc<MockSupervisor>,
    supervisor_peer: Peer,
    chain: Arc<SimChain>,
    chain_peer: Peer,
}

impl Peers {
    async fn start() -> std::io::Result<Peers> {
        let upstream = Arc::new(MockUpstream::counting());
        let upstream_peer = spawn_peer("upstream", upstream.clone(), "127.0.0.1:0").await?;
        let supervisor = Arc::new(MockSupervisor::new());
        supervisor.set_accept_all(true);
        let supervisor_peer = spawn_peer("supervisor", supervisor.clone(), "127.0.0.1:0").await?;
        let now = interop_gate::clock::unix_now();
        let chain = SimChain::new(SOURCE, now - 7_200, 2);
        for b in 0..BLOCKS {
            let logs = (0..LOGS_PER_BLOCK)
                .map(|i| SimLog {
                    address: Address::repeat_byte(0x42),
                    topics: vec![B256::repeat_byte(1), B256::from(U256::from(b * 1_000 + i))],
                    data: alloy_primitives::Bytes::from(vec![7u8; 64]),
                })
                .collect();
            chain.push_block_at(now - 3_600 + b, logs);
        }
        let chain_peer = spawn_peer("chain", chain.clone(), "127.0.0.1:0").await?;
        Ok(Peers { upstream, upstream_peer, supervisor, supervisor_peer, chain, chain_peer })
    }

    fn upstream_url(&self) -> String {
        self.upstream_peer.url()
    }

    /// Calls the validation peers received (supervisor checks + chain RPC calls).
    fn backend_calls(&self) -> u64 {
        self.supervisor.checks() as u64 + self.chain.all_calls()
    }

    /// Message `i` of the preloaded source chain.
    fn message(&self, i: u64) -> Message {
        let n = i % (BLOCKS * LOGS_PER_BLOCK);
        self.chain
            .message(1 + n / LOGS_PER_BLOCK, (n % LOGS_PER_BLOCK) as usize)
            .expect("preloaded")
    }

    /// The gateway's config for `mode`: both backends, policy "both".
    fn gateway_config(&self, mode: &str) -> String {
        self.gateway_config_with(mode, "", "")
    }

    /// [`Self::gateway_config`] with extra `[ingress]` keys and extra sections at the end.
    fn gateway_config_with(&self, mode: &str, ingress: &str, tail: &str) -> String {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
max_batch = 1000
[upstream]
url = "{upstream}"
pool_size = 256
[ingress]
chain_id = {CHAIN_ID}
mode = "{mode}"
max_in_flight = 4096
{ingress}
[validation]
policy = "both"
[supervisor]
endpoints = [{{ name = "sup", url = "{sup}" }}]
[[light.chains]]
chain_id = {SOURCE}
endpoints = [{{ name = "chain", url = "{chain}" }}]
[metrics]
listen = ""
[admin]
listen = ""
[log]
format = "json"
level = "warn"
{tail}
"#,
            upstream = self.upstream_url(),
            sup = self.supervisor_peer.url(),
            chain = self.chain_peer.url(),
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

fn scenarios(peers: &Peers) -> Vec<Scenario> {
    let signers: Vec<_> = (0..64).map(|k| dev_signer(100 + k)).collect();
    // Distinct signers and nonces so that every tx is a distinct transaction.
    let sign = |i: usize, spec: &dyn Fn(u64) -> TxSpec| {
        let k = i % signers.len();
        body(&sign_1559(&signers[k], &spec((i / signers.len()) as u64)).0, i)
    };
    let plain: Vec<Bytes> =
        (0..20_000).map(|i| sign(i, &|n| TxSpec::transfer(CHAIN_ID, n))).collect();
    let interop = |count: usize, offset: u64| -> Vec<Bytes> {
        (0..count)
            .map(|i| {
                let m = peers.message(offset + i as u64);
                sign(i, &|n| TxSpec::interop(CHAIN_ID, n, &[m]))
            })
            .collect()
    };
    let cold = interop(20_000, 0);
    let warm = interop(2_000, 0);
    let mut bad = peers.message(7);
    bad.checksum.0[31] ^= 1;
    let spam = vec![sign(0, &|n| TxSpec::interop(CHAIN_ID, n, &[bad]))];
    // The mix: half plain transfers, 30% valid interop (warm), 20% spam of one invalid tx.
    let mix: Vec<Bytes> = (0..10_000)
        .map(|i| match i % 10 {
            0..=4 => plain[i].clone(),
            5..=7 => warm[i % warm.len()].clone(),
            _ => spam[0].clone(),
        })
        .collect();
    vec![
        Scenario {
            name: "non-interop",
            about: "EIP-1559 transfers: decode, limits, forward (no backend call)",
            bodies: Arc::new(plain),
            warm_up: false,
        },
        Scenario {
            name: "interop-valid-cold",
            about: "20,000 distinct valid interop txs (1 message each, 100 per source block), caches cold",
            bodies: Arc::new(cold),
            warm_up: false,
        },
        Scenario {
            name: "interop-valid-warm",
            about: "2,000 valid interop txs sent over and over: verdict cache warm",
            bodies: Arc::new(warm),
            warm_up: true,
        },
        Scenario {
            name: "interop-invalid-spam",
            about: "the same invalid interop tx (bad checksum) over and over",
            bodies: Arc::new(spam),
            warm_up: false,
        },
        Scenario {
            name: "mix",
            about: "50% transfers, 30% valid interop (warm), 20% invalid spam",
            bodies: Arc::new(mix),
            warm_up: true,
        },
    ]
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
    drive_all(&[url.to_owned()], bodies, conns, secs).await
}

/// Drives several replicas: body `i` goes to `urls[i % urls.len()]` (a round-robin balancer).
async fn drive_all(urls: &[String], bodies: Arc<Vec<Bytes>>, conns: usize, secs: u64) -> Stats {
    let urls = Arc::new(urls.to_vec());
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
        let (client, urls, bodies, stop, next) =
            (client.clone(), urls.clone(), bodies.clone(), stop.clone(), next.clone());
        let (ok, refused, failed) = (ok.clone(), refused.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                let (i, url) = (n % bodies.len(), &urls[n % urls.len()]);
                let t = Instant::now();
                let resp = client
                    .post(url)
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
        drive(&bypass.url(), sc.bodies.clone(), o.conns, 1).await;
    }
    let b = drive(&bypass.url(), sc.bodies.clone(), o.conns, o.secs).await;
    row("gateway bypass", &b, None, Some(bypass.status_kib("VmHWM") / 1024.0), Some(b.rps));
    drop(bypass);

    let gate = Child::start(peers.gateway_config("enforce")).await;
    if sc.warm_up {
        drive(&gate.url(), sc.bodies.clone(), o.conns, 1).await;
    }
    let before = peers.backend_calls();
    let g = drive(&gate.url(), sc.bodies.clone(), o.conns, o.secs).await;
    let calls = peers.backend_calls().saturating_sub(before) as f64;
    let txs = (g.ok + g.refused + g.failed).max(1) as f64;
    row(
        "gateway enforce",
        &g,
        Some(calls / txs),
        Some(gate.status_kib("VmHWM") / 1024.0),
        Some(b.rps),
    );
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
        let all = scenarios(&peers);
        for sc in &all {
            if o.only.as_deref().is_some_and(|n| !sc.name.contains(n)) {
                continue;
            }
            run_scenario(&peers, sc, &o).await;
        }
        if o.only.as_deref().is_none_or(|n| "shared".contains(n)) {
            shared::run(&peers, &all, &o).await;
        }
    });
}
