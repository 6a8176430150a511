//! interop-gate: keeps invalid OP Stack interop transactions away from the sequencer.
//!
//! Layout (one module per role and per boundary):
//! - [`interop`]: pure protocol code (decoding, access lists, checksums, wire types).
//! - [`validation`]: the engine that turns a check request into a verdict.
//! - [`rpc`]: JSON-RPC plumbing shared by every listener (server, client, codes).
//! - [`ingress`]: the public front door (forwarding, the submission pipeline).
//! - [`revalidator`]: the mempool revalidator (pool polling, presumed blocks, EL-facing API).
//! - [`shared_state`]: the Redis replicas share rate limits and invalid verdicts through.
//! - [`config`], [`metrics`], [`health`], [`conductor`], [`telemetry`], [`clock`]: around the
//!   roles.
//! - [`check_config`], [`reload`]: `check-config` and SIGHUP.
//! - [`app`]: start-up and shutdown of the enabled roles.
//! - [`dev`]: the embedded devnet and the in-process peers tests share.

pub mod admin;
pub mod app;
pub mod check_config;
pub mod clock;
pub mod conductor;
pub mod config;
pub mod dev;
pub mod health;
pub mod ingress;
pub mod interop;
pub mod light_server;
pub mod metrics;
pub mod reload;
pub mod revalidator;
pub mod rpc;
pub mod shared_state;
pub mod telemetry;
pub mod validation;
