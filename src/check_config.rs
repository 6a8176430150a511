//! `interop-gate check-config`: what start-up would refuse beyond the schema, and the effective
//! config printed with its secrets redacted.

use crate::config::{Config, InteropMode};

/// Replaces a secret in printed output.
pub const REDACTED: &str = "<redacted>";
/// Replaces a secret inside a URL (a word that needs no percent-encoding).
const URL_REDACTED: &str = "redacted";

/// Why a config that parses and validates would still not do its job. `allow_no_backend` is the
/// operator saying that an ingress without any validation backend (every interop transaction
/// refused) is intended.
pub fn problems(cfg: &Config, allow_no_backend: bool) -> Vec<String> {
    let mut out = Vec::new();
    let has_backend = !cfg.supervisor.endpoints.is_empty() || !cfg.light.chains.is_empty();
    if cfg.ingress.enabled
        && !has_backend
        && cfg.ingress.mode == InteropMode::Enforce
        && !allow_no_backend
    {
        out.push(
            "the ingress is enabled without any validation backend (no [supervisor] endpoints, \
             no [[light.chains]]): every interop transaction would be refused; configure a \
             backend, or pass --allow-no-backend if that is intended"
                .to_owned(),
        );
    }
    if cfg.revalidator.enabled && !has_backend {
        out.push(
            "revalidator.enabled needs a validation backend ([supervisor] endpoints or \
             [[light.chains]]): start-up would fail"
                .to_owned(),
        );
    }
    if cfg.light_server.enabled && cfg.light.chains.is_empty() {
        out.push(
            "light_server.enabled needs at least one [[light.chains]] entry: start-up would fail"
                .to_owned(),
        );
    }
    out
}

/// A URL with its credentials removed: user info, query and fragment, and any path segment long
/// enough to be an API key (`/v3/<key>`), so the output can be pasted into a ticket.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => redact(&u).to_string(),
        Err(_) => REDACTED.to_owned(),
    }
}

/// [`redact_url`] on a parsed URL (the config holds parsed URLs).
fn redact(url: &url::Url) -> url::Url {
    let mut u = url.clone();
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_username(URL_REDACTED);
        let _ = u.set_password(None);
    }
    if u.query().is_some() {
        u.set_query(Some(URL_REDACTED));
    }
    u.set_fragment(None);
    let path: Vec<String> = u
        .path_segments()
        .map(|segs| segs.map(|s| if s.len() >= 16 { URL_REDACTED } else { s }.to_owned()).collect())
        .unwrap_or_default();
    if !path.is_empty() {
        u.set_path(&path.join("/"));
    }
    u
}

/// The effective config (file plus environment overrides) as TOML, with `admin.token` and URL
/// credentials redacted.
pub fn redacted_toml(cfg: &Config) -> String {
    let mut c = cfg.clone();
    if c.admin.token.is_some() {
        c.admin.token = Some(REDACTED.to_owned());
    }
    c.upstream.url = redact(&c.upstream.url);
    c.upstream.ws_url = c.upstream.ws_url.as_ref().map(redact);
    c.metrics.conductor_compose_url = c.metrics.conductor_compose_url.as_ref().map(redact);
    // A Redis URL carries the password in its userinfo (`redis://:pw@host`).
    c.redis.url = c.redis.url.as_ref().map(redact);
    // API keys are secrets; the tiers they map to are not.
    c.ingress.api_keys = c
        .ingress
        .api_keys
        .values()
        .enumerate()
        .map(|(i, tier)| (format!("{REDACTED}-{i}"), tier.clone()))
        .collect();
    c.revalidator.el_url = redact(&c.revalidator.el_url);
    for e in &mut c.supervisor.endpoints {
        e.url = redact(&e.url);
    }
    for chain in &mut c.light.chains {
        for e in &mut chain.endpoints {
            e.url = redact(&e.url);
        }
    }
    toml::to_string(&c).unwrap_or_else(|e| format!("# cannot print the config: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_but_keep_host_and_short_paths() {
        assert_eq!(
            redact_url("https://user:pw@rpc.example:8545/v3/0123456789abcdef0123?key=s3cret#x"),
            "https://redacted@rpc.example:8545/v3/redacted?redacted"
        );
        assert_eq!(redact_url("http://127.0.0.1:9545"), "http://127.0.0.1:9545/");
        assert_eq!(redact_url("not a url"), REDACTED);
    }

    #[test]
    fn the_printed_config_hides_api_keys_and_the_redis_password() {
        let mut cfg = Config::default();
        cfg.ingress.api_keys.insert("sekret-key-1".into(), "partner".into());
        cfg.redis.url = Some("redis://:hunter2@10.0.0.5:6379/0".parse().unwrap());
        let out = redacted_toml(&cfg);
        assert!(!out.contains("sekret-key-1") && !out.contains("hunter2"), "{out}");
        assert!(out.contains("partner") && out.contains("10.0.0.5"), "{out}");
    }

    #[test]
    fn ingress_without_backend_is_a_problem_unless_allowed() {
        let cfg = Config::default();
        assert_eq!(problems(&cfg, false).len(), 1);
        assert!(problems(&cfg, true).is_empty());
        let mut bypass = cfg.clone();
        bypass.ingress.mode = InteropMode::Bypass;
        assert!(problems(&bypass, false).is_empty(), "bypass forwards: nothing refused");
    }
}
