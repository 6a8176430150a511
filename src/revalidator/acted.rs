//! Did the EL act on the feed? The revalidator reads the pool anyway, so after every pass it can
//! tell which txs it published as invalid are still pooled, and for how long.
//!
//! Why it matters: no EL drops one pooled tx on request. op-geth re-checks every pooled interop
//! tx through `checkAccessList` about every 12 s, so pointed at the drop-in it drops a published
//! tx within one sweep; op-reth re-checks only near a tx's deadline (hours) unless something
//! calls `remove_transactions` for it. `invalid_still_pooled` (gauge) and
//! `invalid_pooled_seconds` (histogram, observed when the tx leaves the pool) show which case a
//! deployment is in.
//!
//! Optional escalation (`escalate_failsafe_after_secs`, off by default): while a published tx
//! stays pooled that long, the revalidator's `admin_getFailsafeEnabled` answers true, so op-reth
//! evicts every interop tx from its pool (valid ones too: the documented trade-off). The flag
//! follows the pool: once the tx is gone, the next pass clears it.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use alloy_primitives::B256;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};
use serde::Serialize;

use super::tracker::Tracker;
use crate::metrics::metrics;

struct ActedMetrics {
    still_pooled: IntGauge,
    pooled_seconds: Histogram,
    escalations: IntCounter,
}

fn acted_metrics() -> &'static ActedMetrics {
    static M: LazyLock<ActedMetrics> = LazyLock::new(|| {
        let reg = metrics().registry();
        let still_pooled = IntGauge::new(
            "revalidator_invalid_still_pooled",
            "Txs published as invalid that are still in the EL's pool (after the last pass)",
        )
        .expect("valid metric");
        // op-geth's sweep is ~12 s; op-reth's deadline re-check is up to 7200 s.
        let buckets = vec![
            1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
            7200.0,
        ];
        let pooled_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "revalidator_invalid_pooled_seconds",
                "How long a tx published as invalid stayed in the EL's pool, observed when it left",
            )
            .buckets(buckets),
        )
        .expect("valid metric");
        let escalations = IntCounter::new(
            "revalidator_failsafe_escalations_total",
            "Times the revalidator turned its failsafe answer on because a published-invalid tx \
             stayed pooled longer than escalate_failsafe_after_secs",
        )
        .expect("valid metric");
        reg.register(Box::new(still_pooled.clone())).expect("metric registered once");
        reg.register(Box::new(pooled_seconds.clone())).expect("metric registered once");
        reg.register(Box::new(escalations.clone())).expect("metric registered once");
        ActedMetrics { still_pooled, pooled_seconds, escalations }
    });
    &M
}

/// Creates the series (at 0) at start-up.
pub fn init_metrics() {
    let _ = acted_metrics();
}

/// What `interop_revalidationStatus` shows under `invalidStillPooled`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActedView {
    /// Published-invalid txs still in the pool at the last pass.
    pub count: usize,
    /// How long the oldest of them has been pooled since it was published, seconds.
    pub oldest_secs: Option<u64>,
    /// The escalation threshold (`None`: off).
    pub escalate_failsafe_after_secs: Option<u64>,
    /// True while the escalation holds the failsafe answer on.
    pub escalated: bool,
}

/// The published-invalid txs seen in the pool, with when they were first seen so.
#[derive(Debug)]
pub struct Acted {
    pooled: HashMap<B256, Instant>,
    escalate_after: Option<Duration>,
    escalated: bool,
    oldest: Option<Duration>,
}

impl Acted {
    /// `escalate_after_secs = 0` turns escalation off.
    pub fn new(escalate_after: Duration) -> Self {
        init_metrics();
        Self {
            pooled: HashMap::new(),
            escalate_after: (!escalate_after.is_zero()).then_some(escalate_after),
            escalated: false,
            oldest: None,
        }
    }

    /// Called after each pass with the store (which holds exactly the pooled interop txs).
    /// Returns true when the failsafe answer must be on because of escalation.
    pub fn observe(&mut self, store: &Tracker, now: Instant) -> bool {
        let m = acted_metrics();
        let invalid: HashSet<B256> = store.invalid().copied().collect();
        self.pooled.retain(|hash, since| {
            let keep = invalid.contains(hash);
            if !keep {
                m.pooled_seconds.observe(now.saturating_duration_since(*since).as_secs_f64());
            }
            keep
        });
        for hash in invalid {
            self.pooled.entry(hash).or_insert(now);
        }
        m.still_pooled.set(self.pooled.len() as i64);
        self.oldest = self.pooled.values().map(|t| now.saturating_duration_since(*t)).max();
        let escalate = match (self.escalate_after, self.oldest) {
            (Some(after), Some(oldest)) => oldest >= after,
            _ => false,
        };
        if escalate && !self.escalated {
            m.escalations.inc();
            tracing::error!(
                target: "interop_gate::revalidator",
                pooled = self.pooled.len(),
                oldest_secs = self.oldest.map_or(0, |d| d.as_secs()),
                "ESCALATING TO FAILSAFE: a tx published as invalid is still in the EL's pool after escalate_failsafe_after_secs; admin_getFailsafeEnabled now answers true, so the EL evicts every interop tx"
            );
        } else if !escalate && self.escalated {
            tracing::warn!(target: "interop_gate::revalidator", "failsafe escalation over: no published-invalid tx is pooled past the threshold");
        }
        self.escalated = escalate;
        escalate
    }

    /// The current view.
    pub fn view(&self) -> ActedView {
        ActedView {
            count: self.pooled.len(),
            oldest_secs: self.oldest.map(|d| d.as_secs()),
            escalate_failsafe_after_secs: self.escalate_after.map(|d| d.as_secs()),
            escalated: self.escalated,
        }
    }
}
