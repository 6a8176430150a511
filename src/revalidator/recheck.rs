//! Event-driven re-checks, instead of waiting for the next interval pass (up to
//! `full_interval_ms` for a far presumed block):
//!
//! - a **reorg**: when the light backend's reorg watch sees a source chain's block replaced, the
//!   tracked txs whose messages sit in that block or after it on that chain are re-checked at
//!   once, and once more a moment later (other backends may see the reorg later);
//! - a **head advance**: when a source chain's head for the configured `min_safety` (`latest`,
//!   `safe` or `finalized`) reaches blocks that txs judged "not yet known" wait on (see
//!   [`super::waits`] for how those waits are registered), exactly those txs are re-checked at
//!   once.
//!
//! Each affected tx is checked for the presumed block the last pass placed it in, one request
//! per presumed block, as a pass would; interval passes stay the safety net.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{B256, U256};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::pass::{Batch, Chunk, PassKind};
use super::service::Revalidator;
use super::tracked::TxKey;
use super::tracker::{TrackedTx, Tracker, TxStatus};
use crate::interop::{ExecutingDescriptor, SafetyLevel};
use crate::validation::light::{HeadAdvance, HeadTag, ReorgEvent};
use crate::validation::Verdict;

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

/// The checks of every tracked, checked, not yet invalid tx `affected` selects, grouped by the
/// presumed block the last pass gave it (its expected timestamp).
pub fn plan_affected(
    tracker: &Tracker,
    affected: impl Fn(&TrackedTx) -> bool,
    p: &RecheckParams,
) -> Vec<Batch> {
    // Key: (presumed block, unplaced last), its timestamp. Sorted by hash for a stable order.
    let mut groups: BTreeMap<(u32, u64), Vec<(B256, TxKey)>> = BTreeMap::new();
    for (key, hash, t) in tracker.txs.iter_keyed() {
        if matches!(t.status, TxStatus::Invalid { .. } | TxStatus::Unchecked) {
            // Unchecked txs are checked by the next pass anyway.
            continue;
        }
        if affected(t) {
            let group = (t.presumed_block().unwrap_or(u32::MAX), t.expected_ts);
            groups.entry(group).or_default().push((*hash, key));
        }
    }
    let mut out = Vec::new();
    for ((block, timestamp), mut txs) in groups {
        txs.sort_unstable();
        for chunk in txs.chunks(p.max_checks_per_request.max(1)) {
            let descriptor = ExecutingDescriptor {
                timestamp,
                timeout: Some(p.timeout_secs),
                chain_id: p.chain_id,
            };
            let keys = chunk.iter().map(|&(_, key)| key).collect();
            let block = (block != u32::MAX).then_some(block);
            out.push(Chunk::new(block, descriptor, p.min_safety, keys).build(tracker));
        }
    }
    out
}

/// True when `t` has a message on `chain` at or after block `from` (a reorg replaced it).
pub fn rests_on_reorged(t: &TrackedTx, chain: U256, from: u64) -> bool {
    t.messages.iter().any(|m| m.chain_id == chain && m.block_number >= from)
}

/// True when `t` was judged "not yet known" for a message on `a.chain_id` in a block `a` says
/// just reached the head it waited on. The message the verdict names is the one that held it
/// back; a verdict naming none counts any message of `t` on that chain.
pub fn waits_on(t: &TrackedTx, a: &HeadAdvance) -> bool {
    let TxStatus::Pending { last } = &t.status else { return false };
    let Verdict::NotYetKnown(r) = &**last else { return false };
    let reached = |m: &crate::interop::Message| {
        m.chain_id == a.chain_id && (a.from..=a.to).contains(&m.block_number)
    };
    match &r.message {
        Some(m) => reached(m),
        None => t.messages.iter().any(reached),
    }
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
///
/// And on every head advance (`advances`, when given) of the head `min_safety` is judged by:
/// the txs waiting on the blocks it reached, at once (a lagging receiver leaves them to the
/// next pass).
pub fn spawn_event_rechecks(
    core: Arc<Revalidator>,
    mut reorgs: broadcast::Receiver<ReorgEvent>,
    mut advances: Option<broadcast::Receiver<HeadAdvance>>,
    flush_valid: impl Fn() + Send + 'static,
    shutdown: CancellationToken,
) {
    let tag = HeadTag::for_safety(core.config().min_safety);
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
            let advance = async {
                match advances.as_mut() {
                    Some(rx) => rx.recv().await,
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
                a = advance => {
                    match a {
                        Ok(a) if a.tag == tag => {
                            let r = core.recheck_advanced(&a).await;
                            tracing::info!(target: "interop_gate::revalidator", chain = %a.chain_id, head = a.tag.as_str(), from = a.from, to = a.to, txs = r.txs, requests = r.requests, invalid = r.invalid_found, "re-checked the txs waiting on blocks a source-chain head reached");
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => advances = None,
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

/// What event re-checks did since start, per cause (for `interop_revalidationStatus`).
#[derive(Debug, Default)]
pub struct RecheckTotals {
    by_cause: std::sync::Mutex<BTreeMap<&'static str, (u64, RecheckReport)>>,
}

impl RecheckTotals {
    /// Adds one re-check for `cause` (`reorg` or `head`).
    pub fn add(&self, cause: &'static str, r: &RecheckReport) {
        let mut m = self.by_cause.lock().unwrap_or_else(|e| e.into_inner());
        let (events, t) = m.entry(cause).or_default();
        *events += 1;
        t.txs += r.txs;
        t.requests += r.requests;
        t.invalid_found += r.invalid_found;
    }

    /// `{cause: {events, txs, requests, invalidFound}}`.
    pub fn view(&self) -> serde_json::Value {
        let m = self.by_cause.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = serde_json::Map::new();
        for cause in ["reorg", "head"] {
            let (events, r) = m.get(cause).copied().unwrap_or_default();
            out.insert(
                cause.into(),
                serde_json::json!({
                    "events": events,
                    "txs": r.txs,
                    "requests": r.requests,
                    "invalidFound": r.invalid_found,
                }),
            );
        }
        out.into()
    }
}

pub(super) fn timeout_secs(interval: Duration) -> u64 {
    interval.as_millis().div_ceil(1000) as u64
}
