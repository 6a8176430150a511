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

use ipnet::IpNet;

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
use super::depth::check_depth;
use super::listener::{is_body_timeout, serve_with, ConnLimits};
use super::types::{null, Call, RawRequest, Response, RpcError};
use crate::config::ServerConfig;
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
    /// The API key header's value, when the handler names one and the client sent it.
    pub api_key: Option<Arc<str>>,
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

    /// The header whose value is passed as [`CallContext::api_key`] (none by default).
    fn api_key_header(&self) -> Option<&axum::http::HeaderName> {
        None
    }
}

/// A listener's methods: one table that both dispatch ([`MethodTable::get`]) and the metrics
/// label ([`MethodTable::label`]) read, so a method added to the listener is labelled by name
/// instead of silently reporting as `other`.
pub struct MethodTable<M: Copy + 'static>(pub &'static [(&'static str, M)]);

impl<M: Copy + 'static> MethodTable<M> {
    /// What `method` is on this listener (`None`: not served here).
    pub fn get(&self, method: &str) -> Option<M> {
        self.0.iter().find(|(name, _)| *name == method).map(|(_, m)| *m)
    }

    /// The `'static` metrics label for `method`: itself when served here, else `other`, so
    /// label sets stay bounded whatever clients send.
    pub fn label(&self, method: &str) -> &'static str {
        self.0.iter().find(|(name, _)| *name == method).map_or("other", |(name, _)| name)
    }
}

/// Limits the endpoint enforces before any handler runs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest batch accepted.
    pub max_batch: usize,
    /// Most `X-Forwarded-For` hops (from the right) walked through our own proxies; it counts
    /// only on a connection from [`RpcOptions::trusted_proxies`] (none: the TCP peer is the
    /// client, whatever the depth).
    pub trusted_proxy_depth: usize,
    /// Map a single call's JSON-RPC error to an HTTP status (429, 413, 409, 503, ...) as proxyd
    /// does for public traffic. Off, errors are HTTP 200 like geth and op-supervisor answer them,
    /// which Go and Rust JSON-RPC clients (op-geth, op-reth) expect from a supervisor.
    pub error_status: bool,
}

/// Endpoint settings beyond [`Limits`]: the JSON depth bound and the trusted proxy ranges.
#[derive(Debug, Clone)]
pub struct RpcOptions {
    /// Deepest `[`/`{` nesting accepted in a body; deeper is refused before parsing.
    pub max_json_depth: usize,
    /// Peers whose `X-Forwarded-For` is read (nginx's `set_real_ip_from`).
    pub trusted_proxies: Arc<[IpNet]>,
}

impl Default for RpcOptions {
    fn default() -> Self {
        Self {
            max_json_depth: ServerConfig::default().max_json_depth,
            trusted_proxies: Arc::from([]),
        }
    }
}

impl RpcOptions {
    /// The `[server]` settings.
    pub fn from_config(cfg: &ServerConfig) -> Self {
        Self {
            max_json_depth: cfg.max_json_depth,
            trusted_proxies: cfg.trusted_proxies.iter().copied().collect(),
        }
    }
}

struct Endpoint {
    listener: &'static str,
    handler: Arc<dyn Handler>,
    limits: Limits,
    options: RpcOptions,
    next_request_id: AtomicU64,
}

/// A router that serves JSON-RPC on `POST /` for `handler`, with default [`RpcOptions`] (no
/// trusted proxies). `listener` names it in metrics.
pub fn rpc_router(listener: &'static str, handler: Arc<dyn Handler>, limits: Limits) -> Router {
    rpc_router_with(listener, handler, limits, RpcOptions::default())
}

/// [`rpc_router`] with explicit options.
pub fn rpc_router_with(
    listener: &'static str,
    handler: Arc<dyn Handler>,
    limits: Limits,
    options: RpcOptions,
) -> Router {
    let ep = Arc::new(Endpoint {
        listener,
        handler,
        limits,
        options,
        next_request_id: AtomicU64::new(1),
    });
    Router::new().route("/", post(serve_rpc)).with_state(ep)
}

fn trusted(ip: IpAddr, ranges: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    ranges.iter().any(|n| n.contains(&ip))
}

/// The client IP for a connection from `peer`, as nginx's `real_ip` module with
/// `real_ip_recursive` finds it: `X-Forwarded-For` counts only when `peer` is one of our
/// proxies (`trusted`). Then hops are walked from the right (each was appended by a proxy we
/// trust), skipping addresses that are themselves trusted proxies, at most `depth` hops; the
/// first untrusted address is the client. Anything further left was written by the client and
/// is never used; an unparsable hop stops the walk at the last address known good.
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted_ranges: &[IpNet],
    depth: usize,
) -> IpAddr {
    let peer = peer.to_canonical();
    if depth == 0 || !trusted(peer, trusted_ranges) {
        return peer;
    }
    let mut hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rev();
    let mut client = peer;
    for _ in 0..depth {
        let Some(hop) = hops.next() else { break };
        let Ok(ip) = hop.parse::<IpAddr>() else { break };
        client = ip.to_canonical();
        if !trusted(client, trusted_ranges) {
            break;
        }
    }
    client
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
    let ip =
        client_ip(peer.ip(), &headers, &ep.options.trusted_proxies, ep.limits.trusted_proxy_depth);
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
        Err(e) if is_body_timeout(&e) => {
            count(ep.listener, "-", codes::INVALID_REQUEST);
            let e = RpcError::invalid_request(e.to_string());
            let (body, _) = encode(&null(), Err(&e));
            let mut r = json_response(StatusCode::REQUEST_TIMEOUT, body);
            // The rest of the body may still be on its way: the connection cannot be reused.
            r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
        Err(e) if is_length_limit(&e) => return too_large(),
        Err(e) => {
            count(ep.listener, "-", codes::INVALID_REQUEST);
            return single_error(RpcError::invalid_request(format!(
                "could not read the request body: {e}"
            )));
        }
    };
    // Before any parse: serde_json keeps `params` raw without a depth bound, so without this a
    // 100k-deep body would reach the upstream.
    if let Err(d) = check_depth(&bytes, ep.options.max_json_depth) {
        count(ep.listener, "-", codes::INVALID_REQUEST);
        return single_error(RpcError::invalid_request(format!(
            "request JSON nests deeper than {} levels",
            d.limit
        )));
    }
    let raw: Box<RawValue> = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            count(ep.listener, "-", codes::PARSE_ERROR);
            return single_error(RpcError::parse_error(e));
        }
    };
    // Read once per HTTP request; bounded so a huge header cannot cost a big hash.
    let api_key =
        ep.handler.api_key_header().and_then(|h| headers.get(h)).and_then(|v| v.to_str().ok());
    let api_key = api_key.filter(|k| !k.is_empty() && k.len() <= 256).map(Arc::from);
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
        let ctx = CallContext { client_ip, request_id, in_batch: true, api_key };
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
        let ctx = CallContext { client_ip, request_id, in_batch: false, api_key };
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

fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = c.source();
    }
    false
}

/// Serves `router` on `listener` with the default `[server]` connection limits until `shutdown`
/// is cancelled, then stops accepting and waits up to `grace` for in-flight requests. Listeners
/// built from the config use [`serve_with`] and their configured limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let limits = ConnLimits::from_config(&ServerConfig::default(), grace);
    serve_with("other", listener, router, shutdown, limits).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_table_dispatches_and_labels_from_the_same_rows() {
        const T: MethodTable<u8> = MethodTable(&[("a_one", 1), ("a_uno", 1), ("a_two", 2)]);
        assert_eq!((T.get("a_uno"), T.label("a_uno")), (Some(1), "a_uno"));
        assert_eq!((T.get("a_two"), T.label("a_two")), (Some(2), "a_two"));
        assert_eq!((T.get("eth_call"), T.label("eth_call")), (None, "other"));
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let ranges: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = xff("6.6.6.6, 1.2.3.4");
        // A direct client: the header is its own invention.
        assert_eq!(client_ip(ip("9.9.9.9"), &h, &ranges, 1), ip("9.9.9.9"));
        // From our balancer: the rightmost hop is the client; what it wrote on the left is not.
        assert_eq!(client_ip(ip("10.1.1.1"), &h, &ranges, 1), ip("1.2.3.4"));
        assert_eq!(client_ip(ip("10.1.1.1"), &h, &ranges, 2), ip("1.2.3.4"), "untrusted hop stops");
        // Depth 0 or no ranges: the peer, whatever the header says.
        assert_eq!(client_ip(ip("10.1.1.1"), &h, &ranges, 0), ip("10.1.1.1"));
        assert_eq!(client_ip(ip("10.1.1.1"), &h, &[], 3), ip("10.1.1.1"));
    }

    #[test]
    fn trusted_hops_are_skipped_up_to_the_depth() {
        let ranges: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = xff("6.6.6.6, 1.2.3.4, 10.0.0.2");
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &ranges, 2), ip("1.2.3.4"));
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &ranges, 1), ip("10.0.0.2"), "depth bounds it");
        // Garbage stops the walk at the last good address; no header: the peer.
        assert_eq!(client_ip(ip("10.0.0.1"), &xff("1.2.3.4, junk"), &ranges, 2), ip("10.0.0.1"));
        assert_eq!(client_ip(ip("10.0.0.1"), &HeaderMap::new(), &ranges, 2), ip("10.0.0.1"));
        // An IPv4 peer seen on a dual-stack socket matches IPv4 ranges.
        assert_eq!(client_ip(ip("::ffff:10.0.0.1"), &xff("1.2.3.4"), &ranges, 1), ip("1.2.3.4"));
    }
}
