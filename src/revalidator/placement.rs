//! Presumed blocks: where a builder would put each pending tx, so each interop tx is checked
//! against the timestamp of the block it will likely land in, and a block's txs go in one request.
//!
//! The model is a builder's greedy fill: senders take turns by the effective tip of their next tx
//! (a heap of sender heads), each sender's txs in nonce order, and blocks are cut in that order
//! by gas. Choices, all deliberate:
//! - A sender contributes only the contiguous nonce run from its lowest pending nonce; a gap
//!   stops it (the EL cannot include what follows a gap).
//! - A tx whose fee cap is below the current base fee is placed after every includable head (its
//!   effective tip is negative), not excluded: it becomes includable as soon as the base fee
//!   falls, and we would rather check it early than not at all.
//! - A tx that does not fit in the current block closes it and opens the next one (no back-fill
//!   with smaller txs of other senders: cheaper, and only shifts later txs by at most a block).
//! - A tx whose gas exceeds the effective gas limit can never be included: it and the rest of its
//!   sender's run are left unplaced.
//! - Ties in tip go to the lower sender address, so the result is deterministic.
//!
//! [`place`] is the reference: it sorts a snapshot by sender and nonce, then fills. A mirrored
//! pool already keeps each sender's txs sorted by nonce, so [`walk`] fills straight from those
//! runs (a heap over sender heads, built in linear time once the senders are sorted by address;
//! no sort of the pool) and can stop after
//! the first `n` blocks: a near pass walks only the blocks it checks. Both give the same blocks
//! (a property test checks it over random pools and mutations).
//!
//! The fill order is also a sort: a tx's place is its *fill key* (the lowest effective tip
//! among it and its sender's earlier txs, highest first; then sender; then nonce), because a
//! sender's later tx with a higher tip waits for the earlier one and then goes at once. A full
//! walk keeps the fill key of each block's last tx ([`FullPlacement`]), so a tx that arrived
//! since can be given the block it would have had, without a walk.

use std::cmp::Reverse;
use std::collections::binary_heap::{BinaryHeap, PeekMut};

use alloy_primitives::Address;

use super::pool::PoolTx;

/// Where each tx goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Presumed block index (0 = the next block) of each input tx, `None` when unplaced.
    pub block_of: Vec<Option<u32>>,
    /// Number of presumed blocks with at least one tx.
    pub blocks: u32,
}

/// The gas a block can give to pool txs: the block gas limit less the system margin.
pub fn effective_gas_limit(block_gas_limit: u64, system_margin: u64) -> u64 {
    block_gas_limit.saturating_sub(system_margin)
}

/// When presumed block `index` is expected: one `block_time` per block after the head.
pub fn expected_timestamp(head_timestamp: u64, index: u32, block_time: u64) -> u64 {
    head_timestamp.saturating_add((u64::from(index) + 1).saturating_mul(block_time))
}

/// Places `txs` into consecutive blocks of `gas_limit` gas at `base_fee`.
pub fn place(txs: &[PoolTx], base_fee: u128, gas_limit: u64) -> Placement {
    let n = txs.len();
    let mut block_of = vec![None; n];
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_unstable_by_key(|&i| (txs[i as usize].sender, txs[i as usize].nonce));

    // Each sender's placeable run: [start, end) in `order`.
    let mut runs: Vec<(u32, u32)> = Vec::new();
    let mut i = 0;
    while i < n {
        let sender = txs[order[i] as usize].sender;
        let start = i;
        i += 1;
        while i < n
            && txs[order[i] as usize].sender == sender
            && Some(txs[order[i] as usize].nonce) == txs[order[i - 1] as usize].nonce.checked_add(1)
        {
            i += 1;
        }
        runs.push((start as u32, i as u32));
        while i < n && txs[order[i] as usize].sender == sender {
            i += 1;
        }
    }

    let tip = |pos: u32| txs[order[pos as usize] as usize].fees.effective_tip(base_fee);
    let mut heap: BinaryHeap<(i128, Reverse<u32>, u32)> = runs
        .iter()
        .enumerate()
        .map(|(r, &(start, _))| (tip(start), Reverse(r as u32), start))
        .collect();

    let (mut block, mut used, mut placed_any) = (0u32, 0u64, false);
    while let Some((_, Reverse(run), pos)) = heap.pop() {
        let idx = order[pos as usize] as usize;
        let gas = txs[idx].gas;
        if gas > gas_limit {
            continue;
        }
        if used.saturating_add(gas) > gas_limit {
            block += 1;
            used = 0;
        }
        used += gas;
        block_of[idx] = Some(block);
        placed_any = true;
        let next = pos + 1;
        if next < runs[run as usize].1 {
            heap.push((tip(next), Reverse(run), next));
        }
    }
    Placement { block_of, blocks: if placed_any { block + 1 } else { 0 } }
}

/// Where a tx stands in the fill order (smaller goes first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FillKey {
    /// The lowest effective tip among the tx and its sender's earlier txs (highest first).
    tip: Reverse<i128>,
    sender: Address,
    nonce: u64,
}

/// What a full walk leaves for later near passes: the fill key of each presumed block's last
/// tx, at the base fee it was walked with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FullPlacement {
    /// Base fee of the walk.
    pub base_fee: u128,
    /// Presumed blocks.
    pub blocks: u32,
    last_of_block: Vec<FillKey>,
}

impl FullPlacement {
    /// The block a tx of fill key `key` would have had in that walk (`blocks` when it would come
    /// after every tx: the next block).
    pub fn block_of(&self, key: &FillKey) -> u32 {
        self.last_of_block.partition_point(|k| k < key) as u32
    }
}

/// A sender's txs as their positions in `txs`, sorted by nonce (the nonces are the txs').
pub type Run<'a> = (&'a Address, &'a [u32]);

/// The fill key of the `i`th tx of `sender`'s `txs` at `base_fee`, or `None` when it is not in
/// the sender's placeable run at `gas_limit` (behind a nonce gap, or at or after a tx over the
/// gas limit).
pub fn fill_key(
    (sender, run): Run<'_>,
    i: usize,
    txs: &[PoolTx],
    base_fee: u128,
    gas_limit: u64,
) -> Option<FillKey> {
    let mut tip = i128::MAX;
    let mut prev: Option<u64> = None;
    for &pos in run.iter().take(i + 1) {
        let tx = &txs[pos as usize];
        if prev.is_some_and(|p| p.checked_add(1) != Some(tx.nonce)) || tx.gas > gas_limit {
            return None;
        }
        tip = tip.min(tx.fees.effective_tip(base_fee));
        prev = Some(tx.nonce);
    }
    let nonce = txs[*run.get(i)? as usize].nonce;
    Some(FillKey { tip: Reverse(tip), sender: *sender, nonce })
}

/// A sender head in the walk's heap: (fill tip, high half; fill tip, low half; run index,
/// reversed; index in the run). Self-contained and 24 bytes, so the heap (one entry per sender)
/// stays dense in cache: the runs are sorted by sender first, so the run index breaks ties as
/// the address does, and the `i128` tip is split in an `i64` and a `u64` that order the same
/// (an `i128` field would align the entry to 32 bytes).
type Head = (i64, u64, Reverse<u32>, u32);

fn split(tip: i128) -> (i64, u64) {
    ((tip >> 64) as i64, tip as u64)
}

fn join(high: i64, low: u64) -> i128 {
    (i128::from(high) << 64) | i128::from(low)
}

/// Fills blocks from per-sender runs exactly as [`place`] does, calling `visit(position, block,
/// fill key)` for each placed tx in fill order, and stops before the first tx of block
/// `stop_at`. Returns the number of blocks filled and whether every placeable tx was visited.
///
/// The heap holds each sender's next tx keyed by its *fill* tip (the lowest among it and its
/// sender's earlier txs) rather than its own: the order is the same (a sender's tx with a higher
/// tip than its predecessor's still goes right after it), and the key the visit needs rides in
/// the entry. A placed head is replaced in place by its sender's next tx (one sift down, which
/// stops at once when that tx goes next), not popped and pushed again.
pub fn walk<'a>(
    senders: impl IntoIterator<Item = Run<'a>>,
    txs: &[PoolTx],
    base_fee: u128,
    gas_limit: u64,
    stop_at: u32,
    mut visit: impl FnMut(usize, u32, FillKey),
) -> (u32, bool) {
    let mut runs: Vec<Run<'a>> = senders
        .into_iter()
        .filter(|(_, run)| run.first().is_some_and(|&p| txs[p as usize].gas <= gas_limit))
        .collect();
    runs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let heads: Vec<Head> = (runs.iter().enumerate())
        .map(|(r, (_, run))| {
            let (high, low) = split(txs[run[0] as usize].fees.effective_tip(base_fee));
            (high, low, Reverse(r as u32), 0)
        })
        .collect();
    let mut heap = BinaryHeap::from(heads);
    let (mut block, mut used, mut placed_any) = (0u32, 0u64, false);
    while let Some(mut top) = heap.peek_mut() {
        let (high, low, Reverse(r), i) = *top;
        let (sender, run) = runs[r as usize];
        let pos = run[i as usize];
        let tx = &txs[pos as usize];
        if used.saturating_add(tx.gas) > gas_limit {
            block += 1;
            used = 0;
        }
        if block >= stop_at {
            return (block, false);
        }
        used += tx.gas;
        placed_any = true;
        let tip = join(high, low);
        visit(pos as usize, block, FillKey { tip: Reverse(tip), sender: *sender, nonce: tx.nonce });
        let next = (run.get(i as usize + 1).map(|&p| &txs[p as usize]))
            .filter(|n| tx.nonce.checked_add(1) == Some(n.nonce) && n.gas <= gas_limit);
        match next {
            Some(n) => {
                let (high, low) = split(tip.min(n.fees.effective_tip(base_fee)));
                *top = (high, low, Reverse(r), i + 1);
            }
            None => {
                PeekMut::pop(top);
            }
        }
    }
    (if placed_any { block + 1 } else { 0 }, true)
}

/// The blocks a full walk gave the interop txs, by position: all a pass needs from it.
///
/// Only interop txs are checked, so only their blocks are kept: a bit per tx marks them and a
/// count per 64 txs ranks them, so at 1M txs with 10% interop this holds ~0.6 MB rather than
/// the 4 MB of a block for every tx (8 MB as `Option<u32>`), found in O(1) by position.
#[derive(Debug, Clone, Default)]
pub struct InteropBlocks {
    /// Bit `pos % 64` of word `pos / 64`: the tx at `pos` is an interop tx.
    marks: Vec<u64>,
    /// Interop txs before each word.
    rank: Vec<u32>,
    /// Block of each interop tx in position order ([`Self::UNPLACED`] when it has none).
    blocks: Vec<u32>,
}

impl InteropBlocks {
    const UNPLACED: u32 = u32::MAX;

    /// Room for the interop txs of `txs`, none placed yet.
    fn new(txs: &[PoolTx]) -> Self {
        let mut marks = vec![0u64; txs.len().div_ceil(64)];
        for (pos, tx) in txs.iter().enumerate() {
            if tx.inbox.is_some() {
                marks[pos / 64] |= 1 << (pos % 64);
            }
        }
        let mut rank = Vec::with_capacity(marks.len());
        let mut n = 0u32;
        for w in &marks {
            rank.push(n);
            n += w.count_ones();
        }
        Self { marks, rank, blocks: vec![Self::UNPLACED; n as usize] }
    }

    fn slot(&self, pos: usize) -> Option<usize> {
        let (word, bit) = (*self.marks.get(pos / 64)?, 1u64 << (pos % 64));
        (word & bit != 0)
            .then(|| self.rank[pos / 64] as usize + (word & (bit - 1)).count_ones() as usize)
    }

    /// The block of the interop tx at `pos`; `None` when it has none (behind a nonce gap, over
    /// the gas limit) or is not an interop tx.
    pub fn get(&self, pos: usize) -> Option<u32> {
        self.slot(pos).map(|i| self.blocks[i]).filter(|&b| b != Self::UNPLACED)
    }

    fn set(&mut self, pos: usize, block: u32) {
        if let Some(i) = self.slot(pos) {
            self.blocks[i] = block;
        }
    }
}

/// A full walk: the block of every interop tx, and the boundaries kept for near passes.
pub fn walk_all<'a>(
    senders: impl IntoIterator<Item = Run<'a>>,
    txs: &[PoolTx],
    base_fee: u128,
    gas_limit: u64,
) -> (InteropBlocks, FullPlacement) {
    let mut block_of = InteropBlocks::new(txs);
    let mut last_of_block: Vec<FillKey> = Vec::new();
    let (blocks, _) = walk(senders, txs, base_fee, gas_limit, u32::MAX, |pos, block, key| {
        block_of.set(pos, block);
        match last_of_block.get_mut(block as usize) {
            Some(last) => *last = key,
            None => last_of_block.push(key),
        }
    });
    (block_of, FullPlacement { base_fee, blocks, last_of_block })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revalidator::pool::Fees;
    use alloy_primitives::B256;

    fn tx(sender: u8, nonce: u64, gas: u64, max_fee: u128, tip: u128) -> PoolTx {
        PoolTx {
            hash: B256::with_last_byte(sender.wrapping_mul(16).wrapping_add(nonce as u8)),
            sender: Address::repeat_byte(sender),
            nonce,
            gas,
            fees: Fees::dynamic(max_fee, tip),
            inbox: None,
        }
    }

    #[test]
    fn orders_by_tip_keeps_nonce_order_and_cuts_by_gas() {
        // Base fee 100, block of 100k gas.
        // A: tips 5 then 50 (nonce order forces the cheap one first).
        // B: tip 20. C: tip 30 but fee cap 120 -> effective tip min(30, 20) = 20, ties B by address.
        let txs = vec![
            tx(0xa, 0, 40_000, 1_000, 5),
            tx(0xa, 1, 40_000, 1_000, 50),
            tx(0xb, 3, 40_000, 1_000, 20),
            tx(0xc, 0, 40_000, 120, 30),
        ];
        let p = place(&txs, 100, 100_000);
        // Order: B(20) [tie with C, lower address], C(20), A0(5), A1(50).
        // Gas: B+C = 80k in block 0; A0 would make 120k -> block 1; A1 fits with it (80k).
        assert_eq!(p.block_of, vec![Some(1), Some(1), Some(0), Some(0)]);
        assert_eq!(p.blocks, 2);
    }

    #[test]
    fn gaps_stop_a_sender_and_unpayable_txs_go_last() {
        let txs = vec![
            tx(1, 5, 21_000, 1_000, 10),
            tx(1, 7, 21_000, 1_000, 10), // gap after nonce 5: unplaced
            tx(2, 0, 21_000, 90, 10),    // fee cap below base fee 100: after the includable ones
            tx(3, 0, 21_000, 1_000, 1),
            tx(3, 1, 200_000, 1_000, 1), // never fits: unplaced, and so is what follows
            tx(3, 2, 21_000, 1_000, 1),
        ];
        let p = place(&txs, 100, 50_000);
        // Includable order: 1/5 (tip 10), 3/0 (tip 1) -> block 0 (42k); then 2/0 (tip -10) -> block 1.
        assert_eq!(p.block_of, vec![Some(0), None, Some(1), Some(0), None, None]);
        assert_eq!(p.blocks, 2);
    }

    #[test]
    fn legacy_txs_and_exact_fits() {
        let mut a = tx(1, 0, 50_000, 0, 0);
        a.fees = Fees::legacy(130); // tip 30
        let b = tx(2, 0, 50_000, 1_000, 20);
        let c = tx(3, 0, 1, 1_000, 10);
        let p = place(&[a, b, c], 100, 100_000);
        // a and b fill block 0 exactly; c (1 gas) no longer fits.
        assert_eq!(p.block_of, vec![Some(0), Some(0), Some(1)]);
        assert_eq!(effective_gas_limit(30_000_000, 100_000), 29_900_000);
        assert_eq!(effective_gas_limit(50, 100_000), 0);
        assert_eq!(expected_timestamp(1_000, 0, 2), 1_002);
        assert_eq!(expected_timestamp(1_000, 3, 2), 1_008);
        assert_eq!(place(&[], 0, 10), Placement { block_of: vec![], blocks: 0 });
    }
}

#[cfg(test)]
mod incremental {
    use super::*;
    use crate::revalidator::mirror::PoolMirror;
    use crate::revalidator::pool::Fees;
    use alloy_primitives::B256;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_tx(r: &mut Rng, salt: u64) -> PoolTx {
        let sender = r.below(12) as u8 + 1;
        let nonce = r.below(8);
        let gas = if r.below(40) == 0 { 200_000 } else { 21_000 + r.below(5) * 10_000 };
        // Few distinct tips, so ties between senders are common.
        let tip = u128::from(r.below(6)) * 10;
        let fees = if r.below(4) == 0 {
            Fees::legacy(80 + tip)
        } else {
            Fees::dynamic(90 + u128::from(r.below(4)) * 10, tip)
        };
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&salt.to_be_bytes());
        PoolTx {
            hash: B256::from(hash),
            sender: Address::repeat_byte(sender),
            nonce,
            gas,
            fees,
            // Every third tx interop (by salt: the random stream stays the same).
            inbox: (salt % 3 == 0).then(Vec::new),
        }
    }

    fn runs(m: &PoolMirror) -> impl Iterator<Item = Run<'_>> {
        m.senders().iter().map(|(a, r)| (a, r.as_slice()))
    }

    /// The incremental walk (from the mirror's per-sender runs, with or without a stop) places
    /// every tx where the reference `place` does, over random inserts, replacements by fee,
    /// nonce gaps, inclusions, base-fee and gas-limit changes; and a full walk's boundaries
    /// give every placed tx its exact block back.
    #[test]
    fn walking_the_mirror_equals_place_over_random_mutations() {
        for seed in 1..=40u64 {
            let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut m = PoolMirror::new(10_000);
            let (mut base_fee, mut gas_limit) = (100u128, 100_000u64);
            for step in 0..150u64 {
                match r.below(10) {
                    0 => {
                        let s = Address::repeat_byte(r.below(12) as u8 + 1);
                        m.include(s, r.below(4));
                    }
                    1 => base_fee = 70 + u128::from(r.below(6)) * 10,
                    2 => gas_limit = [60_000, 100_000, 150_000][r.below(3) as usize],
                    // Inserts; a used (sender, nonce) with a new hash is a replacement by fee.
                    _ => {
                        m.insert(random_tx(&mut r, seed * 1_000 + step));
                    }
                }
                let txs = &m.snapshot().txs;
                let want = place(txs, base_fee, gas_limit);
                let (interop, full) = walk_all(runs(&m), txs, base_fee, gas_limit);
                let mut block_of = vec![None; txs.len()];
                let (_, complete) =
                    walk(runs(&m), txs, base_fee, gas_limit, u32::MAX, |pos, b, _| {
                        block_of[pos] = Some(b)
                    });
                assert!(complete);
                assert_eq!(block_of, want.block_of, "seed {seed} step {step}");
                for (pos, tx) in txs.iter().enumerate() {
                    let want = want.block_of[pos].filter(|_| tx.inbox.is_some());
                    assert_eq!(interop.get(pos), want, "seed {seed} step {step} pos {pos}");
                }
                assert_eq!(full.blocks, want.blocks, "seed {seed} step {step}");
                for stop in [1u32, 2] {
                    let mut near = vec![None; txs.len()];
                    let (_, complete) =
                        walk(runs(&m), txs, base_fee, gas_limit, stop, |pos, b, _| {
                            near[pos] = Some(b)
                        });
                    let cut: Vec<_> =
                        want.block_of.iter().map(|b| b.filter(|b| *b < stop)).collect();
                    assert_eq!(near, cut, "seed {seed} step {step} stop {stop}");
                    assert_eq!(complete, want.blocks <= stop);
                }
                for (sender, run) in m.senders() {
                    for (i, &pos) in run.iter().enumerate() {
                        let key = fill_key((sender, run), i, txs, base_fee, gas_limit);
                        let got = key.map(|k| full.block_of(&k));
                        assert_eq!(got, want.block_of[pos as usize], "seed {seed} step {step}");
                    }
                }
            }
        }
    }
}
