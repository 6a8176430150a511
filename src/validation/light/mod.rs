//! The light backend: recomputes every message from the source chain's own RPC (`eth_getLogs` of
//! one block, by hash) instead of trusting an index. It is the independent second opinion the
//! interop design asks for, and it needs no backfill: it can answer the moment it starts.
//!
//! Two parts: `chain_view` reads each source chain correctly (heads, canonical headers, block
//! logs, answers refused when they are not about what was asked, reorg detection) and `rules`
//! applies the protocol's rules to one message on that view. This module wires them to config
//! and to the [`Backend`] interface.

mod chain_view;
pub mod head_waits;
mod rules;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, BoxFuture};
use tokio::sync::broadcast;

pub use chain_view::{Chain, Header, ReorgEvent, REJECTED_ANSWER_REASONS};
pub use head_waits::{HeadAdvance, HeadTag};
use rules::Rules;

use super::{Backend, CheckRequest, Verdict};
use crate::config::{LightConfig, ValidationConfig};
use crate::interop::ChainId;
use crate::rpc::client::{http_client, RpcClient};

/// The light backend over every configured source chain.
pub struct LightBackend {
    chains: HashMap<ChainId, Arc<Chain>>,
    rules: Rules,
    reorgs: broadcast::Sender<ReorgEvent>,
    /// Heads that reached blocks checks wait on (see `head_waits.rs`).
    advances: broadcast::Sender<HeadAdvance>,
    /// Set once the reorg watch runs (see [`Self::watches`]); shared with every chain, whose
    /// headers by number are kept longer while it runs.
    watching: Arc<AtomicBool>,
}

impl LightBackend {
    /// Builds one client per endpoint and the caches from `[light]` (chain ids and URLs were
    /// parsed with the config, so nothing can fail); `None` when no chain is configured.
    pub fn from_config(light: &LightConfig, validation: &ValidationConfig) -> Option<Self> {
        if light.chains.is_empty() {
            return None;
        }
        let http = http_client(16);
        let (reorgs, _) = broadcast::channel(256);
        let (advances, _) = broadcast::channel(256);
        let watching = Arc::new(AtomicBool::new(false));
        let mut chains = HashMap::new();
        for c in &light.chains {
            let id = c.chain_id;
            let label = id.to_string();
            let mut endpoints = Vec::new();
            for (j, e) in c.endpoints.iter().enumerate() {
                let url = e.url.clone();
                let name =
                    if e.name.is_empty() { format!("chain-{label}-{j}") } else { e.name.clone() };
                endpoints.push(
                    RpcClient::new("chain", name, url, light.timeout_ms, http.clone())
                        .with_max_response_bytes(light.max_response_bytes),
                );
            }
            let chain = Chain::new(
                id,
                endpoints,
                c,
                light,
                reorgs.clone(),
                advances.clone(),
                watching.clone(),
            );
            chains.insert(id, Arc::new(chain));
        }
        Some(Self {
            chains,
            rules: Rules {
                window: validation.expiry_window_secs,
                allow_same_timestamp: validation.allow_same_timestamp,
            },
            reorgs,
            advances,
            watching,
        })
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
            c.set_timeout(timeout);
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

    /// Heads reaching blocks checks wait on, from now on. Sent by the reorg watch (which reads
    /// `safe` / `finalized` only while some block waits on them) and by checks reading a head.
    pub fn subscribe_head_advances(&self) -> broadcast::Receiver<HeadAdvance> {
        self.advances.subscribe()
    }

    /// Registers that a check waits for `chain`'s `tag` head to reach `block`; false when
    /// refused (unknown chain, head already seen past it, or the bound reached).
    pub fn wait_for_head(&self, chain: &ChainId, tag: HeadTag, block: u64) -> bool {
        self.chains.get(chain).is_some_and(|c| c.wait_for_head(tag, block))
    }

    /// Empties the block-log caches (admin flush).
    pub fn flush(&self) {
        for c in self.chains.values() {
            c.flush();
        }
    }
}

impl Backend for LightBackend {
    fn name(&self) -> &'static str {
        "light"
    }

    fn check<'a>(&'a self, req: &'a CheckRequest) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let all = join_all(req.messages.iter().map(|m| {
                self.rules.check_message(self.chains.get(&m.chain_id).map(|c| &**c), m, req)
            }))
            .await;
            rules::combine(&all, req)
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let heads = join_all(self.chains.values().map(|c| c.head("latest"))).await;
            heads.iter().all(Result::is_ok)
        })
    }
}
