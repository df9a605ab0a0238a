//! What the destination actors publish for the admin socket: one entry
//! per destination, replaced whole by its actor, read without a message
//! round trip.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

/// One destination as its actor last published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationStatus {
    pub name: String,
    /// The hosts of the last plan, in the order they are tried.
    pub hosts: Vec<String>,
    /// What the last plan required of TLS.
    pub tls: Option<String>,
    /// Attempts running now.
    pub active: usize,
    pub idle_connections: usize,
    /// Leases waiting for a free connection slot.
    pub waiting: usize,
    /// Paused until then after it could not be reached.
    pub backoff_until: Option<SystemTime>,
    /// Why the last attempt reached no host.
    pub last_error: Option<String>,
}

/// The published states of every destination.
#[derive(Debug, Default)]
pub struct StatusBoard {
    entries: Mutex<HashMap<String, DestinationStatus>>,
}

impl StatusBoard {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, DestinationStatus>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set(&self, status: DestinationStatus) {
        self.entries().insert(status.name.clone(), status);
    }

    /// Every destination, sorted by name.
    pub fn all(&self) -> Vec<DestinationStatus> {
        let mut all: Vec<_> = self.entries().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn get(&self, name: &str) -> Option<DestinationStatus> {
        self.entries().get(name).cloned()
    }
}
