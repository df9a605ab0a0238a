//! The probe's answer as one document: what was found (DNS, MTA-STS, per
//! MX address the session, TLS and certificate) and what every security
//! level would do, per address and for the destination. Serialized for
//! `--json`; [`fmt::Display`] is the report for people.

use std::fmt;
use std::net::SocketAddr;

use serde::Serialize;

use super::facts::{version_name, HostFacts, ProbeFacts, SessionFacts, SessionOutcome};
use super::verdict::{address_verdict, level_outcome, Action, LevelOutcome};
use crate::dns::{Lookup, MxLookup};
use crate::mta_sts::{plan_mx, Policy};
use crate::policy::{MinTlsVersion, Resolution, SecurityLevel};
use crate::smtp::client::TlsAuthentication;
use crate::tls::certinfo::CertInfo;

/// The policy sealpost applies to (managed domain, recipient domain).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Configured {
    pub managed_domain: String,
    pub resolution: Resolution,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ProbeReport {
    pub domain: String,
    /// DNSSEC status of the MX answer.
    pub mx_dnssec: Option<String>,
    /// No MX records: the domain itself is the mail host (RFC 5321 5.1).
    pub implicit_mx: bool,
    /// The port connected to.
    pub smtp_port: u16,
    /// The minimum TLS version the verdicts apply.
    pub min_tls: MinTlsVersion,
    /// Set with `--from`.
    pub configured: Option<Configured>,
    pub mta_sts: StsReport,
    pub mx: Vec<MxReport>,
    /// One per security level, in the order of [`SecurityLevel::ALL`].
    pub levels: Vec<LevelReport>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct StsReport {
    /// The `id` of the `_mta-sts` TXT record.
    pub txt_id: Option<String>,
    pub policy: Option<Policy>,
    /// Why no policy applies (no record, invalid record, fetch failed...).
    pub problem: Option<String>,
    /// Repeated fields of the policy file that were ignored (the first counts).
    pub ignored_fields: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct MxReport {
    pub preference: u16,
    pub host: String,
    pub addresses_dnssec: Option<String>,
    /// Set when the host has no address to connect to.
    pub address_problem: Option<String>,
    pub tlsa: TlsaReport,
    /// The RFC 7672 plan under `opportunistic-dane` and `mandatory-dane`.
    pub dane_plan: DanePlans,
    /// Whether the host name matches an `mx` pattern of the MTA-STS
    /// policy (`None` without a policy).
    pub mta_sts_mx_match: Option<bool>,
    /// The RFC 8461 plan before connecting.
    pub mta_sts_plan: String,
    pub addresses: Vec<AddressReport>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct DanePlans {
    pub opportunistic_dane: String,
    pub mandatory_dane: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TlsaReport {
    /// The name queried, e.g. `_25._tcp.mx.example.com`.
    pub name: String,
    pub dnssec: Option<String>,
    /// Presentation format, `3 1 1 <hex>`.
    pub records: Vec<String>,
    /// `records`, `no records` or why the lookup failed.
    pub status: String,
    /// The records that cannot be used for SMTP, each with the reason
    /// (RFC 7672 section 3.1), e.g. full data that is not a certificate.
    pub unusable: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct AddressReport {
    pub address: SocketAddr,
    /// The SNI sent.
    pub sni: String,
    /// `offered`, `not-offered`, `refused` or `unknown` (no session).
    pub starttls: &'static str,
    pub tls_version: Option<String>,
    pub cipher: Option<String>,
    /// Why the session or the handshake failed.
    pub error: Option<String>,
    pub certificate: Option<CertReport>,
    pub verdicts: Vec<VerdictReport>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CertReport {
    /// Leaf first.
    pub chain: Vec<CertInfo>,
    /// The leaf is outside its validity period now.
    pub expired: bool,
    /// Whole days until the leaf's `not_after` (negative once past).
    pub expires_in_days: Option<i64>,
    /// Whether the chain is valid under WebPKI (Mozilla roots plus
    /// `[mta_sts] ca_file`) for the MX host name.
    pub webpki_valid: Option<bool>,
    pub webpki: Option<String>,
    /// Whether the usable TLSA records match (absent without any).
    pub dane_matched: Option<bool>,
    pub dane: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct VerdictReport {
    pub level: SecurityLevel,
    pub action: Action,
    /// `none`, `dane` or `webpki`.
    pub authentication: &'static str,
    pub reason_code: &'static str,
    pub reason: String,
    /// The level the policy applies to the `--from` pair.
    pub configured: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct LevelReport {
    pub level: SecurityLevel,
    /// `deliver` or `defer`.
    pub outcome: &'static str,
    pub mx: Option<String>,
    pub address: Option<SocketAddr>,
    pub action: Option<Action>,
    pub authentication: &'static str,
    pub reason: String,
    pub configured: bool,
}

fn authentication_word(a: TlsAuthentication) -> &'static str {
    match a {
        TlsAuthentication::None => "none",
        TlsAuthentication::Dane => "dane",
        TlsAuthentication::WebPki => "webpki",
    }
}

impl ProbeReport {
    /// The report for `facts`; `configured` marks the level the policy
    /// applies, whose minimum TLS version the verdicts then use; `now` is
    /// Unix seconds (certificate expiry).
    pub fn new(facts: &ProbeFacts, configured: Option<Configured>, now: i64) -> ProbeReport {
        let chosen = configured.as_ref().map(|c| c.resolution.level);
        let min_tls = configured
            .as_ref()
            .map(|c| c.resolution.min_tls)
            .unwrap_or(MinTlsVersion::Any);
        let mx = facts
            .hosts
            .iter()
            .map(|host| mx_report(facts, host, min_tls, chosen, now))
            .collect();
        let levels = SecurityLevel::ALL
            .into_iter()
            .map(|level| {
                let outcome = level_outcome(level, min_tls, facts);
                let reason = outcome.to_string();
                let configured = chosen == Some(level);
                match outcome {
                    LevelOutcome::Deliver {
                        mx,
                        addr,
                        action,
                        authentication,
                    } => LevelReport {
                        level,
                        outcome: "deliver",
                        mx: Some(mx),
                        address: Some(addr),
                        action: Some(action),
                        authentication: authentication_word(authentication),
                        reason,
                        configured,
                    },
                    LevelOutcome::Defer(_) | LevelOutcome::DeferDestination(_) => LevelReport {
                        level,
                        outcome: "defer",
                        mx: None,
                        address: None,
                        action: None,
                        authentication: "none",
                        reason,
                        configured,
                    },
                }
            })
            .collect();
        let sts = &facts.mta_sts;
        let problem = match (&sts.txt, &sts.policy) {
            (Err(txt), _) => Some(format!("{txt}: no MTA-STS policy")),
            (Ok(_), Some(Err(failure))) => Some(format!("{failure}: no MTA-STS policy")),
            _ => None,
        };
        ProbeReport {
            domain: facts.domain.clone(),
            mx_dnssec: facts.mx.dnssec().map(|d| d.to_string()),
            implicit_mx: matches!(facts.mx, MxLookup::Implicit { .. }),
            smtp_port: facts.smtp_port,
            min_tls,
            configured,
            mta_sts: StsReport {
                txt_id: sts.txt.as_ref().ok().map(|r| r.id.clone()),
                policy: sts.policy().cloned(),
                problem,
                ignored_fields: sts.ignored_fields.iter().map(|i| i.to_string()).collect(),
            },
            mx,
            levels,
        }
    }
}

fn mx_report(
    facts: &ProbeFacts,
    host: &HostFacts,
    min_tls: MinTlsVersion,
    chosen: Option<SecurityLevel>,
    now: i64,
) -> MxReport {
    let plan_text = |plan: &crate::dane::DestinationPlan| match host.dane_plan(plan) {
        Some(p) => p.to_string(),
        None => plan.outcome.to_string(),
    };
    let tlsa = &host.tlsa;
    let status = match &tlsa.lookup {
        Lookup::Records { records, .. } => format!("{} records", records.len()),
        Lookup::NoData { .. } | Lookup::NxDomain { .. } => "no records".to_string(),
        Lookup::Failed(failure) => format!("lookup failed: {failure}"),
    };
    let address_problem = match &host.addresses.lookup {
        Lookup::Records { .. } => None,
        Lookup::NoData { .. } => Some("no A or AAAA records".to_string()),
        Lookup::NxDomain { .. } => Some("the host name does not exist".to_string()),
        Lookup::Failed(failure) => Some(format!("address lookup failed: {failure}")),
    };
    MxReport {
        preference: host.host.preference,
        host: host.host.exchange.clone(),
        addresses_dnssec: host.addresses.lookup.dnssec().map(|d| d.to_string()),
        address_problem,
        tlsa: TlsaReport {
            name: tlsa.tlsa_name.clone(),
            dnssec: tlsa.lookup.dnssec().map(|d| d.to_string()),
            records: tlsa
                .lookup
                .records()
                .iter()
                .map(|r| r.to_string())
                .collect(),
            status,
            unusable: tlsa
                .lookup
                .records()
                .iter()
                .filter_map(|r| {
                    crate::dane::usability(r)
                        .err()
                        .map(|why| format!("{}: unusable: {why}", short_record(r)))
                })
                .collect(),
        },
        dane_plan: DanePlans {
            opportunistic_dane: plan_text(&facts.dane_opportunistic),
            mandatory_dane: plan_text(&facts.dane_mandatory),
        },
        mta_sts_mx_match: facts
            .mta_sts
            .policy()
            .map(|p| p.mx_matches(&host.host.exchange)),
        mta_sts_plan: plan_mx(facts.mta_sts.policy(), &host.host.exchange).to_string(),
        addresses: host
            .sessions
            .iter()
            .map(|session| address_report(facts, host, session, min_tls, chosen, now))
            .collect(),
    }
}

fn address_report(
    facts: &ProbeFacts,
    host: &HostFacts,
    session: &SessionFacts,
    min_tls: MinTlsVersion,
    chosen: Option<SecurityLevel>,
    now: i64,
) -> AddressReport {
    let (starttls, tls_version, cipher, error) = match &session.outcome {
        SessionOutcome::Failed { detail } => ("unknown", None, None, Some(detail.clone())),
        SessionOutcome::StartTlsNotOffered => ("not-offered", None, None, None),
        SessionOutcome::StartTlsRefused { reply } => (
            "refused",
            None,
            None,
            Some(format!("STARTTLS refused: {reply}")),
        ),
        SessionOutcome::HandshakeFailed { detail, .. } => (
            "offered",
            None,
            None,
            Some(format!("TLS handshake failed: {detail}")),
        ),
        SessionOutcome::Tls {
            version, cipher, ..
        } => (
            "offered",
            Some(version_name(*version)),
            cipher.clone(),
            None,
        ),
    };
    let certificate = session.outcome.certificate().map(|check| CertReport {
        expired: check.chain.first().is_some_and(|leaf| leaf.expired_at(now)),
        expires_in_days: check
            .chain
            .first()
            .and_then(|leaf| leaf.not_after)
            .map(|t| (t.0 - now).div_euclid(86_400)),
        chain: check.chain.clone(),
        webpki_valid: check
            .webpki
            .as_ref()
            .map(|o| *o == crate::mta_sts::CertOutcome::Valid),
        webpki: check
            .webpki
            .as_ref()
            .map(|o| format!("{o} (for {})", host.host.exchange)),
        dane_matched: check.dane.as_ref().map(Result::is_ok),
        dane: check.dane.as_ref().map(|d| match d {
            Ok(matched) => matched.to_string(),
            Err(failure) => failure.to_string(),
        }),
    });
    let verdicts = SecurityLevel::ALL
        .into_iter()
        .map(|level| {
            let verdict = address_verdict(level, min_tls, facts, host, session);
            VerdictReport {
                level,
                action: verdict.action,
                authentication: authentication_word(verdict.authentication),
                reason_code: verdict.reason.code(),
                reason: verdict.to_string(),
                configured: chosen == Some(level),
            }
        })
        .collect();
    AddressReport {
        address: session.addr,
        sni: session.sni.clone(),
        starttls,
        tls_version,
        cipher,
        error,
        certificate,
        verdicts,
    }
}

/// `=>` marks the configured level.
/// `3 0 0 3082…` with the data cut to 16 hex digits, for the unusable list.
fn short_record(record: &crate::dns::TlsaRecord) -> String {
    let text = record.to_string();
    let cut: String = text.chars().take(7 + 16).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        text
    }
}

fn marker(configured: bool) -> &'static str {
    if configured {
        "=>"
    } else {
        "  "
    }
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dnssec = self.mx_dnssec.as_deref().unwrap_or("unknown");
        writeln!(
            f,
            "sealpost probe {} (MX records: DNSSEC {dnssec}{}; SMTP port {})",
            self.domain,
            if self.implicit_mx {
                ", no MX: the domain is its own mail host"
            } else {
                ""
            },
            self.smtp_port
        )?;
        match (&self.mta_sts.policy, &self.mta_sts.problem) {
            (Some(policy), _) => {
                let patterns: Vec<String> = policy.mx.iter().map(|p| p.to_string()).collect();
                writeln!(
                    f,
                    "MTA-STS: policy id {}: mode {}, mx {}, max_age {}",
                    self.mta_sts.txt_id.as_deref().unwrap_or("?"),
                    policy.mode,
                    if patterns.is_empty() {
                        "(none)".to_string()
                    } else {
                        patterns.join(" ")
                    },
                    policy.max_age
                )?;
                for ignored in &self.mta_sts.ignored_fields {
                    writeln!(f, "         {ignored}")?;
                }
            }
            (None, Some(problem)) => writeln!(f, "MTA-STS: {problem}")?,
            (None, None) => writeln!(f, "MTA-STS: no policy")?,
        }
        if let Some(configured) = &self.configured {
            let r = &configured.resolution;
            writeln!(
                f,
                "policy:  {} -> {}: {}, minimum TLS {} ({r})",
                configured.managed_domain, self.domain, r.level, r.min_tls
            )?;
        }
        writeln!(f, "minimum TLS version applied: {}", self.min_tls)?;
        for mx in &self.mx {
            writeln!(f)?;
            writeln!(
                f,
                "MX {} {} (addresses: DNSSEC {})",
                mx.preference,
                mx.host,
                mx.addresses_dnssec.as_deref().unwrap_or("unknown")
            )?;
            if let Some(problem) = &mx.address_problem {
                writeln!(f, "  addresses:  {problem}")?;
            }
            write!(
                f,
                "  TLSA:       {} (DNSSEC {}): ",
                mx.tlsa.name,
                mx.tlsa.dnssec.as_deref().unwrap_or("unknown")
            )?;
            if mx.tlsa.records.is_empty() {
                writeln!(f, "{}", mx.tlsa.status)?;
            } else {
                writeln!(f, "{}", mx.tlsa.records.join(", "))?;
                for unusable in &mx.tlsa.unusable {
                    writeln!(f, "              {unusable}")?;
                }
            }
            writeln!(f, "  DANE:       {}", mx.dane_plan.opportunistic_dane)?;
            if mx.dane_plan.mandatory_dane != mx.dane_plan.opportunistic_dane {
                writeln!(
                    f,
                    "              mandatory-dane: {}",
                    mx.dane_plan.mandatory_dane
                )?;
            }
            match mx.mta_sts_mx_match {
                Some(true) => writeln!(
                    f,
                    "  MTA-STS:    {} matches the policy's mx patterns; {}",
                    mx.host, mx.mta_sts_plan
                )?,
                _ => writeln!(f, "  MTA-STS:    {}", mx.mta_sts_plan)?,
            }
            for a in &mx.addresses {
                writeln!(f, "  address {} (SNI {})", a.address, a.sni)?;
                let tls = match (&a.tls_version, &a.cipher) {
                    (Some(v), Some(c)) => format!(", {v}, {c}"),
                    (Some(v), None) => format!(", {v}"),
                    _ => String::new(),
                };
                writeln!(f, "    STARTTLS:     {}{tls}", a.starttls.replace('-', " "))?;
                if let Some(error) = &a.error {
                    writeln!(f, "    error:        {error}")?;
                }
                if let Some(cert) = &a.certificate {
                    if let Some(leaf) = cert.chain.first() {
                        writeln!(f, "    certificate:  {}", leaf.subject)?;
                        writeln!(f, "      issuer:     {}", leaf.issuer)?;
                        let time = |t: Option<crate::probe::CertTime>| {
                            t.map(|t| t.to_string()).unwrap_or_else(|| "?".into())
                        };
                        writeln!(
                            f,
                            "      valid:      {} to {}{}",
                            time(leaf.not_before),
                            time(leaf.not_after),
                            match (cert.expired, cert.expires_in_days) {
                                (true, _) => " (NOT VALID NOW)".to_string(),
                                (false, Some(days)) => format!(" (expires in {days} days)"),
                                (false, None) => String::new(),
                            }
                        )?;
                        if !leaf.names.is_empty() {
                            writeln!(f, "      names:      {}", leaf.names.join(", "))?;
                        }
                    }
                    if cert.chain.len() > 1 {
                        writeln!(f, "      chain:      {} certificates", cert.chain.len())?;
                    }
                    if let Some(webpki) = &cert.webpki {
                        writeln!(f, "      WebPKI:     {webpki}")?;
                    }
                    if let Some(dane) = &cert.dane {
                        writeln!(f, "      DANE:       {dane}")?;
                    }
                }
                for v in &a.verdicts {
                    writeln!(
                        f,
                        "  {} {:<19} {}",
                        marker(v.configured),
                        v.level.as_str(),
                        v.reason
                    )?;
                }
            }
        }
        writeln!(f)?;
        writeln!(f, "what each level would do with mail for {}:", self.domain)?;
        for level in &self.levels {
            write!(
                f,
                "{} {:<19} {}",
                marker(level.configured),
                level.level.as_str(),
                level.reason
            )?;
            if level.configured {
                f.write_str("  (configured)")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
