//! Revalidator benches: one full pass (sync, placement, batching by presumed block, verdicts)
//! over 10,000 and 100,000 pending txs (10% interop) against an in-process backend, plus its
//! parts (placement alone, `txpool_content` decoding).
//!
//! Peak memory: before the timings, the bench re-runs itself once per pool size in a child
//! process (`REVAL_MEM_TXS=n`) that builds the pool, runs two full passes and prints its
//! `VmRSS` before the revalidator exists and its `VmHWM` (peak RSS) after the passes, both
//! read from `/proc/self/status`. A child per size keeps one size's peak out of the other's.
//!
//! Run: `cargo bench --bench revalidator`.

use std::sync::Arc;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion};
use futures::future::BoxFuture;
use interop_gate::config::RevalidatorConfig;
use interop_gate::dev::el_pool::{generate_pool, MockTx};
use interop_gate::interop::access_list::{has_inbox_entries, inbox_entries};
use interop_gate::interop::Message;
use interop_gate::revalidator::placement::place;
use interop_gate::revalidator::pool::{decode_txpool_content, Head, PoolSnapshot, PoolTx};
use interop_gate::revalidator::{PassKind, Revalidator};
use interop_gate::validation::{Backend, CheckRequest, Verdict};
use serde_json::{json, Value};

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
        fees: t.fees,
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

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn memory_child(n: usize) {
    let snap = snapshot(n);
    let rss_before = proc_status_kib("VmRSS:");
    let reval = revalidator();
    let rt = rt();
    let start = Instant::now();
    let first = rt.block_on(reval.run_pass_on(&snap, PassKind::Full, Instant::now()));
    let first_ms = start.elapsed().as_secs_f64() * 1e3;
    let report = rt.block_on(reval.run_pass_on(&snap, PassKind::Full, Instant::now()));
    let hwm = proc_status_kib("VmHWM:");
    println!(
        "{n} txs: {} interop, {} presumed blocks, {} requests; first pass {first_ms:.1} ms; \
         RSS with the pool alone {} MiB, peak RSS after two full passes {} MiB",
        report.tracked,
        report.presumed_blocks,
        report.requests,
        rss_before / 1024,
        hwm / 1024,
    );
    assert_eq!(first.txs_checked, n / 10);
}

fn report_memory() {
    let Ok(exe) = std::env::current_exe() else { return };
    for n in [10_000usize, 100_000] {
        match std::process::Command::new(&exe).env("REVAL_MEM_TXS", n.to_string()).output() {
            Ok(out) => print!("memory: {}", String::from_utf8_lossy(&out.stdout)),
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
        memory_child(n);
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
