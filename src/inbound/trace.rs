//! The `Received:` trace header sealpost prepends to every message it
//! accepts (RFC 5321 section 4.4), with the protocol keyword of RFC 3848 /
//! RFC 6531 (`ESMTPS` when STARTTLS was used) and the `tls` clause of
//! RFC 8314 section 4.3 naming the cipher suite, plus the TLS version as a
//! comment.

use std::fmt::Write;
use std::net::IpAddr;

use super::TlsInfo;
use crate::date::rfc5322_date;

/// What the header says about one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trace<'a> {
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

impl<'a> Trace<'a> {
    /// The trace of a copy of a message received in this SMTP session
    /// (`conn`, `envelope`) by `by`, before the queue gives it an id.
    pub(crate) fn of_session(
        envelope: &'a crate::smtp::Envelope,
        conn: &'a super::ConnectionInfo,
        by: &'a str,
        single_recipient: Option<&'a str>,
        at: u64,
    ) -> Trace<'a> {
        Trace {
            helo: &envelope.helo,
            client_ip: conn.peer.ip(),
            esmtp: envelope.esmtp,
            smtputf8: envelope.params.smtputf8,
            tls: conn.tls.as_ref(),
            by,
            id: "pending",
            single_recipient,
            at,
        }
    }
}

/// How many `Received:` fields the header section of `message` holds
/// (RFC 5321 section 6.3: counting them is how loops are found). Only the
/// header section is read, up to the first empty line; the field name is
/// matched without regard to case, and continuation lines (starting with
/// a space or tab) belong to the field before them.
pub(crate) fn received_count(message: &[u8]) -> usize {
    let mut count = 0;
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let name_len = "received".len();
        if line.len() > name_len
            && line[..name_len].eq_ignore_ascii_case(b"received")
            && line[name_len..]
                .iter()
                .find(|&&b| b != b' ' && b != b'\t')
                .is_some_and(|&b| b == b':')
        {
            count += 1;
        }
    }
    count
}

/// The header field, folded, ending in CRLF.
pub(crate) fn received_header(t: &Trace<'_>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tls() -> TlsInfo {
        TlsInfo {
            version: rustls::ProtocolVersion::TLSv1_3,
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
            sni: None,
        }
    }

    #[test]
    fn received_fields_are_counted_in_the_header_section_only() {
        let table: [(&[u8], usize); 7] = [
            (b"", 0),
            (b"Subject: x\r\n\r\nReceived: in the body\r\n", 0),
            (
                b"Received: from a\r\n by b\r\nreceived : from c\r\nRECEIVED:x\r\n\r\n",
                3,
            ),
            (
                b"Received-SPF: pass\r\nX-Received: yes\r\nReceivedx: no\r\n\r\n",
                0,
            ),
            (b"Subject: Received: not a field name\r\n\r\n", 0),
            (b"\tReceived: a continuation line\r\n", 0),
            (b"Received: no empty line and no end", 1),
        ];
        for (message, want) in table {
            assert_eq!(
                received_count(message),
                want,
                "{}",
                String::from_utf8_lossy(message)
            );
        }
        let looped = "Received: from x by y\r\n".repeat(51) + "\r\nbody\r\n";
        assert_eq!(received_count(looped.as_bytes()), 51);
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
