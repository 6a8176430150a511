//! A mock op-supervisor: answers `interop_checkAccessList` and `supervisor_checkAccessList`
//! (single and JSON-RPC batches, exact wire format) and `admin_getFailsafeEnabled` from a table
//! the test programs: known messages are valid, a message can be given any error code, unknown
//! ones are conflicting data (-320600) unless `accept_all`; failsafe fails every check with
//! -320602; a forced code or a delay applies to every check.
//!
//! HTTP requests are counted by the request id the JSON-RPC server assigns per HTTP request, so
//! a JSON-RPC batch of 100 checks counts as one request and 100 checks.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::B256;
use futures::future::BoxFuture;
use serde_json::value::RawValue;

use crate::interop::access_list::Bounds;
use crate::interop::Message;
use crate::rpc::codes;
use crate::rpc::server::{CallContext, Handler};
use crate::rpc::types::{Call, RpcError};
use crate::validation::codec::{answer, decode_or_invalid_params, is_check_access_list};
use crate::validation::{Rejection, Verdict};

/// The peer.
#[derive(Default)]
pub struct MockSupervisor {
    known: Mutex<HashSet<B256>>,
    errors: Mutex<HashMap<B256, i64>>,
    accept_all: AtomicBool,
    forced: AtomicI64,
    delay_ms: AtomicU64,
    request_ids: Mutex<HashSet<Arc<str>>>,
    checks: AtomicUsize,
    failsafe: AtomicBool,
    held: AtomicBool,
    released: tokio::sync::Notify,
}

impl MockSupervisor {
    /// An empty supervisor (every message unknown).
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `messages` valid (keyed by checksum, which commits to the whole message).
    pub fn add_known(&self, messages: impl IntoIterator<Item = Message>) {
        if let Ok(mut k) = self.known.lock() {
            k.extend(messages.into_iter().map(|m| m.checksum));
        }
    }

    /// Makes `message` answer `code` (e.g. -321401 until it is "indexed").
    pub fn set_error(&self, message: &Message, code: i64) {
        if let Ok(mut e) = self.errors.lock() {
            e.insert(message.checksum, code);
        }
    }

    /// Removes a per-message error (the message is then judged by the known set).
    pub fn clear_error(&self, message: &Message) {
        if let Ok(mut e) = self.errors.lock() {
            e.remove(&message.checksum);
        }
    }

    /// Accepts every message not otherwise programmed (load benchmarks).
    pub fn set_accept_all(&self, on: bool) {
        self.accept_all.store(on, Ordering::SeqCst);
    }

    /// Answers every check with `code` (0 turns it off).
    pub fn force_error(&self, code: i64) {
        self.forced.store(code, Ordering::SeqCst);
    }

    /// Delays every answer.
    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Holds every check answer (after counting it) until [`Self::release`]: a test can have
    /// checks in flight for as long as it needs, without a timer.
    pub fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
    }

    /// Lets the held answers (and every following one) go.
    pub fn release(&self) {
        self.held.store(false, Ordering::SeqCst);
        self.released.notify_waiters();
    }

    /// Turns failsafe on or off.
    pub fn set_failsafe(&self, on: bool) {
        self.failsafe.store(on, Ordering::SeqCst);
    }

    /// HTTP requests that carried at least one `checkAccessList`.
    pub fn http_requests(&self) -> usize {
        self.request_ids.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// `checkAccessList` calls answered (batch elements included).
    pub fn checks(&self) -> usize {
        self.checks.load(Ordering::SeqCst)
    }

    /// The answer: a programmed code goes on the wire as it is (whatever it means), the rest
    /// through the shared server encoding.
    fn answer(&self, messages: &[Message], until: u64) -> Result<Box<RawValue>, RpcError> {
        let forced = self.forced.load(Ordering::SeqCst);
        if forced != 0 && !self.failsafe.load(Ordering::SeqCst) {
            return Err(RpcError::new(forced, "forced error"));
        }
        let errors = self.errors.lock().map(|k| k.clone()).unwrap_or_default();
        if let Some((m, code)) =
            messages.iter().find_map(|m| errors.get(&m.checksum).map(|c| (m, *c)))
        {
            if !self.failsafe.load(Ordering::SeqCst) {
                return Err(RpcError::new(code, format!("programmed error for {m}")));
            }
        }
        answer(&self.verdict(messages, until))
    }

    fn verdict(&self, messages: &[Message], until: u64) -> Verdict {
        if self.failsafe.load(Ordering::SeqCst) {
            return Verdict::Invalid(Rejection::new(codes::SUP_FAILSAFE, "failsafe enabled"));
        }
        if self.accept_all.load(Ordering::SeqCst) {
            return Verdict::Valid { until };
        }
        let known = self.known.lock().map(|k| k.clone()).unwrap_or_default();
        match messages.iter().find(|m| !known.contains(&m.checksum)) {
            Some(m) => Verdict::Invalid(
                Rejection::new(codes::SUP_CONFLICTING_DATA, format!("no such log: {m}"))
                    .for_message(*m),
            ),
            None => Verdict::Valid { until },
        }
    }
}

impl Handler for MockSupervisor {
    fn call<'a>(
        &'a self,
        ctx: &'a CallContext,
        call: Call,
    ) -> BoxFuture<'a, Result<Box<RawValue>, RpcError>> {
        Box::pin(async move {
            if call.method == "admin_getFailsafeEnabled" {
                return Ok(crate::rpc::types::to_raw(&self.failsafe.load(Ordering::SeqCst)));
            }
            if !is_check_access_list(&call.method) {
                return Err(RpcError::method_not_found(&call.method));
            }
            // Counted on arrival, so a check the client gave up on still counts.
            if let Ok(mut ids) = self.request_ids.lock() {
                ids.insert(ctx.request_id.clone());
            }
            self.checks.fetch_add(1, Ordering::SeqCst);
            loop {
                let released = self.released.notified();
                if !self.held.load(Ordering::SeqCst) {
                    break;
                }
                released.await;
            }
            let delay = self.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            // As op-interop-filter bounds a request by its body size, not by count.
            let bounds = Bounds { max_entries: usize::MAX, max_messages: usize::MAX };
            let d = decode_or_invalid_params(&call, bounds)?;
            let until = d.request.descriptor.end().unwrap_or(u64::MAX);
            self.answer(&d.request.messages, until)
        })
    }

    fn method_label(&self, method: &str) -> &'static str {
        if is_check_access_list(method) {
            "checkAccessList"
        } else {
            "other"
        }
    }
}
