//! Outbound relay control: which connecting addresses are a tenant's own
//! mail servers (its relay sources). Mail from a relay source may go to any
//! recipient, but only with a sender domain that is an enabled managed
//! domain of that same tenant; everything else is refused, so sealpost is
//! never an open relay.

use std::net::IpAddr;

use ipnet::IpNet;

use super::prefix::PrefixMap;
use super::{PolicySnapshot, TenantName};

/// Relay sources by network, longest prefix first.
#[derive(Debug, Clone, Default)]
pub struct RelaySources {
    networks: PrefixMap<TenantName>,
}

/// Why a relay source may not relay this sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RelayRefusal {
    #[error("{ip} is not a relay source of any tenant")]
    NotASource { ip: IpAddr },
    #[error("the null sender may not relay through tenant `{tenant}`")]
    NullSender { tenant: TenantName },
    #[error("sender domain `{domain}` is not an enabled managed domain of tenant `{tenant}`")]
    ForeignSender { domain: String, tenant: TenantName },
}

impl RelaySources {
    /// Adds a network of a tenant; returns the tenant that already had
    /// exactly this network, if any.
    pub fn insert(&mut self, net: IpNet, tenant: TenantName) -> Option<TenantName> {
        self.networks.insert(net, tenant)
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// Every network and its tenant, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (IpNet, &TenantName)> + '_ {
        self.networks.entries()
    }

    /// Keeps only the networks of the tenants `keep` accepts.
    pub(crate) fn retain(&mut self, keep: impl FnMut(&TenantName) -> bool) {
        self.networks.retain(keep);
    }

    /// The tenant whose relay source contains `ip` (the longest match).
    pub fn tenant_of(&self, ip: IpAddr) -> Option<&TenantName> {
        self.networks.longest(ip)
    }

    /// Whether `ip` may relay mail from `sender_domain` (`None`: the null
    /// sender): the tenant, or why not.
    pub(crate) fn authorize(
        &self,
        ip: IpAddr,
        sender_domain: Option<&str>,
        policy: &PolicySnapshot,
    ) -> Result<TenantName, RelayRefusal> {
        let tenant = self.tenant_of(ip).ok_or(RelayRefusal::NotASource { ip })?;
        authorize_tenant(tenant, sender_domain, policy)
    }
}

/// Whether a client of `tenant` (a relay source, or a session that
/// authenticated as one of the tenant's users) may relay mail from
/// `sender_domain`: only with an enabled managed domain of that tenant.
pub(crate) fn authorize_tenant(
    tenant: &TenantName,
    sender_domain: Option<&str>,
    policy: &PolicySnapshot,
) -> Result<TenantName, RelayRefusal> {
    let tenant = tenant.clone();
    let Some(domain) = sender_domain else {
        return Err(RelayRefusal::NullSender { tenant });
    };
    match policy.domain(domain) {
        Some(managed) if managed.enabled && managed.tenant == tenant => Ok(tenant),
        _ => Err(RelayRefusal::ForeignSender {
            domain: domain.to_string(),
            tenant,
        }),
    }
}
