//! Envelope addresses: the `Reverse-path` of MAIL and the `Forward-path` of
//! RCPT, parsed from the command line.
//!
//! Grammar: RFC 5321 section 4.1.2 (`Path`, `Mailbox`, `Local-part`,
//! `Dot-string`, `Quoted-string`, `Domain`, `address-literal`), extended to
//! UTF-8 by RFC 6531 section 3.3. A source route (`@a,@b:`) is accepted and
//! dropped (RFC 5321 section 4.1.1.3 and appendix C). Length limits: local
//! part 64 octets, domain 255, path 256 (RFC 5321 section 4.5.3.1).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// Longest local part, RFC 5321 4.5.3.1.1.
pub(crate) const MAX_LOCAL_PART: usize = 64;
/// Longest domain, RFC 5321 4.5.3.1.2.
pub(crate) const MAX_DOMAIN: usize = 255;
/// Longest path including the angle brackets, RFC 5321 4.5.3.1.3.
pub(crate) const MAX_PATH: usize = 256;

/// The part after `@`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name as written (may hold U-labels under SMTPUTF8).
    Domain(String),
    /// `[192.0.2.1]`
    Ipv4(Ipv4Addr),
    /// `[IPv6:2001:db8::1]`
    Ipv6(Ipv6Addr),
}

impl Host {
    /// The domain in lower case for lookups, `None` for address literals.
    pub(crate) fn domain_lowercase(&self) -> Option<String> {
        match self {
            Host::Domain(d) => Some(d.to_lowercase()),
            _ => None,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(ip) => write!(f, "[{ip}]"),
            Host::Ipv6(ip) => write!(f, "[IPv6:{ip}]"),
        }
    }
}

/// `local-part@host`. The local part is kept exactly as sent (including
/// quotes), because only the destination may interpret it (RFC 5321 2.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    pub local_part: String,
    pub host: Host,
}

impl Mailbox {
    /// True if any part is non-ASCII (needs SMTPUTF8, RFC 6531 3.4).
    pub(crate) fn is_utf8(&self) -> bool {
        !self.local_part.is_ascii() || matches!(&self.host, Host::Domain(d) if !d.is_ascii())
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local_part, self.host)
    }
}

/// The sender: a mailbox, or `<>` for bounces (RFC 5321 4.5.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReversePath {
    Null,
    Mailbox(Mailbox),
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// A recipient: a mailbox, or the bare `<Postmaster>` every server must
/// accept (RFC 5321 4.1.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ForwardPath {
    Postmaster,
    Mailbox(Mailbox),
}

impl fmt::Display for ForwardPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPath::Postmaster => f.write_str("<Postmaster>"),
            ForwardPath::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// What is wrong with a path.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PathError {
    #[error("path must be enclosed in angle brackets")]
    MissingBrackets,
    #[error("path longer than {MAX_PATH} octets")]
    TooLong,
    #[error("null path <> not allowed here")]
    NullNotAllowed,
    #[error("malformed source route")]
    BadSourceRoute,
    #[error("missing @domain")]
    MissingDomain,
    #[error("bad local part {0:?}")]
    BadLocalPart(String),
    #[error("local part longer than {MAX_LOCAL_PART} octets")]
    LocalPartTooLong,
    #[error("bad domain {0:?}")]
    BadDomain(String),
    #[error("bad address literal {0:?}")]
    BadAddressLiteral(String),
}

/// Splits `<path> rest` into the path (with brackets) and what follows.
/// Inside a quoted local part, `>` does not end the path.
pub(crate) fn split_path(input: &str) -> Result<(&str, &str), PathError> {
    if !input.starts_with('<') {
        return Err(PathError::MissingBrackets);
    }
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in input.char_indices().skip(1) {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '>' if !in_quotes => return Ok((&input[..=i], &input[i + 1..])),
            _ => {}
        }
    }
    Err(PathError::MissingBrackets)
}

/// Parses a bracketed reverse path (`<>` allowed).
pub fn parse_reverse_path(path: &str) -> Result<ReversePath, PathError> {
    let inner = unbracket(path)?;
    if inner.is_empty() {
        return Ok(ReversePath::Null);
    }
    parse_route_and_mailbox(inner).map(ReversePath::Mailbox)
}

/// Parses a bracketed forward path (`<Postmaster>` allowed, `<>` not).
pub fn parse_forward_path(path: &str) -> Result<ForwardPath, PathError> {
    let inner = unbracket(path)?;
    if inner.is_empty() {
        return Err(PathError::NullNotAllowed);
    }
    if inner.eq_ignore_ascii_case("postmaster") {
        return Ok(ForwardPath::Postmaster);
    }
    parse_route_and_mailbox(inner).map(ForwardPath::Mailbox)
}

fn unbracket(path: &str) -> Result<&str, PathError> {
    if path.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    path.strip_prefix('<')
        .and_then(|p| p.strip_suffix('>'))
        .ok_or(PathError::MissingBrackets)
}

fn parse_route_and_mailbox(inner: &str) -> Result<Mailbox, PathError> {
    let mailbox = if inner.starts_with('@') {
        // A-d-l ":" Mailbox; the route is ignored (RFC 5321 4.1.1.3).
        let (route, mailbox) = inner.split_once(':').ok_or(PathError::BadSourceRoute)?;
        for hop in route.split(',') {
            let domain = hop.strip_prefix('@').ok_or(PathError::BadSourceRoute)?;
            if !is_domain(domain) {
                return Err(PathError::BadSourceRoute);
            }
        }
        mailbox
    } else {
        inner
    };
    parse_mailbox(mailbox)
}

/// Parses `local-part@domain` (no brackets).
pub(crate) fn parse_mailbox(input: &str) -> Result<Mailbox, PathError> {
    let (local, domain) = split_local(input)?;
    if local.len() > MAX_LOCAL_PART {
        return Err(PathError::LocalPartTooLong);
    }
    let host = parse_host(domain)?;
    Ok(Mailbox {
        local_part: local.to_string(),
        host,
    })
}

/// Splits at the `@` that ends the local part, checking the local part.
fn split_local(input: &str) -> Result<(&str, &str), PathError> {
    if let Some(rest) = input.strip_prefix('"') {
        // Quoted-string: qtextSMTP / quoted-pairSMTP (RFC 5321 4.1.2).
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            if escaped {
                if !(' '..='~').contains(&c) {
                    return Err(PathError::BadLocalPart(input.to_string()));
                }
                escaped = false;
                continue;
            }
            match c {
                '\\' => escaped = true,
                '"' => {
                    let end = i + 2; // opening quote + this one
                    let local = &input[..end];
                    let after = &input[end..];
                    let domain = after.strip_prefix('@').ok_or(PathError::MissingDomain)?;
                    return Ok((local, domain));
                }
                c if is_qtext(c) => {}
                _ => return Err(PathError::BadLocalPart(input.to_string())),
            }
        }
        return Err(PathError::BadLocalPart(input.to_string()));
    }
    let (local, domain) = input.rsplit_once('@').ok_or(PathError::MissingDomain)?;
    let dot_string_ok = !local.is_empty()
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext));
    if !dot_string_ok {
        return Err(PathError::BadLocalPart(local.to_string()));
    }
    Ok((local, domain))
}

/// atext (RFC 5322 3.2.3) plus UTF-8 (RFC 6531 3.3).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// qtextSMTP (RFC 5321 4.1.2) plus UTF-8.
fn is_qtext(c: char) -> bool {
    matches!(c, ' '..='!' | '#'..='[' | ']'..='~') || (!c.is_ascii() && !c.is_control())
}

fn parse_host(domain: &str) -> Result<Host, PathError> {
    if let Some(literal) = domain.strip_prefix('[') {
        let bad = || PathError::BadAddressLiteral(domain.to_string());
        let literal = literal.strip_suffix(']').ok_or_else(bad)?;
        if let Some(v6) = literal
            .get(..5)
            .filter(|tag| tag.eq_ignore_ascii_case("IPv6:"))
            .map(|_| &literal[5..])
        {
            return v6.parse().map(Host::Ipv6).map_err(|_| bad());
        }
        return literal.parse().map(Host::Ipv4).map_err(|_| bad());
    }
    if domain.len() > MAX_DOMAIN || !is_domain(domain) {
        return Err(PathError::BadDomain(domain.to_string()));
    }
    Ok(Host::Domain(domain.to_string()))
}

/// `sub-domain *("." sub-domain)`, sub-domain = Let-dig [Ldh-str], with
/// U-labels allowed (RFC 6531).
pub(crate) fn is_domain(domain: &str) -> bool {
    let let_dig = |c: char| c.is_ascii_alphanumeric() || (!c.is_ascii() && c.is_alphanumeric());
    !domain.is_empty()
        && domain.len() <= MAX_DOMAIN
        && domain.split('.').all(|label| {
            let mut chars = label.chars();
            let first_ok = chars.next().is_some_and(let_dig);
            let last_ok = label.chars().last().is_some_and(let_dig);
            first_ok
                && last_ok
                && label.chars().all(|c| let_dig(c) || c == '-')
                && label.len() <= 63
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(local: &str, domain: &str) -> Mailbox {
        Mailbox {
            local_part: local.into(),
            host: Host::Domain(domain.into()),
        }
    }

    #[test]
    fn reverse_paths() {
        let cases: &[(&str, Result<ReversePath, PathError>)] = &[
            ("<>", Ok(ReversePath::Null)),
            (
                "<a@b.example>",
                Ok(ReversePath::Mailbox(mb("a", "b.example"))),
            ),
            (
                "<@relay.example,@r2.example:joe@x.example>",
                Ok(ReversePath::Mailbox(mb("joe", "x.example"))),
            ),
            (
                "<\"john doe\"@x.example>",
                Ok(ReversePath::Mailbox(mb("\"john doe\"", "x.example"))),
            ),
            (
                "<\"a\\\"b@c\"@x.example>",
                Ok(ReversePath::Mailbox(mb("\"a\\\"b@c\"", "x.example"))),
            ),
            (
                "<first.last+tag@x.example>",
                Ok(ReversePath::Mailbox(mb("first.last+tag", "x.example"))),
            ),
            (
                "<用户@例子.测试>",
                Ok(ReversePath::Mailbox(mb("用户", "例子.测试"))),
            ),
            (
                "<a@[192.0.2.1]>",
                Ok(ReversePath::Mailbox(Mailbox {
                    local_part: "a".into(),
                    host: Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1)),
                })),
            ),
            (
                "<a@[IPv6:2001:db8::1]>",
                Ok(ReversePath::Mailbox(Mailbox {
                    local_part: "a".into(),
                    host: Host::Ipv6("2001:db8::1".parse().expect("ip")),
                })),
            ),
            ("a@b", Err(PathError::MissingBrackets)),
            ("<a@b", Err(PathError::MissingBrackets)),
            ("<ab>", Err(PathError::MissingDomain)),
            ("<a..b@c>", Err(PathError::BadLocalPart("a..b".into()))),
            ("<.a@c>", Err(PathError::BadLocalPart(".a".into()))),
            ("<a b@c>", Err(PathError::BadLocalPart("a b".into()))),
            (
                "<a@-c.example>",
                Err(PathError::BadDomain("-c.example".into())),
            ),
            (
                "<a@c..example>",
                Err(PathError::BadDomain("c..example".into())),
            ),
            ("<a@>", Err(PathError::BadDomain("".into()))),
            (
                "<a@[300.1.1.1]>",
                Err(PathError::BadAddressLiteral("[300.1.1.1]".into())),
            ),
            ("<@relay:>", Err(PathError::MissingDomain)),
            ("<@relay a@b>", Err(PathError::BadSourceRoute)),
            (
                "<\"unterminated@x>",
                Err(PathError::BadLocalPart("\"unterminated@x".into())),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(&parse_reverse_path(input), want, "{input}");
        }
        let long_local = format!("<{}@x.example>", "a".repeat(65));
        assert_eq!(
            parse_reverse_path(&long_local),
            Err(PathError::LocalPartTooLong)
        );
        let long_path = format!("<a@{}>", "b".repeat(300));
        assert_eq!(parse_reverse_path(&long_path), Err(PathError::TooLong));
    }

    #[test]
    fn forward_paths() {
        assert_eq!(
            parse_forward_path("<Postmaster>"),
            Ok(ForwardPath::Postmaster)
        );
        assert_eq!(
            parse_forward_path("<postMASTER>"),
            Ok(ForwardPath::Postmaster)
        );
        assert_eq!(
            parse_forward_path("<postmaster@x.example>"),
            Ok(ForwardPath::Mailbox(mb("postmaster", "x.example")))
        );
        assert_eq!(parse_forward_path("<>"), Err(PathError::NullNotAllowed));
    }

    #[test]
    fn split_path_respects_quotes() {
        assert_eq!(
            split_path("<\"a>b\"@c> SIZE=1"),
            Ok(("<\"a>b\"@c>", " SIZE=1"))
        );
        assert_eq!(split_path("<a@b>"), Ok(("<a@b>", "")));
        assert_eq!(split_path("a@b"), Err(PathError::MissingBrackets));
    }

    #[test]
    fn display_round_trips() {
        for path in [
            "<a@b.example>",
            "<\"x y\"@b.example>",
            "<a@[IPv6:2001:db8::1]>",
            "<>",
        ] {
            let parsed = parse_reverse_path(path).expect("valid");
            assert_eq!(parsed.to_string(), path);
        }
    }
}
