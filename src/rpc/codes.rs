//! Every JSON-RPC error code this service answers with, and the one function that maps a code to
//! its HTTP status. Codes come from three sources, cited per group, so that clients and dashboards
//! built for the peers keep working.

use axum::http::StatusCode;

// JSON-RPC 2.0 (https://www.jsonrpc.org/specification#error_object).
/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object (also: empty batch).
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist or is not allowed here.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters (also: undecodable transaction, malformed interop access list).
pub const INVALID_PARAMS: i64 = -32602;
/// Internal error (also: upstream unavailable or timed out, validation unavailable).
pub const INTERNAL_ERROR: i64 = -32603;

/// The admin API needs a bearer token (HTTP 401).
pub const UNAUTHORIZED: i64 = -32001;
/// go-ethereum's code for a plain server error. op-interop-filter answers a block it does not
/// have with it and a message containing "not found" (its Go client maps that to `NotFound`).
pub const SERVER_ERROR: i64 = -32000;

// EIP-7966 (`eth_sendRawTransactionSync`, https://eips.ethereum.org/EIPS/eip-7966; the positive
// code replaced -32002 in ethereum/EIPs#10065). geth, reth, anvil and alloy answer it.
/// The transaction was forwarded but no receipt came within the wait; `data` is its hash.
pub const TX_SYNC_TIMEOUT: i64 = 4;

// proxyd's client-facing codes (ethereum-optimism/infra proxyd/errors.go), kept so that
// dashboards and client retry logic built for proxyd work unchanged.
/// No validation backend could give a verdict (fail closed; retry later). Also: the shared
/// rate-limit store is down and `redis.on_error = "refuse"`.
pub const NO_BACKEND: i64 = -32011;
/// The IP or method rate limit was hit.
pub const RATE_LIMITED: i64 = -32016;
/// The per-sender rate limit was hit.
pub const SENDER_RATE_LIMITED: i64 = -32017;
/// The batch has more elements than allowed.
pub const BATCH_TOO_LARGE: i64 = -32014;
/// The request body is larger than allowed.
pub const BODY_TOO_LARGE: i64 = -32021;
/// The interop access list has more entries than allowed.
pub const ACCESS_LIST_TOO_LARGE: i64 = -32022;
/// Too many validations are in flight.
pub const OVER_CAPACITY: i64 = -32024;

// Supervisor codes (op-supervisor `types/error.go`, op-interop-filter): `-32` + gRPC category + index.
/// Uninitialized chain database (soft: not yet known).
pub const SUP_UNINITIALIZED: i64 = -320400;
/// Skipped data.
pub const SUP_SKIPPED_DATA: i64 = -320500;
/// Unknown chain (not in the dependency set).
pub const SUP_UNKNOWN_CHAIN: i64 = -320501;
/// Conflicting data: the message does not match the chain.
pub const SUP_CONFLICTING_DATA: i64 = -320600;
/// Ineffective data.
pub const SUP_INEFFECTIVE_DATA: i64 = -320601;
/// Failsafe enabled: every check fails until an operator clears it.
pub const SUP_FAILSAFE: i64 = -320602;
/// Out of order.
pub const SUP_OUT_OF_ORDER: i64 = -320900;
/// Awaiting replacement block.
pub const SUP_AWAITING_REPLACEMENT: i64 = -320901;
/// Iterator stop.
pub const SUP_ITER_STOP: i64 = -321000;
/// Out of scope (op-interop-filter also uses it for "newer than ingested").
pub const SUP_OUT_OF_SCOPE: i64 = -321100;
/// Cannot get parent of first block.
pub const SUP_NO_PARENT_OF_FIRST: i64 = -321200;
/// Future data: not yet available (soft: retry later).
pub const SUP_FUTURE_DATA: i64 = -321401;
/// Missed data.
pub const SUP_MISSED_DATA: i64 = -321500;
/// Data corruption.
pub const SUP_DATA_CORRUPTION: i64 = -321501;

/// The HTTP status that goes with a JSON-RPC error code when it answers a single (non-batch)
/// request, as proxyd does. Batches are always answered 200.
pub fn http_status(code: i64) -> StatusCode {
    match code {
        PARSE_ERROR | INVALID_REQUEST | INVALID_PARAMS => StatusCode::BAD_REQUEST,
        METHOD_NOT_FOUND => StatusCode::FORBIDDEN,
        UNAUTHORIZED => StatusCode::UNAUTHORIZED,
        RATE_LIMITED | SENDER_RATE_LIMITED | OVER_CAPACITY => StatusCode::TOO_MANY_REQUESTS,
        BATCH_TOO_LARGE | BODY_TOO_LARGE | ACCESS_LIST_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        SUP_CONFLICTING_DATA => StatusCode::CONFLICT,
        SUP_FUTURE_DATA | SUP_UNINITIALIZED => StatusCode::UNPROCESSABLE_ENTITY,
        SUP_UNKNOWN_CHAIN => StatusCode::NOT_FOUND,
        SUP_FAILSAFE | NO_BACKEND => StatusCode::SERVICE_UNAVAILABLE,
        c if (-321599..=-320500).contains(&c) => StatusCode::UNPROCESSABLE_ENTITY,
        // Upstream errors pass through verbatim (an execution client's -32000 "nonce too low"
        // and friends) with 200, as the upstream itself answered them.
        _ => StatusCode::OK,
    }
}

/// A short, stable label for a code, used as a metrics label (bounded cardinality).
pub fn label(code: i64) -> &'static str {
    match code {
        PARSE_ERROR => "parse_error",
        INVALID_REQUEST => "invalid_request",
        METHOD_NOT_FOUND => "method_not_found",
        INVALID_PARAMS => "invalid_params",
        INTERNAL_ERROR => "internal_error",
        UNAUTHORIZED => "unauthorized",
        SERVER_ERROR => "server_error",
        TX_SYNC_TIMEOUT => "tx_sync_timeout",
        NO_BACKEND => "no_backend",
        RATE_LIMITED => "rate_limited",
        SENDER_RATE_LIMITED => "sender_rate_limited",
        BATCH_TOO_LARGE => "batch_too_large",
        BODY_TOO_LARGE => "body_too_large",
        ACCESS_LIST_TOO_LARGE => "access_list_too_large",
        OVER_CAPACITY => "over_capacity",
        SUP_UNINITIALIZED => "uninitialized",
        SUP_SKIPPED_DATA => "skipped_data",
        SUP_UNKNOWN_CHAIN => "unknown_chain",
        SUP_CONFLICTING_DATA => "conflicting_data",
        SUP_INEFFECTIVE_DATA => "ineffective_data",
        SUP_FAILSAFE => "failsafe",
        SUP_OUT_OF_ORDER => "out_of_order",
        SUP_AWAITING_REPLACEMENT => "awaiting_replacement",
        SUP_ITER_STOP => "iter_stop",
        SUP_OUT_OF_SCOPE => "out_of_scope",
        SUP_NO_PARENT_OF_FIRST => "no_parent_of_first",
        SUP_FUTURE_DATA => "future_data",
        SUP_MISSED_DATA => "missed_data",
        SUP_DATA_CORRUPTION => "data_corruption",
        _ => "other",
    }
}
