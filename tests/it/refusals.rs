//! Every refusal of a transaction carries the same `data` shape: `txHash` and `reason` always
//! (the reason is the label of the log line and of `ingress_transactions_total`), plus
//! `backendCode` and the message's fields whenever a message is at fault.

use crate::common;

use common::*;
use serde_json::{json, Value};

fn data(v: &Value) -> &Value {
    &v["error"]["data"]
}

#[tokio::test]
async fn refusals_name_the_tx_and_reason_and_the_message_at_fault() {
    let g = interop_gateway(|_| {}).await;
    let msgs = g.emit(1, 3);

    // A message at fault: invalid.
    let mut bad = msgs[0];
    bad.checksum.0[31] ^= 1;
    let (raw, hash) = g.interop_tx(1, 0, &[bad]);
    let (_, v) = g.send(&raw).await;
    assert_eq!(v["error"]["code"], -320600, "{v}");
    assert_eq!(data(&v)["txHash"], json!(hash));
    assert_eq!(data(&v)["reason"], "conflicting_data");
    assert_eq!(data(&v)["backendCode"], -320600);
    assert_eq!(data(&v)["message"]["chainId"], SOURCE.to_string());

    // A message at fault: not known yet (after the re-test).
    let future = interop_gate::interop::Message { block_number: 10_000, ..msgs[0] };
    let (raw, hash) = g.interop_tx(2, 0, &[future]);
    let (_, v) = g.send(&raw).await;
    assert_eq!(v["error"]["code"], -321401, "{v}");
    assert_eq!(data(&v)["txHash"], json!(hash));
    assert_eq!(data(&v)["reason"], "not_yet_known");
    assert!(data(&v)["backendCode"].is_i64(), "{v}");
    assert_eq!(data(&v)["message"]["blockNumber"], 10_000);

    // No message at fault: the operator's reject-all switch, and a wrong chain id.
    let admin = format!("http://{}/", g.gw.running.admin_addr.expect("admin"));
    let set =
        json!({"jsonrpc":"2.0","id":1,"method":"admin_setInteropMode","params":["reject-all"]});
    post_json(&g.gw.client, &admin, &set).await;
    let (raw, hash) = g.interop_tx(3, 0, &msgs);
    let (_, v) = g.send(&raw).await;
    assert_eq!(v["error"]["code"], -320602, "{v}");
    assert_eq!(data(&v), &json!({ "txHash": hash, "reason": "reject_all" }));

    use interop_gate::dev::wallet::{dev_signer, sign_1559, TxSpec};
    let (raw, hash) = sign_1559(&dev_signer(4), &TxSpec::interop(DEST + 1, 0, &msgs));
    let (_, v) = g.send(&raw).await;
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert_eq!(data(&v), &json!({ "txHash": hash, "reason": "wrong_chain" }));
}

/// Without any backend, an interop tx is refused (fail closed) with the same data shape.
#[tokio::test]
async fn refusal_without_a_backend_carries_tx_hash_and_reason() {
    let g = gateway(|c| c.ingress.chain_id = DEST).await;
    let m = interop_gate::interop::Message {
        chain_id: alloy_primitives::U256::from(SOURCE),
        block_number: 1,
        timestamp: 1,
        log_index: 0,
        checksum: alloy_primitives::B256::repeat_byte(3),
    };
    use interop_gate::dev::wallet::{dev_signer, sign_1559, TxSpec};
    let (raw, hash) = sign_1559(&dev_signer(5), &TxSpec::interop(DEST, 0, &[m]));
    let body = json!({"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":[raw]});
    let (_, v) = g.post(&body).await;
    assert_eq!(v["error"]["code"], -32011, "{v}");
    assert_eq!(data(&v), &json!({ "txHash": hash, "reason": "unavailable" }));
}
