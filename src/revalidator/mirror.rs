//! The pool mirror: a copy of the EL's pending pool kept by deltas instead of re-read whole.
//!
//! Why: re-reading `txpool_content` every pass costs ~490 bytes of JSON and its decode per tx
//! (~300 ms of CPU every 2 s at 200k txs). The mirror takes announced txs one by one, drops
//! included ones by sender and nonce when a block arrives, and is reconciled against a full
//! `txpool_content` now and then (and at once after a reorg or a lost subscription) to repair
//! what announcements cannot say: evictions, txs put back by a reorg, missed messages.
//!
//! This file holds no I/O (see [`super::follow`] for that). The txs live in one dense vector
//! (a [`PoolSnapshot`]) so a pass reads them in place, without a copy; removal swaps the last tx
//! into the hole. The only index is (sender, nonce) -> position, the key an EL replaces and
//! includes by: no hash index (at 1M txs a `HashMap<B256, _>` alone costs ~80 MB), since every
//! delta names a sender and nonce. Each sender's positions are one nonce-sorted `Vec<u32>` (a
//! sender's run, as placement walks it) rather than a `BTreeMap` (~3x the memory at 20 txs),
//! holding positions only: the nonce is read from the tx itself (searches and the placement
//! walk read the tx anyway), so at 20 txs a sender's run takes 128 bytes of heap rather than
//! the 512 of `(nonce, position)` pairs (~24 MB less for a 1M-tx pool of 50k senders).
//!
//! So that a pass costs what changed rather than the pool's size, the mirror also logs which
//! interop txs came and went since the last pass ([`PoolMirror::take_changes`]: the store
//! syncs by them), and keeps the last full placement's block boundaries
//! ([`PoolMirror::placed`]) for a near pass to place new txs beyond the near blocks. A
//! reconciliation (or a change log that outgrew its bound) starts a new *epoch*: the store then
//! syncs over the whole mirror once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use alloy_primitives::{Address, B256};

use super::placement::{FullPlacement, Run};
use super::pool::{Head, PoolSnapshot, PoolTx};

/// Epochs are unique across mirrors, so a store never mistakes one mirror's for another's.
static EPOCHS: AtomicU64 = AtomicU64::new(1);

fn next_epoch() -> u64 {
    EPOCHS.fetch_add(1, Ordering::Relaxed)
}

/// An interop tx that came or went since the last [`PoolMirror::take_changes`]. The store
/// checks each against the mirror as it is at the pass (present or not), so the order of
/// changes does not matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The tx.
    pub hash: B256,
    /// Its sender.
    pub sender: Address,
    /// Its nonce.
    pub nonce: u64,
}

/// A sender's mirrored txs: their positions in the dense vector, sorted by the txs' nonces.
pub type SenderTxs = Vec<u32>;

/// What [`PoolMirror::insert`] did with an announced tx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// A new tx.
    Added,
    /// It replaced the tx with the same sender and nonce (a fee bump).
    Replaced,
    /// Already mirrored.
    Known,
    /// The mirror is at its cap; the tx is not mirrored.
    OverLimit,
}

impl Insert {
    /// Metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Replaced => "replaced",
            Self::Known => "known",
            Self::OverLimit => "over_limit",
        }
    }
}

/// What a reconciliation repaired: txs the mirror missed and txs it held that the EL no longer
/// has. Both are zero when the deltas kept it exact.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repair {
    /// In the EL's pool, missing from the mirror.
    pub added: usize,
    /// In the mirror, gone from the EL's pool.
    pub removed: usize,
}

/// Whether a new head continues the one followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadStep {
    /// The child of the head followed (or the first head seen).
    Extends,
    /// Not its child: a reorg of the executing chain or missed heads. Txs of dropped blocks may
    /// be back in the pool, unannounced: reconcile.
    Discontinuous,
}

/// A delta applied while a reconciliation's read was in flight, re-applied on top of it.
#[derive(Debug, Clone)]
enum Op {
    Insert(PoolTx),
    Include(Address, u64),
}

/// A mirrored tx neither the read nor a delta since it began has had (yet).
const UNSEEN: u8 = 0;
/// A mirrored tx the read (or a delta since it began) has too.
const SEEN: u8 = 1;
/// A tx the read put in: the mirror had nothing with its sender and nonce.
const READ_ADDED: u8 = 2;
/// A tx the read put in place of another with its sender and nonce.
const READ_REPLACED: u8 = 3;

/// The mirror.
#[derive(Debug)]
pub struct PoolMirror {
    snap: PoolSnapshot,
    /// Position in `snap.txs` of each sender's txs, sorted by nonce.
    by_sender: HashMap<Address, SenderTxs>,
    head_hash: Option<B256>,
    max_txs: usize,
    /// Deltas seen since a reconciliation read began (`None`: no read in flight).
    journal: Option<Vec<Op>>,
    journal_overflow: bool,
    /// While a reconciliation read is applied (and its deltas re-applied): per position, what
    /// the read knows of the tx ([`UNSEEN`], [`SEEN`], [`READ_ADDED`], [`READ_REPLACED`]);
    /// empty otherwise.
    seen: Vec<u8>,
    /// What the read applied so far repaired (txs it added, txs it replaced away).
    repair: Repair,
    /// The txs the read replaced (rare: replacements the deltas missed), put back if the read
    /// fails: a read that does not complete is no answer, and changes nothing.
    read_replaced: Vec<PoolTx>,
    /// Txs whose inbox entries the store dropped but no longer tracks (see
    /// [`Self::want_inbox`]): the next reconciliation read puts their entries back. Empty but
    /// for that rare case (the store followed full reads while the mirror kept stripped txs).
    want_inbox: HashSet<B256>,
    /// Interop txs added or removed since the last [`Self::take_changes`].
    changes: Vec<Change>,
    /// Whether a store follows this epoch by the log (until then nothing is logged: the
    /// store's first sync of an epoch is over the whole mirror).
    logging: bool,
    epoch: u64,
    placed: Option<FullPlacement>,
}

impl PoolMirror {
    /// An empty mirror holding at most `max_txs` txs.
    pub fn new(max_txs: usize) -> Self {
        // Reserved up front (address space: pages count only once written) so that growing
        // never holds the old and the new vector at once (+50% at the moment of a doubling).
        let txs = Vec::with_capacity(max_txs.min(1 << 22));
        Self {
            snap: PoolSnapshot { txs, ..Default::default() },
            by_sender: HashMap::new(),
            head_hash: None,
            max_txs,
            journal: None,
            journal_overflow: false,
            seen: Vec::new(),
            repair: Repair::default(),
            read_replaced: Vec::new(),
            want_inbox: HashSet::new(),
            changes: Vec::new(),
            logging: false,
            epoch: next_epoch(),
            placed: None,
        }
    }

    /// Which generation of the mirror the change log belongs to: a store synced at another
    /// epoch must sync over the whole mirror.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The interop txs that came or went since the last call (empty on the first call of an
    /// epoch: the caller syncs over the whole mirror then). Changes are logged from then on.
    pub fn take_changes(&mut self) -> Vec<Change> {
        self.logging = true;
        std::mem::take(&mut self.changes)
    }

    /// Starts a new epoch: the log is dropped and off until the next [`Self::take_changes`].
    fn new_epoch(&mut self) {
        self.epoch = next_epoch();
        self.changes = Vec::new();
        self.logging = false;
    }

    fn changed(&mut self, tx: &PoolTx) {
        if tx.inbox.is_none() || !self.logging {
            return;
        }
        if self.changes.len() >= self.max_txs {
            // Nobody drained the log for a long while: start over with a whole-mirror sync.
            self.new_epoch();
            return;
        }
        self.changes.push(Change { hash: tx.hash, sender: tx.sender, nonce: tx.nonce });
    }

    /// Each sender's txs, for placement.
    pub fn senders(&self) -> &HashMap<Address, SenderTxs> {
        &self.by_sender
    }

    /// The tx `sender` has at `nonce`, and its position.
    pub fn get(&self, sender: &Address, nonce: u64) -> Option<(usize, &PoolTx)> {
        let pos = self.position(sender, nonce)?;
        Some((pos, &self.snap.txs[pos]))
    }

    /// Drops the inbox entries of the tx at `pos` (the store parsed them into its own form):
    /// the tx stays marked interop (`Some` of an empty list) and costs no heap memory.
    pub fn strip_inbox(&mut self, pos: usize) {
        if let Some(inbox) = self.snap.txs.get_mut(pos).and_then(|t| t.inbox.as_mut()) {
            *inbox = Vec::new();
        }
    }

    /// The tx at `pos` lost its inbox entries to [`Self::strip_inbox`] but the store does not
    /// track it (any more): the next reconciliation read gives them back, so the store can
    /// track it again. (Rebuilding the mirror from each read gave every tx its entries back;
    /// applied in place, a read keeps the stripped copy of a tx it already has.)
    pub fn want_inbox(&mut self, pos: usize) {
        if let Some(t) = self.snap.txs.get(pos) {
            self.want_inbox.insert(t.hash);
        }
    }

    /// The last full placement (block boundaries), if one was made.
    pub fn placed(&self) -> Option<&FullPlacement> {
        self.placed.as_ref()
    }

    /// Keeps a full placement's block boundaries for later near passes.
    pub fn set_placed(&mut self, placed: FullPlacement) {
        self.placed = Some(placed);
    }

    /// The mirrored pool and head, for a pass to read in place.
    pub fn snapshot(&self) -> &PoolSnapshot {
        &self.snap
    }

    /// Mirrored txs.
    pub fn len(&self) -> usize {
        self.snap.txs.len()
    }

    /// True when nothing is mirrored.
    pub fn is_empty(&self) -> bool {
        self.snap.txs.is_empty()
    }

    /// True when `hash` is mirrored (a scan: for tests and diagnostics, not the hot path).
    pub fn contains(&self, hash: &B256) -> bool {
        self.snap.txs.iter().any(|t| t.hash == *hash)
    }

    /// `sender`'s run and the index in it of its tx with `nonce`.
    pub fn find(&self, sender: &Address, nonce: u64) -> Option<(Run<'_>, usize)> {
        let (sender, run) = self.by_sender.get_key_value(sender)?;
        let i = self.index_in(run, nonce).ok()?;
        Some(((sender, run.as_slice()), i))
    }

    /// Where `nonce` is (or would go) in `run`: a binary search through the txs' nonces.
    fn index_in(&self, run: &[u32], nonce: u64) -> Result<usize, usize> {
        let txs = &self.snap.txs;
        run.binary_search_by_key(&nonce, |&p| txs[p as usize].nonce)
    }

    fn position(&self, sender: &Address, nonce: u64) -> Option<usize> {
        let run = self.by_sender.get(sender)?;
        self.index_in(run, nonce).ok().map(|i| run[i] as usize)
    }

    fn log(&mut self, op: Op) {
        if let Some(j) = &mut self.journal {
            // Bounded like the pool: past it the read's result stands alone (and the next
            // reconciliation repairs what the lost deltas would have).
            if j.len() < self.max_txs {
                j.push(op);
            } else {
                self.journal_overflow = true;
            }
        }
    }

    /// Takes an announced pending tx.
    pub fn insert(&mut self, tx: PoolTx) -> Insert {
        self.put(tx, false)
    }

    /// The cap on mirrored txs: while a reconciliation read is applied the mirror holds the
    /// txs it had and the read's side by side (until [`Self::finish_reconcile`] drops what the
    /// read did not have), so up to twice `max_txs`, as when the read was held apart.
    fn cap(&self) -> usize {
        if self.journal.is_some() {
            self.max_txs.saturating_mul(2)
        } else {
            self.max_txs
        }
    }

    /// Inserts `tx`: an announced delta (logged while a read is in flight, to be re-applied
    /// over it) or a tx of the read itself (`from_read`: counted as repair when new).
    fn put(&mut self, mut tx: PoolTx, from_read: bool) -> Insert {
        // A collected inbox list has room for 4 entries at least (a one-message tx has 2): a
        // mirrored list is exact, 64 bytes less for such a tx (~61 MB at 1M interop txs until
        // the store has parsed them).
        if let Some(inbox) = tx.inbox.as_mut() {
            inbox.shrink_to_fit();
        }
        // Every delta while a read is applied, even one the mirror holds already: the copy it
        // holds may be the read's, and a delta seen before it must not win over this one.
        if self.journal.is_some() && !from_read {
            self.log(Op::Insert(tx.clone()));
        }
        // Where the sender's run has (Ok: its position) or would put (Err: the index in the
        // run) this nonce: one lookup and one search for the whole insert.
        let slot = match self.by_sender.get(&tx.sender) {
            Some(run) => self.index_in(run, tx.nonce).map(|i| run[i] as usize),
            None => Err(0),
        };
        if let Ok(pos) = slot {
            if self.snap.txs[pos].hash == tx.hash {
                if from_read && !self.want_inbox.is_empty() && self.want_inbox.remove(&tx.hash) {
                    // The store lost this tx's parsed messages: the read gives them back.
                    self.snap.txs[pos].inbox = tx.inbox;
                }
                if pos < self.seen.len() {
                    if from_read {
                        self.seen[pos] = self.seen[pos].max(SEEN);
                    } else {
                        // A delta has it too: not a repair of the read's.
                        self.unrepair(pos);
                        self.seen[pos] = SEEN;
                    }
                }
                return Insert::Known;
            }
        } else if self.snap.txs.len() >= self.cap() {
            return Insert::OverLimit;
        }
        match slot {
            // Same sender and nonce, another hash: the EL replaced it (a fee bump).
            Ok(pos) => {
                self.changed(&tx);
                let old = std::mem::replace(&mut self.snap.txs[pos], tx);
                self.changed(&old);
                if pos < self.seen.len() {
                    // A delta over the read's tx: the read's repair did not last.
                    self.unrepair(pos);
                    self.seen[pos] = if from_read { READ_REPLACED } else { SEEN };
                    if from_read {
                        self.repair.added += 1;
                        self.repair.removed += 1;
                        self.read_replaced.push(old);
                    }
                }
                Insert::Replaced
            }
            Err(at) => {
                self.changed(&tx);
                let pos = self.snap.txs.len() as u32;
                let run = self.by_sender.entry(tx.sender).or_default();
                if run.len() == run.capacity() {
                    // Grown by half rather than doubled: runs are long-lived and many.
                    run.reserve_exact((run.len() / 2).max(2));
                }
                run.insert(at, pos);
                self.snap.txs.push(tx);
                if self.journal.is_some() || !self.seen.is_empty() {
                    self.seen.push(if from_read { READ_ADDED } else { SEEN });
                }
                if from_read {
                    self.repair.added += 1;
                }
                Insert::Added
            }
        }
    }

    /// Forgets the tx at `pos` (swapping the last one into its place). The runs are fixed up
    /// first, while every position still holds its tx (they are searched by the txs' nonces).
    fn remove_at(&mut self, pos: usize) {
        let Some(last) = self.snap.txs.len().checked_sub(1) else { return };
        let (sender, nonce) = (self.snap.txs[pos].sender, self.snap.txs[pos].nonce);
        let at = self.by_sender.get(&sender).and_then(|run| self.index_in(run, nonce).ok());
        if let (Some(i), Some(run)) = (at, self.by_sender.get_mut(&sender)) {
            run.remove(i);
            if run.is_empty() {
                self.by_sender.remove(&sender);
            } else if run.capacity() > 4 * run.len() {
                run.shrink_to_fit();
            }
        }
        if last != pos {
            let (moved, moved_nonce) = (self.snap.txs[last].sender, self.snap.txs[last].nonce);
            let at =
                self.by_sender.get(&moved).and_then(|run| self.index_in(run, moved_nonce).ok());
            if let Some(e) = at.and_then(|i| self.by_sender.get_mut(&moved)?.get_mut(i)) {
                *e = pos as u32;
            }
        }
        let tx = self.snap.txs.swap_remove(pos);
        if pos < self.seen.len() {
            // Gone by a delta (an inclusion): whatever the read repaired there did not last.
            self.unrepair(pos);
            self.seen.swap_remove(pos);
        }
        self.changed(&tx);
    }

    /// `sender`'s tx with `nonce` was included: it and every lower nonce of that sender leave
    /// (whatever their hash, so a replaced tx leaves with the one that won). Returns how many.
    pub fn include(&mut self, sender: Address, nonce: u64) -> usize {
        self.log(Op::Include(sender, nonce));
        let mut removed = 0;
        // Lowest first; each removal may move another tx, so positions are looked up afresh.
        while let Some(pos) = self
            .by_sender
            .get(&sender)
            .and_then(|run| run.first())
            .map(|&p| p as usize)
            .filter(|&p| self.snap.txs[p].nonce <= nonce)
        {
            self.remove_at(pos);
            removed += 1;
        }
        removed
    }

    /// Follows a new head (`hash`, child of `parent`) whose block included `included`
    /// (sender, nonce) txs; returns whether it continues the head followed so far.
    pub fn follow_head(
        &mut self,
        head: Head,
        hash: B256,
        parent: B256,
        included: &[(Address, u64)],
    ) -> (HeadStep, usize) {
        let step = match self.head_hash {
            Some(h) if h != parent => HeadStep::Discontinuous,
            _ => HeadStep::Extends,
        };
        let removed = included.iter().map(|&(s, n)| self.include(s, n)).sum();
        self.snap.head = head;
        self.head_hash = Some(hash);
        (step, removed)
    }

    /// A reconciliation read is starting: deltas from now on are kept and re-applied on top of
    /// its result (they are newer than what it may have seen).
    pub fn begin_reconcile(&mut self) {
        self.journal = Some(Vec::new());
        self.journal_overflow = false;
        self.seen = vec![UNSEEN; self.snap.txs.len()];
        self.repair = Repair::default();
        self.read_replaced = Vec::new();
    }

    /// Applies txs of the reconciliation read begun at [`Self::begin_reconcile`], as they
    /// stream in: each one is marked as still in the EL's pool, and put in (a tx the mirror
    /// missed) or in place of the mirrored one with its sender and nonce (a replacement it
    /// missed). Why not a second copy replacing the mirror at the end: at 1M txs that copy is
    /// ~120 MB more at the peak of every reconciliation. Deltas seen meanwhile are re-applied
    /// by [`Self::finish_reconcile`] (the read may be older than they are).
    pub fn apply_read(&mut self, txs: impl IntoIterator<Item = PoolTx>) {
        if self.journal.is_none() {
            return;
        }
        for tx in txs {
            self.put(tx, true);
        }
    }

    /// Takes back what the read counted as repaired at `pos` (a delta replaced or removed the
    /// tx there): a repair counts only what the read changed and the deltas did not explain,
    /// as comparing the mirror before and after would.
    fn unrepair(&mut self, pos: usize) {
        let r = &mut self.repair;
        match self.seen.get(pos).copied() {
            Some(READ_ADDED) => r.added = r.added.saturating_sub(1),
            Some(READ_REPLACED) => {
                r.added = r.added.saturating_sub(1);
                r.removed = r.removed.saturating_sub(1);
            }
            _ => {}
        }
    }

    /// Re-applies the deltas seen since the read began, newest last, and ends the read.
    fn replay_journal(&mut self) {
        for op in self.journal.take().unwrap_or_default() {
            match op {
                Op::Insert(tx) => {
                    self.insert(tx);
                }
                Op::Include(s, n) => {
                    self.include(s, n);
                }
            }
        }
        self.seen = Vec::new();
    }

    /// Drops a reconciliation whose read failed (an answer cut short, malformed, or to another
    /// request is no answer): what it put in is taken out and what it replaced is put back,
    /// so the mirror is what the deltas alone made it; nothing the read did not have is
    /// removed.
    pub fn abandon_reconcile(&mut self) {
        for old in std::mem::take(&mut self.read_replaced) {
            if let Some(pos) = self.position(&old.sender, old.nonce) {
                if self.seen.get(pos) == Some(&READ_REPLACED) {
                    self.changed(&old);
                    let read_copy = std::mem::replace(&mut self.snap.txs[pos], old);
                    self.changed(&read_copy);
                    self.seen[pos] = SEEN;
                }
            }
        }
        // From the end: the tx a removal swaps in was already looked at.
        for pos in (0..self.seen.len().min(self.snap.txs.len())).rev() {
            if self.seen[pos] == READ_ADDED {
                self.remove_at(pos);
            }
        }
        self.repair = Repair::default();
        self.replay_journal();
    }

    /// Ends the reconciliation read begun at [`Self::begin_reconcile`] once `rest` (its last
    /// txs) is applied: the txs neither the read nor a delta since it began had are dropped,
    /// the deltas are re-applied on top, and what the read repaired is returned. `head` and
    /// `head_hash` are the head the read was made against (`None`: keep following the current
    /// one).
    pub fn finish_reconcile(
        &mut self,
        head: Head,
        rest: Vec<PoolTx>,
        head_hash: Option<B256>,
    ) -> Repair {
        self.apply_read(rest);
        // From the end: the tx a removal swaps in was already looked at (and kept).
        for pos in (0..self.seen.len().min(self.snap.txs.len())).rev() {
            if self.seen[pos] == UNSEEN {
                self.remove_at(pos);
                self.repair.removed += 1;
            }
        }
        self.replay_journal();
        // What the read could give back it gave (a tx it did not have is gone); a store that
        // still misses entries asks again at its next whole sync.
        self.want_inbox.clear();
        self.read_replaced = Vec::new();
        let repair = std::mem::take(&mut self.repair);
        // A head that arrived during the read is newer than the read's.
        if let Some(h) = head_hash.filter(|_| self.snap.head.number <= head.number) {
            (self.snap.head, self.head_hash) = (head, Some(h));
        }
        // A new epoch: the store syncs over the whole mirror once, not by the log.
        self.new_epoch();
        repair
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revalidator::pool::Fees;
    use std::collections::HashSet;

    fn tx(sender: u8, nonce: u64, salt: u8) -> PoolTx {
        PoolTx {
            hash: {
                let mut b = [0u8; 32];
                (b[0], b[1], b[2]) = (sender, nonce as u8, salt);
                B256::from(b)
            },
            sender: Address::repeat_byte(sender),
            nonce,
            gas: 21_000,
            fees: Fees::legacy(1 + u128::from(salt)),
            inbox: None,
        }
    }

    fn hashes(m: &PoolMirror) -> HashSet<B256> {
        m.snapshot().txs.iter().map(|t| t.hash).collect()
    }

    #[test]
    fn replacement_inclusion_and_removal_keep_the_indexes_consistent() {
        let mut m = PoolMirror::new(3);
        assert_eq!(m.insert(tx(1, 0, 0)), Insert::Added);
        assert_eq!(m.insert(tx(1, 1, 0)), Insert::Added);
        assert_eq!(m.insert(tx(1, 1, 0)), Insert::Known);
        assert_eq!(m.insert(tx(2, 5, 0)), Insert::Added);
        assert_eq!(m.insert(tx(3, 0, 0)), Insert::OverLimit);
        // A fee bump replaces even at the cap.
        assert_eq!(m.insert(tx(1, 1, 9)), Insert::Replaced);
        assert_eq!(hashes(&m), [tx(1, 0, 0).hash, tx(1, 1, 9).hash, tx(2, 5, 0).hash].into());
        // Sender 1's nonce 0 included: only it leaves.
        let h = Head { number: 1, ..Default::default() };
        let (step, removed) =
            m.follow_head(h, B256::repeat_byte(1), B256::ZERO, &[(Address::repeat_byte(1), 0)]);
        assert_eq!((step, removed), (HeadStep::Extends, 1));
        // Nonce 3 included (1 and 2 never seen here): nonce 1 leaves too.
        assert_eq!(m.include(Address::repeat_byte(1), 3), 1);
        assert_eq!(hashes(&m), [tx(2, 5, 0).hash].into());
        for (i, t) in m.snapshot().txs.iter().enumerate() {
            assert_eq!(m.position(&t.sender, t.nonce), Some(i));
        }
        let (step, _) = m.follow_head(h, B256::repeat_byte(2), B256::repeat_byte(7), &[]);
        assert_eq!(step, HeadStep::Discontinuous);
    }

    #[test]
    fn a_mirrored_inbox_list_holds_no_spare_room() {
        let mut m = PoolMirror::new(10);
        let mut t = tx(1, 0, 0);
        let mut inbox = Vec::with_capacity(8);
        inbox.extend([B256::repeat_byte(1), B256::repeat_byte(2)]);
        t.inbox = Some(inbox);
        m.insert(t);
        let (_, got) = m.get(&Address::repeat_byte(1), 0).unwrap();
        let inbox = got.inbox.as_ref().unwrap();
        assert_eq!((inbox.len(), inbox.capacity()), (2, 2));
    }

    #[test]
    fn positions_stay_consistent_under_many_inserts_replacements_and_inclusions() {
        let mut m = PoolMirror::new(10_000);
        let mut x = 12_345u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in 0..5_000 {
            let r = next();
            let (sender, nonce) = ((r % 13) as u8 + 1, (r >> 8) % 9);
            if r % 4 == 0 {
                m.include(Address::repeat_byte(sender), nonce);
            } else {
                m.insert(tx(sender, nonce, (step % 3) as u8));
            }
            let indexed: usize = m.by_sender.values().map(Vec::len).sum();
            assert_eq!(indexed, m.len());
            for (i, t) in m.snapshot().txs.iter().enumerate() {
                assert_eq!(m.position(&t.sender, t.nonce), Some(i));
            }
        }
    }

    #[test]
    fn reconciliation_repairs_drift_and_keeps_deltas_newer_than_the_read() {
        let mut m = PoolMirror::new(100);
        m.insert(tx(1, 0, 0)); // still in the EL
        m.insert(tx(2, 0, 0)); // evicted by the EL, unannounced
        m.begin_reconcile();
        // During the read: a new tx and an inclusion the read may not reflect.
        m.insert(tx(4, 0, 0));
        m.include(Address::repeat_byte(1), 0);
        let fresh = PoolSnapshot {
            head: Head { number: 9, ..Default::default() },
            txs: vec![tx(1, 0, 0), tx(3, 0, 0)], // tx 3: never announced
            ..Default::default()
        };
        let r = m.finish_reconcile(fresh.head, fresh.txs, Some(B256::repeat_byte(9)));
        assert_eq!(hashes(&m), [tx(3, 0, 0).hash, tx(4, 0, 0).hash].into());
        // Before: {2, 4} (the deltas applied); after: {3, 4}: 3 was missed, 2 was stale.
        assert_eq!(r, Repair { added: 1, removed: 1 });
        assert_eq!(m.snapshot().head.number, 9);
        // An exact mirror repairs nothing.
        m.begin_reconcile();
        let same = PoolSnapshot {
            txs: m.snapshot().txs.clone(),
            head: m.snapshot().head,
            ..Default::default()
        };
        assert_eq!(m.finish_reconcile(same.head, same.txs, None), Repair::default());
    }

    /// The reconciliation as it was (the read held apart, the mirror rebuilt from it and the
    /// deltas re-applied; repairs = the hashes before vs after): final txs and repair.
    fn reconciled_apart(
        with_deltas: &PoolMirror,
        read: &[PoolTx],
        journal: &[Op],
    ) -> (HashSet<B256>, Repair) {
        let mut m = PoolMirror::new(usize::MAX >> 2);
        for t in read {
            m.insert(t.clone());
        }
        for op in journal {
            match op {
                Op::Insert(t) => {
                    m.insert(t.clone());
                }
                Op::Include(s, n) => {
                    m.include(*s, *n);
                }
            }
        }
        let (before, after) = (hashes(with_deltas), hashes(&m));
        let repair = Repair {
            added: after.difference(&before).count(),
            removed: before.difference(&after).count(),
        };
        (after, repair)
    }

    #[test]
    fn a_read_applied_in_batches_between_deltas_equals_the_read_held_apart_or_changes_nothing() {
        for seed in 1..=1000u64 {
            let mut r = fastrand::Rng::with_seed(seed);
            let random_tx = |r: &mut fastrand::Rng| tx(r.u8(1..6), r.u64(0..6), r.u8(0..3));
            let mut m = PoolMirror::new(usize::MAX >> 2);
            for _ in 0..r.usize(0..20) {
                m.insert(random_tx(&mut r));
            }
            // The mirror a pass would see without the read: the deltas applied to it only.
            let mut deltas_only = PoolMirror::new(usize::MAX >> 2);
            for t in &m.snapshot().txs {
                deltas_only.insert(t.clone());
            }
            // The EL's pool as the read sees it (one tx per sender and nonce).
            let mut read: Vec<PoolTx> = Vec::new();
            for _ in 0..r.usize(0..20) {
                let t = random_tx(&mut r);
                if !read.iter().any(|x| (x.sender, x.nonce) == (t.sender, t.nonce)) {
                    read.push(t);
                }
            }
            let mut journal = Vec::new();
            m.begin_reconcile();
            let mut rest = read.as_slice();
            while !rest.is_empty() || r.bool() {
                // Deltas (announcements and inclusions) between batches.
                for _ in 0..r.usize(0..3) {
                    if r.bool() {
                        let t = random_tx(&mut r);
                        m.insert(t.clone());
                        deltas_only.insert(t.clone());
                        journal.push(Op::Insert(t));
                    } else {
                        let (s, n) = (Address::repeat_byte(r.u8(1..6)), r.u64(0..6));
                        m.include(s, n);
                        deltas_only.include(s, n);
                        journal.push(Op::Include(s, n));
                    }
                }
                let take = r.usize(0..=rest.len().min(4));
                m.apply_read(rest[..take].to_vec());
                rest = &rest[take..];
                if rest.is_empty() && r.u8(0..3) == 0 {
                    break;
                }
            }
            if seed % 3 == 0 {
                // A read that fails part way is no answer: the mirror is what the deltas made.
                m.abandon_reconcile();
                assert_eq!(hashes(&m), hashes(&deltas_only), "seed {seed}");
                for (i, t) in m.snapshot().txs.iter().enumerate() {
                    assert_eq!(m.position(&t.sender, t.nonce), Some(i), "seed {seed}");
                }
                continue;
            }
            let repair = m.finish_reconcile(Head::default(), Vec::new(), None);
            let (want, want_repair) = reconciled_apart(&deltas_only, &read, &journal);
            assert_eq!(hashes(&m), want, "seed {seed}");
            assert_eq!(repair, want_repair, "seed {seed}");
            // The indexes stay consistent.
            for (i, t) in m.snapshot().txs.iter().enumerate() {
                assert_eq!(m.position(&t.sender, t.nonce), Some(i), "seed {seed}");
            }
        }
    }

    #[test]
    fn an_abandoned_read_changes_nothing_and_the_deltas_stand() {
        let mut m = PoolMirror::new(100);
        m.insert(tx(1, 0, 0));
        m.insert(tx(2, 0, 0)); // the read will not have it: kept, the read did not finish
        m.insert(tx(5, 0, 0)); // the read has another version: put back
        m.insert(tx(6, 0, 0));
        m.begin_reconcile();
        m.apply_read(vec![tx(1, 0, 0), tx(3, 0, 0), tx(4, 0, 1), tx(5, 0, 1), tx(6, 0, 1)]);
        m.insert(tx(4, 0, 2)); // announced after the read's copy: newer, stays
        m.insert(tx(6, 0, 2)); // announced over the read's replacement: stays
        m.insert(tx(7, 0, 0)); // announced during the read: stays
        m.abandon_reconcile();
        let want: HashSet<B256> = [(1, 0), (2, 0), (5, 0), (4, 2), (6, 2), (7, 0)]
            .iter()
            .map(|&(sender, salt)| tx(sender, 0, salt).hash)
            .collect();
        assert_eq!(hashes(&m), want);
        for (i, t) in m.snapshot().txs.iter().enumerate() {
            assert_eq!(m.position(&t.sender, t.nonce), Some(i));
        }
        // The next reconciliation starts clean.
        m.begin_reconcile();
        let all = m.snapshot().txs.clone();
        assert_eq!(m.finish_reconcile(Head::default(), all, None), Repair::default());
    }

    #[test]
    fn a_read_gives_back_the_inbox_entries_of_a_stripped_tx_the_store_no_longer_tracks() {
        let mut m = PoolMirror::new(10);
        let mut t = tx(1, 0, 0);
        t.inbox = Some(vec![B256::repeat_byte(7)]);
        m.insert(t.clone());
        m.strip_inbox(0);
        assert_eq!(m.snapshot().txs[0].inbox, Some(vec![]));
        // Tracked (stripped, and nobody asks for the entries): the read keeps the stripped copy.
        m.begin_reconcile();
        m.finish_reconcile(Head::default(), vec![t.clone()], None);
        assert_eq!(m.snapshot().txs[0].inbox, Some(vec![]));
        // No longer tracked: the next read gives the entries back.
        m.want_inbox(0);
        m.begin_reconcile();
        let r = m.finish_reconcile(Head::default(), vec![t.clone()], None);
        assert_eq!((r, &m.snapshot().txs[0].inbox), (Repair::default(), &t.inbox));
        assert!(m.want_inbox.is_empty());
    }
}
