//! Which TLS policy applies to a message between two addresses, and why
//! (`sealpost policy explain`, the admin API's `/policy/explain`). The
//! choice of managed domain and peer follows the direction (see
//! `docs/policy.md`):
//! - outbound: managed domain = the sender's (`--from`) domain, peer = the
//!   recipient's (`--to`) domain;
//! - inbound: managed domain = the recipient's (`--to`) domain, peer = the
//!   connecting `--ip` and/or the sender's (`--from`) domain.
//!
//! Without `--direction`: outbound when `--from`'s domain is a managed domain
//! (enabled or not), else inbound.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use super::{Direction, PeerQuery, PolicySnapshot, Resolution};

/// What to explain, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainRequest {
    /// Envelope sender: `user@domain`, `<user@domain>`, a bare domain, or
    /// `<>` / empty for the null reverse-path.
    pub from: String,
    /// Envelope recipient: `user@domain`, `<user@domain>` or a bare domain.
    pub to: String,
    /// The connecting IP address (inbound).
    pub ip: Option<IpAddr>,
    pub direction: Option<Direction>,
}

/// How the direction was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirectionChoice {
    /// `--direction` was given.
    Given,
    /// `--from`'s domain is managed, so the mail leaves through sealpost.
    SenderManaged,
    /// `--from`'s domain is not managed, so the mail arrives from the internet.
    SenderNotManaged,
}

/// A resolution with the inputs it was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub direction: Direction,
    pub direction_choice: DirectionChoice,
    pub managed_domain: String,
    pub peer_domain: Option<String>,
    pub peer_ip: Option<IpAddr>,
    pub resolution: Resolution,
}

/// Why a request cannot be explained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    #[error("outbound mail needs a sender domain: `--from {0}` has none (the managed domain is the sender's)")]
    NoSenderDomain(String),
    #[error("`--to {0}` has no domain")]
    NoRecipientDomain(String),
    #[error("`--ip` is the connecting address of inbound mail; outbound, the peer is the recipient domain")]
    IpOutbound,
}

/// The domain of an address or bare domain; `None` for the null path.
pub(crate) fn domain_of(address: &str) -> Option<&str> {
    let address = address.trim();
    let address = address
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(address);
    let domain = match address.rsplit_once('@') {
        Some((_, domain)) => domain,
        None => address,
    };
    (!domain.is_empty()).then_some(domain)
}

/// Resolves the request against `snapshot`.
pub fn explain(
    snapshot: &PolicySnapshot,
    request: &ExplainRequest,
) -> Result<Explanation, ExplainError> {
    let from = domain_of(&request.from);
    let to = domain_of(&request.to)
        .ok_or_else(|| ExplainError::NoRecipientDomain(request.to.clone()))?;
    let (direction, direction_choice) = match request.direction {
        Some(d) => (d, DirectionChoice::Given),
        None if from.is_some_and(|d| snapshot.domain(d).is_some()) => {
            (Direction::Outbound, DirectionChoice::SenderManaged)
        }
        None => (Direction::Inbound, DirectionChoice::SenderNotManaged),
    };
    let (managed, peer_domain, query) = match direction {
        Direction::Outbound => {
            if request.ip.is_some() {
                return Err(ExplainError::IpOutbound);
            }
            let from = from.ok_or_else(|| ExplainError::NoSenderDomain(request.from.clone()))?;
            (
                from,
                Some(to),
                PeerQuery::Outbound {
                    recipient_domain: to,
                },
            )
        }
        Direction::Inbound => (
            to,
            from,
            PeerQuery::Inbound {
                ip: request.ip,
                sender_domain: from,
            },
        ),
    };
    Ok(Explanation {
        direction,
        direction_choice,
        managed_domain: managed.to_owned(),
        peer_domain: peer_domain.map(str::to_owned),
        peer_ip: request.ip,
        resolution: snapshot.resolve(managed, query),
    })
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.direction_choice {
            DirectionChoice::Given => "as given",
            DirectionChoice::SenderManaged => "the sender's domain is managed",
            DirectionChoice::SenderNotManaged => "the sender's domain is not managed",
        };
        writeln!(f, "direction:      {} ({why})", self.direction)?;
        writeln!(f, "managed domain: {}", self.managed_domain)?;
        let peer = match (&self.peer_ip, &self.peer_domain) {
            (Some(ip), Some(d)) => format!("{ip}, sender domain {d}"),
            (Some(ip), None) => ip.to_string(),
            (None, Some(d)) => d.clone(),
            (None, None) => "(none)".to_owned(),
        };
        writeln!(f, "peer:           {peer}")?;
        writeln!(f, "level:          {}", self.resolution.level)?;
        writeln!(f, "minimum TLS:    {}", self.resolution.min_tls)?;
        write!(f, "because:        {}", self.resolution)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::policy::{Reason, SecurityLevel};

    const CONFIG: &str = r#"
[[domains]]
name = "example.com"
tenant = "acme"
outbound.peers = [{ peer = "gmail.com", level = "mta-sts" }]
inbound.peers = [{ peer = "192.0.2.0/24", level = "mandatory", min_tls = "1.3" }]
"#;

    fn request(
        from: &str,
        to: &str,
        ip: Option<&str>,
        direction: Option<Direction>,
    ) -> ExplainRequest {
        ExplainRequest {
            from: from.to_owned(),
            to: to.to_owned(),
            ip: ip.map(|i| i.parse().expect("test ip")),
            direction,
        }
    }

    #[test]
    fn addresses_yield_their_domain() {
        let cases = [
            ("a@example.com", Some("example.com")),
            ("<a@b@example.com>", Some("example.com")),
            ("example.com", Some("example.com")),
            ("<>", None),
            ("", None),
        ];
        for (given, want) in cases {
            assert_eq!(domain_of(given), want, "{given}");
        }
    }

    #[test]
    fn direction_managed_domain_and_peer_follow_the_rules() {
        let config = Config::parse(CONFIG, "t.toml", None).expect("valid");
        let snap = &config.policy;
        let e = explain(snap, &request("a@Example.com", "b@gmail.com", None, None)).expect("ok");
        assert_eq!(
            (e.direction, e.direction_choice),
            (Direction::Outbound, DirectionChoice::SenderManaged)
        );
        assert_eq!(e.resolution.level, SecurityLevel::MtaSts);
        let e = explain(
            snap,
            &request("x@gmail.com", "b@example.com", Some("192.0.2.9"), None),
        )
        .expect("ok");
        assert_eq!(
            (e.direction, e.direction_choice),
            (Direction::Inbound, DirectionChoice::SenderNotManaged)
        );
        assert_eq!(e.managed_domain, "example.com");
        assert!(matches!(e.resolution.reason, Reason::PeerCidr { .. }));
        let e = explain(
            snap,
            &request("<>", "b@example.com", None, Some(Direction::Inbound)),
        )
        .expect("ok");
        assert_eq!(e.direction_choice, DirectionChoice::Given);
        assert!(matches!(e.resolution.reason, Reason::DomainDefault { .. }));
        let errors = [
            (
                request("<>", "b@gmail.com", None, Some(Direction::Outbound)),
                ExplainError::NoSenderDomain("<>".into()),
            ),
            (
                request("a@example.com", "<>", None, None),
                ExplainError::NoRecipientDomain("<>".into()),
            ),
            (
                request("a@example.com", "b@gmail.com", Some("192.0.2.1"), None),
                ExplainError::IpOutbound,
            ),
        ];
        for (req, want) in errors {
            assert_eq!(explain(snap, &req), Err(want));
        }
    }
}
