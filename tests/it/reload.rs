//! A config reload (what SIGHUP runs) applies new peer timeouts to the calls that start after
//! it, on the real app over HTTP; the SIGHUP plumbing itself is tested on the binary.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use interop_gate::dev::spawn_peer;
use interop_gate::dev::upstream::MockUpstream;
use interop_gate::reload::Reloader;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_reload_applies_new_upstream_timeouts_to_the_next_calls() {
    let upstream = Arc::new(MockUpstream::new());
    let peer = spawn_peer("upstream", upstream.clone(), "127.0.0.1:0").await.unwrap();
    upstream.set_delay(Duration::from_millis(600));
    let mut cfg = loopback_config();
    cfg.upstream.url = interop_gate::dev::parse_url(&peer.url());
    cfg.upstream.timeout_ms = std::time::Duration::from_millis(5_000);
    let running = interop_gate::app::start(cfg.clone(), CancellationToken::new()).await.unwrap();
    let url = format!("http://{}/", running.rpc_addr.unwrap());
    let client = reqwest::Client::new();
    let call = json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]});

    let (_, v) = post_json(&client, &url, &call).await;
    assert!(v["result"].is_string(), "600 ms upstream within 5 s: {v}");

    let file = tempfile::NamedTempFile::new().unwrap();
    let mut shorter = cfg.clone();
    shorter.upstream.timeout_ms = std::time::Duration::from_millis(200);
    std::fs::write(file.path(), toml::to_string(&shorter).unwrap()).unwrap();
    let mut reloader = Reloader::new(file.path(), cfg, running.reload.clone());
    let diff = reloader.reload().unwrap();
    assert!(diff.timeouts && diff.needs_restart.is_empty(), "{diff:?}");
    assert_eq!(reloader.running().upstream.timeout_ms, std::time::Duration::from_millis(200));

    let (_, v) = post_json(&client, &url, &call).await;
    assert_eq!(v["error"]["code"], -32603, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("200 ms"), "{v}");
    running.shutdown();
}
