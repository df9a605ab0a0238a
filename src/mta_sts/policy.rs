//! The MTA-STS policy file (RFC 8461 section 3.2) and its `mx` patterns
//! (RFC 8461 section 4.1).
//!
//! The grammar is section 3.2's `sts-policy-record`; how strictly each of
//! its rules is applied is a deliberate choice, documented in
//! `docs/mta-sts.md` and pinned by a table test per rule:
//!
//! | rule | choice |
//! |---|---|
//! | line ends | CRLF or LF (`sts-policy-term`) |
//! | blank or whitespace-only lines | skipped |
//! | whitespace before a key | ignored |
//! | whitespace between key and `:` | ignored |
//! | whitespace around a value | ignored (`sts-policy-field-delim` and trailing `*WSP`) |
//! | key case | exact: `Mode:` is an extension, not `mode` (`%s"mode"`) |
//! | line without `:` or with an empty key | policy refused |
//! | key that is not a valid `sts-policy-ext-name` | policy refused |
//! | unknown (extension) key | ignored (section 3.2) |
//! | `version`, `mode`, `max_age` repeated | the first counts, the rest are ignored, even invalid values (section 3.2: "all entries except for the first SHALL be ignored") |
//! | `mx` repeated | every one counts |
//!
//! Required: `version: STSv1`, `mode`, `max_age` (0..=31557600), and at
//! least one `mx` unless the mode is `none`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Largest `max_age` allowed by RFC 8461 section 3.2 (about one year).
pub(crate) const MAX_AGE_LIMIT: u64 = 31_557_600;

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
/// Stored lower case in A-label form, without a trailing dot: a pattern
/// written with U-labels (`*.bücher.example`, in a fetched policy or in
/// the configuration) is converted with IDNA (UTS 46) when parsed, and a
/// host name with U-labels is converted before matching (section 3.2:
/// patterns and MX names are compared as A-labels).
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
        let base = &*crate::policy::name::to_a_labels(base)
            .map_err(|_| bad("not a valid internationalized domain name (IDNA)"))?;
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
        let Ok(host) = crate::policy::name::to_a_labels(host) else {
            return false;
        };
        let host = &*host;
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
        Policy::parse_noting(text).map(|(policy, _)| policy)
    }

    /// Parses a policy body and also returns the later duplicates of
    /// non-repeated fields that were ignored, for `probe` and the logs.
    pub(crate) fn parse_noting(text: &str) -> Result<(Policy, Vec<IgnoredField>), PolicyError> {
        let mut version: Option<usize> = None;
        let mut mode: Option<(usize, Mode)> = None;
        let mut max_age: Option<(usize, u64)> = None;
        let mut mx = Vec::new();
        let mut ignored = Vec::new();

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
            // Section 3.2: a non-repeated field seen before is ignored whole.
            let first_at = match key {
                "version" => version,
                "mode" => mode.map(|(line, _)| line),
                "max_age" => max_age.map(|(line, _)| line),
                _ => None,
            };
            if let Some(first_line) = first_at {
                ignored.push(IgnoredField {
                    line: line_no,
                    key: key.to_owned(),
                    first_line,
                });
                continue;
            }
            match key {
                "version" => {
                    if value != "STSv1" {
                        return Err(PolicyError::BadVersion {
                            line: line_no,
                            found: truncate(value),
                        });
                    }
                    version = Some(line_no);
                }
                "mode" => {
                    let parsed = match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => {
                            return Err(PolicyError::BadMode {
                                line: line_no,
                                found: truncate(other),
                            })
                        }
                    };
                    mode = Some((line_no, parsed));
                }
                "max_age" => {
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
                        Some(v) if v <= MAX_AGE_LIMIT => max_age = Some((line_no, v)),
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
                // Unknown keys are extensions; section 3.2 says ignore them,
                // but only if they are extension names at all.
                other => {
                    if !is_extension_name(other) {
                        return Err(PolicyError::BadKey {
                            line: line_no,
                            key: truncate(other),
                        });
                    }
                }
            }
        }

        if version.is_none() {
            return Err(PolicyError::Missing { key: "version" });
        }
        let (_, mode) = mode.ok_or(PolicyError::Missing { key: "mode" })?;
        let (_, max_age) = max_age.ok_or(PolicyError::Missing { key: "max_age" })?;
        if mx.is_empty() && mode != Mode::None {
            return Err(PolicyError::NoMx { mode });
        }
        Ok((Policy { mode, max_age, mx }, ignored))
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

/// `sts-policy-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")`
/// (RFC 8461 section 3.2).
fn is_extension_name(key: &str) -> bool {
    key.len() <= 32
        && key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A later occurrence of a non-repeated field, ignored as RFC 8461 section
/// 3.2 requires ("all entries except for the first SHALL be ignored").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IgnoredField {
    /// The line of the ignored occurrence.
    pub line: usize,
    pub key: String,
    /// The line of the occurrence that counts.
    pub first_line: usize,
}

impl fmt::Display for IgnoredField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: `{}` repeated, ignored (the first, on line {}, counts; RFC 8461 section 3.2)",
            self.line, self.key, self.first_line
        )
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
    #[error("line {line}: {key:?} is not a field name (letters, digits, `_`, `-`, `.`; at most 32, starting with a letter or digit)")]
    BadKey { line: usize, key: String },
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
            // An mx pattern in U-labels is matched after IDNA conversion.
            (
                "version: STSv1\nmode: enforce\nmx: *.Bücher.example\nmax_age: 60\n",
                Mode::Enforce,
                60,
                &["*.xn--bcher-kva.example"],
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

    /// Section 3.2: a repeated non-repeated field is ignored, whatever its
    /// value; the first occurrence counts, valid or not. `mx` repeats.
    #[test]
    fn first_occurrence_of_a_non_repeated_field_counts() {
        type Row = (
            &'static str,
            Result<(Mode, u64, usize), PolicyError>,
            &'static [(usize, &'static str, usize)],
        );
        let table: &[Row] = &[
            ("version: STSv1\nmode: enforce\nmode: testing\nmx: a.b\nmax_age: 1\n",
                Ok((Mode::Enforce, 1, 1)), &[(3, "mode", 2)]),
            ("version: STSv1\nmode: none\nmode: enforce\nmax_age: 1\n",
                Ok((Mode::None, 1, 0)), &[(3, "mode", 2)]),
            ("version: STSv1\nmode: enforce\nmax_age: 86400\nmax_age: 2\nmx: a.b\n",
                Ok((Mode::Enforce, 86400, 1)), &[(4, "max_age", 3)]),
            ("version: STSv1\nversion: STSv1\nmode: enforce\nmx: a.b\nmax_age: 1\n",
                Ok((Mode::Enforce, 1, 1)), &[(2, "version", 1)]),
            // A later duplicate is ignored whole: its value is not checked.
            ("version: STSv1\nversion: STSv9\nmode: testing\nmode: sometimes\nmx: a.b\nmax_age: 5\nmax_age: -1\n",
                Ok((Mode::Testing, 5, 1)), &[(2, "version", 1), (4, "mode", 3), (7, "max_age", 6)]),
            // The first counts even when it is the invalid one.
            ("version: STSv1\nmode: sometimes\nmode: enforce\nmx: a.b\nmax_age: 1\n",
                Err(PolicyError::BadMode { line: 2, found: "sometimes".into() }), &[]),
            ("version: STSv1\nmode: enforce\nmx: a.b\nmax_age: x\nmax_age: 1\n",
                Err(PolicyError::BadMaxAge { line: 4, found: "x".into() }), &[]),
            // mx is the repeated field: every occurrence counts.
            ("version: STSv1\nmode: enforce\nmx: a.b\nmx: c.d\nmx: a.b\nmax_age: 1\n",
                Ok((Mode::Enforce, 1, 3)), &[]),
        ];
        for (text, want, want_ignored) in table {
            let got = Policy::parse_noting(text);
            let summary = got
                .as_ref()
                .map(|(p, _)| (p.mode, p.max_age, p.mx.len()))
                .map_err(Clone::clone);
            assert_eq!(&summary, want, "{text:?}");
            let ignored: Vec<(usize, &str, usize)> = got
                .as_ref()
                .map(|(_, i)| {
                    i.iter()
                        .map(|f| (f.line, f.key.as_str(), f.first_line))
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(&ignored, want_ignored, "{text:?}");
        }
    }

    /// One row per grammar rule whose strictness is a choice
    /// (`docs/mta-sts.md`, "How strict the policy grammar is").
    #[test]
    fn grammar_strictness_per_rule() {
        const TAIL: &str = "mode: enforce\nmx: a.b\nmax_age: 1\n";
        let accepted = |e: Result<Policy, PolicyError>| e.map(|p| (p.mode, p.max_age, p.mx.len()));
        type Row = (
            &'static str,
            String,
            Result<(Mode, u64, usize), PolicyError>,
        );
        let table: &[Row] = &[
            (
                "leading whitespace before a key is ignored",
                format!("  version: STSv1\n\t{TAIL}"),
                Ok((Mode::Enforce, 1, 1)),
            ),
            (
                "blank and whitespace-only lines are skipped",
                format!("\nversion: STSv1\r\n\r\n \t\n{TAIL}\n\n"),
                Ok((Mode::Enforce, 1, 1)),
            ),
            (
                "whitespace before the colon is ignored",
                "version : STSv1\nmode\t: enforce\nmx :a.b\nmax_age  :  1\n".to_string(),
                Ok((Mode::Enforce, 1, 1)),
            ),
            (
                "trailing whitespace after a value is ignored",
                format!("version: STSv1 \t\r\n{TAIL}"),
                Ok((Mode::Enforce, 1, 1)),
            ),
            (
                "a valid extension key is ignored",
                format!("version: STSv1\nx-ext.1_a: anything: at all\n{TAIL}"),
                Ok((Mode::Enforce, 1, 1)),
            ),
            (
                "keys are case-sensitive: `Mode` is an extension",
                format!("version: STSv1\nMode: testing\n{TAIL}"),
                Ok((Mode::Enforce, 1, 1)),
            ),
            (
                "a malformed extension key refuses the policy (inner space)",
                format!("version: STSv1\nmy key: v\n{TAIL}"),
                Err(PolicyError::BadKey {
                    line: 2,
                    key: "my key".into(),
                }),
            ),
            (
                "a malformed extension key refuses the policy (leading `-`)",
                format!("version: STSv1\n-x: v\n{TAIL}"),
                Err(PolicyError::BadKey {
                    line: 2,
                    key: "-x".into(),
                }),
            ),
            (
                "a malformed extension key refuses the policy (other character)",
                format!("version: STSv1\n<p>Error: v\n{TAIL}"),
                Err(PolicyError::BadKey {
                    line: 2,
                    key: "<p>Error".into(),
                }),
            ),
            (
                "a malformed extension key refuses the policy (longer than 32)",
                format!("version: STSv1\n{}: v\n{TAIL}", "k".repeat(33)),
                Err(PolicyError::BadKey {
                    line: 2,
                    key: "k".repeat(33),
                }),
            ),
            (
                "an empty key refuses the policy",
                format!("version: STSv1\n: v\n{TAIL}"),
                Err(PolicyError::BadKey {
                    line: 2,
                    key: String::new(),
                }),
            ),
            (
                "a line without a colon refuses the policy",
                format!("version: STSv1\nmode enforce\n{TAIL}"),
                Err(PolicyError::NotKeyValue {
                    line: 2,
                    text: "mode enforce".into(),
                }),
            ),
        ];
        for (rule, text, want) in table {
            assert_eq!(&accepted(Policy::parse(text)), want, "{rule}: {text:?}");
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
            // International names: U-label or A-label on either side.
            ("*.bücher.example", "mx.xn--bcher-kva.example", true),
            ("*.bücher.example", "mx.bücher.example", true),
            ("*.xn--bcher-kva.example", "MX.Bücher.Example.", true),
            ("*.xn--bcher-kva.example", "mx.xn--bcher-kva.example", true),
            ("*.bücher.example", "mx.bucher.example", false),
            ("*.bücher.example", "xn--bcher-kva.example", false),
            ("münchen.example", "xn--mnchen-3ya.example", true),
            ("xn--mnchen-3ya.example", "München.example", true),
            ("mx.münchen.example", "mx.munchen.example", false),
        ];
        for (pattern, host, want) in table {
            let p = MxPattern::parse(pattern).expect(pattern);
            assert_eq!(p.matches(host), *want, "{pattern} vs {host}");
        }
    }
}
