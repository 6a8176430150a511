//! The ingress role: the public JSON-RPC front door. Allow-listed methods are forwarded to the
//! upstream EL; transaction submissions go through the interop pipeline first.

pub mod forward;
pub mod limits;

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::value::RawValue;

use crate::config::Config;
use crate::rpc::server::{CallContext, Handler};
use crate::rpc::types::{Call, RpcError};
use forward::Forwarder;

/// The ingress listener's state.
pub struct Ingress {
    forwarder: Arc<Forwarder>,
    /// Allow-listed method names as `'static` labels (leaked once at start-up, bounded by config).
    labels: HashMap<String, &'static str>,
}

impl Ingress {
    /// Builds the ingress from config and a shared forwarder.
    pub fn new(cfg: &Config, forwarder: Arc<Forwarder>) -> Self {
        let labels = cfg
            .upstream
            .methods
            .iter()
            .map(|m| (m.clone(), &*Box::leak(m.clone().into_boxed_str())))
            .collect();
        Self { forwarder, labels }
    }
}

impl Handler for Ingress {
    fn call<'a>(
        &'a self,
        _ctx: &'a CallContext,
        call: Call,
    ) -> BoxFuture<'a, Result<Box<RawValue>, RpcError>> {
        Box::pin(async move {
            if !self.forwarder.allows(&call.method) {
                return Err(RpcError::method_not_found(&call.method));
            }
            self.forwarder.forward(&call).await
        })
    }

    fn method_label(&self, method: &str) -> &'static str {
        self.labels.get(method).copied().unwrap_or("other")
    }
}
