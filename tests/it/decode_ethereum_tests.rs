//! The ethereum/tests `TransactionTests` corpus (`fixtures/ethereum-tests/`, see its SOURCE.md):
//! for each case, the latest fork present says either the hash and sender, or an exception.
//! Every case must agree with `decode_tx`, or be explained below.

use std::path::Path;
use std::str::FromStr;

use alloy_primitives::{hex, Address, B256};
use interop_gate::interop::tx::decode_tx;
use serde_json::Value;

const FORKS: [&str; 13] = [
    "Cancun",
    "Shanghai",
    "Paris",
    "London",
    "Berlin",
    "Istanbul",
    "ConstantinopleFix",
    "Constantinople",
    "Byzantium",
    "EIP158",
    "EIP150",
    "Homestead",
    "Frontier",
];

/// Exceptions a block validator raises and a decoder rightly does not: fee, gas and size rules
/// that depend on the block or the fork's intrinsic-gas schedule, and chain-id checks the
/// gateway does against its own chain (not chain 1). SOURCE.md warns about exactly these.
const VALIDATOR_RULES: [&str; 10] = [
    "NONCE_TOO_BIG",
    "INTRINSIC_GAS_TOO_LOW",
    "GAS_LIMIT_EXCEEDS_MAXIMUM",
    "GASLIMIT_PRICE_PRODUCT_OVERFLOW",
    "PRIORITY_GREATER_THAN_MAX_FEE_PER_GAS",
    "NONCE_IS_MAX",
    "INITCODE_SIZE_EXCEEDED",
    "GASLIMIT_OVERFLOW",
    "INVALID_CHAINID",
    "NONCE_OVERFLOW",
];

/// Valid for geth's big integers, refused here by design: fee fields above 2^128 wei do not fit
/// alloy's `u128` and no account could ever pay them (the ether supply is below 2^87 wei).
const REFUSED_BY_DESIGN: [&str; 3] =
    ["GasLimitPriceProductOverflowtMinusOne", "TransactionWithHighGasPrice", "V_equals38"];

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("fixture dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

#[test]
fn transaction_tests_corpus_agrees_or_is_explained() {
    let root =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ethereum-tests/TransactionTests");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    assert_eq!(files.len(), 210, "the corpus SOURCE.md describes");
    let (mut agree, mut explained, mut wrong) = (0, Vec::new(), Vec::new());
    for f in &files {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        for (name, case) in doc.as_object().unwrap() {
            let fork = FORKS.iter().find(|k| case["result"].get(**k).is_some()).expect("a fork");
            let expect = &case["result"][*fork];
            let raw = hex::decode(case["txbytes"].as_str().unwrap_or("0x")).unwrap_or_default();
            let got = decode_tx(&raw);
            match (expect.get("hash"), &got) {
                (Some(h), Ok(tx)) => {
                    let sender = Address::from_str(expect["sender"].as_str().unwrap()).unwrap();
                    if tx.hash == B256::from_str(h.as_str().unwrap()).unwrap()
                        && tx.sender() == Ok(sender)
                    {
                        agree += 1;
                    } else {
                        wrong.push(format!("{name} ({fork}): hash/sender differ"));
                    }
                }
                (Some(_), Err(e)) if REFUSED_BY_DESIGN.contains(&name.as_str()) => {
                    assert!(e.to_string().contains("range") || e.to_string().contains("overflow"));
                    explained.push(format!("{name}: fee above 2^128 wei, refused: {e}"));
                }
                (Some(_), Err(e)) => wrong.push(format!("{name} ({fork}): valid, we refused: {e}")),
                (None, Err(_)) => agree += 1,
                (None, Ok(_)) => {
                    let exc = expect["exception"].as_str().unwrap_or_default();
                    if VALIDATOR_RULES.iter().any(|r| exc.contains(r)) {
                        explained.push(format!("{name}: {exc}"));
                    } else {
                        wrong.push(format!("{name} ({fork}): expected {exc}, we accepted"));
                    }
                }
            }
        }
    }
    println!(
        "TransactionTests: {} cases agree, {} explained (block-validation rules a decoder does \
         not apply, or fees above 2^128 wei refused by design):",
        agree,
        explained.len()
    );
    for e in &explained {
        println!("  {e}");
    }
    assert!(wrong.is_empty(), "{} unexplained disagreements:\n{}", wrong.len(), wrong.join("\n"));
    assert!(agree > 150);
}
