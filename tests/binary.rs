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

#[test]
fn committed_config_passes_check_config() {
    let out = Command::new(BIN)
        .args(["--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"), "check-config"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bad_configs_are_refused_naming_the_key() {
    for (text, key) in [
        ("[server]\nlisten = \"127.0.0.1:0\"\nmax_bodyy = 1\n", "max_bodyy"),
        ("[upstream]\ntimeout_ms = \"soon\"\n", "timeout_ms"),
        ("[upstream]\nurl = \"not a url\"\n", "upstream.url"),
        ("[ingress]\nmode = \"yolo\"\n", "yolo"),
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
    // With a token (from the environment) the same file is accepted.
    let out = Command::new(BIN)
        .arg("--config")
        .arg(f.path())
        .arg("check-config")
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
