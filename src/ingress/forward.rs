//! Forwarding to the upstream execution client: the method allow-list and error mapping.
//!
//! The upstream's result or error comes back verbatim; a missing answer becomes -32603 with
//! "upstream unavailable" or "upstream timeout", so a client can tell the gateway's own refusals
//! from the EL's.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::value::RawValue;

use crate::config::UpstreamConfig;
use crate::rpc::client::{http_client, ClientError, RpcClient};
use crate::rpc::types::{Call, RpcError};

/// Why an upstream call gave no usable answer (the gateway's boundary to the EL).
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream did not answer in time.
    #[error("upstream timeout after {0} ms")]
    Timeout(u64),
    /// The upstream could not be reached or answered garbage.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
}

impl From<UpstreamError> for RpcError {
    fn from(e: UpstreamError) -> Self {
        RpcError::internal(e.to_string())
    }
}

/// The upstream client and its allow-list.
pub struct Forwarder {
    client: RpcClient,
    methods: HashSet<String>,
}

impl Forwarder {
    /// Builds the pooled client; fails only on a bad URL (already checked by config validation).
    pub fn new(cfg: &UpstreamConfig) -> Result<Self, String> {
        let url = reqwest::Url::parse(&cfg.url).map_err(|e| format!("upstream.url: {e}"))?;
        let client = RpcClient::new(
            "upstream",
            "upstream",
            url,
            Duration::from_millis(cfg.timeout_ms),
            http_client(cfg.pool_size),
        )
        .with_max_response_bytes(cfg.max_response_bytes);
        Ok(Self { client, methods: cfg.methods.iter().cloned().collect() })
    }

    /// True when `method` may be forwarded.
    pub fn allows(&self, method: &str) -> bool {
        self.methods.contains(method)
    }

    /// Forwards a call; the caller has checked the allow-list.
    pub async fn forward(&self, call: &Call) -> Result<Box<RawValue>, RpcError> {
        let result = match &call.params {
            Some(p) => self.client.call_raw(&call.method, &**p).await,
            None => self.client.call_raw(&call.method, &[(); 0]).await,
        };
        result.map_err(map_client_error)
    }

    /// A cheap liveness probe of the upstream (`eth_chainId`) for `/readyz`.
    pub async fn probe(&self) -> Result<(), UpstreamError> {
        self.client.call_raw("eth_chainId", &[(); 0]).await.map(|_| ()).or_else(|e| match e {
            // An error object is still an answer: the upstream is up.
            ClientError::Rpc { .. } => Ok(()),
            other => Err(upstream_error(other)),
        })
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.client.timeout()
    }
}

fn upstream_error(e: ClientError) -> UpstreamError {
    match e {
        ClientError::Timeout { timeout_ms, .. } => UpstreamError::Timeout(timeout_ms),
        ClientError::Transport { detail, .. } => UpstreamError::Unavailable(detail),
        ClientError::HttpStatus { status, .. } => {
            UpstreamError::Unavailable(format!("HTTP status {status}"))
        }
        ClientError::Decode { detail, .. } => UpstreamError::Unavailable(detail),
        ClientError::TooLarge { limit, .. } => {
            UpstreamError::Unavailable(format!("answer larger than {limit} bytes"))
        }
        ClientError::Rpc { error, .. } => UpstreamError::Unavailable(error.to_string()),
    }
}

/// The upstream's own JSON-RPC errors pass through verbatim; anything else is -32603.
pub fn map_client_error(e: ClientError) -> RpcError {
    match e {
        ClientError::Rpc { error, .. } => error,
        other => upstream_error(other).into(),
    }
}
