//! Why the ingress refuses a transaction: one variant per refusal, and from it the JSON-RPC code,
//! the HTTP status, the metric/log label and the client's sentence. The pipeline (single
//! submissions and bundles) returns a [`Refusal`]; only [`Refusal::into_error`] turns it into the
//! wire error, so the code table (`rpc/codes.rs`) and the labels are read in one place.

use alloy_primitives::B256;
use axum::http::StatusCode;
use serde_json::json;

use crate::interop::access_list::BoundedParseError;
use crate::interop::Message;
use crate::rpc::codes;
use crate::rpc::types::RpcError;
use crate::validation::codec::message_json;
use crate::validation::{Rejection, Verdict};

/// Why a transaction was not forwarded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Signed for another chain than the one this endpoint serves (-32602).
    #[error("transaction is signed for chain {signed_for}, this endpoint serves chain {serves}")]
    WrongChain {
        /// The tx's chain id.
        signed_for: u64,
        /// `ingress.chain_id`.
        serves: u64,
    },
    /// Over the per-sender limit: the limiter's own error (its code and sentence).
    #[error("{}", .0.message)]
    SenderRateLimited(RpcError),
    /// Over the interop-only per-sender limit: the limiter's own error.
    #[error("{}", .0.message)]
    InteropSenderRateLimited(RpcError),
    /// The operator set reject-all (-32019, retry).
    #[error(
        "interop transactions are temporarily refused by the operator (reject-all mode); retry later"
    )]
    RejectAll,
    /// An interop tx sent with `eth_sendRawTransactionConditional` where that is refused (-32601).
    #[error(
        "interop transactions are not accepted with eth_sendRawTransactionConditional here; send \
         them with eth_sendRawTransaction"
    )]
    ConditionalRefused,
    /// The interop access list is over a cap or malformed.
    #[error(transparent)]
    AccessList(BoundedParseError),
    /// No backend is configured (fail closed, retry).
    #[error("interop validation is unavailable (no backend configured); retry later")]
    NoBackend,
    /// Every validation slot is taken (retry shortly).
    #[error("too many interop validations in flight; retry shortly")]
    OverCapacity,
    /// A backend's definitive invalid verdict.
    #[error("invalid interop message{}: {}", which(.0), .0.reason)]
    Invalid(Box<Rejection>),
    /// A message not known yet, after the re-test (retry).
    #[error("interop message not known yet{}: {}; retry in a few seconds", which(.0), .0.reason)]
    NotYetKnown(Box<Rejection>),
    /// No verdict: the backends did not answer (fail closed, retry).
    #[error(
        "interop validation is unavailable ({0}); the transaction was not forwarded, retry later"
    )]
    Unavailable(String),
}

/// " (message on chain:block:index)" when the reason does not already name the message.
fn which(r: &Rejection) -> String {
    r.message
        .filter(|m| !r.reason.contains(&m.to_string()))
        .map(|m| format!(" (message on {m})"))
        .unwrap_or_default()
}

impl Refusal {
    /// Every label a refusal can carry (plus `undecodable`, the pre-pipeline refusal of bytes
    /// that are not a transaction), so the metrics export them at 0 from start-up. `Invalid`
    /// carries the backend code's label ([`codes::label`]): the usual ones are listed.
    pub const LABELS: [&'static str; 16] = [
        "undecodable",
        "wrong_chain",
        "sender_rate_limited",
        "interop_sender_rate_limited",
        "reject_all",
        "conditional_refused",
        "malformed",
        "unavailable",
        "over_capacity",
        "not_yet_known",
        "conflicting_data",
        "unknown_chain",
        "failsafe",
        "access_list_too_large",
        "internal_error",
        "other",
    ];

    /// The refusal a verdict means, `None` for `Valid` (every other verdict refuses: fail closed).
    pub fn of_verdict(verdict: &Verdict) -> Option<Self> {
        match verdict {
            Verdict::Valid { .. } => None,
            Verdict::Invalid(r) => Some(Self::Invalid(Box::new(r.clone()))),
            Verdict::NotYetKnown(r) => Some(Self::NotYetKnown(Box::new(r.clone()))),
            Verdict::Unavailable(why) => Some(Self::Unavailable(why.clone())),
        }
    }

    /// The JSON-RPC code.
    pub fn code(&self) -> i64 {
        match self {
            Self::WrongChain { .. } => codes::INVALID_PARAMS,
            Self::SenderRateLimited(e) | Self::InteropSenderRateLimited(e) => e.code,
            Self::RejectAll => codes::SUP_FAILSAFE,
            Self::ConditionalRefused => codes::METHOD_NOT_FOUND,
            Self::AccessList(BoundedParseError::Malformed(_)) => codes::INVALID_PARAMS,
            Self::AccessList(_) => codes::ACCESS_LIST_TOO_LARGE,
            Self::NoBackend | Self::Unavailable(_) => codes::NO_BACKEND,
            Self::OverCapacity => codes::OVER_CAPACITY,
            Self::Invalid(r) => r.code,
            Self::NotYetKnown(_) => codes::SUP_FUTURE_DATA,
        }
    }

    /// The HTTP status of a single-request answer carrying this refusal.
    pub fn http_status(&self) -> StatusCode {
        codes::http_status(self.code())
    }

    /// The label of `ingress_txs_total{outcome="refused"}`, the log line and `data.reason`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::WrongChain { .. } => "wrong_chain",
            Self::SenderRateLimited(_) => "sender_rate_limited",
            Self::InteropSenderRateLimited(_) => "interop_sender_rate_limited",
            Self::RejectAll => "reject_all",
            Self::ConditionalRefused => "conditional_refused",
            Self::AccessList(_) => "malformed",
            Self::NoBackend | Self::Unavailable(_) => "unavailable",
            Self::OverCapacity => "over_capacity",
            Self::Invalid(r) => r.label(),
            Self::NotYetKnown(_) => "not_yet_known",
        }
    }

    /// The message that failed, when one did.
    pub fn message(&self) -> Option<&Message> {
        match self {
            Self::Invalid(r) | Self::NotYetKnown(r) => r.message.as_ref(),
            _ => None,
        }
    }

    /// The wire error for transaction `tx`: code, sentence, and `data` with the tx hash, the
    /// reason label and what else the refusal knows (the failing message, the backend's code,
    /// the offending entry).
    pub fn into_error(self, tx: &B256) -> RpcError {
        let mut data = json!({ "txHash": tx, "reason": self.label() });
        match &self {
            Self::Invalid(r) | Self::NotYetKnown(r) => {
                data["backendCode"] = json!(r.code);
                if let Some(m) = &r.message {
                    data["message"] = message_json(m);
                }
            }
            Self::AccessList(BoundedParseError::Malformed(e)) => {
                data["entryIndex"] = json!(e.index());
            }
            _ => {}
        }
        let message = match &self {
            Self::AccessList(BoundedParseError::Malformed(e)) => {
                format!("invalid params: malformed interop access list: {e}")
            }
            Self::WrongChain { .. } => format!("invalid params: {self}"),
            other => other.to_string(),
        };
        RpcError::new(self.code(), message).with_data(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interop::access_list::AccessListError;

    #[test]
    fn every_refusal_has_a_documented_code_and_its_status_follows_from_it() {
        let r = Rejection::new(codes::SUP_CONFLICTING_DATA, "checksum mismatch");
        let all = [
            Refusal::WrongChain { signed_for: 1, serves: 2 },
            Refusal::SenderRateLimited(RpcError::new(codes::SENDER_RATE_LIMITED, "slow")),
            Refusal::RejectAll,
            Refusal::ConditionalRefused,
            Refusal::AccessList(BoundedParseError::TooManyEntries { found: 9, limit: 3 }),
            Refusal::AccessList(BoundedParseError::Malformed(AccessListError::Truncated {
                index: 0,
                after: "lookup",
                expected: "checksum",
            })),
            Refusal::NoBackend,
            Refusal::OverCapacity,
            Refusal::Invalid(Box::new(r.clone())),
            Refusal::NotYetKnown(Box::new(r)),
            Refusal::Unavailable("timed out".into()),
        ];
        let tx = B256::repeat_byte(1);
        for refusal in all {
            let (code, status, label) = (refusal.code(), refusal.http_status(), refusal.label());
            assert_ne!(codes::label(code), "other", "{refusal:?}");
            let e = refusal.into_error(&tx);
            assert_eq!((e.code, e.http_status()), (code, status));
            let data = e.data.expect("data");
            assert_eq!(data["txHash"], json!(tx));
            assert_eq!(data["reason"], label);
            assert!(Refusal::LABELS.contains(&label), "{label} is exported at start-up");
        }
    }
}
