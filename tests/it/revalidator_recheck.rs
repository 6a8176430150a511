//! Event-driven re-checks: a source-chain reorg at block N re-checks at once exactly the tracked
//! txs with a message on that chain at N or after, one request per presumed block (with that
//! block's timestamp), and nothing else.

use crate::revalidator_support;

use alloy_primitives::{Address, U256};
use interop_gate::dev::el_pool::MockTx;
use interop_gate::interop::Message;
use interop_gate::revalidator::pool::{Fees, Head};
use interop_gate::revalidator::PassKind;
use revalidator_support::{harness, msg, HEAD};
use serde_json::json;

#[tokio::test]
async fn a_reorg_rechecks_only_the_txs_in_affected_blocks_one_request_per_presumed_block() {
    // Effective gas limit 100k: t1 fills block 0, t2 and t3 share block 1, t4 is in block 2.
    let h = harness(|_| {}).await;
    h.el.set_head(Head { gas_limit: 200_000, ..HEAD });
    let fees = |tip| Fees::Dynamic { max_fee: 10_000, max_priority_fee: tip };
    let other_chain = Message { chain_id: U256::from(902), ..msg(30) };
    let t1 = MockTx::new(Address::repeat_byte(1), 0, 60_000, fees(50), &[msg(10)]);
    let t2 = MockTx::new(Address::repeat_byte(2), 0, 60_000, fees(40), &[msg(11)]);
    let t3 = MockTx::new(Address::repeat_byte(3), 0, 30_000, fees(30), &[msg(20)]);
    let t4 = MockTx::new(Address::repeat_byte(4), 0, 21_000, fees(20), &[other_chain]);
    h.el.insert([t1.clone(), t2.clone(), t3.clone(), t4.clone()]);
    let r = h.reval.core.run_pass(PassKind::Full).await.unwrap();
    assert_eq!((r.tracked, r.presumed_blocks), (4, 3));
    h.backend.take_batches();
    let (calls, reads) = (h.backend.batch_calls(), h.el.calls("txpool_content"));

    // Chain 901 reorged from block 15: only t3 (block 20) rests on it; it is now invalid.
    h.backend.mark_invalid(&msg(20));
    let r = h.reval.core.recheck_reorged(U256::from(901), 15).await;
    assert_eq!((r.txs, r.requests, r.invalid_found), (1, 1, 1));
    let batches = h.backend.take_batches();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].len(), 1);
    assert_eq!(batches[0][0].messages[..], [msg(20)]);
    assert_eq!(batches[0][0].descriptor.timestamp, 1_000_004, "t3's presumed block 1");
    let (feed, _) = h.drain_feed(json!(null)).await;
    assert_eq!(feed, vec![t3.hash]);

    // From block 10: t1 (block 0) and t2 (block 1); t3 is already published, t4 is on another
    // chain. Two requests, each with its presumed block's timestamp.
    let r = h.reval.core.recheck_reorged(U256::from(901), 10).await;
    assert_eq!((r.txs, r.requests, r.invalid_found), (2, 2, 0));
    let mut got: Vec<(u64, Vec<Message>)> = h
        .backend
        .take_batches()
        .into_iter()
        .map(|b| {
            assert_eq!(b.len(), 1);
            (b[0].descriptor.timestamp, b[0].messages.to_vec())
        })
        .collect();
    got.sort_by_key(|(ts, _)| *ts);
    assert_eq!(got, vec![(1_000_002, vec![msg(10)]), (1_000_004, vec![msg(11)])]);

    // A reorg above every message touches nothing: no request at all.
    let r = h.reval.core.recheck_reorged(U256::from(901), 1_000).await;
    assert_eq!((r.txs, r.requests), (0, 0));
    assert_eq!(h.backend.batch_calls(), calls + 3);
    assert_eq!(h.el.calls("txpool_content"), reads, "a re-check does not read the pool");
}
