//! The fleet view: what each node publishes about itself (its queue's
//! counts and its destinations' states) under `sealpost:node:<name>`, and
//! how the view of every node is read back, with the silent ones marked.
//!
//! A node publishes every second while Redis answers; the key lives one
//! hour ([`super::scripts::FORGET_NODE_AFTER_MS`]), so a node that stopped
//! shows as silent for an hour and then disappears from the view.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use sealpost_queue::{Counts, Reason, ReasonGroup};

use crate::metrics::state_name;

/// What one node publishes about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node: String,
    /// The node's own clock, Unix milliseconds (informational: silence is
    /// judged by the heartbeat, on Redis' clock).
    pub published_at_ms: u64,
    /// Whether the node's limits were shared (Redis answering) when it
    /// published.
    pub shared: bool,
    pub queue: QueueSummary,
    pub destinations: Vec<DestinationReport>,
}

/// The queue's [`Counts`], as published.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSummary {
    /// Recipients per state (`queued`, `deferred`, ...).
    pub recipients_by_state: BTreeMap<String, u64>,
    pub messages_by_tenant: BTreeMap<String, u64>,
    pub bytes_by_tenant: BTreeMap<String, u64>,
    /// Recipients not yet final per destination.
    pub recipients_by_destination: BTreeMap<String, u64>,
}

impl From<&Counts> for QueueSummary {
    fn from(counts: &Counts) -> QueueSummary {
        QueueSummary {
            recipients_by_state: counts
                .by_state
                .iter()
                .map(|(state, n)| (state_name(*state).to_owned(), *n))
                .collect(),
            messages_by_tenant: counts.by_tenant.clone(),
            bytes_by_tenant: counts.bytes_by_tenant.clone(),
            recipients_by_destination: counts.by_destination.clone(),
        }
    }
}

impl QueueSummary {
    /// Messages stored, all tenants.
    pub fn messages(&self) -> u64 {
        self.messages_by_tenant.values().sum()
    }

    /// Keeps the `n` destinations with the most recipients (ties by name).
    pub(crate) fn keep_largest_destinations(&mut self, n: usize) {
        if self.recipients_by_destination.len() <= n {
            return;
        }
        let mut all: Vec<(String, u64)> = std::mem::take(&mut self.recipients_by_destination)
            .into_iter()
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        self.recipients_by_destination = all.into_iter().collect();
    }

    /// Recipients in `state`.
    pub fn recipients(&self, state: &str) -> u64 {
        self.recipients_by_state.get(state).copied().unwrap_or(0)
    }
}

/// One destination as a node sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationReport {
    pub name: String,
    pub active_connections: usize,
    /// Deliveries waiting for a connection.
    pub waiting: usize,
    /// Unix milliseconds until which the destination is paused.
    pub paused_until_ms: Option<u64>,
    pub last_error: Option<String>,
    /// The typed reason `last_error` renders (absent in reports of older
    /// nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reason: Option<Reason>,
}

/// One node in the fleet view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub name: String,
    /// Its last heartbeat, Unix milliseconds on Redis' clock.
    pub last_seen_ms: u64,
    /// How long ago that was, by Redis' clock.
    pub silent_for_ms: u64,
    /// Not heard of within `node_ttl`.
    pub silent: bool,
    /// Its last report (`None` if it has not published one, or it expired).
    pub report: Option<NodeReport>,
}

/// Every node heard of in the last hour, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetView {
    pub nodes: Vec<NodeStatus>,
    /// Connection leases held in Redis per destination (from the lease
    /// sets of the destinations the nodes report).
    pub leases: BTreeMap<String, u64>,
}

impl FleetView {
    /// Nodes heard of within `node_ttl`.
    pub fn alive(&self) -> usize {
        self.nodes.iter().filter(|n| !n.silent).count()
    }

    /// Every destination any node reports or has queued mail for, with the
    /// fleet's totals.
    pub fn destinations(&self) -> BTreeMap<String, FleetDestination> {
        let mut out: BTreeMap<String, FleetDestination> = BTreeMap::new();
        for node in &self.nodes {
            let Some(report) = &node.report else { continue };
            for (name, n) in &report.queue.recipients_by_destination {
                out.entry(name.clone()).or_default().queued_recipients += n;
            }
            for d in &report.destinations {
                let entry = out.entry(d.name.clone()).or_default();
                entry.active_connections += d.active_connections;
                entry.waiting += d.waiting;
                if d.paused_until_ms.is_some() {
                    entry.paused_on.push(node.name.clone());
                }
                if let Some(e) = &d.last_error {
                    entry.last_errors.push((node.name.clone(), e.clone()));
                }
                if let Some(reason) = &d.last_reason {
                    let tally =
                        entry
                            .reasons
                            .entry(reason.group())
                            .or_insert_with(|| FleetReason {
                                example: reason.clone(),
                                nodes: Vec::new(),
                            });
                    tally.nodes.push(node.name.clone());
                }
            }
        }
        for (name, n) in &self.leases {
            if let Some(d) = out.get_mut(name) {
                d.leases = *n;
            }
        }
        out
    }
}

/// One destination across the fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetDestination {
    pub queued_recipients: u64,
    pub active_connections: usize,
    pub waiting: usize,
    /// Connection leases in Redis.
    pub leases: u64,
    /// The nodes that have it paused.
    pub paused_on: Vec<String>,
    /// (node, last error)
    pub last_errors: Vec<(String, String)>,
    /// The nodes' last reasons by kind and cause (never by text: two
    /// nodes refused by different hosts with the same reply count once).
    pub reasons: BTreeMap<ReasonGroup, FleetReason>,
}

/// One kind and cause of failure at a destination across the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetReason {
    /// One of the reasons of the group, as the first node reported it.
    pub example: Reason,
    /// The nodes whose last reason it is.
    pub nodes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_keeps_its_largest_destinations() {
        let mut summary = QueueSummary::default();
        for (name, n) in [("a", 5), ("b", 1), ("c", 9), ("d", 5)] {
            summary.recipients_by_destination.insert(name.into(), n);
        }
        summary.keep_largest_destinations(3);
        let kept: Vec<&str> = summary
            .recipients_by_destination
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(kept, ["a", "c", "d"]);
    }

    #[test]
    fn the_fleet_groups_destination_reasons_by_kind_not_text() {
        use sealpost_queue::{LocalCause, Status};
        let refused = |host: &str| {
            Reason::local(
                LocalCause::ConnectionFailed,
                Status(4, 4, 2),
                format!("{host}: connection refused"),
            )
        };
        let node = |name: &str, reason: Reason| NodeStatus {
            name: name.into(),
            last_seen_ms: 0,
            silent_for_ms: 0,
            silent: false,
            report: Some(NodeReport {
                node: name.into(),
                destinations: vec![DestinationReport {
                    name: "example.com".into(),
                    last_error: Some(reason.to_string()),
                    last_reason: Some(reason),
                    ..DestinationReport::default()
                }],
                ..NodeReport::default()
            }),
        };
        let view = FleetView {
            nodes: vec![
                node("a", refused("mx1.example.com")),
                node("b", refused("mx2.example.com")),
            ],
            leases: BTreeMap::new(),
        };
        let destinations = view.destinations();
        let d = &destinations["example.com"];
        assert_eq!(d.last_errors.len(), 2);
        assert_eq!(d.reasons.len(), 1, "{:?}", d.reasons);
        let (group, tally) = d.reasons.iter().next().expect("one group");
        assert_eq!(group, &refused("x").group());
        assert_eq!(tally.nodes, ["a", "b"]);
        assert_eq!(tally.example, refused("mx1.example.com"));
    }
}
