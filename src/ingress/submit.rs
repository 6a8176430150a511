//! The submission pipeline every `eth_sendRawTransaction*` call goes through:
//! decode → chain id → sender rate limit → (interop only) interop sender rate limit → mode →
//! size caps → parse → de-dup → in-flight bound → validate → forward. Cheap checks come before any remote call; an invalid
//! transaction is never forwarded; a non-interop transaction costs no backend call.

use std::sync::Arc;

use alloy_primitives::{Bytes, B256};
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use super::forward::Forwarder;
use super::limits::{RateLimits, ValidationSlot};
use crate::admin::ModeCell;
use crate::config::{ConditionalInterop, IngressConfig, InteropMode};
use crate::interop::access_list::dedup;
use crate::interop::tx::{decode_tx, DecodedTx};
use crate::interop::{ExecutingDescriptor, Message, SafetyLevel};
use crate::metrics::metrics;
use crate::rpc::codes;
use crate::rpc::server::CallContext;
use crate::rpc::types::{Call, RpcError};
use crate::validation::codec::message_json;
use crate::validation::{CheckRequest, DynBackend, Rejection, Verdict};

/// The methods that submit a transaction; all take the raw transaction as the first param.
pub const SUBMIT_METHODS: [&str; 3] =
    ["eth_sendRawTransaction", "eth_sendRawTransactionConditional", "eth_sendRawTransactionSync"];

/// The pipeline's settings and shared state.
pub struct Submitter {
    chain_id: u64,
    min_safety: SafetyLevel,
    timeout_secs: u64,
    max_inbox_entries: usize,
    max_messages: usize,
    conditional_interop: ConditionalInterop,
    mode: Arc<ModeCell>,
    engine: Option<DynBackend>,
    in_flight: Semaphore,
}

impl Submitter {
    /// Builds the pipeline. `engine` is `None` only when no backend is configured, in which case
    /// interop transactions are refused (fail closed) unless the mode is `bypass`.
    pub fn new(cfg: &IngressConfig, mode: Arc<ModeCell>, engine: Option<DynBackend>) -> Self {
        Self {
            chain_id: cfg.chain_id,
            min_safety: cfg.min_safety,
            timeout_secs: cfg.timeout_secs,
            max_inbox_entries: cfg.max_inbox_entries,
            max_messages: cfg.max_messages,
            conditional_interop: cfg.conditional_interop,
            mode,
            engine,
            in_flight: Semaphore::new(cfg.max_in_flight),
        }
    }

    /// Runs one submission through the pipeline and, when it passes, forwards it verbatim.
    pub async fn submit(
        &self,
        ctx: &CallContext,
        call: &Call,
        limits: &RateLimits,
        forwarder: &Forwarder,
    ) -> Result<Box<RawValue>, RpcError> {
        let tx = self.decode(call)?;
        self.check_chain(&tx).map_err(|e| self.refuse(ctx, &tx, e, "wrong_chain"))?;
        limits
            .check_sender(tx.sender)
            .await
            .map_err(|e| self.refuse(ctx, &tx, e, "sender_rate_limited"))?;
        if !tx.is_interop() {
            return self.forward(call, tx.hash, forwarder, "non_interop").await;
        }
        limits
            .check_interop_sender(tx.sender)
            .await
            .map_err(|e| self.refuse(ctx, &tx, e, "interop_sender_rate_limited"))?;
        match self.gate() {
            Ok(Gate::Bypass) => return self.forward(call, tx.hash, forwarder, "bypass").await,
            Ok(Gate::Validate) => {}
            Err(e) => return Err(self.refuse(ctx, &tx, e, "reject_all")),
        }
        if call.method == "eth_sendRawTransactionConditional"
            && self.conditional_interop == ConditionalInterop::Refuse
        {
            let e = RpcError::new(
                codes::METHOD_NOT_FOUND,
                "interop transactions are not accepted with eth_sendRawTransactionConditional \
                 here; send them with eth_sendRawTransaction",
            )
            .with_data(json!({ "txHash": tx.hash }));
            return Err(self.refuse(ctx, &tx, e, "conditional_refused"));
        }
        let messages = self.messages(&tx).map_err(|e| self.refuse(ctx, &tx, e, "malformed"))?;
        let engine = self.engine().map_err(|e| self.refuse(ctx, &tx, e, "unavailable"))?;
        let slot = self.reserve(1).map_err(|e| self.refuse(ctx, &tx, e, "over_capacity"))?;
        let verdict = engine.check(&self.request(messages)).await;
        drop(slot);
        match verdict_outcome(&tx.hash, &verdict) {
            Ok(()) => self.forward(call, tx.hash, forwarder, "valid").await,
            Err((e, reason)) => Err(self.refuse(ctx, &tx, e, reason)),
        }
    }

    /// -32602 when `tx` is signed for another chain than this endpoint's.
    pub(crate) fn check_chain(&self, tx: &DecodedTx) -> Result<(), RpcError> {
        match tx.chain_id {
            Some(id) if id != self.chain_id => Err(RpcError::invalid_params(format!(
                "transaction is signed for chain {id}, this endpoint serves chain {}",
                self.chain_id
            ))),
            _ => Ok(()),
        }
    }

    /// What the current interop mode says about an interop transaction: validate it, forward it
    /// unchecked (bypass), or refuse it (reject-all, the error).
    pub(crate) fn gate(&self) -> Result<Gate, RpcError> {
        match self.mode.get() {
            InteropMode::Bypass => Ok(Gate::Bypass),
            InteropMode::RejectAll => Err(RpcError::new(
                codes::SUP_FAILSAFE,
                "interop transactions are temporarily refused by the operator (reject-all mode); retry later",
            )),
            InteropMode::Enforce => Ok(Gate::Validate),
        }
    }

    /// The engine, or -32011 when none is configured (fail closed).
    pub(crate) fn engine(&self) -> Result<&DynBackend, RpcError> {
        self.engine.as_ref().ok_or_else(|| {
            RpcError::new(
                codes::NO_BACKEND,
                "interop validation is unavailable (no backend configured); retry later",
            )
        })
    }

    /// Takes `n` of the in-flight validation slots (one per transaction checked), or -32024.
    /// The slots and the gauge are given back when the guard drops, also when the caller is
    /// cancelled (a WebSocket client that went away).
    pub(crate) fn reserve(&self, n: u32) -> Result<ValidationSlot<'_>, RpcError> {
        ValidationSlot::try_acquire_many(&self.in_flight, n).ok_or_else(|| {
            RpcError::new(
                codes::OVER_CAPACITY,
                "too many interop validations in flight; retry shortly",
            )
        })
    }

    /// The engine request for one transaction's messages.
    pub(crate) fn request(&self, messages: Vec<Message>) -> CheckRequest {
        CheckRequest {
            messages: messages.into(),
            min_safety: self.min_safety,
            descriptor: ExecutingDescriptor {
                timestamp: crate::clock::unix_now(),
                timeout: Some(self.timeout_secs),
                chain_id: Some(alloy_primitives::U256::from(self.chain_id)),
            },
        }
    }

    fn decode(&self, call: &Call) -> Result<DecodedTx, RpcError> {
        let params: Vec<serde_json::Value> = call.parse_params()?;
        let raw = params.first().and_then(|v| v.as_str()).ok_or_else(|| {
            RpcError::invalid_params("expected the raw transaction as a 0x-prefixed hex string")
        })?;
        decode_raw(raw)
    }

    /// Size caps, parse, de-dup: all local, before any remote call.
    pub(crate) fn messages(&self, tx: &DecodedTx) -> Result<Vec<Message>, RpcError> {
        let n = tx.inbox_entries.len();
        if n > self.max_inbox_entries {
            return Err(RpcError::new(
                codes::ACCESS_LIST_TOO_LARGE,
                format!(
                    "interop access list has {n} CrossL2Inbox entries, the limit is {}",
                    self.max_inbox_entries
                ),
            ));
        }
        let mut messages = crate::interop::parse_entries(&tx.inbox_entries).map_err(|e| {
            RpcError::invalid_params(format!("malformed interop access list: {e}"))
                .with_data(json!({ "txHash": tx.hash, "entryIndex": e.index() }))
        })?;
        dedup(&mut messages);
        if messages.len() > self.max_messages {
            return Err(RpcError::new(
                codes::ACCESS_LIST_TOO_LARGE,
                format!(
                    "transaction executes {} distinct messages, the limit is {}",
                    messages.len(),
                    self.max_messages
                ),
            ));
        }
        Ok(messages)
    }

    async fn forward(
        &self,
        call: &Call,
        tx: B256,
        forwarder: &Forwarder,
        reason: &'static str,
    ) -> Result<Box<RawValue>, RpcError> {
        let r = forwarder.forward_tx(call, tx).await;
        let outcome = if r.is_ok() { "forwarded" } else { "upstream_error" };
        metrics().ingress_txs.with_label_values(&[outcome, reason]).inc();
        r
    }

    /// Counts and logs a refusal (one line per refused transaction, filterable by target).
    pub(crate) fn refuse(
        &self,
        ctx: &CallContext,
        tx: &DecodedTx,
        mut e: RpcError,
        reason: &'static str,
    ) -> RpcError {
        metrics().ingress_txs.with_label_values(&["refused", reason]).inc();
        // Every refusal's `data` names the tx and the reason (the same label as the metric and
        // the log line), whatever else the stage that refused put there.
        let data = e.data.get_or_insert_with(|| json!({}));
        if let Some(d) = data.as_object_mut() {
            d.entry("txHash").or_insert_with(|| json!(tx.hash));
            d.entry("reason").or_insert_with(|| json!(reason));
        }
        // The failing message's identifier (`chain:block:logIndex`), when one is known.
        let message_id = e.data.as_ref().and_then(|d| d.get("message")).map(|m| {
            format!(
                "{}:{}:{}",
                m["chainId"].as_str().unwrap_or("?"),
                m["blockNumber"],
                m["logIndex"]
            )
        });
        tracing::info!(
            target: "interop_gate::refused",
            tx = %tx.hash,
            sender = %tx.sender,
            message_id = message_id.as_deref().unwrap_or("-"),
            client = %ctx.client_ip,
            request_id = %ctx.request_id,
            reason,
            code = e.code,
            message = %e.message,
            "transaction refused"
        );
        e
    }
}

/// What the interop mode says about an interop transaction (see [`Submitter::gate`]).
pub(crate) enum Gate {
    /// Validate it.
    Validate,
    /// Forward it unchecked.
    Bypass,
}

/// Decodes a 0x-prefixed raw transaction (-32602 when it is not hex or not a transaction).
pub(crate) fn decode_raw(raw: &str) -> Result<DecodedTx, RpcError> {
    let bytes: Bytes = raw
        .parse()
        .map_err(|e| RpcError::invalid_params(format!("raw transaction is not valid hex: {e}")))?;
    decode_tx(&bytes).map_err(|e| {
        metrics().ingress_txs.with_label_values(&["refused", "undecodable"]).inc();
        RpcError::invalid_params(format!("cannot decode transaction: {e}"))
    })
}

/// A verdict as the client sees it: `Ok` when the transaction may be forwarded, else the error
/// and the refusal's metrics label. Every verdict but `Valid` refuses (fail closed).
pub(crate) fn verdict_outcome(
    tx: &B256,
    verdict: &Verdict,
) -> Result<(), (RpcError, &'static str)> {
    match verdict {
        Verdict::Valid { .. } => Ok(()),
        Verdict::Invalid(r) => Err((rejection_error(tx, r, false), r.label())),
        Verdict::NotYetKnown(r) => Err((rejection_error(tx, r, true), "not_yet_known")),
        Verdict::Unavailable(why) => Err((
            RpcError::new(
                codes::NO_BACKEND,
                format!("interop validation is unavailable ({why}); the transaction was not forwarded, retry later"),
            )
            .with_data(json!({ "txHash": tx })),
            "unavailable",
        )),
    }
}

/// The client-facing error for a rejection: the supervisor's code, a sentence naming the
/// message, and machine-readable `data`.
pub fn rejection_error(tx: &B256, r: &Rejection, not_yet_known: bool) -> RpcError {
    let which = r
        .message
        .filter(|m| !r.reason.contains(&m.to_string()))
        .map(|m| format!(" (message on {m})"))
        .unwrap_or_default();
    let (code, message) = if not_yet_known {
        (
            codes::SUP_FUTURE_DATA,
            format!("interop message not known yet{which}: {}; retry in a few seconds", r.reason),
        )
    } else {
        (r.code, format!("invalid interop message{which}: {}", r.reason))
    };
    let reason = if not_yet_known { "not_yet_known" } else { r.label() };
    let mut data = json!({ "txHash": tx, "reason": reason, "backendCode": r.code });
    if let Some(m) = &r.message {
        data["message"] = message_json(m);
    }
    RpcError::new(code, message).with_data(data)
}
