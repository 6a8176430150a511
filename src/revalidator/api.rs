//! The EL-facing JSON-RPC API, two faces on one listener:
//! - drop-in for unmodified op-reth / op-geth / proxyd: `interop_checkAccessList`,
//!   `supervisor_checkAccessList` (same params and codes as the supervisor), the message form
//!   `supervisor_checkMessagesV2` / `interop_checkMessages`, and `admin_getFailsafeEnabled`;
//! - new, for a sequencer EL with a small poller: `interop_invalidTransactions(cursor)`,
//!   `interop_transactionStatus(hash)` and `interop_revalidationStatus()`.
//!
//! Cursors are returned as `0x` hex strings (they can exceed 2^53, where JSON numbers lose
//! precision in JavaScript) and accepted as a hex string, a decimal string, a number or null.

use std::sync::Arc;

use alloy_primitives::B256;
use futures::future::BoxFuture;
use serde_json::value::RawValue;

use super::service::Revalidator;
use crate::interop::access_list::{BoundedParseError, Bounds};
use crate::rpc::server::MethodTable;
use crate::rpc::server::{CallContext, Handler};
use crate::rpc::types::{to_raw, Call, RpcError};
use crate::validation::codec::{
    access_list_rpc_error, answer, decode, decode_messages, DecodeError,
};

/// The handler; cheap to clone.
#[derive(Clone)]
pub struct Api {
    core: Arc<Revalidator>,
}

impl Api {
    /// The API over `core`.
    pub fn new(core: Arc<Revalidator>) -> Self {
        Self { core }
    }
}

/// Reads a cursor param: `null`/absent, a number, or a hex or decimal string.
pub fn parse_cursor(v: Option<&serde_json::Value>) -> Result<Option<u64>, RpcError> {
    let bad = || {
        RpcError::invalid_params(
            "cursor must be null, a u64 number, or a hex (0x…) or decimal string",
        )
    };
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n.as_u64().map(Some).ok_or_else(bad),
        Some(serde_json::Value::String(s)) => {
            let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse::<u64>(),
            };
            parsed.map(Some).map_err(|_| bad())
        }
        Some(_) => Err(bad()),
    }
}

/// What a revalidator method does (the drop-in checks answer under both namespaces).
#[derive(Debug, Clone, Copy)]
enum ApiMethod {
    CheckAccessList,
    CheckMessages,
    GetFailsafeEnabled,
    InvalidTransactions,
    TransactionStatus,
    RevalidationStatus,
}

/// The one table of the revalidator listener's methods (dispatch and metric labels).
const REVALIDATOR_METHODS: MethodTable<ApiMethod> = MethodTable(&[
    ("interop_checkAccessList", ApiMethod::CheckAccessList),
    ("supervisor_checkAccessList", ApiMethod::CheckAccessList),
    ("supervisor_checkMessagesV2", ApiMethod::CheckMessages),
    ("interop_checkMessages", ApiMethod::CheckMessages),
    ("admin_getFailsafeEnabled", ApiMethod::GetFailsafeEnabled),
    ("interop_invalidTransactions", ApiMethod::InvalidTransactions),
    ("interop_transactionStatus", ApiMethod::TransactionStatus),
    ("interop_revalidationStatus", ApiMethod::RevalidationStatus),
]);

impl Handler for Api {
    fn call<'a>(
        &'a self,
        _ctx: &'a CallContext,
        call: Call,
    ) -> BoxFuture<'a, Result<Box<RawValue>, RpcError>> {
        Box::pin(async move {
            let Some(method) = REVALIDATOR_METHODS.get(&call.method) else {
                return Err(RpcError::method_not_found(&call.method));
            };
            match method {
                ApiMethod::CheckAccessList => {
                    let max_entries = self.core.config().max_inbox_entries;
                    let bounds = Bounds { max_entries, max_messages: usize::MAX };
                    let decoded = match decode(&call, bounds) {
                        Ok(d) => d,
                        Err(DecodeError::AccessList(BoundedParseError::TooManyEntries {
                            found,
                            ..
                        })) => return answer(&self.core.too_many_entries(found)),
                        Err(DecodeError::AccessList(e)) => return Err(access_list_rpc_error(&e)),
                        Err(DecodeError::Params(e)) => return Err(e),
                    };
                    let verdict =
                        self.core.check_access_list(&decoded.request, decoded.entries.len()).await;
                    answer(&verdict)
                }
                ApiMethod::CheckMessages => {
                    let max = self.core.config().max_inbox_entries;
                    let decoded = decode_messages(&call, max)?;
                    let verdict =
                        self.core.check_access_list(&decoded.request, decoded.entries.len()).await;
                    answer(&verdict)
                }
                ApiMethod::GetFailsafeEnabled => Ok(to_raw(&self.core.failsafe())),
                ApiMethod::InvalidTransactions => {
                    let params: Vec<serde_json::Value> = call.parse_params()?;
                    let cursor = parse_cursor(params.first())?;
                    Ok(to_raw(&self.core.invalid_transactions(cursor)))
                }
                ApiMethod::TransactionStatus => {
                    let (hash,): (B256,) = call.parse_params()?;
                    Ok(to_raw(&self.core.transaction_status(&hash)))
                }
                ApiMethod::RevalidationStatus => Ok(to_raw(&self.core.status())),
            }
        })
    }

    fn method_label(&self, method: &str) -> &'static str {
        REVALIDATOR_METHODS.label(method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cursors_in_every_accepted_form() {
        assert_eq!(parse_cursor(None).unwrap(), None);
        assert_eq!(parse_cursor(Some(&json!(null))).unwrap(), None);
        assert_eq!(parse_cursor(Some(&json!(42))).unwrap(), Some(42));
        assert_eq!(parse_cursor(Some(&json!("0x2a"))).unwrap(), Some(42));
        assert_eq!(parse_cursor(Some(&json!("42"))).unwrap(), Some(42));
        for bad in [json!(-1), json!(1.5), json!("0xzz"), json!(""), json!([1])] {
            assert_eq!(parse_cursor(Some(&bad)).unwrap_err().code, -32602, "{bad}");
        }
    }
}
