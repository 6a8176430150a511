//! `[redis]`: the shared state store that lets replicas share rate limits and invalid verdicts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{check_nonzero, check_positive, ConfigError};

/// What a replica does while Redis cannot be reached (or answers too slowly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRedisError {
    /// Fall back to this replica's in-memory limiters and verdict cache (limits become per
    /// replica again until Redis is back).
    Local,
    /// Admit every call the rate limits would have decided (verdicts still come from the
    /// backends: nothing invalid is forwarded).
    Allow,
    /// Refuse every rate-limited call with -32011 (503) until Redis is back.
    Refuse,
}

impl OnRedisError {
    /// The config string, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Allow => "allow",
            Self::Refuse => "refuse",
        }
    }
}

/// `[redis]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` (env `INTEROP_GATE_REDIS_URL`). Absent: every
    /// limit and cache is in memory, per replica.
    pub url: Option<url::Url>,
    /// Bound on establishing a connection, ms.
    #[serde(with = "super::serde_ms")]
    pub connect_timeout_ms: Duration,
    /// Bound on one Redis command (round trip included), ms. A slower answer counts as an error.
    #[serde(with = "super::serde_ms")]
    pub timeout_ms: Duration,
    /// After an error, calls skip Redis (and take the `on_error` path) for this long, ms, then
    /// one call probes it again; so a dead Redis costs at most one timeout per period.
    #[serde(with = "super::serde_ms")]
    pub retry_ms: Duration,
    /// Prefix of every key written (several deployments can share one Redis).
    pub key_prefix: String,
    /// Multiplexed connections kept open; calls are spread over them round robin.
    pub pool_size: usize,
    /// What to do while Redis fails: `local`, `allow` or `refuse`.
    pub on_error: OnRedisError,
    /// Share definitive invalid verdicts between replicas (they keep `validation.invalid_cache_ttl_secs`).
    pub share_verdicts: bool,
    /// Largest batch of tokens a replica leases from one shared bucket per Redis call and then
    /// spends locally (see `crate::shared_state::lease`). 1 turns leases off: every decision is
    /// one Redis call and the shared limits are exact.
    pub lease_max_tokens: u32,
    /// A bucket's batch is at most this fraction of its burst (at least 1, at most
    /// `lease_max_tokens`): N replicas can leave at most N x 1.25 x this fraction of a burst
    /// unspent, and a bucket whose burst is below 1 / fraction is never leased.
    pub lease_burst_fraction: f64,
    /// Leased tokens not spent within this long are dropped (never returned to the bucket), ms.
    #[serde(with = "super::serde_ms")]
    pub lease_ms: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            connect_timeout_ms: Duration::from_millis(500),
            timeout_ms: Duration::from_millis(50),
            retry_ms: Duration::from_millis(1_000),
            key_prefix: "interop-gate:".into(),
            pool_size: 2,
            on_error: OnRedisError::Local,
            share_verdicts: true,
            lease_max_tokens: 256,
            lease_burst_fraction: 0.02,
            lease_ms: Duration::from_millis(1_000),
        }
    }
}

impl RedisConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(u) = &self.url {
            if !matches!(u.scheme(), "redis" | "redis+unix" | "unix") {
                return Err(ConfigError::invalid(
                    "redis.url",
                    format!("unsupported scheme {:?} (use redis:// or unix://)", u.scheme()),
                ));
            }
        }
        check_nonzero("redis.connect_timeout_ms", self.connect_timeout_ms)?;
        check_nonzero("redis.timeout_ms", self.timeout_ms)?;
        check_nonzero("redis.retry_ms", self.retry_ms)?;
        check_positive("redis.pool_size", self.pool_size as u64)?;
        if self.pool_size > 64 {
            return Err(ConfigError::invalid("redis.pool_size", "at most 64"));
        }
        if !(1..=1_000).contains(&self.lease_max_tokens) {
            return Err(ConfigError::invalid("redis.lease_max_tokens", "1 to 1000"));
        }
        if !(self.lease_burst_fraction > 0.0 && self.lease_burst_fraction <= 0.1) {
            return Err(ConfigError::invalid(
                "redis.lease_burst_fraction",
                "above 0 and at most 0.1 (replicas x fraction of a burst may go unspent)",
            ));
        }
        check_nonzero("redis.lease_ms", self.lease_ms)?;
        if self.lease_ms > Duration::from_secs(10) {
            return Err(ConfigError::invalid("redis.lease_ms", "at most 10000"));
        }
        if self.key_prefix.is_empty() {
            return Err(ConfigError::invalid("redis.key_prefix", "must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn redis_section_is_checked_and_names_the_key() {
        let ok = "[redis]\nurl = \"redis://127.0.0.1:6379/0\"\non_error = \"refuse\"\n";
        let cfg = Config::from_toml(ok, "x.toml").unwrap();
        assert_eq!(cfg.redis.on_error, super::OnRedisError::Refuse);
        for (text, key) in [
            ("[redis]\nurl = \"http://x:1\"\n", "redis.url"),
            // TLS is not supported (documented): refused, never silently plain TCP.
            ("[redis]\nurl = \"rediss://x:6380\"\n", "redis.url"),
            ("[redis]\ntimeout_ms = 0\n", "redis.timeout_ms"),
            ("[redis]\npool_size = 0\n", "redis.pool_size"),
            ("[redis]\nkey_prefix = \"\"\n", "redis.key_prefix"),
            ("[redis]\nlease_max_tokens = 0\n", "redis.lease_max_tokens"),
            ("[redis]\nlease_burst_fraction = 0.5\n", "redis.lease_burst_fraction"),
            ("[redis]\nlease_burst_fraction = 0.0\n", "redis.lease_burst_fraction"),
            ("[redis]\nlease_ms = 0\n", "redis.lease_ms"),
            ("[redis]\non_error = \"ignore\"\n", "ignore"),
            ("[ingress.api_keys]\n\"short\" = \"t\"\n", "ingress.api_keys"),
            ("[ingress.api_keys]\n\"long-enough-key-0001\" = \"none\"\n", "ingress.api_keys"),
            ("[ingress]\napi_key_header = \"x api\"\n", "ingress.api_key_header"),
        ] {
            let e = Config::from_toml(text, "x.toml").unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
            assert!(!e.contains("long-enough-key-0001"), "keys are secrets: {e}");
        }
    }
}
