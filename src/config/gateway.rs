//! Sections of the public gateway: listener, upstream, ingress policy, metrics, admin, logs.

use serde::{Deserialize, Serialize};

use super::{check_listen, check_positive, check_url, ConfigError};
use crate::interop::SafetyLevel;

/// `[server]`: the public JSON-RPC listener, and the connection limits every listener applies.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Largest request body, bytes (proxyd's default: 256 KiB).
    pub max_body_bytes: usize,
    /// Largest batch (proxyd's default: 100).
    pub max_batch: usize,
    /// Deepest JSON nesting accepted in a request body (`[` and `{` levels, batch included).
    pub max_json_depth: usize,
    /// CIDR ranges of our own proxies (nginx's `set_real_ip_from`): `X-Forwarded-For` is read
    /// only on connections from these addresses.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Most `X-Forwarded-For` hops (from the right) walked through trusted proxies; needs
    /// `trusted_proxies` (0 with no ranges: the TCP peer is the client).
    pub trusted_proxy_depth: usize,
    /// From a request's first byte to its complete head, ms; slower clients are disconnected.
    pub header_read_timeout_ms: u64,
    /// From a request's head to the end of its body, ms; slower clients get 408 and are
    /// disconnected.
    pub body_read_timeout_ms: u64,
    /// A keep-alive connection with no request for this long is closed, ms.
    pub idle_timeout_ms: u64,
    /// Open connections per listener; beyond it new connections get a 503 and are closed.
    pub max_connections: usize,
    /// How often the background task probes the upstream and backends for `/readyz`, ms.
    pub readiness_interval_ms: u64,
    /// How long shutdown waits for in-flight requests, ms.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8545".into(),
            max_body_bytes: 256 * 1024,
            max_batch: 100,
            max_json_depth: 128,
            trusted_proxies: Vec::new(),
            trusted_proxy_depth: 0,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            idle_timeout_ms: 75_000,
            max_connections: 512,
            readiness_interval_ms: 1_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

impl ServerConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_listen("server.listen", &self.listen)?;
        check_positive("server.max_body_bytes", self.max_body_bytes as u64)?;
        check_positive("server.max_batch", self.max_batch as u64)?;
        check_positive("server.max_json_depth", self.max_json_depth as u64)?;
        check_positive("server.header_read_timeout_ms", self.header_read_timeout_ms)?;
        check_positive("server.body_read_timeout_ms", self.body_read_timeout_ms)?;
        check_positive("server.idle_timeout_ms", self.idle_timeout_ms)?;
        check_positive("server.max_connections", self.max_connections as u64)?;
        check_positive("server.readiness_interval_ms", self.readiness_interval_ms)?;
        // `trusted_proxy_depth` alone trusted any client's X-Forwarded-For (a direct client
        // could pick its own rate-limit key); it now only counts together with the ranges.
        match (self.trusted_proxies.is_empty(), self.trusted_proxy_depth) {
            (true, d) if d > 0 => Err(ConfigError::invalid(
                "server.trusted_proxy_depth",
                format!(
                    "is {d} but server.trusted_proxies is empty: X-Forwarded-For is only read on \
                     connections from trusted proxy ranges; list your proxies' CIDR ranges in \
                     server.trusted_proxies (e.g. [\"10.0.0.0/8\"]) or set the depth to 0"
                ),
            )),
            (false, 0) => Err(ConfigError::invalid(
                "server.trusted_proxy_depth",
                "must be at least 1 when server.trusted_proxies is set (the number of proxy \
                 hops in front of the gateway)",
            )),
            _ => Ok(()),
        }
    }
}

/// `[upstream]`: the execution client behind the gateway.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// JSON-RPC URL (env `INTEROP_GATE_UPSTREAM_URL`).
    pub url: String,
    /// Per-call timeout, ms.
    pub timeout_ms: u64,
    /// Timeout of `eth_sendRawTransactionSync` (EIP-7966), ms: the upstream holds that call
    /// until the tx is included (reth waits up to 30 s), so it gets its own, longer timeout.
    pub sync_timeout_ms: u64,
    /// Idle keep-alive connections kept to the upstream.
    pub pool_size: usize,
    /// Largest answer body read from the upstream, bytes; a larger one is -32603.
    pub max_response_bytes: usize,
    /// Methods forwarded; everything else is refused with -32601 without touching the upstream.
    pub methods: Vec<String>,
    /// The upstream's WebSocket URL (`ws://` or `wss://`) that WebSocket clients' non-submission
    /// calls and subscriptions are proxied to. Empty: derived from `url` (http→ws, https→wss),
    /// as anvil, geth and op-geth serve WebSocket on their HTTP port.
    pub ws_url: String,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9545".into(),
            timeout_ms: 5_000,
            sync_timeout_ms: 30_000,
            pool_size: 64,
            max_response_bytes: 32 * 1024 * 1024,
            methods: [
                "eth_sendRawTransaction",
                "eth_sendRawTransactionConditional",
                "eth_sendRawTransactionSync",
                "eth_chainId",
                "net_version",
                "web3_clientVersion",
                "eth_blockNumber",
                "eth_getBalance",
                "eth_getTransactionCount",
                "eth_getCode",
                "eth_getStorageAt",
                "eth_call",
                "eth_estimateGas",
                "eth_gasPrice",
                "eth_maxPriorityFeePerGas",
                "eth_feeHistory",
                "eth_getBlockByNumber",
                "eth_getBlockByHash",
                "eth_getBlockReceipts",
                "eth_getTransactionByHash",
                "eth_getTransactionReceipt",
                "eth_getLogs",
                "eth_syncing",
            ]
            .map(String::from)
            .to_vec(),
            ws_url: String::new(),
        }
    }
}

impl UpstreamConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_url("upstream.url", &self.url)?;
        check_positive("upstream.timeout_ms", self.timeout_ms)?;
        check_positive("upstream.sync_timeout_ms", self.sync_timeout_ms)?;
        check_positive("upstream.max_response_bytes", self.max_response_bytes as u64)?;
        if !self.ws_url.is_empty() {
            match url::Url::parse(&self.ws_url) {
                Ok(u) if matches!(u.scheme(), "ws" | "wss") => {}
                Ok(u) => {
                    return Err(ConfigError::invalid(
                        "upstream.ws_url",
                        format!("unsupported scheme {:?} (use ws or wss)", u.scheme()),
                    ))
                }
                Err(e) => {
                    return Err(ConfigError::invalid("upstream.ws_url", format!("not a URL: {e}")))
                }
            }
        }
        Ok(())
    }

    /// The upstream WebSocket URL: `ws_url`, or `url` with its scheme swapped (http→ws,
    /// https→wss) when `ws_url` is empty.
    pub fn effective_ws_url(&self) -> String {
        if !self.ws_url.is_empty() {
            return self.ws_url.clone();
        }
        match self.url.split_once("://") {
            Some(("https", rest)) => format!("wss://{rest}"),
            Some((_, rest)) => format!("ws://{rest}"),
            None => self.url.clone(),
        }
    }
}

/// What the ingress does with interop transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InteropMode {
    /// Validate and forward only what passes.
    Enforce,
    /// Emergency: refuse every interop transaction, forward the rest.
    RejectAll,
    /// Forward without checks (logged loudly, exposed as a metric).
    Bypass,
}

impl InteropMode {
    /// The config/admin string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::RejectAll => "reject-all",
            Self::Bypass => "bypass",
        }
    }
}

/// What the ingress does with an interop transaction sent with
/// `eth_sendRawTransactionConditional`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConditionalInterop {
    /// Validate it like any other submission.
    Validate,
    /// Refuse it (-32601): a public security review of the interop rollout recommends being able
    /// to keep interop txs off the conditional path.
    Refuse,
}

/// A token bucket: sustained rate and burst. A rate of 0 disables the limit.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per second, sustained (0 = unlimited).
    pub per_second: u32,
    /// Bucket size: most requests accepted at once (0 = `per_second`).
    pub burst: u32,
}

/// `[ingress]`: the `eth_sendRawTransaction` pipeline.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngressConfig {
    /// Serve the ingress role on `[server] listen`.
    pub enabled: bool,
    /// The executing (this) chain's id: a transaction for another chain is refused.
    pub chain_id: u64,
    /// Initial interop mode.
    pub mode: InteropMode,
    /// Minimum safety of initiating messages.
    pub min_safety: SafetyLevel,
    /// Descriptor timeout (seconds): how long a message must stay valid after submission
    /// (7200, as proxyd and op-reth ask; see config.toml).
    pub timeout_secs: u64,
    /// Interop txs sent with `eth_sendRawTransactionConditional`: validate or refuse.
    pub conditional_interop: ConditionalInterop,
    /// Largest number of inbox entries per transaction (before de-duplication).
    pub max_inbox_entries: usize,
    /// Largest number of distinct messages per transaction.
    pub max_messages: usize,
    /// Validations in flight at once; beyond that, -32024.
    pub max_in_flight: usize,
    /// Per client IP, every call.
    pub ip_rate: RateLimit,
    /// Per sender address, submissions only.
    pub sender_rate: RateLimit,
    /// Per sender address, interop submissions only (on top of `sender_rate`).
    pub interop_sender_rate: RateLimit,
    /// Per method across all clients (`{ method = { per_second, burst } }`).
    pub method_rates: std::collections::BTreeMap<String, RateLimit>,
    /// Largest number of distinct IPs/senders tracked by the rate limiters.
    pub rate_limit_keys: usize,
    /// Most transactions in one `eth_sendBundle` (proxyd's and builders' limit: 100).
    pub max_bundle_txs: usize,
    /// The request header that carries an API key.
    pub api_key_header: String,
    /// API-key tiers: name -> per-key limit that replaces the per-IP limit (0 = unlimited).
    pub api_tiers: std::collections::BTreeMap<String, RateLimit>,
    /// API keys: key -> tier name. Unknown keys get the anonymous (per-IP) limits.
    pub api_keys: std::collections::BTreeMap<String, String>,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            chain_id: 10,
            mode: InteropMode::Enforce,
            min_safety: SafetyLevel::CrossUnsafe,
            timeout_secs: 7_200,
            conditional_interop: ConditionalInterop::Validate,
            max_inbox_entries: 1_000,
            max_messages: 256,
            max_in_flight: 1_024,
            ip_rate: RateLimit { per_second: 0, burst: 0 },
            sender_rate: RateLimit { per_second: 0, burst: 0 },
            interop_sender_rate: RateLimit { per_second: 0, burst: 0 },
            method_rates: Default::default(),
            rate_limit_keys: 100_000,
            max_bundle_txs: 100,
            api_key_header: "x-api-key".into(),
            api_tiers: Default::default(),
            api_keys: Default::default(),
        }
    }
}

impl IngressConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_positive("ingress.max_inbox_entries", self.max_inbox_entries as u64)?;
        check_positive("ingress.max_messages", self.max_messages as u64)?;
        check_positive("ingress.max_in_flight", self.max_in_flight as u64)?;
        check_positive("ingress.rate_limit_keys", self.rate_limit_keys as u64)?;
        check_positive("ingress.max_bundle_txs", self.max_bundle_txs as u64)?;
        if http::HeaderName::from_bytes(self.api_key_header.as_bytes()).is_err() {
            return Err(ConfigError::invalid("ingress.api_key_header", "not a valid header name"));
        }
        for (key, tier) in &self.api_keys {
            if key.len() < 16 {
                return Err(ConfigError::invalid(
                    "ingress.api_keys",
                    "every key must be at least 16 characters",
                ));
            }
            if !self.api_tiers.contains_key(tier) {
                return Err(ConfigError::invalid(
                    "ingress.api_keys",
                    format!("tier {tier:?} is not defined in [ingress.api_tiers]"),
                ));
            }
        }
        if self.min_safety == SafetyLevel::Invalid {
            return Err(ConfigError::invalid(
                "ingress.min_safety",
                "\"invalid\" cannot be a minimum safety level",
            ));
        }
        Ok(())
    }
}

/// `[websocket]`: JSON-RPC over WebSocket on the ingress listener. Every limit is per
/// connection unless it says otherwise; the per-IP and per-method rate limits of `[ingress]`
/// apply to every call, exactly as over HTTP.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// Accept WebSocket upgrades on the ingress listener.
    pub enabled: bool,
    /// Paths that accept a GET upgrade (`POST /` stays HTTP JSON-RPC).
    pub paths: Vec<String>,
    /// Open WebSocket connections at once, all clients together; more are refused with HTTP 503.
    pub max_connections: usize,
    /// Largest message (and frame) a client may send, bytes; larger closes with 1009.
    pub max_message_bytes: usize,
    /// Largest message accepted from the upstream's WebSocket, bytes (results such as
    /// `eth_getLogs` can be large).
    pub upstream_max_message_bytes: usize,
    /// Messages queued for a client that does not read; when full the client is disconnected.
    pub send_queue: usize,
    /// Calls of one connection being answered at once; more get -32024.
    pub max_in_flight: usize,
    /// Open subscriptions per connection; more `eth_subscribe` calls get -32024.
    pub max_subscriptions: usize,
    /// `eth_subscribe` kinds proxied to the upstream (empty: subscriptions disabled).
    pub subscriptions: Vec<String>,
    /// A connection with no subscription that sends no message for this long (ms) is closed.
    pub idle_timeout_ms: u64,
    /// A ping is sent this often (ms); a client that has not answered the previous one by the
    /// next is closed.
    pub ping_interval_ms: u64,
    /// After the upstream WebSocket failed to connect, calls fail fast for this long (ms) before
    /// the next connection attempt.
    pub reconnect_backoff_ms: u64,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            paths: vec!["/".into(), "/ws".into()],
            max_connections: 10_000,
            max_message_bytes: 256 * 1024,
            upstream_max_message_bytes: 32 << 20,
            send_queue: 256,
            max_in_flight: 64,
            max_subscriptions: 32,
            subscriptions: ["newHeads", "logs", "newPendingTransactions", "syncing"]
                .map(String::from)
                .to_vec(),
            idle_timeout_ms: 300_000,
            ping_interval_ms: 30_000,
            reconnect_backoff_ms: 1_000,
        }
    }
}

impl WebSocketConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled && self.paths.is_empty() {
            return Err(ConfigError::invalid("websocket.paths", "needs at least one path"));
        }
        for p in &self.paths {
            if !p.starts_with('/') {
                return Err(ConfigError::invalid(
                    "websocket.paths",
                    format!("{p:?} must start with '/'"),
                ));
            }
        }
        check_positive("websocket.max_connections", self.max_connections as u64)?;
        check_positive("websocket.max_message_bytes", self.max_message_bytes as u64)?;
        check_positive(
            "websocket.upstream_max_message_bytes",
            self.upstream_max_message_bytes as u64,
        )?;
        check_positive("websocket.send_queue", self.send_queue as u64)?;
        check_positive("websocket.max_in_flight", self.max_in_flight as u64)?;
        check_positive("websocket.idle_timeout_ms", self.idle_timeout_ms)?;
        check_positive("websocket.ping_interval_ms", self.ping_interval_ms)?;
        Ok(())
    }
}

/// `[metrics]`: Prometheus `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address to listen on; empty disables the listener.
    pub listen: String,
    /// Path of op-conductor's rollup-boost health contract on this listener (point
    /// `--rollup-boost.next-healthcheck-url` at it); empty disables it.
    pub conductor_path: String,
    /// A health URL folded into the conductor state (a rollup-boost's `/healthz` when one is in
    /// the path, since op-conductor takes only one rollup-boost check); empty: none.
    pub conductor_compose_url: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:7300".into(),
            conductor_path: "/conductor".into(),
            conductor_compose_url: String::new(),
        }
    }
}

impl MetricsConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let p = self.conductor_path.as_str();
        if !p.is_empty()
            && (!p.starts_with('/') || ["/metrics", "/healthz", "/readyz"].contains(&p))
        {
            return Err(ConfigError::invalid(
                "metrics.conductor_path",
                "must start with / and differ from /metrics, /healthz and /readyz (or be empty)",
            ));
        }
        if !self.conductor_compose_url.is_empty() {
            check_url("metrics.conductor_compose_url", &self.conductor_compose_url)?;
        }
        Ok(())
    }
}

/// `[admin]`: the admin listener (status, modes, caches, failsafe).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on (keep it on loopback); empty disables the listener.
    pub listen: String,
    /// Bearer token required on every admin call (env `INTEROP_GATE_ADMIN_TOKEN`).
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:8546".into(), token: None }
    }
}

impl AdminConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.is_empty() {
            check_listen("admin.listen", &self.listen)?;
        }
        if self.token.as_deref() == Some("") {
            return Err(ConfigError::invalid(
                "admin.token",
                "must not be empty (omit it to disable auth)",
            ));
        }
        // Anyone who reaches an unauthenticated admin API can set `bypass`: beyond loopback a
        // token is required, not merely recommended.
        let exposed = self
            .listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| !a.ip().to_canonical().is_loopback());
        if exposed && self.token.is_none() {
            return Err(ConfigError::invalid(
                "admin.token",
                format!(
                    "is required when admin.listen ({}) is not a loopback address: set it (or \
                     INTEROP_GATE_ADMIN_TOKEN), or listen on 127.0.0.1",
                    self.listen
                ),
            ));
        }
        Ok(())
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter (`info`, `interop_gate=debug,info`, ...); `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".into() }
    }
}
