//! Process usage from `/proc`, the one reader for every bench: CPU time from `/proc/<pid>/stat`
//! and memory fields (`VmRSS`, `VmHWM`) from `/proc/<pid>/status`, of this process (the benches
//! that measure one size per child process) or of a child (gateways, peers).

// Each bench uses part of it.
#![allow(dead_code)]

use std::process::Command;
use std::sync::OnceLock;

/// Clock ticks per second (`getconf CLK_TCK`; 100 when it cannot say).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds a process has used so far (0 when unreadable).
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the `(comm)`, which may contain spaces: state is field 3, utime 14, stime 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // `rest` starts at field 3, so field n is at index n - 3.
    (ticks(14 - 3) + ticks(15 - 3)) / clock_ticks()
}

/// A process's `/proc/<pid>/status` field in KiB (`"VmHWM"` is the peak RSS); 0 when
/// unreadable.
pub fn status_kib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// CPU time of this process so far (user + system), ms (ticks of 10 ms: read over several
/// rounds).
pub fn cpu_ms() -> f64 {
    cpu_secs(std::process::id()) * 1e3
}

/// This process's `/proc/self/status` field in KiB.
pub fn proc_status_kib(field: &str) -> u64 {
    status_kib(std::process::id(), field) as u64
}
