//! Which blocks of one source chain checks are waiting on to reach a safety head, and the event
//! sent when a head reaches them.
//!
//! Why: a check at `safe` (or `finalized`) of a message whose block is not safe yet answers
//! "not yet known"; without an event, the revalidator asks again only at its next interval pass.
//! A caller that got such an answer registers the block here ([`HeadWaits::wait`]); the reorg
//! watch reads the `safe`/`finalized` head only while some block waits on it (`latest` it reads
//! anyway), and when a head it reads reaches a waiting block it sends a [`HeadAdvance`], so the
//! waiting txs are re-checked at once.
//!
//! No I/O here: the watch in `chain_view.rs` reads the heads and calls [`HeadWaits::observe`].

use std::collections::BTreeSet;

use crate::interop::{ChainId, SafetyLevel};

/// Blocks kept waiting per chain and head; past it a new block is kept only when lower than the
/// highest kept (the lowest are reached first), and the others wait for the interval passes.
pub const MAX_WAITING_BLOCKS: usize = 4_096;

/// How far past the `latest` head last observed a waiting block may be: a block further ahead
/// is not one the chain is about to produce (a bogus message), and would keep the watch reading
/// a head for nothing.
pub const MAX_AHEAD_OF_LATEST: u64 = 64;

/// The head a safety level is judged against (the light backend's mapping, see `rules.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeadTag {
    /// `latest`: `unsafe` and `cross-unsafe`.
    Latest,
    /// `safe`: `local-safe` and `safe`.
    Safe,
    /// `finalized`.
    Finalized,
}

impl HeadTag {
    /// Every tag, in [`Self::index`] order.
    pub const ALL: [HeadTag; 3] = [HeadTag::Latest, HeadTag::Safe, HeadTag::Finalized];

    /// The head a message must be at or below to have `safety`.
    pub fn for_safety(safety: SafetyLevel) -> Self {
        match safety {
            SafetyLevel::Invalid | SafetyLevel::Unsafe | SafetyLevel::CrossUnsafe => Self::Latest,
            SafetyLevel::LocalSafe | SafetyLevel::Safe => Self::Safe,
            SafetyLevel::Finalized => Self::Finalized,
        }
    }

    /// The block tag of `eth_getBlockByNumber`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Latest => "latest",
            Self::Safe => "safe",
            Self::Finalized => "finalized",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A head of a source chain reached blocks some check waited on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadAdvance {
    /// The chain.
    pub chain_id: ChainId,
    /// Which head.
    pub tag: HeadTag,
    /// The lowest waiting block it reached.
    pub from: u64,
    /// The head's number now (every block from `from` to it has reached `tag`).
    pub to: u64,
}

/// One chain's waiting blocks per head, and the heads last observed.
#[derive(Debug, Default)]
pub struct HeadWaits {
    waiting: [BTreeSet<u64>; 3],
    observed: [Option<u64>; 3],
}

impl HeadWaits {
    /// Registers that a check waits for `tag`'s head to reach `block`. Refused (false) when the
    /// head was already observed at or past it (the wait is then not about that head: a time
    /// rule, a backend that lags; re-registering it could re-check the same tx forever), or when
    /// it is more than [`MAX_AHEAD_OF_LATEST`] past the `latest` head observed.
    pub fn wait(&mut self, tag: HeadTag, block: u64) -> bool {
        if self.observed[tag.index()].is_some_and(|h| block <= h) {
            return false;
        }
        let latest = self.observed[HeadTag::Latest.index()];
        if latest.is_some_and(|l| block > l.saturating_add(MAX_AHEAD_OF_LATEST)) {
            return false;
        }
        let set = &mut self.waiting[tag.index()];
        if set.len() >= MAX_WAITING_BLOCKS {
            match set.last() {
                Some(&highest) if block < highest => {
                    set.remove(&highest);
                }
                _ => return false,
            }
        }
        set.insert(block);
        true
    }

    /// True when some block waits on `tag` (the watch reads that head only then).
    pub fn is_waiting(&self, tag: HeadTag) -> bool {
        !self.waiting[tag.index()].is_empty()
    }

    /// Blocks waiting on `tag`.
    pub fn waiting(&self, tag: HeadTag) -> usize {
        self.waiting[tag.index()].len()
    }

    /// `tag`'s head is now `number`: the waiting blocks it reached leave, and the lowest of them
    /// is returned (`None`: it reached none).
    pub fn observe(&mut self, tag: HeadTag, number: u64) -> Option<u64> {
        self.observed[tag.index()] = Some(number);
        let set = &mut self.waiting[tag.index()];
        let lowest = *set.first().filter(|b| **b <= number)?;
        let above = set.split_off(&(number.saturating_add(1)));
        *set = above;
        Some(lowest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_reaching_waiting_blocks_releases_them_and_reports_the_lowest() {
        let mut w = HeadWaits::default();
        assert!(!w.is_waiting(HeadTag::Safe));
        assert!(
            w.wait(HeadTag::Safe, 10) && w.wait(HeadTag::Safe, 12) && w.wait(HeadTag::Safe, 20)
        );
        assert!(w.is_waiting(HeadTag::Safe) && !w.is_waiting(HeadTag::Finalized));
        assert_eq!(w.observe(HeadTag::Safe, 9), None, "below every waiting block");
        assert_eq!(w.observe(HeadTag::Safe, 12), Some(10));
        assert_eq!(w.waiting(HeadTag::Safe), 1, "20 still waits");
        // A block the head was seen past is refused: the wait is about something else.
        assert!(!w.wait(HeadTag::Safe, 11));
        assert!(w.wait(HeadTag::Safe, 13));
        assert_eq!(w.observe(HeadTag::Safe, 30), Some(13));
        assert!(!w.is_waiting(HeadTag::Safe));
        // Tags are independent.
        assert!(w.wait(HeadTag::Finalized, 11));
        assert_eq!(w.observe(HeadTag::Latest, 100), None);
        assert_eq!(w.observe(HeadTag::Finalized, 11), Some(11));
        // Far past `latest` (100 here): not a block the chain is about to produce.
        assert!(!w.wait(HeadTag::Safe, 100 + MAX_AHEAD_OF_LATEST + 1));
        assert!(w.wait(HeadTag::Safe, 100 + MAX_AHEAD_OF_LATEST));
    }

    #[test]
    fn the_waiting_set_is_bounded_and_keeps_the_lowest_blocks() {
        let mut w = HeadWaits::default();
        for b in 0..MAX_WAITING_BLOCKS as u64 {
            assert!(w.wait(HeadTag::Safe, 1_000 + b));
        }
        assert!(!w.wait(HeadTag::Safe, 1_000_000), "full: a higher block is not kept");
        assert!(w.wait(HeadTag::Safe, 5), "a lower one replaces the highest");
        assert_eq!(w.waiting(HeadTag::Safe), MAX_WAITING_BLOCKS);
        assert_eq!(w.observe(HeadTag::Safe, 5), Some(5));
    }

    #[test]
    fn safety_levels_map_to_the_heads_the_rules_use() {
        assert_eq!(HeadTag::for_safety(SafetyLevel::CrossUnsafe), HeadTag::Latest);
        assert_eq!(HeadTag::for_safety(SafetyLevel::LocalSafe), HeadTag::Safe);
        assert_eq!(HeadTag::for_safety(SafetyLevel::Safe), HeadTag::Safe);
        assert_eq!(HeadTag::for_safety(SafetyLevel::Finalized), HeadTag::Finalized);
        assert_eq!(HeadTag::ALL.map(HeadTag::as_str), ["latest", "safe", "finalized"]);
    }
}
