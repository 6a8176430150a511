//! The validation engine: a [`CheckRequest`] in, a [`Verdict`] out.
//!
//! Every role (ingress, revalidator, light server) talks to a `dyn Backend`. Backends compose:
//! the two real ones (the indexed supervisor client and the light `eth_getLogs` checker) are
//! wrapped by policy, retry-after-delay and cache layers that are backends themselves.

use std::sync::Arc;

use futures::future::BoxFuture;

pub mod activation;
pub mod batch;
pub mod cache;
pub mod codec;
pub mod engine;
pub mod indexed;
pub mod light;
pub mod policy;
pub mod receipts;
pub mod retry;
pub mod shared;

pub use engine::Engine;

use crate::interop::{ExecutingDescriptor, Message, SafetyLevel};
use crate::rpc::codes;

/// What to check: the distinct messages of one transaction, the minimum safety level, and when
/// (and for how long) they must be valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CheckRequest {
    /// De-duplicated messages, in first-occurrence order.
    pub messages: Arc<[Message]>,
    /// Minimum safety level each initiating message must have.
    pub min_safety: SafetyLevel,
    /// Executing timestamp, timeout and chain.
    pub descriptor: ExecutingDescriptor,
}

impl CheckRequest {
    /// The executing window `[timestamp, timestamp + timeout]` the verdict must cover
    /// (`u64::MAX` as the end on overflow, which no message survives).
    pub fn window(&self) -> Window {
        Window { from: self.descriptor.timestamp, to: self.descriptor.end().unwrap_or(u64::MAX) }
    }

    /// True when no time rule can fail anywhere in this request's window: every message was
    /// initiated strictly before the window starts (the same-timestamp setting cannot matter)
    /// and expires no earlier than the window ends. A verdict on such a request comes from the
    /// messages themselves (their logs, chains, activation), not from the clock.
    pub fn time_rules_hold(&self, expiry_window: u64) -> bool {
        let w = self.window();
        self.messages
            .iter()
            .all(|m| m.timestamp < w.from && m.timestamp.saturating_add(expiry_window) >= w.to)
    }
}

/// An executing window, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// First executing timestamp.
    pub from: u64,
    /// Last executing timestamp.
    pub to: u64,
}

impl Window {
    /// True when `self` lies inside `other`.
    pub fn within(&self, other: &Window) -> bool {
        self.from >= other.from && self.to <= other.to
    }
}

/// When a verdict judged for one window still answers a request for another, for the same
/// messages, safety and executing chain (and the same chain state: reorgs drop valid verdicts,
/// invalid ones live a bounded TTL). This is the one rule every store of verdicts follows (the
/// engine's cache, the revalidator's store, shared verdicts).
///
/// - Valid over `judged` means valid at every instant of it. Every rule that depends on time is
///   monotone: "initiated before execution" holds from some instant on, "not expired" up to some
///   instant. So a valid verdict also holds for any window that starts no earlier than `judged`
///   and ends no later than the oldest message's expiry (checked here, from the messages).
/// - Invalid over `judged` means invalid at some instant of it, so it holds for every window
///   that contains `judged`. When no time rule could fail in `judged`
///   ([`CheckRequest::time_rules_hold`]), the fault is in the messages themselves and holds for
///   any window.
pub fn reusable(judged: &Judged, asked: &CheckRequest, expiry_window: u64) -> bool {
    let w = asked.window();
    if judged.valid {
        let oldest = asked.messages.iter().map(|m| m.timestamp).min().unwrap_or(u64::MAX);
        w.from >= judged.window.from && w.to <= oldest.saturating_add(expiry_window)
    } else {
        judged.timeless || judged.window.within(&w)
    }
}

/// What a remembered verdict was judged for (see [`reusable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judged {
    /// The window of the request it answered.
    pub window: Window,
    /// Valid (true) or definitively invalid (false).
    pub valid: bool,
    /// For an invalid verdict: no time rule could have caused it.
    pub timeless: bool,
}

impl Judged {
    /// What `v` (the answer to `req`) was judged for; `None` for verdicts never reused
    /// (not yet known, no answer, failsafe).
    pub fn of(req: &CheckRequest, v: &Verdict, expiry_window: u64) -> Option<Self> {
        match v {
            Verdict::Valid { .. } => {
                Some(Self { window: req.window(), valid: true, timeless: false })
            }
            Verdict::Invalid(_) if !v.is_failsafe() => Some(Self {
                window: req.window(),
                valid: false,
                timeless: req.time_rules_hold(expiry_window),
            }),
            _ => None,
        }
    }
}

/// Why a check did not pass: the supervisor-style code, a sentence, and which message failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// A supervisor error code (`-3204xx..-3215xx`) or `-32602` for malformed input.
    pub code: i64,
    /// What failed, in words.
    pub reason: String,
    /// The message that failed, when one did.
    pub message: Option<Message>,
}

impl Rejection {
    /// A rejection with a code and a reason.
    pub fn new(code: i64, reason: impl Into<String>) -> Self {
        Self { code, reason: reason.into(), message: None }
    }

    /// Names the failing message.
    pub fn for_message(mut self, m: Message) -> Self {
        self.message = Some(m);
        self
    }

    /// Metrics label for the code.
    pub fn label(&self) -> &'static str {
        codes::label(self.code)
    }
}

/// The answer of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every message is valid for the whole descriptor window; `until` is the last covered
    /// timestamp (`descriptor.timestamp + timeout`).
    Valid {
        /// Last timestamp the verdict covers.
        until: u64,
    },
    /// Definitively invalid (including failsafe, code `-320602`): never forward, evict.
    Invalid(Rejection),
    /// Not known yet (future data, uninitialized): retry later, never evict on it.
    NotYetKnown(Rejection),
    /// No verdict could be obtained (timeouts, transport errors, `-32603`).
    Unavailable(String),
}

impl Verdict {
    /// True for [`Verdict::Valid`].
    pub fn is_valid(&self) -> bool {
        matches!(self, Self::Valid { .. })
    }

    /// True when a backend reported failsafe.
    pub fn is_failsafe(&self) -> bool {
        matches!(self, Self::Invalid(r) if r.code == codes::SUP_FAILSAFE)
    }

    /// Metrics label for the verdict kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Valid { .. } => "valid",
            Self::Invalid(_) => "invalid",
            Self::NotYetKnown(_) => "not_yet_known",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// Metrics label for the reason.
    pub fn reason_label(&self) -> &'static str {
        match self {
            Self::Valid { .. } => "ok",
            Self::Invalid(r) | Self::NotYetKnown(r) => r.label(),
            Self::Unavailable(_) => "unavailable",
        }
    }
}

/// A source of verdicts.
pub trait Backend: Send + Sync + 'static {
    /// A short name for metrics and logs (`indexed`, `light`, `policy`, ...).
    fn name(&self) -> &'static str;

    /// Checks one request.
    fn check<'a>(&'a self, req: &'a CheckRequest) -> BoxFuture<'a, Verdict>;

    /// Checks many requests that share an executing block. Backends that can batch on the wire
    /// (one HTTP request for all) override this; the default checks them concurrently.
    fn check_batch<'a>(&'a self, reqs: &'a [CheckRequest]) -> BoxFuture<'a, Vec<Verdict>> {
        Box::pin(futures::future::join_all(reqs.iter().map(|r| self.check(r))))
    }

    /// A verdict this layer (or one below it) already holds for `req`, without calling any
    /// backend; `None` when an answer would need a backend call. Lets the ingress put work that
    /// only protects the backends (sender recovery) after the cache.
    fn remembered<'a>(&'a self, _req: &'a CheckRequest) -> BoxFuture<'a, Option<Verdict>> {
        Box::pin(async { None })
    }

    /// Whether the backend can currently give verdicts (for `/readyz`).
    fn ready(&self) -> BoxFuture<'_, bool> {
        Box::pin(async { true })
    }
}

/// A shared backend.
pub type DynBackend = Arc<dyn Backend>;

/// A batch's verdicts from slots a layer filled (from its cache, or from the layer below): a
/// slot left empty, because the layer below answered fewer checks than asked, is no answer.
pub(crate) fn no_answer_where_empty(slots: Vec<Option<Verdict>>) -> Vec<Verdict> {
    slots
        .into_iter()
        .map(|v| {
            v.unwrap_or_else(|| {
                Verdict::Unavailable("the backend gave no verdict for this check".into())
            })
        })
        .collect()
}

/// The verdict of a batch of one (for backends whose single check is a batch of one): no answer
/// when the batch came back empty.
pub(crate) fn only_verdict(mut verdicts: Vec<Verdict>) -> Verdict {
    verdicts.pop().unwrap_or_else(|| Verdict::Unavailable("no verdict".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{B256, U256};

    const WEEK: u64 = 604_800;

    fn req(init: u64, ts: u64, timeout: u64) -> CheckRequest {
        CheckRequest {
            messages: vec![Message {
                chain_id: U256::from(901),
                block_number: 1,
                timestamp: init,
                log_index: 0,
                checksum: B256::repeat_byte(3),
            }]
            .into(),
            min_safety: SafetyLevel::CrossUnsafe,
            descriptor: ExecutingDescriptor {
                timestamp: ts,
                timeout: Some(timeout),
                chain_id: None,
            },
        }
    }

    fn invalid() -> Verdict {
        Verdict::Invalid(Rejection::new(codes::SUP_CONFLICTING_DATA, "x"))
    }

    #[test]
    fn a_valid_verdict_holds_later_until_the_oldest_message_expires() {
        let judged = Judged::of(&req(100, 200, 10), &Verdict::Valid { until: 210 }, WEEK).unwrap();
        assert!(reusable(&judged, &req(100, 200, 0), WEEK), "narrower");
        assert!(reusable(&judged, &req(100, 500, 86_400), WEEK), "later, far from expiry");
        assert!(reusable(&judged, &req(100, 100 + WEEK, 0), WEEK), "ends at the expiry instant");
        assert!(!reusable(&judged, &req(100, 100 + WEEK, 1), WEEK), "ends after expiry");
        assert!(!reusable(&judged, &req(100, 199, 0), WEEK), "starts earlier");
    }

    #[test]
    fn an_invalid_verdict_holds_for_containing_windows_or_everywhere_when_timeless() {
        // Judged where the message expires inside the window: a time rule may be the cause.
        let timed = Judged::of(&req(100, 100 + WEEK - 5, 10), &invalid(), WEEK).unwrap();
        assert!(!timed.timeless);
        assert!(reusable(&timed, &req(100, 100 + WEEK - 6, 20), WEEK), "contains it");
        assert!(!reusable(&timed, &req(100, 100 + WEEK - 5, 0), WEEK), "timeout 0 is not covered");
        assert!(!reusable(&timed, &req(100, 100 + WEEK - 4, 10), WEEK), "shifted");
        // Judged with every time rule satisfied: the fault is in the message itself.
        let timeless = Judged::of(&req(100, 200, 10), &invalid(), WEEK).unwrap();
        assert!(timeless.timeless);
        assert!(reusable(&timeless, &req(100, 150, 0), WEEK));
        assert!(reusable(&timeless, &req(100, 100 + WEEK, 5), WEEK));
        // Same timestamp: the same-timestamp setting could be the cause, so not timeless.
        assert!(!Judged::of(&req(200, 200, 0), &invalid(), WEEK).unwrap().timeless);
        // Failsafe, not yet known and no answer are never remembered.
        let fs = Verdict::Invalid(Rejection::new(codes::SUP_FAILSAFE, "fs"));
        assert!(Judged::of(&req(100, 200, 0), &fs, WEEK).is_none());
        assert!(Judged::of(&req(100, 200, 0), &Verdict::Unavailable("x".into()), WEEK).is_none());
    }
}
