//! The admin API: its own listener (loopback by default), JSON-RPC, bearer token when configured.
//!
//! Methods: `admin_status`, `admin_setInteropMode(mode)`, `admin_flushCaches`,
//! `admin_getFailsafeEnabled` (always; `false` without a light server) and, when the light server
//! runs, `admin_setFailsafeEnabled(bool)`.
//! Roles register what they expose; the admin module owns no role state.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::future::BoxFuture;
use serde_json::json;
use serde_json::value::RawValue;

use crate::config::InteropMode;
use crate::metrics::metrics;
use crate::rpc::codes;
use crate::rpc::server::MethodTable;
use crate::rpc::server::{rpc_router, CallContext, Handler, Limits};
use crate::rpc::types::{to_raw, Call, RpcError};

/// The ingress's interop mode, shared between the pipeline and the admin API.
pub struct ModeCell(AtomicU8);

impl ModeCell {
    const MODES: [InteropMode; 3] =
        [InteropMode::Enforce, InteropMode::RejectAll, InteropMode::Bypass];

    /// A cell holding `mode`.
    pub fn new(mode: InteropMode) -> Self {
        let c = Self(AtomicU8::new(0));
        c.set(mode);
        c
    }

    /// The current mode.
    pub fn get(&self) -> InteropMode {
        Self::MODES[self.0.load(Ordering::Relaxed) as usize % 3]
    }

    /// Changes the mode; bypass is logged loudly and visible as a metric.
    pub fn set(&self, mode: InteropMode) {
        let i = Self::MODES.iter().position(|m| *m == mode).unwrap_or(0);
        self.0.store(i as u8, Ordering::Relaxed);
        for m in Self::MODES {
            metrics().interop_mode.with_label_values(&[m.as_str()]).set(i64::from(m == mode));
        }
        match mode {
            InteropMode::Bypass => tracing::warn!(
                mode = mode.as_str(),
                "interop mode BYPASS: interop transactions are forwarded WITHOUT validation"
            ),
            InteropMode::RejectAll => tracing::warn!(
                mode = mode.as_str(),
                "interop mode reject-all: every interop transaction is refused"
            ),
            InteropMode::Enforce => tracing::info!(mode = mode.as_str(), "interop mode enforce"),
        }
    }
}

/// A failsafe switch a role exposes (the light server's).
pub trait FailsafeSwitch: Send + Sync + 'static {
    /// Whether failsafe is on.
    fn enabled(&self) -> bool;
    /// Turns failsafe on or off.
    fn set_enabled(&self, on: bool);
}

/// Empties one cache.
pub type Flusher = Arc<dyn Fn() + Send + Sync>;

/// What the admin API can act on.
#[derive(Default, Clone)]
pub struct Admin {
    /// The ingress mode, when the ingress runs.
    pub mode: Option<Arc<ModeCell>>,
    /// Cache flushers, by name.
    pub flushers: Vec<(&'static str, Flusher)>,
    /// The light server's failsafe switch.
    pub failsafe: Option<Arc<dyn FailsafeSwitch>>,
}

/// The admin listener's methods.
#[derive(Debug, Clone, Copy)]
enum AdminMethod {
    Status,
    SetInteropMode,
    FlushCaches,
    GetFailsafeEnabled,
    SetFailsafeEnabled,
}

/// The one table of the admin listener's methods (dispatch and metric labels).
const ADMIN_METHODS: MethodTable<AdminMethod> = MethodTable(&[
    ("admin_status", AdminMethod::Status),
    ("admin_setInteropMode", AdminMethod::SetInteropMode),
    ("admin_flushCaches", AdminMethod::FlushCaches),
    ("admin_getFailsafeEnabled", AdminMethod::GetFailsafeEnabled),
    ("admin_setFailsafeEnabled", AdminMethod::SetFailsafeEnabled),
]);

impl Handler for Admin {
    fn call<'a>(
        &'a self,
        _ctx: &'a CallContext,
        call: Call,
    ) -> BoxFuture<'a, Result<Box<RawValue>, RpcError>> {
        Box::pin(async move {
            let Some(method) = ADMIN_METHODS.get(&call.method) else {
                return Err(RpcError::method_not_found(&call.method));
            };
            match method {
                AdminMethod::Status => Ok(to_raw(&json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "commit": crate::metrics::COMMIT,
                    "interopMode": self.mode.as_ref().map(|m| m.get().as_str()),
                    "failsafe": self.failsafe.as_ref().map(|f| f.enabled()),
                    "caches": self.flushers.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                }))),
                AdminMethod::SetInteropMode => {
                    let cell = self
                        .mode
                        .as_ref()
                        .ok_or_else(|| RpcError::method_not_found(&call.method))?;
                    let (mode,): (InteropMode,) = call.parse_params()?;
                    cell.set(mode);
                    Ok(to_raw(mode.as_str()))
                }
                AdminMethod::FlushCaches => {
                    for (name, f) in &self.flushers {
                        f();
                        tracing::info!(cache = name, "cache flushed by admin");
                    }
                    Ok(to_raw(&self.flushers.iter().map(|(n, _)| *n).collect::<Vec<_>>()))
                }
                // Answered on every admin listener: `false` when no role here has a failsafe
                // switch (nothing can be in failsafe), so a poller never mistakes "no light
                // server here" for an error.
                AdminMethod::GetFailsafeEnabled => {
                    Ok(to_raw(&self.failsafe.as_ref().is_some_and(|f| f.enabled())))
                }
                AdminMethod::SetFailsafeEnabled => {
                    let f = self
                        .failsafe
                        .as_ref()
                        .ok_or_else(|| RpcError::method_not_found(&call.method))?;
                    let (on,): (bool,) = call.parse_params()?;
                    f.set_enabled(on);
                    tracing::warn!(failsafe = on, "failsafe set by admin");
                    Ok(to_raw(&serde_json::Value::Null))
                }
            }
        })
    }

    fn method_label(&self, method: &str) -> &'static str {
        ADMIN_METHODS.label(method)
    }
}

/// Byte comparison whose time does not depend on where the inputs differ (`subtle`, as the
/// ingress's API-key lookup; only the length is not hidden).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is case-insensitive
/// (RFC 7235 §2.1), so `bearer` and `BEARER` work as well.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_matches(' '))
}

async fn require_token(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        return next.run(req).await;
    }
    let body = json!({"jsonrpc": "2.0", "error": {"code": codes::UNAUTHORIZED, "message": "unauthorized: a valid admin bearer token is required"}, "id": null});
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

/// The admin router (JSON-RPC on `POST /`), behind the token when one is configured.
pub fn router(admin: Admin, token: Option<&str>) -> Router {
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        max_batch: 10,
        trusted_proxy_depth: 0,
        error_status: false,
    };
    let r = rpc_router("admin", Arc::new(admin), limits);
    match token {
        Some(t) => r.layer(middleware::from_fn_with_state(Arc::<str>::from(t), require_token)),
        None => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in ["Bearer t0k", "bearer t0k", "BEARER t0k", "BeArEr   t0k"] {
            assert_eq!(bearer_token(v), Some("t0k"), "{v}");
        }
        assert_eq!(bearer_token("Basic t0k"), None);
        assert_eq!(bearer_token("Bearert0k"), None);
        assert_eq!(bearer_token("t0k"), None);
    }

    #[test]
    fn token_comparison_checks_every_byte() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
