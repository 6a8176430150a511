//! The server side of the supervisor's `checkAccessList`, shared by every listener that serves it
//! (the light-mode supervisor endpoint and the revalidator's drop-in face), so both decode the
//! params and encode verdicts identically.
//!
//! Wire format (op-supervisor): params `[inboxEntries: [bytes32], minSafety: string,
//! executingDescriptor]`; `null` on success; a JSON-RPC error carrying the supervisor code
//! otherwise. Malformed entries or an unknown safety level are -32602.

use alloy_primitives::B256;
use serde_json::value::RawValue;

use super::codes;
use super::types::{null, Call, RpcError};
use crate::interop::access_list::{dedup, parse_entries};
use crate::interop::{ExecutingDescriptor, Message, SafetyLevel};
use crate::validation::{CheckRequest, Verdict};

/// Both names of the method: the current `interop_` one and op-supervisor's older one.
pub const METHODS: [&str; 2] = ["interop_checkAccessList", "supervisor_checkAccessList"];

/// True when `method` is `checkAccessList` under either name.
pub fn is_check_access_list(method: &str) -> bool {
    METHODS.contains(&method)
}

/// A decoded call: the raw entries (kept for exact-match lookups) and the check to run.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The entries as sent.
    pub entries: Vec<B256>,
    /// The de-duplicated messages, safety and descriptor.
    pub request: CheckRequest,
}

/// Decodes the params; every malformed input is -32602 with a sentence saying what.
pub fn decode(call: &Call) -> Result<Decoded, RpcError> {
    let (entries, safety, descriptor): (Vec<B256>, String, ExecutingDescriptor) =
        call.parse_params()?;
    let min_safety: SafetyLevel = safety.parse().map_err(RpcError::invalid_params)?;
    let mut messages: Vec<Message> = parse_entries(&entries)
        .map_err(|e| RpcError::invalid_params(format!("malformed inbox entries: {e}")))?;
    dedup(&mut messages);
    Ok(Decoded {
        entries,
        request: CheckRequest { messages: messages.into(), min_safety, descriptor },
    })
}

/// The wire answer for a verdict.
pub fn answer(verdict: &Verdict) -> Result<Box<RawValue>, RpcError> {
    match verdict {
        Verdict::Valid { .. } => Ok(null()),
        Verdict::Invalid(r) => Err(RpcError::new(r.code, r.reason.clone())),
        Verdict::NotYetKnown(r) => {
            // Only the two soft codes may say "not yet": anything else would make clients evict.
            let code = if r.code == codes::SUP_UNINITIALIZED {
                codes::SUP_UNINITIALIZED
            } else {
                codes::SUP_FUTURE_DATA
            };
            Err(RpcError::new(code, r.reason.clone()))
        }
        Verdict::Unavailable(why) => Err(RpcError::internal(format!("cannot check now: {why}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::Rejection;

    fn call(params: &str) -> Call {
        Call {
            method: "interop_checkAccessList".into(),
            params: Some(RawValue::from_string(params.into()).unwrap()),
        }
    }

    #[test]
    fn decodes_the_wire_params() {
        let d = decode(&call(
            r#"[["0x0100000000000000000003850000000000000007000000006724d56300000000","0x031ae3a7ee4ad1a293990b1d810700d09bfebe953b16a0ebd79be7fbf84c93a3"],"cross-unsafe",{"timestamp":"0x6724d564","timeout":"0x15180","chainID":"10"}]"#,
        ))
        .unwrap();
        assert_eq!(d.entries.len(), 2);
        assert_eq!(d.request.messages.len(), 1);
        assert_eq!(d.request.messages[0].block_number, 7);
        assert_eq!(d.request.min_safety, SafetyLevel::CrossUnsafe);
        assert_eq!(d.request.descriptor.timeout, Some(86400));
        let empty = decode(&call(r#"[[],"unsafe",{"timestamp":"0x1"}]"#)).unwrap();
        assert!(empty.request.messages.is_empty());
    }

    #[test]
    fn malformed_params_are_invalid_params() {
        for p in [
            r#"[]"#,
            r#"[["0x01"],"unsafe",{"timestamp":"0x1"}]"#,
            r#"[[],"Unsafe",{"timestamp":"0x1"}]"#,
            r#"[["0x0000000000000000000000000000000000000000000000000000000000000000"],"unsafe",{"timestamp":"0x1"}]"#,
        ] {
            assert_eq!(decode(&call(p)).unwrap_err().code, codes::INVALID_PARAMS, "{p}");
        }
    }

    #[test]
    fn not_yet_known_is_only_ever_a_soft_code() {
        let v = Verdict::NotYetKnown(Rejection::new(codes::SUP_OUT_OF_SCOPE, "x"));
        assert_eq!(answer(&v).unwrap_err().code, codes::SUP_FUTURE_DATA);
        let v = Verdict::NotYetKnown(Rejection::new(codes::SUP_UNINITIALIZED, "x"));
        assert_eq!(answer(&v).unwrap_err().code, codes::SUP_UNINITIALIZED);
        assert_eq!(answer(&Verdict::Valid { until: 1 }).unwrap().get(), "null");
        let v = Verdict::Invalid(Rejection::new(codes::SUP_CONFLICTING_DATA, "bad checksum"));
        assert_eq!(answer(&v).unwrap_err().code, -320600);
        assert_eq!(answer(&Verdict::Unavailable("x".into())).unwrap_err().code, -32603);
    }
}
