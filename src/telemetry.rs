//! Logging set-up: text or JSON lines, filter from config unless `RUST_LOG` is set.
//!
//! The filter sits behind a reload layer so SIGHUP can change `[log] level` without a restart.
//! Text lines carry ANSI colour only when stdout is a terminal: a file, a pipe or journald gets
//! plain text.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::{LogConfig, LogFormat};

type FilterHandle = reload::Handle<EnvFilter, Registry>;

/// The installed filter's reload handle (set by the first [`init`]).
static FILTER: OnceLock<FilterHandle> = OnceLock::new();

/// Why a new log level was not applied.
#[derive(Debug, thiserror::Error)]
pub enum LogLevelError {
    /// `RUST_LOG` is set: it overrides `[log] level`, at start-up and on reload alike.
    #[error("RUST_LOG is set and overrides [log] level")]
    EnvOverride,
    /// The filter string does not parse.
    #[error("invalid [log] level {0:?}: {1}")]
    Invalid(String, String),
    /// No subscriber of ours is installed (a test installed another).
    #[error("no reloadable log filter installed")]
    NotInstalled,
}

fn env_filter_set() -> bool {
    std::env::var_os(EnvFilter::DEFAULT_ENV).is_some()
}

/// Installs the global subscriber (a second call is a no-op, so tests may call it freely).
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::stdout().is_terminal();
    let fmt = tracing_subscriber::fmt::layer().with_target(true).with_ansi(ansi);
    let installed = match cfg.format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(fmt.json().flatten_event(true).with_current_span(true))
            .try_init(),
        LogFormat::Text => tracing_subscriber::registry().with(filter).with(fmt).try_init(),
    };
    if installed.is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// Replaces the log filter with `level` (SIGHUP). Refused when `RUST_LOG` is set (it wins, as at
/// start-up) or when `level` does not parse.
pub fn set_level(level: &str) -> Result<(), LogLevelError> {
    if env_filter_set() {
        return Err(LogLevelError::EnvOverride);
    }
    let filter = EnvFilter::try_new(level)
        .map_err(|e| LogLevelError::Invalid(level.to_owned(), e.to_string()))?;
    let handle = FILTER.get().ok_or(LogLevelError::NotInstalled)?;
    handle.reload(filter).map_err(|_| LogLevelError::NotInstalled)
}

/// Checks that `level` parses as a filter (config validation at reload and `check-config`).
pub fn check_level(level: &str) -> Result<(), LogLevelError> {
    EnvFilter::try_new(level)
        .map(|_| ())
        .map_err(|e| LogLevelError::Invalid(level.to_owned(), e.to_string()))
}
