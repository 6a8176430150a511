//! Assembles the enabled roles from a [`Config`] and serves them: one place that owns start-up
//! order and shutdown. Tests start the real service through [`start`] with `127.0.0.1:0`
//! listeners and read the bound addresses back from [`Running`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::{Admin, ModeCell};
use crate::config::Config;
use crate::health::{self, Health};
use crate::ingress::forward::Forwarder;
use crate::ingress::Ingress;
use crate::light_server::{Failsafe, LightServer};
use crate::rpc::listener::{serve_with, ConnLimits};
use crate::rpc::server::{rpc_router_with, Limits, RpcOptions};
use crate::validation::light::LightBackend;
use crate::validation::{DynBackend, Engine};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The config was built in code and breaks a rule start-up enforces whoever built it.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The validation engine could not be built (the policy names a missing backend).
    #[error(transparent)]
    Engine(#[from] crate::validation::engine::EngineError),
    /// The Redis client could not be built.
    #[error(transparent)]
    SharedState(#[from] crate::shared_state::BuildError),
    /// The light server is enabled without a light backend to serve from.
    #[error("light_server.enabled needs at least one [[light.chains]] entry")]
    LightServerWithoutChains,
    /// The revalidator is enabled without any backend to check with.
    #[error(
        "revalidator.enabled needs a validation backend ([supervisor] endpoints or [[light.chains]])"
    )]
    RevalidatorWithoutBackend,
    /// The revalidator could not start.
    #[error(transparent)]
    Revalidator(#[from] crate::revalidator::StartError),
}

/// The running service: bound addresses and the serving tasks.
pub struct Running {
    /// Public JSON-RPC (ingress), when enabled.
    pub rpc_addr: Option<SocketAddr>,
    /// Metrics and health.
    pub metrics_addr: Option<SocketAddr>,
    /// Admin API.
    pub admin_addr: Option<SocketAddr>,
    /// Light-mode supervisor endpoint.
    pub light_server_addr: Option<SocketAddr>,
    /// Revalidator's EL-facing API.
    pub revalidator_addr: Option<SocketAddr>,
    /// The validation engine, when one is built (tests flush and inspect it).
    pub engine: Option<Arc<Engine>>,
    /// What a config reload (SIGHUP) can change while serving.
    pub reload: crate::reload::Handles,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Running {
    /// Asks every listener to stop.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until every listener has stopped.
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<tokio::net::TcpListener, StartError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| StartError::Bind {
        what,
        addr: addr.to_string(),
        source,
    })
}

/// Starts every enabled role. Cancelling `shutdown` stops them gracefully.
pub async fn start(cfg: Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    // Config::load validated everything; this one is re-checked because an exposed admin API
    // without a token must never start, whoever built the config.
    cfg.admin.validate()?;
    let grace = cfg.server.shutdown_grace_ms;
    crate::metrics::init_series(&cfg);
    let conn_limits = ConnLimits::from_config(&cfg.server, grace);
    let rpc_options = RpcOptions::from_config(&cfg.server);
    let (readiness, prober) = health::readiness(cfg.server.readiness_interval_ms);
    let mut tasks = JoinSet::new();
    let mut health = Health::default();
    let mut admin = Admin::default();
    let mut rpc_addr = None;
    let mut reload = crate::reload::Handles::default();

    let shared = crate::shared_state::SharedState::from_config(&cfg.redis)?;
    // One engine for every role: the ingress and the revalidator share its caches. With
    // `[redis]`, an engine that serves an ingress also reads other replicas' invalid verdicts
    // (below its local cache); a revalidator-only instance never does: it is meant to judge with
    // its own, different supervisor (docs/operations.md, topology).
    let needs_engine = cfg.ingress.enabled || cfg.revalidator.enabled;
    let has_backend = !cfg.supervisor.endpoints.is_empty() || !cfg.light.chains.is_empty();
    let engine = if needs_engine && has_backend {
        Some(Arc::new(Engine::from_config_with(
            &cfg,
            shared.clone().filter(|_| cfg.ingress.enabled),
        )?))
    } else {
        None
    };
    if let Some(e) = &engine {
        reload.engine = Some(e.clone());
        health.backend = Some(e.clone() as DynBackend);
        if let Some(i) = e.indexed() {
            health.backends.push(("indexed", i.clone() as DynBackend));
        }
        if let Some(l) = e.light() {
            health.backends.push(("light", l.clone() as DynBackend));
        }
        let flush = e.clone();
        admin.flushers.push(("verdicts", Arc::new(move || flush.flush_caches())));
    }
    let dyn_engine = engine.clone().map(|e| e as DynBackend);
    // The one light backend: the engine's, or (light server only) one of its own.
    let light: Option<Arc<LightBackend>> = match engine.as_ref().and_then(|e| e.light().cloned()) {
        Some(l) => Some(l),
        None if cfg.light_server.enabled => {
            LightBackend::from_config(&cfg.light, &cfg.validation).map(Arc::new)
        }
        None => None,
    };
    if let Some(l) = &light {
        let flush = l.clone();
        admin.flushers.push(("block_logs", Arc::new(move || flush.flush())));
        if !cfg.light.reorg_watch_ms.is_zero() {
            l.spawn_reorg_watch(cfg.light.reorg_watch_ms, shutdown.clone());
        }
    }

    if cfg.ingress.enabled {
        let forwarder = Arc::new(Forwarder::new(&cfg.upstream));
        health.upstream = Some(forwarder.clone());
        let mode = Arc::new(ModeCell::new(cfg.ingress.mode));
        admin.mode = Some(mode.clone());
        reload.mode = Some(mode.clone());
        if engine.is_none() {
            tracing::warn!(
                "no validation backend configured: interop transactions will be refused"
            );
        }
        let ingress = Arc::new(Ingress::new(
            &cfg,
            forwarder.clone(),
            mode,
            dyn_engine.clone(),
            shared.clone(),
        ));
        reload.ingress = Some(ingress.clone());
        reload.forwarder = Some(forwarder.clone());
        let limits = Limits {
            max_body_bytes: cfg.server.max_body_bytes,
            max_batch: cfg.server.max_batch,
            trusted_proxy_depth: cfg.server.trusted_proxy_depth,
            error_status: true,
        };
        let router = ingress
            .router(&cfg, limits, rpc_options.clone(), shutdown.clone())
            .merge(health::routes(readiness.clone()));
        let listener = bind("server.listen", cfg.server.listen).await?;
        rpc_addr = listener.local_addr().ok();
        log_listening("ingress", rpc_addr);
        // A forwarded transaction may be accepted by the EL: its client must hear the answer,
        // so past the grace period shutdown still waits for forwarded calls (each bounded by
        // the upstream timeout), plus a second to write the answers.
        let mut limits = conn_limits.clone();
        limits.drain = Some((forwarder.drain_gate(), forwarder.timeout() + Duration::from_secs(1)));
        spawn_server(&mut tasks, "ingress", listener, router, shutdown.clone(), limits);
    }

    let mut light_server_addr = None;
    if cfg.light_server.enabled {
        let light = light.clone().ok_or(StartError::LightServerWithoutChains)?;
        if health.backend.is_none() {
            health.backend = Some(light.clone() as DynBackend);
        }
        let failsafe = Arc::new(Failsafe::default());
        admin.failsafe = Some(failsafe.clone());
        crate::light_server::watch_reorgs(
            &cfg.light_server,
            &light,
            failsafe.clone(),
            shutdown.clone(),
        );
        let limits = Limits {
            max_body_bytes: cfg.server.max_body_bytes,
            max_batch: cfg.server.max_batch,
            trusted_proxy_depth: 0,
            error_status: false,
        };
        let router = rpc_router_with(
            "light_server",
            Arc::new(LightServer::new(light, failsafe, cfg.light_server.max_messages)),
            limits,
            rpc_options.clone(),
        );
        let listener = bind("light_server.listen", cfg.light_server.listen).await?;
        light_server_addr = listener.local_addr().ok();
        log_listening("light_server", light_server_addr);
        let limits = conn_limits.clone();
        spawn_server(&mut tasks, "light_server", listener, router, shutdown.clone(), limits);
    }

    let mut revalidator_addr = None;
    if cfg.revalidator.enabled {
        let backend = dyn_engine.clone().ok_or(StartError::RevalidatorWithoutBackend)?;
        let light = engine.as_ref().and_then(|e| Some((e.clone(), e.light()?.clone())));
        // "Not yet known" verdicts tell the light backend's watch which heads to follow.
        let backend = match &light {
            Some((_, l)) => crate::revalidator::waits::NoteWaits::wrap(backend, l.clone()),
            None => backend,
        };
        let r =
            crate::revalidator::start(&cfg.revalidator, backend, shutdown.clone(), true).await?;
        revalidator_addr = Some(r.addr);
        health.revalidator = Some(r.core.clone());
        log_listening("revalidator", revalidator_addr);
        if let Some((e, l)) = light {
            // A source-chain reorg, or a head reaching blocks pooled txs wait on, re-checks the
            // pooled txs it touches at once.
            let flush = move || e.flush_valid();
            crate::revalidator::recheck::spawn_event_rechecks(
                r.core.clone(),
                l.subscribe_reorgs(),
                Some(l.subscribe_head_advances()),
                flush,
                shutdown.clone(),
            );
        }
        tasks.spawn(async move {
            if let Err(e) = r.join().await {
                tracing::error!(listener = "revalidator", error = %e, "listener failed");
            }
            tracing::info!(listener = "revalidator", "stopped");
        });
    }

    let mut metrics_addr = None;
    if let Some(addr) = cfg.metrics.listen {
        let listener = bind("metrics.listen", addr).await?;
        metrics_addr = listener.local_addr().ok();
        log_listening("metrics", metrics_addr);
        let router = health::metrics_router(readiness.clone())
            .merge(crate::conductor::routes(&cfg.metrics.conductor_path, readiness.clone()));
        spawn_server(
            &mut tasks,
            "metrics",
            listener,
            router,
            shutdown.clone(),
            conn_limits.clone(),
        );
    }

    let mut admin_addr = None;
    if let Some(addr) = cfg.admin.listen {
        let listener = bind("admin.listen", addr).await?;
        admin_addr = listener.local_addr().ok();
        log_listening("admin", admin_addr);
        let router = crate::admin::router(admin, cfg.admin.token.as_deref());
        spawn_server(&mut tasks, "admin", listener, router, shutdown.clone(), conn_limits);
    }

    health.compose = cfg.metrics.conductor_compose_url.clone();
    // One background probe feeds every /readyz, now that `health` knows all its dependencies.
    if rpc_addr.is_some() || metrics_addr.is_some() {
        prober.spawn(health, shutdown.clone());
    }

    tracing::info!(listeners = tasks.len(), "started");
    Ok(Running {
        rpc_addr,
        metrics_addr,
        admin_addr,
        light_server_addr,
        revalidator_addr,
        engine,
        reload,
        shutdown,
        tasks,
    })
}

/// One start-up line per listener with its bound address (scripts parse it from JSON logs).
fn log_listening(listener: &'static str, addr: Option<SocketAddr>) {
    if let Some(addr) = addr {
        tracing::info!(listener, %addr, "listening");
    }
}

fn spawn_server(
    tasks: &mut JoinSet<()>,
    name: &'static str,
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
    limits: ConnLimits,
) {
    tasks.spawn(async move {
        if let Err(e) = serve_with(name, listener, router, shutdown, limits).await {
            tracing::error!(listener = name, error = %e, "listener failed");
        }
        tracing::info!(listener = name, "stopped");
    });
}
