//! The MTA-STS policy file (RFC 8461 section 3.2) and its `mx` patterns
//! (RFC 8461 section 4.1).
//!
//! The parser is strict where the RFC is strict: `version: STSv1`, `mode`
//! and `max_age` (0..=31557600) must each appear exactly once, and at least
//! one `mx` is required unless the mode is `none`. It is lenient where the
//! RFC is lenient: lines end in CRLF or LF, whitespace around keys and values
//! is ignored, blank lines are skipped, and unknown keys (extensions) are
//! ignored (section 3.2: "additional key/value pairs ... MUST be ignored").

use std::fmt;

use serde::{Deserialize, Serialize};

/// Largest `max_age` allowed by RFC 8461 section 3.2 (about one year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// The policy mode (RFC 8461 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// MX hosts that fail the checks must not receive mail.
    Enforce,
    /// Failures are reported (TLSRPT) but mail is still delivered.
    Testing,
    /// The domain has no active policy (used to withdraw a policy).
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `mx` pattern: an exact host name or `*.` followed by a domain, which
/// matches exactly one extra left-most label (RFC 8461 section 4.1).
/// Stored lower case, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MxPattern {
    /// Lower case, no trailing dot, without the `*.` prefix.
    base: String,
    wildcard: bool,
}

impl MxPattern {
    /// Parses a pattern such as `mail.example.com` or `*.example.com`.
    pub fn parse(text: &str) -> Result<MxPattern, InvalidMxPattern> {
        let bad = |why: &'static str| InvalidMxPattern {
            pattern: text.to_string(),
            why,
        };
        let trimmed = text.trim();
        let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
        let (wildcard, base) = match trimmed.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        if base.is_empty() {
            return Err(bad("empty host name"));
        }
        for label in base.split('.') {
            if label.is_empty() {
                return Err(bad("empty label"));
            }
            if label.len() > 63 {
                return Err(bad("label longer than 63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(bad("only letters, digits, '-' and '_' are allowed in a label (a '*' only as the whole first label)"));
            }
        }
        Ok(MxPattern {
            base: base.to_ascii_lowercase(),
            wildcard,
        })
    }

    /// Whether `host` (an MX host name, any case, trailing dot allowed) is
    /// covered by this pattern.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        if !self.wildcard {
            return host.eq_ignore_ascii_case(&self.base);
        }
        // `*.example.com` covers `x.example.com`: one non-empty label, a dot,
        // then the base. Never the base itself, never two extra labels.
        // Compared as bytes: a host name from DNS may hold any byte.
        let (h, b) = (host.as_bytes(), self.base.as_bytes());
        if h.len() < b.len() + 2 {
            return false;
        }
        let (first, rest) = h.split_at(h.len() - b.len() - 1);
        !first.contains(&b'.') && rest[0] == b'.' && rest[1..].eq_ignore_ascii_case(b)
    }

    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }
}

impl fmt::Display for MxPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.base)
    }
}

impl TryFrom<String> for MxPattern {
    type Error = InvalidMxPattern;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        MxPattern::parse(&value)
    }
}

impl From<MxPattern> for String {
    fn from(value: MxPattern) -> Self {
        value.to_string()
    }
}

/// An `mx` value that is not a host name pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid mx pattern {pattern:?}: {why}")]
pub struct InvalidMxPattern {
    pub pattern: String,
    pub why: &'static str,
}

/// A parsed, valid policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub mode: Mode,
    /// Seconds the policy may be cached (RFC 8461 section 3.2).
    pub max_age: u64,
    /// The allowed MX patterns, in file order (empty only for mode `none`).
    pub mx: Vec<MxPattern>,
}

impl Policy {
    /// Parses a policy body as served at `/.well-known/mta-sts.txt`.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let mut version_seen = false;
        let mut mode: Option<Mode> = None;
        let mut max_age: Option<u64> = None;
        let mut mx = Vec::new();

        for (index, raw) in text.split('\n').enumerate() {
            let line_no = index + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.trim().is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(PolicyError::NotKeyValue {
                    line: line_no,
                    text: truncate(line),
                });
            };
            let (key, value) = (key.trim(), value.trim());
            match key {
                "version" => {
                    if version_seen {
                        return Err(PolicyError::Duplicate {
                            line: line_no,
                            key: "version",
                        });
                    }
                    if value != "STSv1" {
                        return Err(PolicyError::BadVersion {
                            line: line_no,
                            found: truncate(value),
                        });
                    }
                    version_seen = true;
                }
                "mode" => {
                    if mode.is_some() {
                        return Err(PolicyError::Duplicate {
                            line: line_no,
                            key: "mode",
                        });
                    }
                    mode = Some(match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => {
                            return Err(PolicyError::BadMode {
                                line: line_no,
                                found: truncate(other),
                            })
                        }
                    });
                }
                "max_age" => {
                    if max_age.is_some() {
                        return Err(PolicyError::Duplicate {
                            line: line_no,
                            key: "max_age",
                        });
                    }
                    // Section 3.2: 1*10DIGIT, at most 31557600.
                    let parsed = if !value.is_empty()
                        && value.len() <= 10
                        && value.bytes().all(|b| b.is_ascii_digit())
                    {
                        value.parse::<u64>().ok()
                    } else {
                        None
                    };
                    match parsed {
                        Some(v) if v <= MAX_AGE_LIMIT => max_age = Some(v),
                        _ => {
                            return Err(PolicyError::BadMaxAge {
                                line: line_no,
                                found: truncate(value),
                            })
                        }
                    }
                }
                "mx" => {
                    let pattern = MxPattern::parse(value).map_err(|source| PolicyError::BadMx {
                        line: line_no,
                        source,
                    })?;
                    mx.push(pattern);
                }
                // Unknown keys are extensions; section 3.2 says ignore them.
                _ => {}
            }
        }

        if !version_seen {
            return Err(PolicyError::Missing { key: "version" });
        }
        let mode = mode.ok_or(PolicyError::Missing { key: "mode" })?;
        let max_age = max_age.ok_or(PolicyError::Missing { key: "max_age" })?;
        if mx.is_empty() && mode != Mode::None {
            return Err(PolicyError::NoMx { mode });
        }
        Ok(Policy { mode, max_age, mx })
    }

    /// Whether `host` matches one of the policy's `mx` patterns.
    pub fn mx_matches(&self, host: &str) -> bool {
        self.mx.iter().any(|p| p.matches(host))
    }

    /// The policy rendered in the canonical form a policy host serves
    /// (LF line ends; RFC 8461 accepts CRLF or LF).
    pub fn render(&self) -> String {
        let mut out = format!("version: STSv1\nmode: {}\n", self.mode);
        for mx in &self.mx {
            out.push_str(&format!("mx: {mx}\n"));
        }
        out.push_str(&format!("max_age: {}\n", self.max_age));
        out
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}

/// Why a policy body was refused (RFC 8461 section 3.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("line {line}: expected `key: value`, found {text:?}")]
    NotKeyValue { line: usize, text: String },
    #[error("line {line}: `{key}` given more than once")]
    Duplicate { line: usize, key: &'static str },
    #[error("line {line}: version must be STSv1, found {found:?}")]
    BadVersion { line: usize, found: String },
    #[error("line {line}: mode must be enforce, testing or none, found {found:?}")]
    BadMode { line: usize, found: String },
    #[error("line {line}: max_age must be an integer from 0 to 31557600, found {found:?}")]
    BadMaxAge { line: usize, found: String },
    #[error("line {line}: {source}")]
    BadMx {
        line: usize,
        #[source]
        source: InvalidMxPattern,
    },
    #[error("required key `{key}` is missing")]
    Missing { key: &'static str },
    #[error("mode {mode} requires at least one mx")]
    NoMx { mode: Mode },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_policies() {
        let table: &[(&str, Mode, u64, &[&str])] = &[
            (
                "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n",
                Mode::Enforce,
                86400,
                &["mail.example.com"],
            ),
            (
                "version: STSv1\r\nmode: testing\r\nmx: *.example.net\r\nmx: backup.example.org\r\nmax_age: 604800\r\n",
                Mode::Testing,
                604800,
                &["*.example.net", "backup.example.org"],
            ),
            // mode none needs no mx; no final newline.
            ("version: STSv1\nmode: none\nmax_age: 0", Mode::None, 0, &[]),
            // whitespace, blank lines, unknown keys, key order.
            (
                "  max_age :31557600 \n\nmx:\tMX.Example.COM.\nfoo: bar: baz\nmode: enforce\nversion:STSv1\n",
                Mode::Enforce,
                31_557_600,
                &["mx.example.com"],
            ),
        ];
        for (text, mode, max_age, mx) in table {
            let policy = Policy::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(policy.mode, *mode, "{text:?}");
            assert_eq!(policy.max_age, *max_age, "{text:?}");
            let got: Vec<String> = policy.mx.iter().map(|p| p.to_string()).collect();
            assert_eq!(got, *mx, "{text:?}");
            // Rendering and parsing again gives the same policy.
            assert_eq!(Policy::parse(&policy.render()).as_ref(), Ok(&policy));
        }
    }

    #[test]
    fn invalid_policies() {
        let table: &[(&str, PolicyError)] = &[
            (
                "version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n",
                PolicyError::BadVersion {
                    line: 1,
                    found: "STSv2".into(),
                },
            ),
            (
                "mode: enforce\nmx: a.b\nmax_age: 1\n",
                PolicyError::Missing { key: "version" },
            ),
            (
                "version: STSv1\nmx: a.b\nmax_age: 1\n",
                PolicyError::Missing { key: "mode" },
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a.b\n",
                PolicyError::Missing { key: "max_age" },
            ),
            (
                "version: STSv1\nmode: Enforce\nmx: a.b\nmax_age: 1\n",
                PolicyError::BadMode {
                    line: 2,
                    found: "Enforce".into(),
                },
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 31557601\n",
                PolicyError::BadMaxAge {
                    line: 4,
                    found: "31557601".into(),
                },
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1\n",
                PolicyError::BadMaxAge {
                    line: 4,
                    found: "-1".into(),
                },
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 99999999999\n",
                PolicyError::BadMaxAge {
                    line: 4,
                    found: "99999999999".into(),
                },
            ),
            (
                "version: STSv1\nmode: enforce\nmode: testing\nmx: a.b\nmax_age: 1\n",
                PolicyError::Duplicate {
                    line: 3,
                    key: "mode",
                },
            ),
            (
                "version: STSv1\nversion: STSv1\nmode: enforce\nmx: a.b\nmax_age: 1\n",
                PolicyError::Duplicate {
                    line: 2,
                    key: "version",
                },
            ),
            (
                "version: STSv1\nmode: enforce\nmax_age: 1\nmax_age: 2\nmx: a.b\n",
                PolicyError::Duplicate {
                    line: 4,
                    key: "max_age",
                },
            ),
            (
                "version: STSv1\nmode: testing\nmax_age: 1\n",
                PolicyError::NoMx {
                    mode: Mode::Testing,
                },
            ),
            (
                "version: STSv1\nmode: enforce\njunk\nmx: a.b\nmax_age: 1\n",
                PolicyError::NotKeyValue {
                    line: 3,
                    text: "junk".into(),
                },
            ),
            (
                "<html><body>hello</body></html>",
                PolicyError::NotKeyValue {
                    line: 1,
                    text: "<html><body>hello</body></html>".into(),
                },
            ),
        ];
        for (text, want) in table {
            assert_eq!(Policy::parse(text).as_ref(), Err(want), "{text:?}");
        }
        // Bad mx patterns carry their line.
        for bad in ["*", "*.", "a..b", "mail.*.com", "**.a.b", "a b.c", ""] {
            let text = format!("version: STSv1\nmode: enforce\nmx: {bad}\nmax_age: 1\n");
            match Policy::parse(&text) {
                Err(PolicyError::BadMx { line: 3, .. }) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn mx_pattern_matching() {
        let table: &[(&str, &str, bool)] = &[
            ("mail.example.com", "mail.example.com", true),
            ("mail.example.com", "MAIL.Example.Com", true),
            ("mail.example.com", "mail.example.com.", true),
            ("mail.example.com.", "mail.example.com", true),
            ("mail.example.com", "mail2.example.com", false),
            ("mail.example.com", "x.mail.example.com", false),
            ("*.example.com", "mx1.example.com", true),
            ("*.example.com", "MX1.EXAMPLE.COM.", true),
            ("*.Example.COM", "mx1.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "a.b.example.com", false),
            ("*.example.com", ".example.com", false),
            ("*.example.com", "xexample.com", false),
            ("*.example.com", "mx1.example.org", false),
            ("*.example.com", "mx1.notexample.com", false),
        ];
        for (pattern, host, want) in table {
            let p = MxPattern::parse(pattern).expect(pattern);
            assert_eq!(p.matches(host), *want, "{pattern} vs {host}");
        }
    }
}
