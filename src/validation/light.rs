//! The light backend: recomputes every message from the source chain's own RPC (`eth_getLogs` of
//! one block, by hash) instead of trusting an index. It is the independent second opinion the
//! interop design asks for, and it needs no backfill: it can answer the moment it starts.
//!
//! Safety mapping (conservative, documented in the README): `unsafe` and `cross-unsafe` need the
//! block at or below `latest`; `local-safe` and `safe` at or below the `safe` tag; `finalized` at
//! or below `finalized`. A chain RPC cannot tell cross-unsafe from unsafe, so cross-unsafe is
//! answered from the canonical `latest` chain (what op-interop-filter does too).
//!
//! Reorgs: the canonical hash at a height is re-read (at most every `head_ttl_ms`); logs are
//! cached by block hash, so a replaced block is simply fetched anew and the old entry dropped.
//!
//! Trust: a chain RPC's answer counts only when it is about what was asked. A header fetched by
//! number must carry that number; every log of `eth_getLogs({blockHash})` must carry that block's
//! hash and number, in strictly increasing log-index order, none `removed`. An endpoint whose
//! answer fails that is skipped like one that did not answer (the next endpoint is asked), and
//! the refusal is counted (`chain_answers_rejected_total`) and logged with the endpoint's name:
//! an RPC that ignores the `blockHash` filter can no longer make a forged message valid.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, Bytes, B256, U256};
use futures::future::{join_all, BoxFuture};
use moka::future::Cache;
use serde::Deserialize;
use tokio::sync::broadcast;

use super::{Backend, CheckRequest, Rejection, Verdict};
use crate::config::{LightConfig, ValidationConfig};
use crate::interop::checksum::checksum;
use crate::interop::types::parse_chain_id;
use crate::interop::{ChainId, Message, SafetyLevel};
use crate::metrics::metrics;
use crate::rpc::client::{http_client, ClientError, RpcClient};
use crate::rpc::codes;

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
struct RpcLog {
    address: Address,
    topics: Vec<B256>,
    data: Bytes,
    #[serde(with = "alloy_serde::quantity")]
    log_index: u64,
    block_hash: B256,
    #[serde(with = "alloy_serde::quantity")]
    block_number: u64,
    #[serde(default)]
    removed: bool,
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

/// Why the light backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LightError {
    /// A chain entry is invalid.
    #[error("light.chains[{index}]: {reason}")]
    Chain {
        /// Position in `light.chains`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
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
    /// The interop activation rule (`interop_time`), see `activation.rs`.
    pub(super) activation: super::activation::Activation,
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

/// Blocks past the cached `latest` head a message may be in and still be looked up by number
/// (the head is up to `head_ttl_ms` old); beyond that, not yet known without a call.
const LATEST_MARGIN: u64 = 64;

/// Why a header could not be had.
#[derive(Debug, Clone)]
enum HeaderError {
    /// The chain has no block at that height (yet).
    Missing,
    /// No endpoint gave a usable answer.
    NoAnswer(String),
}

impl Chain {
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
                    Ok(Some(h)) => Ok(h),
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
        if let Some(old) = self.seen.get(&h.number) {
            if old != h.hash {
                metrics().reorgs.with_label_values(&[&self.label]).inc();
                tracing::warn!(chain = %self.label, number = h.number, old = %old, new = %h.hash, "reorg: canonical block replaced");
                // Every header read by number may be of the replaced branch (heights above the
                // fork point too): read them anew.
                self.by_number.invalidate_all();
                self.heads.invalidate_all();
                let logs = self.logs.clone();
                tokio::spawn(async move { logs.invalidate(&old).await });
                let _ = self.reorgs.send(ReorgEvent {
                    chain_id: self.id,
                    number: h.number,
                    old,
                    new: h.hash,
                });
            }
        }
        self.seen.insert(h.number, h.hash);
    }

    /// The logs of the block `header`: one `eth_getLogs` per block, shared by every
    /// concurrent and later check (coalesced by the cache). Only logs that all belong to that
    /// block (hash and number), in log-index order, are accepted.
    async fn block_logs(&self, header: &Header) -> Result<Arc<[RpcLog]>, String> {
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
        let limits = super::receipts::Limits::default();
        let mut last = String::from("no endpoint");
        for c in &self.endpoints {
            let call = |method: &'static str, params: serde_json::Value| async move {
                c.call_raw(method, &params).await.map_err(|e| e.to_string())
            };
            let proven = super::receipts::fetch_verified(call, header.hash, &limits).await;
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
    pub async fn watch_once(&self, depth: u64) {
        let Ok(Some(mut h)) = self.fetch_header(BlockAt::Tag("latest")).await else { return };
        self.heads.insert("latest", h).await;
        for _ in 0..depth {
            if self.seen.get(&h.number) == Some(h.hash) {
                self.walked.store(true, Ordering::SeqCst);
                return;
            }
            self.note_canonical(h);
            self.by_number.insert(h.number, h).await;
            if h.number == 0 {
                self.walked.store(true, Ordering::SeqCst);
                return;
            }
            if self.seen.get(&(h.number - 1)) == Some(h.parent_hash) {
                self.walked.store(true, Ordering::SeqCst);
                return;
            }
            match self.fetch_header(BlockAt::Number(h.number - 1)).await {
                Ok(Some(p)) => h = p,
                _ => return,
            }
        }
        if self.walked.swap(true, Ordering::SeqCst) {
            tracing::warn!(chain = %self.label, head = h.number, depth, "reorg watch: walked {depth} blocks without reaching a block seen before; treating it as a reorg");
            self.by_number.invalidate_all();
            self.heads.invalidate_all();
            let _ = self.reorgs.send(ReorgEvent {
                chain_id: self.id,
                number: h.number,
                old: B256::ZERO,
                new: h.hash,
            });
        }
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

/// The light backend over every configured source chain.
pub struct LightBackend {
    chains: HashMap<ChainId, Arc<Chain>>,
    window: u64,
    allow_same_timestamp: bool,
    reorgs: broadcast::Sender<ReorgEvent>,
    /// Set once the reorg watch runs (see [`Self::watches`]); shared with every chain.
    watching: Arc<AtomicBool>,
}

impl LightBackend {
    /// Builds one client per endpoint and the caches from `[light]`; `None` when no chain is
    /// configured.
    pub fn from_config(
        light: &LightConfig,
        validation: &ValidationConfig,
    ) -> Result<Option<Self>, LightError> {
        if light.chains.is_empty() {
            return Ok(None);
        }
        let http = http_client(16);
        let ttl = Duration::from_millis(light.head_ttl_ms.max(1));
        let (reorgs, _) = broadcast::channel(256);
        let watching = Arc::new(AtomicBool::new(false));
        let mut chains = HashMap::new();
        for (index, c) in light.chains.iter().enumerate() {
            let err = |reason: String| LightError::Chain { index, reason };
            let id = match &c.chain_id {
                toml::Value::Integer(n) => U256::from(*n as u64),
                toml::Value::String(s) => parse_chain_id(s).map_err(err)?,
                other => return Err(err(format!("bad chain_id {other}"))),
            };
            let label = id.to_string();
            let mut endpoints = Vec::new();
            for (j, e) in c.endpoints.iter().enumerate() {
                let url = reqwest::Url::parse(&e.url).map_err(|e| err(e.to_string()))?;
                let name =
                    if e.name.is_empty() { format!("chain-{label}-{j}") } else { e.name.clone() };
                endpoints.push(
                    RpcClient::new(
                        "chain",
                        name,
                        url,
                        Duration::from_millis(light.timeout_ms),
                        http.clone(),
                    )
                    .with_max_response_bytes(light.max_response_bytes),
                );
            }
            let chain = Chain {
                id,
                label,
                endpoints,
                agreement: c.agreement,
                verify_receipts: c.verify_receipts,
                heads: Cache::builder().max_capacity(8).time_to_live(ttl).build(),
                by_number: Cache::builder()
                    .max_capacity(100_000)
                    .expire_after(HeaderExpiry { watching: watching.clone(), short: ttl })
                    .build(),
                walked: AtomicBool::new(false),
                seen: moka::sync::Cache::builder()
                    .max_capacity(light.block_cache_capacity.saturating_mul(4))
                    .build(),
                logs: Cache::builder().max_capacity(light.block_cache_capacity).build(),
                reorgs: reorgs.clone(),
                activation: super::activation::Activation::new(c.interop_time),
            };
            chains.insert(id, Arc::new(chain));
        }
        Ok(Some(Self {
            chains,
            window: validation.expiry_window_secs,
            allow_same_timestamp: validation.allow_same_timestamp,
            reorgs,
            watching,
        }))
    }

    /// The configured chains.
    pub fn chains(&self) -> impl Iterator<Item = &Arc<Chain>> {
        self.chains.values()
    }

    /// One chain.
    pub fn chain(&self, id: &ChainId) -> Option<&Arc<Chain>> {
        self.chains.get(id)
    }

    /// Watches every chain for reorgs every `every` (walking back at most 64 blocks), so cached
    /// valid verdicts are dropped when their blocks are replaced even if nobody checks them.
    pub fn spawn_reorg_watch(
        self: &Arc<Self>,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        self.watching.store(true, Ordering::SeqCst);
        for chain in self.chains.values() {
            let (chain, stop) = (Arc::clone(chain), stop.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => chain.watch_once(64).await,
                    }
                }
            });
        }
    }

    /// Applies a new `light.timeout_ms` to the chain calls that start from now on (reload).
    pub fn set_timeout(&self, timeout: Duration) {
        for c in self.chains.values() {
            for e in &c.endpoints {
                e.set_timeout(timeout);
            }
        }
    }

    /// True when the reorg watch runs and covers `chain`: a replaced block of that chain is
    /// announced within the watch's period even if no check reads it (the verdict cache keeps
    /// valid verdicts on such chains longer).
    pub fn watches(&self, chain: &ChainId) -> bool {
        self.watching.load(Ordering::SeqCst) && self.chains.contains_key(chain)
    }

    /// Reorgs noticed from now on.
    pub fn subscribe_reorgs(&self) -> broadcast::Receiver<ReorgEvent> {
        self.reorgs.subscribe()
    }

    /// Empties the block-log caches (admin flush).
    pub fn flush(&self) {
        for c in self.chains.values() {
            c.logs.invalidate_all();
            c.by_number.invalidate_all();
            c.heads.invalidate_all();
        }
    }

    /// The timing rules of protocol.md, before any remote call.
    fn timing(&self, m: &Message, req: &CheckRequest) -> Option<Verdict> {
        let exec = req.descriptor.timestamp;
        let invalid = |why: String| {
            Some(Verdict::Invalid(Rejection::new(codes::SUP_CONFLICTING_DATA, why).for_message(*m)))
        };
        // Not yet executable rather than invalid: a second later it may be (the ingress uses
        // "now" as the executing timestamp), so it is retried, never cached as invalid.
        if m.timestamp > exec || (m.timestamp == exec && !self.allow_same_timestamp) {
            return Some(Verdict::NotYetKnown(
                Rejection::new(
                    codes::SUP_FUTURE_DATA,
                    format!(
                        "message {m} was initiated at {}, not before the executing timestamp {exec}",
                        m.timestamp
                    ),
                )
                .for_message(*m),
            ));
        }
        let expires = m.timestamp.saturating_add(self.window);
        if expires < exec {
            return invalid(format!("message {m} expired at {expires} (executing at {exec})"));
        }
        let end = req.descriptor.end().unwrap_or(u64::MAX);
        if expires < end {
            return invalid(format!(
                "message {m} expires at {expires}, before the end of the requested validity {end}"
            ));
        }
        None
    }

    async fn check_message(&self, m: &Message, req: &CheckRequest) -> Verdict {
        let Some(chain) = self.chains.get(&m.chain_id) else {
            return Verdict::Invalid(
                Rejection::new(
                    codes::SUP_UNKNOWN_CHAIN,
                    format!("chain {} is not in the dependency set", m.chain_id),
                )
                .for_message(*m),
            );
        };
        if let Some(v) = self.timing(m, req) {
            return v;
        }
        if let Some(v) = super::activation::check(chain, m).await {
            return v;
        }
        let no_answer = |e: String| Verdict::Unavailable(format!("chain {}: {e}", m.chain_id));
        let tag = match req.min_safety {
            SafetyLevel::Invalid | SafetyLevel::Unsafe | SafetyLevel::CrossUnsafe => "latest",
            SafetyLevel::LocalSafe | SafetyLevel::Safe => "safe",
            SafetyLevel::Finalized => "finalized",
        };
        let head = match chain.head(tag).await {
            Ok(h) => h,
            Err(e) => return no_answer(e),
        };
        // `latest`: a header the RPC returns by number is at or below its head, so the lookup
        // by number below answers alone (one call per block, shared) and a block newer than
        // the cached head is not refused for it; the head only screens out heights far beyond.
        let beyond = if tag == "latest" { LATEST_MARGIN } else { 0 };
        if m.block_number > head.number.saturating_add(beyond) {
            let latest = if tag == "latest" { Ok(head) } else { chain.head("latest").await };
            let above_latest = latest.map(|l| m.block_number > l.number).unwrap_or(true);
            let why = if above_latest || tag == "latest" {
                format!("message {m} is in a block after the chain head {}", head.number)
            } else {
                format!("message {m} is not {tag} yet ({tag} head is {})", head.number)
            };
            return Verdict::NotYetKnown(
                Rejection::new(codes::SUP_FUTURE_DATA, why).for_message(*m),
            );
        }
        let header = match chain.header(m.block_number).await {
            Ok(Some(h)) => h,
            Ok(None) => {
                return Verdict::NotYetKnown(
                    Rejection::new(
                        codes::SUP_FUTURE_DATA,
                        format!(
                            "block {} of chain {} is not available yet",
                            m.block_number, m.chain_id
                        ),
                    )
                    .for_message(*m),
                )
            }
            Err(e) => return no_answer(e),
        };
        let invalid = |why: String| {
            Verdict::Invalid(Rejection::new(codes::SUP_CONFLICTING_DATA, why).for_message(*m))
        };
        if header.timestamp != m.timestamp {
            return invalid(format!(
                "message {m}: block {} has timestamp {}, the message says {}",
                header.number, header.timestamp, m.timestamp
            ));
        }
        let logs = match chain.block_logs(&header).await {
            Ok(l) => l,
            Err(e) => return no_answer(e),
        };
        let Some(log) = logs.iter().find(|l| l.log_index == u64::from(m.log_index) && !l.removed)
        else {
            return invalid(format!(
                "message {m}: block {} has no log at index {} ({} logs)",
                header.number,
                m.log_index,
                logs.len()
            ));
        };
        let want = checksum(
            log.address,
            &log.topics,
            &log.data,
            m.block_number,
            m.timestamp,
            m.log_index,
            m.chain_id,
        );
        if want != m.checksum {
            return invalid(format!(
                "message {m}: checksum mismatch: the log at index {} (origin {}) does not match \
                 the declared origin and payload",
                m.log_index, log.address
            ));
        }
        Verdict::Valid { until: req.descriptor.end().unwrap_or(u64::MAX) }
    }
}

impl Backend for LightBackend {
    fn name(&self) -> &'static str {
        "light"
    }

    fn check<'a>(&'a self, req: &'a CheckRequest) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let all = join_all(req.messages.iter().map(|m| self.check_message(m, req))).await;
            // In message order: the first definitive invalid, else not-yet-known, else no answer.
            if let Some(v) = all.iter().find(|v| matches!(v, Verdict::Invalid(_))) {
                return v.clone();
            }
            if let Some(v) = all.iter().find(|v| matches!(v, Verdict::NotYetKnown(_))) {
                return v.clone();
            }
            if let Some(v) = all.iter().find(|v| matches!(v, Verdict::Unavailable(_))) {
                return v.clone();
            }
            Verdict::Valid { until: req.descriptor.end().unwrap_or(u64::MAX) }
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let heads = join_all(self.chains.values().map(|c| c.head("latest"))).await;
            heads.iter().all(Result::is_ok)
        })
    }
}
