//! The admin listener: bearer token, interop mode, status.

use crate::common;

use common::{gateway, post_json};
use serde_json::json;

#[tokio::test]
async fn admin_requires_the_token_and_sets_modes() {
    let gw = gateway(|c| c.admin.token = Some("t0ken".into())).await;
    let url = format!("http://{}/", gw.running.admin_addr.expect("admin enabled"));
    let c = reqwest::Client::new();
    let status = json!({"jsonrpc":"2.0","id":1,"method":"admin_status"});

    let r = c.post(&url).json(&status).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"]["code"], -32001);
    let r = c.post(&url).bearer_auth("wrong").json(&status).send().await.unwrap();
    assert_eq!(r.status(), 401);

    let call = |body: serde_json::Value| {
        let c = c.clone();
        let url = url.clone();
        async move {
            c.post(&url)
                .bearer_auth("t0ken")
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let v = call(status.clone()).await;
    assert_eq!(v["result"]["interopMode"], "enforce");
    // The scheme is case-insensitive (RFC 7235); the token is not.
    for auth in ["bearer t0ken", "BEARER t0ken"] {
        let r = c.post(&url).header("authorization", auth).json(&status).send().await.unwrap();
        assert_eq!(r.status(), 200, "{auth}");
    }
    let r =
        c.post(&url).header("authorization", "Bearer T0KEN").json(&status).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v =
        call(json!({"jsonrpc":"2.0","id":2,"method":"admin_setInteropMode","params":["bypass"]}))
            .await;
    assert_eq!(v["result"], "bypass");
    let v = call(status.clone()).await;
    assert_eq!(v["result"]["interopMode"], "bypass");
    let v = call(json!({"jsonrpc":"2.0","id":3,"method":"admin_setInteropMode","params":["yolo"]}))
        .await;
    assert_eq!(v["error"]["code"], -32602);
    let v = call(json!({"jsonrpc":"2.0","id":4,"method":"eth_chainId"})).await;
    assert_eq!(v["error"]["code"], -32601);

    // The public listener does not serve admin methods.
    let (_, v) = post_json(
        &c,
        &gw.rpc_url(),
        &json!({"jsonrpc":"2.0","id":1,"method":"admin_setInteropMode","params":["enforce"]}),
    )
    .await;
    assert_eq!(v["error"]["code"], -32601);
}

/// The `interop_mode` gauge follows `admin_setInteropMode` (a process-wide gauge: checked in a
/// process of its own).
#[test]
fn interop_mode_gauge_follows_the_admin_switch() {
    common::in_fresh_process("admin::interop_mode_gauge_follows_the_admin_switch", || async {
        let gw = gateway(|c| c.admin.token = Some("t0ken".into())).await;
        let url = format!("http://{}/", gw.running.admin_addr.expect("admin enabled"));
        let scrape = || async {
            reqwest::get(gw.metrics_url("/metrics")).await.unwrap().text().await.unwrap()
        };
        let m = scrape().await;
        assert!(m.contains(r#"interop_gate_interop_mode{mode="enforce"} 1"#), "{m}");
        let set =
            json!({"jsonrpc":"2.0","id":2,"method":"admin_setInteropMode","params":["bypass"]});
        let r = reqwest::Client::new().post(&url).bearer_auth("t0ken").json(&set).send().await;
        assert_eq!(r.unwrap().json::<serde_json::Value>().await.unwrap()["result"], "bypass");
        let m = scrape().await;
        assert!(m.contains(r#"interop_gate_interop_mode{mode="bypass"} 1"#), "{m}");
        assert!(m.contains(r#"interop_gate_interop_mode{mode="enforce"} 0"#), "{m}");
    });
}

/// `admin_getFailsafeEnabled` answers on every admin listener: false where no light server runs
/// (nothing here can be in failsafe), the switch's state where one does.
#[tokio::test]
async fn failsafe_getter_answers_with_or_without_a_light_server() {
    let gw = gateway(|_| {}).await;
    let url = format!("http://{}/", gw.running.admin_addr.expect("admin enabled"));
    let get = json!({"jsonrpc":"2.0","id":1,"method":"admin_getFailsafeEnabled","params":[]});
    let (_, v) = post_json(&gw.client, &url, &get).await;
    assert_eq!(v["result"], false, "{v}");
    let set = json!({"jsonrpc":"2.0","id":2,"method":"admin_setFailsafeEnabled","params":[true]});
    let (_, v) = post_json(&gw.client, &url, &set).await;
    assert_eq!(v["error"]["code"], -32601, "nothing to switch without a light server: {v}");
}
