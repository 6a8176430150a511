//! The ingress role: the public JSON-RPC front door. Allow-listed methods are forwarded to the
//! upstream EL; transaction submissions go through the interop pipeline first.

pub mod forward;
pub mod limits;
pub mod submit;

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::value::RawValue;

use crate::admin::ModeCell;
use crate::config::Config;
use crate::rpc::server::{CallContext, Handler};
use crate::rpc::types::{Call, RpcError};
use crate::shared_state::SharedState;
use crate::validation::retry::Retry;
use crate::validation::DynBackend;
use forward::Forwarder;
use limits::RateLimits;
use submit::{Submitter, SUBMIT_METHODS};

/// The ingress listener's state.
pub struct Ingress {
    forwarder: Arc<Forwarder>,
    limits: RateLimits,
    submitter: Submitter,
    /// Allow-listed method names as `'static` labels (leaked once at start-up, bounded by config).
    labels: HashMap<String, &'static str>,
    /// The header carrying an API key (validated at config load).
    api_key_header: Option<http::HeaderName>,
}

impl Ingress {
    /// Builds the ingress from config, a shared forwarder, the interop mode and the engine
    /// (`None` when no backend is configured: interop transactions are then refused), and the
    /// shared state store when `[redis]` is configured (limits are then shared by replicas).
    pub fn new(
        cfg: &Config,
        forwarder: Arc<Forwarder>,
        mode: Arc<ModeCell>,
        engine: Option<DynBackend>,
        shared: Option<Arc<SharedState>>,
    ) -> Self {
        let labels = cfg
            .upstream
            .methods
            .iter()
            .map(|m| (m.clone(), &*Box::leak(m.clone().into_boxed_str())))
            .collect();
        Self {
            forwarder,
            limits: RateLimits::new(&cfg.ingress, shared),
            // Retry-after-delay belongs to the ingress alone: it owns its descriptor ("now"),
            // so it may re-stamp it; the engine answers every other caller exactly.
            submitter: Submitter::new(
                &cfg.ingress,
                mode,
                engine.map(|e| Arc::new(Retry::from_config(e, &cfg.validation)) as DynBackend),
            ),
            labels,
            api_key_header: http::HeaderName::from_bytes(cfg.ingress.api_key_header.as_bytes())
                .ok(),
        }
    }
}

impl Handler for Ingress {
    fn call<'a>(
        &'a self,
        ctx: &'a CallContext,
        call: Call,
    ) -> BoxFuture<'a, Result<Box<RawValue>, RpcError>> {
        Box::pin(async move {
            if !self.forwarder.allows(&call.method) {
                return Err(RpcError::method_not_found(&call.method));
            }
            self.limits.check_call(ctx.client_ip, ctx.api_key.as_deref(), &call.method).await?;
            if SUBMIT_METHODS.contains(&call.method.as_str()) {
                return self.submitter.submit(ctx, &call, &self.limits, &self.forwarder).await;
            }
            self.forwarder.forward(&call).await
        })
    }

    fn method_label(&self, method: &str) -> &'static str {
        self.labels.get(method).copied().unwrap_or("other")
    }

    fn api_key_header(&self) -> Option<&http::HeaderName> {
        self.api_key_header.as_ref()
    }
}
