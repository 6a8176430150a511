//! Batching of concurrent single checks to the supervisor (`validation/batch.rs`): cold interop
//! submissions that are in flight together reach the supervisor as one JSON-RPC batch request,
//! each still gets exactly its own verdict, and a misbehaving supervisor's batch answer (wrong
//! ids, cut off, shorter than the batch) is no verdict for the checks it does not answer. The
//! peers hold their answers until the test releases them, so which checks share a batch is
//! decided by the test, not by timing.

use crate::common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::U256;
use common::*;
use interop_gate::config::{PolicyMode, SupervisorConfig};
use interop_gate::dev::misbehave::{self, Behaviour};
use interop_gate::interop::{ExecutingDescriptor, Message, SafetyLevel};
use interop_gate::rpc::codes;
use interop_gate::validation::batch::{BatchLimits, Batcher};
use interop_gate::validation::indexed::IndexedBackend;
use interop_gate::validation::{Backend, CheckRequest, Verdict};
use serde_json::Value;
use tokio::task::JoinHandle;

/// Polls `cond` until it holds (bounded: panics after 5 s, naming `what`).
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn spawn<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> JoinHandle<T> {
    tokio::spawn(f)
}

/// Waits for the start of the next whole second. The ingress stamps each check's executing
/// descriptor with the current second, and checks with different descriptors rightly go as
/// different batches: txs sent right after this share one.
async fn start_of_a_second() {
    let into = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    tokio::time::sleep(Duration::from_nanos(1_000_000_000 - u64::from(into))).await;
}

fn code(v: &Value) -> i64 {
    v["error"]["code"].as_i64().unwrap_or_else(|| panic!("expected an error: {v}"))
}

#[tokio::test]
async fn cold_submissions_in_flight_together_reach_the_supervisor_as_one_batch_each_with_its_own_verdict(
) {
    let g = Arc::new(
        interop_gateway(|c| {
            c.validation.policy = PolicyMode::Indexed;
        })
        .await,
    );
    let msgs = g.emit(4, 1);
    g.supervisor.set_error(&msgs[2], codes::SUP_SKIPPED_DATA);
    let txs: Vec<_> = (0..4).map(|i| g.interop_tx(10 + i as u64, 0, &[msgs[i]]).0).collect();
    let batcher = g.gw.running.engine.as_ref().and_then(|e| e.batcher().cloned()).unwrap();

    g.supervisor.hold();
    let send = |i: usize| {
        let (g, raw) = (g.clone(), txs[i].clone());
        spawn(async move { g.send(&raw).await })
    };
    let first = send(0);
    until("the first check to reach the supervisor", || g.supervisor.checks() == 1).await;
    start_of_a_second().await;
    let rest: Vec<_> = (1..4).map(send).collect();
    until("three checks waiting for the next batch", || batcher.queued() == 3).await;
    g.supervisor.release();

    let mut answers = vec![first.await.unwrap()];
    for h in rest {
        answers.push(h.await.unwrap());
    }
    for i in [0, 1, 3] {
        assert_eq!(answers[i].0, 200, "tx {i}: {}", answers[i].1);
        assert!(answers[i].1["result"].is_string(), "tx {i}: {}", answers[i].1);
        assert!(g.forwarded(&txs[i]), "tx {i} forwarded");
    }
    assert_eq!(code(&answers[2].1), codes::SUP_SKIPPED_DATA, "its own verdict: {}", answers[2].1);
    assert!(!g.forwarded(&txs[2]), "the refused one never reaches the upstream");
    assert_eq!(g.supervisor.checks(), 4);
    assert_eq!(g.supervisor.http_requests(), 2, "the first alone, then the three as one batch");
}

#[tokio::test]
async fn a_batch_answer_with_wrong_ids_is_no_verdict_and_the_ingress_refuses_retryably() {
    let (liar_peer, liar) = misbehave::spawn(Behaviour::WrongId).await.unwrap();
    let url = liar_peer.url();
    let g = Arc::new(
        interop_gateway(move |c| {
            c.validation.policy = PolicyMode::Indexed;
            c.supervisor.endpoints = vec![endpoint("liar", url)];
        })
        .await,
    );
    let msgs = g.emit(3, 2);
    let txs: Vec<_> = (0..3).map(|i| g.interop_tx(20 + i as u64, 0, &[msgs[i]]).0).collect();
    let batcher = g.gw.running.engine.as_ref().and_then(|e| e.batcher().cloned()).unwrap();

    liar.hold();
    let send = |i: usize| {
        let (g, raw) = (g.clone(), txs[i].clone());
        spawn(async move { g.send(&raw).await })
    };
    let first = send(0);
    until("the first check to reach the supervisor", || liar.requests() == 1).await;
    start_of_a_second().await;
    let rest: Vec<_> = (1..3).map(send).collect();
    until("two checks waiting for the next batch", || batcher.queued() == 2).await;
    liar.release();

    let mut answers = vec![first.await.unwrap()];
    for h in rest {
        answers.push(h.await.unwrap());
    }
    for (i, (_, v)) in answers.iter().enumerate() {
        assert_eq!(code(v), codes::NO_BACKEND, "tx {i}: retry later, not a verdict: {v}");
        assert!(!g.forwarded(&txs[i]), "tx {i} not forwarded");
    }
    assert_eq!(liar.requests(), 2, "one call, then one batch");
    drop(liar_peer);
}

fn check(log_index: u32, at: u64) -> CheckRequest {
    CheckRequest {
        messages: vec![Message {
            chain_id: U256::from(SOURCE),
            block_number: 3,
            timestamp: at - 60,
            log_index,
            checksum: alloy_primitives::B256::repeat_byte(7),
        }]
        .into(),
        min_safety: SafetyLevel::CrossUnsafe,
        descriptor: ExecutingDescriptor {
            timestamp: at,
            timeout: Some(86_400),
            chain_id: Some(U256::from(DEST)),
        },
    }
}

/// Check 0 goes alone while the peer holds it; checks 1..=n wait and go as one batch, in this
/// order. Returns every verdict and the peer's request count.
async fn one_call_then_one_batch(b: Behaviour, n: u32) -> (Vec<Verdict>, usize) {
    let (peer, liar) = misbehave::spawn(b).await.unwrap();
    let cfg = SupervisorConfig {
        endpoints: vec![endpoint("liar", peer.url())],
        timeout_ms: Duration::from_millis(2_000),
        ..Default::default()
    };
    let indexed = Arc::new(IndexedBackend::from_config(&cfg).unwrap());
    let limits = BatchLimits { max_size: 64, max_in_flight: 1, max_queued: 64 };
    let batcher = Arc::new(Batcher::new(indexed, limits));
    liar.hold();
    // One executing timestamp for every check: checks asked across a second boundary would have
    // different descriptors, and the batcher rightly never mixes those in one batch.
    let at = now();
    let ask = |i: u32| {
        let b = batcher.clone();
        spawn(async move { b.check(&check(i, at)).await })
    };
    let mut all = vec![ask(0)];
    until("the first check to reach the peer", || liar.requests() == 1).await;
    for i in 1..=n {
        all.push(ask(i));
        until("the check to wait for the next batch", || batcher.queued() == i as usize).await;
    }
    liar.release();
    let mut verdicts = Vec::new();
    for h in all {
        verdicts.push(h.await.unwrap());
    }
    (verdicts, liar.requests())
}

#[tokio::test]
async fn a_short_batch_answer_is_no_verdict_for_the_checks_it_lacks() {
    let (v, requests) = one_call_then_one_batch(Behaviour::ShortBatch, 3).await;
    assert_eq!(requests, 2);
    assert!(v[0].is_valid(), "the lone call was answered: {:?}", v[0]);
    assert!(v[1].is_valid(), "the batch's first element was answered: {:?}", v[1]);
    for (i, verdict) in v.iter().enumerate().skip(2) {
        assert!(matches!(verdict, Verdict::Unavailable(_)), "check {i}: {verdict:?}");
    }
}

#[tokio::test]
async fn a_truncated_batch_answer_is_no_verdict_for_any_of_its_checks() {
    let (v, requests) = one_call_then_one_batch(Behaviour::Truncated, 3).await;
    assert_eq!(requests, 2);
    for (i, verdict) in v.iter().enumerate() {
        assert!(matches!(verdict, Verdict::Unavailable(_)), "check {i}: {verdict:?}");
    }
}

#[tokio::test]
async fn batch_elements_answered_with_errors_each_keep_their_own_code() {
    let (v, requests) = one_call_then_one_batch(Behaviour::Error(codes::SUP_SKIPPED_DATA), 2).await;
    assert_eq!(requests, 2);
    for (i, verdict) in v.iter().enumerate() {
        assert!(
            matches!(verdict, Verdict::Invalid(r) if r.code == codes::SUP_SKIPPED_DATA),
            "check {i}: {verdict:?}"
        );
    }
}
