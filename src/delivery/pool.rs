//! Idle SMTP connections of one destination, kept for the next message.
//!
//! A connection remembers what it achieved (TLS version, authentication
//! by DANE or WebPKI, or none) and is handed out only for a message whose
//! TLS parameters it satisfies ([`Achieved::reuse_for`]): a cleartext or
//! unauthenticated connection opened for an opportunistic message never
//! carries a message that requires more. Connections are keyed by MX host
//! and address, since a DANE verifier is specific to one host's TLSA
//! records. Idle connections close after the configured time and after
//! the configured number of messages.
//!
//! In a fleet (`[cluster]`), a connection holds its
//! [`ConnectionLease`] while it lives, idle in the pool included: the
//! lease goes in and out of the pool with it, and is released only once
//! the connection is closed ([`Leased::close`]).
//!
//! [`Achieved::reuse_for`]: crate::smtp::client::Achieved::reuse_for

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cluster::ConnectionLease;
use crate::smtp::client::{Connection, TlsParams};

/// A connection with its fleet lease (`None` without `[cluster]`).
pub(crate) struct Leased {
    pub conn: Connection,
    pub lease: Option<ConnectionLease>,
}

impl Leased {
    /// Says QUIT and closes the connection, then releases its lease: the
    /// fleet never counts a connection as gone while it is still open.
    pub async fn close(self) {
        self.conn.quit().await;
        if let Some(lease) = self.lease {
            lease.release().await;
        }
    }
}

struct Idle {
    host: String,
    addr: SocketAddr,
    conn: Leased,
    since: Instant,
}

/// The idle connections of one destination.
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    messages_per_connection: u32,
    /// At most this many idle connections are kept.
    capacity: usize,
}

impl Pool {
    pub fn new(messages_per_connection: u32, capacity: usize) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            messages_per_connection,
            capacity,
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection to `host` at `addr` that may carry a message
    /// with `params`, if there is one.
    pub(crate) fn take(&self, host: &str, addr: SocketAddr, params: &TlsParams) -> Option<Leased> {
        let mut idle = self.idle();
        let position = idle.iter().position(|i| {
            i.host == host
                && i.addr == addr
                && i.conn.conn.is_usable()
                && i.conn.conn.achieved().reuse_for(params).is_ok()
        })?;
        Some(idle.swap_remove(position).conn)
    }

    /// Keeps `conn` for reuse; returns it when it should be closed instead
    /// (unusable, message limit reached, or the pool is full).
    pub(crate) fn put(&self, host: &str, conn: Leased) -> Option<Leased> {
        if !conn.conn.is_usable() || conn.conn.transactions() >= self.messages_per_connection {
            return Some(conn);
        }
        let mut idle = self.idle();
        if idle.len() >= self.capacity {
            return Some(conn);
        }
        idle.push(Idle {
            host: host.to_string(),
            addr: conn.conn.achieved().peer,
            conn,
            since: Instant::now(),
        });
        None
    }

    /// Removes the connections idle for longer than `timeout` (all of
    /// them with a zero timeout), for the caller to close.
    pub(crate) fn expire(&self, timeout: Duration) -> Vec<Leased> {
        let mut idle = self.idle();
        let now = Instant::now();
        let (old, keep): (Vec<Idle>, Vec<Idle>) = idle
            .drain(..)
            .partition(|i| timeout.is_zero() || now.duration_since(i.since) >= timeout);
        *idle = keep;
        old.into_iter().map(|i| i.conn).collect()
    }

    /// Removes the connection idle the longest, for the caller to close
    /// (its lease goes to a new connection).
    pub(crate) fn take_oldest(&self) -> Option<Leased> {
        let mut idle = self.idle();
        let oldest = idle
            .iter()
            .enumerate()
            .min_by_key(|(_, i)| i.since)
            .map(|(n, _)| n)?;
        Some(idle.swap_remove(oldest).conn)
    }

    /// How many idle connections there are.
    pub fn len(&self) -> usize {
        self.idle().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
