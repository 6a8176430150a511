//! The ingress role: the public JSON-RPC front door. Allow-listed methods are forwarded to the
//! upstream EL; transaction submissions and bundles go through the interop pipeline first. The
//! same pipeline serves HTTP (`POST /`) and WebSocket ([`ws`]).

pub mod bundle;
pub mod forward;
pub mod limits;
pub mod submit;
pub mod upstream_ws;
pub mod ws;
pub mod ws_metrics;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use futures::future::BoxFuture;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::admin::ModeCell;
use crate::config::Config;
use crate::rpc::server::{rpc_router, CallContext, Handler, Limits};
use crate::rpc::types::{Call, RpcError};
use crate::validation::retry::Retry;
use crate::validation::DynBackend;
use bundle::{Bundles, BUNDLE_METHOD};
use forward::Forwarder;
use limits::RateLimits;
use submit::{Submitter, SUBMIT_METHODS};

/// The ingress listener's state.
pub struct Ingress {
    forwarder: Arc<Forwarder>,
    limits: RateLimits,
    submitter: Submitter,
    bundles: Bundles,
    /// Allow-listed method names as `'static` labels (leaked once at start-up, bounded by config).
    labels: HashMap<String, &'static str>,
}

impl Ingress {
    /// Builds the ingress from config, a shared forwarder, the interop mode and the engine
    /// (`None` when no backend is configured: interop transactions are then refused).
    pub fn new(
        cfg: &Config,
        forwarder: Arc<Forwarder>,
        mode: Arc<ModeCell>,
        engine: Option<DynBackend>,
    ) -> Self {
        let labels = cfg
            .upstream
            .methods
            .iter()
            .map(|m| (m.clone(), &*Box::leak(m.clone().into_boxed_str())))
            .collect();
        // Registered up front so every series is exported (at zero) from start-up.
        ws_metrics::ws_metrics();
        Self {
            forwarder,
            limits: RateLimits::new(&cfg.ingress),
            // Retry-after-delay belongs to the ingress alone: it owns its descriptor ("now"),
            // so it may re-stamp it; the engine answers every other caller exactly.
            submitter: Submitter::new(
                &cfg.ingress,
                mode,
                engine
                    .clone()
                    .map(|e| Arc::new(Retry::from_config(e, &cfg.validation)) as DynBackend),
            ),
            // Bundles check the engine itself, in one batch (see `bundle`).
            bundles: Bundles::new(cfg.ingress.max_bundle_txs, engine),
            labels,
        }
    }

    /// The ingress router: JSON-RPC on `POST /`, WebSocket upgrades on the configured paths (a
    /// plain GET on `/` gets a one-line banner).
    pub fn router(
        self: Arc<Self>,
        cfg: &Config,
        limits: Limits,
        shutdown: CancellationToken,
    ) -> Router {
        let router = rpc_router("ingress", self.clone(), limits);
        if cfg.websocket.enabled {
            ws::routes(router, Arc::new(ws::WsServer::new(self, cfg, limits, shutdown)))
        } else {
            router.route("/", axum::routing::get(|| async { ws::BANNER }))
        }
    }

    /// The checks every call passes first, whatever the transport: the allow-list, then the
    /// per-IP and per-method rate limits.
    pub(crate) fn admit(&self, ctx: &CallContext, method: &str) -> Result<(), RpcError> {
        if !self.forwarder.allows(method) {
            return Err(RpcError::method_not_found(method));
        }
        self.limits.check_call(ctx.client_ip, method)
    }

    /// True for the methods the gateway answers itself (through the interop pipeline) rather
    /// than passing to the upstream as they are.
    pub(crate) fn is_pipeline(method: &str) -> bool {
        method == BUNDLE_METHOD || SUBMIT_METHODS.contains(&method)
    }

    /// Runs a submission or a bundle through the interop pipeline (forwarded over HTTP when it
    /// passes). The caller has run [`Ingress::admit`].
    pub(crate) async fn pipeline(
        &self,
        ctx: &CallContext,
        call: &Call,
    ) -> Result<Box<RawValue>, RpcError> {
        if call.method == BUNDLE_METHOD {
            return self
                .bundles
                .send(ctx, call, &self.submitter, &self.limits, &self.forwarder)
                .await;
        }
        self.submitter.submit(ctx, call, &self.limits, &self.forwarder).await
    }

    /// The per-IP rate limit alone (for WebSocket-only methods such as `eth_subscribe`).
    pub(crate) fn limits(&self) -> &RateLimits {
        &self.limits
    }
}

impl Handler for Ingress {
    fn call<'a>(
        &'a self,
        ctx: &'a CallContext,
        call: Call,
    ) -> BoxFuture<'a, Result<Box<RawValue>, RpcError>> {
        Box::pin(async move {
            self.admit(ctx, &call.method)?;
            if Self::is_pipeline(&call.method) {
                return self.pipeline(ctx, &call).await;
            }
            self.forwarder.forward(&call).await
        })
    }

    fn method_label(&self, method: &str) -> &'static str {
        self.labels.get(method).copied().unwrap_or("other")
    }
}
