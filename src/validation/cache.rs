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
//! - Valid verdicts live `valid_cache_ttl_secs`; a reorg on a source chain drops them all
//!   (see the engine), so a valid verdict is reused only while the blocks it rests on stand.
//! - A valid verdict replaces any invalid one for the same key (the message became valid).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use moka::future::Cache;

use super::retry::worth_retest;
use super::{reusable, Backend, CheckRequest, DynBackend, Judged, Message, Verdict};
use crate::clock::unix_now;
use crate::interop::{ChainId, SafetyLevel};
use crate::metrics::metrics;

type Key = (Arc<[Message]>, SafetyLevel, Option<ChainId>);
type InFlight = Shared<BoxFuture<'static, Verdict>>;

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
    /// Valid verdicts.
    pub valid: Duration,
}

/// The cache layer.
pub struct Cached {
    inner: DynBackend,
    invalid: Cache<Key, (Judged, Verdict)>,
    soft_invalid: Cache<Key, (Judged, Verdict)>,
    valid: Cache<Key, Judged>,
    in_flight: Mutex<HashMap<CheckRequest, InFlight>>,
    expiry_window: u64,
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
            valid: cache(capacity, ttls.valid),
            in_flight: Mutex::new(HashMap::new()),
            expiry_window,
        }
    }

    /// Forgets the valid verdicts (after a reorg: each is re-verified on its next check).
    pub fn flush_valid(&self) {
        self.valid.invalidate_all();
    }

    /// Forgets every verdict.
    pub fn flush(&self) {
        self.invalid.invalidate_all();
        self.soft_invalid.invalidate_all();
        self.valid.invalidate_all();
    }

    async fn lookup(&self, k: &Key, req: &CheckRequest) -> Option<Verdict> {
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
        if let Some(judged) = self.valid.get(k).await {
            if reusable(&judged, req, self.expiry_window) {
                lookups.with_label_values(&["verdict_valid", "hit"]).inc();
                return Some(Verdict::Valid { until: req.window().to });
            }
        }
        lookups.with_label_values(&["verdict", "miss"]).inc();
        None
    }

    async fn store(&self, k: Key, req: &CheckRequest, v: &Verdict) {
        let Some(judged) = Judged::of(req, v, self.expiry_window) else { return };
        if judged.valid {
            self.invalid.invalidate(&k).await;
            self.soft_invalid.invalidate(&k).await;
            self.valid.insert(k, judged).await;
        } else if worth_retest(v, req, unix_now()) {
            self.soft_invalid.insert(k, (judged, v.clone())).await;
        } else {
            self.invalid.insert(k, (judged, v.clone())).await;
        }
    }

    async fn coalesced(&self, req: &CheckRequest) -> Verdict {
        let (fut, leader) = {
            let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(f) = map.get(req) {
                metrics().coalesced.with_label_values(&["verdict"]).inc();
                (f.clone(), false)
            } else {
                let (inner, r) = (self.inner.clone(), req.clone());
                let f = async move { inner.check(&r).await }.boxed().shared();
                map.insert(req.clone(), f.clone());
                (f, true)
            }
        };
        let v = fut.await;
        if leader {
            self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(req);
        }
        v
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
            let v = self.coalesced(req).await;
            self.store(k, req, &v).await;
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
                let asked: Vec<CheckRequest> = misses.iter().map(|&i| reqs[i].clone()).collect();
                let verdicts = self.inner.check_batch(&asked).await;
                for (i, v) in misses.into_iter().zip(verdicts) {
                    self.store(key(&reqs[i]), &reqs[i], &v).await;
                    out[i] = Some(v);
                }
            }
            out.into_iter()
                .map(|v| {
                    v.unwrap_or_else(|| {
                        Verdict::Unavailable("the backend gave no verdict for this check".into())
                    })
                })
                .collect()
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        self.inner.ready()
    }
}
