//! The load bench's honest baseline: a minimal JSON-RPC forwarder on the gateway's own stack
//! (axum 0.8 + one pooled reqwest client). It parses the request's JSON-RPC envelope (params
//! kept as raw JSON, the transaction never decoded), re-serializes it, POSTs it upstream, parses
//! the answer's envelope and re-serializes it with the client's id. No limits, no metrics, no
//! tracing: what any forwarding proxy must do at the least.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[derive(Deserialize, Serialize)]
struct Request<'a> {
    jsonrpc: &'a str,
    #[serde(borrow)]
    id: &'a RawValue,
    method: &'a str,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize, Serialize)]
struct Answer<'a> {
    jsonrpc: &'a str,
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    error: Option<&'a RawValue>,
}

#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    url: reqwest::Url,
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn handle(State(up): State<Upstream>, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<Request>(&body) else {
        return json(
            StatusCode::BAD_REQUEST,
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#
                .to_vec(),
        );
    };
    let Ok(out) = serde_json::to_vec(&req) else {
        return json(StatusCode::INTERNAL_SERVER_ERROR, Vec::new());
    };
    let answer = match up
        .client
        .post(up.url.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .body(out)
        .send()
        .await
    {
        Ok(r) => r.bytes().await.ok(),
        Err(_) => None,
    };
    let Some(answer) = answer else {
        return json(StatusCode::BAD_GATEWAY, Vec::new());
    };
    let Ok(mut a) = serde_json::from_slice::<Answer>(&answer) else {
        return json(StatusCode::BAD_GATEWAY, Vec::new());
    };
    a.id = req.id;
    match serde_json::to_vec(&a) {
        Ok(b) => json(StatusCode::OK, b),
        Err(_) => json(StatusCode::INTERNAL_SERVER_ERROR, Vec::new()),
    }
}

/// Serves the forwarder on an ephemeral loopback port in front of `upstream`; returns its URL.
pub async fn serve(upstream: &str) -> std::io::Result<String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .build()
        .map_err(std::io::Error::other)?;
    let url = reqwest::Url::parse(upstream).map_err(std::io::Error::other)?;
    let app = Router::new().route("/", post(handle)).with_state(Upstream { client, url });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // As the gateway's own listener does: no Nagle delay on small answers.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/"))
}

/// Runs the forwarder role (`--role forwarder --upstream URL`): serves until stdin closes.
pub fn run(args: &[String]) {
    let upstream = args
        .iter()
        .position(|a| a == "--upstream")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .expect("--upstream URL");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let url = serve(&upstream).await.expect("forwarder");
        super::procs::announce(serde_json::json!({ "url": url }));
        // Until the bench closes stdin (or dies).
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        })
        .await;
    });
}
