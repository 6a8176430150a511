//! Interop activation per source chain: a message initiated in a block at or before the source
//! chain's *activation block* (the first block whose timestamp is at or after the chain's
//! `interop_time`) is invalid (specs `interop/messaging.md`, timestamp invariant; enforced by
//! op-interop-filter's cross validator since optimism PR #22886).
//!
//! op-interop-filter decides it from timestamps and the rollup config's block time; the light
//! backend has no block time, so it resolves the activation block from the chain itself: a binary
//! search over `eth_getBlockByNumber` (at most ~64 lookups, through the chain's header cache),
//! done once and kept for the life of the process. Until the chain reaches `interop_time` nothing
//! is kept and every message that claims a later timestamp is "not known yet".
//!
//! The rule is cheap for most messages: one initiated before `interop_time` is refused without
//! any lookup (its block, whose timestamp must match, is before the activation block). Only a
//! message at or after `interop_time` needs the block number, to refuse the activation block
//! itself.

use std::future::Future;

use tokio::sync::OnceCell;

use super::light::{Chain, Header};
use super::{Rejection, Verdict};
use crate::interop::Message;
use crate::rpc::codes;

/// The headers a search reads: the chain's RPC in production, a vector in unit tests.
pub trait Headers: Sync {
    /// The current head.
    fn latest(&self) -> impl Future<Output = Result<Header, String>> + Send;
    /// The canonical header at `number` (None above the head).
    fn at(&self, number: u64) -> impl Future<Output = Result<Option<Header>, String>> + Send;
}

impl Headers for Chain {
    fn latest(&self) -> impl Future<Output = Result<Header, String>> + Send {
        self.head("latest")
    }

    fn at(&self, number: u64) -> impl Future<Output = Result<Option<Header>, String>> + Send {
        self.header(number)
    }
}

/// One chain's activation rule and, once found, its activation block.
#[derive(Debug, Default)]
pub struct Activation {
    interop_time: Option<u64>,
    block: OnceCell<u64>,
}

/// Why a search found no block.
enum Miss {
    /// The head is still before `interop_time`.
    NotReached,
    /// A lookup gave no answer.
    NoAnswer(String),
}

impl Activation {
    /// The rule for a chain whose interop fork time is `interop_time` (None: no rule).
    pub fn new(interop_time: Option<u64>) -> Self {
        Self { interop_time, block: OnceCell::new() }
    }

    /// The configured fork time.
    pub fn interop_time(&self) -> Option<u64> {
        self.interop_time
    }

    /// The activation block: `Some(n)` once the chain has reached `interop_time` (kept from then
    /// on), `None` while it has not, or when no rule is configured. An error means no answer.
    /// Concurrent callers share one search.
    pub async fn block<H: Headers>(&self, chain: &H) -> Result<Option<u64>, String> {
        let Some(t) = self.interop_time else { return Ok(None) };
        if let Some(n) = self.block.get() {
            return Ok(Some(*n));
        }
        let found = self
            .block
            .get_or_try_init(|| async {
                let latest = chain.latest().await.map_err(Miss::NoAnswer)?;
                if latest.timestamp < t {
                    return Err(Miss::NotReached);
                }
                let n = first_at_or_after(chain, t, latest).await.map_err(Miss::NoAnswer)?;
                tracing::info!(interop_time = t, block = n, "interop activation block resolved");
                Ok(n)
            })
            .await;
        match found {
            Ok(n) => Ok(Some(*n)),
            Err(Miss::NotReached) => Ok(None),
            Err(Miss::NoAnswer(e)) => Err(e),
        }
    }
}

/// The first block whose timestamp is at or after `t`, knowing `latest` is one (timestamps
/// increase with the height). Binary search: at most 64 lookups.
#[tracing::instrument(level = "debug", skip(chain, latest), fields(head = latest.number))]
async fn first_at_or_after<H: Headers>(chain: &H, t: u64, latest: Header) -> Result<u64, String> {
    let (mut lo, mut hi) = (0u64, latest.number);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let h = chain
            .at(mid)
            .await?
            .ok_or_else(|| format!("block {mid} is missing below the head {}", latest.number))?;
        if h.timestamp >= t {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(hi)
}

impl Chain {
    /// This chain's interop activation block (see [`Activation::block`]).
    pub async fn activation_block(&self) -> Result<Option<u64>, String> {
        self.activation.block(self).await
    }
}

/// The activation rule for one message of `chain`: `None` when it passes (or no rule is
/// configured), else the verdict. A message before `interop_time` is refused without a lookup.
pub async fn check(chain: &Chain, m: &Message) -> Option<Verdict> {
    let t = chain.activation.interop_time()?;
    let invalid = |why: String| {
        Some(Verdict::Invalid(Rejection::new(codes::SUP_CONFLICTING_DATA, why).for_message(*m)))
    };
    if m.timestamp < t {
        return invalid(format!(
            "message {m} was initiated before chain {}'s interop activation (interop_time {t})",
            chain.id()
        ));
    }
    match chain.activation_block().await {
        Err(e) => Some(Verdict::Unavailable(format!(
            "chain {}: cannot resolve the interop activation block: {e}",
            chain.id()
        ))),
        Ok(None) => Some(Verdict::NotYetKnown(
            Rejection::new(
                codes::SUP_FUTURE_DATA,
                format!(
                    "chain {} has not reached its interop activation (interop_time {t}) yet",
                    chain.id()
                ),
            )
            .for_message(*m),
        )),
        Ok(Some(a)) if m.block_number <= a => invalid(format!(
            "message {m} is at or before chain {}'s interop activation block {a}",
            chain.id()
        )),
        Ok(Some(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    use alloy_primitives::B256;

    use super::*;

    /// Headers in memory, every lookup counted; `down` makes every lookup fail.
    #[derive(Default)]
    struct Mem {
        timestamps: Mutex<Vec<u64>>,
        lookups: AtomicU64,
        down: std::sync::atomic::AtomicBool,
    }

    impl Mem {
        fn new(timestamps: impl IntoIterator<Item = u64>) -> Self {
            Self { timestamps: Mutex::new(timestamps.into_iter().collect()), ..Self::default() }
        }

        fn header(&self, n: u64) -> Option<Header> {
            let ts = self.timestamps.lock().unwrap().get(n as usize).copied()?;
            Some(Header {
                number: n,
                hash: B256::with_last_byte(n as u8),
                timestamp: ts,
                parent_hash: B256::ZERO,
            })
        }

        fn fail(&self) -> Result<(), String> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err("connection refused".into());
            }
            Ok(())
        }
    }

    impl Headers for Mem {
        async fn latest(&self) -> Result<Header, String> {
            self.fail()?;
            let n = self.timestamps.lock().unwrap().len() as u64 - 1;
            Ok(self.header(n).unwrap())
        }

        async fn at(&self, number: u64) -> Result<Option<Header>, String> {
            self.fail()?;
            Ok(self.header(number))
        }
    }

    /// A chain of `n` blocks, 2 s apart, genesis at 1000.
    fn chain(n: u64) -> Mem {
        Mem::new((0..n).map(|i| 1_000 + 2 * i))
    }

    #[tokio::test]
    async fn finds_the_first_block_at_or_after_the_fork_time() {
        let c = chain(1_000);
        // Exactly on a block's timestamp: that block.
        assert_eq!(Activation::new(Some(1_000 + 2 * 300)).block(&c).await, Ok(Some(300)));
        // Between two blocks (unaligned fork time): the next one.
        assert_eq!(Activation::new(Some(1_000 + 2 * 300 + 1)).block(&c).await, Ok(Some(301)));
        // At or before genesis: genesis. On the head: the head.
        assert_eq!(Activation::new(Some(5)).block(&c).await, Ok(Some(0)));
        assert_eq!(Activation::new(Some(1_000 + 2 * 999)).block(&c).await, Ok(Some(999)));
    }

    #[tokio::test]
    async fn search_is_bounded_and_done_once() {
        let c = chain(1_000_000);
        let a = Activation::new(Some(1_000 + 2 * 123_457));
        assert_eq!(a.block(&c).await, Ok(Some(123_457)));
        let first = c.lookups.load(Ordering::SeqCst);
        assert!(first <= 22, "latest + at most log2(1e6) lookups, got {first}");
        for _ in 0..5 {
            assert_eq!(a.block(&c).await, Ok(Some(123_457)));
        }
        assert_eq!(c.lookups.load(Ordering::SeqCst), first, "kept once found");
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_search() {
        let c = chain(4_096);
        let a = Activation::new(Some(1_000 + 2 * 2_000));
        let all = futures::future::join_all((0..20).map(|_| a.block(&c))).await;
        assert!(all.iter().all(|r| *r == Ok(Some(2_000))), "{all:?}");
        assert!(c.lookups.load(Ordering::SeqCst) <= 14, "one search, not twenty");
    }

    #[tokio::test]
    async fn not_reached_is_not_kept_and_resolves_once_the_chain_gets_there() {
        let c = chain(10); // head at 1018
        let a = Activation::new(Some(1_021));
        assert_eq!(a.block(&c).await, Ok(None));
        c.timestamps.lock().unwrap().push(1_020);
        assert_eq!(a.block(&c).await, Ok(None), "1020 is still before 1021");
        c.timestamps.lock().unwrap().push(1_022);
        assert_eq!(a.block(&c).await, Ok(Some(11)));
    }

    #[tokio::test]
    async fn no_answer_is_an_error_and_is_not_kept() {
        let c = chain(100);
        let a = Activation::new(Some(1_050));
        c.down.store(true, Ordering::SeqCst);
        assert!(a.block(&c).await.is_err());
        c.down.store(false, Ordering::SeqCst);
        assert_eq!(a.block(&c).await, Ok(Some(25)));
    }

    #[tokio::test]
    async fn no_rule_means_no_lookup() {
        let c = chain(100);
        assert_eq!(Activation::new(None).block(&c).await, Ok(None));
        assert_eq!(c.lookups.load(Ordering::SeqCst), 0);
    }
}
