//! A peer that misbehaves on the wire, the way broken proxies, overloaded nodes and liars do:
//! garbage bodies, non-2xx statuses with JSON-RPC error bodies, wrong ids, non-null results,
//! truncated and oversize bodies, answers that never come. Tests point any client (supervisor,
//! chain RPC, EL pool, upstream) at it to show that none of this becomes a verdict.
//!
//! It answers every POST with the current [`Behaviour`], which a test may change at any time,
//! and counts the requests it received.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio_util::sync::CancellationToken;

use super::Peer;

/// What the peer answers.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// `status` with `body` verbatim (`{"error":{"code":-32000}}` with 500, ...).
    Raw(u16, String),
    /// 200 with a well-formed JSON-RPC answer to the request's id carrying `result` (raw JSON).
    Result(String),
    /// 200 with a well-formed JSON-RPC error to the request's id.
    Error(i64),
    /// 200, `"result": null`, but the id is not the request's.
    WrongId,
    /// 200 with the first part of a well-formed answer, then the connection breaks.
    Truncated,
    /// 200 with a syntactically endless answer of about `bytes` bytes, streamed lazily (the
    /// peer itself holds no more than one chunk).
    Huge(usize),
    /// Never answers.
    Hang,
    /// 200 with `"result": null` for the first element of a batch only (a plain call is
    /// answered): a batch answer shorter than the batch.
    ShortBatch,
}

struct Inner {
    behaviour: Mutex<Behaviour>,
    requests: AtomicUsize,
    held: std::sync::atomic::AtomicBool,
    released: tokio::sync::Notify,
}

/// The peer's handle: change its behaviour, count what it received.
#[derive(Clone)]
pub struct Misbehaving(Arc<Inner>);

impl Misbehaving {
    /// Sets what every following request gets.
    pub fn set(&self, b: Behaviour) {
        *self.0.behaviour.lock().unwrap_or_else(|p| p.into_inner()) = b;
    }

    /// Holds every answer (after counting its request) until [`Self::release`].
    pub fn hold(&self) {
        self.0.held.store(true, Ordering::SeqCst);
    }

    /// Lets the held answers (and every following one) go.
    pub fn release(&self) {
        self.0.held.store(false, Ordering::SeqCst);
        self.0.released.notify_waiters();
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.0.requests.load(Ordering::SeqCst)
    }
}

/// The ids of a request body, as raw JSON text, and whether it was a batch.
fn ids(body: &[u8]) -> (Vec<String>, bool) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let id = |o: &serde_json::Value| o.get("id").map(|i| i.to_string()).unwrap_or("null".into());
    match v.as_array() {
        Some(a) => (a.iter().map(id).collect(), true),
        None => (vec![id(&v)], false),
    }
}

/// One answer per id (an array for a batch), each built by `one`.
fn per_id(ids: &[String], batch: bool, one: impl Fn(&str) -> String) -> String {
    let answers: Vec<String> = ids.iter().map(|i| one(i)).collect();
    if batch {
        format!("[{}]", answers.join(","))
    } else {
        answers.into_iter().next().unwrap_or_default()
    }
}

async fn handle(State(p): State<Misbehaving>, body: Bytes) -> Response {
    p.0.requests.fetch_add(1, Ordering::SeqCst);
    loop {
        let released = p.0.released.notified();
        if !p.0.held.load(Ordering::SeqCst) {
            break;
        }
        released.await;
    }
    let behaviour = p.0.behaviour.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (ids, batch) = ids(&body);
    let id = ids.first().cloned().unwrap_or_else(|| "null".into());
    let json = |s: String| ([(header::CONTENT_TYPE, "application/json")], s).into_response();
    match behaviour {
        Behaviour::Raw(status, body) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Behaviour::Result(r) => {
            json(per_id(&ids, batch, |id| format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{r}}}"#)))
        }
        Behaviour::Error(code) => json(per_id(&ids, batch, |id| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":"programmed"}}}}"#
            )
        })),
        Behaviour::WrongId => json(per_id(&ids, batch, |id| {
            let wrong = id.parse::<u64>().map(|n| n + 1000).unwrap_or(4242);
            format!(r#"{{"jsonrpc":"2.0","id":{wrong},"result":null}}"#)
        })),
        Behaviour::Truncated => {
            let head = Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{id},"res"#));
            let stream = futures::stream::iter(vec![
                Ok::<_, std::io::Error>(head),
                Err(std::io::Error::other("connection cut mid-answer")),
            ]);
            Response::new(Body::from_stream(stream))
        }
        Behaviour::Huge(bytes) => {
            const CHUNK: usize = 64 * 1024;
            let head = Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":""#));
            let filler = Bytes::from(vec![b'a'; CHUNK]);
            let n = bytes / CHUNK + 1;
            let stream = futures::stream::iter(
                std::iter::once(head)
                    .chain(std::iter::repeat_n(filler, n))
                    .chain(std::iter::once(Bytes::from_static(b"\"}")))
                    .map(Ok::<_, std::io::Error>),
            );
            Response::new(Body::from_stream(stream))
        }
        Behaviour::ShortBatch => {
            let one = |id: &str| format!(r#"{{"jsonrpc":"2.0","id":{id},"result":null}}"#);
            json(if batch { format!("[{}]", one(&id)) } else { one(&id) })
        }
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

/// Starts the peer on `127.0.0.1:0` behaving as `b`.
pub async fn spawn(b: Behaviour) -> std::io::Result<(Peer, Misbehaving)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let state = Misbehaving(Arc::new(Inner {
        behaviour: Mutex::new(b),
        requests: AtomicUsize::new(0),
        held: Default::default(),
        released: Default::default(),
    }));
    let router = Router::new().fallback(handle).with_state(state.clone());
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
    });
    Ok((Peer { addr, stop }, state))
}
