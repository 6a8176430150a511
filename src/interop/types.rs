//! Wire and domain types of the interop protocol: the executing message as declared in an
//! access list, the safety levels and the executing descriptor of `checkAccessList`.
//!
//! Spec: ethereum-optimism/specs `specs/interop/predeploys.md` (access-list layout) and
//! `supervisor.md` (RPC types). Facts summarised in `shared/docs/protocol.md`.

use std::fmt;
use std::str::FromStr;

use alloy_primitives::{address, Address, B256, U256};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The `CrossL2Inbox` predeploy. Only storage keys listed under this address are inbox entries.
pub const CROSS_L2_INBOX: Address = address!("0x4200000000000000000000000000000000000022");

/// Messages older than this (seconds) cannot be executed any more (op-core
/// `MessageExpiryTimeSecondsInterop`). Defined once here: every check uses this constant or a
/// configured override passed explicitly.
pub const MESSAGE_EXPIRY_WINDOW_SECS: u64 = 604_800;

/// A chain id. Interop allows chain ids above `u64` (the chain-id extension entry), so it is a
/// full `U256`.
pub type ChainId = U256;

/// One executing message as declared by a transaction: the lookup identity (without the origin,
/// which is only committed to through the checksum) plus the checksum entry.
///
/// Field order follows the lookup entry: chain id, block number, timestamp, log index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Message {
    /// Source chain of the initiating log.
    pub chain_id: ChainId,
    /// Block number of the initiating log on the source chain.
    pub block_number: u64,
    /// Timestamp of that block.
    pub timestamp: u64,
    /// Block-level index of the initiating log (among all logs of the block).
    pub log_index: u32,
    /// The full type-3 checksum entry (`0x03 ++ bare[1..32]`).
    pub checksum: B256,
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chain {} block {} log {} (timestamp {})",
            self.chain_id, self.block_number, self.log_index, self.timestamp
        )
    }
}

/// Safety levels, as the exact, case-sensitive strings op-supervisor uses.
///
/// Ordered from weakest to strongest so that `a >= b` means "at least as safe as".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SafetyLevel {
    /// `invalid`: never satisfied by anything; accepted on the wire for completeness.
    Invalid,
    /// `unsafe` (local-unsafe): present in the chain's latest (unsafe) view.
    Unsafe,
    /// `cross-unsafe`: unsafe, and all its own dependencies are cross-unsafe.
    CrossUnsafe,
    /// `local-safe`: derived from L1 data, dependencies not yet cross-checked.
    LocalSafe,
    /// `safe` (cross-safe).
    Safe,
    /// `finalized`.
    Finalized,
}

impl SafetyLevel {
    /// All levels, weakest first.
    pub const ALL: [SafetyLevel; 6] = [
        Self::Invalid,
        Self::Unsafe,
        Self::CrossUnsafe,
        Self::LocalSafe,
        Self::Safe,
        Self::Finalized,
    ];

    /// The wire string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Unsafe => "unsafe",
            Self::CrossUnsafe => "cross-unsafe",
            Self::LocalSafe => "local-safe",
            Self::Safe => "safe",
            Self::Finalized => "finalized",
        }
    }
}

impl fmt::Display for SafetyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string was not one of the six safety levels (matching is case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown safety level {0:?} (expected one of: invalid, unsafe, cross-unsafe, local-safe, safe, finalized)")]
pub struct UnknownSafetyLevel(pub String);

impl FromStr for SafetyLevel {
    type Err = UnknownSafetyLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| UnknownSafetyLevel(s.to_owned()))
    }
}

impl Serialize for SafetyLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SafetyLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The `executingDescriptor` parameter of `checkAccessList`: when (and on which chain) the
/// messages would execute. Validity must hold for every instant in
/// `[timestamp, timestamp + timeout]`.
///
/// Wire form: `timestamp`/`timeout` are hex quantities; `chainID` is sent as a hex string (as
/// Rust clients do) and accepted as a hex or a decimal string (Go servers send decimal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExecutingDescriptor {
    /// Executing timestamp (unix seconds).
    #[serde(with = "alloy_serde::quantity")]
    pub timestamp: u64,
    /// How long after `timestamp` the messages must stay valid. `None` = 0.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "alloy_serde::quantity::opt")]
    pub timeout: Option<u64>,
    /// The executing chain, when the caller names it.
    #[serde(
        rename = "chainID",
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_chain_id"
    )]
    pub chain_id: Option<ChainId>,
}

impl ExecutingDescriptor {
    /// The last instant the verdict must cover: `timestamp + timeout`, or `None` on overflow.
    pub fn end(&self) -> Option<u64> {
        self.timestamp.checked_add(self.timeout.unwrap_or(0))
    }
}

/// Parses a chain id given as a `0x` hex string or a decimal string.
pub fn parse_chain_id(s: &str) -> Result<ChainId, String> {
    let parsed = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if hex.is_empty() {
            return Err(format!("invalid chain id {s:?}: empty hex"));
        }
        U256::from_str_radix(hex, 16)
    } else {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("invalid chain id {s:?}: expected a hex (0x…) or decimal string"));
        }
        U256::from_str_radix(s, 10)
    };
    parsed.map_err(|e| format!("invalid chain id {s:?}: {e}"))
}

mod opt_chain_id {
    use super::{parse_chain_id, ChainId};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<ChainId>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&format!("{v:#x}")),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ChainId>, D::Error> {
        let s = Option::<std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.map(|s| parse_chain_id(&s).map_err(serde::de::Error::custom)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safety_levels_round_trip_and_are_case_sensitive() {
        for l in SafetyLevel::ALL {
            let json = serde_json::to_string(&l).unwrap();
            assert_eq!(serde_json::from_str::<SafetyLevel>(&json).unwrap(), l);
        }
        assert!("Safe".parse::<SafetyLevel>().is_err());
        assert!("cross_unsafe".parse::<SafetyLevel>().is_err());
        assert!(SafetyLevel::Finalized > SafetyLevel::Safe);
        assert!(SafetyLevel::CrossUnsafe > SafetyLevel::Unsafe);
    }

    #[test]
    fn descriptor_accepts_hex_and_decimal_chain_ids() {
        let a: ExecutingDescriptor = serde_json::from_str(
            r#"{"timestamp":"0x499602d2","timeout":"0xe10","chainID":"0x3e8"}"#,
        )
        .unwrap();
        let b: ExecutingDescriptor = serde_json::from_str(
            r#"{"chainID":"1000","timestamp":"0x499602d2","timeout":"0xe10"}"#,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.chain_id, Some(U256::from(1000)));
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"timestamp":"0x499602d2","timeout":"0xe10","chainID":"0x3e8"}"#
        );
        // A JSON number is not a valid chainID (Go servers refuse it too).
        assert!(serde_json::from_str::<ExecutingDescriptor>(
            r#"{"timestamp":"0x1","chainID":1000}"#
        )
        .is_err());
        assert!(parse_chain_id("0x").is_err());
        assert!(parse_chain_id("-1").is_err());
        assert!(parse_chain_id("12a").is_err());
    }

    #[test]
    fn descriptor_end_detects_overflow() {
        let d = ExecutingDescriptor { timestamp: u64::MAX - 1, timeout: Some(2), chain_id: None };
        assert_eq!(d.end(), None);
        let d = ExecutingDescriptor { timestamp: 10, timeout: None, chain_id: None };
        assert_eq!(d.end(), Some(10));
    }
}
