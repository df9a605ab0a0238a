//! Retry schedule: a pure function from the tenant's [`RetryPolicy`], the
//! number of attempts so far and the times involved to the next attempt time
//! or expiry (RFC 5321 §4.5.4.1: retry interval at least 30 minutes is the
//! RFC's suggestion; give-up time at least 4-5 days).
//!
//! Interval after attempt `n` (1-based): `first_retry * 2^(n-1)`, capped at
//! `max_interval`, then spread by ±`jitter` (a fraction) using a deterministic
//! seed so the function stays pure and testable. The last attempt is made at
//! the lifetime's end; a deferral at or after it expires the recipient.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// Per-tenant retry configuration, passed by the caller on each attempt.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub first_retry: Duration,
    pub max_interval: Duration,
    pub lifetime: Duration,
    /// Fraction in `0.0..=1.0`: each interval is spread by up to ± this share.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_retry: Duration::from_secs(5 * 60),
            max_interval: Duration::from_secs(60 * 60),
            lifetime: Duration::from_secs(5 * 24 * 60 * 60),
            jitter: 0.1,
        }
    }
}

/// What to do with a recipient after a temporary failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    At(SystemTime),
    Expired,
}

/// Interval after `attempts` attempts (>= 1), before jitter.
pub fn base_interval(policy: &RetryPolicy, attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(32);
    let factor = 1u64 << shift;
    let secs = policy.first_retry.as_secs_f64() * factor as f64;
    let capped = secs.min(policy.max_interval.as_secs_f64()).max(0.0);
    Duration::from_secs_f64(capped)
}

/// Next attempt after a temporary failure at `now`, the `attempts`-th so far.
/// `seed` picks the jitter deterministically (the queue uses id and attempt).
pub fn next_retry(
    policy: &RetryPolicy,
    attempts: u32,
    arrived_at: SystemTime,
    now: SystemTime,
    seed: u64,
) -> Retry {
    let deadline = arrived_at
        .checked_add(policy.lifetime)
        .unwrap_or(arrived_at);
    if now >= deadline {
        return Retry::Expired;
    }
    let base = base_interval(policy, attempts).as_secs_f64();
    let jitter = policy.jitter.clamp(0.0, 1.0);
    // Map the seed to [-1, 1].
    let unit = (splitmix(seed) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
    let secs = (base * (1.0 + jitter * unit)).max(1.0);
    let next = now
        .checked_add(Duration::from_secs_f64(secs))
        .unwrap_or(deadline);
    Retry::At(next.min(deadline))
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const MIN: u64 = 60;

    #[test]
    fn base_interval_table() {
        let p = RetryPolicy::default();
        let table = [
            (1, 5),
            (2, 10),
            (3, 20),
            (4, 40),
            (5, 60),
            (6, 60),
            (40, 60),
        ];
        for (attempts, minutes) in table {
            assert_eq!(
                base_interval(&p, attempts),
                Duration::from_secs(minutes * MIN),
                "attempt {attempts}"
            );
        }
    }

    #[test]
    fn next_retry_table_without_jitter() {
        let p = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = 24 * 60 * MIN;
        // (attempts, seconds since arrival at the failure, expected)
        let table: [(u32, u64, Option<u64>); 5] = [
            (1, 0, Some(5 * MIN)),
            (3, 100, Some(100 + 20 * MIN)),
            (9, 2 * day, Some(2 * day + 60 * MIN)),
            // Capped at the lifetime's end: one last attempt there.
            (99, 5 * day - 10, Some(5 * day)),
            (100, 5 * day, None),
        ];
        for (attempts, at, expected) in table {
            let got = next_retry(&p, attempts, t0, t0 + Duration::from_secs(at), 7);
            let want = match expected {
                Some(s) => Retry::At(t0 + Duration::from_secs(s)),
                None => Retry::Expired,
            };
            assert_eq!(got, want, "attempts {attempts} at +{at}s");
        }
    }

    #[test]
    fn jitter_stays_within_its_share_and_varies() {
        let p = RetryPolicy {
            jitter: 0.2,
            ..RetryPolicy::default()
        };
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let Retry::At(next) = next_retry(&p, 1, t0, t0, seed) else {
                panic!("expired on the first failure");
            };
            let secs = next.duration_since(t0).map(|d| d.as_secs()).unwrap_or(0);
            assert!((240..=360).contains(&secs), "seed {seed}: {secs}s");
            seen.insert(secs);
        }
        assert!(seen.len() > 10, "jitter spread only {} values", seen.len());
    }
}
