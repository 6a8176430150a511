//! The real `interop-gate` binary: CLI, config refusal at start-up, signal handling.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_interop-gate");

fn write_config(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(f.path(), text).expect("write config");
    f
}

#[test]
fn help_documents_every_flag_and_subcommand() {
    let out = Command::new(BIN).arg("--help").output().expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["--config", "INTEROP_GATE_CONFIG", "--help", "--version", "run", "check-config"]
    {
        assert!(text.contains(needle), "--help lacks {needle}: {text}");
    }
}

/// The committed config.toml is the defaults: an ingress with no validation backend, which would
/// refuse every interop tx. check-config says so (exit 2) unless the operator says it is intended.
#[test]
fn check_config_refuses_an_ingress_without_backend_unless_allowed() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");
    let out = Command::new(BIN).args(["--config", path, "check-config"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without any validation backend") && err.contains("--allow-no-backend"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["--config", path, "check-config", "--allow-no-backend"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `check-config --config X` and `--config X check-config` are the same command; `--print` writes
/// the effective config (environment overrides applied) as TOML without its secrets.
#[test]
fn check_config_takes_flags_in_any_order_and_prints_the_config_redacted() {
    let f = write_config(
        "[admin]\ntoken = \"t0psecret\"\n[supervisor]\nendpoints = [{ name = \"sup\", url = \"https://bob:hunter2@sup.example/rpc?apikey=k3y\" }]\n",
    );
    let path = f.path().to_str().expect("utf-8 path");
    let orders: [&[&str]; 2] = [
        &["check-config", "--config", path, "--print"],
        &["--config", path, "check-config", "--print"],
    ];
    let mut printed = Vec::new();
    for args in orders {
        let out = Command::new(BIN)
            .args(args)
            .env("INTEROP_GATE_UPSTREAM_URL", "http://user:envpass@el.example:8545/")
            .output()
            .expect("runs");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        printed.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    assert_eq!(printed[0], printed[1]);
    let text = &printed[0];
    for secret in ["t0psecret", "hunter2", "bob", "k3y", "envpass"] {
        assert!(!text.contains(secret), "{secret} printed: {text}");
    }
    let cfg = interop_gate::config::Config::from_toml(text, "printed").expect("printed TOML loads");
    assert_eq!(cfg.admin.token.as_deref(), Some("<redacted>"));
    assert_eq!(
        cfg.supervisor.endpoints[0].url.as_str(),
        "https://redacted@sup.example/rpc?redacted"
    );
    assert_eq!(
        cfg.upstream.url.as_str(),
        "http://redacted@el.example:8545/",
        "env override applied"
    );
    assert_eq!(cfg.server.max_batch, 100, "defaults are printed too");
}

#[test]
fn version_names_the_commit_and_compiler() {
    let out = Command::new(BIN).arg("--version").output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(concat!("interop-gate ", env!("CARGO_PKG_VERSION"), " (commit ")),
        "{text}"
    );
    assert!(text.contains("rustc"), "{text}");
    assert!(text.contains(interop_gate::metrics::COMMIT));
}

#[test]
fn bad_configs_are_refused_naming_the_key() {
    for (text, key) in [
        ("[server]\nlisten = \"127.0.0.1:0\"\nmax_bodyy = 1\n", "max_bodyy"),
        ("[upstream]\ntimeout_ms = \"soon\"\n", "timeout_ms"),
        ("[upstream]\nurl = \"not a url\"\n", "upstream.url"),
        ("[ingress]\nmode = \"yolo\"\n", "yolo"),
        // A full txpool_content of a 1M pool (~490 MB) cannot fit the default 256 MiB bound.
        (
            "[revalidator]\nenabled = true\nmax_pool_txs = 1000000\n",
            "revalidator.el_max_response_bytes",
        ),
    ] {
        let f = write_config(text);
        let out = Command::new(BIN).arg("--config").arg(f.path()).output().expect("runs");
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "error for {text:?} does not name {key}: {err}");
    }
    let out = Command::new(BIN).args(["--config", "/nonexistent/x.toml"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.toml"));
}

#[test]
fn admin_beyond_loopback_without_a_token_refuses_to_start() {
    let f = write_config(
        "[server]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"\"\n[admin]\nlisten = \"0.0.0.0:0\"\n",
    );
    for args in [&["run"][..], &["check-config"][..]] {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(f.path())
            .args(args)
            .env_remove("INTEROP_GATE_ADMIN_TOKEN")
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("admin.token"), "{args:?}: {err}");
    }
    // With a token (from the environment) the same file is accepted (it has no validation
    // backend on purpose, hence --allow-no-backend).
    let out = Command::new(BIN)
        .arg("--config")
        .arg(f.path())
        .arg("check-config")
        .arg("--allow-no-backend")
        .env("INTEROP_GATE_ADMIN_TOKEN", "s3cret")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn sigterm_stops_the_service_cleanly() {
    let f = write_config(
        "[server]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"\"\n[log]\nformat = \"json\"\n",
    );
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(f.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let start = Instant::now();
    let mut seen = String::new();
    while let Some(Ok(line)) = lines.next() {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("\"listener\":\"ingress\"") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no start-up line: {seen}");
    }
    assert!(seen.contains("\"listener\":\"ingress\""), "{seen}");
    let line = seen.lines().find(|l| l.contains("\"listener\":\"ingress\"")).unwrap_or_default();
    assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "JSON logs: {line}");
    let status =
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            assert!(st.success(), "exit status {st}");
            break;
        }
        assert!(Instant::now() < deadline, "did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("shutdown requested")), "{rest:?}");
}

/// `interop-gate dev` runs the whole devnet, sends the traffic mix and every verdict is the
/// expected one for its kind.
#[test]
fn dev_mode_runs_the_devnet_and_judges_the_traffic_mix() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_interop-gate"))
        .args(["dev", "--duration-secs", "10", "--summary-secs", "3", "--tx-per-sec", "8"])
        .output()
        .expect("run dev");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ingress (send txs here)"), "{stdout}");
    let last = stdout.lines().find(|l| l.starts_with("final:")).expect("final summary");
    let num = |label: &str| -> u64 {
        let rest =
            &last[last.find(label).unwrap_or_else(|| panic!("{label} in {last}")) + label.len()..];
        rest.trim().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    assert!(num("accepted ") > 0, "{last}");
    assert!(num("invalid ") > 0, "{last}");
    assert!(num("not-yet-known ") > 0, "{last}");
    assert!(num("retried ") > 0, "{last}");
    assert_eq!(num("unexpected verdicts "), 0, "{last}");
}

/// One JSON log line per refused transaction, with tx hash, sender, reason, code and the failing
/// message's id, on the `interop_gate::refused` target; no URL appears in the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_transactions_are_logged_one_line_each_without_secrets() {
    use interop_gate::dev::chain::{SimChain, SimLog};
    use interop_gate::dev::spawn_peer;
    use interop_gate::dev::wallet::{dev_signer, sign_1559, TxSpec};
    let now = interop_gate::clock::unix_now();
    let chain = SimChain::new(901, now - 3_600, 2);
    let b = chain.push_block_at(
        now - 60,
        vec![SimLog {
            address: alloy_primitives::Address::repeat_byte(1),
            topics: vec![],
            data: vec![1u8].into(),
        }],
    );
    let mut bad = chain.message(b.number, 0).unwrap();
    bad.checksum.0[31] ^= 1;
    let chain_peer = spawn_peer("chain", chain.clone(), "127.0.0.1:0").await.unwrap();
    let upstream = std::sync::Arc::new(interop_gate::dev::upstream::MockUpstream::new());
    let up_peer = spawn_peer("up", upstream, "127.0.0.1:0").await.unwrap();
    // Credentials in a URL must never reach the logs.
    let chain_url = chain_peer.url().replace("http://", "http://user:s3cret@");
    let cfg = write_config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"{}\"\n[ingress]\nchain_id = 10\n[validation]\npolicy = \"light\"\n[[light.chains]]\nchain_id = 901\nendpoints = [{{ name = \"src\", url = \"{chain_url}\" }}]\n[metrics]\nlisten = \"\"\n[admin]\nlisten = \"\"\n[log]\nformat = \"json\"\nlevel = \"info\"\n",
        up_peer.url()
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_interop-gate"))
        .arg("--config")
        .arg(cfg.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = None;
    for line in lines.by_ref() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap_or_default();
        if v["message"] == "listening" && v["listener"] == "ingress" {
            addr = v["addr"].as_str().map(str::to_owned);
        }
        if v["message"] == "started" {
            break;
        }
    }
    let url = format!("http://{}/", addr.expect("ingress address"));
    let signer = dev_signer(9);
    let (raw, hash) = sign_1559(&signer, &TxSpec::interop(10, 0, &[bad]));
    let body = serde_json::json!({"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":[raw]});
    let resp: serde_json::Value =
        reqwest::Client::new().post(&url).json(&body).send().await.unwrap().json().await.unwrap();
    assert_eq!(resp["error"]["code"], -320600, "{resp}");
    let _ = child.kill();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let _ = child.wait();
    let refused: Vec<serde_json::Value> = rest
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "interop_gate::refused")
        .collect();
    assert_eq!(refused.len(), 1, "{rest:?}");
    let r = &refused[0];
    assert_eq!(r["tx"], format!("{hash}"));
    assert_eq!(r["sender"], format!("{}", signer.address()));
    assert_eq!(r["code"], -320600);
    assert_eq!(r["message_id"], format!("901:{}:0", b.number));
    assert!(r["reason"].as_str().is_some());
    assert!(!rest.iter().any(|l| l.contains("s3cret")), "no credentials in logs");
}

/// The binary's stdout, line by line, on a channel (so a test can wait for a line with a
/// deadline instead of blocking forever on a silent process).
struct Logs {
    rx: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Logs {
    fn of(child: &mut std::process::Child) -> Self {
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { rx, seen: Vec::new() }
    }

    /// Waits for a line matching `pred` (20 s at most) and returns it.
    fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no {what} line; seen:\n{}", self.seen.join("\n")),
            }
        }
    }
}

fn json_field(line: &str, key: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(line).unwrap_or_default()[key].clone()
}

fn signal(child: &std::process::Child, sig: &str) {
    let st = Command::new("kill").args([sig, &child.id().to_string()]).status().expect("kill");
    assert!(st.success());
}

fn stop(mut child: std::process::Child) {
    signal(&child, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            assert!(st.success(), "exit status {st}");
            return;
        }
        assert!(Instant::now() < deadline, "did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Text logs written to a pipe (a file, journald) carry no ANSI colour codes.
#[test]
fn text_logs_to_a_pipe_have_no_colour_codes() {
    let f = write_config(
        "[server]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"\"\n[admin]\nlisten = \"\"\n[log]\nformat = \"text\"\nlevel = \"info\"\n",
    );
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(f.path())
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let mut logs = Logs::of(&mut child);
    logs.wait_for("started", |l| l.contains("started"));
    stop(child);
    assert!(logs.seen.iter().any(|l| l.contains("INFO")), "{:?}", logs.seen);
    let coloured: Vec<_> = logs.seen.iter().filter(|l| l.contains("\x1b[")).collect();
    assert!(coloured.is_empty(), "ANSI codes in piped logs: {coloured:?}");
}

/// SIGHUP re-reads the file: the new allow-list and rate limit apply at once, a restart-only
/// change is reported and kept at its old value, an invalid file changes nothing, and the
/// process keeps serving throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_limits_and_allow_list_and_keeps_the_old_config_on_errors() {
    use interop_gate::dev::spawn_peer;
    use interop_gate::dev::upstream::MockUpstream;
    let upstream = std::sync::Arc::new(MockUpstream::new());
    let up = spawn_peer("up", upstream.clone(), "127.0.0.1:0").await.unwrap();
    let base = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"{}\"\n[metrics]\nlisten = \"\"\n[admin]\nlisten = \"\"\n[log]\nformat = \"json\"\nlevel = \"info\"\n",
        up.url()
    );
    let f = write_config(&base);
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(f.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let mut logs = Logs::of(&mut child);
    let line = logs.wait_for("ingress listening", |l| {
        json_field(l, "message") == "listening" && json_field(l, "listener") == "ingress"
    });
    let url = format!("http://{}/", json_field(&line, "addr").as_str().expect("addr"));
    logs.wait_for("started", |l| json_field(l, "message") == "started");
    let client = reqwest::Client::new();
    let call = |method: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let body = serde_json::json!({"jsonrpc":"2.0","id":1,"method":method,"params":[]});
            let r = client.post(&url).json(&body).send().await.expect("answered");
            r.json::<serde_json::Value>().await.expect("JSON")
        }
    };
    assert!(call("eth_getBalance").await["result"].is_object(), "allowed at first");
    for _ in 0..3 {
        assert!(call("eth_chainId").await["result"].is_string(), "no rate limit at first");
    }

    // Only eth_chainId, one call per second per IP; and a key that needs a restart.
    let edited = base.replace(
        "[metrics]",
        "methods = [\"eth_chainId\"]\n[ingress]\nip_rate = { per_second = 1, burst = 1 }\n[metrics]",
    ) + "[light]\nblock_cache_capacity = 1234\n";
    std::fs::write(f.path(), &edited).unwrap();
    signal(&child, "-HUP");
    let restart = logs.wait_for("restart-only", |l| l.contains("only apply at restart"));
    assert_eq!(json_field(&restart, "keys"), "light.block_cache_capacity", "{restart}");
    let done = logs.wait_for("reloaded", |l| json_field(l, "message") == "config reloaded");
    let applied = json_field(&done, "applied").as_str().unwrap_or_default().to_owned();
    assert!(applied.contains("upstream.methods") && applied.contains("rate limits"), "{done}");

    let before = upstream.received().len();
    let refused = call("eth_getBalance").await;
    assert_eq!(refused["error"]["code"], -32601, "{refused}");
    let msg = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("eth_getBalance") && msg.contains("not served by this gateway"), "{msg}");
    assert_eq!(upstream.received().len(), before, "refused without touching the upstream");
    assert!(call("eth_chainId").await["result"].is_string());
    assert_eq!(call("eth_chainId").await["error"]["code"], -32016, "the new limit applies");

    // The log level applies live: at `warn` the reload's own info line is not written; back at
    // `info` (with a rate change, to tell the two reloads apart) it is.
    let edited2 = edited.replace("level = \"info\"", "level = \"warn\"");
    std::fs::write(f.path(), &edited2).unwrap();
    signal(&child, "-HUP");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let edited3 = edited.replace("per_second = 1, burst = 1", "per_second = 2, burst = 2");
    std::fs::write(f.path(), &edited3).unwrap();
    signal(&child, "-HUP");
    let back = logs.wait_for("reloaded at info", |l| json_field(l, "message") == "config reloaded");
    let applied = json_field(&back, "applied").as_str().unwrap_or_default().to_owned();
    assert!(
        applied.contains("log.level") && applied.contains("rate limits"),
        "the info line of the reload to `warn` must not have been written: {back}"
    );

    // An invalid file: logged, the running config (new allow-list) is kept.
    std::fs::write(f.path(), "[server]\nmax_bodyy = 1\n").unwrap();
    signal(&child, "-HUP");
    let failed = logs.wait_for("reload failed", |l| l.contains("config reload failed"));
    assert!(json_field(&failed, "error").as_str().unwrap_or_default().contains("max_bodyy"));
    assert_eq!(call("eth_getBalance").await["error"]["code"], -32601, "old config kept");
    assert!(child.try_wait().expect("wait").is_none(), "still running after two SIGHUPs");
    stop(child);
}
