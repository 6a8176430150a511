//! End to end over HTTP on every side: the mock EL's pool, the revalidator, and a supervisor
//! peer that counts HTTP requests. One pass sends exactly one HTTP request per presumed block
//! it checks, through the real engine (cache, policy, the indexed backend).

use crate::revalidator_support;

use std::sync::Arc;

use interop_gate::config::{Config, PolicyMode};
use interop_gate::dev::el_pool::{generate_pool, MockElPool};
use interop_gate::dev::endpoint;
use interop_gate::dev::spawn_peer;
use interop_gate::dev::supervisor::MockSupervisor;
use interop_gate::revalidator::pool::Head;
use interop_gate::revalidator::{start, PassKind};
use interop_gate::validation::{DynBackend, Engine};
use revalidator_support::{config, msg, HEAD};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn supervisor_http_requests_per_pass_equal_presumed_blocks_checked() {
    let el = Arc::new(MockElPool::new(Head { gas_limit: 3_100_000, ..HEAD }, 10));
    let el_peer = spawn_peer("el", el.clone(), "127.0.0.1:0").await.unwrap();
    let sup = Arc::new(MockSupervisor::new());
    let sup_peer = spawn_peer("supervisor", sup.clone(), "127.0.0.1:0").await.unwrap();

    // 6,000 txs, 600 interop; all messages known except 4.
    let pool = generate_pool(300, 20, 10, |i| vec![msg(i)]);
    let bad = [0usize, 1_000, 2_500, 5_990];
    sup.add_known((0..6_000).step_by(10).filter(|i| !bad.contains(i)).map(msg));
    el.insert(pool.clone());

    let mut cfg = config(&el_peer);
    cfg.max_checks_per_request = 100_000;
    let shutdown = CancellationToken::new();
    let mut engine_cfg = Config::default();
    engine_cfg.supervisor.endpoints = vec![endpoint("sup", sup_peer.url())];
    engine_cfg.validation.policy = PolicyMode::Indexed;
    // Every pass must reach the supervisor (valid verdicts are not reused across passes here).
    engine_cfg.validation.valid_cache_ttl_secs = std::time::Duration::ZERO;
    let backend: DynBackend = Arc::new(Engine::from_config(&engine_cfg).unwrap());
    let reval = start(&cfg, backend, shutdown.clone(), false).await.unwrap();

    let mut total_blocks = 0;
    for kind in [PassKind::Full, PassKind::Near, PassKind::Near, PassKind::Full] {
        let (reqs_before, checks_before) = (sup.http_requests(), sup.checks());
        let r = reval.core.run_pass(kind).await.unwrap();
        assert!(r.blocks_checked > 0, "{r:?}");
        assert_eq!(sup.http_requests() - reqs_before, r.blocks_checked, "{kind:?}: {r:?}");
        assert_eq!(sup.checks() - checks_before, r.txs_checked);
        total_blocks += r.blocks_checked;
        if kind == PassKind::Full {
            assert!(r.presumed_blocks > 40, "{r:?}");
        } else {
            assert!(r.blocks_checked <= 4);
        }
    }
    assert!(total_blocks > 80);

    // The 4 bad ones were found on the first pass and published once.
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "interop_invalidTransactions", "params": [null]});
    let page: Value = reqwest::Client::new()
        .post(reval.url())
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut hashes: Vec<String> = page["result"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["hash"].as_str().unwrap().to_owned())
        .collect();
    hashes.sort();
    let mut expected: Vec<String> = bad.iter().map(|i| format!("{}", pool[*i].hash)).collect();
    expected.sort();
    assert_eq!(hashes, expected);
    assert!(page["result"]["entries"].as_array().unwrap().iter().all(|e| e["code"] == -320600));
    shutdown.cancel();
}
