//! RFC 5322 section 3.3 dates from a unix time, always in UTC (`+0000`),
//! e.g. `Mon, 23 Nov 2026 09:18:03 +0000`. No calendar dependency: the
//! civil date comes from the days-since-epoch algorithm of the proleptic
//! Gregorian calendar. Also the unix-time conversions the rest of the
//! crate shares.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 before it).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Year, month (1-12) and day (1-31) of a day count since 1970-01-01
/// (proleptic Gregorian; H. Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, usize, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as usize;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Formats `unix` (seconds since the epoch, UTC) as an RFC 5322 date-time.
pub fn rfc5322_date(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[((days + 4) % 7) as usize];
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        MONTHS[month - 1],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Formats `unix` (seconds since the epoch) as an RFC 3339 UTC date-time
/// with seconds: `2026-12-06T04:05:06Z`.
pub fn rfc3339(unix: u64) -> String {
    let secs = unix % 86_400;
    let (year, month, day) = civil_from_days((unix / 86_400) as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let table = [
            (0, "Thu, 01 Jan 1970 00:00:00 +0000"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 +0000"),
            (951_868_799, "Tue, 29 Feb 2000 23:59:59 +0000"),
            (1_709_164_800, "Thu, 29 Feb 2024 00:00:00 +0000"),
            (1_795_425_483, "Mon, 23 Nov 2026 09:18:03 +0000"),
            (4_102_444_800, "Fri, 01 Jan 2100 00:00:00 +0000"),
        ];
        for (unix, text) in table {
            assert_eq!(rfc5322_date(unix), text, "{unix}");
        }
    }

    #[test]
    fn rfc3339_dates() {
        for (unix, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_868_799, "2000-02-29T23:59:59Z"),
            (1_795_425_483, "2026-11-23T09:18:03Z"),
        ] {
            assert_eq!(rfc3339(unix), text, "{unix}");
        }
    }

    #[test]
    fn days_roundtrip_monotonic() {
        // Consecutive days advance the date by exactly one, over 400 years.
        let mut prev = civil_from_days(0);
        for d in 1..146_097 {
            let cur = civil_from_days(d);
            let next_day = (prev.0, prev.1, prev.2 + 1);
            let next_month = (prev.0, prev.1 + 1, 1);
            let next_year = (prev.0 + 1, 1, 1);
            assert!(
                cur == next_day || cur == next_month || cur == next_year,
                "{prev:?} -> {cur:?}"
            );
            prev = cur;
        }
    }
}
