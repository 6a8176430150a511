//! Retry-after-delay: a message at the bleeding edge (not indexed yet, or seconds old) gets one
//! more look after ~1 s before the client hears "not yet known". The number of checks waiting
//! is bounded, so a flood of unknown messages cannot pile up sleeping tasks.
//!
//! Only the ingress uses this layer: it re-stamps the executing timestamp with the current time,
//! which is right for a descriptor the ingress made itself ("now") and wrong for anyone else's
//! (a block builder asking about its block's timestamp must get the answer for that timestamp).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Semaphore;

use super::{Backend, CheckRequest, DynBackend, Verdict};
use crate::clock::unix_now;
use crate::metrics::metrics;
use crate::rpc::codes;

/// Messages younger than this may be "not indexed yet" even when a server calls them
/// conflicting (op-supervisor answers -320600 for those): worth one re-test.
const FRESH_SECS: u64 = 10;

/// The retry layer.
pub struct Retry {
    inner: DynBackend,
    delay: Duration,
    max_retries: u32,
    waiting: Arc<Semaphore>,
}

impl Retry {
    /// Wraps `inner` with the `[validation]` retry settings.
    pub fn from_config(inner: DynBackend, cfg: &crate::config::ValidationConfig) -> Self {
        Self::new(inner, cfg.retry_delay_ms, cfg.max_retries, cfg.max_waiting)
    }

    /// Wraps `inner`.
    pub fn new(inner: DynBackend, delay: Duration, max_retries: u32, max_waiting: usize) -> Self {
        Self { inner, delay, max_retries, waiting: Arc::new(Semaphore::new(max_waiting)) }
    }
}

/// Whether a verdict may change within a second: not-yet-known, and the answers servers give
/// for "not indexed yet" (out of scope; conflicting data about a message seconds old).
pub fn worth_retest(v: &Verdict, req: &CheckRequest, now: u64) -> bool {
    match v {
        Verdict::NotYetKnown(_) => true,
        Verdict::Invalid(r) if r.code == codes::SUP_OUT_OF_SCOPE => true,
        Verdict::Invalid(r) if r.code == codes::SUP_CONFLICTING_DATA => {
            req.messages.iter().any(|m| m.timestamp.saturating_add(FRESH_SECS) >= now)
        }
        _ => false,
    }
}

impl Backend for Retry {
    fn name(&self) -> &'static str {
        "retry"
    }

    fn check<'a>(&'a self, req: &'a CheckRequest) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let mut verdict = self.inner.check(req).await;
            let mut tries = 0;
            while tries < self.max_retries && worth_retest(&verdict, req, unix_now()) {
                let Ok(_permit) = self.waiting.clone().try_acquire_owned() else {
                    metrics().retries.with_label_values(&["queue_full"]).inc();
                    return verdict;
                };
                tries += 1;
                tokio::time::sleep(self.delay).await;
                // Time moved on: re-stamp the executing timestamp (never backwards).
                let mut again = req.clone();
                again.descriptor.timestamp = again.descriptor.timestamp.max(unix_now());
                verdict = self.inner.check(&again).await;
                let outcome = match &verdict {
                    Verdict::Valid { .. } => "accepted",
                    Verdict::Invalid(_) => "invalid",
                    Verdict::NotYetKnown(_) => "still_unknown",
                    Verdict::Unavailable(_) => "unavailable",
                };
                metrics().retries.with_label_values(&[outcome]).inc();
            }
            verdict
        })
    }

    /// A remembered verdict that would be re-tested is not final: `None`, so the caller checks.
    fn remembered<'a>(&'a self, req: &'a CheckRequest) -> BoxFuture<'a, Option<Verdict>> {
        Box::pin(async move {
            self.inner.remembered(req).await.filter(|v| !worth_retest(v, req, unix_now()))
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        self.inner.ready()
    }
}
