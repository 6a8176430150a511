//! The supervisor wire contract of `checkAccessList`, both sides, in one place: what a client
//! sends (params), how it reads an answer into a [`Verdict`], how a server decodes the params and
//! encodes a verdict. The indexed backend (client), the light endpoint and the revalidator's
//! drop-in (servers) and the in-process test supervisor all use these functions, so the two
//! sides cannot drift apart; the round-trip tests below pin them together.
//!
//! Wire format (op-supervisor, op-interop-filter): params `[inboxEntries: [bytes32], minSafety:
//! string, executingDescriptor]`; `null` on success; a JSON-RPC error carrying the supervisor code
//! otherwise. Malformed entries or an unknown safety level are -32602.
//!
//! Reading an answer trusts nothing: only `"result": null` is valid, and only an error whose code
//! is on the list below is a definitive invalid. Everything else (a non-null result, an unknown
//! code, a proxy's refusal, and everything the JSON-RPC client already refuses: non-2xx, wrong
//! id, `{}`, oversize bodies) is no answer.

use alloy_primitives::B256;
use serde_json::json;
use serde_json::value::RawValue;

use super::{CheckRequest, Rejection, Verdict};
use crate::interop::access_list::{
    dedup, encode_entries, parse_bounded, BoundedParseError, Bounds,
};
use crate::interop::{ExecutingDescriptor, Message, SafetyLevel};
use crate::rpc::client::ClientError;
use crate::rpc::codes;
use crate::rpc::types::{null, Call, RpcError};

/// Both names of the method: the current `interop_` one and op-supervisor's older one.
pub const METHODS: [&str; 2] = ["interop_checkAccessList", "supervisor_checkAccessList"];

/// True when `method` is `checkAccessList` under either name.
pub fn is_check_access_list(method: &str) -> bool {
    METHODS.contains(&method)
}

// ---- client side -------------------------------------------------------------------------

/// The wire params of one check, as a client sends them.
pub type Params<'a> = (Vec<B256>, SafetyLevel, &'a ExecutingDescriptor);

/// Encodes a check into its wire params.
pub fn params(req: &CheckRequest) -> Params<'_> {
    (encode_entries(&req.messages), req.min_safety, &req.descriptor)
}

/// What a supervisor error code means for the message it was asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeClass {
    /// The supervisor is in failsafe: every check fails, whatever the message.
    Failsafe,
    /// Not known yet (future data, uninitialized database): retry, never evict.
    NotYetKnown,
    /// The message is invalid (or the entries are malformed).
    Invalid,
    /// Says nothing about the message: an internal error, a proxy's refusal, a code no peer
    /// documents. Fail closed at the ingress; keep the tx in the revalidator.
    NoAnswer,
}

/// Classifies a code. The definitive list is the one in protocol.md (the supervisor error
/// codes op-reth and proxyd evict/refuse on, as op-interop-filter returns them through
/// `GetErrorCode`), plus -32602 for malformed entries. An error that op-interop-filter raises
/// without a typed cause (for example "unsupported safety level") carries a generic code and
/// lands in [`CodeClass::NoAnswer`], as does every code nobody documents.
pub fn classify_code(code: i64) -> CodeClass {
    match code {
        codes::SUP_FAILSAFE => CodeClass::Failsafe,
        codes::SUP_FUTURE_DATA | codes::SUP_UNINITIALIZED => CodeClass::NotYetKnown,
        codes::SUP_SKIPPED_DATA
        | codes::SUP_UNKNOWN_CHAIN
        | codes::SUP_CONFLICTING_DATA
        | codes::SUP_INEFFECTIVE_DATA
        | codes::SUP_OUT_OF_ORDER
        | codes::SUP_AWAITING_REPLACEMENT
        | codes::SUP_ITER_STOP
        | codes::SUP_OUT_OF_SCOPE
        | codes::SUP_NO_PARENT_OF_FIRST
        | codes::SUP_MISSED_DATA
        | codes::SUP_DATA_CORRUPTION
        | codes::INVALID_PARAMS => CodeClass::Invalid,
        _ => CodeClass::NoAnswer,
    }
}

/// The verdict a supervisor's JSON-RPC error carries (the message is kept for humans).
pub fn classify_error(e: &RpcError) -> Verdict {
    let reason = format!("supervisor: {}", e.message);
    match classify_code(e.code) {
        CodeClass::Failsafe | CodeClass::Invalid => {
            Verdict::Invalid(Rejection::new(e.code, reason))
        }
        CodeClass::NotYetKnown => Verdict::NotYetKnown(Rejection::new(e.code, reason)),
        CodeClass::NoAnswer => Verdict::Unavailable(format!(
            "supervisor answered code {}, not a verdict: {}",
            e.code, e.message
        )),
    }
}

/// The verdict of one answer to `req`: `"result": null` is valid, an error is classified by its
/// code, anything else is no answer.
pub fn verdict_of(req: &CheckRequest, answer: Result<Box<RawValue>, ClientError>) -> Verdict {
    match answer {
        Ok(raw) if raw.get().trim() == "null" => {
            Verdict::Valid { until: req.descriptor.end().unwrap_or(u64::MAX) }
        }
        Ok(raw) => Verdict::Unavailable(format!(
            "supervisor answered a non-null result ({} bytes), not a verdict",
            raw.get().len()
        )),
        Err(ClientError::Rpc { error, .. }) => classify_error(&error),
        Err(e) => Verdict::Unavailable(e.to_string()),
    }
}

// ---- server side -------------------------------------------------------------------------

/// A decoded call: the raw entries (kept for exact-match lookups) and the check to run.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The entries as sent.
    pub entries: Vec<B256>,
    /// The de-duplicated messages, safety and descriptor.
    pub request: CheckRequest,
}

/// Why a check call could not be decoded: its params, or its inbox entries (over a cap or
/// malformed; each server maps that to its own answer).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The params are not `[entries, minSafety, descriptor]` (-32602 with a sentence).
    #[error(transparent)]
    Params(#[from] RpcError),
    /// The entries, by [`parse_bounded`].
    #[error(transparent)]
    AccessList(#[from] BoundedParseError),
}

/// Decodes the params and the entries, within `bounds`.
pub fn decode(call: &Call, bounds: Bounds) -> Result<Decoded, DecodeError> {
    let (entries, safety, descriptor): (Vec<B256>, String, ExecutingDescriptor) =
        call.parse_params()?;
    let min_safety: SafetyLevel = safety.parse().map_err(RpcError::invalid_params)?;
    let messages = parse_bounded(&entries, bounds)?;
    Ok(Decoded {
        entries,
        request: CheckRequest { messages: messages.into(), min_safety, descriptor },
    })
}

/// How the supervisor answers entries it will not check: -32602 with a sentence (op-supervisor
/// and op-interop-filter answer malformed entries with invalid params).
pub fn access_list_rpc_error(e: &BoundedParseError) -> RpcError {
    match e {
        BoundedParseError::Malformed(e) => {
            RpcError::invalid_params(format!("malformed inbox entries: {e}"))
        }
        BoundedParseError::TooManyMessages { found, limit } => {
            RpcError::invalid_params(format!("{found} distinct messages, the limit is {limit}"))
        }
        e @ BoundedParseError::TooManyEntries { .. } => RpcError::invalid_params(e),
    }
}

/// [`decode`] for a server that answers every refusal as -32602 ([`access_list_rpc_error`]).
pub fn decode_or_invalid_params(call: &Call, bounds: Bounds) -> Result<Decoded, RpcError> {
    decode(call, bounds).map_err(|e| match e {
        DecodeError::Params(e) => e,
        DecodeError::AccessList(e) => access_list_rpc_error(&e),
    })
}

// ---- the message form (`supervisor_checkMessagesV2`) ----------------------------------------

/// Both names of the message-form check: op-supervisor's `supervisor_checkMessagesV2` (early
/// 2025, superseded by `checkAccessList`) and the same under the `interop_` namespace.
pub const MESSAGE_METHODS: [&str; 2] = ["supervisor_checkMessagesV2", "interop_checkMessages"];

/// True when `method` is the message-form check under either name.
pub fn is_check_messages(method: &str) -> bool {
    MESSAGE_METHODS.contains(&method)
}

/// op-supervisor's `Identifier` JSON (`types.go`, `identifierMarshaling`): `origin` an address,
/// `blockNumber`, `logIndex`, `timestamp` `hexutil.Uint64`, `chainID` `hexutil.U256`. Numbers are
/// kept as strings here and parsed with Go's `hexutil` rules, so every malformed field gets its
/// own sentence.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireIdentifier {
    origin: alloy_primitives::Address,
    block_number: String,
    log_index: String,
    timestamp: String,
    #[serde(rename = "chainID")]
    chain_id: String,
}

/// op-supervisor's `Message` JSON: an identifier and the `keccak256` of the log's payload.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMessage {
    identifier: WireIdentifier,
    payload_hash: B256,
}

/// A `hexutil` quantity: `0x`, at least one digit, no leading zero, at most `bits` bits.
fn hex_quantity(s: &str, bits: usize) -> Result<alloy_primitives::U256, String> {
    let digits =
        s.strip_prefix("0x").ok_or_else(|| format!("{s:?} is not a 0x-prefixed hex quantity"))?;
    if digits.is_empty() {
        return Err(format!("{s:?} has no digits"));
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Err(format!("{s:?} has a leading zero"));
    }
    if digits.len() > bits / 4 {
        return Err(format!("{s:?} is larger than {bits} bits"));
    }
    alloy_primitives::U256::from_str_radix(digits, 16).map_err(|e| format!("{s:?}: {e}"))
}

fn hex_u64(s: &str) -> Result<u64, String> {
    hex_quantity(s, 64).map(|v| v.to::<u64>())
}

impl WireMessage {
    /// The executing message it describes: its checksum is computed from the identifier and the
    /// payload hash exactly as the access-list entry commits to it.
    fn message(&self) -> Result<Message, String> {
        let id = &self.identifier;
        let field =
            |name: &str, r: Result<u64, String>| r.map_err(|e| format!("identifier.{name}: {e}"));
        let block_number = field("blockNumber", hex_u64(&id.block_number))?;
        let timestamp = field("timestamp", hex_u64(&id.timestamp))?;
        let log_index = field("logIndex", hex_u64(&id.log_index))?;
        let log_index = u32::try_from(log_index)
            .map_err(|_| format!("identifier.logIndex: log index too large: {log_index}"))?;
        let chain_id =
            hex_quantity(&id.chain_id, 256).map_err(|e| format!("identifier.chainID: {e}"))?;
        let log_hash = crate::interop::checksum::log_hash(id.origin, self.payload_hash);
        let checksum = crate::interop::checksum::checksum_from_log_hash(
            log_hash,
            block_number,
            timestamp,
            log_index,
            chain_id,
        );
        Ok(Message { chain_id, block_number, timestamp, log_index, checksum })
    }
}

/// Decodes `[messages, minSafety, executingDescriptor]` of the message form into the same check
/// an access list gives (the entries are what a transaction would declare for these messages).
/// At most `max_messages` messages; every malformed input is -32602 naming the message and field.
pub fn decode_messages(call: &Call, max_messages: usize) -> Result<Decoded, RpcError> {
    let (raw, safety, descriptor): (Vec<Box<RawValue>>, String, ExecutingDescriptor) =
        call.parse_params()?;
    if raw.len() > max_messages {
        return Err(RpcError::invalid_params(format!(
            "{} messages, the limit is {max_messages}",
            raw.len()
        )));
    }
    let min_safety: SafetyLevel = safety.parse().map_err(RpcError::invalid_params)?;
    let mut messages = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let wire: WireMessage = serde_json::from_str(r.get())
            .map_err(|e| RpcError::invalid_params(format!("messages[{i}]: {e}")))?;
        messages.push(
            wire.message().map_err(|e| RpcError::invalid_params(format!("messages[{i}].{e}")))?,
        );
    }
    dedup(&mut messages);
    Ok(Decoded {
        entries: encode_entries(&messages),
        request: CheckRequest { messages: messages.into(), min_safety, descriptor },
    })
}

/// The JSON naming a message, for error `data`, refusal logs and the invalid feed (one shape
/// everywhere: chain id as a decimal string, since it may exceed 2^53).
pub fn message_json(m: &Message) -> serde_json::Value {
    json!({
        "chainId": m.chain_id.to_string(),
        "blockNumber": m.block_number,
        "logIndex": m.log_index,
        "timestamp": m.timestamp,
        "checksum": m.checksum,
    })
}

/// The wire answer for a verdict. An error names the failing message in `data.message` when
/// the verdict names one (op-interop-filter sends no `data`; clients ignore what they do not
/// read).
pub fn answer(verdict: &Verdict) -> Result<Box<RawValue>, RpcError> {
    let with_message = |e: RpcError, r: &Rejection| match &r.message {
        Some(m) => e.with_data(json!({ "message": message_json(m) })),
        None => e,
    };
    match verdict {
        Verdict::Valid { .. } => Ok(null()),
        Verdict::Invalid(r) => Err(with_message(RpcError::new(r.code, r.reason.clone()), r)),
        Verdict::NotYetKnown(r) => {
            // Only the two soft codes may say "not yet": anything else would make clients evict.
            let code = if r.code == codes::SUP_UNINITIALIZED {
                codes::SUP_UNINITIALIZED
            } else {
                codes::SUP_FUTURE_DATA
            };
            Err(with_message(RpcError::new(code, r.reason.clone()), r))
        }
        // -32603: every client (op-reth, op-geth, proxyd) reads it as "no answer" and keeps the tx.
        Verdict::Unavailable(why) => Err(RpcError::internal(format!("cannot check now: {why}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIDE: Bounds = Bounds { max_entries: 1_000, max_messages: 1_000 };

    fn call(params: &str) -> Call {
        Call {
            method: "interop_checkAccessList".into(),
            params: Some(RawValue::from_string(params.into()).unwrap()),
        }
    }

    #[test]
    fn decodes_the_wire_params() {
        let d = decode_or_invalid_params(&call(
            r#"[["0x0100000000000000000003850000000000000007000000006724d56300000000","0x031ae3a7ee4ad1a293990b1d810700d09bfebe953b16a0ebd79be7fbf84c93a3"],"cross-unsafe",{"timestamp":"0x6724d564","timeout":"0x15180","chainID":"10"}]"#,
        ), WIDE)
        .unwrap();
        assert_eq!(d.entries.len(), 2);
        assert_eq!(d.request.messages.len(), 1);
        assert_eq!(d.request.messages[0].block_number, 7);
        assert_eq!(d.request.min_safety, SafetyLevel::CrossUnsafe);
        assert_eq!(d.request.descriptor.timeout, Some(86400));
        let empty =
            decode_or_invalid_params(&call(r#"[[],"unsafe",{"timestamp":"0x1"}]"#), WIDE).unwrap();
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
            assert_eq!(
                decode_or_invalid_params(&call(p), WIDE).unwrap_err().code,
                codes::INVALID_PARAMS,
                "{p}"
            );
        }
    }

    fn req(messages: Vec<Message>, timestamp: u64, timeout: Option<u64>) -> CheckRequest {
        CheckRequest {
            messages: messages.into(),
            min_safety: SafetyLevel::CrossUnsafe,
            descriptor: ExecutingDescriptor {
                timestamp,
                timeout,
                chain_id: Some(alloy_primitives::U256::from(10)),
            },
        }
    }

    fn message(block: u64, big_chain: bool) -> Message {
        Message {
            chain_id: if big_chain {
                alloy_primitives::U256::from(u64::MAX) + alloy_primitives::U256::from(7)
            } else {
                alloy_primitives::U256::from(901)
            },
            block_number: block,
            timestamp: 1_700_000_000 + block,
            log_index: 3,
            checksum: B256::repeat_byte(0x03),
        }
    }

    #[test]
    fn a_client_request_decodes_on_the_server_to_the_same_check() {
        let original = req(vec![message(7, false), message(9, true)], 1_700_000_100, Some(7200));
        let wire = serde_json::to_string(&params(&original)).unwrap();
        let decoded = decode_or_invalid_params(&call(&wire), WIDE).unwrap();
        assert_eq!(decoded.request, original);
        assert_eq!(decoded.entries, encode_entries(&original.messages));
        // Go servers send the chain id as a decimal string: accepted too.
        let go = wire.replace("\"chainID\":\"0xa\"", "\"chainID\":\"10\"");
        assert_ne!(go, wire);
        assert_eq!(decode_or_invalid_params(&call(&go), WIDE).unwrap().request, original);
    }

    #[test]
    fn every_verdict_survives_the_wire_with_its_kind_and_code() {
        let r = req(vec![message(7, false)], 1_700_000_100, Some(0));
        let named = |code| Rejection::new(code, "why").for_message(r.messages[0]);
        for v in [
            Verdict::Valid { until: 1_700_000_100 },
            Verdict::Invalid(named(codes::SUP_CONFLICTING_DATA)),
            Verdict::Invalid(named(codes::SUP_UNKNOWN_CHAIN)),
            Verdict::Invalid(Rejection::new(codes::SUP_FAILSAFE, "failsafe")),
            Verdict::NotYetKnown(named(codes::SUP_FUTURE_DATA)),
            Verdict::NotYetKnown(named(codes::SUP_UNINITIALIZED)),
        ] {
            let back = verdict_of(
                &r,
                answer(&v).map_err(|error| ClientError::Rpc { endpoint: "e".into(), error }),
            );
            assert_eq!(back.kind(), v.kind(), "{v:?}");
            assert_eq!(back.reason_label(), v.reason_label(), "{v:?}");
        }
        // No answer on the server side is -32603, which a client reads as no answer again.
        let back = verdict_of(
            &r,
            answer(&Verdict::Unavailable("down".into()))
                .map_err(|error| ClientError::Rpc { endpoint: "e".into(), error }),
        );
        assert!(matches!(back, Verdict::Unavailable(_)));
        // An invalid answer names the failing message in `data`.
        let e = answer(&Verdict::Invalid(named(codes::SUP_CONFLICTING_DATA))).unwrap_err();
        assert_eq!(e.data.unwrap()["message"]["blockNumber"], 7);
    }

    #[test]
    fn only_documented_codes_are_verdicts() {
        let v = |code| classify_error(&RpcError::new(code, "x"));
        assert!(v(codes::SUP_FAILSAFE).is_failsafe());
        assert!(matches!(v(codes::SUP_FUTURE_DATA), Verdict::NotYetKnown(_)));
        assert!(matches!(v(codes::SUP_UNINITIALIZED), Verdict::NotYetKnown(_)));
        for code in [
            codes::SUP_SKIPPED_DATA,
            codes::SUP_UNKNOWN_CHAIN,
            codes::SUP_CONFLICTING_DATA,
            codes::SUP_INEFFECTIVE_DATA,
            codes::SUP_OUT_OF_ORDER,
            codes::SUP_AWAITING_REPLACEMENT,
            codes::SUP_ITER_STOP,
            codes::SUP_OUT_OF_SCOPE,
            codes::SUP_NO_PARENT_OF_FIRST,
            codes::SUP_MISSED_DATA,
            codes::SUP_DATA_CORRUPTION,
            codes::INVALID_PARAMS,
        ] {
            assert!(matches!(v(code), Verdict::Invalid(ref r) if r.code == code), "{code}");
        }
        // Internal errors, a proxy's refusals, generic server errors (op-interop-filter's
        // untyped "unsupported safety level") and codes nobody documents say nothing about
        // the message.
        for code in [
            codes::INTERNAL_ERROR,
            codes::METHOD_NOT_FOUND,
            codes::INVALID_REQUEST,
            codes::PARSE_ERROR,
            codes::NO_BACKEND,
            codes::RATE_LIMITED,
            codes::OVER_CAPACITY,
            -32000,
            -320700,
            -321402,
            0,
            1,
            42,
        ] {
            assert!(matches!(v(code), Verdict::Unavailable(_)), "{code}");
        }
    }

    #[test]
    fn only_a_null_result_is_valid() {
        let r = req(vec![message(7, false)], 1_700_000_100, None);
        let ok = |s: &str| verdict_of(&r, Ok(RawValue::from_string(s.into()).unwrap()));
        assert!(ok("null").is_valid());
        for s in ["true", "{}", "[]", "0", "\"ok\"", "false"] {
            assert!(matches!(ok(s), Verdict::Unavailable(_)), "{s}");
        }
        let transport = ClientError::HttpStatus { endpoint: "e".into(), status: 500 };
        assert!(matches!(verdict_of(&r, Err(transport)), Verdict::Unavailable(_)));
    }

    fn wire_message(chain: &str, block: &str, log: &str, ts: &str) -> serde_json::Value {
        json!({
            "identifier": {
                "origin": "0x4242424242424242424242424242424242424242",
                "blockNumber": block, "logIndex": log, "timestamp": ts, "chainID": chain
            },
            "payloadHash": B256::repeat_byte(0x11),
        })
    }

    fn messages_call(messages: serde_json::Value) -> Call {
        let params = json!([messages, "cross-unsafe", {"timestamp": "0x6553f16a"}]);
        call(&params.to_string())
    }

    #[test]
    fn the_message_form_checks_what_the_access_list_would_declare() {
        let d = decode_messages(
            &messages_call(json!([
                wire_message("0x385", "0x3", "0x1", "0x6553f106"),
                wire_message("0x385", "0x3", "0x1", "0x6553f106"),
                wire_message("0x10000000000000000", "0x0", "0x0", "0x1"),
            ])),
            10,
        )
        .unwrap();
        assert_eq!(d.request.messages.len(), 2, "duplicates collapse like entries do");
        let m = d.request.messages[0];
        let origin = alloy_primitives::Address::repeat_byte(0x42);
        let log_hash = crate::interop::checksum::log_hash(origin, B256::repeat_byte(0x11));
        let want = crate::interop::checksum::checksum_from_log_hash(
            log_hash,
            3,
            0x6553f106,
            1,
            alloy_primitives::U256::from(901),
        );
        assert_eq!(
            (m.block_number, m.log_index, m.timestamp, m.checksum),
            (3, 1, 0x6553f106, want)
        );
        assert_eq!(d.request.messages[1].chain_id, alloy_primitives::U256::from(1u128 << 64));
        // The entries a tx would carry for them round-trip through the access-list form.
        assert_eq!(
            crate::interop::access_list::parse_entries(&d.entries).unwrap(),
            d.request.messages.to_vec()
        );
    }

    #[test]
    fn malformed_identifiers_are_invalid_params_naming_the_field() {
        let good = || wire_message("0x385", "0x3", "0x1", "0x6553f106");
        let mut cases = Vec::new();
        for (field, value, why) in [
            ("chainID", json!("901"), "0x-prefixed"),
            ("chainID", json!("0x0385"), "leading zero"),
            ("chainID", json!(901), "invalid type"),
            ("blockNumber", json!(3), "invalid type"),
            ("blockNumber", json!("0x10000000000000000"), "64 bits"),
            ("blockNumber", json!("0x"), "no digits"),
            ("logIndex", json!("0x100000000"), "log index too large"),
            ("timestamp", json!("0xzz"), "invalid"),
            ("origin", json!("0x42"), "invalid"),
        ] {
            let mut m = good();
            m["identifier"][field] = value;
            cases.push((json!([good(), m]), why));
        }
        let mut missing = good();
        missing["identifier"].as_object_mut().unwrap().remove("timestamp");
        cases.push((json!([missing]), "missing field"));
        cases.push((json!([{"identifier": good()["identifier"]}]), "payloadHash"));
        for (messages, why) in cases {
            let e = decode_messages(&messages_call(messages.clone()), 10).unwrap_err();
            assert_eq!(e.code, codes::INVALID_PARAMS, "{messages}");
            assert!(e.message.contains(why), "{why}: {}", e.message);
        }
        let e = decode_messages(&messages_call(json!([good(), good(), good()])), 2).unwrap_err();
        assert!(e.message.contains("the limit is 2"), "{}", e.message);
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
