//! A mock execution client for the revalidator: serves `txpool_content` (geth / op-geth / reth
//! format: `{pending: {sender: {nonce: tx}}, queued: {...}}`, tx objects shaped like
//! `alloy_rpc_types::Transaction`) and `eth_getBlockByNumber("latest", false)`, for pools of
//! thousands of txs. Tests change the pool and head between passes and count calls.
//!
//! Tx hashes are `keccak(sender ++ nonce ++ salt)`, not real signing hashes: nothing downstream
//! of `txpool_content` recomputes them, and signing 100k txs would dominate every test.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use alloy_eips::eip2930::AccessList;
use alloy_primitives::{keccak256, Address, B256};
use futures::future::BoxFuture;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::interop::{build_access_list, Message};
use crate::revalidator::pool::{Fees, Head};
use crate::rpc::server::{CallContext, Handler};
use crate::rpc::types::{to_raw, Call, RpcError};

/// One pool tx as the mock serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockTx {
    /// Hash.
    pub hash: B256,
    /// Sender.
    pub from: Address,
    /// Nonce.
    pub nonce: u64,
    /// Gas limit.
    pub gas: u64,
    /// Fee fields (legacy txs are served as type 0, dynamic ones as type 2).
    pub fees: Fees,
    /// Access list (an interop tx lists `CrossL2Inbox`).
    pub access_list: AccessList,
}

/// A deterministic hash for a mock tx.
pub fn mock_hash(from: Address, nonce: u64, salt: u64) -> B256 {
    let mut b = [0u8; 36];
    b[..20].copy_from_slice(from.as_slice());
    b[20..28].copy_from_slice(&nonce.to_be_bytes());
    b[28..].copy_from_slice(&salt.to_be_bytes());
    keccak256(b)
}

impl MockTx {
    /// A type-2 tx declaring `messages` (none: a plain tx).
    pub fn new(from: Address, nonce: u64, gas: u64, fees: Fees, messages: &[Message]) -> Self {
        let access_list =
            if messages.is_empty() { AccessList::default() } else { build_access_list(messages) };
        Self { hash: mock_hash(from, nonce, 0), from, nonce, gas, fees, access_list }
    }

    /// The tx object, as an EL reports it in `txpool_content`.
    pub fn to_json(&self, chain_id: u64) -> Value {
        let mut v = json!({
            "blockHash": null,
            "blockNumber": null,
            "transactionIndex": null,
            "hash": self.hash,
            "from": self.from,
            "to": Address::repeat_byte(0x42),
            "nonce": format!("{:#x}", self.nonce),
            "gas": format!("{:#x}", self.gas),
            "value": "0x0",
            "input": "0x",
            "chainId": format!("{chain_id:#x}"),
            "accessList": self.access_list,
            "r": "0x1",
            "s": "0x2",
            "yParity": "0x0",
            "v": "0x0",
        });
        match self.fees {
            Fees::Legacy { gas_price } => {
                v["type"] = json!("0x1");
                v["gasPrice"] = json!(format!("{gas_price:#x}"));
            }
            Fees::Dynamic { max_fee, max_priority_fee } => {
                v["type"] = json!("0x2");
                v["maxFeePerGas"] = json!(format!("{max_fee:#x}"));
                v["maxPriorityFeePerGas"] = json!(format!("{max_priority_fee:#x}"));
                // geth reports the fee cap as gasPrice for pooled 1559 txs.
                v["gasPrice"] = json!(format!("{max_fee:#x}"));
            }
        }
        v
    }
}

/// A generated pool: `senders` senders with `per_sender` consecutive nonces each; every
/// `interop_every`-th tx (0: none) declares the messages `messages(i)` returns for its index.
/// Tips and gas vary deterministically so placement has something to order.
pub fn generate_pool(
    senders: usize,
    per_sender: usize,
    interop_every: usize,
    messages: impl Fn(usize) -> Vec<Message>,
) -> Vec<MockTx> {
    let mut out = Vec::with_capacity(senders * per_sender);
    for s in 0..senders {
        let mut addr = [0u8; 20];
        addr[12..20].copy_from_slice(&(s as u64 + 1).to_be_bytes());
        let from = Address::from(addr);
        for n in 0..per_sender {
            let i = out.len();
            let interop = interop_every > 0 && i % interop_every == 0;
            let tip = 1 + (i as u128 * 7_919) % 100;
            let fees = Fees::Dynamic { max_fee: 1_000 + tip, max_priority_fee: tip };
            let gas = 21_000 + (i as u64 % 5) * 20_000;
            let msgs = if interop { messages(i) } else { Vec::new() };
            out.push(MockTx::new(from, n as u64, gas, fees, &msgs));
        }
    }
    out
}

#[derive(Default)]
struct State {
    head: Head,
    chain_id: u64,
    pending: BTreeMap<Address, BTreeMap<u64, MockTx>>,
    queued: BTreeMap<Address, BTreeMap<u64, MockTx>>,
    raw: Vec<(String, String, Value)>,
}

/// The mock EL.
#[derive(Default)]
pub struct MockElPool {
    state: Mutex<State>,
    calls: Mutex<HashMap<String, u64>>,
}

impl MockElPool {
    /// An empty pool on top of `head`, for chain `chain_id`.
    pub fn new(head: Head, chain_id: u64) -> Self {
        let s = Self::default();
        s.with(|st| {
            st.head = head;
            st.chain_id = chain_id;
        });
        s
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces the head.
    pub fn set_head(&self, head: Head) {
        self.with(|s| s.head = head);
    }

    /// The head served.
    pub fn head(&self) -> Head {
        self.with(|s| s.head)
    }

    /// Adds (or replaces) pending txs.
    pub fn insert(&self, txs: impl IntoIterator<Item = MockTx>) {
        self.with(|s| {
            for tx in txs {
                s.pending.entry(tx.from).or_default().insert(tx.nonce, tx);
            }
        });
    }

    /// Adds a queued tx (served under `queued`).
    pub fn insert_queued(&self, tx: MockTx) {
        self.with(|s| s.queued.entry(tx.from).or_default().insert(tx.nonce, tx));
    }

    /// Adds an arbitrary JSON value as the pending tx `pending[sender][nonce]` (to test
    /// undecodable txs).
    pub fn insert_raw(&self, sender: &str, nonce: &str, tx: Value) {
        self.with(|s| s.raw.push((sender.into(), nonce.into(), tx)));
    }

    /// Removes a tx (pending or queued) by hash; true when it was there.
    pub fn remove(&self, hash: &B256) -> bool {
        self.with(|s| {
            let mut found = false;
            for by_sender in [&mut s.pending, &mut s.queued] {
                for txs in by_sender.values_mut() {
                    let before = txs.len();
                    txs.retain(|_, t| t.hash != *hash);
                    found |= txs.len() != before;
                }
                by_sender.retain(|_, txs| !txs.is_empty());
            }
            found
        })
    }

    /// Number of pending txs.
    pub fn pending_len(&self) -> usize {
        self.with(|s| s.pending.values().map(BTreeMap::len).sum())
    }

    /// How many times `method` was called.
    pub fn calls(&self, method: &str) -> u64 {
        self.calls.lock().map(|c| c.get(method).copied().unwrap_or(0)).unwrap_or(0)
    }

    fn content(&self) -> Value {
        self.with(|s| {
            let section =
                |m: &BTreeMap<Address, BTreeMap<u64, MockTx>>| -> serde_json::Map<String, Value> {
                    m.iter()
                        .map(|(from, txs)| {
                            let by_nonce: serde_json::Map<String, Value> = txs
                                .iter()
                                .map(|(n, t)| (n.to_string(), t.to_json(s.chain_id)))
                                .collect();
                            (from.to_checksum(None), Value::Object(by_nonce))
                        })
                        .collect()
                };
            let mut pending = section(&s.pending);
            for (sender, nonce, tx) in &s.raw {
                let slot = pending.entry(sender.clone()).or_insert_with(|| json!({}));
                if let Some(by_nonce) = slot.as_object_mut() {
                    by_nonce.insert(nonce.clone(), tx.clone());
                }
            }
            json!({ "pending": pending, "queued": section(&s.queued) })
        })
    }

    fn block(&self) -> Value {
        let h = self.head();
        json!({
            "number": format!("{:#x}", h.number),
            "hash": keccak256(h.number.to_be_bytes()),
            "parentHash": keccak256(h.number.saturating_sub(1).to_be_bytes()),
            "timestamp": format!("{:#x}", h.timestamp),
            "gasLimit": format!("{:#x}", h.gas_limit),
            "gasUsed": "0x0",
            "baseFeePerGas": format!("{:#x}", h.base_fee),
            "transactions": [],
        })
    }
}

impl Handler for MockElPool {
    fn call<'a>(
        &'a self,
        _ctx: &'a CallContext,
        call: Call,
    ) -> BoxFuture<'a, Result<Box<RawValue>, RpcError>> {
        Box::pin(async move {
            if let Ok(mut c) = self.calls.lock() {
                *c.entry(call.method.clone()).or_default() += 1;
            }
            match call.method.as_str() {
                "txpool_content" => Ok(to_raw(&self.content())),
                "eth_getBlockByNumber" => Ok(to_raw(&self.block())),
                "eth_blockNumber" => Ok(to_raw(&format!("{:#x}", self.head().number))),
                "eth_chainId" => Ok(to_raw(&format!("{:#x}", self.with(|s| s.chain_id)))),
                m => Err(RpcError::method_not_found(m)),
            }
        })
    }

    fn method_label(&self, _method: &str) -> &'static str {
        "any"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revalidator::pool::decode_txpool_content;
    use alloy_primitives::U256;

    #[test]
    fn serves_what_the_revalidator_decodes() {
        let m = Message {
            chain_id: U256::from(901),
            block_number: 1,
            timestamp: 2,
            log_index: 3,
            checksum: B256::repeat_byte(3),
        };
        let txs = generate_pool(3, 4, 5, |_| vec![m]);
        assert_eq!(txs.len(), 12);
        let el = MockElPool::new(Head::default(), 10);
        el.insert(txs.clone());
        el.insert_raw("0x00000000000000000000000000000000000000aa", "0", json!({"hash": 1}));
        let (decoded, undecodable, over) =
            decode_txpool_content(&el.content().to_string(), 100).unwrap();
        assert_eq!((decoded.len(), undecodable, over), (12, 1, 0));
        assert_eq!(decoded.iter().filter(|t| t.inbox.is_some()).count(), 3);
        assert!(el.remove(&txs[0].hash));
        assert!(!el.remove(&txs[0].hash));
        assert_eq!(el.pending_len(), 11);
    }
}
