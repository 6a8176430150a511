//! The ingress role: the public JSON-RPC front door. Allow-listed methods are forwarded to the
//! upstream EL; transaction submissions and bundles go through the interop pipeline first. The
//! same pipeline serves HTTP (`POST /`) and WebSocket ([`ws`]).

pub mod bundle;
pub mod forward;
pub mod limits;
pub mod refusal;
pub mod submit;
pub mod upstream_ws;
pub mod ws;
pub mod ws_metrics;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use futures::future::BoxFuture;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::admin::ModeCell;
use crate::config::Config;
use crate::metrics::metrics;
use crate::rpc::codes;
use crate::rpc::server::{rpc_router_with, CallContext, Handler, Limits, RpcOptions};
use crate::rpc::types::{Call, RpcError};
use crate::shared_state::SharedState;
use crate::validation::retry::Retry;
use crate::validation::DynBackend;
use bundle::{Bundles, BUNDLE_METHOD};
use forward::Forwarder;
use limits::RateLimits;
use submit::{Pass, Submitter, SUBMIT_METHODS};

/// What SIGHUP can replace while requests are in flight: the rate limiters and the method
/// allow-list. A call takes one snapshot and uses it to the end.
struct Live {
    limits: RateLimits,
    /// Allow-listed method names, each with its `'static` metrics label.
    methods: HashMap<String, &'static str>,
}

/// The ingress listener's state.
pub struct Ingress {
    forwarder: Arc<Forwarder>,
    submitter: Submitter,
    bundles: Bundles,
    live: RwLock<Arc<Live>>,
    /// The shared state store when `[redis]` is configured (limits are then shared by replicas).
    shared: Option<Arc<SharedState>>,
    /// The header carrying an API key (validated at config load).
    api_key_header: Option<http::HeaderName>,
}

/// The `'static` label of each method, reusing `known` labels so that reloads leak a label only
/// for a method never allow-listed before (bounded by what operators configure).
fn method_labels(
    methods: &[String],
    known: &HashMap<String, &'static str>,
) -> HashMap<String, &'static str> {
    methods
        .iter()
        .map(|m| {
            let label =
                known.get(m).copied().unwrap_or_else(|| &*Box::leak(m.clone().into_boxed_str()));
            (m.clone(), label)
        })
        .collect()
}

impl Ingress {
    /// Builds the ingress from config, a shared forwarder, the interop mode, the engine (`None`
    /// when no backend is configured: interop transactions are then refused), and the shared
    /// state store when `[redis]` is configured (limits are then shared by replicas).
    pub fn new(
        cfg: &Config,
        forwarder: Arc<Forwarder>,
        mode: Arc<ModeCell>,
        engine: Option<DynBackend>,
        shared: Option<Arc<SharedState>>,
    ) -> Self {
        let live = Live {
            limits: RateLimits::new(&cfg.ingress, shared.clone()),
            methods: method_labels(&cfg.upstream.methods, &HashMap::new()),
        };
        // Registered up front so every series is exported (at zero) from start-up.
        ws_metrics::ws_metrics();
        Self {
            forwarder,
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
            live: RwLock::new(Arc::new(live)),
            shared,
            api_key_header: http::HeaderName::from_bytes(cfg.ingress.api_key_header.as_bytes())
                .ok(),
        }
    }

    /// The ingress router: JSON-RPC on `POST /`, WebSocket upgrades on the configured paths (a
    /// plain GET on `/` gets a one-line banner). WebSocket clients get the same client-IP rules
    /// (`options.trusted_proxies`), JSON depth bound and API-key header as HTTP ones.
    pub fn router(
        self: Arc<Self>,
        cfg: &Config,
        limits: Limits,
        options: RpcOptions,
        shutdown: CancellationToken,
    ) -> Router {
        let router = rpc_router_with("ingress", self.clone(), limits, options.clone());
        if cfg.websocket.enabled {
            let ws = ws::WsServer::new(self, cfg, limits, options, shutdown);
            ws::routes(router, Arc::new(ws))
        } else {
            router.route("/", axum::routing::get(|| async { ws::BANNER }))
        }
    }

    /// The checks every call passes first, whatever the transport: the allow-list, then the
    /// per-IP and per-method rate limits. Returns the snapshot the call uses to the end.
    async fn admit(&self, ctx: &CallContext, method: &str) -> Result<Arc<Live>, RpcError> {
        let live = self.listed(method)?;
        live.limits.check_call(ctx.client_ip, ctx.api_key.as_deref(), method).await?;
        Ok(live)
    }

    /// The allow-list alone (single submissions take their call, sender and interop-sender
    /// limits together in one decision, after decoding: see `Submitter::decide`).
    fn listed(&self, method: &str) -> Result<Arc<Live>, RpcError> {
        let live = self.live();
        if !live.methods.contains_key(method) {
            return Err(RpcError::new(
                codes::METHOD_NOT_FOUND,
                format!("method {method:?} is not served by this gateway (not on its allow-list)"),
            ));
        }
        Ok(live)
    }

    /// The per-IP and per-method rate limits alone (for WebSocket-only methods such as
    /// `eth_subscribe`, which the HTTP allow-list does not name).
    pub(crate) async fn check_rate(&self, ctx: &CallContext, method: &str) -> Result<(), RpcError> {
        let live = self.live();
        live.limits.check_call(ctx.client_ip, ctx.api_key.as_deref(), method).await
    }

    /// Answers a call the way HTTP does, whatever the transport: admission, then the interop
    /// pipeline for submissions and bundles (forwarded over HTTP when they pass), else `proxy`
    /// (the HTTP forwarder, or a WebSocket client's upstream link).
    pub(crate) async fn answer<F>(
        &self,
        ctx: &CallContext,
        call: &Call,
        proxy: impl FnOnce() -> F,
    ) -> Result<Box<RawValue>, RpcError>
    where
        F: std::future::Future<Output = Result<Box<RawValue>, RpcError>>,
    {
        let pass = if SUBMIT_METHODS.contains(&call.method.as_str()) {
            let live = self.listed(&call.method)?;
            self.submitter.decide(ctx, call, &live.limits).await?
        } else {
            let live = self.admit(ctx, &call.method).await?;
            if call.method != BUNDLE_METHOD {
                drop(live);
                return proxy().await;
            }
            self.bundles.decide(ctx, call, &self.submitter, &live.limits).await?
        };
        self.forward(call, pass).await
    }

    /// The one place a submission that passed goes upstream (over HTTP, whatever transport it
    /// came in on), counted with the reason it passed.
    async fn forward(&self, call: &Call, pass: Pass) -> Result<Box<RawValue>, RpcError> {
        match pass {
            Pass::Tx { hash, reason } => {
                let r = self.forwarder.forward_tx(call, hash).await;
                let outcome = if r.is_ok() { "forwarded" } else { "upstream_error" };
                metrics().ingress_txs.with_label_values(&[outcome, reason]).inc();
                r
            }
            Pass::Bundle { reason } => {
                let r = self.forwarder.forward(call).await;
                bundle::count_forwarded(r.is_ok(), reason);
                r
            }
        }
    }

    fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the rate limiters (local buckets start full; shared ones live in Redis) and the
    /// method allow-list from `cfg` (SIGHUP). Calls in flight finish with the old ones.
    pub fn reload(&self, cfg: &Config) {
        let known = self.live().methods.clone();
        let live = Live {
            limits: RateLimits::new(&cfg.ingress, self.shared.clone()),
            methods: method_labels(&cfg.upstream.methods, &known),
        };
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
    }
}

impl Handler for Ingress {
    fn call<'a>(
        &'a self,
        ctx: &'a CallContext,
        call: Call,
    ) -> BoxFuture<'a, Result<Box<RawValue>, RpcError>> {
        Box::pin(async move { self.answer(ctx, &call, || self.forwarder.forward(&call)).await })
    }

    fn method_label(&self, method: &str) -> &'static str {
        self.live().methods.get(method).copied().unwrap_or("other")
    }

    fn api_key_header(&self) -> Option<&http::HeaderName> {
        self.api_key_header.as_ref()
    }
}
