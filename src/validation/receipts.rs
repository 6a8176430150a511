//! Receipt verification for the light backend (`verify_receipts = true` per chain).
//!
//! Why: the light backend answers from the source chain's own RPC, and `eth_getLogs` is a claim,
//! not a proof. A chain RPC that lies about logs (drops, forges, or takes them from another
//! block) would turn into a false verdict. None of the peers we replace or sit beside
//! (op-interop-filter, op-supervisor, proxyd, op-geth, op-reth in their interop checks) verify
//! logs against the block header; this module does, so a lying RPC is caught and becomes
//! "no answer" for its chain instead of a verdict.
//!
//! What is checked, from two ordinary RPC answers about one block:
//! 1. the header (`eth_getBlockByHash(h, false)`) hashes to the `hash` it claims: its fields,
//!    including `receiptsRoot` and `timestamp`, are the ones the block hash commits to;
//! 2. the receipts (`eth_getBlockReceipts(h)`) rebuild the header's `receiptsRoot` (EIP-2718
//!    receipt encodings in the ordered receipts trie, via alloy and op-alloy): every status,
//!    gas figure, bloom, log address, topic and data byte, and the receipts' order and count,
//!    are the committed ones;
//! 3. every receipt and log says it belongs to this block (`blockHash`, `blockNumber`), a
//!    receipt's `transactionIndex` is its position, its logs carry its `transactionIndex` and
//!    `transactionHash`, no log is `removed`, and `logIndex` runs 0, 1, 2, ... across the whole
//!    block (the block-level index an interop identifier names).
//!
//! The block hash itself is the root of trust: the caller must get it from somewhere it trusts
//! (the canonical chain it follows). [`fetch_verified`] requires the header to be the asked one.
//!
//! Receipt types: legacy, EIP-2930, EIP-1559, EIP-4844, EIP-7702 (alloy) and the OP Stack deposit
//! receipt (type `0x7e`, with `depositNonce`/`depositReceiptVersion`, via op-alloy), which encodes
//! differently, and op-alloy's post-exec receipt (`0x7d`). Any other type is [`ReceiptsError::Malformed`], i.e. no answer, never a verdict.
//! A pre-Canyon deposit receipt (nonce without version) is committed without its nonce by
//! op-geth; it is not special-cased, so such a block fails the root check (no answer). Interop
//! messages only come from blocks after interop activation, long after Canyon.
//!
//! Pure: no I/O, no global state. The only network access is the injected call of
//! [`fetch_verified`]. Counts are bounded by [`Limits`]; the caller bounds the body size.

use std::future::Future;

use alloy_consensus::proofs::ordered_trie_root_encoded;
use alloy_consensus::ReceiptEnvelope;
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, Bytes, B256};
use alloy_rpc_types::{Header as RpcHeader, Log as RpcLog};
use op_alloy_consensus::OpReceiptEnvelope;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Default [`Limits::max_receipts`]: 50,000 receipts is a block of over 1 Ggas of plain
/// transfers (21,000 gas each), several times any OP Stack chain's gas limit today.
pub const DEFAULT_MAX_RECEIPTS: usize = 50_000;

/// Default [`Limits::max_logs`]: 200,000 logs is 75 Mgas of empty `LOG0`s (375 gas each); real
/// blocks carry a few thousand. A block above it is "no answer", never a verdict.
pub const DEFAULT_MAX_LOGS: usize = 200_000;

/// How much of an answer is read. Over a limit = [`ReceiptsError::TooMany`] (no answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most receipts accepted in one block.
    pub max_receipts: usize,
    /// Most logs accepted in one block (across all receipts).
    pub max_logs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_receipts: DEFAULT_MAX_RECEIPTS, max_logs: DEFAULT_MAX_LOGS }
    }
}

/// The header facts the verified hash commits to (the ones the light backend uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedHeader {
    /// Height.
    pub number: u64,
    /// Block hash, recomputed from the header fields.
    pub hash: B256,
    /// Parent hash.
    pub parent_hash: B256,
    /// Unix seconds.
    pub timestamp: u64,
    /// The receipts root the logs were verified against.
    pub receipts_root: B256,
}

/// One log of the block, as committed by the receipts root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLog {
    /// Emitting contract.
    pub address: Address,
    /// Topics, in order.
    pub topics: Vec<B256>,
    /// Data.
    pub data: Bytes,
    /// Block-level log index (position across all receipts' logs).
    pub log_index: u64,
    /// Position of the emitting transaction in the block (its key in the receipts trie).
    pub transaction_index: u64,
}

/// A block whose logs are proven by its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBlock {
    /// The header facts.
    pub header: VerifiedHeader,
    /// Every log of the block, in `log_index` order.
    pub logs: Vec<VerifiedLog>,
}

/// Why a block's answer was not accepted. Every variant means "no answer for this chain"; none
/// is a verdict about a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptsError {
    /// The injected RPC call failed (transport, timeout, JSON-RPC error, oversize body).
    #[error("rpc call failed: {0}")]
    Rpc(String),
    /// The node does not have the block (unknown hash, or reorged away between the calls).
    #[error("block {0} not found")]
    NotFound(B256),
    /// The answer is not the JSON it must be (includes unsupported receipt types).
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// More receipts or logs than [`Limits`] allow.
    #[error("too many {what}: more than {max}")]
    TooMany {
        /// `receipts` or `logs`.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// The header's fields do not hash to the hash it claims.
    #[error("header claims hash {claimed} but its fields hash to {computed}")]
    HeaderHashMismatch {
        /// The `hash` field.
        claimed: B256,
        /// Keccak of the RLP of the fields.
        computed: B256,
    },
    /// The header is a consistent header, but not of the asked block.
    #[error("asked for block {asked}, got block {got}")]
    WrongHeader {
        /// The asked hash.
        asked: B256,
        /// The verified hash of the answer.
        got: B256,
    },
    /// A receipt or log says it belongs to another block (or does not say).
    #[error("receipt {receipt}{}: {field} is not this block's", log.map(|l| format!(" log {l}")).unwrap_or_default())]
    NotInBlock {
        /// Position of the receipt.
        receipt: usize,
        /// Position of the log in that receipt, when a log is at fault.
        log: Option<usize>,
        /// The field that disagrees: `blockHash`, `blockNumber`, `blockTimestamp`,
        /// `transactionHash`.
        field: &'static str,
    },
    /// A receipt's (or its log's) `transactionIndex` is not its position in the block.
    #[error("receipt at position {position} claims transactionIndex {claimed:?}")]
    TransactionIndexMismatch {
        /// Position in the answer.
        position: usize,
        /// What it claims.
        claimed: Option<u64>,
    },
    /// A log's `logIndex` is not its block-level position.
    #[error("log at block position {position} claims logIndex {claimed:?}")]
    LogIndexMismatch {
        /// Block-level position.
        position: u64,
        /// What it claims.
        claimed: Option<u64>,
    },
    /// A log of a canonical block is marked `removed`.
    #[error("log {log_index} is marked removed")]
    RemovedLog {
        /// Its index.
        log_index: u64,
    },
    /// The receipts do not rebuild the header's receipts root.
    #[error("receipts root {computed} does not match the header's {header}")]
    ReceiptsRootMismatch {
        /// `receiptsRoot` of the verified header.
        header: B256,
        /// Root of the ordered trie of the receipts as answered.
        computed: B256,
    },
}

impl ReceiptsError {
    /// Metrics label (`reason` of a rejected-answer counter).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Rpc(_) => "rpc",
            Self::NotFound(_) => "not_found",
            Self::Malformed(_) => "malformed",
            Self::TooMany { .. } => "too_many",
            Self::HeaderHashMismatch { .. } => "header_hash",
            Self::WrongHeader { .. } => "wrong_header",
            Self::NotInBlock { .. } => "not_in_block",
            Self::TransactionIndexMismatch { .. } => "transaction_index",
            Self::LogIndexMismatch { .. } => "log_index",
            Self::RemovedLog { .. } => "removed_log",
            Self::ReceiptsRootMismatch { .. } => "receipts_root",
        }
    }

    /// True when the RPC answered, and the answer is inconsistent or not about the asked block
    /// (worth counting and logging with the endpoint name); false when there was no usable
    /// answer at all (the call failed, or the node does not have the block).
    pub fn is_rejected_answer(&self) -> bool {
        !matches!(self, Self::Rpc(_) | Self::NotFound(_))
    }
}

/// The fields of an `eth_getBlockReceipts` element this module reads besides the receipt
/// itself. Logs are kept raw here so they can be counted before they are parsed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReceiptMeta<'a> {
    #[serde(rename = "type", borrow)]
    ty: &'a str,
    #[serde(default)]
    block_hash: Option<B256>,
    #[serde(default, with = "alloy_serde::quantity::opt")]
    block_number: Option<u64>,
    #[serde(default, with = "alloy_serde::quantity::opt")]
    transaction_index: Option<u64>,
    #[serde(default)]
    transaction_hash: Option<B256>,
    #[serde(borrow)]
    logs: Vec<&'a RawValue>,
}

/// A receipt as consensus encodes it, with the RPC's log metadata still attached.
enum Envelope<L> {
    /// Ethereum types (needed for EIP-4844, which the OP envelope does not have).
    Eth(ReceiptEnvelope<L>),
    /// OP Stack types: legacy, 2930, 1559, 7702, post-exec (`0x7d`) and deposit (`0x7e`).
    Op(OpReceiptEnvelope<L>),
}

impl Envelope<RpcLog> {
    fn logs(&self) -> &[RpcLog] {
        match self {
            Self::Eth(r) => r.logs(),
            Self::Op(r) => r.logs(),
        }
    }

    /// The consensus receipt: logs without their RPC metadata.
    fn into_primitives(self) -> Envelope<alloy_primitives::Log> {
        match self {
            Self::Eth(r) => Envelope::Eth(r.map_logs(|l| l.inner)),
            Self::Op(r) => Envelope::Op(r.map_logs(|l| l.inner)),
        }
    }
}

impl Envelope<alloy_primitives::Log> {
    /// The EIP-2718 encoding the receipts trie commits to.
    fn encoded_2718(&self) -> Vec<u8> {
        match self {
            Self::Eth(r) => r.encoded_2718(),
            Self::Op(r) => r.encoded_2718(),
        }
    }

    fn into_logs(self) -> Vec<alloy_primitives::Log> {
        match self {
            Self::Eth(r) => r.into_logs(),
            Self::Op(r) => r.into_logs(),
        }
    }
}

/// Parses a receipt type (`"0x2"`, `"0x7E"`).
fn receipt_type(ty: &str) -> Option<u8> {
    let hex = ty.strip_prefix("0x").or_else(|| ty.strip_prefix("0X"))?;
    u8::from_str_radix(hex, 16).ok()
}

fn parse_envelope(raw: &RawValue, ty: u8) -> Result<Envelope<RpcLog>, String> {
    match ty {
        // Ethereum and OP encode types 0, 1, 2 and 4 identically; 3 only exists in alloy's.
        0x03 => serde_json::from_str(raw.get()).map(Envelope::Eth).map_err(|e| e.to_string()),
        0x00 | 0x01 | 0x02 | 0x04 | 0x7d | 0x7e => {
            serde_json::from_str(raw.get()).map(Envelope::Op).map_err(|e| e.to_string())
        }
        other => Err(format!("unsupported receipt type {other:#04x}")),
    }
}

/// Verifies the header hash, then the receipts against it, and returns the block's logs.
///
/// `header` is the JSON of `eth_getBlockByHash(h, false)` / `eth_getBlockByNumber(n, false)`
/// (a full block object; `transactions` and other extra fields are ignored); `receipts` is the
/// JSON of `eth_getBlockReceipts(h)`. It does not check which block was asked for: compare
/// [`VerifiedHeader::hash`] with the hash you trust, or use [`fetch_verified`].
pub fn verify_block(
    header: &RawValue,
    receipts: &RawValue,
    limits: &Limits,
) -> Result<VerifiedBlock, ReceiptsError> {
    let header = verify_header(header)?;
    let logs = verify_receipts(&header, receipts, limits)?;
    Ok(VerifiedBlock { header, logs })
}

/// Parses a header answer and checks that its fields hash to the hash it claims.
pub fn verify_header(header: &RawValue) -> Result<VerifiedHeader, ReceiptsError> {
    let h: RpcHeader = serde_json::from_str(header.get())
        .map_err(|e| ReceiptsError::Malformed(format!("header: {e}")))?;
    let computed = h.inner.hash_slow();
    if computed != h.hash {
        return Err(ReceiptsError::HeaderHashMismatch { claimed: h.hash, computed });
    }
    Ok(VerifiedHeader {
        number: h.inner.number,
        hash: computed,
        parent_hash: h.inner.parent_hash,
        timestamp: h.inner.timestamp,
        receipts_root: h.inner.receipts_root,
    })
}

/// Checks receipts against an already verified header and returns their logs with block-level
/// indices. Structural checks (block membership, positions, log indices) run first, so the
/// error names the field that lies when the RPC's metadata is inconsistent; the receipts root
/// then covers everything consensus commits to.
pub fn verify_receipts(
    header: &VerifiedHeader,
    receipts: &RawValue,
    limits: &Limits,
) -> Result<Vec<VerifiedLog>, ReceiptsError> {
    let raws: Vec<&RawValue> = serde_json::from_str(receipts.get())
        .map_err(|e| ReceiptsError::Malformed(format!("receipts: {e}")))?;
    if raws.len() > limits.max_receipts {
        return Err(ReceiptsError::TooMany { what: "receipts", max: limits.max_receipts });
    }
    let mut total_logs = 0usize;
    let mut encoded = Vec::with_capacity(raws.len());
    let mut per_receipt = Vec::with_capacity(raws.len());
    let mut next_log_index = 0u64;
    for (position, raw) in raws.iter().enumerate() {
        let meta: ReceiptMeta<'_> = serde_json::from_str(raw.get())
            .map_err(|e| ReceiptsError::Malformed(format!("receipt {position}: {e}")))?;
        total_logs = total_logs.saturating_add(meta.logs.len());
        if total_logs > limits.max_logs {
            return Err(ReceiptsError::TooMany { what: "logs", max: limits.max_logs });
        }
        let ty = receipt_type(meta.ty).ok_or_else(|| {
            ReceiptsError::Malformed(format!("receipt {position}: type {:?}", meta.ty))
        })?;
        check_receipt_meta(header, position, &meta)?;
        let envelope = parse_envelope(raw, ty)
            .map_err(|e| ReceiptsError::Malformed(format!("receipt {position}: {e}")))?;
        for (i, log) in envelope.logs().iter().enumerate() {
            check_log(header, position, i, &meta, next_log_index, log)?;
            next_log_index += 1;
        }
        let envelope = envelope.into_primitives();
        encoded.push(envelope.encoded_2718());
        per_receipt.push(envelope);
    }
    let computed = ordered_trie_root_encoded(&encoded);
    if computed != header.receipts_root {
        return Err(ReceiptsError::ReceiptsRootMismatch { header: header.receipts_root, computed });
    }
    let mut logs = Vec::with_capacity(total_logs);
    for (transaction_index, envelope) in per_receipt.into_iter().enumerate() {
        for log in envelope.into_logs() {
            let (topics, data) = log.data.split();
            logs.push(VerifiedLog {
                address: log.address,
                topics,
                data,
                log_index: logs.len() as u64,
                transaction_index: transaction_index as u64,
            });
        }
    }
    Ok(logs)
}

fn check_receipt_meta(
    header: &VerifiedHeader,
    position: usize,
    meta: &ReceiptMeta<'_>,
) -> Result<(), ReceiptsError> {
    let not_in_block = |field| ReceiptsError::NotInBlock { receipt: position, log: None, field };
    if meta.block_hash != Some(header.hash) {
        return Err(not_in_block("blockHash"));
    }
    if meta.block_number != Some(header.number) {
        return Err(not_in_block("blockNumber"));
    }
    if meta.transaction_index != Some(position as u64) {
        return Err(ReceiptsError::TransactionIndexMismatch {
            position,
            claimed: meta.transaction_index,
        });
    }
    if meta.transaction_hash.is_none() {
        return Err(not_in_block("transactionHash"));
    }
    Ok(())
}

fn check_log(
    header: &VerifiedHeader,
    receipt: usize,
    i: usize,
    meta: &ReceiptMeta<'_>,
    expected_index: u64,
    log: &RpcLog,
) -> Result<(), ReceiptsError> {
    let not_in_block = |field| ReceiptsError::NotInBlock { receipt, log: Some(i), field };
    if log.block_hash != Some(header.hash) {
        return Err(not_in_block("blockHash"));
    }
    if log.block_number != Some(header.number) {
        return Err(not_in_block("blockNumber"));
    }
    // Optional in the spec (newer nodes add it); when present it must be the header's.
    if log.block_timestamp.is_some_and(|t| t != header.timestamp) {
        return Err(not_in_block("blockTimestamp"));
    }
    if log.transaction_hash != meta.transaction_hash {
        return Err(not_in_block("transactionHash"));
    }
    if log.transaction_index != Some(receipt as u64) {
        return Err(ReceiptsError::TransactionIndexMismatch {
            position: receipt,
            claimed: log.transaction_index,
        });
    }
    if log.log_index != Some(expected_index) {
        return Err(ReceiptsError::LogIndexMismatch {
            position: expected_index,
            claimed: log.log_index,
        });
    }
    if log.removed {
        return Err(ReceiptsError::RemovedLog { log_index: expected_index });
    }
    Ok(())
}

/// Fetches the header and the receipts of `block_hash` (concurrently) through `call`, verifies
/// them, and requires the header to be the asked block.
///
/// `call(method, params)` makes one JSON-RPC call on the chain's endpoint and resolves with the
/// raw `result` (the light backend's client, with its body limit, timeout, metrics and span).
/// The two calls are `eth_getBlockByHash [hash, false]` and `eth_getBlockReceipts [hash]`.
/// `call` must hand a JSON `null` result through as `Ok` (the raw text `null`), which is
/// [`ReceiptsError::NotFound`]; `Err` is for no answer at all ([`ReceiptsError::Rpc`]).
#[tracing::instrument(name = "verify_receipts", skip_all, fields(block = %block_hash))]
pub async fn fetch_verified<F, Fut>(
    call: F,
    block_hash: B256,
    limits: &Limits,
) -> Result<VerifiedBlock, ReceiptsError>
where
    F: Fn(&'static str, serde_json::Value) -> Fut,
    Fut: Future<Output = Result<Box<RawValue>, String>>,
{
    let (header, receipts) = futures::future::join(
        call("eth_getBlockByHash", serde_json::json!([block_hash, false])),
        call("eth_getBlockReceipts", serde_json::json!([block_hash])),
    )
    .await;
    let header = header.map_err(ReceiptsError::Rpc)?;
    let receipts = receipts.map_err(ReceiptsError::Rpc)?;
    if header.get().trim() == "null" || receipts.get().trim() == "null" {
        return Err(ReceiptsError::NotFound(block_hash));
    }
    let verified = verify_header(&header)?;
    if verified.hash != block_hash {
        return Err(ReceiptsError::WrongHeader { asked: block_hash, got: verified.hash });
    }
    let logs = verify_receipts(&verified, &receipts, limits)?;
    Ok(VerifiedBlock { header: verified, logs })
}

#[cfg(test)]
mod tests {
    //! Real blocks from anvil (fixtures/receipts/, made by fixtures/gen/make-receipts.mjs), then
    //! one lie at a time.

    use super::*;
    use serde_json::{json, Value};

    const ETH_MIXED: &str = include_str!("../../fixtures/receipts/eth-mixed.json");
    const OP_DEPOSIT: &str = include_str!("../../fixtures/receipts/op-deposit.json");
    const ETH_EMPTY: &str = include_str!("../../fixtures/receipts/eth-empty.json");

    fn fixture(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn raw(v: &Value) -> Box<RawValue> {
        RawValue::from_string(v.to_string()).unwrap()
    }

    fn verify(f: &Value) -> Result<VerifiedBlock, ReceiptsError> {
        verify_block(&raw(&f["header"]), &raw(&f["receipts"]), &Limits::default())
    }

    fn quantity(v: &Value) -> u64 {
        u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    }

    /// The logs `eth_getLogs({blockHash})` returned, in the verified form.
    fn get_logs(f: &Value) -> Vec<VerifiedLog> {
        f["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| VerifiedLog {
                address: l["address"].as_str().unwrap().parse().unwrap(),
                topics: l["topics"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().parse().unwrap())
                    .collect(),
                data: l["data"].as_str().unwrap().parse().unwrap(),
                log_index: quantity(&l["logIndex"]),
                transaction_index: quantity(&l["transactionIndex"]),
            })
            .collect()
    }

    /// Recomputes the header's `hash` after a field was changed: a self-consistent forged header.
    fn reseal(header: &mut Value) {
        let h: RpcHeader = serde_json::from_value(header.clone()).unwrap();
        header["hash"] = json!(h.inner.hash_slow());
    }

    fn flip_last_hex_digit(v: &mut Value) {
        let s = v.as_str().unwrap();
        let last = s.chars().last().unwrap();
        let flipped = if last == '0' { '1' } else { '0' };
        *v = json!(format!("{}{flipped}", &s[..s.len() - 1]));
    }

    #[test]
    fn genuine_blocks_verify_and_yield_exactly_the_logs_eth_getlogs_returns() {
        for text in [ETH_MIXED, OP_DEPOSIT, ETH_EMPTY] {
            let f = fixture(text);
            let block = verify(&f).unwrap();
            assert_eq!(block.logs, get_logs(&f), "{}", f["description"]);
            let h = &f["header"];
            assert_eq!(block.header.number, quantity(&h["number"]));
            assert_eq!(block.header.timestamp, quantity(&h["timestamp"]));
            assert_eq!(block.header.hash, h["hash"].as_str().unwrap().parse::<B256>().unwrap());
            assert_eq!(
                block.header.parent_hash,
                h["parentHash"].as_str().unwrap().parse::<B256>().unwrap()
            );
        }
    }

    #[test]
    fn fixtures_cover_every_receipt_type_anvil_produces_and_a_reverted_tx() {
        let types = |f: &Value| -> Vec<String> {
            f["receipts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["type"].as_str().unwrap().to_lowercase())
                .collect()
        };
        let eth = fixture(ETH_MIXED);
        for ty in ["0x0", "0x1", "0x2", "0x4"] {
            assert!(types(&eth).iter().any(|t| t == ty), "missing type {ty}");
        }
        assert!(eth["receipts"].as_array().unwrap().iter().any(|r| r["status"] == "0x0"));
        let op = fixture(OP_DEPOSIT);
        assert!(types(&op).iter().any(|t| t == "0x7e"));
        assert_eq!(verify(&op).unwrap().logs.len(), 3);
        assert!(fixture(ETH_EMPTY)["receipts"].as_array().unwrap().is_empty());
    }

    fn assert_root_mismatch(f: &Value, what: &str) {
        match verify(f) {
            Err(ReceiptsError::ReceiptsRootMismatch { .. }) => {}
            other => panic!("{what}: expected ReceiptsRootMismatch, got {other:?}"),
        }
    }

    #[test]
    fn a_changed_log_data_byte_breaks_the_receipts_root() {
        let mut f = fixture(ETH_MIXED);
        flip_last_hex_digit(&mut f["receipts"][2]["logs"][1]["data"]);
        assert_root_mismatch(&f, "data");
    }

    #[test]
    fn a_changed_topic_breaks_the_receipts_root() {
        let mut f = fixture(ETH_MIXED);
        flip_last_hex_digit(&mut f["receipts"][0]["logs"][0]["topics"][1]);
        assert_root_mismatch(&f, "topic");
    }

    #[test]
    fn a_changed_log_address_breaks_the_receipts_root() {
        let mut f = fixture(ETH_MIXED);
        flip_last_hex_digit(&mut f["receipts"][1]["logs"][0]["address"]);
        assert_root_mismatch(&f, "address");
    }

    #[test]
    fn a_dropped_topic_breaks_the_receipts_root() {
        let mut f = fixture(ETH_MIXED);
        f["receipts"][1]["logs"][0]["topics"].as_array_mut().unwrap().pop();
        assert_root_mismatch(&f, "dropped topic");
    }

    #[test]
    fn a_changed_receipt_status_breaks_the_receipts_root() {
        let mut f = fixture(ETH_MIXED);
        // The reverted call (status 0) claimed successful.
        let reverted =
            f["receipts"].as_array().unwrap().iter().position(|r| r["status"] == "0x0").unwrap();
        f["receipts"][reverted]["status"] = json!("0x1");
        assert_root_mismatch(&f, "status");
    }

    #[test]
    fn a_changed_cumulative_gas_used_breaks_the_receipts_root() {
        let mut f = fixture(ETH_MIXED);
        let g = quantity(&f["receipts"][3]["cumulativeGasUsed"]);
        f["receipts"][3]["cumulativeGasUsed"] = json!(format!("{:#x}", g + 1));
        assert_root_mismatch(&f, "cumulativeGasUsed");
    }

    #[test]
    fn a_changed_receipt_type_breaks_the_receipts_root() {
        let mut f = fixture(ETH_MIXED);
        f["receipts"][2]["type"] = json!("0x1");
        assert_root_mismatch(&f, "type");
    }

    #[test]
    fn a_changed_logs_bloom_breaks_the_receipts_root() {
        let mut f = fixture(ETH_MIXED);
        flip_last_hex_digit(&mut f["receipts"][0]["logsBloom"]);
        assert_root_mismatch(&f, "logsBloom");
    }

    #[test]
    fn a_changed_deposit_nonce_or_missing_receipt_version_breaks_the_receipts_root() {
        let op = fixture(OP_DEPOSIT);
        let dep = op["receipts"]
            .as_array()
            .unwrap()
            .iter()
            .position(|r| r["type"].as_str().unwrap().eq_ignore_ascii_case("0x7e"))
            .unwrap();
        let mut f = op.clone();
        let n = quantity(&f["receipts"][dep]["depositNonce"]);
        f["receipts"][dep]["depositNonce"] = json!(format!("{:#x}", n + 1));
        assert_root_mismatch(&f, "depositNonce");
        let mut f = op.clone();
        f["receipts"][dep].as_object_mut().unwrap().remove("depositReceiptVersion");
        assert_root_mismatch(&f, "depositReceiptVersion");
        // A deposit receipt passed off as a user tx receipt (no deposit fields in the encoding).
        let mut f = op;
        f["receipts"][dep]["type"] = json!("0x2");
        assert_root_mismatch(&f, "deposit as 1559");
    }

    #[test]
    fn a_dropped_last_log_breaks_the_receipts_root() {
        let mut f = fixture(ETH_MIXED);
        f["receipts"][5]["logs"].as_array_mut().unwrap().pop();
        assert_root_mismatch(&f, "dropped last log");
    }

    #[test]
    fn a_dropped_middle_log_breaks_the_log_index_sequence() {
        let mut f = fixture(ETH_MIXED);
        f["receipts"][2]["logs"].as_array_mut().unwrap().remove(0);
        assert_eq!(
            verify(&f),
            Err(ReceiptsError::LogIndexMismatch { position: 3, claimed: Some(4) })
        );
    }

    #[test]
    fn a_dropped_middle_log_with_renumbered_indices_breaks_the_receipts_root() {
        let mut f = fixture(ETH_MIXED);
        f["receipts"][2]["logs"].as_array_mut().unwrap().remove(0);
        let mut next = 0;
        for r in f["receipts"].as_array_mut().unwrap() {
            for l in r["logs"].as_array_mut().unwrap() {
                l["logIndex"] = json!(format!("{next:#x}"));
                next += 1;
            }
        }
        assert_root_mismatch(&f, "renumbered");
    }

    #[test]
    fn a_wrong_log_index_is_detected() {
        let mut f = fixture(ETH_MIXED);
        f["receipts"][1]["logs"][0]["logIndex"] = json!("0x0");
        assert_eq!(
            verify(&f),
            Err(ReceiptsError::LogIndexMismatch { position: 2, claimed: Some(0) })
        );
    }

    #[test]
    fn a_log_from_another_block_is_not_in_this_block() {
        let mut f = fixture(ETH_MIXED);
        flip_last_hex_digit(&mut f["receipts"][2]["logs"][2]["blockHash"]);
        assert_eq!(
            verify(&f),
            Err(ReceiptsError::NotInBlock { receipt: 2, log: Some(2), field: "blockHash" })
        );
        let mut f = fixture(ETH_MIXED);
        f["receipts"][0]["logs"][1]["blockNumber"] = json!("0x1");
        assert_eq!(
            verify(&f),
            Err(ReceiptsError::NotInBlock { receipt: 0, log: Some(1), field: "blockNumber" })
        );
        let mut f = fixture(ETH_MIXED);
        f["receipts"][0]["logs"][0]["blockTimestamp"] = json!("0x1");
        assert_eq!(
            verify(&f),
            Err(ReceiptsError::NotInBlock { receipt: 0, log: Some(0), field: "blockTimestamp" })
        );
    }

    #[test]
    fn a_receipt_from_another_block_is_not_in_this_block() {
        let mut f = fixture(ETH_MIXED);
        flip_last_hex_digit(&mut f["receipts"][4]["blockHash"]);
        assert_eq!(
            verify(&f),
            Err(ReceiptsError::NotInBlock { receipt: 4, log: None, field: "blockHash" })
        );
        let mut f = fixture(ETH_MIXED);
        f["receipts"][0].as_object_mut().unwrap().remove("blockNumber");
        assert_eq!(
            verify(&f),
            Err(ReceiptsError::NotInBlock { receipt: 0, log: None, field: "blockNumber" })
        );
        // The receipts of one block offered for another block's header.
        let eth = fixture(ETH_MIXED);
        let op = fixture(OP_DEPOSIT);
        let r = verify_block(&raw(&op["header"]), &raw(&eth["receipts"]), &Limits::default());
        assert_eq!(r, Err(ReceiptsError::NotInBlock { receipt: 0, log: None, field: "blockHash" }));
    }

    #[test]
    fn a_removed_log_is_rejected() {
        let mut f = fixture(ETH_MIXED);
        f["receipts"][5]["logs"][0]["removed"] = json!(true);
        assert_eq!(verify(&f), Err(ReceiptsError::RemovedLog { log_index: 6 }));
    }

    #[test]
    fn reordered_receipts_are_detected() {
        let mut f = fixture(ETH_MIXED);
        f["receipts"].as_array_mut().unwrap().swap(0, 1);
        assert_eq!(
            verify(&f),
            Err(ReceiptsError::TransactionIndexMismatch { position: 0, claimed: Some(1) })
        );
        // Reordered with every index rewritten to match: only the root can tell.
        let mut next_log = 0;
        for (i, r) in f["receipts"].as_array_mut().unwrap().iter_mut().enumerate() {
            r["transactionIndex"] = json!(format!("{i:#x}"));
            for l in r["logs"].as_array_mut().unwrap() {
                l["transactionIndex"] = json!(format!("{i:#x}"));
                l["logIndex"] = json!(format!("{next_log:#x}"));
                next_log += 1;
            }
        }
        assert_root_mismatch(&f, "reordered");
    }

    #[test]
    fn a_dropped_receipt_breaks_the_receipts_root() {
        let mut f = fixture(ETH_MIXED);
        f["receipts"].as_array_mut().unwrap().pop();
        assert_root_mismatch(&f, "dropped receipt");
        let mut f = fixture(OP_DEPOSIT);
        f["receipts"] = json!([]);
        assert_root_mismatch(&f, "no receipts");
    }

    #[test]
    fn a_changed_header_field_breaks_the_header_hash() {
        for field in ["receiptsRoot", "timestamp", "number", "parentHash"] {
            let mut f = fixture(ETH_MIXED);
            flip_last_hex_digit(&mut f["header"][field]);
            match verify(&f) {
                Err(ReceiptsError::HeaderHashMismatch { claimed, computed }) => {
                    assert_ne!(claimed, computed, "{field}");
                }
                other => panic!("{field}: expected HeaderHashMismatch, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_self_consistent_forged_header_is_caught_by_the_root_or_by_the_asked_hash() {
        let f = fixture(ETH_MIXED);
        let mut forged = f.clone();
        flip_last_hex_digit(&mut forged["header"]["receiptsRoot"]);
        reseal(&mut forged["header"]);
        let forged_hash = forged["header"]["hash"].clone();
        // The receipts still name the genuine block.
        assert_eq!(
            verify(&forged),
            Err(ReceiptsError::NotInBlock { receipt: 0, log: None, field: "blockHash" })
        );
        // Receipts rewritten to name the forged block: they do not rebuild the forged root.
        for r in forged["receipts"].as_array_mut().unwrap() {
            r["blockHash"] = forged_hash.clone();
            for l in r["logs"].as_array_mut().unwrap() {
                l["blockHash"] = forged_hash.clone();
            }
        }
        assert_root_mismatch(&forged, "forged root");
        // Through fetch_verified, an RPC that answers the forged block whatever hash is asked
        // is caught before the receipts are read: it is not the asked block.
        let asked: B256 = f["header"]["hash"].as_str().unwrap().parse().unwrap();
        let any_hash = |method: &'static str, _: Value| {
            let v = if method == "eth_getBlockByHash" {
                &forged["header"]
            } else {
                &forged["receipts"]
            };
            futures::future::ready(Ok::<_, String>(raw(v)))
        };
        let r = block_on(fetch_verified(any_hash, asked, &Limits::default()));
        assert_eq!(
            r,
            Err(ReceiptsError::WrongHeader {
                asked,
                got: forged_hash.as_str().unwrap().parse().unwrap()
            })
        );
    }

    #[test]
    fn unsupported_or_garbage_answers_are_malformed_not_verdicts() {
        let mut f = fixture(ETH_MIXED);
        f["receipts"][3]["type"] = json!("0x5");
        match verify(&f) {
            Err(ReceiptsError::Malformed(m)) => {
                assert!(m.contains("unsupported receipt type 0x05"), "{m}")
            }
            other => panic!("expected Malformed, got {other:?}"),
        }
        let f = fixture(ETH_MIXED);
        for (header, receipts) in [
            (json!({}), f["receipts"].clone()),
            (json!([]), f["receipts"].clone()),
            (f["header"].clone(), json!({})),
            (f["header"].clone(), json!([{}])),
            (f["header"].clone(), json!([null])),
        ] {
            let r = verify_block(&raw(&header), &raw(&receipts), &Limits::default());
            assert!(matches!(r, Err(ReceiptsError::Malformed(_))), "{header} {receipts}: {r:?}");
        }
    }

    #[test]
    fn counts_over_the_limits_are_refused() {
        let f = fixture(ETH_MIXED);
        let tight = Limits { max_receipts: 5, ..Limits::default() };
        assert_eq!(
            verify_block(&raw(&f["header"]), &raw(&f["receipts"]), &tight),
            Err(ReceiptsError::TooMany { what: "receipts", max: 5 })
        );
        let tight = Limits { max_logs: 7, ..Limits::default() };
        assert_eq!(
            verify_block(&raw(&f["header"]), &raw(&f["receipts"]), &tight),
            Err(ReceiptsError::TooMany { what: "logs", max: 7 })
        );
        let exact = Limits { max_receipts: 6, max_logs: 8 };
        assert!(verify_block(&raw(&f["header"]), &raw(&f["receipts"]), &exact).is_ok());
    }

    /// A fake chain RPC answering from a fixture, recording what it was asked.
    fn serve(
        f: &Value,
    ) -> impl Fn(&'static str, Value) -> futures::future::Ready<Result<Box<RawValue>, String>> + '_
    {
        move |method, params| {
            let hash = &f["header"]["hash"];
            let result = match method {
                "eth_getBlockByHash" if params == json!([hash, false]) => f["header"].clone(),
                "eth_getBlockReceipts" if params == json!([hash]) => f["receipts"].clone(),
                "eth_getBlockByHash" | "eth_getBlockReceipts" => Value::Null,
                other => return futures::future::ready(Err(format!("unexpected {other}"))),
            };
            futures::future::ready(Ok(raw(&result)))
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn fetch_verified_asks_by_hash_and_verifies() {
        for text in [ETH_MIXED, OP_DEPOSIT, ETH_EMPTY] {
            let f = fixture(text);
            let hash: B256 = f["header"]["hash"].as_str().unwrap().parse().unwrap();
            let block = block_on(fetch_verified(serve(&f), hash, &Limits::default())).unwrap();
            assert_eq!(block.header.hash, hash);
            assert_eq!(block.logs, get_logs(&f));
        }
    }

    #[test]
    fn fetch_verified_reports_unknown_blocks_and_failed_calls_as_no_answer() {
        let f = fixture(ETH_MIXED);
        let other = B256::repeat_byte(7);
        let r = block_on(fetch_verified(serve(&f), other, &Limits::default()));
        assert_eq!(r, Err(ReceiptsError::NotFound(other)));
        assert!(!r.unwrap_err().is_rejected_answer());
        let failing = |_: &'static str, _: Value| {
            futures::future::ready(Err::<Box<RawValue>, _>("timeout".to_string()))
        };
        let r = block_on(fetch_verified(failing, other, &Limits::default()));
        assert_eq!(r, Err(ReceiptsError::Rpc("timeout".into())));
    }

    #[test]
    fn fetch_verified_rejects_receipts_of_another_block() {
        let eth = fixture(ETH_MIXED);
        let op = fixture(OP_DEPOSIT);
        let hash: B256 = eth["header"]["hash"].as_str().unwrap().parse().unwrap();
        // The header is genuine; the receipts answer is another block's.
        let lying = |method: &'static str, _: Value| {
            let v = if method == "eth_getBlockByHash" { &eth["header"] } else { &op["receipts"] };
            futures::future::ready(Ok::<_, String>(raw(v)))
        };
        let err = block_on(fetch_verified(lying, hash, &Limits::default())).unwrap_err();
        assert!(matches!(err, ReceiptsError::NotInBlock { field: "blockHash", .. }), "{err:?}");
        assert!(err.is_rejected_answer());
        assert_eq!(err.label(), "not_in_block");
    }
}
