//! The shared state store of replicas: a Redis reached through the `redis` crate's tokio
//! [`ConnectionManager`] (multiplexed: concurrent calls are pipelined on one connection, and it
//! reconnects by itself after Redis comes back).
//!
//! Every call goes through [`SharedState::run`], which bounds it by `redis.timeout_ms`, records
//! it (`external_calls_total{target="redis"}`, `external_call_duration_seconds`, a tracing span)
//! and tracks whether Redis is up: the first failure logs once, sets `redis_up` to 0 and makes
//! calls skip Redis for `redis.retry_ms` (then one call probes it again), so a dead or hung Redis
//! costs at most one timeout per period instead of one per request. The first success after
//! that logs once and sets `redis_up` back to 1: sharing resumes without a restart.

pub mod lease;
pub mod rate;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tracing::Instrument;

use crate::config::{OnRedisError, RedisConfig};
use crate::metrics::metrics;

/// Why a Redis call gave no answer. Callers never show it to clients: they follow `on_error`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No answer within `redis.timeout_ms`.
    #[error("redis did not answer within {0} ms")]
    Timeout(u64),
    /// Connection or server error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis failed recently; the call was not tried (see `redis.retry_ms`).
    #[error("redis is down (not retried yet)")]
    Skipped,
    /// Redis answered something this service did not write.
    #[error("unexpected redis reply: {0}")]
    Reply(String),
}

/// Why the Redis client could not be built from `redis.url` (the URL itself is left out of the
/// message: it may carry a password).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The client refused the URL.
    #[error("redis.url: {0}")]
    Client(String),
    /// A connection manager could not be created.
    #[error("redis: cannot create a connection manager: {0}")]
    Manager(String),
}

/// A handle on the shared Redis. Cheap to share (`Arc`).
pub struct SharedState {
    conns: Vec<ConnectionManager>,
    next: AtomicUsize,
    timeout: Duration,
    retry: Duration,
    prefix: String,
    on_error: OnRedisError,
    /// Last known state (starts optimistic; the start-up probe corrects it).
    up: AtomicBool,
    /// While down: milliseconds since `epoch` before which calls skip Redis.
    probe_at_ms: AtomicU64,
    epoch: Instant,
    lease: lease::LeasePolicy,
}

impl SharedState {
    /// Builds the handle from `[redis]` (`None` when no URL is set). Connections are opened
    /// lazily, so a replica starts even while Redis is down (it then follows `on_error`); when
    /// called inside a runtime, a background PING sets `redis_up` at once.
    pub fn from_config(cfg: &RedisConfig) -> Result<Option<Arc<Self>>, BuildError> {
        let Some(url) = &cfg.url else { return Ok(None) };
        let client = redis::Client::open(url.as_str())
            .map_err(|e| BuildError::Client(e.to_string().replace(url.as_str(), "<url>")))?;
        let timeout = cfg.timeout_ms;
        // Few, quick reconnect attempts: our own timeout bounds each call, and the next call after
        // `retry_ms` triggers a new attempt anyway.
        let mgr_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.connect_timeout_ms))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(cfg.retry_ms);
        let conns = (0..cfg.pool_size)
            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), mgr_cfg.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BuildError::Manager(e.to_string()))?;
        let state = Arc::new(Self {
            conns,
            next: AtomicUsize::new(0),
            timeout,
            retry: cfg.retry_ms,
            prefix: cfg.key_prefix.clone(),
            on_error: cfg.on_error,
            up: AtomicBool::new(true),
            probe_at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            lease: lease::LeasePolicy {
                max_tokens: cfg.lease_max_tokens,
                burst_fraction: cfg.lease_burst_fraction,
                lifetime: cfg.lease_ms,
            },
        });
        metrics().redis_up.set(1);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let s = state.clone();
            rt.spawn(async move {
                if s.ping().await.is_ok() {
                    tracing::info!(
                        on_error = s.on_error.as_str(),
                        "redis reachable: limits and verdicts are shared"
                    );
                }
            });
        }
        Ok(Some(state))
    }

    /// The configured `on_error` mode.
    pub fn on_error(&self) -> OnRedisError {
        self.on_error
    }

    /// `redis.lease_*`: how shared rate limits lease tokens.
    pub fn lease_policy(&self) -> lease::LeasePolicy {
        self.lease
    }

    /// `prefix ++ rest`: every key this service writes.
    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// Whether the last call reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// One PING (start-up probe, tests).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(
            "ping",
            |mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await },
        )
        .await
        .map(|_| ())
    }

    /// `GET key` (binary value).
    pub async fn get(&self, op: &'static str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(op, |mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await })
            .await
    }

    /// `SET key value PX ttl`.
    pub async fn set_px(
        &self,
        op: &'static str,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let ms = ttl.as_millis().clamp(1, u128::from(u64::MAX)) as u64;
        self.run(op, |mut c| async move {
            redis::cmd("SET").arg(key).arg(value).arg("PX").arg(ms).query_async::<()>(&mut c).await
        })
        .await
    }

    /// `MGET keys` (binary values, one per key, in order): one round trip for a batch.
    pub async fn mget(
        &self,
        op: &'static str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let values: Vec<Option<Vec<u8>>> = self
            .run(op, |mut c| async move { redis::cmd("MGET").arg(keys).query_async(&mut c).await })
            .await?;
        if values.len() != keys.len() {
            return Err(StoreError::Reply(format!(
                "MGET of {} keys returned {} values",
                keys.len(),
                values.len()
            )));
        }
        Ok(values)
    }

    /// `SET key value PX ttl` for each entry, pipelined: one round trip for a batch.
    pub async fn set_many_px(
        &self,
        op: &'static str,
        entries: &[(String, Vec<u8>)],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let ms = ttl.as_millis().clamp(1, u128::from(u64::MAX)) as u64;
        let mut pipe = redis::pipe();
        for (k, v) in entries {
            pipe.cmd("SET").arg(k).arg(v.as_slice()).arg("PX").arg(ms).ignore();
        }
        self.run(op, |mut c| async move { pipe.query_async::<()>(&mut c).await }).await
    }

    /// Runs one Redis call under the timeout, metrics, span and up/down tracking.
    pub async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let m = metrics();
        if !self.may_try() {
            m.external_calls.with_label_values(&["redis", op, "skipped"]).inc();
            return Err(StoreError::Skipped);
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        let conn = self.conns[i].clone();
        let start = Instant::now();
        let span = tracing::debug_span!("redis", op);
        let r = tokio::time::timeout(self.timeout, f(conn)).instrument(span).await;
        m.external_duration
            .with_label_values(&["redis", op])
            .observe(start.elapsed().as_secs_f64());
        let (outcome, r) = match r {
            Ok(Ok(v)) => ("ok", Ok(v)),
            Ok(Err(e)) => ("error", Err(StoreError::Redis(e))),
            Err(_) => ("timeout", Err(StoreError::Timeout(self.timeout.as_millis() as u64))),
        };
        m.external_calls.with_label_values(&["redis", op, outcome]).inc();
        match &r {
            Ok(_) => self.mark_up(),
            Err(e) => self.mark_down(e),
        }
        r
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Up: always. Down: only the one call that claims the next probe slot.
    fn may_try(&self) -> bool {
        if self.up.load(Ordering::Relaxed) {
            return true;
        }
        let now = self.now_ms();
        let at = self.probe_at_ms.load(Ordering::Relaxed);
        now >= at
            && self
                .probe_at_ms
                .compare_exchange(
                    at,
                    now + self.retry.as_millis() as u64,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            metrics().redis_up.set(1);
            tracing::info!("redis reachable again: limits and verdicts are shared again");
        }
    }

    fn mark_down(&self, e: &StoreError) {
        self.probe_at_ms.store(self.now_ms() + self.retry.as_millis() as u64, Ordering::Release);
        if self.up.swap(false, Ordering::AcqRel) {
            metrics().redis_up.set(0);
            tracing::warn!(
                error = %e,
                on_error = self.on_error.as_str(),
                retry_ms = self.retry.as_millis() as u64,
                "redis unreachable: following redis.on_error until it answers again"
            );
        }
    }
}
