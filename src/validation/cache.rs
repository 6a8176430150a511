//! Verdict cache and coalescing.
//!
//! - Identical concurrent checks share one backend call (the second waits for the first).
//! - Definitive invalid verdicts are remembered for `invalid_cache_ttl_secs`, keyed by the
//!   messages, the safety level and the executing chain, so spam of one bad tx costs nothing.
//!   Failsafe is not remembered: it is the supervisor's state, not the message's.
//! - Valid verdicts are remembered for `valid_cache_ttl_secs` and reused only for a request whose
//!   executing timestamp is not earlier than the one judged and whose whole window ends before the
//!   oldest message expires: what made it valid (the logs, the safety) holds, the time rules are
//!   re-applied here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use moka::future::Cache;

use super::{Backend, CheckRequest, DynBackend, Message, Verdict};
use crate::interop::{ChainId, SafetyLevel};
use crate::metrics::metrics;

type Key = (Arc<[Message]>, SafetyLevel, Option<ChainId>);
type InFlight = Shared<BoxFuture<'static, Verdict>>;

fn key(req: &CheckRequest) -> Key {
    (req.messages.clone(), req.min_safety, req.descriptor.chain_id)
}

/// The cache layer.
pub struct Cached {
    inner: DynBackend,
    invalid: Cache<Key, Verdict>,
    /// Valid verdicts with the executing timestamp they were judged at.
    valid: Cache<Key, u64>,
    in_flight: Mutex<HashMap<CheckRequest, InFlight>>,
    window: u64,
}

impl Cached {
    /// Wraps `inner`.
    pub fn new(
        inner: DynBackend,
        capacity: u64,
        invalid_ttl: Duration,
        valid_ttl: Duration,
        window: u64,
    ) -> Self {
        let min = Duration::from_millis(1);
        Self {
            inner,
            invalid: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(invalid_ttl.max(min))
                .build(),
            valid: Cache::builder().max_capacity(capacity).time_to_live(valid_ttl.max(min)).build(),
            in_flight: Mutex::new(HashMap::new()),
            window,
        }
    }

    /// Forgets the valid verdicts (after a reorg: each is re-verified on its next check).
    pub fn flush_valid(&self) {
        self.valid.invalidate_all();
    }

    /// Forgets every verdict.
    pub fn flush(&self) {
        self.invalid.invalidate_all();
        self.valid.invalidate_all();
    }

    async fn lookup(&self, k: &Key, req: &CheckRequest) -> Option<Verdict> {
        if let Some(v) = self.invalid.get(k).await {
            metrics().cache.with_label_values(&["verdict_invalid", "hit"]).inc();
            return Some(v);
        }
        if let Some(judged_at) = self.valid.get(k).await {
            let oldest = req.messages.iter().map(|m| m.timestamp).min().unwrap_or(u64::MAX);
            let end = req.descriptor.end().unwrap_or(u64::MAX);
            if req.descriptor.timestamp >= judged_at && end <= oldest.saturating_add(self.window) {
                metrics().cache.with_label_values(&["verdict_valid", "hit"]).inc();
                return Some(Verdict::Valid { until: end });
            }
        }
        metrics().cache.with_label_values(&["verdict", "miss"]).inc();
        None
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
            match &v {
                Verdict::Invalid(_) if !v.is_failsafe() => self.invalid.insert(k, v.clone()).await,
                Verdict::Valid { .. } => self.valid.insert(k, req.descriptor.timestamp).await,
                _ => {}
            }
            v
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        self.inner.ready()
    }
}
