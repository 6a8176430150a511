//! A real `redis-server` child process on a free loopback port, without persistence, for tests
//! and benches (never a mock). Debian's `redis-server` package provides the binary (`.ci/run`
//! installs it). Killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running (or stopped) Redis on `127.0.0.1:port`.
pub struct RedisServer {
    /// The port it listens on (kept across restarts).
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers PING.
    pub async fn start() -> Result<Self, String> {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = l.local_addr().map_err(|e| e.to_string())?.port();
        drop(l);
        let mut s = Self { port, child: None };
        s.restart().await?;
        Ok(s)
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The child's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills it (connections are reset at once, like a crashed Redis).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (empty: no persistence) and waits until it answers.
    pub async fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .args(["--port", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run redis-server ({e}); install it: apt-get install -y redis-server"
                )
            })?;
        self.child = Some(child);
        let client = redis::Client::open(self.url()).map_err(|e| e.to_string())?;
        for _ in 0..200 {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING").query_async::<String>(&mut c).await.is_ok() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(format!("redis-server on port {} did not answer within 2 s", self.port))
    }

    /// How many times Redis has run `command` (lowercase, e.g. `get`) since it started, from
    /// `INFO commandstats` (commands run inside scripts included): lets tests count the round
    /// trips replicas make without a proxy in between.
    pub async fn command_calls(&self, command: &str) -> Result<u64, String> {
        let mut c = self.connection().await?;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut c)
            .await
            .map_err(|e| e.to_string())?;
        let prefix = format!("cmdstat_{command}:calls=");
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }

    /// A plain connection for inspecting what replicas wrote.
    pub async fn connection(&self) -> Result<redis::aio::MultiplexedConnection, String> {
        let client = redis::Client::open(self.url()).map_err(|e| e.to_string())?;
        client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
