//! Revalidator benches: one full pass (sync, placement, batching by presumed block, verdicts)
//! over 10,000 and 100,000 pending txs (10% interop) against an in-process backend, plus its
//! parts (placement alone, `txpool_content` decoding).
//!
//! Scale (10k / 100k / 1M txs, 10% interop, and 1M interop txs all tracked): before the
//! timings, the bench re-runs itself once per size in a child process (`REVAL_MEM_TXS=n`,
//! `REVAL_MEM_PCT=p`) that fills a pool mirror, runs a first full pass, then five steady-state
//! rounds (2,000 announced txs decoded from JSON and mirrored, 2,000 inclusions, a near pass)
//! and one more full pass, all on the mirror as the follower's passes run (the store syncs by
//! the mirror's change log, a near pass walks only the near blocks), and prints the CPU time of each (`/proc/self/stat`) and its peak RSS
//! (`VmHWM`). A child per size keeps one size's peak out of the other's.
//!
//! Run: `cargo bench --bench revalidator`; the scale children alone:
//! `REVAL_ONLY_MEMORY=1 cargo bench --bench revalidator` (`REVAL_SIZES=1000000:10` picks sizes).

use std::sync::Arc;
use std::time::Instant;

#[path = "support/self_usage.rs"]
mod self_usage;
use self_usage::{cpu_ms, proc_status_kib};

use criterion::{BenchmarkId, Criterion};
use futures::future::BoxFuture;
use interop_gate::config::RevalidatorConfig;
use interop_gate::dev::el_pool::{generate_pool, MockTx};
use interop_gate::interop::access_list::{has_inbox_entries, inbox_entries};
use interop_gate::interop::Message;
use interop_gate::revalidator::mirror::PoolMirror;
use interop_gate::revalidator::placement::place;
use interop_gate::revalidator::pool::{
    decode_pool_tx, decode_txpool_content, Head, PoolSnapshot, PoolTx,
};
use interop_gate::revalidator::{PassKind, Revalidator};
use interop_gate::validation::{Backend, CheckRequest, Verdict};
use serde_json::{json, Value};

/// The binary's allocator (src/main.rs), so the bench's memory figures are what production sees.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HEAD: Head = Head { number: 1, timestamp: 1_000_000, base_fee: 100, gas_limit: 30_000_000 };

/// Valid for the asked window, at once: the bench measures the revalidator, not a backend.
struct InProcess;

impl Backend for InProcess {
    fn name(&self) -> &'static str {
        "in-process"
    }
    fn check<'a>(&'a self, req: &'a CheckRequest) -> BoxFuture<'a, Verdict> {
        Box::pin(async move { Verdict::Valid { until: req.descriptor.end().unwrap_or(u64::MAX) } })
    }
    fn check_batch<'a>(&'a self, reqs: &'a [CheckRequest]) -> BoxFuture<'a, Vec<Verdict>> {
        Box::pin(async move {
            reqs.iter()
                .map(|r| Verdict::Valid { until: r.descriptor.end().unwrap_or(u64::MAX) })
                .collect()
        })
    }
}

fn msg(i: usize) -> Message {
    let mut checksum = alloy_primitives::keccak256((i as u64).to_be_bytes());
    checksum.0[0] = 3;
    Message {
        chain_id: alloy_primitives::U256::from(901),
        block_number: i as u64,
        timestamp: 500_000,
        log_index: 0,
        checksum,
    }
}

fn mock_pool(n: usize) -> Vec<MockTx> {
    generate_pool(n / 20, 20, 10, |i| vec![msg(i)])
}

fn pool_tx(t: &MockTx) -> PoolTx {
    PoolTx {
        hash: t.hash,
        sender: t.from,
        nonce: t.nonce,
        gas: t.gas,
        fees: t.fees.clone(),
        inbox: has_inbox_entries(&t.access_list).then(|| inbox_entries(&t.access_list)),
    }
}

fn snapshot(n: usize) -> PoolSnapshot {
    PoolSnapshot {
        head: HEAD,
        txs: mock_pool(n).iter().map(pool_tx).collect(),
        ..Default::default()
    }
}

fn revalidator() -> Arc<Revalidator> {
    let cfg = RevalidatorConfig { max_checks_per_request: 100_000, ..Default::default() };
    Revalidator::new(cfg, Arc::new(InProcess))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// Pool tx `i` of sender `s` (nonce `n`), shaped like [`generate_pool`]'s; interop when
/// `interop` (one message).
fn gen_tx(s: usize, n: u64, i: usize, interop: bool) -> PoolTx {
    let mut addr = [0u8; 20];
    addr[12..20].copy_from_slice(&(s as u64 + 1).to_be_bytes());
    let from = alloy_primitives::Address::from(addr);
    let tip = 1 + (i as u128 * 7_919) % 100;
    PoolTx {
        hash: interop_gate::dev::el_pool::mock_hash(from, n, 0),
        sender: from,
        nonce: n,
        gas: 21_000 + (i as u64 % 5) * 20_000,
        fees: interop_gate::revalidator::pool::Fees::dynamic(1_000 + tip, tip),
        inbox: interop.then(|| interop_gate::interop::encode_entries(&[msg(i)])),
    }
}

/// Memory and steady-state CPU of a mirrored pool of `n` txs (`interop_pct` % interop), in a
/// child process of its own. A round is what one interval brings at steady state: `churn`
/// announced txs decoded from their JSON and mirrored, `churn` inclusions (by sender and nonce),
/// then a near pass on the mirror; a full pass is measured apart.
fn memory_child(n: usize, interop_pct: usize) {
    const PER_SENDER: usize = 20;
    const ROUNDS: usize = 5;
    let churn = 2_000usize;
    let senders = n / PER_SENDER;
    let every = 100 / interop_pct.max(1);
    let interop = |i: usize| i % every == 0;
    // The announcements of the rounds, prepared up front: new senders, nonce 0.
    let announced: Vec<Vec<String>> = (0..ROUNDS)
        .map(|r| {
            (0..churn)
                .map(|k| {
                    let i = n + r * churn + k;
                    let t = gen_tx(senders + r * churn + k, 0, i, interop(i));
                    let mock = MockTx {
                        hash: t.hash,
                        from: t.sender,
                        nonce: 0,
                        gas: t.gas,
                        fees: t.fees.clone(),
                        access_list: if interop(i) {
                            interop_gate::interop::build_access_list(&[msg(i)])
                        } else {
                            Default::default()
                        },
                    };
                    mock.to_json(10).to_string()
                })
                .collect()
        })
        .collect();
    let rss_before = proc_status_kib("VmRSS");
    let mut mirror = PoolMirror::new(n + ROUNDS * churn);
    mirror.follow_head(HEAD, Default::default(), Default::default(), &[]);
    let mut i = 0;
    for s in 0..senders {
        for nonce in 0..PER_SENDER as u64 {
            mirror.insert(gen_tx(s, nonce, i, interop(i)));
            i += 1;
        }
    }
    let cfg = RevalidatorConfig {
        max_checks_per_request: 100_000,
        max_tracked: n,
        max_pool_txs: n + ROUNDS * churn,
        ..Default::default()
    };
    let reval = Revalidator::new(cfg, Arc::new(InProcess));
    let rt = rt();
    let cpu = cpu_ms();
    let first = rt.block_on(reval.run_pass_on_mirror(&mut mirror, PassKind::Full, Instant::now()));
    let first_cpu = cpu_ms() - cpu;
    let cpu = cpu_ms();
    for (r, round) in announced.iter().enumerate() {
        for json in round {
            if let Some(tx) = decode_pool_tx(json) {
                mirror.insert(tx);
            }
        }
        // Inclusions: the lowest nonce of `churn` senders, spread over the pool.
        for k in 0..churn {
            let s = (k * 7_919) % senders.max(1);
            let mut addr = [0u8; 20];
            addr[12..20].copy_from_slice(&(s as u64 + 1).to_be_bytes());
            mirror.include(alloy_primitives::Address::from(addr), r as u64);
        }
        rt.block_on(reval.run_pass_on_mirror(&mut mirror, PassKind::Near, Instant::now()));
    }
    let round_cpu = (cpu_ms() - cpu) / ROUNDS as f64;
    let cpu = cpu_ms();
    let full = rt.block_on(reval.run_pass_on_mirror(&mut mirror, PassKind::Full, Instant::now()));
    let full_cpu = cpu_ms() - cpu;
    let hwm = proc_status_kib("VmHWM");
    // A periodic reconciliation: the EL's whole pool as `txpool_content` decodes it (every
    // interop tx with its inbox entries again; the decode's own cost is benches/reconcile.rs),
    // put in place of the mirror, then the pass after it (a new epoch: the store syncs over the
    // whole mirror once).
    let cpu = cpu_ms();
    mirror.begin_reconcile();
    // As the follower applies it: batch by batch as the read is decoded (here the read holds
    // every tx the mirror has, so nothing moves while it is applied).
    let read_batch = |m: &PoolMirror, from: usize| -> Vec<PoolTx> {
        let txs = &m.snapshot().txs;
        (from..txs.len().min(from + 4096))
            .map(|i| PoolTx {
                inbox: txs[i]
                    .inbox
                    .as_ref()
                    .map(|_| interop_gate::interop::encode_entries(&[msg(i)])),
                ..txs[i].clone()
            })
            .collect()
    };
    let mut from = 0;
    while from < mirror.len() {
        let batch = read_batch(&mirror, from);
        from += batch.len();
        mirror.apply_read(batch);
    }
    let repair = mirror.finish_reconcile(HEAD, Vec::new(), None);
    let after = rt.block_on(reval.run_pass_on_mirror(&mut mirror, PassKind::Full, Instant::now()));
    let reconcile_cpu = cpu_ms() - cpu;
    let hwm_reconciled = proc_status_kib("VmHWM");
    println!(
        "{n} txs, {interop_pct}% interop: {} tracked, {} presumed blocks; first full pass \
         {first_cpu:.0} ms CPU; steady-state round ({churn} announced + {churn} included + near \
         pass) {round_cpu:.0} ms CPU; full pass {full_cpu:.0} ms CPU ({} checks); RSS before the \
         pool {} MiB, peak RSS {} MiB; a reconciliation (the decoded read put in place + the \
         full pass after it, {} tracked) {reconcile_cpu:.0} ms CPU, peak RSS with it {} MiB",
        full.tracked,
        full.presumed_blocks,
        full.txs_checked,
        rss_before / 1024,
        hwm / 1024,
        after.tracked,
        hwm_reconciled / 1024,
    );
    assert_eq!(repair, Default::default(), "the read holds what the mirror holds");
    assert_eq!(first.tracked, first.txs_checked);
}

fn report_memory() {
    let Ok(exe) = std::env::current_exe() else { return };
    let sizes: Vec<(usize, usize)> = match std::env::var("REVAL_SIZES").ok() {
        Some(v) => v
            .split(',')
            .filter_map(|p| p.split_once(':'))
            .filter_map(|(n, pct)| Some((n.parse().ok()?, pct.parse().ok()?)))
            .collect(),
        None => vec![(10_000, 10), (100_000, 10), (1_000_000, 10), (1_000_000, 100)],
    };
    for (n, pct) in sizes {
        let out = std::process::Command::new(&exe)
            .env("REVAL_MEM_TXS", n.to_string())
            .env("REVAL_MEM_PCT", pct.to_string())
            .output();
        match out {
            Ok(out) => print!("mirror: {}", String::from_utf8_lossy(&out.stdout)),
            Err(e) => eprintln!("memory child for {n} txs failed: {e}"),
        }
    }
}

fn content_json(pool: &[MockTx]) -> String {
    let mut pending = serde_json::Map::new();
    for t in pool {
        let by_nonce = pending.entry(t.from.to_string()).or_insert_with(|| json!({}));
        if let Value::Object(m) = by_nonce {
            m.insert(t.nonce.to_string(), t.to_json(10));
        }
    }
    json!({ "pending": pending, "queued": {} }).to_string()
}

fn benches(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("revalidator_full_pass");
    g.sample_size(10);
    for n in [10_000usize, 100_000] {
        let snap = snapshot(n);
        let reval = revalidator();
        // Steady state: the store already tracks the pool, as on every pass but the first.
        rt.block_on(reval.run_pass_on(&snap, PassKind::Full, Instant::now()));
        g.bench_with_input(BenchmarkId::from_parameter(n), &snap, |b, snap| {
            b.iter(|| rt.block_on(reval.run_pass_on(snap, PassKind::Full, Instant::now())))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("revalidator_parts");
    g.sample_size(10);
    let snap = snapshot(100_000);
    g.bench_function("placement_100000", |b| {
        b.iter(|| place(&snap.txs, HEAD.base_fee, HEAD.gas_limit - 100_000))
    });
    let json = content_json(&mock_pool(100_000));
    g.bench_function("decode_txpool_content_100000", |b| {
        b.iter(|| decode_txpool_content(&json, 200_000).map(|(txs, _, _)| txs.len()))
    });
    g.finish();
}

fn main() {
    if let Some(n) = std::env::var("REVAL_MEM_TXS").ok().and_then(|v| v.parse().ok()) {
        let pct = std::env::var("REVAL_MEM_PCT").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
        memory_child(n, pct);
        return;
    }
    // `REVAL_ONLY_MEMORY=1`: the per-size children only (the 1M figures), no criterion runs.
    if std::env::var("REVAL_ONLY_MEMORY").is_ok() {
        report_memory();
        return;
    }
    // Only when benchmarking for real (`cargo bench`), not in `cargo test --benches` smoke runs.
    if std::env::args().any(|a| a == "--bench") {
        report_memory();
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
