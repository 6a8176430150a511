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

use super::limits::RateLimits;
use super::refusal::Refusal;
use super::submit::{decode_raw, Gate, Pass, Submitter};
use super::ws_metrics::ws_metrics;
use crate::interop::tx::DecodedTx;
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

    /// Checks a bundle: `Ok` when it may be forwarded verbatim (every transaction passed), else
    /// the first refusal in bundle order, with the transaction's index. The caller forwards.
    pub async fn decide(
        &self,
        ctx: &CallContext,
        call: &Call,
        submitter: &Submitter,
        limits: &RateLimits,
    ) -> Result<Pass, RpcError> {
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
        let refuse = |i: usize, tx: &DecodedTx, refusal: Refusal| {
            let reason = refusal.label();
            count("refused", reason);
            at(i, reason, submitter.refuse(ctx, tx, refusal))
        };
        // Local checks, in bundle order, before any remote call.
        let mut txs: Vec<DecodedTx> = Vec::with_capacity(n);
        for (i, raw) in bundle.txs.iter().enumerate() {
            let tx = decode_raw(raw).map_err(|e| {
                count("refused", "undecodable");
                at(i, "undecodable", e)
            })?;
            let local = async {
                submitter.check_chain(&tx)?;
                limits.check_sender(tx.sender).await.map_err(Refusal::SenderRateLimited)?;
                if tx.is_interop() {
                    limits
                        .check_interop_sender(tx.sender)
                        .await
                        .map_err(Refusal::InteropSenderRateLimited)?;
                }
                Ok::<(), Refusal>(())
            };
            if let Err(refusal) = local.await {
                return Err(refuse(i, &tx, refusal));
            }
            txs.push(tx);
        }
        let interop: Vec<usize> = (0..n).filter(|&i| txs[i].is_interop()).collect();
        let Some(&first) = interop.first() else {
            return Ok(Pass::Bundle { reason: "non_interop" });
        };
        match submitter.gate() {
            Ok(Gate::Bypass) => return Ok(Pass::Bundle { reason: "bypass" }),
            Ok(Gate::Validate) => {}
            Err(refusal) => return Err(refuse(first, &txs[first], refusal)),
        }
        let mut reqs = Vec::with_capacity(interop.len());
        for &i in &interop {
            let messages = submitter.messages(&txs[i]).map_err(|r| refuse(i, &txs[i], r))?;
            reqs.push(submitter.request(messages));
        }
        let Some(engine) = self.engine.as_ref() else {
            // No backend configured: the refusal a single submission gets.
            return Err(refuse(first, &txs[first], Refusal::NoBackend));
        };
        let slots = u32::try_from(reqs.len()).unwrap_or(u32::MAX);
        let slot = submitter.reserve(slots).map_err(|r| refuse(first, &txs[first], r))?;
        let verdicts = engine.check_batch(&reqs).await;
        drop(slot);
        for (k, &i) in interop.iter().enumerate() {
            // A missing verdict is no answer: fail closed.
            let missing = Verdict::Unavailable("the engine gave no verdict for it".into());
            let verdict = verdicts.get(k).unwrap_or(&missing);
            if let Some(refusal) = Refusal::of_verdict(verdict) {
                return Err(refuse(i, &txs[i], refusal));
            }
        }
        Ok(Pass::Bundle { reason: "valid" })
    }
}

/// Counts a forwarded (or upstream-failed) bundle.
pub(crate) fn count_forwarded(ok: bool, reason: &str) {
    count(if ok { "forwarded" } else { "upstream_error" }, reason);
}
