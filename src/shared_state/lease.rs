//! Token leases: a replica takes a small batch of tokens from a shared bucket in one script call
//! ([`SharedState::take_many`]) and spends them locally, so a hot bucket costs one Redis round
//! trip per batch instead of one per decision.
//!
//! Exactness: a leased token was taken from the shared bucket by the script, so the cluster never
//! admits more than the shared budget. Tokens a replica does not spend within `redis.lease_ms`
//! are dropped (never returned, never minted), so a lease can only *under*-admit, by at most the
//! tokens a replica holds: one lease per bucket at a time (a second concurrent miss takes exactly
//! one token), at most `lease size - 1` left over. The lease size is `redis.lease_burst_fraction`
//! of the bucket's burst, at least 1 and at most `redis.lease_max_tokens`: a bucket whose burst
//! is below `1 / fraction` is never leased (exact), and N replicas can strand at most
//! `N x fraction` of a burst.
//!
//! Only keys that spend what they lease get a batch: a key starts at 1 token per call, doubles
//! each time its previous lease was spent within its lifetime, and falls back to what it spent
//! when a lease expires with tokens left. Distinct keys seen once (a spray of IPs or senders)
//! therefore strand nothing.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::rate::SharedBucket;
use super::{SharedState, StoreError};
use crate::metrics::metrics;

/// `redis.lease_*`: how big a batch a bucket may take and how long it lives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeasePolicy {
    /// Largest batch (1: no leases, every decision is one script call).
    pub max_tokens: u32,
    /// Batch size as a fraction of the bucket's burst.
    pub burst_fraction: f64,
    /// Lifetime of a batch.
    pub lifetime: Duration,
}

impl LeasePolicy {
    /// The largest batch a bucket of this burst may lease (1 = exact).
    pub fn size(&self, burst: u32) -> u32 {
        let n = (f64::from(burst) * self.burst_fraction).floor();
        (n as u32).clamp(1, self.max_tokens.max(1))
    }
}

/// One bucket's lease on this replica.
#[derive(Debug)]
struct Lease {
    /// Leased tokens not spent yet.
    tokens: u32,
    /// When the unspent ones are dropped.
    until: Instant,
    /// When the last batch came (`None`: never leased).
    granted_at: Option<Instant>,
    /// Tokens the last batch brought, the one its call spent included.
    batch: u32,
    /// When its last token was spent (`None`: not yet, or it had none to lease).
    emptied_at: Option<Instant>,
    /// A batch is being asked for (other misses take one token meanwhile).
    fetching: bool,
}

impl Lease {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            tokens: 0,
            until: now,
            granted_at: None,
            batch: 0,
            emptied_at: None,
            fetching: false,
        }
    }

    /// Spends one leased token, or says how many to ask Redis for and whether this caller
    /// fetches the batch (one batch call at a time; other misses meanwhile ask for one token).
    ///
    /// The batch follows what the key spends: 1 the first time; double the last batch when it
    /// was spent within half a lifetime; the same when within a lifetime; what was spent of it
    /// when it expired with tokens left (they are dropped).
    fn spend_or_ask(
        &mut self,
        now: Instant,
        size: u32,
        lifetime: Duration,
    ) -> Result<(), (u32, bool)> {
        if self.tokens > 0 && now < self.until {
            self.tokens -= 1;
            if self.tokens == 0 {
                self.emptied_at = Some(now);
            }
            return Ok(());
        }
        if self.fetching {
            return Err((1, false));
        }
        let next = match self.granted_at {
            None => 1,
            Some(_) if self.tokens > 0 => {
                metrics()
                    .rate_lease_tokens
                    .with_label_values(&["dropped"])
                    .inc_by(u64::from(self.tokens));
                let spent = self.batch.saturating_sub(self.tokens);
                self.tokens = 0;
                spent
            }
            Some(at) => {
                let took = self.emptied_at.unwrap_or(now).saturating_duration_since(at);
                if took < lifetime / 2 {
                    self.batch.saturating_mul(2)
                } else {
                    self.batch
                }
            }
        };
        self.fetching = true;
        Err((next.clamp(1, size), true))
    }

    /// The batch call got `granted` tokens: one is spent by that call, the rest are leased
    /// for `lifetime`.
    fn add(&mut self, now: Instant, granted: u32, lifetime: Duration) {
        let extra = granted.saturating_sub(1);
        self.granted_at = Some(now);
        self.batch = granted;
        self.emptied_at = None;
        if self.tokens > 0 && now < self.until {
            // Only a give-back can leave tokens here; they keep their own lifetime.
            self.tokens += extra;
            return;
        }
        self.tokens = extra;
        self.until = now + lifetime;
        if extra > 0 {
            metrics().rate_lease_tokens.with_label_values(&["leased"]).inc_by(u64::from(extra));
        }
    }
}

/// Where a decision's token for one bucket comes from.
enum Source {
    /// Spent from this replica's lease.
    Lease,
    /// Asked from Redis (`want` tokens; `fetch`: this caller owns the lease's batch call).
    Redis { want: u32, fetch: bool },
}

/// The leases of this replica, one per leased bucket key, bounded like the local buckets (idle
/// keys expire, the total is capped).
pub struct Leases {
    policy: LeasePolicy,
    held: moka::sync::Cache<String, Arc<Mutex<Lease>>>,
}

fn lock(l: &Mutex<Lease>) -> MutexGuard<'_, Lease> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

/// Clears the `fetching` mark of the leases a call fetches for, however the call ends (a
/// dropped request future included), so a key never stays stuck asking for one token.
struct Fetching(Vec<Arc<Mutex<Lease>>>);

impl Drop for Fetching {
    fn drop(&mut self) {
        for l in &self.0 {
            lock(l).fetching = false;
        }
    }
}

impl Leases {
    /// Leases per `policy`, for at most `max_keys` keys.
    pub fn new(policy: LeasePolicy, max_keys: usize) -> Self {
        // A key idle for a few lifetimes has nothing left to spend; keeping it a little longer
        // than one lifetime remembers how much it spent (its next batch size).
        let held = moka::sync::Cache::builder()
            .max_capacity(max_keys as u64)
            .time_to_idle((policy.lifetime * 4).max(Duration::from_secs(1)))
            .eviction_listener(|_key, lease: Arc<Mutex<Lease>>, _cause| {
                let left = lock(&lease).tokens;
                if left > 0 {
                    metrics().rate_lease_tokens.with_label_values(&["dropped"]).inc_by(left.into());
                }
            })
            .build();
        Self { policy, held }
    }

    /// Takes one token from each bucket in order, from this replica's leases where it holds
    /// one and from Redis (one script call for all the others, topping up their leases) else.
    /// `Ok(None)` when admitted, `Ok(Some(i))` when bucket `i` was exhausted: buckets before it
    /// keep their token, leased tokens taken for buckets after it go back to their lease.
    pub async fn take(
        &self,
        state: &SharedState,
        buckets: &[SharedBucket],
    ) -> Result<Option<usize>, StoreError> {
        let now = Instant::now();
        let mut sources = Vec::with_capacity(buckets.len());
        let mut leases: Vec<Option<Arc<Mutex<Lease>>>> = Vec::with_capacity(buckets.len());
        let mut fetching = Fetching(Vec::new());
        for b in buckets {
            let size = self.policy.size(b.burst());
            if size <= 1 {
                sources.push(Source::Redis { want: 1, fetch: false });
                leases.push(None);
                continue;
            }
            let lease = self.held.get_with_by_ref(&b.key, || Arc::new(Mutex::new(Lease::new())));
            let source = match lock(&lease).spend_or_ask(now, size, self.policy.lifetime) {
                Ok(()) => Source::Lease,
                Err((want, fetch)) => Source::Redis { want, fetch },
            };
            if let Source::Redis { fetch: true, .. } = source {
                fetching.0.push(lease.clone());
            }
            sources.push(source);
            leases.push(Some(lease));
        }
        let ask: Vec<usize> =
            (0..buckets.len()).filter(|&i| matches!(sources[i], Source::Redis { .. })).collect();
        let m = metrics();
        if ask.is_empty() {
            m.rate_decisions.with_label_values(&["lease"]).inc();
            return Ok(None);
        }
        m.rate_decisions.with_label_values(&["redis"]).inc();
        let shared: Vec<SharedBucket> = ask.iter().map(|&i| buckets[i].clone()).collect();
        let want: Vec<u32> = ask
            .iter()
            .map(|&i| match sources[i] {
                Source::Redis { want, .. } => want,
                Source::Lease => 1,
            })
            .collect();
        let granted = match state.take_many(&shared, &want).await {
            Ok(g) => g,
            Err(e) => {
                // Not decided: the leased tokens this call took go back.
                self.give_back(&sources, &leases, 0);
                return Err(e);
            }
        };
        let now = Instant::now();
        for (&i, &n) in ask.iter().zip(&granted.tokens) {
            if let (Source::Redis { fetch: true, .. }, Some(l)) = (&sources[i], &leases[i]) {
                lock(l).add(now, n, self.policy.lifetime);
            }
        }
        drop(fetching);
        let exhausted = granted.exhausted.map(|j| ask[j]);
        if let Some(e) = exhausted {
            self.give_back(&sources, &leases, e + 1);
        }
        Ok(exhausted)
    }

    /// Returns the leased token of every bucket from `from` on that spent one (the decision did
    /// not use it); an expired lease keeps nothing.
    fn give_back(&self, sources: &[Source], leases: &[Option<Arc<Mutex<Lease>>>], from: usize) {
        let now = Instant::now();
        for (s, l) in sources.iter().zip(leases).skip(from) {
            if let (Source::Lease, Some(l)) = (s, l) {
                let mut l = lock(l);
                if now < l.until {
                    l.tokens += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LeasePolicy {
        LeasePolicy { max_tokens: 16, burst_fraction: 0.02, lifetime: Duration::from_millis(500) }
    }

    #[test]
    fn small_bursts_are_never_leased_and_big_ones_are_capped() {
        let p = policy();
        assert_eq!(p.size(1), 1);
        assert_eq!(p.size(99), 1, "below 1 / fraction: exact");
        assert_eq!(p.size(100), 2);
        assert_eq!(p.size(500), 10);
        assert_eq!(p.size(1_000_000), 16);
        assert_eq!(LeasePolicy { max_tokens: 1, ..p }.size(1_000_000), 1);
    }

    #[test]
    fn a_key_leases_more_only_while_it_spends_what_it_leases() {
        let life = Duration::from_millis(200);
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut l = Lease::new();
        // First miss: one token (a key seen once strands nothing).
        assert_eq!(l.spend_or_ask(t, 16, life), Err((1, true)));
        l.add(t, 1, life);
        l.fetching = false;
        // Back within half a lifetime: double.
        assert_eq!(l.spend_or_ask(ms(10), 16, life), Err((2, true)));
        // While that batch is asked for, another miss takes exactly one token.
        assert_eq!(l.spend_or_ask(ms(10), 16, life), Err((1, false)));
        l.add(ms(10), 2, life);
        l.fetching = false;
        assert_eq!(l.spend_or_ask(ms(20), 16, life), Ok(()));
        assert_eq!(l.spend_or_ask(ms(30), 16, life), Err((4, true)));
        l.add(ms(30), 4, life);
        l.fetching = false;
        // Spent in 150 ms (more than half a lifetime): the same batch again.
        for n in [60, 100, 180] {
            assert_eq!(l.spend_or_ask(ms(n), 16, life), Ok(()));
        }
        assert_eq!(l.spend_or_ask(ms(300), 16, life), Err((4, true)));
        l.add(ms(300), 4, life);
        l.fetching = false;
        // Expired with 2 of 3 left: dropped, and the next batch is what was spent (2).
        assert_eq!(l.spend_or_ask(ms(310), 16, life), Ok(()));
        assert_eq!(l.spend_or_ask(ms(500), 16, life), Err((2, true)));
        assert_eq!(l.tokens, 0);
    }
}
