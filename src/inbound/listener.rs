//! Accepting connections on several addresses, within limits on
//! connections in total and per client (an IPv4 address, or an IPv6
//! prefix: a /64 by default, since one site usually holds a whole /64). A
//! connection over a limit gets `421 4.7.0` instead of the greeting and is
//! closed, never accepted and then dropped.
//!
//! The limits, timeouts and session settings are read from a
//! [`SettingsSource`] as each connection is accepted, so a configuration
//! reload applies to new connections.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tracing::{debug, info, warn, Instrument};

use super::connection::{serve_connection, Timeouts};

/// How long [`Listener::serve`] lets transactions in progress finish after
/// its shutdown future completed.
pub const DEFAULT_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);
use super::{ConnectionInfo, Refusal, SessionHandler};
use crate::smtp::{Reply, SessionConfig};

/// Bounds on concurrent connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    /// Per client: see [`client_key`].
    pub max_per_ip: usize,
    /// IPv6 clients are counted per prefix of this length (1 to 128).
    pub ipv6_prefix: u8,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1000,
            max_per_ip: 50,
            ipv6_prefix: 64,
        }
    }
}

/// What a connection is counted under: an IPv4 address (IPv4-mapped IPv6
/// addresses included) as is, an IPv6 address cut to its first
/// `ipv6_prefix` bits.
pub fn client_key(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u32::from(ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        },
    }
}

/// What one connection is served under, read when it is accepted.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    pub session: Arc<SessionConfig>,
    pub limits: ConnectionLimits,
    pub timeouts: Timeouts,
    /// The session settings for `[cluster] peers` (the transfer extension).
    pub peers: Option<Arc<super::transfer::PeerSessions>>,
}

impl ConnectionSettings {
    /// The session settings for a client at `ip`.
    pub fn session_for(&self, ip: std::net::IpAddr) -> Arc<SessionConfig> {
        self.peers
            .as_ref()
            .and_then(|p| p.session_for(ip))
            .unwrap_or_else(|| self.session.clone())
    }
}

/// Gives the settings in force; called once per accepted connection.
pub type SettingsSource = Arc<dyn Fn() -> Arc<ConnectionSettings> + Send + Sync>;

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

    /// Accepts connections until `shutdown` completes, all under the same
    /// settings. Connections already open run on as their own tasks.
    pub async fn serve<H: SessionHandler>(
        self,
        handler: Arc<H>,
        config: Arc<SessionConfig>,
        tls: Option<Arc<rustls::ServerConfig>>,
        limits: ConnectionLimits,
        timeouts: Timeouts,
        shutdown: impl Future<Output = ()>,
    ) {
        let fixed = Arc::new(ConnectionSettings {
            session: config,
            limits,
            timeouts,
            peers: None,
        });
        self.serve_with(
            handler,
            Arc::new(move || fixed.clone()),
            tls,
            shutdown,
            DEFAULT_DRAIN,
        )
        .await
    }

    /// Accepts connections until `shutdown` completes, each under the
    /// settings `settings` gives when it is accepted; then stops:
    ///
    /// 1. the listening sockets are closed (new connections are refused);
    /// 2. sessions waiting between transactions get `421 4.3.2` and close;
    ///    a transaction in progress may finish within `drain` (its `250`
    ///    is sent only once the message is durable, as always), after
    ///    which its session gets `421 4.3.2` too;
    /// 3. returns when every connection has ended, or `drain` plus
    ///    [`CLOSE_MARGIN`] after the stop began (connections left then are
    ///    cut when the runtime ends; their clients were never told `250`).
    pub async fn serve_with<H: SessionHandler>(
        self,
        handler: Arc<H>,
        settings: SettingsSource,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl Future<Output = ()>,
        drain: std::time::Duration,
    ) {
        let (stop, stop_signal) = tokio::sync::watch::channel(None);
        let shared = Arc::new(ListenerState {
            handler,
            settings,
            tls,
            counts: Mutex::new(Counts::default()),
            next_id: AtomicU64::new(1),
            stop: stop_signal,
            open: Arc::new(()),
        });
        let mut tasks = tokio::task::JoinSet::new();
        for socket in self.sockets {
            let shared = shared.clone();
            tasks.spawn(async move { accept_loop(socket, shared).await });
        }
        shutdown.await;
        tasks.abort_all();
        // The accept loops own the sockets: wait until they are closed.
        while tasks.join_next().await.is_some() {}
        let began = std::time::Instant::now();
        let _ = stop.send(Some(began + drain));
        let sessions = Arc::strong_count(&shared.open) - 1;
        info!(sessions, drain = ?drain, "stopped accepting SMTP connections; letting sessions finish");
        let limit = began + drain + CLOSE_MARGIN;
        while Arc::strong_count(&shared.open) > 1 && std::time::Instant::now() < limit {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let left = Arc::strong_count(&shared.open) - 1;
        if left > 0 {
            warn!(
                sessions = left,
                "SMTP sessions still open after the drain; they are cut"
            );
        } else {
            info!(took = ?began.elapsed(), "every SMTP session ended");
        }
    }
}

/// After the drain, how long sessions get to send their `421` and close.
pub const CLOSE_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

struct ListenerState<H> {
    handler: Arc<H>,
    settings: SettingsSource,
    tls: Option<Arc<rustls::ServerConfig>>,
    counts: Mutex<Counts>,
    next_id: AtomicU64,
    /// `Some(drain end)` once the server stops.
    stop: super::StopSignal,
    /// Held (cloned) by every connection task: the count of open sessions.
    open: Arc<()>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Holds one connection's place in the counts; gives it back on drop.
struct Slot<H> {
    shared: Arc<ListenerState<H>>,
    /// The [`client_key`] it is counted under.
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

impl<H> ListenerState<H> {
    /// Takes a place for a connection from `ip`, or says which limit is hit.
    fn admit(self: &Arc<Self>, ip: IpAddr, limits: &ConnectionLimits) -> Result<Slot<H>, Refusal> {
        let ip = client_key(ip, limits.ipv6_prefix);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= limits.max_connections {
            return Err(Refusal::Connections);
        }
        let from_ip = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= limits.max_per_ip {
            return Err(Refusal::ConnectionsPerIp);
        }
        counts.total += 1;
        *counts.per_ip.entry(ip).or_insert(0) += 1;
        Ok(Slot {
            shared: self.clone(),
            ip,
        })
    }
}

async fn accept_loop<H: SessionHandler>(socket: TcpListener, shared: Arc<ListenerState<H>>) {
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
        let settings = (shared.settings)();
        let admitted = shared.admit(peer.ip(), &settings.limits);
        let shared = shared.clone();
        let open = shared.open.clone();
        let stop = shared.stop.clone();
        let span = tracing::info_span!("smtp", conn = id, peer = %peer);
        tokio::spawn(
            async move {
                let _open = open;
                let (slot, refusal) = match admitted {
                    Ok(slot) => (Some(slot), None),
                    Err(why) => {
                        let limit = match why {
                            Refusal::Connections => settings.limits.max_connections,
                            _ => settings.limits.max_per_ip,
                        };
                        info!(reason = %why, limit, "connection refused: limit reached");
                        shared.handler.refused(&conn, why);
                        let text = match why {
                            Refusal::Connections => "Error: too many connections, try again later",
                            _ => "Error: too many connections from your address, try again later",
                        };
                        (None, Some(Reply::new(421, (4, 7, 0), text)))
                    }
                };
                debug!("connection opened");
                let result = serve_connection(
                    stream,
                    conn,
                    settings.session_for(peer.ip()),
                    shared.tls.clone(),
                    shared.handler.as_ref(),
                    settings.timeouts,
                    refusal,
                    stop,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_counted_per_ipv4_address_and_ipv6_prefix() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let table = [
            ("192.0.2.7", 64, "192.0.2.7"),
            ("::ffff:192.0.2.7", 64, "192.0.2.7"),
            ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::"),
            ("2001:db8:1:2:ffff::1", 64, "2001:db8:1:2::"),
            ("2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::"),
            ("2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"),
            ("2001:db8:1:2:3:4:5:6", 1, "::"),
        ];
        for (given, prefix, want) in table {
            assert_eq!(client_key(ip(given), prefix), ip(want), "{given}/{prefix}");
        }
    }
}
