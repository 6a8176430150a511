//! `interop-gate dev`: the whole thing in one process with no infrastructure. Two simulated L2
//! chains produce blocks with logs; the light-mode supervisor endpoint serves them; the ingress
//! validates against that endpoint (indexed) and the chains (light) and forwards to chain B;
//! the revalidator watches chain B's pool; a traffic generator sends a mix of valid, invalid,
//! not-yet-known and non-interop transactions, and a one-line summary is printed every few
//! seconds. Chain B keeps txs in its pool for [`POOL_WAIT_BLOCKS`] blocks, and one tx in
//! [`DOOMED_EVERY`] is valid when sent but has its initiating message reorged away by chain A
//! while it waits, so the revalidator tracks txs, finds some invalid and publishes them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::Bytes;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::chain::SimChain;
use super::wallet::{dev_signer, sign_1559, TxSpec};
use super::{endpoint, light_chain, spawn_peer, spawn_ws_peer, Peer};
use crate::app::{self, Running};
use crate::interop::Message;
use crate::metrics::metrics;

/// The source chain (messages are initiated here).
pub const CHAIN_A: u64 = 901;
/// The executing chain (the ingress forwards here, the revalidator watches its pool).
pub const CHAIN_B: u64 = 902;

/// Blocks a tx waits in chain B's pool (6 s at 2 s blocks: about three revalidator passes).
pub const POOL_WAIT_BLOCKS: u64 = 3;

/// One tx in this many is "doomed": valid when sent, then chain A reorgs its initiating message
/// away while it waits in chain B's pool (the revalidator publishes it invalid).
const DOOMED_EVERY: u64 = 40;

/// Options of `interop-gate dev`.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Stop after this long (None: until Ctrl-C).
    pub duration: Option<Duration>,
    /// Transactions per second the generator sends.
    pub tx_per_sec: u64,
    /// Seconds between summary lines.
    pub summary_every: Duration,
}

impl Default for DevOptions {
    fn default() -> Self {
        Self { duration: None, tx_per_sec: 5, summary_every: Duration::from_secs(5) }
    }
}

/// What the generator saw, by kind and outcome.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    accepted: AtomicU64,
    refused_invalid: AtomicU64,
    refused_not_yet_known: AtomicU64,
    refused_other: AtomicU64,
    wrong_verdicts: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Valid,
    Invalid,
    NotYetKnown,
    NonInterop,
    /// Valid when sent; chain A then reorgs its message away.
    Doomed,
}

/// Runs the devnet until Ctrl-C (or `opts.duration`), printing addresses and summaries on
/// stdout. Returns the final summary line.
pub async fn run(opts: DevOptions, stop: CancellationToken) -> Result<String, String> {
    let genesis = crate::clock::unix_now().saturating_sub(60);
    let a = SimChain::new(CHAIN_A, genesis, 2);
    let b = SimChain::new(CHAIN_B, genesis, 2);
    let io = |e: std::io::Error| e.to_string();
    let peer_a = spawn_peer("chain-a", a.clone(), "127.0.0.1:0").await.map_err(io)?;
    // Chain B also speaks WebSocket, as op-geth does: the revalidator mirrors its pool.
    let peer_b = spawn_ws_peer("chain-b", b.clone(), "127.0.0.1:0").await.map_err(io)?;
    // Chain B is busy: a tx waits a few blocks in its pool, so the revalidator tracks it.
    b.set_pool_wait(POOL_WAIT_BLOCKS);
    for c in [a.clone(), b.clone()] {
        tokio::spawn(c.mine(4, stop.clone()));
    }

    // 1. The light-mode supervisor endpoint over both chains.
    let mut sup_cfg = super::loopback_config();
    sup_cfg.ingress.enabled = false;
    sup_cfg.metrics.listen = None;
    sup_cfg.admin.listen = None;
    sup_cfg.light_server.enabled = true;
    sup_cfg.light.chains =
        vec![light_chain(CHAIN_A, &[peer_a.url()]), light_chain(CHAIN_B, &[peer_b.url()])];
    let sup = app::start(sup_cfg, stop.clone()).await.map_err(|e| e.to_string())?;
    let sup_url = format!("http://{}/", sup.light_server_addr.ok_or("light server address")?);

    // 2. The gateway: ingress (indexed = that endpoint, light = the chains) and revalidator.
    let mut cfg = super::loopback_config();
    cfg.upstream.url = super::parse_url(&peer_b.url());
    cfg.ingress.chain_id = CHAIN_B;
    cfg.supervisor.endpoints = vec![endpoint("light-supervisor", sup_url.clone())];
    cfg.light.chains =
        vec![light_chain(CHAIN_A, &[peer_a.url()]), light_chain(CHAIN_B, &[peer_b.url()])];
    cfg.revalidator.enabled = true;
    cfg.revalidator.el_url = super::parse_url(&peer_b.url());
    cfg.revalidator.el_ws_url = Some(super::parse_url(&peer_b.ws_url()));
    cfg.revalidator.chain_id = Some(CHAIN_B);
    let gate = app::start(cfg, stop.clone()).await.map_err(|e| e.to_string())?;
    print_addresses(&gate, &sup_url, &peer_a, &peer_b);

    let tally = Arc::new(Tally::default());
    let gen = tokio::spawn(generate(
        a.clone(),
        gate_url(&gate)?,
        opts.tx_per_sec,
        tally.clone(),
        stop.clone(),
    ));
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let mut tick = tokio::time::interval(opts.summary_every);
    tick.tick().await;
    let reval = gate.revalidator_addr.map(|a| format!("http://{a}/"));
    // The last status the revalidator gave: on Ctrl-C it shuts down with the rest of the
    // gateway before the final line is written, and that line should still say what it did.
    let mut seen = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => println!("{}", summary(&tally, reval.as_deref(), &mut seen).await),
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
        }
    }
    let last = summary(&tally, reval.as_deref(), &mut seen).await;
    stop.cancel();
    let _ = gen.await;
    gate.wait().await;
    sup.wait().await;
    drop((peer_a, peer_b));
    Ok(last)
}

fn gate_url(gate: &Running) -> Result<String, String> {
    Ok(format!("http://{}/", gate.rpc_addr.ok_or("ingress address")?))
}

fn print_addresses(gate: &Running, sup_url: &str, a: &Peer, b: &Peer) {
    let show = |x: Option<std::net::SocketAddr>| x.map_or("-".into(), |a| format!("http://{a}/"));
    println!("interop-gate dev: two simulated chains, blocks every 2 s, Ctrl-C stops");
    println!("  ingress (send txs here)      {}", show(gate.rpc_addr));
    println!("  light supervisor endpoint    {sup_url}");
    println!("  revalidator (EL-facing API)  {}", show(gate.revalidator_addr));
    println!("  metrics /metrics /readyz     {}", show(gate.metrics_addr));
    println!("  admin API                    {}", show(gate.admin_addr));
    println!("  chain A ({CHAIN_A}) RPC           {}", a.url());
    println!("  chain B ({CHAIN_B}) RPC (upstream) {}", b.url());
}

async fn summary(t: &Tally, reval: Option<&str>, seen: &mut Option<String>) -> String {
    let retries: u64 = ["accepted", "invalid", "still_unknown", "unavailable", "queue_full"]
        .iter()
        .map(|o| metrics().retries.with_label_values(&[o]).get())
        .sum();
    let invalid_found = match reval {
        Some(url) => match (revalidator_status(url).await, seen.as_ref()) {
            (Some(now), _) => seen.insert(now).clone(),
            (None, Some(last)) => format!("{last} (its last answer; it has stopped)"),
            (None, None) => "unreachable".into(),
        },
        None => "-".into(),
    };
    format!(
        "sent {} | accepted {} | refused: invalid {}, not-yet-known {}, other {} | retried {} | \
         unexpected verdicts {} | revalidator: {}",
        t.sent.load(Ordering::Relaxed),
        t.accepted.load(Ordering::Relaxed),
        t.refused_invalid.load(Ordering::Relaxed),
        t.refused_not_yet_known.load(Ordering::Relaxed),
        t.refused_other.load(Ordering::Relaxed),
        retries,
        t.wrong_verdicts.load(Ordering::Relaxed),
        invalid_found,
    )
}

/// The revalidator's counts, `None` when it does not answer.
async fn revalidator_status(url: &str) -> Option<String> {
    let body = json!({"jsonrpc":"2.0","id":1,"method":"interop_revalidationStatus","params":[]});
    let resp = reqwest::Client::new().post(url).json(&body).send().await.ok()?;
    let v: Value = resp.json().await.ok()?;
    let r = v.get("result")?;
    let cursor = |c: &Value| {
        c.as_str()
            .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0)
    };
    let feed = cursor(&r["feed"]["nextCursor"]).saturating_sub(cursor(&r["feed"]["oldestCursor"]));
    let published: u64 = crate::metrics::labels::REVALIDATOR_INVALID
        .iter()
        .map(|l| metrics().revalidator_invalid.with_label_values(&[l]).get())
        .sum();
    let mirror = match r["mirror"]["mode"].as_str() {
        Some(mode) => format!("pool mirror: {mode}, {} txs", r["mirror"]["txs"]),
        None => "no pool mirror".into(),
    };
    Some(format!(
        "{} passes, {} tracked, {published} invalid published, {feed} feed entries, {mirror}",
        r["passes"], r["tracked"]
    ))
}

/// Sends the traffic mix through the ingress and tallies the answers.
async fn generate(
    a: Arc<SimChain>,
    url: String,
    per_sec: u64,
    tally: Arc<Tally>,
    stop: CancellationToken,
) {
    let client = reqwest::Client::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1_000 / per_sec.max(1)));
    let mut nonces = [0u64; 5];
    let mut i = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        i += 1;
        let kind = match i % 4 {
            _ if i % DOOMED_EVERY == 0 => Kind::Doomed,
            0 => Kind::Valid,
            1 => Kind::Invalid,
            2 => Kind::NotYetKnown,
            _ => Kind::NonInterop,
        };
        // A message at least two blocks old (older than a second, so executable now).
        let head = a.head().number;
        let Some(m) = head.checked_sub(2).and_then(|n| a.message(n, (i % 4) as usize)) else {
            continue;
        };
        let key = kind as usize;
        let spec = match kind {
            Kind::Valid | Kind::Doomed => TxSpec::interop(CHAIN_B, nonces[key], &[m]),
            Kind::Invalid => {
                let mut bad = m;
                bad.checksum.0[31] ^= 0xff;
                TxSpec::interop(CHAIN_B, nonces[key], &[bad])
            }
            Kind::NotYetKnown => {
                let future = Message { block_number: head + 1_000, ..m };
                TxSpec::interop(CHAIN_B, nonces[key], &[future])
            }
            Kind::NonInterop => TxSpec::transfer(CHAIN_B, nonces[key]),
        };
        let (raw, _) = sign_1559(&dev_signer(10 + key as u64), &spec);
        // The simulated chain does not enforce nonces; advancing them keeps hashes distinct.
        nonces[key] += 1;
        tally.sent.fetch_add(1, Ordering::Relaxed);
        let (client, url, tally) = (client.clone(), url.clone(), tally.clone());
        if kind == Kind::Doomed {
            // Once the tx waits in B's pool (a block later), chain A replaces the message's
            // block: the light backend's reorg watch sees it and the revalidator re-checks.
            let (a, stop) = (a.clone(), stop.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_millis(2_500)) => a.reorg(m.block_number),
                }
            });
        }
        // Not-yet-known answers take the re-test delay: never let them slow the others.
        tokio::spawn(async move {
            let outcome = send(&client, &url, &raw).await;
            let expected = match (&outcome, kind) {
                (Ok(()), k) => {
                    tally.accepted.fetch_add(1, Ordering::Relaxed);
                    matches!(k, Kind::Valid | Kind::NonInterop | Kind::Doomed)
                }
                (Err(code), k) => {
                    let counter = match *code {
                        -321401 => &tally.refused_not_yet_known,
                        c if c <= -320000 => &tally.refused_invalid,
                        _ => &tally.refused_other,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    matches!((k, *code), (Kind::Invalid, -320600) | (Kind::NotYetKnown, -321401))
                }
            };
            if !expected {
                tally.wrong_verdicts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(?kind, ?outcome, "unexpected verdict in dev traffic");
            }
        });
    }
}

async fn send(client: &reqwest::Client, url: &str, raw: &Bytes) -> Result<(), i64> {
    let body = json!({"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":[raw]});
    let resp = client.post(url).json(&body).send().await.map_err(|_| 0)?;
    let v: Value = resp.json().await.map_err(|_| 0)?;
    match v["error"]["code"].as_i64() {
        Some(c) => Err(c),
        None => Ok(()),
    }
}
