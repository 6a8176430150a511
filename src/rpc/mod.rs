//! JSON-RPC 2.0 plumbing shared by every listener: wire types, the error codes in one place, the
//! axum handler (body limits, batches, notifications) and a pooled client.

pub mod client;
pub mod codes;
pub mod depth;
pub mod drain;
pub mod listener;
pub mod server;
pub mod stream;
pub mod types;
pub mod ws_conn;

pub use client::{ClientError, RpcClient};
pub use stream::StreamedResult;
pub use types::{Call, RpcError};
