//! The RFC 7672 decision table as pure functions: from DNS evidence to
//! what the SMTP client must do per MX host.
//!
//! | evidence | `opportunistic-dane` | `mandatory-dane` |
//! |---|---|---|
//! | MX lookup failed or bogus (2.2.1) | defer | defer |
//! | null MX (RFC 7505) / no such mail domain | permanent failure | permanent failure |
//! | MX RRset insecure (2.2.1) | every MX opportunistic | defer |
//! | host address lookup failed or bogus (2.2.2) | skip that MX | skip |
//! | host address insecure (2.2.2) | opportunistic | skip |
//! | TLSA lookup failed or bogus (2.2) | skip that MX | skip |
//! | TLSA insecure | opportunistic | skip |
//! | TLSA secure and empty (NODATA/NXDOMAIN) | opportunistic | skip |
//! | TLSA secure, every record unusable (3.1.3) | TLS without authentication | skip |
//! | usable TLSA | authenticate | authenticate |
//!
//! What happens after connecting (no STARTTLS, or no TLSA match, under
//! secure TLSA records: that host is never used) is decided, for the
//! engine and the probe alike, by `delivery::decision::connection_verdict`;
//! no MX left means defer.

use std::fmt;
use std::net::IpAddr;

use super::tlsa::{TlsaSet, Unusable, UsableTlsa};
use super::verify::{DaneFailure, DaneVerifier};
use crate::dns::{
    AddressLookup, DnssecStatus, Lookup, LookupFailure, MxHost, MxLookup, TlsaLookup, TlsaRecord,
};
use crate::policy::SecurityLevel;

/// The two DANE security levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DaneLevel {
    /// `opportunistic-dane`: authenticate where usable TLSA exist.
    Opportunistic,
    /// `mandatory-dane`: deliver only after DANE authentication.
    Mandatory,
}

impl DaneLevel {
    pub(crate) fn security_level(self) -> SecurityLevel {
        match self {
            DaneLevel::Opportunistic => SecurityLevel::OpportunisticDane,
            DaneLevel::Mandatory => SecurityLevel::MandatoryDane,
        }
    }
}

impl fmt::Display for DaneLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.security_level().fmt(f)
    }
}

/// Why a host gets plain opportunistic TLS (no DANE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoDaneReason {
    /// The MX RRset (or its denial, for an implicit MX) is not secure.
    MxInsecure,
    /// The host's address records are not secure.
    AddressInsecure,
    /// The TLSA RRset is in an unsigned zone.
    TlsaInsecure { tlsa_name: String },
    /// Validated proof that there are no TLSA records.
    NoTlsaRecords { tlsa_name: String },
}

impl fmt::Display for NoDaneReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoDaneReason::MxInsecure => f.write_str("MX records are not DNSSEC-signed"),
            NoDaneReason::AddressInsecure => {
                f.write_str("host address records are not DNSSEC-signed")
            }
            NoDaneReason::TlsaInsecure { tlsa_name } => {
                write!(f, "TLSA records at {tlsa_name} are not DNSSEC-signed")
            }
            NoDaneReason::NoTlsaRecords { tlsa_name } => {
                write!(f, "no TLSA records at {tlsa_name} (validated denial)")
            }
        }
    }
}

/// Why an MX host is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    AddressLookupFailed(LookupFailure),
    NoAddress,
    TlsaLookupFailed {
        tlsa_name: String,
        failure: LookupFailure,
    },
    /// `mandatory-dane` and this host cannot be DANE-authenticated.
    DaneRequired(NoDaneReason),
    /// `mandatory-dane` and every TLSA record is unusable.
    AllTlsaUnusable {
        unusable: Vec<(TlsaRecord, Unusable)>,
    },
    /// Secure TLSA records exist but the host did not offer STARTTLS.
    StartTlsNotOffered,
    /// The certificate chain did not match the usable TLSA records.
    DaneAuthenticationFailed(DaneFailure),
    /// The TLS handshake failed for another reason.
    TlsFailed {
        detail: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::AddressLookupFailed(failure) => {
                write!(f, "address lookup failed: {failure}")
            }
            SkipReason::NoAddress => f.write_str("host has no address records"),
            SkipReason::TlsaLookupFailed { tlsa_name, failure } => {
                write!(f, "TLSA lookup at {tlsa_name} failed: {failure}")
            }
            SkipReason::DaneRequired(why) => write!(f, "DANE required but {why}"),
            SkipReason::AllTlsaUnusable { unusable } => write!(
                f,
                "DANE required but all {} TLSA records are unusable",
                unusable.len()
            ),
            SkipReason::StartTlsNotOffered => {
                f.write_str("STARTTLS not offered although secure TLSA records exist")
            }
            SkipReason::DaneAuthenticationFailed(failure) => {
                write!(f, "DANE authentication failed: {failure}")
            }
            SkipReason::TlsFailed { detail } => write!(f, "TLS handshake failed: {detail}"),
        }
    }
}

impl SkipReason {
    /// The RFC 8460 result type, where this is a TLS-report failure.
    pub fn tlsrpt_result_type(&self) -> Option<&'static str> {
        match self {
            SkipReason::AddressLookupFailed(LookupFailure::Bogus)
            | SkipReason::TlsaLookupFailed {
                failure: LookupFailure::Bogus,
                ..
            } => Some("dnssec-invalid"),
            SkipReason::StartTlsNotOffered => Some("starttls-not-supported"),
            SkipReason::DaneAuthenticationFailed(failure) => Some(failure.tlsrpt_result_type()),
            SkipReason::AllTlsaUnusable { .. } => Some("tlsa-invalid"),
            SkipReason::DaneRequired(_) => Some("dane-required"),
            SkipReason::TlsFailed { .. } => Some("validation-failure"),
            _ => None,
        }
    }
}

/// What the SMTP client must do with one MX host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DanePlan {
    /// TLS required, certificate authenticated with these TLSA records
    /// (RFC 7672 section 3); build a [`super::DaneVerifier`] from them.
    Authenticate {
        tlsa: Vec<UsableTlsa>,
        /// Names a DANE-TA leaf may be valid for (section 3.2.2); the
        /// first is the TLSA base domain, also the SNI to send (8.1).
        reference_names: Vec<String>,
        tlsa_name: String,
    },
    /// TLS required but not authenticated: secure TLSA records exist and
    /// none is usable (section 3.1.3), like the `mandatory` level.
    EncryptUnauthenticated {
        unusable: Vec<(TlsaRecord, Unusable)>,
    },
    /// Pre-DANE opportunistic TLS: STARTTLS if offered, cleartext allowed.
    Opportunistic(NoDaneReason),
    /// Do not use this host.
    Skip(SkipReason),
}

impl DanePlan {
    /// The verifier for an `Authenticate` plan (`None` otherwise): the
    /// SMTP client builds one per connection attempt.
    pub fn verifier(&self, provider: &rustls::crypto::CryptoProvider) -> Option<DaneVerifier> {
        match self {
            DanePlan::Authenticate {
                tlsa,
                reference_names,
                ..
            } => Some(DaneVerifier::new(
                tlsa.clone(),
                reference_names.clone(),
                provider,
            )),
            _ => None,
        }
    }

    /// The SNI to send under `Authenticate`: the TLSA base domain
    /// (RFC 7672 section 8.1).
    pub fn sni(&self) -> Option<&str> {
        match self {
            DanePlan::Authenticate {
                reference_names, ..
            } => reference_names.first().map(String::as_str),
            _ => None,
        }
    }
}

impl fmt::Display for DanePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DanePlan::Authenticate {
                tlsa, tlsa_name, ..
            } => write!(
                f,
                "DANE authentication with {} usable TLSA records at {tlsa_name}",
                tlsa.len()
            ),
            DanePlan::EncryptUnauthenticated { unusable } => write!(
                f,
                "TLS without authentication: all {} TLSA records unusable",
                unusable.len()
            ),
            DanePlan::Opportunistic(why) => write!(f, "opportunistic TLS: {why}"),
            DanePlan::Skip(why) => write!(f, "host skipped: {why}"),
        }
    }
}

/// One MX host with its addresses and plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaneMxPlan {
    pub host: MxHost,
    pub addresses: Vec<IpAddr>,
    pub plan: DanePlan,
}

/// The DNS evidence about one MX host, gathered by the I/O layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostEvidence {
    pub host: MxHost,
    pub addresses: AddressLookup,
    /// TLSA lookup result; `None` when it was not (or need not be) done.
    pub tlsa: Option<TlsaLookup>,
}

/// Why the whole destination must wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeferReason {
    MxLookupFailed(LookupFailure),
    /// `mandatory-dane` and the MX RRset is not secure.
    MxInsecure,
    /// No MX host may be used; each host's reason, in MX order.
    NoUsableMx(Vec<(String, SkipReason)>),
}

impl fmt::Display for DeferReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeferReason::MxLookupFailed(failure) => write!(f, "MX lookup failed: {failure}"),
            DeferReason::MxInsecure => {
                f.write_str("DANE required but the MX records are not DNSSEC-signed")
            }
            DeferReason::NoUsableMx(hosts) => {
                f.write_str("no usable MX host")?;
                for (i, (host, why)) in hosts.iter().enumerate() {
                    f.write_str(if i == 0 { ": " } else { "; " })?;
                    write!(f, "{host}: {why}")?;
                }
                Ok(())
            }
        }
    }
}

/// Why delivery to the destination can never succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// RFC 7505 null MX: the domain accepts no mail.
    NullMx,
    /// The domain does not exist, or has neither MX nor address records.
    NoMailDomain { nxdomain: bool },
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::NullMx => f.write_str("domain publishes a null MX (RFC 7505)"),
            FailReason::NoMailDomain { nxdomain: true } => f.write_str("domain does not exist"),
            FailReason::NoMailDomain { nxdomain: false } => {
                f.write_str("domain has no MX and no address records")
            }
        }
    }
}

/// The verdict for the whole destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationOutcome {
    /// Try the MX hosts whose plan is not `Skip`, in order.
    Deliver,
    Defer(DeferReason),
    Fail(FailReason),
}

impl fmt::Display for DestinationOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DestinationOutcome::Deliver => f.write_str("deliver"),
            DestinationOutcome::Defer(why) => write!(f, "defer: {why}"),
            DestinationOutcome::Fail(why) => write!(f, "permanent failure: {why}"),
        }
    }
}

/// The plan for one destination (next-hop domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationPlan {
    pub domain: String,
    pub level: DaneLevel,
    pub mx: Vec<DaneMxPlan>,
    pub outcome: DestinationOutcome,
}

/// What to do before any host lookup, from the MX answer alone: `Err` is
/// the final outcome, `Ok(secure)` says whether the MX RRset is secure.
pub(crate) fn mx_verdict(level: DaneLevel, mx: &MxLookup) -> Result<bool, DestinationOutcome> {
    match mx {
        MxLookup::Failed(failure) => Err(DestinationOutcome::Defer(DeferReason::MxLookupFailed(
            failure.clone(),
        ))),
        MxLookup::NullMx { .. } => Err(DestinationOutcome::Fail(FailReason::NullMx)),
        MxLookup::NoMailDomain { nxdomain, .. } => {
            Err(DestinationOutcome::Fail(FailReason::NoMailDomain {
                nxdomain: *nxdomain,
            }))
        }
        MxLookup::Hosts { dnssec, .. } | MxLookup::Implicit { dnssec, .. } => match dnssec {
            DnssecStatus::Secure => Ok(true),
            DnssecStatus::Bogus => Err(DestinationOutcome::Defer(DeferReason::MxLookupFailed(
                LookupFailure::Bogus,
            ))),
            DnssecStatus::Insecure => match level {
                DaneLevel::Opportunistic => Ok(false),
                DaneLevel::Mandatory => Err(DestinationOutcome::Defer(DeferReason::MxInsecure)),
            },
        },
    }
}

/// Whether a TLSA lookup is needed for a host: only when the MX RRset and
/// the host's addresses are secure (RFC 7672 section 2.2). When one
/// address family failed and the other resolved securely, the records are
/// sought too: DANE cannot use the host, but whether DANE governs it
/// decides whether MTA-STS may ([`PartialAddresses::UsableUnlessDane`]).
pub(crate) fn needs_tlsa(mx_secure: bool, addresses: &AddressLookup) -> bool {
    mx_secure
        && matches!(
            addresses.resolved,
            Lookup::Records {
                dnssec: DnssecStatus::Secure,
                ..
            }
        )
}

/// The plan for one host given the evidence (RFC 7672 section 2.2).
pub(crate) fn plan_host(
    level: DaneLevel,
    domain: &str,
    mx_secure: bool,
    evidence: &HostEvidence,
) -> DanePlan {
    let no_dane = |why: NoDaneReason| match level {
        DaneLevel::Opportunistic => DanePlan::Opportunistic(why),
        DaneLevel::Mandatory => DanePlan::Skip(SkipReason::DaneRequired(why)),
    };
    match &evidence.addresses.lookup {
        Lookup::Failed(failure) => {
            return DanePlan::Skip(SkipReason::AddressLookupFailed(failure.clone()))
        }
        Lookup::NoData { .. } | Lookup::NxDomain { .. } => {
            return DanePlan::Skip(SkipReason::NoAddress)
        }
        Lookup::Records { dnssec, .. } => match dnssec {
            DnssecStatus::Bogus => {
                return DanePlan::Skip(SkipReason::AddressLookupFailed(LookupFailure::Bogus))
            }
            _ if !mx_secure => return no_dane(NoDaneReason::MxInsecure),
            DnssecStatus::Insecure => return no_dane(NoDaneReason::AddressInsecure),
            DnssecStatus::Secure => {}
        },
    }
    let Some(tlsa) = &evidence.tlsa else {
        // The caller skipped a lookup it should have made: the safe answer
        // is "lookup failed", never "no TLSA".
        return DanePlan::Skip(SkipReason::TlsaLookupFailed {
            tlsa_name: format!("_25._tcp.{}", evidence.addresses.canonical),
            failure: LookupFailure::Other("TLSA lookup not performed".to_string()),
        });
    };
    let tlsa_name = tlsa.tlsa_name.clone();
    match &tlsa.lookup {
        Lookup::Failed(failure) => DanePlan::Skip(SkipReason::TlsaLookupFailed {
            tlsa_name,
            failure: failure.clone(),
        }),
        Lookup::NoData { dnssec } | Lookup::NxDomain { dnssec } => match dnssec {
            DnssecStatus::Secure => no_dane(NoDaneReason::NoTlsaRecords { tlsa_name }),
            DnssecStatus::Insecure => no_dane(NoDaneReason::TlsaInsecure { tlsa_name }),
            DnssecStatus::Bogus => DanePlan::Skip(SkipReason::TlsaLookupFailed {
                tlsa_name,
                failure: LookupFailure::Bogus,
            }),
        },
        Lookup::Records { records, dnssec } => match dnssec {
            DnssecStatus::Insecure => no_dane(NoDaneReason::TlsaInsecure { tlsa_name }),
            DnssecStatus::Bogus => DanePlan::Skip(SkipReason::TlsaLookupFailed {
                tlsa_name,
                failure: LookupFailure::Bogus,
            }),
            DnssecStatus::Secure => {
                let set = TlsaSet::from_records(records);
                if set.usable.is_empty() {
                    return match level {
                        DaneLevel::Opportunistic => DanePlan::EncryptUnauthenticated {
                            unusable: set.unusable,
                        },
                        DaneLevel::Mandatory => DanePlan::Skip(SkipReason::AllTlsaUnusable {
                            unusable: set.unusable,
                        }),
                    };
                }
                DanePlan::Authenticate {
                    tlsa: set.usable,
                    reference_names: reference_names(
                        &tlsa.base_domain,
                        &evidence.host.exchange,
                        domain,
                    ),
                    tlsa_name,
                }
            }
        },
    }
}

/// RFC 7672 section 3.2.2: the TLSA base domain, the MX host name before
/// CNAME expansion, and the next-hop domain, without duplicates.
fn reference_names(base_domain: &str, mx_host: &str, next_hop: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(3);
    for name in [base_domain, mx_host, next_hop] {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// How a host whose address lookup failed for one family (SERVFAIL,
/// timeout; never bogus) while the other gave records is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PartialAddresses {
    /// The host is unusable: the `*-dane` levels (RFC 7672 section 2.2,
    /// an address lookup failure that is not a validated denial).
    Unusable,
    /// The host is planned over the family that resolved unless DANE
    /// governs it there (secure TLSA records), where the strict rule
    /// stands: the `mta-sts` level (RFC 8461 section 2).
    UsableUnlessDane,
}

/// [`plan_host`] under a [`PartialAddresses`] rule: `Ok` with the plan
/// over the addresses that resolved, or `Err` with the strict plan.
fn plan_host_with(
    level: DaneLevel,
    domain: &str,
    mx_secure: bool,
    evidence: &HostEvidence,
    partial: PartialAddresses,
) -> Result<DanePlan, DanePlan> {
    let strict = plan_host(level, domain, mx_secure, evidence);
    let one_family_failed = matches!(
        (&strict, &evidence.addresses.resolved),
        (
            DanePlan::Skip(SkipReason::AddressLookupFailed(failure)),
            Lookup::Records { .. },
        ) if *failure != LookupFailure::Bogus
    );
    if partial == PartialAddresses::Unusable || !one_family_failed {
        return Err(strict);
    }
    let mut resolved = evidence.clone();
    resolved.addresses.lookup = evidence.addresses.resolved.clone();
    match plan_host(level, domain, mx_secure, &resolved) {
        // DANE governs the host: its rule stands (RFC 8461 section 2).
        DanePlan::Authenticate { .. } | DanePlan::EncryptUnauthenticated { .. } => Err(strict),
        // Unusable for another reason (a failed TLSA lookup): say which.
        plan @ DanePlan::Skip(_) => Err(plan),
        plan => Ok(plan),
    }
}

/// The whole-destination plan from the MX answer and per-host evidence
/// (in MX order). Hosts missing from `hosts` count as address failures.
#[cfg(test)]
pub(crate) fn plan_destination(
    level: DaneLevel,
    domain: &str,
    mx: &MxLookup,
    hosts: &[HostEvidence],
) -> DestinationPlan {
    plan_destination_for(level, domain, mx, hosts, PartialAddresses::Unusable)
}

/// [`plan_destination`] with a rule for hosts whose address lookup
/// failed for one family only.
pub(crate) fn plan_destination_for(
    level: DaneLevel,
    domain: &str,
    mx: &MxLookup,
    hosts: &[HostEvidence],
    partial: PartialAddresses,
) -> DestinationPlan {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let mx_secure = match mx_verdict(level, mx) {
        Ok(secure) => secure,
        Err(outcome) => {
            return DestinationPlan {
                domain,
                level,
                mx: Vec::new(),
                outcome,
            }
        }
    };
    let plans: Vec<DaneMxPlan> = mx
        .hosts()
        .into_iter()
        .map(|host| {
            let evidence = hosts.iter().find(|e| e.host == host);
            let (plan, addresses) = match evidence {
                Some(evidence) => {
                    match plan_host_with(level, &domain, mx_secure, evidence, partial) {
                        Ok(plan) => (plan, evidence.addresses.resolved.records().to_vec()),
                        Err(plan) => (plan, evidence.addresses.lookup.records().to_vec()),
                    }
                }
                None => (
                    DanePlan::Skip(SkipReason::AddressLookupFailed(LookupFailure::Other(
                        "address lookup not performed".to_string(),
                    ))),
                    Vec::new(),
                ),
            };
            DaneMxPlan {
                host,
                addresses,
                plan,
            }
        })
        .collect();
    let outcome = no_usable_mx(&plans)
        .map(|reasons| DestinationOutcome::Defer(DeferReason::NoUsableMx(reasons)))
        .unwrap_or(DestinationOutcome::Deliver);
    DestinationPlan {
        domain,
        level,
        mx: plans,
        outcome,
    }
}

/// `Some(reasons)` when every host is skipped.
fn no_usable_mx(plans: &[DaneMxPlan]) -> Option<Vec<(String, SkipReason)>> {
    plans
        .iter()
        .map(|p| match &p.plan {
            DanePlan::Skip(why) => Some((p.host.exchange.clone(), why.clone())),
            _ => None,
        })
        .collect()
}
