//! Sections of the validation engine: policy, retry and caches; the indexed backend; the light
//! backend.

use serde::{Deserialize, Serialize};

use super::{check_positive, check_url, ConfigError};

/// How the two backends' verdicts combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Both must accept; any definitive reject rejects; a split verdict rejects and is counted.
    Both,
    /// One accept suffices.
    Either,
    /// Only the indexed supervisor.
    Indexed,
    /// Only the light backend.
    Light,
    /// Decide with `shadow_primary`, record the other's verdict for comparison.
    Shadow,
}

/// `[validation]`: the engine every role uses.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationConfig {
    /// How the backends combine.
    pub policy: PolicyMode,
    /// In `shadow` mode, which backend decides (`indexed` or `light`).
    pub shadow_primary: PolicyMode,
    /// Delay before re-testing a not-yet-known verdict, ms.
    pub retry_delay_ms: u64,
    /// Re-tests of a not-yet-known verdict.
    pub max_retries: u32,
    /// Checks waiting for a re-test at once; beyond that, not-yet-known is answered at once.
    pub max_waiting: usize,
    /// How long a definitive invalid verdict is cached, seconds.
    pub invalid_cache_ttl_secs: u64,
    /// How long a valid verdict is cached, seconds (also bounded by the descriptor window).
    pub valid_cache_ttl_secs: u64,
    /// Verdict cache capacity (entries).
    pub cache_capacity: u64,
    /// Accept messages executed at the same timestamp they were initiated (refused by default,
    /// as op-interop-filter and mid-2025 op-supervisor do).
    pub allow_same_timestamp: bool,
    /// Message expiry window, seconds.
    pub expiry_window_secs: u64,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            policy: PolicyMode::Both,
            shadow_primary: PolicyMode::Indexed,
            retry_delay_ms: 1_000,
            max_retries: 1,
            max_waiting: 1_000,
            invalid_cache_ttl_secs: 60,
            valid_cache_ttl_secs: 2,
            cache_capacity: 100_000,
            allow_same_timestamp: false,
            expiry_window_secs: crate::interop::MESSAGE_EXPIRY_WINDOW_SECS,
        }
    }
}

impl ValidationConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.shadow_primary, PolicyMode::Indexed | PolicyMode::Light) {
            return Err(ConfigError::invalid(
                "validation.shadow_primary",
                "must be \"indexed\" or \"light\"",
            ));
        }
        check_positive("validation.cache_capacity", self.cache_capacity)?;
        check_positive("validation.expiry_window_secs", self.expiry_window_secs)?;
        Ok(())
    }
}

/// The RPC namespace of `checkAccessList`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Namespace {
    /// `interop_checkAccessList` (current).
    Interop,
    /// `supervisor_checkAccessList` (op-supervisor, op-geth).
    Supervisor,
}

/// How several supervisor endpoints are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The first endpoint answers; the next ones only when it gives no answer.
    First,
    /// One accept suffices.
    Any,
    /// `quorum` definitive verdicts must agree.
    Quorum,
    /// Round robin over healthy endpoints.
    Health,
}

/// One named endpoint. The name labels metrics and logs; the URL never does.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Label for metrics and logs.
    pub name: String,
    /// JSON-RPC URL (may carry credentials; never logged).
    pub url: String,
}

/// `[supervisor]`: the indexed backend.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisorConfig {
    /// Endpoints (env `INTEROP_GATE_SUPERVISOR_URLS`).
    pub endpoints: Vec<EndpointConfig>,
    /// Method namespace.
    pub namespace: Namespace,
    /// How endpoints are combined.
    pub strategy: Strategy,
    /// Definitive verdicts needed with `strategy = "quorum"`.
    pub quorum: usize,
    /// Per-call timeout, ms.
    pub timeout_ms: u64,
    /// How long an endpoint stays marked unhealthy after a transport error or 5xx, ms.
    pub unhealthy_ms: u64,
    /// Largest answer body read from an endpoint, bytes; a larger one is no answer.
    pub max_response_bytes: usize,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            namespace: Namespace::Interop,
            strategy: Strategy::First,
            quorum: 2,
            timeout_ms: 2_000,
            unhealthy_ms: 10_000,
            // An answer is `null` or one error per check: 1000 checks of a revalidator batch
            // with long error messages stay well under 1 MiB.
            max_response_bytes: 4 * 1024 * 1024,
        }
    }
}

impl SupervisorConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (i, e) in self.endpoints.iter().enumerate() {
            check_url(&format!("supervisor.endpoints[{i}].url"), &e.url)?;
            if e.name.is_empty() {
                return Err(ConfigError::invalid(
                    format!("supervisor.endpoints[{i}].name"),
                    "must not be empty",
                ));
            }
        }
        if self.strategy == Strategy::Quorum
            && (self.quorum == 0 || self.quorum > self.endpoints.len().max(1))
        {
            return Err(ConfigError::invalid(
                "supervisor.quorum",
                "must be between 1 and the number of endpoints",
            ));
        }
        check_positive("supervisor.timeout_ms", self.timeout_ms)?;
        check_positive("supervisor.max_response_bytes", self.max_response_bytes as u64)?;
        Ok(())
    }
}

/// One source chain of the light backend.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChainRpcConfig {
    /// The chain id (decimal or 0x-hex string, or an integer).
    pub chain_id: toml::Value,
    /// RPC endpoints of that chain, tried in order (failover).
    pub endpoints: Vec<EndpointConfig>,
    /// When true, all endpoints are asked and must agree on block hash and logs.
    #[serde(default)]
    pub agreement: bool,
    /// When true, a block's logs come from `eth_getBlockReceipts`, checked against the header's
    /// `receiptsRoot`, and the header's hash is recomputed from its fields: a chain RPC that lies
    /// about logs is caught (no peer does this). Costs one receipts call per block instead of
    /// one `eth_getLogs`, and needs an RPC that serves `eth_getBlockReceipts`.
    #[serde(default)]
    pub verify_receipts: bool,
    /// The chain's interop fork time (unix seconds; the rollup config's `interop_time`). A
    /// message initiated in a block at or before the chain's activation block (the first block
    /// whose timestamp is at or after this time) is invalid. Absent: no activation rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interop_time: Option<u64>,
}

/// `[light]`: the light backend (recomputes messages from `eth_getLogs`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LightConfig {
    /// The dependency set: every source chain and its RPCs.
    pub chains: Vec<ChainRpcConfig>,
    /// Per-call timeout, ms.
    pub timeout_ms: u64,
    /// Block-logs cache capacity (blocks).
    pub block_cache_capacity: u64,
    /// How long chain heads (latest/safe/finalized) are reused before re-fetching, ms.
    pub head_ttl_ms: u64,
    /// Every this many ms, read each chain's head and walk back over new or replaced blocks, so
    /// a reorg drops cached valid verdicts even when nobody checks them. 0 disables the watch.
    pub reorg_watch_ms: u64,
    /// Largest answer body read from a chain RPC, bytes; a larger one is no answer.
    pub max_response_bytes: usize,
}

impl Default for LightConfig {
    fn default() -> Self {
        Self {
            chains: Vec::new(),
            timeout_ms: 2_000,
            block_cache_capacity: 10_000,
            head_ttl_ms: 1_000,
            // Half a 2 s block: a reorg is seen ~250 ms after it on average (one head read per
            // chain per tick).
            reorg_watch_ms: 500,
            // eth_getLogs of one block: a 30M-gas block holds at most ~80k minimal logs (~16 MiB
            // of JSON); twice that leaves room for big data fields.
            max_response_bytes: 32 * 1024 * 1024,
        }
    }
}

impl LightConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (i, c) in self.chains.iter().enumerate() {
            let key = format!("light.chains[{i}]");
            let ok = match &c.chain_id {
                toml::Value::Integer(n) => *n > 0,
                toml::Value::String(s) => crate::interop::types::parse_chain_id(s).is_ok(),
                _ => false,
            };
            if !ok {
                return Err(ConfigError::invalid(
                    format!("{key}.chain_id"),
                    "must be a positive integer or a decimal/0x-hex string",
                ));
            }
            if c.endpoints.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.endpoints"),
                    "at least one endpoint is needed",
                ));
            }
            for (j, e) in c.endpoints.iter().enumerate() {
                check_url(&format!("{key}.endpoints[{j}].url"), &e.url)?;
            }
        }
        check_positive("light.timeout_ms", self.timeout_ms)?;
        check_positive("light.block_cache_capacity", self.block_cache_capacity)?;
        check_positive("light.max_response_bytes", self.max_response_bytes as u64)?;
        Ok(())
    }
}
