//! The deployment examples under `deploy/` stay valid as the code changes: every example config
//! loads and validates, the systemd unit runs what the binary understands, and the example
//! configs enable the roles their comments promise.

use std::path::PathBuf;

use interop_gate::config::{Config, PolicyMode};

fn deploy(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy").join(file)
}

fn load(file: &str) -> Config {
    let path = deploy(file);
    let text = std::fs::read_to_string(&path).expect("example exists");
    Config::from_toml(&text, &path.display().to_string())
        .unwrap_or_else(|e| panic!("{file} does not load: {e}"))
}

#[test]
fn production_ingress_example_loads() {
    let cfg = load("production.toml");
    assert!(cfg.ingress.enabled);
    assert_eq!(cfg.validation.policy, PolicyMode::Both);
    assert_eq!(cfg.supervisor.endpoints.len(), 2);
    assert_eq!(cfg.light.chains.len(), 2);
    assert!(cfg.admin.listen.is_some_and(|a| a.ip().is_loopback()), "admin stays on loopback");
    assert!(cfg.admin.token.is_none(), "no secret in the example: it comes from the environment");
    // X-Forwarded-For is trusted only from the load balancer's range, never from anyone.
    assert_eq!(cfg.server.trusted_proxy_depth, 1);
    assert!(!cfg.server.trusted_proxies.is_empty(), "depth without ranges trusts spoofed headers");
    let direct: std::net::IpAddr = "203.0.113.7".parse().unwrap();
    assert!(!cfg.server.trusted_proxies.iter().any(|n| n.contains(&direct)));
}

#[test]
fn old_style_forwarded_for_depth_without_ranges_is_refused_naming_the_key() {
    let e = Config::from_toml("[server]\ntrusted_proxy_depth = 1\n", "old.toml").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("server.trusted_proxy_depth"), "{msg}");
    assert!(msg.contains("server.trusted_proxies"), "{msg}");
    let e =
        Config::from_toml("[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n", "x.toml").unwrap_err();
    assert!(e.to_string().contains("server.trusted_proxy_depth"), "{e}");
    let e =
        Config::from_toml("[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n", "x.toml").unwrap_err();
    assert!(e.to_string().contains("trusted_proxies"), "{e}");
}

#[test]
fn revalidator_example_loads() {
    let cfg = load("revalidator.toml");
    assert!(cfg.revalidator.enabled && !cfg.ingress.enabled);
    assert_eq!(cfg.supervisor.endpoints.len(), 1);
}

#[test]
fn systemd_unit_runs_the_binary_as_documented() {
    let unit = std::fs::read_to_string(deploy("interop-gate.service")).expect("unit exists");
    let exec = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} missing"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // The same flags the binary's CLI accepts (tests/it/binary.rs runs them for real).
    assert_eq!(exec("ExecStart=")[1..], ["--config", "/etc/interop-gate/config.toml"]);
    assert_eq!(
        exec("ExecStartPre=")[1..],
        ["--config", "/etc/interop-gate/config.toml", "check-config"]
    );
    assert!(unit.contains("KillSignal=SIGTERM"));
}

#[test]
fn check_config_accepts_the_examples() {
    for file in ["production.toml", "revalidator.toml"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_interop-gate"))
            .arg("--config")
            .arg(deploy(file))
            .arg("check-config")
            .output()
            .expect("run the binary");
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
