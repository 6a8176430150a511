//! The mempool revalidator: the companion a sequencer's EL polls so that interop txs in its pool
//! are re-checked off the block builder's hot path.
//!
//! Why: op-reth re-checks a pooled interop tx only near its deadline (about every 2 h, one RPC
//! per tx) and op-geth re-checks every tx serially every 12 s. Here the pool is read every
//! `interval`, placed into presumed blocks as a builder would fill them, and each presumed
//! block's interop txs are checked in ONE backend request with that block's timestamp.
//!
//! Files, one job each: [`pool`] (read the EL's pool and head), [`pool_stream`] (decode a
//! `txpool_content` answer as it arrives), [`placement`] (presumed blocks,
//! pure), [`pass`] (plan and send one pass), [`tracker`] (verdicts per tx, drop-in lookups),
//! [`tracked`] (the tracked txs' table: slots, indices, the "soon" set),
//! [`recheck`] (re-checks driven by source-chain reorgs and heads), [`waits`] (which heads
//! "not yet known" txs wait on), [`mirror`] (the pool kept by
//! deltas), [`follow`] (the EL WebSocket that feeds it),
//! [`feed`] (the invalid feed and its cursor), [`api`] (the EL-facing JSON-RPC methods),
//! [`push`] (the feed pushed over WebSocket), [`acted`] (whether the EL dropped what was
//! published), [`service`] (the core that ties them and the schedule), [`error`] (its error
//! enums).

pub mod acted;
pub mod api;
pub mod error;
pub mod feed;
pub mod follow;
pub mod mirror;
pub mod pass;
pub mod placement;
pub mod pool;
pub mod pool_stream;
pub mod push;
pub mod recheck;
pub mod service;
pub mod tracked;
pub mod tracker;
pub mod waits;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use error::{PoolError, StartError};
pub use pass::PassKind;
pub use service::{PassReport, Revalidator};

use crate::config::RevalidatorConfig;
use crate::rpc::server::{rpc_router, serve, Limits};
use crate::validation::DynBackend;

/// The EL-facing router for `core` (mount it on any listener, or use [`start`]): JSON-RPC on
/// `POST /`, the push feed on a WebSocket upgrade of `GET /` (closed when `shutdown` is
/// cancelled).
pub fn router(
    core: Arc<Revalidator>,
    cfg: &RevalidatorConfig,
    shutdown: CancellationToken,
) -> Router {
    let limits = Limits {
        max_body_bytes: cfg.max_body_bytes,
        max_batch: cfg.max_batch,
        trusted_proxy_depth: 0,
        error_status: false,
    };
    let rpc = rpc_router("revalidator", Arc::new(api::Api::new(core.clone())), limits);
    push::routes(rpc, Arc::new(push::PushServer::new(core, cfg, shutdown)))
}

/// A started revalidator: its listener and pass loop run until the shutdown token is cancelled.
pub struct RunningRevalidator {
    /// Where the EL-facing API listens.
    pub addr: SocketAddr,
    /// The core (for status, and for tests that drive passes).
    pub core: Arc<Revalidator>,
    server: JoinHandle<std::io::Result<()>>,
    passes: JoinHandle<()>,
}

impl RunningRevalidator {
    /// `http://addr/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Waits for the listener and the pass loop to stop (after the shutdown token is cancelled).
    pub async fn join(self) -> std::io::Result<()> {
        let _ = self.passes.await;
        self.server.await.unwrap_or(Ok(()))
    }
}

/// Binds `cfg.listen`, serves the API and runs passes every `cfg.interval_ms` until `shutdown`.
/// With `run_passes = false` only the API is served, and passes are driven by the caller through
/// [`Revalidator::run_pass`] (tests that must not race a background pass).
pub async fn start(
    cfg: &RevalidatorConfig,
    backend: DynBackend,
    shutdown: CancellationToken,
    run_passes: bool,
) -> Result<RunningRevalidator, StartError> {
    let core = Revalidator::new(cfg.clone(), backend);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| StartError::Bind { addr: cfg.listen, source })?;
    let addr =
        listener.local_addr().map_err(|source| StartError::Bind { addr: cfg.listen, source })?;
    let grace = cfg.shutdown_grace_ms;
    let server = tokio::spawn(serve(
        listener,
        router(core.clone(), cfg, shutdown.clone()),
        shutdown.clone(),
        grace,
    ));
    if let Some(f) = core.follower() {
        // The mirror follows the EL even when the caller drives passes itself.
        tokio::spawn(f.clone().run(shutdown.clone()));
    }
    let passes =
        if run_passes { tokio::spawn(core.clone().run(shutdown)) } else { tokio::spawn(async {}) };
    tracing::info!(target: "interop_gate::revalidator", %addr, el = %crate::rpc::client::redact(&cfg.el_url), "revalidator started");
    Ok(RunningRevalidator { addr, core, server, passes })
}
