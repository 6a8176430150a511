//! Shared invalid verdicts: a layer (a [`Backend`] around an inner one) that lets replicas reuse
//! each other's definitive invalid verdicts through Redis, so one invalid tx sprayed over every
//! replica costs one backend call per TTL cluster-wide.
//!
//! On check: `GET` the request's key; a stored verdict that still holds for the asked
//! descriptor ([`reusable`]) is the answer. A miss, a verdict that does not hold, or any Redis
//! error calls the inner backend (Redis can make us skip work, never change a verdict's
//! direction). After the inner backend answers a definitive invalid verdict (not failsafe, which
//! is a state of the backend, not of the transaction), it is `SET` with the invalid-verdict TTL
//! together with the window it was judged for. Valid verdicts stay local: they are short-lived
//! and reorg-sensitive.

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{keccak256, B256, U256};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{Backend, CheckRequest, DynBackend, Rejection, Verdict};
use crate::interop::{ExecutingDescriptor, Message};
use crate::metrics::metrics;
use crate::shared_state::SharedState;

/// The window an invalid verdict was judged for, and whether every time rule held then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judged {
    /// Descriptor timestamp of the judged request.
    pub from: u64,
    /// Descriptor end (`timestamp + timeout`) of the judged request.
    pub to: u64,
    /// Every message was initiated strictly before `from` and does not expire before `to`:
    /// the verdict cannot come from a time rule, so it holds for any window.
    pub time_rules_held: bool,
}

impl Judged {
    /// What is recorded about `descriptor` for `messages`, given the message expiry window.
    pub fn of(messages: &[Message], descriptor: &ExecutingDescriptor, expiry_window: u64) -> Self {
        let from = descriptor.timestamp;
        let to = descriptor.end().unwrap_or(u64::MAX);
        let time_rules_held = messages
            .iter()
            .all(|m| m.timestamp < from && m.timestamp.saturating_add(expiry_window) >= to);
        Self { from, to, time_rules_held }
    }
}

/// Whether an invalid verdict judged as `judged` holds for a request asking `asked`: when no time
/// rule could have caused it, or when the asked window contains the judged one (invalid at some
/// instant of W means invalid somewhere in any superset of W).
pub fn reusable(judged: &Judged, asked: &ExecutingDescriptor) -> bool {
    let asked_to = asked.end().unwrap_or(u64::MAX);
    judged.time_rules_held || (asked.timestamp <= judged.from && asked_to >= judged.to)
}

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
            f: j.from,
            t: j.to,
            h: j.time_rules_held,
        }
    }

    fn judged(&self) -> Judged {
        Judged { from: self.f, to: self.t, time_rules_held: self.h }
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

    async fn lookup(&self, key: &str, req: &CheckRequest) -> Option<Verdict> {
        let cache =
            |result: &str| metrics().cache.with_label_values(&["shared_verdicts", result]).inc();
        match self.store.get("verdict_get", key).await {
            Ok(Some(bytes)) => match serde_json::from_slice::<Stored>(&bytes) {
                Ok(s) if reusable(&s.judged(), &req.descriptor) => {
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
            },
            Ok(None) => {
                cache("miss");
                None
            }
            Err(_) => {
                metrics().redis_fallbacks.with_label_values(&["verdicts", "backend"]).inc();
                None
            }
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
            if let Some(v) = self.lookup(&key, req).await {
                return v;
            }
            let v = self.inner.check(req).await;
            if let Verdict::Invalid(r) = &v {
                if !v.is_failsafe() && !self.ttl.is_zero() {
                    let judged = Judged::of(&req.messages, &req.descriptor, self.expiry_window);
                    if let Ok(bytes) = serde_json::to_vec(&Stored::new(r, &judged)) {
                        // Awaited (bounded by redis.timeout_ms) so the next replica sees it; a
                        // failure only costs that replica a backend call.
                        let _ = self.store.set_px("verdict_set", &key, &bytes, self.ttl).await;
                    }
                }
            }
            v
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        self.inner.ready()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ts: u64) -> Message {
        Message {
            chain_id: U256::from(901),
            block_number: 5,
            timestamp: ts,
            log_index: 0,
            checksum: B256::repeat_byte(3),
        }
    }

    fn desc(ts: u64, timeout: u64) -> ExecutingDescriptor {
        ExecutingDescriptor { timestamp: ts, timeout: Some(timeout), chain_id: None }
    }

    const WEEK: u64 = 604_800;

    #[test]
    fn a_verdict_free_of_time_rules_holds_for_any_window() {
        let j = Judged::of(&[msg(1_000)], &desc(2_000, 100), WEEK);
        assert!(j.time_rules_held);
        assert!(reusable(&j, &desc(2_050, 10)), "narrower window");
        assert!(reusable(&j, &desc(9_000, 86_400)), "disjoint later window");
    }

    #[test]
    fn a_time_dependent_verdict_holds_only_for_windows_containing_the_judged_one() {
        // Initiated at the executing timestamp: the same-timestamp rule may be why it failed.
        let j = Judged::of(&[msg(2_000)], &desc(2_000, 100), WEEK);
        assert!(!j.time_rules_held);
        assert!(reusable(&j, &desc(2_000, 100)), "same window");
        assert!(reusable(&j, &desc(1_990, 200)), "superset");
        assert!(!reusable(&j, &desc(2_001, 100)), "starts later");
        assert!(!reusable(&j, &desc(2_000, 99)), "ends earlier");
        // Expiring inside the window: a later window is not covered either.
        let j = Judged::of(&[msg(1_000)], &desc(2_000, WEEK), WEEK);
        assert!(!j.time_rules_held);
        assert!(!reusable(&j, &desc(2_000, 10)), "narrower window might be valid");
        assert!(reusable(&j, &desc(2_000, WEEK + 5)));
    }

    #[test]
    fn every_message_must_satisfy_the_time_rules() {
        let j = Judged::of(&[msg(1_000), msg(2_000)], &desc(2_000, 0), WEEK);
        assert!(!j.time_rules_held);
        let j = Judged::of(&[msg(1_000), msg(1_999)], &desc(2_000, 0), WEEK);
        assert!(j.time_rules_held);
    }

    #[test]
    fn stored_form_round_trips_the_rejection() {
        let r = Rejection::new(-320600, "no such log").for_message(msg(7));
        let j = Judged { from: 1, to: 2, time_rules_held: false };
        let bytes = serde_json::to_vec(&Stored::new(&r, &j)).unwrap();
        let s: Stored = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(s.rejection(), r);
        assert_eq!(s.judged(), j);
        assert!(bytes.len() < 200, "{}", String::from_utf8_lossy(&bytes));
    }
}
