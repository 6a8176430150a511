//! Shared rate limits: GCRA (the algorithm governor uses locally, so burst and rate mean the same
//! thing in both) evaluated atomically in Redis by one Lua script over every bucket a decision
//! needs: one round trip per decision, whatever the number of buckets. The script is sent by its
//! SHA (`EVALSHA`); `redis::Script` loads it again when Redis answers `NOSCRIPT` (after a restart).
//!
//! A bucket may ask for more than one token (a lease, see [`super::lease`]): the script grants
//! as many as the bucket holds, up to what was asked, and at least one or none (refused), so a
//! lease never takes a token the bucket does not have.
//!
//! Time is Redis's own `TIME`, so replicas with skewed clocks still share one timeline.

use std::sync::LazyLock;

use super::{SharedState, StoreError};
use crate::config::RateLimit;

/// Buckets are checked in order and consumed until one is exhausted (like the local limiter:
/// an exhausted method bucket still costs the caller a token of its IP bucket). The theoretical
/// arrival time (TAT) is stored in µs with `%.17g`, which round-trips a double exactly, and
/// expires once the bucket would be full again. One token fits while `tat - now <= interval *
/// (burst - 1)`; `n` tokens fit while `tat + (n - 1) * interval` still does. The reply is
/// `{exhausted bucket (1-based) or 0, tokens granted to bucket 1, 2, ...}`.
const GCRA_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local reply = {0}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[3 * i - 2])
  local burst = tonumber(ARGV[3 * i - 1])
  local want = tonumber(ARGV[3 * i])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local slack = interval * (burst - 1) - (tat - now)
  if slack < 0 then
    reply[1] = i
    return reply
  end
  local n = math.min(want, 1 + math.floor(slack / interval))
  local new_tat = tat + n * interval
  redis.call('SET', key, string.format('%.17g', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
  reply[i + 1] = n
end
return reply
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

impl SharedBucket {
    /// The bucket's burst as the script sees it (a burst of 0 means one second of rate).
    pub fn burst(&self) -> u32 {
        let burst = if self.limit.burst == 0 { self.limit.per_second } else { self.limit.burst };
        burst.max(1)
    }
}

/// The answer of one script call ([`SharedState::take_many`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// The first exhausted bucket (0-based); later buckets were not touched.
    pub exhausted: Option<usize>,
    /// Tokens granted to each bucket before the exhausted one (each >= 1).
    pub tokens: Vec<u32>,
}

impl SharedState {
    /// Takes up to `want[i]` tokens (at least 1) from each bucket `i` in order, in one script
    /// call: every bucket before the first exhausted one gets between 1 and `want[i]` tokens.
    /// `op` names the call in metrics (`rate_limit`, `rate_prefetch`).
    pub async fn take_many(
        &self,
        op: &'static str,
        buckets: &[SharedBucket],
        want: &[u32],
    ) -> Result<Granted, StoreError> {
        if buckets.is_empty() {
            return Ok(Granted { exhausted: None, tokens: Vec::new() });
        }
        let mut inv = GCRA.prepare_invoke();
        for (b, w) in buckets.iter().zip(want.iter().chain(std::iter::repeat(&1))) {
            let rate = f64::from(b.limit.per_second.max(1));
            inv.key(&b.key).arg(1_000_000.0 / rate).arg(b.burst()).arg((*w).max(1));
        }
        let reply: Vec<i64> =
            self.run(op, |mut c| async move { inv.invoke_async(&mut c).await }).await?;
        parse_reply(&reply, buckets.len())
    }
}

/// Checks the script's reply: an exhausted index in range and one positive grant per bucket
/// before it (all of them when none was exhausted).
fn parse_reply(reply: &[i64], buckets: usize) -> Result<Granted, StoreError> {
    let bad = || StoreError::Reply(format!("rate script returned {reply:?}"));
    let (&first, grants) = reply.split_first().ok_or_else(bad)?;
    let exhausted = match usize::try_from(first) {
        Ok(0) => None,
        Ok(i) if i <= buckets => Some(i - 1),
        _ => return Err(bad()),
    };
    if grants.len() != exhausted.unwrap_or(buckets) {
        return Err(bad());
    }
    let tokens = grants
        .iter()
        .map(|&n| u32::try_from(n).ok().filter(|&n| n >= 1))
        .collect::<Option<Vec<u32>>>()
        .ok_or_else(bad)?;
    Ok(Granted { exhausted, tokens })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_replies_are_checked() {
        assert_eq!(
            parse_reply(&[0, 1, 4], 2).unwrap(),
            Granted { exhausted: None, tokens: vec![1, 4] }
        );
        assert_eq!(
            parse_reply(&[2, 3], 3).unwrap(),
            Granted { exhausted: Some(1), tokens: vec![3] }
        );
        for bad in [&[][..], &[4], &[0, 1], &[1, 1], &[0, 0, 1], &[-1], &[0, 1, -2]] {
            assert!(parse_reply(bad, 2).is_err(), "{bad:?}");
        }
    }
}
