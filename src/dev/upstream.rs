//! A mock execution client: records every call it receives, answers `eth_sendRawTransaction`
//! with the transaction hash (keccak of the raw bytes, as a real EL does), and answers other
//! methods from a table or a default. Tests assert on what it received.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use alloy_primitives::{hex, keccak256, Bytes};
use futures::future::BoxFuture;
use serde_json::value::RawValue;

use crate::rpc::server::{CallContext, Handler};
use crate::rpc::types::{to_raw, Call, RpcError};

/// One call the upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Method name.
    pub method: String,
    /// Params, as JSON text.
    pub params: String,
}

/// The mock EL.
#[derive(Default)]
pub struct MockUpstream {
    received: Mutex<Vec<Received>>,
    answers: Mutex<HashMap<String, Result<serde_json::Value, RpcError>>>,
    delay: Mutex<Duration>,
    /// When set, calls are counted but not kept (load benchmarks must not grow memory).
    count_only: AtomicBool,
    calls: AtomicU64,
}

impl MockUpstream {
    /// A fresh mock.
    pub fn new() -> Self {
        Self::default()
    }

    /// A mock that only counts calls (for load benchmarks: no per-call memory).
    pub fn counting() -> Self {
        let m = Self::default();
        m.count_only.store(true, Ordering::Relaxed);
        m
    }

    /// Number of calls received so far (in both modes).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Every call received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The raw transactions received through any `eth_sendRawTransaction*` method.
    pub fn raw_transactions(&self) -> Vec<Bytes> {
        self.received()
            .into_iter()
            .filter(|r| r.method.starts_with("eth_sendRawTransaction"))
            .filter_map(|r| {
                let v: Vec<serde_json::Value> = serde_json::from_str(&r.params).ok()?;
                let s = v.first()?.as_str()?;
                hex::decode(s).ok().map(Bytes::from)
            })
            .collect()
    }

    /// Makes `method` answer `answer` (a result or an error).
    pub fn set_answer(&self, method: &str, answer: Result<serde_json::Value, RpcError>) {
        if let Ok(mut a) = self.answers.lock() {
            a.insert(method.to_owned(), answer);
        }
    }

    /// Delays every answer (to test timeouts and graceful shutdown).
    pub fn set_delay(&self, d: Duration) {
        if let Ok(mut x) = self.delay.lock() {
            *x = d;
        }
    }
}

impl Handler for MockUpstream {
    fn call<'a>(
        &'a self,
        _ctx: &'a CallContext,
        call: Call,
    ) -> BoxFuture<'a, Result<Box<RawValue>, RpcError>> {
        Box::pin(async move {
            let params =
                call.params.as_ref().map(|p| p.get().to_owned()).unwrap_or_else(|| "[]".into());
            self.calls.fetch_add(1, Ordering::Relaxed);
            if !self.count_only.load(Ordering::Relaxed) {
                if let Ok(mut r) = self.received.lock() {
                    r.push(Received { method: call.method.clone(), params: params.clone() });
                }
            }
            let delay = self.delay.lock().map(|d| *d).unwrap_or_default();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if let Some(a) = self.answers.lock().ok().and_then(|a| a.get(&call.method).cloned()) {
                return a.map(|v| to_raw(&v));
            }
            match call.method.as_str() {
                m if m.starts_with("eth_sendRawTransaction") => {
                    let (raw,): (Bytes,) = call.parse_params().or_else(|_| {
                        // Conditional and Sync variants carry extra params.
                        let v: Vec<serde_json::Value> = call.parse_params()?;
                        let first = v.first().cloned().unwrap_or_default();
                        serde_json::from_value::<Bytes>(first)
                            .map(|b| (b,))
                            .map_err(RpcError::invalid_params)
                    })?;
                    Ok(to_raw(&keccak256(&raw)))
                }
                "eth_chainId" => Ok(to_raw("0xa")),
                "eth_blockNumber" => Ok(to_raw("0x1")),
                _ => Ok(to_raw(
                    &serde_json::json!({ "method": call.method, "params": serde_json::from_str::<serde_json::Value>(&params).unwrap_or_default() }),
                )),
            }
        })
    }

    fn method_label(&self, _method: &str) -> &'static str {
        "any"
    }
}
