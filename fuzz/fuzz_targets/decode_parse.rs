//! Decode + extract + parse must never panic, whatever the bytes: every input either decodes
//! to a transaction whose inbox entries parse (or are refused with an error naming the entry),
//! or is refused with a `DecodeError`. Also feeds the raw bytes, cut into 32-byte words, to the
//! access-list parser directly, so the entry grammar is fuzzed without a valid signature.
#![no_main]

use interop_gate::interop::access_list::{dedup, encode_entries};
use interop_gate::interop::parse_entries;
use interop_gate::interop::tx::decode_tx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = decode_tx(data) {
        if let Ok(mut messages) = parse_entries(&tx.inbox_entries) {
            dedup(&mut messages);
            // What parses re-encodes to entries that parse to the same messages.
            let again = parse_entries(&encode_entries(&messages)).expect("round trip");
            assert_eq!(again, messages);
        }
    }
    let words: Vec<alloy_primitives::B256> =
        data.chunks_exact(32).map(alloy_primitives::B256::from_slice).collect();
    if let Ok(messages) = parse_entries(&words) {
        assert_eq!(parse_entries(&encode_entries(&messages)).expect("round trip"), messages);
    } else if let Err(e) = parse_entries(&words) {
        assert!(e.index() < words.len());
    }
});
