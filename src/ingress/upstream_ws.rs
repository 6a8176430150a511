//! The upstream side of a WebSocket client: one WebSocket to the EL (`upstream.ws_url`) per
//! client connection, opened on the client's first proxied call and closed when the client goes
//! (so the EL drops that client's subscriptions with it).
//!
//! Requests get the link's own numeric ids, so answers are matched whatever ids clients send;
//! the client's id is put back by the caller. Subscription notifications carry the EL's
//! subscription id, which is what the client received from `eth_subscribe`, and are relayed
//! verbatim. When the link drops, calls in flight get -32603; a client with open subscriptions is
//! told to reconnect (its subscriptions died with the link); otherwise the next call reconnects,
//! no sooner than `reconnect_backoff_ms` after a failed attempt.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::ws_metrics::{message, ws_metrics, GaugeGuard};
use crate::metrics::metrics;
use crate::rpc::codes;
use crate::rpc::types::{Call, RpcError};

/// The subscription methods.
pub const SUBSCRIBE: &str = "eth_subscribe";
/// See [`SUBSCRIBE`].
pub const UNSUBSCRIBE: &str = "eth_unsubscribe";

/// Settings shared by every client's upstream link.
#[derive(Debug, Clone)]
pub struct UpstreamWsSettings {
    /// `ws://` or `wss://` URL.
    pub url: url::Url,
    /// Per call (and per connection attempt).
    pub timeout: Duration,
    /// Largest message accepted from the upstream.
    pub max_message_bytes: usize,
    /// Fail fast for this long after a failed connection attempt.
    pub reconnect_backoff: Duration,
    /// Open subscriptions per client.
    pub max_subscriptions: usize,
    /// Subscription kinds allowed.
    pub kinds: Vec<String>,
}

/// What the link hands back to the client connection.
pub trait ClientSink: Send + Sync + 'static {
    /// Relays a notification; false when the client cannot take it (it is then being closed).
    fn notify(&self, text: String) -> bool;
    /// The link died while the client had subscriptions: the client must reconnect.
    fn upstream_lost(&self);
}

type Pending = Mutex<HashMap<u64, oneshot::Sender<Result<Box<RawValue>, RpcError>>>>;

/// One live WebSocket to the upstream.
struct Link {
    out: mpsc::Sender<String>,
    pending: Pending,
    next_id: AtomicU64,
    dead: AtomicBool,
    stop: CancellationToken,
}

/// A client's upstream session: the link (when open) and the client's subscriptions.
pub struct UpstreamSession {
    settings: Arc<UpstreamWsSettings>,
    shared: Arc<Shared>,
    link: tokio::sync::Mutex<Option<Arc<Link>>>,
    failed: Mutex<Option<(Instant, String)>>,
}

/// The part the link's task reaches back into (weakly: the session owns the link).
struct Shared {
    client: Box<dyn ClientSink>,
    /// Open subscription ids and their kind, plus slots reserved by subscribes in flight.
    subs: Mutex<(HashMap<String, &'static str>, usize)>,
}

#[derive(Serialize)]
struct OutRequest<'a> {
    jsonrpc: &'static str,
    id: u64,
    method: &'a str,
    params: &'a RawValue,
}

/// What the upstream sends: an answer (`id`) or a notification (`method`).
#[derive(Deserialize)]
struct Incoming {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<RpcError>,
}

fn unavailable(detail: impl std::fmt::Display) -> RpcError {
    RpcError::internal(format!("upstream websocket unavailable: {detail}"))
}

impl UpstreamSession {
    /// A session that relays notifications to `client`; no connection is opened yet.
    pub fn new(settings: Arc<UpstreamWsSettings>, client: Box<dyn ClientSink>) -> Self {
        Self {
            settings,
            shared: Arc::new(Shared { client, subs: Mutex::new((HashMap::new(), 0)) }),
            link: tokio::sync::Mutex::new(None),
            failed: Mutex::new(None),
        }
    }

    /// Open subscriptions.
    pub fn subscriptions(&self) -> usize {
        self.shared.subs.lock().map(|s| s.0.len()).unwrap_or(0)
    }

    /// Proxies one call and returns the upstream's result or error (errors verbatim).
    pub async fn call(&self, call: &Call) -> Result<Box<RawValue>, RpcError> {
        let kind = if call.method == SUBSCRIBE { Some(self.reserve(call)?) } else { None };
        let result = self.call_link(call).await;
        if let Some(kind) = kind {
            self.settle_subscribe(kind, &result);
        } else if call.method == UNSUBSCRIBE {
            self.settle_unsubscribe(call, &result);
        }
        result
    }

    /// Checks the kind and takes a subscription slot, or refuses before touching the upstream.
    fn reserve(&self, call: &Call) -> Result<&'static str, RpcError> {
        let params: Vec<serde_json::Value> = call.parse_params()?;
        let kind = params.first().and_then(|k| k.as_str()).unwrap_or_default();
        let Some(kind) = self.settings.kinds.iter().find(|k| *k == kind) else {
            return Err(RpcError::invalid_params(format!(
                "subscription kind {kind:?} is not available here (allowed: {})",
                self.settings.kinds.join(", ")
            )));
        };
        let mut subs = self.shared.subs.lock().map_err(|_| RpcError::internal("poisoned"))?;
        if subs.0.len() + subs.1 >= self.settings.max_subscriptions {
            return Err(RpcError::new(
                codes::OVER_CAPACITY,
                format!(
                    "too many subscriptions on this connection (the limit is {}); unsubscribe first",
                    self.settings.max_subscriptions
                ),
            ));
        }
        subs.1 += 1;
        // Kinds come from config: a bounded set, leaked once each for metric labels.
        Ok(kind_label(kind))
    }

    fn settle_subscribe(&self, kind: &'static str, result: &Result<Box<RawValue>, RpcError>) {
        let Ok(mut subs) = self.shared.subs.lock() else { return };
        subs.1 = subs.1.saturating_sub(1);
        if let Some(id) = result.as_ref().ok().and_then(|r| serde_json::from_str(r.get()).ok()) {
            if subs.0.insert(id, kind).is_none() {
                ws_metrics().subscriptions.with_label_values(&[kind]).inc();
            }
        }
    }

    fn settle_unsubscribe(&self, call: &Call, result: &Result<Box<RawValue>, RpcError>) {
        if !matches!(result.as_ref().map(|r| r.get()), Ok("true")) {
            return;
        }
        let id: Option<String> = call
            .parse_params::<Vec<serde_json::Value>>()
            .ok()
            .and_then(|p| p.first().and_then(|v| v.as_str().map(str::to_owned)));
        if let (Some(id), Ok(mut subs)) = (id, self.shared.subs.lock()) {
            if let Some(kind) = subs.0.remove(&id) {
                ws_metrics().subscriptions.with_label_values(&[kind]).dec();
            }
        }
    }

    async fn call_link(&self, call: &Call) -> Result<Box<RawValue>, RpcError> {
        let span = tracing::info_span!("upstream_ws", method = %call.method);
        async {
            let start = Instant::now();
            let result = self.exchange(call).await;
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) if e.code == codes::INTERNAL_ERROR => "transport",
                Err(_) => "rpc_error",
            };
            let m = metrics();
            m.external_calls.with_label_values(&["upstream_ws", "upstream", outcome]).inc();
            m.external_duration
                .with_label_values(&["upstream_ws", "upstream"])
                .observe(start.elapsed().as_secs_f64());
            result
        }
        .instrument(span)
        .await
    }

    async fn exchange(&self, call: &Call) -> Result<Box<RawValue>, RpcError> {
        let link = self.link().await?;
        let id = link.next_id.fetch_add(1, Ordering::Relaxed);
        let empty = RawValue::from_string("[]".into()).map_err(RpcError::internal)?;
        let params = call.params.as_deref().unwrap_or(&empty);
        let text =
            serde_json::to_string(&OutRequest { jsonrpc: "2.0", id, method: &call.method, params })
                .map_err(RpcError::internal)?;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = link.pending.lock() {
            p.insert(id, tx);
        }
        if link.dead.load(Ordering::Acquire) {
            // It died between the check and the insert: its task has already failed the rest.
            link.forget(id);
            return Err(unavailable("the connection closed"));
        }
        let timeout = self.settings.timeout;
        let sent = tokio::time::timeout(timeout, link.out.send(text)).await;
        if !matches!(sent, Ok(Ok(()))) {
            link.forget(id);
            message("upstream_out", "failed");
            return Err(unavailable("the connection closed"));
        }
        message("upstream_out", "ok");
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(unavailable("the connection closed before answering")),
            Err(_) => {
                link.forget(id);
                Err(RpcError::internal(format!(
                    "upstream timeout after {} ms",
                    timeout.as_millis()
                )))
            }
        }
    }

    /// The open link, connecting when there is none (at most one attempt per backoff period).
    async fn link(&self) -> Result<Arc<Link>, RpcError> {
        let mut slot = self.link.lock().await;
        if let Some(l) = slot.as_ref().filter(|l| !l.dead.load(Ordering::Acquire)) {
            return Ok(l.clone());
        }
        if let Ok(f) = self.failed.lock() {
            if let Some((at, why)) =
                f.as_ref().filter(|(at, _)| at.elapsed() < self.settings.reconnect_backoff)
            {
                let left = self.settings.reconnect_backoff.saturating_sub(at.elapsed());
                return Err(unavailable(format!("{why}; next attempt in {} ms", left.as_millis())));
            }
        }
        match self.connect().await {
            Ok(l) => {
                ws_metrics().upstream_connects.with_label_values(&["ok"]).inc();
                *slot = Some(l.clone());
                Ok(l)
            }
            Err(why) => {
                ws_metrics().upstream_connects.with_label_values(&["failed"]).inc();
                tracing::warn!(error = %why, "upstream websocket connection failed");
                if let Ok(mut f) = self.failed.lock() {
                    *f = Some((Instant::now(), why.clone()));
                }
                Err(unavailable(why))
            }
        }
    }

    async fn connect(&self) -> Result<Arc<Link>, String> {
        // Read in 16 KiB chunks (the buffer grows for large results) rather than tungstenite's
        // 128 KiB per connection up front: one link per client adds up.
        let config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .max_message_size(Some(self.settings.max_message_bytes))
            .max_frame_size(Some(self.settings.max_message_bytes));
        let connecting = tokio_tungstenite::connect_async_with_config(
            self.settings.url.as_str(),
            Some(config),
            true,
        );
        let (ws, _) = match tokio::time::timeout(self.settings.timeout, connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(format!("connect failed: {e}")),
            Err(_) => {
                return Err(format!(
                    "connect timed out after {} ms",
                    self.settings.timeout.as_millis()
                ))
            }
        };
        // In-flight calls per client are bounded by the client side; this queue only smooths.
        let (out, out_rx) = mpsc::channel(64);
        let link = Arc::new(Link {
            out,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            dead: AtomicBool::new(false),
            stop: CancellationToken::new(),
        });
        tokio::spawn(run_link(ws, out_rx, link.clone(), Arc::downgrade(&self.shared)));
        Ok(link)
    }
}

impl Drop for UpstreamSession {
    fn drop(&mut self) {
        // The client went: close the link (the EL drops its subscriptions with it).
        if let Ok(slot) = self.link.try_lock() {
            if let Some(l) = slot.as_ref() {
                l.stop.cancel();
            }
        }
        if let Ok(subs) = self.shared.subs.lock() {
            for kind in subs.0.values() {
                ws_metrics().subscriptions.with_label_values(&[kind]).dec();
            }
        }
    }
}

impl Link {
    fn forget(&self, id: u64) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&id);
        }
    }

    /// Routes one upstream message: an answer to its waiting call, a notification to the client.
    fn route(&self, text: &str, shared: &Shared) {
        let Ok(msg) = serde_json::from_str::<Incoming>(text) else {
            message("upstream_in", "unmatched");
            return;
        };
        if msg.method.as_deref() == Some("eth_subscription") {
            message("upstream_in", "notification");
            shared.client.notify(text.to_owned());
            return;
        }
        let waiting = msg
            .id
            .as_ref()
            .and_then(serde_json::Value::as_u64)
            .and_then(|id| self.pending.lock().ok().and_then(|mut p| p.remove(&id)));
        let Some(tx) = waiting else {
            message("upstream_in", "unmatched");
            return;
        };
        message("upstream_in", "response");
        let answer = match (msg.result, msg.error) {
            (_, Some(e)) => Err(e),
            (Some(r), None) => Ok(r),
            (None, None) => Err(unavailable("an answer with neither result nor error")),
        };
        let _ = tx.send(answer);
    }
}

async fn run_link<S>(
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    mut out: mpsc::Receiver<String>,
    link: Arc<Link>,
    shared: Weak<Shared>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _open = GaugeGuard::new(ws_metrics().connections.with_label_values(&["upstream"]));
    let why = loop {
        tokio::select! {
            _ = link.stop.cancelled() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                break None;
            }
            m = out.recv() => match m {
                Some(text) => {
                    if let Err(e) = ws.send(Message::text(text)).await {
                        break Some(format!("send failed: {e}"));
                    }
                }
                None => break None,
            },
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => match shared.upgrade() {
                    Some(s) => link.route(t.as_str(), &s),
                    None => break None,
                },
                Some(Ok(Message::Close(_))) | None => break Some("the upstream closed the connection".into()),
                Some(Err(e)) => break Some(format!("read failed: {e}")),
                Some(Ok(_)) => {}
            },
        }
    };
    link.dead.store(true, Ordering::Release);
    let waiting: Vec<_> = link.pending.lock().map(|mut p| p.drain().collect()).unwrap_or_default();
    for (_, tx) in waiting {
        let _ = tx.send(Err(unavailable("the connection closed before answering")));
    }
    if let (Some(why), Some(shared)) = (why, shared.upgrade()) {
        tracing::warn!(error = %why, "upstream websocket lost");
        let had_subs = shared
            .subs
            .lock()
            .map(|mut s| {
                for kind in s.0.values() {
                    ws_metrics().subscriptions.with_label_values(&[kind]).dec();
                }
                let had = !s.0.is_empty();
                s.0.clear();
                had
            })
            .unwrap_or(false);
        if had_subs {
            shared.client.upstream_lost();
        }
    }
}

/// A `'static` label for a configured subscription kind (leaked once per distinct kind; kinds
/// come from config, so the set is bounded).
fn kind_label(kind: &str) -> &'static str {
    static KINDS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let Ok(mut g) = KINDS.lock() else { return "other" };
    let set = g.get_or_insert_with(HashSet::new);
    if let Some(k) = set.get(kind) {
        return k;
    }
    let k: &'static str = Box::leak(kind.to_owned().into_boxed_str());
    set.insert(k);
    k
}
