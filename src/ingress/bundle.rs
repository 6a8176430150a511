//! `eth_sendBundle` (Flashbots / proxyd shape: `[{ txs: [raw...], blockNumber, minTimestamp?,
//! maxTimestamp?, revertingTxHashes?, ... }]`): every transaction goes through the submission
//! pipeline's local checks, the interop ones are validated together in ONE batched engine call,
//! and the first invalid transaction in bundle order refuses the whole bundle with its index in
//! `data`. A bundle that passes is forwarded verbatim (every field the gateway does not read is
//! kept); a bundle without interop transactions costs no backend call.
//!
//! Unlike a single submission, a bundle gets no retry-after-delay: it targets a block, and
//! waiting seconds for a re-test would miss it, so a message not known yet refuses the bundle at
//! once (-321401, retry). The batch goes to the engine itself (the ingress's retry layer checks
//! one request at a time).

use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::forward::Forwarder;
use super::limits::RateLimits;
use super::submit::{decode_raw, verdict_outcome, Gate, Submitter};
use super::ws_metrics::ws_metrics;
use crate::interop::tx::DecodedTx;
use crate::rpc::codes;
use crate::rpc::server::CallContext;
use crate::rpc::types::{Call, RpcError};
use crate::validation::{DynBackend, Verdict};

/// The bundle method.
pub const BUNDLE_METHOD: &str = "eth_sendBundle";

/// The fields of the bundle object the gateway reads; the rest is forwarded untouched.
#[derive(Deserialize)]
struct BundleParams {
    txs: Vec<String>,
}

/// Bundle checks in front of the shared submission pipeline.
pub struct Bundles {
    max_txs: usize,
    /// The validation engine (`None` when no backend is configured: interop bundles are refused).
    engine: Option<DynBackend>,
}

/// Marks `e` as being about the bundle's transaction `index`: the index goes in `data` (next to
/// the refusal reason) and in the message.
fn at(index: usize, reason: &'static str, mut e: RpcError) -> RpcError {
    let mut data = match e.data.take() {
        Some(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    data.insert("index".into(), json!(index));
    data.entry("reason").or_insert(json!(reason));
    e.message = format!("bundle transaction {index}: {}", e.message);
    e.with_data(serde_json::Value::Object(data))
}

fn count(outcome: &str, reason: &str) {
    ws_metrics().bundles.with_label_values(&[outcome, reason]).inc();
}

impl Bundles {
    /// At most `max_txs` transactions per bundle, validated by `engine`.
    pub fn new(max_txs: usize, engine: Option<DynBackend>) -> Self {
        Self { max_txs, engine }
    }

    /// Checks a bundle and forwards it verbatim when every transaction passes.
    pub async fn send(
        &self,
        ctx: &CallContext,
        call: &Call,
        submitter: &Submitter,
        limits: &RateLimits,
        forwarder: &Forwarder,
    ) -> Result<Box<RawValue>, RpcError> {
        let (bundle,): (BundleParams,) = call.parse_params().inspect_err(|_| {
            count("refused", "malformed");
        })?;
        let n = bundle.txs.len();
        if n == 0 {
            count("refused", "empty");
            return Err(RpcError::invalid_params("bundle has no transactions"));
        }
        if n > self.max_txs {
            count("refused", "too_many_txs");
            return Err(RpcError::invalid_params(format!(
                "bundle has {n} transactions, the limit is {}",
                self.max_txs
            ))
            .with_data(json!({ "txs": n, "limit": self.max_txs })));
        }
        // Local checks, in bundle order, before any remote call.
        let mut txs: Vec<DecodedTx> = Vec::with_capacity(n);
        for (i, raw) in bundle.txs.iter().enumerate() {
            let tx = decode_raw(raw).map_err(|e| {
                count("refused", "undecodable");
                at(i, "undecodable", e)
            })?;
            let refuse = |e: RpcError, reason: &'static str| {
                count("refused", reason);
                at(i, reason, submitter.refuse(ctx, &tx, e, reason))
            };
            submitter.check_chain(&tx).map_err(|e| refuse(e, "wrong_chain"))?;
            limits.check_sender(tx.sender).await.map_err(|e| refuse(e, "sender_rate_limited"))?;
            if tx.is_interop() {
                limits
                    .check_interop_sender(tx.sender)
                    .await
                    .map_err(|e| refuse(e, "interop_sender_rate_limited"))?;
            }
            txs.push(tx);
        }
        let interop: Vec<usize> = (0..n).filter(|&i| txs[i].is_interop()).collect();
        let Some(&first) = interop.first() else {
            return self.forward(call, forwarder, "non_interop").await;
        };
        let refuse = |i: usize, e: RpcError, reason: &'static str| {
            count("refused", reason);
            at(i, reason, submitter.refuse(ctx, &txs[i], e, reason))
        };
        match submitter.gate() {
            Ok(Gate::Bypass) => return self.forward(call, forwarder, "bypass").await,
            Ok(Gate::Validate) => {}
            Err(e) => return Err(refuse(first, e, "reject_all")),
        }
        let mut reqs = Vec::with_capacity(interop.len());
        for &i in &interop {
            let messages = submitter.messages(&txs[i]).map_err(|e| refuse(i, e, "malformed"))?;
            reqs.push(submitter.request(messages));
        }
        let Some(engine) = self.engine.as_ref() else {
            // No backend configured: the refusal a single submission gets.
            let e = submitter.engine().err().unwrap_or_else(|| {
                RpcError::new(codes::NO_BACKEND, "interop validation is unavailable; retry later")
            });
            return Err(refuse(first, e, "unavailable"));
        };
        let slots = u32::try_from(reqs.len()).unwrap_or(u32::MAX);
        let slot = submitter.reserve(slots).inspect_err(|_| {
            count("refused", "over_capacity");
        })?;
        let verdicts = engine.check_batch(&reqs).await;
        drop(slot);
        for (k, &i) in interop.iter().enumerate() {
            // A missing verdict is no answer: fail closed.
            let missing = Verdict::Unavailable("the engine gave no verdict for it".into());
            let verdict = verdicts.get(k).unwrap_or(&missing);
            if let Err((e, reason)) = verdict_outcome(&txs[i].hash, verdict) {
                return Err(refuse(i, e, reason));
            }
        }
        self.forward(call, forwarder, "valid").await
    }

    async fn forward(
        &self,
        call: &Call,
        forwarder: &Forwarder,
        reason: &'static str,
    ) -> Result<Box<RawValue>, RpcError> {
        let r = forwarder.forward(call).await;
        count(if r.is_ok() { "forwarded" } else { "upstream_error" }, reason);
        r
    }
}
