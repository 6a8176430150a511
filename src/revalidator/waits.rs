//! Tells the light backend which source-chain blocks the revalidator's "not yet known" txs wait
//! on, so its watch can announce when a head reaches them (and [`super::recheck`] re-checks those
//! txs at once).
//!
//! It is a layer over the revalidator's backend: every verdict the revalidator receives (passes,
//! event re-checks, drop-in checks) passes through it, and each "not yet known" one registers the
//! block of the message it names (or of every message, when it names none) on the head the
//! request's `min_safety` is judged by. A message not initiated before the executing timestamp
//! is not registered: a time rule, not a head, holds it back. Only the revalidator's checks
//! register, so the watch reads `safe` / `finalized` only while a pooled tx waits on them.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::interop::Message;
use crate::validation::light::{HeadTag, LightBackend};
use crate::validation::{Backend, CheckRequest, DynBackend, Verdict};

/// The layer.
pub struct NoteWaits {
    inner: DynBackend,
    light: Arc<LightBackend>,
}

impl NoteWaits {
    /// Wraps the revalidator's backend; waits are registered with `light`.
    pub fn wrap(inner: DynBackend, light: Arc<LightBackend>) -> DynBackend {
        Arc::new(Self { inner, light })
    }

    fn note(&self, req: &CheckRequest, v: &Verdict) {
        let Verdict::NotYetKnown(r) = v else { return };
        let tag = HeadTag::for_safety(req.min_safety);
        let exec = req.descriptor.timestamp;
        let register = |m: &Message| {
            if m.timestamp < exec {
                let block = m.block_number;
                self.light.wait_for_head(&m.chain_id, tag, block);
            }
        };
        match &r.message {
            Some(m) => register(m),
            None => req.messages.iter().for_each(&register),
        }
    }
}

impl Backend for NoteWaits {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn check<'a>(&'a self, req: &'a CheckRequest) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let v = self.inner.check(req).await;
            self.note(req, &v);
            v
        })
    }

    fn check_batch<'a>(&'a self, reqs: &'a [CheckRequest]) -> BoxFuture<'a, Vec<Verdict>> {
        Box::pin(async move {
            let verdicts = self.inner.check_batch(reqs).await;
            for (req, v) in reqs.iter().zip(&verdicts) {
                self.note(req, v);
            }
            verdicts
        })
    }

    fn remembered<'a>(&'a self, req: &'a CheckRequest) -> BoxFuture<'a, Option<Verdict>> {
        self.inner.remembered(req)
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        self.inner.ready()
    }
}
