//! Shared rate limits: GCRA (the algorithm governor uses locally, so burst and rate mean the same
//! thing in both) evaluated atomically in Redis by one Lua script over every bucket a decision
//! needs: one round trip per decision, whatever the number of buckets. The script is sent by its
//! SHA (`EVALSHA`); `redis::Script` loads it again when Redis answers `NOSCRIPT` (after a restart).
//!
//! Time is Redis's own `TIME`, so replicas with skewed clocks still share one timeline.

use std::sync::LazyLock;

use super::{SharedState, StoreError};
use crate::config::RateLimit;

/// Buckets are checked in order and consumed until one is exhausted (like the local limiter:
/// an exhausted method bucket still costs the caller a token of its IP bucket). The theoretical
/// arrival time (TAT) is stored in µs with `%.17g`, which round-trips a double exactly, and
/// expires once the bucket would be full again.
const GCRA_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  if tat - now > interval * (burst - 1) then
    return i
  end
  local new_tat = tat + interval
  redis.call('SET', key, string.format('%.17g', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
end
return 0
"#;

static GCRA: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(GCRA_LUA));

/// One bucket of a decision: its full Redis key and its limit (a non-zero rate).
#[derive(Debug, Clone)]
pub struct SharedBucket {
    /// The Redis key (prefixed).
    pub key: String,
    /// The limit.
    pub limit: RateLimit,
}

impl SharedState {
    /// Takes one token from each bucket in order. `Ok(None)` when every bucket admitted the
    /// call, `Ok(Some(i))` when bucket `i` (0-based) was exhausted (later ones are untouched).
    pub async fn take(&self, buckets: &[SharedBucket]) -> Result<Option<usize>, StoreError> {
        if buckets.is_empty() {
            return Ok(None);
        }
        let mut inv = GCRA.prepare_invoke();
        for b in buckets {
            let rate = f64::from(b.limit.per_second.max(1));
            let burst = if b.limit.burst == 0 { b.limit.per_second } else { b.limit.burst };
            inv.key(&b.key).arg(1_000_000.0 / rate).arg(burst.max(1));
        }
        let n: i64 =
            self.run("rate_limit", |mut c| async move { inv.invoke_async(&mut c).await }).await?;
        match usize::try_from(n) {
            Ok(0) => Ok(None),
            Ok(i) if i <= buckets.len() => Ok(Some(i - 1)),
            _ => Err(StoreError::Reply(format!("rate script returned {n}"))),
        }
    }
}
