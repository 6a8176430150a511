//! Follows the EL's pending pool into the [`PoolMirror`] over the EL's WebSocket.
//!
//! Two tasks: the reader holds the socket (`newPendingTransactions` with full tx objects, and
//! `newHeads`), puts announced txs into the mirror and queues heads; the keeper reads each head's
//! block (sender and nonce of its txs, over HTTP) to drop what was included, and reconciles the
//! mirror with a full `txpool_content` every `reconcile_interval_ms`, after every
//! (re)subscription, and at once when a head does not extend the one followed (a reorg of the
//! executing chain: txs of dropped blocks go back to the pool unannounced).
//!
//! The mirror is *live* (passes read it) only while subscribed and reconciled since subscribing.
//! Otherwise (no `el_ws_url`, an EL that refuses the subscription or sends only hashes, a lost
//! socket, a message over `el_ws_max_message_bytes`) passes read `txpool_content` whole, as
//! without a mirror, and the reason is logged once per change of mode (and shown by
//! `interop_revalidationStatus().mirror.reason`). Frames that are not a notification the mirror
//! can use (garbage, truncated JSON, binary, unknown subscriptions) are counted as undecodable and
//! skipped: reconciliation repairs whatever they should have said.
//!
//! An EL that sends only hashes (it ignores the full-objects flag) is not asked again every
//! `el_ws_reconnect_ms` but every `reconcile_interval_ms`: it will not change its mind soon, and
//! each subscription costs a full read. Fetching each announced tx by hash would cost one call
//! per tx, more than the full reads it saves at sequencer rates.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::mirror::{HeadStep, PoolMirror};
use super::pool::{decode_head_ref, decode_pool_tx, ElPool, HeadRef};
use crate::config::RevalidatorConfig;
use crate::metrics::metrics;

/// The periodic reconciliation waits at least this many times as long as the last read took:
/// a full read's cost grows with the pool (~5 s of CPU at 1M txs), so at most ~1/50 of the
/// time goes to them whatever the pool's size (at 1M, every ~4 min rather than every 30 s).
/// Reads a reorg, a resubscription or a dropped head ask for run at once all the same.
const READ_SHARE: u32 = 50;

/// How long the periodic reconciliation waits after one that took `took` (a read is bounded by
/// `el_timeout_ms`, and the wait by an hour whatever it took).
fn periodic_wait(every: Duration, took: Duration) -> Duration {
    every.max(took.saturating_mul(READ_SHARE).min(Duration::from_secs(3_600)))
}

/// Heads queued between the reader and the keeper; beyond it a head is dropped and the mirror
/// reconciled instead (a keeper that far behind is better served by one full read).
const HEAD_QUEUE: usize = 64;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Why following stopped or could not start.
#[derive(Debug)]
enum Stop {
    /// The EL does not offer what the mirror needs: poll instead.
    Unsupported(String),
    /// The EL announces pending txs by hash only: poll, and ask again only now and then.
    HashesOnly,
    /// The socket failed (connect, read, or a message over the size bound).
    Failed(String),
    /// Shutting down.
    Shutdown,
}

/// The follower of one EL.
pub struct Follower {
    url: url::Url,
    mirror: Mutex<PoolMirror>,
    pool: ElPool,
    timeout: Duration,
    max_message_bytes: usize,
    reconnect: Duration,
    reconcile_every: Duration,
    /// Incremented on every successful subscription; 0: never subscribed.
    epoch: AtomicU64,
    subscribed: AtomicBool,
    live: AtomicBool,
    reconcile_now: Notify,
    reconciliations: AtomicU64,
    /// The periodic reconciliation's current wait, ms (see [`periodic_wait`]).
    reconcile_wait_ms: AtomicU64,
    /// Why the mirror is not live (`None` while it is, or before the first attempt).
    reason: Mutex<Option<String>>,
}

fn lock(m: &Mutex<PoolMirror>) -> MutexGuard<'_, PoolMirror> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Follower {
    /// A follower of `cfg.el_ws_url`; `None` when none is configured.
    pub fn new(cfg: &RevalidatorConfig) -> Option<Arc<Self>> {
        let url = cfg.el_ws_url.clone()?;
        let timeout = cfg.el_timeout_ms;
        Some(Arc::new(Self {
            url,
            mirror: Mutex::new(PoolMirror::new(cfg.max_pool_txs)),
            pool: ElPool::new(&cfg.el_url, timeout, cfg.max_pool_txs, cfg.el_max_response_bytes),
            timeout,
            max_message_bytes: cfg.el_ws_max_message_bytes,
            reconnect: cfg.el_ws_reconnect_ms,
            reconcile_every: cfg.reconcile_interval_ms,
            epoch: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
            live: AtomicBool::new(false),
            reconcile_now: Notify::new(),
            reconciliations: AtomicU64::new(0),
            reconcile_wait_ms: AtomicU64::new(cfg.reconcile_interval_ms.as_millis() as u64),
            reason: Mutex::new(None),
        }))
    }

    /// True when passes may read the mirror instead of the whole pool.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    /// The mirror (held only for synchronous work: a pass's placement and planning).
    pub fn mirror(&self) -> MutexGuard<'_, PoolMirror> {
        lock(&self.mirror)
    }

    /// What `interop_revalidationStatus` shows about the mirror.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": if self.is_live() { "subscription" } else { "polling" },
            "txs": lock(&self.mirror).len(),
            "subscriptions": self.epoch.load(Ordering::SeqCst),
            "reconciliations": self.reconciliations.load(Ordering::SeqCst),
            "reconcileEveryMs": self.reconcile_wait_ms.load(Ordering::SeqCst),
            "reason": if self.is_live() { None } else { self.reason.lock().unwrap_or_else(|e| e.into_inner()).clone() },
        })
    }

    fn set_live(&self, on: bool) {
        self.live.store(on, Ordering::SeqCst);
        metrics().revalidator_state.with_label_values(&["mirror_live"]).set(i64::from(on));
    }

    /// Follows the EL until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let (heads, heads_rx) = mpsc::channel(HEAD_QUEUE);
        let keeper = tokio::spawn(self.clone().keep(heads_rx, shutdown.clone()));
        let mut last_why: Option<String> = None;
        loop {
            let stop = self.follow_once(&heads, &shutdown).await;
            self.subscribed.store(false, Ordering::SeqCst);
            self.set_live(false);
            let events = &metrics().revalidator_mirror_events;
            let mut retry = self.reconnect;
            let why = match stop {
                Stop::Shutdown => break,
                Stop::Unsupported(why) => {
                    events.with_label_values(&["unsupported"]).inc();
                    format!("the EL offers no usable newPendingTransactions subscription ({why})")
                }
                Stop::HashesOnly => {
                    events.with_label_values(&["unsupported"]).inc();
                    retry = self.reconnect.max(self.reconcile_every);
                    "the EL sends newPendingTransactions as hashes only (it ignores the \
                     full-objects flag)"
                        .to_owned()
                }
                Stop::Failed(why) => {
                    events.with_label_values(&["lost"]).inc();
                    format!("the EL WebSocket is unavailable ({why})")
                }
            };
            if last_why.as_deref() != Some(why.as_str()) {
                tracing::warn!(target: "interop_gate::revalidator", reason = %why, retry_ms = retry.as_millis() as u64, "pool mirror: falling back to full txpool_content polling on every pass");
                last_why = Some(why.clone());
            }
            *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(retry) => {}
            }
        }
        let _ = keeper.await;
    }

    async fn follow_once(
        &self,
        heads: &mpsc::Sender<HeadRef>,
        shutdown: &CancellationToken,
    ) -> Stop {
        let url = crate::rpc::client::redact(&self.url);
        let span = tracing::info_span!("el_ws", url = %url);
        let subscribed = tokio::select! {
            _ = shutdown.cancelled() => return Stop::Shutdown,
            s = self.subscribe().instrument(span.clone()) => s,
        };
        let (ws, pending_id, heads_id) = match subscribed {
            Ok(s) => s,
            Err(stop) => return stop,
        };
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.subscribed.store(true, Ordering::SeqCst);
        metrics().revalidator_mirror_events.with_label_values(&["subscribed"]).inc();
        tracing::info!(target: "interop_gate::revalidator", parent: &span, "pool mirror: following the EL pool over WebSocket (newPendingTransactions, newHeads)");
        // What happened while not subscribed is only in a full read.
        self.reconcile_now.notify_one();
        self.read(ws, &pending_id, &heads_id, heads, shutdown).instrument(span).await
    }

    async fn subscribe(&self) -> Result<(Ws, String, String), Stop> {
        let config = WebSocketConfig::default()
            .read_buffer_size(64 * 1024)
            .max_message_size(Some(self.max_message_bytes))
            .max_frame_size(Some(self.max_message_bytes));
        let connecting =
            tokio_tungstenite::connect_async_with_config(self.url.as_str(), Some(config), true);
        let mut ws = match tokio::time::timeout(self.timeout, connecting).await {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => return Err(Stop::Failed(format!("connect failed: {e}"))),
            Err(_) => return Err(Stop::Failed("connect timed out".into())),
        };
        let heads_id = self.call_subscribe(&mut ws, 1, serde_json::json!(["newHeads"])).await?;
        let pending_id = self
            .call_subscribe(&mut ws, 2, serde_json::json!(["newPendingTransactions", true]))
            .await?;
        Ok((ws, pending_id, heads_id))
    }

    /// Sends one `eth_subscribe` and waits (bounded) for its answer; notifications arriving
    /// meanwhile are dropped (the reconciliation that follows covers them).
    async fn call_subscribe(
        &self,
        ws: &mut Ws,
        id: u64,
        params: serde_json::Value,
    ) -> Result<String, Stop> {
        let call = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "eth_subscribe", "params": params});
        let answer = async {
            ws.send(Message::Text(call.to_string().into()))
                .await
                .map_err(|e| Stop::Failed(format!("send: {e}")))?;
            loop {
                let text = match ws.next().await {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None => {
                        return Err(Stop::Failed("closed during subscription".into()))
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(Stop::Failed(format!("read: {e}"))),
                };
                let Ok(reply) = serde_json::from_str::<Reply>(&text) else { continue };
                if reply.id != Some(id) {
                    continue;
                }
                return match (reply.result, reply.error) {
                    (Some(sub), _) => Ok(sub),
                    (None, Some(e)) => Err(Stop::Unsupported(format!(
                        "eth_subscribe {}: {} {}",
                        params, e.code, e.message
                    ))),
                    (None, None) => Err(Stop::Unsupported("eth_subscribe: empty answer".into())),
                };
            }
        };
        tokio::time::timeout(self.timeout, answer)
            .await
            .unwrap_or_else(|_| Err(Stop::Failed("eth_subscribe timed out".into())))
    }

    async fn read(
        &self,
        mut ws: Ws,
        pending_id: &str,
        heads_id: &str,
        heads: &mpsc::Sender<HeadRef>,
        shutdown: &CancellationToken,
    ) -> Stop {
        let events = &metrics().revalidator_mirror_events;
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = ws.close(None).await;
                    return Stop::Shutdown;
                }
                m = ws.next() => m,
            };
            let text = match msg {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(_))) | None => {
                    return Stop::Failed("closed by the EL".into())
                }
                Some(Ok(Message::Binary(_))) => {
                    events.with_label_values(&["undecodable"]).inc();
                    continue;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Stop::Failed(read_error(&e, self.max_message_bytes)),
            };
            let Ok(note) = serde_json::from_str::<Notification<'_>>(&text) else {
                // Not JSON, cut short, or not a notification: nothing the mirror can use.
                events.with_label_values(&["undecodable"]).inc();
                continue;
            };
            let result = note.params.result.get();
            if note.params.subscription == pending_id {
                if result.starts_with('"') {
                    // Hashes only: the EL ignored the full-objects flag.
                    let _ = ws.close(None).await;
                    return Stop::HashesOnly;
                }
                match decode_pool_tx(result) {
                    Some(tx) => {
                        let outcome = lock(&self.mirror).insert(tx);
                        events.with_label_values(&[outcome.as_str()]).inc();
                    }
                    None => events.with_label_values(&["undecodable"]).inc(),
                }
            } else if note.params.subscription == heads_id {
                let Ok(head) = decode_head_ref(result) else {
                    events.with_label_values(&["undecodable"]).inc();
                    continue;
                };
                if heads.try_send(head).is_err() {
                    // The keeper is that far behind: this head's inclusions are repaired by the
                    // reconciliation asked for here instead.
                    events.with_label_values(&["heads_dropped"]).inc();
                    self.reconcile_now.notify_one();
                }
            } else {
                events.with_label_values(&["undecodable"]).inc();
            }
        }
    }

    /// Applies heads and runs reconciliations.
    async fn keep(
        self: Arc<Self>,
        mut heads: mpsc::Receiver<HeadRef>,
        shutdown: CancellationToken,
    ) {
        let mut next = tokio::time::Instant::now() + self.reconcile_every;
        loop {
            let reconcile = tokio::select! {
                _ = shutdown.cancelled() => return,
                h = heads.recv() => match h {
                    Some(h) => self.apply_head(h).await,
                    None => return,
                },
                _ = tokio::time::sleep_until(next) => true,
                _ = self.reconcile_now.notified() => true,
            };
            if reconcile && self.subscribed.load(Ordering::SeqCst) {
                let started = tokio::time::Instant::now();
                // A read that failed is retried at the interval: its cost says nothing of the
                // pool's size (it may have waited for a timeout).
                let took = if self.reconcile().await { started.elapsed() } else { Duration::ZERO };
                let wait = periodic_wait(self.reconcile_every, took);
                self.reconcile_wait_ms.store(wait.as_millis() as u64, Ordering::SeqCst);
                next = tokio::time::Instant::now() + wait;
            } else if reconcile {
                next = tokio::time::Instant::now() + self.reconcile_every;
            }
        }
    }

    /// Drops what `h`'s block included; true when the mirror must be reconciled.
    async fn apply_head(&self, h: HeadRef) -> bool {
        let events = &metrics().revalidator_mirror_events;
        let (Some(hash), Some(parent)) = (h.hash, h.parent) else {
            events.with_label_values(&["undecodable"]).inc();
            return true;
        };
        let followed = lock(&self.mirror).snapshot().head.number;
        if h.head.number < followed {
            // Queued before a reconciliation that already read past it (the keeper fell
            // behind): its inclusions are in that read, and following it would step back.
            tracing::debug!(target: "interop_gate::revalidator", block = h.head.number, followed, "pool mirror: skipping a head older than the one followed");
            return false;
        }
        let (included, failed) = match self.pool.included(hash).await {
            Ok(inc) => (inc, false),
            Err(e) => {
                tracing::warn!(target: "interop_gate::revalidator", error = %e, block = h.head.number, "pool mirror: cannot read a new block's txs; reconciling");
                (Vec::new(), true)
            }
        };
        let (step, removed) = lock(&self.mirror).follow_head(h.head, hash, parent, &included);
        events.with_label_values(&["included"]).inc_by(removed as u64);
        if step == HeadStep::Discontinuous {
            events.with_label_values(&["reorg"]).inc();
            tracing::info!(target: "interop_gate::revalidator", block = h.head.number, "pool mirror: the new head does not extend the one followed (reorg or missed heads); reconciling");
        }
        failed || step == HeadStep::Discontinuous
    }

    /// One full read that repairs the mirror, the deltas since its start re-applied on top;
    /// false when the read failed (the mirror is left as the deltas made it).
    async fn reconcile(&self) -> bool {
        let epoch = self.epoch.load(Ordering::SeqCst);
        lock(&self.mirror).begin_reconcile();
        let m = metrics();
        // The read goes into the mirror batch by batch as it is decoded: never a second copy
        // of the pool (~120 MB at 1M txs). Each batch holds the lock for a few milliseconds.
        let (to_mirror, mut batches) = mpsc::channel(2);
        let apply = async {
            while let Some(batch) = batches.recv().await {
                lock(&self.mirror).apply_read(batch);
            }
        };
        let (read, ()) = tokio::join!(self.pool.fetch_ref_batched(to_mirror), apply);
        match read {
            Ok((snap, hash)) => {
                m.revalidator_skipped
                    .with_label_values(&["undecodable"])
                    .inc_by(snap.undecodable as u64);
                m.revalidator_skipped
                    .with_label_values(&["over_limit"])
                    .inc_by(snap.over_limit as u64);
                let (repair, len) = {
                    let mut mirror = lock(&self.mirror);
                    (mirror.finish_reconcile(snap.head, snap.txs, hash), mirror.len())
                };
                self.reconciliations.fetch_add(1, Ordering::SeqCst);
                m.revalidator_mirror_repairs
                    .with_label_values(&["added"])
                    .inc_by(repair.added as u64);
                m.revalidator_mirror_repairs
                    .with_label_values(&["removed"])
                    .inc_by(repair.removed as u64);
                m.revalidator_state.with_label_values(&["mirror_txs"]).set(len as i64);
                if repair != Default::default() {
                    tracing::debug!(target: "interop_gate::revalidator", added = repair.added, removed = repair.removed, "pool mirror: reconciliation repaired drift");
                }
                let same_socket = self.subscribed.load(Ordering::SeqCst)
                    && self.epoch.load(Ordering::SeqCst) == epoch;
                if same_socket && !self.is_live() {
                    tracing::info!(target: "interop_gate::revalidator", txs = len, "pool mirror: live; passes read it instead of txpool_content");
                }
                self.set_live(same_socket);
                true
            }
            Err(e) => {
                lock(&self.mirror).abandon_reconcile();
                tracing::warn!(target: "interop_gate::revalidator", error = %e, "pool mirror: reconciliation read failed; retrying on the next head or interval");
                false
            }
        }
    }
}

/// Why reading the socket failed, in words (a message over the bound says which bound).
fn read_error(e: &tungstenite::Error, max: usize) -> String {
    match e {
        tungstenite::Error::Capacity(c) => {
            format!("a message over el_ws_max_message_bytes ({max} bytes): {c}")
        }
        e => format!("read: {e}"),
    }
}

#[derive(Deserialize)]
struct RpcErr {
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    error: Option<RpcErr>,
}

#[derive(Deserialize)]
struct Notification<'a> {
    #[serde(borrow)]
    params: NoteParams<'a>,
}

#[derive(Deserialize)]
struct NoteParams<'a> {
    subscription: String,
    #[serde(borrow)]
    result: &'a RawValue,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_periodic_read_waits_the_interval_or_fifty_times_the_last_read() {
        let every = Duration::from_secs(30);
        assert_eq!(periodic_wait(every, Duration::from_millis(20)), every, "a small pool");
        assert_eq!(periodic_wait(every, Duration::from_secs(1)), Duration::from_secs(50));
        assert_eq!(periodic_wait(every, Duration::from_millis(4_600)), Duration::from_secs(230));
        assert_eq!(periodic_wait(every, Duration::MAX), Duration::from_secs(3_600), "bounded");
    }
}
