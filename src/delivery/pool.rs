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
//! [`Achieved::reuse_for`]: crate::smtp::client::Achieved::reuse_for

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::smtp::client::{Connection, TlsParams};

struct Idle {
    host: String,
    addr: SocketAddr,
    conn: Connection,
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
    pub fn take(&self, host: &str, addr: SocketAddr, params: &TlsParams) -> Option<Connection> {
        let mut idle = self.idle();
        let position = idle.iter().position(|i| {
            i.host == host
                && i.addr == addr
                && i.conn.is_usable()
                && i.conn.achieved().reuse_for(params).is_ok()
        })?;
        Some(idle.swap_remove(position).conn)
    }

    /// Keeps `conn` for reuse; returns it when it should be closed instead
    /// (unusable, message limit reached, or the pool is full).
    pub fn put(&self, host: &str, conn: Connection) -> Option<Connection> {
        if !conn.is_usable() || conn.transactions() >= self.messages_per_connection {
            return Some(conn);
        }
        let mut idle = self.idle();
        if idle.len() >= self.capacity {
            return Some(conn);
        }
        idle.push(Idle {
            host: host.to_string(),
            addr: conn.achieved().peer,
            conn,
            since: Instant::now(),
        });
        None
    }

    /// Removes the connections idle for longer than `timeout` (all of
    /// them with a zero timeout), for the caller to close.
    pub fn expire(&self, timeout: Duration) -> Vec<Connection> {
        let mut idle = self.idle();
        let now = Instant::now();
        let (old, keep): (Vec<Idle>, Vec<Idle>) = idle
            .drain(..)
            .partition(|i| timeout.is_zero() || now.duration_since(i.since) >= timeout);
        *idle = keep;
        old.into_iter().map(|i| i.conn).collect()
    }

    /// How many idle connections there are.
    pub fn len(&self) -> usize {
        self.idle().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
