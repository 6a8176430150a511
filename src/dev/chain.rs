//! A simulated L2 chain RPC: blocks with timestamps, hashes and logs that serve as initiating
//! messages, `latest`/`safe`/`finalized` tags, reorgs on demand, and a pending pool fed by
//! `eth_sendRawTransaction` (emptied into the next block). It speaks the Ethereum JSON-RPC shapes
//! the light backend, the revalidator, the gateway's upstream client and a wallet (nonce, fees,
//! gas, tx and receipt; see [`super::wallet_rpc`]) read, over real HTTP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use alloy_eips::eip2930::{AccessList, AccessListItem};
use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use futures::future::BoxFuture;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::dev::el_pool::MockTx;
use crate::dev::wallet_rpc;
use crate::dev::ws_hub::{el_subscription, WsHub, WsPeer};
use crate::interop::tx::decode_tx;
use crate::interop::{Message, CROSS_L2_INBOX};
use crate::revalidator::pool::Fees;
use crate::rpc::server::{CallContext, Handler};
use crate::rpc::types::{to_raw, Call, RpcError};

/// One log of a simulated block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimLog {
    /// Emitting contract.
    pub address: Address,
    /// Topics.
    pub topics: Vec<B256>,
    /// Data.
    pub data: Bytes,
}

/// One simulated block.
#[derive(Debug, Clone)]
pub struct SimBlock {
    /// Height.
    pub number: u64,
    /// Hash (depends on the chain, height, timestamp and a reorg salt).
    pub hash: B256,
    /// Parent hash.
    pub parent: B256,
    /// Unix seconds.
    pub timestamp: u64,
    /// Logs, block-level indices in order.
    pub logs: Vec<SimLog>,
    /// Hashes of the txs it included.
    pub txs: Vec<B256>,
}

/// Subscription kinds served over WebSocket.
const PENDING: &str = "newPendingTransactions";
const HEADS: &str = "newHeads";

/// Raw txs kept for wallet queries (tx by hash, receipts); older ones are forgotten beyond this.
const MAX_KEPT_TXS: usize = 100_000;

#[derive(Default)]
struct State {
    blocks: Vec<SimBlock>,
    /// Pending txs with the head number they arrived at.
    pool: Vec<(Bytes, MockTx, u64)>,
    /// Blocks a tx waits in the pool before a block takes it (0: the next block takes all).
    pool_wait_blocks: u64,
    /// Every tx received (raw bytes and sender), by hash, for `eth_getTransactionByHash` and
    /// receipts; bounded by [`MAX_KEPT_TXS`].
    txs: HashMap<B256, (Bytes, Address)>,
    /// Next nonce per sender (highest received + 1), for `eth_getTransactionCount`.
    nonces: HashMap<Address, u64>,
    safe_depth: u64,
    finalized_depth: u64,
    salt: u64,
    /// When set, `eth_getLogs({blockHash})` answers with this block's logs instead (an RPC
    /// that ignores the `blockHash` filter, as some providers do).
    logs_of: Option<u64>,
}

/// The simulated chain.
pub struct SimChain {
    chain_id: u64,
    state: Mutex<State>,
    calls: Mutex<HashMap<String, u64>>,
    delay_ms: AtomicU64,
    block_time: u64,
    /// WebSocket subscribers (`newHeads`, `newPendingTransactions` with full objects).
    ws: WsHub,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn hex(n: u64) -> String {
    format!("{n:#x}")
}

impl SimChain {
    /// A chain with a genesis block at `genesis_ts`, blocks every `block_time` seconds when
    /// produced by [`SimChain::mine`].
    pub fn new(chain_id: u64, genesis_ts: u64, block_time: u64) -> Arc<Self> {
        let c = Arc::new(Self {
            chain_id,
            state: Mutex::new(State { safe_depth: 4, finalized_depth: 8, ..State::default() }),
            calls: Mutex::new(HashMap::new()),
            delay_ms: AtomicU64::new(0),
            block_time,
            ws: WsHub::default(),
        });
        c.push_block_at(genesis_ts, Vec::new());
        c
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// How far `safe` and `finalized` trail `latest`.
    pub fn set_depths(&self, safe: u64, finalized: u64) {
        let mut s = lock(&self.state);
        s.safe_depth = safe;
        s.finalized_depth = finalized;
    }

    /// Makes `eth_getLogs({blockHash})` answer with block `number`'s logs whatever hash is
    /// asked (`None`: honest again). The logs keep their true block fields, as a real RPC that
    /// ignores the filter sends them.
    pub fn set_logs_lie(&self, number: Option<u64>) {
        lock(&self.state).logs_of = number;
    }

    /// Delays every answer.
    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// Calls received for `method` (`eth_getBlockByNumber:safe`: with that block tag).
    pub fn calls(&self, method: &str) -> u64 {
        lock(&self.calls).get(method).copied().unwrap_or(0)
    }

    /// Every call received, by method.
    pub fn all_calls(&self) -> u64 {
        lock(&self.calls).iter().filter(|(m, _)| !m.contains(':')).map(|(_, n)| n).sum()
    }

    fn block_hash(&self, number: u64, timestamp: u64, salt: u64) -> B256 {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&self.chain_id.to_be_bytes());
        b[8..16].copy_from_slice(&number.to_be_bytes());
        b[16..24].copy_from_slice(&timestamp.to_be_bytes());
        b[24..].copy_from_slice(&salt.to_be_bytes());
        keccak256(b)
    }

    /// Makes pending txs wait `blocks` blocks before one takes them (a busy chain: the pool keeps
    /// txs across blocks, so a revalidator has something to watch).
    pub fn set_pool_wait(&self, blocks: u64) {
        lock(&self.state).pool_wait_blocks = blocks;
    }

    /// Appends a block at `timestamp` carrying `logs` (and the pending pool's due txs).
    pub fn push_block_at(&self, timestamp: u64, logs: Vec<SimLog>) -> SimBlock {
        let mut s = lock(&self.state);
        let (number, parent) = s.blocks.last().map_or((0, B256::ZERO), |b| (b.number + 1, b.hash));
        let hash = self.block_hash(number, timestamp, s.salt);
        let wait = s.pool_wait_blocks;
        let (due, kept): (Vec<_>, Vec<_>) =
            s.pool.drain(..).partition(|(_, _, arrived)| arrived + wait < number);
        s.pool = kept;
        let txs = due.into_iter().map(|(_, t, _)| t.hash).collect();
        let block = SimBlock { number, hash, parent, timestamp, logs, txs };
        s.blocks.push(block.clone());
        drop(s);
        self.announce_head(&block);
        block
    }

    /// Tells `newHeads` subscribers about `b` (a header: no transactions).
    fn announce_head(&self, b: &SimBlock) {
        if self.ws.has_subscribers(HEADS) {
            let mut header = self.block_json(b);
            if let Some(h) = header.as_object_mut() {
                h.remove("transactions");
                h.remove("uncles");
            }
            self.ws.notify(HEADS, &header);
        }
    }

    /// Appends a block one block time after the head (never in the past of `now`'s clock).
    pub fn push_block(&self, logs: Vec<SimLog>) -> SimBlock {
        let ts = self.head().timestamp + self.block_time;
        self.push_block_at(ts, logs)
    }

    /// The head block.
    pub fn head(&self) -> SimBlock {
        lock(&self.state).blocks.last().cloned().expect("genesis exists")
    }

    /// The block at `number`.
    pub fn block(&self, number: u64) -> Option<SimBlock> {
        lock(&self.state).blocks.get(number as usize).cloned()
    }

    /// The message a transaction must declare to execute log `index` of block `number`.
    pub fn message(&self, number: u64, index: usize) -> Option<Message> {
        let b = self.block(number)?;
        let l = b.logs.get(index)?;
        Some(Message::for_log(
            U256::from(self.chain_id),
            b.number,
            b.timestamp,
            index as u32,
            l.address,
            &l.topics,
            &l.data,
        ))
    }

    /// Replaces every block from `from` on with blocks of the same timestamps but without logs
    /// and with new hashes (the initiating messages in them are gone).
    pub fn reorg(&self, from: u64) {
        let mut s = lock(&self.state);
        s.salt += 1;
        let salt = s.salt;
        let keep = (from as usize).min(s.blocks.len());
        let old: Vec<SimBlock> = s.blocks.drain(keep..).collect();
        for b in old {
            let parent = s.blocks.last().map_or(B256::ZERO, |p| p.hash);
            let hash = self.block_hash(b.number, b.timestamp, salt);
            s.blocks.push(SimBlock { hash, parent, logs: Vec::new(), txs: Vec::new(), ..b });
        }
        let head = s.blocks.last().cloned();
        drop(s);
        // Subscribers see the new head, whose ancestry differs from the one they followed.
        if let Some(head) = head.filter(|h| h.number >= from) {
            self.announce_head(&head);
        }
    }

    /// Produces a block every `block_time` seconds with `logs_per_block` logs (for dev mode)
    /// until `stop` is cancelled. Blocks carry wall-clock timestamps.
    pub async fn mine(
        self: Arc<Self>,
        logs_per_block: usize,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(self.block_time.max(1)));
        tick.tick().await;
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let logs = (0..logs_per_block)
                .map(|i| {
                    n += 1;
                    SimLog {
                        address: Address::repeat_byte(0x42),
                        topics: vec![keccak256(b"Ping(uint256)"), B256::from(U256::from(n))],
                        data: Bytes::from(format!("message {n} ({i})").into_bytes()),
                    }
                })
                .collect();
            let now = crate::clock::unix_now();
            let ts = now.max(self.head().timestamp + 1);
            self.push_block_at(ts, logs);
        }
    }

    fn resolve(&self, tag: &Value) -> Result<Option<SimBlock>, RpcError> {
        let s = lock(&self.state);
        let head = s.blocks.len() as u64 - 1;
        let n = match tag.as_str() {
            Some("latest" | "pending") | None => head,
            Some("safe") => head.saturating_sub(s.safe_depth),
            Some("finalized") => head.saturating_sub(s.finalized_depth),
            Some("earliest") => 0,
            Some(h) => u64::from_str_radix(h.trim_start_matches("0x"), 16)
                .map_err(|_| RpcError::invalid_params(format!("bad block number {h}")))?,
        };
        Ok(s.blocks.get(n as usize).cloned())
    }

    fn block_json(&self, b: &SimBlock) -> Value {
        json!({
            "number": hex(b.number),
            "hash": b.hash,
            "parentHash": b.parent,
            "timestamp": hex(b.timestamp),
            "gasLimit": hex(30_000_000),
            "gasUsed": "0x0",
            "baseFeePerGas": "0x3b9aca00",
            "miner": Address::ZERO,
            "extraData": "0x",
            "transactions": b.txs,
            "uncles": [],
        })
    }

    /// The block, with full tx objects when `full` (as wallets ask when they look for a
    /// replacement of a tx they wait for).
    fn block_json_with(&self, b: &SimBlock, full: bool) -> Value {
        let mut v = self.block_json(b);
        if full {
            let txs: Vec<Value> = b
                .txs
                .iter()
                .filter_map(|h| {
                    let (raw, from, at) = self.kept_tx(h)?;
                    wallet_rpc::tx_json(&raw, from, at)
                })
                .collect();
            v["transactions"] = Value::from(txs);
        }
        v
    }

    fn logs_json(&self, b: &SimBlock, address: Option<Address>) -> Vec<Value> {
        b.logs
            .iter()
            .enumerate()
            .filter(|(_, l)| address.is_none_or(|a| a == l.address))
            .map(|(i, l)| {
                json!({
                    "address": l.address,
                    "topics": l.topics,
                    "data": l.data,
                    "blockNumber": hex(b.number),
                    "blockHash": b.hash,
                    "blockTimestamp": hex(b.timestamp),
                    "transactionHash": keccak256(b.hash.as_slice()),
                    "transactionIndex": "0x0",
                    "logIndex": hex(i as u64),
                    "removed": false,
                })
            })
            .collect()
    }

    fn get_logs(&self, filter: &Value) -> Result<Value, RpcError> {
        let address = filter.get("address").and_then(|a| serde_json::from_value(a.clone()).ok());
        if let Some(h) = filter.get("blockHash") {
            let h: B256 = serde_json::from_value(h.clone()).map_err(RpcError::invalid_params)?;
            let s = lock(&self.state);
            let found = match s.logs_of {
                Some(n) => s.blocks.iter().find(|b| b.number == n),
                None => s.blocks.iter().find(|b| b.hash == h),
            };
            let Some(b) = found.cloned() else {
                return Err(RpcError::new(-32000, "unknown block"));
            };
            drop(s);
            return Ok(Value::from(self.logs_json(&b, address)));
        }
        let from = self.resolve(filter.get("fromBlock").unwrap_or(&json!("latest")))?;
        let to = self.resolve(filter.get("toBlock").unwrap_or(&json!("latest")))?;
        let (Some(from), Some(to)) = (from, to) else { return Ok(json!([])) };
        let blocks: Vec<SimBlock> =
            (from.number..=to.number).take(10_000).filter_map(|n| self.block(n)).collect();
        Ok(Value::from(blocks.iter().flat_map(|b| self.logs_json(b, address)).collect::<Vec<_>>()))
    }

    fn send_raw(&self, raw: Bytes) -> Result<Value, RpcError> {
        let tx = decode_tx(&raw).map_err(|e| RpcError::new(-32000, e.to_string()))?;
        let sender = tx.sender().map_err(|e| RpcError::new(-32000, e.to_string()))?;
        let access_list = if tx.inbox_entries.is_empty() {
            AccessList::default()
        } else {
            AccessList(vec![AccessListItem {
                address: CROSS_L2_INBOX,
                storage_keys: tx.inbox_entries.clone(),
            }])
        };
        let mock = MockTx {
            hash: tx.hash,
            from: sender,
            nonce: tx.nonce,
            gas: tx.gas_limit,
            fees: Fees::Dynamic { max_fee: 2_000_000_000, max_priority_fee: 1_000_000_000 },
            access_list,
        };
        let mut s = lock(&self.state);
        if s.txs.len() < MAX_KEPT_TXS {
            s.txs.insert(tx.hash, (raw.clone(), sender));
        }
        let next = s.nonces.entry(sender).or_default();
        *next = (*next).max(tx.nonce + 1);
        let head = s.blocks.last().map_or(0, |b| b.number);
        let announced = self.ws.has_subscribers(PENDING).then(|| mock.to_json(self.chain_id));
        s.pool.push((raw, mock, head));
        drop(s);
        if let Some(tx) = announced {
            self.ws.notify(PENDING, &tx);
        }
        Ok(json!(tx.hash))
    }

    /// Raw transactions waiting in the pool.
    pub fn pending(&self) -> Vec<Bytes> {
        lock(&self.state).pool.iter().map(|(r, _, _)| r.clone()).collect()
    }

    fn txpool_content(&self) -> Value {
        let s = lock(&self.state);
        let mut pending = serde_json::Map::new();
        for (_, t, _) in &s.pool {
            let by_sender = pending
                .entry(format!("{:#x}", t.from))
                .or_insert_with(|| Value::Object(Default::default()));
            by_sender[t.nonce.to_string()] = t.to_json(self.chain_id);
        }
        json!({ "pending": pending, "queued": {} })
    }

    /// A received tx (raw, sender) and, when a canonical block includes it, where.
    fn kept_tx(&self, hash: &B256) -> Option<(Bytes, Address, Option<wallet_rpc::Inclusion>)> {
        let s = lock(&self.state);
        let (raw, from) = s.txs.get(hash).cloned()?;
        let at = s.blocks.iter().rev().find_map(|b| {
            let index = b.txs.iter().position(|t| t == hash)?;
            Some(wallet_rpc::Inclusion { number: b.number, hash: b.hash, index })
        });
        Some((raw, from, at))
    }

    fn answer(&self, call: &Call) -> Result<Value, RpcError> {
        let params: Vec<Value> =
            if call.params.is_some() { call.parse_params()? } else { Vec::new() };
        let p = |i: usize| params.get(i).cloned().unwrap_or(Value::Null);
        match call.method.as_str() {
            "eth_chainId" => Ok(json!(hex(self.chain_id))),
            "net_version" => Ok(json!(self.chain_id.to_string())),
            "eth_blockNumber" => Ok(json!(hex(self.head().number))),
            "eth_getBlockByNumber" => {
                let full = p(1).as_bool().unwrap_or(false);
                Ok(self.resolve(&p(0))?.map_or(Value::Null, |b| self.block_json_with(&b, full)))
            }
            "eth_getBlockByHash" => {
                let h: B256 = serde_json::from_value(p(0)).map_err(RpcError::invalid_params)?;
                let s = lock(&self.state);
                let b = s.blocks.iter().find(|b| b.hash == h).cloned();
                drop(s);
                let full = p(1).as_bool().unwrap_or(false);
                Ok(b.map_or(Value::Null, |b| self.block_json_with(&b, full)))
            }
            "eth_getLogs" => self.get_logs(&p(0)),
            "eth_sendRawTransaction" => {
                let raw: Bytes = serde_json::from_value(p(0)).map_err(RpcError::invalid_params)?;
                self.send_raw(raw)
            }
            "txpool_content" => Ok(self.txpool_content()),
            "eth_gasPrice" | "eth_maxPriorityFeePerGas" => Ok(json!("0x3b9aca00")),
            // What a wallet needs (nonce, fees, gas, the tx and its receipt): see wallet_rpc.
            "eth_getTransactionCount" => {
                let a: Address = serde_json::from_value(p(0)).map_err(RpcError::invalid_params)?;
                Ok(json!(hex(lock(&self.state).nonces.get(&a).copied().unwrap_or(0))))
            }
            "eth_estimateGas" => Ok(wallet_rpc::estimate_gas(&p(0))),
            "eth_feeHistory" => Ok(wallet_rpc::fee_history(&p(0), self.head().number, &p(2))),
            "eth_getTransactionByHash" => {
                let h: B256 = serde_json::from_value(p(0)).map_err(RpcError::invalid_params)?;
                Ok(self
                    .kept_tx(&h)
                    .and_then(|(raw, from, at)| wallet_rpc::tx_json(&raw, from, at))
                    .unwrap_or(Value::Null))
            }
            "eth_getTransactionReceipt" => {
                let h: B256 = serde_json::from_value(p(0)).map_err(RpcError::invalid_params)?;
                Ok(self
                    .kept_tx(&h)
                    .and_then(|(raw, from, at)| wallet_rpc::receipt_json(&raw, from, at?))
                    .unwrap_or(Value::Null))
            }
            "eth_getBalance" => Ok(json!(format!("{:#x}", wallet_rpc::BALANCE))),
            "eth_getCode" | "eth_call" => Ok(json!("0x")),
            "eth_getStorageAt" => Ok(json!(B256::ZERO)),
            "eth_syncing" => Ok(json!(false)),
            "web3_clientVersion" => Ok(json!("interop-gate-simchain")),
            other => Err(RpcError::method_not_found(other)),
        }
    }
}

impl WsPeer for SimChain {
    fn hub(&self) -> &WsHub {
        &self.ws
    }

    fn handler(&self) -> &dyn Handler {
        self
    }

    fn subscribe(&self, params: &[Value]) -> Result<String, RpcError> {
        el_subscription(params)
    }
}

impl Handler for SimChain {
    fn call<'a>(
        &'a self,
        _ctx: &'a CallContext,
        call: Call,
    ) -> BoxFuture<'a, Result<Box<RawValue>, RpcError>> {
        Box::pin(async move {
            {
                let mut calls = lock(&self.calls);
                *calls.entry(call.method.clone()).or_default() += 1;
                if call.method == "eth_getBlockByNumber" {
                    // Per block tag too (`eth_getBlockByNumber:safe`), for tests of what the
                    // gateway reads.
                    let tag = call
                        .parse_params::<Vec<Value>>()
                        .ok()
                        .and_then(|p| p.first().and_then(Value::as_str).map(str::to_owned));
                    if let Some(t) = tag.filter(|t| !t.starts_with("0x")) {
                        *calls.entry(format!("{}:{t}", call.method)).or_default() += 1;
                    }
                }
            }
            let delay = self.delay_ms.load(Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            self.answer(&call).map(|v| to_raw(&v))
        })
    }

    fn method_label(&self, _method: &str) -> &'static str {
        "any"
    }
}
