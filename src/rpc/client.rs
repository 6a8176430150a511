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
    /// The server answered with a non-2xx HTTP status. Whatever body came with it is not read:
    /// a proxy in front of a peer answers 4xx/5xx with JSON of its own, which says nothing
    /// about the question asked.
    #[error("{endpoint}: HTTP status {status}")]
    HttpStatus {
        /// Endpoint name.
        endpoint: String,
        /// The status.
        status: u16,
    },
    /// The body was larger than this endpoint's `max_response_bytes`; reading stopped there.
    #[error("{endpoint}: answer larger than {limit} bytes")]
    TooLarge {
        /// Endpoint name.
        endpoint: String,
        /// The configured limit.
        limit: usize,
    },
    /// The body was not the JSON-RPC response expected (not JSON, not JSON-RPC 2.0, a wrong
    /// or missing id, both or neither of `result` and `error`, missing or extra batch elements).
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
    /// True when the server did not give a well-formed JSON-RPC answer at all (timeout,
    /// transport, any non-2xx status, oversize or malformed body). Only [`ClientError::Rpc`] is
    /// an answer.
    pub fn is_no_answer(&self) -> bool {
        !matches!(self, Self::Rpc { .. })
    }

    /// Metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Transport { .. } => "transport",
            Self::HttpStatus { .. } => "http_status",
            Self::TooLarge { .. } => "too_large",
            Self::Decode { .. } => "decode",
            Self::Rpc { .. } => "rpc_error",
        }
    }
}

/// One element of a JSON-RPC response, result kept raw. `result` is `Some("null")` for an
/// explicit `"result": null` and `None` when the member is absent, so the two never blur.
#[derive(Debug, Deserialize)]
struct WireResponse {
    #[serde(default)]
    jsonrpc: Option<String>,
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<RpcError>,
}

/// Deserializes a present member (including `null`) as `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// The default bound on one answer's body when the caller sets none.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

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
    /// Per-call timeout in ms; a config reload (SIGHUP) may change it while calls run.
    timeout_ms: AtomicU64,
    max_response_bytes: usize,
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
        Self {
            target,
            name: name.into(),
            url,
            http,
            timeout_ms: AtomicU64::new(timeout.as_millis() as u64),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            next_id: AtomicU64::new(1),
        }
    }

    /// Bounds the body of every answer: reading stops at `limit` bytes and the call is "no
    /// answer" ([`ClientError::TooLarge`]), so one oversize answer costs at most `limit` bytes
    /// of memory per call in flight.
    pub fn with_max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit.max(1);
        self
    }

    /// The endpoint's configured name (safe to log).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }

    /// Changes the per-call timeout for the calls that start from now on (config reload).
    pub fn set_timeout(&self, timeout: Duration) {
        self.timeout_ms.store(timeout.as_millis() as u64, Ordering::Relaxed);
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
        let (id, body) = self.request(method, params)?;
        let span =
            tracing::debug_span!("rpc_call", target = self.target, endpoint = %self.name, method);
        let bytes = self.post(body).instrument(span).await?;
        let resp: WireResponse = serde_json::from_slice(&bytes)
            .map_err(|e| self.decode_err(format!("not a JSON-RPC response: {e}")))?;
        self.check_id(id, resp.id.as_ref())?;
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
        // Anything but an array of answers (a single error object for the whole batch included)
        // is no answer: it does not say which element it is about.
        let resps: Vec<WireResponse> = serde_json::from_slice(&bytes)
            .map_err(|e| self.decode_err(format!("not a JSON-RPC batch response: {e}")))?;
        let mut out: Vec<Option<Result<Box<RawValue>, ClientError>>> =
            (0..params.len()).map(|_| None).collect();
        for r in resps {
            let idx = r.id.as_ref().and_then(|v| v.as_u64()).and_then(|id| id.checked_sub(first));
            match idx.map(|i| i as usize).filter(|i| *i < out.len()) {
                Some(i) if out[i].is_none() => out[i] = Some(self.to_result(r)),
                // An id we did not send, or one answered twice: the peer is confused about
                // which answer is which, so none of its answers can be trusted.
                _ => {
                    return Err(self.decode_err(format!(
                        "batch answer has an unexpected or repeated id {:?}",
                        r.id
                    )))
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| Err(self.decode_err("batch answer lacks this element".into())))
            })
            .collect())
    }

    /// A JSON-RPC 2.0 answer has `"jsonrpc": "2.0"` and exactly one of `result` and `error`;
    /// anything else (`{}`, both members, another version) is no answer.
    fn to_result(&self, resp: WireResponse) -> Result<Box<RawValue>, ClientError> {
        self.answer(resp.jsonrpc, resp.result, resp.error)
    }

    /// [`Self::to_result`] on the members of an answer, whatever form its result was read in.
    pub(super) fn answer<T>(
        &self,
        jsonrpc: Option<String>,
        result: Option<T>,
        error: Option<RpcError>,
    ) -> Result<T, ClientError> {
        if jsonrpc.as_deref() != Some("2.0") {
            return Err(self.decode_err(format!("jsonrpc is {jsonrpc:?}, not \"2.0\"")));
        }
        match (result, error) {
            (None, Some(error)) => Err(ClientError::Rpc { endpoint: self.name.clone(), error }),
            (Some(result), None) => Ok(result),
            (Some(_), Some(_)) => Err(self.decode_err("answer has both result and error".into())),
            (None, None) => Err(self.decode_err("answer has neither result nor error".into())),
        }
    }

    /// A new request id and the encoded single-call request.
    pub(super) fn request<P: Serialize + ?Sized>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<(u64, Vec<u8>), ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::to_vec(&WireRequest { jsonrpc: "2.0", id, method, params })
            .map_err(|e| self.decode_err(format!("encode request: {e}")))?;
        Ok((id, body))
    }

    /// The metrics label pair of this endpoint.
    pub(super) fn labels(&self) -> (&'static str, &str) {
        (self.target, &self.name)
    }

    /// The bound on one answer's body.
    pub(super) fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// An answer to a single call must carry the request's id: another id answers some other
    /// request (a broken proxy, a mixed-up connection), not this one.
    pub(super) fn check_id(
        &self,
        sent: u64,
        got: Option<&serde_json::Value>,
    ) -> Result<(), ClientError> {
        if got.and_then(serde_json::Value::as_u64) == Some(sent) {
            return Ok(());
        }
        Err(self.decode_err(format!("answer id {got:?} is not the request id {sent}")))
    }

    pub(super) fn decode_err(&self, detail: String) -> ClientError {
        ClientError::Decode { endpoint: self.name.clone(), detail }
    }

    async fn post(&self, body: Vec<u8>) -> Result<bytes::Bytes, ClientError> {
        let start = Instant::now();
        let result = self.post_inner(body).await;
        self.record(start, result.as_ref().err());
        result
    }

    /// Counts one call (latency, outcome) and logs its failure.
    pub(super) fn record(&self, start: Instant, error: Option<&ClientError>) {
        let m = metrics();
        m.external_duration
            .with_label_values(&[self.target, &self.name])
            .observe(start.elapsed().as_secs_f64());
        let outcome = error.map_or("ok", ClientError::kind);
        m.external_calls.with_label_values(&[self.target, &self.name, outcome]).inc();
        if let Some(e) = error {
            tracing::debug!(target: "interop_gate::rpc", error = %e, "external call failed");
        }
    }

    async fn post_inner(&self, body: Vec<u8>) -> Result<bytes::Bytes, ClientError> {
        let fut = async {
            let mut resp = self.open(body).await?;
            let limit = self.max_response_bytes;
            let too_large = || self.too_large();
            let mut body = bytes::BytesMut::with_capacity(
                resp.content_length().map_or(8 * 1024, |n| n as usize).min(limit),
            );
            while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_err(e))? {
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body.freeze())
        };
        self.bounded(fut).await
    }

    /// Runs `fut` (a whole call: connect, answer, body) within the call timeout.
    pub(super) async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        let timeout = self.timeout();
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                endpoint: self.name.clone(),
                timeout_ms: timeout.as_millis() as u64,
            }),
        }
    }

    /// Sends `body` and returns the answer once its status says it carries a JSON-RPC answer
    /// that may fit the body bound (a `Content-Length` over it is refused before reading).
    pub(super) async fn open(&self, body: Vec<u8>) -> Result<reqwest::Response, ClientError> {
        let resp = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_err(e))?;
        let status = resp.status();
        if !status.is_success() {
            // Whatever JSON a non-2xx answer carries (a proxy's "rate limited", a load
            // balancer's page, a filter's error relayed with 500), it is not a verdict.
            return Err(ClientError::HttpStatus {
                endpoint: self.name.clone(),
                status: status.as_u16(),
            });
        }
        if resp.content_length().is_some_and(|n| n > self.max_response_bytes as u64) {
            return Err(self.too_large());
        }
        Ok(resp)
    }

    pub(super) fn too_large(&self) -> ClientError {
        ClientError::TooLarge { endpoint: self.name.clone(), limit: self.max_response_bytes }
    }

    pub(super) fn transport_err(&self, e: reqwest::Error) -> ClientError {
        // reqwest's Display includes the URL; strip it so credentials never reach a log.
        let detail = e.without_url().to_string();
        ClientError::Transport { endpoint: self.name.clone(), detail }
    }
}
