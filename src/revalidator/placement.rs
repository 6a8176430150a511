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

use std::cmp::Reverse;
use std::collections::BinaryHeap;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revalidator::pool::Fees;
    use alloy_primitives::{Address, B256};

    fn tx(sender: u8, nonce: u64, gas: u64, max_fee: u128, tip: u128) -> PoolTx {
        PoolTx {
            hash: B256::with_last_byte(sender.wrapping_mul(16).wrapping_add(nonce as u8)),
            sender: Address::repeat_byte(sender),
            nonce,
            gas,
            fees: Fees::Dynamic { max_fee, max_priority_fee: tip },
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
        a.fees = Fees::Legacy { gas_price: 130 }; // tip 30
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
