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
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;

use super::reason::local_reason;
use crate::config::Route;
use crate::dane::{self, DaneLevel, DanePlan, DestinationOutcome, FailReason, PartialAddresses};
use crate::dns::{Lookup, MxLookup, Resolver};
use crate::mta_sts::{self, Mode, PolicyCache, StsCertVerifier};
use crate::policy::{MinTlsVersion, SecurityLevel};
use crate::smtp::client::{Authentication, TlsParams, TlsRequirement};
use crate::smtp::EnhancedCode;

/// The TLS a hop requires.
#[derive(Debug, Clone)]
pub enum HopTls {
    /// STARTTLS when offered, cleartext otherwise.
    Opportunistic,
    /// TLS required, certificate not authenticated.
    Unauthenticated,
    /// TLS required, certificate authenticated by these TLSA records.
    Dane(DanePlan),
    /// TLS required, certificate valid under WebPKI for the host name
    /// (MTA-STS enforce).
    WebPki,
}

impl fmt::Display for HopTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HopTls::Opportunistic => f.write_str("opportunistic TLS"),
            HopTls::Unauthenticated => f.write_str("TLS required, unauthenticated"),
            HopTls::Dane(plan) => write!(f, "{plan}"),
            HopTls::WebPki => f.write_str("TLS required, WebPKI-valid certificate (MTA-STS)"),
        }
    }
}

/// One host to try, with every address in order.
#[derive(Debug, Clone)]
pub struct Hop {
    pub host: String,
    pub addresses: Vec<SocketAddr>,
    pub tls: HopTls,
    pub min_tls: MinTlsVersion,
}

/// Why a [`Hop`]'s TLS parameters could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HopError {
    #[error("`{host}` is not a valid TLS server name")]
    BadName { host: String },
    #[error("no WebPKI roots are available for MTA-STS")]
    NoWebPki,
}

impl Hop {
    /// The client's TLS parameters for one connection attempt (a DANE or
    /// MTA-STS verifier records its outcome, so each attempt gets its own).
    pub fn params(
        &self,
        webpki: Option<&Arc<WebPkiServerVerifier>>,
    ) -> Result<TlsParams, HopError> {
        let mut name = self.host.as_str();
        let requirement = match &self.tls {
            HopTls::Opportunistic => TlsRequirement::Opportunistic,
            HopTls::Unauthenticated => TlsRequirement::RequireUnauthenticated,
            HopTls::Dane(plan) => {
                if let Some(sni) = plan.sni() {
                    name = sni;
                }
                match plan.verifier(&rustls::crypto::ring::default_provider()) {
                    Some(verifier) => TlsRequirement::RequireVerified {
                        verifier: Arc::new(verifier),
                        kind: Authentication::Dane,
                    },
                    None => TlsRequirement::RequireUnauthenticated,
                }
            }
            HopTls::WebPki => {
                let inner = webpki.ok_or(HopError::NoWebPki)?;
                TlsRequirement::RequireVerified {
                    verifier: StsCertVerifier::new(inner.clone(), Mode::Enforce),
                    kind: Authentication::WebPki,
                }
            }
        };
        TlsParams::new(requirement, self.min_tls, name).map_err(|_| HopError::BadName {
            host: self.host.clone(),
        })
    }
}

/// The verdict for a destination at one attempt.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Try these hosts in order.
    Hops(Vec<Hop>),
    /// Nothing to try now; retried later.
    Defer(String),
    /// Delivery can never succeed (e.g. a null MX).
    Fail(String),
}

/// What a destination's mail is delivered under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Effective {
    pub level: SecurityLevel,
    pub min_tls: MinTlsVersion,
}

/// The next hop of a queued message.
#[derive(Debug, Clone)]
pub enum NextHop<'a> {
    /// Outbound: the recipient domain's MX hosts.
    Domain(&'a str),
    /// Inbound: a managed domain's downstream route.
    Route { domain: &'a str, route: &'a Route },
    /// Inbound to a managed domain without a route.
    NoRoute { domain: &'a str },
}

/// RFC 7505 section 4.1 (with RFC 7504): mail for a null-MX domain
/// fails with 5.1.10.
const NULL_MX: EnhancedCode = EnhancedCode(5, 1, 10);
/// RFC 3463 X.1.2: bad destination system address.
const NO_MAIL_DOMAIN: EnhancedCode = EnhancedCode(5, 1, 2);

/// A permanent failure of the destination, with the status its DSN gives.
fn no_mail(why: String, status: EnhancedCode) -> Plan {
    Plan::Fail(local_reason(&why, status))
}

/// [`no_mail`] for the DANE planner's verdict.
fn dane_failure(domain: &str, why: &FailReason) -> Plan {
    let status = match why {
        FailReason::NullMx => NULL_MX,
        FailReason::NoMailDomain { .. } => NO_MAIL_DOMAIN,
    };
    no_mail(format!("{domain}: {why}"), status)
}

/// Why a host has no address to try.
fn address_problem(host: &str, lookup: &Lookup<IpAddr>) -> String {
    match lookup {
        Lookup::Failed(failure) => format!("{host}: address lookup failed: {failure}"),
        _ => format!("{host}: no address records"),
    }
}

/// What the planner needs.
pub struct Planner<'a> {
    pub resolver: &'a Resolver,
    pub mta_sts: &'a PolicyCache,
    /// The port of MX hosts (25 outside tests).
    pub smtp_port: u16,
}

impl Planner<'_> {
    pub async fn plan(&self, next_hop: &NextHop<'_>, effective: &Effective) -> Plan {
        match next_hop {
            NextHop::NoRoute { domain } => Plan::Defer(format!(
                "no downstream route is configured for {domain} (set `route` in its [[domains]] entry)"
            )),
            NextHop::Route { route, .. } => self.route(route).await,
            NextHop::Domain(domain) => match effective.level {
                SecurityLevel::Opportunistic => {
                    self.mx(domain, HopTls::Opportunistic, effective.min_tls).await
                }
                SecurityLevel::Mandatory => {
                    self.mx(domain, HopTls::Unauthenticated, effective.min_tls).await
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
        let tls = match route.level {
            SecurityLevel::Mandatory => HopTls::Unauthenticated,
            _ => HopTls::Opportunistic,
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
            Plan::Defer(format!(
                "no route host has an address: {}",
                problems.join("; ")
            ))
        } else {
            Plan::Hops(hops)
        }
    }

    async fn mx(&self, domain: &str, tls: HopTls, min_tls: MinTlsVersion) -> Plan {
        let mx = self.resolver.mx(domain).await;
        match &mx {
            MxLookup::NullMx { .. } => {
                return no_mail(
                    format!("{domain} publishes a null MX (RFC 7505): it accepts no mail"),
                    NULL_MX,
                )
            }
            MxLookup::NoMailDomain { nxdomain: true, .. } => {
                return no_mail(format!("{domain} does not exist"), NO_MAIL_DOMAIN)
            }
            MxLookup::NoMailDomain {
                nxdomain: false, ..
            } => {
                return no_mail(
                    format!("{domain} has no MX and no address records"),
                    NO_MAIL_DOMAIN,
                )
            }
            MxLookup::Failed(failure) => {
                return Plan::Defer(format!("MX lookup for {domain} failed: {failure}"))
            }
            MxLookup::Hosts { .. } | MxLookup::Implicit { .. } => {}
        }
        let mut hops = Vec::new();
        let mut problems = Vec::new();
        for host in mx.hosts() {
            // No DANE at these levels: the family that resolved will do.
            let found = self.resolver.addresses(&host.exchange).await;
            let addresses = self.with_port(found.resolved.records());
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
            Plan::Defer(format!(
                "no MX host of {domain} has an address: {}",
                problems.join("; ")
            ))
        } else {
            Plan::Hops(hops)
        }
    }

    fn with_port(&self, ips: &[IpAddr]) -> Vec<SocketAddr> {
        ips.iter()
            .map(|ip| SocketAddr::new(*ip, self.smtp_port))
            .collect()
    }

    async fn dane(&self, domain: &str, level: DaneLevel, min_tls: MinTlsVersion) -> Plan {
        let plan = dane::resolve_destination(self.resolver, level, domain).await;
        match &plan.outcome {
            DestinationOutcome::Deliver => {}
            DestinationOutcome::Defer(why) => return Plan::Defer(format!("{domain}: {why}")),
            DestinationOutcome::Fail(why) => return dane_failure(domain, why),
        }
        let hops: Vec<Hop> = plan
            .mx
            .into_iter()
            .filter_map(|mx| {
                let tls = match &mx.plan {
                    DanePlan::Authenticate { .. } => HopTls::Dane(mx.plan.clone()),
                    DanePlan::EncryptUnauthenticated { .. } => HopTls::Unauthenticated,
                    DanePlan::Opportunistic(_) => HopTls::Opportunistic,
                    DanePlan::Skip(_) => return None,
                };
                Some(Hop {
                    addresses: self.with_port(&mx.addresses),
                    host: mx.host.exchange,
                    tls,
                    min_tls,
                })
            })
            .collect();
        if hops.is_empty() {
            Plan::Defer(format!("no usable MX host for {domain}"))
        } else {
            Plan::Hops(hops)
        }
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
        match &dane_plan.outcome {
            DestinationOutcome::Deliver => {}
            DestinationOutcome::Defer(why) => return Plan::Defer(format!("{domain}: {why}")),
            DestinationOutcome::Fail(why) => return dane_failure(domain, why),
        }
        let policy = lookup.policy();
        let mut hops = Vec::new();
        let mut skipped = Vec::new();
        for mx in dane_plan.mx {
            let tls = match (&mx.plan, mta_sts::plan_mx(policy, &mx.host.exchange)) {
                // RFC 8461 section 2: where DANE applies it governs.
                (DanePlan::Authenticate { .. }, _) => HopTls::Dane(mx.plan.clone()),
                (_, mta_sts::MxPlan::Skip(failure)) => {
                    skipped.push(failure.to_string());
                    continue;
                }
                (DanePlan::Skip(why), _) => {
                    skipped.push(format!("{}: {why}", mx.host.exchange));
                    continue;
                }
                (_, mta_sts::MxPlan::RequireWebPki) => HopTls::WebPki,
                (DanePlan::EncryptUnauthenticated { .. }, _) => HopTls::Unauthenticated,
                (_, mta_sts::MxPlan::TestWebPki { .. } | mta_sts::MxPlan::Opportunistic) => {
                    HopTls::Opportunistic
                }
            };
            hops.push(Hop {
                addresses: self.with_port(&mx.addresses),
                host: mx.host.exchange,
                tls,
                min_tls,
            });
        }
        if hops.is_empty() {
            Plan::Defer(format!(
                "no MX host of {domain} may be used under its MTA-STS policy: {}",
                skipped.join("; ")
            ))
        } else {
            Plan::Hops(hops)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::reason::parse_local_status;

    #[test]
    fn domains_without_mail_fail_with_their_dsn_status() {
        let table = [
            (FailReason::NullMx, EnhancedCode(5, 1, 10)),
            (
                FailReason::NoMailDomain { nxdomain: true },
                EnhancedCode(5, 1, 2),
            ),
            (
                FailReason::NoMailDomain { nxdomain: false },
                EnhancedCode(5, 1, 2),
            ),
        ];
        for (why, status) in table {
            let Plan::Fail(reason) = dane_failure("example.net", &why) else {
                panic!("{why}: not a failure");
            };
            assert!(reason.starts_with("example.net: "), "{reason}");
            assert_eq!(parse_local_status(&reason), Some(status), "{reason}");
        }
    }
}
