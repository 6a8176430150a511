//! The revalidator core: owns the store, runs passes (one at a time) on a schedule, and answers
//! drop-in checks from the store or the backend.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use alloy_primitives::{B256, U256};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::acted::Acted;
use super::error::PoolError;
use super::feed::{Feed, FeedPage};
use super::follow::Follower;
use super::mirror::PoolMirror;
use super::pass::{execute, execute_one, plan, plan_mirror, PassKind, Plan, PlanParams};
use super::pool::{ElPool, Head, PoolSnapshot};
use super::recheck::{self, plan_affected, RecheckParams, RecheckReport, RecheckTotals};
use super::tracker::{SyncReport, Tracker, TrackerLimits};
use crate::clock::unix_now;
use crate::config::RevalidatorConfig;
use crate::metrics::metrics;
use crate::rpc::codes;
use crate::validation::light::{HeadAdvance, HeadTag};
use crate::validation::{CheckRequest, DynBackend, Rejection, Verdict};

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PassReport {
    /// `near` or `full`.
    pub kind: Option<PassKind>,
    /// Start (unix seconds).
    pub started_at: u64,
    /// Duration, ms.
    pub duration_ms: u64,
    /// The head placed on.
    pub head: Head,
    /// Pending txs in the snapshot.
    pub pool_txs: usize,
    /// Interop txs tracked after the pass.
    pub tracked: usize,
    /// Presumed blocks the pool fills.
    pub presumed_blocks: u32,
    /// Presumed blocks (and the unplaced group) checked.
    pub blocks_checked: usize,
    /// Backend requests sent (`check_batch` calls).
    pub requests: usize,
    /// Checks sent.
    pub txs_checked: usize,
    /// Txs published invalid by this pass (verdicts, malformed lists and deadlines).
    pub invalid_found: usize,
    /// Txs that left the pool and were forgotten.
    pub forgotten: usize,
    /// Pool txs skipped (undecodable or over a bound).
    pub skipped: usize,
    /// Failsafe flag after the pass.
    pub failsafe: bool,
}

#[derive(Debug, Default)]
struct Schedule {
    last_full: Option<Instant>,
}

/// The synchronous half of a pass: what it read from the pool and planned.
struct Prepared {
    sync: SyncReport,
    planned: Plan,
    head: Head,
    pool_txs: usize,
    undecodable: usize,
    over_limit: usize,
}

impl Prepared {
    /// A planned pass over `snap` (read whole or mirrored).
    fn new(sync: SyncReport, planned: Plan, snap: &PoolSnapshot) -> Self {
        Self {
            sync,
            planned,
            head: snap.head,
            pool_txs: snap.txs.len(),
            undecodable: snap.undecodable,
            over_limit: snap.over_limit,
        }
    }
}

#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct LastPass {
    last_pass: Option<PassReport>,
    last_error: Option<String>,
    last_error_at: Option<u64>,
    passes: u64,
}

/// The revalidator.
pub struct Revalidator {
    cfg: RevalidatorConfig,
    backend: DynBackend,
    pool: ElPool,
    follower: Option<Arc<Follower>>,
    store: Mutex<Tracker>,
    requests: tokio::sync::Semaphore,
    schedule: tokio::sync::Mutex<Schedule>,
    last: Mutex<LastPass>,
    /// Which published-invalid txs are still pooled (and the failsafe escalation).
    acted: Mutex<Acted>,
    /// What event-driven re-checks did.
    rechecks: RecheckTotals,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Revalidator {
    /// A revalidator watching `cfg.el_url` and checking with `backend`. Nothing runs until
    /// passes are driven ([`Revalidator::run_due_pass`] or [`super::start`]).
    pub fn new(cfg: RevalidatorConfig, backend: DynBackend) -> Arc<Self> {
        let pool = ElPool::new(
            &cfg.el_url,
            cfg.el_timeout_ms,
            cfg.max_pool_txs,
            cfg.el_max_response_bytes,
        );
        let limits = TrackerLimits {
            max_tracked: cfg.max_tracked,
            max_inbox_entries: cfg.max_inbox_entries,
            max_unknown: cfg.max_unknown_secs,
            chain_id: cfg.chain_id.map(U256::from),
        };
        Arc::new(Self {
            store: Mutex::new(Tracker::new(limits, Feed::new(cfg.feed_capacity))),
            requests: tokio::sync::Semaphore::new(cfg.max_concurrent_requests.max(1)),
            schedule: tokio::sync::Mutex::new(Schedule::default()),
            last: Mutex::new(LastPass::default()),
            follower: Follower::new(&cfg),
            acted: Mutex::new(Acted::new(cfg.escalate_failsafe_after_secs)),
            rechecks: RecheckTotals::default(),
            pool,
            backend,
            cfg,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &RevalidatorConfig {
        &self.cfg
    }

    /// Runs a full pass when one is due (first pass, or `full_interval` since the last), else a
    /// near pass. A failed pool read skips the pass and is kept for the status call.
    pub async fn run_due_pass(&self) -> Result<PassReport, PoolError> {
        let full_due = {
            let s = self.schedule.lock().await;
            s.last_full.is_none_or(|t| t.elapsed() >= self.cfg.full_interval_ms)
        };
        self.run_pass(if full_due { PassKind::Full } else { PassKind::Near }).await
    }

    /// The pool follower, when `el_ws_url` is set (the caller runs it: [`super::start`]).
    pub fn follower(&self) -> Option<&Arc<Follower>> {
        self.follower.as_ref()
    }

    /// Reads the pool (the mirror when it is live, else a full `txpool_content`) and runs a
    /// pass of `kind` on it.
    pub async fn run_pass(&self, kind: PassKind) -> Result<PassReport, PoolError> {
        let started = Instant::now();
        if let Some(f) = self.follower.as_ref().filter(|f| f.is_live()) {
            let schedule = self.schedule.lock().await;
            // The mirror is read in place, under its lock, for the synchronous half only.
            let prepared = self.prepare_mirror(&mut f.mirror(), kind, &schedule);
            return Ok(self.finish(prepared, kind, started, schedule, false).await);
        }
        let snap = match self.pool.fetch().await {
            Ok(s) => s,
            Err(e) => {
                let mut last = lock(&self.last);
                last.last_error = Some(e.to_string());
                last.last_error_at = Some(unix_now());
                return Err(e);
            }
        };
        Ok(self.run_pass_on(&snap, kind, started).await)
    }

    /// Runs a pass of `kind` on a snapshot already read (benches, and tests that script the
    /// pool). `started` is when the pass began, for its duration.
    pub async fn run_pass_on(
        &self,
        snap: &PoolSnapshot,
        kind: PassKind,
        started: Instant,
    ) -> PassReport {
        let schedule = self.schedule.lock().await;
        let prepared = self.prepare(snap, kind, &schedule);
        self.finish(prepared, kind, started, schedule, true).await
    }

    /// Runs a pass of `kind` on a pool mirror the caller keeps (benches): the store follows it
    /// by its change log and a near pass places only the near blocks, as with the follower's.
    pub async fn run_pass_on_mirror(
        &self,
        mirror: &mut PoolMirror,
        kind: PassKind,
        started: Instant,
    ) -> PassReport {
        let schedule = self.schedule.lock().await;
        let prepared = self.prepare_mirror(mirror, kind, &schedule);
        self.finish(prepared, kind, started, schedule, false).await
    }

    /// Syncs the store with `snap` and plans the pass (no I/O, no await).
    fn prepare(&self, snap: &PoolSnapshot, kind: PassKind, schedule: &Schedule) -> Prepared {
        let (now, now_unix) = (Instant::now(), unix_now());
        let params = self.plan_params(kind, schedule, now);
        let (sync, planned) = {
            let mut store = lock(&self.store);
            let sync = store.sync(&snap.txs, now, now_unix);
            (sync, plan(&mut store, snap, kind, &params, now_unix))
        };
        Prepared::new(sync, planned, snap)
    }

    /// Syncs the store with `mirror` by its change log and plans the pass on it.
    fn prepare_mirror(
        &self,
        mirror: &mut PoolMirror,
        kind: PassKind,
        schedule: &Schedule,
    ) -> Prepared {
        let (now, now_unix) = (Instant::now(), unix_now());
        let params = self.plan_params(kind, schedule, now);
        let (sync, planned) = {
            let mut store = lock(&self.store);
            let sync = store.sync_mirror(mirror, now, now_unix);
            (sync, plan_mirror(&mut store, mirror, kind, &params, now_unix))
        };
        Prepared::new(sync, planned, mirror.snapshot())
    }

    /// Sends a planned pass's requests and records their verdicts as they come, window by
    /// window: at most `max_concurrent_requests` requests are built and in flight at once (the
    /// shared semaphore still bounds them with event re-checks), so a full pass holds a window
    /// of requests and verdicts, not all of them. Returns (a failsafe verdict seen, any check
    /// answered).
    async fn execute_plan(&self, planned: Plan, report: &mut PassReport) -> (bool, bool) {
        use futures::StreamExt;
        let timeout = self.cfg.request_timeout_ms;
        let (backend, store, sem) = (self.backend.as_ref(), &self.store, &self.requests);
        let mut sent = futures::stream::iter(planned.into_chunks())
            .map(|chunk| {
                let batch = chunk.build(&lock(store));
                async move {
                    let verdicts = execute_one(backend, &batch, sem, timeout).await;
                    (batch, verdicts)
                }
            })
            .buffered(self.cfg.max_concurrent_requests.max(1));
        let (mut failsafe_seen, mut answered) = (false, false);
        while let Some((batch, verdicts)) = sent.next().await {
            let r = batch.record(&mut lock(store), verdicts, Instant::now(), unix_now());
            report.txs_checked += r.checked;
            report.invalid_found += r.invalid;
            failsafe_seen |= r.failsafe;
            answered |= r.answered;
        }
        (failsafe_seen, answered)
    }

    fn plan_params(&self, kind: PassKind, schedule: &Schedule, now: Instant) -> PlanParams {
        let full_every = self.cfg.full_interval_ms;
        let next_full_in = match (kind, schedule.last_full) {
            (PassKind::Full, _) | (_, None) => full_every,
            (PassKind::Near, Some(t)) => {
                full_every.saturating_sub(now.saturating_duration_since(t))
            }
        };
        PlanParams {
            near_blocks: self.cfg.near_blocks,
            block_time: self.cfg.block_time_secs,
            system_gas_margin: self.cfg.system_gas_margin,
            min_safety: self.cfg.min_safety,
            chain_id: self.cfg.chain_id.map(U256::from),
            interval: self.cfg.interval_ms,
            next_full_in,
            max_checks_per_request: self.cfg.max_checks_per_request,
        }
    }

    /// Sends the planned checks and records their verdicts. `count_skips`: the snapshot's
    /// skipped txs are new (a full read); the mirror counts its own at intake.
    async fn finish(
        &self,
        prepared: Prepared,
        kind: PassKind,
        started: Instant,
        mut schedule: tokio::sync::MutexGuard<'_, Schedule>,
        count_skips: bool,
    ) -> PassReport {
        let m = metrics();
        let Prepared { sync, planned, head, pool_txs, undecodable, over_limit } = prepared;
        let (undecodable, over_limit) =
            if count_skips { (undecodable, over_limit) } else { (0, 0) };
        let mut report = PassReport {
            kind: Some(kind),
            head,
            pool_txs,
            presumed_blocks: planned.presumed_blocks,
            blocks_checked: planned.blocks_checked,
            requests: planned.requests(),
            invalid_found: sync.malformed,
            forgotten: sync.removed,
            skipped: undecodable + over_limit + sync.over_limit,
            ..Default::default()
        };
        let (failsafe_seen, answered) = self.execute_plan(planned, &mut report).await;
        let (now, now_unix) = (Instant::now(), unix_now());
        report.started_at = now_unix.saturating_sub(started.elapsed().as_secs());
        {
            let mut store = lock(&self.store);
            report.invalid_found += store.expire(now, now_unix);
            // Only a pass that got answers, none of them failsafe, clears the flag.
            if failsafe_seen {
                store.set_failsafe(true);
            } else if answered {
                store.set_failsafe(false);
            }
            if lock(&self.acted).observe(&store, now) {
                store.set_failsafe(true);
            }
            report.failsafe = store.failsafe();
            report.tracked = store.len();
        }
        if kind == PassKind::Full {
            schedule.last_full = Some(now);
        }
        drop(schedule);
        report.duration_ms = started.elapsed().as_millis() as u64;

        let state = &m.revalidator_state;
        state.with_label_values(&["pool_txs"]).set(report.pool_txs as i64);
        state.with_label_values(&["tracked_txs"]).set(report.tracked as i64);
        state.with_label_values(&["presumed_blocks"]).set(i64::from(report.presumed_blocks));
        state.with_label_values(&["failsafe"]).set(i64::from(report.failsafe));
        m.revalidator_requests_per_pass
            .with_label_values(&[kind.as_str()])
            .observe(report.requests as f64);
        m.revalidator_pass_duration
            .with_label_values(&[kind.as_str()])
            .observe(started.elapsed().as_secs_f64());
        m.revalidator_skipped.with_label_values(&["undecodable"]).inc_by(undecodable as u64);
        m.revalidator_skipped
            .with_label_values(&["over_limit"])
            .inc_by((over_limit + sync.over_limit) as u64);
        tracing::debug!(target: "interop_gate::revalidator", ?report, "pass done");
        let mut last = lock(&self.last);
        last.passes += 1;
        last.last_pass = Some(report.clone());
        report
    }

    /// Re-checks at once the tracked txs with a message on `chain_id` at or after block `from`
    /// (a reorg replaced that block, and with it its descendants), one request per presumed
    /// block, and publishes what is now invalid.
    pub async fn recheck_reorged(&self, chain_id: U256, from: u64) -> RecheckReport {
        self.recheck_where("reorg", |t| recheck::rests_on_reorged(t, chain_id, from)).await
    }

    /// Re-checks at once the txs judged "not yet known" for a message in a block `advance` says
    /// just reached the head `min_safety` is judged by (nothing for another head).
    pub async fn recheck_advanced(&self, advance: &HeadAdvance) -> RecheckReport {
        if advance.tag != HeadTag::for_safety(self.cfg.min_safety) {
            return RecheckReport::default();
        }
        self.recheck_where("head", |t| recheck::waits_on(t, advance)).await
    }

    /// One event re-check (`cause`: `reorg` or `head`) of the tracked txs `affected` selects.
    async fn recheck_where(
        &self,
        cause: &'static str,
        affected: impl Fn(&super::tracker::TrackedTx) -> bool,
    ) -> RecheckReport {
        let started = Instant::now();
        let params = RecheckParams {
            min_safety: self.cfg.min_safety,
            chain_id: self.cfg.chain_id.map(U256::from),
            timeout_secs: recheck::timeout_secs(self.cfg.interval_ms),
            max_checks_per_request: self.cfg.max_checks_per_request,
        };
        let batches = plan_affected(&lock(&self.store), affected, &params);
        let timeout = self.cfg.request_timeout_ms;
        let verdicts = execute(self.backend.as_ref(), &batches, &self.requests, timeout).await;
        let mut report = RecheckReport { requests: batches.len(), ..Default::default() };
        let (now, now_unix) = (Instant::now(), unix_now());
        let mut store = lock(&self.store);
        for (batch, verdicts) in batches.iter().zip(verdicts) {
            let r = batch.record(&mut store, verdicts, now, now_unix);
            report.txs += r.checked;
            report.invalid_found += r.invalid;
            if r.failsafe {
                store.set_failsafe(true);
            }
        }
        drop(store);
        self.rechecks.add(cause, &report);
        let m = metrics();
        m.revalidator_requests_per_pass
            .with_label_values(&["event"])
            .observe(report.requests as f64);
        m.revalidator_pass_duration
            .with_label_values(&["event"])
            .observe(started.elapsed().as_secs_f64());
        report
    }

    /// Runs passes every `interval` until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.cfg.interval_ms);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.run_due_pass() => if let Err(e) = r {
                    tracing::warn!(target: "interop_gate::revalidator", error = %e, "pass skipped: cannot read the pool");
                },
            }
        }
    }

    /// The drop-in `checkAccessList`: from the store when a tracked tx with these messages was
    /// checked for a covering window, else from the backend (bounded by `request_timeout_ms`).
    /// `entries` is how many inbox entries were sent (bounded like a tx's).
    pub async fn check_access_list(&self, req: &CheckRequest, entries: usize) -> Verdict {
        if entries > self.cfg.max_inbox_entries {
            return self.too_many_entries(entries);
        }
        let cached = lock(&self.store).lookup(&req.messages, req.min_safety, &req.descriptor);
        let answers = &metrics().revalidator_checks;
        if let Some(answer) = cached {
            answers.with_label_values(&["cache"]).inc();
            return match answer {
                Ok(()) => Verdict::Valid { until: req.descriptor.end().unwrap_or(u64::MAX) },
                Err(r) => Verdict::Invalid(r),
            };
        }
        answers.with_label_values(&["forward"]).inc();
        let timeout = self.cfg.request_timeout_ms;
        let verdict =
            tokio::time::timeout(timeout, self.backend.check(req)).await.unwrap_or_else(|_| {
                Verdict::Unavailable(format!("backend timed out after {} ms", timeout.as_millis()))
            });
        if verdict.is_failsafe() {
            lock(&self.store).set_failsafe(true);
        }
        verdict
    }

    /// The drop-in's answer to a list of more than `max_inbox_entries` entries: invalid, as the
    /// same list in a pooled tx is.
    pub fn too_many_entries(&self, entries: usize) -> Verdict {
        let why = format!("{entries} inbox entries, the limit is {}", self.cfg.max_inbox_entries);
        Verdict::Invalid(Rejection::new(codes::ACCESS_LIST_TOO_LARGE, why))
    }

    /// The failsafe flag.
    pub fn failsafe(&self) -> bool {
        lock(&self.store).failsafe()
    }

    /// A page of the invalid feed.
    pub fn invalid_transactions(&self, cursor: Option<u64>) -> FeedPage {
        lock(&self.store).feed().read(cursor, self.cfg.feed_page_size)
    }

    /// Wakes on every feed publish, and the cursor of the next entry, read together (so a
    /// subscriber that starts "from now" misses nothing published after this call).
    pub fn feed_updates(&self) -> (tokio::sync::watch::Receiver<u64>, u64) {
        let store = lock(&self.store);
        (store.feed().subscribe(), store.feed().next_seq())
    }

    /// What is known about one tx.
    pub fn transaction_status(&self, hash: &B256) -> serde_json::Value {
        lock(&self.store).view(hash)
    }

    /// The last pass, the last pool error, and the current flag and feed bounds.
    pub fn status(&self) -> serde_json::Value {
        let last = lock(&self.last).clone();
        let store = lock(&self.store);
        serde_json::json!({
            "lastPass": last.last_pass,
            "passes": last.passes,
            "lastError": last.last_error,
            "lastErrorAt": last.last_error_at,
            "tracked": store.len(),
            "failsafe": store.failsafe(),
            "mirror": self.follower.as_ref().map(|f| f.status()),
            "rechecks": self.rechecks.view(),
            "invalidStillPooled": lock(&self.acted).view(),
            "feed": {
                "oldestCursor": format!("{:#x}", store.feed().oldest()),
                "nextCursor": format!("{:#x}", store.feed().next_seq()),
            },
            "config": {
                "intervalMs": self.cfg.interval_ms,
                "fullIntervalMs": self.cfg.full_interval_ms,
                "nearBlocks": self.cfg.near_blocks,
                "blockTimeSecs": self.cfg.block_time_secs,
                "minSafety": self.cfg.min_safety,
            },
        })
    }
}
