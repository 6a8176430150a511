//! Typed configuration. Every section's defaults live in its `Default` impl (one place); the
//! top-level `config.toml` documents every key with that same default, and a test checks the
//! two agree. Unknown keys are refused (`deny_unknown_fields`) and semantic checks name the key.

mod gateway;
mod light_server;
mod redis;
mod revalidator;
mod validation;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use gateway::{
    AdminConfig, ConditionalInterop, IngressConfig, InteropMode, LogConfig, LogFormat,
    MetricsConfig, RateLimit, ServerConfig, UpstreamConfig, WebSocketConfig,
};
pub use light_server::LightServerConfig;
pub use redis::{OnRedisError, RedisConfig};
pub use revalidator::RevalidatorConfig;
pub use validation::{
    ChainRpcConfig, EndpointConfig, LightConfig, Namespace, PolicyMode, Strategy, SupervisorConfig,
    ValidationConfig,
};

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The public JSON-RPC listener (ingress role).
    pub server: ServerConfig,
    /// The execution client that accepted requests are forwarded to.
    pub upstream: UpstreamConfig,
    /// The ingress filter role.
    pub ingress: IngressConfig,
    /// JSON-RPC over WebSocket on the ingress listener.
    pub websocket: WebSocketConfig,
    /// The validation engine shared by every role.
    pub validation: ValidationConfig,
    /// The indexed backend: op-supervisor compatible endpoints.
    pub supervisor: SupervisorConfig,
    /// The light backend: source-chain RPCs.
    pub light: LightConfig,
    /// The light-mode supervisor endpoint role.
    pub light_server: LightServerConfig,
    /// The mempool revalidator role.
    pub revalidator: RevalidatorConfig,
    /// Prometheus and health listener.
    pub metrics: MetricsConfig,
    /// Admin listener.
    pub admin: AdminConfig,
    /// Logging.
    pub log: LogConfig,
    /// The shared state store of replicas (rate limits, invalid verdicts); absent URL = none.
    pub redis: RedisConfig,
}

/// A configuration that could not be loaded; the message names the file and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML did not parse or did not match the schema (unknown key, wrong type).
    #[error("{path}: {message}")]
    Parse {
        /// The path.
        path: String,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid config: `{key}`: {message}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { key: key.into(), message: message.into() }
    }
}

/// Environment variables that override URLs and secrets, so they need not sit in a file.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("INTEROP_GATE_UPSTREAM_URL", "upstream.url"),
    ("INTEROP_GATE_SUPERVISOR_URLS", "supervisor.endpoints (comma-separated name=url or url)"),
    ("INTEROP_GATE_REVALIDATOR_EL_URL", "revalidator.el_url"),
    ("INTEROP_GATE_ADMIN_TOKEN", "admin.token"),
    ("INTEROP_GATE_REDIS_URL", "redis.url"),
];

impl Config {
    /// Parses TOML text (no environment overrides).
    pub fn from_toml(text: &str, path: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Loads a file, applies environment overrides, validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: p.clone(), source })?;
        let mut cfg: Config = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: p, message: e.to_string() })?;
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Applies the [`ENV_OVERRIDES`] found by `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("INTEROP_GATE_UPSTREAM_URL") {
            self.upstream.url = v;
        }
        if let Some(v) = get("INTEROP_GATE_SUPERVISOR_URLS") {
            self.supervisor.endpoints = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .enumerate()
                .map(|(i, s)| match s.split_once('=') {
                    Some((name, url)) if !name.contains("://") => {
                        EndpointConfig { name: name.to_owned(), url: url.to_owned() }
                    }
                    _ => EndpointConfig { name: format!("supervisor-{i}"), url: s.to_owned() },
                })
                .collect();
        }
        if let Some(v) = get("INTEROP_GATE_REVALIDATOR_EL_URL") {
            self.revalidator.el_url = v;
        }
        if let Some(v) = get("INTEROP_GATE_ADMIN_TOKEN") {
            self.admin.token = Some(v);
        }
        if let Some(v) = get("INTEROP_GATE_REDIS_URL") {
            self.redis.url = Some(v);
        }
        Ok(())
    }

    /// Semantic checks across sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.upstream.validate()?;
        self.ingress.validate()?;
        self.websocket.validate()?;
        self.validation.validate()?;
        self.supervisor.validate()?;
        self.light.validate()?;
        self.light_server.validate()?;
        self.revalidator.validate()?;
        self.admin.validate()?;
        self.metrics.validate()?;
        self.redis.validate()?;
        Ok(())
    }
}

/// Checks that `url` parses as an http(s) URL; names `key` otherwise.
pub(crate) fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        Ok(u) => Err(ConfigError::invalid(
            key,
            format!("unsupported scheme {:?} (use http or https)", u.scheme()),
        )),
        Err(e) => Err(ConfigError::invalid(key, format!("not a URL: {e}"))),
    }
}

/// Checks that `addr` is a socket address; names `key` otherwise.
pub(crate) fn check_listen(key: &str, addr: &str) -> Result<(), ConfigError> {
    addr.parse::<std::net::SocketAddr>()
        .map(|_| ())
        .map_err(|e| ConfigError::invalid(key, format!("not a listen address (ip:port): {e}")))
}

/// Checks a value is positive; names `key` otherwise.
pub(crate) fn check_positive(key: &str, v: u64) -> Result<(), ConfigError> {
    if v == 0 {
        return Err(ConfigError::invalid(key, "must be greater than 0"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_config_toml_is_the_defaults() {
        let text = include_str!("../../config.toml");
        let cfg = Config::from_toml(text, "config.toml").expect("config.toml parses");
        assert_eq!(cfg, Config::default());
    }

    /// Every key the service knows is written out in `config.toml` (optional keys such as
    /// `admin.token` as a commented line) and preceded by a comment, so the file is the reference.
    #[test]
    fn config_toml_documents_every_key() {
        fn keys(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
            if let toml::Value::Table(t) = v {
                for (k, v) in t {
                    let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    match v {
                        toml::Value::Table(_) => keys(&path, v, out),
                        _ => out.push(path),
                    }
                }
            }
        }
        let text = include_str!("../../config.toml");
        let mut expected = Vec::new();
        keys("", &toml::Value::try_from(Config::default()).expect("serializes"), &mut expected);
        assert!(expected.len() > 50, "{expected:?}");
        // Section of each line, and whether the line before is a comment.
        let mut section = String::new();
        let mut documented = std::collections::HashSet::new();
        let mut prev_comment = false;
        for line in text.lines() {
            let l = line.trim();
            if let Some(s) = l.strip_prefix('[') {
                section = s.trim_end_matches(']').to_owned();
            } else if l.trim_start_matches("# ").contains(" = ")
                && (prev_comment || l.starts_with('#'))
            {
                // Parse the line itself so inline tables (`k = { a = 1 }`) count key by key.
                // A multi-line array does not parse alone: its key is what precedes ` = `.
                let l = l.trim_start_matches("# ");
                match toml::from_str::<toml::Value>(l) {
                    Ok(one) => {
                        let mut found = Vec::new();
                        keys(&section, &one, &mut found);
                        documented.extend(found);
                    }
                    Err(_) => {
                        let k = l.split_once(" = ").map_or(l, |(k, _)| k).trim();
                        documented.insert(format!("{section}.{k}"));
                    }
                }
            }
            prev_comment = l.starts_with('#');
        }
        let missing: Vec<_> = expected.iter().filter(|k| !documented.contains(*k)).collect();
        assert!(missing.is_empty(), "keys missing or undocumented in config.toml: {missing:?}");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = Config::from_toml("[server]\nlisten = \"0.0.0.0:1\"\nmax_bodyy = 3\n", "x.toml")
            .unwrap_err();
        assert!(e.to_string().contains("max_bodyy"), "{e}");
        let e = Config::from_toml("[upstream]\nurl = \"ftp://x\"\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("upstream.url"), "{e}");
        let e = Config::from_toml("[server]\nmax_batch = 0\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("server.max_batch"), "{e}");
        let e = Config::from_toml("[ingress]\nmin_safety = \"Safe\"\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("Safe"), "{e}");
        let e = Config::from_toml("[nope]\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn env_overrides_urls_and_secrets() {
        let mut cfg = Config::default();
        let env = |k: &str| match k {
            "INTEROP_GATE_UPSTREAM_URL" => Some("http://el:8545".to_owned()),
            "INTEROP_GATE_SUPERVISOR_URLS" => Some("a=http://s1:1, http://user:pw@s2:2".to_owned()),
            "INTEROP_GATE_ADMIN_TOKEN" => Some("s3cret".to_owned()),
            _ => None,
        };
        cfg.apply_env(env).unwrap();
        assert_eq!(cfg.upstream.url, "http://el:8545");
        assert_eq!(cfg.supervisor.endpoints.len(), 2);
        assert_eq!(cfg.supervisor.endpoints[0].name, "a");
        assert_eq!(cfg.supervisor.endpoints[1].name, "supervisor-1");
        assert_eq!(cfg.supervisor.endpoints[1].url, "http://user:pw@s2:2");
        assert_eq!(cfg.admin.token.as_deref(), Some("s3cret"));
        cfg.validate().unwrap();
    }
}
