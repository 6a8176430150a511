//! Token leases: a replica takes a small batch of tokens from a shared bucket in one script call
//! ([`SharedState::take_many`]) and spends them locally, so a hot bucket costs one Redis round
//! trip per batch instead of one per decision.
//!
//! Exactness: a leased token was taken from the shared bucket by the script, so the cluster never
//! admits more than the shared budget. Tokens a replica does not spend within `redis.lease_ms`
//! are dropped (never returned, never minted), so a lease can only *under*-admit, by at most the
//! tokens a replica holds: one batch call per bucket at a time (a concurrent miss takes exactly
//! one token), at most 1.25 lease sizes (a quarter of a batch left when the next one is fetched).
//! The lease size is `redis.lease_burst_fraction` of the bucket's burst, at least 1 and at most
//! `redis.lease_max_tokens`: a bucket whose burst is below `1 / fraction` is never leased
//! (exact), and N replicas can strand at most `N x 1.25 x fraction` of a burst.
//!
//! Only keys that spend what they lease get a batch: a key starts at 1 token per call, and each
//! next batch is what the key spent on this replica in half a lifetime at its last rate (at most
//! twice the last batch, at most the lease size), so distinct keys seen once (a spray of IPs or
//! senders) strand nothing and a key that slows down leases less. When a quarter of a batch is
//! left, the next one is fetched ahead in the background, so a busy key rarely waits for Redis;
//! what a replica holds is then at most 1.25 batches.

use std::sync::{Arc, Mutex, MutexGuard};

use std::time::{Duration, Instant};
use tracing::Instrument;

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
    /// Tokens this replica spent on the key since the last batch came (its rate).
    spent: u32,
    /// A batch is being asked for (other misses take one token meanwhile).
    fetching: bool,
}

/// What a decision does for one leased bucket.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// A leased token was spent; `Some(n)`: the lease runs low, fetch a batch of `n` ahead.
    Spent(Option<u32>),
    /// Ask Redis for `want` tokens (`fetch`: this call owns the lease's batch).
    Ask { want: u32, fetch: bool },
}

impl Lease {
    fn new() -> Self {
        let now = Instant::now();
        Self { tokens: 0, until: now, granted_at: None, batch: 0, spent: 0, fetching: false }
    }

    /// Spends one leased token, or says how many to ask Redis for. One batch call at a time per
    /// key: other misses meanwhile ask for exactly one token. The next batch is fetched ahead,
    /// in the background, when a quarter of a batch (of 2 or more) is left, so a key spending
    /// steadily rarely waits for Redis.
    fn step(&mut self, now: Instant, size: u32, lifetime: Duration) -> Step {
        if self.tokens > 0 && now < self.until {
            self.tokens -= 1;
            self.spent = self.spent.saturating_add(1);
            if !self.fetching && self.batch >= 2 && self.tokens <= self.batch / 4 {
                self.fetching = true;
                return Step::Spent(Some(self.next_batch(now, size, lifetime)));
            }
            return Step::Spent(None);
        }
        if self.fetching {
            return Step::Ask { want: 1, fetch: false };
        }
        if self.tokens > 0 {
            metrics()
                .rate_lease_tokens
                .with_label_values(&["dropped"])
                .inc_by(u64::from(self.tokens));
            self.tokens = 0;
        }
        self.fetching = true;
        Step::Ask { want: self.next_batch(now, size, lifetime), fetch: true }
    }

    /// What the key spends on this replica in half a lifetime at the rate it spent the last
    /// batch: at least 1 (the first time, or a slow key), at most `size` and twice the last
    /// batch (a ramp, not a jump).
    fn next_batch(&self, now: Instant, size: u32, lifetime: Duration) -> u32 {
        let Some(at) = self.granted_at else { return 1 };
        let elapsed = now.saturating_duration_since(at).max(Duration::from_millis(1));
        let rate = f64::from(self.spent) / elapsed.as_secs_f64();
        let want = (rate * lifetime.as_secs_f64() / 2.0).floor() as u32;
        want.clamp(1, size.min(self.batch.saturating_mul(2)).max(1))
    }

    /// A batch of `granted` tokens came; `spent_one`: the call that asked spends one of them.
    /// Tokens left from the previous batch join the new lifetime (at most a quarter batch).
    fn add(&mut self, now: Instant, granted: u32, spent_one: bool, lifetime: Duration) {
        let extra = if spent_one { granted.saturating_sub(1) } else { granted };
        let left = if now < self.until { self.tokens } else { 0 };
        self.tokens = left + extra;
        self.until = now + lifetime;
        self.granted_at = Some(now);
        self.batch = granted;
        self.spent = u32::from(spent_one);
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
        state: &Arc<SharedState>,
        buckets: &[SharedBucket],
    ) -> Result<Option<usize>, StoreError> {
        let now = Instant::now();
        let mut sources = Vec::with_capacity(buckets.len());
        let mut leases: Vec<Option<Arc<Mutex<Lease>>>> = Vec::with_capacity(buckets.len());
        let mut fetching = Fetching(Vec::new());
        // The buckets Redis is asked for (their index, the bucket, how many tokens).
        let (mut ask, mut shared, mut want) = (Vec::new(), Vec::new(), Vec::new());
        for (i, b) in buckets.iter().enumerate() {
            let size = self.policy.size(b.burst());
            let (source, lease) = if size <= 1 {
                (Source::Redis { want: 1, fetch: false }, None)
            } else {
                let lease =
                    self.held.get_with_by_ref(&b.key, || Arc::new(Mutex::new(Lease::new())));
                let step = lock(&lease).step(now, size, self.policy.lifetime);
                let source = match step {
                    Step::Spent(None) => Source::Lease,
                    Step::Spent(Some(n)) => {
                        self.prefetch(state, b.clone(), lease.clone(), n);
                        Source::Lease
                    }
                    Step::Ask { want, fetch } => Source::Redis { want, fetch },
                };
                if let Source::Redis { fetch: true, .. } = source {
                    fetching.0.push(lease.clone());
                }
                (source, Some(lease))
            };
            if let Source::Redis { want: n, .. } = source {
                ask.push(i);
                shared.push(b.clone());
                want.push(n);
            }
            sources.push(source);
            leases.push(lease);
        }
        let m = metrics();
        if ask.is_empty() {
            m.rate_decisions.with_label_values(&["lease"]).inc();
            return Ok(None);
        }
        m.rate_decisions.with_label_values(&["redis"]).inc();
        let granted = match state.take_many("rate_limit", &shared, &want).await {
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
                lock(l).add(now, n, true, self.policy.lifetime);
            }
        }
        drop(fetching);
        let exhausted = granted.exhausted.map(|j| ask[j]);
        if let Some(e) = exhausted {
            self.give_back(&sources, &leases, e + 1);
        }
        Ok(exhausted)
    }

    /// Fetches a batch of `want` tokens of `bucket` for `lease` in the background (one task per
    /// key at most: the lease's `fetching` mark). A refusal or an error adds nothing; the next
    /// miss asks again.
    fn prefetch(
        &self,
        state: &Arc<SharedState>,
        bucket: SharedBucket,
        lease: Arc<Mutex<Lease>>,
        want: u32,
    ) {
        let (state, lifetime) = (state.clone(), self.policy.lifetime);
        let span = tracing::debug_span!("rate_lease_prefetch", want);
        tokio::spawn(
            async move {
                let _fetching = Fetching(vec![lease.clone()]);
                let granted =
                    state.take_many("rate_prefetch", std::slice::from_ref(&bucket), &[want]).await;
                if let Ok(g) = granted {
                    if let Some(&n) = g.tokens.first() {
                        lock(&lease).add(Instant::now(), n, false, lifetime);
                    }
                }
            }
            .instrument(span),
        );
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
    fn a_key_leases_what_it_spends_in_half_a_lifetime_and_fetches_ahead() {
        let life = Duration::from_millis(200);
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let mut l = Lease::new();
        // First miss: one token (a key seen once strands nothing).
        assert_eq!(l.step(t, 16, life), Step::Ask { want: 1, fetch: true });
        l.add(t, 1, true, life);
        l.fetching = false;
        // Back 10 ms later (100/s: 10 in half a lifetime), capped at twice the last batch.
        assert_eq!(l.step(ms(10), 16, life), Step::Ask { want: 2, fetch: true });
        // While that batch is asked for, another miss takes exactly one token.
        assert_eq!(l.step(ms(10), 16, life), Step::Ask { want: 1, fetch: false });
        l.add(ms(10), 2, true, life);
        l.fetching = false;
        // Its last token spent: the next batch is fetched ahead (in the background).
        assert_eq!(l.step(ms(12), 16, life), Step::Spent(Some(4)));
        l.add(ms(13), 4, false, life);
        l.fetching = false;
        // Batch of 4: spending down to a quarter of it fetches the next one ahead, once.
        assert_eq!(l.step(ms(14), 16, life), Step::Spent(None));
        assert_eq!(l.step(ms(15), 16, life), Step::Spent(None));
        assert_eq!(l.step(ms(16), 16, life), Step::Spent(Some(8)));
        assert_eq!(l.step(ms(17), 16, life), Step::Spent(None), "already fetching");
        assert_eq!(l.tokens, 0);
        l.add(ms(18), 8, false, life);
        l.fetching = false;
        assert_eq!(l.tokens, 8);
        // Then the key goes quiet: the lease expires with its 8 tokens (dropped), and the next
        // batch is what the key spent in half a lifetime: 1.
        assert_eq!(l.step(ms(321), 16, life), Step::Ask { want: 1, fetch: true });
        assert_eq!(l.tokens, 0);
    }
}
