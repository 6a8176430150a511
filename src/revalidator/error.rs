//! The revalidator's two boundaries that can fail: reading the EL's pool (a pass is skipped and
//! the previous verdicts stand) and starting up (the process should not run without it).

use crate::rpc::ClientError;

/// Why a pool snapshot could not be read; the pass is skipped.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    /// The EL did not answer, or answered with an error.
    #[error("execution client: {0}")]
    El(#[source] ClientError),
    /// The EL's answer did not have the expected shape.
    #[error("execution client answer: {0}")]
    Decode(String),
    /// The EL endpoint is misconfigured.
    #[error("execution client config: {0}")]
    Config(String),
}

/// Why the revalidator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The EL endpoint is misconfigured.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The EL-facing listener could not be bound.
    #[error("revalidator: cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The `data` that names a failing message, so an operator can find it on the source chain.
pub fn message_data(m: &crate::interop::Message) -> serde_json::Value {
    serde_json::json!({
        "chainId": format!("{:#x}", m.chain_id),
        "blockNumber": m.block_number,
        "logIndex": m.log_index,
        "timestamp": m.timestamp,
    })
}

/// The JSON-RPC error for a rejection: the supervisor's code, so unmodified ELs classify it as
/// they would the supervisor's own answer.
pub fn rejection_error(r: &crate::validation::Rejection) -> crate::rpc::RpcError {
    let e = crate::rpc::RpcError::new(r.code, r.reason.clone());
    match &r.message {
        Some(m) => e.with_data(message_data(m)),
        None => e,
    }
}

/// The answer of `checkAccessList` for a verdict: `null` when valid, the supervisor's error
/// otherwise, `-32603` (a non-answer to every EL) when no verdict could be had.
pub fn verdict_result(v: &crate::validation::Verdict) -> Result<(), crate::rpc::RpcError> {
    use crate::validation::Verdict;
    match v {
        Verdict::Valid { .. } => Ok(()),
        Verdict::Invalid(r) | Verdict::NotYetKnown(r) => Err(rejection_error(r)),
        Verdict::Unavailable(why) => {
            Err(crate::rpc::RpcError::internal(format!("no verdict: {why}")))
        }
    }
}
