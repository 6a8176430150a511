//! Replicas sharing limits and verdicts through a real Redis (`redis-server` started on a free
//! loopback port, no persistence), one mock upstream and one mock supervisor (which counts the
//! checks it answers), all over real HTTP. The replicas are either real `interop-gate` processes
//! ([`processes`]: the global budget and the one-backend-call tests) or real gateways started in
//! this process ([`cluster`]: the tests that inspect or break Redis mid-run).

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Bytes, B256, U256};
use interop_gate::app::{start, Running};
use interop_gate::config::{Config, OnRedisError, PolicyMode, RateLimit};
use interop_gate::dev::redis_server::RedisServer;
use interop_gate::dev::supervisor::MockSupervisor;
use interop_gate::dev::upstream::MockUpstream;
use interop_gate::dev::wallet::{dev_signer, sign_1559, TxSpec};
use interop_gate::dev::{endpoint, spawn_peer, Peer};
use interop_gate::interop::Message;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

// The benches' helper: the binary as a child process, started on a config file in a tempdir.
#[allow(dead_code)]
#[path = "../../benches/support/child.rs"]
mod child;
#[path = "../../benches/support/self_usage.rs"]
mod self_usage;

const DEST: u64 = 10;

pub(crate) struct Cluster {
    pub(crate) redis: RedisServer,
    /// In-process replicas (empty when the replicas are processes).
    #[allow(dead_code)]
    // kept alive: dropping a `Running` does not stop it, the runtime's end does
    replicas: Vec<Running>,
    /// Replica processes (killed on drop).
    _children: Vec<child::Child>,
    /// Each replica's `http://addr/`.
    pub(crate) urls: Vec<String>,
    upstream: Arc<MockUpstream>,
    _upstream_peer: Peer,
    supervisor: Arc<MockSupervisor>,
    _supervisor_peer: Peer,
    client: reqwest::Client,
}

/// How the replicas run.
#[derive(Clone, Copy)]
enum Replicas {
    InProcess,
    Processes,
}

/// Redis, the peers and `n` in-process replicas configured alike (then adjusted by `tweak`).
pub(crate) async fn cluster(n: usize, tweak: impl Fn(&mut Config)) -> Cluster {
    start_cluster(n, Replicas::InProcess, tweak).await
}

/// Redis, the peers and `n` replica processes of the real binary, each on its own config file.
pub(crate) async fn processes(n: usize, tweak: impl Fn(&mut Config)) -> Cluster {
    start_cluster(n, Replicas::Processes, tweak).await
}

async fn start_cluster(n: usize, how: Replicas, tweak: impl Fn(&mut Config)) -> Cluster {
    let redis = RedisServer::start().await.expect("redis-server starts");
    let upstream = Arc::new(MockUpstream::new());
    let upstream_peer = spawn_peer("upstream", upstream.clone(), "127.0.0.1:0").await.unwrap();
    let supervisor = Arc::new(MockSupervisor::new());
    let supervisor_peer =
        spawn_peer("supervisor", supervisor.clone(), "127.0.0.1:0").await.unwrap();
    let (mut replicas, mut children, mut urls) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let mut cfg = interop_gate::dev::loopback_config();
        cfg.metrics.listen = None;
        cfg.admin.listen = None;
        cfg.upstream.url = interop_gate::dev::parse_url(&upstream_peer.url());
        cfg.ingress.chain_id = DEST;
        cfg.validation.policy = PolicyMode::Indexed;
        cfg.supervisor.endpoints = vec![endpoint("sup", supervisor_peer.url())];
        cfg.redis.url = Some(interop_gate::dev::parse_url(&redis.url()));
        cfg.redis.retry_ms = std::time::Duration::from_millis(100);
        // While Redis is up, a slow answer on a loaded test host must not be taken for a
        // failure (it would fall back to local limits and admit more); a stopped Redis refuses
        // connections at once, and the hung-Redis test sets its own short timeout.
        cfg.redis.timeout_ms = Duration::from_millis(500);
        tweak(&mut cfg);
        cfg.validate().expect("valid test config");
        match how {
            Replicas::InProcess => {
                let r = start(cfg, CancellationToken::new()).await.expect("replica starts");
                urls.push(format!("http://{}/", r.rpc_addr.expect("ingress listener")));
                replicas.push(r);
            }
            Replicas::Processes => {
                // The child helper reads the ingress address from the JSON start-up log.
                cfg.log.format = interop_gate::config::LogFormat::Json;
                let text = toml::to_string(&cfg).expect("config serializes");
                let c = child::Child::start(text).await;
                urls.push(c.url());
                children.push(c);
            }
        }
    }
    // Generous bound: a request waiting on a dead Redis must come back long before it.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    Cluster {
        redis,
        replicas,
        _children: children,
        urls,
        upstream,
        _upstream_peer: upstream_peer,
        supervisor,
        _supervisor_peer: supervisor_peer,
        client,
    }
}

impl Cluster {
    async fn call(&self, replica: usize, body: &Value, api_key: Option<&str>) -> Value {
        let mut req = self.client.post(&self.urls[replica]).json(body);
        if let Some(k) = api_key {
            req = req.header("x-api-key", k);
        }
        let resp = req.send().await.expect("answered (no request may hang)");
        resp.json().await.expect("JSON")
    }

    pub(crate) async fn chain_id(&self, replica: usize, api_key: Option<&str>) -> Value {
        self.call(replica, &json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId"}), api_key).await
    }

    async fn send(&self, replica: usize, raw: &Bytes) -> Value {
        let body = json!({"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":[raw]});
        self.call(replica, &body, None).await
    }

    /// Round robin over the replicas: how many of `n` calls were admitted (others must be
    /// refused with `code`).
    pub(crate) async fn admitted(&self, n: usize, code: i64, api_key: Option<&str>) -> usize {
        let mut ok = 0;
        for i in 0..n {
            ok += usize::from(self.admitted_on(i % self.urls.len(), code, api_key).await);
        }
        ok
    }

    /// Whether one call through `replica` was admitted (else it must be refused with `code`).
    pub(crate) async fn admitted_on(
        &self,
        replica: usize,
        code: i64,
        api_key: Option<&str>,
    ) -> bool {
        let v = self.chain_id(replica, api_key).await;
        if v.get("result").is_some() {
            return true;
        }
        assert_eq!(v["error"]["code"], code, "{v}");
        false
    }
}

/// A message with a well-formed checksum entry (type 0x03); the supervisor knows it only if told.
fn message(salt: u8) -> Message {
    let mut checksum = B256::repeat_byte(salt);
    checksum.0[0] = 0x03;
    Message {
        chain_id: U256::from(901),
        block_number: 7,
        timestamp: interop_gate::clock::unix_now() - 60,
        log_index: u32::from(salt),
        checksum,
    }
}

fn transfer(key: u64, nonce: u64) -> Bytes {
    sign_1559(&dev_signer(key), &TxSpec::transfer(DEST, nonce)).0
}

fn interop(key: u64, nonce: u64, msgs: &[Message]) -> Bytes {
    sign_1559(&dev_signer(key), &TxSpec::interop(DEST, nonce, msgs)).0
}

pub(crate) const LIMITED: i64 = interop_gate::rpc::codes::RATE_LIMITED;
const SENDER_LIMITED: i64 = interop_gate::rpc::codes::SENDER_RATE_LIMITED;

#[tokio::test]
async fn a_burst_spread_over_three_replica_processes_is_held_to_the_global_budget() {
    // 1 token/s refill, 60 at once: 150 calls spread over 3 replicas would all pass with
    // per-replica buckets (50 each); shared, about 60 pass (plus 1 per second elapsed).
    let c = processes(3, |cfg| cfg.ingress.ip_rate = RateLimit { per_second: 1, burst: 60 }).await;
    let ok = c.admitted(150, LIMITED, None).await;
    assert!((60..=66).contains(&ok), "admitted {ok}, global budget 60 (+10%)");
}

#[tokio::test]
async fn sender_interop_sender_and_api_key_tiers_hold_across_replicas() {
    let c = cluster(3, |cfg| {
        cfg.ingress.ip_rate = RateLimit { per_second: 1, burst: 2 };
        cfg.ingress.sender_rate = RateLimit { per_second: 1, burst: 6 };
        cfg.ingress.interop_sender_rate = RateLimit { per_second: 1, burst: 3 };
        cfg.ingress.api_tiers.insert("gold".into(), RateLimit { per_second: 1, burst: 12 });
        cfg.ingress.api_tiers.insert("unlimited".into(), RateLimit { per_second: 0, burst: 0 });
        cfg.ingress.api_keys.insert("gold-0123456789abcdef".into(), "gold".into());
        cfg.ingress.api_keys.insert("free-0123456789abcdef".into(), "unlimited".into());
    })
    .await;
    // API-key tier: 12 shared tokens for the key, whatever replica; the IP bucket is untouched.
    let ok = c.admitted(30, LIMITED, Some("gold-0123456789abcdef")).await;
    assert!((12..=13).contains(&ok), "gold key admitted {ok}, budget 12");
    assert_eq!(c.admitted(30, LIMITED, Some("free-0123456789abcdef")).await, 30);
    // A wrong key is anonymous: the per-IP budget of 2.
    let ok = c.admitted(9, LIMITED, Some("gold-0123456789abcdeX")).await;
    assert!((2..=3).contains(&ok), "unknown key admitted {ok}, per-IP budget 2");

    // Sender and interop-sender limits (under the unlimited key, so the IP limit stays out).
    let send = |i: usize, raw: Bytes| {
        let c = &c;
        async move {
            let body =
                json!({"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":[raw]});
            c.call(i % 3, &body, Some("free-0123456789abcdef")).await
        }
    };
    let msgs = [message(1)];
    c.supervisor.add_known(msgs);
    let (mut ok, mut interop_refused) = (0, 0);
    for n in 0..6 {
        let v = send(n as usize, interop(31, n, &msgs)).await;
        if v.get("result").is_some() {
            ok += 1;
        } else {
            assert_eq!(v["error"]["code"], SENDER_LIMITED, "{v}");
            assert!(v["error"]["message"].as_str().unwrap().contains("interop sender"), "{v}");
            interop_refused += 1;
        }
    }
    assert!((3..=4).contains(&ok), "interop txs admitted {ok}, interop-sender budget 3");
    assert_eq!(ok + interop_refused, 6);
    assert!(c.upstream.raw_transactions().len() == ok);
    // Every attempt also took a token of the sender's bucket (6): its plain transfers now get
    // at most what refilled meanwhile.
    let mut plain = 0;
    for n in 0..6 {
        let v = send(n as usize, transfer(31, 100 + n)).await;
        if v.get("result").is_some() {
            plain += 1;
        } else {
            assert_eq!(v["error"]["code"], SENDER_LIMITED, "{v}");
        }
    }
    assert!(plain <= 2, "sender budget 6 is shared with the interop txs: {plain} passed");
}

#[tokio::test]
async fn one_invalid_tx_sprayed_over_three_replica_processes_costs_one_backend_call() {
    let c = processes(3, |_| {}).await;
    let raw = interop(41, 0, &[message(9)]); // unknown to the supervisor: conflicting data
    for round in 0..3 {
        for i in 0..3 {
            let v = c.send(i, &raw).await;
            assert_eq!(v["error"]["code"], -320600, "round {round} replica {i}: {v}");
        }
    }
    assert_eq!(c.supervisor.checks(), 1, "one backend call cluster-wide");
    assert!(c.upstream.raw_transactions().is_empty(), "nothing invalid forwarded");
    // What is stored: a compact verdict under the prefix, with a TTL.
    let mut r = c.redis.connection().await.unwrap();
    let keys: Vec<String> =
        redis::cmd("KEYS").arg("interop-gate:v:*").query_async(&mut r).await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ttl: i64 = redis::cmd("PTTL").arg(&keys[0]).query_async(&mut r).await.unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");

    // A valid tx is not shared: every replica asks (its own short-lived cache aside).
    let good = [message(10)];
    c.supervisor.add_known(good);
    let raw = interop(42, 0, &good);
    for i in 0..3 {
        assert!(c.send(i, &raw).await.get("result").is_some());
    }
    assert_eq!(c.supervisor.checks(), 4);
}

/// The shared layer sits below each replica's local cache: a local hit costs no Redis command
/// (counted by Redis itself, `INFO commandstats`); a local miss costs one `GET`, and a verdict
/// found in Redis is then kept locally too.
#[tokio::test]
async fn a_local_cache_hit_costs_no_redis_command() {
    let c = cluster(2, |_| {}).await; // no rate limits: every GET is a verdict lookup
    let gets = || c.redis.command_calls("get");
    let raw = interop(43, 0, &[message(11)]); // unknown to the supervisor: invalid
    let before = gets().await.unwrap();
    assert_eq!(c.send(0, &raw).await["error"]["code"], -320600);
    assert_eq!(gets().await.unwrap(), before + 1, "a local miss asks Redis once");
    assert_eq!(c.redis.command_calls("set").await.unwrap(), 1, "the invalid verdict is shared");
    for _ in 0..5 {
        assert_eq!(c.send(0, &raw).await["error"]["code"], -320600);
    }
    assert_eq!(gets().await.unwrap(), before + 1, "local cache hits cost no Redis command");
    // The other replica: a local miss, found in Redis (no backend call), then local hits.
    for _ in 0..4 {
        assert_eq!(c.send(1, &raw).await["error"]["code"], -320600);
    }
    assert_eq!(gets().await.unwrap(), before + 2, "one GET on the second replica, then local");
    assert_eq!(c.supervisor.checks(), 1, "the second replica reused the shared verdict");

    // A valid verdict: one GET on the miss (nothing shared), none on the local hits after it.
    let good = [message(12)];
    c.supervisor.add_known(good);
    for nonce in 0..4 {
        assert!(c.send(0, &interop(44, nonce, &good)).await.get("result").is_some());
    }
    assert_eq!(gets().await.unwrap(), before + 3);
    assert_eq!(c.redis.command_calls("set").await.unwrap(), 1, "valid verdicts stay local");
    assert_eq!(c.supervisor.checks(), 2);
    assert_eq!(c.upstream.raw_transactions().len(), 4, "only the valid txs were forwarded");
}

/// A bundle's checks reach Redis as one `MGET` (its misses reach the backend as one batch) and
/// its new invalid verdicts as one pipelined write: another replica then pays a backend call
/// only for the valid tx (valid verdicts stay local).
#[tokio::test]
async fn a_bundle_shares_its_invalid_verdicts_in_one_round_trip_each_way() {
    let c = cluster(2, |cfg| cfg.upstream.methods.push("eth_sendBundle".into())).await;
    let good = [message(13)];
    c.supervisor.add_known(good);
    let (ok, bad) = (interop(45, 0, &good), interop(46, 0, &[message(14)]));
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendBundle", "params": [{
        "txs": [ok, bad], "blockNumber": "0x10", "minTimestamp": 0, "revertingTxHashes": [],
    }]});
    for replica in 0..2 {
        let v = c.call(replica, &body, None).await;
        assert_eq!(v["error"]["code"], -320600, "replica {replica}: {v}");
        assert_eq!(v["error"]["data"]["index"], 1, "{v}");
    }
    assert_eq!(c.redis.command_calls("mget").await.unwrap(), 2, "one lookup per bundle");
    assert_eq!(c.redis.command_calls("get").await.unwrap(), 0);
    assert_eq!(c.redis.command_calls("set").await.unwrap(), 1, "the invalid verdict, once");
    assert_eq!(c.supervisor.checks(), 3, "2 on the first replica, the valid one on the second");
    assert!(c.upstream.raw_transactions().is_empty(), "nothing of the bundles was forwarded");
}

/// Redis dies mid-run under `mode`: what the replicas do with limits, and that nothing invalid
/// passes and nothing hangs.
async fn redis_killed_mid_run(mode: OnRedisError) -> Cluster {
    let mut c = cluster(2, |cfg| {
        cfg.ingress.ip_rate = RateLimit { per_second: 1, burst: 4 };
        cfg.redis.on_error = mode;
    })
    .await;
    let ok = c.admitted(8, LIMITED, None).await;
    assert!((4..=5).contains(&ok), "shared while Redis is up: budget 4, admitted {ok}");
    c.redis.stop();
    c
}

#[tokio::test]
async fn redis_down_with_on_error_local_falls_back_to_per_replica_limits() {
    let c = redis_killed_mid_run(OnRedisError::Local).await;
    // Each replica's own (fresh) bucket: 4 each.
    let ok = c.admitted(20, LIMITED, None).await;
    assert!((8..=10).contains(&ok), "per-replica budgets 2 x 4, admitted {ok}");
    let raw = interop(51, 0, &[message(20)]);
    let v = c.send(0, &raw).await;
    assert!(v["error"]["code"] == -320600 || v["error"]["code"] == LIMITED, "{v}");
    assert!(c.upstream.raw_transactions().is_empty());
}

#[tokio::test]
async fn redis_down_with_on_error_allow_admits_and_still_refuses_invalid_txs() {
    let c = redis_killed_mid_run(OnRedisError::Allow).await;
    assert_eq!(c.admitted(20, LIMITED, None).await, 20);
    let raw = interop(52, 0, &[message(21)]);
    for i in 0..2 {
        assert_eq!(c.send(i, &raw).await["error"]["code"], -320600);
    }
    assert!(c.upstream.raw_transactions().is_empty(), "nothing invalid forwarded");
}

#[tokio::test]
async fn redis_down_with_on_error_refuse_refuses_with_a_retryable_error() {
    let c = redis_killed_mid_run(OnRedisError::Refuse).await;
    let v = c.chain_id(0, None).await;
    assert_eq!(v["error"]["code"], interop_gate::rpc::codes::NO_BACKEND, "{v}");
    assert_eq!(c.admitted(6, interop_gate::rpc::codes::NO_BACKEND, None).await, 0);
    assert!(c.upstream.raw_transactions().is_empty());
}

#[tokio::test]
async fn a_hung_redis_costs_at_most_its_timeout_and_verdicts_fall_back_to_the_backend() {
    let c = cluster(2, |cfg| {
        cfg.ingress.ip_rate = RateLimit { per_second: 1, burst: 50 };
        cfg.redis.timeout_ms = std::time::Duration::from_millis(50);
        cfg.redis.retry_ms = std::time::Duration::from_millis(60_000);
    })
    .await;
    assert!(c.chain_id(0, None).await.get("result").is_some());
    assert!(c.chain_id(1, None).await.get("result").is_some());
    // Freeze Redis: connections stay open, nothing answers (the worst case: no reset).
    let pid = c.redis.pid().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    // The client's 5 s timeout fails the test if any of these waits on Redis.
    for i in 0..6 {
        assert!(c.chain_id(i % 2, None).await.get("result").is_some());
    }
    let raw = interop(53, 0, &[message(22)]);
    for i in 0..2 {
        assert_eq!(c.send(i, &raw).await["error"]["code"], -320600);
    }
    assert_eq!(c.supervisor.checks(), 2, "without Redis, each replica asks its backend once");
    assert!(c.upstream.raw_transactions().is_empty());
    let _ = std::process::Command::new("kill").args(["-CONT", &pid]).status();
}

#[tokio::test]
async fn sharing_resumes_after_redis_restarts_without_restarting_replicas() {
    let mut c = cluster(3, |cfg| {
        cfg.ingress.sender_rate = RateLimit { per_second: 1, burst: 2 };
        cfg.ingress.api_tiers.insert("probe".into(), RateLimit { per_second: 1, burst: 1000 });
        for i in 0..3 {
            cfg.ingress.api_keys.insert(format!("probe-key-{i}-0123456789"), "probe".into());
        }
    })
    .await;
    c.redis.stop();
    // While down (on_error = local): per-replica sender buckets, 2 each.
    let mut ok = 0;
    for n in 0..6 {
        ok += c.send(n as usize % 3, &transfer(61, n)).await.get("result").is_some() as usize;
    }
    assert_eq!(ok, 6, "local fallback: 3 replicas x 2");
    c.redis.restart().await.unwrap();
    // Each replica probes Redis again after retry_ms; its probe key's bucket appears in Redis
    // once its calls go through Redis again.
    let mut r = c.redis.connection().await.unwrap();
    for _ in 0..100 {
        for i in 0..3 {
            c.chain_id(i, Some(&format!("probe-key-{i}-0123456789"))).await;
        }
        let keys: Vec<String> =
            redis::cmd("KEYS").arg("interop-gate:rl:key:*").query_async(&mut r).await.unwrap();
        if keys.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let keys: Vec<String> =
        redis::cmd("KEYS").arg("interop-gate:rl:key:*").query_async(&mut r).await.unwrap();
    assert_eq!(keys.len(), 3, "every replica writes to Redis again: {keys:?}");
    // Shared again: a new sender gets 2 tokens cluster-wide.
    let mut ok = 0;
    for n in 0..6 {
        ok += c.send(n as usize % 3, &transfer(62, n)).await.get("result").is_some() as usize;
    }
    assert!((2..=3).contains(&ok), "shared sender budget 2, admitted {ok}");
}

/// A submission takes its client, sender and interop-sender buckets in ONE shared decision:
/// one script call per tx (counted by Redis itself), where it used to take two or three. Leases
/// off (`lease_max_tokens = 1`), so each decision is a script call.
#[tokio::test]
async fn a_submission_costs_one_redis_round_trip_for_all_its_limits() {
    let c = cluster(1, |cfg| {
        cfg.redis.lease_max_tokens = 1;
        cfg.ingress.ip_rate = RateLimit { per_second: 1_000, burst: 1_000 };
        cfg.ingress.sender_rate = RateLimit { per_second: 1_000, burst: 1_000 };
        cfg.ingress.interop_sender_rate = RateLimit { per_second: 1_000, burst: 1_000 };
    })
    .await;
    let scripts = || async {
        let r = &c.redis;
        r.command_calls("evalsha").await.unwrap() + r.command_calls("eval").await.unwrap()
    };
    // The first call loads the script (a NOSCRIPT answer, then the script itself).
    assert!(c.send(0, &transfer(50, 0)).await.get("result").is_some());
    let before = scripts().await;
    for nonce in 1..6 {
        assert!(c.send(0, &transfer(50, nonce)).await.get("result").is_some());
    }
    let known = [message(13)];
    c.supervisor.add_known(known);
    for nonce in 0..5 {
        assert!(c.send(0, &interop(51, nonce, &known)).await.get("result").is_some());
    }
    assert_eq!(scripts().await - before, 10, "one rate decision per submission");
}
