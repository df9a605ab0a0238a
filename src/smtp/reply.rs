//! SMTP replies: sealpost's `Reply` type, its wire format, and a streaming
//! reply parser for the client side.
//!
//! - Reply syntax and multi-line replies: RFC 5321 section 4.2
//!   (`Reply-line = *( Reply-code "-" [ textstring ] CRLF ) Reply-code [ SP textstring ] CRLF`).
//! - Enhanced status codes (`class.subject.detail`): RFC 3463, carried at the
//!   start of every line of a reply as RFC 2034 section 4 describes.
//! - A reply line is at most 512 octets (RFC 5321 section 4.5.3.1.5); the
//!   parser accepts longer lines up to [`MAX_REPLY_LINE`] because real servers
//!   overrun that limit, and stops a peer that never ends a line.

use std::fmt;

use thiserror::Error;

/// The longest reply line the client-side parser accepts, CRLF included.
/// RFC 5321 4.5.3.1.5 says 512; we are lenient to a point.
pub(crate) const MAX_REPLY_LINE: usize = 4096;
/// The most lines the parser accepts in one reply.
pub(crate) const MAX_REPLY_LINES: usize = 256;

/// An RFC 3463 enhanced status code: `class.subject.detail`, e.g. `5.7.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode(pub u8, pub u16, pub u16);

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl EnhancedCode {
    /// Parses `c.s.d` (RFC 3463 section 2: class 2, 4 or 5, subject and
    /// detail 1 to 3 digits). Returns `None` for anything else.
    pub fn parse(text: &str) -> Option<EnhancedCode> {
        let mut parts = text.split('.');
        let class = parts.next()?;
        let subject = parts.next()?;
        let detail = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let digits = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
        };
        if !digits(class, 1) || !digits(subject, 3) || !digits(detail, 3) {
            return None;
        }
        let class: u8 = class.parse().ok()?;
        if !matches!(class, 2 | 4 | 5) {
            return None;
        }
        Some(EnhancedCode(
            class,
            subject.parse().ok()?,
            detail.parse().ok()?,
        ))
    }
}

/// One SMTP reply: a three-digit code, an optional enhanced status code and
/// zero or more lines of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<EnhancedCode>,
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    pub fn new(code: u16, enhanced: (u8, u16, u16), text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: Some(EnhancedCode(enhanced.0, enhanced.1, enhanced.2)),
            lines: vec![text.into()],
        }
    }

    /// A one-line reply without an enhanced status code (greeting, 354,
    /// HELO; RFC 2034 section 3 exempts the greeting and HELO/EHLO replies).
    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: None,
            lines: vec![text.into()],
        }
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 5xx: do not repeat as is.
    pub(crate) fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// All lines joined by a space, without codes (for logs and attempt records).
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// Appends the wire form (every line ends in CRLF) to `out`.
    ///
    /// Text is written as given except that CR and LF inside a line are
    /// replaced by spaces, so a caller's text can never forge extra reply
    /// lines.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        let empty = [String::new()];
        let lines: &[String] = if self.lines.is_empty() {
            &empty
        } else {
            &self.lines
        };
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            out.extend_from_slice(format!("{:03}", self.code).as_bytes());
            let sep = if i == last { b' ' } else { b'-' };
            let mut text = String::new();
            if let Some(enhanced) = self.enhanced {
                text.push_str(&enhanced.to_string());
                if !line.is_empty() {
                    text.push(' ');
                }
            }
            text.push_str(line);
            if !text.is_empty() || i != last {
                out.push(sep);
            }
            out.extend(
                text.bytes()
                    .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
            );
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as a byte vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(enhanced) = self.enhanced {
            write!(f, " {enhanced}")?;
        }
        if !self.lines.is_empty() {
            write!(f, " {}", self.text())?;
        }
        Ok(())
    }
}

/// Why a server's reply could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReplyError {
    #[error("reply line {line:?} does not start with a three-digit code")]
    BadCode { line: String },
    #[error("reply line {line:?} has {found:?} after the code, expected ' ', '-' or CRLF")]
    BadSeparator { line: String, found: char },
    #[error("multi-line reply changed its code from {first} to {then}")]
    MixedCodes { first: u16, then: u16 },
    #[error("reply line longer than {limit} octets")]
    LineTooLong { limit: usize },
    #[error("reply has more than {limit} lines")]
    TooManyLines { limit: usize },
}

/// Streaming parser for server replies, for the SMTP client.
///
/// Feed it whatever the socket returned with [`ReplyParser::push`]; take
/// complete replies with [`ReplyParser::next_reply`]. Pipelined replies
/// (RFC 2920) come out one by one, in order. Lines may end in CRLF or, to
/// tolerate broken servers, a bare LF.
#[derive(Debug, Default)]
pub struct ReplyParser {
    buf: Vec<u8>,
    pos: usize,
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyParser {
    pub fn new() -> ReplyParser {
        ReplyParser::default()
    }

    /// Adds bytes received from the server.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet part of a complete reply.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete reply, `None` if more bytes are needed. After an
    /// error the connection is out of sync: close it.
    pub fn next_reply(&mut self) -> Option<Result<Reply, ReplyError>> {
        loop {
            let rest = &self.buf[self.pos..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                if rest.len() > MAX_REPLY_LINE {
                    return Some(Err(ReplyError::LineTooLong {
                        limit: MAX_REPLY_LINE,
                    }));
                }
                return None;
            };
            if nl + 1 > MAX_REPLY_LINE {
                return Some(Err(ReplyError::LineTooLong {
                    limit: MAX_REPLY_LINE,
                }));
            }
            let mut line = &rest[..nl];
            if let [head @ .., b'\r'] = line {
                line = head;
            }
            let line = String::from_utf8_lossy(line).into_owned();
            self.pos += nl + 1;
            match self.take_line(line) {
                Ok(Some(reply)) => return Some(Ok(reply)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    fn take_line(&mut self, line: String) -> Result<Option<Reply>, ReplyError> {
        let bytes = line.as_bytes();
        if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) || bytes[0] == b'0' {
            return Err(ReplyError::BadCode { line });
        }
        let code: u16 = line[..3]
            .parse()
            .map_err(|_| ReplyError::BadCode { line: line.clone() })?;
        let (last, text) = match bytes.get(3) {
            None => (true, ""),
            Some(b' ') => (true, &line[4..]),
            Some(b'-') => (false, &line[4..]),
            Some(_) => {
                let found = line[3..].chars().next().unwrap_or(' ');
                return Err(ReplyError::BadSeparator { line, found });
            }
        };
        match self.code {
            Some(first) if first != code => {
                self.code = None;
                self.lines.clear();
                return Err(ReplyError::MixedCodes { first, then: code });
            }
            _ => self.code = Some(code),
        }
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines {
                limit: MAX_REPLY_LINES,
            });
        }
        self.lines.push(text.to_string());
        if !last {
            return Ok(None);
        }
        self.code = None;
        let mut lines = std::mem::take(&mut self.lines);
        let enhanced = strip_enhanced(code, &mut lines);
        Ok(Some(Reply {
            code,
            enhanced,
            lines,
        }))
    }
}

/// Removes an enhanced status code from the start of every line when the
/// first line carries one whose class matches the reply code (RFC 2034).
fn strip_enhanced(code: u16, lines: &mut [String]) -> Option<EnhancedCode> {
    let first = lines.first()?;
    let token = first.split(' ').next()?;
    let enhanced = EnhancedCode::parse(token)?;
    if u16::from(enhanced.0) != code / 100 {
        return None;
    }
    for line in lines.iter_mut() {
        let mut split = line.splitn(2, ' ');
        let head = split.next().unwrap_or("");
        if EnhancedCode::parse(head).is_some() {
            *line = split.next().unwrap_or("").to_string();
        }
    }
    Some(enhanced)
}

/// Parses exactly one complete reply from `bytes` (a convenience for tests
/// and single replies).
pub fn parse_reply(bytes: &[u8]) -> Option<Result<Reply, ReplyError>> {
    let mut parser = ReplyParser::new();
    parser.push(bytes);
    parser.next_reply()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_single_and_multi_line() {
        let cases: &[(Reply, &str)] = &[
            (Reply::new(250, (2, 0, 0), "Ok"), "250 2.0.0 Ok\r\n"),
            (Reply::plain(354, "End data"), "354 End data\r\n"),
            (
                Reply {
                    code: 250,
                    enhanced: None,
                    lines: vec!["mx.test".into(), "PIPELINING".into(), "SIZE 10".into()],
                },
                "250-mx.test\r\n250-PIPELINING\r\n250 SIZE 10\r\n",
            ),
            (
                Reply {
                    code: 550,
                    enhanced: Some(EnhancedCode(5, 1, 1)),
                    lines: vec!["no such".into(), "user".into()],
                },
                "550-5.1.1 no such\r\n550 5.1.1 user\r\n",
            ),
            (
                Reply {
                    code: 250,
                    enhanced: None,
                    lines: vec![],
                },
                "250\r\n",
            ),
            (
                Reply::plain(250, "a\r\n250 forged"),
                "250 a  250 forged\r\n",
            ),
        ];
        for (reply, wire) in cases {
            assert_eq!(
                String::from_utf8_lossy(&reply.to_bytes()),
                *wire,
                "{reply:?}"
            );
        }
    }

    #[test]
    fn parses_replies_table() {
        let cases: &[(&str, u16, Option<EnhancedCode>, &[&str])] = &[
            (
                "250 2.0.0 Ok\r\n",
                250,
                Some(EnhancedCode(2, 0, 0)),
                &["Ok"],
            ),
            ("220 mx ESMTP\r\n", 220, None, &["mx ESMTP"]),
            ("250\r\n", 250, None, &[""]),
            ("354 go\n", 354, None, &["go"]),
            (
                "250-mx.test hi\r\n250-PIPELINING\r\n250 SIZE 100\r\n",
                250,
                None,
                &["mx.test hi", "PIPELINING", "SIZE 100"],
            ),
            (
                "550-5.1.1 no\r\n550 5.1.1 user\r\n",
                550,
                Some(EnhancedCode(5, 1, 1)),
                &["no", "user"],
            ),
            // class mismatch: not an enhanced code
            ("550 2.0.0 odd\r\n", 550, None, &["2.0.0 odd"]),
            (
                "451 4.7.10 x\r\n",
                451,
                Some(EnhancedCode(4, 7, 10)),
                &["x"],
            ),
        ];
        for (wire, code, enhanced, lines) in cases {
            let reply = parse_reply(wire.as_bytes())
                .expect("complete")
                .expect("valid");
            assert_eq!(reply.code, *code, "{wire:?}");
            assert_eq!(reply.enhanced, *enhanced, "{wire:?}");
            assert_eq!(reply.lines, *lines, "{wire:?}");
        }
    }

    #[test]
    fn rejects_bad_replies() {
        let cases: &[(&str, ReplyError)] = &[
            (
                "25 ok\r\n",
                ReplyError::BadCode {
                    line: "25 ok".into(),
                },
            ),
            (
                "abc ok\r\n",
                ReplyError::BadCode {
                    line: "abc ok".into(),
                },
            ),
            (
                "250xok\r\n",
                ReplyError::BadSeparator {
                    line: "250xok".into(),
                    found: 'x',
                },
            ),
            (
                "250-a\r\n251 b\r\n",
                ReplyError::MixedCodes {
                    first: 250,
                    then: 251,
                },
            ),
        ];
        for (wire, err) in cases {
            assert_eq!(
                parse_reply(wire.as_bytes()),
                Some(Err(err.clone())),
                "{wire:?}"
            );
        }
        let long = vec![b'2'; MAX_REPLY_LINE + 2];
        assert_eq!(
            parse_reply(&long),
            Some(Err(ReplyError::LineTooLong {
                limit: MAX_REPLY_LINE
            }))
        );
    }

    #[test]
    fn pipelined_replies_split_anywhere() {
        let wire = b"250 2.1.0 Ok\r\n250-2.1.5 Ok\r\n250 2.1.5 second\r\n354 go\r\n";
        for split in 0..wire.len() {
            let mut parser = ReplyParser::new();
            let mut got = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                parser.push(part);
                while let Some(reply) = parser.next_reply() {
                    got.push(reply.expect("valid"));
                }
            }
            let codes: Vec<u16> = got.iter().map(|r| r.code).collect();
            assert_eq!(codes, [250, 250, 354], "split at {split}");
            assert_eq!(got[1].lines, ["Ok", "second"]);
        }
    }

    #[test]
    fn format_then_parse_round_trips() {
        let reply = Reply {
            code: 452,
            enhanced: Some(EnhancedCode(4, 5, 3)),
            lines: vec!["Too many".into(), "recipients".into()],
        };
        assert_eq!(parse_reply(&reply.to_bytes()), Some(Ok(reply)));
    }
}
