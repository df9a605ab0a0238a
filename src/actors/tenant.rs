//! The tenant actor: one per tenant with mail in the engine, on the
//! scheduler's arbiter. It keeps the tenant's accounting in the engine
//! ([`Account`]: leases in flight, in total and per destination) and leases
//! the tenant's due mail when the scheduler grants it slots ([`Take`]),
//! within its quotas: its in-flight limit (`[[tenants]] max_in_flight`,
//! else `[delivery] in_flight_per_tenant`) and at most `[delivery]
//! in_flight_per_tenant_destination` leases at one next hop, so a slow
//! destination cannot hold the tenant's whole limit (the queue passes over
//! a destination without room, `Queue::take_due_tenant_within`).
//!
//! It publishes an immutable [`TenantSnapshot`] (enabled managed domains,
//! limits) to the [`TenantBoard`] the admin socket and the scheduler read,
//! once per configuration generation. The domains come from the index the
//! configuration builds once per snapshot (`Config::tenant_domains`): no
//! actor walks the managed domains.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use sealpost_queue::Lease;
use tracing::warn;

use super::status::TenantBoard;
pub(crate) use super::status::{tenant_limit, TenantSnapshot};
use crate::delivery::DeliveryContext;

/// A tenant's leases in the engine: in total and per destination.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Account {
    in_flight: usize,
    per_destination: HashMap<String, usize>,
}

impl Account {
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Leases at `destination` now.
    pub fn at(&self, destination: &str) -> usize {
        self.per_destination.get(destination).copied().unwrap_or(0)
    }

    /// How many more leases the tenant may take under `limit` in total.
    pub fn room(&self, limit: usize) -> usize {
        limit.saturating_sub(self.in_flight)
    }

    /// How many more leases `destination` may take under `cap`.
    pub(crate) fn room_at(&self, destination: &str, cap: usize) -> usize {
        cap.saturating_sub(self.at(destination))
    }

    pub fn leased(&mut self, destination: &str) {
        self.in_flight += 1;
        *self
            .per_destination
            .entry(destination.to_string())
            .or_default() += 1;
    }

    pub fn finished(&mut self, destination: &str) {
        let Some(n) = self.per_destination.get_mut(destination) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.per_destination.remove(destination);
        }
        self.in_flight -= 1;
    }
}

/// Lease up to `max` of the tenant's due mail (the slots the scheduler
/// granted); the tenant takes fewer when its quotas say so.
#[derive(Message)]
#[rtype(result = "Vec<Lease>")]
pub(crate) struct Take {
    pub now: SystemTime,
    pub max: usize,
}

/// One lease of this tenant at `destination` is finished.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attempted {
    pub destination: String,
}

pub struct Tenant {
    name: String,
    shared: Arc<DeliveryContext>,
    board: Arc<TenantBoard>,
    account: Account,
    /// The configuration generation last published.
    generation: Option<u64>,
}

impl Tenant {
    pub fn new(name: String, shared: Arc<DeliveryContext>, board: Arc<TenantBoard>) -> Tenant {
        Tenant {
            name,
            shared,
            board,
            account: Account::default(),
            generation: None,
        }
    }

    /// Publishes the snapshot when the configuration changed since.
    fn publish(&mut self) {
        let generation = self.shared.live.generation();
        if self.generation == Some(generation) {
            return;
        }
        let config = self.shared.live.current();
        let snapshot = TenantSnapshot::of(&self.name, &config, generation);
        self.board.set(&self.name, Arc::new(snapshot));
        self.generation = Some(generation);
    }
}

impl Actor for Tenant {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.publish();
        // A reload shows on the board within a second even without mail
        // (one integer compared; nothing walked).
        ctx.run_interval(Duration::from_secs(1), |act, _| act.publish());
    }
}

impl Handler<Take> for Tenant {
    type Result = MessageResult<Take>;
    fn handle(&mut self, take: Take, _: &mut Self::Context) -> Self::Result {
        self.publish();
        let config = self.shared.live.current();
        let max = take
            .max
            .min(self.account.room(tenant_limit(&config, &self.name)));
        if max == 0 {
            return MessageResult(Vec::new());
        }
        let cap = config.delivery.in_flight_per_tenant_destination;
        let account = &self.account;
        let room = |destination: &str| account.room_at(destination, cap);
        let leases = match self
            .shared
            .queue
            .take_due_tenant_within(take.now, &self.name, max, &room)
        {
            Ok(leases) => leases,
            Err(e) => {
                warn!(error = %e, tenant = %self.name, "taking due mail from the queue failed");
                Vec::new()
            }
        };
        for lease in &leases {
            self.account.leased(&lease.destination);
        }
        MessageResult(leases)
    }
}

impl Handler<Attempted> for Tenant {
    type Result = ();
    fn handle(&mut self, msg: Attempted, _: &mut Self::Context) {
        self.account.finished(&msg.destination);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn a_snapshot_lists_the_enabled_domains_and_the_tenant_limits() {
        let config = Config::for_test(
            r#"
[delivery]
in_flight_per_tenant = 50
in_flight_per_tenant_destination = 5

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
        let acme = TenantSnapshot::of("acme", &config, 3);
        assert_eq!(acme.domains.to_vec(), vec!["a.example", "b.example"]);
        assert_eq!(acme.max_in_flight, 7);
        assert_eq!(acme.max_in_flight_per_destination, 5);
        let beta = TenantSnapshot::of("beta", &config, 3);
        assert_eq!(beta.domains.to_vec(), vec!["other.example"]);
        assert_eq!(beta.max_in_flight, 50, "the [delivery] default");
        let nobody = TenantSnapshot::of("nobody", &config, 3);
        assert!(nobody.domains.is_empty());
    }

    #[test]
    fn the_account_counts_leases_in_total_and_per_destination() {
        let mut account = Account::default();
        for _ in 0..3 {
            account.leased("slow.example");
        }
        account.leased("fast.example");
        assert_eq!(account.in_flight(), 4);
        assert_eq!(account.room(10), 6);
        assert_eq!(account.room(3), 0);
        assert_eq!(account.room_at("slow.example", 3), 0);
        assert_eq!(account.room_at("fast.example", 3), 2);
        assert_eq!(account.room_at("new.example", 3), 3);
        account.finished("slow.example");
        account.finished("fast.example");
        // A finish without a lease (never sent) changes nothing.
        account.finished("other.example");
        assert_eq!(account.in_flight(), 2);
        assert_eq!(account.at("slow.example"), 2);
        assert_eq!(account.at("fast.example"), 0);
        assert_eq!(account, {
            let mut a = Account::default();
            a.leased("slow.example");
            a.leased("slow.example");
            a
        });
    }
}
