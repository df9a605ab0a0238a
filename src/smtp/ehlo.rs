//! EHLO capabilities: what a server advertises, parsed for the SMTP client.
//!
//! The EHLO reply is `250-domain [greeting]` then one extension per line,
//! `keyword *(SP param)` (RFC 5321 section 4.1.1.1). Keywords are
//! case-insensitive. The extensions sealpost acts on: PIPELINING (RFC 2920),
//! SIZE (RFC 1870), 8BITMIME (RFC 6152), STARTTLS (RFC 3207), SMTPUTF8
//! (RFC 6531), CHUNKING (RFC 3030), ENHANCEDSTATUSCODES (RFC 2034) and
//! REQUIRETLS (RFC 8689).

use super::reply::Reply;

/// The capabilities in a server's EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EhloCapabilities {
    /// The domain the server names itself with (first word of the first line).
    pub domain: String,
    pub pipelining: bool,
    /// SIZE (RFC 1870): `Some(0)` when advertised without a fixed limit
    /// (`SIZE` or `SIZE 0`), `Some(n)` for a limit of n octets, `None` when
    /// not advertised.
    pub size: Option<u64>,
    pub eight_bit_mime: bool,
    pub starttls: bool,
    pub smtputf8: bool,
    pub chunking: bool,
    pub enhanced_status_codes: bool,
    pub requiretls: bool,
    /// Every other extension, keyword upper-cased, with its parameters.
    pub other: Vec<(String, Vec<String>)>,
}

impl EhloCapabilities {
    /// Reads the capabilities from a positive EHLO reply. Returns `None` if
    /// the reply is not a 250 (the client then falls back to HELO, RFC 5321
    /// section 3.2).
    pub fn parse(reply: &Reply) -> Option<EhloCapabilities> {
        if reply.code != 250 {
            return None;
        }
        let mut lines = reply.lines.iter();
        let mut caps = EhloCapabilities {
            domain: lines
                .next()
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or("")
                .to_string(),
            ..EhloCapabilities::default()
        };
        for line in lines {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let keyword = keyword.to_ascii_uppercase();
            let params: Vec<String> = words.map(str::to_string).collect();
            match keyword.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "SIZE" => {
                    caps.size = Some(
                        params
                            .first()
                            .and_then(|p| p.parse::<u64>().ok())
                            .unwrap_or(0),
                    )
                }
                "8BITMIME" => caps.eight_bit_mime = true,
                "STARTTLS" => caps.starttls = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "CHUNKING" => caps.chunking = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "REQUIRETLS" => caps.requiretls = true,
                _ => caps.other.push((keyword, params)),
            }
        }
        Some(caps)
    }

    /// The SIZE limit if the server has a fixed one.
    pub(crate) fn size_limit(&self) -> Option<u64> {
        self.size.filter(|&n| n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::parse_reply;

    fn caps(wire: &str) -> EhloCapabilities {
        let reply = parse_reply(wire.as_bytes())
            .expect("complete")
            .expect("valid");
        EhloCapabilities::parse(&reply).expect("250")
    }

    #[test]
    fn parses_every_known_extension() {
        let c = caps(
            "250-mx.example.com Hello\r\n250-pipelining\r\n250-SIZE 35882577\r\n\
             250-8BITMIME\r\n250-STARTTLS\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n\
             250-ENHANCEDSTATUSCODES\r\n250-REQUIRETLS\r\n250 AUTH PLAIN LOGIN\r\n",
        );
        assert_eq!(c.domain, "mx.example.com");
        assert!(c.pipelining && c.eight_bit_mime && c.starttls && c.smtputf8);
        assert!(c.chunking && c.enhanced_status_codes && c.requiretls);
        assert_eq!(c.size, Some(35882577));
        assert_eq!(c.size_limit(), Some(35882577));
        assert_eq!(
            c.other,
            vec![("AUTH".to_string(), vec!["PLAIN".into(), "LOGIN".into()])]
        );
    }

    #[test]
    fn size_without_limit_and_minimal_reply() {
        let c = caps("250-mx\r\n250 SIZE\r\n");
        assert_eq!(c.size, Some(0));
        assert_eq!(c.size_limit(), None);
        let c = caps("250 mx.test\r\n");
        assert_eq!(
            c,
            EhloCapabilities {
                domain: "mx.test".into(),
                ..EhloCapabilities::default()
            }
        );
    }

    #[test]
    fn non_250_is_not_capabilities() {
        let reply = parse_reply(b"502 5.5.1 no EHLO\r\n")
            .expect("complete")
            .expect("valid");
        assert_eq!(EhloCapabilities::parse(&reply), None);
    }
}
