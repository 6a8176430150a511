//! Build metadata for `--version` and `interop_gate_build_info`: the git commit and the rustc
//! version. Both fall back to "unknown" (a source tarball has no `.git`; CI builds a fresh clone,
//! which has one), so the build never fails on missing tools.

use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

fn main() {
    let commit =
        output("git", &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=INTEROP_GATE_COMMIT={commit}");
    println!("cargo:rustc-env=INTEROP_GATE_RUSTC={rustc_version}");
    // Re-run when HEAD moves (a commit or a checkout), not on every source change. In a git
    // worktree `.git` is a file: ask git where HEAD and the branch's ref live. Only this branch's
    // ref is watched (the refs directory changes whenever any branch does).
    let mut watch = Vec::new();
    if let Some(dir) = output("git", &["rev-parse", "--git-dir"]) {
        watch.push(std::path::Path::new(&dir).join("HEAD"));
    }
    if let Some(common) = output("git", &["rev-parse", "--git-common-dir"]) {
        let common = std::path::PathBuf::from(common);
        if let Some(branch) = output("git", &["symbolic-ref", "-q", "HEAD"]) {
            watch.push(common.join(branch));
        }
        watch.push(common.join("packed-refs"));
    }
    for p in watch.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
}
