//! The load benchmark's `shared` part (needs `redis-server` on PATH): replicas sharing state
//! through a real Redis, measured against the local limiter in the same run.
//!
//! 1. The in-process cost of one shared rate-limit decision (one script call, two buckets).
//! 2. For the `non-interop` and `mix` workloads: the local limiter and Redis-shared limits, exact
//!    (`lease_max_tokens = 1`: one script call per decision) and with token leases (the
//!    default), on one replica and on three replicas behind a client-side round robin (each
//!    compared with the local limiter on as many replicas), limits set so high that every bucket
//!    is evaluated and none refuses. Redis's own `INFO commandstats` gives the script calls per
//!    request, `/proc/<pid>/stat` the CPU per request of the gateways and of redis-server.
//! 3. Shared verdicts: distinct invalid txs, each sent once to each of three replicas (exactly
//!    once through the list, not time-based), with and without shared verdicts: the backend
//!    calls each costs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use interop_gate::dev::redis_server::RedisServer;
use interop_gate::dev::wallet::{dev_signer, sign_1559, TxSpec};

use super::child::Child;
use super::self_usage::cpu_secs;
use super::{body, drive_all, quantile, row, Opts, Peers, Scenario, Stats, CHAIN_ID};

/// Limits high enough never to refuse, so every bucket is evaluated on every call.
const WIDE_LIMITS: &str = r#"ip_rate = { per_second = 1000000, burst = 1000000 }
sender_rate = { per_second = 1000000, burst = 1000000 }
interop_sender_rate = { per_second = 1000000, burst = 1000000 }"#;

/// Starts `n` gateways with the same config.
async fn replicas(config: &str, n: usize) -> (Vec<Child>, Vec<String>) {
    let mut children = Vec::new();
    for _ in 0..n {
        children.push(Child::start(config.to_owned()).await);
    }
    let urls = children.iter().map(|c| c.url()).collect();
    (children, urls)
}

/// The cost of one shared rate-limit decision (IP + method buckets, one script call) measured
/// in-process, without HTTP: sequential, then `conns` concurrent callers on the multiplexed
/// connections.
async fn decision_latency(redis: &RedisServer, conns: usize) {
    use interop_gate::config::{RateLimit, RedisConfig};
    use interop_gate::shared_state::rate::SharedBucket;
    use interop_gate::shared_state::SharedState;
    let cfg = RedisConfig {
        url: Some(interop_gate::dev::parse_url(&redis.url())),
        timeout_ms: std::time::Duration::from_millis(2_000),
        ..Default::default()
    };
    let Ok(Some(state)) = SharedState::from_config(&cfg) else { return };
    fn buckets(state: &SharedState, i: usize) -> Vec<SharedBucket> {
        let limit = RateLimit { per_second: 1_000_000, burst: 1_000_000 };
        vec![
            SharedBucket { key: state.key(&format!("bench:ip:{}", i % 1000)), limit },
            SharedBucket { key: state.key("bench:m:eth_sendRawTransaction"), limit },
        ]
    }
    let _ = state.take_many("rate_limit", &buckets(&state, 0), &[1, 1]).await;
    let mut lat = Vec::with_capacity(5_000);
    for i in 0..5_000 {
        let t = Instant::now();
        let _ = state.take_many("rate_limit", &buckets(&state, i), &[1, 1]).await;
        lat.push(t.elapsed().as_micros() as u32);
    }
    lat.sort_unstable();
    println!(
        "\nshared limit decision (Redis script, 2 buckets), in-process: sequential p50 {:.3} ms p99 {:.3} ms",
        quantile(&lat, 0.5).as_secs_f64() * 1e3,
        quantile(&lat, 0.99).as_secs_f64() * 1e3
    );
    let started = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|w| {
            let state = state.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1_000);
                for i in 0..1_000 {
                    let t = Instant::now();
                    let _ = state
                        .take_many("rate_limit", &buckets(&state, w * 1_000 + i), &[1, 1])
                        .await;
                    lat.push(t.elapsed().as_micros() as u32);
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all.sort_unstable();
    println!(
        "  {conns} concurrent callers: {:.0} decisions/s, p50 {:.3} ms p99 {:.3} ms",
        all.len() as f64 / started.elapsed().as_secs_f64(),
        quantile(&all, 0.5).as_secs_f64() * 1e3,
        quantile(&all, 0.99).as_secs_f64() * 1e3
    );
}

/// Redis commands run so far, by kind: `evalsha` (rate decisions: one per request that has
/// limits), `get`+`mget` and `set`. Redis also counts the `GET`/`SET` the rate script runs inside,
/// so the last two are verdict lookups and writes only where no rate limit is set.
async fn commands(redis: &RedisServer) -> [u64; 3] {
    let n = |c: &'static str| async move { redis.command_calls(c).await.unwrap_or(0) };
    [n("evalsha").await, n("get").await + n("mget").await, n("set").await]
}

/// Sends every body exactly once over `conns` workers, body `i` to `urls[i % urls.len()]`.
async fn send_all(urls: &[String], bodies: Arc<Vec<Bytes>>, conns: usize) -> u64 {
    let client = super::load_client(conns);
    let urls = Arc::new(urls.to_vec());
    let (next, answered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let (client, urls, bodies) = (client.clone(), urls.clone(), bodies.clone());
            let (next, answered) = (next.clone(), answered.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(b) = bodies.get(i) else { return };
                    let sent = client
                        .post(&urls[i % urls.len()])
                        .header("content-type", "application/json")
                        .body(b.clone())
                        .send()
                        .await;
                    if let Ok(r) = sent {
                        if r.bytes().await.is_ok() {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    answered.load(Ordering::Relaxed)
}

fn compare(label: &str, st: &Stats, base: &Stats, base_label: &str) {
    println!(
        "  => {label}: throughput {:.2}x of {base_label}, p50 {:+.3} ms, p99 {:+.3} ms over it",
        st.rps / base.rps.max(1.0),
        (st.p50.as_secs_f64() - base.p50.as_secs_f64()) * 1e3,
        (st.p99.as_secs_f64() - base.p99.as_secs_f64()) * 1e3
    );
}

/// Local limiter vs limits shared through Redis (same workloads, same run), then the backend
/// calls shared invalid verdicts save.
pub async fn run(peers: &Peers, scenarios: &[Scenario], o: &Opts) {
    let redis = match RedisServer::start().await {
        Ok(r) => r,
        Err(e) => {
            println!("\nshared: skipped ({e})");
            return;
        }
    };
    decision_latency(&redis, o.conns).await;
    // A generous Redis timeout: on a loaded machine a 50 ms bound would make replicas fall back
    // to local limits (on_error) and the run would measure the fallback, not the sharing.
    let tail = |share: bool, lease: u32| {
        format!(
            "[redis]\nurl = \"{}\"\ntimeout_ms = 2000\nshare_verdicts = {share}\nlease_max_tokens = {lease}\n",
            redis.url()
        )
    };
    let default_lease = interop_gate::config::RedisConfig::default().lease_max_tokens;
    for sc in scenarios.iter().filter(|s| s.name == "non-interop" || s.name == "mix") {
        println!(
            "\nshared limits, {} — {} (limits never refuse: every bucket is checked)",
            sc.name, sc.about
        );
        let mut locals: Vec<(usize, Stats)> = Vec::new();
        // `lease`: None = local limiter; Some(1) = exact (one script call per decision);
        // the default = token leases.
        for (label, lease, n) in [
            ("local limiter x1", None, 1),
            ("redis exact x1", Some(1), 1),
            ("redis leases x1", Some(default_lease), 1),
            ("local limiter x3", None, 3),
            ("redis exact x3", Some(1), 3),
            ("redis leases x3", Some(default_lease), 3),
        ] {
            let shared = lease.is_some();
            let redis_section = lease.map(|l| tail(true, l)).unwrap_or_default();
            let cfg = peers.gateway_config_with("enforce", WIDE_LIMITS, &redis_section);
            let (children, urls) = replicas(&cfg, n).await;
            if sc.warm_up {
                drive_all(&urls, sc.bodies.clone(), o.conns, 1).await;
            }
            let cpu = || -> (f64, f64) {
                let gw = children.iter().map(|c| cpu_secs(c.pid())).sum();
                (gw, redis.pid().map_or(0.0, cpu_secs))
            };
            let (before, cpu0) = (commands(&redis).await, cpu());
            let st = drive_all(&urls, sc.bodies.clone(), o.conns, o.secs).await;
            let (after, cpu1) = (commands(&redis).await, cpu());
            row(label, &st, None, Some(children[0].status_kib("VmHWM") / 1024.0), None);
            let reqs = (st.ok + st.refused + st.failed).max(1) as f64;
            println!(
                "  => CPU per request: gateways {:.1} µs, redis-server {:.1} µs",
                (cpu1.0 - cpu0.0) / reqs * 1e6,
                (cpu1.1 - cpu0.1) / reqs * 1e6
            );
            if shared {
                let per = |k: usize| after[k].saturating_sub(before[k]) as f64 / reqs;
                println!(
                    "  => Redis script calls per request: {:.3} (decisions and lease fetches)",
                    per(0)
                );
                if let Some((_, base)) = locals.iter().find(|(m, _)| *m == n) {
                    compare(label, &st, base, &format!("local limiter x{n}"));
                }
            } else {
                locals.push((n, st));
            }
        }
    }

    // Distinct invalid txs in blocks of `group`: each block is sent three times in a row, each
    // copy of a tx to another replica (`group` is not a multiple of 3) and `group` requests
    // after the previous copy (4x the connections in flight, so the first replica's verdict is
    // stored before the next asks). Each body is sent exactly once.
    let mut group = (o.conns * 4).max(32);
    if group % 3 == 0 {
        group += 1;
    }
    let distinct = group * 8;
    let signer = dev_signer(7_000);
    let txs: Vec<Bytes> = (0..distinct)
        .map(|i| {
            let mut bad = peers.message(50_000 + i as u64);
            bad.checksum.0[31] ^= 1;
            body(&sign_1559(&signer, &TxSpec::interop(CHAIN_ID, i as u64, &[bad])).0, i)
        })
        .collect();
    let bodies: Vec<Bytes> =
        txs.chunks(group).flat_map(|block| [block, block, block].concat()).collect();
    let bodies = Arc::new(bodies);
    println!(
        "\nshared verdicts — {distinct} distinct invalid txs, each sent once to each of 3 replicas (copies {group} requests apart)"
    );
    let mut calls_local: f64 = 0.0;
    for (label, share) in [("3 replicas, local", false), ("3 replicas, shared", true)] {
        let cfg = peers.gateway_config_with("enforce", "", &tail(share, default_lease));
        let (_children, urls) = replicas(&cfg, 3).await;
        let (before, cmds) = (peers.backend_calls(), commands(&redis).await);
        let started = Instant::now();
        let answered = send_all(&urls, bodies.clone(), o.conns).await;
        let secs = started.elapsed().as_secs_f64();
        let calls = peers.backend_calls().saturating_sub(before) as f64;
        let after = commands(&redis).await;
        println!(
            "  {label:<18} {answered} requests answered in {secs:.2} s ({:.0} req/s); backend calls {calls:.0} = {:.2} per distinct tx, {:.2} per request; Redis verdict lookups {} writes {}",
            answered as f64 / secs,
            calls / distinct as f64,
            calls / (answered.max(1) as f64),
            after[1] - cmds[1],
            after[2] - cmds[2],
        );
        if share {
            println!(
                "  => shared verdicts saved {:.0}% of backend calls ({:.2} vs {:.2} per distinct tx; 1 of 3 copies asking = 67% is the ceiling)",
                (1.0 - calls / calls_local.max(f64::MIN_POSITIVE)) * 100.0,
                calls / distinct as f64,
                calls_local / distinct as f64,
            );
        } else {
            calls_local = calls;
        }
    }
}
