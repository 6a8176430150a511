//! The EL-facing API over real HTTP: the invalid feed and its cursor, the failsafe flag, the
//! not-yet-known deadline, and the drop-in `checkAccessList` answered from results or forwarded.

use crate::revalidator_support;

use std::collections::HashSet;
use std::time::Duration;

use alloy_primitives::B256;
use interop_gate::dev::el_pool::generate_pool;
use interop_gate::interop::encode_entries;
use interop_gate::revalidator::PassKind;
use revalidator_support::{harness, msg, HEAD};
use serde_json::{json, Value};

fn descriptor(timestamp: u64, timeout: u64) -> Value {
    json!({ "timestamp": format!("{timestamp:#x}"), "timeout": format!("{timeout:#x}"), "chainID": "10" })
}

#[tokio::test]
async fn invalid_txs_appear_exactly_once_through_the_cursor() {
    let h = harness(|c| c.feed_page_size = 3).await;
    // 100 interop txs among 500.
    let pool = generate_pool(50, 10, 5, |i| vec![msg(i)]);
    assert_eq!(pool.iter().filter(|t| !t.access_list.0.is_empty()).count(), 100);
    h.el.insert(pool.clone());
    let first_bad: Vec<usize> = vec![0, 5, 10, 55, 120, 300, 495];
    for i in &first_bad {
        h.backend.mark_invalid(&msg(*i));
    }
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!(r.invalid_found, 7);

    let (seen, cursor) = h.drain_feed(Value::Null).await;
    assert_eq!(seen.len(), 7);
    // Nothing new across more passes and polls: invalid txs are never re-checked nor re-published.
    let batch_checks_before: usize = h.backend.take_batches().iter().map(Vec::len).sum();
    assert_eq!(batch_checks_before, 100);
    for kind in [PassKind::Near, PassKind::Full, PassKind::Near] {
        h.reval.core.run_pass(kind).await.unwrap();
        let (again, c) = h.drain_feed(cursor.clone()).await;
        assert!(again.is_empty());
        assert_eq!(c, cursor);
    }
    let rechecked: usize = h.backend.take_batches().iter().map(Vec::len).sum();
    assert!(rechecked > 0);
    // `generate_pool` gives tx `i` the message `msg(i)`.
    let bad_hashes: HashSet<B256> = first_bad.iter().map(|i| pool[*i].hash).collect();
    assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), bad_hashes);

    // Three more go bad: exactly those three come through the old cursor, in two pages.
    for i in [200, 205, 490] {
        h.backend.mark_invalid(&msg(i));
    }
    h.reval.core.run_pass(PassKind::Full).await.unwrap();
    let page = h.rpc("interop_invalidTransactions", json!([cursor])).await.unwrap();
    assert_eq!(page["entries"].as_array().unwrap().len(), 3);
    assert_eq!(page["more"], false);
    assert_eq!(page["truncated"], false);
    let e = &page["entries"][0];
    assert_eq!(e["code"], -320600);
    assert!(e["detectedAt"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(e["data"]["chainId"], "901");
    let (more, _) = h.drain_feed(cursor.clone()).await;
    assert_eq!(more.len(), 3);
    assert!(more.iter().all(|h| !seen.contains(h)));
    // A decimal cursor is the same cursor.
    let hex = cursor.as_str().unwrap().trim_start_matches("0x");
    let dec = u64::from_str_radix(hex, 16).unwrap().to_string();
    let page = h.rpc("interop_invalidTransactions", json!([dec])).await.unwrap();
    assert_eq!(page["entries"].as_array().unwrap().len(), 3);
    // A cursor this process never issued restarts from the oldest kept, and says so.
    let page = h.rpc("interop_invalidTransactions", json!(["0x1"])).await.unwrap();
    assert_eq!(page["truncated"], true);
    assert_eq!(page["entries"].as_array().unwrap().len(), 3, "page size");
    assert_eq!(
        h.rpc("interop_invalidTransactions", json!(["nope"])).await.unwrap_err()["code"],
        -32602
    );
}

#[tokio::test]
async fn bounded_history_tells_a_late_poller_it_missed_entries() {
    let h = harness(|c| c.feed_capacity = 4).await;
    h.el.insert(generate_pool(10, 1, 1, |i| vec![msg(i)]));
    let (_, start) = h.drain_feed(Value::Null).await;
    for i in 0..10 {
        h.backend.mark_invalid(&msg(i));
    }
    h.reval.core.run_pass(PassKind::Full).await.unwrap();
    let page = h.rpc("interop_invalidTransactions", json!([start])).await.unwrap();
    assert_eq!(page["truncated"], true);
    assert_eq!(page["entries"].as_array().unwrap().len(), 4);
    let oldest = page["oldestCursor"].as_str().unwrap();
    let start = start.as_str().unwrap();
    let n = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    assert_eq!(n(oldest) - n(start), 6);
}

#[tokio::test]
async fn failsafe_flag_follows_the_backend_and_publishes_nothing() {
    let h = harness(|_| {}).await;
    h.el.insert(generate_pool(20, 1, 2, |i| vec![msg(i)]));
    assert_eq!(h.rpc("admin_getFailsafeEnabled", json!([])).await.unwrap(), false);
    h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!(h.rpc("admin_getFailsafeEnabled", json!([])).await.unwrap(), false);

    h.backend.set_failsafe(true);
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert!(r.failsafe);
    assert_eq!(r.invalid_found, 0);
    assert_eq!(h.rpc("admin_getFailsafeEnabled", json!([])).await.unwrap(), true);
    let (feed, _) = h.drain_feed(Value::Null).await;
    assert!(feed.is_empty(), "failsafe is not a verdict on the txs");
    // During failsafe a known tx is not answered from earlier results: the backend decides.
    let entries = encode_entries(&[msg(0)]);
    let singles = h.backend.single_calls();
    let err = h
        .rpc(
            "interop_checkAccessList",
            json!([entries, "cross-unsafe", descriptor(HEAD.timestamp + 1, 0)]),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], -320602);
    assert_eq!(h.backend.single_calls(), singles + 1);

    h.backend.set_failsafe(false);
    let r = h.reval.core.run_pass(PassKind::Near).await.unwrap();
    assert!(!r.failsafe);
    assert_eq!(h.rpc("admin_getFailsafeEnabled", json!([])).await.unwrap(), false);
    let s = h.rpc("interop_revalidationStatus", json!([])).await.unwrap();
    assert_eq!(s["failsafe"], false);
}

#[tokio::test]
async fn not_yet_known_is_retried_then_published_at_its_deadline() {
    let h = harness(|c| c.max_unknown_secs = std::time::Duration::from_secs(1)).await;
    // A small gas limit spreads 40 txs over several presumed blocks, some beyond the near ones.
    h.el.set_head(interop_gate::revalidator::pool::Head { gas_limit: 400_000, ..HEAD });
    let pool = generate_pool(40, 1, 1, |i| vec![msg(i)]);
    h.el.insert(pool.clone());
    let soon = pool.iter().map(|t| t.hash).collect::<Vec<_>>();
    h.backend.mark_unknown(&msg(1), true);
    h.backend.mark_unknown(&msg(2), true);
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!(r.invalid_found, 0);
    let s = h.rpc("interop_transactionStatus", json!([soon[1]])).await.unwrap();
    assert_eq!(s["status"], "pending");
    assert_eq!(s["lastVerdict"]["kind"], "not_yet_known");
    assert_eq!(s["lastVerdict"]["code"], -321401);
    // Retried on the next near pass whatever its presumed block; msg(1) is now known.
    h.backend.mark_unknown(&msg(1), false);
    h.backend.take_batches();
    h.reval.core.run_pass(PassKind::Near).await.unwrap();
    let checked: HashSet<B256> =
        h.backend.take_batches().iter().flatten().map(|r| r.messages[0].checksum).collect();
    assert!(checked.contains(&msg(1).checksum) && checked.contains(&msg(2).checksum));
    let s = h.rpc("interop_transactionStatus", json!([soon[1]])).await.unwrap();
    assert_eq!(s["status"], "valid");
    // msg(2) stays unknown past its 1 s deadline: published once, with the soft code.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let r = h.reval.core.run_pass(PassKind::Near).await.unwrap();
    assert_eq!(r.invalid_found, 1);
    let page = h.rpc("interop_invalidTransactions", json!([])).await.unwrap();
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["hash"], json!(soon[2]));
    assert_eq!(entries[0]["code"], -321401);
    h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!(h.drain_feed(Value::Null).await.0.len(), 1);
}

#[tokio::test]
async fn drop_in_check_is_answered_from_results_for_known_entries_and_forwarded_otherwise() {
    let h = harness(|_| {}).await;
    h.el.insert(generate_pool(10, 1, 1, |i| vec![msg(i)]));
    h.backend.mark_invalid(&msg(3));
    h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!(h.backend.single_calls(), 0);

    // Known, valid: answered from the pass (a builder asking for the next block, timeout 0).
    let known = encode_entries(&[msg(0), msg(0)]); // duplicates are fine
    for method in ["interop_checkAccessList", "supervisor_checkAccessList"] {
        let ok =
            h.rpc(method, json!([known, "cross-unsafe", descriptor(HEAD.timestamp + 1, 0)])).await;
        assert_eq!(ok, Ok(Value::Null), "{method}");
    }
    // Weaker safety is covered too.
    let ok = h
        .rpc("interop_checkAccessList", json!([known, "unsafe", descriptor(HEAD.timestamp + 2, 0)]))
        .await;
    assert_eq!(ok, Ok(Value::Null));
    assert_eq!(h.backend.single_calls(), 0, "no backend call for known entries");

    // Known, invalid: the supervisor's code and the failing message, still from the pass, for
    // an asked window that contains the one the pass judged (the next block, one interval).
    let bad = encode_entries(&[msg(3)]);
    let err = h
        .rpc(
            "interop_checkAccessList",
            json!([bad, "cross-unsafe", descriptor(HEAD.timestamp, 86_400)]),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], -320600);
    assert_eq!(err["data"]["message"]["logIndex"], 3);
    assert_eq!(err["data"]["message"]["blockNumber"], 3);
    assert_eq!(h.backend.single_calls(), 0);

    // Not covered by what was checked: forwarded, one backend call each.
    let cases = [
        (encode_entries(&[msg(999)]), "cross-unsafe", descriptor(HEAD.timestamp + 1, 0)), // unknown
        (known.clone(), "finalized", descriptor(HEAD.timestamp + 1, 0)), // stronger safety
        (known.clone(), "cross-unsafe", descriptor(HEAD.timestamp, 86_400)), // beyond valid-until
        (encode_entries(&[msg(0), msg(1)]), "cross-unsafe", descriptor(HEAD.timestamp + 1, 0)),
    ];
    for (i, (entries, safety, d)) in cases.iter().enumerate() {
        let ok = h.rpc("interop_checkAccessList", json!([entries, safety, d])).await;
        assert_eq!(ok, Ok(Value::Null));
        assert_eq!(h.backend.single_calls(), i + 1);
    }
    // Malformed entries never reach the backend.
    let err = h
        .rpc(
            "interop_checkAccessList",
            json!([[B256::repeat_byte(3)], "cross-unsafe", descriptor(1, 0)]),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], -32602);
    assert_eq!(h.backend.single_calls(), cases.len());
    let metrics = interop_gate::metrics::metrics().render();
    assert!(metrics.contains("revalidator_checks_total{answer=\"cache\"}"));
    assert!(metrics.contains("revalidator_checks_total{answer=\"forward\"}"));
}
