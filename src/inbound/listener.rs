//! Accepting connections on several addresses, within limits on
//! connections in total and per client IP. A connection over a limit gets
//! `421 4.7.0` instead of the greeting and is closed.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tracing::{debug, info, warn, Instrument};

use super::connection::{serve_connection, Timeouts};
use super::{ConnectionInfo, SessionHandler};
use crate::smtp::{Reply, SessionConfig};

/// Bounds on concurrent connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_per_ip: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1000,
            max_per_ip: 50,
        }
    }
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Bound sockets, ready to serve.
pub struct Listener {
    sockets: Vec<TcpListener>,
}

impl Listener {
    /// Binds every address (IPv4 and IPv6 alike); fails on the first that
    /// cannot be bound, naming it.
    pub async fn bind(addrs: &[SocketAddr]) -> Result<Listener, ListenerError> {
        let mut sockets = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            let socket = TcpListener::bind(addr)
                .await
                .map_err(|source| ListenerError::Bind { addr, source })?;
            sockets.push(socket);
        }
        Ok(Listener { sockets })
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Accepts connections until `shutdown` completes. Connections already
    /// open run on as their own tasks.
    pub async fn serve<H: SessionHandler>(
        self,
        handler: Arc<H>,
        config: Arc<SessionConfig>,
        tls: Option<Arc<rustls::ServerConfig>>,
        limits: ConnectionLimits,
        timeouts: Timeouts,
        shutdown: impl Future<Output = ()>,
    ) {
        let shared = Arc::new(Shared {
            handler,
            config,
            tls,
            limits,
            timeouts,
            counts: Mutex::new(Counts::default()),
            next_id: AtomicU64::new(1),
        });
        let mut tasks = tokio::task::JoinSet::new();
        for socket in self.sockets {
            let shared = shared.clone();
            tasks.spawn(async move { accept_loop(socket, shared).await });
        }
        shutdown.await;
        tasks.abort_all();
    }
}

struct Shared<H> {
    handler: Arc<H>,
    config: Arc<SessionConfig>,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ConnectionLimits,
    timeouts: Timeouts,
    counts: Mutex<Counts>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Holds one connection's place in the counts; gives it back on drop.
struct Slot<H> {
    shared: Arc<Shared<H>>,
    ip: IpAddr,
}

impl<H> Drop for Slot<H> {
    fn drop(&mut self) {
        let mut counts = self.shared.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

impl<H> Shared<H> {
    /// Takes a place for a connection from `ip`, or says which limit is hit.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot<H>, &'static str> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= self.limits.max_connections {
            return Err("too many connections");
        }
        let from_ip = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.limits.max_per_ip {
            return Err("too many connections from your address");
        }
        counts.total += 1;
        *counts.per_ip.entry(ip).or_insert(0) += 1;
        Ok(Slot {
            shared: self.clone(),
            ip,
        })
    }
}

async fn accept_loop<H: SessionHandler>(socket: TcpListener, shared: Arc<Shared<H>>) {
    let local = match socket.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            warn!(error = %e, "listener without a local address");
            return;
        }
    };
    info!(%local, "accepting SMTP connections");
    loop {
        let (stream, peer) = match socket.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: keep serving.
                warn!(%local, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = ConnectionInfo {
            id,
            peer,
            local,
            tls: None,
            helo: None,
            authenticated: None,
        };
        let admitted = shared.admit(peer.ip());
        let shared = shared.clone();
        let span = tracing::info_span!("smtp", conn = id, peer = %peer);
        tokio::spawn(
            async move {
                let (slot, refusal) = match admitted {
                    Ok(slot) => (Some(slot), None),
                    Err(why) => {
                        info!(why, "connection refused");
                        (None, Some(Reply::new(421, (4, 7, 0), why)))
                    }
                };
                debug!("connection opened");
                let result = serve_connection(
                    stream,
                    conn,
                    shared.config.clone(),
                    shared.tls.clone(),
                    shared.handler.as_ref(),
                    shared.timeouts,
                    refusal,
                )
                .await;
                if let Err(e) = result {
                    debug!(error = %e, "connection ended with an error");
                }
                drop(slot);
            }
            .instrument(span),
        );
    }
}
