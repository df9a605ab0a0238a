//! When to act for each domain, as pure functions of the clock and the
//! recorded state: renewal `renew_before` the expiry, exponential backoff
//! after failures (a domain that does not point here is looked at again
//! only after its backoff, never in a tight loop), and a token bucket that
//! bounds new orders for all domains together (ACME CAs rate-limit new
//! orders per account; Let's Encrypt allows 300 per 3 hours).

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What is known about one `mta-sts.<domain>` name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRecord {
    pub state: State,
    /// Expiry of the certificate in use (unix seconds), if any.
    #[serde(default)]
    pub not_after: Option<u64>,
    /// Failures in a row (a DNS mismatch counts as one).
    #[serde(default)]
    pub failures: u32,
    /// When to look at this domain again (unix seconds).
    pub next_attempt: u64,
    /// The last failure, for people.
    #[serde(default)]
    pub last_error: Option<String>,
    /// What the name resolved to at the last check.
    #[serde(default)]
    pub resolved: Vec<IpAddr>,
}

/// A domain's certificate state, as `dns-records`, the admin socket and
/// `/metrics` (`sealpost_acme_domains{state=...}`) name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// No certificate yet, none tried.
    Pending,
    /// A certificate is installed and not due for renewal.
    Valid,
    /// The last order failed; retried after the backoff.
    Failed,
    /// `mta-sts.<domain>` does not resolve to `[acme] addresses`.
    DnsMismatch,
}

impl State {
    pub(crate) const ALL: [State; 4] = [
        State::Pending,
        State::Valid,
        State::Failed,
        State::DnsMismatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Valid => "valid",
            State::Failed => "failed",
            State::DnsMismatch => "dns-mismatch",
        }
    }
}

impl DomainRecord {
    /// A name seen for the first time: due now.
    pub fn new(now: u64) -> DomainRecord {
        DomainRecord {
            state: State::Pending,
            not_after: None,
            failures: 0,
            next_attempt: now,
            last_error: None,
            resolved: Vec::new(),
        }
    }

    /// A certificate is installed: the next look is at renewal time.
    pub fn issued(&mut self, not_after: u64, renew_before: Duration) {
        self.state = State::Valid;
        self.not_after = Some(not_after);
        self.failures = 0;
        self.last_error = None;
        self.next_attempt = renewal_time(not_after, renew_before);
    }

    /// An attempt failed (`state` is `Failed` or `DnsMismatch`): the next
    /// look is after the backoff. A certificate still valid stays in use.
    pub fn failed(&mut self, state: State, error: String, now: u64, backoff: &Backoff) {
        self.state = state;
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(error);
        self.next_attempt = now + backoff.after(self.failures).as_secs();
    }

    pub(crate) fn is_due(&self, now: u64) -> bool {
        self.next_attempt <= now
    }
}

/// When a certificate expiring at `not_after` is renewed.
pub(crate) fn renewal_time(not_after: u64, renew_before: Duration) -> u64 {
    not_after.saturating_sub(renew_before.as_secs())
}

/// Exponential backoff: `first`, doubled per failure, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after the `failures`-th failure in a row (1 = the first).
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(32);
        self.first
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// New orders allowed per hour, all domains together: a token bucket of
/// `per_hour` tokens refilled evenly.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OrderBudget {
    per_hour: u32,
    tokens: f64,
    /// Unix seconds (fractional) of the last refill.
    at: f64,
}

impl OrderBudget {
    pub fn new(per_hour: u32, now: f64) -> OrderBudget {
        OrderBudget {
            per_hour: per_hour.max(1),
            tokens: f64::from(per_hour.max(1)),
            at: now,
        }
    }

    fn refill(&mut self, now: f64) {
        let rate = f64::from(self.per_hour) / 3600.0;
        self.tokens = (self.tokens + (now - self.at).max(0.0) * rate).min(f64::from(self.per_hour));
        self.at = now.max(self.at);
    }

    /// Takes one order's token, or says how long until one is free.
    pub fn take(&mut self, now: f64) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let rate = f64::from(self.per_hour) / 3600.0;
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let backoff = Backoff {
            first: Duration::from_secs(600),
            max: Duration::from_secs(86_400),
        };
        let table = [
            (1, 600),
            (2, 1_200),
            (3, 2_400),
            (7, 38_400),
            (8, 76_800),
            (9, 86_400),
            (40, 86_400),
            (u32::MAX, 86_400),
        ];
        for (failures, seconds) in table {
            assert_eq!(backoff.after(failures).as_secs(), seconds, "{failures}");
        }
    }

    #[test]
    fn a_domain_is_due_at_renewal_or_after_its_backoff() {
        let renew = Duration::from_secs(30 * 86_400);
        let backoff = Backoff {
            first: Duration::from_secs(60),
            max: Duration::from_secs(3600),
        };
        let mut record = DomainRecord::new(1_000);
        assert!(record.is_due(1_000));
        let not_after = 1_000 + 90 * 86_400;
        record.issued(not_after, renew);
        assert_eq!(record.state, State::Valid);
        assert!(!record.is_due(1_000 + 59 * 86_400));
        assert!(record.is_due(1_000 + 60 * 86_400));
        // A failed renewal keeps the certificate and backs off.
        let now = 1_000 + 60 * 86_400;
        record.failed(State::Failed, "refused".into(), now, &backoff);
        assert_eq!(record.not_after, Some(not_after));
        assert!(!record.is_due(now + 59));
        assert!(record.is_due(now + 60));
        record.failed(State::DnsMismatch, "elsewhere".into(), now + 60, &backoff);
        assert_eq!(record.next_attempt, now + 60 + 120);
        record.issued(not_after + 90 * 86_400, renew);
        assert_eq!(record.failures, 0);
        assert_eq!(record.last_error, None);
    }

    #[test]
    fn the_order_budget_refills_evenly() {
        let mut budget = OrderBudget::new(2, 0.0);
        assert_eq!(budget.take(0.0), Ok(()));
        assert_eq!(budget.take(0.0), Ok(()));
        let wait = budget.take(0.0).expect_err("empty");
        assert_eq!(wait.as_secs(), 1800);
        assert!(budget.take(900.0).is_err());
        assert_eq!(budget.take(1800.0), Ok(()));
        // Never more than an hour's worth saved up.
        assert_eq!(budget.take(1_000_000.0), Ok(()));
        assert_eq!(budget.take(1_000_000.0), Ok(()));
        assert!(budget.take(1_000_000.0).is_err());
    }

    #[test]
    fn records_read_back_from_json() {
        let mut record = DomainRecord::new(5);
        record.failed(
            State::DnsMismatch,
            "x".into(),
            5,
            &Backoff {
                first: Duration::from_secs(1),
                max: Duration::from_secs(2),
            },
        );
        record.resolved = vec!["192.0.2.1".parse().expect("ip")];
        let text = serde_json::to_string(&record).expect("json");
        assert!(text.contains("\"dns-mismatch\""), "{text}");
        assert_eq!(
            serde_json::from_str::<DomainRecord>(&text).ok(),
            Some(record)
        );
    }
}
