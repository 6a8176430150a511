//! The outbound half of a server-side WebSocket connection, shared by the ingress's WebSocket
//! and the revalidator's push feed: a bounded queue drained by one writer task, and the reason
//! the connection closes (the first one given wins), sent as the close frame.

use std::sync::Mutex;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::stream::SplitSink;
use futures::SinkExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Close codes (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// A message type the endpoint does not accept.
    pub const UNSUPPORTED: u16 = 1003;
    /// A policy was violated (too slow, no pong).
    pub const POLICY: u16 = 1008;
    /// A message too big to process.
    pub const TOO_BIG: u16 = 1009;
    /// Try again later.
    pub const TRY_AGAIN: u16 = 1013;
}

/// Why a connection closes: the code, the text the client gets and the metrics label.
pub type CloseReason = (u16, &'static str, &'static str);

/// A connection's way out: the bounded queue to its writer and its closing state.
pub struct Outbound {
    /// To the writer task (bounded: a client that does not read fills it and is closed).
    pub out: mpsc::Sender<Message>,
    /// Cancelled when the connection must close; [`Outbound::reason`] says why.
    pub closing: CancellationToken,
    close: Mutex<Option<CloseReason>>,
}

impl Outbound {
    /// A connection's outbound state; `closing` is usually a child of the server's shutdown.
    pub fn new(out: mpsc::Sender<Message>, closing: CancellationToken) -> Self {
        Self { out, closing, close: Mutex::new(None) }
    }

    /// Closes with `code`, a reason for the client and a metrics label (the first one wins).
    pub fn close(&self, code: u16, text: &'static str, label: &'static str) {
        if let Ok(mut c) = self.close.lock() {
            if c.is_none() {
                *c = Some((code, text, label));
            }
        }
        self.closing.cancel();
    }

    /// Why the connection closed (`None`: the server is shutting down).
    pub fn reason(&self) -> Option<CloseReason> {
        self.close.lock().ok().and_then(|c| *c)
    }

    /// The metrics label of the close.
    pub fn label(&self) -> &'static str {
        self.reason().map_or("shutdown", |c| c.2)
    }

    /// Closes after a read error: 1009 when the client sent a message or frame over the size
    /// limit, else a protocol error.
    pub fn close_on_read_error(&self, e: axum::Error) {
        use tokio_tungstenite::tungstenite::Error;
        let inner = e.into_inner();
        if matches!(inner.downcast_ref::<Error>(), Some(Error::Capacity(_))) {
            self.close(close_code::TOO_BIG, "message too big", "too_large");
        } else {
            self.close(close_code::NORMAL, "", "protocol_error");
        }
    }
}

/// Drains `out_rx` into `sink` until the connection closes, then sends the close frame
/// (briefly: a client that does not read will not take it either). A write blocked on a client
/// that does not read is abandoned on close.
pub fn spawn_writer<C>(
    mut sink: SplitSink<WebSocket, Message>,
    mut out_rx: mpsc::Receiver<Message>,
    conn: std::sync::Arc<C>,
) -> JoinHandle<()>
where
    C: AsRef<Outbound> + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let link = (*conn).as_ref();
        loop {
            tokio::select! {
                biased;
                _ = link.closing.cancelled() => break,
                m = out_rx.recv() => match m {
                    Some(m) => tokio::select! {
                        r = sink.send(m) => if r.is_err() {
                            link.close(close_code::NORMAL, "", "client_closed");
                            return;
                        },
                        _ = link.closing.cancelled() => break,
                    },
                    None => break,
                },
            }
        }
        let (code, reason, _) =
            link.reason().unwrap_or((close_code::GOING_AWAY, "server shutting down", "shutdown"));
        let frame = CloseFrame { code, reason: reason.into() };
        let _ =
            tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(Some(frame))))
                .await;
    })
}
