//! `[revalidator]`: the mempool revalidator (pool polling, presumed blocks, passes, EL-facing API).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use std::net::SocketAddr;

use url::Url;

use super::{check_nonzero, check_positive, check_url, ConfigError};
use crate::interop::SafetyLevel;

/// The least `txpool_content` JSON per pooled tx (measured ~490 bytes for a plain tx; interop
/// txs carry access lists): `el_max_response_bytes` must be at least `max_pool_txs` times this.
pub const TXPOOL_BYTES_PER_TX: u64 = 512;

/// `[revalidator]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RevalidatorConfig {
    /// Run the revalidator.
    pub enabled: bool,
    /// Address of its EL-facing JSON-RPC listener.
    pub listen: SocketAddr,
    /// The execution client whose pool is watched (env `INTEROP_GATE_REVALIDATOR_EL_URL`).
    pub el_url: Url,
    /// The EL's WebSocket (`ws://` or `wss://`), followed by deltas: `newPendingTransactions`
    /// (full tx objects) and `newHeads`. Empty: no mirror, every pass reads `txpool_content`
    /// whole. When the EL refuses the subscription, or the socket is down, passes fall back to
    /// that full read until it is back.
    #[serde(with = "super::empty_is_none")]
    pub el_ws_url: Option<Url>,
    /// Time between full `txpool_content` reads that repair the mirror's drift (evicted txs,
    /// txs a reorg put back, missed announcements), ms. Also done at once after a reorg of the
    /// executing chain and after every (re)subscription.
    #[serde(with = "super::serde_ms")]
    pub reconcile_interval_ms: Duration,
    /// Largest WebSocket message accepted from the EL, bytes; a larger one closes the socket
    /// (passes fall back to full reads until it reconnects).
    pub el_ws_max_message_bytes: usize,
    /// Wait before re-opening a lost or refused EL WebSocket, ms.
    #[serde(with = "super::serde_ms")]
    pub el_ws_reconnect_ms: Duration,
    /// Timeout of each call to the EL (`txpool_content`, `eth_getBlockByNumber`), ms. A big pool
    /// makes `txpool_content` slow, hence more than a check's timeout.
    #[serde(with = "super::serde_ms")]
    pub el_timeout_ms: Duration,
    /// Largest EL answer read, bytes; a larger `txpool_content` is no answer (the pass or the
    /// mirror's reconciliation is skipped, verdicts stand). Must be at least `max_pool_txs` x
    /// [`TXPOOL_BYTES_PER_TX`] (refused at start-up otherwise: a full pool could never be read).
    pub el_max_response_bytes: usize,
    /// Time between passes, ms: how stale a near block's verdict may get (one block time by
    /// default, so a tx is re-checked once per block it waits).
    #[serde(with = "super::serde_ms")]
    pub interval_ms: Duration,
    /// Time between full passes (every tracked tx, whatever its presumed block), ms.
    #[serde(with = "super::serde_ms")]
    pub full_interval_ms: Duration,
    /// Presumed blocks re-checked on every pass (the ones a builder is about to build).
    pub near_blocks: u32,
    /// The executing chain's block time, seconds: presumed block `i` is expected at
    /// `head.timestamp + (i + 1) * block_time_secs`.
    pub block_time_secs: u64,
    /// Gas kept out of every block for system transactions (the spec's margin): the effective
    /// gas limit is the head's gas limit minus this.
    pub system_gas_margin: u64,
    /// Minimum safety asked for every initiating message.
    pub min_safety: SafetyLevel,
    /// The executing (this) chain's id, sent as the descriptor's `chainID`; `None` (0 in TOML)
    /// omits it.
    #[serde(with = "zero_is_none")]
    pub chain_id: Option<u64>,
    /// Backend requests (one per presumed block) in flight at once.
    pub max_concurrent_requests: usize,
    /// Bound on one backend request, ms; when it expires the block's txs count as unanswered.
    #[serde(with = "super::serde_ms")]
    pub request_timeout_ms: Duration,
    /// Largest number of checks sent in one backend request; a presumed block with more is
    /// split, so a supervisor's batch limit is never exceeded.
    pub max_checks_per_request: usize,
    /// How long a tx may stay "not yet known" (a backend says its messages do not exist yet)
    /// before it is published as invalid, seconds, counted from when it was first seen or last
    /// valid. No answer at all (backends down, garbage, timeouts) never publishes a tx: an EL
    /// must not drop valid txs because a peer is broken.
    #[serde(with = "super::serde_secs")]
    pub max_unknown_secs: Duration,
    /// Largest number of interop txs tracked; beyond it new ones wait until others leave.
    pub max_tracked: usize,
    /// Largest number of pending txs read from one pool snapshot; the rest are skipped (counted).
    pub max_pool_txs: usize,
    /// Largest number of inbox entries per tx (proxyd's limit); above it the tx is invalid.
    pub max_inbox_entries: usize,
    /// Entries kept in the invalid-transactions feed; older ones are dropped (a poller whose
    /// cursor is older is told so).
    pub feed_capacity: usize,
    /// Largest number of feed entries returned by one `interop_invalidTransactions` call.
    pub feed_page_size: usize,
    /// Largest request body on the EL-facing listener, bytes.
    pub max_body_bytes: usize,
    /// Largest batch on the EL-facing listener.
    pub max_batch: usize,
    /// How long shutdown waits for in-flight API requests, ms.
    #[serde(with = "super::serde_ms")]
    pub shutdown_grace_ms: Duration,
    /// WebSocket connections (push feed subscribers) the listener accepts at once; more get
    /// HTTP 503 on the upgrade.
    pub push_max_connections: usize,
    /// Messages queued per WebSocket connection; a subscriber that falls this far behind is
    /// closed (1008) and resumes from its last cursor.
    pub push_send_queue: usize,
    /// Ping interval on WebSocket connections, ms; no pong by the next ping closes it.
    #[serde(with = "super::serde_ms")]
    pub push_ping_interval_ms: Duration,
    /// When a tx published as invalid is still in the EL's pool this many seconds later, answer
    /// `admin_getFailsafeEnabled` with true (op-reth then evicts every interop tx) until it is
    /// gone. 0 disables (default).
    #[serde(with = "super::serde_secs")]
    pub escalate_failsafe_after_secs: Duration,
}

impl Default for RevalidatorConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([0, 0, 0, 0], 8561)),
            el_url: Url::parse("http://127.0.0.1:9545").expect("a valid default URL"),
            el_ws_url: None,
            reconcile_interval_ms: Duration::from_millis(30_000),
            el_ws_max_message_bytes: 1 << 20,
            el_ws_reconnect_ms: Duration::from_millis(2_000),
            el_timeout_ms: Duration::from_millis(5_000),
            // txpool_content is ~490 bytes of JSON per plain tx (measured); interop txs carry
            // access lists. 1 KiB per tx of the 200k `max_pool_txs` cap, rounded up.
            el_max_response_bytes: 256 * 1024 * 1024,
            interval_ms: Duration::from_millis(2_000),
            full_interval_ms: Duration::from_millis(30_000),
            near_blocks: 4,
            block_time_secs: 2,
            system_gas_margin: 100_000,
            min_safety: SafetyLevel::CrossUnsafe,
            chain_id: Some(10),
            max_concurrent_requests: 8,
            request_timeout_ms: Duration::from_millis(5_000),
            max_checks_per_request: 1_000,
            max_unknown_secs: Duration::from_secs(60),
            max_tracked: 100_000,
            max_pool_txs: 200_000,
            max_inbox_entries: 1_000,
            feed_capacity: 10_000,
            feed_page_size: 1_000,
            max_body_bytes: 1 << 20,
            max_batch: 100,
            shutdown_grace_ms: Duration::from_millis(5_000),
            push_max_connections: 64,
            push_send_queue: 256,
            push_ping_interval_ms: Duration::from_millis(30_000),
            escalate_failsafe_after_secs: Duration::ZERO,
        }
    }
}

impl RevalidatorConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        check_url("revalidator.el_url", &self.el_url)?;
        if let Some(u) = &self.el_ws_url {
            if !matches!(u.scheme(), "ws" | "wss") {
                return Err(ConfigError::invalid(
                    "revalidator.el_ws_url",
                    "must be a ws:// or wss:// URL (or empty)",
                ));
            }
        }
        for (key, v) in [
            ("revalidator.el_ws_max_message_bytes", self.el_ws_max_message_bytes as u64),
            ("revalidator.el_max_response_bytes", self.el_max_response_bytes as u64),
            ("revalidator.block_time_secs", self.block_time_secs),
            ("revalidator.max_concurrent_requests", self.max_concurrent_requests as u64),
            ("revalidator.max_checks_per_request", self.max_checks_per_request as u64),
            ("revalidator.max_tracked", self.max_tracked as u64),
            ("revalidator.max_pool_txs", self.max_pool_txs as u64),
            ("revalidator.max_inbox_entries", self.max_inbox_entries as u64),
            ("revalidator.feed_capacity", self.feed_capacity as u64),
            ("revalidator.feed_page_size", self.feed_page_size as u64),
            ("revalidator.max_body_bytes", self.max_body_bytes as u64),
            ("revalidator.max_batch", self.max_batch as u64),
            ("revalidator.push_max_connections", self.push_max_connections as u64),
            ("revalidator.push_send_queue", self.push_send_queue as u64),
        ] {
            check_positive(key, v)?;
        }
        for (key, d) in [
            ("revalidator.reconcile_interval_ms", self.reconcile_interval_ms),
            ("revalidator.el_ws_reconnect_ms", self.el_ws_reconnect_ms),
            ("revalidator.el_timeout_ms", self.el_timeout_ms),
            ("revalidator.interval_ms", self.interval_ms),
            ("revalidator.full_interval_ms", self.full_interval_ms),
            ("revalidator.request_timeout_ms", self.request_timeout_ms),
            ("revalidator.max_unknown_secs", self.max_unknown_secs),
            ("revalidator.push_ping_interval_ms", self.push_ping_interval_ms),
        ] {
            check_nonzero(key, d)?;
        }
        // Every full read (passes without a live mirror, and the mirror's reconciliations) is
        // one `txpool_content` answer: one too small for a full pool fails every time.
        let floor = (self.max_pool_txs as u64).saturating_mul(TXPOOL_BYTES_PER_TX);
        if (self.el_max_response_bytes as u64) < floor {
            return Err(ConfigError::invalid(
                "revalidator.el_max_response_bytes",
                format!(
                    "{} bytes cannot hold a txpool_content of max_pool_txs = {} txs (~{} bytes \
                     of JSON each, so at least {floor} bytes): every full read of a full pool \
                     (reconciliations, passes without the mirror) would fail; raise it or lower \
                     max_pool_txs",
                    self.el_max_response_bytes, self.max_pool_txs, TXPOOL_BYTES_PER_TX
                ),
            ));
        }
        if self.full_interval_ms < self.interval_ms {
            return Err(ConfigError::invalid(
                "revalidator.full_interval_ms",
                "must be at least interval_ms",
            ));
        }
        if self.min_safety == SafetyLevel::Invalid {
            return Err(ConfigError::invalid(
                "revalidator.min_safety",
                "\"invalid\" cannot be a minimum safety level",
            ));
        }
        Ok(())
    }
}

/// `chain_id = 0` in TOML reads as `None` (no chain id sent) and `None` writes back as 0.
mod zero_is_none {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(v.unwrap_or(0))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Ok(Some(u64::deserialize(d)?).filter(|n| *n != 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_name_the_key() {
        let ok = RevalidatorConfig { enabled: true, ..Default::default() };
        assert!(ok.validate().is_ok());
        let bad = RevalidatorConfig { near_blocks: 0, interval_ms: Duration::ZERO, ..ok.clone() };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("revalidator.interval_ms"), "{err}");
        let bad = RevalidatorConfig { full_interval_ms: Duration::from_secs(1), ..ok.clone() };
        assert!(bad.validate().unwrap_err().to_string().contains("full_interval_ms"));
        let parsed: RevalidatorConfig =
            toml::from_str("enabled = true\nmin_safety = \"local-safe\"\nnear_blocks = 2").unwrap();
        assert_eq!(parsed.min_safety, SafetyLevel::LocalSafe);
        assert_eq!(parsed.near_blocks, 2);
        assert_eq!(parsed.interval_ms, Duration::from_secs(2));
        assert!(toml::from_str::<RevalidatorConfig>("nope = 1").is_err());
        assert_eq!(parsed.chain_id, Some(10));
        let no_id: RevalidatorConfig = toml::from_str("chain_id = 0").unwrap();
        assert_eq!(no_id.chain_id, None);
        // A pool cap whose full txpool_content cannot fit the answer bound is refused.
        let big = RevalidatorConfig { max_pool_txs: 1_000_000, ..ok.clone() };
        let err = big.validate().unwrap_err().to_string();
        assert!(err.contains("revalidator.el_max_response_bytes"), "{err}");
        assert!(err.contains("max_pool_txs = 1000000") && err.contains("512000000"), "{err}");
        let fits = RevalidatorConfig { el_max_response_bytes: 1 << 30, ..big };
        assert!(fits.validate().is_ok());
        assert_eq!(
            toml::to_string(&no_id).unwrap().lines().find(|l| l.starts_with("chain_id")),
            Some("chain_id = 0")
        );
    }
}
