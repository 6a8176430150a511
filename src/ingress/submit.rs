//! The submission pipeline every `eth_sendRawTransaction*` call goes through:
//! decode → rate limits in one decision (client or API key, method, sender, and for interop txs
//! the interop sender: one Redis round trip when shared) → chain id → mode →
//! size caps → parse → de-dup → verdict cache → sender recovery → in-flight bound → validate →
//! forward. Cheap checks come before any remote call; an invalid transaction is never
//! forwarded; a non-interop transaction costs no backend call.
//!
//! The sender is recovered (secp256k1, most of a submission's CPU) only when something needs
//! it: a sender limit, a validation that would call a backend (so a tx whose signature
//! recovers no sender is refused before any backend call), or a refusal's log line. Without
//! sender limits, a non-interop tx, a bypassed one and one whose verdict is cached are
//! forwarded without it; the EL checks every signature itself.

use std::sync::Arc;

use alloy_primitives::{Bytes, B256};
use tokio::sync::Semaphore;

use super::limits::{RateLimits, SubmissionLimited, ValidationSlot};
use super::refusal::Refusal;
use crate::admin::ModeCell;
use crate::config::{ConditionalInterop, IngressConfig, InteropMode};
use crate::interop::access_list::{parse_bounded, Bounds};
use crate::interop::tx::{decode_unrecovered, DecodedTx};
use crate::interop::{ExecutingDescriptor, Message, SafetyLevel};
use crate::metrics::metrics;
use crate::rpc::server::CallContext;
use crate::rpc::types::{Call, RpcError};
use crate::validation::{CheckRequest, DynBackend};

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

    /// Runs one submission through the pipeline: `Ok` with the reason it may go upstream, or the
    /// refusal's wire error (counted and logged). The caller forwards (see `Ingress::answer`).
    pub async fn decide(
        &self,
        ctx: &CallContext,
        call: &Call,
        limits: &RateLimits,
    ) -> Result<Pass, RpcError> {
        let api_key = ctx.api_key.as_deref();
        let tx = match self.decode(call) {
            Ok(tx) => tx,
            Err(e) => {
                // Not a transaction: the call's own limits still apply (and refuse first).
                limits.check_call(ctx.client_ip, api_key, &call.method).await?;
                return Err(e);
            }
        };
        // The call's, the sender's and the interop sender's buckets in one decision: one Redis
        // round trip per submission when the limits are shared.
        let wants_sender = limits.limits_senders();
        let wants_interop = tx.is_interop() && limits.limits_interop_senders();
        let who = if wants_sender || wants_interop {
            match sender(&tx) {
                Ok(a) => Some(a),
                Err(refusal) => {
                    limits.check_call(ctx.client_ip, api_key, &call.method).await?;
                    return Err(self.refuse(ctx, &tx, refusal));
                }
            }
        } else {
            None
        };
        let (s, i) = (who.filter(|_| wants_sender), who.filter(|_| wants_interop));
        match limits.check_submission(ctx.client_ip, api_key, &call.method, s, i).await {
            Ok(()) => {}
            Err(SubmissionLimited::Call(e)) => return Err(e),
            Err(SubmissionLimited::Sender(e)) => {
                return Err(self.refuse(ctx, &tx, Refusal::SenderRateLimited(e)))
            }
            Err(SubmissionLimited::InteropSender(e)) => {
                return Err(self.refuse(ctx, &tx, Refusal::InteropSenderRateLimited(e)))
            }
        }
        match self.judge(&tx, call).await {
            Ok(reason) => Ok(Pass::Tx { hash: tx.hash, reason }),
            Err(refusal) => Err(self.refuse(ctx, &tx, refusal)),
        }
    }

    /// The pipeline's checks after the limits, cheapest first.
    async fn judge(&self, tx: &DecodedTx, call: &Call) -> Result<&'static str, Refusal> {
        self.check_chain(tx)?;
        if !tx.is_interop() {
            return Ok("non_interop");
        }
        if self.gate()? == Gate::Bypass {
            return Ok("bypass");
        }
        if call.method == "eth_sendRawTransactionConditional"
            && self.conditional_interop == ConditionalInterop::Refuse
        {
            return Err(Refusal::ConditionalRefused);
        }
        let messages = self.messages(tx)?;
        let engine = self.engine()?;
        let req = self.request(messages);
        let verdict = match engine.remembered(&req).await {
            Some(v) => v,
            None => {
                // Before any backend call: garbage signatures cost no backend its time.
                sender(tx)?;
                let slot = self.reserve(1)?;
                let v = engine.check(&req).await;
                drop(slot);
                v
            }
        };
        match Refusal::of_verdict(&verdict) {
            None => Ok("valid"),
            Some(refusal) => Err(refusal),
        }
    }

    /// Refused when `tx` is signed for another chain than this endpoint's.
    pub(crate) fn check_chain(&self, tx: &DecodedTx) -> Result<(), Refusal> {
        match tx.chain_id {
            Some(id) if id != self.chain_id => {
                Err(Refusal::WrongChain { signed_for: id, serves: self.chain_id })
            }
            _ => Ok(()),
        }
    }

    /// What the current interop mode says about an interop transaction: validate it, forward it
    /// unchecked (bypass), or refuse it (reject-all).
    pub(crate) fn gate(&self) -> Result<Gate, Refusal> {
        match self.mode.get() {
            InteropMode::Bypass => Ok(Gate::Bypass),
            InteropMode::RejectAll => Err(Refusal::RejectAll),
            InteropMode::Enforce => Ok(Gate::Validate),
        }
    }

    /// The engine, or a refusal when none is configured (fail closed).
    pub(crate) fn engine(&self) -> Result<&DynBackend, Refusal> {
        self.engine.as_ref().ok_or(Refusal::NoBackend)
    }

    /// Takes `n` of the in-flight validation slots (one per transaction checked).
    /// The slots and the gauge are given back when the guard drops, also when the caller is
    /// cancelled (a WebSocket client that went away).
    pub(crate) fn reserve(&self, n: u32) -> Result<ValidationSlot<'_>, Refusal> {
        ValidationSlot::try_acquire_many(&self.in_flight, n).ok_or(Refusal::OverCapacity)
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
    pub(crate) fn messages(&self, tx: &DecodedTx) -> Result<Vec<Message>, Refusal> {
        let bounds =
            Bounds { max_entries: self.max_inbox_entries, max_messages: self.max_messages };
        parse_bounded(&tx.inbox_entries, bounds).map_err(Refusal::AccessList)
    }

    /// Counts and logs a refusal (one line per refused transaction, filterable by target) and
    /// gives its wire error.
    pub(crate) fn refuse(&self, ctx: &CallContext, tx: &DecodedTx, refusal: Refusal) -> RpcError {
        let reason = refusal.label();
        metrics().ingress_txs.with_label_values(&["refused", reason]).inc();
        let message_id =
            refusal.message().map(|m| format!("{}:{}:{}", m.chain_id, m.block_number, m.log_index));
        let e = refusal.into_error(&tx.hash);
        tracing::info!(
            target: "interop_gate::refused",
            tx = %tx.hash,
            sender = %LazySender(tx),
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

/// Why a submission may go upstream, for the one place that forwards (`Ingress::answer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// One transaction; `reason` labels `ingress_txs_total{outcome="forwarded"}`.
    Tx {
        /// Its hash (for the sync methods' receipt wait).
        hash: B256,
        /// `non_interop`, `bypass` or `valid`.
        reason: &'static str,
    },
    /// A bundle; `reason` labels the bundle counter.
    Bundle {
        /// `non_interop`, `bypass` or `valid`.
        reason: &'static str,
    },
}

/// What the interop mode says about an interop transaction (see [`Submitter::gate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Validate it.
    Validate,
    /// Forward it unchecked.
    Bypass,
}

/// The sender, recovered now if it was not yet; refused when none recovers.
pub(crate) fn sender(tx: &DecodedTx) -> Result<alloy_primitives::Address, Refusal> {
    tx.sender().map_err(|_| Refusal::Unrecoverable)
}

/// Shows the sender in a log line, recovering it only if the line is written.
struct LazySender<'a>(&'a DecodedTx);

impl std::fmt::Display for LazySender<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.sender() {
            Ok(a) => write!(f, "{a}"),
            Err(_) => f.write_str("unrecoverable"),
        }
    }
}

/// Decodes a 0x-prefixed raw transaction (-32602 when it is not hex or not a transaction); the
/// sender is recovered later, when needed (see the module doc).
pub(crate) fn decode_raw(raw: &str) -> Result<DecodedTx, RpcError> {
    let bytes: Bytes = raw
        .parse()
        .map_err(|e| RpcError::invalid_params(format!("raw transaction is not valid hex: {e}")))?;
    decode_unrecovered(&bytes).map_err(|e| {
        metrics().ingress_txs.with_label_values(&["refused", "undecodable"]).inc();
        RpcError::invalid_params(format!("cannot decode transaction: {e}"))
    })
}
