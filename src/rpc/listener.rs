//! The accept loop every listener shares: a connection cap, header/body/idle timeouts, and a
//! drain on shutdown that lets forwarded calls finish.
//!
//! `axum::serve` has none of the limits a public port needs (a slowloris client held a socket
//! for as long as it liked), so this loop drives hyper's HTTP/1 connections itself and axum only
//! routes. Limits are per TCP connection: the permit that counts a connection against
//! `max_connections` lives inside the connection's I/O object, so it is released only when the
//! socket is dropped, which for an upgraded connection (WebSocket) is when the upgrade ends.
//!
//! Timeouts, per connection:
//! - header read: from a request's first byte (or from accept, for the first request) to its
//!   complete head;
//! - body read: from a request's head to the end of its body (enforced on the body stream, so a
//!   handler reading it gets an error it answers with 408);
//! - idle: between the end of a response and the first byte of the next request (keep-alive).
//!
//! The header and idle checks run on a per-connection tick of a quarter of the shorter timeout
//! (between 10 ms and 1 s), so a connection is cut at most one tick after its deadline.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::drain::DrainGate;
use crate::config::ServerConfig;
use crate::metrics::metrics;

/// Connection limits and the shutdown drain of one listener.
#[derive(Clone)]
pub struct ConnLimits {
    /// From a request's first byte (or accept) to its complete head.
    pub header_read_timeout: Duration,
    /// From a request's head to the end of its body.
    pub body_read_timeout: Duration,
    /// Keep-alive connection with no request.
    pub idle_timeout: Duration,
    /// Open connections; beyond it new ones get a 503 and are closed at once.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub grace: Duration,
    /// Work that must finish even past `grace` (forwarded calls), and how much longer shutdown
    /// waits for it at most (its own timeout plus a margin to write the answers).
    pub drain: Option<(DrainGate, Duration)>,
}

impl ConnLimits {
    /// The `[server]` limits with shutdown grace `grace`.
    pub fn from_config(cfg: &ServerConfig, grace: Duration) -> Self {
        Self {
            header_read_timeout: cfg.header_read_timeout_ms,
            body_read_timeout: cfg.body_read_timeout_ms,
            idle_timeout: cfg.idle_timeout_ms,
            max_connections: cfg.max_connections.max(1),
            grace,
            drain: None,
        }
    }

    fn tick(&self) -> Duration {
        (self.header_read_timeout.min(self.idle_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

/// Answer written to a connection over the cap, without reading anything from it.
fn over_capacity_answer() -> Vec<u8> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","error":{{"code":{},"message":"too many open connections; retry shortly"}},"id":null}}"#,
        super::codes::OVER_CAPACITY
    );
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: application/json\r\nretry-after: 1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `router` on `listener` with `limits` until `shutdown` is cancelled, then stops
/// accepting, lets in-flight requests finish for `limits.grace` and, past it, waits for gated
/// work (see [`ConnLimits::drain`]) before closing what is left. `name` labels metrics.
pub async fn serve_with(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    limits: ConnLimits,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut conns = JoinSet::new();
    let open = metrics().connections_open.with_label_values(&[name]);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        open.inc();
                        let conn = Conn {
                            name,
                            router: router.clone(),
                            limits: limits.clone(),
                            shutdown: shutdown.clone(),
                        };
                        let open = open.clone();
                        conns.spawn(async move {
                            conn.serve(stream, peer, permit).await;
                            open.dec();
                        });
                    }
                    Err(_) => refuse(name, stream),
                },
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning; the
                    // connection cap exists so that this should not happen.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            },
        }
    }
    drop(listener);
    drain(name, &mut conns, &limits).await;
    Ok(())
}

/// Shutdown: in-flight requests get `grace`; past it, no new gated work starts and shutdown
/// waits (bounded) for the gated work already running; what is left then is cut.
async fn drain(name: &'static str, conns: &mut JoinSet<()>, limits: &ConnLimits) {
    async fn all(conns: &mut JoinSet<()>, within: Duration) -> bool {
        tokio::time::timeout(within, async { while conns.join_next().await.is_some() {} })
            .await
            .is_ok()
    }
    if all(conns, limits.grace).await {
        return;
    }
    if let Some((gate, wait)) = &limits.drain {
        gate.close();
        let forwarded = gate.in_flight();
        tracing::info!(
            listener = name,
            forwarded,
            wait_ms = wait.as_millis() as u64,
            "grace period over: no new forwards; waiting for forwarded calls to be answered"
        );
        if all(conns, *wait).await {
            return;
        }
    }
    tracing::warn!(
        listener = name,
        connections = conns.len(),
        grace_ms = limits.grace.as_millis() as u64,
        "in-flight requests did not finish in time; closing"
    );
    conns.abort_all();
}

fn refuse(name: &'static str, stream: TcpStream) {
    metrics().connections_refused.with_label_values(&[name]).inc();
    // Best effort and never waiting: the answer fits the socket's send buffer.
    let _ = stream.try_write(&over_capacity_answer());
}

/// One accepted connection's settings.
struct Conn {
    name: &'static str,
    router: Router,
    limits: ConnLimits,
    shutdown: CancellationToken,
}

/// What the timeout checks read: requests in progress and when the connection last changed
/// between idle and busy, in ms since the connection was accepted.
struct ConnState {
    epoch: Instant,
    active: AtomicUsize,
    idle_since_ms: AtomicU64,
    /// First byte read while idle (`NONE` when none was); the accept counts as one, so a silent
    /// new connection is under the header timeout, not the keep-alive one.
    first_byte_ms: AtomicU64,
}

const NONE: u64 = u64::MAX;

impl ConnState {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Why the connection must be cut now, if it must.
    fn expired(&self, limits: &ConnLimits) -> Option<&'static str> {
        if self.active.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let now = self.now_ms();
        let first = self.first_byte_ms.load(Ordering::SeqCst);
        if first != NONE {
            (now.saturating_sub(first) >= limits.header_read_timeout.as_millis() as u64)
                .then_some("header_timeout")
        } else {
            let idle = self.idle_since_ms.load(Ordering::SeqCst);
            (now.saturating_sub(idle) >= limits.idle_timeout.as_millis() as u64)
                .then_some("idle_timeout")
        }
    }
}

/// Marks a request in progress from its head until its response body is dropped (written or
/// abandoned).
struct Busy(Arc<ConnState>);

impl Busy {
    fn new(state: Arc<ConnState>) -> Self {
        state.active.fetch_add(1, Ordering::SeqCst);
        state.first_byte_ms.store(NONE, Ordering::SeqCst);
        Self(state)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let now = self.0.now_ms();
        self.0.idle_since_ms.store(now, Ordering::SeqCst);
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Conn {
    async fn serve(self, stream: TcpStream, peer: SocketAddr, permit: OwnedSemaphorePermit) {
        // Small JSON-RPC answers must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let state = Arc::new(ConnState {
            epoch: Instant::now(),
            active: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            first_byte_ms: AtomicU64::new(0),
        });
        let io = TokioIo::new(Tracked { inner: stream, state: state.clone(), _permit: permit });
        let router = self.router.clone();
        let body_timeout = self.limits.body_read_timeout;
        let svc_state = state.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let busy = Busy::new(svc_state.clone());
            req.extensions_mut().insert(ConnectInfo(peer));
            let req = req.map(|b| Body::new(DeadlineBody::new(b, body_timeout)));
            let router = router.clone();
            async move {
                let resp = match router.oneshot(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(resp.map(|b| Body::new(Tail { inner: b, _busy: busy })))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        // The header timeout is ours (counted from the first byte, so an idle keep-alive
        // connection is under the idle timeout, not the header one).
        builder.keep_alive(true).header_read_timeout(None);
        let conn = builder.serve_connection(io, service).with_upgrades();
        let mut conn = std::pin::pin!(conn);
        let mut tick = tokio::time::interval(self.limits.tick());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut draining = false;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(listener = self.name, %peer, error = %e, "connection ended");
                    }
                    return;
                }
                _ = self.shutdown.cancelled(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = tick.tick() => {
                    if let Some(reason) = state.expired(&self.limits) {
                        metrics().connections_cut.with_label_values(&[self.name, reason]).inc();
                        tracing::debug!(listener = self.name, %peer, reason, "connection cut");
                        return;
                    }
                }
            }
        }
    }
}

/// The socket, noting the first byte of each request and holding the connection's permit.
struct Tracked {
    inner: TcpStream,
    state: Arc<ConnState>,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let s = &self.state;
            if s.active.load(Ordering::SeqCst) == 0 {
                let now = s.now_ms();
                let _ =
                    s.first_byte_ms.compare_exchange(NONE, now, Ordering::SeqCst, Ordering::SeqCst);
            }
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The request body did not arrive within the body-read timeout.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {0} ms")]
pub struct BodyTimeout(pub u64);

/// A request body that fails with [`BodyTimeout`] once its deadline passes.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout_ms: u64,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout_ms: timeout.as_millis() as u64,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(self.timeout_ms))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps the request marked busy until it is dropped.
struct Tail {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for Tail {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// True when `e` (or an error it wraps) is a [`BodyTimeout`].
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.is::<BodyTimeout>() {
            return true;
        }
        cur = c.source();
    }
    false
}
