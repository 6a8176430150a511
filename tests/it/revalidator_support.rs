//! Shared pieces of the revalidator tests: a scripted in-process backend that counts its calls,
//! the mock EL on real HTTP, a started revalidator, and a JSON-RPC caller.

#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use alloy_primitives::{keccak256, B256, U256};
use futures::future::BoxFuture;
use interop_gate::config::RevalidatorConfig;
use interop_gate::dev::el_pool::MockElPool;
use interop_gate::dev::{spawn_peer, Peer};
use interop_gate::interop::Message;
use interop_gate::revalidator::pool::Head;
use interop_gate::revalidator::{start, RunningRevalidator};
use interop_gate::rpc::codes;
use interop_gate::validation::{Backend, CheckRequest, Rejection, Verdict};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// The head every test starts from.
pub const HEAD: Head =
    Head { number: 100, timestamp: 1_000_000, base_fee: 100, gas_limit: 30_000_000 };

/// A distinct message per `i`, initiated well before `HEAD`.
pub fn msg(i: usize) -> Message {
    let mut checksum = keccak256((i as u64).to_be_bytes());
    checksum.0[0] = 3;
    Message {
        chain_id: U256::from(901),
        block_number: i as u64,
        timestamp: 500_000 + i as u64,
        log_index: (i % 7) as u32,
        checksum,
    }
}

/// Decides by message: checksums marked invalid or unknown get that verdict, everything else is
/// valid for the asked window; a failsafe switch fails every check with -320602.
#[derive(Default)]
pub struct ScriptedBackend {
    pub batch_calls: AtomicUsize,
    pub single_calls: AtomicUsize,
    pub batches: Mutex<Vec<Vec<CheckRequest>>>,
    invalid: Mutex<HashSet<B256>>,
    unknown: Mutex<HashSet<B256>>,
    failsafe: AtomicBool,
}

impl ScriptedBackend {
    pub fn mark_invalid(&self, m: &Message) {
        self.invalid.lock().unwrap().insert(m.checksum);
    }
    pub fn mark_unknown(&self, m: &Message, on: bool) {
        let mut u = self.unknown.lock().unwrap();
        if on {
            u.insert(m.checksum);
        } else {
            u.remove(&m.checksum);
        }
    }
    pub fn set_failsafe(&self, on: bool) {
        self.failsafe.store(on, Ordering::SeqCst);
    }
    pub fn batch_calls(&self) -> usize {
        self.batch_calls.load(Ordering::SeqCst)
    }
    pub fn single_calls(&self) -> usize {
        self.single_calls.load(Ordering::SeqCst)
    }
    pub fn take_batches(&self) -> Vec<Vec<CheckRequest>> {
        std::mem::take(&mut *self.batches.lock().unwrap())
    }

    fn decide(&self, req: &CheckRequest) -> Verdict {
        if self.failsafe.load(Ordering::SeqCst) {
            return Verdict::Invalid(Rejection::new(codes::SUP_FAILSAFE, "failsafe enabled"));
        }
        for m in req.messages.iter() {
            if self.invalid.lock().unwrap().contains(&m.checksum) {
                let r =
                    Rejection::new(codes::SUP_CONFLICTING_DATA, "checksum does not match the log");
                return Verdict::Invalid(r.for_message(*m));
            }
            if self.unknown.lock().unwrap().contains(&m.checksum) {
                let r = Rejection::new(codes::SUP_FUTURE_DATA, "not indexed yet");
                return Verdict::NotYetKnown(r.for_message(*m));
            }
        }
        Verdict::Valid { until: req.descriptor.end().unwrap_or(u64::MAX) }
    }
}

impl Backend for ScriptedBackend {
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn check<'a>(&'a self, req: &'a CheckRequest) -> BoxFuture<'a, Verdict> {
        self.single_calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { self.decide(req) })
    }
    fn check_batch<'a>(&'a self, reqs: &'a [CheckRequest]) -> BoxFuture<'a, Vec<Verdict>> {
        self.batch_calls.fetch_add(1, Ordering::SeqCst);
        self.batches.lock().unwrap().push(reqs.to_vec());
        Box::pin(async move { reqs.iter().map(|r| self.decide(r)).collect() })
    }
}

/// A config for tests: loopback listener, passes driven by the test.
pub fn config(el: &Peer) -> RevalidatorConfig {
    RevalidatorConfig {
        enabled: true,
        listen: "127.0.0.1:0".into(),
        el_url: el.url(),
        ..Default::default()
    }
}

pub struct Harness {
    pub el: Arc<MockElPool>,
    pub el_peer: Peer,
    pub backend: Arc<ScriptedBackend>,
    pub reval: RunningRevalidator,
    pub shutdown: CancellationToken,
    pub http: reqwest::Client,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the mock EL and a revalidator (API only; the test drives passes).
pub async fn harness(tweak: impl FnOnce(&mut RevalidatorConfig)) -> Harness {
    let el = Arc::new(MockElPool::new(HEAD, 10));
    let el_peer = spawn_peer("el", el.clone(), "127.0.0.1:0").await.unwrap();
    let backend = Arc::new(ScriptedBackend::default());
    let mut cfg = config(&el_peer);
    tweak(&mut cfg);
    let shutdown = CancellationToken::new();
    let reval = start(&cfg, backend.clone(), shutdown.clone(), false).await.unwrap();
    Harness { el, el_peer, backend, reval, shutdown, http: reqwest::Client::new() }
}

impl Harness {
    /// Calls `method` on the revalidator's API; `Ok(result)` or `Err(error object)`.
    pub async fn rpc(&self, method: &str, params: Value) -> Result<Value, Value> {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let (_, resp) = crate::common::post_json(&self.http, &self.reval.url(), &body).await;
        match resp.get("error") {
            Some(e) => Err(e.clone()),
            None => Ok(resp["result"].clone()),
        }
    }

    /// Reads the whole invalid feed from `cursor`, page by page; returns the hashes and the
    /// final cursor.
    pub async fn drain_feed(&self, mut cursor: Value) -> (Vec<B256>, Value) {
        let mut out = Vec::new();
        loop {
            let page = self.rpc("interop_invalidTransactions", json!([cursor])).await.unwrap();
            for e in page["entries"].as_array().unwrap() {
                out.push(e["hash"].as_str().unwrap().parse().unwrap());
            }
            cursor = page["cursor"].clone();
            if !page["more"].as_bool().unwrap() {
                return (out, cursor);
            }
        }
    }
}
