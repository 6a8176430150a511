//! Stable-toolchain fuzz driver for the HTTP JSON-RPC surface of the ingress and the light
//! endpoint (the same input format and invariants as `fuzz/fuzz_targets/http_surface.rs`, which
//! needs nightly and a full instrumented build). Inputs are the seeds under
//! `fixtures/fuzz-seeds/http_surface/`, randomly mutated, plus generated JSON-RPC requests with
//! random params and hostile headers; each is sent as one HTTP request over a real socket to the
//! real service with in-process peers.
//!
//! Invariants: no panic anywhere in the process (a panic hook aborts, so a panic in a server task
//! fails the run instead of being swallowed by tokio), an answer within 10 s, a well-formed HTTP
//! response, syntactically valid JSON under a JSON content type (checked with `IgnoredAny`: an id
//! such as `1e9997` is valid JSON echoed byte for byte, though out of f64 range), and the service
//! still answering a plain
//! call at the end. Runs 2 s by default; `FUZZ_SECS=600` for a long run, `FUZZ_SEED` to replay.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const METHODS: &[&str] = &[
    "eth_chainId",
    "eth_sendRawTransaction",
    "eth_sendRawTransactionConditional",
    "eth_sendRawTransactionSync",
    "eth_call",
    "eth_getBalance",
    "eth_getLogs",
    "interop_checkAccessList",
    "supervisor_checkAccessList",
    "interop_syncStatus",
    "interop_getBlockHashByNumber",
    "admin_setInteropMode",
    "debug_traceTransaction",
    "",
];

const TOKENS: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    "\"",
    "\\",
    ",",
    ":",
    "null",
    "true",
    "-0",
    "1e999",
    "0x",
    "\"0x02\"",
    "\"2.0\"",
    "\\u0000",
    "\\\"",
    "[[[[[[[[",
    "\"cross-unsafe\"",
    "{\"timestamp\":\"0x1\"}",
];

fn load_seeds() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/fuzz-seeds/http_surface");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .expect("seed dir")
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty());
    seeds
}

fn json_value(rng: &mut fastrand::Rng, depth: u32) -> String {
    match rng.u8(0..if depth > 6 { 6 } else { 9 }) {
        0 => "null".into(),
        1 => rng.bool().to_string(),
        2 => rng.i64(..).to_string(),
        3 => format!("\"0x{}\"", "ab".repeat(rng.usize(0..70))),
        4 => format!("\"{}\"", TOKENS[rng.usize(..TOKENS.len())].replace('"', "\\\"")),
        5 => format!("{}", rng.f64()),
        6 | 7 => {
            let n = rng.usize(0..4);
            let items: Vec<_> = (0..n).map(|_| json_value(rng, depth + 1)).collect();
            format!("[{}]", items.join(","))
        }
        _ => {
            let n = rng.usize(0..4);
            let items: Vec<_> =
                (0..n).map(|i| format!("\"k{i}\":{}", json_value(rng, depth + 1))).collect();
            format!("{{{}}}", items.join(","))
        }
    }
}

fn generated(rng: &mut fastrand::Rng) -> Vec<u8> {
    let one = |rng: &mut fastrand::Rng| {
        let id = match rng.u8(0..4) {
            0 => "1".to_owned(),
            1 => "\"x\"".to_owned(),
            2 => "null".to_owned(),
            _ => json_value(rng, 5),
        };
        let method = METHODS[rng.usize(..METHODS.len())];
        let params =
            if rng.bool() { json_value(rng, 0) } else { format!("[{}]", json_value(rng, 1)) };
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#)
    };
    let body = if rng.u8(0..4) == 0 {
        let n = rng.usize(0..5);
        format!("[{}]", (0..n).map(|_| one(rng)).collect::<Vec<_>>().join(","))
    } else {
        one(rng)
    };
    let headers = match rng.u8(0..6) {
        0 => "x-forwarded-for: 1.2.3.4, 10.0.0.1, garbage".to_owned(),
        1 => format!("x-request-id: {}", "r".repeat(rng.usize(0..100))),
        2 => "authorization: Bearer x\ncontent-encoding: gzip".to_owned(),
        3 => "expect: 100-continue".to_owned(),
        _ => String::new(),
    };
    let mut out = vec![rng.u8(..)];
    out.extend_from_slice(headers.as_bytes());
    out.push(0);
    out.extend_from_slice(body.as_bytes());
    out
}

fn mutate(rng: &mut fastrand::Rng, seeds: &[Vec<u8>], mut d: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.usize(1..6) {
        let len = d.len();
        match rng.u8(0..7) {
            0 if len > 0 => d[rng.usize(..len)] ^= 1 << rng.u8(0..8),
            1 if len > 0 => d[rng.usize(..len)] = rng.u8(..),
            2 if len > 0 => {
                let at = rng.usize(..len);
                d.drain(at..(at + rng.usize(1..16)).min(len));
            }
            3 => {
                let t = TOKENS[rng.usize(..TOKENS.len())].as_bytes();
                let at = rng.usize(..=len);
                d.splice(at..at, t.iter().copied());
            }
            4 if len > 0 => {
                // Duplicate a chunk (grows nesting, batches, strings).
                let a = rng.usize(..len);
                let b = (a + rng.usize(1..64)).min(len);
                let chunk = d[a..b].to_vec();
                for _ in 0..rng.usize(1..8) {
                    d.splice(b..b, chunk.iter().copied());
                }
            }
            5 => {
                let other = &seeds[rng.usize(..seeds.len())];
                let cut = rng.usize(..=d.len());
                let from = rng.usize(..=other.len());
                d.truncate(cut);
                d.extend_from_slice(&other[from..]);
            }
            _ => {
                if let Some(first) = d.first_mut() {
                    *first = rng.u8(..);
                }
            }
        }
    }
    d.truncate(300_000);
    d
}

/// One input as one HTTP request (format of the cargo-fuzz target); the invariants.
async fn one(ingress: SocketAddr, light: SocketAddr, data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else { return };
    let (headers, body) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&[][..], rest),
    };
    let addr = if which % 2 == 0 { ingress } else { light };
    let mut req = b"POST / HTTP/1.1\r\nhost: fuzz\r\nconnection: close\r\n".to_vec();
    for line in headers.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        req.extend_from_slice(line);
        req.extend_from_slice(b"\r\n");
    }
    if which & 2 == 0 {
        req.extend_from_slice(b"content-type: application/json\r\n");
    }
    req.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    req.extend_from_slice(body);
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("listener up");
    let _ = s.write_all(&req).await;
    let mut resp = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp)).await;
    let Ok(read) = read else {
        panic!("no answer within 10 s to {:?}", String::from_utf8_lossy(data))
    };
    if read.is_err() || resp.is_empty() {
        return; // Reset or closed on a malformed head: hyper's choice, not a hang.
    }
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 "), "not HTTP: {text:?}");
    if let Some((head, body)) = text.split_once("\r\n\r\n") {
        let head = head.to_ascii_lowercase();
        if head.contains("content-type: application/json")
            && !body.is_empty()
            && !head.contains("transfer-encoding")
        {
            assert!(
                serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok(),
                "JSON content type, body not JSON: {body:?} for {:?}",
                String::from_utf8_lossy(data)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_http_surface_of_ingress_and_light_endpoint() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    let secs: u64 = std::env::var("FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    let seed: u64 = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(16);
    let g = interop_gateway(|c| {
        c.light_server.enabled = true;
        c.server.max_connections = 4096;
        // An incomplete body (a chunked body cut short) waits for its timeout: keep it well
        // under the 10 s answer bound.
        c.server.header_read_timeout_ms = std::time::Duration::from_millis(2_000);
        c.server.body_read_timeout_ms = std::time::Duration::from_millis(2_000);
    })
    .await;
    g.emit(3, 1);
    let ingress = g.gw.running.rpc_addr.unwrap();
    let light = g.gw.running.light_server_addr.unwrap();
    let seeds = load_seeds();
    let mut rng = fastrand::Rng::with_seed(seed);
    let (start, mut execs) = (Instant::now(), 0u64);
    for s in &seeds {
        one(ingress, light, s).await;
        execs += 1;
    }
    while start.elapsed() < Duration::from_secs(secs) {
        let input = match rng.u8(0..3) {
            0 => generated(&mut rng),
            _ => {
                let base = seeds[rng.usize(..seeds.len())].clone();
                mutate(&mut rng, &seeds, base)
            }
        };
        one(ingress, light, &input).await;
        execs += 1;
        if execs % 10_000 == 0 {
            println!("fuzz_http_surface: {execs} executions after {:?}", start.elapsed());
        }
    }
    let (status, v) =
        g.gw.post(&serde_json::json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId"})).await;
    assert_eq!((status, v["result"].as_str()), (200, Some("0xa")), "still serving");
    println!(
        "fuzz_http_surface: seed {seed}, {execs} executions in {:?} ({:.0}/s), 0 crashes",
        start.elapsed(),
        execs as f64 / start.elapsed().as_secs_f64()
    );
}
