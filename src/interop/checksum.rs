//! The type-3 checksum that binds an access-list entry to the initiating log's origin and payload.
//!
//! Spec: `specs/interop/predeploys.md`, "type 3: checksum". The only way to verify a checksum is
//! to recompute it from the real log, which is what the light backend does.

use alloy_primitives::{keccak256, Address, Keccak256, B256};

use super::types::{ChainId, Message};

/// `keccak256(topic0 ++ … ++ topicN ++ data)`: the serialized log payload.
pub fn payload_hash(topics: &[B256], data: &[u8]) -> B256 {
    let mut h = Keccak256::new();
    for t in topics {
        h.update(t);
    }
    h.update(data);
    h.finalize()
}

/// `keccak256(origin ++ payloadHash)`.
pub fn log_hash(origin: Address, payload_hash: B256) -> B256 {
    let mut buf = [0u8; 52];
    buf[..20].copy_from_slice(origin.as_slice());
    buf[20..].copy_from_slice(payload_hash.as_slice());
    keccak256(buf)
}

/// `12 zero bytes ++ blockNumber u64 ++ timestamp u64 ++ logIndex u32`, all big-endian. Note the
/// field order differs from the `ExecutingMessage` event data.
pub fn id_packed(block_number: u64, timestamp: u64, log_index: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[12..20].copy_from_slice(&block_number.to_be_bytes());
    out[20..28].copy_from_slice(&timestamp.to_be_bytes());
    out[28..32].copy_from_slice(&log_index.to_be_bytes());
    out
}

/// The bare checksum: `keccak256(keccak256(logHash ++ idPacked) ++ chainId u256 BE)`.
pub fn bare_checksum(
    log_hash: B256,
    block_number: u64,
    timestamp: u64,
    log_index: u32,
    chain_id: ChainId,
) -> B256 {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(log_hash.as_slice());
    buf[32..].copy_from_slice(&id_packed(block_number, timestamp, log_index));
    let id_log_hash = keccak256(buf);
    buf[..32].copy_from_slice(id_log_hash.as_slice());
    buf[32..].copy_from_slice(&chain_id.to_be_bytes::<32>());
    keccak256(buf)
}

/// The type-3 access-list entry: `0x03 ++ bare[1..32]`.
pub fn checksum_from_log_hash(
    log_hash: B256,
    block_number: u64,
    timestamp: u64,
    log_index: u32,
    chain_id: ChainId,
) -> B256 {
    let mut c = bare_checksum(log_hash, block_number, timestamp, log_index, chain_id);
    c.0[0] = 0x03;
    c
}

/// The checksum entry of a log given its raw origin, topics and data.
pub fn checksum(
    origin: Address,
    topics: &[B256],
    data: &[u8],
    block_number: u64,
    timestamp: u64,
    log_index: u32,
    chain_id: ChainId,
) -> B256 {
    checksum_from_log_hash(
        log_hash(origin, payload_hash(topics, data)),
        block_number,
        timestamp,
        log_index,
        chain_id,
    )
}

impl Message {
    /// Builds the message a transaction must declare to execute the given initiating log.
    pub fn for_log(
        chain_id: ChainId,
        block_number: u64,
        timestamp: u64,
        log_index: u32,
        origin: Address,
        topics: &[B256],
        data: &[u8],
    ) -> Self {
        Self {
            chain_id,
            block_number,
            timestamp,
            log_index,
            checksum: checksum(origin, topics, data, block_number, timestamp, log_index, chain_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{address, b256, U256};

    /// op-core `TestMessage` constants (see `shared/fixtures/interop-vectors.json`, "upstream").
    #[test]
    fn op_core_vector() {
        let ph = keccak256(b"example payload");
        assert_eq!(ph, b256!("0x8017559a85b12c04b14a1a425d53486d1015f833714a09bd62f04152a7e2ae9b"));
        let lh = log_hash(address!("0xe0e1e2e3e4e5e6e7e8e9f0f1f2f3f4f5f6f7f8f9"), ph);
        assert_eq!(lh, b256!("0xf9ed05990c887d3f86718aabd7e940faaa75d6a5cd44602e89642586ce85f2aa"));
        let c = checksum_from_log_hash(
            lh,
            11647051513882650536,
            13961937044701104072,
            2981278644,
            U256::from(15119379810110330840u64),
        );
        assert_eq!(c, b256!("0x03749e87fd7789575de9906569deb05aaf220dc4cfab3d8abbfd34a2e1d7d357"));
    }
}
