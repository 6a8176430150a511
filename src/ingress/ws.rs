//! JSON-RPC 2.0 over WebSocket on the ingress listener (text frames; single requests and
//! batches). Every call passes the same checks as over HTTP ([`Ingress::admit`]: allow-list,
//! per-IP and per-method rate limits); submissions and bundles take the same pipeline
//! ([`Ingress::pipeline`]) with the same codes and `data`; every other call, subscriptions
//! included, is proxied to the upstream's WebSocket ([`super::upstream_ws`]).
//!
//! Bounds per connection: message size (closes with 1009), calls in flight (-32024), open
//! subscriptions (-32024), an outbound queue (a client that does not read is disconnected with
//! 1008 instead of being buffered for), an idle timeout, and ping/pong keep-alive. The number of
//! connections is bounded for the whole listener (HTTP 503 on the upgrade beyond it).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::upstream_ws::{ClientSink, UpstreamSession, UpstreamWsSettings, SUBSCRIBE, UNSUBSCRIBE};
use super::ws_metrics::{message, ws_metrics, GaugeGuard};
use super::Ingress;
use crate::config::{Config, WebSocketConfig};
use crate::metrics::metrics;
use crate::rpc::codes;
use crate::rpc::depth::check_depth;
use crate::rpc::server::{
    client_ip, count, encode, parse_request, CallContext, Handler, Limits, RpcOptions,
};
use crate::rpc::types::{null, Call, RpcError};
use crate::rpc::ws_conn::{spawn_writer, Outbound};

/// What a plain GET on `/` answers.
pub const BANNER: &str =
    "interop-gate: JSON-RPC ingress filter. POST JSON-RPC 2.0 here, or open a WebSocket.\n";

/// The listener name in `rpc_requests_total` for calls that came over WebSocket.
const LISTENER: &str = "ingress_ws";

/// Bytes read from a client socket at once. JSON-RPC requests are small and the buffer grows for
/// a larger message, so a small chunk keeps an idle connection cheap (tungstenite's default of
/// 128 KiB is allocated per connection up front).
const READ_CHUNK: usize = 8 * 1024;

use crate::rpc::ws_conn::close_code::{NORMAL, POLICY, TRY_AGAIN, UNSUPPORTED};

/// The WebSocket side of the ingress listener.
pub struct WsServer {
    ingress: Arc<Ingress>,
    cfg: WebSocketConfig,
    upstream: Arc<UpstreamWsSettings>,
    limits: Limits,
    /// Trusted proxy ranges and the JSON depth bound, as on the HTTP side.
    options: RpcOptions,
    connections: Arc<Semaphore>,
    shutdown: CancellationToken,
    next_conn: AtomicU64,
}

/// Adds the upgrade route on every configured path (GET; `POST /` stays HTTP JSON-RPC).
pub fn routes(mut router: Router, ws: Arc<WsServer>) -> Router {
    for path in ws.cfg.paths.clone() {
        router = router.route(&path, get(upgrade).with_state(ws.clone()));
    }
    if !ws.cfg.paths.iter().any(|p| p == "/") {
        router = router.route("/", get(|| async { BANNER }));
    }
    router
}

impl WsServer {
    /// Builds the WebSocket side from config; `shutdown` closes every connection (1001).
    pub fn new(
        ingress: Arc<Ingress>,
        cfg: &Config,
        limits: Limits,
        options: RpcOptions,
        shutdown: CancellationToken,
    ) -> Self {
        let m = ws_metrics();
        for kind in &cfg.websocket.subscriptions {
            m.subscriptions.with_label_values(&[kind]);
        }
        let upstream = UpstreamWsSettings {
            url: cfg.upstream.effective_ws_url(),
            timeout: cfg.upstream.timeout_ms,
            max_message_bytes: cfg.websocket.upstream_max_message_bytes,
            reconnect_backoff: cfg.websocket.reconnect_backoff_ms,
            max_subscriptions: cfg.websocket.max_subscriptions,
            kinds: cfg.websocket.subscriptions.clone(),
        };
        Self {
            ingress,
            cfg: cfg.websocket.clone(),
            upstream: Arc::new(upstream),
            limits,
            options,
            connections: Arc::new(Semaphore::new(cfg.websocket.max_connections)),
            shutdown,
            next_conn: AtomicU64::new(1),
        }
    }
}

async fn upgrade(
    State(ws): State<Arc<WsServer>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    up: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(up) = up else {
        return BANNER.into_response();
    };
    let Ok(permit) = ws.connections.clone().try_acquire_owned() else {
        ws_metrics().closed.with_label_values(&["rejected_over_capacity"]).inc();
        return (StatusCode::SERVICE_UNAVAILABLE, "too many WebSocket connections; retry later\n")
            .into_response();
    };
    let ip =
        client_ip(peer.ip(), &headers, &ws.options.trusted_proxies, ws.limits.trusted_proxy_depth);
    // Read once, at the upgrade: every call of the connection carries the same key (bounded as
    // on the HTTP side).
    let api_key: Option<Arc<str>> = ws
        .ingress
        .api_key_header()
        .and_then(|h| headers.get(h))
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 256)
        .map(Arc::from);
    let max = ws.cfg.max_message_bytes;
    // Each answer is written at once (write buffer 0): the bounded queue is the only buffer.
    up.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_CHUNK)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            let id = ws.next_conn.fetch_add(1, Ordering::Relaxed);
            let span = tracing::info_span!("ws", conn = id, client = %ip);
            run(ws, socket, ip, api_key, id, permit).instrument(span).await
        })
}

/// One client connection's shared state.
struct Conn {
    link: Outbound,
    in_flight: Arc<Semaphore>,
}

impl AsRef<Outbound> for Conn {
    fn as_ref(&self) -> &Outbound {
        &self.link
    }
}

impl Conn {
    /// Closes the connection with `code`, a reason for the client and a metrics label (the first
    /// reason wins).
    fn close(&self, code: u16, text: &'static str, label: &'static str) {
        self.link.close(code, text, label);
    }

    /// Queues a text message for the client. A full queue means the client does not read fast
    /// enough: it is disconnected rather than buffered for.
    fn send(&self, text: String, outcome: &'static str) -> bool {
        match self.link.out.try_send(Message::Text(text.into())) {
            Ok(()) => {
                message("client_out", outcome);
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                message("client_out", "dropped");
                self.close(POLICY, "client too slow: outbound queue full", "slow_client");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// The link's way back to the client.
struct ToClient(Arc<Conn>);

impl ClientSink for ToClient {
    fn notify(&self, text: String) -> bool {
        self.0.send(text, "notification")
    }

    fn upstream_lost(&self) {
        self.0.close(
            TRY_AGAIN,
            "upstream connection lost; reconnect and resubscribe",
            "upstream_lost",
        );
    }
}

async fn run(
    ws: Arc<WsServer>,
    socket: WebSocket,
    ip: IpAddr,
    api_key: Option<Arc<str>>,
    id: u64,
    _permit: OwnedSemaphorePermit,
) {
    let _open = GaugeGuard::new(ws_metrics().connections.with_label_values(&["client"]));
    let (sink, mut stream) = socket.split();
    let (out, out_rx) = mpsc::channel::<Message>(ws.cfg.send_queue);
    let conn = Arc::new(Conn {
        link: Outbound::new(out, ws.shutdown.child_token()),
        in_flight: Arc::new(Semaphore::new(ws.cfg.max_in_flight)),
    });
    let session =
        Arc::new(UpstreamSession::new(ws.upstream.clone(), Box::new(ToClient(conn.clone()))));
    let ctx = Arc::new(CallContext {
        client_ip: ip,
        request_id: format!("ws-{id:x}").into(),
        in_batch: false,
        api_key,
    });

    let writer = spawn_writer(sink, out_rx, conn.clone());

    let idle = ws.cfg.idle_timeout_ms;
    let mut idle_deadline = tokio::time::Instant::now() + idle;
    let ping_every = ws.cfg.ping_interval_ms;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut awaiting_pong = false;
    let mut calls = JoinSet::new();
    loop {
        tokio::select! {
            _ = conn.link.closing.cancelled() => break,
            _ = tokio::time::sleep_until(idle_deadline) => {
                if session.subscriptions() == 0 && calls.is_empty() {
                    conn.close(NORMAL, "idle timeout", "idle");
                    break;
                }
                idle_deadline = tokio::time::Instant::now() + idle;
            }
            _ = ping.tick() => {
                if awaiting_pong {
                    conn.close(POLICY, "no pong to the last ping", "pong_timeout");
                    break;
                }
                awaiting_pong = true;
                if conn.link.out.try_send(Message::Ping(Default::default())).is_err() {
                    conn.close(POLICY, "client too slow: outbound queue full", "slow_client");
                    break;
                }
            }
            Some(_) = calls.join_next(), if !calls.is_empty() => {}
            m = stream.next() => match m {
                Some(Ok(Message::Text(text))) => {
                    idle_deadline = tokio::time::Instant::now() + idle;
                    message("client_in", "text");
                    on_text(&ws, &conn, &session, &ctx, text.as_str(), &mut calls);
                }
                Some(Ok(Message::Binary(_))) => {
                    message("client_in", "invalid");
                    conn.close(UNSUPPORTED, "binary frames are not supported; send JSON-RPC as text", "protocol_error");
                    break;
                }
                Some(Ok(Message::Pong(_))) => awaiting_pong = false,
                Some(Ok(Message::Ping(_))) => {} // answered by the WebSocket stack
                Some(Ok(Message::Close(_))) | None => {
                    conn.close(NORMAL, "", "client_closed");
                    break;
                }
                Some(Err(e)) => {
                    message("client_in", "invalid");
                    conn.link.close_on_read_error(e);
                    break;
                }
            },
        }
    }
    conn.link.closing.cancel();
    calls.abort_all();
    let label = conn.link.label();
    ws_metrics().closed.with_label_values(&[label]).inc();
    tracing::debug!(reason = label, "websocket closed");
    let _ = writer.await;
    // Dropping the last session handle closes the upstream link (after aborted calls let go).
    drop(session);
}

/// Parses one text message and spawns its answer (single or batch) within the in-flight bound.
fn on_text(
    ws: &Arc<WsServer>,
    conn: &Arc<Conn>,
    session: &Arc<UpstreamSession>,
    ctx: &Arc<CallContext>,
    text: &str,
    calls: &mut JoinSet<()>,
) {
    let reply_err = |e: RpcError| {
        count(LISTENER, "-", e.code);
        conn.send(encode(&null(), Err(&e)).0, "response");
    };
    // Before any parse, as on HTTP: `params` stay raw text, so a deep message would otherwise
    // reach the upstream.
    if let Err(d) = check_depth(text.as_bytes(), ws.options.max_json_depth) {
        return reply_err(RpcError::invalid_request(format!(
            "request JSON nests deeper than {} levels",
            d.limit
        )));
    }
    let raw: Box<RawValue> = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return reply_err(RpcError::parse_error(e)),
    };
    let elems: Vec<Box<RawValue>> = if raw.get().starts_with('[') {
        let elems: Vec<Box<RawValue>> = match serde_json::from_str(raw.get()) {
            Ok(v) => v,
            Err(e) => return reply_err(RpcError::parse_error(e)),
        };
        if elems.is_empty() {
            return reply_err(RpcError::invalid_request("empty batch"));
        }
        if elems.len() > ws.limits.max_batch {
            return reply_err(RpcError::new(
                codes::BATCH_TOO_LARGE,
                format!(
                    "batch too large: {} requests, the limit is {}",
                    elems.len(),
                    ws.limits.max_batch
                ),
            ));
        }
        elems
    } else {
        vec![raw]
    };
    let batch = elems.len() > 1 || text.trim_start().starts_with('[');
    let n = u32::try_from(elems.len()).unwrap_or(u32::MAX);
    let Ok(permit) = conn.in_flight.clone().try_acquire_many_owned(n) else {
        // Refused at once, each request answered under its own id.
        let e = RpcError::new(
            codes::OVER_CAPACITY,
            format!(
                "too many calls in flight on this connection (the limit is {}); wait for answers",
                ws.cfg.max_in_flight
            ),
        );
        let answers: Vec<String> = elems
            .iter()
            .map(|raw| parse_request(raw))
            .filter(|p| p.answer)
            .map(|p| {
                count(LISTENER, "-", e.code);
                encode(&p.reply_id, Err(&e)).0
            })
            .collect();
        if !answers.is_empty() {
            let text = if batch { format!("[{}]", answers.join(",")) } else { answers.concat() };
            conn.send(text, "response");
        }
        return;
    };
    let (ws, conn, session, ctx) = (ws.clone(), conn.clone(), session.clone(), ctx.clone());
    calls.spawn(async move {
        let _permit = permit;
        let ctx = CallContext { in_batch: batch, ..(*ctx).clone() };
        let answers =
            futures::future::join_all(elems.iter().map(|e| handle_one(&ws, &session, &ctx, e)))
                .await;
        let answers: Vec<String> = answers.into_iter().flatten().collect();
        if answers.is_empty() {
            return;
        }
        let text = if batch { format!("[{}]", answers.join(",")) } else { answers.concat() };
        conn.send(text, "response");
    });
}

/// Answers one request object (`None` for a notification).
async fn handle_one(
    ws: &WsServer,
    session: &UpstreamSession,
    ctx: &CallContext,
    raw: &RawValue,
) -> Option<String> {
    let parsed = parse_request(raw);
    let call = match parsed.call {
        Ok(c) => c,
        Err(e) => {
            count(LISTENER, "-", e.code);
            return Some(encode(&parsed.reply_id, Err(&e)).0);
        }
    };
    let label = match call.method.as_str() {
        SUBSCRIBE => SUBSCRIBE,
        UNSUBSCRIBE => UNSUBSCRIBE,
        m => ws.ingress.method_label(m),
    };
    let start = Instant::now();
    let result = dispatch(ws, session, ctx, &call).await;
    metrics()
        .rpc_duration
        .with_label_values(&[LISTENER, label])
        .observe(start.elapsed().as_secs_f64());
    count(LISTENER, label, result.as_ref().err().map_or(0, |e| e.code));
    parsed.answer.then(|| encode(&parsed.reply_id, result.as_deref()).0)
}

/// Routes one call: the HTTP checks first, then the interop pipeline or the upstream.
async fn dispatch(
    ws: &WsServer,
    session: &UpstreamSession,
    ctx: &CallContext,
    call: &Call,
) -> Result<Box<RawValue>, RpcError> {
    if call.method == SUBSCRIBE || call.method == UNSUBSCRIBE {
        if ws.cfg.subscriptions.is_empty() {
            return Err(RpcError::method_not_found(&call.method));
        }
        ws.ingress.check_rate(ctx, &call.method).await?;
        return session.call(call).await;
    }
    ws.ingress.answer(ctx, call, || session.call(call)).await
}
