//! The results store: every tracked interop tx, its latest verdict, the invalid feed and the
//! failsafe flag. Passes write it, the EL-facing API reads it; it holds no I/O so it is guarded
//! by a plain mutex and never held across an await.
//!
//! Verdict rules: valid -> valid until the verdict's end; definitive invalid -> published once,
//! never retried; not-yet-known -> re-checked next pass and published only when the backends
//! have kept saying "not yet known" for `max_unknown` (counted from when the tx was first seen
//! or last found valid). No answer (backends down, slow, garbage) and failsafe are not about the
//! tx: it keeps its last verdict, is retried next pass, its status says `unknown` with the
//! reason, and nothing is ever published on them: an EL must never drop a valid tx because a
//! peer is broken (ELs evict on the failsafe flag themselves).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};
use serde_json::json;

use super::feed::{Feed, FeedEntry};
use super::mirror::PoolMirror;
use super::pool::PoolTx;
use crate::interop::access_list::{parse_bounded, BoundedParseError, Bounds};
use crate::interop::{ExecutingDescriptor, Message, SafetyLevel};
use crate::rpc::codes;
use crate::validation::{Rejection, Verdict, Window};

/// What is known about one tracked tx.
#[derive(Debug, Clone, PartialEq)]
pub enum TxStatus {
    /// Not checked yet.
    Unchecked,
    /// Valid for every executing timestamp in `[from, until]` at `safety`.
    Valid {
        /// First covered timestamp (the descriptor's).
        from: u64,
        /// Last covered timestamp.
        until: u64,
        /// Minimum safety that was asked.
        safety: SafetyLevel,
    },
    /// No definitive answer yet (not yet known, unanswered, or failsafe); retried next pass.
    Pending {
        /// The last answer (boxed, as the other rare large fields: a tracked tx stays small
        /// at a million of them).
        last: Box<Verdict>,
    },
    /// Published to the feed; never re-checked.
    Invalid {
        /// Why.
        rejection: Box<Rejection>,
        /// The window and safety of the backend verdict, when the backend gave it (a malformed
        /// list or an expired deadline has none and is never answered from here).
        checked: Option<(Window, SafetyLevel)>,
        /// Feed sequence number.
        seq: u64,
    },
}

/// One tracked interop tx.
#[derive(Debug, Clone)]
pub struct TrackedTx {
    /// Sender (with the nonce, where the mirror finds the tx).
    pub sender: Address,
    /// Nonce.
    pub nonce: u64,
    /// De-duplicated messages (empty for a malformed list).
    pub messages: Arc<[Message]>,
    /// The newest initiating timestamp among `messages`.
    pub max_init_ts: u64,
    /// First seen in the pool (unix seconds).
    pub first_seen_unix: u64,
    /// Start of the current run without a definitive answer.
    pub unknown_since: Instant,
    /// Presumed block index, `None` when unplaced (nonce gap, gas over the limit).
    pub presumed_block: Option<u32>,
    /// Expected inclusion timestamp.
    pub expected_ts: u64,
    /// Latest verdict.
    pub status: TxStatus,
    /// Last check (unix seconds).
    pub last_checked_unix: Option<u64>,
    /// Next planned check (unix seconds).
    pub next_check_unix: Option<u64>,
    /// Re-check on the next pass whatever its presumed block.
    pub retry: bool,
    /// Why the latest check got no verdict (no answer, or failsafe); `None` after an answer.
    pub no_answer: Option<Box<str>>,
}

/// What a pool sync changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    /// Newly tracked txs.
    pub added: usize,
    /// Txs gone from the pool, forgotten.
    pub removed: usize,
    /// New txs published invalid at once (malformed or oversized access list).
    pub malformed: usize,
    /// Interop txs not tracked because `max_tracked` was reached.
    pub over_limit: usize,
}

/// Bounds and identity the store needs.
#[derive(Debug, Clone)]
pub struct TrackerLimits {
    /// Largest number of tracked txs.
    pub max_tracked: usize,
    /// Largest number of inbox entries per tx.
    pub max_inbox_entries: usize,
    /// How long a tx may go without a definitive answer.
    pub max_unknown: Duration,
    /// The executing chain (`None`: not named in descriptors).
    pub chain_id: Option<U256>,
}

/// The tracked txs by hash: a dense vector of entries plus a hash -> index map, rather than one
/// `HashMap<B256, TrackedTx>`, whose table holds twice the entries' room at its worst load and,
/// while it grows, the old table too (at 1M tracked txs ~450 MB, ~670 MB while growing, against
/// ~80 MB of index plus the entries themselves here). Removal swaps the last entry in.
#[derive(Debug, Default)]
pub struct TrackedTxs {
    index: HashMap<B256, u32>,
    entries: Vec<(B256, TrackedTx)>,
}

impl TrackedTxs {
    fn with_capacity(n: usize) -> Self {
        // Address space only: pages count once written, and they are written in order.
        Self { index: HashMap::new(), entries: Vec::with_capacity(n.min(1 << 22)) }
    }

    /// The tx with `hash`.
    pub fn get(&self, hash: &B256) -> Option<&TrackedTx> {
        self.index.get(hash).map(|&i| &self.entries[i as usize].1)
    }

    /// The tx with `hash`, to update.
    pub fn get_mut(&mut self, hash: &B256) -> Option<&mut TrackedTx> {
        let i = *self.index.get(hash)?;
        Some(&mut self.entries[i as usize].1)
    }

    /// True when `hash` is tracked.
    pub fn contains_key(&self, hash: &B256) -> bool {
        self.index.contains_key(hash)
    }

    /// Number of tracked txs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every tracked tx, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&B256, &TrackedTx)> {
        self.entries.iter().map(|(h, t)| (h, t))
    }

    /// Every tracked hash.
    pub fn keys(&self) -> impl Iterator<Item = &B256> {
        self.entries.iter().map(|(h, _)| h)
    }

    /// Every tracked tx.
    pub fn values(&self) -> impl Iterator<Item = &TrackedTx> {
        self.entries.iter().map(|(_, t)| t)
    }

    fn insert(&mut self, hash: B256, tx: TrackedTx) {
        if let Some(t) = self.get_mut(&hash) {
            *t = tx;
            return;
        }
        self.index.insert(hash, self.entries.len() as u32);
        self.entries.push((hash, tx));
    }

    fn remove(&mut self, hash: &B256) -> Option<TrackedTx> {
        let i = self.index.remove(hash)? as usize;
        let (_, tx) = self.entries.swap_remove(i);
        if let Some((moved, _)) = self.entries.get(i) {
            self.index.insert(*moved, i as u32);
        }
        Some(tx)
    }
}

impl<'a> IntoIterator for &'a TrackedTxs {
    type Item = (&'a B256, &'a TrackedTx);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (B256, TrackedTx)>,
        fn(&'a (B256, TrackedTx)) -> (&'a B256, &'a TrackedTx),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(h, t)| (h, t))
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

/// The store.
#[derive(Debug)]
pub struct Tracker {
    pub(super) txs: TrackedTxs,
    by_messages: HashMap<Arc<[Message]>, Vec<B256>>,
    pub(super) feed: Feed,
    failsafe: bool,
    limits: TrackerLimits,
    /// Txs a near pass checks whatever their block: never checked, or waiting for a retry.
    soon: HashSet<B256>,
    /// The mirror epoch the store follows by its change log (`None`: sync over the whole pool).
    synced_epoch: Option<u64>,
}

impl Tracker {
    /// An empty store.
    pub fn new(limits: TrackerLimits, feed: Feed) -> Self {
        Self {
            txs: TrackedTxs::with_capacity(limits.max_tracked),
            by_messages: HashMap::new(),
            feed,
            failsafe: false,
            limits,
            soon: HashSet::new(),
            synced_epoch: None,
        }
    }

    /// Tracked txs a near pass checks whatever their presumed block (never checked, or
    /// waiting for a retry).
    pub fn soon(&self) -> impl Iterator<Item = &B256> {
        self.soon.iter()
    }

    fn mark(&mut self, hash: B256) {
        let due = self.txs.get(&hash).is_some_and(|t| {
            !matches!(t.status, TxStatus::Invalid { .. })
                && (t.retry || t.status == TxStatus::Unchecked)
        });
        if due {
            self.soon.insert(hash);
        } else {
            self.soon.remove(&hash);
        }
    }

    /// Follows a pool mirror by its change log: only the interop txs that came or went since
    /// the last call are looked at (a pass costs what changed, not the pool's size). A new
    /// mirror epoch (a reconciliation, another mirror) or txs waiting over `max_tracked` make
    /// it sync over the whole mirror once. The inbox entries of tracked txs are dropped from
    /// the mirror: the store keeps their parsed messages.
    pub fn sync_mirror(
        &mut self,
        mirror: &mut PoolMirror,
        now: Instant,
        now_unix: u64,
    ) -> SyncReport {
        let changes = mirror.take_changes();
        if self.synced_epoch != Some(mirror.epoch()) {
            let report = self.sync(&mirror.snapshot().txs, now, now_unix);
            let tracked: Vec<usize> = (mirror.snapshot().txs.iter().enumerate())
                .filter(|(_, t)| t.inbox.as_ref().is_some_and(|i| !i.is_empty()))
                .filter(|(_, t)| self.txs.contains_key(&t.hash))
                .map(|(pos, _)| pos)
                .collect();
            for pos in tracked {
                mirror.strip_inbox(pos);
            }
            // Over the cap, the txs left out are retried by the next whole sync.
            self.synced_epoch = (report.over_limit == 0).then_some(mirror.epoch());
            return report;
        }
        let mut report = SyncReport::default();
        for c in changes {
            let present = mirror.get(&c.sender, c.nonce).filter(|(_, t)| t.hash == c.hash);
            match present {
                Some((pos, tx)) => {
                    if !self.txs.contains_key(&c.hash) && self.track(tx, now, now_unix, &mut report)
                    {
                        mirror.strip_inbox(pos);
                    }
                }
                None => {
                    if self.forget(&c.hash) {
                        report.removed += 1;
                    }
                }
            }
        }
        if report.over_limit > 0 {
            self.synced_epoch = None;
        }
        report
    }

    fn forget(&mut self, hash: &B256) -> bool {
        let Some(t) = self.txs.remove(hash) else { return false };
        self.soon.remove(hash);
        if let Some(hashes) = self.by_messages.get_mut(&t.messages) {
            hashes.retain(|h| h != hash);
            if hashes.is_empty() {
                self.by_messages.remove(&t.messages);
            }
        }
        true
    }

    /// Number of tracked txs.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// The failsafe flag.
    pub fn failsafe(&self) -> bool {
        self.failsafe
    }

    /// Sets the failsafe flag.
    pub fn set_failsafe(&mut self, on: bool) {
        self.failsafe = on;
    }

    /// The invalid feed.
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// Follows the pool: forgets txs that left it, tracks new interop txs (publishing malformed
    /// ones at once). A whole-pool scan: for full reads; a mirror is followed by
    /// [`Self::sync_mirror`].
    pub fn sync(&mut self, pool: &[PoolTx], now: Instant, now_unix: u64) -> SyncReport {
        self.synced_epoch = None;
        let mut report = SyncReport::default();
        let present: HashSet<B256> =
            pool.iter().filter(|t| t.inbox.is_some()).map(|t| t.hash).collect();
        let gone: Vec<B256> = self.txs.keys().filter(|h| !present.contains(*h)).copied().collect();
        drop(present);
        for hash in gone {
            self.forget(&hash);
            report.removed += 1;
        }
        for tx in pool {
            if tx.inbox.is_some() && !self.txs.contains_key(&tx.hash) {
                self.track(tx, now, now_unix, &mut report);
            }
        }
        report
    }

    /// Tracks a new interop tx (publishing a malformed one at once); false when it is not
    /// tracked (over `max_tracked`, or its entries were already dropped from a mirror).
    fn track(&mut self, tx: &PoolTx, now: Instant, now_unix: u64, report: &mut SyncReport) -> bool {
        let Some(inbox) = &tx.inbox else { return false };
        if inbox.is_empty() {
            // Entries dropped by the mirror once tracked: a tx the store forgot while the
            // mirror kept it. The next reconciliation brings its entries back.
            return false;
        }
        if self.txs.len() >= self.limits.max_tracked {
            report.over_limit += 1;
            return false;
        }
        report.added += 1;
        let mut t = TrackedTx {
            sender: tx.sender,
            nonce: tx.nonce,
            messages: Arc::from(Vec::new()),
            max_init_ts: 0,
            first_seen_unix: now_unix,
            unknown_since: now,
            presumed_block: None,
            expected_ts: 0,
            status: TxStatus::Unchecked,
            last_checked_unix: None,
            next_check_unix: None,
            retry: false,
            no_answer: None,
        };
        let bounds =
            Bounds { max_entries: self.limits.max_inbox_entries, max_messages: usize::MAX };
        let parsed = parse_bounded(inbox, bounds).map_err(|e| match e {
            BoundedParseError::TooManyEntries { found, limit } => Rejection::new(
                codes::ACCESS_LIST_TOO_LARGE,
                format!("{found} inbox entries, the limit is {limit}"),
            ),
            e => {
                Rejection::new(codes::INVALID_PARAMS, format!("malformed interop access list: {e}"))
            }
        });
        match parsed {
            Ok(messages) => {
                t.max_init_ts = messages.iter().map(|m| m.timestamp).max().unwrap_or(0);
                t.messages = Arc::from(messages);
                self.by_messages.entry(t.messages.clone()).or_default().push(tx.hash);
            }
            Err(rejection) => {
                report.malformed += 1;
                let seq = self.publish(tx.hash, &rejection, now_unix);
                t.status = TxStatus::Invalid { rejection: Box::new(rejection), checked: None, seq };
            }
        }
        self.txs.insert(tx.hash, t);
        self.mark(tx.hash);
        true
    }

    fn publish(&mut self, hash: B256, r: &Rejection, now_unix: u64) -> u64 {
        crate::metrics::metrics().revalidator_invalid.with_label_values(&[r.label()]).inc();
        self.feed.publish(FeedEntry {
            seq: 0,
            hash,
            code: r.code,
            reason: r.reason.clone(),
            detected_at: now_unix,
            data: r.message.as_ref().map(crate::validation::codec::message_json),
        })
    }

    /// Records the verdict of a check made with `descriptor` at `safety`. Returns true when it
    /// published the tx as invalid.
    pub fn record(
        &mut self,
        hash: B256,
        verdict: Verdict,
        descriptor: &ExecutingDescriptor,
        safety: SafetyLevel,
        now: Instant,
        now_unix: u64,
    ) -> bool {
        let Some(t) = self.txs.get_mut(&hash) else {
            return false;
        };
        if matches!(t.status, TxStatus::Invalid { .. }) {
            return false;
        }
        t.last_checked_unix = Some(now_unix);
        t.retry = false;
        t.no_answer = None;
        let published = match verdict {
            Verdict::Valid { until } => {
                t.status = TxStatus::Valid { from: descriptor.timestamp, until, safety };
                t.unknown_since = now;
                false
            }
            Verdict::Invalid(r) if r.code != codes::SUP_FAILSAFE => {
                let window =
                    Window { from: descriptor.timestamp, to: descriptor.end().unwrap_or(u64::MAX) };
                let seq = self.publish(hash, &r, now_unix);
                if let Some(t) = self.txs.get_mut(&hash) {
                    t.status = TxStatus::Invalid {
                        rejection: Box::new(r),
                        checked: Some((window, safety)),
                        seq,
                    };
                }
                true
            }
            last @ Verdict::NotYetKnown(_) => {
                t.status = TxStatus::Pending { last: Box::new(last) };
                t.retry = true;
                false
            }
            // No answer or failsafe: nothing learned about the tx; it keeps its last verdict.
            Verdict::Invalid(r) => {
                t.no_answer = Some(format!("failsafe: {}", r.reason).into());
                t.retry = true;
                false
            }
            Verdict::Unavailable(why) => {
                t.no_answer = Some(why.into());
                t.retry = true;
                false
            }
        };
        self.mark(hash);
        published
    }

    /// Publishes the txs the backends kept calling "not yet known" past the deadline; returns
    /// how many. A tx whose latest check got no answer is never published here.
    pub fn expire(&mut self, now: Instant, now_unix: u64) -> usize {
        let max = self.limits.max_unknown;
        let due: Vec<(B256, Rejection)> = self
            .txs
            .iter()
            .filter(|(_, t)| t.no_answer.is_none())
            .filter(|(_, t)| now.saturating_duration_since(t.unknown_since) >= max)
            .filter_map(|(h, t)| match &t.status {
                TxStatus::Pending { last } => match &**last {
                    Verdict::NotYetKnown(r) => Some((
                        *h,
                        Rejection {
                            reason: format!("not known within {} s: {}", max.as_secs(), r.reason),
                            ..r.clone()
                        },
                    )),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        for (hash, rejection) in &due {
            let seq = self.publish(*hash, rejection, now_unix);
            if let Some(t) = self.txs.get_mut(hash) {
                t.status = TxStatus::Invalid {
                    rejection: Box::new(rejection.clone()),
                    checked: None,
                    seq,
                };
            }
            self.soon.remove(hash);
        }
        due.len()
    }

    /// Answers a drop-in check from what passes found, when a tracked tx with exactly these
    /// (de-duplicated) messages was checked with a verdict that covers the asked descriptor.
    /// `None` means "not known here": forward it.
    ///
    /// A valid verdict for `[from, until]` covers an asked window ending by `until` even when
    /// it starts before `from` (ELs ask with "now", we check presumed future blocks): the only
    /// rule that can fail earlier is init < exec, which is checked here from the messages
    /// themselves. An invalid verdict holds somewhere in the window it was judged for, so it is
    /// reused only for an asked window that contains that one (and a safety at least as strong),
    /// never during failsafe.
    pub fn lookup(
        &self,
        messages: &[Message],
        safety: SafetyLevel,
        d: &ExecutingDescriptor,
    ) -> Option<Result<(), Rejection>> {
        if self.failsafe || d.chain_id.is_some_and(|c| Some(c) != self.limits.chain_id) {
            return None;
        }
        let end = d.end()?;
        for hash in self.by_messages.get(messages)? {
            let Some(t) = self.txs.get(hash) else {
                continue;
            };
            match &t.status {
                TxStatus::Valid { until, safety: checked, .. }
                    if safety <= *checked && d.timestamp > t.max_init_ts && end <= *until =>
                {
                    return Some(Ok(()));
                }
                TxStatus::Invalid { rejection, checked: Some((judged, checked)), .. }
                    if safety >= *checked
                        && judged.within(&Window { from: d.timestamp, to: end }) =>
                {
                    return Some(Err((**rejection).clone()));
                }
                _ => {}
            }
        }
        None
    }

    /// What `interop_transactionStatus` shows.
    pub fn view(&self, hash: &B256) -> serde_json::Value {
        let Some(t) = self.txs.get(hash) else {
            return json!({ "hash": hash, "tracked": false });
        };
        let (mut status, last, valid_until) = match &t.status {
            TxStatus::Unchecked => ("unchecked", serde_json::Value::Null, None),
            TxStatus::Valid { until, .. } => ("valid", json!({ "kind": "valid" }), Some(*until)),
            TxStatus::Pending { last } => ("pending", verdict_view(last), None),
            TxStatus::Invalid { rejection, seq, .. } => (
                "invalid",
                json!({ "kind": "invalid", "code": rejection.code, "reason": rejection.reason, "cursor": format!("{seq:#x}") }),
                None,
            ),
        };
        if t.no_answer.is_some() {
            // The latest check got no verdict: say so, with why, beside the last verdict.
            status = "unknown";
        }
        json!({
            "hash": hash,
            "tracked": true,
            "reason": t.no_answer,
            "status": status,
            "messages": t.messages.len(),
            "presumedBlock": t.presumed_block,
            "expectedTimestamp": t.expected_ts,
            "lastVerdict": last,
            "validUntil": valid_until,
            "firstSeen": t.first_seen_unix,
            "lastChecked": t.last_checked_unix,
            "nextCheck": t.next_check_unix,
        })
    }
}

fn verdict_view(v: &Verdict) -> serde_json::Value {
    match v {
        Verdict::Valid { until } => json!({ "kind": "valid", "until": until }),
        Verdict::Invalid(r) | Verdict::NotYetKnown(r) => {
            json!({ "kind": v.kind(), "code": r.code, "reason": r.reason })
        }
        Verdict::Unavailable(why) => json!({ "kind": "unavailable", "reason": why }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interop::encode_entries;
    use crate::revalidator::pool::Fees;
    use alloy_primitives::Address;

    fn msg(ts: u64) -> Message {
        Message {
            chain_id: U256::from(901),
            block_number: 1,
            timestamp: ts,
            log_index: 0,
            checksum: B256::repeat_byte(3),
        }
    }

    fn ptx(hash: u8, inbox: Option<Vec<B256>>) -> PoolTx {
        PoolTx {
            hash: B256::with_last_byte(hash),
            sender: Address::repeat_byte(hash),
            nonce: 0,
            gas: 21_000,
            fees: Fees::Legacy { gas_price: 1 },
            inbox,
        }
    }

    fn tracker() -> Tracker {
        let limits = TrackerLimits {
            max_tracked: 10,
            max_inbox_entries: 4,
            max_unknown: Duration::from_secs(60),
            chain_id: Some(U256::from(10)),
        };
        Tracker::new(limits, Feed::with_base(100, 1))
    }

    fn desc(ts: u64, timeout: u64) -> ExecutingDescriptor {
        ExecutingDescriptor { timestamp: ts, timeout: Some(timeout), chain_id: None }
    }

    #[test]
    fn sync_tracks_interop_txs_publishes_malformed_and_forgets_gone() {
        let mut t = tracker();
        let now = Instant::now();
        let good = encode_entries(&[msg(100), msg(100)]);
        let pool = vec![
            ptx(1, Some(good)),
            ptx(2, Some(vec![B256::repeat_byte(3)])),
            ptx(3, None),
            ptx(4, Some(vec![B256::ZERO; 5])),
        ];
        let r = t.sync(&pool, now, 1_000);
        assert_eq!(r, SyncReport { added: 3, removed: 0, malformed: 2, over_limit: 0 });
        assert_eq!(t.txs[&B256::with_last_byte(1)].messages.len(), 1, "duplicates removed");
        let page = t.feed().read(None, 10);
        let codes: Vec<i64> = page.entries.iter().map(|e| e.code).collect();
        assert_eq!(codes.len(), 2);
        assert!(
            codes.contains(&codes::INVALID_PARAMS) && codes.contains(&codes::ACCESS_LIST_TOO_LARGE)
        );
        // A second sync publishes nothing new; dropping tx 1 forgets it and its lookup key.
        assert_eq!(t.sync(&pool, now, 1_001).added, 0);
        assert_eq!(t.feed().next_seq(), 3);
        let r = t.sync(&pool[1..], now, 1_002);
        assert_eq!(r.removed, 1);
        assert!(t.by_messages.is_empty());
        assert_eq!(t.view(&B256::with_last_byte(1))["tracked"], false);
    }

    /// The store follows a mirror by its change log: adds, inclusions and a replacement by a
    /// non-interop tx, each seen once; txs left out over `max_tracked` are picked up by a whole
    /// sync once room frees; tracked txs' inbox entries leave the mirror.
    #[test]
    fn sync_mirror_follows_changes_and_retries_what_waited_over_the_cap() {
        let limits = TrackerLimits { max_tracked: 2, ..tracker().limits };
        let mut t = Tracker::new(limits, Feed::new(10));
        let mut m = PoolMirror::new(100);
        let now = Instant::now();
        let interop = |h: u8| ptx(h, Some(encode_entries(&[msg(u64::from(h))])));
        for h in 1..=3 {
            m.insert(interop(h));
        }
        let r = t.sync_mirror(&mut m, now, 1);
        assert_eq!((r.added, r.over_limit), (2, 1));
        let stripped = |m: &PoolMirror, h: u8| {
            let (_, tx) = m.get(&Address::repeat_byte(h), 0).unwrap();
            tx.inbox.as_ref().is_some_and(Vec::is_empty)
        };
        let tracked: Vec<u8> =
            (1..=3).filter(|h| t.txs.contains_key(&B256::with_last_byte(*h))).collect();
        assert_eq!(tracked.iter().filter(|h| stripped(&m, **h)).count(), 2);
        // One tracked tx is included: the waiting one takes its place.
        m.include(Address::repeat_byte(tracked[0]), 0);
        let r = t.sync_mirror(&mut m, now, 2);
        assert_eq!((r.added, r.removed, r.over_limit), (1, 1, 0));
        assert_eq!(t.len(), 2);
        // From now on by the log: a replacement by a plain tx, and a new interop tx.
        let mut plain = ptx(tracked[1], None);
        plain.hash = B256::repeat_byte(0xee);
        assert_eq!(m.insert(plain), crate::revalidator::mirror::Insert::Replaced);
        let r = t.sync_mirror(&mut m, now, 3);
        assert_eq!((r.added, r.removed), (0, 1));
        m.insert(interop(9));
        let r = t.sync_mirror(&mut m, now, 4);
        assert_eq!((r.added, r.removed), (1, 0));
        assert!(t.txs.contains_key(&B256::with_last_byte(9)) && stripped(&m, 9));
        assert_eq!(t.sync_mirror(&mut m, now, 5), SyncReport::default(), "nothing changed");
    }

    #[test]
    fn lookup_covers_only_what_was_checked() {
        let mut t = tracker();
        let now = Instant::now();
        let m = [msg(100)];
        t.sync(&[ptx(1, Some(encode_entries(&m)))], now, 1_000);
        let h = B256::with_last_byte(1);
        assert_eq!(t.lookup(&m, SafetyLevel::CrossUnsafe, &desc(150, 0)), None, "unchecked");
        t.record(
            h,
            Verdict::Valid { until: 204 },
            &desc(202, 2),
            SafetyLevel::CrossUnsafe,
            now,
            1_000,
        );
        assert_eq!(t.lookup(&m, SafetyLevel::CrossUnsafe, &desc(150, 0)), Some(Ok(())));
        assert_eq!(t.lookup(&m, SafetyLevel::Unsafe, &desc(200, 4)), Some(Ok(())));
        assert_eq!(t.lookup(&m, SafetyLevel::CrossUnsafe, &desc(200, 5)), None, "past until");
        assert_eq!(t.lookup(&m, SafetyLevel::Safe, &desc(150, 0)), None, "stronger safety");
        assert_eq!(
            t.lookup(&m, SafetyLevel::CrossUnsafe, &desc(100, 0)),
            None,
            "same timestamp as init"
        );
        let other_chain = ExecutingDescriptor { chain_id: Some(U256::from(11)), ..desc(150, 0) };
        assert_eq!(t.lookup(&m, SafetyLevel::CrossUnsafe, &other_chain), None);
        t.set_failsafe(true);
        assert_eq!(
            t.lookup(&m, SafetyLevel::CrossUnsafe, &desc(150, 0)),
            None,
            "never during failsafe"
        );
        t.set_failsafe(false);
        // Invalid: published once, reused only for windows containing the judged one (it is
        // invalid somewhere in [206, 208]), never re-recorded.
        let r = Rejection::new(codes::SUP_CONFLICTING_DATA, "checksum mismatch").for_message(m[0]);
        assert!(t.record(
            h,
            Verdict::Invalid(r.clone()),
            &desc(206, 2),
            SafetyLevel::CrossUnsafe,
            now,
            1_002
        ));
        assert!(!t.record(
            h,
            Verdict::Invalid(r.clone()),
            &desc(206, 2),
            SafetyLevel::CrossUnsafe,
            now,
            1_004
        ));
        assert_eq!(t.lookup(&m, SafetyLevel::CrossUnsafe, &desc(200, 10)), Some(Err(r.clone())));
        assert_eq!(t.lookup(&m, SafetyLevel::Safe, &desc(206, 2)), Some(Err(r)));
        assert_eq!(t.lookup(&m, SafetyLevel::CrossUnsafe, &desc(210, 0)), None, "after it");
        assert_eq!(t.lookup(&m, SafetyLevel::CrossUnsafe, &desc(206, 0)), None, "narrower");
        assert_eq!(t.lookup(&m, SafetyLevel::CrossUnsafe, &desc(150, 0)), None);
        let page = t.feed().read(None, 10);
        assert_eq!(page.entries.len(), 1);
        assert_eq!(page.entries[0].data.as_ref().unwrap()["logIndex"], 0);
    }

    #[test]
    fn only_not_yet_known_outliving_the_deadline_is_published_never_no_answer_or_failsafe() {
        let mut t = tracker();
        let t0 = Instant::now();
        let pool = vec![
            ptx(1, Some(encode_entries(&[msg(1)]))),
            ptx(2, Some(encode_entries(&[msg(2)]))),
            ptx(3, Some(encode_entries(&[msg(3)]))),
        ];
        t.sync(&pool, t0, 1_000);
        let (h1, h2, h3) =
            (B256::with_last_byte(1), B256::with_last_byte(2), B256::with_last_byte(3));
        let soft = Verdict::NotYetKnown(Rejection::new(codes::SUP_FUTURE_DATA, "not indexed yet"));
        let failsafe = Verdict::Invalid(Rejection::new(codes::SUP_FAILSAFE, "failsafe"));
        let t30 = t0 + Duration::from_secs(30);
        t.record(h1, soft.clone(), &desc(1, 2), SafetyLevel::CrossUnsafe, t30, 1_030);
        t.record(
            h2,
            Verdict::Valid { until: 9 },
            &desc(5, 4),
            SafetyLevel::CrossUnsafe,
            t30,
            1_030,
        );
        t.record(
            h2,
            Verdict::Unavailable("down".into()),
            &desc(5, 4),
            SafetyLevel::CrossUnsafe,
            t30,
            1_030,
        );
        t.record(h3, failsafe, &desc(5, 4), SafetyLevel::CrossUnsafe, t30, 1_030);
        assert!(t.txs[&h1].retry && t.txs[&h2].retry && t.txs[&h3].retry);
        assert!(matches!(t.txs[&h2].status, TxStatus::Valid { .. }), "no answer keeps the verdict");
        assert_eq!(t.view(&h2)["status"], "unknown");
        assert_eq!(t.view(&h2)["reason"], "down");
        assert_eq!(t.expire(t0 + Duration::from_secs(59), 1_059), 0);
        assert_eq!(t.expire(t0 + Duration::from_secs(60), 1_060), 1, "h1 from first seen");
        assert_eq!(
            t.expire(t0 + Duration::from_secs(5_000), 6_000),
            0,
            "no answer and failsafe never publish a tx"
        );
        // A not-yet-known tx whose latest check got no answer waits for an answer.
        let pool4 = vec![ptx(4, Some(encode_entries(&[msg(4)])))];
        t.sync(&pool4, t0, 1_000);
        let h4 = B256::with_last_byte(4);
        t.record(h4, soft.clone(), &desc(1, 2), SafetyLevel::CrossUnsafe, t30, 1_030);
        t.record(
            h4,
            Verdict::Unavailable("down".into()),
            &desc(1, 2),
            SafetyLevel::CrossUnsafe,
            t30,
            1_030,
        );
        assert_eq!(t.expire(t0 + Duration::from_secs(600), 1_600), 0);
        let page = t.feed().read(None, 10);
        assert_eq!(
            page.entries.iter().map(|e| (e.hash, e.code)).collect::<Vec<_>>(),
            vec![(h1, codes::SUP_FUTURE_DATA)]
        );
    }
}
