//! sealpost: a mail transfer agent for email security gateways that host many
//! customer domains and enforce per-domain TLS peer policies.
//!
//! The binary (`src/main.rs`) only parses arguments; everything lives here.
//! See `docs/architecture.md` for how the parts fit together.
// One exception, `memory` (a call into the C library), allows it locally.
#![deny(unsafe_code)]

pub mod acme;
pub mod actors;
pub mod admin;
pub mod atomic_file;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod console;
pub mod dane;
pub mod date;
pub mod delivery;
pub mod dns;
pub mod dsn;
pub mod inbound;
pub mod live;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod mta_sts;
mod parallel;
pub mod policy;
pub mod probe;
pub mod server;
pub mod service;
pub mod smtp;
pub mod tls;
pub mod tlsrpt;
