//! `sealpost serve` joining the fleet: the heartbeat, the `/metrics`
//! gauges, and the node's report (its queue's counts and what its
//! delivery engine knows of each destination) published every second.

use std::sync::Arc;

use sealpost_queue::Queue;

use super::fleet::{DestinationReport, NodeReport, QueueSummary};
use super::{Cluster, ClusterError};
use crate::admin::DeliveryView;
use crate::config::ClusterConfig;
use crate::metrics::Metrics;

/// A report names at most this many destinations (the busiest), so that a
/// node with mail for every domain on earth publishes a few kilobytes a
/// second, not megabytes.
pub(crate) const REPORTED_DESTINATIONS: usize = 200;

/// Joins the fleet; limits start local (and say so in the log) if Redis
/// does not answer yet.
pub async fn join(
    config: ClusterConfig,
    metrics: Arc<Metrics>,
    queue: Arc<Queue>,
    delivery: Arc<dyn DeliveryView>,
) -> Result<Cluster, ClusterError> {
    let cluster = Cluster::start(config, Some(metrics)).await?;
    cluster.set_report_source(move || {
        let mut summary = QueueSummary::from(&queue.counts());
        summary.keep_largest_destinations(REPORTED_DESTINATIONS);
        let mut destinations: Vec<DestinationReport> = delivery
            .destinations()
            .into_iter()
            .map(|d| DestinationReport {
                name: d.name,
                active_connections: d.active_connections,
                waiting: d.waiting,
                paused_until_ms: d.backoff_until,
                last_error: d.last_error,
                last_reason: d.last_reason,
            })
            .collect();
        // The busiest and the paused first.
        destinations.sort_by_key(|d| {
            std::cmp::Reverse((
                d.paused_until_ms.is_some(),
                d.active_connections + d.waiting,
            ))
        });
        destinations.truncate(REPORTED_DESTINATIONS);
        NodeReport {
            queue: summary,
            destinations,
            ..NodeReport::default()
        }
    });
    tracing::info!(
        node = %cluster.node(),
        mode = ?cluster.mode(),
        nodes_alive = cluster.nodes_alive(),
        "joined the fleet ([cluster]): connection leases and message rates are shared"
    );
    Ok(cluster)
}
