//! What the actors publish: one snapshot per name (a destination, a
//! tenant), replaced whole by its actor and read by the scheduler and the
//! admin socket without a message round trip; the snapshot types live
//! here, beside the boards that hold them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use crate::admin::views::DestinationStatus;

use crate::config::Config;

/// A tenant as its actor last published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSnapshot {
    pub name: String,
    /// Its enabled managed domains, sorted.
    pub domains: Arc<[String]>,
    /// Leases of this tenant in flight at most.
    pub max_in_flight: usize,
    /// Leases of this tenant in flight to one destination at most.
    pub max_in_flight_per_destination: usize,
    /// The configuration generation the snapshot was made from.
    pub generation: u64,
}

impl TenantSnapshot {
    /// The snapshot of `name` under `config` (no walk of the domains: a
    /// lookup in the configuration's index).
    pub fn of(name: &str, config: &Config, generation: u64) -> TenantSnapshot {
        TenantSnapshot {
            name: name.to_string(),
            domains: config
                .tenant_domains
                .get(name)
                .cloned()
                .unwrap_or_else(|| Arc::from(Vec::new())),
            max_in_flight: tenant_limit(config, name),
            max_in_flight_per_destination: config.delivery.in_flight_per_tenant_destination,
            generation,
        }
    }
}

/// The in-flight limit of `tenant` under `config`.
pub(crate) fn tenant_limit(config: &Config, tenant: &str) -> usize {
    config
        .tenant_limits
        .get(tenant)
        .copied()
        .unwrap_or(config.delivery.in_flight_per_tenant)
}

/// The latest snapshot published under each name.
#[derive(Debug)]
pub struct Board<T> {
    entries: Mutex<HashMap<String, T>>,
}

/// The destination actors' states.
pub(crate) type StatusBoard = Board<DestinationStatus>;

/// The tenant actors' snapshots.
pub(crate) type TenantBoard = Board<Arc<TenantSnapshot>>;

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
