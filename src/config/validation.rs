//! Sections of the validation engine: policy, retry and caches; the indexed backend; the light
//! backend.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use url::Url;

use super::{check_nonzero, check_positive, check_url, ConfigError};
use crate::interop::types::ChainId;

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

/// In `shadow` mode, the backend whose verdict decides (the other one is only recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShadowPrimary {
    /// The indexed supervisor decides.
    Indexed,
    /// The light backend decides.
    Light,
}

/// `[validation]`: the engine every role uses.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationConfig {
    /// How the backends combine.
    pub policy: PolicyMode,
    /// In `shadow` mode, which backend decides (`indexed` or `light`).
    pub shadow_primary: ShadowPrimary,
    /// Delay before re-testing a not-yet-known verdict, ms.
    #[serde(with = "super::serde_ms")]
    pub retry_delay_ms: Duration,
    /// Re-tests of a not-yet-known verdict.
    pub max_retries: u32,
    /// Checks waiting for a re-test at once; beyond that, not-yet-known is answered at once.
    pub max_waiting: usize,
    /// How long a definitive invalid verdict is cached, seconds.
    #[serde(with = "super::serde_secs")]
    pub invalid_cache_ttl_secs: Duration,
    /// How long a valid verdict is cached, seconds, when the reorg watch does not cover every
    /// source chain of its messages (also bounded by the messages' expiry).
    #[serde(with = "super::serde_secs")]
    pub valid_cache_ttl_secs: Duration,
    /// How long a valid verdict is cached, seconds, when the reorg watch covers every source
    /// chain of its messages: a reorg drops it sooner, and it never outlives the messages'
    /// expiry (see `validation/cache.rs` for why that is safe).
    #[serde(with = "super::serde_secs")]
    pub valid_cache_watched_ttl_secs: Duration,
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
            shadow_primary: ShadowPrimary::Indexed,
            retry_delay_ms: Duration::from_millis(1_000),
            max_retries: 1,
            max_waiting: 1_000,
            invalid_cache_ttl_secs: Duration::from_secs(60),
            valid_cache_ttl_secs: Duration::from_secs(2),
            valid_cache_watched_ttl_secs: Duration::from_secs(3_600),
            cache_capacity: 100_000,
            allow_same_timestamp: false,
            expiry_window_secs: crate::interop::MESSAGE_EXPIRY_WINDOW_SECS,
        }
    }
}

impl ValidationConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
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
    pub url: Url,
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
    #[serde(with = "super::serde_ms")]
    pub timeout_ms: Duration,
    /// How long an endpoint stays marked unhealthy after a transport error or 5xx, ms.
    #[serde(with = "super::serde_ms")]
    pub unhealthy_ms: Duration,
    /// Largest answer body read from an endpoint, bytes; a larger one is no answer.
    pub max_response_bytes: usize,
    /// Most single checks sent together in one JSON-RPC batch (1: every check alone).
    pub batch_max_size: usize,
    /// Most batches of single checks in flight at once.
    pub batch_max_in_flight: usize,
    /// Most single checks waiting for a batch; a check beyond it gets no answer.
    pub batch_max_queued: usize,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            namespace: Namespace::Interop,
            strategy: Strategy::First,
            quorum: 2,
            timeout_ms: Duration::from_millis(2_000),
            unhealthy_ms: Duration::from_millis(10_000),
            // An answer is `null` or one error per check: 1000 checks of a revalidator batch
            // with long error messages stay well under 1 MiB.
            max_response_bytes: 4 * 1024 * 1024,
            // Concurrent single checks (the ingress's cold path) share one HTTP request: one
            // goes out at once when nothing is in flight, the ones that arrive meanwhile form
            // the next batch. 64 per batch keeps an answer small; the queue holds as many checks
            // as the ingress lets run at once (`ingress.max_in_flight`).
            batch_max_size: 64,
            batch_max_in_flight: 4,
            batch_max_queued: 1_024,
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
        check_nonzero("supervisor.timeout_ms", self.timeout_ms)?;
        check_positive("supervisor.max_response_bytes", self.max_response_bytes as u64)?;
        check_positive("supervisor.batch_max_size", self.batch_max_size as u64)?;
        check_positive("supervisor.batch_max_in_flight", self.batch_max_in_flight as u64)?;
        check_positive("supervisor.batch_max_queued", self.batch_max_queued as u64)?;
        Ok(())
    }
}

/// One source chain of the light backend.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChainRpcConfig {
    /// The chain id (decimal or 0x-hex string, or an integer).
    #[serde(with = "chain_id_int_or_string")]
    pub chain_id: ChainId,
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
    #[serde(with = "super::serde_ms")]
    pub timeout_ms: Duration,
    /// Block-logs cache capacity (blocks).
    pub block_cache_capacity: u64,
    /// How long chain heads (latest/safe/finalized) are reused before re-fetching, ms.
    #[serde(with = "super::serde_ms")]
    pub head_ttl_ms: Duration,
    /// Every this many ms, read each chain's head and walk back over new or replaced blocks, so
    /// a reorg drops cached valid verdicts even when nobody checks them. 0 disables the watch.
    #[serde(with = "super::serde_ms")]
    pub reorg_watch_ms: Duration,
    /// Largest answer body read from a chain RPC, bytes; a larger one is no answer.
    pub max_response_bytes: usize,
}

impl Default for LightConfig {
    fn default() -> Self {
        Self {
            chains: Vec::new(),
            timeout_ms: Duration::from_millis(2_000),
            block_cache_capacity: 10_000,
            head_ttl_ms: Duration::from_millis(1_000),
            // Half a 2 s block: a reorg is seen ~250 ms after it on average (one head read per
            // chain per tick).
            reorg_watch_ms: Duration::from_millis(500),
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
        check_nonzero("light.timeout_ms", self.timeout_ms)?;
        check_positive("light.block_cache_capacity", self.block_cache_capacity)?;
        check_positive("light.max_response_bytes", self.max_response_bytes as u64)?;
        Ok(())
    }
}

/// A chain id written as a TOML integer (`901`) or a decimal / `0x`-hex string (`"0x385"`, for
/// ids beyond `i64`). Written back as an integer when it fits, else as a decimal string.
mod chain_id_int_or_string {
    use serde::{de, Deserializer, Serializer};

    use crate::interop::types::{parse_chain_id, ChainId};

    const EXPECTED: &str = "a positive integer or a decimal/0x-hex string";

    pub fn serialize<S: Serializer>(v: &ChainId, s: S) -> Result<S::Ok, S::Error> {
        match i64::try_from(*v) {
            Ok(n) => s.serialize_i64(n),
            Err(_) => s.collect_str(v),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ChainId, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ChainId;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ChainId, E> {
                u64::try_from(n)
                    .ok()
                    .filter(|n| *n > 0)
                    .map(ChainId::from)
                    .ok_or_else(|| E::custom(format!("chain id {n}: must be {EXPECTED}")))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ChainId, E> {
                if n == 0 {
                    return Err(E::custom(format!("chain id 0: must be {EXPECTED}")));
                }
                Ok(ChainId::from(n))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ChainId, E> {
                parse_chain_id(s).map_err(|e| E::custom(format!("{e} (must be {EXPECTED})")))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use crate::interop::types::ChainId;

    #[test]
    fn light_chain_ids_read_as_integers_or_strings_and_bad_ones_name_the_key() {
        let chain = |id: &str| {
            format!("[[light.chains]]\nchain_id = {id}\nendpoints = [{{ name = \"a\", url = \"http://a:1\" }}]\n")
        };
        for (id, want) in [("901", 901u64), ("\"901\"", 901), ("\"0x385\"", 901)] {
            let cfg = Config::from_toml(&chain(id), "x.toml").unwrap();
            assert_eq!(cfg.light.chains[0].chain_id, ChainId::from(want), "{id}");
        }
        for id in ["0", "-1", "\"abc\"", "1.5"] {
            let e = Config::from_toml(&chain(id), "x.toml").unwrap_err().to_string();
            assert!(e.contains("`light.chains[0].chain_id`"), "{id}: {e}");
        }
        let e = Config::from_toml("[validation]\nshadow_primary = \"both\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("shadow_primary"), "{e}");
    }
}
