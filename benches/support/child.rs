//! The gateway binary as a child process, shared by the benches that drive it from outside
//! (`load`, `ws`): started from a config file, its ingress address read from the JSON start-up
//! log, its memory read from `/proc`.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

/// A running gateway child; killed when dropped.
pub struct Child {
    child: tokio::process::Child,
    /// The ingress listener's `host:port`.
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Child {
    /// Writes `config` to a temporary file and starts the binary on it; returns once it logged
    /// `started`.
    pub async fn start(config: String) -> Child {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config).expect("write config");
        // `INTEROP_GATE_BENCH_BIN`: another build of the binary (a before/after comparison).
        let bin = std::env::var("INTEROP_GATE_BENCH_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_interop-gate").to_owned());
        let mut child = tokio::process::Command::new(bin)
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "warn,interop_gate::app=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn interop-gate");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut addr = None;
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if v["message"] == "listening" && v["listener"] == "ingress" {
                addr = v["addr"].as_str().map(str::to_owned);
            }
            if v["message"] == "started" {
                break;
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Child { child, addr: addr.expect("ingress address in the start-up log"), _dir: dir }
    }

    /// `http://addr/`.
    #[allow(dead_code)]
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Its process id (0 once it has exited).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// A `/proc/<pid>/status` memory field (`VmRSS`, `VmHWM`), KiB; 0 when unreadable.
    pub fn status_kib(&self, field: &str) -> f64 {
        let Some(pid) = self.child.id() else { return 0.0 };
        super::self_usage::status_kib(pid, field)
    }
}
