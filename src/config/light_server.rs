//! `[light_server]`: the supervisor-compatible endpoint over the light backend.

use serde::{Deserialize, Serialize};

use std::net::SocketAddr;

use super::ConfigError;

/// `[light_server]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LightServerConfig {
    /// Serve the endpoint.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Enter failsafe when a reorg is seen (off: re-fetch and re-verify instead).
    pub failsafe_on_reorg: bool,
    /// Largest number of distinct messages one check may ask about (either form).
    pub max_messages: usize,
}

impl Default for LightServerConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([0, 0, 0, 0], 8560)),
            failsafe_on_reorg: false,
            // proxyd's interop access-list limit is 1000 keys; a message takes 2 or 3.
            max_messages: 1_000,
        }
    }
}

impl LightServerConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled {
            super::check_positive("light_server.max_messages", self.max_messages as u64)?;
        }
        Ok(())
    }
}
