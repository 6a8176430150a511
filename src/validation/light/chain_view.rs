//! The light backend's view of one source chain: its endpoints, its heads and canonical headers,
//! its block logs, and reorg detection. Everything here is about *reading the chain correctly*;
//! what a message needs to be valid is in `rules.rs`.
//!
//! Reorgs: logs are cached by block hash, so a replaced block is simply fetched anew and the old
//! entry dropped. Without the reorg watch the canonical hash at a height is re-read (at most
//! every `head_ttl_ms`); with it, a header by number is read once and kept until the watch sees
//! a replaced block (or a gap it cannot see across) and drops them all.
//!
//! Trust: a chain RPC's answer counts only when it is about what was asked. A header fetched by
//! number must carry that number; every log of `eth_getLogs({blockHash})` must carry that block's
//! hash and number, in strictly increasing log-index order, none `removed`. An endpoint whose
//! answer fails that is skipped like one that did not answer (the next endpoint is asked), and
//! the refusal is counted (`chain_answers_rejected_total`) and logged with the endpoint's name:
//! an RPC that ignores the `blockHash` filter can no longer make a forged message valid.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, Bytes, B256};
use futures::future::join_all;
use moka::future::Cache;
use serde::Deserialize;
use tokio::sync::broadcast;

use super::head_waits::{HeadAdvance, HeadTag, HeadWaits};
use crate::config::{ChainRpcConfig, LightConfig};
use crate::interop::ChainId;
use crate::metrics::metrics;
use crate::rpc::client::{ClientError, RpcClient};
use crate::validation::activation::Activation;

/// A block header as far as the light backend cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Header {
    /// Height.
    #[serde(with = "alloy_serde::quantity")]
    pub number: u64,
    /// Hash.
    pub hash: B256,
    /// Unix seconds.
    #[serde(with = "alloy_serde::quantity")]
    pub timestamp: u64,
    /// Parent hash (lets the reorg watch walk back from a new head).
    #[serde(rename = "parentHash", default)]
    pub parent_hash: B256,
}

/// One log as `eth_getLogs` returns it. The block fields are required: without them an answer
/// cannot show it is about the block asked for.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RpcLog {
    pub(super) address: Address,
    pub(super) topics: Vec<B256>,
    pub(super) data: Bytes,
    #[serde(with = "alloy_serde::quantity")]
    pub(super) log_index: u64,
    pub(super) block_hash: B256,
    #[serde(with = "alloy_serde::quantity")]
    pub(super) block_number: u64,
    #[serde(default)]
    pub(super) removed: bool,
}

/// Every `why` the light backend counts in `chain_answers_rejected_total` without receipts
/// (metrics create them at 0 at start-up).
pub const REJECTED_ANSWER_REASONS: [&str; 5] = [
    "log_of_other_block",
    "log_of_other_height",
    "removed_log",
    "log_index_order",
    "header_of_other_height",
];

/// Why a chain RPC's answer is not about the block that was asked for (`None`: it is).
fn logs_mismatch(logs: &[RpcLog], hash: B256, number: u64) -> Option<&'static str> {
    let mut last: Option<u64> = None;
    for l in logs {
        if l.block_hash != hash {
            return Some("log_of_other_block");
        }
        if l.block_number != number {
            return Some("log_of_other_height");
        }
        if l.removed {
            return Some("removed_log");
        }
        if last.is_some_and(|p| l.log_index <= p) {
            return Some("log_index_order");
        }
        last = Some(l.log_index);
    }
    None
}

/// Which block to read.
#[derive(Debug, Clone, Copy)]
enum BlockAt {
    /// `latest`, `safe` or `finalized`.
    Tag(&'static str),
    /// A height.
    Number(u64),
}

/// A reorg the backend noticed: the canonical hash at `number` changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReorgEvent {
    /// The chain.
    pub chain_id: ChainId,
    /// The height whose hash changed.
    pub number: u64,
    /// The hash it had.
    pub old: B256,
    /// The hash it has now.
    pub new: B256,
}

/// One source chain: its endpoints and its caches.
pub struct Chain {
    id: ChainId,
    label: String,
    endpoints: Vec<RpcClient>,
    agreement: bool,
    /// Logs come from receipts proven against the header (`verify_receipts`).
    verify_receipts: bool,
    /// `latest`/`safe`/`finalized` → header, briefly.
    heads: Cache<&'static str, Header>,
    /// Height → canonical header. Concurrent reads of one height share one call. Kept briefly
    /// (re-read to notice reorgs) unless the reorg watch runs: then until a reorg or a gap in
    /// the watch drops them all (see [`HeaderExpiry`]).
    by_number: Cache<u64, Header>,
    /// The watch has walked this chain once (a later walk that cannot reach a block it saw is
    /// a gap, see [`Chain::watch_once`]).
    walked: AtomicBool,
    /// Last canonical hash seen per height, to notice a change.
    seen: moka::sync::Cache<u64, B256>,
    /// Block hash → its logs (immutable for a given hash).
    logs: Cache<B256, Arc<[RpcLog]>>,
    reorgs: broadcast::Sender<ReorgEvent>,
    /// Blocks checks wait on to reach a head, and the heads last read (see `head_waits.rs`).
    waits: Mutex<HeadWaits>,
    advances: broadcast::Sender<HeadAdvance>,
    /// The interop activation rule (`interop_time`), see `activation.rs`.
    pub(in crate::validation) activation: Activation,
}

/// How long a canonical header by number is kept: `head_ttl_ms` without the reorg watch (it is
/// re-read to notice a reorg); with the watch, [`WATCHED_HEADER_TTL`]: the watch sees every
/// replaced block (or a gap it cannot see across) and drops them all, so a header is read once
/// per block instead of once per `head_ttl_ms`.
struct HeaderExpiry {
    watching: Arc<AtomicBool>,
    short: Duration,
}

/// The lifetime of a canonical header while the reorg watch runs (a bound, not the mechanism).
const WATCHED_HEADER_TTL: Duration = Duration::from_secs(3_600);

impl moka::Expiry<u64, Header> for HeaderExpiry {
    fn expire_after_create(&self, _: &u64, _: &Header, _: Instant) -> Option<Duration> {
        Some(if self.watching.load(Ordering::SeqCst) { WATCHED_HEADER_TTL } else { self.short })
    }

    fn expire_after_update(
        &self,
        k: &u64,
        h: &Header,
        at: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(k, h, at)
    }
}

/// Why a header could not be had.
#[derive(Debug, Clone)]
enum HeaderError {
    /// The chain has no block at that height (yet).
    Missing,
    /// No endpoint gave a usable answer.
    NoAnswer(String),
}

impl Chain {
    /// A chain with empty caches, from its `[[light.chains]]` entry. `light.head_ttl_ms` bounds
    /// how long a head or a height's canonical header is reused before it is re-read (the window
    /// in which a reorg can go unnoticed by a check); the block-log cache is keyed by hash, so
    /// it never serves a replaced block.
    pub(super) fn new(
        id: ChainId,
        endpoints: Vec<RpcClient>,
        entry: &ChainRpcConfig,
        light: &LightConfig,
        reorgs: broadcast::Sender<ReorgEvent>,
        advances: broadcast::Sender<HeadAdvance>,
        watching: Arc<AtomicBool>,
    ) -> Self {
        let ttl = light.head_ttl_ms.max(Duration::from_millis(1));
        let capacity = light.block_cache_capacity;
        Self {
            id,
            label: id.to_string(),
            endpoints,
            agreement: entry.agreement,
            verify_receipts: entry.verify_receipts,
            heads: Cache::builder().max_capacity(8).time_to_live(ttl).build(),
            by_number: Cache::builder()
                .max_capacity(100_000)
                .expire_after(HeaderExpiry { watching, short: ttl })
                .build(),
            walked: AtomicBool::new(false),
            seen: moka::sync::Cache::builder().max_capacity(capacity.saturating_mul(4)).build(),
            logs: Cache::builder().max_capacity(capacity).build(),
            reorgs,
            waits: Mutex::new(HeadWaits::default()),
            advances,
            activation: Activation::new(entry.interop_time),
        }
    }

    /// Applies a new timeout to the calls that start from now on (reload).
    pub(super) fn set_timeout(&self, timeout: Duration) {
        for e in &self.endpoints {
            e.set_timeout(timeout);
        }
    }

    /// Empties the caches (admin flush).
    pub(super) fn flush(&self) {
        self.logs.invalidate_all();
        self.by_number.invalidate_all();
        self.heads.invalidate_all();
    }

    /// Calls `method` on the endpoints in order until one gives an answer that `about` accepts
    /// (`about` returns why an answer is not about the question, or `None`); with `agreement`,
    /// every endpoint must give such an answer and they must be equal. The error says why there
    /// is no answer (never a URL).
    async fn call<R>(
        &self,
        method: &str,
        params: serde_json::Value,
        about: impl Fn(&R) -> Option<&'static str>,
    ) -> Result<R, String>
    where
        R: serde::de::DeserializeOwned + PartialEq,
    {
        let checked = |c: &RpcClient, r: Result<R, ClientError>| -> Result<R, String> {
            let r = r.map_err(|e| e.to_string())?;
            match about(&r) {
                None => Ok(r),
                Some(why) => {
                    metrics()
                        .chain_answers_rejected
                        .with_label_values(&[&self.label, c.name(), why])
                        .inc();
                    tracing::warn!(chain = %self.label, endpoint = %c.name(), method, why, "chain RPC answer is not about what was asked; ignored");
                    Err(format!("{}: {method} answer refused ({why})", c.name()))
                }
            }
        };
        if self.agreement && self.endpoints.len() > 1 {
            let params = &params;
            let answers = join_all(
                self.endpoints
                    .iter()
                    .map(|c| async move { checked(c, c.call::<_, R>(method, params).await) }),
            )
            .await
            .into_iter()
            .collect::<Result<Vec<R>, String>>()?;
            if answers.windows(2).any(|w| w[0] != w[1]) {
                metrics().disagreements.with_label_values(&["chain_endpoints"]).inc();
                return Err(format!("chain {} endpoints disagree", self.label));
            }
            return answers.into_iter().next().ok_or_else(|| "no endpoint".into());
        }
        let mut last = String::from("no endpoint");
        for c in &self.endpoints {
            match checked(c, c.call::<_, R>(method, &params).await) {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// A header by tag (`latest`, `safe`, `finalized`) or by number; one by number must carry
    /// that number.
    async fn fetch_header(&self, at: BlockAt) -> Result<Option<Header>, String> {
        let (tag, want) = match at {
            BlockAt::Tag(t) => (serde_json::Value::from(t), None),
            BlockAt::Number(n) => (format!("{n:#x}").into(), Some(n)),
        };
        self.call("eth_getBlockByNumber", serde_json::json!([tag, false]), |h: &Option<Header>| {
            match (h, want) {
                (Some(h), Some(n)) if h.number != n => Some("header_of_other_height"),
                _ => None,
            }
        })
        .await
    }

    /// The head for a tag (`latest`, `safe`, `finalized`).
    pub async fn head(&self, tag: &'static str) -> Result<Header, String> {
        self.heads
            .try_get_with(tag, async {
                match self.fetch_header(BlockAt::Tag(tag)).await {
                    Ok(Some(h)) => {
                        if let Some(t) = HeadTag::ALL.into_iter().find(|t| t.as_str() == tag) {
                            self.observe_head(t, &h);
                        }
                        Ok(h)
                    }
                    Ok(None) => Err(format!("chain {} has no {tag} block", self.label)),
                    Err(e) => Err(e),
                }
            })
            .await
            .map_err(|e| (*e).clone())
    }

    /// The canonical header at `number` (None above the head). Concurrent and repeated reads
    /// within `head_ttl_ms` share one call.
    pub async fn header(&self, number: u64) -> Result<Option<Header>, String> {
        let mut loaded = false;
        let r = self
            .by_number
            .try_get_with(number, async {
                loaded = true;
                match self.fetch_header(BlockAt::Number(number)).await {
                    Ok(Some(h)) => {
                        self.note_canonical(h);
                        Ok(h)
                    }
                    Ok(None) => Err(HeaderError::Missing),
                    Err(e) => Err(HeaderError::NoAnswer(e)),
                }
            })
            .await;
        metrics().cache.with_label_values(&["headers", if loaded { "miss" } else { "hit" }]).inc();
        match r {
            Ok(h) => Ok(Some(h)),
            Err(e) => match &*e {
                HeaderError::Missing => Ok(None),
                HeaderError::NoAnswer(why) => Err(why.clone()),
            },
        }
    }

    fn note_canonical(&self, h: Header) {
        if let Some(ev) = self.record_canonical(h) {
            let _ = self.reorgs.send(ev);
        }
    }

    /// Records `h` as the canonical block at its height. When it replaced another hash there,
    /// counts and logs the reorg, drops the caches that may hold the replaced branch, and
    /// returns the event for the caller to announce.
    fn record_canonical(&self, h: Header) -> Option<ReorgEvent> {
        let old = self.seen.get(&h.number).filter(|old| *old != h.hash);
        self.seen.insert(h.number, h.hash);
        let old = old?;
        metrics().reorgs.with_label_values(&[&self.label]).inc();
        tracing::warn!(chain = %self.label, number = h.number, old = %old, new = %h.hash, "reorg: canonical block replaced");
        // Every header read by number may be of the replaced branch (heights above the fork
        // point too): read them anew.
        self.by_number.invalidate_all();
        self.heads.invalidate_all();
        let logs = self.logs.clone();
        tokio::spawn(async move { logs.invalidate(&old).await });
        Some(ReorgEvent { chain_id: self.id, number: h.number, old, new: h.hash })
    }

    /// The logs of the block `header`: one `eth_getLogs` per block, shared by every
    /// concurrent and later check (coalesced by the cache). Only logs that all belong to that
    /// block (hash and number), in log-index order, are accepted.
    pub(super) async fn block_logs(&self, header: &Header) -> Result<Arc<[RpcLog]>, String> {
        let (hash, number) = (header.hash, header.number);
        let mut loaded = false;
        let r = self
            .logs
            .try_get_with(hash, async {
                loaded = true;
                if self.verify_receipts {
                    return self.proven_logs(header).await.map(Arc::from);
                }
                let logs: Vec<RpcLog> = self
                    .call(
                        "eth_getLogs",
                        serde_json::json!([{ "blockHash": hash }]),
                        |l: &Vec<RpcLog>| logs_mismatch(l, hash, number),
                    )
                    .await?;
                Ok::<_, String>(Arc::from(logs))
            })
            .await
            .map_err(|e| (*e).clone());
        let result = if loaded { "miss" } else { "hit" };
        metrics().cache.with_label_values(&["block_logs", result]).inc();
        r
    }

    /// `verify_receipts`: the block's logs from `eth_getBlockReceipts`, accepted only when the
    /// header's hash is recomputed from its fields, the receipts rebuild its `receiptsRoot`, and
    /// the proven header is the one the canonical lookup gave (hash, number, timestamp). An
    /// endpoint whose answer fails any of this is counted and skipped like a silent one.
    async fn proven_logs(&self, header: &Header) -> Result<Vec<RpcLog>, String> {
        let limits = crate::validation::receipts::Limits::default();
        let mut last = String::from("no endpoint");
        for c in &self.endpoints {
            let call = |method: &'static str, params: serde_json::Value| async move {
                c.call_raw(method, &params).await.map_err(|e| e.to_string())
            };
            let proven =
                crate::validation::receipts::fetch_verified(call, header.hash, &limits).await;
            let why = match proven {
                Ok(b)
                    if (b.header.number, b.header.timestamp)
                        == (header.number, header.timestamp) =>
                {
                    return Ok(b
                        .logs
                        .into_iter()
                        .map(|l| RpcLog {
                            address: l.address,
                            topics: l.topics,
                            data: l.data,
                            log_index: l.log_index,
                            block_hash: header.hash,
                            block_number: header.number,
                            removed: false,
                        })
                        .collect());
                }
                Ok(_) => "header_mismatch",
                Err(e) if e.is_rejected_answer() => e.label(),
                Err(e) => {
                    last = format!("{}: {e}", c.name());
                    continue;
                }
            };
            metrics().chain_answers_rejected.with_label_values(&[&self.label, c.name(), why]).inc();
            tracing::warn!(chain = %self.label, endpoint = %c.name(), why, block = %header.hash, "receipts do not prove the block's logs; answer ignored");
            last = format!("{}: receipts refused ({why})", c.name());
        }
        Err(last)
    }

    /// One round of the reorg watch: reads `latest` and walks back through headers not seen yet
    /// (or seen with another hash) until one matches what was seen, at most `depth` blocks.
    /// A replaced block is announced like one found by a check. Costs one call per tick plus
    /// one per new block beyond the first (a parent already seen with the hash the child names
    /// is not fetched). The `latest` it read serves the checks' `latest` too.
    ///
    /// A walk of `depth` blocks that reaches no block seen before (the chain could not be read
    /// for a while, or a reorg deeper than `depth`) cannot rule a reorg out: after the first
    /// walk it is announced as one (`old` zero), so valid verdicts and headers are re-read.
    ///
    /// Then the heads checks wait on (see [`Chain::wait_for_head`]): `latest` as just read, and
    /// `safe` / `finalized` read only while some block waits on them; a head that reached a
    /// waiting block is announced ([`HeadAdvance`]).
    pub async fn watch_once(&self, depth: u64) {
        let Ok(Some(latest)) = self.fetch_header(BlockAt::Tag("latest")).await else { return };
        self.heads.insert("latest", latest).await;
        if let Some(ev) = self.walk_back(latest, depth).await {
            let _ = self.reorgs.send(ev);
        }
        self.observe_head(HeadTag::Latest, &latest);
        for tag in [HeadTag::Safe, HeadTag::Finalized] {
            if !self.waits().is_waiting(tag) {
                continue;
            }
            if let Ok(Some(h)) = self.fetch_header(BlockAt::Tag(tag.as_str())).await {
                // Checks from now on judge by this head too.
                self.heads.insert(tag.as_str(), h).await;
                self.observe_head(tag, &h);
            }
        }
    }

    /// The reorg half of [`Chain::watch_once`], from the `latest` header `h` just read: the
    /// reorg to announce, if any. A walk over several replaced blocks announces one reorg, from
    /// the lowest of them (so one reorg re-checks each affected tx once).
    async fn walk_back(&self, mut h: Header, depth: u64) -> Option<ReorgEvent> {
        let mut lowest = None;
        for _ in 0..depth {
            if self.seen.get(&h.number) == Some(h.hash) {
                self.walked.store(true, Ordering::SeqCst);
                return lowest;
            }
            if let Some(ev) = self.record_canonical(h) {
                // Walking down: each replaced block found is lower than the last.
                lowest = Some(ev);
            }
            self.by_number.insert(h.number, h).await;
            if h.number == 0 {
                self.walked.store(true, Ordering::SeqCst);
                return lowest;
            }
            if self.seen.get(&(h.number - 1)) == Some(h.parent_hash) {
                self.walked.store(true, Ordering::SeqCst);
                return lowest;
            }
            match self.fetch_header(BlockAt::Number(h.number - 1)).await {
                Ok(Some(p)) => h = p,
                _ => return lowest,
            }
        }
        if self.walked.swap(true, Ordering::SeqCst) {
            tracing::warn!(chain = %self.label, head = h.number, depth, "reorg watch: walked {depth} blocks without reaching a block seen before; treating it as a reorg");
            self.by_number.invalidate_all();
            self.heads.invalidate_all();
            return Some(ReorgEvent {
                chain_id: self.id,
                number: h.number,
                old: B256::ZERO,
                new: h.hash,
            });
        }
        lowest
    }

    fn waits(&self) -> std::sync::MutexGuard<'_, HeadWaits> {
        self.waits.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers that a check waits for this chain's `tag` head to reach `block` (it answered
    /// "not yet known" for a message there). False when refused: that head was already seen at
    /// or past it, or too many blocks wait (see `head_waits.rs`).
    pub fn wait_for_head(&self, tag: HeadTag, block: u64) -> bool {
        self.waits().wait(tag, block)
    }

    /// Blocks waiting on `tag`.
    pub fn waiting_blocks(&self, tag: HeadTag) -> usize {
        self.waits().waiting(tag)
    }

    /// Notes the `tag` head read, and announces it when it reached waiting blocks.
    fn observe_head(&self, tag: HeadTag, h: &Header) {
        let Some(from) = self.waits().observe(tag, h.number) else { return };
        tracing::debug!(chain = %self.label, tag = tag.as_str(), from, to = h.number, "a head reached blocks checks wait on");
        let _ = self.advances.send(HeadAdvance { chain_id: self.id, tag, from, to: h.number });
    }

    /// The canonical hash for `latest` or a number (for `interop_getBlockHashByNumber`).
    pub async fn block_hash(&self, number: Option<u64>) -> Result<Option<B256>, String> {
        match number {
            None => self.head("latest").await.map(|h| Some(h.hash)),
            Some(n) => self.header(n).await.map(|h| h.map(|h| h.hash)),
        }
    }

    /// The chain id.
    pub fn id(&self) -> ChainId {
        self.id
    }
}
