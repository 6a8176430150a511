//! Token leases of shared rate limits (`redis.lease_*`): replicas take small batches of a hot
//! bucket's tokens in one script call and spend them locally. Real Redis, real replicas (the
//! harness of [`crate::shared_state`]); script calls are counted by Redis itself.

use std::time::{Duration, Instant};

use interop_gate::config::RateLimit;

use crate::shared_state::{cluster, processes, Cluster, LIMITED};

/// Rate decisions that went to Redis so far: one `EVALSHA` each (after the first, which Redis
/// answers `NOSCRIPT` and the client retries after loading the script).
async fn scripts(c: &Cluster) -> u64 {
    c.redis.command_calls("evalsha").await.unwrap()
}

#[tokio::test]
async fn leased_tokens_are_not_double_spent_across_replica_processes() {
    // A burst of 600 (lease size 12 with the default 2% of the burst), 1 token/s refill, spread
    // round robin over 3 replica processes: leases cut the script calls to a fraction of the
    // decisions, and the cluster still admits the global budget (never more; within 10% less).
    let c = processes(3, |cfg| {
        cfg.ingress.ip_rate = RateLimit { per_second: 1, burst: 600 };
    })
    .await;
    let (started, before) = (Instant::now(), scripts(&c).await);
    let ok = c.admitted(900, LIMITED, None).await;
    let refilled = started.elapsed().as_secs() as usize + 1;
    let calls = scripts(&c).await - before;
    assert!(ok <= 600 + refilled, "admitted {ok}: more than the budget 600 (+{refilled} refilled)");
    assert!(ok >= 540, "admitted {ok}: leases stranded more than 10% of the budget 600");
    // 600 admitted with 1 script call each would be 600 (+300 refusals); leases of up to 12.
    assert!(calls < 300 + 600 / 4, "{calls} script calls for {ok} admitted decisions");
}

#[tokio::test]
async fn leased_tokens_not_spent_within_the_lease_lifetime_are_dropped() {
    // Burst 200, a tenth of it per lease at most (20), leases live 1 s, 1 token/s refill.
    let c = cluster(2, |cfg| {
        cfg.ingress.ip_rate = RateLimit { per_second: 1, burst: 200 };
        cfg.redis.lease_burst_fraction = 0.1;
        cfg.redis.lease_ms = Duration::from_millis(1_000);
    })
    .await;
    // Replica 0 warms the key up (batches of 1, 2, 4, 8, 16 as fast as it spends them): fewer
    // script calls than decisions, and it is left holding leased tokens.
    let before = scripts(&c).await;
    for _ in 0..16 {
        assert!(c.admitted_on(0, LIMITED, None).await);
    }
    let warm = scripts(&c).await - before;
    assert!(warm < 16, "{warm} script calls for 16 decisions: no lease was used");
    // Replica 1 drains Redis (200 calls at once; some are refused: Redis is empty).
    let calls = (0..200).map(|_| c.admitted_on(1, LIMITED, None));
    let drained = futures::future::join_all(calls).await.into_iter().filter(|ok| *ok).count();
    assert!(drained < 200, "replica 1 was never refused");
    let emptied = Instant::now();
    // Past replica 0's lease lifetime its leftover tokens are gone: each call asks Redis, which
    // has only what refilled since it was emptied.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let before = scripts(&c).await;
    let mut ok = 0;
    for _ in 0..12 {
        ok += c.admitted_on(0, LIMITED, None).await as usize;
    }
    let refilled = emptied.elapsed().as_secs() as usize + 1;
    assert!(scripts(&c).await - before >= 12, "expired lease: every decision asks Redis");
    assert!(ok <= refilled, "{ok} admitted after expiry, only {refilled} refilled");
}

#[tokio::test]
async fn a_small_burst_is_never_leased_and_stays_exact() {
    // Burst 20 is below 1 / lease_burst_fraction (50): one script call per decision, and 3
    // replicas together admit exactly the budget (plus at most 1 refilled).
    let c = cluster(3, |cfg| {
        cfg.ingress.ip_rate = RateLimit { per_second: 1, burst: 20 };
    })
    .await;
    assert!(c.admitted_on(0, LIMITED, None).await, "the first call (it loads the script)");
    let before = scripts(&c).await;
    let ok = 1 + c.admitted(59, LIMITED, None).await;
    assert!((20..=21).contains(&ok), "admitted {ok}, budget 20");
    assert_eq!(scripts(&c).await - before, 59, "every decision is a script call");
}
