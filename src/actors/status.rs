//! What the destination actors publish for the admin socket: one entry
//! per destination, replaced whole by its actor, read without a message
//! round trip.

use std::collections::HashMap;
use std::sync::Mutex;

pub use crate::admin::views::DestinationStatus;

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

    /// Forgets a destination whose actor retired.
    pub fn remove(&self, name: &str) {
        self.entries().remove(name);
    }

    pub fn get(&self, name: &str) -> Option<DestinationStatus> {
        self.entries().get(name).cloned()
    }
}
