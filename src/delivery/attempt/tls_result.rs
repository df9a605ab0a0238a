//! What an attempt tells TLS reporting (RFC 8460): the policy each
//! session ran under (DANE TLSA records from the plan, an MTA-STS policy
//! from the cache, or none), where it went, from which local address, and
//! success or the result type of its failure, handed to
//! [`crate::tlsrpt::Reporter`]. Every session counts (section 4.4): an MX
//! host the plan ruled out (e.g. `dane-required`), each address whose TLS
//! a policy refused before another host took the message, and the
//! session that ended the attempt. Report mail itself is never counted,
//! nor mail to managed domains' own servers.

use std::net::IpAddr;

use sealpost_queue::{Attempt, Lease, LocalCause, Place, Reason, TlsFailure};

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
    /// The MX hosts the plan ruled out, with their reasons.
    skipped: Vec<Reason>,
}

impl PlanPolicy {
    pub(crate) fn of(plan: &Plan) -> PlanPolicy {
        let mut out = PlanPolicy::default();
        if let Plan::Hops { hops, skipped } = plan {
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
            out.skipped = skipped.clone();
        }
        out
    }
}

/// One session to count.
#[derive(Debug, Clone, PartialEq)]
struct Session {
    /// The policy that failed, when the reason names one (else the plan
    /// says which policy the host was under).
    failed: Option<PolicyType>,
    outcome: SessionOutcome,
    place: Place,
}

/// Each TLS failure in the reason of an attempt (or of one address),
/// with where it happened: one for a single host, one per host for
/// several. A DANE or MTA-STS refusal names its policy; STARTTLS missing
/// or a failed handshake where TLS was required counts under the policy
/// the host was planned with. Failures that are not about TLS (no
/// connection, a refused message) are not sessions a report counts.
fn tls_failures(reason: &Reason) -> Vec<Session> {
    let failure = |failed, failure, place: &Place| {
        vec![Session {
            failed,
            outcome: SessionOutcome::Failure(failure),
            place: place.clone(),
        }]
    };
    match reason {
        Reason::Dane {
            failure: f, place, ..
        } => failure(Some(PolicyType::Tlsa), *f, place),
        Reason::MtaSts {
            failure: f, place, ..
        } => failure(Some(PolicyType::Sts), *f, place),
        Reason::Local { cause, place, .. } => match cause {
            LocalCause::TlsNotOffered => failure(None, TlsFailure::StarttlsNotSupported, place),
            LocalCause::TlsHandshakeFailed
            | LocalCause::TlsBelowMinimum
            | LocalCause::StartTlsInjection => failure(None, TlsFailure::ValidationFailure, place),
            _ => Vec::new(),
        },
        Reason::Hosts { each } => each.iter().flat_map(tls_failures).collect(),
        Reason::Paused { cause, .. } => tls_failures(cause),
        _ => Vec::new(),
    }
}

/// The sessions of an attempt, in the order they happened: the hosts the
/// plan ruled out, the addresses that failed before the one that
/// replied, then the last session (its failures, or else its success, or
/// `starttls-not-supported` when it ran in cleartext). A place the
/// attempt's reason leaves open is the attempt's MX host and address.
fn sessions(plan: &PlanPolicy, attempt: &Attempt, failed_before: &[Reason]) -> Vec<Session> {
    let mut out: Vec<Session> = plan
        .skipped
        .iter()
        .chain(failed_before)
        .flat_map(tls_failures)
        .collect();
    let attempt_ip = attempt
        .ip
        .as_deref()
        .and_then(|ip| ip.parse::<IpAddr>().ok());
    let last: Vec<Session> = tls_failures(&attempt.reply_or_reason)
        .into_iter()
        .map(|mut session| {
            if session.place.host.is_none() {
                session.place.host = attempt.mx_host.clone();
            }
            session.place.ip = session.place.ip.or(attempt_ip);
            session
        })
        .collect();
    if !last.is_empty() {
        out.extend(last);
        return out;
    }
    let outcome = match (&attempt.tls_version, &attempt.mx_host) {
        (Some(_), _) => SessionOutcome::Success,
        // A session in cleartext: the host offered no STARTTLS (or its
        // handshake failed and opportunistic TLS went on without it).
        (None, Some(_)) if matches!(attempt.reply_or_reason, Reason::Remote { .. }) => {
            SessionOutcome::Failure(TlsFailure::StarttlsNotSupported)
        }
        _ => return out,
    };
    out.push(Session {
        failed: None,
        outcome,
        place: Place {
            host: attempt.mx_host.clone(),
            ip: attempt_ip,
            local: None,
        },
    });
    out
}

/// Counts the attempt in the day's TLS reports of its destination: one
/// session per host the plan ruled out, per address whose TLS a policy
/// refused (`failed_before`: those before the one that replied), and the
/// session that ended the attempt (see [`sessions`]).
pub(crate) async fn record(
    shared: &DeliveryContext,
    lease: &Lease,
    domain: Option<&str>,
    plan: &PlanPolicy,
    attempt: &Attempt,
    failed_before: &[Reason],
) {
    let (Some(reporter), Some(domain)) = (&shared.tls_reports, domain) else {
        return;
    };
    if reporter.is_report_mail(&lease.mail_from) {
        return;
    }
    let results: Vec<SessionResult> = sessions(plan, attempt, failed_before)
        .into_iter()
        .map(|session| SessionResult {
            tenant: lease.tenant.clone(),
            policy: policy_seen(
                shared,
                domain,
                plan,
                session.failed,
                session.place.host.as_deref(),
            ),
            mx_host: session.place.host,
            receiving_ip: session.place.ip,
            sending_ip: session.place.local,
            outcome: session.outcome,
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
    // The host's own TLSA records; a failure that names no host is shown
    // with the first host's. A host DANE ruled out has none to show.
    let tlsa = match mx_host {
        Some(mx) => plan.tlsa.iter().find(|(host, _)| host == mx),
        None => plan.tlsa.first(),
    };
    if failed == Some(PolicyType::Tlsa) || (failed.is_none() && tlsa.is_some()) {
        let (hosts, strings) = match (tlsa, mx_host) {
            (Some((host, records)), _) => (vec![host.clone()], records.clone()),
            (None, Some(mx)) => (vec![mx.to_string()], Vec::new()),
            (None, None) => (Vec::new(), Vec::new()),
        };
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
    use std::time::SystemTime;

    use sealpost_queue::{Authentication, Status};

    use super::*;

    fn kinds(sessions: &[Session]) -> Vec<(Option<PolicyType>, SessionOutcome, Option<&str>)> {
        sessions
            .iter()
            .map(|s| (s.failed, s.outcome.clone(), s.place.host.as_deref()))
            .collect()
    }

    fn failure(f: TlsFailure) -> SessionOutcome {
        SessionOutcome::Failure(f)
    }

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
        let no_tls = Reason::Local {
            cause: LocalCause::TlsNotOffered,
            status: Status(4, 7, 10),
            place: Place::host("mx3.example"),
            detail: "z".into(),
        };
        let down = Reason::Local {
            cause: LocalCause::ConnectionFailed,
            status: Status(4, 4, 1),
            place: Place::host("mx4.example"),
            detail: "down".into(),
        };
        let all = Reason::Hosts {
            each: vec![dane, sts, no_tls, down],
        };
        assert_eq!(
            kinds(&tls_failures(&all)),
            vec![
                (
                    Some(PolicyType::Tlsa),
                    failure(TlsFailure::TlsaInvalid),
                    Some("mx1.example")
                ),
                (
                    Some(PolicyType::Sts),
                    failure(TlsFailure::StsWebpkiInvalid),
                    Some("mx2.example")
                ),
                (
                    None,
                    failure(TlsFailure::StarttlsNotSupported),
                    Some("mx3.example")
                ),
            ]
        );
        assert!(tls_failures(&Reason::Legacy { text: "z".into() }).is_empty());
    }

    #[test]
    fn every_session_of_an_attempt_counts_in_order() {
        let local: IpAddr = "192.0.2.100".parse().expect("ip");
        let skipped = Reason::Dane {
            failure: TlsFailure::DaneRequired,
            place: Place::host("mx2.example"),
            detail: "no TLSA".into(),
        };
        let mismatch = Reason::Dane {
            failure: TlsFailure::ValidationFailure,
            place: Place::at("mx1.example", "192.0.2.1".parse().expect("ip")),
            detail: "no match".into(),
        }
        .with_local(Some(local));
        let plan = PlanPolicy {
            skipped: vec![skipped],
            ..PlanPolicy::default()
        };
        let attempt = Attempt {
            at: SystemTime::now(),
            mx_host: Some("mx3.example".into()),
            ip: Some("192.0.2.3".into()),
            tls_version: Some("TLSv1_3".into()),
            cipher: None,
            authentication: Authentication::Dane,
            reply_or_reason: Reason::Remote {
                host: "mx3.example".into(),
                ip: "192.0.2.3".parse().expect("ip"),
                code: 250,
                status: None,
                text: "ok".into(),
            },
        };
        let sessions = sessions(&plan, &attempt, &[mismatch]);
        assert_eq!(
            kinds(&sessions),
            vec![
                (
                    Some(PolicyType::Tlsa),
                    failure(TlsFailure::DaneRequired),
                    Some("mx2.example")
                ),
                (
                    Some(PolicyType::Tlsa),
                    failure(TlsFailure::ValidationFailure),
                    Some("mx1.example")
                ),
                (None, SessionOutcome::Success, Some("mx3.example")),
            ]
        );
        assert_eq!(sessions[1].place.local, Some(local));
        assert_eq!(sessions[2].place.ip, "192.0.2.3".parse().ok());
    }
}
