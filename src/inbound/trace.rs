//! The `Received:` trace header sealpost prepends to every message it
//! accepts (RFC 5321 section 4.4), with the protocol keyword of RFC 3848 /
//! RFC 6531 (`ESMTPS` when STARTTLS was used) and the `tls` clause of
//! RFC 8314 section 4.3 naming the cipher suite, plus the TLS version as a
//! comment.

use std::fmt::Write;
use std::net::IpAddr;

use super::TlsInfo;

/// What the header says about one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace<'a> {
    /// The HELO/EHLO name the client gave.
    pub helo: &'a str,
    pub client_ip: IpAddr,
    /// EHLO (true) or HELO.
    pub esmtp: bool,
    pub smtputf8: bool,
    pub tls: Option<&'a TlsInfo>,
    /// Our host name.
    pub by: &'a str,
    /// The queue id.
    pub id: &'a str,
    /// Named only when the message has a single recipient (RFC 5321
    /// section 7.2: listing several would disclose them to each other).
    pub single_recipient: Option<&'a str>,
    /// Seconds since the Unix epoch.
    pub at: u64,
}

/// The header field, folded, ending in CRLF.
pub fn received_header(t: &Trace<'_>) -> String {
    let protocol = match (t.esmtp, t.smtputf8, t.tls.is_some()) {
        (false, _, false) => "SMTP",
        (false, _, true) => "SMTPS",
        (true, false, false) => "ESMTP",
        (true, false, true) => "ESMTPS",
        (true, true, false) => "UTF8SMTP",
        (true, true, true) => "UTF8SMTPS",
    };
    let literal = match t.client_ip {
        IpAddr::V4(ip) => format!("[{ip}]"),
        IpAddr::V6(ip) => format!("[IPv6:{ip}]"),
    };
    let mut header = format!(
        "Received: from {} ({})\r\n\tby {} (sealpost) with {}",
        sanitize(t.helo),
        literal,
        sanitize(t.by),
        protocol
    );
    if let Some(tls) = t.tls {
        let _ = write!(
            header,
            " ({}) tls {}",
            tls.version_name(),
            sanitize(&tls.cipher)
        );
    }
    let _ = write!(header, "\r\n\tid {}", sanitize(t.id));
    if let Some(rcpt) = t.single_recipient {
        let _ = write!(header, "\r\n\tfor <{}>", sanitize(rcpt));
    }
    let _ = write!(header, ";\r\n\t{}\r\n", rfc5322_date(t.at));
    header
}

/// Keeps only characters that cannot break the header's syntax.
fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() && !matches!(c, '(' | ')' | ';' | '<' | '>'))
        .take(255)
        .collect()
}

/// A date-time in RFC 5322 section 3.3 form, in UTC:
/// `Mon, 23 Nov 2026 08:56:29 +0000`.
pub fn rfc5322_date(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Year, month (1-12) and day (1-31) of a day count since 1970-01-01, by
/// the proleptic Gregorian calendar (H. Hinnant's days-to-civil algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_follow_rfc5322() {
        let table = [
            (0, "Thu, 01 Jan 1970 00:00:00 +0000"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 +0000"),
            (1_795_423_989, "Mon, 23 Nov 2026 08:53:09 +0000"),
            (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 +0000"),
        ];
        for (secs, want) in table {
            assert_eq!(rfc5322_date(secs), want, "{secs}");
        }
    }

    fn tls() -> TlsInfo {
        TlsInfo {
            version: rustls::ProtocolVersion::TLSv1_3,
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
            sni: None,
        }
    }

    #[test]
    fn the_header_names_protocol_tls_and_single_recipient() {
        let tls = tls();
        let trace = Trace {
            helo: "mail.sender.example",
            client_ip: "192.0.2.7".parse().expect("ip"),
            esmtp: true,
            smtputf8: false,
            tls: Some(&tls),
            by: "mx.sealpost.test",
            id: "01JD5ABC",
            single_recipient: Some("bob@customer.example"),
            at: 0,
        };
        assert_eq!(
            received_header(&trace),
            "Received: from mail.sender.example ([192.0.2.7])\r\n\
             \tby mx.sealpost.test (sealpost) with ESMTPS (TLSv1.3) tls TLS13_AES_256_GCM_SHA384\r\n\
             \tid 01JD5ABC\r\n\
             \tfor <bob@customer.example>;\r\n\
             \tThu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
    }

    #[test]
    fn protocol_keywords_and_hostile_names() {
        let table = [
            (false, false, false, "with SMTP\r\n"),
            (true, false, false, "with ESMTP\r\n"),
            (true, true, true, "with UTF8SMTPS (TLSv1.3)"),
        ];
        let tls = tls();
        for (esmtp, utf8, with_tls, want) in table {
            let trace = Trace {
                helo: "evil\r\nX-Injected: yes (;)",
                client_ip: "2001:db8::1".parse().expect("ip"),
                esmtp,
                smtputf8: utf8,
                tls: with_tls.then_some(&tls),
                by: "mx",
                id: "1",
                single_recipient: None,
                at: 0,
            };
            let header = received_header(&trace);
            assert!(header.contains(want), "{header}");
            assert!(
                header.contains("from evilX-Injected: yes  ([IPv6:2001:db8::1])"),
                "{header}"
            );
            assert!(!header.contains(" for "), "{header}");
            assert_eq!(
                header.matches("\r\n").count(),
                header.matches("\r\n\t").count() + 1
            );
        }
    }
}
