//! Event-driven re-checks: when the light backend's reorg watch sees a source chain's block
//! replaced, the tracked txs whose messages sit in that block or after it on that chain are
//! re-checked at once, instead of at their next interval pass (up to `full_interval_ms` for a
//! far presumed block). Each affected tx is checked for the presumed block the last pass placed
//! it in, one request per presumed block, as a pass would, and once more a moment later (other
//! backends may see the reorg later); interval passes stay the safety net.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{B256, U256};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::pass::{Batch, PassKind};
use super::service::Revalidator;
use super::tracker::{Tracker, TxStatus};
use crate::interop::{ExecutingDescriptor, Message, SafetyLevel};
use crate::validation::light::ReorgEvent;
use crate::validation::CheckRequest;

/// What planning an event re-check needs.
#[derive(Debug, Clone)]
pub struct RecheckParams {
    /// Minimum safety asked.
    pub min_safety: SafetyLevel,
    /// Executing chain named in descriptors.
    pub chain_id: Option<U256>,
    /// Descriptor timeout, seconds (the time to the next pass).
    pub timeout_secs: u64,
    /// Largest number of checks per backend request.
    pub max_checks_per_request: usize,
}

/// The checks of every tracked, not yet invalid tx with a message `affected` says is touched,
/// grouped by the presumed block the last pass gave it (its expected timestamp).
pub fn plan_affected(
    tracker: &Tracker,
    affected: impl Fn(&Message) -> bool,
    p: &RecheckParams,
) -> Vec<Batch> {
    // Key: (presumed block, unplaced last), its timestamp. Sorted by hash for a stable order.
    let mut groups: BTreeMap<(u32, u64), Vec<B256>> = BTreeMap::new();
    for (hash, t) in &tracker.txs {
        if matches!(t.status, TxStatus::Invalid { .. } | TxStatus::Unchecked) {
            // Unchecked txs are checked by the next pass anyway.
            continue;
        }
        if t.messages.iter().any(&affected) {
            let key = (t.presumed_block.unwrap_or(u32::MAX), t.expected_ts);
            groups.entry(key).or_default().push(*hash);
        }
    }
    let mut out = Vec::new();
    for ((block, timestamp), mut hashes) in groups {
        hashes.sort_unstable();
        for chunk in hashes.chunks(p.max_checks_per_request.max(1)) {
            let reqs = chunk
                .iter()
                .filter_map(|h| tracker.txs.get(h))
                .map(|t| CheckRequest {
                    messages: t.messages.clone(),
                    min_safety: p.min_safety,
                    descriptor: ExecutingDescriptor {
                        timestamp,
                        timeout: Some(p.timeout_secs),
                        chain_id: p.chain_id,
                    },
                })
                .collect();
            out.push(Batch {
                block: (block != u32::MAX).then_some(block),
                hashes: chunk.to_vec(),
                reqs,
            });
        }
    }
    out
}

/// How long after a reorg event the affected txs are re-checked once more: the validation
/// backends (a peer's own reorg watch, an indexed supervisor) may see the reorg a watch interval
/// later than the light backend that reported it, and answer from the old chain meanwhile.
pub const RECHECK_AGAIN_AFTER: Duration = Duration::from_millis(1_500);

/// Re-checks on every reorg event until `shutdown`: at once, and once more
/// [`RECHECK_AGAIN_AFTER`] later (events of one reorg coalesced per chain, from its lowest
/// block). `flush_valid` runs before each: the engine's cached valid verdicts may rest on the
/// replaced block, and the re-check must not be answered from them. A lagging receiver (events
/// lost) runs a full pass instead.
pub fn spawn_reorg_rechecks(
    core: Arc<Revalidator>,
    mut reorgs: broadcast::Receiver<ReorgEvent>,
    flush_valid: impl Fn() + Send + 'static,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut again: BTreeMap<U256, u64> = BTreeMap::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let wait_again = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let ev = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = wait_again => {
                    deadline = None;
                    flush_valid();
                    for (chain, from) in std::mem::take(&mut again) {
                        let r = core.recheck_reorged(chain, from).await;
                        log(chain, from, &r, "again");
                    }
                    continue;
                }
                ev = reorgs.recv() => ev,
            };
            match ev {
                Ok(ev) => {
                    flush_valid();
                    let r = core.recheck_reorged(ev.chain_id, ev.number).await;
                    log(ev.chain_id, ev.number, &r, "at once");
                    let from = again.entry(ev.chain_id).or_insert(ev.number);
                    *from = (*from).min(ev.number);
                    deadline
                        .get_or_insert_with(|| tokio::time::Instant::now() + RECHECK_AGAIN_AFTER);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    flush_valid();
                    let _ = core.run_pass(PassKind::Full).await;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

fn log(chain: U256, from: u64, r: &RecheckReport, when: &str) {
    tracing::info!(target: "interop_gate::revalidator", %chain, from, when, txs = r.txs, requests = r.requests, invalid = r.invalid_found, "re-checked the txs a source-chain reorg touched");
}

/// What one event re-check did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecheckReport {
    /// Txs re-checked.
    pub txs: usize,
    /// Backend requests sent (one per presumed block, split past the request size).
    pub requests: usize,
    /// Txs published invalid by it.
    pub invalid_found: usize,
}

pub(super) fn timeout_secs(interval: Duration) -> u64 {
    interval.as_millis().div_ceil(1000) as u64
}
