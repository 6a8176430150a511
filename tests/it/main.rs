//! The integration tests: one binary (as reth and alloy do), so CI links once instead of once per file.
//! Each module starts the real app or the real binary on `127.0.0.1:0` and talks HTTP/WebSocket to it.

mod activation;
mod admin;
mod binary;
mod bundle;
mod common;
mod dashboard;
mod decode_corpus;
mod decode_ethereum_tests;
mod decode_vectors;
mod deploy;
mod dev_dashboard;
mod dev_wallet;
mod front_door;
mod fuzz_http_surface;
mod gateway;
mod ingress;
mod light_server;
mod metrics_init;
mod receipts_anvil;
mod refusals;
mod reload;
mod revalidator_api;
mod revalidator_mirror;
mod revalidator_passes;
mod revalidator_recheck;
mod revalidator_supervisor;
mod revalidator_support;
mod shared_state;
mod submission_methods;
mod validation;
mod verdict_integrity;
mod ws;
