//! Forwarding to the upstream execution client and error mapping (the method allow-list is the
//! ingress's, reloadable on SIGHUP).
//!
//! The upstream's result or error comes back verbatim; a missing answer becomes -32603 with
//! "upstream unavailable" or "upstream timeout", so a client can tell the gateway's own refusals
//! from the EL's. `eth_sendRawTransactionSync` (EIP-7966) is held by the upstream until the tx is
//! included, so it has its own timeout; when that expires the tx was already forwarded, and the
//! answer is EIP-7966's timeout error (code 4, the tx hash as `data`), as the EL itself would.

use std::time::Duration;

use alloy_primitives::B256;
use serde_json::value::RawValue;

use crate::config::UpstreamConfig;
use crate::rpc::client::{http_client, ClientError, RpcClient};
use crate::rpc::codes;
use crate::rpc::drain::DrainGate;
use crate::rpc::types::{Call, RpcError};

/// The EIP-7966 method that waits for inclusion.
pub const SYNC_METHOD: &str = "eth_sendRawTransactionSync";

/// Why an upstream call gave no usable answer (the gateway's boundary to the EL).
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream did not answer in time.
    #[error("upstream timeout after {0} ms")]
    Timeout(u64),
    /// The upstream could not be reached or answered garbage.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// `eth_sendRawTransactionSync` forwarded `tx`, but no receipt came within the wait.
    #[error(
        "the transaction was forwarded but wasn't processed in {timeout_ms} ms \
         (the gateway stopped waiting; poll eth_getTransactionReceipt)"
    )]
    SyncTimeout {
        /// The forwarded transaction.
        tx: B256,
        /// The wait that expired.
        timeout_ms: u64,
    },
    /// The gateway is shutting down and its grace period is over: nothing new is forwarded.
    #[error("the gateway is shutting down: the request was not forwarded; retry")]
    ShuttingDown,
}

impl From<UpstreamError> for RpcError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::SyncTimeout { tx, .. } => {
                RpcError::new(codes::TX_SYNC_TIMEOUT, e.to_string())
                    .with_data(tx.to_string().into())
            }
            other => RpcError::internal(other.to_string()),
        }
    }
}

/// The upstream client.
pub struct Forwarder {
    client: RpcClient,
    /// Same pool, `upstream.sync_timeout_ms`: for `eth_sendRawTransactionSync` only.
    sync_client: RpcClient,
    /// Counts forwarded calls so that shutdown waits for their answers.
    gate: DrainGate,
}

impl Forwarder {
    /// Builds the pooled client (the URL was parsed with the config, so nothing can fail).
    pub fn new(cfg: &UpstreamConfig) -> Self {
        let url = cfg.url.clone();
        let http = http_client(cfg.pool_size);
        let client =
            RpcClient::new("upstream", "upstream", url.clone(), cfg.timeout_ms, http.clone())
                .with_max_response_bytes(cfg.max_response_bytes);
        let sync_client =
            RpcClient::new("upstream", "upstream-sync", url, cfg.sync_timeout_ms, http)
                .with_max_response_bytes(cfg.max_response_bytes);
        Self { client, sync_client, gate: DrainGate::new() }
    }

    /// Forwards a call; the caller has checked the allow-list.
    pub async fn forward(&self, call: &Call) -> Result<Box<RawValue>, RpcError> {
        let Some(_in_flight) = self.gate.enter() else {
            return Err(UpstreamError::ShuttingDown.into());
        };
        let result = match &call.params {
            Some(p) => self.client.call_raw(&call.method, &**p).await,
            None => self.client.call_raw(&call.method, &[(); 0]).await,
        };
        result.map_err(map_client_error)
    }

    /// Forwards a transaction submission whose hash is `tx`. `eth_sendRawTransactionSync` waits
    /// up to its own timeout and, when that expires, answers EIP-7966's timeout error.
    pub async fn forward_tx(&self, call: &Call, tx: B256) -> Result<Box<RawValue>, RpcError> {
        if call.method != SYNC_METHOD {
            return self.forward(call).await;
        }
        let Some(_in_flight) = self.gate.enter() else {
            return Err(UpstreamError::ShuttingDown.into());
        };
        let result = match &call.params {
            Some(p) => self.sync_client.call_raw(&call.method, &**p).await,
            None => self.sync_client.call_raw(&call.method, &[(); 0]).await,
        };
        result.map_err(|e| match e {
            ClientError::Timeout { timeout_ms, .. } => {
                UpstreamError::SyncTimeout { tx, timeout_ms }.into()
            }
            other => map_client_error(other),
        })
    }

    /// A cheap liveness probe of the upstream (`eth_chainId`) for `/readyz`.
    pub async fn probe(&self) -> Result<(), UpstreamError> {
        self.client.call_raw("eth_chainId", &[(); 0]).await.map(|_| ()).or_else(|e| match e {
            // An error object is still an answer: the upstream is up.
            ClientError::Rpc { .. } => Ok(()),
            other => Err(upstream_error(other)),
        })
    }

    /// The gate every forwarded call passes (shutdown closes it and waits for it to empty).
    pub fn drain_gate(&self) -> DrainGate {
        self.gate.clone()
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.client.timeout()
    }

    /// Applies new `upstream.timeout_ms` / `sync_timeout_ms` to the calls that start from now
    /// on (config reload).
    pub fn set_timeouts(&self, call: Duration, sync: Duration) {
        self.client.set_timeout(call);
        self.sync_client.set_timeout(sync);
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
