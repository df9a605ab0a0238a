//! The admin API of `sealpost serve`: HTTP/1.1 with JSON on a Unix socket
//! (`[admin] socket`), for operators and the `sealpost queue`,
//! `destinations` and `reload` commands; and an optional read-only TCP
//! listener (`[admin] metrics_listen`) that serves only `GET /metrics`.
//!
//! - [`socket`]: creating the socket file safely (mode, group, stale files);
//! - [`http`]: per-connection limits, JSON responses and errors;
//! - [`routes`]: the endpoints (`docs/admin-api.md`);
//! - [`views`]: the JSON shapes, shared with the client;
//! - [`top`]: the snapshot `sealpost top` polls (`GET /top`);
//! - [`client`]: the client the CLI uses.
//!
//! Access control is the socket file's permissions: whoever may connect
//! may act on the queue and reload the configuration.

pub mod audit;
pub mod client;
pub mod drain;
pub mod http;
pub mod routes;
pub mod socket;
pub(crate) mod tenant_edits;
pub mod tls_reports;
pub mod top;
pub mod views;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use sealpost_queue::Queue;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

pub use views::DestinationStatus;

use crate::config::AdminConfig;
use crate::live::{LiveConfig, ReloadReport};
use crate::metrics::Metrics;

/// What the delivery engine tells the admin API about its destinations.
pub trait DeliveryView: Send + Sync {
    /// Every destination the engine holds state for (DNS, TLS, pool, backoff).
    fn destinations(&self) -> Vec<DestinationStatus>;
    /// Ends every pause of one destination and closes its idle
    /// connections (DNS and MTA-STS answers are cached globally and stay);
    /// `false` when the engine knows no such destination.
    fn flush(&self, destination: &str) -> bool;
    /// The in-flight limit the tenant's actor published (`None`: the
    /// engine has not seen the tenant's mail yet).
    fn tenant_limit(&self, _tenant: &str) -> Option<usize> {
        None
    }
}

/// Re-reads the configuration and certificates; the report, or why the
/// reload was refused.
pub(crate) type ReloadFn =
    Arc<dyn Fn() -> Result<ReloadReport, crate::live::ReloadError> + Send + Sync>;

/// Everything the endpoints read and act on.
pub struct AdminState {
    pub queue: Arc<Queue>,
    pub live: Arc<LiveConfig>,
    pub metrics: Arc<Metrics>,
    pub delivery: Arc<dyn DeliveryView>,
    pub reload: ReloadFn,
    /// Readiness (`GET /healthz/ready`).
    pub health: Arc<crate::service::Health>,
    /// The certificates sealpost presents, for their expiry gauge.
    pub certificates: Arc<crate::tls::certs::SniCertResolver>,
    /// `sealpost queue drain` (`drain::NoDrain` where there is none).
    pub drain: Arc<dyn drain::DrainControl>,
    /// The TLS reports sent (`/tls-reports/sent`, `send-now`); `None`:
    /// none are.
    pub tls_reports: Option<Arc<crate::tlsrpt::Reporter>>,
}

/// Why the admin API could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("the admin socket {} is in use: another sealpost is running on it", .path.display())]
    InUse { path: PathBuf },
    #[error("{} exists and is not a socket; remove it or set another [admin] socket", .path.display())]
    NotASocket { path: PathBuf },
    #[error("the admin socket {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("[admin] group `{group}` is neither in /etc/group nor a numeric group id")]
    UnknownGroup { group: String },
    #[error("the metrics listener {address}: {source}")]
    MetricsListen {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// The running admin listeners. Dropping it stops them and removes the
/// socket file.
#[derive(Debug)]
pub(crate) struct AdminServer {
    socket: socket::SocketFile,
    metrics_address: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl AdminServer {
    /// Binds the socket (and the metrics listener) and starts serving.
    /// Must run inside the tokio runtime.
    pub async fn start(
        config: &AdminConfig,
        state: Arc<AdminState>,
    ) -> Result<AdminServer, AdminError> {
        let metrics = match config.metrics_listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .map_err(|source| AdminError::MetricsListen { address, source })?,
            ),
            None => None,
        };
        let (listener, socket) = socket::bind(&config.socket, config.group.as_deref())?;
        let mut server = AdminServer {
            socket,
            metrics_address: None,
            tasks: Vec::new(),
        };
        server
            .tasks
            .push(tokio::spawn(accept_unix(listener, state.clone())));
        if let Some(metrics) = metrics {
            server.metrics_address = metrics.local_addr().ok();
            server
                .tasks
                .push(tokio::spawn(accept_metrics(metrics, state)));
        }
        tracing::info!(
            socket = %server.socket.path().display(),
            metrics = ?server.metrics_address,
            "admin API listening"
        );
        Ok(server)
    }

    pub fn socket_path(&self) -> &std::path::Path {
        self.socket.path()
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.socket.remove();
    }
}

async fn accept_unix(listener: UnixListener, state: Arc<AdminState>) {
    let slots = http::connection_slots();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Who is calling, for the audit log of changes.
                let uid = tenant_edits::PeerUid(stream.peer_cred().ok().map(|c| c.uid()));
                let handle = move |state, mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(uid);
                    routes::admin(state, request)
                };
                spawn_connection(&slots, stream, state.clone(), handle).await
            }
            Err(e) => pause_after(e).await,
        }
    }
}

async fn accept_metrics(listener: TcpListener, state: Arc<AdminState>) {
    let slots = http::connection_slots();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                spawn_connection(&slots, stream, state.clone(), |s, r| {
                    routes::metrics_only(s, r)
                })
                .await
            }
            Err(e) => pause_after(e).await,
        }
    }
}

/// One task per connection, at most [`http::MAX_CONNECTIONS`] at once.
async fn spawn_connection<S, H, F>(
    slots: &Arc<Semaphore>,
    stream: S,
    state: Arc<AdminState>,
    handle: H,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Arc<AdminState>, hyper::Request<hyper::body::Incoming>) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = http::HttpResponse> + Send + 'static,
{
    // Waits for a free slot: further clients queue in the listen backlog.
    let Ok(permit) = slots.clone().acquire_owned().await else {
        return;
    };
    tokio::spawn(async move {
        http::serve_connection(stream, move |request| handle(state.clone(), request)).await;
        drop(permit);
    });
}

/// Accept failed (e.g. out of file descriptors): log and wait a moment.
async fn pause_after(e: std::io::Error) {
    tracing::warn!(error = %e, "admin API: accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}
