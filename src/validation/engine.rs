//! The engine every role uses: cache → shared verdicts (with `[redis]`) → policy → the two
//! backends. A local cache hit costs nothing else; a local miss asks Redis for another replica's
//! invalid verdict before any backend (see [`super::shared`]). It answers for exactly the
//! descriptor it is given (the light endpoint and the revalidator's drop-in serve other
//! callers' descriptors). Retry-after-delay is not part of it: only the ingress owns its
//! descriptor ("now"), so only the ingress wraps the engine in [`super::retry::Retry`].
//!
//! Single checks and batches go through the same layers, cache, policy and metrics included.
//! Built from the config, the indexed backend is wrapped in [`super::batch::Batcher`]: the
//! single checks that reach it at the same time (the ingress's cold path) share one JSON-RPC
//! batch request.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::batch::{BatchLimits, Batcher};
use super::cache::{Cached, Ttls, Watched};
use super::indexed::IndexedBackend;
use super::light::LightBackend;
use super::policy::{Policy, PolicyError};
use super::shared::SharedVerdicts;
use super::{Backend, CheckRequest, DynBackend, Verdict};
use crate::config::Config;
use crate::metrics::metrics;
use crate::shared_state::SharedState;

/// Why the engine could not be built from the config.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The policy needs a backend that is not configured. (Building the backends themselves
    /// cannot fail: every URL and chain id was parsed with the config.)
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// The composed engine.
pub struct Engine {
    cached: Arc<Cached>,
    light: Option<Arc<LightBackend>>,
    indexed: Option<Arc<IndexedBackend>>,
    batcher: Option<Arc<Batcher>>,
}

fn record(verdicts: &[Verdict]) {
    let m = metrics();
    for v in verdicts {
        m.verdicts.with_label_values(&["engine", v.kind(), v.reason_label()]).inc();
    }
}

impl Engine {
    /// Builds the engine from explicit backends (tests plug fakes in here), without Redis.
    pub fn new(
        indexed: Option<DynBackend>,
        light: Option<DynBackend>,
        cfg: &crate::config::ValidationConfig,
    ) -> Result<Self, EngineError> {
        Self::build(indexed, light, cfg, None, None)
    }

    /// [`Self::new`] with the shared-verdict layer between the cache and the policy when
    /// `shared` is given.
    pub fn with_shared(
        indexed: Option<DynBackend>,
        light: Option<DynBackend>,
        cfg: &crate::config::ValidationConfig,
        shared: Option<Arc<SharedState>>,
    ) -> Result<Self, EngineError> {
        Self::build(indexed, light, cfg, shared, None)
    }

    /// [`Self::with_shared`]; `watched` says which source chains the reorg watch covers (their
    /// valid verdicts live `valid_cache_watched_ttl_secs`, see `cache.rs`).
    fn build(
        indexed: Option<DynBackend>,
        light: Option<DynBackend>,
        cfg: &crate::config::ValidationConfig,
        shared: Option<Arc<SharedState>>,
        watched: Option<Watched>,
    ) -> Result<Self, EngineError> {
        let policy: DynBackend =
            Arc::new(Policy::new(cfg.policy, cfg.shadow_primary, indexed, light)?);
        let below_cache = match shared {
            Some(store) => Arc::new(SharedVerdicts::new(
                policy,
                store,
                cfg.invalid_cache_ttl_secs,
                cfg.expiry_window_secs,
            )) as DynBackend,
            None => policy,
        };
        let ttls = Ttls {
            invalid: cfg.invalid_cache_ttl_secs,
            // Half the re-test delay: the ingress's re-test always reaches the backends.
            soft_invalid: cfg.retry_delay_ms / 2,
            valid: cfg.valid_cache_ttl_secs,
            valid_watched: cfg.valid_cache_watched_ttl_secs,
        };
        let mut cached = Cached::new(below_cache, cfg.cache_capacity, ttls, cfg.expiry_window_secs);
        if let Some(w) = watched {
            cached = cached.with_watched(w);
        }
        Ok(Self { cached: Arc::new(cached), light: None, indexed: None, batcher: None })
    }

    /// Builds both backends from `[supervisor]` and `[light]`, then the layers (no Redis: see
    /// [`Self::from_config_with`]).
    pub fn from_config(cfg: &Config) -> Result<Self, EngineError> {
        Self::from_config_with(cfg, None)
    }

    /// [`Self::from_config`] sharing invalid verdicts through `shared` (the replica's Redis
    /// handle) unless `redis.share_verdicts` is off.
    pub fn from_config_with(
        cfg: &Config,
        shared: Option<Arc<SharedState>>,
    ) -> Result<Self, EngineError> {
        let indexed = IndexedBackend::from_config(&cfg.supervisor).map(Arc::new);
        let light = LightBackend::from_config(&cfg.light, &cfg.validation).map(Arc::new);
        // Valid verdicts on chains the light backend's reorg watch covers live longer: a reorg
        // there drops them (below). The watch is started by the app (`light.reorg_watch_ms`).
        let watched = light
            .clone()
            .map(|l| Arc::new(move |chain: &crate::interop::ChainId| l.watches(chain)) as Watched);
        // Concurrent single checks reach the supervisor as one batch request (`batch.rs`).
        let batcher = indexed
            .clone()
            .map(|b| Arc::new(Batcher::new(b, BatchLimits::of_supervisor(&cfg.supervisor))));
        let mut engine = Self::build(
            batcher.clone().map(|b| b as DynBackend),
            light.clone().map(|b| b as DynBackend),
            &cfg.validation,
            shared.filter(|_| cfg.redis.share_verdicts),
            watched,
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
        engine.batcher = batcher;
        Ok(engine)
    }

    /// The indexed backend, when configured (the conductor health probes it on its own).
    pub fn indexed(&self) -> Option<&Arc<IndexedBackend>> {
        self.indexed.as_ref()
    }

    /// The batching layer in front of the indexed backend, when configured (its queue and
    /// in-flight batches, for tests and diagnostics).
    pub fn batcher(&self) -> Option<&Arc<Batcher>> {
        self.batcher.as_ref()
    }

    /// The light backend, when configured (the light server serves it).
    pub fn light(&self) -> Option<&Arc<LightBackend>> {
        self.light.as_ref()
    }

    /// Applies new `supervisor.timeout_ms` and `light.timeout_ms` to the calls that start from
    /// now on (config reload).
    pub fn set_timeouts(&self, supervisor: Duration, light: Duration) {
        if let Some(i) = &self.indexed {
            i.set_timeout(supervisor);
        }
        if let Some(l) = &self.light {
            l.set_timeout(light);
        }
    }

    /// Drops the cached valid verdicts (a source-chain reorg may have replaced what they rest
    /// on); invalid ones keep their short TTL.
    pub fn flush_valid(&self) {
        self.cached.flush_valid();
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
            record(std::slice::from_ref(&v));
            v
        })
    }

    /// The revalidator's batches (one per presumed block) and bundles: the same cache and
    /// policy as single checks; the misses reach each backend as one batch (one HTTP request
    /// per supervisor endpoint; one `eth_getLogs` per block on the light side).
    fn check_batch<'a>(&'a self, reqs: &'a [CheckRequest]) -> BoxFuture<'a, Vec<Verdict>> {
        Box::pin(async move {
            let v = self.cached.check_batch(reqs).await;
            record(&v);
            v
        })
    }

    fn remembered<'a>(&'a self, req: &'a CheckRequest) -> BoxFuture<'a, Option<Verdict>> {
        Box::pin(async move {
            let v = self.cached.remembered(req).await;
            if let Some(v) = &v {
                record(std::slice::from_ref(v));
            }
            v
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        self.cached.ready()
    }
}
