//! What the actors publish: one snapshot per name (a destination, a
//! tenant), replaced whole by its actor and read by the scheduler and the
//! admin socket without a message round trip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use crate::admin::views::DestinationStatus;

use super::tenant::TenantSnapshot;

/// The latest snapshot published under each name.
#[derive(Debug)]
pub struct Board<T> {
    entries: Mutex<HashMap<String, T>>,
}

/// The destination actors' states.
pub type StatusBoard = Board<DestinationStatus>;

/// The tenant actors' snapshots.
pub type TenantBoard = Board<Arc<TenantSnapshot>>;

impl<T> Default for Board<T> {
    fn default() -> Self {
        Board {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone> Board<T> {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, T>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set(&self, name: &str, snapshot: T) {
        self.entries().insert(name.to_string(), snapshot);
    }

    pub fn get(&self, name: &str) -> Option<T> {
        self.entries().get(name).cloned()
    }

    /// Every snapshot, sorted by name.
    pub fn all(&self) -> Vec<T> {
        let entries = self.entries();
        let mut all: Vec<(&String, &T)> = entries.iter().collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all.into_iter().map(|(_, v)| v.clone()).collect()
    }

    /// Forgets a name whose actor retired.
    pub fn remove(&self, name: &str) {
        self.entries().remove(name);
    }
}
