//! Pool source: one snapshot of the EL's pending pool (`txpool_content`) and its latest header.
//!
//! Tx objects are decoded into [`PoolTx`], keeping only what placement and checks need, rather
//! than into `alloy_rpc_types::Transaction`: that type insists on a known tx type and a full
//! signature, so one exotic or sloppy tx would make us reject the whole pool, and it costs far
//! more per tx at 100k txs. Each tx is decoded on its own; a bad one is skipped and counted.
//! The `queued` section is not read: those txs have nonce gaps, no builder can include them, and
//! they are tracked once the EL promotes them to `pending`.

use std::collections::HashMap;
use std::time::Duration;

use alloy_eips::eip2930::AccessList;
use alloy_primitives::{Address, B256};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::PoolError;
use crate::interop::access_list::{has_inbox_entries, inbox_entries};
use crate::rpc::client::http_client;
use crate::rpc::RpcClient;

/// A tx's fee fields as the wire gives them (any value up to `u128::MAX`): what
/// [`Fees::fields`] reads back and [`Fees::from`] stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeeFields {
    /// Legacy and EIP-2930 txs: `gasPrice`.
    Legacy {
        /// `gasPrice`.
        gas_price: u128,
    },
    /// EIP-1559 style txs (types 2, 3, 4 and later).
    Dynamic {
        /// `maxFeePerGas`.
        max_fee: u128,
        /// `maxPriorityFeePerGas`.
        max_priority_fee: u128,
    },
}

/// What the builder's ordering needs from a tx's fee fields, as a pooled tx keeps them.
///
/// Exact for every value, in 24 bytes rather than the 48 of two `u128`s (whose 16-byte
/// alignment also pads the tag): a fee above `u64::MAX` wei per gas (18.4 ETH, a 21,000-gas tx
/// committing 387,000 ETH of balance) is boxed in [`Fees::Wide`], which no real pool holds, so
/// a mirrored tx costs 120 bytes rather than 144 (~23 MB less at 1M txs). Build from any value
/// with [`Fees::legacy`] / [`Fees::dynamic`] (or `From<FeeFields>`); the inline variants can be
/// written directly for values that fit. Equality is by value, whatever the variant.
#[derive(Debug, Clone)]
pub enum Fees {
    /// Legacy and EIP-2930 txs: one price, the whole of it above the base fee is the tip.
    Legacy {
        /// `gasPrice`.
        gas_price: u64,
    },
    /// EIP-1559 style txs (types 2, 3, 4 and later).
    Dynamic {
        /// `maxFeePerGas`.
        max_fee: u64,
        /// `maxPriorityFeePerGas`.
        max_priority_fee: u64,
    },
    /// Either kind with a value above `u64::MAX`.
    Wide(Box<FeeFields>),
}

impl Fees {
    /// A legacy tx's fees.
    pub fn legacy(gas_price: u128) -> Self {
        FeeFields::Legacy { gas_price }.into()
    }

    /// A dynamic-fee tx's fees.
    pub fn dynamic(max_fee: u128, max_priority_fee: u128) -> Self {
        FeeFields::Dynamic { max_fee, max_priority_fee }.into()
    }

    /// The fee fields, exact.
    pub fn fields(&self) -> FeeFields {
        match self {
            Self::Legacy { gas_price } => FeeFields::Legacy { gas_price: u128::from(*gas_price) },
            Self::Dynamic { max_fee, max_priority_fee } => FeeFields::Dynamic {
                max_fee: u128::from(*max_fee),
                max_priority_fee: u128::from(*max_priority_fee),
            },
            Self::Wide(f) => **f,
        }
    }

    /// The tip per gas a builder earns at `base_fee`; negative when the tx cannot pay the base
    /// fee (it is not includable in the next block).
    pub fn effective_tip(&self, base_fee: u128) -> i128 {
        let signed = |v: u128| i128::try_from(v).unwrap_or(i128::MAX);
        match self.fields() {
            FeeFields::Legacy { gas_price } => signed(gas_price) - signed(base_fee),
            FeeFields::Dynamic { max_fee, max_priority_fee } => {
                let headroom = signed(max_fee) - signed(base_fee);
                headroom.min(signed(max_priority_fee))
            }
        }
    }
}

impl From<FeeFields> for Fees {
    fn from(f: FeeFields) -> Self {
        let narrow = |v: u128| u64::try_from(v).ok();
        match f {
            FeeFields::Legacy { gas_price } => match narrow(gas_price) {
                Some(gas_price) => Self::Legacy { gas_price },
                None => Self::Wide(Box::new(f)),
            },
            FeeFields::Dynamic { max_fee, max_priority_fee } => {
                match (narrow(max_fee), narrow(max_priority_fee)) {
                    (Some(max_fee), Some(max_priority_fee)) => {
                        Self::Dynamic { max_fee, max_priority_fee }
                    }
                    _ => Self::Wide(Box::new(f)),
                }
            }
        }
    }
}

impl PartialEq for Fees {
    fn eq(&self, other: &Self) -> bool {
        self.fields() == other.fields()
    }
}

impl Eq for Fees {}

/// One pending tx, as much as the revalidator needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolTx {
    /// Tx hash.
    pub hash: B256,
    /// Sender.
    pub sender: Address,
    /// Nonce.
    pub nonce: u64,
    /// Gas limit of the tx (what a builder reserves in the block).
    pub gas: u64,
    /// Fee fields.
    pub fees: Fees,
    /// The inbox entries, in order, when the access list names `CrossL2Inbox` with keys (an
    /// interop tx); `None` for every other tx.
    pub inbox: Option<Vec<B256>>,
}

/// The latest block, which the next presumed blocks build on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    /// Block number.
    pub number: u64,
    /// Block timestamp (unix seconds).
    pub timestamp: u64,
    /// Base fee per gas (0 before London).
    pub base_fee: u128,
    /// Block gas limit.
    pub gas_limit: u64,
}

/// One pool read.
#[derive(Debug, Clone, Default)]
pub struct PoolSnapshot {
    /// The head the pool was read against.
    pub head: Head,
    /// Pending txs, in no particular order.
    pub txs: Vec<PoolTx>,
    /// Tx objects that could not be decoded (skipped).
    pub undecodable: usize,
    /// Txs beyond `max_pool_txs` (skipped).
    pub over_limit: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireTx {
    hash: B256,
    from: Address,
    #[serde(with = "alloy_serde::quantity")]
    nonce: u64,
    #[serde(with = "alloy_serde::quantity")]
    gas: u64,
    #[serde(default, with = "alloy_serde::quantity::opt")]
    gas_price: Option<u128>,
    #[serde(default, with = "alloy_serde::quantity::opt")]
    max_fee_per_gas: Option<u128>,
    #[serde(default, with = "alloy_serde::quantity::opt")]
    max_priority_fee_per_gas: Option<u128>,
    #[serde(default)]
    access_list: Option<AccessList>,
}

impl WireTx {
    fn into_pool_tx(self) -> Option<PoolTx> {
        // geth also reports `gasPrice` on 1559 txs (as the fee cap), so the 1559 fields win.
        let fees = match (self.max_fee_per_gas, self.max_priority_fee_per_gas, self.gas_price) {
            (Some(max_fee), Some(max_priority_fee), _) => Fees::dynamic(max_fee, max_priority_fee),
            (None, None, Some(gas_price)) => Fees::legacy(gas_price),
            _ => return None,
        };
        let inbox = self.access_list.as_ref().filter(|l| has_inbox_entries(l)).map(inbox_entries);
        Some(PoolTx {
            hash: self.hash,
            sender: self.from,
            nonce: self.nonce,
            gas: self.gas,
            fees,
            inbox,
        })
    }
}

/// Decodes one tx object (a `newPendingTransactions` notification's `result`); `None` when it
/// is not a tx object this service understands (the caller counts it).
pub fn decode_pool_tx(json: &str) -> Option<PoolTx> {
    serde_json::from_str::<WireTx>(json).ok().and_then(WireTx::into_pool_tx)
}

#[derive(Deserialize)]
struct WireContent<'a> {
    #[serde(borrow, default)]
    pending: HashMap<String, &'a RawValue>,
    #[serde(default)]
    #[allow(dead_code)]
    queued: IgnoredAny,
}

/// Decodes a `txpool_content` result, keeping at most `max_txs` pending txs. Only a result that
/// is not an object with a `pending` map is an error; bad senders or txs are counted.
pub fn decode_txpool_content(
    json: &str,
    max_txs: usize,
) -> Result<(Vec<PoolTx>, usize, usize), PoolError> {
    let content: WireContent<'_> = serde_json::from_str(json)
        .map_err(|e| PoolError::Decode(format!("txpool_content: {e}")))?;
    let mut txs = Vec::with_capacity(content.pending.values().len().min(max_txs));
    let (mut undecodable, mut over_limit) = (0usize, 0usize);
    for by_nonce in content.pending.values() {
        let by_nonce: HashMap<String, &RawValue> = match serde_json::from_str(by_nonce.get()) {
            Ok(m) => m,
            Err(_) => {
                undecodable += 1;
                continue;
            }
        };
        for raw in by_nonce.values() {
            if txs.len() >= max_txs {
                over_limit += 1;
                continue;
            }
            match serde_json::from_str::<WireTx>(raw.get()).ok().and_then(WireTx::into_pool_tx) {
                Some(tx) => txs.push(tx),
                None => undecodable += 1,
            }
        }
    }
    Ok((txs, undecodable, over_limit))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireHead {
    #[serde(with = "alloy_serde::quantity")]
    number: u64,
    #[serde(with = "alloy_serde::quantity")]
    timestamp: u64,
    #[serde(with = "alloy_serde::quantity")]
    gas_limit: u64,
    #[serde(default, with = "alloy_serde::quantity::opt")]
    base_fee_per_gas: Option<u128>,
    #[serde(default)]
    hash: Option<B256>,
    #[serde(default)]
    parent_hash: Option<B256>,
}

impl WireHead {
    fn head(&self) -> Head {
        Head {
            number: self.number,
            timestamp: self.timestamp,
            base_fee: self.base_fee_per_gas.unwrap_or(0),
            gas_limit: self.gas_limit,
        }
    }
}

/// A header with its identity: what following the chain needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadRef {
    /// What placement needs.
    pub head: Head,
    /// Block hash (`None` when the EL did not send one).
    pub hash: Option<B256>,
    /// Parent hash.
    pub parent: Option<B256>,
}

/// Decodes a header (an `eth_getBlockByNumber` result or a `newHeads` notification's `result`;
/// `null` when the EL has no block yet is an error).
pub fn decode_head_ref(json: &str) -> Result<HeadRef, PoolError> {
    let head: Option<WireHead> =
        serde_json::from_str(json).map_err(|e| PoolError::Decode(format!("block header: {e}")))?;
    let h = head.ok_or_else(|| PoolError::Decode("latest block: the EL answered null".into()))?;
    Ok(HeadRef { head: h.head(), hash: h.hash, parent: h.parent_hash })
}

/// Decodes an `eth_getBlockByNumber` result (`null` when the EL has no block yet).
pub fn decode_head(json: &str) -> Result<Head, PoolError> {
    decode_head_ref(json).map(|r| r.head)
}

#[derive(Deserialize)]
struct WireIncluded {
    from: Address,
    #[serde(with = "alloy_serde::quantity")]
    nonce: u64,
}

#[derive(Deserialize)]
struct WireBlockTxs {
    #[serde(default)]
    transactions: Vec<WireIncluded>,
}

/// Decodes the (sender, nonce) of every tx of an `eth_getBlockByHash(hash, true)` result; the
/// rest of each tx object is skipped unread.
pub fn decode_included(json: &str) -> Result<Vec<(Address, u64)>, PoolError> {
    let block: Option<WireBlockTxs> =
        serde_json::from_str(json).map_err(|e| PoolError::Decode(format!("block txs: {e}")))?;
    let block = block.ok_or_else(|| PoolError::Decode("block txs: the EL answered null".into()))?;
    Ok(block.transactions.into_iter().map(|t| (t.from, t.nonce)).collect())
}

/// The EL whose pool is watched.
#[derive(Debug)]
pub struct ElPool {
    rpc: RpcClient,
    max_txs: usize,
}

impl ElPool {
    /// A client for `url`; every call is bounded by `timeout`.
    pub fn new(
        url: &reqwest::Url,
        timeout: Duration,
        max_txs: usize,
        max_response_bytes: usize,
    ) -> Self {
        let rpc = RpcClient::new("el", "el", url.clone(), timeout, http_client(2))
            .with_max_response_bytes(max_response_bytes);
        Self { rpc, max_txs }
    }

    /// Reads the head and the pending pool (two calls in parallel; a tx that lands in between
    /// is re-placed on the next pass).
    pub async fn fetch(&self) -> Result<PoolSnapshot, PoolError> {
        self.fetch_to(None).await.map(|(snap, _)| snap)
    }

    /// [`Self::fetch`], but the pool's txs go to `batches` as they are decoded (see
    /// [`super::pool_stream::read_txpool_content_batched`]); the snapshot holds the last ones,
    /// with the hash of the head read (the mirror follows heads by hash).
    pub async fn fetch_ref_batched(
        &self,
        batches: tokio::sync::mpsc::Sender<Vec<PoolTx>>,
    ) -> Result<(PoolSnapshot, Option<B256>), PoolError> {
        self.fetch_to(Some(batches)).await
    }

    async fn fetch_to(
        &self,
        batches: Option<tokio::sync::mpsc::Sender<Vec<PoolTx>>>,
    ) -> Result<(PoolSnapshot, Option<B256>), PoolError> {
        // The pool is decoded as it streams in: a 1M-tx answer is ~490 MB of JSON, never held.
        let (head, content) = tokio::join!(
            self.rpc.call_raw("eth_getBlockByNumber", &("latest", false)),
            super::pool_stream::read_to(&self.rpc, self.max_txs, batches),
        );
        let head = decode_head_ref(head.map_err(PoolError::El)?.get())?;
        let (txs, undecodable, over_limit) = content?;
        Ok((PoolSnapshot { head: head.head, txs, undecodable, over_limit }, head.hash))
    }

    /// The (sender, nonce) of every tx in block `hash`.
    pub async fn included(&self, hash: B256) -> Result<Vec<(Address, u64)>, PoolError> {
        let raw = self.rpc.call_raw("eth_getBlockByHash", &(hash, true)).await;
        decode_included(raw.map_err(PoolError::El)?.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interop::{build_access_list, Message};
    use alloy_consensus::{Signed, TxEip1559, TxEnvelope};
    use alloy_primitives::{Signature, TxKind, U256};

    #[test]
    fn decodes_what_alloy_serializes_and_skips_bad_txs() {
        let m = Message {
            chain_id: U256::from(901),
            block_number: 5,
            timestamp: 77,
            log_index: 2,
            checksum: B256::repeat_byte(3),
        };
        let tx = TxEip1559 {
            chain_id: 10,
            nonce: 7,
            gas_limit: 60_000,
            max_fee_per_gas: 2_000,
            max_priority_fee_per_gas: 30,
            to: TxKind::Call(Address::repeat_byte(9)),
            value: U256::ZERO,
            access_list: build_access_list(&[m]),
            input: Default::default(),
        };
        let sig = Signature::new(U256::from(1), U256::from(2), false);
        let env = TxEnvelope::Eip1559(Signed::new_unchecked(tx, sig, B256::repeat_byte(0xaa)));
        let sender = Address::repeat_byte(0x11);
        let rpc_tx = alloy_rpc_types::Transaction {
            inner: alloy_consensus::transaction::Recovered::new_unchecked(env, sender),
            block_hash: None,
            block_number: None,
            transaction_index: None,
            effective_gas_price: None,
            block_timestamp: None,
        };
        let content = serde_json::json!({
            "pending": { format!("{sender}"): { "7": rpc_tx, "8": {"hash": "0x12"} }, "0x22": 5 },
            "queued": { format!("{sender}"): { "10": {"whatever": true} } },
        });
        let (txs, undecodable, over) = decode_txpool_content(&content.to_string(), 10).unwrap();
        assert_eq!((undecodable, over), (2, 0));
        assert_eq!(txs.len(), 1);
        let t = &txs[0];
        assert_eq!(
            (t.hash, t.sender, t.nonce, t.gas),
            (B256::repeat_byte(0xaa), sender, 7, 60_000)
        );
        assert_eq!(t.fees, Fees::Dynamic { max_fee: 2_000, max_priority_fee: 30 });
        assert_eq!(t.inbox.as_deref(), Some(&crate::interop::encode_entries(&[m])[..]));
        assert!(decode_txpool_content("[1]", 10).is_err());
    }

    #[test]
    fn fees_are_exact_and_compact_at_any_value() {
        assert_eq!(std::mem::size_of::<Fees>(), 24);
        assert_eq!(std::mem::size_of::<PoolTx>(), 120);
        let big = u128::from(u64::MAX) + 1;
        for f in [
            FeeFields::Legacy { gas_price: 7 },
            FeeFields::Legacy { gas_price: big },
            FeeFields::Dynamic { max_fee: big * 3, max_priority_fee: big },
            FeeFields::Dynamic { max_fee: big, max_priority_fee: 5 },
            FeeFields::Dynamic { max_fee: u128::MAX, max_priority_fee: u128::MAX },
        ] {
            let fees = Fees::from(f);
            assert_eq!(fees.fields(), f);
            assert_eq!(matches!(fees, Fees::Wide(_)), f != FeeFields::Legacy { gas_price: 7 });
        }
        // Wide values order exactly: no saturation at u64::MAX.
        let a = Fees::dynamic(big * 4, big + 2);
        let b = Fees::dynamic(big * 4, big + 1);
        assert_eq!(a.effective_tip(100) - b.effective_tip(100), 1);
        assert_eq!(Fees::legacy(big).effective_tip(1), i128::from(u64::MAX));
        // Equal by value whatever the variant.
        let wide_small = Fees::Wide(Box::new(FeeFields::Legacy { gas_price: 7 }));
        assert_eq!(wide_small, Fees::Legacy { gas_price: 7 });
        assert_eq!(wide_small.effective_tip(2), 5);
    }

    #[test]
    fn effective_tip_follows_the_base_fee() {
        let d = Fees::Dynamic { max_fee: 100, max_priority_fee: 10 };
        assert_eq!(d.effective_tip(50), 10);
        assert_eq!(d.effective_tip(95), 5);
        assert_eq!(d.effective_tip(120), -20);
        assert_eq!(Fees::Legacy { gas_price: 70 }.effective_tip(50), 20);
        assert_eq!(Fees::Legacy { gas_price: 40 }.effective_tip(50), -10);
    }

    #[test]
    fn head_decodes_with_and_without_base_fee() {
        let json = format!(
            r#"{{"number":"0x10","timestamp":"0x64","gasLimit":"0x1c9c380","baseFeePerGas":"0x7","hash":"{}","parentHash":"{}"}}"#,
            B256::repeat_byte(1),
            B256::repeat_byte(2)
        );
        let h = decode_head(&json).unwrap();
        assert_eq!(h, Head { number: 16, timestamp: 100, base_fee: 7, gas_limit: 30_000_000 });
        let r = decode_head_ref(&json).unwrap();
        assert_eq!((r.hash, r.parent), (Some(B256::repeat_byte(1)), Some(B256::repeat_byte(2))));
        assert_eq!(
            decode_head(r#"{"number":"0x1","timestamp":"0x2","gasLimit":"0x3"}"#).unwrap().base_fee,
            0
        );
        assert!(decode_head("null").is_err());
    }
}
