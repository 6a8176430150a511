//! The light backend: recomputes every message from the source chain's own RPC (`eth_getLogs` of
//! one block, by hash) instead of trusting an index. It is the independent second opinion the
//! interop design asks for, and it needs no backfill: it can answer the moment it starts.
//!
//! Two parts: `chain_view` reads each source chain correctly (heads, canonical headers, block
//! logs, answers refused when they are not about what was asked, reorg detection) and `rules`
//! applies the protocol's rules to one message on that view. This module wires them to config
//! and to the [`Backend`] interface.

mod chain_view;
mod rules;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::U256;
use futures::future::{join_all, BoxFuture};
use tokio::sync::broadcast;

pub use chain_view::{Chain, Header, ReorgEvent, REJECTED_ANSWER_REASONS};
use rules::Rules;

use super::{Backend, CheckRequest, Verdict};
use crate::config::{LightConfig, ValidationConfig};
use crate::interop::types::parse_chain_id;
use crate::interop::ChainId;
use crate::rpc::client::{http_client, RpcClient};

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

/// The light backend over every configured source chain.
pub struct LightBackend {
    chains: HashMap<ChainId, Arc<Chain>>,
    rules: Rules,
    reorgs: broadcast::Sender<ReorgEvent>,
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
        let (reorgs, _) = broadcast::channel(256);
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
            let chain = Chain::new(id, endpoints, c, light, reorgs.clone());
            chains.insert(id, Arc::new(chain));
        }
        Ok(Some(Self {
            chains,
            rules: Rules {
                window: validation.expiry_window_secs,
                allow_same_timestamp: validation.allow_same_timestamp,
            },
            reorgs,
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

    /// Reorgs noticed from now on.
    pub fn subscribe_reorgs(&self) -> broadcast::Receiver<ReorgEvent> {
        self.reorgs.subscribe()
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
