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
//! delivery engine applies DANE first wherever usable TLSA records exist
//! (`delivery::decision::mta_sts_host`, which the probe calls too), and
//! decides each connection with `delivery::decision::connection_verdict`.

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
pub(crate) enum StsMxPlan {
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
pub(crate) fn plan_mx(policy: Option<&Policy>, mx: &str) -> StsMxPlan {
    let Some(policy) = policy else {
        return StsMxPlan::Opportunistic;
    };
    let mismatch = (!policy.mx_matches(mx)).then(|| MxFailure::NotInPolicy { mx: mx.to_string() });
    match policy.mode {
        Mode::None => StsMxPlan::Opportunistic,
        Mode::Enforce => match mismatch {
            Some(failure) => StsMxPlan::Skip(failure),
            None => StsMxPlan::RequireWebPki,
        },
        Mode::Testing => StsMxPlan::TestWebPki {
            known_failure: mismatch,
        },
    }
}

impl fmt::Display for StsMxPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StsMxPlan::Skip(failure) => write!(f, "MTA-STS enforce: not connecting: {failure}"),
            StsMxPlan::RequireWebPki => {
                f.write_str("MTA-STS enforce: STARTTLS and WebPKI required")
            }
            StsMxPlan::TestWebPki {
                known_failure: None,
            } => f.write_str("MTA-STS testing: WebPKI checked and reported"),
            StsMxPlan::TestWebPki {
                known_failure: Some(failure),
            } => write!(f, "MTA-STS testing: {failure} (reported)"),
            StsMxPlan::Opportunistic => {
                f.write_str("no MTA-STS policy in force: opportunistic TLS")
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: Mode) -> Policy {
        Policy::parse(&format!(
            "version: STSv1\nmode: {mode}\nmx: *.example.com\nmax_age: 3600\n"
        ))
        .expect("policy")
    }

    #[test]
    fn the_plan_of_each_mx_under_each_mode() {
        let enforce = policy(Mode::Enforce);
        assert_eq!(
            plan_mx(Some(&enforce), "MX1.example.com."),
            StsMxPlan::RequireWebPki
        );
        assert!(matches!(
            plan_mx(Some(&enforce), "example.com"),
            StsMxPlan::Skip(MxFailure::NotInPolicy { .. })
        ));
        assert_eq!(plan_mx(None, "a.b"), StsMxPlan::Opportunistic);
        assert_eq!(
            plan_mx(Some(&policy(Mode::None)), "a.b"),
            StsMxPlan::Opportunistic
        );
        assert!(matches!(
            plan_mx(Some(&policy(Mode::Testing)), "a.b"),
            StsMxPlan::TestWebPki {
                known_failure: Some(MxFailure::NotInPolicy { .. })
            }
        ));
        // Reasons print the facts a person needs.
        let text = plan_mx(Some(&enforce), "mx.other.net").to_string();
        assert!(text.contains("mx.other.net"), "{text}");
    }
}
