//! The invalid feed pushed over WebSocket, on the revalidator's own listener (GET `/` upgrades;
//! POST `/` stays HTTP JSON-RPC).
//!
//! `interop_subscribe("invalidTransactions", {fromCursor?})` answers a subscription id, then
//! sends `interop_subscription` notifications whose `result` is a feed page exactly as
//! `interop_invalidTransactions` returns it (`entries`, `cursor`, `oldestCursor`, `truncated`,
//! `more`): the first one at once (possibly with no entries: it tells the starting cursor), then
//! one whenever something is published, carrying what was published since the previous one; its
//! `cursor` is the one to resubscribe (or poll) from. A client that persists the last `cursor` it processed and
//! resubscribes with it after any disconnect gets every entry once: the feed is the buffer, and
//! the subscription only walks it. Without `fromCursor` the subscription starts at the next entry
//! published. `interop_unsubscribe(id)` stops one. Any other method is answered by the same
//! handler as over HTTP (one request per message; batches are refused).
//!
//! Bounds per connection: message size (`max_body_bytes`, closes with 1009), subscriptions
//! ([`MAX_SUBSCRIPTIONS`]), calls in flight ([`MAX_IN_FLIGHT`]), an outbound queue of
//! `push_send_queue` messages. History a subscriber resumes into is sent at the reader's pace;
//! once caught up, a live page that finds the queue full means the client does not keep up: it
//! is closed with 1008 "client too slow" rather than buffered for, and resumes by cursor. Dead
//! peers are found by ping (`push_ping_interval_ms`; a ping that finds the queue full, or no pong
//! by the next ping, closes with 1008).
//! Connections are capped by `push_max_connections` (HTTP 503 beyond it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use prometheus::{IntCounterVec, IntGauge, Opts};
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::api::{parse_cursor, Api};
use super::service::Revalidator;
use crate::config::RevalidatorConfig;
use crate::metrics::metrics;
use crate::rpc::codes;
use crate::rpc::server::{count, encode, parse_request, CallContext, Handler};
use crate::rpc::types::{null, to_raw, Call, RpcError};
use crate::rpc::ws_conn::{spawn_writer, Outbound};

/// The subscription method and its notification method.
pub const SUBSCRIBE: &str = "interop_subscribe";
/// Stops one subscription.
pub const UNSUBSCRIBE: &str = "interop_unsubscribe";
/// The method name of every notification.
pub const NOTIFICATION: &str = "interop_subscription";
/// The one subscription kind.
pub const INVALID_TRANSACTIONS: &str = "invalidTransactions";
/// Subscriptions one connection may hold (one is all a follower needs).
pub const MAX_SUBSCRIPTIONS: usize = 4;
/// Plain calls one connection may have in flight.
pub const MAX_IN_FLIGHT: usize = 16;

/// The `rpc_requests_total` listener label of calls made over this WebSocket.
const LISTENER: &str = "revalidator_ws";

use crate::rpc::ws_conn::close_code::{NORMAL, POLICY, UNSUPPORTED};

/// The close reason a too-slow subscriber gets (it says how to resume).
pub const SLOW_REASON: &str = "client too slow: reconnect and resubscribe with fromCursor";

/// Push metrics, registered on the process registry at first use with every label up front.
struct PushMetrics {
    connections: IntGauge,
    subscriptions: IntGauge,
    notifications: IntCounterVec,
    closed: IntCounterVec,
}

const CLOSE_REASONS: &[&str] = &[
    "client_closed",
    "slow_client",
    "pong_timeout",
    "too_large",
    "protocol_error",
    "shutdown",
    "rejected_over_capacity",
];

fn push_metrics() -> &'static PushMetrics {
    static M: LazyLock<PushMetrics> = LazyLock::new(|| {
        let reg = metrics().registry();
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            reg.register(Box::new(g.clone())).expect("metric registered once");
            g
        };
        let counter = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
            reg.register(Box::new(c.clone())).expect("metric registered once");
            c
        };
        let m = PushMetrics {
            connections: gauge(
                "revalidator_push_connections",
                "Open WebSocket connections on the revalidator's listener",
            ),
            subscriptions: gauge(
                "revalidator_push_subscriptions",
                "Open invalidTransactions subscriptions",
            ),
            notifications: counter(
                "revalidator_push_notifications_total",
                "Feed pages pushed to subscribers, by outcome (sent, dropped)",
                "outcome",
            ),
            closed: counter(
                "revalidator_push_closed_total",
                "Revalidator WebSocket connections closed, by reason",
                "reason",
            ),
        };
        for o in ["sent", "dropped"] {
            m.notifications.with_label_values(&[o]);
        }
        for r in CLOSE_REASONS {
            m.closed.with_label_values(&[r]);
        }
        m
    });
    &M
}

/// Creates the push series (at 0) so dashboards see them before the first subscriber.
pub fn init_metrics() {
    let _ = push_metrics();
}

/// Decrements a gauge when dropped.
struct GaugeGuard(IntGauge);

impl GaugeGuard {
    fn new(g: &IntGauge) -> Self {
        g.inc();
        Self(g.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The WebSocket side of the revalidator's listener.
pub struct PushServer {
    core: Arc<Revalidator>,
    api: Api,
    send_queue: usize,
    max_message_bytes: usize,
    ping_every: Duration,
    connections: Arc<Semaphore>,
    shutdown: CancellationToken,
    next_id: AtomicU64,
}

impl PushServer {
    /// The push side for `core`; `shutdown` closes every connection (1001).
    pub fn new(
        core: Arc<Revalidator>,
        cfg: &RevalidatorConfig,
        shutdown: CancellationToken,
    ) -> Self {
        init_metrics();
        Self {
            api: Api::new(core.clone()),
            core,
            send_queue: cfg.push_send_queue.max(1),
            max_message_bytes: cfg.max_body_bytes,
            ping_every: cfg.push_ping_interval_ms.max(Duration::from_millis(1)),
            connections: Arc::new(Semaphore::new(cfg.push_max_connections)),
            shutdown,
            next_id: AtomicU64::new(1),
        }
    }
}

/// Adds the upgrade on `GET /` to the revalidator's router.
pub fn routes(router: Router, push: Arc<PushServer>) -> Router {
    router.route("/", get(upgrade).with_state(push))
}

async fn upgrade(
    State(push): State<Arc<PushServer>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    up: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(up) = up else {
        return "interop-gate revalidator: POST JSON-RPC here, or open a WebSocket to subscribe \
                to invalidTransactions.\n"
            .into_response();
    };
    let Ok(permit) = push.connections.clone().try_acquire_owned() else {
        push_metrics().closed.with_label_values(&["rejected_over_capacity"]).inc();
        return (StatusCode::SERVICE_UNAVAILABLE, "too many WebSocket connections; retry later\n")
            .into_response();
    };
    let max = push.max_message_bytes;
    // Each message is written at once (write buffer 0): the bounded queue is the only buffer.
    up.max_message_size(max).max_frame_size(max).write_buffer_size(0).on_upgrade(
        move |socket| async move {
            let id = push.next_id.fetch_add(1, Ordering::Relaxed);
            let span = tracing::info_span!("revalidator_ws", conn = id, client = %peer.ip());
            run(push, socket, peer, id, permit).instrument(span).await
        },
    )
}

/// One connection's shared state.
struct Conn {
    link: Outbound,
}

impl AsRef<Outbound> for Conn {
    fn as_ref(&self) -> &Outbound {
        &self.link
    }
}

impl Conn {
    /// Closes with `code`, a reason for the client and a metrics label (the first one wins).
    fn close(&self, code: u16, text: &'static str, label: &'static str) {
        self.link.close(code, text, label);
    }

    /// Queues a message; a full queue closes the connection (the client does not keep up).
    fn send(&self, text: String) -> bool {
        match self.link.out.try_send(Message::Text(text.into())) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close(POLICY, SLOW_REASON, "slow_client");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a message, waiting for room (catch-up: paced by the reader; a peer that stops
    /// reading misses its pings and is closed).
    async fn send_paced(&self, text: String) -> bool {
        tokio::select! {
            r = self.link.out.send(Message::Text(text.into())) => r.is_ok(),
            _ = self.link.closing.cancelled() => false,
        }
    }
}

async fn run(
    push: Arc<PushServer>,
    socket: WebSocket,
    peer: SocketAddr,
    id: u64,
    _permit: OwnedSemaphorePermit,
) {
    let m = push_metrics();
    let _open = GaugeGuard::new(&m.connections);
    let (sink, mut stream) = socket.split();
    let (out, out_rx) = mpsc::channel::<Message>(push.send_queue);
    let conn = Arc::new(Conn { link: Outbound::new(out, push.shutdown.child_token()) });
    let ctx = Arc::new(CallContext {
        client_ip: peer.ip(),
        request_id: format!("rws-{id:x}").into(),
        in_batch: false,
        api_key: None,
    });

    let writer = spawn_writer(sink, out_rx, conn.clone());

    let mut subs: HashMap<String, CancellationToken> = HashMap::new();
    let mut followers = JoinSet::new();
    let mut calls = JoinSet::new();
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + push.ping_every, push.ping_every);
    let mut awaiting_pong = false;
    loop {
        tokio::select! {
            _ = conn.link.closing.cancelled() => break,
            _ = ping.tick() => {
                if awaiting_pong {
                    conn.close(POLICY, "no pong to the last ping", "pong_timeout");
                    break;
                }
                awaiting_pong = true;
                if conn.link.out.try_send(Message::Ping(Default::default())).is_err() {
                    conn.close(POLICY, SLOW_REASON, "slow_client");
                    break;
                }
            }
            Some(_) = calls.join_next(), if !calls.is_empty() => {}
            Some(_) = followers.join_next(), if !followers.is_empty() => {}
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    on_text(&push, &conn, &ctx, text.as_str(), &mut subs, &mut followers, &mut calls);
                }
                Some(Ok(Message::Binary(_))) => {
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
                    conn.link.close_on_read_error(e);
                    break;
                }
            },
        }
    }
    conn.link.closing.cancel();
    calls.abort_all();
    followers.abort_all();
    while followers.join_next().await.is_some() {}
    let label = conn.link.label();
    m.closed.with_label_values(&[label]).inc();
    tracing::debug!(reason = label, "revalidator websocket closed");
    let _ = writer.await;
}
/// Answers one text message: subscribe and unsubscribe at once (so the answer is queued before
/// the first notification), any other method on a spawned task.
fn on_text(
    push: &Arc<PushServer>,
    conn: &Arc<Conn>,
    ctx: &Arc<CallContext>,
    text: &str,
    subs: &mut HashMap<String, CancellationToken>,
    followers: &mut JoinSet<()>,
    calls: &mut JoinSet<()>,
) {
    let reply = |id: &RawValue, r: Result<Box<RawValue>, RpcError>, label: &str| {
        count(LISTENER, label, r.as_ref().err().map_or(0, |e| e.code));
        conn.send(encode(id, r.as_deref()).0);
    };
    let raw: Box<RawValue> = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return reply(&null(), Err(RpcError::parse_error(e)), "-"),
    };
    if raw.get().starts_with('[') {
        let e = RpcError::invalid_request(
            "batches are not served over this WebSocket: send one request per message",
        );
        return reply(&null(), Err(e), "-");
    }
    let parsed = parse_request(&raw);
    let call = match parsed.call {
        Ok(c) => c,
        Err(e) => return reply(&parsed.reply_id, Err(e), "-"),
    };
    let answer = parsed.answer;
    let id = parsed.reply_id;
    match call.method.as_str() {
        SUBSCRIBE => {
            let r = subscribe(push, conn, &call, subs, followers);
            // The answer must precede the first notification: the follower waits for `go`.
            let (r, go) = match r {
                Ok((sub, go)) => (Ok(to_raw(&sub)), Some(go)),
                Err(e) => (Err(e), None),
            };
            if answer {
                reply(&id, r, SUBSCRIBE);
            }
            if let Some(go) = go {
                let _ = go.send(());
            }
        }
        UNSUBSCRIBE => {
            let r = call.parse_params::<(String,)>().map(|(sub,)| match subs.remove(&sub) {
                Some(stop) => {
                    stop.cancel();
                    to_raw(&true)
                }
                None => to_raw(&false),
            });
            if answer {
                reply(&id, r, UNSUBSCRIBE);
            }
        }
        _ => {
            if calls.len() >= MAX_IN_FLIGHT {
                let e = RpcError::new(
                    codes::OVER_CAPACITY,
                    format!(
                        "too many calls in flight on this connection (the limit is {MAX_IN_FLIGHT}); wait for answers"
                    ),
                );
                if answer {
                    reply(&id, Err(e), "-");
                }
                return;
            }
            let (push, conn, ctx) = (push.clone(), conn.clone(), ctx.clone());
            calls.spawn(async move {
                let label = push.api.method_label(&call.method);
                let r = push.api.call(&ctx, call).await;
                count(LISTENER, label, r.as_ref().err().map_or(0, |e| e.code));
                if answer {
                    conn.send(encode(&id, r.as_deref()).0);
                }
            });
        }
    }
}

/// Starts a subscription; returns its id and the signal that lets it start sending.
fn subscribe(
    push: &Arc<PushServer>,
    conn: &Arc<Conn>,
    call: &Call,
    subs: &mut HashMap<String, CancellationToken>,
    followers: &mut JoinSet<()>,
) -> Result<(String, tokio::sync::oneshot::Sender<()>), RpcError> {
    let params: Vec<serde_json::Value> = call.parse_params()?;
    match params.first().and_then(|k| k.as_str()) {
        Some(INVALID_TRANSACTIONS) => {}
        _ => {
            return Err(RpcError::invalid_params(format!(
                "unknown subscription: the only kind is \"{INVALID_TRANSACTIONS}\""
            )))
        }
    }
    let from = match params.get(1) {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Object(o)) => {
            if let Some(k) = o.keys().find(|k| k.as_str() != "fromCursor") {
                return Err(RpcError::invalid_params(format!(
                    "unknown subscription option {k:?}: the only one is \"fromCursor\""
                )));
            }
            parse_cursor(o.get("fromCursor"))?
        }
        Some(_) => return Err(RpcError::invalid_params("options must be an object {fromCursor}")),
    };
    if subs.len() >= MAX_SUBSCRIPTIONS {
        return Err(RpcError::new(
            codes::OVER_CAPACITY,
            format!("too many subscriptions on this connection (the limit is {MAX_SUBSCRIPTIONS})"),
        ));
    }
    let (updates, next) = push.core.feed_updates();
    let cursor = from.unwrap_or(next);
    let sub = format!("{:#x}", push.next_id.fetch_add(1, Ordering::Relaxed));
    let stop = conn.link.closing.child_token();
    subs.insert(sub.clone(), stop.clone());
    let (go, started) = tokio::sync::oneshot::channel();
    let follower = Follower { core: push.core.clone(), conn: conn.clone(), sub: sub.clone() };
    followers.spawn(async move {
        if started.await.is_ok() {
            follower.run(cursor, updates, stop).await;
        }
    });
    Ok((sub, go))
}

/// Walks the feed for one subscription and pushes what is new.
struct Follower {
    core: Arc<Revalidator>,
    conn: Arc<Conn>,
    sub: String,
}

impl Follower {
    async fn run(
        self,
        mut cursor: u64,
        mut updates: tokio::sync::watch::Receiver<u64>,
        stop: CancellationToken,
    ) {
        let m = push_metrics();
        let _open = GaugeGuard::new(&m.subscriptions);
        // History (a resuming client may be many pages behind) is sent at the reader's pace;
        // after that, a page that finds the queue full means the client does not keep up.
        let mut catching_up = true;
        loop {
            loop {
                let page = self.core.invalid_transactions(Some(cursor));
                // The first page goes out even when empty: it tells the client its starting
                // cursor, to persist before anything is published.
                if page.entries.is_empty() && !page.truncated && !catching_up {
                    break;
                }
                cursor = page.cursor;
                let more = page.more;
                let text = json!({
                    "jsonrpc": "2.0",
                    "method": NOTIFICATION,
                    "params": { "subscription": self.sub, "result": page },
                })
                .to_string();
                let sent = if catching_up {
                    self.conn.send_paced(text).await
                } else {
                    self.conn.send(text)
                };
                if !sent {
                    m.notifications.with_label_values(&["dropped"]).inc();
                    return;
                }
                m.notifications.with_label_values(&["sent"]).inc();
                catching_up &= more;
                if !more {
                    break;
                }
            }
            catching_up = false;
            tokio::select! {
                _ = stop.cancelled() => return,
                r = updates.changed() => if r.is_err() { return },
            }
        }
    }
}
