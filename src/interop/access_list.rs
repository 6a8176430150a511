//! Inbox entries <-> executing messages.
//!
//! Spec: `specs/interop/predeploys.md` ("Access-list"). An entry is 32 bytes; byte 0 is its type:
//! 1 lookup identity, 2 chain-id extension (chain ids above u64), 3 checksum. The grammar is
//! `(lookup [extension] checksum)*`; anything else makes the whole list malformed.

use alloy_eips::eip2930::AccessList;
use alloy_primitives::{B256, U256};

use super::types::{ChainId, Message, CROSS_L2_INBOX};

/// Entry type bytes.
pub mod entry_type {
    /// Lookup identity.
    pub const LOOKUP: u8 = 1;
    /// Chain-id extension.
    pub const CHAIN_ID_EXTENSION: u8 = 2;
    /// Checksum.
    pub const CHECKSUM: u8 = 3;
}

/// Why an inbox-entry list is malformed. `index` is the 0-based position of the offending entry
/// among the transaction's inbox entries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessListError {
    /// A type byte that is not allowed at this position.
    #[error("inbox entry {index}: unexpected entry type {found:#04x} (expected {expected})")]
    UnexpectedType {
        /// Position of the entry.
        index: usize,
        /// The type byte found.
        found: u8,
        /// What the grammar allows here.
        expected: &'static str,
    },
    /// Reserved bytes that must be zero are not.
    #[error("inbox entry {index}: malformed {kind} entry (reserved bytes must be zero)")]
    NonZeroReserved {
        /// Position of the entry.
        index: usize,
        /// `lookup` or `chain-id extension`.
        kind: &'static str,
    },
    /// The list ended inside a message.
    #[error("inbox entry {index}: list ends after a {after} entry (expected {expected})")]
    Truncated {
        /// Position of the dangling entry.
        index: usize,
        /// What the last entry was.
        after: &'static str,
        /// What was expected next.
        expected: &'static str,
    },
}

impl AccessListError {
    /// Position of the offending entry.
    pub fn index(&self) -> usize {
        match self {
            Self::UnexpectedType { index, .. }
            | Self::NonZeroReserved { index, .. }
            | Self::Truncated { index, .. } => *index,
        }
    }
}

/// Collects the storage keys listed under `CrossL2Inbox`, across every occurrence of the address,
/// in order. Keys of other addresses are ignored.
pub fn inbox_entries(list: &AccessList) -> Vec<B256> {
    list.0
        .iter()
        .filter(|item| item.address == CROSS_L2_INBOX)
        .flat_map(|item| item.storage_keys.iter().copied())
        .collect()
}

/// True when the list names `CrossL2Inbox` with at least one key (an interop transaction).
pub fn has_inbox_entries(list: &AccessList) -> bool {
    list.0.iter().any(|item| item.address == CROSS_L2_INBOX && !item.storage_keys.is_empty())
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

/// Parses inbox entries into messages, in order, duplicates kept.
pub fn parse_entries(entries: &[B256]) -> Result<Vec<Message>, AccessListError> {
    let mut out = Vec::with_capacity(entries.len() / 2);
    let mut i = 0;
    while i < entries.len() {
        let lookup = &entries[i].0;
        if lookup[0] != entry_type::LOOKUP {
            return Err(AccessListError::UnexpectedType {
                index: i,
                found: lookup[0],
                expected: "lookup (0x01)",
            });
        }
        if lookup[1..4] != [0, 0, 0] {
            return Err(AccessListError::NonZeroReserved { index: i, kind: "lookup" });
        }
        let mut chain_id = U256::from(be_u64(&lookup[4..12]));
        let block_number = be_u64(&lookup[12..20]);
        let timestamp = be_u64(&lookup[20..28]);
        let log_index = u32::from_be_bytes([lookup[28], lookup[29], lookup[30], lookup[31]]);
        i += 1;

        let mut next = entries.get(i).ok_or(AccessListError::Truncated {
            index: i - 1,
            after: "lookup",
            expected: "chain-id extension or checksum",
        })?;
        if next[0] == entry_type::CHAIN_ID_EXTENSION {
            if next[1..8].iter().any(|b| *b != 0) {
                return Err(AccessListError::NonZeroReserved {
                    index: i,
                    kind: "chain-id extension",
                });
            }
            // Upper 24 bytes of the u256 chain id; the low 8 came from the lookup.
            let mut full = [0u8; 32];
            full[..24].copy_from_slice(&next[8..32]);
            full[24..].copy_from_slice(&lookup[4..12]);
            chain_id = U256::from_be_bytes(full);
            i += 1;
            next = entries.get(i).ok_or(AccessListError::Truncated {
                index: i - 1,
                after: "chain-id extension",
                expected: "checksum",
            })?;
        }
        if next[0] != entry_type::CHECKSUM {
            return Err(AccessListError::UnexpectedType {
                index: i,
                found: next[0],
                expected: if entries[i - 1][0] == entry_type::CHAIN_ID_EXTENSION {
                    "checksum (0x03)"
                } else {
                    "chain-id extension (0x02) or checksum (0x03)"
                },
            });
        }
        out.push(Message { chain_id, block_number, timestamp, log_index, checksum: *next });
        i += 1;
    }
    Ok(out)
}

/// The caps on one interop access list, checked around the parse: the entry count before any
/// parsing (so a huge list costs nothing), the distinct-message count after de-duplication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// At most this many `CrossL2Inbox` entries.
    pub max_entries: usize,
    /// At most this many distinct messages.
    pub max_messages: usize,
}

/// Why an inbox-entry list was not turned into messages: over a cap, or malformed. Each caller
/// (ingress, drop-in endpoints, revalidator) maps it to its own answer once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundedParseError {
    /// More entries than `max_entries`.
    #[error("interop access list has {found} CrossL2Inbox entries, the limit is {limit}")]
    TooManyEntries {
        /// Entries sent.
        found: usize,
        /// The cap.
        limit: usize,
    },
    /// The entries do not follow the grammar.
    #[error(transparent)]
    Malformed(#[from] AccessListError),
    /// More distinct messages than `max_messages`.
    #[error("transaction executes {found} distinct messages, the limit is {limit}")]
    TooManyMessages {
        /// Distinct messages.
        found: usize,
        /// The cap.
        limit: usize,
    },
}

/// The one way inbox entries become messages: entry cap, parse, de-dup, message cap.
pub fn parse_bounded(entries: &[B256], bounds: Bounds) -> Result<Vec<Message>, BoundedParseError> {
    if entries.len() > bounds.max_entries {
        return Err(BoundedParseError::TooManyEntries {
            found: entries.len(),
            limit: bounds.max_entries,
        });
    }
    let mut messages = parse_entries(entries)?;
    dedup(&mut messages);
    if messages.len() > bounds.max_messages {
        return Err(BoundedParseError::TooManyMessages {
            found: messages.len(),
            limit: bounds.max_messages,
        });
    }
    Ok(messages)
}

/// Removes repeated messages, keeping first occurrences in order. Validation checks each distinct
/// message once.
pub fn dedup(messages: &mut Vec<Message>) {
    let mut seen = std::collections::HashSet::with_capacity(messages.len());
    messages.retain(|m| seen.insert(*m));
}

/// The entries that declare `m`: lookup, the extension when the chain id exceeds u64, checksum.
pub fn message_entries(m: &Message) -> impl Iterator<Item = B256> {
    let id = m.chain_id.to_be_bytes::<32>();
    let mut lookup = [0u8; 32];
    lookup[0] = entry_type::LOOKUP;
    lookup[4..12].copy_from_slice(&id[24..32]);
    lookup[12..20].copy_from_slice(&m.block_number.to_be_bytes());
    lookup[20..28].copy_from_slice(&m.timestamp.to_be_bytes());
    lookup[28..32].copy_from_slice(&m.log_index.to_be_bytes());
    let ext = (m.chain_id > U256::from(u64::MAX)).then(|| {
        let mut e = [0u8; 32];
        e[0] = entry_type::CHAIN_ID_EXTENSION;
        e[8..32].copy_from_slice(&id[..24]);
        B256::from(e)
    });
    std::iter::once(B256::from(lookup)).chain(ext).chain(std::iter::once(m.checksum))
}

/// Encodes messages as inbox entries, in order.
pub fn encode_entries(messages: &[Message]) -> Vec<B256> {
    messages.iter().flat_map(message_entries).collect()
}

/// A full EIP-2930 access list declaring `messages` under `CrossL2Inbox`.
pub fn build_access_list(messages: &[Message]) -> AccessList {
    AccessList(vec![alloy_eips::eip2930::AccessListItem {
        address: CROSS_L2_INBOX,
        storage_keys: encode_entries(messages),
    }])
}

/// The source chain ids a list of messages points into (for chain-membership checks).
pub fn chain_ids(messages: &[Message]) -> impl Iterator<Item = ChainId> + '_ {
    messages.iter().map(|m| m.chain_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::b256;

    #[test]
    fn round_trip_small_and_large_chain_ids() {
        let small = Message {
            chain_id: U256::from(901),
            block_number: 7,
            timestamp: 1730467171,
            log_index: 0,
            checksum: b256!("0x031ae3a7ee4ad1a293990b1d810700d09bfebe953b16a0ebd79be7fbf84c93a3"),
        };
        let big = Message { chain_id: U256::from(u64::MAX) + U256::from(20), ..small };
        let entries = encode_entries(&[small, big, small]);
        assert_eq!(entries.len(), 2 + 3 + 2);
        assert_eq!(
            entries[0],
            b256!("0x0100000000000000000003850000000000000007000000006724d56300000000")
        );
        let mut parsed = parse_entries(&entries).unwrap();
        assert_eq!(parsed, vec![small, big, small]);
        dedup(&mut parsed);
        assert_eq!(parsed, vec![small, big]);
    }

    #[test]
    fn malformed_lists_name_the_entry() {
        let m = Message {
            chain_id: U256::from(10),
            block_number: 1,
            timestamp: 2,
            log_index: 3,
            checksum: B256::repeat_byte(3),
        };
        let e = encode_entries(&[m]);
        assert_eq!(
            parse_entries(&e[..1]),
            Err(AccessListError::Truncated {
                index: 0,
                after: "lookup",
                expected: "chain-id extension or checksum"
            })
        );
        assert!(matches!(
            parse_entries(&[e[1]]),
            Err(AccessListError::UnexpectedType { index: 0, found: 3, .. })
        ));
        let mut bad = e.clone();
        bad[0].0[2] = 1;
        assert_eq!(
            parse_entries(&bad),
            Err(AccessListError::NonZeroReserved { index: 0, kind: "lookup" })
        );
        let two_lookups = vec![e[0], e[0], e[1]];
        assert!(matches!(
            parse_entries(&two_lookups),
            Err(AccessListError::UnexpectedType { index: 1, found: 1, .. })
        ));
    }

    #[test]
    fn bounded_parse_caps_entries_before_parsing_and_messages_after_dedup() {
        let m = |i: u32| Message {
            chain_id: U256::from(10u64),
            block_number: 1,
            timestamp: 2,
            log_index: i,
            checksum: B256::repeat_byte(0x03),
        };
        let entries = encode_entries(&[m(1), m(1), m(2)]);
        let wide = Bounds { max_entries: 6, max_messages: 2 };
        assert_eq!(parse_bounded(&entries, wide).unwrap(), vec![m(1), m(2)]);
        let few = Bounds { max_entries: 5, max_messages: 2 };
        assert_eq!(
            parse_bounded(&entries, few),
            Err(BoundedParseError::TooManyEntries { found: 6, limit: 5 })
        );
        let one = Bounds { max_entries: 6, max_messages: 1 };
        assert_eq!(
            parse_bounded(&entries, one),
            Err(BoundedParseError::TooManyMessages { found: 2, limit: 1 })
        );
        let garbage = [B256::repeat_byte(0x07)];
        assert!(matches!(parse_bounded(&garbage, wide), Err(BoundedParseError::Malformed(_))));
    }
}
