//! Whether the EL acted on the feed: published-invalid txs still in the pool are counted and
//! aged in `interop_revalidationStatus`, their time in the pool is observed when they leave, and
//! the optional escalation turns the failsafe answer on while one stays too long.

use crate::revalidator_support;

use std::time::Duration;

use interop_gate::dev::el_pool::generate_pool;
use interop_gate::revalidator::PassKind;
use revalidator_support::{harness, msg};
use serde_json::json;

/// A sample of `interop_gate_<name>` (first line that starts with it).
fn sample(name: &str) -> f64 {
    let text = interop_gate::metrics::metrics().render();
    text.lines()
        .find(|l| l.starts_with(&format!("interop_gate_{name} ")))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_published_tx_still_pooled_is_counted_until_the_el_drops_it_and_never_escalates_by_default(
) {
    let h = harness(|_| {}).await;
    let pool = generate_pool(4, 5, 2, |i| vec![msg(i)]);
    h.el.insert(pool.clone());
    h.backend.mark_invalid(&msg(4));
    h.reval.core.run_pass(PassKind::Full).await.unwrap();
    let left_before = sample("revalidator_invalid_pooled_seconds_count");
    for _ in 0..3 {
        h.reval.core.run_pass(PassKind::Full).await.unwrap();
        let s = h.rpc("interop_revalidationStatus", json!([])).await.unwrap();
        assert_eq!(s["invalidStillPooled"]["count"], 1, "{s}");
        assert_eq!(s["invalidStillPooled"]["escalated"], false);
        assert_eq!(s["invalidStillPooled"]["escalateFailsafeAfterSecs"], json!(null));
        assert_eq!(h.rpc("admin_getFailsafeEnabled", json!([])).await.unwrap(), false);
    }
    // The EL drops it: no longer counted, its time in the pool observed.
    assert!(h.el.remove(&pool[4].hash));
    h.reval.core.run_pass(PassKind::Full).await.unwrap();
    let s = h.rpc("interop_revalidationStatus", json!([])).await.unwrap();
    assert_eq!(s["invalidStillPooled"]["count"], 0, "{s}");
    assert_eq!(s["invalidStillPooled"]["oldestSecs"], json!(null));
    assert!(sample("revalidator_invalid_pooled_seconds_count") > left_before);
}

#[tokio::test]
async fn escalation_turns_the_failsafe_answer_on_while_a_published_tx_stays_pooled_too_long() {
    let h = harness(|c| c.escalate_failsafe_after_secs = 1).await;
    let pool = generate_pool(4, 5, 2, |i| vec![msg(i)]);
    h.el.insert(pool.clone());
    h.backend.mark_invalid(&msg(6));
    h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!(h.rpc("admin_getFailsafeEnabled", json!([])).await.unwrap(), false);
    let escalations = sample("revalidator_failsafe_escalations_total");
    // The threshold is in whole seconds: wait it out once.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let r = h.reval.core.run_pass(PassKind::Near).await.unwrap();
    assert!(r.failsafe);
    assert_eq!(h.rpc("admin_getFailsafeEnabled", json!([])).await.unwrap(), true);
    let s = h.rpc("interop_revalidationStatus", json!([])).await.unwrap();
    assert_eq!(s["invalidStillPooled"]["escalated"], true, "{s}");
    assert_eq!(s["invalidStillPooled"]["escalateFailsafeAfterSecs"], 1);
    assert!(sample("revalidator_failsafe_escalations_total") > escalations);
    // A pass that gets answers keeps it on while the tx is pooled...
    h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!(h.rpc("admin_getFailsafeEnabled", json!([])).await.unwrap(), true);
    // ...and the first pass after the EL evicted it clears it.
    assert!(h.el.remove(&pool[6].hash));
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert!(!r.failsafe);
    assert_eq!(h.rpc("admin_getFailsafeEnabled", json!([])).await.unwrap(), false);
    let s = h.rpc("interop_revalidationStatus", json!([])).await.unwrap();
    assert_eq!(
        s["invalidStillPooled"],
        json!({"count": 0, "oldestSecs": null, "escalateFailsafeAfterSecs": 1, "escalated": false})
    );
}
