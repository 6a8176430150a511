//! Real signed transactions of every type, produced by an independent library (viem, access
//! lists by `@eth-optimism/viem`'s `encodeAccessList`): `fixtures/tx-corpus.json`, made by
//! `fixtures/gen/make-tx-corpus.mjs`. Every one decodes to the hash, sender, type and chain id
//! viem computed, with the CrossL2Inbox entries in order, and the entries parse.

use std::str::FromStr;

use alloy_primitives::{hex, Address, B256};
use interop_gate::interop::parse_entries;
use interop_gate::interop::tx::decode_tx;
use serde_json::Value;

#[test]
fn viem_signed_corpus_decodes_exactly() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tx-corpus.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let txs = doc["transactions"].as_array().unwrap();
    let mut types = std::collections::BTreeSet::new();
    for t in txs {
        let name = t["name"].as_str().unwrap();
        let raw = hex::decode(t["raw"].as_str().unwrap()).unwrap();
        let tx = decode_tx(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(tx.hash, B256::from_str(t["hash"].as_str().unwrap()).unwrap(), "{name}");
        assert_eq!(
            tx.sender(),
            Ok(Address::from_str(t["from"].as_str().unwrap()).unwrap()),
            "{name}"
        );
        assert_eq!(tx.chain_id, t["chainId"].as_u64(), "{name}");
        let want: Vec<B256> = t["inboxEntries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| B256::from_str(e.as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(tx.inbox_entries, want, "{name}");
        assert_eq!(tx.is_interop(), !want.is_empty(), "{name}");
        let messages = parse_entries(&tx.inbox_entries).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(messages.len(), want.iter().filter(|e| e.0[0] == 0x03).count(), "{name}");
        types.insert(tx.tx_type);
    }
    assert_eq!(types.into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 4], "every user tx type");
    // The chain id above u64 survived the round trip through viem's encoding.
    assert!(txs.iter().any(|t| t["inboxEntries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e.as_str().unwrap().starts_with("0x02"))));
}
