//! Batching of concurrent single checks: a layer around a backend that can answer many checks in
//! one wire request (the indexed supervisor: one JSON-RPC batch array, one HTTP request per
//! endpoint asked). On the ingress's cold path every tx is one single check; without this layer
//! each costs the gateway one HTTP request (syscalls, wake-ups, a connection's worth of
//! buffers) and the supervisor one HTTP request.
//!
//! - **No timer.** A check goes out at once when no batch is in flight, so a lone check never
//!   waits. Checks that arrive while a batch is in flight wait and form the next batch, sent as
//!   soon as a batch in flight answers. The batch size follows the load: 1 when idle, up to
//!   `max_size` when saturated.
//! - **Same question shape.** A batch only holds checks with the same executing descriptor
//!   (timestamp, timeout, chain) and minimum safety, as [`Backend::check_batch`] expects (the
//!   checks of one executing block). The oldest waiting check decides the shape; checks of
//!   another shape keep their place for a later batch.
//! - **Bounded.** At most `max_size` checks per batch and `max_in_flight` batches at once (a
//!   second batch starts before the first answers only when a full batch is waiting), and at most
//!   `max_queued` waiting checks: a check beyond that gets no answer
//!   ([`Verdict::Unavailable`]), which the ingress refuses retryably, never a verdict.
//! - **Each check its own verdict.** The inner backend answers a batch element by element (the
//!   JSON-RPC client matches answers by id; a wrong-id, truncated or short answer is no answer
//!   for the elements it does not answer); a batch that comes back shorter than asked is no
//!   answer for the checks without an element.
//! - A waiting check whose caller went away (a client that disconnected) is not sent.
//!
//! Batches of more than one check given to [`Backend::check_batch`] (the revalidator's) are
//! already one wire request: they go straight to the inner backend.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::oneshot;
use tracing::Instrument;

use super::{Backend, CheckRequest, DynBackend, Verdict};
use crate::config::SupervisorConfig;
use crate::interop::{ExecutingDescriptor, SafetyLevel};
use crate::metrics::metrics;

/// The bounds of a batching layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most checks in one batch (at least 1).
    pub max_size: usize,
    /// Most batches in flight (at least 1).
    pub max_in_flight: usize,
    /// Most checks waiting for a batch (at least 1).
    pub max_queued: usize,
}

impl BatchLimits {
    /// The `[supervisor]` batching keys.
    pub fn of_supervisor(cfg: &SupervisorConfig) -> Self {
        Self {
            max_size: cfg.batch_max_size,
            max_in_flight: cfg.batch_max_in_flight,
            max_queued: cfg.batch_max_queued,
        }
    }
}

/// What checks of one batch must share.
type Shape = (SafetyLevel, ExecutingDescriptor);

fn shape(req: &CheckRequest) -> Shape {
    (req.min_safety, req.descriptor)
}

/// A check waiting for a batch, and where its verdict goes.
struct Waiting {
    req: CheckRequest,
    answer: oneshot::Sender<Verdict>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Waiting>,
    in_flight: usize,
}

struct Shared {
    inner: DynBackend,
    limits: BatchLimits,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next batch: the oldest waiting check and, in arrival order, up to `max_size - 1` more
    /// of its shape. Checks whose caller went away are dropped first.
    fn take(&self, st: &mut State) -> Vec<Waiting> {
        st.queue.retain(|w| !w.answer.is_closed());
        let Some(first) = st.queue.pop_front() else { return Vec::new() };
        let s = shape(&first.req);
        let mut batch = vec![first];
        let mut i = 0;
        while batch.len() < self.limits.max_size && i < st.queue.len() {
            if shape(&st.queue[i].req) == s {
                if let Some(w) = st.queue.remove(i) {
                    batch.push(w);
                }
            } else {
                i += 1;
            }
        }
        batch
    }

    /// Sends one batch and hands each check its own verdict.
    async fn send(&self, batch: Vec<Waiting>) {
        let (reqs, answers): (Vec<CheckRequest>, Vec<oneshot::Sender<Verdict>>) =
            batch.into_iter().map(|w| (w.req, w.answer)).unzip();
        let backend = self.inner.name();
        metrics().check_batch_size.with_label_values(&[backend]).observe(reqs.len() as f64);
        let span = tracing::debug_span!("check_batch", backend, size = reqs.len());
        let mut verdicts = self.inner.check_batch(&reqs).instrument(span).await.into_iter();
        for answer in answers {
            let v = verdicts.next().unwrap_or_else(|| {
                Verdict::Unavailable("the backend gave no verdict for this check".into())
            });
            // The caller may have gone away meanwhile: nobody to tell.
            let _ = answer.send(v);
        }
    }
}

/// Gives the in-flight slot back if a batch's task ends without doing it (a panic below).
struct Slot {
    shared: Arc<Shared>,
    armed: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.armed {
            self.shared.lock().in_flight -= 1;
        }
    }
}

/// Sends `batch`, then the batches that formed meanwhile, until none is waiting; then gives its
/// in-flight slot back (under the same lock as the last look at the queue, so a check that
/// arrives meanwhile either is taken here or finds the slot free and starts a batch itself).
async fn run(shared: Arc<Shared>, mut batch: Vec<Waiting>) {
    let mut slot = Slot { shared: shared.clone(), armed: true };
    loop {
        shared.send(batch).await;
        let mut st = shared.lock();
        batch = shared.take(&mut st);
        if batch.is_empty() {
            st.in_flight -= 1;
            slot.armed = false;
            return;
        }
    }
}

/// The batching layer (see the module doc).
pub struct Batcher {
    shared: Arc<Shared>,
}

impl Batcher {
    /// Wraps `inner`; limits of 0 are taken as 1.
    pub fn new(inner: DynBackend, limits: BatchLimits) -> Self {
        let limits = BatchLimits {
            max_size: limits.max_size.max(1),
            max_in_flight: limits.max_in_flight.max(1),
            max_queued: limits.max_queued.max(1),
        };
        Self { shared: Arc::new(Shared { inner, limits, state: Mutex::default() }) }
    }

    /// Checks waiting for a batch now.
    pub fn queued(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Batches in flight now.
    pub fn in_flight(&self) -> usize {
        self.shared.lock().in_flight
    }

    /// Queues one check; starts a batch when none is in flight, or when a full batch waits and
    /// another may fly. `Err` (why) when the queue is full.
    fn enqueue(&self, req: &CheckRequest) -> Result<oneshot::Receiver<Verdict>, String> {
        let limits = self.shared.limits;
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut st = self.shared.lock();
            if st.queue.len() >= limits.max_queued {
                metrics()
                    .check_batch_queue_full
                    .with_label_values(&[self.shared.inner.name()])
                    .inc();
                return Err(format!(
                    "{} checks already wait for the {} backend",
                    st.queue.len(),
                    self.shared.inner.name()
                ));
            }
            st.queue.push_back(Waiting { req: req.clone(), answer: tx });
            let full = st.queue.len() >= limits.max_size && st.in_flight < limits.max_in_flight;
            if st.in_flight == 0 || full {
                st.in_flight += 1;
                Some(self.shared.take(&mut st))
            } else {
                None
            }
        };
        if let Some(batch) = start {
            // Its own task: the batch (and those that form behind it) must go on when the
            // caller that started it goes away.
            tokio::spawn(run(self.shared.clone(), batch));
        }
        Ok(rx)
    }
}

impl Backend for Batcher {
    /// The inner backend's name: the layer is transparent for verdict metrics and logs.
    fn name(&self) -> &'static str {
        self.shared.inner.name()
    }

    fn check<'a>(&'a self, req: &'a CheckRequest) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            match self.enqueue(req) {
                Ok(rx) => rx.await.unwrap_or_else(|_| {
                    Verdict::Unavailable("the batch carrying this check was lost".into())
                }),
                Err(why) => Verdict::Unavailable(why),
            }
        })
    }

    /// A batch of one is a single check (the policy layer sends single checks that way); a
    /// bigger batch is already one wire request and goes straight through.
    fn check_batch<'a>(&'a self, reqs: &'a [CheckRequest]) -> BoxFuture<'a, Vec<Verdict>> {
        Box::pin(async move {
            match reqs {
                [one] => vec![self.check(one).await],
                many => self.shared.inner.check_batch(many).await,
            }
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        self.shared.inner.ready()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use alloy_primitives::{B256, U256};
    use tokio::sync::Semaphore;

    use super::*;
    use crate::interop::Message;
    use crate::rpc::codes;
    use crate::validation::Rejection;

    /// A backend that answers each check by its message's log index (even: valid, odd: invalid),
    /// records every batch it was given, and answers only when the test lets it.
    struct Gated {
        gate: Semaphore,
        batches: Mutex<Vec<Vec<u32>>>,
        running: AtomicUsize,
        max_running: AtomicUsize,
        /// Answer one check fewer than asked (a short batch answer).
        short: bool,
    }

    impl Gated {
        fn new(short: bool) -> Arc<Self> {
            Arc::new(Self {
                gate: Semaphore::new(0),
                batches: Mutex::default(),
                running: AtomicUsize::new(0),
                max_running: AtomicUsize::new(0),
                short,
            })
        }

        fn batches(&self) -> Vec<Vec<u32>> {
            self.batches.lock().unwrap().clone()
        }
    }

    impl Backend for Gated {
        fn name(&self) -> &'static str {
            "gated"
        }

        fn check<'a>(&'a self, req: &'a CheckRequest) -> BoxFuture<'a, Verdict> {
            Box::pin(async move {
                crate::validation::only_verdict(self.check_batch(std::slice::from_ref(req)).await)
            })
        }

        fn check_batch<'a>(&'a self, reqs: &'a [CheckRequest]) -> BoxFuture<'a, Vec<Verdict>> {
            Box::pin(async move {
                self.batches
                    .lock()
                    .unwrap()
                    .push(reqs.iter().map(|r| r.messages[0].log_index).collect());
                let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_running.fetch_max(now, Ordering::SeqCst);
                self.gate.acquire().await.unwrap().forget();
                self.running.fetch_sub(1, Ordering::SeqCst);
                let n = if self.short { reqs.len() - 1 } else { reqs.len() };
                reqs[..n].iter().map(verdict_for).collect()
            })
        }
    }

    fn verdict_for(r: &CheckRequest) -> Verdict {
        if r.messages[0].log_index % 2 == 0 {
            Verdict::Valid { until: r.window().to }
        } else {
            Verdict::Invalid(Rejection::new(codes::SUP_CONFLICTING_DATA, "odd"))
        }
    }

    fn req(log_index: u32, ts: u64) -> CheckRequest {
        CheckRequest {
            messages: vec![Message {
                chain_id: U256::from(901),
                block_number: 1,
                timestamp: 1,
                log_index,
                checksum: B256::repeat_byte(3),
            }]
            .into(),
            min_safety: SafetyLevel::CrossUnsafe,
            descriptor: ExecutingDescriptor {
                timestamp: ts,
                timeout: Some(86_400),
                chain_id: None,
            },
        }
    }

    fn limits(max_size: usize, max_in_flight: usize, max_queued: usize) -> BatchLimits {
        BatchLimits { max_size, max_in_flight, max_queued }
    }

    /// Lets the spawned tasks reach their next await point.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    type Pending = tokio::task::JoinHandle<Verdict>;

    fn spawn_check(b: &Arc<Batcher>, r: CheckRequest) -> Pending {
        let b = b.clone();
        tokio::spawn(async move { b.check(&r).await })
    }

    #[tokio::test]
    async fn a_lone_check_goes_out_at_once_and_the_next_ones_wait_for_it_as_one_batch() {
        let inner = Gated::new(false);
        let b = Arc::new(Batcher::new(inner.clone(), limits(64, 4, 100)));
        let first = spawn_check(&b, req(0, 10));
        settle().await;
        assert_eq!(inner.batches(), vec![vec![0]], "sent alone, without waiting");
        let rest: Vec<Pending> = (1..=5).map(|i| spawn_check(&b, req(i, 10))).collect();
        settle().await;
        assert_eq!(b.queued(), 5);
        assert_eq!(inner.batches().len(), 1, "nothing else goes while one batch is in flight");
        inner.gate.add_permits(1);
        assert!(first.await.unwrap().is_valid());
        settle().await;
        assert_eq!(inner.batches(), vec![vec![0], vec![1, 2, 3, 4, 5]]);
        inner.gate.add_permits(1);
        for (i, h) in (1..=5).zip(rest) {
            assert_eq!(h.await.unwrap(), verdict_for(&req(i, 10)), "check {i} got its own verdict");
        }
        assert_eq!((b.queued(), b.in_flight()), (0, 0));
    }

    #[tokio::test]
    async fn a_batch_holds_one_question_shape_and_others_keep_their_place() {
        let inner = Gated::new(false);
        let b = Arc::new(Batcher::new(inner.clone(), limits(64, 1, 100)));
        let mut all = vec![spawn_check(&b, req(0, 10))];
        settle().await;
        for (i, ts) in [(1, 10), (2, 11), (3, 10), (4, 11)] {
            all.push(spawn_check(&b, req(i, ts)));
            settle().await;
        }
        inner.gate.add_permits(3);
        for h in all {
            h.await.unwrap();
        }
        assert_eq!(inner.batches(), vec![vec![0], vec![1, 3], vec![2, 4]]);
    }

    #[tokio::test]
    async fn a_full_batch_starts_early_up_to_the_in_flight_bound() {
        let inner = Gated::new(false);
        let b = Arc::new(Batcher::new(inner.clone(), limits(2, 2, 100)));
        let all: Vec<Pending> = (0..7).map(|i| spawn_check(&b, req(i, 10))).collect();
        settle().await;
        assert_eq!(b.in_flight(), 2, "a second batch started because a full one waited");
        assert_eq!(inner.max_running.load(Ordering::SeqCst), 2);
        inner.gate.add_permits(100);
        for h in all {
            h.await.unwrap();
        }
        assert!(inner.batches().iter().all(|b| b.len() <= 2));
        assert_eq!(inner.batches().iter().map(Vec::len).sum::<usize>(), 7, "each check sent once");
        assert!(inner.max_running.load(Ordering::SeqCst) <= 2);
    }

    #[tokio::test]
    async fn a_full_queue_gives_no_answer_and_never_a_verdict() {
        let inner = Gated::new(false);
        let b = Arc::new(Batcher::new(inner.clone(), limits(64, 1, 2)));
        let first = spawn_check(&b, req(0, 10));
        settle().await;
        let queued: Vec<Pending> = (1..=2).map(|i| spawn_check(&b, req(i, 10))).collect();
        settle().await;
        let before = metrics().check_batch_queue_full.with_label_values(&["gated"]).get();
        assert!(matches!(b.check(&req(3, 10)).await, Verdict::Unavailable(_)));
        assert_eq!(
            metrics().check_batch_queue_full.with_label_values(&["gated"]).get(),
            before + 1
        );
        inner.gate.add_permits(2);
        first.await.unwrap();
        for h in queued {
            h.await.unwrap();
        }
        assert_eq!(inner.batches(), vec![vec![0], vec![1, 2]], "the refused check was never sent");
    }

    #[tokio::test]
    async fn a_short_batch_answer_is_no_answer_for_the_checks_it_lacks() {
        let inner = Gated::new(true);
        let b = Arc::new(Batcher::new(inner.clone(), limits(64, 1, 100)));
        let first = spawn_check(&b, req(0, 10));
        settle().await;
        let rest: Vec<Pending> = (1..=3).map(|i| spawn_check(&b, req(i, 10))).collect();
        settle().await;
        inner.gate.add_permits(2);
        assert!(
            matches!(first.await.unwrap(), Verdict::Unavailable(_)),
            "a batch of one answered empty"
        );
        let got: Vec<Verdict> =
            futures::future::join_all(rest).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(got[0], verdict_for(&req(1, 10)));
        assert_eq!(got[1], verdict_for(&req(2, 10)));
        assert!(matches!(got[2], Verdict::Unavailable(_)));
    }

    #[tokio::test]
    async fn a_check_whose_caller_went_away_is_not_sent() {
        let inner = Gated::new(false);
        let b = Arc::new(Batcher::new(inner.clone(), limits(64, 1, 100)));
        let first = spawn_check(&b, req(0, 10));
        settle().await;
        let gone = spawn_check(&b, req(1, 10));
        let kept = spawn_check(&b, req(2, 10));
        settle().await;
        gone.abort();
        settle().await;
        inner.gate.add_permits(2);
        first.await.unwrap();
        assert!(kept.await.unwrap().is_valid());
        assert_eq!(inner.batches(), vec![vec![0], vec![2]]);
    }
}
