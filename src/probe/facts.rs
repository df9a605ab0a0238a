//! What the probe gathered about a recipient domain: plain data, built by
//! [`super::gather`] from DNS, HTTPS and SMTP, read by the pure
//! [`super::verdict`] functions (and by their tests, which build it by hand).

use std::net::SocketAddr;

use rustls::ProtocolVersion;

use super::capture::CertCheck;
use crate::dane::{DanePlan, DestinationPlan};
pub(crate) use crate::delivery::decision::version_name;
use crate::dns::{AddressLookup, MxHost, MxLookup, TlsaLookup};
use crate::mta_sts::{DiscoveryFailure, IgnoredField, Policy, StsTxtRecord, TxtProblem};

/// Everything known about one recipient domain.
#[derive(Debug, Clone)]
pub struct ProbeFacts {
    /// Lower case, without a trailing dot.
    pub domain: String,
    pub mx: MxLookup,
    /// The RFC 7672 plan under `opportunistic-dane`.
    pub dane_opportunistic: DestinationPlan,
    /// The RFC 7672 plan under `mandatory-dane`.
    pub dane_mandatory: DestinationPlan,
    pub mta_sts: StsFacts,
    /// In MX preference order.
    pub hosts: Vec<HostFacts>,
    /// The port connected to (`[delivery] smtp_port`).
    pub smtp_port: u16,
}

/// The MTA-STS discovery (RFC 8461 section 3), fetched fresh: the
/// daemon's cache is neither read nor written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsFacts {
    /// The `_mta-sts` TXT record, or why there is none.
    pub txt: Result<StsTxtRecord, TxtProblem>,
    /// The fetched policy; `None` when no TXT record made a fetch happen.
    pub policy: Option<Result<Policy, DiscoveryFailure>>,
    /// Repeated non-repeated fields of the policy file that were ignored
    /// (RFC 8461 section 3.2: the first counts).
    pub ignored_fields: Vec<IgnoredField>,
}

impl StsFacts {
    /// The policy in force, if one was fetched and parsed.
    pub fn policy(&self) -> Option<&Policy> {
        match &self.policy {
            Some(Ok(policy)) => Some(policy),
            _ => None,
        }
    }
}

/// One MX host.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub host: MxHost,
    pub addresses: AddressLookup,
    /// The TLSA lookup for display (made even where DANE would not use it).
    pub tlsa: TlsaLookup,
    /// One per address, in the order the addresses were returned.
    pub sessions: Vec<SessionFacts>,
}

impl HostFacts {
    /// This host's plan in `plan` (`None` when the destination was decided
    /// before any host, e.g. `mandatory-dane` with insecure MX records).
    pub fn dane_plan<'a>(&self, plan: &'a DestinationPlan) -> Option<&'a DanePlan> {
        plan.mx
            .iter()
            .find(|mx| mx.host == self.host)
            .map(|mx| &mx.plan)
    }
}

/// One SMTP session with one address of an MX host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFacts {
    pub addr: SocketAddr,
    /// The SNI sent: the TLSA base domain under DANE, else the MX name.
    pub sni: String,
    pub outcome: SessionOutcome,
}

/// How far the session got. Every variant ends with QUIT where the
/// connection still allowed it; no MAIL command is ever sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOutcome {
    /// No SMTP session: connection refused, timeout, a refused greeting or
    /// EHLO/HELO.
    Failed { detail: String },
    /// EHLO did not list STARTTLS (or only HELO worked).
    StartTlsNotOffered,
    /// STARTTLS was answered with an error.
    StartTlsRefused { reply: String },
    /// The TLS handshake failed (no common version or cipher, bad
    /// signature...). `certificate` is set when the server got as far as
    /// presenting one.
    HandshakeFailed {
        detail: String,
        certificate: Option<CertCheck>,
    },
    /// TLS is up and EHLO was answered over it.
    Tls {
        version: ProtocolVersion,
        cipher: Option<String>,
        certificate: Option<CertCheck>,
    },
}

impl SessionOutcome {
    pub fn certificate(&self) -> Option<&CertCheck> {
        match self {
            SessionOutcome::HandshakeFailed { certificate, .. }
            | SessionOutcome::Tls { certificate, .. } => certificate.as_ref(),
            _ => None,
        }
    }
}
