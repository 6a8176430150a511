//! One revalidation pass: place the pool into presumed blocks, pick the txs due, send ONE
//! `check_batch` per presumed block (its txs share the executing timestamp, so a batching
//! backend sends them in one HTTP request), and hand the verdicts back to the store.
//!
//! Due txs: on a near pass, those in the next `near_blocks` presumed blocks plus any never
//! checked or waiting for a retry; on a full pass, every tracked tx not already published.
//! Unplaced txs (behind a nonce gap, or over the gas limit) form one extra group executing
//! right after the last presumed block.

use std::collections::BTreeMap;
use std::time::Duration;

use alloy_primitives::{B256, U256};
use tokio::sync::Semaphore;

use super::placement::{effective_gas_limit, expected_timestamp, place};
use super::pool::PoolSnapshot;
use super::tracker::{Tracker, TxStatus};
use crate::interop::{ExecutingDescriptor, SafetyLevel};
use crate::validation::{Backend, CheckRequest, Verdict};

/// Which txs a pass re-checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PassKind {
    /// The next `near_blocks` presumed blocks, plus new and retried txs.
    Near,
    /// Every tracked tx.
    Full,
}

impl PassKind {
    /// Metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Near => "near",
            Self::Full => "full",
        }
    }
}

/// What planning needs besides the store and the snapshot.
#[derive(Debug, Clone)]
pub struct PlanParams {
    /// Presumed blocks re-checked on every pass.
    pub near_blocks: u32,
    /// Block time, seconds.
    pub block_time: u64,
    /// Gas kept for system txs.
    pub system_gas_margin: u64,
    /// Minimum safety asked.
    pub min_safety: SafetyLevel,
    /// Executing chain named in descriptors.
    pub chain_id: Option<U256>,
    /// Time to the next pass.
    pub interval: Duration,
    /// Time to the next full pass.
    pub next_full_in: Duration,
    /// Largest number of checks per backend request.
    pub max_checks_per_request: usize,
}

/// The checks of one presumed block (or a part of one, when it is over the request size).
#[derive(Debug, Clone)]
pub struct Batch {
    /// Presumed block index; `None` for the unplaced group.
    pub block: Option<u32>,
    /// Tx of each check.
    pub hashes: Vec<B256>,
    /// The checks.
    pub reqs: Vec<CheckRequest>,
}

/// A planned pass.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Backend requests to send.
    pub batches: Vec<Batch>,
    /// Presumed blocks the pool fills.
    pub presumed_blocks: u32,
    /// Presumed blocks (and the unplaced group) with at least one check.
    pub blocks_checked: usize,
}

fn whole_secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000) as u64
}

/// Places the pool, records each tracked tx's presumed block and next check, and groups the
/// due checks by presumed block.
pub fn plan(
    tracker: &mut Tracker,
    snap: &PoolSnapshot,
    kind: PassKind,
    p: &PlanParams,
    now_unix: u64,
) -> Plan {
    let head = snap.head;
    let placement =
        place(&snap.txs, head.base_fee, effective_gas_limit(head.gas_limit, p.system_gas_margin));
    let ts_of = |block: Option<u32>| {
        expected_timestamp(head.timestamp, block.unwrap_or(placement.blocks), p.block_time)
    };
    // Key: presumed block, unplaced last. Value: (hash, timeout).
    let mut groups: BTreeMap<u32, Vec<(B256, u64)>> = BTreeMap::new();
    for (tx, block) in snap.txs.iter().zip(&placement.block_of) {
        if tx.inbox.is_none() {
            continue;
        }
        let Some(t) = tracker.txs.get_mut(&tx.hash) else {
            continue;
        };
        t.presumed_block = *block;
        t.expected_ts = ts_of(*block);
        if matches!(t.status, TxStatus::Invalid { .. }) {
            t.next_check_unix = None;
            continue;
        }
        let near = block.is_some_and(|b| b < p.near_blocks);
        let next_in = whole_secs(if near { p.interval } else { p.next_full_in.max(p.interval) });
        t.next_check_unix = Some(now_unix.saturating_add(next_in));
        let due = kind == PassKind::Full || near || t.retry || t.status == TxStatus::Unchecked;
        if due {
            groups.entry(block.unwrap_or(u32::MAX)).or_default().push((tx.hash, next_in));
        }
    }
    let mut out = Plan {
        presumed_blocks: placement.blocks,
        blocks_checked: groups.len(),
        batches: Vec::new(),
    };
    for (key, items) in groups {
        let block = (key != u32::MAX).then_some(key);
        let timestamp = ts_of(block);
        for chunk in items.chunks(p.max_checks_per_request.max(1)) {
            let mut batch = Batch {
                block,
                hashes: Vec::with_capacity(chunk.len()),
                reqs: Vec::with_capacity(chunk.len()),
            };
            for (hash, timeout) in chunk {
                let Some(t) = tracker.txs.get(hash) else {
                    continue;
                };
                batch.hashes.push(*hash);
                batch.reqs.push(CheckRequest {
                    messages: t.messages.clone(),
                    min_safety: p.min_safety,
                    descriptor: ExecutingDescriptor {
                        timestamp,
                        timeout: Some(*timeout),
                        chain_id: p.chain_id,
                    },
                });
            }
            out.batches.push(batch);
        }
    }
    out
}

/// Sends every batch (at most `sem`'s permits at once, each bounded by `timeout`) and returns
/// one verdict per check, in order. A timed-out or short answer counts as unanswered.
pub async fn execute(
    backend: &dyn Backend,
    batches: &[Batch],
    sem: &Semaphore,
    timeout: Duration,
) -> Vec<Vec<Verdict>> {
    futures::future::join_all(batches.iter().map(|b| async move {
        let n = b.reqs.len();
        let Ok(_permit) = sem.acquire().await else {
            return vec![Verdict::Unavailable("revalidator shutting down".into()); n];
        };
        match tokio::time::timeout(timeout, backend.check_batch(&b.reqs)).await {
            Ok(mut verdicts) => {
                verdicts.truncate(n);
                verdicts.resize_with(n, || {
                    Verdict::Unavailable("the backend gave no verdict for this check".into())
                });
                verdicts
            }
            Err(_) => vec![
                Verdict::Unavailable(format!(
                    "backend request timed out after {} ms",
                    timeout.as_millis()
                ));
                n
            ],
        }
    }))
    .await
}
