//! Pure protocol code: transaction decoding, access-list parsing and building, checksums and the
//! wire types. No I/O and no async, so it is easy to test, fuzz and bench.

pub mod access_list;
pub mod checksum;
pub mod tx;
pub mod types;

pub use access_list::{build_access_list, encode_entries, parse_entries, AccessListError};
pub use types::{
    ChainId, ExecutingDescriptor, Message, SafetyLevel, CROSS_L2_INBOX, MESSAGE_EXPIRY_WINDOW_SECS,
};
