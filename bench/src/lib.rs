//! Load tools for throughput benchmarks (issue "throughput benchmark"): a
//! generator ([`send`]) and a discarding sink ([`sink`]) that speak SMTP
//! through sealpost's own protocol code, with optional STARTTLS. The
//! `sealpost-bench` binary is a thin command line over this module; see
//! `docs/smtp.md` for usage and figures. [`config_gen`] writes large
//! configurations for the scale benchmark (`benches/config_scale.rs`).

pub mod config_gen;
pub mod send;
pub mod sink;
pub mod tls;

pub use send::{SendOptions, SendReport};
pub use sink::{Sink, SinkOptions, SinkReport};
