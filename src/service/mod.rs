//! Running sealpost as a service that an init system, a load balancer and
//! an orchestrator can trust:
//!
//! - [`health`]: liveness and readiness (`GET /healthz/live`,
//!   `GET /healthz/ready` on the admin socket and the metrics listener):
//!   the listeners are open, the queue directory takes a durable write, the
//!   delivery engine's loop ticked recently, and the data directory's file
//!   system keeps its reserve (`[limits] min_free_disk`);
//! - [`heartbeat`]: the delivery engine's loop marks each tick, which
//!   readiness reads and which feeds the systemd watchdog;
//! - [`notify`]: the systemd notify protocol (`sd_notify(3)`: `READY=1`,
//!   `RELOADING=1`, `STOPPING=1`, `WATCHDOG=1`), a no-op when sealpost was
//!   not started by systemd with `Type=notify`.
//!
//! The unit file, package and container image that use them are in
//! `dist/` (`docs/service.md`).

pub mod health;
pub mod heartbeat;
pub mod notify;

pub use health::Check;

pub(crate) use health::Health;
pub use heartbeat::Heartbeat;
