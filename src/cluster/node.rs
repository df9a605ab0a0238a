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

/// Joins the fleet; limits start local (and say so in the log) if Redis
/// does not answer yet.
pub async fn join(
    config: ClusterConfig,
    metrics: Arc<Metrics>,
    queue: Arc<Queue>,
    delivery: Arc<dyn DeliveryView>,
) -> Result<Cluster, ClusterError> {
    let cluster = Cluster::start(config, Some(metrics)).await?;
    cluster.set_report_source(move || NodeReport {
        queue: QueueSummary::from(&queue.counts()),
        destinations: delivery
            .destinations()
            .into_iter()
            .map(|d| DestinationReport {
                name: d.name,
                active_connections: d.active_connections,
                waiting: d.waiting,
                paused_until_ms: d.backoff_until,
                last_error: d.last_error,
            })
            .collect(),
        ..NodeReport::default()
    });
    tracing::info!(
        node = %cluster.node(),
        mode = ?cluster.mode(),
        nodes_alive = cluster.nodes_alive(),
        "joined the fleet ([cluster]); the delivery engine does not use the shared limits yet"
    );
    Ok(cluster)
}
