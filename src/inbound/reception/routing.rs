//! Where a recipient's copy goes, and under which policy: relay control,
//! this server's postmaster, valid recipients of managed domains and the
//! inbound TLS peer policy (see the parent module's docs for the rules).

use tracing::{debug, info};

use super::Reception;
use crate::config::Config;
use crate::inbound::ConnectionInfo;
use crate::policy::relay::authorize_tenant;
use crate::policy::{PeerQuery, RelayRefusal, Resolution, SecurityLevel, TenantName};
use crate::smtp::{ForwardPath, Mailbox, Reply, ReversePath};

/// The destination key of inbound mail for a managed domain: its
/// downstream route, resolved by the delivery engine.
fn inbound_destination(domain: &str) -> String {
    crate::delivery::Destination::Inbound(domain).key()
}

/// Where one recipient's copy goes, and under which policy.
pub(super) struct Route {
    pub(super) destination: String,
    pub(super) resolution: Resolution,
    /// The address queued instead of the one given (mail to our
    /// postmaster, sent on to `[server] postmaster`).
    pub(super) rewrite: Option<Mailbox>,
}
impl Reception {
    /// The route of a recipient, or the refusal (relay denied, or the
    /// inbound TLS policy).
    pub(super) fn route(
        &self,
        config: &Config,
        conn: &ConnectionInfo,
        from: &ReversePath,
        to: &ForwardPath,
    ) -> Result<Route, Reply> {
        if let Some(route) = postmaster_route(config, conn, from, to) {
            return route;
        }
        if let Some(reply) = unknown_recipient(config, to) {
            info!(conn = conn.id, peer = %conn.peer, %from, %to, "unknown recipient");
            return Err(reply);
        }
        let sender = sender_domain(from);
        let policy = &config.policy;
        let by_address = || {
            config
                .relay
                .authorize(conn.peer.ip(), sender.as_deref(), policy)
        };
        // A session authenticated as a tenant's user relays under the same
        // sender rule as that tenant's relay sources.
        let authorized = match authenticated_tenant(config, conn) {
            Some(tenant) => authorize_tenant(&tenant, sender.as_deref(), policy)
                .or_else(|refusal| by_address().map_err(|_| refusal)),
            None => by_address(),
        };
        match authorized {
            Ok(_) => {
                if let (ForwardPath::Mailbox(m), Some(sender)) = (to, &sender) {
                    if let Some(recipient_domain) = m.host.domain_lowercase() {
                        let resolution = policy.resolve(
                            sender,
                            PeerQuery::Outbound {
                                recipient_domain: &recipient_domain,
                            },
                        );
                        return Ok(Route {
                            destination: recipient_domain,
                            resolution,
                            rewrite: None,
                        });
                    }
                }
            }
            // Not a relay source at all: the ordinary inbound case.
            Err(RelayRefusal::NotASource { .. }) => {}
            // A relay source that may not relay this sender: its mail may
            // still reach managed domains as inbound mail.
            Err(refusal) => {
                debug!(conn = conn.id, %from, %to, %refusal, "not relayed as outbound mail");
            }
        }
        let ForwardPath::Mailbox(mailbox) = to else {
            // Bare <Postmaster> is handled by `postmaster_route`.
            return Err(no_postmaster());
        };
        let Some(domain) = managed_domain(config, mailbox) else {
            return Err(Reply::new(554, (5, 7, 1), "Relay access denied"));
        };
        let resolution = inbound_policy(config, conn, from, &domain);
        if let Some(reply) = tls_refusal(&resolution, conn) {
            info!(conn = conn.id, peer = %conn.peer, %from, %to, policy = %resolution, "refused by the inbound TLS policy");
            return Err(reply);
        }
        Ok(Route {
            destination: inbound_destination(&domain),
            resolution,
            rewrite: None,
        })
    }
}

/// Whether `to` is this server's postmaster: the bare `<Postmaster>` or
/// `postmaster@<server hostname>` (any case, RFC 5321 section 4.5.1).
pub(super) fn is_our_postmaster(config: &Config, to: &ForwardPath) -> bool {
    match to {
        ForwardPath::Postmaster => true,
        ForwardPath::Mailbox(m) => {
            let hostname = config.server.hostname.as_str().trim_end_matches('.');
            m.local_part.eq_ignore_ascii_case("postmaster")
                && m.host
                    .domain_lowercase()
                    .is_some_and(|d| d.trim_end_matches('.').eq_ignore_ascii_case(hostname))
        }
    }
}

/// The route of mail to this server's postmaster, or `None` for any other
/// recipient. With `[server] postmaster` it goes to that address (queued
/// as that address: inbound to its managed domain's route, else outbound
/// to its domain). Without it, when the host name is itself an enabled
/// managed domain, `postmaster@<hostname>` takes that domain's way and the
/// bare `<Postmaster>` joins it; otherwise it is refused with `550 5.1.1`
/// rather than accepted into a queue with no way out.
fn postmaster_route(
    config: &Config,
    conn: &ConnectionInfo,
    from: &ReversePath,
    to: &ForwardPath,
) -> Option<Result<Route, Reply>> {
    if !is_our_postmaster(config, to) {
        return None;
    }
    let hostname = config.server.hostname.as_str();
    if let Some(target) = &config.server.postmaster {
        let domain = target.host.domain_lowercase().unwrap_or_default();
        let route = match managed_domain(config, target) {
            Some(managed) => Route {
                destination: inbound_destination(&managed),
                resolution: inbound_policy(config, conn, from, &managed),
                rewrite: Some(target.clone()),
            },
            None => Route {
                resolution: config.policy.resolve(
                    hostname,
                    PeerQuery::Outbound {
                        recipient_domain: &domain,
                    },
                ),
                destination: domain,
                rewrite: Some(target.clone()),
            },
        };
        return Some(Ok(route));
    }
    let managed = config.policy.domain(hostname).filter(|d| d.enabled);
    match (managed, to) {
        (Some(_), ForwardPath::Mailbox(_)) => None,
        (Some(domain), ForwardPath::Postmaster) => {
            let name = domain.name.as_str();
            Some(Ok(Route {
                destination: inbound_destination(name),
                resolution: inbound_policy(config, conn, from, name),
                rewrite: None,
            }))
        }
        (None, _) => Some(Err(no_postmaster())),
    }
}

/// The refusal of mail to a postmaster nobody takes.
fn no_postmaster() -> Reply {
    Reply::new(
        550,
        (5, 1, 1),
        "<postmaster>: Recipient address rejected: user unknown",
    )
}

/// The tenant of the user the session authenticated as (`None` also when
/// a reload removed that user).
fn authenticated_tenant(config: &Config, conn: &ConnectionInfo) -> Option<TenantName> {
    let name = conn.authenticated.as_deref()?;
    config.users.get(name).map(|user| user.tenant.clone())
}

/// `550 5.1.1` for a recipient of an enabled managed domain that lists its
/// valid recipients, when the local part is not listed (`postmaster` is
/// always valid, RFC 5321 4.5.1).
fn unknown_recipient(config: &Config, to: &ForwardPath) -> Option<Reply> {
    let ForwardPath::Mailbox(mailbox) = to else {
        return None;
    };
    let domain = managed_domain(config, mailbox)?;
    let list = config.recipients.get(&domain)?;
    (!list.accepts(&mailbox.local_part)).then(|| {
        Reply::new(
            550,
            (5, 1, 1),
            format!("<{mailbox}>: Recipient address rejected: user unknown"),
        )
    })
}

/// The enabled managed domain a recipient mailbox belongs to.
fn managed_domain(config: &Config, mailbox: &Mailbox) -> Option<String> {
    let domain = mailbox.host.domain_lowercase()?;
    let managed = config.policy.domain(&domain)?;
    managed.enabled.then(|| managed.name.as_str().to_string())
}

fn inbound_policy(
    config: &Config,
    conn: &ConnectionInfo,
    from: &ReversePath,
    domain: &str,
) -> Resolution {
    let sender_domain = sender_domain(from);
    config.policy.resolve(
        domain,
        PeerQuery::Inbound {
            ip: Some(conn.peer.ip()),
            sender_domain: sender_domain.as_deref(),
        },
    )
}

fn sender_domain(from: &ReversePath) -> Option<String> {
    match from {
        ReversePath::Mailbox(m) => m.host.domain_lowercase(),
        ReversePath::Null => None,
    }
}

/// Whether the session meets the policy; the refusal when it does not.
fn tls_refusal(resolution: &Resolution, conn: &ConnectionInfo) -> Option<Reply> {
    if resolution.level != SecurityLevel::Mandatory {
        return None;
    }
    match &conn.tls {
        None => Some(Reply::new(
            530,
            (5, 7, 0),
            "Must issue a STARTTLS command first",
        )),
        Some(tls) if !resolution.min_tls.accepts(tls.version) => Some(Reply::new(
            530,
            (5, 7, 0),
            format!(
                "Must issue a STARTTLS command first: {} is below the required TLS {}",
                tls.version_name(),
                resolution.min_tls
            ),
        )),
        Some(_) => None,
    }
}
