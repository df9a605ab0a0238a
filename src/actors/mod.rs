//! The delivery engine's actors (actix), as `docs/architecture.md` draws
//! them:
//!
//! - one [`Scheduler`] on the engine's own thread: due index -> leases ->
//!   destination actors, bounces -> DSNs;
//! - one [`Tenant`] per tenant with mail in the engine, on the same
//!   arbiter: its leases in flight (in total and per destination), and
//!   leasing its due mail within its quotas when the scheduler grants it
//!   slots; its limits are published as an immutable snapshot the admin
//!   socket reads;
//! - one [`Destination`] per next hop, spread round robin over one arbiter
//!   (thread with its own event loop) per core: pool, backoff,
//!   concurrency, and the leases waiting there, served tenant by tenant in
//!   turn; its SMTP sessions run as futures on that arbiter.
//!
//! The fairness rules between tenants are in [`fair`].
//!
//! Policy is not sent around as messages: every attempt reads the
//! configuration in force from [`crate::live::LiveConfig`] (an `Arc` swap
//! on reload), so a reload applies to the next attempt of queued mail.
//! Actors hold state and decide; I/O runs as futures.

pub mod destination;
pub mod fair;
pub mod messages;
pub(crate) mod scheduler;
pub mod status;
pub mod tenant;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use actix::prelude::*;

pub use destination::Destination;
pub use messages::{Deliver, Done, Flush};
pub(crate) use scheduler::{FlushDestination, Pause, Scheduler, Wake};
pub use status::TenantSnapshot;
pub(crate) use status::{DestinationStatus, StatusBoard, TenantBoard};
pub use tenant::Tenant;

use crate::admin::DeliveryView;
use crate::delivery::DeliveryContext;
use crate::service::Heartbeat;

/// The running engine: wake it when mail is queued, read its destinations,
/// stop it at shutdown.
pub struct Engine {
    scheduler: Addr<Scheduler>,
    system: actix::System,
    thread: Option<JoinHandle<()>>,
    board: Arc<StatusBoard>,
    tenants: Arc<TenantBoard>,
}

/// Why the engine did not start.
#[derive(Debug, thiserror::Error)]
#[error("the delivery engine did not start: {0}")]
pub struct EngineError(String);

impl Engine {
    /// Starts the actor system on its own thread with `arbiters` worker
    /// arbiters (at least one).
    pub fn start(shared: Arc<DeliveryContext>, arbiters: usize) -> Result<Engine, EngineError> {
        Engine::start_with(shared, arbiters, Arc::new(Heartbeat::default()))
    }

    /// As [`Engine::start`]; the scheduler's loop beats `heartbeat` on
    /// every tick (readiness and the systemd watchdog read it).
    pub fn start_with(
        shared: Arc<DeliveryContext>,
        arbiters: usize,
        heartbeat: Arc<Heartbeat>,
    ) -> Result<Engine, EngineError> {
        let board = Arc::new(StatusBoard::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let thread_board = board.clone();
        let tenants = Arc::new(TenantBoard::default());
        let thread_tenants = tenants.clone();
        let thread = std::thread::Builder::new()
            .name("sealpost-delivery".into())
            .spawn(move || {
                let system = actix::System::new();
                system.block_on(async move {
                    let workers: Vec<Arbiter> =
                        (0..arbiters.max(1)).map(|_| Arbiter::new()).collect();
                    let handles = workers.iter().map(Arbiter::handle).collect();
                    let scheduler = Scheduler::new(shared, handles, thread_board, thread_tenants)
                        .with_heartbeat(heartbeat)
                        .start();
                    let _ = tx.send((scheduler, actix::System::current()));
                    // The arbiters stop with the system.
                    std::mem::forget(workers);
                });
                let _ = system.run();
            })
            .map_err(|e| EngineError(e.to_string()))?;
        let (scheduler, system) = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| EngineError(e.to_string()))?;
        Ok(Engine {
            scheduler,
            system,
            thread: Some(thread),
            board,
            tenants,
        })
    }

    /// Look for due work now (called after a message is queued).
    pub fn wake(&self) {
        self.scheduler.do_send(Wake);
    }

    /// A cheap handle for the SMTP reception to call [`Engine::wake`].
    pub(crate) fn waker(&self) -> Arc<dyn Fn() + Send + Sync> {
        let scheduler = self.scheduler.clone();
        Arc::new(move || scheduler.do_send(Wake))
    }

    /// The tenants' published snapshots (domains, in-flight limits).
    pub fn tenants(&self) -> Arc<TenantBoard> {
        self.tenants.clone()
    }

    /// What the admin socket reads and flushes.
    pub fn view(&self) -> Arc<EngineView> {
        Arc::new(EngineView {
            scheduler: self.scheduler.clone(),
            board: self.board.clone(),
            tenants: self.tenants.clone(),
        })
    }

    /// Stops taking work: no new leases, no new bounces; the leases
    /// waiting in destination actors (not started) go back to the queue,
    /// due now. Attempts under way go on.
    pub fn pause(&self) {
        self.scheduler.do_send(Pause);
    }

    /// Attempts under way (delivery connections open), as the
    /// destinations last published them.
    pub(crate) fn attempts_under_way(&self) -> usize {
        self.board.all().iter().map(|d| d.active_connections).sum()
    }

    /// [`Engine::pause`], gives running attempts until `grace` has passed
    /// to finish, then stops the actors. Leases cut short are due again at
    /// the next start (the queue keeps no lease across a restart).
    pub fn stop(mut self, grace: Duration) {
        self.pause();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline && self.attempts_under_way() > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        let cut = self.attempts_under_way();
        if cut > 0 {
            tracing::warn!(attempts = cut, grace = ?grace, "delivery attempts cut short at shutdown; their mail is due again at the next start");
        }
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The engine as the admin socket sees it: the destinations' published
/// state, and a flush that clears one destination's backoff and pool.
pub struct EngineView {
    scheduler: Addr<Scheduler>,
    board: Arc<StatusBoard>,
    tenants: Arc<TenantBoard>,
}

impl DeliveryView for EngineView {
    fn destinations(&self) -> Vec<DestinationStatus> {
        self.board.all()
    }

    fn flush(&self, destination: &str) -> bool {
        if self.board.get(destination).is_none() {
            return false;
        }
        self.scheduler
            .do_send(FlushDestination(destination.to_string()));
        true
    }

    fn tenant_limit(&self, tenant: &str) -> Option<usize> {
        self.tenants.get(tenant).map(|t| t.max_in_flight)
    }
}
