//! The revalidator's two boundaries that can fail: reading the EL's pool (a pass is skipped and
//! the previous verdicts stand) and starting up (the process should not run without it; only
//! binding can fail, the EL URL was parsed with the config).

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
}

/// Why the revalidator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The EL-facing listener could not be bound.
    #[error("revalidator: cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}
