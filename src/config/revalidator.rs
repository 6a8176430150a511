//! `[revalidator]`: the mempool revalidator.

use serde::Deserialize;

use super::{check_listen, check_url, ConfigError};

/// `[revalidator]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RevalidatorConfig {
    /// Run the revalidator.
    pub enabled: bool,
    /// Address of its EL-facing JSON-RPC listener.
    pub listen: String,
    /// The execution client whose pool is watched (env `INTEROP_GATE_REVALIDATOR_EL_URL`).
    pub el_url: String,
}

impl Default for RevalidatorConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "0.0.0.0:8561".into(),
            el_url: "http://127.0.0.1:9545".into(),
        }
    }
}

impl RevalidatorConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled {
            check_listen("revalidator.listen", &self.listen)?;
            check_url("revalidator.el_url", &self.el_url)?;
        }
        Ok(())
    }
}
