//! A client for interop-gate's mempool revalidator, for execution-client integrators.
//!
//! - [`Follower`]: follows the invalid-transactions feed and yields the hashes to drop from the
//!   pool. It subscribes over WebSocket (`interop_subscribe("invalidTransactions")`) and falls
//!   back to polling `interop_invalidTransactions` when the WebSocket is unavailable (retrying
//!   push every `retry_push_every`), backs off on errors, persists its cursor through a
//!   [`CursorStore`] and reports through [`Hooks`]. Delivery is at least once: a batch's cursor
//!   is saved when [`Follower::next`] is called again, so act on a batch before asking for the
//!   next one.
//! - [`Client`]: typed calls: `interop_transactionStatus`, the drop-in `interop_checkAccessList`,
//!   and one page of the feed.

mod follower;
mod rpc;

pub use follower::{
    Batch, CursorStore, Follower, FollowerConfig, Hooks, MemoryCursor, NoHooks, Via,
};
pub use rpc::{CheckOutcome, Client, Descriptor, Error, FeedEntry, FeedPage, TransactionStatus};
