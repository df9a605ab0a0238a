//! What every delivery attempt shares: the queue, the configuration in
//! force, the resolver, the MTA-STS cache, the WebPKI roots, the metrics,
//! the memory budget for message bodies, and the fleet (`[cluster]`).

use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use sealpost_queue::Queue;

use crate::cluster::Cluster;
use crate::dns::Resolver;
use crate::live::LiveConfig;
use crate::mta_sts::PolicyCache;

/// What every attempt needs, shared by all destinations.
pub struct DeliveryContext {
    pub queue: Arc<Queue>,
    pub live: Arc<LiveConfig>,
    pub resolver: Arc<Resolver>,
    pub mta_sts: Arc<PolicyCache>,
    /// WebPKI roots for MTA-STS (`None` when they could not be loaded).
    pub webpki: Option<Arc<WebPkiServerVerifier>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Bounds the message content held in memory by attempts at once
    /// (see [`BodyMemory`]).
    pub(crate) body_memory: BodyMemory,
    /// The fleet, once joined (`[cluster]`); never set on a node alone,
    /// whose limits stay the `[delivery]` ones exactly.
    pub cluster: OnceLock<Cluster>,
    /// Counts outbound sessions for TLS reports (RFC 8460); `None`: not
    /// counted.
    pub tls_reports: Option<Arc<crate::tlsrpt::Reporter>>,
}

impl DeliveryContext {
    /// The fleet this node belongs to, if it has joined one.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.get()
    }

    /// The fleet, once joined; `None` at once on a node without
    /// `[cluster]`. The engine starts before the node joins: mail due at
    /// the start waits here until it has, so that no connection is opened
    /// outside the fleet's count.
    pub(crate) async fn joined_cluster(&self) -> Option<Cluster> {
        loop {
            if let Some(cluster) = self.cluster.get() {
                return Some(cluster.clone());
            }
            self.live.current().cluster.as_ref()?;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// The memory attempts may spend on message content at once: a body read
/// for delivery is held with its dot-stuffed copy (about twice its size)
/// until the attempt ends. An attempt waits for its share before it reads
/// the body, so 32 concurrent 50 MiB messages to 10 destinations hold a few
/// hundred MiB, not 16 GiB. Small messages never wait in practice (4,096
/// attempts of 10 KiB take 80 MiB).
#[derive(Clone)]
pub(crate) struct BodyMemory {
    permits: Arc<tokio::sync::Semaphore>,
    /// The budget in units of `UNIT` octets.
    units: u64,
}

impl BodyMemory {
    /// The default budget: 256 MiB.
    pub(crate) const DEFAULT_BYTES: u64 = 256 * 1024 * 1024;
    const UNIT: u64 = 1024;

    pub fn new(bytes: u64) -> BodyMemory {
        let units = (bytes / Self::UNIT).clamp(1, u64::from(u32::MAX));
        BodyMemory {
            permits: Arc::new(tokio::sync::Semaphore::new(units as usize)),
            units,
        }
    }

    /// Waits until a body of `size` octets may be held; the permit frees
    /// its share when dropped. A body larger than the whole budget takes
    /// all of it (one such body at a time).
    pub async fn hold(&self, size: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let want = (size.saturating_mul(2) / Self::UNIT).clamp(1, self.units);
        let want = u32::try_from(want).unwrap_or(u32::MAX);
        self.permits.clone().acquire_many_owned(want).await.ok()
    }

    /// Octets of the budget not held now.
    #[cfg(test)]
    fn available(&self) -> u64 {
        self.permits.available_permits() as u64 * Self::UNIT
    }
}

impl Default for BodyMemory {
    fn default() -> Self {
        BodyMemory::new(BodyMemory::DEFAULT_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::BodyMemory;

    #[tokio::test]
    async fn bodies_wait_for_their_share_of_the_budget() {
        let memory = BodyMemory::new(100 * 1024 * 1024);
        // 30 MiB held twice over (content and dot-stuffed copy): 60 MiB.
        let first = memory.hold(30 * 1024 * 1024).await.expect("permit");
        assert_eq!(memory.available(), 40 * 1024 * 1024);
        // A second one does not fit until the first is released.
        let second = memory.hold(30 * 1024 * 1024);
        tokio::pin!(second);
        assert!(futures_util::poll!(second.as_mut()).is_pending());
        drop(first);
        let second = second.await.expect("permit after the release");
        // A body larger than the whole budget takes all of it, alone.
        drop(second);
        let huge = memory.hold(1 << 40).await.expect("permit");
        assert_eq!(memory.available(), 0);
        drop(huge);
        assert_eq!(memory.available(), 100 * 1024 * 1024);
        // Small bodies take a unit each and do not wait.
        let small: Vec<_> = futures_util::future::join_all((0..100).map(|_| memory.hold(10))).await;
        assert!(small.iter().all(Option::is_some));
    }
}
