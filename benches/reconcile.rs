//! Peak memory and CPU of one full `txpool_content` read (the mirror's reconciliation): the
//! whole-body read (`call_raw` + `decode_txpool_content`, what `ElPool` did before) against the
//! streamed one (`pool_stream::read_txpool_content`, what it does now), and a plain drain of
//! the body (what the HTTP transfer alone costs).
//!
//! The parent writes a generated pool's answer (10% interop, 20 txs per sender, as
//! benches/revalidator.rs) to a temp file, then runs each read in its own child process: the
//! child serves the file from an in-process HTTP server that reads it 64 KiB at a time (so the
//! server holds no copy and the client really streams), reads it once, and prints its peak RSS
//! (`VmHWM`) and CPU. Medians of `RECONCILE_RUNS` (default 3) runs.
//!
//! ```text
//! cargo bench --bench reconcile                         # 1M txs
//! RECONCILE_TXS=100000 cargo bench --bench reconcile    # another size
//! ```

use std::io::{BufWriter, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

#[path = "support/self_usage.rs"]
mod self_usage;
use self_usage::{cpu_ms, proc_status_kib};

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Router;
use interop_gate::dev::el_pool::generate_pool;
use interop_gate::interop::Message;
use interop_gate::revalidator::pool::decode_txpool_content;
use interop_gate::revalidator::pool_stream::read_txpool_content;
use interop_gate::rpc::client::http_client;
use interop_gate::rpc::RpcClient;

const MODES: [&str; 3] = ["drain", "whole", "stream"];

fn msg(i: usize) -> Message {
    let mut checksum = alloy_primitives::keccak256((i as u64).to_be_bytes());
    checksum.0[0] = 3;
    Message {
        chain_id: alloy_primitives::U256::from(901),
        block_number: i as u64,
        timestamp: 500_000 + i as u64,
        log_index: (i % 7) as u32,
        checksum,
    }
}

/// Writes the JSON-RPC answer (id 1: a fresh client's first call) holding `n` pending txs.
fn write_answer(path: &Path, n: usize) -> std::io::Result<u64> {
    let pool = generate_pool(n.div_ceil(20), 20, 10, |i| vec![msg(i)]);
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    w.write_all(br#"{"jsonrpc":"2.0","id":1,"result":{"pending":{"#)?;
    for (s, txs) in pool.chunks(20).enumerate() {
        if s > 0 {
            w.write_all(b",")?;
        }
        write!(w, "\"{}\":{{", txs[0].from.to_checksum(None))?;
        for (k, t) in txs.iter().enumerate() {
            if k > 0 {
                w.write_all(b",")?;
            }
            write!(w, "\"{}\":", t.nonce)?;
            serde_json::to_writer(&mut w, &t.to_json(10))?;
        }
        w.write_all(b"}")?;
    }
    w.write_all(br#"},"queued":{}}}"#)?;
    w.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// Serves `path` to every POST, 64 KiB at a time, with its length.
async fn serve_file(path: String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().fallback(move || {
        let path = path.clone();
        async move {
            let file = std::fs::File::open(&path).expect("answer file");
            let len = file.metadata().expect("metadata").len();
            let chunks = futures::stream::unfold(file, |mut f| async move {
                let mut buf = vec![0u8; 64 * 1024];
                match f.read(&mut buf) {
                    Ok(0) => None,
                    Ok(k) => {
                        buf.truncate(k);
                        Some((Ok::<_, std::io::Error>(Bytes::from(buf)), f))
                    }
                    Err(e) => Some((Err(e), f)),
                }
            });
            ([(header::CONTENT_LENGTH, len.to_string())], Body::from_stream(chunks)).into_response()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// One read in this process; prints `mode txs wall_ms cpu_ms hwm_mib base_hwm_mib`.
fn child(mode: &str, path: String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let addr = serve_file(path).await;
        let url = reqwest::Url::parse(&format!("http://{addr}/")).expect("url");
        let rpc = RpcClient::new("el", "el", url.clone(), Duration::from_secs(600), http_client(2))
            .with_max_response_bytes(2 << 30);
        let base_hwm = proc_status_kib("VmHWM");
        let (cpu0, t0) = (cpu_ms(), Instant::now());
        let txs = match mode {
            "drain" => {
                let mut resp = reqwest::Client::new()
                    .post(url)
                    .body(r#"{"jsonrpc":"2.0","id":1,"method":"txpool_content","params":[]}"#)
                    .send()
                    .await
                    .expect("send");
                let mut bytes = 0usize;
                while let Some(c) = resp.chunk().await.expect("chunk") {
                    bytes += c.len();
                }
                assert!(bytes > 0);
                0
            }
            "whole" => {
                let raw = rpc.call_raw("txpool_content", &[(); 0]).await.expect("answer");
                decode_txpool_content(raw.get(), usize::MAX).expect("content").0.len()
            }
            _ => read_txpool_content(&rpc, usize::MAX).await.expect("content").0.len(),
        };
        let (wall, cpu) = (t0.elapsed().as_secs_f64() * 1e3, cpu_ms() - cpu0);
        let hwm = proc_status_kib("VmHWM");
        println!("{mode} {txs} {wall:.0} {cpu:.0} {} {}", hwm / 1024, base_hwm / 1024);
    });
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if let (Ok(mode), Ok(path)) =
        (std::env::var("RECONCILE_CHILD"), std::env::var("RECONCILE_FILE"))
    {
        child(&mode, path);
        return;
    }
    // `cargo test --benches` runs this without `--bench`: a small smoke run.
    let real = std::env::args().any(|a| a == "--bench");
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let n = env("RECONCILE_TXS", if real { 1_000_000 } else { 2_000 });
    let runs = env("RECONCILE_RUNS", if real { 3 } else { 1 }).max(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("txpool_content.json");
    let t = Instant::now();
    let size = write_answer(&path, n).expect("write answer");
    println!(
        "txpool_content of {n} txs (10% interop): {:.0} MB, written in {:.1} s",
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    println!(
        "{:<7} {:>9} {:>9} {:>9} {:>12} {:>13}",
        "read", "txs", "wall ms", "CPU ms", "peak RSS MiB", "before read MiB"
    );
    for mode in MODES {
        let mut rows: Vec<Vec<f64>> = Vec::new();
        for _ in 0..runs {
            let out = std::process::Command::new(std::env::current_exe().expect("exe"))
                .env("RECONCILE_CHILD", mode)
                .env("RECONCILE_FILE", &path)
                .output()
                .expect("child");
            assert!(out.status.success(), "{mode}: {}", String::from_utf8_lossy(&out.stderr));
            let line = String::from_utf8_lossy(&out.stdout);
            rows.push(line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect());
        }
        let col = |i: usize| median(rows.iter().map(|r| r[i]).collect());
        println!(
            "{mode:<7} {:>9.0} {:>9.0} {:>9.0} {:>12.0} {:>13.0}",
            col(0),
            col(1),
            col(2),
            col(3),
            col(4)
        );
    }
}
