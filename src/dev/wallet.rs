//! Signed transactions for the devnet's traffic generator, tests and benches. Signing is
//! alloy's (`alloy-signer-local`); this only fills in fields.

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope, TxLegacy};
use alloy_eips::eip2718::Encodable2718;
use alloy_eips::eip2930::AccessList;
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;

use crate::interop::{build_access_list, Message};

/// A deterministic key: the `n`-th dev account (`n` must not be 0).
pub fn dev_signer(n: u64) -> PrivateKeySigner {
    let mut k = [0u8; 32];
    k[24..].copy_from_slice(&n.max(1).to_be_bytes());
    k[0] = 0x42;
    PrivateKeySigner::from_bytes(&B256::from(k)).expect("a non-zero key below the curve order")
}

/// Fields of an EIP-1559 transaction the tests vary.
#[derive(Debug, Clone)]
pub struct TxSpec {
    /// Chain id the tx is signed for.
    pub chain_id: u64,
    /// Sender nonce.
    pub nonce: u64,
    /// Gas limit.
    pub gas_limit: u64,
    /// Max fee per gas (wei).
    pub max_fee_per_gas: u128,
    /// Max priority fee per gas (wei).
    pub max_priority_fee_per_gas: u128,
    /// Recipient.
    pub to: Address,
    /// Access list.
    pub access_list: AccessList,
}

impl TxSpec {
    /// A plain transfer on `chain_id`.
    pub fn transfer(chain_id: u64, nonce: u64) -> Self {
        Self {
            chain_id,
            nonce,
            gas_limit: 21_000,
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1_000_000,
            to: Address::repeat_byte(0x11),
            access_list: AccessList::default(),
        }
    }

    /// A transaction executing `messages` (their entries under `CrossL2Inbox`).
    pub fn interop(chain_id: u64, nonce: u64, messages: &[Message]) -> Self {
        Self {
            gas_limit: 100_000,
            access_list: build_access_list(messages),
            ..Self::transfer(chain_id, nonce)
        }
    }
}

/// Signs an EIP-1559 transaction; returns the raw bytes and the hash.
pub fn sign_1559(signer: &PrivateKeySigner, spec: &TxSpec) -> (Bytes, B256) {
    let tx = TxEip1559 {
        chain_id: spec.chain_id,
        nonce: spec.nonce,
        gas_limit: spec.gas_limit,
        max_fee_per_gas: spec.max_fee_per_gas,
        max_priority_fee_per_gas: spec.max_priority_fee_per_gas,
        to: TxKind::Call(spec.to),
        value: U256::from(1),
        access_list: spec.access_list.clone(),
        input: Bytes::new(),
    };
    let sig = signer.sign_hash_sync(&tx.signature_hash()).expect("local signing cannot fail");
    let env: TxEnvelope = tx.into_signed(sig).into();
    let hash = *env.tx_hash();
    (env.encoded_2718().into(), hash)
}

/// Signs a legacy EIP-155 transfer.
pub fn sign_legacy(signer: &PrivateKeySigner, chain_id: u64, nonce: u64) -> (Bytes, B256) {
    let tx = TxLegacy {
        chain_id: Some(chain_id),
        nonce,
        gas_price: 2_000_000_000,
        gas_limit: 21_000,
        to: TxKind::Call(Address::repeat_byte(0x11)),
        value: U256::from(1),
        input: Bytes::new(),
    };
    let sig = signer.sign_hash_sync(&tx.signature_hash()).expect("local signing cannot fail");
    let env: TxEnvelope = tx.into_signed(sig).into();
    let hash = *env.tx_hash();
    (env.encoded_2718().into(), hash)
}
