//! The `mta-sts` security level as pure functions (RFC 8461 sections 4 and
//! 5, and section 2 on DANE).
//!
//! Under an `enforce` or `testing` policy an MX is valid when its name
//! matches an `mx` pattern, it offers STARTTLS, and its certificate is valid
//! for the MX name under WebPKI (section 4). Then mail goes over that TLS
//! session. Under `enforce` an invalid MX is skipped; when none is left the
//! message is deferred, and the policy is looked up again before a final
//! bounce ([`super::PolicyCache::recheck_before_bounce`]). No policy, mode
//! `none`, or `testing` with a failure: opportunistic TLS, the failure kept
//! for the TLS report (RFC 8460).
//!
//! A failing DANE result is never overridden by MTA-STS (section 2): the
//! engine applies DANE first wherever usable TLSA records exist
//! ([`governing_mechanism`]).

use std::fmt;

use super::policy::{Mode, Policy};

/// Why a certificate failed WebPKI validation for the MX name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertProblem {
    HostMismatch,
    Expired,
    NotTrusted,
    Other(String),
}

impl CertProblem {
    /// The RFC 8460 `result-type`.
    pub fn tlsrpt_result_type(&self) -> &'static str {
        match self {
            CertProblem::HostMismatch => "certificate-host-mismatch",
            CertProblem::Expired => "certificate-expired",
            CertProblem::NotTrusted => "certificate-not-trusted",
            CertProblem::Other(_) => "validation-failure",
        }
    }
}

impl fmt::Display for CertProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertProblem::HostMismatch => f.write_str("certificate not valid for the MX name"),
            CertProblem::Expired => f.write_str("certificate expired or not yet valid"),
            CertProblem::NotTrusted => f.write_str("certificate not issued by a trusted CA"),
            CertProblem::Other(why) => write!(f, "certificate invalid: {why}"),
        }
    }
}

/// Why an MX does not satisfy the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxFailure {
    /// The MX name matches no `mx` pattern of the policy.
    NotInPolicy {
        mx: String,
    },
    StartTlsNotOffered {
        mx: String,
    },
    Certificate {
        mx: String,
        problem: CertProblem,
    },
    /// The TLS handshake failed for another reason (no common version...).
    Handshake {
        mx: String,
        reason: String,
    },
}

impl MxFailure {
    /// The RFC 8460 `result-type`.
    pub fn tlsrpt_result_type(&self) -> &'static str {
        match self {
            MxFailure::NotInPolicy { .. } => "validation-failure",
            MxFailure::StartTlsNotOffered { .. } => "starttls-not-supported",
            MxFailure::Certificate { problem, .. } => problem.tlsrpt_result_type(),
            MxFailure::Handshake { .. } => "validation-failure",
        }
    }
    pub fn mx(&self) -> &str {
        match self {
            MxFailure::NotInPolicy { mx }
            | MxFailure::StartTlsNotOffered { mx }
            | MxFailure::Certificate { mx, .. }
            | MxFailure::Handshake { mx, .. } => mx,
        }
    }
}

impl fmt::Display for MxFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MxFailure::NotInPolicy { mx } => {
                write!(f, "MX {mx} matches no mx pattern of the MTA-STS policy")
            }
            MxFailure::StartTlsNotOffered { mx } => write!(f, "MX {mx} does not offer STARTTLS"),
            MxFailure::Certificate { mx, problem } => write!(f, "MX {mx}: {problem}"),
            MxFailure::Handshake { mx, reason } => {
                write!(f, "MX {mx}: TLS handshake failed: {reason}")
            }
        }
    }
}

/// What the engine does before connecting to an MX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxPlan {
    /// Enforce, and the name matches no pattern: do not connect.
    Skip(MxFailure),
    /// Enforce: STARTTLS required, certificate validated under WebPKI for
    /// the MX name (see [`super::StsCertVerifier`] in enforce mode).
    RequireWebPki,
    /// Testing: validate and record, but deliver even when it fails
    /// (opportunistically). A name mismatch is already known.
    TestWebPki { known_failure: Option<MxFailure> },
    /// No policy or mode `none`: plain opportunistic TLS.
    Opportunistic,
}

/// The plan for one MX under `policy` (`None`: no policy in effect).
pub fn plan_mx(policy: Option<&Policy>, mx: &str) -> MxPlan {
    let Some(policy) = policy else {
        return MxPlan::Opportunistic;
    };
    let mismatch = (!policy.mx_matches(mx)).then(|| MxFailure::NotInPolicy { mx: mx.to_string() });
    match policy.mode {
        Mode::None => MxPlan::Opportunistic,
        Mode::Enforce => match mismatch {
            Some(failure) => MxPlan::Skip(failure),
            None => MxPlan::RequireWebPki,
        },
        Mode::Testing => MxPlan::TestWebPki {
            known_failure: mismatch,
        },
    }
}

impl fmt::Display for MxPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MxPlan::Skip(failure) => write!(f, "MTA-STS enforce: not connecting: {failure}"),
            MxPlan::RequireWebPki => f.write_str("MTA-STS enforce: STARTTLS and WebPKI required"),
            MxPlan::TestWebPki {
                known_failure: None,
            } => f.write_str("MTA-STS testing: WebPKI checked and reported"),
            MxPlan::TestWebPki {
                known_failure: Some(failure),
            } => write!(f, "MTA-STS testing: {failure} (reported)"),
            MxPlan::Opportunistic => f.write_str("no MTA-STS policy in force: opportunistic TLS"),
        }
    }
}

/// What the session with the MX showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxFacts {
    pub starttls_offered: bool,
    /// The certificate check; `None` when no handshake was made.
    pub certificate: Option<CertOutcome>,
}

/// The result of validating the MX certificate under WebPKI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertOutcome {
    Valid,
    Invalid(CertProblem),
    HandshakeFailed(String),
}

impl fmt::Display for CertOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertOutcome::Valid => f.write_str("certificate valid under WebPKI"),
            CertOutcome::Invalid(problem) => problem.fmt(f),
            CertOutcome::HandshakeFailed(reason) => write!(f, "TLS handshake failed: {reason}"),
        }
    }
}

/// Why delivery to an MX is opportunistic rather than authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpportunisticWhy {
    NoPolicy,
    ModeNone,
    /// `testing` mode and the MX failed: the failure goes to the TLS report.
    TestingFailure(MxFailure),
}

/// The decision for one MX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxVerdict {
    /// Deliver over the TLS session, authenticated by WebPKI for the MX name.
    DeliverWebPki { mode: Mode },
    /// Enforce and the MX failed: never deliver to it.
    Skip(MxFailure),
    /// Deliver with opportunistic TLS (cleartext if TLS is impossible).
    Opportunistic(OpportunisticWhy),
}

impl fmt::Display for MxVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MxVerdict::DeliverWebPki { mode } => {
                write!(f, "MTA-STS {mode}: MX valid, TLS authenticated by WebPKI")
            }
            MxVerdict::Skip(failure) => write!(f, "MTA-STS enforce: MX skipped: {failure}"),
            MxVerdict::Opportunistic(OpportunisticWhy::NoPolicy) => {
                f.write_str("no MTA-STS policy: opportunistic TLS")
            }
            MxVerdict::Opportunistic(OpportunisticWhy::ModeNone) => {
                f.write_str("MTA-STS mode none: opportunistic TLS")
            }
            MxVerdict::Opportunistic(OpportunisticWhy::TestingFailure(failure)) => {
                write!(
                    f,
                    "MTA-STS testing, failure recorded ({failure}): opportunistic TLS"
                )
            }
        }
    }
}

/// The verdict for MX `mx` given the policy and what the session showed
/// (RFC 8461 section 4).
pub fn decide_mx(policy: Option<&Policy>, mx: &str, facts: &MxFacts) -> MxVerdict {
    let mode = match policy.map(|p| p.mode) {
        None => return MxVerdict::Opportunistic(OpportunisticWhy::NoPolicy),
        Some(Mode::None) => return MxVerdict::Opportunistic(OpportunisticWhy::ModeNone),
        Some(mode) => mode,
    };
    let failure = mx_failure(policy, mx, facts);
    match (mode, failure) {
        (mode, None) => MxVerdict::DeliverWebPki { mode },
        (Mode::Enforce, Some(failure)) => MxVerdict::Skip(failure),
        (_, Some(failure)) => MxVerdict::Opportunistic(OpportunisticWhy::TestingFailure(failure)),
    }
}

fn mx_failure(policy: Option<&Policy>, mx: &str, facts: &MxFacts) -> Option<MxFailure> {
    let mx_name = || mx.to_string();
    if !policy.is_some_and(|p| p.mx_matches(mx)) {
        return Some(MxFailure::NotInPolicy { mx: mx_name() });
    }
    if !facts.starttls_offered {
        return Some(MxFailure::StartTlsNotOffered { mx: mx_name() });
    }
    match &facts.certificate {
        Some(CertOutcome::Valid) => None,
        Some(CertOutcome::Invalid(problem)) => Some(MxFailure::Certificate {
            mx: mx_name(),
            problem: problem.clone(),
        }),
        Some(CertOutcome::HandshakeFailed(reason)) => Some(MxFailure::Handshake {
            mx: mx_name(),
            reason: reason.clone(),
        }),
        None => Some(MxFailure::Handshake {
            mx: mx_name(),
            reason: "no TLS handshake was made".to_string(),
        }),
    }
}

/// The outcome for the whole destination after trying its MX hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainVerdict {
    /// At least one MX may receive the mail.
    Deliverable,
    /// Enforce, and every MX was skipped: defer, and call
    /// [`super::PolicyCache::recheck_before_bounce`] before a final bounce.
    Defer {
        domain: String,
        failures: Vec<MxFailure>,
    },
}

impl fmt::Display for DomainVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainVerdict::Deliverable => f.write_str("deliverable"),
            DomainVerdict::Defer { domain, failures } => {
                write!(f, "MTA-STS enforce: no valid MX for {domain}")?;
                for failure in failures {
                    write!(f, "; {failure}")?;
                }
                Ok(())
            }
        }
    }
}

/// Folds the per-MX verdicts: deliverable unless all MX were skipped.
pub fn decide_domain(domain: &str, verdicts: &[MxVerdict]) -> DomainVerdict {
    let failures: Vec<MxFailure> = verdicts
        .iter()
        .filter_map(|v| match v {
            MxVerdict::Skip(failure) => Some(failure.clone()),
            _ => None,
        })
        .collect();
    if !verdicts.is_empty() && failures.len() == verdicts.len() {
        DomainVerdict::Defer {
            domain: domain.to_string(),
            failures,
        }
    } else {
        DomainVerdict::Deliverable
    }
}

/// What DANE (RFC 7672) found for an MX, as far as precedence matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaneSummary {
    /// No secure usable TLSA records (insecure zone, none published, DANE
    /// not configured): DANE says nothing about this MX.
    NotApplicable,
    /// Usable TLSA records exist and the certificate matched.
    Authenticated,
    /// Usable TLSA records exist and authentication failed (or TLSA lookup
    /// failed): never deliver to this MX.
    Failed,
}

/// Which mechanism decides for an MX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Governing {
    Dane,
    MtaSts,
}

impl fmt::Display for Governing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Governing::Dane => "DANE governs (usable TLSA records)",
            Governing::MtaSts => "MTA-STS governs (DANE not applicable)",
        })
    }
}

/// RFC 8461 section 2: MTA-STS never overrides a failing DANE validation;
/// where DANE has usable records it governs, pass or fail.
pub fn governing_mechanism(dane: DaneSummary) -> Governing {
    match dane {
        DaneSummary::NotApplicable => Governing::MtaSts,
        DaneSummary::Authenticated | DaneSummary::Failed => Governing::Dane,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: Mode) -> Policy {
        Policy::parse(&format!(
            "version: STSv1\nmode: {mode}\nmx: *.example.com\nmax_age: 3600\n"
        ))
        .expect("policy")
    }

    const OK: MxFacts = MxFacts {
        starttls_offered: true,
        certificate: Some(CertOutcome::Valid),
    };

    #[test]
    fn verdict_table() {
        let no_tls = MxFacts {
            starttls_offered: false,
            certificate: None,
        };
        let expired = MxFacts {
            starttls_offered: true,
            certificate: Some(CertOutcome::Invalid(CertProblem::Expired)),
        };
        let enforce = policy(Mode::Enforce);
        let testing = policy(Mode::Testing);
        let none = policy(Mode::None);
        let mx = "mx1.example.com";
        let other = "mx.other.net";
        let table: Vec<(Option<&Policy>, &str, &MxFacts, MxVerdict)> = vec![
            (
                None,
                mx,
                &no_tls,
                MxVerdict::Opportunistic(OpportunisticWhy::NoPolicy),
            ),
            (
                Some(&none),
                other,
                &no_tls,
                MxVerdict::Opportunistic(OpportunisticWhy::ModeNone),
            ),
            (
                Some(&enforce),
                mx,
                &OK,
                MxVerdict::DeliverWebPki {
                    mode: Mode::Enforce,
                },
            ),
            (
                Some(&testing),
                mx,
                &OK,
                MxVerdict::DeliverWebPki {
                    mode: Mode::Testing,
                },
            ),
            (
                Some(&enforce),
                other,
                &OK,
                MxVerdict::Skip(MxFailure::NotInPolicy { mx: other.into() }),
            ),
            (
                Some(&enforce),
                mx,
                &no_tls,
                MxVerdict::Skip(MxFailure::StartTlsNotOffered { mx: mx.into() }),
            ),
            (
                Some(&enforce),
                mx,
                &expired,
                MxVerdict::Skip(MxFailure::Certificate {
                    mx: mx.into(),
                    problem: CertProblem::Expired,
                }),
            ),
            (
                Some(&testing),
                mx,
                &expired,
                MxVerdict::Opportunistic(OpportunisticWhy::TestingFailure(
                    MxFailure::Certificate {
                        mx: mx.into(),
                        problem: CertProblem::Expired,
                    },
                )),
            ),
            (
                Some(&testing),
                other,
                &OK,
                MxVerdict::Opportunistic(OpportunisticWhy::TestingFailure(
                    MxFailure::NotInPolicy { mx: other.into() },
                )),
            ),
        ];
        for (policy, mx, facts, want) in table {
            let got = decide_mx(policy, mx, facts);
            assert_eq!(got, want, "{:?} {mx} {facts:?}", policy.map(|p| p.mode));
            assert!(!got.to_string().is_empty());
        }
    }

    #[test]
    fn plans_and_domain_fold() {
        let enforce = policy(Mode::Enforce);
        assert_eq!(
            plan_mx(Some(&enforce), "MX1.example.com."),
            MxPlan::RequireWebPki
        );
        assert!(matches!(
            plan_mx(Some(&enforce), "example.com"),
            MxPlan::Skip(_)
        ));
        assert_eq!(plan_mx(None, "a.b"), MxPlan::Opportunistic);
        assert!(matches!(
            plan_mx(Some(&policy(Mode::Testing)), "a.b"),
            MxPlan::TestWebPki {
                known_failure: Some(MxFailure::NotInPolicy { .. })
            }
        ));
        let skip = MxVerdict::Skip(MxFailure::StartTlsNotOffered { mx: "a".into() });
        let ok = MxVerdict::DeliverWebPki {
            mode: Mode::Enforce,
        };
        assert!(matches!(
            decide_domain("example.com", &[skip.clone(), skip.clone()]),
            DomainVerdict::Defer { ref failures, .. } if failures.len() == 2
        ));
        assert_eq!(
            decide_domain("example.com", &[skip, ok]),
            DomainVerdict::Deliverable
        );
        // Reasons print the facts a person needs.
        let texts = [
            plan_mx(Some(&enforce), "mx.other.net").to_string(),
            MxVerdict::Skip(MxFailure::Certificate {
                mx: "mx.other.net".into(),
                problem: CertProblem::HostMismatch,
            })
            .to_string(),
            decide_domain(
                "other.net",
                &[MxVerdict::Skip(MxFailure::StartTlsNotOffered {
                    mx: "mx.other.net".into(),
                })],
            )
            .to_string(),
        ];
        for text in texts {
            assert!(text.contains("mx.other.net"), "{text}");
        }
        assert_eq!(governing_mechanism(DaneSummary::Failed), Governing::Dane);
        assert_eq!(
            governing_mechanism(DaneSummary::Authenticated),
            Governing::Dane
        );
        assert_eq!(
            governing_mechanism(DaneSummary::NotApplicable),
            Governing::MtaSts
        );
    }
}
