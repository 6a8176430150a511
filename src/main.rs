//! The `interop-gate` binary: runs the roles enabled in a config file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use interop_gate::config::Config;
use interop_gate::reload::Reloader;

/// mimalloc instead of glibc malloc: the request path allocates small, short-lived buffers
/// (JSON, headers, tx bytes) from many threads; see README "Performance" for the measured gain.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps invalid OP Stack interop transactions away from the sequencer.
///
/// Runs, as enabled in the config file: the ingress filter (JSON-RPC gateway), the mempool
/// revalidator and the light-mode supervisor endpoint.
#[derive(Parser, Debug)]
#[command(name = "interop-gate", version = interop_gate::metrics::LONG_VERSION, about, long_about = None)]
struct Cli {
    /// Path of the TOML config file (every key is documented in the repository's config.toml).
    /// Accepted before or after the subcommand.
    #[arg(
        short,
        long,
        global = true,
        value_name = "FILE",
        default_value = "config.toml",
        env = "INTEROP_GATE_CONFIG"
    )]
    config: PathBuf,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the roles enabled in the config file (the default).
    Run,
    /// Load and validate the config file (with environment overrides) and exit: 0 when the
    /// service would start and do its job, 2 otherwise (the reason on stderr).
    CheckConfig {
        /// Print the effective config as TOML (admin token and URL credentials redacted).
        #[arg(long)]
        print: bool,
        /// Accept an ingress with no validation backend, which refuses every interop
        /// transaction (otherwise such a config fails the check).
        #[arg(long)]
        allow_no_backend: bool,
    },
    /// Run everything on an embedded devnet (two simulated chains, light supervisor endpoint,
    /// ingress, revalidator, traffic generator) with no config file and no infrastructure.
    Dev {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long, value_name = "SECS")]
        duration_secs: Option<u64>,
        /// Transactions per second sent by the traffic generator.
        #[arg(long, default_value_t = 5)]
        tx_per_sec: u64,
        /// Seconds between summary lines.
        #[arg(long, default_value_t = 5)]
        summary_secs: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Dev { duration_secs, tx_per_sec, summary_secs }) = cli.command {
        let opts = interop_gate::dev::devnet::DevOptions {
            duration: duration_secs.map(std::time::Duration::from_secs),
            tx_per_sec,
            summary_every: std::time::Duration::from_secs(summary_secs.max(1)),
        };
        return dev(opts);
    }
    let cfg = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("interop-gate: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::CheckConfig { print, allow_no_backend }) = cli.command {
        return check_config(&cli.config, &cfg, print, allow_no_backend);
    }
    interop_gate::telemetry::init(&cfg.log);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("interop-gate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(cfg, cli.config))
}

/// `check-config`: exit 2 on a config start-up would refuse or that would refuse every interop
/// transaction (unless `allow_no_backend`); `print` writes the effective config to stdout.
fn check_config(path: &Path, cfg: &Config, print: bool, allow_no_backend: bool) -> ExitCode {
    use interop_gate::check_config::{problems, redacted_toml};
    if let Err(e) = interop_gate::telemetry::check_level(&cfg.log.level) {
        eprintln!("interop-gate: {}: `log.level`: {e}", path.display());
        return ExitCode::from(2);
    }
    let problems = problems(cfg, allow_no_backend);
    if print {
        print!("{}", redacted_toml(cfg));
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("interop-gate: {}: {p}", path.display());
        }
        return ExitCode::from(2);
    }
    // With --print, stdout is the TOML alone (pipeable); the verdict goes to stderr.
    if print {
        eprintln!("{}: ok", path.display());
    } else {
        println!("{}: ok", path.display());
    }
    ExitCode::SUCCESS
}

/// `interop-gate dev`: warnings only in the logs, the summary on stdout.
fn dev(opts: interop_gate::dev::devnet::DevOptions) -> ExitCode {
    let log = interop_gate::config::LogConfig { level: "warn".into(), ..Default::default() };
    interop_gate::telemetry::init(&log);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("interop-gate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let stop = CancellationToken::new();
        let s = stop.clone();
        let signal = shutdown_signal();
        tokio::spawn(async move {
            signal.await;
            s.cancel();
        });
        match interop_gate::dev::devnet::run(opts, stop).await {
            Ok(last) => {
                println!("final: {last}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("interop-gate dev: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn run(cfg: Config, path: PathBuf) -> ExitCode {
    let signal = shutdown_signal();
    // Registered before start-up completes: SIGHUP's default action would kill the process.
    let hangups = hangup_signal();
    let shutdown = CancellationToken::new();
    let running = match interop_gate::app::start(cfg.clone(), shutdown.clone()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "start-up failed");
            eprintln!("interop-gate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let reloader = Reloader::new(&path, cfg, running.reload.clone());
    tokio::spawn(reload_on_hangup(hangups, reloader, shutdown.clone()));
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutdown requested: no new connections, finishing in-flight requests");
        shutdown.cancel();
    });
    running.wait().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

/// Registers the SIGHUP handler (None when it cannot be installed: the signal keeps its default).
fn hangup_signal() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("interop-gate: cannot handle SIGHUP, config reload disabled: {e}");
                None
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Reloads the config file on every SIGHUP until shutdown (see `interop_gate::reload`).
async fn reload_on_hangup(hangups: Hangups, mut reloader: Reloader, stop: CancellationToken) {
    #[cfg(unix)]
    if let Some(mut hup) = hangups {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP: reloading the config file");
                    // Logged by the reloader; the running config is kept on error.
                    let _ = reloader.reload();
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (hangups, &mut reloader, stop);
}

/// Registers SIGINT/SIGTERM handlers at once (before the service logs `started`, so a signal
/// sent right after start-up is never lost to the default action) and returns a future that
/// resolves on the first one.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
