//! The light-mode supervisor endpoint: `interop_checkAccessList` / `supervisor_checkAccessList`
//! answered from the light backend (`eth_getLogs` on the source chains), wire-compatible with
//! op-supervisor, so op-reth, op-geth, proxyd or our own ingress can use it as an independent
//! second implementation.
//!
//! Unlike op-interop-filter it needs no backfill (it reads the block a message names when asked),
//! serves `unsafe`, `safe` and `finalized`, and survives reorgs without a restart: canonical
//! hashes are re-read every `light.head_ttl_ms` and logs are cached by block hash, so an answer is
//! always computed from the current canonical chain; nothing stale is served after a reorg.
//! Failsafe on reorg is opt-in (`light_server.failsafe_on_reorg`).
//!
//! Method surface: op-interop-filter's public methods (`interop_checkAccessList`,
//! `interop_getBlockHashByNumber`, `admin_getFailsafeEnabled`) and their legacy `supervisor_`
//! names, plus `interop_syncStatus` and the message form (`checkMessages`). The failsafe switch is
//! on the admin listener (bearer token), where op-interop-filter puts it behind JWT.

pub mod block_selector;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use alloy_primitives::U256;
use futures::future::BoxFuture;
use serde_json::json;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::admin::FailsafeSwitch;
use crate::config::LightServerConfig;
use crate::interop::access_list::Bounds;
use crate::interop::types::parse_chain_id;
use crate::rpc::codes;
use crate::rpc::server::MethodTable;
use crate::rpc::server::{CallContext, Handler};
use crate::rpc::types::{to_raw, Call, RpcError};
use crate::validation::codec::{answer, decode_messages, decode_or_invalid_params, Decoded};
use crate::validation::light::LightBackend;
use crate::validation::{Backend, Rejection, Verdict};
use block_selector::BlockSelector;

/// The failsafe flag: when on, every check fails with -320602 and `admin_getFailsafeEnabled`
/// says true, so ELs polling it evict their interop txs.
#[derive(Debug, Default)]
pub struct Failsafe(AtomicBool);

impl FailsafeSwitch for Failsafe {
    fn enabled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn set_enabled(&self, on: bool) {
        let was = self.0.swap(on, Ordering::SeqCst);
        if was != on {
            tracing::warn!(failsafe = on, "light server failsafe changed");
        }
    }
}

/// The endpoint.
pub struct LightServer {
    light: Arc<LightBackend>,
    failsafe: Arc<Failsafe>,
    max_messages: usize,
}

impl LightServer {
    /// Serves `light` with `failsafe`, at most `max_messages` messages per check.
    pub fn new(light: Arc<LightBackend>, failsafe: Arc<Failsafe>, max_messages: usize) -> Self {
        Self { light, failsafe, max_messages }
    }

    /// The caps on a `checkAccessList` call: `max_messages` distinct messages, and at most the
    /// entries that many messages can take (lookup, extension, checksum), so an oversized list
    /// is refused before it is parsed.
    fn bounds(&self) -> Bounds {
        Bounds { max_entries: self.max_messages.saturating_mul(3), max_messages: self.max_messages }
    }

    /// One check, whichever form it came in: the same rules, the same answer encoding.
    async fn check(&self, d: Decoded) -> Result<Box<RawValue>, RpcError> {
        if d.request.messages.len() > self.max_messages {
            return Err(RpcError::invalid_params(format!(
                "{} distinct messages, the limit is {}",
                d.request.messages.len(),
                self.max_messages
            )));
        }
        if self.failsafe.enabled() {
            return answer(&Verdict::Invalid(Rejection::new(
                codes::SUP_FAILSAFE,
                "failsafe is enabled",
            )));
        }
        answer(&self.light.check(&d.request).await)
    }

    fn chain_param(v: Option<&serde_json::Value>) -> Result<U256, RpcError> {
        match v {
            Some(serde_json::Value::String(s)) => {
                parse_chain_id(s).map_err(RpcError::invalid_params)
            }
            Some(serde_json::Value::Number(n)) => n
                .as_u64()
                .map(U256::from)
                .ok_or_else(|| RpcError::invalid_params("chain id must be a positive integer")),
            _ => Err(RpcError::invalid_params("expected a chain id as the first param")),
        }
    }

    /// `interop_getBlockHashByNumber(chainID, block)`: the canonical hash, read from the chain.
    /// A block the chain does not have is an error whose message contains "not found" (what
    /// op-interop-filter answers and its Go client maps to `NotFound`).
    async fn block_hash(&self, call: &Call) -> Result<Box<RawValue>, RpcError> {
        let params: Vec<serde_json::Value> = call.parse_params()?;
        let id = Self::chain_param(params.first())?;
        let chain = self.light.chain(&id).ok_or_else(|| {
            RpcError::new(
                codes::SUP_UNKNOWN_CHAIN,
                format!("chain {id}: unknown chain (not in the dependency set)"),
            )
        })?;
        let number = match BlockSelector::parse(params.get(1)).map_err(RpcError::invalid_params)? {
            BlockSelector::Latest => None,
            BlockSelector::Number(n) => Some(n),
        };
        match chain.block_hash(number).await {
            Ok(Some(h)) => Ok(to_raw(&h)),
            Ok(None) => Err(RpcError::new(
                codes::SERVER_ERROR,
                format!("block {} for chain {id}: not found", number.unwrap_or_default()),
            )),
            Err(e) => Err(RpcError::internal(format!("chain {id}: {e}"))),
        }
    }

    async fn sync_status(&self) -> serde_json::Value {
        let mut chains = Vec::new();
        for c in self.light.chains() {
            let (l, s, f) = tokio::join!(c.head("latest"), c.head("safe"), c.head("finalized"));
            chains.push(json!({
                "chainId": c.id().to_string(),
                "serving": l.is_ok() && !self.failsafe.enabled(),
                "latest": l.as_ref().ok(),
                "safe": s.as_ref().ok(),
                "finalized": f.as_ref().ok(),
                "error": l.as_ref().err(),
            }));
        }
        chains.sort_by(|a, b| a["chainId"].as_str().cmp(&b["chainId"].as_str()));
        json!({ "failsafe": self.failsafe.enabled(), "chains": chains })
    }
}

/// What a light-server method does (several wire names share one).
#[derive(Debug, Clone, Copy)]
enum LightMethod {
    CheckAccessList,
    CheckMessages,
    GetFailsafeEnabled,
    BlockHashByNumber,
    SyncStatus,
}

/// The one table of the light server's methods (dispatch and metric labels): op-interop-filter's
/// `interop_` names and op-supervisor's `supervisor_` ones.
const LIGHT_METHODS: MethodTable<LightMethod> = MethodTable(&[
    ("interop_checkAccessList", LightMethod::CheckAccessList),
    ("supervisor_checkAccessList", LightMethod::CheckAccessList),
    ("supervisor_checkMessagesV2", LightMethod::CheckMessages),
    ("interop_checkMessages", LightMethod::CheckMessages),
    ("admin_getFailsafeEnabled", LightMethod::GetFailsafeEnabled),
    ("interop_getBlockHashByNumber", LightMethod::BlockHashByNumber),
    ("supervisor_getBlockHashByNumber", LightMethod::BlockHashByNumber),
    ("interop_syncStatus", LightMethod::SyncStatus),
]);

impl Handler for LightServer {
    fn call<'a>(
        &'a self,
        _ctx: &'a CallContext,
        call: Call,
    ) -> BoxFuture<'a, Result<Box<RawValue>, RpcError>> {
        Box::pin(async move {
            let Some(method) = LIGHT_METHODS.get(&call.method) else {
                return Err(RpcError::method_not_found(&call.method));
            };
            match method {
                LightMethod::CheckAccessList => {
                    self.check(decode_or_invalid_params(&call, self.bounds())?).await
                }
                LightMethod::CheckMessages => {
                    self.check(decode_messages(&call, self.max_messages)?).await
                }
                LightMethod::GetFailsafeEnabled => Ok(to_raw(&self.failsafe.enabled())),
                LightMethod::BlockHashByNumber => self.block_hash(&call).await,
                LightMethod::SyncStatus => Ok(to_raw(&self.sync_status().await)),
            }
        })
    }

    fn method_label(&self, method: &str) -> &'static str {
        LIGHT_METHODS.label(method)
    }
}

/// Watches the light backend's reorg events: logs them, and enters failsafe on one when
/// configured (op-interop-filter's behaviour, opt-in here).
pub fn watch_reorgs(
    cfg: &LightServerConfig,
    light: &LightBackend,
    failsafe: Arc<Failsafe>,
    shutdown: CancellationToken,
) {
    let mut rx = light.subscribe_reorgs();
    let on_reorg = cfg.failsafe_on_reorg;
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => return,
                ev = rx.recv() => ev,
            };
            match ev {
                Ok(ev) => {
                    tracing::warn!(chain = %ev.chain_id, number = ev.number, old = %ev.old, new = %ev.new, failsafe = on_reorg, "light server saw a reorg; answers now follow the new chain");
                    if on_reorg {
                        failsafe.set_enabled(true);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            }
        }
    });
}
