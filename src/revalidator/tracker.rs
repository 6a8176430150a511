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

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};
use serde_json::json;

use super::feed::{Feed, FeedEntry};
use super::mirror::PoolMirror;
use super::pool::PoolTx;
use super::tracked::{Bits, TrackedTxs, TxKey};
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
        /// Why, and where it was published (boxed: rare, and it would double the status).
        published: Box<Published>,
    },
}

/// A published invalid verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// Why.
    pub rejection: Rejection,
    /// The window and safety of the backend verdict, when the backend gave it (a malformed
    /// list or an expired deadline has none and is never answered from here).
    pub checked: Option<(Window, SafetyLevel)>,
    /// Feed sequence number.
    pub seq: u64,
}

impl TxStatus {
    fn invalid(rejection: Rejection, checked: Option<(Window, SafetyLevel)>, seq: u64) -> Self {
        Self::Invalid { published: Box::new(Published { rejection, checked, seq }) }
    }
}

/// One tracked interop tx, kept small (a million of them at the 1M-tracked goal): unix seconds
/// as `u32` (enough until 2106) with a sentinel instead of `Option`, the presumed block with a
/// sentinel, the "no answer" reason behind one thin pointer (set only during outages).
#[derive(Debug, Clone)]
pub struct TrackedTx {
    /// Sender (with the nonce, where the mirror finds the tx).
    pub sender: Address,
    /// Nonce.
    pub nonce: u64,
    /// De-duplicated messages (empty for a malformed list).
    pub messages: Arc<[Message]>,
    /// Expected inclusion timestamp.
    pub expected_ts: u64,
    /// Start of the current run without a definitive answer (see [`Stamp`]).
    unknown_since: Stamp,
    /// Latest verdict.
    pub status: TxStatus,
    /// First seen in the pool (unix seconds).
    first_seen_unix: u32,
    /// Presumed block index, `UNSET` when unplaced (nonce gap, gas over the limit).
    presumed_block: u32,
    /// Last check (unix seconds, `UNSET`: never).
    last_checked_unix: u32,
    /// Next planned check (unix seconds, `UNSET`: none).
    next_check_unix: u32,
    /// Re-check on the next pass whatever its presumed block.
    pub retry: bool,
    /// Why the latest check got no verdict (no answer, or failsafe); `None` after an answer.
    /// Boxed for a thin pointer: 8 bytes in every tracked tx rather than 24 for a `String`
    /// (or 16 for a `Box<str>`), and only set during outages.
    #[allow(clippy::box_collection)]
    no_answer: Option<Box<String>>,
}

/// The sentinel of [`TrackedTx`]'s optional `u32` fields.
const UNSET: u32 = u32::MAX;

fn opt(v: u32) -> Option<u32> {
    (v != UNSET).then_some(v)
}

/// Unix seconds as stored: saturating below the sentinel.
fn unix32(v: u64) -> u32 {
    v.min(u64::from(UNSET - 1)) as u32
}

/// An `Instant` as signed nanoseconds from the store's epoch: 8 bytes instead of 16, exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(i64);

impl Stamp {
    fn new(epoch: Instant, t: Instant) -> Self {
        match t.checked_duration_since(epoch) {
            Some(d) => Self(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            None => Self(-i64::try_from(epoch.duration_since(t).as_nanos()).unwrap_or(i64::MAX)),
        }
    }

    fn instant(self, epoch: Instant) -> Instant {
        let d = Duration::from_nanos(self.0.unsigned_abs());
        if self.0 >= 0 {
            epoch + d
        } else {
            epoch.checked_sub(d).unwrap_or(epoch)
        }
    }
}

impl TrackedTx {
    /// An unchecked tx with `messages` (tests of the table).
    #[cfg(test)]
    pub(super) fn unchecked(messages: Vec<Message>) -> Self {
        Self {
            sender: Address::ZERO,
            nonce: 0,
            messages: Arc::from(messages),
            expected_ts: 0,
            unknown_since: Stamp(0),
            status: TxStatus::Unchecked,
            first_seen_unix: 0,
            presumed_block: UNSET,
            last_checked_unix: UNSET,
            next_check_unix: UNSET,
            retry: false,
            no_answer: None,
        }
    }

    /// Presumed block index, `None` when unplaced (nonce gap, gas over the limit).
    pub fn presumed_block(&self) -> Option<u32> {
        opt(self.presumed_block)
    }

    /// Sets the presumed block.
    pub fn set_presumed_block(&mut self, block: Option<u32>) {
        self.presumed_block = block.unwrap_or(UNSET);
    }

    /// Next planned check (unix seconds).
    pub fn next_check_unix(&self) -> Option<u32> {
        opt(self.next_check_unix)
    }

    /// Sets the next planned check (unix seconds).
    pub fn set_next_check_unix(&mut self, at: Option<u64>) {
        self.next_check_unix = at.map_or(UNSET, unix32);
    }

    /// Last check (unix seconds).
    pub fn last_checked_unix(&self) -> Option<u32> {
        opt(self.last_checked_unix)
    }

    /// First seen in the pool (unix seconds).
    pub fn first_seen_unix(&self) -> u32 {
        self.first_seen_unix
    }

    /// Why the latest check got no verdict (no answer, or failsafe); `None` after an answer.
    pub fn no_answer(&self) -> Option<&str> {
        self.no_answer.as_deref().map(String::as_str)
    }

    /// The newest initiating timestamp among the messages.
    pub fn max_init_ts(&self) -> u64 {
        self.messages.iter().map(|m| m.timestamp).max().unwrap_or(0)
    }
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

/// A pool a whole sync reads by position: a snapshot read whole, or a mirror, whose tracked
/// txs' inbox entries are dropped (the store keeps their parsed messages).
trait WholePool {
    fn txs(&self) -> &[PoolTx];
    /// The tx at `pos` is tracked.
    fn tracked(&mut self, _pos: usize) {}
    /// The interop tx at `pos` lost its inbox entries to an earlier sync but is not tracked.
    fn untracked_without_entries(&mut self, _pos: usize) {}
}

impl WholePool for &[PoolTx] {
    fn txs(&self) -> &[PoolTx] {
        self
    }
}

impl WholePool for PoolMirror {
    fn txs(&self) -> &[PoolTx] {
        &self.snapshot().txs
    }
    fn tracked(&mut self, pos: usize) {
        self.strip_inbox(pos);
    }
    fn untracked_without_entries(&mut self, pos: usize) {
        self.want_inbox(pos);
    }
}

/// The store.
#[derive(Debug)]
pub struct Tracker {
    pub(super) txs: TrackedTxs,
    pub(super) feed: Feed,
    failsafe: bool,
    limits: TrackerLimits,
    /// The mirror epoch the store follows by its change log (`None`: sync over the whole pool).
    synced_epoch: Option<u64>,
    /// What the txs' [`Stamp`]s count from.
    epoch: Instant,
    /// The slot key of the tx at each pool position when last seen there: a hint, checked
    /// against the slot's hash. A full pass looks up every pooled interop tx, and at 1M tracked
    /// a hash-table probe is a few cache misses (~400 ns, 40% of a full pass); positions rarely
    /// move between passes, and the slot is read next anyway. 4 bytes per pool position.
    pos_hint: Vec<TxKey>,
}

impl Tracker {
    /// An empty store.
    pub fn new(limits: TrackerLimits, feed: Feed) -> Self {
        Self {
            txs: TrackedTxs::with_capacity(limits.max_tracked),
            feed,
            failsafe: false,
            limits,
            synced_epoch: None,
            epoch: Instant::now(),
            pos_hint: Vec::new(),
        }
    }

    /// Slot keys of the tracked txs a near pass checks whatever their presumed block (never
    /// checked, or waiting for a retry).
    pub fn soon(&self) -> impl Iterator<Item = TxKey> + '_ {
        self.txs.soon()
    }

    /// The slot key of the tracked tx with `hash`, at position `pos` of the pool (or mirror)
    /// the store follows: by the position's hint when it still holds, else by hash.
    pub fn key_at(&mut self, pos: usize, hash: &B256) -> Option<TxKey> {
        if let Some(&k) = self.pos_hint.get(pos) {
            if self.txs.at(k).is_some_and(|(h, _)| h == hash) {
                return Some(k);
            }
        }
        let k = self.txs.key_of(hash)?;
        self.hint(pos, k);
        Some(k)
    }

    fn hint(&mut self, pos: usize, key: TxKey) {
        if pos >= self.pos_hint.len() {
            self.pos_hint.resize(pos + 1, TxKey::MAX);
        }
        self.pos_hint[pos] = key;
    }

    /// Files the tx in slot `key` by its status: "soon" (never checked, or waiting for a
    /// retry) and published invalid. Called after every status change.
    fn mark(&mut self, key: TxKey) {
        let Some((_, t)) = self.txs.at(key) else { return };
        let invalid = matches!(t.status, TxStatus::Invalid { .. });
        let due = !invalid && (t.retry || t.status == TxStatus::Unchecked);
        self.txs.set_soon(key, due);
        self.txs.set_invalid(key, invalid);
    }

    /// The hashes of the tracked txs published invalid (still pooled, as the store holds only
    /// pooled txs), without a walk over every tracked tx.
    pub fn invalid(&self) -> impl Iterator<Item = &B256> + '_ {
        self.txs.invalid()
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
            let report = self.sync_whole(mirror, now, now_unix);
            // Over the cap, the txs left out are retried by the next whole sync.
            self.synced_epoch = (report.over_limit == 0).then_some(mirror.epoch());
            return report;
        }
        let mut report = SyncReport::default();
        // What left first, then what came: at `max_tracked`, a pass where as many txs leave as
        // come tracks the newcomers instead of counting them over the cap (and syncing over the
        // whole mirror next pass to pick them up). Each change is judged by the mirror as it
        // is now, so the order changes nothing else.
        let mut came = Vec::new();
        for c in changes {
            match mirror.get(&c.sender, c.nonce).filter(|(_, t)| t.hash == c.hash) {
                Some((pos, _)) => came.push(pos),
                None => {
                    if self.txs.remove(&c.hash).is_some() {
                        report.removed += 1;
                    }
                }
            }
        }
        for pos in came {
            let tx = &mirror.snapshot().txs[pos];
            if let Some(key) = self.track(tx, now, now_unix, &mut report) {
                self.hint(pos, key);
                mirror.strip_inbox(pos);
            }
        }
        if report.over_limit > 0 {
            self.synced_epoch = None;
        }
        report
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
        self.sync_whole(&mut { pool }, now, now_unix)
    }

    /// [`Self::sync`] over a snapshot or a mirror. Mark and sweep: one lookup per pooled
    /// interop tx (by its position's hint, else by hash) and a bit per slot, not a set of every
    /// pooled hash. A mirror drops each tracked tx's inbox entries as soon as it is tracked, so
    /// their memory is freed while the store's grows (at a first sync of 1M interop txs the
    /// two are not held whole at once).
    fn sync_whole(&mut self, pool: &mut impl WholePool, now: Instant, now_unix: u64) -> SyncReport {
        self.synced_epoch = None;
        let mut report = SyncReport::default();
        let mut present = Bits::with_bound(self.txs.key_bound());
        // Positions as u32: a first sync of 1M txs lists them all (pools are bounded far below).
        let mut untracked: Vec<u32> = Vec::new();
        for pos in 0..pool.txs().len() {
            let tx = &pool.txs()[pos];
            let Some(inbox) = &tx.inbox else { continue };
            let (hash, entries) = (tx.hash, !inbox.is_empty());
            match self.key_at(pos, &hash) {
                Some(k) => {
                    present.set(k, true);
                    if entries {
                        pool.tracked(pos);
                    }
                }
                None => untracked.push(pos as u32),
            }
        }
        let gone: Vec<TxKey> =
            self.txs.iter_keyed().map(|(k, _, _)| k).filter(|&k| !present.get(k)).collect();
        drop(present);
        for k in gone {
            self.txs.remove_at(k);
            report.removed += 1;
        }
        for pos in untracked {
            let pos = pos as usize;
            let tx = &pool.txs()[pos];
            // The same hash twice in the pool is tracked by its first occurrence (`track`
            // tracks nothing already tracked).
            if let Some(key) = self.track(tx, now, now_unix, &mut report) {
                self.hint(pos, key);
                pool.tracked(pos);
            } else if tx.inbox.as_ref().is_some_and(Vec::is_empty) {
                // Forgotten while the mirror kept it stripped (the store followed full reads
                // for a while): the next reconciliation brings its entries back.
                pool.untracked_without_entries(pos);
            }
        }
        report
    }

    /// Tracks a new interop tx (publishing a malformed one at once); its slot key, `None` when
    /// it is not tracked (already tracked, over `max_tracked`, or its entries were already
    /// dropped from a mirror).
    fn track(
        &mut self,
        tx: &PoolTx,
        now: Instant,
        now_unix: u64,
        report: &mut SyncReport,
    ) -> Option<TxKey> {
        let inbox = tx.inbox.as_ref()?;
        if inbox.is_empty() {
            // Entries dropped by the mirror once tracked: a tx the store forgot while the
            // mirror kept it. The next reconciliation brings its entries back.
            return None;
        }
        if self.txs.len() >= self.limits.max_tracked {
            if !self.txs.contains_key(&tx.hash) {
                report.over_limit += 1;
            }
            return None;
        }
        let mut t = TrackedTx {
            sender: tx.sender,
            nonce: tx.nonce,
            messages: Arc::from(Vec::new()),
            expected_ts: 0,
            unknown_since: Stamp::new(self.epoch, now),
            status: TxStatus::Unchecked,
            first_seen_unix: unix32(now_unix),
            presumed_block: UNSET,
            last_checked_unix: UNSET,
            next_check_unix: UNSET,
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
        let malformed = match parsed {
            Ok(messages) => {
                t.messages = Arc::from(messages);
                None
            }
            Err(rejection) => Some(rejection),
        };
        // Already tracked (the same hash twice in a pool): nothing new. Checked by the insert
        // itself, not by a probe before it (a first sync of 1M txs would probe twice).
        let key = self.txs.insert(tx.hash, t)?;
        report.added += 1;
        if let Some(rejection) = malformed {
            report.malformed += 1;
            let seq = self.publish(tx.hash, &rejection, now_unix);
            if let Some((_, t)) = self.txs.at_mut(key) {
                t.status = TxStatus::invalid(rejection, None, seq);
            }
        }
        self.mark(key);
        Some(key)
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

    /// [`Self::record_at`] by hash (tests; passes record by slot key).
    #[cfg(test)]
    pub fn record(
        &mut self,
        hash: B256,
        verdict: Verdict,
        descriptor: &ExecutingDescriptor,
        safety: SafetyLevel,
        now: Instant,
        now_unix: u64,
    ) -> bool {
        match self.txs.key_of(&hash) {
            Some(key) => self.record_at(key, hash, verdict, descriptor, safety, now, now_unix),
            None => false,
        }
    }

    /// Records the verdict of a check made with `descriptor` at `safety` for the tx a pass
    /// planned by its slot key (no hash lookup); true when it published the tx as invalid.
    /// Keys do not move while a tx is tracked and only a pool sync forgets txs, which never
    /// runs while a pass is out (passes run one at a time); a slot that holds another tx by
    /// now is found by hash all the same.
    #[allow(clippy::too_many_arguments)]
    pub fn record_at(
        &mut self,
        key: TxKey,
        hash: B256,
        verdict: Verdict,
        descriptor: &ExecutingDescriptor,
        safety: SafetyLevel,
        now: Instant,
        now_unix: u64,
    ) -> bool {
        let key = match self.txs.at(key) {
            Some((h, _)) if *h == hash => key,
            _ => match self.txs.key_of(&hash) {
                Some(k) => k,
                None => return false,
            },
        };
        let epoch = self.epoch;
        let Some((_, t)) = self.txs.at_mut(key) else { return false };
        if matches!(t.status, TxStatus::Invalid { .. }) {
            return false;
        }
        t.last_checked_unix = unix32(now_unix);
        t.retry = false;
        t.no_answer = None;
        let published = match verdict {
            Verdict::Valid { until } => {
                t.status = TxStatus::Valid { from: descriptor.timestamp, until, safety };
                t.unknown_since = Stamp::new(epoch, now);
                false
            }
            Verdict::Invalid(r) if r.code != codes::SUP_FAILSAFE => {
                let window =
                    Window { from: descriptor.timestamp, to: descriptor.end().unwrap_or(u64::MAX) };
                let seq = self.publish(hash, &r, now_unix);
                if let Some((_, t)) = self.txs.at_mut(key) {
                    t.status = TxStatus::invalid(r, Some((window, safety)), seq);
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
                t.no_answer = Some(Box::new(format!("failsafe: {}", r.reason)));
                t.retry = true;
                false
            }
            Verdict::Unavailable(why) => {
                t.no_answer = Some(Box::new(why));
                t.retry = true;
                false
            }
        };
        self.mark(key);
        published
    }

    /// Publishes the txs the backends kept calling "not yet known" past the deadline; returns
    /// how many. A tx whose latest check got no answer is never published here.
    ///
    /// Only the "soon" txs are looked at: a not-yet-known verdict always sets `retry`, which
    /// keeps the tx there until its next verdict, so a pass does not walk every tracked tx.
    pub fn expire(&mut self, now: Instant, now_unix: u64) -> usize {
        let max = self.limits.max_unknown;
        let epoch = self.epoch;
        let due: Vec<(TxKey, Rejection)> = self
            .txs
            .soon()
            .filter_map(|k| self.txs.at(k).map(|(_, t)| (k, t)))
            .filter(|(_, t)| t.no_answer.is_none())
            .filter(|(_, t)| now.saturating_duration_since(t.unknown_since.instant(epoch)) >= max)
            .filter_map(|(k, t)| match &t.status {
                TxStatus::Pending { last } => match &**last {
                    Verdict::NotYetKnown(r) => Some((
                        k,
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
        for (key, rejection) in &due {
            let Some((hash, _)) = self.txs.at(*key) else { continue };
            let hash = *hash;
            let seq = self.publish(hash, rejection, now_unix);
            if let Some((_, t)) = self.txs.at_mut(*key) {
                t.status = TxStatus::invalid(rejection.clone(), None, seq);
            }
            self.mark(*key);
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
        for t in self.txs.with_messages(messages) {
            match &t.status {
                TxStatus::Valid { until, safety: checked, .. }
                    if safety <= *checked && d.timestamp > t.max_init_ts() && end <= *until =>
                {
                    return Some(Ok(()));
                }
                TxStatus::Invalid { published } => {
                    let Published { rejection, checked, .. } = &**published;
                    if let Some((judged, checked)) = checked {
                        if safety >= *checked
                            && judged.within(&Window { from: d.timestamp, to: end })
                        {
                            return Some(Err(rejection.clone()));
                        }
                    }
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
            TxStatus::Invalid { published } => {
                let Published { rejection, seq, .. } = &**published;
                (
                    "invalid",
                    json!({ "kind": "invalid", "code": rejection.code, "reason": rejection.reason, "cursor": format!("{seq:#x}") }),
                    None,
                )
            }
        };
        if t.no_answer.is_some() {
            // The latest check got no verdict: say so, with why, beside the last verdict.
            status = "unknown";
        }
        json!({
            "hash": hash,
            "tracked": true,
            "reason": t.no_answer(),
            "status": status,
            "messages": t.messages.len(),
            "presumedBlock": t.presumed_block(),
            "expectedTimestamp": t.expected_ts,
            "lastVerdict": last,
            "validUntil": valid_until,
            "firstSeen": t.first_seen_unix,
            "lastChecked": t.last_checked_unix(),
            "nextCheck": t.next_check_unix(),
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
        let mut invalid: Vec<B256> = t.invalid().copied().collect();
        invalid.sort();
        assert_eq!(invalid, vec![B256::with_last_byte(2), B256::with_last_byte(4)]);
        // A second sync publishes nothing new; dropping tx 1 forgets it and its lookup key.
        assert_eq!(t.sync(&pool, now, 1_001).added, 0);
        assert_eq!(t.feed().next_seq(), 3);
        let r = t.sync(&pool[1..], now, 1_002);
        assert_eq!(r.removed, 1);
        assert_eq!(t.txs.distinct_messages(), 0);
        assert_eq!(t.view(&B256::with_last_byte(1))["tracked"], false);
    }

    /// A tx the mirror holds stripped (an earlier store parsed its entries) but this store does
    /// not track is not lost: the store asks for its entries, the next reconciliation read
    /// gives them back, and the whole sync after it tracks the tx.
    #[test]
    fn a_stripped_tx_the_store_does_not_track_is_tracked_after_the_next_reconciliation() {
        let mut m = PoolMirror::new(100);
        let tx = ptx(1, Some(encode_entries(&[msg(1)])));
        m.insert(tx.clone());
        let now = Instant::now();
        assert_eq!(tracker().sync_mirror(&mut m, now, 1).added, 1, "stripped by a first store");
        let mut t = tracker();
        assert_eq!(t.sync_mirror(&mut m, now, 2).added, 0, "no entries to parse");
        m.begin_reconcile();
        m.finish_reconcile(m.snapshot().head, vec![tx.clone()], None);
        assert_eq!(t.sync_mirror(&mut m, now, 3).added, 1);
        assert!(t.txs.contains_key(&tx.hash));
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

    /// At `max_tracked`, a pass where one tx leaves and one comes tracks the newcomer: the
    /// change log frees room before it tracks.
    #[test]
    fn at_the_cap_a_leaving_tx_makes_room_for_a_coming_one_in_the_same_sync() {
        let limits = TrackerLimits { max_tracked: 2, ..tracker().limits };
        let mut t = Tracker::new(limits, Feed::new(10));
        let mut m = PoolMirror::new(100);
        let now = Instant::now();
        let interop = |h: u8| ptx(h, Some(encode_entries(&[msg(u64::from(h))])));
        m.insert(interop(1));
        m.insert(interop(2));
        assert_eq!(t.sync_mirror(&mut m, now, 1).added, 2);
        m.insert(interop(3)); // logged before the inclusion that makes room
        m.include(Address::repeat_byte(1), 0);
        let r = t.sync_mirror(&mut m, now, 2);
        assert_eq!((r.added, r.removed, r.over_limit), (1, 1, 0));
        assert!(t.txs.contains_key(&B256::with_last_byte(3)));
        assert_eq!(t.sync_mirror(&mut m, now, 3), SyncReport::default(), "still by the log");
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
        assert_eq!(t.invalid().collect::<Vec<_>>(), vec![&h]);
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
