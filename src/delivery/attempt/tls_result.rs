//! What an attempt tells TLS reporting (RFC 8460): the policy the
//! session ran under (DANE TLSA records from the plan, an MTA-STS policy
//! from the cache, or none), where it went, and success or the result
//! type of its failure, handed to [`crate::tlsrpt::Reporter`]. Report mail
//! itself is never counted, nor mail to managed domains' own servers.

use std::net::IpAddr;

use sealpost_queue::{Attempt, Lease, Place, Reason, TlsFailure};

use super::super::decision::HopTls;
use super::super::plan::Plan;
use super::DeliveryContext;
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
                    // A route is the customer's own server, not a
                    // policy domain of RFC 8460.
                    HopTls::Opportunistic | HopTls::Unauthenticated | HopTls::RouteWebPki => {}
                }
            }
        }
        out
    }
}

/// One session to count: the policy that failed (if one did), the
/// outcome, the MX host and the address.
type Session = (
    Option<PolicyType>,
    SessionOutcome,
    Option<String>,
    Option<IpAddr>,
);

/// Each policy failure in the reason of an attempt, with where it
/// happened: one for a single host, one per host for several.
fn tls_failures(reason: &Reason) -> Vec<(PolicyType, TlsFailure, Place)> {
    match reason {
        Reason::Dane { failure, place, .. } => vec![(PolicyType::Tlsa, *failure, place.clone())],
        Reason::MtaSts { failure, place, .. } => vec![(PolicyType::Sts, *failure, place.clone())],
        Reason::Hosts { each } => each.iter().flat_map(tls_failures).collect(),
        Reason::Paused { cause, .. } => tls_failures(cause),
        _ => Vec::new(),
    }
}

/// Counts the attempt in the day's TLS reports of its destination: one
/// failed session per host a policy refused, else one session (success,
/// or `starttls-not-supported` in cleartext) if a session ran.
pub(crate) async fn record(
    shared: &DeliveryContext,
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
    let attempt_ip = attempt
        .ip
        .as_deref()
        .and_then(|ip| ip.parse::<IpAddr>().ok());
    let mut sessions: Vec<Session> = tls_failures(&attempt.reply_or_reason)
        .into_iter()
        .map(|(kind, failure, place)| {
            let host = place.host.or_else(|| attempt.mx_host.clone());
            let ip = place.ip.or(attempt_ip);
            (Some(kind), SessionOutcome::Failure(failure), host, ip)
        })
        .collect();
    if sessions.is_empty() {
        let outcome = match (&attempt.tls_version, &attempt.mx_host) {
            (Some(_), _) => SessionOutcome::Success,
            // A session in cleartext: the host offered no STARTTLS (or its
            // handshake failed and opportunistic TLS went on without it).
            (None, Some(_)) if matches!(attempt.reply_or_reason, Reason::Remote { .. }) => {
                SessionOutcome::Failure(TlsFailure::StarttlsNotSupported)
            }
            _ => return,
        };
        sessions.push((None, outcome, attempt.mx_host.clone(), attempt_ip));
    }
    let results: Vec<SessionResult> = sessions
        .into_iter()
        .map(|(failed, outcome, mx_host, receiving_ip)| SessionResult {
            tenant: lease.tenant.clone(),
            policy: policy_seen(shared, domain, plan, failed, mx_host.as_deref()),
            mx_host,
            receiving_ip,
            outcome,
            at: crate::date::unix_seconds(attempt.at),
        })
        .collect();
    let reporter = reporter.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for result in &results {
            reporter.record(result);
        }
    })
    .await;
}

fn policy_seen(
    shared: &DeliveryContext,
    domain: &str,
    plan: &PlanPolicy,
    failed: Option<PolicyType>,
    mx_host: Option<&str>,
) -> PolicySeen {
    let domain = domain.to_ascii_lowercase();
    let tlsa = mx_host
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

    #[test]
    fn each_failing_host_is_found_in_the_reason() {
        let dane = Reason::Dane {
            failure: TlsFailure::TlsaInvalid,
            place: Place::host("mx1.example"),
            detail: "x".into(),
        };
        let sts = Reason::MtaSts {
            failure: TlsFailure::StsWebpkiInvalid,
            place: Place::at("mx2.example", "192.0.2.2".parse().expect("ip")),
            detail: "y".into(),
        };
        assert_eq!(
            tls_failures(&dane),
            vec![(
                PolicyType::Tlsa,
                TlsFailure::TlsaInvalid,
                Place::host("mx1.example")
            )]
        );
        let both = Reason::Hosts {
            each: vec![dane, sts],
        };
        let kinds: Vec<(PolicyType, TlsFailure)> = tls_failures(&both)
            .into_iter()
            .map(|(p, f, _)| (p, f))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (PolicyType::Tlsa, TlsFailure::TlsaInvalid),
                (PolicyType::Sts, TlsFailure::StsWebpkiInvalid)
            ]
        );
        assert!(tls_failures(&Reason::Legacy { text: "z".into() }).is_empty());
    }
}
