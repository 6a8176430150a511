//! op-conductor's rollup-boost health contract at `/conductor` on the metrics listener, over real
//! HTTP: each state from real peers going down, the configurable path, a composed rollup-boost
//! health URL, and `/readyz` unchanged beside it.

use crate::common;

use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use common::*;
use interop_gate::config::PolicyMode;
use serde_json::Value;

/// GETs the conductor URL: always HTTP 200; returns the body.
async fn conductor(url: &str) -> Value {
    let r = reqwest::get(url).await.expect("answer");
    assert_eq!(r.status(), 200, "op-conductor treats any other status as a failed check");
    r.json().await.expect("JSON")
}

/// Polls until the state is `want` (the probe runs every 100 ms in tests); returns the body.
async fn wait_state(url: &str, want: &str) -> Value {
    for _ in 0..250 {
        let v = conductor(url).await;
        if v["rollup_boost_health"] == want {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{url} never said {want}: {}", conductor(url).await);
}

#[tokio::test]
async fn conductor_health_is_healthy_then_partial_with_one_backend_down_then_unavailable() {
    let g = interop_gateway(|c| {
        c.validation.policy = PolicyMode::Either;
        c.supervisor.timeout_ms = 300;
        c.light.timeout_ms = 300;
    })
    .await;
    let url = g.gw.metrics_url("/conductor");
    let v = wait_state(&url, "Healthy").await;
    assert_eq!(v["reasons"], serde_json::json!([]));
    // The supervisor goes: `either` still decides on the light backend.
    g.supervisor_peer.stop();
    let v = wait_state(&url, "PartialContent").await;
    assert!(v["reasons"][0].as_str().unwrap().contains("indexed"), "{v}");
    wait_status(&g.gw.metrics_url("/readyz"), 200).await;
    // The chain RPC goes too: nothing can decide.
    g.chain_peer.stop();
    let v = wait_state(&url, "ServiceUnavailable").await;
    assert!(v["reasons"].to_string().contains("cannot give verdicts"), "{v}");
    wait_status(&g.gw.metrics_url("/readyz"), 503).await;
}

#[tokio::test]
async fn with_policy_both_one_backend_down_is_unavailable_and_the_path_is_configurable() {
    let g = interop_gateway(|c| {
        c.validation.policy = PolicyMode::Both;
        c.supervisor.timeout_ms = 300;
        c.metrics.conductor_path = "/op-conductor".into();
    })
    .await;
    let url = g.gw.metrics_url("/op-conductor");
    wait_state(&url, "Healthy").await;
    let old = reqwest::get(g.gw.metrics_url("/conductor")).await.unwrap();
    assert_eq!(old.status(), 404);
    g.supervisor_peer.stop();
    wait_state(&url, "ServiceUnavailable").await;
}

#[tokio::test]
async fn a_composed_rollup_boost_health_url_is_folded_in_and_the_worse_state_wins() {
    // A stand-in for rollup-boost's /healthz: 200 healthy, 206 partial, 503 unavailable.
    let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(206));
    let s = status.clone();
    let app = axum::Router::new().route(
        "/healthz",
        get(move || {
            let s = s.clone();
            async move { StatusCode::from_u16(s.load(std::sync::atomic::Ordering::SeqCst)).unwrap() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let g = interop_gateway(|c| {
        c.metrics.conductor_compose_url = format!("http://{addr}/healthz");
    })
    .await;
    let url = g.gw.metrics_url("/conductor");
    let v = wait_state(&url, "PartialContent").await;
    assert!(v["reasons"][0].as_str().unwrap().contains("composed"), "{v}");
    status.store(503, std::sync::atomic::Ordering::SeqCst);
    wait_state(&url, "ServiceUnavailable").await;
    status.store(200, std::sync::atomic::Ordering::SeqCst);
    wait_state(&url, "Healthy").await;
    // /readyz keeps its own contract: it does not read the composed URL.
    wait_status(&g.gw.metrics_url("/readyz"), 200).await;
}

#[tokio::test]
async fn a_revalidator_that_cannot_read_its_pool_is_partial() {
    let dead = dead_addr().await;
    let g = interop_gateway(|c| {
        c.revalidator.enabled = true;
        c.revalidator.listen = "127.0.0.1:0".into();
        c.revalidator.el_url = format!("http://{dead}/");
        c.revalidator.interval_ms = 50;
        c.revalidator.full_interval_ms = 50;
        c.revalidator.el_timeout_ms = 200;
    })
    .await;
    let v = wait_state(&g.gw.metrics_url("/conductor"), "PartialContent").await;
    assert!(v["reasons"].to_string().contains("pool"), "{v}");
}
