//! What an attempt tells TLS reporting (RFC 8460): the policy the
//! session ran under (DANE TLSA records from the plan, an MTA-STS policy
//! from the cache, or none), where it went, and success or the result
//! type of its failure, handed to [`crate::tlsrpt::Reporter`]. Report mail
//! itself is never counted, nor mail to managed domains' own servers.

use std::net::IpAddr;

use sealpost_queue::{Attempt, Lease, Reason, TlsFailure};

use super::super::plan::{HopTls, Plan};
use super::Shared;
use crate::tlsrpt::{PolicySeen, PolicyType, SessionOutcome, SessionResult};

/// The parts of a plan a report states, taken before the plan is used.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlanPolicy {
    /// Per host under DANE: its TLSA records in presentation form.
    tlsa: Vec<(String, Vec<String>)>,
    /// Some host was under MTA-STS enforce (WebPKI).
    sts: bool,
}

impl PlanPolicy {
    pub(crate) fn of(plan: &Plan) -> PlanPolicy {
        let mut out = PlanPolicy::default();
        if let Plan::Hops(hops) = plan {
            for hop in hops {
                match &hop.tls {
                    HopTls::Dane(auth) => out.tlsa.push((
                        hop.host.clone(),
                        auth.tlsa.iter().map(|t| t.record.to_string()).collect(),
                    )),
                    HopTls::WebPki => out.sts = true,
                    HopTls::Opportunistic | HopTls::Unauthenticated => {}
                }
            }
        }
        out
    }
}

/// Which policy failed, and how, in the reason of an attempt.
fn tls_failure(reason: &Reason) -> Option<(PolicyType, TlsFailure)> {
    match reason {
        Reason::Dane { failure, .. } => Some((PolicyType::Tlsa, *failure)),
        Reason::MtaSts { failure, .. } => Some((PolicyType::Sts, *failure)),
        Reason::Hosts { each } => each.iter().rev().find_map(tls_failure),
        Reason::Paused { cause, .. } => tls_failure(cause),
        _ => None,
    }
}

/// Counts the attempt in the day's TLS report of its destination, if it
/// ran a session (or was refused by a policy) toward a recipient domain.
pub(crate) async fn record(
    shared: &Shared,
    lease: &Lease,
    domain: Option<&str>,
    plan: &PlanPolicy,
    attempt: &Attempt,
) {
    let (Some(reporter), Some(domain)) = (&shared.tls_reports, domain) else {
        return;
    };
    if reporter.is_report_mail(&lease.mail_from) {
        return;
    }
    let failure = tls_failure(&attempt.reply_or_reason);
    let outcome = match (failure, &attempt.tls_version, &attempt.mx_host) {
        (Some((_, f)), _, _) => SessionOutcome::Failure(f),
        (None, Some(_), _) => SessionOutcome::Success,
        // A session in cleartext: the host offered no STARTTLS (or its
        // handshake failed and opportunistic TLS went on without it).
        (None, None, Some(_)) if matches!(attempt.reply_or_reason, Reason::Remote { .. }) => {
            SessionOutcome::Failure(TlsFailure::StarttlsNotSupported)
        }
        _ => return,
    };
    let policy = policy_seen(shared, domain, plan, failure.map(|f| f.0), attempt);
    let result = SessionResult {
        tenant: lease.tenant.clone(),
        policy,
        mx_host: attempt.mx_host.clone(),
        receiving_ip: attempt
            .ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok()),
        outcome,
        at: crate::date::unix_seconds(attempt.at),
    };
    let reporter = reporter.clone();
    let _ = tokio::task::spawn_blocking(move || reporter.record(&result)).await;
}

fn policy_seen(
    shared: &Shared,
    domain: &str,
    plan: &PlanPolicy,
    failed: Option<PolicyType>,
    attempt: &Attempt,
) -> PolicySeen {
    let domain = domain.to_ascii_lowercase();
    let tlsa = attempt
        .mx_host
        .as_ref()
        .and_then(|mx| plan.tlsa.iter().find(|(host, _)| host == mx))
        .or_else(|| plan.tlsa.first());
    if failed == Some(PolicyType::Tlsa) || (failed.is_none() && tlsa.is_some()) {
        let (hosts, strings) = tlsa
            .map(|(host, records)| (vec![host.clone()], records.clone()))
            .unwrap_or_default();
        return PolicySeen {
            policy_type: PolicyType::Tlsa,
            policy_strings: strings,
            policy_domain: domain,
            mx_host: hosts,
        };
    }
    let cached = shared.mta_sts.cached(&domain);
    if failed == Some(PolicyType::Sts) || plan.sts || cached.is_some() {
        let (strings, patterns) = cached
            .map(|c| {
                (
                    c.text
                        .lines()
                        .map(|l| l.trim().to_string())
                        .filter(|l| !l.is_empty())
                        .collect(),
                    c.policy.mx.iter().map(ToString::to_string).collect(),
                )
            })
            .unwrap_or_default();
        return PolicySeen {
            policy_type: PolicyType::Sts,
            policy_strings: strings,
            policy_domain: domain,
            mx_host: patterns,
        };
    }
    PolicySeen {
        policy_type: PolicyType::NoPolicyFound,
        policy_strings: Vec::new(),
        policy_domain: domain,
        mx_host: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealpost_queue::Place;

    #[test]
    fn the_failing_policy_is_found_in_the_reason() {
        let dane = Reason::Dane {
            failure: TlsFailure::TlsaInvalid,
            place: Place::host("mx1.example"),
            detail: "x".into(),
        };
        let sts = Reason::MtaSts {
            failure: TlsFailure::StsWebpkiInvalid,
            place: Place::host("mx2.example"),
            detail: "y".into(),
        };
        assert_eq!(
            tls_failure(&dane),
            Some((PolicyType::Tlsa, TlsFailure::TlsaInvalid))
        );
        let both = Reason::Hosts {
            each: vec![dane, sts],
        };
        assert_eq!(
            tls_failure(&both),
            Some((PolicyType::Sts, TlsFailure::StsWebpkiInvalid))
        );
        assert_eq!(tls_failure(&Reason::Legacy { text: "z".into() }), None);
    }
}
