//! Verdict cache and coalescing.
//!
//! - Identical concurrent checks share one backend call (the second waits for the first).
//! - Every remembered verdict carries the window it was judged for, and is reused only where
//!   [`super::reusable`] says it is still true for the asked descriptor: a verdict for
//!   `{timestamp, timeout: 86400}` never answers `{timestamp, timeout: 0}` unless the rules
//!   allow it. Keys are the messages, the safety level and the executing chain; the descriptor's
//!   timestamp and timeout are checked against the judged window on every hit.
//! - Definitive invalid verdicts live `invalid_cache_ttl_secs` (spam of one bad tx costs one
//!   call). Invalid verdicts that may change within a second (out of scope, conflicting data about
//!   a message seconds old: what real filters answer for "not indexed yet") live only half the
//!   retry delay, so the ingress's re-test asks again and a message that becomes valid is never
//!   refused for long. Failsafe is never remembered: it is the supervisor's state, not the
//!   message's.
//! - A valid verdict replaces any invalid one for the same key (the message became valid).
//!
//! ## How long a valid verdict lives
//!
//! A valid verdict is true for as long as (a) the clock rules hold and (b) the blocks its
//! messages were read from stay canonical at the asked safety level. Nothing else makes it false:
//! a log in a block does not change while the block stands, and safety only rises unless the
//! block is replaced.
//!
//! - (a) is checked on every hit by [`super::reusable`] (the asked window must start no
//!   earlier than the judged one and end no later than the oldest message's expiry), and no
//!   entry is kept past that expiry.
//! - (b) is what the light backend's reorg watch sees: every `light.reorg_watch_ms` it reads
//!   each source chain's head and walks back over new or replaced blocks, and a replaced block
//!   (or a walk that cannot reach a block it saw before, after the chain could not be read for
//!   a while) drops every valid verdict ([`Cached::flush_valid`]). So when the watch runs and
//!   covers every source chain of a verdict, the verdict lives
//!   `valid_cache_watched_ttl_secs` (a cap in case the watch stops seeing the chain, e.g. its
//!   RPC is down) — the remaining exposure is the watch's own period, not this lifetime. When
//!   the watch is off, or a message's chain is not watched (a chain only the supervisor knows),
//!   the verdict lives the short `valid_cache_ttl_secs`, as before.
//! - A verdict whose check began before a flush (it may rest on a replaced block read just
//!   before the reorg was seen) is stored with the short lifetime only: a flush epoch is read
//!   when a check starts and compared when its verdict is stored.
//! - A failsafe answer drops the valid verdicts too: the supervisor asks that nothing pass, and
//!   a long-lived verdict must not outvote that.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use moka::future::Cache;

use super::retry::worth_retest;
use super::{reusable, Backend, CheckRequest, DynBackend, Judged, Message, Verdict};
use crate::clock::unix_now;
use crate::interop::{ChainId, SafetyLevel};
use crate::metrics::metrics;
use moka::Expiry;

type Key = (Arc<[Message]>, SafetyLevel, Option<ChainId>);
/// A check in flight and the flush epoch it began in (followers share both).
type InFlight = (Shared<BoxFuture<'static, Verdict>>, u64);

fn key(req: &CheckRequest) -> Key {
    (req.messages.clone(), req.min_safety, req.descriptor.chain_id)
}

/// How long each kind of verdict is remembered.
#[derive(Debug, Clone, Copy)]
pub struct Ttls {
    /// Definitive invalid verdicts.
    pub invalid: Duration,
    /// Invalid verdicts worth a re-test (see the module doc).
    pub soft_invalid: Duration,
    /// Valid verdicts the reorg watch does not cover (see the module doc).
    pub valid: Duration,
    /// Valid verdicts whose every source chain the reorg watch covers.
    pub valid_watched: Duration,
}

/// Whether the reorg watch currently covers a source chain (asked when a verdict is stored).
pub type Watched = Arc<dyn Fn(&ChainId) -> bool + Send + Sync>;

/// A remembered valid verdict and the lifetime it was given when stored.
#[derive(Clone)]
struct ValidEntry {
    judged: Judged,
    ttl: Duration,
}

/// Each valid entry expires after its own lifetime (decided by [`Cached::valid_ttl`]).
struct ValidExpiry;

impl Expiry<Key, ValidEntry> for ValidExpiry {
    fn expire_after_create(&self, _: &Key, v: &ValidEntry, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }

    fn expire_after_update(
        &self,
        _: &Key,
        v: &ValidEntry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// The cache layer.
pub struct Cached {
    inner: DynBackend,
    invalid: Cache<Key, (Judged, Verdict)>,
    soft_invalid: Cache<Key, (Judged, Verdict)>,
    valid: Cache<Key, ValidEntry>,
    in_flight: Mutex<HashMap<CheckRequest, InFlight>>,
    expiry_window: u64,
    ttls: Ttls,
    watched: Option<Watched>,
    /// Bumped by every [`Cached::flush_valid`]: a verdict whose check began in an older epoch
    /// may rest on a block replaced meanwhile.
    epoch: AtomicU64,
}

fn cache<V: Clone + Send + Sync + 'static>(capacity: u64, ttl: Duration) -> Cache<Key, V> {
    Cache::builder().max_capacity(capacity).time_to_live(ttl.max(Duration::from_millis(1))).build()
}

impl Cached {
    /// Wraps `inner`.
    pub fn new(inner: DynBackend, capacity: u64, ttls: Ttls, expiry_window: u64) -> Self {
        Self {
            inner,
            invalid: cache(capacity, ttls.invalid),
            soft_invalid: cache(capacity, ttls.soft_invalid),
            valid: Cache::builder().max_capacity(capacity).expire_after(ValidExpiry).build(),
            in_flight: Mutex::new(HashMap::new()),
            expiry_window,
            ttls,
            watched: None,
            epoch: AtomicU64::new(0),
        }
    }

    /// Lets valid verdicts on chains the reorg watch covers live `ttls.valid_watched`.
    pub fn with_watched(mut self, watched: Watched) -> Self {
        self.watched = Some(watched);
        self
    }

    /// Forgets the valid verdicts (after a reorg: each is re-verified on its next check).
    pub fn flush_valid(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.valid.invalidate_all();
    }

    /// The lifetime of a valid verdict on `req` whose check began in `epoch` (module doc).
    fn valid_ttl(&self, req: &CheckRequest, epoch: u64) -> Duration {
        let watched =
            self.watched.as_ref().is_some_and(|w| req.messages.iter().all(|m| w(&m.chain_id)));
        let unchanged = self.epoch.load(Ordering::SeqCst) == epoch;
        let ttl = if watched && unchanged { self.ttls.valid_watched } else { self.ttls.valid };
        // Never past the oldest message's expiry: no window could reuse it after that.
        let oldest = req.messages.iter().map(|m| m.timestamp).min().unwrap_or(0);
        let left = oldest.saturating_add(self.expiry_window).saturating_sub(unix_now());
        ttl.min(Duration::from_secs(left)).max(Duration::from_millis(1))
    }

    /// Forgets every verdict.
    pub fn flush(&self) {
        self.invalid.invalidate_all();
        self.soft_invalid.invalidate_all();
        self.valid.invalidate_all();
    }

    /// A remembered verdict for `req` (counted as a hit), `None` without counting a miss: the
    /// check that follows counts it.
    pub async fn remembered(&self, req: &CheckRequest) -> Option<Verdict> {
        self.find(&key(req), req, false).await
    }

    async fn lookup(&self, k: &Key, req: &CheckRequest) -> Option<Verdict> {
        self.find(k, req, true).await
    }

    async fn find(&self, k: &Key, req: &CheckRequest, count_miss: bool) -> Option<Verdict> {
        let lookups = &metrics().cache;
        for (kind, c) in
            [("verdict_invalid", &self.invalid), ("verdict_soft_invalid", &self.soft_invalid)]
        {
            if let Some((judged, v)) = c.get(k).await {
                if reusable(&judged, req, self.expiry_window) {
                    lookups.with_label_values(&[kind, "hit"]).inc();
                    return Some(v);
                }
            }
        }
        if let Some(ValidEntry { judged, .. }) = self.valid.get(k).await {
            if reusable(&judged, req, self.expiry_window) {
                lookups.with_label_values(&["verdict_valid", "hit"]).inc();
                return Some(Verdict::Valid { until: req.window().to });
            }
        }
        if count_miss {
            lookups.with_label_values(&["verdict", "miss"]).inc();
        }
        None
    }

    /// Remembers `v`, the answer to `req` whose check began in flush epoch `epoch`.
    async fn store(&self, k: Key, req: &CheckRequest, v: &Verdict, epoch: u64) {
        if v.is_failsafe() {
            self.flush_valid();
        }
        let Some(judged) = Judged::of(req, v, self.expiry_window) else { return };
        if judged.valid {
            self.invalid.invalidate(&k).await;
            self.soft_invalid.invalidate(&k).await;
            let ttl = self.valid_ttl(req, epoch);
            self.valid.insert(k, ValidEntry { judged, ttl }).await;
        } else if worth_retest(v, req, unix_now()) {
            self.soft_invalid.insert(k, (judged, v.clone())).await;
        } else {
            self.invalid.insert(k, (judged, v.clone())).await;
        }
    }

    /// The verdict of one backend call shared by every identical concurrent check, and the
    /// flush epoch that call began in.
    async fn coalesced(&self, req: &CheckRequest) -> (Verdict, u64) {
        let ((fut, epoch), leader) = {
            let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(f) = map.get(req) {
                metrics().coalesced.with_label_values(&["verdict"]).inc();
                (f.clone(), false)
            } else {
                let (inner, r) = (self.inner.clone(), req.clone());
                let epoch = self.epoch.load(Ordering::SeqCst);
                let f = (async move { inner.check(&r).await }.boxed().shared(), epoch);
                map.insert(req.clone(), f.clone());
                (f, true)
            }
        };
        let v = fut.await;
        if leader {
            self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(req);
        }
        (v, epoch)
    }
}

impl Backend for Cached {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn check<'a>(&'a self, req: &'a CheckRequest) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let k = key(req);
            if let Some(v) = self.lookup(&k, req).await {
                return v;
            }
            let (v, epoch) = self.coalesced(req).await;
            self.store(k, req, &v, epoch).await;
            v
        })
    }

    /// The same rules as single checks: each request is looked up; the misses go to the inner
    /// backend as ONE batch (one wire request per endpoint), and their verdicts are remembered.
    fn check_batch<'a>(&'a self, reqs: &'a [CheckRequest]) -> BoxFuture<'a, Vec<Verdict>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(reqs.len());
            let mut misses = Vec::new();
            for (i, req) in reqs.iter().enumerate() {
                let v = self.lookup(&key(req), req).await;
                if v.is_none() {
                    misses.push(i);
                }
                out.push(v);
            }
            if !misses.is_empty() {
                let epoch = self.epoch.load(Ordering::SeqCst);
                let asked: Vec<CheckRequest> = misses.iter().map(|&i| reqs[i].clone()).collect();
                let verdicts = self.inner.check_batch(&asked).await;
                for (i, v) in misses.into_iter().zip(verdicts) {
                    self.store(key(&reqs[i]), &reqs[i], &v, epoch).await;
                    out[i] = Some(v);
                }
            }
            super::no_answer_where_empty(out)
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        self.inner.ready()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use alloy_primitives::{B256, U256};

    use super::*;
    use crate::interop::ExecutingDescriptor;
    use crate::rpc::codes;

    const WATCHED: u64 = 901;
    const WEEK: u64 = 604_800;

    /// Answers `answer` and counts the calls it gets; with `gate`, waits for it first.
    struct Counting {
        calls: AtomicUsize,
        answer: Mutex<Verdict>,
        gate: Option<Arc<tokio::sync::Notify>>,
    }

    impl Backend for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn check<'a>(&'a self, _: &'a CheckRequest) -> BoxFuture<'a, Verdict> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                if let Some(g) = &self.gate {
                    g.notified().await;
                }
                self.answer.lock().unwrap_or_else(|p| p.into_inner()).clone()
            })
        }
    }

    fn counting(gate: Option<Arc<tokio::sync::Notify>>) -> Arc<Counting> {
        Arc::new(Counting {
            calls: AtomicUsize::new(0),
            answer: Mutex::new(Verdict::Valid { until: u64::MAX }),
            gate,
        })
    }

    fn layer(inner: Arc<Counting>, watch: bool) -> Cached {
        let ttls = Ttls {
            invalid: Duration::from_secs(60),
            soft_invalid: Duration::from_millis(500),
            valid: Duration::from_millis(1),
            valid_watched: Duration::from_secs(3_600),
        };
        let watched: Watched = Arc::new(move |c: &ChainId| watch && *c == U256::from(WATCHED));
        Cached::new(inner, 1_000, ttls, WEEK).with_watched(watched)
    }

    fn req(chain: u64, initiated: u64) -> CheckRequest {
        CheckRequest {
            messages: vec![Message {
                chain_id: U256::from(chain),
                block_number: 7,
                timestamp: initiated,
                log_index: 0,
                checksum: B256::repeat_byte(9),
            }]
            .into(),
            min_safety: SafetyLevel::CrossUnsafe,
            descriptor: ExecutingDescriptor {
                timestamp: unix_now(),
                timeout: Some(0),
                chain_id: None,
            },
        }
    }

    async fn past_the_short_ttl() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn a_valid_verdict_on_a_watched_chain_outlives_the_short_ttl() {
        let inner = counting(None);
        let c = layer(inner.clone(), true);
        let r = req(WATCHED, unix_now() - 60);
        assert!(c.check(&r).await.is_valid());
        past_the_short_ttl().await;
        assert!(c.check(&r).await.is_valid());
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1, "the second check was a cache hit");
        // A reorg drops it: the next check asks again.
        c.flush_valid();
        assert!(c.check(&r).await.is_valid());
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2, "re-verified after the flush");
    }

    #[tokio::test]
    async fn without_the_watch_or_on_an_unwatched_chain_a_valid_verdict_keeps_the_short_ttl() {
        for (watch, chain) in [(false, WATCHED), (true, 902)] {
            let inner = counting(None);
            let c = layer(inner.clone(), watch);
            let r = req(chain, unix_now() - 60);
            assert!(c.check(&r).await.is_valid());
            past_the_short_ttl().await;
            assert!(c.check(&r).await.is_valid());
            assert_eq!(inner.calls.load(Ordering::SeqCst), 2, "watch {watch}, chain {chain}");
        }
    }

    #[tokio::test]
    async fn a_verdict_whose_check_began_before_a_reorg_is_kept_briefly_only() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let inner = counting(Some(gate.clone()));
        let c = Arc::new(layer(inner.clone(), true));
        let r = req(WATCHED, unix_now() - 60);
        let pending = {
            let (c, r) = (c.clone(), r.clone());
            tokio::spawn(async move { c.check(&r).await })
        };
        while inner.calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // The reorg is seen while the check is in flight; then the check completes.
        c.flush_valid();
        gate.notify_one();
        assert!(pending.await.unwrap().is_valid());
        past_the_short_ttl().await;
        let again = tokio::spawn({
            let (c, r) = (c.clone(), r.clone());
            async move { c.check(&r).await }
        });
        while inner.calls.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        assert!(again.await.unwrap().is_valid());
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2, "the verdict was not kept long");
    }

    #[tokio::test]
    async fn a_failsafe_answer_drops_the_valid_verdicts() {
        let inner = counting(None);
        let c = layer(inner.clone(), true);
        let r = req(WATCHED, unix_now() - 60);
        assert!(c.check(&r).await.is_valid());
        *inner.answer.lock().unwrap() =
            Verdict::Invalid(super::super::Rejection::new(codes::SUP_FAILSAFE, "failsafe"));
        let other = req(WATCHED, unix_now() - 61);
        assert!(c.check(&other).await.is_failsafe());
        assert!(c.check(&r).await.is_failsafe(), "the cached valid verdict is gone");
    }

    #[test]
    fn a_valid_verdict_never_outlives_its_oldest_message() {
        let c = layer(counting(None), true);
        // Initiated one week minus 30 s ago: 30 s left at most.
        let r = req(WATCHED, unix_now() - WEEK + 30);
        let ttl = c.valid_ttl(&r, 0);
        assert!(ttl <= Duration::from_secs(30) && ttl > Duration::ZERO, "{ttl:?}");
        let fresh = c.valid_ttl(&req(WATCHED, unix_now() - 60), 0);
        assert_eq!(fresh, Duration::from_secs(3_600));
    }
}
