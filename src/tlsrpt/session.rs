//! One outbound session's result as a TLS report counts it (RFC 8460
//! section 4.3, 4.4): the policy the session ran under, where it went, and
//! success or the result type of its failure. The delivery engine makes
//! one per attempt that reached (or was refused for) a host; the daily
//! aggregate ([`super::daily`]) counts them.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use sealpost_queue::TlsFailure;

/// The `policy-type` of RFC 8460 section 4.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyType {
    /// DANE TLSA records (RFC 7672).
    Tlsa,
    /// An MTA-STS policy (RFC 8461).
    Sts,
    /// Neither was found.
    NoPolicyFound,
}

impl PolicyType {
    /// The RFC 8460 name.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyType::Tlsa => "tlsa",
            PolicyType::Sts => "sts",
            PolicyType::NoPolicyFound => "no-policy-found",
        }
    }
}

/// The policy a session ran under, as the report's `policy` object states
/// it: two sessions under equal policies are counted together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicySeen {
    pub policy_type: PolicyType,
    /// `tlsa`: the TLSA records in presentation form; `sts`: the policy's
    /// lines; empty for `no-policy-found`.
    pub policy_strings: Vec<String>,
    /// The recipient domain (lower case).
    pub policy_domain: String,
    /// `sts`: the policy's `mx` patterns; `tlsa`: the MX host the records
    /// belong to; empty otherwise.
    pub mx_host: Vec<String>,
}

/// How a session ended, for TLS reporting.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionOutcome {
    /// The policy was met (TLS negotiated, authenticated where the policy
    /// asks for it).
    Success,
    /// The policy failed with this RFC 8460 result type.
    Failure(TlsFailure),
}

/// One session's result (RFC 8460 section 4.4 counts these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionResult {
    /// The tenant whose mail it carried (whose organization reports it).
    pub tenant: String,
    pub policy: PolicySeen,
    /// The MX host the session went to, if one was chosen.
    pub mx_host: Option<String>,
    /// The address connected to, if any.
    pub receiving_ip: Option<IpAddr>,
    /// The local address the connection came from, if one was made
    /// (`sending-mta-ip`; kept for failures only).
    #[serde(default)]
    pub sending_ip: Option<IpAddr>,
    pub outcome: SessionOutcome,
    /// Unix seconds: the UTC day it counts in.
    pub at: u64,
}

/// `YYYY-MM-DD`, the UTC day of `unix` seconds.
pub fn utc_day(unix: u64) -> String {
    let (y, m, d) = crate::date::civil_from_days((unix / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The unix second a `YYYY-MM-DD` day starts at, if it is one.
pub(crate) fn day_start(day: &str) -> Option<u64> {
    let mut parts = day.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (H. Hinnant), the inverse of `civil_from_days`.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let unix = u64::try_from(days).ok()? * 86_400;
    (utc_day(unix) == day).then_some(unix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip() {
        for unix in [
            0,
            86_399,
            86_400,
            1_459_468_800,
            1_796_601_599,
            4_102_444_800,
        ] {
            let day = utc_day(unix);
            let start = day_start(&day).expect(&day);
            assert!(start <= unix && unix < start + 86_400, "{day}");
        }
        assert_eq!(utc_day(1_459_468_800), "2016-04-01");
        assert_eq!(day_start("2016-04-01"), Some(1_459_468_800));
        assert_eq!(day_start("2016-02-30"), None);
        assert_eq!(day_start("x"), None);
    }
}
