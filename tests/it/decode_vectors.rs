//! Byte-for-byte agreement with the published interop vectors (`fixtures/interop-vectors.json`:
//! computed from the spec, published with `@eth-optimism/viem`, hard-coded upstream), the
//! access-list grammar cases taken from op-core / kona, and round trips through real signed
//! transactions.

use std::str::FromStr;

use alloy_primitives::{hex, keccak256, Address, Bytes, B256, U256};
use interop_gate::dev::wallet::{dev_signer, sign_1559, sign_legacy, TxSpec};
use interop_gate::interop::access_list::{dedup, inbox_entries};
use interop_gate::interop::checksum::{checksum, checksum_from_log_hash, log_hash, payload_hash};
use interop_gate::interop::tx::{decode_tx, DecodeError};
use interop_gate::interop::{
    build_access_list, encode_entries, parse_entries, AccessListError, ExecutingDescriptor, Message,
};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/interop-vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("vectors")).expect("json")
}

fn b256(v: &Value) -> B256 {
    B256::from_str(v.as_str().expect("hex string")).expect("b256")
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| v.as_str().and_then(|s| s.parse().ok()).expect("number"))
}

fn chain(v: &Value) -> U256 {
    U256::from_str_radix(v.as_str().expect("decimal chain id"), 10).expect("u256")
}

fn entries(v: &Value) -> Vec<B256> {
    v.as_array().expect("entries").iter().map(b256).collect()
}

#[test]
fn computed_vectors_match_byte_for_byte() {
    let all = vectors();
    let vs = all["vectors"].as_array().expect("vectors");
    assert!(!vs.is_empty());
    for v in vs {
        let origin = Address::from_str(v["origin"].as_str().unwrap()).unwrap();
        let topics: Vec<B256> = v["topics"].as_array().unwrap().iter().map(b256).collect();
        let data = hex::decode(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(payload_hash(&topics, &data), b256(&v["payloadHash"]));
        let m = Message::for_log(
            chain(&v["chainId"]),
            u(&v["blockNumber"]),
            u(&v["timestamp"]),
            u(&v["logIndex"]) as u32,
            origin,
            &topics,
            &data,
        );
        assert_eq!(m.checksum, b256(&v["checksum"]), "{v}");
        let want = entries(&v["inboxEntries"]);
        assert_eq!(encode_entries(&[m]), want, "entries of {v}");
        assert_eq!(parse_entries(&want).unwrap(), vec![m]);
    }
}

#[test]
fn viem_published_vectors_match_byte_for_byte() {
    let all = vectors();
    for v in all["external"].as_array().expect("external") {
        let origin = Address::from_str(v["origin"].as_str().unwrap()).unwrap();
        let payload = hex::decode(v["messagePayload"].as_str().unwrap()).unwrap();
        let ph = keccak256(&payload);
        assert_eq!(ph, b256(&v["payloadHash"]));
        let c = checksum_from_log_hash(
            log_hash(origin, ph),
            u(&v["blockNumber"]),
            u(&v["timestamp"]),
            u(&v["logIndex"]) as u32,
            chain(&v["chainId"]),
        );
        let want = entries(&v["inboxEntries"]);
        assert_eq!(*want.last().unwrap(), c, "{}", v["source"]);
        let parsed = parse_entries(&want).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].checksum, c);
        assert_eq!(encode_entries(&parsed), want);
    }
}

#[test]
fn upstream_vectors_match() {
    let all = vectors();
    let mut checked = 0;
    for v in all["upstream"].as_array().expect("upstream") {
        let (Some(origin), Some(ph)) = (v["origin"].as_str(), v["payloadHash"].as_str()) else {
            continue;
        };
        let origin = Address::from_str(origin).unwrap();
        let ph = B256::from_str(ph).unwrap();
        if let Some(p) = v["payloadHex"].as_str() {
            assert_eq!(keccak256(hex::decode(p).unwrap()), ph);
        }
        if let Some(lh) = v["logHash"].as_str() {
            assert_eq!(log_hash(origin, ph), B256::from_str(lh).unwrap(), "{}", v["name"]);
        }
        if let (Some(c), Some(_)) = (v["checksum"].as_str(), v["blockNumber"].as_u64()) {
            let got = checksum_from_log_hash(
                log_hash(origin, ph),
                u(&v["blockNumber"]),
                u(&v["timestamp"]),
                u(&v["logIndex"]) as u32,
                chain(&v["chainId"]),
            );
            assert_eq!(got, B256::from_str(c).unwrap(), "{}", v["name"]);
        }
        checked += 1;
    }
    assert!(checked > 0);
}

#[test]
fn grammar_cases_from_op_core_and_kona() {
    let all = vectors();
    for case in all["parse_cases"].as_array().expect("parse_cases") {
        let name = case["name"].as_str().unwrap();
        let got = parse_entries(&entries(&case["entries"]));
        match case["expect"].as_str().unwrap() {
            "error" => assert!(got.is_err(), "{name}: must be refused, got {got:?}"),
            "ok_no_messages" => assert_eq!(got.unwrap(), vec![], "{name}"),
            "ok" => {
                let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                if let Some(n) = case["parsed_count"].as_u64() {
                    assert_eq!(got.len() as u64, n, "{name}");
                }
                if let Some(want) = case["parsed"].as_array() {
                    assert_eq!(got.len(), want.len(), "{name}");
                    for (g, w) in got.iter().zip(want) {
                        assert_eq!(g.chain_id, chain(&w["chainId"]), "{name}");
                        assert_eq!(g.block_number, u(&w["blockNumber"]), "{name}");
                        assert_eq!(g.timestamp, u(&w["timestamp"]), "{name}");
                        assert_eq!(u64::from(g.log_index), u(&w["logIndex"]), "{name}");
                        assert_eq!(g.checksum, b256(&w["checksum"]), "{name}");
                    }
                }
            }
            other => panic!("unknown expectation {other}"),
        }
    }
}

#[test]
fn descriptor_json_matches_kona() {
    let all = vectors();
    for case in all["descriptor_json"].as_array().expect("descriptor_json") {
        let d: ExecutingDescriptor = serde_json::from_str(case["json"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
        assert_eq!(d.timestamp, case["value"]["timestamp"].as_u64().unwrap(), "{}", case["name"]);
    }
}

/// Every malformed-list error names the entry and says why.
#[test]
fn malformed_lists_say_which_entry_and_why() {
    let lookup = B256::with_last_byte(0).0.map(|_| 0);
    let mut l = B256::from(lookup);
    l.0[0] = 0x01;
    let mut c = B256::ZERO;
    c.0[0] = 0x03;
    let mut ext = B256::ZERO;
    ext.0[0] = 0x02;
    let mut bad = B256::ZERO;
    bad.0[0] = 0x07;
    let cases: Vec<(Vec<B256>, usize, &str)> = vec![
        (vec![bad], 0, "unexpected entry type 0x07"),
        (vec![c, l], 0, "expected lookup"),
        (vec![l], 0, "ends after a lookup"),
        (vec![l, c, l, l], 3, "checksum (0x03)"),
        (vec![l, ext], 1, "ends after a chain-id extension"),
        (vec![ext, c], 0, "expected lookup"),
        (vec![l, ext, ext, c], 2, "checksum (0x03)"),
    ];
    for (list, index, words) in cases {
        let e: AccessListError = parse_entries(&list).unwrap_err();
        assert_eq!(e.index(), index, "{e}");
        assert!(e.to_string().contains(words), "{e} should say {words}");
    }
    let mut reserved = l;
    reserved.0[2] = 1;
    let e = parse_entries(&[reserved, c]).unwrap_err();
    assert!(e.to_string().contains("reserved bytes must be zero"), "{e}");
}

fn sample_messages() -> Vec<Message> {
    let origin = Address::repeat_byte(0x42);
    let topic = B256::repeat_byte(7);
    vec![
        Message::for_log(U256::from(901), 10, 1_700_000_000, 0, origin, &[topic], b"a"),
        Message::for_log(U256::from(902), 11, 1_700_000_002, 5, origin, &[], b""),
        // A chain id above u64: lookup + extension + checksum.
        Message::for_log(U256::MAX - U256::from(1), 12, 1_700_000_004, 3, origin, &[topic], &[1]),
    ]
}

#[test]
fn round_trip_build_sign_decode_parse() {
    let signer = dev_signer(3);
    let msgs = sample_messages();
    let (raw, hash) = sign_1559(&signer, &TxSpec::interop(901, 7, &msgs));
    let tx = decode_tx(&raw).expect("decodes");
    assert_eq!(tx.hash, hash);
    assert_eq!(tx.sender(), Ok(signer.address()));
    assert_eq!(tx.chain_id, Some(901));
    assert_eq!((tx.tx_type, tx.nonce), (2, 7));
    assert!(tx.is_interop());
    assert_eq!(tx.inbox_entries, encode_entries(&msgs));
    assert_eq!(tx.inbox_entries.len(), 2 + 2 + 3);
    assert_eq!(parse_entries(&tx.inbox_entries).unwrap(), msgs);
}

#[test]
fn inbox_entries_span_every_occurrence_of_the_inbox_in_order() {
    let msgs = sample_messages();
    let a = build_access_list(&msgs[..1]);
    let b = build_access_list(&msgs[1..]);
    let other = alloy_eips::eip2930::AccessListItem {
        address: Address::repeat_byte(9),
        storage_keys: vec![B256::repeat_byte(1)],
    };
    let list = alloy_eips::eip2930::AccessList(vec![a.0[0].clone(), other, b.0[0].clone()]);
    let got = inbox_entries(&list);
    assert_eq!(got, encode_entries(&msgs));
    let mut twice = parse_entries(&[got.clone(), got].concat()).unwrap();
    assert_eq!(twice.len(), 6);
    dedup(&mut twice);
    assert_eq!(twice, msgs, "duplicates are checked once");
}

#[test]
fn non_interop_and_legacy_transactions() {
    let signer = dev_signer(1);
    let (raw, hash) = sign_1559(&signer, &TxSpec::transfer(10, 0));
    let tx = decode_tx(&raw).unwrap();
    assert!(!tx.is_interop());
    assert_eq!(tx.hash, hash);
    let (raw, hash) = sign_legacy(&signer, 10, 1);
    let tx = decode_tx(&raw).unwrap();
    assert_eq!((tx.hash, tx.tx_type, tx.chain_id), (hash, 0, Some(10)));
}

#[test]
fn refusals_are_specific() {
    let signer = dev_signer(1);
    let (raw, _) = sign_1559(&signer, &TxSpec::transfer(10, 0));
    assert_eq!(decode_tx(&[]), Err(DecodeError::Empty));
    assert_eq!(decode_tx(&[0x03, 0xc0]), Err(DecodeError::Blob));
    assert_eq!(decode_tx(&[0x7e, 0xc0]), Err(DecodeError::Deposit));
    assert_eq!(decode_tx(&[0x05, 0xc0]), Err(DecodeError::UnknownType(0x05)));
    assert_eq!(decode_tx(&[0x7f]), Err(DecodeError::UnknownType(0x7f)));
    let mut trailing = raw.to_vec();
    trailing.extend_from_slice(&[0, 1]);
    assert_eq!(decode_tx(&trailing), Err(DecodeError::TrailingBytes(2)));
    assert!(matches!(decode_tx(&raw[..raw.len() - 3]), Err(DecodeError::Rlp(_))));
    assert!(matches!(decode_tx(&[0x02, 0xc0]), Err(DecodeError::Rlp(_))));
    assert!(decode_tx(b"\x80garbage").is_err(), "{:?}", decode_tx(b"\x80garbage"));
    let err = decode_tx(&[0x03, 0xc0]).unwrap_err().to_string();
    assert!(err.contains("blob"), "{err}");
}

/// A high-s signature (valid on the curve, refused by EIP-2) and a signature with r = 0.
#[test]
fn invalid_signatures_are_refused() {
    use alloy_consensus::{Signed, TxEip1559, TxEnvelope};
    use alloy_eips::eip2718::Encodable2718;
    use alloy_primitives::Signature;
    let signer = dev_signer(1);
    let (raw, _) = sign_1559(&signer, &TxSpec::transfer(10, 0));
    let env: TxEnvelope =
        alloy_eips::eip2718::Decodable2718::decode_2718(&mut raw.as_ref()).expect("decodes");
    let TxEnvelope::Eip1559(signed) = env else { panic!("1559") };
    let tx: TxEip1559 = signed.tx().clone();
    let sig = *signed.signature();
    let n = U256::from_str_radix(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        16,
    )
    .unwrap();
    let high = Signature::new(sig.r(), n - sig.s(), !sig.v());
    let enc = |s: Signature| {
        let env = TxEnvelope::Eip1559(Signed::new_unhashed(tx.clone(), s));
        Bytes::from(env.encoded_2718())
    };
    assert_eq!(decode_tx(&enc(high)), Err(DecodeError::HighS));
    let zero = Signature::new(U256::ZERO, sig.s(), sig.v());
    assert_eq!(decode_tx(&enc(zero)), Err(DecodeError::Unrecoverable));
}

#[test]
fn checksum_of_raw_log_equals_checksum_of_payload_hash() {
    let origin = Address::repeat_byte(1);
    let topics = [B256::repeat_byte(2), B256::repeat_byte(3)];
    let data = [9u8; 40];
    let raw = checksum(origin, &topics, &data, 5, 6, 7, U256::from(8));
    let via_hash = checksum_from_log_hash(
        log_hash(origin, payload_hash(&topics, &data)),
        5,
        6,
        7,
        U256::from(8),
    );
    assert_eq!(raw, via_hash);
}
