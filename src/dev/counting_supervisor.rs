//! A minimal supervisor peer that counts HTTP requests, for the revalidator's "one request per
//! presumed block" tests. It answers `checkAccessList` (both names) from a set of known
//! messages: a known message is valid, any other is conflicting data (-320600), and a failsafe
//! switch fails every check with -320602.
//!
//! HTTP requests are counted by the request id the JSON-RPC server assigns per HTTP request, so
//! a JSON-RPC batch of 100 checks counts as one request and 100 checks.
//! (A stand-in until the full mock supervisor lands; it models answers, not indexing.)

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use alloy_primitives::B256;
use futures::future::BoxFuture;
use serde_json::value::RawValue;

use crate::interop::Message;
use crate::rpc::check_access_list::{answer, decode, is_check_access_list};
use crate::rpc::codes;
use crate::rpc::server::{CallContext, Handler};
use crate::rpc::types::{Call, RpcError};
use crate::validation::{Rejection, Verdict};

/// The peer.
#[derive(Default)]
pub struct CountingSupervisor {
    known: Mutex<HashSet<B256>>,
    request_ids: Mutex<HashSet<Arc<str>>>,
    checks: AtomicUsize,
    failsafe: AtomicBool,
}

impl CountingSupervisor {
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

    fn verdict(&self, messages: &[Message], until: u64) -> Verdict {
        if self.failsafe.load(Ordering::SeqCst) {
            return Verdict::Invalid(Rejection::new(codes::SUP_FAILSAFE, "failsafe enabled"));
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

impl Handler for CountingSupervisor {
    fn call<'a>(
        &'a self,
        ctx: &'a CallContext,
        call: Call,
    ) -> BoxFuture<'a, Result<Box<RawValue>, RpcError>> {
        Box::pin(async move {
            if !is_check_access_list(&call.method) {
                return Err(RpcError::method_not_found(&call.method));
            }
            if let Ok(mut ids) = self.request_ids.lock() {
                ids.insert(ctx.request_id.clone());
            }
            self.checks.fetch_add(1, Ordering::SeqCst);
            let d = decode(&call)?;
            let until = d.request.descriptor.end().unwrap_or(u64::MAX);
            answer(&self.verdict(&d.request.messages, until))
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
