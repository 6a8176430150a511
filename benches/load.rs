//! Load benchmark: the gateway as an operator would compare it with proxyd.
//!
//! Three kinds of process, so that no two of them share a runtime: the peers (an upstream EL, a
//! supervisor and a preloaded source chain that answer at once; `support/peers.rs`), each
//! target that is measured, and the load client (this process: many concurrent keep-alive
//! clients sending pre-signed transactions). The bench re-executes itself with `--role` for its
//! helpers. Every scenario runs against four targets in the same run: the upstream directly, a
//! minimal forwarder on the same axum + reqwest stack that never decodes a tx
//! (`support/forwarder.rs`, the honest baseline), the gateway in `bypass` mode and the gateway
//! enforcing. Each row gives req/s, p50/p99, the serving process's CPU per request (from
//! `/proc/<pid>/stat`; for "upstream direct" the peers' process), backend and header calls; a
//! summary prints the issue-22 goal ratios. `INTEROP_GATE_BENCH_BIN=path` runs another build of
//! the gateway (before/after comparisons); `--validation 'k = v'` adds `[validation]` keys.
//!
//! A last part (`shared`, needs `redis-server` on PATH; `support/shared.rs`) compares, in the
//! same run, the local rate limiter against limits shared through a real Redis (one replica,
//! then three replicas behind a client-side round robin), and counts the backend calls shared
//! invalid verdicts save when distinct invalid txs are each sent to three replicas.
//!
//! Run: `cargo bench --bench load` (options: `--secs N`, `--conns N`, `--only NAME`,
//! `--validation 'k = v'`, `--ingress 'k = v'`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use interop_gate::dev::chain::SimChain;
use interop_gate::dev::wallet::{dev_signer, sign_1559, TxSpec};
use interop_gate::interop::Message;

#[path = "support/child.rs"]
mod child;
#[path = "support/forwarder.rs"]
mod forwarder;
#[path = "support/peers.rs"]
mod peers;
#[path = "support/procs.rs"]
mod procs;
#[path = "support/self_usage.rs"]
mod self_usage;
use child::Child;
#[path = "support/shared.rs"]
mod shared;
use peers::{BLOCKS, LOGS_PER_BLOCK, SOURCE};
use procs::RoleProc;
use self_usage::cpu_secs;

/// The executing chain (the upstream's).
const CHAIN_ID: u64 = 10;

/// Extra `[validation]` keys for every gateway of the run (`--validation 'key = value'`), e.g.
/// `valid_cache_watched_ttl_secs = 2` to measure the short valid-verdict lifetime.
static VALIDATION_EXTRA: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Extra `[ingress]` keys for the five scenarios' gateways (`--ingress 'key = value'`), e.g.
/// `sender_rate = { per_second = 1000000, burst = 1000000 }`: a sender limit that never refuses
/// but makes the gateway recover every submission's sender (what it did before recovery became
/// lazy), to measure what lazy recovery saves with the same build.
static INGRESS_EXTRA: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The peers' call counters (see `support/peers.rs`).
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    upstream: u64,
    supervisor: u64,
    /// HTTP requests the supervisor received (a JSON-RPC batch of checks is one).
    supervisor_requests: u64,
    chain: u64,
    headers: u64,
    logs: u64,
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, b: Counts) -> Counts {
        Counts {
            upstream: self.upstream.saturating_sub(b.upstream),
            supervisor: self.supervisor.saturating_sub(b.supervisor),
            supervisor_requests: self.supervisor_requests.saturating_sub(b.supervisor_requests),
            chain: self.chain.saturating_sub(b.chain),
            headers: self.headers.saturating_sub(b.headers),
            logs: self.logs.saturating_sub(b.logs),
        }
    }
}

/// The instant peers, in a process of their own (`--role peers`), and a local copy of the
/// source chain (deterministic from the same `now`) to sign txs that declare its messages.
struct Peers {
    proc: RoleProc,
    chain: Arc<SimChain>,
}

impl Peers {
    async fn start() -> std::io::Result<Peers> {
        let now = interop_gate::clock::unix_now();
        let proc = RoleProc::start("peers", &["--now".into(), now.to_string()]);
        Ok(Peers { proc, chain: peers::preloaded_chain(now) })
    }

    fn upstream_url(&self) -> String {
        self.proc.field("upstream")
    }

    /// The peers' call counters so far.
    fn counts(&self) -> Counts {
        let v = self.proc.ask("counts");
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        Counts {
            upstream: n("upstream"),
            supervisor: n("supervisor"),
            supervisor_requests: n("supervisor_requests"),
            chain: n("chain"),
            headers: n("headers"),
            logs: n("logs"),
        }
    }

    /// Calls the validation peers received (supervisor checks + chain RPC calls).
    fn backend_calls(&self) -> u64 {
        let c = self.counts();
        c.supervisor + c.chain
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
        self.gateway_config_with(mode, INGRESS_EXTRA.get().map_or("", String::as_str), "")
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
{validation}
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
            validation = VALIDATION_EXTRA.get().map_or("", String::as_str),
            sup = self.proc.field("supervisor"),
            chain = self.proc.field("chain"),
        )
    }
}

/// One workload: what is sent, and whether caches are warmed first.
struct Scenario {
    name: &'static str,
    about: &'static str,
    bodies: Arc<Vec<Bytes>>,
    warm_up: bool,
    /// Each body is sent at most once (a cold run must not come round to cached verdicts).
    once: bool,
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
    let cold = interop((BLOCKS * LOGS_PER_BLOCK) as usize, 0);
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
            once: false,
        },
        Scenario {
            name: "interop-valid-cold",
            about: "60,000 distinct valid interop txs (1 message each, 100 per source block), caches cold, each sent once",
            bodies: Arc::new(cold),
            warm_up: false,
            once: true,
        },
        Scenario {
            name: "interop-valid-warm",
            about: "2,000 valid interop txs sent over and over: verdict cache warm",
            bodies: Arc::new(warm),
            warm_up: true,
            once: false,
        },
        Scenario {
            name: "interop-invalid-spam",
            about: "the same invalid interop tx (bad checksum) over and over",
            bodies: Arc::new(spam),
            warm_up: false,
            once: false,
        },
        Scenario {
            name: "mix",
            about: "50% transfers, 30% valid interop (warm), 20% invalid spam",
            bodies: Arc::new(mix),
            warm_up: true,
            once: false,
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
            "--ingress" => {
                let _ = INGRESS_EXTRA.set(next.unwrap_or_default().replace(';', "\n"));
            }
            "--validation" => {
                let _ = VALIDATION_EXTRA.set(next.unwrap_or_default().replace(';', "\n"));
            }
            // Helper roles are dispatched before the options are read.
            "--role" => return o,
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
    drive_with(urls, bodies, conns, secs, false).await
}

/// The load client's HTTP client: keep-alive HTTP/1.1, one pooled connection per worker.
fn load_client(conns: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(conns)
        .tcp_nodelay(true)
        .http1_only()
        .build()
        .expect("client")
}

/// [`drive_all`]; with `once`, the run also ends when every body has been sent once.
async fn drive_with(
    urls: &[String],
    bodies: Arc<Vec<Bytes>>,
    conns: usize,
    secs: u64,
    once: bool,
) -> Stats {
    let urls = Arc::new(urls.to_vec());
    let client = load_client(conns);
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
                if once && n >= bodies.len() {
                    break;
                }
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
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap_or_default());
    }
    timer.abort();
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
        "  {target:<18} {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  p999 {:>7.3} ms  ok {:>7} refused {:>7} failed {:>3}  backend calls/tx {:>6}  peak RSS {:>7}  vs base {:>6}",
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

/// One target measured on one scenario: the client's figures, the serving process's CPU per
/// request, and what the peers were asked meanwhile.
struct Measured {
    st: Stats,
    cpu_us_per_req: f64,
    calls: Counts,
}

impl Measured {
    fn sent(&self) -> f64 {
        (self.st.ok + self.st.refused + self.st.failed).max(1) as f64
    }
}

/// Drives `url` (served by process `pid`) with the scenario's bodies.
async fn measure(peers: &Peers, pid: u32, url: &str, sc: &Scenario, o: &Opts) -> Measured {
    if sc.warm_up {
        drive(url, sc.bodies.clone(), o.conns, 1).await;
    }
    let (before, cpu) = (peers.counts(), cpu_secs(pid));
    let st = drive_with(&[url.to_owned()], sc.bodies.clone(), o.conns, o.secs, sc.once).await;
    let cpu = cpu_secs(pid) - cpu;
    let calls = peers.counts() - before;
    let sent = (st.ok + st.refused + st.failed).max(1) as f64;
    Measured { st, cpu_us_per_req: cpu * 1e6 / sent, calls }
}

fn print_measured(target: &str, m: &Measured, rss: Option<f64>, base: Option<&Measured>) {
    println!(
        "  {target:<20} {:>8.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  CPU {:>6.1} us/req  ok {:>6} refused {:>6} failed {:>3}  backend calls/tx {:>6.3}  sup req/tx {:>5.3}  headers {:>5} logs {:>4}  RSS {:>9}  vs forwarder {:>6}",
        m.st.rps,
        m.st.p50.as_secs_f64() * 1e3,
        m.st.p99.as_secs_f64() * 1e3,
        m.cpu_us_per_req,
        m.st.ok,
        m.st.refused,
        m.st.failed,
        (m.calls.supervisor + m.calls.chain) as f64 / m.sent(),
        m.calls.supervisor_requests as f64 / m.sent(),
        m.calls.headers,
        m.calls.logs,
        rss.map_or("-".into(), |r| format!("{r:.1} MiB")),
        base.map_or("-".into(), |b| format!("{:.2}x", m.st.rps / b.st.rps.max(1.0))),
    );
}

/// What the goals compare, per scenario.
struct Outcome {
    forwarder: Measured,
    enforce: Measured,
}

/// Runs one scenario against: the upstream directly (CPU: the peers' process), the minimal
/// forwarder, the gateway in `bypass` mode and the gateway enforcing.
async fn run_scenario(peers: &Peers, fwd: &RoleProc, sc: &Scenario, o: &Opts) -> Outcome {
    println!("\n{} — {}", sc.name, sc.about);
    let direct = measure(peers, peers.proc.pid(), &peers.upstream_url(), sc, o).await;
    print_measured("upstream direct", &direct, None, None);
    let forwarder = measure(peers, fwd.pid(), &fwd.field("url"), sc, o).await;
    print_measured("minimal forwarder", &forwarder, None, Some(&forwarder));

    let bypass = Child::start(peers.gateway_config("bypass")).await;
    let b = measure(peers, bypass.pid(), &bypass.url(), sc, o).await;
    print_measured(
        "gateway bypass",
        &b,
        Some(bypass.status_kib("VmHWM") / 1024.0),
        Some(&forwarder),
    );
    drop(bypass);

    let gate = Child::start(peers.gateway_config("enforce")).await;
    let g = measure(peers, gate.pid(), &gate.url(), sc, o).await;
    print_measured(
        "gateway enforce",
        &g,
        Some(gate.status_kib("VmHWM") / 1024.0),
        Some(&forwarder),
    );
    println!(
        "  => enforce: {:.2}x forwarder, {:.2}x bypass; p99 {:+.3} ms over the forwarder",
        g.st.rps / forwarder.st.rps.max(1.0),
        g.st.rps / b.st.rps.max(1.0),
        (g.st.p99.as_secs_f64() - forwarder.st.p99.as_secs_f64()) * 1e3
    );
    Outcome { forwarder, enforce: g }
}

/// The issue's goals, from the same run.
fn goals(out: &HashMap<&'static str, Outcome>) {
    println!("\ngoals (throughput ratios, same run):");
    let verdict = |r: f64, goal: f64| if r >= goal { "met" } else { "NOT met" };
    if let Some(n) = out.get("non-interop") {
        let r = n.enforce.st.rps / n.forwarder.st.rps.max(1.0);
        println!(
            "  non-interop via gateway / minimal forwarder: {r:.2}x (goal >= 0.8: {})",
            verdict(r, 0.8)
        );
        for (name, goal) in [("interop-valid-warm", 0.9), ("interop-valid-cold", 0.7)] {
            if let Some(s) = out.get(name) {
                let r = s.enforce.st.rps / n.enforce.st.rps.max(1.0);
                println!(
                    "  {name} / non-interop (gateway enforce): {r:.2}x (goal >= {goal}: {}); CPU {:.1} vs {:.1} us/req",
                    verdict(r, goal),
                    s.enforce.cpu_us_per_req,
                    n.enforce.cpu_us_per_req
                );
            }
        }
    }
}

fn main() {
    // A helper process of this bench (peers, forwarder): serve and exit.
    match procs::role_arg() {
        Some((role, args)) if role == "peers" => return peers::run(&args),
        Some((role, args)) if role == "forwarder" => return forwarder::run(&args),
        Some((role, _)) => panic!("unknown role {role}"),
        None => {}
    }
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
        let fwd = RoleProc::start("forwarder", &["--upstream".into(), peers.upstream_url()]);
        let all = scenarios(&peers);
        let mut outcomes = HashMap::new();
        for sc in &all {
            if o.only.as_deref().is_some_and(|n| !sc.name.contains(n)) {
                continue;
            }
            outcomes.insert(sc.name, run_scenario(&peers, &fwd, sc, &o).await);
        }
        goals(&outcomes);
        if o.only.as_deref().is_none_or(|n| "shared".contains(n)) {
            shared::run(&peers, &all, &o).await;
        }
    });
}
