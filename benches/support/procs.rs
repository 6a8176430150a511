//! Helper processes of the load bench: the bench binary re-executes itself with `--role NAME`
//! so that the peers (upstream, supervisor, chain) and the minimal forwarder run in processes of
//! their own, apart from the load client (the bench process) and the gateway (its own child).
//! Each helper prints one `ready {json}` line on stdout when it serves, then answers one-line
//! commands read on stdin.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child as StdChild, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;

/// A helper process (the bench binary in another role); killed when dropped.
pub struct RoleProc {
    child: StdChild,
    io: Mutex<(ChildStdin, BufReader<ChildStdout>)>,
    /// The JSON of its `ready` line.
    pub ready: serde_json::Value,
}

impl RoleProc {
    /// Starts this executable as `--role role args...` and waits for its `ready` line.
    pub fn start(role: &str, args: &[String]) -> RoleProc {
        let exe = std::env::current_exe().expect("current exe");
        let mut child = Command::new(exe)
            .arg("--role")
            .arg(role)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn helper role");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let ready = loop {
            line.clear();
            if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("helper role {role} exited before it was ready");
            }
            if let Some(json) = line.trim().strip_prefix("ready ") {
                break serde_json::from_str(json).expect("ready json");
            }
        };
        RoleProc { child, io: Mutex::new((stdin, stdout)), ready }
    }

    /// Sends a one-line command and returns the one-line JSON answer (blocking: used only
    /// between measured runs).
    pub fn ask(&self, command: &str) -> serde_json::Value {
        let mut io = self.io.lock().unwrap_or_else(|p| p.into_inner());
        let (stdin, stdout) = &mut *io;
        let _ = writeln!(stdin, "{command}");
        let _ = stdin.flush();
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        serde_json::from_str(line.trim()).unwrap_or(serde_json::Value::Null)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A string field of its `ready` line.
    pub fn field(&self, name: &str) -> String {
        self.ready[name].as_str().unwrap_or_default().to_owned()
    }
}

impl Drop for RoleProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The role this process was started in (`--role NAME`), if any.
pub fn role_arg() -> Option<(String, Vec<String>)> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == "--role")?;
    Some((args.get(i + 1)?.clone(), args[i + 2..].to_vec()))
}

/// Prints the `ready` line of a helper role.
pub fn announce(ready: serde_json::Value) {
    println!("ready {ready}");
    let _ = std::io::stdout().flush();
}

/// Prints one answer line of a helper role.
pub fn announce_line(answer: serde_json::Value) {
    println!("{answer}");
    let _ = std::io::stdout().flush();
}
