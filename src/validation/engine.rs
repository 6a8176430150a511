//! The engine every role uses: cache → retry-after-delay → policy → the two backends.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::cache::Cached;
use super::indexed::IndexedBackend;
use super::light::LightBackend;
use super::policy::Policy;
use super::retry::Retry;
use super::{Backend, CheckRequest, DynBackend, Verdict};
use crate::config::Config;
use crate::metrics::metrics;

/// The composed engine.
pub struct Engine {
    cached: Arc<Cached>,
    mode: crate::config::PolicyMode,
    light: Option<Arc<LightBackend>>,
    indexed: Option<Arc<IndexedBackend>>,
}

impl Engine {
    /// Builds the engine from explicit backends (tests plug fakes in here).
    pub fn new(
        indexed: Option<DynBackend>,
        light: Option<DynBackend>,
        cfg: &crate::config::ValidationConfig,
    ) -> Result<Self, String> {
        let policy = Policy::new(cfg.policy, cfg.shadow_primary, indexed, light)
            .map_err(|e| e.to_string())?;
        let retry = Retry::new(
            Arc::new(policy),
            Duration::from_millis(cfg.retry_delay_ms),
            cfg.max_retries,
            cfg.max_waiting,
        );
        let cached = Cached::new(
            Arc::new(retry),
            cfg.cache_capacity,
            Duration::from_secs(cfg.invalid_cache_ttl_secs),
            Duration::from_secs(cfg.valid_cache_ttl_secs),
            cfg.expiry_window_secs,
        );
        Ok(Self { cached: Arc::new(cached), mode: cfg.policy, light: None, indexed: None })
    }

    /// Builds both backends from `[supervisor]` and `[light]`, then the layers.
    pub fn from_config(cfg: &Config) -> Result<Self, String> {
        let indexed = IndexedBackend::from_config(&cfg.supervisor)?.map(Arc::new);
        let light = LightBackend::from_config(&cfg.light, &cfg.validation)
            .map_err(|e| e.to_string())?
            .map(Arc::new);
        let mut engine = Self::new(
            indexed.clone().map(|b| b as DynBackend),
            light.clone().map(|b| b as DynBackend),
            &cfg.validation,
        )?;
        if let (Some(l), Ok(rt)) = (&light, tokio::runtime::Handle::try_current()) {
            // A reorg on a source chain: valid verdicts may rest on replaced blocks, so they are
            // dropped and re-verified on their next check (invalid ones keep their short TTL).
            let mut reorgs = l.subscribe_reorgs();
            let cached = Arc::downgrade(&engine.cached);
            rt.spawn(async move {
                loop {
                    match reorgs.recv().await {
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            let Some(c) = cached.upgrade() else { return };
                            c.flush_valid();
                        }
                        Err(_) => return,
                    }
                }
            });
        }
        engine.light = light;
        engine.indexed = indexed;
        Ok(engine)
    }

    /// The light backend, when configured (the light server serves it).
    pub fn light(&self) -> Option<&Arc<LightBackend>> {
        self.light.as_ref()
    }

    /// Empties the verdict caches (the light backend's block caches have their own flusher).
    pub fn flush_caches(&self) {
        self.cached.flush();
    }
}

impl Backend for Engine {
    fn name(&self) -> &'static str {
        "engine"
    }

    fn check<'a>(&'a self, req: &'a CheckRequest) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let v = self.cached.check(req).await;
            metrics().verdicts.with_label_values(&["engine", v.kind(), v.reason_label()]).inc();
            v
        })
    }

    /// The revalidator's batches: ONE wire batch to the indexed backend per call (one HTTP
    /// request per presumed block), the light backend beside it (its block-log cache makes it
    /// one `eth_getLogs` per block), combined by the same policy as single checks.
    fn check_batch<'a>(&'a self, reqs: &'a [CheckRequest]) -> BoxFuture<'a, Vec<Verdict>> {
        use crate::config::PolicyMode;
        use futures::future::join_all;
        Box::pin(async move {
            let light_all = |l: &'a Arc<LightBackend>| join_all(reqs.iter().map(|r| l.check(r)));
            match (self.mode, &self.indexed, &self.light) {
                (PolicyMode::Indexed, Some(i), _) => i.check_batch(reqs).await,
                (PolicyMode::Both, Some(i), Some(l)) => {
                    let (a, b) = tokio::join!(i.check_batch(reqs), light_all(l));
                    a.into_iter()
                        .zip(b)
                        .zip(reqs)
                        .map(|((a, b), r)| super::policy::combine_both(a, b, r))
                        .collect()
                }
                (PolicyMode::Either, Some(i), Some(l)) => {
                    let (a, b) = tokio::join!(i.check_batch(reqs), light_all(l));
                    a.into_iter().zip(b).map(|(a, b)| super::policy::combine_either(a, b)).collect()
                }
                _ => join_all(reqs.iter().map(|r| self.check(r))).await,
            }
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        self.cached.ready()
    }
}
