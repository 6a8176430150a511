//! One revalidation pass: place the pool into presumed blocks, pick the txs due, send ONE
//! `check_batch` per presumed block (its txs share the executing timestamp, so a batching
//! backend sends them in one HTTP request), and hand the verdicts back to the store.
//!
//! Due txs: on a near pass, those in the next `near_blocks` presumed blocks plus any never
//! checked or waiting for a retry; on a full pass, every tracked tx not already published.
//! Unplaced txs (behind a nonce gap, or over the gas limit) form one extra group executing
//! right after the last presumed block.
//!
//! On a pool mirror ([`plan_mirror`]) a near pass does not place the whole pool: it walks the
//! near blocks only, and gives a new or retried tx beyond them the block its fill key had in
//! the last full walk (exact when nothing changed ahead of it since, else off by the blocks
//! that changes ahead of it added or removed; the next full pass places it exactly). Other
//! txs keep the presumed block of the last full walk, which re-places every tx.

use std::collections::BTreeMap;
use std::time::Duration;

use alloy_primitives::{B256, U256};
use tokio::sync::Semaphore;

use super::mirror::PoolMirror;
use super::placement::{
    effective_gas_limit, expected_timestamp, fill_key, place, walk, walk_all, Run,
};
use super::pool::{PoolSnapshot, PoolTx};
use super::tracked::{Bits, TxKey};
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

impl PlanParams {
    /// True for a presumed block every pass re-checks (one of the next `near_blocks`).
    fn is_near(&self, block: Option<u32>) -> bool {
        block.is_some_and(|b| b < self.near_blocks)
    }
}

/// The checks of one presumed block (or a part of one, when it is over the request size).
#[derive(Debug, Clone)]
pub struct Batch {
    /// Presumed block index; `None` for the unplaced group.
    pub block: Option<u32>,
    /// Tx of each check.
    pub hashes: Vec<B256>,
    /// Its slot in the store (verdicts are recorded through it, without a hash lookup).
    pub keys: Vec<TxKey>,
    /// The checks.
    pub reqs: Vec<CheckRequest>,
}

/// What recording one request's verdicts found.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recorded {
    /// Verdicts recorded (one per check).
    pub checked: usize,
    /// Txs they published invalid.
    pub invalid: usize,
    /// Some verdict was the failsafe.
    pub failsafe: bool,
    /// Some verdict was an answer (not "unavailable").
    pub answered: bool,
}

impl Batch {
    /// Records `verdicts` (one per check, in order) in `store`, each for the window and safety
    /// its check asked.
    pub fn record(
        &self,
        store: &mut Tracker,
        verdicts: Vec<Verdict>,
        now: std::time::Instant,
        now_unix: u64,
    ) -> Recorded {
        let mut r = Recorded::default();
        let checks = self.keys.iter().zip(&self.hashes).zip(&self.reqs);
        for (((key, hash), req), verdict) in checks.zip(verdicts) {
            r.checked += 1;
            r.failsafe |= verdict.is_failsafe();
            r.answered |= !matches!(verdict, Verdict::Unavailable(_));
            let (d, safety) = (&req.descriptor, req.min_safety);
            if store.record_at(*key, *hash, verdict, d, safety, now, now_unix) {
                r.invalid += 1;
            }
        }
        r
    }
}

/// A planned pass: its due txs by presumed block. The backend requests are built from the
/// store a few at a time as they are sent ([`Plan::into_chunks`], [`Chunk::build`]), so a full
/// pass over a large pool never holds every request and verdict at once.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Due txs by presumed block, in block order (unplaced last).
    pub groups: Vec<Group>,
    /// Presumed blocks the pool fills.
    pub presumed_blocks: u32,
    /// Presumed blocks (and the unplaced group) with at least one check.
    pub blocks_checked: usize,
    /// Largest number of checks per request (a group over it is split).
    pub max_checks_per_request: usize,
    /// Minimum safety asked.
    pub min_safety: SafetyLevel,
    /// Executing chain named in descriptors.
    pub chain_id: Option<U256>,
}

/// The due txs of one presumed block (or of the unplaced group).
#[derive(Debug, Clone)]
pub struct Group {
    /// Presumed block index; `None` for the unplaced group.
    pub block: Option<u32>,
    /// Executing timestamp of the block.
    pub timestamp: u64,
    /// Descriptor timeout, seconds (until the next check).
    pub timeout: u64,
    /// The due txs, by slot key (4 bytes a check: a full pass over 1M tracked txs plans
    /// 4 MB, not 32 MB of hashes; each hash is read when its request is built).
    pub keys: Vec<TxKey>,
}

/// One backend request not yet built: a group, or a part of one over the request size.
#[derive(Debug, Clone)]
pub struct Chunk {
    block: Option<u32>,
    descriptor: ExecutingDescriptor,
    min_safety: SafetyLevel,
    keys: Vec<TxKey>,
}

impl Chunk {
    /// The checks of the txs in slots `keys`, with `descriptor` and `min_safety`, for presumed
    /// block `block`.
    pub(super) fn new(
        block: Option<u32>,
        descriptor: ExecutingDescriptor,
        min_safety: SafetyLevel,
        keys: Vec<TxKey>,
    ) -> Self {
        Self { block, descriptor, min_safety, keys }
    }

    /// The request, with each tx's hash and messages read from the store now (a tx that left
    /// the store since planning is not checked; slot keys do not move while a pass is out, as
    /// only the pool sync that starts a pass forgets txs).
    pub fn build(self, tracker: &Tracker) -> Batch {
        let n = self.keys.len();
        let mut batch = Batch {
            block: self.block,
            hashes: Vec::with_capacity(n),
            keys: Vec::with_capacity(n),
            reqs: Vec::with_capacity(n),
        };
        for key in self.keys {
            let Some((hash, t)) = tracker.txs.at(key) else {
                continue;
            };
            batch.hashes.push(*hash);
            batch.keys.push(key);
            batch.reqs.push(CheckRequest {
                messages: t.messages.clone(),
                min_safety: self.min_safety,
                descriptor: self.descriptor,
            });
        }
        batch
    }
}

impl Plan {
    /// Backend requests the pass sends: one per group, split at `max_checks_per_request`.
    pub fn requests(&self) -> usize {
        let max = self.max_checks_per_request.max(1);
        self.groups.iter().map(|g| g.keys.len().div_ceil(max)).sum()
    }

    /// The requests, in block order, each built when taken; a group's list is freed once
    /// all its chunks are taken.
    pub fn into_chunks(self) -> impl Iterator<Item = Chunk> {
        let (max, min_safety, chain_id) =
            (self.max_checks_per_request.max(1), self.min_safety, self.chain_id);
        self.groups.into_iter().flat_map(move |g| {
            let descriptor =
                ExecutingDescriptor { timestamp: g.timestamp, timeout: Some(g.timeout), chain_id };
            let mut rest = g.keys;
            let block = g.block;
            std::iter::from_fn(move || {
                if rest.is_empty() {
                    return None;
                }
                let tail = rest.split_off(rest.len().min(max));
                let keys = std::mem::replace(&mut rest, tail);
                Some(Chunk { block, descriptor, min_safety, keys })
            })
        })
    }

    /// Every request at once (tests; a pass builds them as it sends them).
    #[cfg(test)]
    pub fn batches(&self, tracker: &Tracker) -> Vec<Batch> {
        self.clone().into_chunks().map(|c| c.build(tracker)).collect()
    }
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
    let mut groups = Groups::new(kind, p, now_unix, head.timestamp, placement.blocks);
    for (pos, (tx, block)) in snap.txs.iter().zip(&placement.block_of).enumerate() {
        if tx.inbox.is_some() {
            groups.assign_at(tracker, pos, &tx.hash, *block, false);
        }
    }
    groups.into_plan()
}

/// Like [`plan`], on a mirror: a full pass walks every sender's run (no sort of the pool) and
/// keeps the block boundaries; a near pass walks only the near blocks and places new and
/// retried txs beyond them by those boundaries (see the module doc).
pub fn plan_mirror(
    tracker: &mut Tracker,
    mirror: &mut PoolMirror,
    kind: PassKind,
    p: &PlanParams,
    now_unix: u64,
) -> Plan {
    let head = mirror.snapshot().head;
    let gas_limit = effective_gas_limit(head.gas_limit, p.system_gas_margin);
    if kind == PassKind::Full || mirror.placed().is_none() {
        let (block_of, placed) = {
            let txs = &mirror.snapshot().txs;
            walk_all(runs(mirror), txs, head.base_fee, gas_limit)
        };
        let mut groups = Groups::new(kind, p, now_unix, head.timestamp, placed.blocks);
        for (pos, tx) in mirror.snapshot().txs.iter().enumerate() {
            if tx.inbox.is_some() {
                groups.assign_at(tracker, pos, &tx.hash, block_of.get(pos), false);
            }
        }
        mirror.set_placed(placed);
        return groups.into_plan();
    }
    let txs: &[PoolTx] = &mirror.snapshot().txs;
    let mut near: Vec<(usize, u32)> = Vec::new();
    let (walked, complete) =
        walk(runs(mirror), txs, head.base_fee, gas_limit, p.near_blocks, |pos, block, _| {
            near.push((pos, block))
        });
    let Some(placed) = mirror.placed() else {
        return Groups::new(kind, p, now_unix, head.timestamp, 0).into_plan();
    };
    let blocks = if complete { walked } else { placed.blocks.max(walked + 1) };
    let mut groups = Groups::new(kind, p, now_unix, head.timestamp, blocks);
    for &(pos, block) in &near {
        let tx = &txs[pos];
        if tx.inbox.is_some() {
            groups.assign_at(tracker, pos, &tx.hash, Some(block), true);
        }
    }
    // New and retried txs beyond the near blocks (or unplaced).
    let soon: Vec<TxKey> = tracker.soon().filter(|&k| !groups.seen.get(k)).collect();
    for key in soon {
        let Some((_, t)) = tracker.txs.at(key) else { continue };
        let Some((run, i)) = mirror.find(&t.sender, t.nonce) else { continue };
        let block = fill_key(run, i, txs, head.base_fee, gas_limit).map(|_| {
            // In the run: the block its fill key had in the last full walk, at that walk's base
            // fee; beyond the near blocks (the near walk did not reach it) unless it completed.
            let key = fill_key(run, i, txs, placed.base_fee, u64::MAX);
            let estimate = key.map_or(blocks, |k| placed.block_of(&k));
            if complete {
                estimate.min(blocks.saturating_sub(1))
            } else {
                estimate.max(p.near_blocks)
            }
        });
        groups.assign(tracker, key, block, true);
    }
    groups.into_plan()
}

fn runs(m: &PoolMirror) -> impl Iterator<Item = Run<'_>> {
    m.senders().iter().map(|(a, r)| (a, r.as_slice()))
}

/// Due checks by presumed block, as a pass assigns blocks.
struct Groups<'a> {
    kind: PassKind,
    p: &'a PlanParams,
    now_unix: u64,
    head_timestamp: u64,
    blocks: u32,
    /// Key: presumed block, unplaced last. Value: the due txs.
    by_block: BTreeMap<u32, Vec<TxKey>>,
    /// Txs assigned (only kept when a pass assigns a subset: to not assign one twice).
    seen: Bits,
}

impl<'a> Groups<'a> {
    fn new(
        kind: PassKind,
        p: &'a PlanParams,
        now_unix: u64,
        head_timestamp: u64,
        blocks: u32,
    ) -> Self {
        Self {
            kind,
            p,
            now_unix,
            head_timestamp,
            blocks,
            by_block: BTreeMap::new(),
            seen: Default::default(),
        }
    }

    fn ts_of(&self, block: Option<u32>) -> u64 {
        expected_timestamp(self.head_timestamp, block.unwrap_or(self.blocks), self.p.block_time)
    }

    /// Seconds to a tx's next check (its descriptor timeout): the next pass in the near
    /// blocks, else the next full pass.
    fn timeout_of(&self, block: Option<u32>) -> u64 {
        let p = self.p;
        whole_secs(if p.is_near(block) { p.interval } else { p.next_full_in.max(p.interval) })
    }

    /// [`Self::assign`] for the tracked tx with `hash` at pool position `pos` (nothing when
    /// it is not tracked).
    fn assign_at(
        &mut self,
        tracker: &mut Tracker,
        pos: usize,
        hash: &B256,
        block: Option<u32>,
        remember: bool,
    ) {
        if let Some(key) = tracker.key_at(pos, hash) {
            self.assign(tracker, key, block, remember);
        }
    }

    /// Records the presumed block and next check of the tx in slot `key`; queues its check
    /// when due.
    fn assign(&mut self, tracker: &mut Tracker, key: TxKey, block: Option<u32>, remember: bool) {
        let expected_ts = self.ts_of(block);
        let Some((_, t)) = tracker.txs.at_mut(key) else {
            return;
        };
        if remember {
            self.seen.set(key, true);
        }
        t.set_presumed_block(block);
        t.expected_ts = expected_ts;
        if matches!(t.status, TxStatus::Invalid { .. }) {
            t.set_next_check_unix(None);
            return;
        }
        t.set_next_check_unix(Some(self.now_unix.saturating_add(self.timeout_of(block))));
        let due = self.kind == PassKind::Full
            || self.p.is_near(block)
            || t.retry
            || t.status == TxStatus::Unchecked;
        if due {
            self.by_block.entry(block.unwrap_or(u32::MAX)).or_default().push(key);
        }
    }

    fn into_plan(mut self) -> Plan {
        let p = self.p;
        let by_block = std::mem::take(&mut self.by_block);
        let groups: Vec<Group> = by_block
            .into_iter()
            .map(|(key, keys)| {
                let block = (key != u32::MAX).then_some(key);
                Group { block, timestamp: self.ts_of(block), timeout: self.timeout_of(block), keys }
            })
            .collect();
        Plan {
            presumed_blocks: self.blocks,
            blocks_checked: groups.len(),
            groups,
            max_checks_per_request: p.max_checks_per_request,
            min_safety: p.min_safety,
            chain_id: p.chain_id,
        }
    }
}

/// Sends every batch (at most `sem`'s permits at once, each bounded by `timeout`) and returns
/// one verdict per check, in order. A timed-out or short answer counts as unanswered.
pub async fn execute(
    backend: &dyn Backend,
    batches: &[Batch],
    sem: &Semaphore,
    timeout: Duration,
) -> Vec<Vec<Verdict>> {
    futures::future::join_all(batches.iter().map(|b| execute_one(backend, b, sem, timeout))).await
}

/// Sends one batch once `sem` gives a permit, bounded by `timeout`: one verdict per check.
pub async fn execute_one(
    backend: &dyn Backend,
    batch: &Batch,
    sem: &Semaphore,
    timeout: Duration,
) -> Vec<Verdict> {
    let n = batch.reqs.len();
    let Ok(_permit) = sem.acquire().await else {
        return vec![Verdict::Unavailable("revalidator shutting down".into()); n];
    };
    match tokio::time::timeout(timeout, backend.check_batch(&batch.reqs)).await {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interop::{encode_entries, Message};
    use crate::revalidator::feed::Feed;
    use crate::revalidator::pool::{Fees, Head};
    use crate::revalidator::tracker::TrackerLimits;
    use alloy_primitives::Address;
    use std::collections::BTreeSet;
    use std::time::Instant;

    fn tracker() -> Tracker {
        let limits = TrackerLimits {
            max_tracked: 10_000,
            max_inbox_entries: 16,
            max_unknown: Duration::from_secs(600),
            chain_id: None,
        };
        Tracker::new(limits, Feed::new(100))
    }

    fn params() -> PlanParams {
        PlanParams {
            near_blocks: 2,
            block_time: 2,
            system_gas_margin: 0,
            min_safety: SafetyLevel::CrossUnsafe,
            chain_id: None,
            interval: Duration::from_secs(2),
            next_full_in: Duration::from_secs(30),
            max_checks_per_request: 1_000,
        }
    }

    fn tx(i: u64, sender: u64, nonce: u64, tip: u128) -> PoolTx {
        let mut a = [0u8; 20];
        a[12..].copy_from_slice(&(sender + 1).to_be_bytes());
        let mut checksum = alloy_primitives::keccak256(i.to_be_bytes());
        checksum.0[0] = 3; // the message checksum's version byte
        let m = Message {
            chain_id: U256::from(901),
            block_number: i,
            timestamp: 10,
            log_index: 0,
            checksum,
        };
        PoolTx {
            hash: alloy_primitives::keccak256([i, sender, nonce].map(u64::to_be_bytes).concat()),
            sender: Address::from(a),
            nonce,
            gas: 21_000 + (i % 3) * 20_000,
            fees: Fees::dynamic(1_000, tip),
            inbox: (i % 2 == 0).then(|| encode_entries(&[m])),
        }
    }

    /// (block, hash) of every check, in order.
    fn checks(plan: &Plan, t: &Tracker) -> Vec<(Option<u32>, B256)> {
        let hash = |k: &TxKey| *t.txs.at(*k).unwrap().0;
        plan.groups.iter().flat_map(|g| g.keys.iter().map(move |k| (g.block, hash(k)))).collect()
    }

    fn record_valid(t: &mut Tracker, plan: &Plan) {
        for b in &plan.batches(t) {
            for (h, r) in b.hashes.iter().zip(&b.reqs) {
                let v = Verdict::Valid { until: u64::MAX };
                t.record(*h, v, &r.descriptor, r.min_safety, Instant::now(), 1);
            }
        }
    }

    /// On a mirror, a full pass checks exactly what the snapshot pass does, block for block; a
    /// near pass checks the same txs, the near blocks' exactly, with new txs beyond them placed
    /// by the last full walk's boundaries (never inside the near blocks).
    #[test]
    fn mirror_passes_check_what_snapshot_passes_check() {
        let head = Head { number: 1, timestamp: 1_000, base_fee: 100, gas_limit: 200_000 };
        let mut m = PoolMirror::new(10_000);
        m.follow_head(head, B256::ZERO, B256::ZERO, &[]);
        let mut i = 0;
        for s in 0..40 {
            for n in 0..5 {
                i += 1;
                m.insert(tx(i, s, n + u64::from(s % 7 == 0), (i as u128 * 7) % 50));
            }
        }
        let (mut a, mut b) = (tracker(), tracker());
        let (now, p) = (Instant::now(), params());
        a.sync(&m.snapshot().txs.clone(), now, 1);
        let snap = m.snapshot().clone();
        let want = plan(&mut a, &snap, PassKind::Full, &p, 1);
        b.sync_mirror(&mut m, now, 1);
        let got = plan_mirror(&mut b, &mut m, PassKind::Full, &p, 1);
        assert_eq!(checks(&got, &b), checks(&want, &a));
        assert_eq!(got.presumed_blocks, want.presumed_blocks);
        assert!(
            want.presumed_blocks > 4 && !got.groups.is_empty(),
            "{} {}",
            want.presumed_blocks,
            got.groups.len()
        );
        record_valid(&mut a, &want);
        record_valid(&mut b, &got);

        // New senders (some tipping high, landing in the near blocks), inclusions.
        for s in 100..130 {
            i += 1;
            m.insert(tx(i, s, 0, if s % 3 == 0 { 60 } else { 1 }));
        }
        for s in 0..10 {
            let mut addr = [0u8; 20];
            addr[12..].copy_from_slice(&(s + 1u64).to_be_bytes());
            m.include(Address::from(addr), 1);
        }
        let snap = m.snapshot().clone();
        a.sync(&snap.txs, now, 2);
        let sync = b.sync_mirror(&mut m, now, 2);
        assert!(sync.added > 0 && sync.removed > 0, "{sync:?}");
        let want = plan(&mut a, &snap, PassKind::Near, &p, 2);
        let got = plan_mirror(&mut b, &mut m, PassKind::Near, &p, 2);
        let near = |c: &[(Option<u32>, B256)]| -> Vec<(Option<u32>, B256)> {
            // Within a block the order of checks does not matter: compare sorted.
            let mut v: Vec<_> =
                c.iter().filter(|(b, _)| b.is_some_and(|b| b < p.near_blocks)).copied().collect();
            v.sort();
            v
        };
        let (want_checks, got_checks) = (checks(&want, &a), checks(&got, &b));
        assert!(!near(&want_checks).is_empty());
        assert_eq!(near(&got_checks), near(&want_checks));
        let set = |c: &[(Option<u32>, B256)]| c.iter().map(|x| x.1).collect::<BTreeSet<_>>();
        assert_eq!(set(&got_checks), set(&want_checks));
        for (block, hash) in &got_checks {
            let exact = want_checks.iter().find(|c| c.1 == *hash).map(|c| c.0);
            assert_eq!(block.is_none(), exact == Some(None), "unplaced stays unplaced");
        }
    }
}
