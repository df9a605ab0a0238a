//! The I/O side of the decision: gather MX, address and TLSA answers from
//! the resolver in the order RFC 7672 section 2.2 prescribes, then hand
//! them to the pure [`plan_destination`].

use futures_util::future::join_all;

use super::decision::{
    mx_verdict, needs_tlsa, plan_destination_for, DaneLevel, DestinationPlan, HostEvidence,
    PartialAddresses,
};
use crate::dns::{AddressLookup, Resolver, TlsaLookup};

/// The TLSA port: mail relays are published at `_25._tcp` even when a test
/// or a private deployment connects to another port.
pub(crate) const SMTP_TLSA_PORT: u16 = 25;

/// Look up everything DANE needs for `domain` and decide per MX host.
///
/// TLSA records are only sought for hosts whose MX RRset and addresses
/// are secure; the hosts are looked up concurrently.
pub async fn resolve_destination(
    resolver: &Resolver,
    level: DaneLevel,
    domain: &str,
) -> DestinationPlan {
    resolve_destination_for(resolver, level, domain, PartialAddresses::Unusable).await
}

/// [`resolve_destination`] with a rule for hosts whose address lookup
/// failed for one family only (the `mta-sts` level uses such a host where
/// DANE does not govern it).
pub(crate) async fn resolve_destination_for(
    resolver: &Resolver,
    level: DaneLevel,
    domain: &str,
    partial: PartialAddresses,
) -> DestinationPlan {
    let mx = resolver.mx(domain).await;
    let mx_secure = match mx_verdict(level, &mx) {
        Ok(secure) => secure,
        Err(outcome) => {
            tracing::debug!(domain, level = %level, outcome = %outcome, "DANE destination decided by MX lookup");
            return plan_destination_for(level, domain, &mx, &[], partial);
        }
    };
    let evidence = join_all(mx.hosts().into_iter().map(|host| async move {
        let addresses = resolver.addresses(&host.exchange).await;
        let tlsa = if needs_tlsa(mx_secure, &addresses) {
            Some(tlsa_for_host(resolver, &host.exchange, &addresses).await)
        } else {
            None
        };
        HostEvidence {
            host,
            addresses,
            tlsa,
        }
    }))
    .await;
    let plan = plan_destination_for(level, domain, &mx, &evidence, partial);
    for host in &plan.mx {
        tracing::debug!(
            domain = %plan.domain,
            level = %level,
            mx = %host.host.exchange,
            plan = %host.plan,
            "DANE plan for MX host"
        );
    }
    plan
}

/// RFC 7672 section 2.2.3: when the host name is a (secure) CNAME alias,
/// TLSA records are sought first at the expanded name, which then is the
/// TLSA base domain; when that is a validated denial, at the original name.
pub(crate) async fn tlsa_for_host(
    resolver: &Resolver,
    host: &str,
    addresses: &AddressLookup,
) -> TlsaLookup {
    if addresses.canonical != addresses.host {
        let expanded = resolver.tlsa(&addresses.canonical, SMTP_TLSA_PORT).await;
        if !expanded.lookup.is_secure_denial() {
            return expanded;
        }
    }
    resolver.tlsa(host, SMTP_TLSA_PORT).await
}
