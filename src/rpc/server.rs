//! The JSON-RPC 2.0 endpoint every listener shares: reads the body under a size limit, parses a
//! single request or a batch, validates each element, dispatches to a [`Handler`], and writes
//! the answer with ids echoed byte for byte.
//!
//! Rules (JSON-RPC 2.0 §4-6 plus proxyd's conventions): malformed JSON is -32700 (not -32600);
//! an empty batch is one -32600 error; notifications are executed but never answered (an
//! all-notification request gets 204); a batch over the limit is refused whole, before any work;
//! a single request's error sets the HTTP status from its code, a batch is always 200.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::post;
use axum::Router;
use futures::future::BoxFuture;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::codes;
use super::types::{null, Call, RawRequest, Response, RpcError};
use crate::metrics::metrics;

/// Where a call came from, for rate limits and logs.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The client address: the TCP peer, or the trusted `X-Forwarded-For` hop.
    pub client_ip: IpAddr,
    /// The request id (from `X-Request-Id` when the client sent a sane one, else generated).
    pub request_id: Arc<str>,
    /// True when the call is an element of a batch.
    pub in_batch: bool,
}

/// A listener's methods.
pub trait Handler: Send + Sync + 'static {
    /// Answers one call with a raw JSON result or an error.
    fn call<'a>(
        &'a self,
        ctx: &'a CallContext,
        call: Call,
    ) -> BoxFuture<'a, Result<Box<RawValue>, RpcError>>;

    /// A bounded metrics label for `method`: the method itself when this listener knows it,
    /// else `other`.
    fn method_label(&self, method: &str) -> &'static str;
}

/// The `'static` metrics label for `method`: itself when it is one of `known`, else `other`, so
/// label sets stay bounded whatever clients send.
pub fn method_label_of(method: &str, known: &[&'static str]) -> &'static str {
    known.iter().copied().find(|k| *k == method).unwrap_or("other")
}

/// Limits the endpoint enforces before any handler runs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest batch accepted.
    pub max_batch: usize,
    /// How many `X-Forwarded-For` hops (counted from the right) are our own proxies; 0 ignores
    /// the header and uses the TCP peer.
    pub trusted_proxy_depth: usize,
    /// Map a single call's JSON-RPC error to an HTTP status (429, 413, 409, 503, ...) as proxyd
    /// does for public traffic. Off, errors are HTTP 200 like geth and op-supervisor answer them,
    /// which Go and Rust JSON-RPC clients (op-geth, op-reth) expect from a supervisor.
    pub error_status: bool,
}

struct Endpoint {
    listener: &'static str,
    handler: Arc<dyn Handler>,
    limits: Limits,
    next_request_id: AtomicU64,
}

/// A router that serves JSON-RPC on `POST /` for `handler`. `listener` names it in metrics.
pub fn rpc_router(listener: &'static str, handler: Arc<dyn Handler>, limits: Limits) -> Router {
    let ep = Arc::new(Endpoint { listener, handler, limits, next_request_id: AtomicU64::new(1) });
    Router::new().route("/", post(serve_rpc)).with_state(ep)
}

/// The client IP for `peer` given the `X-Forwarded-For` header and how many hops we trust.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted_depth: usize) -> IpAddr {
    if trusted_depth == 0 {
        return peer;
    }
    // Each trusted proxy appends the address it received from; the client is `depth` hops from
    // the right. Anything to the left of that was written by the client and is not trusted.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    hops.len()
        .checked_sub(trusted_depth)
        .and_then(|i| hops.get(i))
        .and_then(|s| s.parse().ok())
        .unwrap_or(peer)
}

fn request_id(ep: &Endpoint, headers: &HeaderMap) -> Arc<str> {
    let given = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic()));
    match given {
        Some(s) => s.into(),
        None => format!("{:x}", ep.next_request_id.fetch_add(1, Ordering::Relaxed)).into(),
    }
}

async fn serve_rpc(
    State(ep): State<Arc<Endpoint>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> HttpResponse {
    let rid = request_id(&ep, &headers);
    let ip = client_ip(peer.ip(), &headers, ep.limits.trusted_proxy_depth);
    let span = tracing::info_span!("rpc", listener = ep.listener, request_id = %rid, client = %ip);
    let mut resp = handle_body(&ep, rid.clone(), ip, &headers, body).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

async fn handle_body(
    ep: &Endpoint,
    request_id: Arc<str>,
    client_ip: IpAddr,
    headers: &HeaderMap,
    body: Body,
) -> HttpResponse {
    let limit = ep.limits.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        count(ep.listener, "-", codes::BODY_TOO_LARGE);
        single_error(RpcError::new(
            codes::BODY_TOO_LARGE,
            format!("request body too large: the limit is {limit} bytes"),
        ))
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let bytes: Bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return too_large(),
    };
    let raw: Box<RawValue> = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            count(ep.listener, "-", codes::PARSE_ERROR);
            return single_error(RpcError::parse_error(e));
        }
    };
    let text = raw.get();
    if text.starts_with('[') {
        let elems: Vec<&RawValue> = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return single_error(RpcError::parse_error(e)),
        };
        metrics().rpc_batches.with_label_values(&[ep.listener]).inc();
        if elems.is_empty() {
            count(ep.listener, "-", codes::INVALID_REQUEST);
            return single_error(RpcError::invalid_request("empty batch"));
        }
        if elems.len() > ep.limits.max_batch {
            count(ep.listener, "-", codes::BATCH_TOO_LARGE);
            return single_error(RpcError::new(
                codes::BATCH_TOO_LARGE,
                format!(
                    "batch too large: {} requests, the limit is {}",
                    elems.len(),
                    ep.limits.max_batch
                ),
            ));
        }
        let ctx = CallContext { client_ip, request_id, in_batch: true };
        let answers =
            futures::future::join_all(elems.into_iter().map(|e| handle_one(ep, &ctx, e))).await;
        let answers: Vec<String> = answers.into_iter().flatten().map(|(s, _)| s).collect();
        if answers.is_empty() {
            return StatusCode::NO_CONTENT.into_response();
        }
        let mut out = String::with_capacity(answers.iter().map(|a| a.len() + 1).sum::<usize>() + 2);
        out.push('[');
        out.push_str(&answers.join(","));
        out.push(']');
        json_response(StatusCode::OK, out)
    } else {
        let ctx = CallContext { client_ip, request_id, in_batch: false };
        match handle_one(ep, &ctx, &raw).await {
            Some((body, status)) => {
                let status = if ep.limits.error_status { status } else { StatusCode::OK };
                json_response(status, body)
            }
            None => StatusCode::NO_CONTENT.into_response(),
        }
    }
}

/// One request object, parsed and checked against JSON-RPC 2.0 (shared by HTTP and WebSocket).
pub struct ParsedRequest {
    /// The id to answer with, raw (null when absent or unreadable).
    pub reply_id: Box<RawValue>,
    /// False for a notification (no `id` member): it is executed but never answered. An invalid
    /// request is always answered (JSON-RPC 2.0 §5).
    pub answer: bool,
    /// The call, or the error to answer it with.
    pub call: Result<Call, RpcError>,
}

/// Parses and validates one request object.
pub fn parse_request(raw: &RawValue) -> ParsedRequest {
    let req: RawRequest = match serde_json::from_str(raw.get()) {
        Ok(r) => r,
        Err(_) => {
            let e = RpcError::invalid_request("expected a JSON-RPC request object");
            return ParsedRequest { reply_id: null(), answer: true, call: Err(e) };
        }
    };
    let id_ok = req.id.as_deref().is_none_or(|id| {
        let t = id.get().as_bytes().first().copied().unwrap_or(b'?');
        t == b'"' || t == b'-' || t.is_ascii_digit() || id.get() == "null"
    });
    let reply_id = match (&req.id, id_ok) {
        (Some(id), true) => id.clone(),
        _ => null(),
    };
    let call = validate(&req, id_ok);
    let answer = req.id.is_some() || call.is_err();
    ParsedRequest { reply_id, answer, call }
}

/// Handles one request object. `None` for a notification.
async fn handle_one(
    ep: &Endpoint,
    ctx: &CallContext,
    raw: &RawValue,
) -> Option<(String, StatusCode)> {
    let ParsedRequest { reply_id, answer, call } = parse_request(raw);
    let call = match call {
        Ok(c) => c,
        Err(e) => {
            count(ep.listener, "-", e.code);
            return Some(encode(&reply_id, Err(&e)));
        }
    };
    let label = ep.handler.method_label(&call.method);
    let start = Instant::now();
    let result = ep.handler.call(ctx, call).await;
    metrics()
        .rpc_duration
        .with_label_values(&[ep.listener, label])
        .observe(start.elapsed().as_secs_f64());
    count(ep.listener, label, result.as_ref().err().map_or(0, |e| e.code));
    if !answer {
        return None;
    }
    Some(match &result {
        Ok(v) => encode(&reply_id, Ok(v)),
        Err(e) => encode(&reply_id, Err(e)),
    })
}

fn validate(req: &RawRequest, id_ok: bool) -> Result<Call, RpcError> {
    if req.jsonrpc.as_deref().map(RawValue::get) != Some("\"2.0\"") {
        return Err(RpcError::invalid_request("\"jsonrpc\" must be \"2.0\""));
    }
    if !id_ok {
        return Err(RpcError::invalid_request("\"id\" must be a string, a number or null"));
    }
    let method: String = match req.method.as_deref().map(|m| serde_json::from_str(m.get())) {
        Some(Ok(m)) => m,
        _ => return Err(RpcError::invalid_request("\"method\" must be a string")),
    };
    if let Some(p) = &req.params {
        let first = p.get().as_bytes().first().copied();
        if first != Some(b'[') && first != Some(b'{') {
            return Err(RpcError::invalid_request("\"params\" must be an array or an object"));
        }
    }
    Ok(Call { method, params: req.params.clone() })
}

/// A response object as JSON text, and the HTTP status that goes with it for a single request.
pub fn encode(id: &RawValue, result: Result<&RawValue, &RpcError>) -> (String, StatusCode) {
    let (resp, status) = match result {
        Ok(r) => (Response { jsonrpc: "2.0", result: Some(r), error: None, id }, StatusCode::OK),
        Err(e) => (Response { jsonrpc: "2.0", result: None, error: Some(e), id }, e.http_status()),
    };
    let body = serde_json::to_string(&resp).unwrap_or_else(|_| {
        r#"{"jsonrpc":"2.0","error":{"code":-32603,"message":"internal error: could not encode the response"},"id":null}"#.to_owned()
    });
    (body, status)
}

fn single_error(e: RpcError) -> HttpResponse {
    let (body, status) = encode(&null(), Err(&e));
    json_response(status, body)
}

fn json_response(status: StatusCode, body: String) -> HttpResponse {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Counts one answered call in `rpc_requests_total`.
pub fn count(listener: &str, method: &str, code: i64) {
    let outcome = if code == 0 { "ok" } else { codes::label(code) };
    metrics().rpc_requests.with_label_values(&[listener, method, outcome]).inc();
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting and waits up
/// to `grace` for in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let signal = shutdown.clone();
    // Small JSON-RPC answers must not wait for Nagle's algorithm.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { signal.cancelled().await });
    let mut server = std::pin::pin!(std::future::IntoFuture::into_future(server));
    tokio::select! {
        r = &mut server => return r,
        _ = shutdown.cancelled() => {}
    }
    match tokio::time::timeout(grace, server).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "in-flight requests did not finish in time; closing"
            );
            Ok(())
        }
    }
}
