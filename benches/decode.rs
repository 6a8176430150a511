//! Per-transaction costs on the ingress hot path: decode + extract + parse, checksum per message,
//! sender recovery (k256 against libsecp256k1), and the verdict-cache hit path.
//!
//! Run: `cargo bench --bench decode`.

use std::sync::Arc;

use alloy_primitives::{Address, B256, U256};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures::future::BoxFuture;
use interop_gate::config::{PolicyMode, ValidationConfig};
use interop_gate::dev::wallet::{dev_signer, sign_1559, TxSpec};
use interop_gate::interop::access_list::dedup;
use interop_gate::interop::tx::decode_tx;
use interop_gate::interop::{parse_entries, ExecutingDescriptor, Message, SafetyLevel};
use interop_gate::validation::{Backend, CheckRequest, Engine, Verdict};

fn messages(n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| {
            Message::for_log(
                U256::from(901),
                1_000 + i as u64,
                1_700_000_000,
                i as u32,
                Address::repeat_byte(0x42),
                &[B256::repeat_byte(1), B256::repeat_byte(i as u8)],
                &[7u8; 96],
            )
        })
        .collect()
}

fn decode_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_extract_parse");
    for n in [1usize, 16] {
        let (raw, _) = sign_1559(&dev_signer(1), &TxSpec::interop(10, 0, &messages(n)));
        g.bench_with_input(BenchmarkId::new("eip1559_messages", n), &raw, |b, raw| {
            b.iter(|| {
                let tx = decode_tx(raw).expect("decodes");
                let mut m = parse_entries(&tx.inbox_entries).expect("parses");
                dedup(&mut m);
                m
            })
        });
    }
    g.finish();
}

fn checksum(c: &mut Criterion) {
    let topics = [B256::repeat_byte(1), B256::repeat_byte(2), B256::repeat_byte(3)];
    let data = [9u8; 256];
    c.bench_function("checksum_per_message", |b| {
        b.iter(|| {
            Message::for_log(U256::from(901), 1, 2, 3, Address::repeat_byte(4), &topics, &data)
        })
    });
}

fn recovery(c: &mut Criterion) {
    use k256::ecdsa::{RecoveryId, Signature as KSig, VerifyingKey};
    let signer = dev_signer(1);
    let (raw, _) = sign_1559(&signer, &TxSpec::transfer(10, 0));
    let env: alloy_consensus::TxEnvelope =
        alloy_eips::eip2718::Decodable2718::decode_2718(&mut raw.as_ref()).expect("decodes");
    let hash = env.signature_hash();
    let sig = *env.signature();
    let bytes = sig.as_bytes();
    let mut g = c.benchmark_group("sender_recovery");
    g.bench_function("k256", |b| {
        b.iter(|| {
            let s = KSig::from_slice(&bytes[..64]).expect("sig");
            let id = RecoveryId::from_byte(sig.v() as u8).expect("id");
            VerifyingKey::recover_from_prehash(hash.as_slice(), &s, id).expect("recovers")
        })
    });
    g.bench_function("secp256k1", |b| {
        use secp256k1::ecdsa::{RecoverableSignature, RecoveryId as SId};
        b.iter(|| {
            let id = SId::try_from(i32::from(sig.v())).expect("id");
            let s = RecoverableSignature::from_compact(&bytes[..64], id).expect("sig");
            let msg = secp256k1::Message::from_digest(hash.0);
            secp256k1::SECP256K1.recover_ecdsa(&msg, &s).expect("recovers")
        })
    });
    g.bench_function("decode_tx_total", |b| b.iter(|| decode_tx(&raw).expect("decodes")));
    g.finish();
}

/// A backend that is always valid: the bench measures the engine's layers, not a peer.
struct AlwaysValid;
impl Backend for AlwaysValid {
    fn name(&self) -> &'static str {
        "always_valid"
    }
    fn check<'a>(&'a self, req: &'a CheckRequest) -> BoxFuture<'a, Verdict> {
        Box::pin(async move { Verdict::Valid { until: req.descriptor.end().unwrap_or(u64::MAX) } })
    }
}

fn cache_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let cfg = ValidationConfig {
        policy: PolicyMode::Indexed,
        valid_cache_ttl_secs: std::time::Duration::from_secs(600),
        ..Default::default()
    };
    let engine = Engine::new(Some(Arc::new(AlwaysValid)), None, &cfg).expect("engine");
    let now = interop_gate::clock::unix_now();
    let req = CheckRequest {
        messages: messages(1).into_iter().map(|m| Message { timestamp: now - 10, ..m }).collect(),
        min_safety: SafetyLevel::CrossUnsafe,
        descriptor: ExecutingDescriptor { timestamp: now, timeout: Some(86_400), chain_id: None },
    };
    assert!(rt.block_on(engine.check(&req)).is_valid());
    c.bench_function("verdict_cache_hit", |b| b.iter(|| rt.block_on(engine.check(&req))));
}

criterion_group!(benches, decode_parse, checksum, recovery, cache_hit);
criterion_main!(benches);
