//! Rate limits: per client IP or API key (every call), per method (all clients), per sender
//! (submissions) and per sender for interop submissions only.
//!
//! A decision names the buckets it needs ([`Bucket`]) and asks one [`Store`]:
//! - `Local`: governor buckets in bounded moka caches (idle keys expire, the total is capped), so
//!   a flood of distinct IPs or senders cannot grow memory; per replica.
//! - `Shared`: the same GCRA in Redis (one round trip per decision, for all its buckets), so N
//!   replicas together admit what one would; hot buckets lease small batches of tokens
//!   (`crate::shared_state::lease`) so most decisions need no round trip. When Redis fails,
//!   `redis.on_error` decides: the local buckets, admit, or refuse.
//!
//! API keys: the presented key is hashed and compared in constant time with every configured
//! key's hash; a known key's tier limit replaces the per-IP limit, an unknown key changes nothing.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{keccak256, Address, B256};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::{IngressConfig, OnRedisError, RateLimit};
use crate::metrics::metrics;
use crate::rpc::codes;
use crate::rpc::types::RpcError;
use crate::shared_state::lease::Leases;
use crate::shared_state::rate::SharedBucket;
use crate::shared_state::SharedState;

fn quota(limit: &RateLimit) -> Option<Quota> {
    let rate = NonZeroU32::new(limit.per_second)?;
    let burst = NonZeroU32::new(limit.burst).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// One bucket a decision takes a token from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bucket<'a> {
    Ip(IpAddr),
    /// Index of the configured API key.
    Key(usize),
    Method(&'a str),
    Sender(Address),
    InteropSender(Address),
}

/// One token bucket per key, keys bounded.
struct Keyed<K: Hash + Eq + Send + Sync + 'static> {
    quota: Quota,
    buckets: moka::sync::Cache<K, Arc<DefaultDirectRateLimiter>>,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Keyed<K> {
    fn new(quota: Quota, max_keys: usize) -> Self {
        // A bucket idle for longer than it takes to refill completely holds no state worth
        // keeping; dropping it then is exact.
        let refill = quota.replenish_interval() * quota.burst_size().get();
        let buckets = moka::sync::Cache::builder()
            .max_capacity(max_keys as u64)
            .time_to_idle(refill.max(Duration::from_secs(1)))
            .build();
        Self { quota, buckets }
    }

    fn check(&self, key: &K) -> bool {
        let q = self.quota;
        self.buckets.get_with_by_ref(key, || Arc::new(RateLimiter::direct(q))).check().is_ok()
    }
}

/// The in-memory buckets of this replica.
struct Local {
    ip: Option<Keyed<IpAddr>>,
    sender: Option<Keyed<Address>>,
    interop_sender: Option<Keyed<Address>>,
    methods: HashMap<String, DefaultDirectRateLimiter>,
    /// One bucket per configured API key (`None`: its tier is unlimited).
    keys: Vec<Option<DefaultDirectRateLimiter>>,
}

impl Local {
    fn check(&self, b: Bucket<'_>) -> bool {
        match b {
            Bucket::Ip(ip) => self.ip.as_ref().is_none_or(|k| k.check(&ip)),
            Bucket::Key(i) => {
                self.keys.get(i).and_then(Option::as_ref).is_none_or(|l| l.check().is_ok())
            }
            Bucket::Method(m) => self.methods.get(m).is_none_or(|l| l.check().is_ok()),
            Bucket::Sender(a) => self.sender.as_ref().is_none_or(|k| k.check(&a)),
            Bucket::InteropSender(a) => self.interop_sender.as_ref().is_none_or(|k| k.check(&a)),
        }
    }

    /// Index of the first exhausted bucket (earlier ones keep their token).
    fn take(&self, buckets: &[(Bucket<'_>, RateLimit)]) -> Option<usize> {
        buckets.iter().position(|(b, _)| !self.check(*b))
    }
}

/// Where decisions are taken.
enum Store {
    /// This replica's buckets only.
    Local,
    /// Redis (through this replica's token leases), with the local buckets as the
    /// `on_error = "local"` fallback.
    Shared(Arc<SharedState>, Leases),
}

/// The configured API keys, by hash (the keys themselves are not kept).
struct ApiKeys {
    /// (keccak of the key, its tier's limit, short id for Redis keys and logs).
    keys: Vec<(B256, RateLimit, String)>,
}

impl ApiKeys {
    fn new(cfg: &IngressConfig) -> Self {
        let keys = cfg
            .api_keys
            .iter()
            .filter_map(|(key, tier)| {
                let limit = *cfg.api_tiers.get(tier)?;
                let h = keccak256(key.as_bytes());
                Some((h, limit, alloy_primitives::hex::encode(&h[..8])))
            })
            .collect();
        Self { keys }
    }

    /// The index of the configured key equal to `presented`. Every configured key is compared,
    /// on fixed-size hashes, without early exit: timing tells nothing about which or how much
    /// of a key matched.
    fn find(&self, presented: &str) -> Option<usize> {
        if self.keys.is_empty() {
            return None;
        }
        let h = keccak256(presented.as_bytes());
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, (k, _, _)) in self.keys.iter().enumerate() {
            let eq = k.as_slice().ct_eq(h.as_slice());
            index = u64::conditional_select(&index, &(i as u64), eq);
            found |= eq;
        }
        bool::from(found).then_some(index as usize)
    }
}

/// The ingress rate limiters.
pub struct RateLimits {
    local: Local,
    store: Store,
    ip_rate: RateLimit,
    sender_rate: RateLimit,
    interop_sender_rate: RateLimit,
    method_rates: HashMap<String, RateLimit>,
    api_keys: ApiKeys,
}

/// Which of a submission's limits refused it ([`RateLimits::check_submission`]).
#[derive(Debug)]
pub enum SubmissionLimited {
    /// The client's (IP or API key) or the method's bucket, or the shared store is down with
    /// `on_error = "refuse"`: refused like any call.
    Call(RpcError),
    /// The sender's bucket.
    Sender(RpcError),
    /// The sender's interop bucket.
    InteropSender(RpcError),
}

impl RateLimits {
    /// Builds the limiters enabled in config (a rate of 0 disables one), shared through `shared`
    /// when Redis is configured.
    pub fn new(cfg: &IngressConfig, shared: Option<Arc<SharedState>>) -> Self {
        let method_rates: HashMap<String, RateLimit> = cfg
            .method_rates
            .iter()
            .filter(|(_, l)| l.per_second > 0)
            .map(|(m, l)| (m.clone(), *l))
            .collect();
        let api_keys = ApiKeys::new(cfg);
        let local = Local {
            ip: quota(&cfg.ip_rate).map(|q| Keyed::new(q, cfg.rate_limit_keys)),
            sender: quota(&cfg.sender_rate).map(|q| Keyed::new(q, cfg.rate_limit_keys)),
            interop_sender: quota(&cfg.interop_sender_rate)
                .map(|q| Keyed::new(q, cfg.rate_limit_keys)),
            methods: method_rates
                .iter()
                .filter_map(|(m, l)| quota(l).map(|q| (m.clone(), RateLimiter::direct(q))))
                .collect(),
            keys: api_keys.keys.iter().map(|(_, l, _)| quota(l).map(RateLimiter::direct)).collect(),
        };
        Self {
            local,
            store: shared.map_or(Store::Local, |s| {
                let leases = Leases::new(s.lease_policy(), cfg.rate_limit_keys);
                Store::Shared(s, leases)
            }),
            ip_rate: cfg.ip_rate,
            sender_rate: cfg.sender_rate,
            interop_sender_rate: cfg.interop_sender_rate,
            method_rates,
            api_keys,
        }
    }

    /// Every call: the API key's bucket (a known key) or the client's IP bucket, then the
    /// method's bucket. -32016 when exhausted.
    pub async fn check_call(
        &self,
        ip: IpAddr,
        api_key: Option<&str>,
        method: &str,
    ) -> Result<(), RpcError> {
        self.decide(self.call_buckets(ip, api_key, method)).await
    }

    /// A call's buckets: the API key's (a known key) or the client IP's, then the method's.
    fn call_buckets<'m>(
        &self,
        ip: IpAddr,
        api_key: Option<&str>,
        method: &'m str,
    ) -> Vec<(Bucket<'m>, RateLimit)> {
        let mut buckets = Vec::with_capacity(4);
        match api_key.and_then(|k| self.api_keys.find(k)) {
            Some(i) => buckets.push((Bucket::Key(i), self.api_keys.keys[i].1)),
            None => buckets.push((Bucket::Ip(ip), self.ip_rate)),
        }
        if let Some(l) = self.method_rates.get(method) {
            buckets.push((Bucket::Method(method), *l));
        }
        buckets
    }

    /// A submission's limits in ONE decision (one Redis round trip when shared): the call's
    /// buckets ([`Self::check_call`]), the sender's when `sender` is given, and its interop
    /// bucket when `interop_sender` is given. Which bucket ran out decides how it is refused.
    pub async fn check_submission(
        &self,
        ip: IpAddr,
        api_key: Option<&str>,
        method: &str,
        sender: Option<Address>,
        interop_sender: Option<Address>,
    ) -> Result<(), SubmissionLimited> {
        let mut buckets = self.call_buckets(ip, api_key, method);
        if let Some(a) = sender {
            buckets.push((Bucket::Sender(a), self.sender_rate));
        }
        if let Some(a) = interop_sender {
            buckets.push((Bucket::InteropSender(a), self.interop_sender_rate));
        }
        match self.exhausted(buckets).await.map_err(SubmissionLimited::Call)? {
            None => Ok(()),
            Some(b @ Bucket::Sender(_)) => Err(SubmissionLimited::Sender(self.refusal(&b))),
            Some(b @ Bucket::InteropSender(_)) => {
                Err(SubmissionLimited::InteropSender(self.refusal(&b)))
            }
            Some(b) => Err(SubmissionLimited::Call(self.refusal(&b))),
        }
    }

    /// True when a per-sender limit is set (a submission's sender must then be recovered).
    pub fn limits_senders(&self) -> bool {
        self.sender_rate.per_second > 0
    }

    /// True when an interop per-sender limit is set.
    pub fn limits_interop_senders(&self) -> bool {
        self.interop_sender_rate.per_second > 0
    }

    /// Submissions: the sender's bucket. -32017 when exhausted.
    pub async fn check_sender(&self, sender: Address) -> Result<(), RpcError> {
        self.decide(vec![(Bucket::Sender(sender), self.sender_rate)]).await
    }

    /// Interop submissions: the sender's interop bucket (on top of [`Self::check_sender`]).
    /// -32017 when exhausted.
    pub async fn check_interop_sender(&self, sender: Address) -> Result<(), RpcError> {
        self.decide(vec![(Bucket::InteropSender(sender), self.interop_sender_rate)]).await
    }

    async fn decide(&self, buckets: Vec<(Bucket<'_>, RateLimit)>) -> Result<(), RpcError> {
        match self.exhausted(buckets).await? {
            None => Ok(()),
            Some(b) => Err(self.refusal(&b)),
        }
    }

    /// Takes one token from each enabled bucket in one decision (one Redis round trip when
    /// shared): the first exhausted bucket, if any; an error when Redis fails and
    /// `on_error = "refuse"`.
    async fn exhausted<'b>(
        &self,
        mut buckets: Vec<(Bucket<'b>, RateLimit)>,
    ) -> Result<Option<Bucket<'b>>, RpcError> {
        buckets.retain(|(_, l)| l.per_second > 0);
        if buckets.is_empty() {
            return Ok(None);
        }
        let exhausted = match &self.store {
            Store::Local => self.local.take(&buckets),
            Store::Shared(s, leases) => {
                let shared: Vec<SharedBucket> = buckets
                    .iter()
                    .map(|(b, limit)| SharedBucket { key: self.redis_key(s, b), limit: *limit })
                    .collect();
                match leases.take(s, &shared).await {
                    Ok(r) => r,
                    Err(_) => {
                        let path = s.on_error();
                        metrics()
                            .redis_fallbacks
                            .with_label_values(&["limits", path.as_str()])
                            .inc();
                        match path {
                            OnRedisError::Local => self.local.take(&buckets),
                            OnRedisError::Allow => None,
                            OnRedisError::Refuse => {
                                return Err(RpcError::new(
                                    codes::NO_BACKEND,
                                    "rate limiting is unavailable (shared state store unreachable); retry later",
                                ))
                            }
                        }
                    }
                }
            }
        };
        Ok(exhausted.and_then(|i| buckets.get(i)).map(|(b, _)| *b))
    }

    fn redis_key(&self, s: &SharedState, b: &Bucket<'_>) -> String {
        s.key(&match b {
            Bucket::Ip(ip) => format!("rl:ip:{ip}"),
            Bucket::Key(i) => format!("rl:key:{}", self.api_keys.keys[*i].2),
            Bucket::Method(m) => format!("rl:m:{m}"),
            Bucket::Sender(a) => format!("rl:s:{a}"),
            Bucket::InteropSender(a) => format!("rl:is:{a}"),
        })
    }

    fn refusal(&self, b: &Bucket<'_>) -> RpcError {
        match b {
            Bucket::Ip(ip) => RpcError::new(
                codes::RATE_LIMITED,
                format!("rate limit exceeded for client {ip}; slow down"),
            ),
            Bucket::Key(i) => RpcError::new(
                codes::RATE_LIMITED,
                format!("rate limit exceeded for API key {}…; slow down", self.api_keys.keys[*i].2),
            ),
            Bucket::Method(m) => RpcError::new(
                codes::RATE_LIMITED,
                format!("rate limit exceeded for method {m}; retry later"),
            ),
            Bucket::Sender(a) => RpcError::new(
                codes::SENDER_RATE_LIMITED,
                format!("sender rate limit exceeded for {a}; retry later"),
            ),
            Bucket::InteropSender(a) => RpcError::new(
                codes::SENDER_RATE_LIMITED,
                format!("interop sender rate limit exceeded for {a}; retry later"),
            ),
        }
    }
}

/// One validation slot: a permit of the in-flight bound and its unit of the
/// `validations_in_flight` gauge, both given back on drop, so a request abandoned mid-validation
/// (client gone, future dropped) releases them too.
pub struct ValidationSlot<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
    n: u32,
}

impl<'a> ValidationSlot<'a> {
    /// A slot, or `None` when `bound` has no permit left.
    pub fn try_acquire(bound: &'a tokio::sync::Semaphore) -> Option<Self> {
        Self::try_acquire_many(bound, 1)
    }

    /// `n` slots held as one (a bundle's interop transactions, validated in one batch), or
    /// `None` when `bound` has fewer than `n` permits left.
    pub fn try_acquire_many(bound: &'a tokio::sync::Semaphore, n: u32) -> Option<Self> {
        let permit = bound.try_acquire_many(n).ok()?;
        metrics().validations_in_flight.add(i64::from(n));
        Some(Self { _permit: permit, n })
    }
}

impl Drop for ValidationSlot<'_> {
    fn drop(&mut self) {
        metrics().validations_in_flight.sub(i64::from(self.n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn buckets_are_per_key_and_bounded() {
        block_on(async {
            let mut cfg = IngressConfig {
                ip_rate: RateLimit { per_second: 1, burst: 2 },
                sender_rate: RateLimit { per_second: 1, burst: 1 },
                rate_limit_keys: 10,
                ..Default::default()
            };
            cfg.method_rates.insert("eth_call".into(), RateLimit { per_second: 1, burst: 3 });
            let l = RateLimits::new(&cfg, None);
            let a: IpAddr = "10.0.0.1".parse().unwrap();
            let b: IpAddr = "10.0.0.2".parse().unwrap();
            assert!(l.check_call(a, None, "eth_chainId").await.is_ok());
            assert!(l.check_call(a, None, "eth_chainId").await.is_ok());
            let e = l.check_call(a, None, "eth_chainId").await.unwrap_err();
            assert_eq!(e.code, codes::RATE_LIMITED);
            assert!(l.check_call(b, None, "eth_chainId").await.is_ok(), "another IP, own bucket");
            let s = Address::repeat_byte(1);
            assert!(l.check_sender(s).await.is_ok());
            assert_eq!(l.check_sender(s).await.unwrap_err().code, codes::SENDER_RATE_LIMITED);
            assert!(l.check_sender(Address::repeat_byte(2)).await.is_ok());
            for i in 0..1000u32 {
                let _ = l.check_call(IpAddr::from(i.to_be_bytes()), None, "eth_chainId").await;
            }
            let ip = l.local.ip.as_ref().unwrap();
            ip.buckets.run_pending_tasks();
            assert!(ip.buckets.entry_count() <= 10);
        });
    }

    #[test]
    fn validation_slot_releases_permit_on_drop() {
        let bound = tokio::sync::Semaphore::new(1);
        let slot = ValidationSlot::try_acquire(&bound).expect("one permit");
        assert!(ValidationSlot::try_acquire(&bound).is_none(), "bound holds");
        drop(slot);
        assert!(ValidationSlot::try_acquire(&bound).is_some(), "released on drop");
    }

    #[test]
    fn zero_rate_disables() {
        block_on(async {
            let l = RateLimits::new(&IngressConfig::default(), None);
            for _ in 0..1000 {
                assert!(l.check_call("10.0.0.1".parse().unwrap(), None, "eth_call").await.is_ok());
                assert!(l.check_sender(Address::ZERO).await.is_ok());
                assert!(l.check_interop_sender(Address::ZERO).await.is_ok());
            }
        });
    }

    #[test]
    fn interop_sender_bucket_is_separate_from_the_sender_bucket() {
        block_on(async {
            let cfg = IngressConfig {
                sender_rate: RateLimit { per_second: 1, burst: 3 },
                interop_sender_rate: RateLimit { per_second: 1, burst: 1 },
                ..Default::default()
            };
            let l = RateLimits::new(&cfg, None);
            let s = Address::repeat_byte(7);
            assert!(l.check_sender(s).await.is_ok());
            assert!(l.check_interop_sender(s).await.is_ok());
            let e = l.check_interop_sender(s).await.unwrap_err();
            assert_eq!(e.code, codes::SENDER_RATE_LIMITED);
            assert!(e.message.contains("interop"), "{}", e.message);
            // Plain submissions of the same sender still have their own tokens.
            assert!(l.check_sender(s).await.is_ok());
        });
    }

    #[test]
    fn api_key_tier_replaces_the_ip_limit_and_unknown_keys_are_anonymous() {
        block_on(async {
            let mut cfg = IngressConfig {
                ip_rate: RateLimit { per_second: 1, burst: 1 },
                ..Default::default()
            };
            cfg.api_tiers.insert("gold".into(), RateLimit { per_second: 1, burst: 3 });
            cfg.api_tiers.insert("free".into(), RateLimit { per_second: 0, burst: 0 });
            cfg.api_keys.insert("gold-key-0123456789".into(), "gold".into());
            cfg.api_keys.insert("free-key-0123456789".into(), "free".into());
            let l = RateLimits::new(&cfg, None);
            let ip: IpAddr = "10.0.0.9".parse().unwrap();
            for _ in 0..3 {
                l.check_call(ip, Some("gold-key-0123456789"), "eth_chainId").await.unwrap();
            }
            assert!(l.check_call(ip, Some("gold-key-0123456789"), "eth_chainId").await.is_err());
            for _ in 0..100 {
                l.check_call(ip, Some("free-key-0123456789"), "eth_chainId").await.unwrap();
            }
            // A wrong key (prefix of a real one) gets the per-IP bucket: 1 call.
            l.check_call(ip, Some("gold-key-012345678"), "eth_chainId").await.unwrap();
            assert!(l.check_call(ip, Some("gold-key-012345678"), "eth_chainId").await.is_err());
            assert!(l.check_call(ip, None, "eth_chainId").await.is_err());
        });
    }

    #[test]
    fn key_lookup_finds_each_key_and_nothing_else() {
        let mut cfg = IngressConfig::default();
        cfg.api_tiers.insert("t".into(), RateLimit { per_second: 1, burst: 1 });
        for i in 0..5 {
            cfg.api_keys.insert(format!("key-number-{i}-abcdefgh"), "t".into());
        }
        let k = ApiKeys::new(&cfg);
        let found: Vec<_> =
            (0..5).map(|i| k.find(&format!("key-number-{i}-abcdefgh")).unwrap()).collect();
        let mut sorted = found.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), 5, "{found:?}");
        assert_eq!(k.find("key-number-9-abcdefgh"), None);
        assert_eq!(k.find(""), None);
    }
}
