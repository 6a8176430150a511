//! SIGHUP: re-read the config file and apply, without dropping traffic, what can change live.
//!
//! Applied live: `log.level`, `ingress.mode` (only when the file's value changed, so a reload
//! never undoes an operator's `admin_setInteropMode`), the ingress rate limits
//! (`ingress.ip_rate`, `sender_rate`, `method_rates`, `rate_limit_keys`; buckets start full), the
//! method allow-list (`upstream.methods`) and the peer call timeouts (`upstream.timeout_ms`,
//! `upstream.sync_timeout_ms`, `supervisor.timeout_ms`, `light.timeout_ms`; calls already running
//! keep the timeout they started with). Everything else (listeners, backends, URLs, the
//! revalidator's own timeouts, caches, roles) is built once at start-up: a change there is reported in one log line
//! naming the keys, and the running value stays until a restart. A file that does not load or
//! validate changes nothing; the error is logged and the service keeps its running config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::admin::ModeCell;
use crate::config::{Config, ConfigError, InteropMode};
use crate::ingress::Ingress;

/// Config keys (dotted, as in `config.toml`) that a reload applies live. A changed key that is
/// neither one of these nor below one needs a restart.
pub const LIVE_KEYS: [&str; 11] = [
    "log.level",
    "ingress.mode",
    "ingress.ip_rate",
    "ingress.sender_rate",
    "ingress.method_rates",
    "ingress.rate_limit_keys",
    "upstream.methods",
    "upstream.timeout_ms",
    "upstream.sync_timeout_ms",
    "supervisor.timeout_ms",
    "light.timeout_ms",
];

/// What changed between the running config and the file, sorted by how it can be applied.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Diff {
    /// New `[log] level`.
    pub log_level: Option<String>,
    /// New `ingress.mode` in the file.
    pub mode: Option<InteropMode>,
    /// Any rate-limit key changed.
    pub rate_limits: bool,
    /// Any peer call timeout changed.
    pub timeouts: bool,
    /// Methods added to the allow-list.
    pub methods_added: Vec<String>,
    /// Methods removed from the allow-list.
    pub methods_removed: Vec<String>,
    /// Changed keys that only a restart applies (their running values are kept).
    pub needs_restart: Vec<String>,
}

impl Diff {
    /// Compares the running config with a newly loaded one.
    pub fn between(old: &Config, new: &Config) -> Self {
        let mut d = Diff::default();
        if old.log.level != new.log.level {
            d.log_level = Some(new.log.level.clone());
        }
        if old.ingress.mode != new.ingress.mode {
            d.mode = Some(new.ingress.mode);
        }
        let (o, n) = (&old.ingress, &new.ingress);
        d.rate_limits = o.ip_rate != n.ip_rate
            || o.sender_rate != n.sender_rate
            || o.method_rates != n.method_rates
            || o.rate_limit_keys != n.rate_limit_keys;
        d.timeouts = old.upstream.timeout_ms != new.upstream.timeout_ms
            || old.upstream.sync_timeout_ms != new.upstream.sync_timeout_ms
            || old.supervisor.timeout_ms != new.supervisor.timeout_ms
            || old.light.timeout_ms != new.light.timeout_ms;
        let (om, nm) = (&old.upstream.methods, &new.upstream.methods);
        d.methods_added = nm.iter().filter(|m| !om.contains(m)).cloned().collect();
        d.methods_removed = om.iter().filter(|m| !nm.contains(m)).cloned().collect();
        let (fo, fnew) = (flatten(old), flatten(new));
        let keys: std::collections::BTreeSet<&String> = fo.keys().chain(fnew.keys()).collect();
        d.needs_restart = keys
            .into_iter()
            .filter(|k| fo.get(*k) != fnew.get(*k))
            .filter(|k| !LIVE_KEYS.iter().any(|l| *k == l || k.starts_with(&format!("{l}."))))
            .cloned()
            .collect();
        d
    }

    /// True when nothing differs.
    pub fn is_empty(&self) -> bool {
        self.log_level.is_none()
            && self.mode.is_none()
            && !self.rate_limits
            && !self.timeouts
            && self.methods_added.is_empty()
            && self.methods_removed.is_empty()
            && self.needs_restart.is_empty()
    }

    /// The live keys this diff changes, for the log line.
    pub fn applied_keys(&self) -> Vec<&'static str> {
        let mut k = Vec::new();
        if self.log_level.is_some() {
            k.push("log.level");
        }
        if self.mode.is_some() {
            k.push("ingress.mode");
        }
        if self.rate_limits {
            k.push("ingress rate limits");
        }
        if !self.methods_added.is_empty() || !self.methods_removed.is_empty() {
            k.push("upstream.methods");
        }
        if self.timeouts {
            k.push("timeouts");
        }
        k
    }
}

/// Every leaf of the config as a dotted key (arrays compared whole), for the restart-only diff.
fn flatten(cfg: &Config) -> BTreeMap<String, toml::Value> {
    fn walk(prefix: &str, v: toml::Value, out: &mut BTreeMap<String, toml::Value>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other);
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(v) = toml::Value::try_from(cfg) {
        walk("", v, &mut out);
    }
    out
}

/// The running config after a reload: the old one with the live keys taken from `new`.
fn merge(old: &Config, new: &Config) -> Config {
    let mut c = old.clone();
    c.log.level = new.log.level.clone();
    c.ingress.mode = new.ingress.mode;
    c.ingress.ip_rate = new.ingress.ip_rate;
    c.ingress.sender_rate = new.ingress.sender_rate;
    c.ingress.method_rates = new.ingress.method_rates.clone();
    c.ingress.rate_limit_keys = new.ingress.rate_limit_keys;
    c.upstream.methods = new.upstream.methods.clone();
    c.upstream.timeout_ms = new.upstream.timeout_ms;
    c.upstream.sync_timeout_ms = new.upstream.sync_timeout_ms;
    c.supervisor.timeout_ms = new.supervisor.timeout_ms;
    c.light.timeout_ms = new.light.timeout_ms;
    c
}

/// What a reload can act on, handed out by `app::start`.
#[derive(Clone, Default)]
pub struct Handles {
    /// The ingress (rate limits, allow-list), when it runs.
    pub ingress: Option<Arc<Ingress>>,
    /// The ingress mode, when the ingress runs.
    pub mode: Option<Arc<ModeCell>>,
    /// The upstream client (its timeouts), when the ingress runs.
    pub forwarder: Option<Arc<crate::ingress::forward::Forwarder>>,
    /// The validation engine (its backends' timeouts), when one runs.
    pub engine: Option<Arc<crate::validation::Engine>>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file did not load or validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The new `[log] level` is not a valid filter.
    #[error(transparent)]
    LogLevel(#[from] crate::telemetry::LogLevelError),
}

/// Re-reads one config file on request and applies it to the running service.
pub struct Reloader {
    path: PathBuf,
    running: Config,
    handles: Handles,
}

impl Reloader {
    /// A reloader for the service started from `running` (loaded from `path`).
    pub fn new(path: &Path, running: Config, handles: Handles) -> Self {
        Self { path: path.to_owned(), running, handles }
    }

    /// The config the service runs with now.
    pub fn running(&self) -> &Config {
        &self.running
    }

    /// Loads the file, applies what can change live, and logs the outcome (one line for what
    /// was applied, one for what needs a restart, or one for why nothing changed).
    pub fn reload(&mut self) -> Result<Diff, ReloadError> {
        let result = self.try_reload();
        match &result {
            Err(e) => tracing::error!(
                path = %self.path.display(),
                error = %e,
                "config reload failed; the running config is kept unchanged"
            ),
            Ok(d) => {
                if !d.needs_restart.is_empty() {
                    tracing::warn!(
                        keys = d.needs_restart.join(", "),
                        "config reload: these keys changed but only apply at restart; their running values are kept"
                    );
                }
                tracing::info!(
                    path = %self.path.display(),
                    applied = d.applied_keys().join(", "),
                    "config reloaded"
                );
            }
        }
        result
    }

    fn try_reload(&mut self) -> Result<Diff, ReloadError> {
        let new = Config::load(&self.path)?;
        crate::telemetry::check_level(&new.log.level)?;
        let diff = Diff::between(&self.running, &new);
        if let Some(level) = &diff.log_level {
            if let Err(e) = crate::telemetry::set_level(level) {
                // RUST_LOG wins over the file, at start-up and on reload alike.
                tracing::warn!(error = %e, "config reload: log.level not applied");
            }
        }
        if let (Some(mode), Some(cell)) = (diff.mode, &self.handles.mode) {
            cell.set(mode);
        }
        if diff.rate_limits || !diff.methods_added.is_empty() || !diff.methods_removed.is_empty() {
            if let Some(ingress) = &self.handles.ingress {
                ingress.reload(&new);
            }
        }
        if diff.timeouts {
            if let Some(f) = &self.handles.forwarder {
                f.set_timeouts(new.upstream.timeout_ms, new.upstream.sync_timeout_ms);
            }
            if let Some(e) = &self.handles.engine {
                e.set_timeouts(new.supervisor.timeout_ms, new.light.timeout_ms);
            }
        }
        self.running = merge(&self.running, &new);
        Ok(diff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateLimit;

    #[test]
    fn diff_sorts_live_keys_from_restart_keys() {
        let old = Config::default();
        let mut new = old.clone();
        assert!(Diff::between(&old, &new).is_empty());
        new.log.level = "debug".into();
        new.ingress.mode = InteropMode::RejectAll;
        new.ingress.ip_rate = RateLimit { per_second: 5, burst: 5 };
        new.upstream.methods.retain(|m| m != "eth_call");
        new.upstream.methods.push("eth_newMethod".into());
        new.server.max_batch = 7;
        new.supervisor.timeout_ms = std::time::Duration::from_millis(9);
        new.server.shutdown_grace_ms = std::time::Duration::from_millis(3);
        let d = Diff::between(&old, &new);
        assert_eq!(d.log_level.as_deref(), Some("debug"));
        assert_eq!(d.mode, Some(InteropMode::RejectAll));
        assert!(d.rate_limits);
        assert_eq!(d.methods_added, ["eth_newMethod"]);
        assert_eq!(d.methods_removed, ["eth_call"]);
        assert!(d.timeouts, "peer timeouts apply live");
        assert_eq!(d.needs_restart, ["server.max_batch", "server.shutdown_grace_ms"]);
        let merged = merge(&old, &new);
        assert_eq!(merged.server.max_batch, old.server.max_batch, "restart-only keys kept");
        assert_eq!(merged.upstream.methods, new.upstream.methods);
        assert_eq!(merged.supervisor.timeout_ms, std::time::Duration::from_millis(9));
        assert!(Diff::between(&merged, &new).applied_keys().is_empty());
        assert_eq!(Diff::between(&merged, &new).needs_restart.len(), 2, "still pending");
    }

    #[test]
    fn method_rates_are_live_at_any_depth() {
        let old = Config::default();
        let mut new = old.clone();
        new.ingress.method_rates.insert("eth_call".into(), RateLimit { per_second: 1, burst: 1 });
        let d = Diff::between(&old, &new);
        assert!(d.rate_limits);
        assert!(d.needs_restart.is_empty(), "{:?}", d.needs_restart);
    }

    /// The file's mode applies when the file changed it, and only then: a reload for another
    /// key never undoes an operator's admin switch. An invalid file changes nothing.
    #[test]
    fn mode_follows_the_file_only_when_the_file_changes_it() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let write = |text: &str| std::fs::write(f.path(), text).unwrap();
        write("[ingress]\nmode = \"enforce\"\n");
        let cfg = Config::load(f.path()).unwrap();
        let cell = Arc::new(ModeCell::new(cfg.ingress.mode));
        let handles = Handles { mode: Some(cell.clone()), ..Default::default() };
        let mut r = Reloader::new(f.path(), cfg, handles);

        write("[ingress]\nmode = \"reject-all\"\n");
        assert_eq!(r.reload().unwrap().mode, Some(InteropMode::RejectAll));
        assert_eq!(cell.get(), InteropMode::RejectAll);

        cell.set(InteropMode::Bypass); // admin_setInteropMode
        write("[ingress]\nmode = \"reject-all\"\nmax_messages = 7\n");
        let d = r.reload().unwrap();
        assert_eq!(d.mode, None);
        assert_eq!(d.needs_restart, ["ingress.max_messages"]);
        assert_eq!(cell.get(), InteropMode::Bypass, "the admin's switch stays");

        write("[ingress]\nmode = \"yolo\"\n");
        assert!(r.reload().is_err());
        assert_eq!(cell.get(), InteropMode::Bypass);
        assert_eq!(r.running().ingress.mode, InteropMode::RejectAll);
        assert_eq!(r.running().ingress.max_messages, 256, "restart-only value kept");
    }
}
