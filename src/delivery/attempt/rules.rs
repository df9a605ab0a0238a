//! The rules that decide one attempt, as a state machine over what
//! happened at each address (no I/O: the driver in [`super`] connects and
//! reports events; table tests below drive it alone):
//!
//! - MX hosts by preference, each address in turn (RFC 5321 section 5.1).
//! - A failed handshake is retried on the same address in cleartext only
//!   where the hop's TLS is opportunistic (RFC 7435; RFC-NOTES "Security
//!   levels"): under every required level it is that address's failure.
//! - Once the body was sent, a lost connection leaves the recipients' fate
//!   unknown: they are deferred and no other host is tried (at-least-once,
//!   never silently twice in one attempt).
//! - A host that refuses the message as it is (nothing sent, e.g. too big
//!   for its SIZE, or no REQUIRETLS in its EHLO) is left for the next
//!   host; the message fails only when every host refused it (a backup MX
//!   with a small limit must not bounce mail the primary would take
//!   later).
//! - A REQUIRETLS message (RFC 8689 section 4.2.1) never goes to a host
//!   whose TLS the plan cannot authenticate: the host is not contacted
//!   and counts as refusing the message. So such a message fails at once
//!   (5.7.10 / 5.7.30, no retry) when no host can carry it, and waits
//!   for the next attempt when a host that might was unreachable or
//!   failed its DANE or MTA-STS check (those are deferrals, as without
//!   REQUIRETLS: the bounce then comes at the end of the lifetime).
//! - Otherwise the attempt defers with every host's reason, in order; the
//!   destination is `Refused` (one policy's TLS) when some host answered
//!   and the policy refused its TLS, else `Unreachable`.
//! - Every verdict keeps the reasons of the addresses that failed before
//!   it, in order (a reply after failures too): TLS reporting counts each
//!   policy failure as a session (RFC 8460 section 4.4).

use super::super::reason::{Health, Reason};

/// What happened at one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A transaction ran: each recipient has the server's reply.
    Replied,
    /// The server answered and would not take this message as it is
    /// (nothing of it was sent).
    MessageRefused(Reason),
    /// The message may not go to this host at all (REQUIRETLS and the
    /// host's TLS is not authenticated); it was not contacted.
    Unfit(Reason),
    /// The connection failed after the body was (partly) sent.
    LostAfterBody(Reason),
    /// The TLS handshake failed; `cleartext_allowed`: the hop's TLS is
    /// opportunistic, so the same address may be tried without TLS.
    TlsFailed {
        reason: Reason,
        cleartext_allowed: bool,
    },
    /// The address could not be used; `by_policy`: the host answered but
    /// the policy refused its TLS (STARTTLS missing, below the minimum,
    /// a certificate that fails DANE or MTA-STS).
    HostFailed { reason: Reason, by_policy: bool },
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// The same address again, in cleartext.
    RetryCleartext,
    /// The next address of this host (or the next host).
    NextAddress,
    /// The next host: this one refused the message.
    NextHost,
    /// Stop: the attempt is decided.
    Done(Verdict),
}

/// How the attempt ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A transaction ran: the recipients' replies decide. With the
    /// reasons of the addresses (and hosts) that failed or refused
    /// before, in the order tried.
    Replied(Vec<Reason>),
    /// The body was sent and the connection lost: every recipient is
    /// deferred with this reason.
    Unknown(Reason),
    /// Every host answered and refused the message: it fails.
    Fail(Reason),
    /// Nothing delivered now: deferred, with the destination's health.
    Defer(Reason, Health),
}

/// The machine: feed it one [`Event`] per address tried, then
/// [`Rules::finish`] when no address is left.
#[derive(Debug, Default)]
pub(crate) struct Rules {
    /// Each refusal and failure, in the order tried.
    reasons: Vec<Reason>,
    /// Some host refused the message as it is.
    refused: bool,
    /// Some host answered and the policy refused its TLS.
    policy_refused: bool,
    /// Addresses that failed (not refusals): the message may go there later.
    failed: usize,
    /// The cleartext retry of the current address was granted.
    retrying: bool,
}

impl Rules {
    pub(crate) fn on(&mut self, event: Event) -> Step {
        let retrying = std::mem::take(&mut self.retrying);
        match event {
            Event::Replied => Step::Done(Verdict::Replied(std::mem::take(&mut self.reasons))),
            Event::LostAfterBody(reason) => Step::Done(Verdict::Unknown(reason)),
            Event::MessageRefused(reason) | Event::Unfit(reason) => {
                self.refused = true;
                self.reasons.push(reason);
                Step::NextHost
            }
            Event::TlsFailed {
                cleartext_allowed: true,
                ..
            } if !retrying => {
                self.retrying = true;
                Step::RetryCleartext
            }
            Event::TlsFailed { reason, .. } => self.failed(reason, true),
            Event::HostFailed { reason, by_policy } => self.failed(reason, by_policy),
        }
    }

    fn failed(&mut self, reason: Reason, by_policy: bool) -> Step {
        self.policy_refused |= by_policy;
        self.failed += 1;
        self.reasons.push(reason);
        Step::NextAddress
    }

    /// The verdict once every address was tried (`None`: the plan had no
    /// address at all, which the planner never returns).
    pub(crate) fn finish(self) -> Option<Verdict> {
        if self.reasons.is_empty() {
            return None;
        }
        let reason = Reason::hosts(self.reasons);
        if self.refused && self.failed == 0 {
            return Some(Verdict::Fail(reason));
        }
        let health = if self.policy_refused {
            Health::Refused(reason.clone())
        } else {
            Health::Unreachable(reason.clone())
        };
        Some(Verdict::Defer(reason, health))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::reason::{status, LocalCause};

    fn why(text: &str) -> Reason {
        Reason::local(LocalCause::ConnectionFailed, status::NO_ANSWER, text)
    }
    fn host_failed(text: &str) -> Event {
        Event::HostFailed {
            reason: why(text),
            by_policy: false,
        }
    }
    fn policy_failed(text: &str) -> Event {
        Event::HostFailed {
            reason: why(text),
            by_policy: true,
        }
    }
    fn tls_failed(text: &str, cleartext_allowed: bool) -> Event {
        Event::TlsFailed {
            reason: why(text),
            cleartext_allowed,
        }
    }
    fn refused(text: &str) -> Event {
        Event::MessageRefused(why(text))
    }
    fn unfit(text: &str) -> Event {
        Event::Unfit(why(text))
    }

    /// Runs `events` as the driver would (stopping at `Done`); the answers
    /// given and the verdict.
    fn run(events: Vec<Event>) -> (Vec<Step>, Option<Verdict>) {
        let mut rules = Rules::default();
        let mut answers = Vec::new();
        for event in events {
            let next = rules.on(event);
            if let Step::Done(verdict) = next {
                return (answers, Some(verdict));
            }
            answers.push(next);
        }
        (answers, rules.finish())
    }

    #[test]
    fn the_attempt_rules_as_a_table() {
        use Step::{NextAddress, NextHost, RetryCleartext};
        let each = |ts: &[&str]| Reason::hosts(ts.iter().map(|t| why(t)).collect());
        let unreachable =
            |ts: &[&str]| Some(Verdict::Defer(each(ts), Health::Unreachable(each(ts))));
        let refused_tls = |ts: &[&str]| Some(Verdict::Defer(each(ts), Health::Refused(each(ts))));
        // (what, events, the steps answered, the verdict)
        type Case = (&'static str, Vec<Event>, Vec<Step>, Option<Verdict>);
        let table: Vec<Case> =
            vec![
            (
                "a reply ends the attempt at once",
                vec![host_failed("a"), Event::Replied, host_failed("never")],
                vec![NextAddress],
                Some(Verdict::Replied(vec![why("a")])),
            ),
            (
                "once the body was sent no other host is tried",
                vec![Event::LostAfterBody(why("lost")), Event::Replied],
                vec![],
                Some(Verdict::Unknown(why("lost"))),
            ),
            (
                "every host unreachable: defer for everyone, with each reason",
                vec![host_failed("a"), host_failed("b")],
                vec![NextAddress, NextAddress],
                unreachable(&["a", "b"]),
            ),
            (
                "a policy refusal anywhere pauses only that policy",
                vec![policy_failed("a"), host_failed("b")],
                vec![NextAddress, NextAddress],
                refused_tls(&["a", "b"]),
            ),
            (
                "every host refused the message: it fails",
                vec![refused("too big"), refused("too big here too")],
                vec![NextHost, NextHost],
                Some(Verdict::Fail(each(&["too big", "too big here too"]))),
            ),
            (
                "one host refused, another unreachable: defer (it may take it later)",
                vec![refused("too big"), host_failed("down")],
                vec![NextHost, NextAddress],
                unreachable(&["too big", "down"]),
            ),
            (
                "opportunistic: a failed handshake is retried in cleartext, once",
                vec![tls_failed("tls", true), host_failed("cleartext failed too")],
                vec![RetryCleartext, NextAddress],
                unreachable(&["cleartext failed too"]),
            ),
            (
                "opportunistic: the cleartext retry delivers",
                vec![tls_failed("tls", true), Event::Replied],
                vec![RetryCleartext],
                Some(Verdict::Replied(vec![])),
            ),
            (
                "a required level never retries in cleartext",
                vec![tls_failed("tls", false)],
                vec![NextAddress],
                refused_tls(&["tls"]),
            ),
            (
                "the cleartext retry is granted per address",
                vec![
                    tls_failed("tls a", true),
                    host_failed("a"),
                    tls_failed("tls b", true),
                ],
                vec![RetryCleartext, NextAddress, RetryCleartext],
                unreachable(&["a"]),
            ),
            (
                "REQUIRETLS: no host can be authenticated: it fails at once",
                vec![unfit("opportunistic"), unfit("unauthenticated")],
                vec![NextHost, NextHost],
                Some(Verdict::Fail(each(&["opportunistic", "unauthenticated"]))),
            ),
            (
                "REQUIRETLS: one host unfit, the authenticated one lacks REQUIRETLS: fails",
                vec![unfit("opportunistic"), refused("no REQUIRETLS")],
                vec![NextHost, NextHost],
                Some(Verdict::Fail(each(&["opportunistic", "no REQUIRETLS"]))),
            ),
            (
                "REQUIRETLS: one host unfit, the other unreachable: defer (it may take it later)",
                vec![unfit("opportunistic"), host_failed("down")],
                vec![NextHost, NextAddress],
                unreachable(&["opportunistic", "down"]),
            ),
            (
                "REQUIRETLS: a certificate failure at the authenticated host defers",
                vec![policy_failed("DANE mismatch"), unfit("opportunistic")],
                vec![NextAddress, NextHost],
                refused_tls(&["DANE mismatch", "opportunistic"]),
            ),
            (
                "REQUIRETLS: an unfit host is skipped and the next one delivers",
                vec![unfit("opportunistic"), Event::Replied],
                vec![NextHost],
                Some(Verdict::Replied(vec![why("opportunistic")])),
            ),
            (
                "a policy failure before a delivery is kept with the reply",
                vec![policy_failed("DANE mismatch"), host_failed("down"), Event::Replied],
                vec![NextAddress, NextAddress],
                Some(Verdict::Replied(vec![why("DANE mismatch"), why("down")])),
            ),
            ("no address at all", vec![], vec![], None),
        ];
        for (name, events, answers, verdict) in table {
            let (got_answers, got_verdict) = run(events);
            assert_eq!(got_answers, answers, "{name}");
            assert_eq!(got_verdict, verdict, "{name}");
        }
    }
}
