//! sealpost: a mail transfer agent for email security gateways that host many
//! customer domains and enforce per-domain TLS peer policies.
//!
//! The binary (`src/main.rs`) only parses arguments; everything lives here.
//! See `docs/architecture.md` for how the parts fit together.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod logging;
pub mod policy;
