//! Raw `eth_sendRawTransaction` bytes → the facts the gateway acts on: hash, sender, chain id and
//! the `CrossL2Inbox` entries. Decoding is alloy's (EIP-2718 envelopes, RLP, signatures); this
//! module only decides what an OP chain's front door accepts and says why it refuses the rest.
//!
//! Recovering the sender (secp256k1 public-key recovery) costs more than everything else a
//! submission needs together, so [`decode_unrecovered`] leaves it for later: the ingress
//! recovers it only when something needs it (a sender limit, a validation, a refusal's log
//! line) through [`DecodedTx::sender`], once. [`decode_tx`] recovers at once.

use std::sync::OnceLock;

use alloy_consensus::{Transaction, TxEnvelope};
use alloy_eips::eip2718::{Decodable2718, Eip2718Error};
use alloy_primitives::{Address, B256};

use super::access_list::inbox_entries;

/// EIP-4844 blob transactions: OP chains do not take them.
const BLOB_TX_TYPE: u8 = 0x03;
/// OP deposit transactions: only derived from L1, never submitted over RPC.
const DEPOSIT_TX_TYPE: u8 = 0x7e;

/// What the gateway needs from a submitted transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedTx {
    /// The transaction hash (keccak of the raw bytes), as the EL will report it.
    pub hash: B256,
    /// The chain id it is signed for; `None` for a pre-EIP-155 legacy transaction.
    pub chain_id: Option<u64>,
    /// EIP-2718 type (0 for legacy).
    pub tx_type: u8,
    /// Sender nonce.
    pub nonce: u64,
    /// Gas limit.
    pub gas_limit: u64,
    /// Every storage key listed under `CrossL2Inbox`, across all its occurrences, in order.
    pub inbox_entries: Vec<B256>,
    /// What the sender is recovered from, and the sender once recovered.
    signer: Signer,
}

/// The signed transaction the sender is recovered from; the recovered sender (or `None`:
/// unrecoverable) is remembered on first use. The signing hash (an RLP re-encoding and a keccak)
/// is computed only then too: a tx that is only forwarded never needs it.
#[derive(Debug, Clone)]
struct Signer {
    tx: TxEnvelope,
    recovered: OnceLock<Option<Address>>,
}

/// Two decodings are equal when they are of the same signed transaction, recovered or not (the
/// tx hash covers the signature and every signed field).
impl PartialEq for Signer {
    fn eq(&self, other: &Self) -> bool {
        self.tx.tx_hash() == other.tx.tx_hash()
    }
}

impl Eq for Signer {}

impl DecodedTx {
    /// The sender, recovered from the signature on first use (then remembered).
    /// [`DecodeError::Unrecoverable`] when no public key recovers from it.
    pub fn sender(&self) -> Result<Address, DecodeError> {
        let s = &self.signer;
        s.recovered
            .get_or_init(|| {
                alloy_consensus::crypto::secp256k1::recover_signer(
                    s.tx.signature(),
                    s.tx.signature_hash(),
                )
                .ok()
            })
            .ok_or(DecodeError::Unrecoverable)
    }

    /// True once the sender has been recovered (or found unrecoverable).
    pub fn sender_recovered(&self) -> bool {
        self.signer.recovered.get().is_some()
    }

    /// An interop transaction declares at least one inbox entry.
    pub fn is_interop(&self) -> bool {
        !self.inbox_entries.is_empty()
    }
}

/// Why raw bytes are not an acceptable transaction. The messages are end-user sentences: they
/// become JSON-RPC error messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No bytes at all.
    #[error("empty transaction")]
    Empty,
    /// Type 3.
    #[error("blob transactions (type 3) are not accepted on OP chains")]
    Blob,
    /// Type 0x7E.
    #[error("deposit transactions (type 0x7e) cannot be submitted over RPC")]
    Deposit,
    /// A type byte no hard fork defines for user transactions.
    #[error("unsupported transaction type {0:#04x}")]
    UnknownType(u8),
    /// The RLP body does not decode (also a legacy `v` that is not 27, 28 or EIP-155).
    #[error("malformed transaction RLP: {0}")]
    Rlp(String),
    /// Bytes after a complete transaction.
    #[error("{0} unexpected trailing bytes after the transaction")]
    TrailingBytes(usize),
    /// `s` in the upper half of the curve order (EIP-2).
    #[error("invalid signature: s value is too high (EIP-2)")]
    HighS,
    /// No public key recovers from the signature.
    #[error("invalid signature: cannot recover the sender")]
    Unrecoverable,
}

impl DecodeError {
    /// Metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Blob => "blob",
            Self::Deposit => "deposit",
            Self::UnknownType(_) => "unknown_type",
            Self::Rlp(_) => "rlp",
            Self::TrailingBytes(_) => "trailing_bytes",
            Self::HighS => "high_s",
            Self::Unrecoverable => "unrecoverable",
        }
    }
}

/// Decodes one EIP-2718 transaction (legacy with or without EIP-155, 2930, 1559, 7702), checks
/// there is nothing after it, recovers the sender and extracts the inbox entries.
pub fn decode_tx(raw: &[u8]) -> Result<DecodedTx, DecodeError> {
    let tx = decode_unrecovered(raw)?;
    tx.sender()?;
    Ok(tx)
}

/// [`decode_tx`] without recovering the sender: every other check (type, RLP, trailing bytes,
/// EIP-2 `s`) is done; [`DecodedTx::sender`] recovers it when asked.
pub fn decode_unrecovered(raw: &[u8]) -> Result<DecodedTx, DecodeError> {
    let Some(&first) = raw.first() else { return Err(DecodeError::Empty) };
    match first {
        BLOB_TX_TYPE => return Err(DecodeError::Blob),
        DEPOSIT_TX_TYPE => return Err(DecodeError::Deposit),
        // 0x05..=0x7f are type bytes no fork gives to user transactions (0x7e handled above).
        0x05..=0x7f => return Err(DecodeError::UnknownType(first)),
        _ => {}
    }
    let mut buf = raw;
    let tx = TxEnvelope::decode_2718(&mut buf).map_err(|e| match e {
        // alloy reports some out-of-range legacy fields (a gas price above 2^128) this way.
        Eip2718Error::UnexpectedType(_) if first >= 0x80 => {
            DecodeError::Rlp("a legacy transaction field is out of range".into())
        }
        Eip2718Error::UnexpectedType(t) => DecodeError::UnknownType(t),
        Eip2718Error::RlpError(e) => DecodeError::Rlp(e.to_string()),
        // The error enum is non-exhaustive upstream.
        #[allow(unreachable_patterns)]
        other => DecodeError::Rlp(other.to_string()),
    })?;
    if !buf.is_empty() {
        return Err(DecodeError::TrailingBytes(buf.len()));
    }
    if matches!(tx, TxEnvelope::Eip4844(_)) {
        return Err(DecodeError::Blob);
    }
    if tx.signature().s() > alloy_consensus::crypto::SECP256K1N_HALF {
        return Err(DecodeError::HighS);
    }
    let inbox_entries = tx.access_list().map(inbox_entries).unwrap_or_default();
    Ok(DecodedTx {
        hash: *tx.tx_hash(),
        chain_id: tx.chain_id(),
        tx_type: u8::from(tx.tx_type()),
        nonce: tx.nonce(),
        gas_limit: tx.gas_limit(),
        inbox_entries,
        signer: Signer { tx, recovered: OnceLock::new() },
    })
}
