//! Shared invalid verdicts: the engine's layer between its local cache and its policy (a
//! [`Backend`] around the policy) that lets replicas reuse each other's definitive invalid
//! verdicts through Redis, so one invalid tx sprayed over every replica costs one backend call per
//! TTL cluster-wide. It sits below the local cache, so a local hit costs no Redis command, and
//! below the cache's coalescing, so identical concurrent checks share one `GET`.
//!
//! On check: `GET` the request's key; a stored verdict that still holds for the asked
//! descriptor (by [`super::reusable`], the one rule every verdict store follows) is the answer
//! (and the local cache above remembers it). A miss, a verdict that does not hold, or any Redis
//! error calls the inner backend (Redis can make us skip work, never change a verdict's
//! direction). After the inner backend answers a definitive invalid verdict (not failsafe, which
//! is a state of the backend, not of the transaction; not one worth a re-test, which may change
//! within a second and stays in the local cache only), it is `SET` with the invalid-verdict TTL
//! together with the window it was judged for. Valid verdicts stay local: they are short-lived
//! and reorg-sensitive. Batches do the same with one `MGET` and one pipelined `SET` round trip.
//!
//! A verdict read from Redis is then kept by the reader's local cache for its own
//! `invalid_cache_ttl_secs`, so one verdict lives at most twice that TTL cluster-wide.

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{keccak256, B256, U256};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::retry::worth_retest;
use super::{reusable, Backend, CheckRequest, DynBackend, Judged, Rejection, Verdict, Window};
use crate::clock::unix_now;
use crate::interop::Message;
use crate::metrics::metrics;
use crate::shared_state::SharedState;

/// The stored form: short field names, the failing message in full.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    c: i64,
    r: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<(U256, u64, u64, u32, B256)>,
    f: u64,
    t: u64,
    h: bool,
}

impl Stored {
    fn new(r: &Rejection, j: &Judged) -> Self {
        Self {
            c: r.code,
            r: r.reason.clone(),
            m: r.message
                .map(|m| (m.chain_id, m.block_number, m.timestamp, m.log_index, m.checksum)),
            f: j.window.from,
            t: j.window.to,
            h: j.timeless,
        }
    }

    fn judged(&self) -> Judged {
        Judged { window: Window { from: self.f, to: self.t }, valid: false, timeless: self.h }
    }

    fn rejection(&self) -> Rejection {
        let mut r = Rejection::new(self.c, self.r.clone());
        r.message = self.m.map(|(chain_id, block_number, timestamp, log_index, checksum)| {
            Message { chain_id, block_number, timestamp, log_index, checksum }
        });
        r
    }
}

/// The layer.
pub struct SharedVerdicts {
    inner: DynBackend,
    store: Arc<SharedState>,
    ttl: Duration,
    expiry_window: u64,
}

impl SharedVerdicts {
    /// Wraps `inner`; verdicts are kept `ttl` in Redis; `expiry_window` is the message expiry
    /// (s) used to tell whether a verdict could come from a time rule.
    pub fn new(
        inner: DynBackend,
        store: Arc<SharedState>,
        ttl: Duration,
        expiry_window: u64,
    ) -> Self {
        Self { inner, store, ttl, expiry_window }
    }

    /// `prefix ++ "v:" ++ keccak(messages, min_safety, executing chain)`: everything a verdict
    /// depends on except the window, which is stored in the value.
    pub fn key(&self, req: &CheckRequest) -> String {
        let mut buf = Vec::with_capacity(req.messages.len() * 84 + 48);
        for m in req.messages.iter() {
            buf.extend_from_slice(&m.chain_id.to_be_bytes::<32>());
            buf.extend_from_slice(&m.block_number.to_be_bytes());
            buf.extend_from_slice(&m.timestamp.to_be_bytes());
            buf.extend_from_slice(&m.log_index.to_be_bytes());
            buf.extend_from_slice(m.checksum.as_slice());
        }
        buf.extend_from_slice(req.min_safety.as_str().as_bytes());
        match req.descriptor.chain_id {
            Some(c) => {
                buf.push(1);
                buf.extend_from_slice(&c.to_be_bytes::<32>());
            }
            None => buf.push(0),
        }
        self.store.key(&format!("v:{:x}", keccak256(&buf)))
    }

    /// What a stored value says about `req`, counted in `cache_lookups_total{cache="shared_verdicts"}`.
    fn decode(&self, value: Option<&[u8]>, req: &CheckRequest) -> Option<Verdict> {
        let cache =
            |result: &str| metrics().cache.with_label_values(&["shared_verdicts", result]).inc();
        let Some(bytes) = value else {
            cache("miss");
            return None;
        };
        match serde_json::from_slice::<Stored>(bytes) {
            Ok(s) if reusable(&s.judged(), req, self.expiry_window) => {
                cache("hit");
                Some(Verdict::Invalid(s.rejection()))
            }
            Ok(_) => {
                cache("window_miss");
                None
            }
            Err(_) => {
                cache("undecodable");
                None
            }
        }
    }

    fn fallback() {
        metrics().redis_fallbacks.with_label_values(&["verdicts", "backend"]).inc();
    }

    /// The value to store for `v`, the answer to `req`: only definitive invalid verdicts that
    /// are not worth a re-test.
    fn storable(&self, req: &CheckRequest, v: &Verdict) -> Option<Vec<u8>> {
        if self.ttl.is_zero() || worth_retest(v, req, unix_now()) {
            return None;
        }
        match (v, Judged::of(req, v, self.expiry_window)) {
            (Verdict::Invalid(r), Some(judged)) => {
                serde_json::to_vec(&Stored::new(r, &judged)).ok()
            }
            _ => None,
        }
    }
}

impl Backend for SharedVerdicts {
    fn name(&self) -> &'static str {
        "shared"
    }

    fn check<'a>(&'a self, req: &'a CheckRequest) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let key = self.key(req);
            match self.store.get("verdict_get", &key).await {
                Ok(value) => {
                    if let Some(v) = self.decode(value.as_deref(), req) {
                        return v;
                    }
                }
                Err(_) => Self::fallback(),
            }
            let v = self.inner.check(req).await;
            if let Some(bytes) = self.storable(req, &v) {
                // Awaited (bounded by redis.timeout_ms) so the next replica sees it; a failure
                // only costs that replica a backend call.
                let _ = self.store.set_px("verdict_set", &key, &bytes, self.ttl).await;
            }
            v
        })
    }

    /// One `MGET` for every request of the batch; the misses go to the inner backend as one
    /// batch; the new definitive invalid verdicts are written in one pipelined round trip.
    fn check_batch<'a>(&'a self, reqs: &'a [CheckRequest]) -> BoxFuture<'a, Vec<Verdict>> {
        Box::pin(async move {
            let keys: Vec<String> = reqs.iter().map(|r| self.key(r)).collect();
            let mut out: Vec<Option<Verdict>> = match self.store.mget("verdict_get", &keys).await {
                Ok(values) => values
                    .iter()
                    .zip(reqs)
                    .map(|(value, req)| self.decode(value.as_deref(), req))
                    .collect(),
                Err(_) => {
                    Self::fallback();
                    vec![None; reqs.len()]
                }
            };
            let misses: Vec<usize> = (0..reqs.len()).filter(|&i| out[i].is_none()).collect();
            if !misses.is_empty() {
                let asked: Vec<CheckRequest> = misses.iter().map(|&i| reqs[i].clone()).collect();
                let verdicts = self.inner.check_batch(&asked).await;
                let mut writes = Vec::new();
                for (i, v) in misses.into_iter().zip(verdicts) {
                    if let Some(bytes) = self.storable(&reqs[i], &v) {
                        writes.push((keys[i].clone(), bytes));
                    }
                    out[i] = Some(v);
                }
                let _ = self.store.set_many_px("verdict_set", &writes, self.ttl).await;
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
    use super::*;
    use crate::interop::{ExecutingDescriptor, SafetyLevel};

    fn msg(ts: u64) -> Message {
        Message {
            chain_id: U256::from(901),
            block_number: 5,
            timestamp: ts,
            log_index: 0,
            checksum: B256::repeat_byte(3),
        }
    }

    fn req(msgs: &[Message], ts: u64, timeout: u64) -> CheckRequest {
        CheckRequest {
            messages: msgs.into(),
            min_safety: SafetyLevel::CrossUnsafe,
            descriptor: ExecutingDescriptor {
                timestamp: ts,
                timeout: Some(timeout),
                chain_id: None,
            },
        }
    }

    const WEEK: u64 = 604_800;

    /// What is stored and read back obeys the shared reuse rule: the judged window and whether a
    /// time rule could have caused the verdict survive the round trip.
    #[test]
    fn stored_form_keeps_the_rejection_and_the_judged_window() {
        let r = Rejection::new(-320600, "no such log").for_message(msg(7));
        let asked = req(&[msg(2_000)], 2_000, 100); // same-timestamp: time-dependent
        let v = Verdict::Invalid(r.clone());
        let judged = Judged::of(&asked, &v, WEEK).unwrap();
        assert!(!judged.timeless);
        let bytes = serde_json::to_vec(&Stored::new(&r, &judged)).unwrap();
        assert!(bytes.len() < 200, "{}", String::from_utf8_lossy(&bytes));
        let s: Stored = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(s.rejection(), r);
        assert_eq!(s.judged(), judged);
        assert!(reusable(&s.judged(), &req(&[msg(2_000)], 1_990, 200), WEEK), "superset");
        assert!(!reusable(&s.judged(), &req(&[msg(2_000)], 2_001, 100), WEEK), "starts later");

        let timeless = Judged::of(&req(&[msg(1_000)], 2_000, 100), &v, WEEK).unwrap();
        let s: Stored =
            serde_json::from_slice(&serde_json::to_vec(&Stored::new(&r, &timeless)).unwrap())
                .unwrap();
        assert!(reusable(&s.judged(), &req(&[msg(1_000)], 9_000, 10), WEEK), "any window");
    }
}
