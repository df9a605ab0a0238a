//! `sealpost fleet status` and `sealpost fleet destinations`: the fleet as
//! Redis holds it (see `docs/cluster.md`). These read Redis directly with
//! the `[cluster]` settings of the configuration, not through the admin
//! socket: they work from any node (or an operator's host with the same
//! configuration) whether or not the local node runs, and they show the
//! nodes that stopped talking, which no node's socket could.

use std::io::{self, Write};

use super::{load, ExitStatus, GlobalOptions, EXIT_FAILURE, EXIT_OK};
use crate::cluster::fleet::FleetView;
use crate::cluster::Cluster;

/// What `sealpost fleet` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetCommand {
    /// One line per node: alive or silent, limits shared or local, queue.
    Status,
    /// One line per destination: the fleet's queue, connections, leases.
    Destinations,
}

/// `sealpost fleet ...`
pub fn fleet(
    global: &GlobalOptions,
    command: FleetCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ExitStatus> {
    let Some(config) = load(global, err)? else {
        return Ok(EXIT_FAILURE);
    };
    let Some(cluster) = config.cluster else {
        writeln!(
            err,
            "sealpost fleet: {} has no [cluster] section: this node is not part of a fleet",
            config.source
        )?;
        return Ok(EXIT_FAILURE);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            writeln!(err, "sealpost fleet: cannot start: {e}")?;
            return Ok(EXIT_FAILURE);
        }
    };
    let view = runtime.block_on(async {
        let cluster = Cluster::observe(cluster).await?;
        cluster.fleet_view().await
    });
    let view = match view {
        Ok(view) => view,
        Err(e) => {
            writeln!(err, "sealpost fleet: {e}")?;
            return Ok(EXIT_FAILURE);
        }
    };
    match command {
        FleetCommand::Status => write_status(&view, out)?,
        FleetCommand::Destinations => write_destinations(&view, out)?,
    }
    Ok(EXIT_OK)
}

fn seconds(ms: u64) -> String {
    format!("{:.1}s ago", ms as f64 / 1000.0)
}

/// The `fleet status` table.
pub fn write_status(view: &FleetView, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "{} node{} heard of in the last hour, {} alive, {} silent",
        view.nodes.len(),
        if view.nodes.len() == 1 { "" } else { "s" },
        view.alive(),
        view.nodes.len() - view.alive()
    )?;
    writeln!(
        out,
        "{:<24} {:<7} {:>12} {:<7} {:>9} {:>9} {:>9} {:>9}",
        "NODE", "STATE", "LAST SEEN", "LIMITS", "MESSAGES", "QUEUED", "DEFERRED", "HELD"
    )?;
    for node in &view.nodes {
        let state = if node.silent { "SILENT" } else { "alive" };
        let (limits, messages, queued, deferred, held) = match &node.report {
            Some(r) => (
                if r.shared { "shared" } else { "local" },
                r.queue.messages().to_string(),
                r.queue.recipients("queued").to_string(),
                r.queue.recipients("deferred").to_string(),
                r.queue.recipients("held").to_string(),
            ),
            None => ("-", "-".into(), "-".into(), "-".into(), "-".into()),
        };
        writeln!(
            out,
            "{:<24} {:<7} {:>12} {:<7} {:>9} {:>9} {:>9} {:>9}",
            node.name,
            state,
            seconds(node.silent_for_ms),
            limits,
            messages,
            queued,
            deferred,
            held
        )?;
    }
    Ok(())
}

/// The `fleet destinations` table.
pub fn write_destinations(view: &FleetView, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "{:<32} {:>9} {:>11} {:>7} {:>8}  PAUSED ON / LAST ERRORS",
        "DESTINATION", "QUEUED", "CONNECTIONS", "LEASES", "WAITING"
    )?;
    for (name, d) in view.destinations() {
        let mut notes: Vec<String> = Vec::new();
        if !d.paused_on.is_empty() {
            notes.push(format!("paused on {}", d.paused_on.join(", ")));
        }
        if d.reasons.is_empty() {
            notes.extend(d.last_errors.iter().map(|(node, e)| format!("{node}: {e}")));
        } else {
            // One line per kind and cause, however many nodes saw it.
            notes.extend(
                d.reasons
                    .values()
                    .map(|r| format!("{}: {}", r.nodes.join(", "), r.example)),
            );
        }
        writeln!(
            out,
            "{:<32} {:>9} {:>11} {:>7} {:>8}  {}",
            name,
            d.queued_recipients,
            d.active_connections,
            d.leases,
            d.waiting,
            notes.join("; ")
        )?;
    }
    Ok(())
}
