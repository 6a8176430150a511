//! A mock execution client for the revalidator: serves `txpool_content` (geth / op-geth / reth
//! format: `{pending: {sender: {nonce: tx}}, queued: {...}}`, tx objects shaped like
//! `alloy_rpc_types::Transaction`) and `eth_getBlockByNumber("latest", false)`, for pools of
//! thousands of txs. Tests change the pool and head between passes and count calls.
//!
//! It also speaks WebSocket on the same port ([`spawn_el_pool`]): `eth_subscribe`
//! `newPendingTransactions` (full tx objects, as op-geth and op-reth send with `true`) and
//! `newHeads`. [`MockElPool::insert`] announces, [`MockElPool::insert_quietly`] does not (drift);
//! [`MockElPool::mine`] and [`MockElPool::reorg`] build a chain served by `eth_getBlockByHash`;
//! [`MockElPool::drop_ws`] closes every socket; [`MockElPool::set_subscriptions`] makes it an EL
//! without subscriptions, [`MockElPool::set_hashes_only`] one that announces hashes only;
//! [`MockElPool::send_ws`] sends any frame (garbage, truncated JSON) to every socket;
//! [`MockElPool::hold_blocks`] stalls `eth_getBlockByHash` (a slow EL). [`spawn_broken_ws`] is a
//! WebSocket EL that breaks the protocol itself after subscribing.
//!
//! Tx hashes are `keccak(sender ++ nonce ++ salt)`, not real signing hashes: nothing downstream
//! of `txpool_content` recomputes them, and signing 100k txs would dominate every test.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Message as WsMessage;
use futures::{SinkExt, StreamExt};
use tokio_util::sync::CancellationToken;

use alloy_eips::eip2930::AccessList;
use alloy_primitives::{keccak256, Address, B256};
use futures::future::BoxFuture;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::ws_hub::{el_subscription, WsHub, WsPeer};
use super::Peer;
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
    /// The same tx under another hash (`salt`): a replacement when its fees differ.
    pub fn salted(mut self, salt: u64) -> Self {
        self.hash = mock_hash(self.from, self.nonce, salt);
        self
    }

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

/// A mined block.
#[derive(Debug, Clone)]
struct MockBlock {
    head: Head,
    hash: B256,
    parent: B256,
    txs: Vec<MockTx>,
}

#[derive(Default)]
struct State {
    head: Head,
    chain_id: u64,
    pending: BTreeMap<Address, BTreeMap<u64, MockTx>>,
    queued: BTreeMap<Address, BTreeMap<u64, MockTx>>,
    raw: Vec<(String, String, Value)>,
    /// Blocks mined here (tests that only set heads have none).
    chain: Vec<MockBlock>,
    /// Bumped by every reorg, so replacement blocks get new hashes.
    fork: u64,
}

/// Subscription kinds.
const PENDING: &str = "newPendingTransactions";
const HEADS: &str = "newHeads";

/// The mock EL.
#[derive(Default)]
pub struct MockElPool {
    state: Mutex<State>,
    calls: Mutex<HashMap<String, u64>>,
    ws: WsHub,
    no_subscriptions: AtomicBool,
    hashes_only: AtomicBool,
    hold_blocks: AtomicBool,
}

fn block_hash(number: u64, fork: u64) -> B256 {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&number.to_be_bytes());
    b[8..].copy_from_slice(&fork.to_be_bytes());
    if fork == 0 {
        // Before any reorg: the hash the mock has always served for a number.
        return keccak256(number.to_be_bytes());
    }
    keccak256(b)
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

    /// Adds (or replaces, by sender and nonce) pending txs, announcing each to
    /// `newPendingTransactions` subscribers.
    pub fn insert(&self, txs: impl IntoIterator<Item = MockTx>) {
        let chain_id = self.with(|s| s.chain_id);
        for tx in txs {
            let json = tx.to_json(chain_id);
            self.with(|s| s.pending.entry(tx.from).or_default().insert(tx.nonce, tx));
            self.notify(PENDING, &json);
        }
    }

    /// Adds pending txs without announcing them (what a subscriber cannot see: drift).
    pub fn insert_quietly(&self, txs: impl IntoIterator<Item = MockTx>) {
        self.with(|s| {
            for tx in txs {
                s.pending.entry(tx.from).or_default().insert(tx.nonce, tx);
            }
        });
    }

    /// Mines the next block with the pending txs `hashes` (others stay pooled): the head
    /// advances one block (`block_time` s later) and `newHeads` subscribers are told.
    pub fn mine(&self, hashes: &[B256], block_time: u64) -> Head {
        let header = self.with(|s| {
            let mut txs = Vec::new();
            for by_nonce in s.pending.values_mut() {
                let keys: Vec<u64> = by_nonce
                    .iter()
                    .filter(|(_, t)| hashes.contains(&t.hash))
                    .map(|(n, _)| *n)
                    .collect();
                for n in keys {
                    txs.extend(by_nonce.remove(&n));
                }
            }
            s.pending.retain(|_, t| !t.is_empty());
            // Blocks before the first mined one keep their fork-0 hashes.
            let parent = s.chain.last().map_or(block_hash(s.head.number, 0), |b| b.hash);
            let head = Head {
                number: s.head.number + 1,
                timestamp: s.head.timestamp + block_time,
                ..s.head
            };
            let hash = block_hash(head.number, s.fork);
            s.chain.push(MockBlock { head, hash, parent, txs });
            s.head = head;
            header_json(&s.chain[s.chain.len() - 1])
        });
        self.notify(HEADS, &header);
        self.head()
    }

    /// Replaces the last `depth` mined blocks by one new block holding the pending txs
    /// `hashes`: the dropped blocks' other txs go back to the pool, unannounced (as an EL's
    /// pool reset does). `newHeads` subscribers see the new block, whose parent is not the head
    /// they followed.
    pub fn reorg(&self, depth: usize, hashes: &[B256], block_time: u64) -> Head {
        self.with(|s| {
            s.fork += 1;
            for _ in 0..depth.min(s.chain.len()) {
                if let Some(b) = s.chain.pop() {
                    for tx in b.txs {
                        s.pending.entry(tx.from).or_default().insert(tx.nonce, tx);
                    }
                    s.head = Head {
                        number: b.head.number - 1,
                        timestamp: b.head.timestamp - block_time,
                        ..b.head
                    };
                }
            }
        });
        self.mine(hashes, block_time)
    }

    /// Makes `eth_subscribe` fail with -32601 (an EL without subscriptions) or work again.
    pub fn set_subscriptions(&self, on: bool) {
        self.no_subscriptions.store(!on, Ordering::SeqCst);
    }

    /// Announces pending txs by hash only (an EL that ignores the full-objects flag), or with
    /// full objects again.
    pub fn set_hashes_only(&self, on: bool) {
        self.hashes_only.store(on, Ordering::SeqCst);
    }

    /// Makes `eth_getBlockByHash` wait (up to 10 s) until released: a slow EL, so that heads
    /// pile up in front of a follower that reads each head's block.
    pub fn hold_blocks(&self, on: bool) {
        self.hold_blocks.store(on, Ordering::SeqCst);
    }

    /// Sends `frame` as is to every WebSocket connection.
    pub fn send_ws(&self, frame: WsMessage) {
        self.ws.send_all(frame);
    }

    /// Closes every WebSocket connection (the EL restarting).
    pub fn drop_ws(&self) {
        self.ws.drop_all();
    }

    /// Open subscriptions over all connections.
    pub fn subscriptions(&self) -> usize {
        self.ws.subscriptions()
    }

    fn notify(&self, kind: &str, result: &Value) {
        if kind == PENDING && self.hashes_only.load(Ordering::SeqCst) {
            self.ws.notify(kind, &result.get("hash").cloned().unwrap_or(Value::Null));
        } else {
            self.ws.notify(kind, result);
        }
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
        self.with(|s| match s.chain.last() {
            Some(b) if b.head == s.head => header_json(b),
            _ => header_json(&MockBlock {
                head: s.head,
                hash: block_hash(s.head.number, 0),
                parent: block_hash(s.head.number.saturating_sub(1), 0),
                txs: Vec::new(),
            }),
        })
    }

    fn block_by_hash(&self, call: &Call) -> Value {
        let params: (B256, bool) = match call.parse_params() {
            Ok(p) => p,
            Err(_) => return Value::Null,
        };
        self.with(|s| {
            let Some(b) = s.chain.iter().find(|b| b.hash == params.0) else {
                return Value::Null;
            };
            let mut v = header_json(b);
            v["transactions"] = b.txs.iter().map(|t| t.to_json(s.chain_id)).collect();
            v
        })
    }
}

fn header_json(b: &MockBlock) -> Value {
    let h = b.head;
    json!({
        "number": format!("{:#x}", h.number),
        "hash": b.hash,
        "parentHash": b.parent,
        "timestamp": format!("{:#x}", h.timestamp),
        "gasLimit": format!("{:#x}", h.gas_limit),
        "gasUsed": "0x0",
        "baseFeePerGas": format!("{:#x}", h.base_fee),
        "transactions": [],
    })
}

/// Serves `el` on `127.0.0.1:0`: HTTP JSON-RPC (`POST /`) and WebSocket (`GET /`) on one port,
/// as op-geth can. The WebSocket URL is `ws://{peer.addr}/`.
pub async fn spawn_el_pool(el: Arc<MockElPool>) -> std::io::Result<Peer> {
    super::spawn_ws_peer("el", el, "127.0.0.1:0").await
}

impl WsPeer for MockElPool {
    fn hub(&self) -> &WsHub {
        &self.ws
    }

    fn handler(&self) -> &dyn Handler {
        self
    }

    fn subscribe(&self, params: &[Value]) -> Result<String, RpcError> {
        if self.no_subscriptions.load(Ordering::SeqCst) {
            return Err(RpcError::method_not_found("eth_subscribe"));
        }
        el_subscription(params)
    }
}

/// How [`spawn_broken_ws`] breaks the WebSocket protocol once the client has subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokenFrame {
    /// A frame with a reserved opcode (0x3).
    ReservedOpcode,
    /// A text frame header announcing 100 bytes, 10 of them, then the connection closes.
    Truncated,
}

/// A WebSocket EL that accepts the connection and both `eth_subscribe` calls (answered like an
/// EL would), then writes `frame` as raw bytes on the socket: what a broken proxy or a crashing
/// node sends. Every connection gets the same. The WebSocket URL is `ws://{peer.addr}/`.
pub async fn spawn_broken_ws(frame: BrokenFrame) -> std::io::Result<Peer> {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                _ = token.cancelled() => return,
                a = listener.accept() => match a { Ok((tcp, _)) => tcp, Err(_) => continue },
            };
            let token = token.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
                for i in 0..2 {
                    let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) =
                        ws.next().await
                    else {
                        return;
                    };
                    let id = serde_json::from_str::<Value>(&t).ok().map(|v| v["id"].clone());
                    let reply = json!({"jsonrpc": "2.0", "id": id, "result": format!("0xb{i}")});
                    let text =
                        tokio_tungstenite::tungstenite::Message::Text(reply.to_string().into());
                    if ws.send(text).await.is_err() {
                        return;
                    }
                }
                let raw: &[u8] = match frame {
                    BrokenFrame::ReservedOpcode => &[0x83, 0x00],
                    BrokenFrame::Truncated => {
                        &[0x81, 100, b'{', b'"', b'j', b's', b'o', b'n', b'r', b'p', b'c', b'"']
                    }
                };
                let tcp = ws.get_mut();
                let _ = tcp.write_all(raw).await;
                let _ = tcp.flush().await;
                if frame == BrokenFrame::Truncated {
                    let _ = tcp.shutdown().await;
                } else {
                    // Keep the socket open: the client must give up on its own.
                    token.cancelled().await;
                }
            });
        }
    });
    Ok(Peer { addr, stop })
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
                "eth_getBlockByHash" => {
                    for _ in 0..2_000 {
                        if !self.hold_blocks.load(Ordering::SeqCst) {
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                    Ok(to_raw(&self.block_by_hash(&call)))
                }
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
