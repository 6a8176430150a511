//! The protocol rules the light backend applies to one executing message (protocol.md): timing
//! (not yet executable, expired, expiring inside the requested validity), the interop activation
//! rule, the safety level's head, the block's timestamp, the log at the index, and the checksum.
//! The chain is read through `chain_view.rs`; nothing here caches or talks to an RPC directly.
//!
//! Safety mapping (conservative, documented in the README): `unsafe` and `cross-unsafe` need the
//! block at or below `latest`; `local-safe` and `safe` at or below the `safe` tag; `finalized` at
//! or below `finalized`. A chain RPC cannot tell cross-unsafe from unsafe, so cross-unsafe is
//! answered from the canonical `latest` chain (what op-interop-filter does too).

use super::chain_view::Chain;
use super::head_waits::HeadTag;
use crate::interop::checksum::checksum;
use crate::interop::Message;
use crate::rpc::codes;
use crate::validation::{CheckRequest, Rejection, Verdict};

/// Blocks past the cached `latest` head a message may be in and still be looked up by number
/// (the head is up to `head_ttl_ms` old); beyond that, not yet known without a call.
const LATEST_MARGIN: u64 = 64;
/// The chain-independent parameters of the rules.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rules {
    /// `validation.expiry_window_secs`.
    pub(super) window: u64,
    /// `validation.allow_same_timestamp`.
    pub(super) allow_same_timestamp: bool,
}

impl Rules {
    /// The timing rules of protocol.md, before any remote call.
    pub(super) fn timing(&self, m: &Message, req: &CheckRequest) -> Option<Verdict> {
        let exec = req.descriptor.timestamp;
        let invalid = |why: String| {
            Some(Verdict::Invalid(Rejection::new(codes::SUP_CONFLICTING_DATA, why).for_message(*m)))
        };
        // Not yet executable rather than invalid: a second later it may be (the ingress uses
        // "now" as the executing timestamp), so it is retried, never cached as invalid.
        if m.timestamp > exec || (m.timestamp == exec && !self.allow_same_timestamp) {
            return Some(Verdict::NotYetKnown(
                Rejection::new(
                    codes::SUP_FUTURE_DATA,
                    format!(
                        "message {m} was initiated at {}, not before the executing timestamp {exec}",
                        m.timestamp
                    ),
                )
                .for_message(*m),
            ));
        }
        let expires = m.timestamp.saturating_add(self.window);
        if expires < exec {
            return invalid(format!("message {m} expired at {expires} (executing at {exec})"));
        }
        let end = req.descriptor.end().unwrap_or(u64::MAX);
        if expires < end {
            return invalid(format!(
                "message {m} expires at {expires}, before the end of the requested validity {end}"
            ));
        }
        None
    }

    /// One message against its source chain (`None`: the chain is not configured, so not in the
    /// dependency set).
    pub(super) async fn check_message(
        &self,
        chain: Option<&Chain>,
        m: &Message,
        req: &CheckRequest,
    ) -> Verdict {
        let Some(chain) = chain else {
            return Verdict::Invalid(
                Rejection::new(
                    codes::SUP_UNKNOWN_CHAIN,
                    format!("chain {} is not in the dependency set", m.chain_id),
                )
                .for_message(*m),
            );
        };
        if let Some(v) = self.timing(m, req) {
            return v;
        }
        if let Some(v) = crate::validation::activation::check(chain, m).await {
            return v;
        }
        let no_answer = |e: String| Verdict::Unavailable(format!("chain {}: {e}", m.chain_id));
        let tag = HeadTag::for_safety(req.min_safety).as_str();
        let head = match chain.head(tag).await {
            Ok(h) => h,
            Err(e) => return no_answer(e),
        };
        // `latest`: a header the RPC returns by number is at or below its head, so the lookup
        // by number below answers alone (one call per block, shared) and a block newer than
        // the cached head is not refused for it; the head only screens out heights far beyond.
        let beyond = if tag == "latest" { LATEST_MARGIN } else { 0 };
        if m.block_number > head.number.saturating_add(beyond) {
            let latest = if tag == "latest" { Ok(head) } else { chain.head("latest").await };
            let above_latest = latest.map(|l| m.block_number > l.number).unwrap_or(true);
            let why = if above_latest || tag == "latest" {
                format!("message {m} is in a block after the chain head {}", head.number)
            } else {
                format!("message {m} is not {tag} yet ({tag} head is {})", head.number)
            };
            return Verdict::NotYetKnown(
                Rejection::new(codes::SUP_FUTURE_DATA, why).for_message(*m),
            );
        }
        let header = match chain.header(m.block_number).await {
            Ok(Some(h)) => h,
            Ok(None) => {
                return Verdict::NotYetKnown(
                    Rejection::new(
                        codes::SUP_FUTURE_DATA,
                        format!(
                            "block {} of chain {} is not available yet",
                            m.block_number, m.chain_id
                        ),
                    )
                    .for_message(*m),
                )
            }
            Err(e) => return no_answer(e),
        };
        let invalid = |why: String| {
            Verdict::Invalid(Rejection::new(codes::SUP_CONFLICTING_DATA, why).for_message(*m))
        };
        if header.timestamp != m.timestamp {
            return invalid(format!(
                "message {m}: block {} has timestamp {}, the message says {}",
                header.number, header.timestamp, m.timestamp
            ));
        }
        let logs = match chain.block_logs(&header).await {
            Ok(l) => l,
            Err(e) => return no_answer(e),
        };
        let Some(log) = logs.iter().find(|l| l.log_index == u64::from(m.log_index) && !l.removed)
        else {
            return invalid(format!(
                "message {m}: block {} has no log at index {} ({} logs)",
                header.number,
                m.log_index,
                logs.len()
            ));
        };
        let want = checksum(
            log.address,
            &log.topics,
            &log.data,
            m.block_number,
            m.timestamp,
            m.log_index,
            m.chain_id,
        );
        if want != m.checksum {
            return invalid(format!(
                "message {m}: checksum mismatch: the log at index {} (origin {}) does not match \
                 the declared origin and payload",
                m.log_index, log.address
            ));
        }
        Verdict::Valid { until: req.descriptor.end().unwrap_or(u64::MAX) }
    }
}

/// One verdict for a request from its messages' verdicts, in message order: the first definitive
/// invalid, else the first not-yet-known, else the first no-answer, else valid for the request's
/// whole validity.
pub(super) fn combine(all: &[Verdict], req: &CheckRequest) -> Verdict {
    if let Some(v) = all.iter().find(|v| matches!(v, Verdict::Invalid(_))) {
        return v.clone();
    }
    if let Some(v) = all.iter().find(|v| matches!(v, Verdict::NotYetKnown(_))) {
        return v.clone();
    }
    if let Some(v) = all.iter().find(|v| matches!(v, Verdict::Unavailable(_))) {
        return v.clone();
    }
    Verdict::Valid { until: req.descriptor.end().unwrap_or(u64::MAX) }
}
