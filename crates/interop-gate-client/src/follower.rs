//! The feed follower: push first, polling when push is unavailable, one cursor for both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::B256;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::rpc::{rpc_result, Client, Error, FeedEntry, FeedPage};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Where the follower's cursor survives restarts (a file, a database row, …).
pub trait CursorStore: Send + Sync {
    /// The saved cursor (`None`: start from what the revalidator still keeps).
    fn load(&self) -> Option<u64>;
    /// Saves the cursor after the batch before it was handled.
    fn save(&self, cursor: u64);
}

/// A cursor kept in memory (lost on restart: the follower then re-reads what is kept, which is
/// harmless: dropping a tx that is gone is a no-op).
#[derive(Debug, Default, Clone)]
pub struct MemoryCursor(Arc<AtomicU64>);

impl CursorStore for MemoryCursor {
    fn load(&self) -> Option<u64> {
        Some(self.0.load(Ordering::SeqCst)).filter(|c| *c != 0)
    }
    fn save(&self, cursor: u64) {
        self.0.store(cursor, Ordering::SeqCst);
    }
}

/// How a batch arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// WebSocket subscription.
    Push,
    /// `interop_invalidTransactions` polling.
    Poll,
}

/// Metrics hooks (all optional; wire them to your registry).
pub trait Hooks: Send + Sync {
    /// A batch is handed out.
    fn on_batch(&self, _entries: usize, _via: Via) {}
    /// A call or the connection failed; the follower backs off `_backoff` and retries.
    fn on_error(&self, _error: &Error, _backoff: Duration) {}
    /// Subscribed over WebSocket, or fell back to polling.
    fn on_source(&self, _via: Via) {}
    /// The revalidator says entries may have been missed (its history was exceeded, or it
    /// restarted): the batch holds everything it still keeps.
    fn on_truncated(&self) {}
}

/// Shared hooks (keep a handle to read what they counted).
impl<T: Hooks + ?Sized> Hooks for Arc<T> {
    fn on_batch(&self, entries: usize, via: Via) {
        (**self).on_batch(entries, via)
    }
    fn on_error(&self, error: &Error, backoff: Duration) {
        (**self).on_error(error, backoff)
    }
    fn on_source(&self, via: Via) {
        (**self).on_source(via)
    }
    fn on_truncated(&self) {
        (**self).on_truncated()
    }
}

/// No hooks.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl Hooks for NoHooks {}

/// Settings.
#[derive(Debug, Clone)]
pub struct FollowerConfig {
    /// The revalidator's HTTP URL (`http://host:8561/`); the WebSocket is the same with `ws://`.
    pub url: String,
    /// Subscribe over WebSocket (else poll only).
    pub push: bool,
    /// Poll interval while polling.
    pub poll_interval: Duration,
    /// While polling, how often to try the WebSocket again.
    pub retry_push_every: Duration,
    /// First and largest backoff after an error (doubling in between).
    pub backoff: (Duration, Duration),
    /// Bound on each HTTP call and on the WebSocket connect.
    pub timeout: Duration,
    /// A subscription silent this long (no notification, no ping) is considered dead.
    pub read_timeout: Duration,
}

impl FollowerConfig {
    /// Defaults for `url`: push, 1 s polling, push retried every 30 s, backoff 100 ms..5 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            push: true,
            poll_interval: Duration::from_secs(1),
            retry_push_every: Duration::from_secs(30),
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(90),
        }
    }
}

/// One batch of txs to drop.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The entries (hash, code, reason, …).
    pub entries: Vec<FeedEntry>,
    /// Entries may have been missed before these (see [`Hooks::on_truncated`]).
    pub truncated: bool,
    /// How it arrived.
    pub via: Via,
}

impl Batch {
    /// The hashes to drop from the pool.
    pub fn hashes(&self) -> Vec<B256> {
        self.entries.iter().map(|e| e.hash).collect()
    }
}

enum Source {
    Push(Box<Ws>),
    Poll { since_push_try: Instant },
}

/// Follows the feed; see the crate docs.
pub struct Follower {
    cfg: FollowerConfig,
    client: Client,
    store: Box<dyn CursorStore>,
    hooks: Box<dyn Hooks>,
    /// The last cursor handled (0: none yet, start from the oldest kept).
    cursor: u64,
    /// The cursor after the batch last handed out, saved on the next call.
    pending: Option<u64>,
    source: Option<Source>,
    backoff: Duration,
}

impl Follower {
    /// A follower starting from `store`'s cursor.
    pub fn new(
        cfg: FollowerConfig,
        store: Box<dyn CursorStore>,
        hooks: Box<dyn Hooks>,
    ) -> Result<Self, Error> {
        let client = Client::new(cfg.url.clone(), cfg.timeout)?;
        let cursor = store.load().unwrap_or(0);
        let backoff = cfg.backoff.0;
        Ok(Self { cfg, client, store, hooks, cursor, pending: None, source: None, backoff })
    }

    /// The cursor the follower would resume from.
    pub fn cursor(&self) -> u64 {
        self.pending.unwrap_or(self.cursor)
    }

    /// Waits for the next batch of invalid txs. Calling it again marks the previous batch as
    /// handled (its cursor is saved): act on a batch before asking for the next.
    pub async fn next(&mut self) -> Batch {
        if let Some(c) = self.pending.take() {
            self.advance(c);
        }
        loop {
            let page = match self.source.take() {
                None if self.cfg.push => match self.subscribe().await {
                    Ok(ws) => {
                        self.hooks.on_source(Via::Push);
                        self.source = Some(Source::Push(Box::new(ws)));
                        continue;
                    }
                    Err(e) => {
                        self.hooks.on_error(&e, Duration::ZERO);
                        self.hooks.on_source(Via::Poll);
                        self.source = Some(Source::Poll { since_push_try: Instant::now() });
                        continue;
                    }
                },
                None => {
                    self.source = Some(Source::Poll { since_push_try: Instant::now() });
                    continue;
                }
                Some(Source::Push(mut ws)) => match read_page(&mut ws, self.cfg.read_timeout).await
                {
                    Ok(page) => {
                        self.source = Some(Source::Push(ws));
                        (page, Via::Push)
                    }
                    Err(e) => {
                        self.fail(e).await;
                        continue;
                    }
                },
                Some(Source::Poll { since_push_try }) => {
                    if self.cfg.push && since_push_try.elapsed() >= self.cfg.retry_push_every {
                        continue; // `source` is None: try push again
                    }
                    self.source = Some(Source::Poll { since_push_try });
                    match self.client.invalid_transactions(Some(self.cursor)).await {
                        Ok(page) => {
                            if page.entries.is_empty() && !page.more {
                                if page.truncated {
                                    self.hooks.on_truncated();
                                }
                                self.advance(page.cursor);
                                self.backoff = self.cfg.backoff.0;
                                tokio::time::sleep(self.cfg.poll_interval).await;
                                continue;
                            }
                            (page, Via::Poll)
                        }
                        Err(e) => {
                            self.fail(e).await;
                            continue;
                        }
                    }
                }
            };
            let (page, via) = page;
            self.backoff = self.cfg.backoff.0;
            if page.truncated {
                self.hooks.on_truncated();
            }
            if page.entries.is_empty() {
                self.advance(page.cursor);
                continue;
            }
            self.pending = Some(page.cursor);
            self.hooks.on_batch(page.entries.len(), via);
            return Batch { entries: page.entries, truncated: page.truncated, via };
        }
    }

    fn advance(&mut self, cursor: u64) {
        if cursor != self.cursor {
            self.cursor = cursor;
            self.store.save(cursor);
        }
    }

    /// Reports, drops the source and waits the backoff (doubling it).
    async fn fail(&mut self, e: Error) {
        self.hooks.on_error(&e, self.backoff);
        self.source = None;
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(self.cfg.backoff.1);
    }

    /// Connects and subscribes from the current cursor (0 is older than anything: the
    /// revalidator then sends everything it keeps, flagged truncated).
    async fn subscribe(&self) -> Result<Ws, Error> {
        let url = ws_url(&self.cfg.url);
        let connect = tokio_tungstenite::connect_async(url.as_str());
        let (mut ws, _) = tokio::time::timeout(self.cfg.timeout, connect)
            .await
            .map_err(|_| Error::Transport("websocket connect timed out".into()))?
            .map_err(|e| Error::Transport(e.to_string()))?;
        let req = json!({
            "jsonrpc": "2.0", "id": 1, "method": "interop_subscribe",
            "params": ["invalidTransactions", { "fromCursor": format!("{:#x}", self.cursor) }],
        });
        ws.send(Message::text(req.to_string()))
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        loop {
            let v = read_json(&mut ws, self.cfg.timeout).await?;
            if v.get("id").is_some() {
                rpc_result(v)?;
                return Ok(ws);
            }
        }
    }
}

/// `http(s)://` → `ws(s)://`.
fn ws_url(http: &str) -> String {
    if let Some(rest) = http.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = http.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        http.to_owned()
    }
}

/// The next text message as JSON (pings are answered by tungstenite while reading).
async fn read_json(ws: &mut Ws, timeout: Duration) -> Result<Value, Error> {
    loop {
        let m = tokio::time::timeout(timeout, ws.next())
            .await
            .map_err(|_| Error::Transport("websocket silent past the read timeout".into()))?;
        match m {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(&t).map_err(|e| Error::Decode(e.to_string()))
            }
            Some(Ok(Message::Close(c))) => {
                let why =
                    c.map(|c| format!("{} {}", u16::from(c.code), c.reason)).unwrap_or_default();
                return Err(Error::Transport(format!("websocket closed: {why}")));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(Error::Transport(e.to_string())),
            None => return Err(Error::Transport("websocket closed".into())),
        }
    }
}

/// The next notification's feed page.
async fn read_page(ws: &mut Ws, timeout: Duration) -> Result<FeedPage, Error> {
    loop {
        let v = read_json(ws, timeout).await?;
        if v["method"] == "interop_subscription" {
            return serde_json::from_value(v["params"]["result"].clone())
                .map_err(|e| Error::Decode(e.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_url_follows_the_http_scheme_and_memory_cursor_starts_empty() {
        assert_eq!(ws_url("http://h:8561/"), "ws://h:8561/");
        assert_eq!(ws_url("https://h/"), "wss://h/");
        let c = MemoryCursor::default();
        assert_eq!(c.load(), None);
        c.save(7);
        assert_eq!(c.load(), Some(7));
    }
}
