//! The load bench's peers in a process of their own (`--role peers --now SECS`): an upstream
//! EL, a supervisor that accepts everything and a preloaded source chain, all answering at once.
//! The bench process builds the same chain from the same `now` (it is deterministic) to sign
//! txs that declare its messages, and reads the peers' call counters with the `counts` command.

use std::io::BufRead;
use std::sync::Arc;

use alloy_primitives::{Address, B256, U256};
use interop_gate::dev::chain::{SimChain, SimLog};
use interop_gate::dev::spawn_peer;
use interop_gate::dev::supervisor::MockSupervisor;
use interop_gate::dev::upstream::MockUpstream;

/// The source chain of the messages.
pub const SOURCE: u64 = 901;
/// The preloaded source chain: blocks and logs per block (distinct messages).
pub const BLOCKS: u64 = 600;
/// Logs (messages) per preloaded block.
pub const LOGS_PER_BLOCK: u64 = 100;

/// The preloaded source chain for a run started at `now` (the same on both sides).
pub fn preloaded_chain(now: u64) -> Arc<SimChain> {
    let chain = SimChain::new(SOURCE, now - 7_200, 2);
    for b in 0..BLOCKS {
        let logs = (0..LOGS_PER_BLOCK)
            .map(|i| SimLog {
                address: Address::repeat_byte(0x42),
                topics: vec![B256::repeat_byte(1), B256::from(U256::from(b * 1_000 + i))],
                data: alloy_primitives::Bytes::from(vec![7u8; 64]),
            })
            .collect();
        chain.push_block_at(now - 3_600 + b, logs);
    }
    chain
}

/// Runs the peers role: serves, announces the URLs, then answers `counts` on stdin until it
/// closes.
pub fn run(args: &[String]) {
    let now: u64 = args
        .iter()
        .position(|a| a == "--now")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(interop_gate::clock::unix_now);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let upstream = Arc::new(MockUpstream::counting());
        let up = spawn_peer("upstream", upstream.clone(), "127.0.0.1:0").await.expect("upstream");
        let supervisor = Arc::new(MockSupervisor::new());
        supervisor.set_accept_all(true);
        let sup =
            spawn_peer("supervisor", supervisor.clone(), "127.0.0.1:0").await.expect("supervisor");
        let chain = preloaded_chain(now);
        let ch = spawn_peer("chain", chain.clone(), "127.0.0.1:0").await.expect("chain");
        super::procs::announce(serde_json::json!({
            "upstream": up.url(),
            "supervisor": sup.url(),
            "chain": ch.url(),
        }));
        tokio::task::spawn_blocking(move || {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                let Ok(line) = line else { return };
                if line.trim() == "counts" {
                    let counts = serde_json::json!({
                        "upstream": upstream.calls(),
                        "supervisor": supervisor.checks(),
                        "supervisor_requests": supervisor.http_requests(),
                        "chain": chain.all_calls(),
                        "headers": chain.calls("eth_getBlockByNumber"),
                        "logs": chain.calls("eth_getLogs"),
                    });
                    super::procs::announce_line(counts);
                }
            }
        })
        .await
        .ok();
        drop((up, sup, ch));
    });
}
