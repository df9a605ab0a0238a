//! Where a message goes and with which TLS: from the effective security
//! level and the next hop to an ordered list of [`Hop`]s (host, addresses,
//! TLS requirement), or a verdict for the whole destination.
//!
//! - `opportunistic` / `mandatory`: the MX hosts by preference (RFC 5321
//!   section 5.1; a null MX fails, RFC 7505), STARTTLS optional or required,
//!   certificates not authenticated (RFC 7435).
//! - `opportunistic-dane` / `mandatory-dane`: the RFC 7672 plan from
//!   [`crate::dane::resolve_destination`], one requirement per MX host.
//! - `mta-sts`: DANE first where usable TLSA records exist (RFC 8461
//!   section 2), otherwise the recipient domain's MTA-STS policy: enforce
//!   requires WebPKI-valid TLS to MX hosts matching the policy (others are
//!   not contacted), testing and none are opportunistic.
//! - A managed domain's inbound mail goes to its configured route, with
//!   the route's level; without a route it waits (never to the domain's own
//!   MX, which is most likely sealpost itself).
//!
//! A plan is computed for each attempt: the resolver and the MTA-STS cache
//! keep the answers for their TTLs, so this costs lookups only when those
//! expired, and a reload or a changed DNS answer applies at once.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use sealpost_queue::{AcceptedPolicy, Lease};

use super::decision::{dane_host, mta_sts_host, plain_host, Hop, HopTls, HostSkip};
use super::reason::{
    dane_deferral, dane_failure, dane_skip, mx_result, status, LocalCause, Place, Reason, Status,
    TlsFailure,
};
use crate::config::{Config, Route, RouteTls};
use crate::dane::{self, DaneLevel, DestinationOutcome, DestinationPlan, PartialAddresses};
use crate::dns::{Lookup, MxLookup, Resolver};
use crate::mta_sts::{Policy, PolicyCache};
use crate::policy::{MinTlsVersion, PeerQuery, SecurityLevel};

/// The verdict for a destination at one attempt.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Try `hops` in order. `skipped`: the MX hosts the level's policy
    /// ruled out before any connection (DANE required and no usable TLSA
    /// records, not in the MTA-STS policy...), each with its reason and
    /// host, in MX order; TLS reporting counts each as a failed session.
    Hops {
        hops: Vec<Hop>,
        skipped: Vec<Reason>,
    },
    /// Nothing to try now; retried later.
    Defer(Reason),
    /// Delivery can never succeed (e.g. a null MX).
    Fail(Reason),
}

impl Plan {
    /// Try `hops` in order, no MX host ruled out.
    pub fn hops(hops: Vec<Hop>) -> Plan {
        Plan::Hops {
            hops,
            skipped: Vec::new(),
        }
    }
}

/// What a destination's mail is delivered under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Effective {
    pub level: SecurityLevel,
    pub min_tls: MinTlsVersion,
}

/// A stored [`AcceptedPolicy`] whose level or minimum TLS version is not
/// one sealpost knows (a record from another version, or damaged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the policy stored with the message does not parse (level `{level}`, min_tls `{min_tls}`)")]
pub struct BadPolicy {
    pub level: String,
    pub min_tls: String,
}

impl TryFrom<&AcceptedPolicy> for Effective {
    type Error = BadPolicy;

    /// The one conversion of a stored policy: a value that does not parse
    /// is an error, never a weaker level.
    fn try_from(policy: &AcceptedPolicy) -> Result<Effective, BadPolicy> {
        let bad = || BadPolicy {
            level: policy.level.clone(),
            min_tls: policy.min_tls.clone(),
        };
        Ok(Effective {
            level: policy.level.parse().map_err(|_| bad())?,
            min_tls: policy.min_tls.parse().map_err(|_| bad())?,
        })
    }
}

impl BadPolicy {
    /// The deferral it causes (RFC 3463 X.3.5: system incorrectly
    /// configured).
    pub fn reason(&self) -> Reason {
        Reason::local(LocalCause::BadPolicy, status::BAD_POLICY, self.to_string())
    }
}

/// A queue destination key: the recipient domain of outbound mail, or a
/// managed domain whose inbound mail goes to its configured route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination<'a> {
    Domain(&'a str),
    Inbound(&'a str),
}

impl<'a> Destination<'a> {
    const INBOUND: &'static str = "inbound:";

    /// The destination a queue key names.
    pub fn of(key: &'a str) -> Destination<'a> {
        match key.strip_prefix(Self::INBOUND) {
            Some(domain) => Destination::Inbound(domain),
            None => Destination::Domain(key),
        }
    }

    /// The queue key (`example.net`, `inbound:example.org`).
    pub fn key(&self) -> String {
        self.to_string()
    }

    pub(crate) fn is_inbound(&self) -> bool {
        matches!(self, Destination::Inbound(_))
    }

    /// The domain: the recipient domain, or the managed domain of inbound mail.
    pub fn domain(&self) -> &'a str {
        match *self {
            Destination::Domain(domain) | Destination::Inbound(domain) => domain,
        }
    }
}

impl fmt::Display for Destination<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Domain(domain) => f.write_str(domain),
            Destination::Inbound(domain) => write!(f, "{}{domain}", Self::INBOUND),
        }
    }
}

/// The policy a queued message is delivered under now: a reload applies
/// at the next attempt. Outbound mail resolves (sender's managed domain,
/// recipient domain); inbound mail follows its route; a message without a
/// sender domain (a DSN) keeps the policy it was queued with, which must
/// parse ([`BadPolicy`] otherwise: the caller defers and logs it).
pub fn effective_policy(config: &Config, lease: &Lease) -> Result<Effective, BadPolicy> {
    match Destination::of(&lease.destination) {
        Destination::Inbound(domain) => {
            if let Some(route) = route_of(config, domain) {
                return Ok(Effective {
                    level: route.tls.level(),
                    min_tls: route.min_tls,
                });
            }
        }
        Destination::Domain(recipient_domain) => {
            if let Some((_, sender_domain)) = lease.mail_from.rsplit_once('@') {
                let resolution = config.policy.resolve(
                    &sender_domain.to_ascii_lowercase(),
                    PeerQuery::Outbound { recipient_domain },
                );
                return Ok(Effective {
                    level: resolution.level,
                    min_tls: resolution.min_tls,
                });
            }
        }
    }
    Effective::try_from(&lease.policy)
}

fn route_of<'a>(config: &'a Config, domain: &str) -> Option<&'a Route> {
    let name: crate::policy::DomainName = domain.parse().ok()?;
    config.routes.get(&name)
}

/// The next hop of a destination key.
pub(crate) fn next_hop<'a>(config: &'a Config, destination: &'a str) -> NextHop<'a> {
    match Destination::of(destination) {
        Destination::Inbound(domain) => match route_of(config, domain) {
            Some(route) => NextHop::Route { route },
            None => NextHop::NoRoute { domain },
        },
        Destination::Domain(domain) => NextHop::Domain(domain),
    }
}

/// The next hop of a queued message.
#[derive(Debug, Clone)]
pub(crate) enum NextHop<'a> {
    /// Outbound: the recipient domain's MX hosts.
    Domain(&'a str),
    /// Inbound: a managed domain's downstream route.
    Route { route: &'a Route },
    /// Inbound to a managed domain without a route.
    NoRoute { domain: &'a str },
}

/// A permanent failure of the destination, with the status its DSN gives.
fn no_mail(cause: LocalCause, status: Status, why: String) -> Plan {
    Plan::Fail(Reason::local(cause, status, why))
}

/// Why a host has no address to try.
fn address_problem(host: &str, lookup: &Lookup<IpAddr>) -> Reason {
    let (cause, status, detail) = match lookup {
        Lookup::Failed(failure) => (
            LocalCause::DnsFailure,
            status::DNS,
            format!("address lookup failed: {failure}"),
        ),
        _ => (
            LocalCause::NoAddress,
            status::NO_ROUTE,
            "no address records".to_string(),
        ),
    };
    Reason::Local {
        cause,
        status,
        place: Place::host(host),
        detail,
    }
}

/// No host has an address: the last host's cause, every host's problem
/// in the detail.
fn no_address(what: String, problems: &[Reason]) -> Reason {
    let list: Vec<String> = problems.iter().map(Reason::to_string).collect();
    let detail = format!("{what}: {}", list.join("; "));
    match problems.last() {
        Some(Reason::Local { cause, status, .. }) => Reason::local(*cause, *status, detail),
        _ => Reason::local(LocalCause::NoAddress, status::NO_ROUTE, detail),
    }
}

/// What the planner needs.
pub(crate) struct Planner<'a> {
    pub resolver: &'a Resolver,
    pub mta_sts: &'a PolicyCache,
    /// The port of MX hosts (25 outside tests).
    pub smtp_port: u16,
}

impl Planner<'_> {
    pub async fn plan(&self, next_hop: &NextHop<'_>, effective: &Effective) -> Plan {
        match next_hop {
            NextHop::NoRoute { domain } => Plan::Defer(Reason::local(
                LocalCause::NoRoute,
                status::NO_ROUTE,
                format!(
                    "no downstream route is configured for {domain} (set `route` in its [[domains]] entry)"
                ),
            )),
            NextHop::Route { route } => self.route(route).await,
            NextHop::Domain(domain) => match effective.level {
                SecurityLevel::Opportunistic | SecurityLevel::Mandatory => {
                    let tls = plain_host(effective.level);
                    self.mx(domain, tls, effective.min_tls).await
                }
                SecurityLevel::OpportunisticDane => {
                    self.dane(domain, DaneLevel::Opportunistic, effective.min_tls).await
                }
                SecurityLevel::MandatoryDane => {
                    self.dane(domain, DaneLevel::Mandatory, effective.min_tls).await
                }
                SecurityLevel::MtaSts => self.mta_sts(domain, effective.min_tls).await,
            },
        }
    }

    async fn route(&self, route: &Route) -> Plan {
        let tls = match route.tls {
            RouteTls::WebPki => HopTls::RouteWebPki,
            other => plain_host(other.level()),
        };
        let mut hops = Vec::new();
        let mut problems = Vec::new();
        for host in &route.hosts {
            let addresses: Vec<SocketAddr> = match host.host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, host.port)],
                Err(_) => {
                    // A route never needs DANE: the family that resolved will do.
                    let found = self.resolver.addresses(&host.host).await;
                    let ips: Vec<SocketAddr> = found
                        .resolved
                        .records()
                        .iter()
                        .map(|ip| SocketAddr::new(*ip, host.port))
                        .collect();
                    if ips.is_empty() {
                        problems.push(address_problem(&host.host, &found.resolved));
                    }
                    ips
                }
            };
            if !addresses.is_empty() {
                hops.push(Hop {
                    host: host.host.clone(),
                    addresses,
                    tls: tls.clone(),
                    min_tls: route.min_tls,
                });
            }
        }
        if hops.is_empty() {
            Plan::Defer(no_address("no route host has an address".into(), &problems))
        } else {
            Plan::hops(hops)
        }
    }

    async fn mx(&self, domain: &str, tls: HopTls, min_tls: MinTlsVersion) -> Plan {
        let mx = self.resolver.mx(domain).await;
        match &mx {
            MxLookup::NullMx { .. } => {
                return no_mail(
                    LocalCause::NullMx,
                    status::NULL_MX,
                    format!("{domain} publishes a null MX (RFC 7505): it accepts no mail"),
                )
            }
            MxLookup::NoMailDomain { nxdomain: true, .. } => {
                return no_mail(
                    LocalCause::NoMailDomain,
                    status::NO_MAIL_DOMAIN,
                    format!("{domain} does not exist"),
                )
            }
            MxLookup::NoMailDomain {
                nxdomain: false, ..
            } => {
                return no_mail(
                    LocalCause::NoMailDomain,
                    status::NO_MAIL_DOMAIN,
                    format!("{domain} has no MX and no address records"),
                )
            }
            MxLookup::Failed(failure) => {
                return Plan::Defer(Reason::local(
                    LocalCause::DnsFailure,
                    status::DNS,
                    format!("MX lookup for {domain} failed: {failure}"),
                ))
            }
            MxLookup::Hosts { .. } | MxLookup::Implicit { .. } => {}
        }
        let mut hops = Vec::new();
        let mut problems = Vec::new();
        for host in mx.hosts() {
            // No DANE at these levels: the family that resolved will do.
            let found = self.resolver.addresses(&host.exchange).await;
            let addresses = with_port(found.resolved.records(), self.smtp_port);
            if addresses.is_empty() {
                problems.push(address_problem(&host.exchange, &found.resolved));
                continue;
            }
            hops.push(Hop {
                host: host.exchange,
                addresses,
                tls: tls.clone(),
                min_tls,
            });
        }
        if hops.is_empty() {
            Plan::Defer(no_address(
                format!("no MX host of {domain} has an address"),
                &problems,
            ))
        } else {
            Plan::hops(hops)
        }
    }

    async fn dane(&self, domain: &str, level: DaneLevel, min_tls: MinTlsVersion) -> Plan {
        let plan = dane::resolve_destination(self.resolver, level, domain).await;
        dane_plan(domain, plan, min_tls, self.smtp_port)
    }

    async fn mta_sts(&self, domain: &str, min_tls: MinTlsVersion) -> Plan {
        let (lookup, dane_plan) = futures_util::future::join(
            self.mta_sts.policy_for(domain),
            // A host whose address lookup failed for one family is used
            // with the other where DANE does not govern it.
            dane::resolve_destination_for(
                self.resolver,
                DaneLevel::Opportunistic,
                domain,
                PartialAddresses::UsableUnlessDane,
            ),
        )
        .await;
        mta_sts_plan(domain, dane_plan, lookup.policy(), min_tls, self.smtp_port)
    }
}

fn with_port(ips: &[IpAddr], port: u16) -> Vec<SocketAddr> {
    ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()
}

/// The plan under `opportunistic-dane` / `mandatory-dane` from the RFC 7672
/// destination plan: each host's TLS from [`dane_host`].
pub fn dane_plan(domain: &str, plan: DestinationPlan, min_tls: MinTlsVersion, port: u16) -> Plan {
    match &plan.outcome {
        DestinationOutcome::Deliver => {}
        DestinationOutcome::Defer(why) => return Plan::Defer(dane_deferral(domain, why)),
        DestinationOutcome::Fail(why) => return Plan::Fail(dane_failure(domain, why)),
    }
    let mut hops = Vec::new();
    let mut skipped = Vec::new();
    for mx in plan.mx {
        match dane_host(&mx.plan) {
            Ok(tls) => hops.push(Hop {
                tls,
                addresses: with_port(&mx.addresses, port),
                host: mx.host.exchange,
                min_tls,
            }),
            Err(HostSkip::Dane(why)) => skipped.push(dane_skip(&mx.host.exchange, &why)),
            Err(HostSkip::MtaSts(_)) => {}
        }
    }
    if hops.is_empty() {
        Plan::Defer(Reason::Dane {
            failure: TlsFailure::ValidationFailure,
            place: Place::none(),
            detail: format!("no usable MX host for {domain}"),
        })
    } else {
        Plan::Hops { hops, skipped }
    }
}

/// `reason` placed at MX host `host` where it names no host (TLS
/// reporting counts it for that host).
fn at_host((host, reason): (String, Reason)) -> Reason {
    match reason {
        Reason::MtaSts {
            failure,
            place,
            detail,
        } if place.host.is_none() => Reason::MtaSts {
            failure,
            place: Place::host(&host),
            detail,
        },
        other => other,
    }
}

/// The plan under `mta-sts` from the RFC 7672 destination plan (DANE
/// governs where it applies) and the domain's policy: each host's TLS
/// from [`mta_sts_host`].
pub(crate) fn mta_sts_plan(
    domain: &str,
    dane_plan: DestinationPlan,
    policy: Option<&Policy>,
    min_tls: MinTlsVersion,
    port: u16,
) -> Plan {
    match &dane_plan.outcome {
        DestinationOutcome::Deliver => {}
        DestinationOutcome::Defer(why) => return Plan::Defer(dane_deferral(domain, why)),
        DestinationOutcome::Fail(why) => return Plan::Fail(dane_failure(domain, why)),
    }
    let mut hops = Vec::new();
    // Each host's refusal, in MX order, with the host.
    let mut skipped: Vec<(String, Reason)> = Vec::new();
    for mx in dane_plan.mx {
        match mta_sts_host(&mx.plan, policy, &mx.host.exchange) {
            Ok(tls) => hops.push(Hop {
                addresses: with_port(&mx.addresses, port),
                host: mx.host.exchange,
                tls,
                min_tls,
            }),
            // The failure's text names the MX host.
            Err(HostSkip::MtaSts(failure)) => skipped.push((
                mx.host.exchange,
                Reason::MtaSts {
                    failure: mx_result(&failure),
                    place: Place::none(),
                    detail: failure.to_string(),
                },
            )),
            Err(HostSkip::Dane(why)) => {
                let reason = dane_skip(&mx.host.exchange, &why);
                skipped.push((mx.host.exchange, reason));
            }
        }
    }
    if !hops.is_empty() {
        let skipped = skipped.into_iter().map(at_host).collect();
        return Plan::Hops { hops, skipped };
    }
    let mut skipped: Vec<Reason> = skipped.into_iter().map(|(_, reason)| reason).collect();
    let list: Vec<String> = skipped.iter().map(Reason::to_string).collect();
    let detail = format!(
        "no MX host of {domain} may be used under its MTA-STS policy: {}",
        list.join("; ")
    );
    // Grouped by the last host's cause; the detail names them all.
    Plan::Defer(match skipped.pop() {
        Some(Reason::MtaSts { failure, .. }) => Reason::MtaSts {
            failure,
            place: Place::none(),
            detail,
        },
        Some(Reason::Dane { failure, .. }) => Reason::Dane {
            failure,
            place: Place::none(),
            detail,
        },
        Some(Reason::Local { cause, status, .. }) => Reason::local(cause, status, detail),
        _ => Reason::MtaSts {
            failure: TlsFailure::ValidationFailure,
            place: Place::none(),
            detail,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(level: &str, min_tls: &str) -> AcceptedPolicy {
        AcceptedPolicy {
            level: level.into(),
            min_tls: min_tls.into(),
            explanation: String::new(),
        }
    }

    #[test]
    fn a_stored_policy_converts_once_and_never_to_a_weaker_level() {
        assert_eq!(
            Effective::try_from(&stored("mandatory-dane", "1.2")),
            Ok(Effective {
                level: SecurityLevel::MandatoryDane,
                min_tls: MinTlsVersion::Tls12,
            })
        );
        for (level, min_tls) in [("dane-required", "1.2"), ("mandatory", "1.1"), ("", "")] {
            let error = Effective::try_from(&stored(level, min_tls)).expect_err(level);
            let reason = error.reason();
            assert_eq!(reason.group().cause, "bad-policy", "{reason}");
            assert_eq!(reason.status(), Some(Status(4, 3, 5)), "{reason}");
        }
    }

    #[test]
    fn destination_keys_have_one_spelling() {
        assert_eq!(
            Destination::of("inbound:example.org"),
            Destination::Inbound("example.org")
        );
        assert_eq!(
            Destination::of("example.net"),
            Destination::Domain("example.net")
        );
        assert_eq!(
            Destination::Inbound("example.org").key(),
            "inbound:example.org"
        );
        assert_eq!(Destination::Domain("example.net").key(), "example.net");
    }
}
