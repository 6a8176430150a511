//! Rate limits: per client IP (every call), per method (all clients), per sender (submissions).
//!
//! governor does the limiting; the per-key limiters live in a bounded moka cache (idle keys
//! expire, the total is capped), so a flood of distinct IPs or senders cannot grow memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::Address;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::{IngressConfig, RateLimit};
use crate::metrics::metrics;
use crate::rpc::codes;
use crate::rpc::types::RpcError;

fn quota(limit: &RateLimit) -> Option<Quota> {
    let rate = NonZeroU32::new(limit.per_second)?;
    let burst = NonZeroU32::new(limit.burst).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
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

/// The ingress rate limiters.
pub struct RateLimits {
    ip: Option<Keyed<IpAddr>>,
    sender: Option<Keyed<Address>>,
    methods: HashMap<String, DefaultDirectRateLimiter>,
}

impl RateLimits {
    /// Builds the limiters enabled in config (a rate of 0 disables one).
    pub fn new(cfg: &IngressConfig) -> Self {
        Self {
            ip: quota(&cfg.ip_rate).map(|q| Keyed::new(q, cfg.rate_limit_keys)),
            sender: quota(&cfg.sender_rate).map(|q| Keyed::new(q, cfg.rate_limit_keys)),
            methods: cfg
                .method_rates
                .iter()
                .filter_map(|(m, l)| quota(l).map(|q| (m.clone(), RateLimiter::direct(q))))
                .collect(),
        }
    }

    /// Every call: the client's IP bucket, then the method's bucket. -32016 when exhausted.
    pub fn check_call(&self, ip: IpAddr, method: &str) -> Result<(), RpcError> {
        if let Some(k) = &self.ip {
            if !k.check(&ip) {
                return Err(RpcError::new(
                    codes::RATE_LIMITED,
                    format!("rate limit exceeded for client {ip}; slow down"),
                ));
            }
        }
        if let Some(l) = self.methods.get(method) {
            if l.check().is_err() {
                return Err(RpcError::new(
                    codes::RATE_LIMITED,
                    format!("rate limit exceeded for method {method}; retry later"),
                ));
            }
        }
        Ok(())
    }

    /// Submissions: the sender's bucket. -32017 when exhausted.
    pub fn check_sender(&self, sender: Address) -> Result<(), RpcError> {
        match &self.sender {
            Some(k) if !k.check(&sender) => Err(RpcError::new(
                codes::SENDER_RATE_LIMITED,
                format!("sender rate limit exceeded for {sender}; retry later"),
            )),
            _ => Ok(()),
        }
    }
}

/// One validation slot: a permit of the in-flight bound and its unit of the
/// `validations_in_flight` gauge, both given back on drop, so a request abandoned mid-validation
/// (client gone, future dropped) releases them too.
pub struct ValidationSlot<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl<'a> ValidationSlot<'a> {
    /// A slot, or `None` when `bound` has no permit left.
    pub fn try_acquire(bound: &'a tokio::sync::Semaphore) -> Option<Self> {
        let permit = bound.try_acquire().ok()?;
        metrics().validations_in_flight.inc();
        Some(Self { _permit: permit })
    }
}

impl Drop for ValidationSlot<'_> {
    fn drop(&mut self) {
        metrics().validations_in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_per_key_and_bounded() {
        let mut cfg = IngressConfig {
            ip_rate: RateLimit { per_second: 1, burst: 2 },
            sender_rate: RateLimit { per_second: 1, burst: 1 },
            rate_limit_keys: 10,
            ..Default::default()
        };
        cfg.method_rates.insert("eth_call".into(), RateLimit { per_second: 1, burst: 3 });
        let l = RateLimits::new(&cfg);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(l.check_call(a, "eth_chainId").is_ok());
        assert!(l.check_call(a, "eth_chainId").is_ok());
        assert_eq!(l.check_call(a, "eth_chainId").unwrap_err().code, codes::RATE_LIMITED);
        assert!(l.check_call(b, "eth_chainId").is_ok(), "another IP has its own bucket");
        let s = Address::repeat_byte(1);
        assert!(l.check_sender(s).is_ok());
        assert_eq!(l.check_sender(s).unwrap_err().code, codes::SENDER_RATE_LIMITED);
        assert!(l.check_sender(Address::repeat_byte(2)).is_ok());
        for i in 0..1000u32 {
            let _ = l.check_call(IpAddr::from(i.to_be_bytes()), "eth_chainId");
        }
        l.ip.as_ref().unwrap().buckets.run_pending_tasks();
        assert!(l.ip.as_ref().unwrap().buckets.entry_count() <= 10);
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
        let l = RateLimits::new(&IngressConfig::default());
        for _ in 0..1000 {
            assert!(l.check_call("10.0.0.1".parse().unwrap(), "eth_call").is_ok());
            assert!(l.check_sender(Address::ZERO).is_ok());
        }
    }
}
