//! The tenant actor: one per tenant with mail in the engine. It owns the
//! tenant's delivery counters and its in-flight limit, and publishes an
//! immutable [`TenantSnapshot`] (its enabled managed domains, the limit,
//! the counters) to the [`TenantBoard`], which the scheduler and the admin
//! socket read without a message round trip. After a reload it publishes
//! again from the configuration now in force.
//!
//! The limit is `[[tenants]] max_in_flight`, else `[delivery]
//! in_flight_per_tenant`.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::status::TenantBoard;
use crate::config::Config;
use crate::live::LiveConfig;

/// A tenant as its actor last published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSnapshot {
    pub name: String,
    /// Its enabled managed domains, sorted.
    pub domains: Vec<String>,
    /// Leases of this tenant in flight at most.
    pub max_in_flight: usize,
    /// Recipients delivered, deferred and failed by the engine since start.
    pub delivered: u64,
    pub deferred: u64,
    pub failed: u64,
    /// The configuration generation the snapshot was made from.
    pub generation: u64,
}

impl TenantSnapshot {
    /// The snapshot of `name` under `config` with these counters.
    pub fn of(name: &str, config: &Config, generation: u64, counts: [u64; 3]) -> TenantSnapshot {
        let mut domains: Vec<String> = config
            .policy
            .domains()
            .iter()
            .filter(|d| d.enabled && d.tenant.as_str() == name)
            .map(|d| d.name.as_str().to_string())
            .collect();
        domains.sort();
        TenantSnapshot {
            name: name.to_string(),
            domains,
            max_in_flight: tenant_limit(config, name),
            delivered: counts[0],
            deferred: counts[1],
            failed: counts[2],
            generation,
        }
    }
}

/// The in-flight limit of `tenant` under `config`.
pub fn tenant_limit(config: &Config, tenant: &str) -> usize {
    config
        .tenant_limits
        .get(tenant)
        .copied()
        .unwrap_or(config.delivery.in_flight_per_tenant)
}

/// Recipients of one finished lease of this tenant.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attempted {
    pub delivered: usize,
    pub deferred: usize,
    pub failed: usize,
}

pub struct Tenant {
    name: String,
    live: Arc<LiveConfig>,
    board: Arc<TenantBoard>,
    counts: [u64; 3],
    /// The configuration generation last published.
    generation: u64,
    /// Counters changed since the last publication.
    dirty: bool,
}

impl Tenant {
    pub fn new(name: String, live: Arc<LiveConfig>, board: Arc<TenantBoard>) -> Tenant {
        Tenant {
            name,
            live,
            board,
            counts: [0; 3],
            generation: 0,
            dirty: true,
        }
    }

    fn publish(&mut self) {
        let generation = self.live.generation();
        let config = self.live.current();
        let snapshot = TenantSnapshot::of(&self.name, &config, generation, self.counts);
        self.board.set(&self.name, Arc::new(snapshot));
        self.generation = generation;
        self.dirty = false;
    }
}

impl Actor for Tenant {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.publish();
        // Counters are published at most every 250 ms; a reload within a
        // second.
        ctx.run_interval(Duration::from_millis(250), |act, _| {
            if act.dirty || act.live.generation() != act.generation {
                act.publish();
            }
        });
    }
}

impl Handler<Attempted> for Tenant {
    type Result = ();
    fn handle(&mut self, msg: Attempted, _: &mut Self::Context) {
        self.counts[0] += msg.delivered as u64;
        self.counts[1] += msg.deferred as u64;
        self.counts[2] += msg.failed as u64;
        self.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_lists_the_enabled_domains_and_the_tenant_limit() {
        let config = Config::for_test(
            r#"
[delivery]
in_flight_per_tenant = 50

[[tenants]]
name = "acme"
max_in_flight = 7

[[domains]]
name = "b.example"
tenant = "acme"

[[domains]]
name = "a.example"
tenant = "acme"

[[domains]]
name = "off.example"
tenant = "acme"
enabled = false

[[domains]]
name = "other.example"
tenant = "beta"
"#,
        );
        let acme = TenantSnapshot::of("acme", &config, 3, [1, 2, 3]);
        assert_eq!(acme.domains, vec!["a.example", "b.example"]);
        assert_eq!(acme.max_in_flight, 7);
        assert_eq!((acme.delivered, acme.deferred, acme.failed), (1, 2, 3));
        let beta = TenantSnapshot::of("beta", &config, 3, [0; 3]);
        assert_eq!(beta.domains, vec!["other.example"]);
        assert_eq!(beta.max_in_flight, 50, "the [delivery] default");
    }
}
