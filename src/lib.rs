//! interop-gate: keeps invalid OP Stack interop transactions away from the sequencer.
//!
//! Layout (one module per role and per boundary):
//! - [`interop`]: pure protocol code (decoding, access lists, checksums, wire types).
//! - [`validation`]: the engine that turns a check request into a verdict.
//! - [`rpc`]: JSON-RPC plumbing shared by every listener.
//! - [`metrics`]: the Prometheus registry.
//! - [`revalidator`]: the mempool revalidator role (pool polling, presumed blocks, EL-facing API).

pub mod config;
pub mod dev;
pub mod interop;
pub mod metrics;
pub mod revalidator;
pub mod rpc;
pub mod validation;
