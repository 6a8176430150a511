//! The tracked txs' table: one slot per tx in a slab (stable keys), found by hash or by
//! messages through tables that hold only the 4-byte keys, plus one bit per slot for the txs
//! a near pass checks whatever their presumed block ("soon") and one for those published
//! invalid (so neither needs a walk over every tracked tx).
//!
//! Why this shape, at a million tracked txs (issue 19's 1M-interop goal): a
//! `HashMap<B256, TrackedTx>` holds twice the entries' room at its worst load, and the old
//! table too while it grows; a `HashMap<B256, u32>` index repeats every 32-byte hash in a
//! 40-byte bucket; a `HashMap<Arc<[Message]>, Vec<B256>>` repeats them again. Here both
//! indices are `hashbrown::HashTable<u32>` (5 bytes a bucket with its control byte) that hash
//! the slot's own tx hash or messages, so nothing is stored twice, and SipHash gives way to
//! foldhash, seeded per table (tx hashes and messages come from the network: a fixed hasher
//! would let a sender grind colliding hashes). Slab keys do not move when a tx leaves, so the
//! indices and a pass's planned checks (keys, 4 bytes, not hashes) stay valid without fix-ups.

use std::hash::BuildHasher;

use alloy_primitives::B256;
use foldhash::fast::RandomState;
use hashbrown::HashTable;
use slab::Slab;

use super::tracker::TrackedTx;
use crate::interop::Message;

/// A tracked tx's slot key: stable while it is tracked, reused after it leaves.
pub type TxKey = u32;

/// No slot (the end of a same-messages list).
const NONE: TxKey = TxKey::MAX;

/// One tracked tx and its links to the others with the same messages.
#[derive(Debug)]
struct Slot {
    hash: B256,
    /// Previous slot with the same messages; the first one's is the last one (a cycle
    /// backwards, so appending is O(1)).
    prev_same: TxKey,
    /// Next slot with the same messages (`NONE` after the last).
    next_same: TxKey,
    tx: TrackedTx,
}

/// The tracked txs, by hash, by messages and by slot key.
#[derive(Debug)]
pub struct TrackedTxs {
    slots: Slab<Slot>,
    /// Slot keys by the slot's tx hash.
    by_hash: HashTable<TxKey>,
    /// The first slot of each distinct message list (the others follow by `next_same`, in the
    /// order they were tracked: a drop-in lookup reads them in that order). Malformed lists
    /// (no messages) are not indexed.
    by_messages: HashTable<TxKey>,
    hasher: RandomState,
    /// Slots a near pass checks whatever their presumed block.
    soon: Bits,
    /// Slots published invalid.
    invalid: Bits,
}

impl Default for TrackedTxs {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl TrackedTxs {
    /// Room for `n` txs reserved as address space only: pages count once written, and the slab
    /// writes them in order.
    pub(super) fn with_capacity(n: usize) -> Self {
        Self {
            slots: Slab::with_capacity(n.min(1 << 22)),
            // Sized once for the cap: no rehash (and no old table beside the new) as it fills;
            // 5 bytes a bucket, ~10 MB each at 1M.
            by_hash: HashTable::with_capacity(n.min(1 << 22)),
            by_messages: HashTable::with_capacity(n.min(1 << 22)),
            hasher: RandomState::default(),
            soon: Bits::default(),
            invalid: Bits::default(),
        }
    }

    fn hash_of(&self, hash: &B256) -> u64 {
        self.hasher.hash_one(hash)
    }

    fn hash_messages(&self, messages: &[Message]) -> u64 {
        self.hasher.hash_one(messages)
    }

    fn slot(&self, key: TxKey) -> &Slot {
        &self.slots[key as usize]
    }

    /// The slot key of the tx with `hash`.
    pub fn key_of(&self, hash: &B256) -> Option<TxKey> {
        let slots = &self.slots;
        self.by_hash.find(self.hash_of(hash), |&k| slots[k as usize].hash == *hash).copied()
    }

    /// The tx with `hash`.
    pub fn get(&self, hash: &B256) -> Option<&TrackedTx> {
        self.key_of(hash).map(|k| &self.slot(k).tx)
    }

    /// The tx with `hash`, to update.
    pub fn get_mut(&mut self, hash: &B256) -> Option<&mut TrackedTx> {
        let k = self.key_of(hash)?;
        Some(&mut self.slots[k as usize].tx)
    }

    /// The tx in slot `key` and its hash.
    pub fn at(&self, key: TxKey) -> Option<(&B256, &TrackedTx)> {
        self.slots.get(key as usize).map(|s| (&s.hash, &s.tx))
    }

    /// The tx in slot `key`, to update, and its hash.
    pub fn at_mut(&mut self, key: TxKey) -> Option<(&B256, &mut TrackedTx)> {
        self.slots.get_mut(key as usize).map(|s| (&s.hash, &mut s.tx))
    }

    /// True when `hash` is tracked.
    pub fn contains_key(&self, hash: &B256) -> bool {
        self.key_of(hash).is_some()
    }

    /// Number of tracked txs.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// One more than the largest slot key in use (for key-indexed side tables).
    pub fn key_bound(&self) -> usize {
        self.slots.capacity()
    }

    /// Every tracked tx, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&B256, &TrackedTx)> {
        self.slots.iter().map(|(_, s)| (&s.hash, &s.tx))
    }

    /// Every tracked tx with its slot key, in key order.
    pub fn iter_keyed(&self) -> impl Iterator<Item = (TxKey, &B256, &TrackedTx)> {
        self.slots.iter().map(|(k, s)| (k as TxKey, &s.hash, &s.tx))
    }

    /// Every tracked hash.
    pub fn keys(&self) -> impl Iterator<Item = &B256> {
        self.slots.iter().map(|(_, s)| &s.hash)
    }

    /// Every tracked tx.
    pub fn values(&self) -> impl Iterator<Item = &TrackedTx> {
        self.slots.iter().map(|(_, s)| &s.tx)
    }

    /// Number of distinct message lists among the tracked txs.
    pub fn distinct_messages(&self) -> usize {
        self.by_messages.len()
    }

    /// The tracked txs with exactly `messages`, in the order they were tracked.
    pub fn with_messages<'a>(
        &'a self,
        messages: &[Message],
    ) -> impl Iterator<Item = &'a TrackedTx> + 'a {
        let slots = &self.slots;
        let first = self
            .by_messages
            .find(self.hash_messages(messages), |&k| *slots[k as usize].tx.messages == *messages)
            .copied()
            .unwrap_or(NONE);
        std::iter::successors((first != NONE).then_some(first), move |&k| {
            let next = slots[k as usize].next_same;
            (next != NONE).then_some(next)
        })
        .map(move |k| &slots[k as usize].tx)
    }

    /// Tracks `tx` under `hash`; returns its key, `None` (and tracks nothing) when `hash` is
    /// already tracked. One probe per index (`entry`): at 1M txs each probe is a cache miss or
    /// two.
    pub(super) fn insert(&mut self, hash: B256, tx: TrackedTx) -> Option<TxKey> {
        let key = self.slots.vacant_key();
        assert!(key < NONE as usize, "more tracked txs than slot keys");
        let key = key as TxKey;
        let (slots, hasher) = (&self.slots, &self.hasher);
        let entry = self.by_hash.entry(
            hasher.hash_one(hash),
            |&k| slots[k as usize].hash == hash,
            |&k| hasher.hash_one(slots[k as usize].hash),
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(_) => return None,
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(key);
            }
        }
        let indexed = !tx.messages.is_empty();
        let h = self.hasher.hash_one(&*tx.messages);
        self.slots.insert(Slot { hash, prev_same: key, next_same: NONE, tx });
        if !indexed {
            // A malformed list: published at once, never a drop-in answer.
            return Some(key);
        }
        let (slots, hasher) = (&self.slots, &self.hasher);
        let messages = &slots[key as usize].tx.messages;
        let entry = self.by_messages.entry(
            h,
            |&k| slots[k as usize].tx.messages == *messages,
            |&k| hasher.hash_one(&*slots[k as usize].tx.messages),
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(e) => {
                let first = *e.get();
                let last = self.slots[first as usize].prev_same;
                self.slots[last as usize].next_same = key;
                self.slots[key as usize].prev_same = last;
                self.slots[first as usize].prev_same = key;
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(key);
            }
        }
        Some(key)
    }

    /// Forgets the tx with `hash`.
    pub(super) fn remove(&mut self, hash: &B256) -> Option<TrackedTx> {
        let k = self.key_of(hash)?;
        Some(self.remove_at(k))
    }

    /// Forgets the tx in slot `key` (which must be in use).
    pub(super) fn remove_at(&mut self, key: TxKey) -> TrackedTx {
        let h = self.hash_of(&self.slot(key).hash);
        if let Ok(e) = self.by_hash.find_entry(h, |&k| k == key) {
            e.remove();
        }
        let (prev, next) = (self.slot(key).prev_same, self.slot(key).next_same);
        let h = self.hash_messages(&self.slot(key).tx.messages);
        let indexed = !self.slot(key).tx.messages.is_empty();
        match self.by_messages.find_entry(h, |&k| k == key) {
            Err(_) if !indexed => {}
            // The first of its list: the next one (if any) becomes first and keeps the last.
            Ok(mut e) if next != NONE => {
                *e.get_mut() = next;
                self.slots[next as usize].prev_same = prev;
            }
            Ok(e) => {
                e.remove();
            }
            Err(_) => {
                self.slots[prev as usize].next_same = next;
                let follower = if next == NONE {
                    // The last of its list: the first one's `prev_same` names the new last.
                    let slots = &self.slots;
                    let messages = &slots[key as usize].tx.messages;
                    self.by_messages
                        .find(h, |&k| slots[k as usize].tx.messages == *messages)
                        .copied()
                } else {
                    Some(next)
                };
                if let Some(f) = follower {
                    self.slots[f as usize].prev_same = prev;
                }
            }
        }
        self.soon.set(key, false);
        self.invalid.set(key, false);
        self.slots.remove(key as usize).tx
    }

    /// Marks (or unmarks) slot `key` for the next near pass.
    pub(super) fn set_soon(&mut self, key: TxKey, on: bool) {
        self.soon.set(key, on);
    }

    /// Marks (or unmarks) slot `key` as published invalid.
    pub(super) fn set_invalid(&mut self, key: TxKey, on: bool) {
        self.invalid.set(key, on);
    }

    /// The hashes of the slots marked invalid.
    pub fn invalid(&self) -> impl Iterator<Item = &B256> + '_ {
        self.invalid.ones().filter_map(|k| self.at(k).map(|(h, _)| h))
    }

    /// The slot keys marked for the next near pass, in key order.
    pub fn soon(&self) -> impl Iterator<Item = TxKey> + '_ {
        self.soon.ones()
    }
}

impl std::ops::Index<&B256> for TrackedTxs {
    type Output = TrackedTx;
    fn index(&self, hash: &B256) -> &TrackedTx {
        match self.get(hash) {
            Some(t) => t,
            None => panic!("{hash} is not tracked"),
        }
    }
}

/// A set of slot keys: one bit each.
#[derive(Debug, Default, Clone)]
pub struct Bits(Vec<u64>);

impl Bits {
    /// Room for keys below `n`.
    pub fn with_bound(n: usize) -> Self {
        Self(vec![0; n.div_ceil(64)])
    }

    /// Adds or removes `key`.
    pub fn set(&mut self, key: TxKey, on: bool) {
        let (word, bit) = (key as usize / 64, key % 64);
        if word >= self.0.len() {
            if !on {
                return;
            }
            self.0.resize(word + 1, 0);
        }
        if on {
            self.0[word] |= 1 << bit;
        } else {
            self.0[word] &= !(1 << bit);
        }
    }

    /// True when `key` is in.
    pub fn get(&self, key: TxKey) -> bool {
        self.0.get(key as usize / 64).is_some_and(|w| w & (1 << (key % 64)) != 0)
    }

    /// The keys in, ascending.
    pub fn ones(&self) -> impl Iterator<Item = TxKey> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros();
                w &= w - 1;
                Some(i as TxKey * 64 + bit)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::U256;

    fn msg(n: u64) -> Message {
        Message {
            chain_id: U256::from(901),
            block_number: n,
            timestamp: 1,
            log_index: 0,
            checksum: B256::repeat_byte(3),
        }
    }

    fn tx(nonce: u64, messages: Vec<Message>) -> TrackedTx {
        let mut t = TrackedTx::unchecked(messages);
        t.nonce = nonce;
        t
    }

    fn nonces(t: &TrackedTxs, m: &[Message]) -> Vec<u64> {
        t.with_messages(m).map(|t| t.nonce).collect()
    }

    /// Txs with the same messages are read in the order they were tracked, whichever of them
    /// (first, middle, last) leaves; freed slots are reused and the indices follow.
    #[test]
    fn same_messages_keep_tracking_order_through_removals_and_slot_reuse() {
        let mut t = TrackedTxs::default();
        let (a, b) = (vec![msg(1)], vec![msg(2), msg(3)]);
        let h = B256::with_last_byte;
        for n in 0..5u8 {
            t.insert(h(n), tx(u64::from(n), a.clone()));
        }
        let kb = t.insert(h(9), tx(9, b.clone())).unwrap();
        t.insert(h(10), tx(10, vec![]));
        assert_eq!(nonces(&t, &a), vec![0, 1, 2, 3, 4]);
        assert_eq!((nonces(&t, &b), nonces(&t, &[])), (vec![9], vec![]), "malformed: unindexed");
        assert_eq!(t.distinct_messages(), 2);
        assert_eq!(t.remove(&h(2)).map(|t| t.nonce), Some(2), "middle");
        assert_eq!(nonces(&t, &a), vec![0, 1, 3, 4]);
        t.remove(&h(4)); // last
        assert_eq!(nonces(&t, &a), vec![0, 1, 3]);
        t.insert(h(5), tx(5, a.clone()));
        assert_eq!(nonces(&t, &a), vec![0, 1, 3, 5], "appended after a removed last");
        t.remove(&h(0)); // first
        assert_eq!(nonces(&t, &a), vec![1, 3, 5]);
        t.insert(h(6), tx(6, a.clone()));
        assert_eq!(nonces(&t, &a), vec![1, 3, 5, 6]);
        t.remove(&h(10));
        t.set_soon(kb, true);
        t.remove(&h(9));
        assert_eq!((t.distinct_messages(), nonces(&t, &b)), (1, vec![]));
        assert_eq!(t.soon().count(), 0, "a forgotten tx leaves the soon set");
        // Freed slots are reused, and found by hash.
        let k = t.insert(h(11), tx(11, b.clone())).unwrap();
        assert!(k < 7, "slot {k} reused");
        assert_eq!(t.at(k).map(|(hash, tx)| (*hash, tx.nonce)), Some((h(11), 11)));
        assert_eq!(t.key_of(&h(11)), Some(k));
        for n in [1, 3, 5, 6] {
            assert_eq!(t.get(&h(n)).map(|t| t.nonce), Some(u64::from(n)));
        }
        assert!(t.get(&h(0)).is_none() && t.get(&h(2)).is_none());
        assert_eq!(t.len(), 5);
        // A hash tracked again is not: the first tx stays, in its index only.
        assert_eq!(t.insert(h(3), tx(33, b.clone())), None);
        assert_eq!((nonces(&t, &a), nonces(&t, &b)), (vec![1, 3, 5, 6], vec![11]));
        assert_eq!((t.len(), t.get(&h(3)).map(|t| t.nonce)), (5, Some(3)));
        for n in [1, 3, 5, 6] {
            t.remove(&h(n));
        }
        assert_eq!((nonces(&t, &a), nonces(&t, &b), t.distinct_messages()), (vec![], vec![11], 1));
    }

    #[test]
    fn bits_set_clear_and_list_in_order() {
        let mut b = Bits::default();
        for k in [130, 0, 63, 64, 7] {
            b.set(k, true);
        }
        b.set(7, false);
        b.set(10_000, false);
        assert_eq!(b.ones().collect::<Vec<_>>(), vec![0, 63, 64, 130]);
        assert!(b.get(130) && !b.get(7) && !b.get(100_000));
    }
}
