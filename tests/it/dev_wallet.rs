//! The simulated chain behind `interop-gate dev` answers what a wallet asks while sending through
//! the gateway: nonce, gas estimate, fee history, the tx by hash, and its receipt once a block
//! includes it (the e2e suite does the same with viem's wallet client).

use crate::common;

use common::*;
use interop_gate::dev::chain::SimChain;
use interop_gate::dev::spawn_peer;
use interop_gate::dev::wallet::{dev_signer, sign_1559, TxSpec};
use serde_json::{json, Value};

#[tokio::test]
async fn a_wallet_gets_nonce_fees_gas_tx_and_receipt_through_the_gateway() {
    let chain = SimChain::new(DEST, now() - 60, 2);
    let peer = spawn_peer("chain-b", chain.clone(), "127.0.0.1:0").await.unwrap();
    let url = peer.url();
    let gw = gateway(move |c| {
        c.ingress.chain_id = DEST;
        c.upstream.url = interop_gate::dev::parse_url(&url);
    })
    .await;
    let call = |method: &str, params: Value| {
        let body = json!({"jsonrpc":"2.0","id":1,"method":method,"params":params});
        let gw = &gw;
        async move {
            let (status, v) = gw.post(&body).await;
            assert_eq!(status, 200, "{v}");
            v["result"].clone()
        }
    };
    let signer = dev_signer(7);
    let from = signer.address();
    assert_eq!(call("eth_getTransactionCount", json!([from, "pending"])).await, "0x0");
    assert_eq!(
        call("eth_estimateGas", json!([{"from": from, "to": from, "value": "0x1"}])).await,
        "0x5208"
    );
    let fees = call("eth_feeHistory", json!(["0x1", "latest", [50]])).await;
    assert_eq!(fees["reward"][0][0], "0x3b9aca00", "{fees}");
    assert!(
        call("eth_getBlockByNumber", json!(["latest", false])).await["baseFeePerGas"].is_string()
    );

    let (raw, hash) = sign_1559(&signer, &TxSpec::transfer(DEST, 0));
    assert_eq!(call("eth_sendRawTransaction", json!([raw])).await, json!(hash));
    assert_eq!(call("eth_getTransactionCount", json!([from, "pending"])).await, "0x1");
    let pending = call("eth_getTransactionByHash", json!([hash])).await;
    assert_eq!(pending["from"], json!(from));
    assert!(pending["blockNumber"].is_null(), "pending: {pending}");
    assert!(call("eth_getTransactionReceipt", json!([hash])).await.is_null(), "not mined yet");

    let block = chain.push_block(Vec::new());
    let receipt = call("eth_getTransactionReceipt", json!([hash])).await;
    assert_eq!(receipt["status"], "0x1", "{receipt}");
    assert_eq!(receipt["blockNumber"], format!("{:#x}", block.number));
    assert_eq!(receipt["gasUsed"], "0x5208");
    let full = call("eth_getBlockByNumber", json!([format!("{:#x}", block.number), true])).await;
    assert_eq!(full["transactions"][0]["hash"], json!(hash), "{full}");
}
