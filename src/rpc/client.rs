//! A pooled JSON-RPC client for one endpoint: keep-alive connections, a timeout on every call,
//! single and batch calls, a tracing span and latency histogram per call.
//!
//! One [`RpcClient`] per endpoint lives for the whole process; nothing dials per check.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tracing::Instrument;

use super::types::RpcError;
use crate::metrics::metrics;

/// Why a call produced no JSON-RPC answer, or the answer it produced.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// No answer within the call's timeout.
    #[error("{endpoint}: timeout after {timeout_ms} ms")]
    Timeout {
        /// Endpoint name.
        endpoint: String,
        /// The timeout that expired.
        timeout_ms: u64,
    },
    /// Could not connect or the connection broke.
    #[error("{endpoint}: unavailable: {detail}")]
    Transport {
        /// Endpoint name.
        endpoint: String,
        /// What failed (credentials stripped).
        detail: String,
    },
    /// The server answered with a non-2xx HTTP status and no JSON-RPC body.
    #[error("{endpoint}: HTTP status {status}")]
    HttpStatus {
        /// Endpoint name.
        endpoint: String,
        /// The status.
        status: u16,
    },
    /// The body was not the JSON-RPC response expected.
    #[error("{endpoint}: bad response: {detail}")]
    Decode {
        /// Endpoint name.
        endpoint: String,
        /// What was wrong.
        detail: String,
    },
    /// The server answered with a JSON-RPC error.
    #[error("{endpoint}: {error}")]
    Rpc {
        /// Endpoint name.
        endpoint: String,
        /// The error object, verbatim.
        error: RpcError,
    },
}

impl ClientError {
    /// True when the server did not give a JSON-RPC answer at all (timeout, transport, 5xx).
    pub fn is_no_answer(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Transport { .. } | Self::Decode { .. } => true,
            Self::HttpStatus { status, .. } => *status >= 500 || *status == 429,
            Self::Rpc { .. } => false,
        }
    }

    /// Metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Transport { .. } => "transport",
            Self::HttpStatus { .. } => "http_status",
            Self::Decode { .. } => "decode",
            Self::Rpc { .. } => "rpc_error",
        }
    }
}

/// One element of a JSON-RPC response, result kept raw.
#[derive(Debug, Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<RpcError>,
}

#[derive(Serialize)]
struct WireRequest<'a, P: Serialize + ?Sized> {
    jsonrpc: &'static str,
    id: u64,
    method: &'a str,
    params: &'a P,
}

/// A JSON-RPC endpoint with its pooled HTTP client.
#[derive(Debug)]
pub struct RpcClient {
    target: &'static str,
    name: String,
    url: reqwest::Url,
    http: reqwest::Client,
    timeout: Duration,
    next_id: AtomicU64,
}

/// Builds the shared HTTP client settings: keep-alive pool, TCP_NODELAY.
pub fn http_client(pool_per_host: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(pool_per_host)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Strips user info from a URL for display.
pub fn redact(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        u.set_query(Some("…"));
    }
    u.to_string()
}

impl RpcClient {
    /// A client for `url`, labelled `target`/`name` in metrics and logs.
    pub fn new(
        target: &'static str,
        name: impl Into<String>,
        url: reqwest::Url,
        timeout: Duration,
        http: reqwest::Client,
    ) -> Self {
        Self { target, name: name.into(), url, http, timeout, next_id: AtomicU64::new(1) }
    }

    /// The endpoint's configured name (safe to log).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Calls `method` and decodes its result.
    pub async fn call<P, R>(&self, method: &str, params: &P) -> Result<R, ClientError>
    where
        P: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let raw = self.call_raw(method, params).await?;
        serde_json::from_str(raw.get())
            .map_err(|e| self.decode_err(format!("{method} result: {e}")))
    }

    /// Calls `method`, keeping the result raw (for verbatim forwarding).
    pub async fn call_raw<P>(&self, method: &str, params: &P) -> Result<Box<RawValue>, ClientError>
    where
        P: Serialize + ?Sized,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::to_vec(&WireRequest { jsonrpc: "2.0", id, method, params })
            .map_err(|e| self.decode_err(format!("encode request: {e}")))?;
        let span =
            tracing::debug_span!("rpc_call", target = self.target, endpoint = %self.name, method);
        let bytes = self.post(body).instrument(span).await?;
        let resp: WireResponse = serde_json::from_slice(&bytes)
            .map_err(|e| self.decode_err(format!("not a JSON-RPC response: {e}")))?;
        self.to_result(resp)
    }

    /// Sends `calls` as one JSON-RPC batch (one HTTP request) and returns the answers in the
    /// order of `calls`, matched by id. An element missing from the answer is a decode error
    /// for that element only.
    pub async fn batch<P>(
        &self,
        method: &str,
        params: &[P],
    ) -> Result<Vec<Result<Box<RawValue>, ClientError>>, ClientError>
    where
        P: Serialize,
    {
        if params.is_empty() {
            return Ok(Vec::new());
        }
        let first = self.next_id.fetch_add(params.len() as u64, Ordering::Relaxed);
        let reqs: Vec<_> = params
            .iter()
            .enumerate()
            .map(|(i, p)| WireRequest { jsonrpc: "2.0", id: first + i as u64, method, params: p })
            .collect();
        let body =
            serde_json::to_vec(&reqs).map_err(|e| self.decode_err(format!("encode batch: {e}")))?;
        let span = tracing::debug_span!("rpc_batch", target = self.target, endpoint = %self.name, method, size = params.len());
        let bytes = self.post(body).instrument(span).await?;
        let resps: Vec<WireResponse> = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                // A server may answer a whole batch with one error object.
                if let Ok(one) = serde_json::from_slice::<WireResponse>(&bytes) {
                    if let Some(error) = one.error {
                        return Err(ClientError::Rpc { endpoint: self.name.clone(), error });
                    }
                }
                return Err(self.decode_err(format!("not a JSON-RPC batch response: {e}")));
            }
        };
        let mut out: Vec<Option<Result<Box<RawValue>, ClientError>>> =
            (0..params.len()).map(|_| None).collect();
        for r in resps {
            let idx = r.id.as_ref().and_then(|v| v.as_u64()).and_then(|id| id.checked_sub(first));
            if let Some(i) = idx.map(|i| i as usize).filter(|i| *i < out.len()) {
                out[i] = Some(self.to_result(r));
            }
        }
        Ok(out
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| Err(self.decode_err("batch answer lacks this element".into())))
            })
            .collect())
    }

    fn to_result(&self, resp: WireResponse) -> Result<Box<RawValue>, ClientError> {
        match (resp.result, resp.error) {
            (_, Some(error)) => Err(ClientError::Rpc { endpoint: self.name.clone(), error }),
            (Some(result), None) => Ok(result),
            // `"result": null` deserializes as None: a null result is a valid answer.
            (None, None) => Ok(super::types::null()),
        }
    }

    fn decode_err(&self, detail: String) -> ClientError {
        ClientError::Decode { endpoint: self.name.clone(), detail }
    }

    async fn post(&self, body: Vec<u8>) -> Result<bytes::Bytes, ClientError> {
        let m = metrics();
        let start = Instant::now();
        let result = self.post_inner(body).await;
        m.external_duration
            .with_label_values(&[self.target, &self.name])
            .observe(start.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        m.external_calls.with_label_values(&[self.target, &self.name, outcome]).inc();
        if let Err(e) = &result {
            tracing::debug!(target: "interop_gate::rpc", error = %e, "external call failed");
        }
        result
    }

    async fn post_inner(&self, body: Vec<u8>) -> Result<bytes::Bytes, ClientError> {
        let send = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send();
        let fut = async {
            let resp = send.await.map_err(|e| self.transport_err(e))?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(|e| self.transport_err(e))?;
            if !status.is_success() {
                // Many servers put a JSON-RPC error in a 4xx/5xx body: keep it when present.
                // proxyd-style servers answer e.g. failsafe with 503 and a JSON-RPC body: the
                // body is the answer.
                if let Ok(WireResponse { error: Some(error), .. }) = serde_json::from_slice(&bytes)
                {
                    return Err(ClientError::Rpc { endpoint: self.name.clone(), error });
                }
                return Err(ClientError::HttpStatus {
                    endpoint: self.name.clone(),
                    status: status.as_u16(),
                });
            }
            Ok(bytes)
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                endpoint: self.name.clone(),
                timeout_ms: self.timeout.as_millis() as u64,
            }),
        }
    }

    fn transport_err(&self, e: reqwest::Error) -> ClientError {
        // reqwest's Display includes the URL; strip it so credentials never reach a log.
        let detail = e.without_url().to_string();
        ClientError::Transport { endpoint: self.name.clone(), detail }
    }
}
