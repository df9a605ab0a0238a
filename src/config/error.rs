//! Configuration errors: each names the file, the line and column, and what
//! is wrong, so an operator can fix every problem in one pass.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use crate::policy::level::UnknownWord;
use crate::policy::{Direction, DomainName, NameError, PeerMatcher, PolicyRule, SecurityLevel};

/// A position in a configuration file, both 1-based; the column counts characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The position of byte `offset` in `text` (clamped to the text).
    pub(crate) fn of_offset(text: &str, offset: usize) -> Location {
        let mut end = offset.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &text[..end];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{}: {kind}", match .location { Some(l) => format!("{}:{}", l.line, l.column), None => "?".to_owned() })]
pub struct ConfigError {
    /// The file name, or `<embedded default>`.
    pub file: String,
    /// `None` only for a TOML error the parser could not place.
    pub location: Option<Location>,
    pub kind: ConfigErrorKind,
}

impl ConfigError {
    pub(super) fn at(file: &str, text: &str, span: &Range<usize>, kind: ConfigErrorKind) -> Self {
        ConfigError {
            file: file.to_owned(),
            location: Some(Location::of_offset(text, span.start)),
            kind,
        }
    }

    pub fn line(&self) -> Option<usize> {
        self.location.map(|l| l.line)
    }
}

/// Something valid but risky in a configuration file: printed by `sealpost
/// config check` (and logged at load), never refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{}:{}: warning: {kind}", .location.line, .location.column)]
pub struct ConfigWarning {
    pub file: String,
    pub location: Location,
    pub kind: ConfigWarningKind,
}

/// What is risky.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigWarningKind {
    /// An inbound entry for a sender domain is weaker than the domain's
    /// inbound default. The sender domain is the unauthenticated `MAIL
    /// FROM` domain: anyone may claim it and so get the weaker rule.
    #[error("inbound peer {peer} of {domain} is a sender domain with {entry}, weaker than the inbound default {default}: the MAIL FROM domain is not authenticated, so any client claiming a {peer} sender gets the weaker rule; use the partner's IP addresses or CIDR blocks instead")]
    WeakSenderDomainPeer {
        domain: DomainName,
        peer: PeerMatcher,
        entry: PolicyRule,
        default: PolicyRule,
    },
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// Malformed TOML, an unknown key, a missing key or a value of the wrong type.
    #[error("{0}")]
    Syntax(String),
    /// An unknown level, minimum TLS version or log format.
    #[error("{0}")]
    UnknownWord(#[from] UnknownWord),
    #[error("level `{level}` is outbound only (DANE and MTA-STS authenticate a destination); {direction} policies may use `opportunistic` or `mandatory`")]
    LevelNotAllowed {
        level: SecurityLevel,
        direction: Direction,
    },
    #[error("bad domain name `{given}`: {reason}")]
    BadDomain { given: String, reason: NameError },
    #[error("bad {direction} peer `{given}`: {reason}")]
    BadPeer {
        given: String,
        direction: Direction,
        reason: NameError,
    },
    #[error("outbound peer `{peer}` is an address; outbound peers are recipient domains or `*.domain` wildcards (IP addresses and CIDR blocks are inbound only)")]
    AddressPeerOutbound { peer: PeerMatcher },
    #[error("managed domain `{name}` is configured twice (first at {})", first_at(.first_file, *.first_line))]
    DuplicateDomain {
        name: String,
        first_line: usize,
        /// The file of the first definition, when it is another file.
        first_file: Option<String>,
    },
    #[error(
        "{direction} peer `{peer}` of `{domain}` is configured twice (first at line {first_line})"
    )]
    DuplicatePeer {
        domain: String,
        direction: Direction,
        peer: PeerMatcher,
        first_line: usize,
    },
    #[error("bad listener address `{given}`: {reason} (write `IPv4:port` or `[IPv6]:port`)")]
    BadListenAddress { given: String, reason: String },
    #[error("listener address `{address}` is configured twice (first at line {first_line})")]
    DuplicateListener { address: String, first_line: usize },
    #[error("`listeners` is empty: configure at least one listener, or leave the key out for the default")]
    NoListeners,
    #[error("`{key}` may not be empty")]
    Empty { key: &'static str },
    #[error("bad log level `{given}`: {reason}")]
    BadLogLevel { given: String, reason: String },
    #[error("bad relay source `{given}`: {reason} (write an IP address or a CIDR block)")]
    BadRelaySource { given: String, reason: String },
    #[error("relay source `{source_net}` is configured twice (first at {}, for tenant `{first_tenant}`)", first_at(.first_file, *.first_line))]
    DuplicateRelaySource {
        source_net: String,
        first_tenant: String,
        first_line: usize,
        first_file: Option<String>,
    },
    #[error("tenant `{name}` is configured twice (first at {})", first_at(.first_file, *.first_line))]
    DuplicateTenant {
        name: String,
        first_line: usize,
        first_file: Option<String>,
    },
    #[error("`{given}` is set without `{missing}`: a certificate needs its key and a key its certificate")]
    Unpaired {
        given: &'static str,
        missing: &'static str,
    },
    #[error("a certificate for `{name}` is configured twice (first at line {first_line})")]
    DuplicateSniName { name: String, first_line: usize },
    #[error("cannot read the recipients file {path}: {reason}")]
    RecipientsUnreadable { path: String, reason: String },
    /// A line of a recipients file (the error's file is that file).
    #[error("bad recipient `{given}`: {reason}")]
    BadRecipient { given: String, reason: String },
    #[error("bad MTA-STS mx pattern: {reason}")]
    BadMxPattern { reason: String },
    #[error("MTA-STS mode `{mode}` needs at least one `mx` pattern (RFC 8461 section 3.2)")]
    NoMxPatterns { mode: String },
    #[error(
        "MTA-STS max_age {given} is out of range: 0 to 31557600 seconds (RFC 8461 section 3.2)"
    )]
    BadMaxAge { given: i64 },
    #[error("bad TLSRPT destination: {reason}")]
    BadTlsRpt { reason: String },
    #[error("bad user name `{given}`: {reason}")]
    BadUserName { given: String, reason: &'static str },
    #[error("user `{name}` is configured twice (first at {}, for tenant `{first_tenant}`)", first_at(.first_file, *.first_line))]
    DuplicateUser {
        name: String,
        first_tenant: String,
        first_line: usize,
        first_file: Option<String>,
    },
    #[error("bad password hash: {reason}")]
    BadPasswordHash { reason: String },
    #[error("bad duration `{given}` for `{key}`: write a positive number with a unit, e.g. `30s`, `5m`, `2h`, `5d`")]
    BadDuration { key: &'static str, given: String },
    #[error("`{key}` must be {range}")]
    OutOfRange {
        key: &'static str,
        range: &'static str,
    },
    #[error("bad address `{given}` for `{key}`: write an IP address, optionally with `:port`")]
    BadAddress { key: &'static str, given: String },
    #[error("bad route host `{given}`: {reason} (write `host`, `host:port`, `IPv4:port` or `[IPv6]:port`)")]
    BadRouteHost { given: String, reason: String },
    #[error("route level `{level}` is not allowed: a route to a downstream server is `opportunistic` or `mandatory`")]
    RouteLevel { level: SecurityLevel },
    #[error("route `authenticate = \"webpki\"` requires TLS: write `level = \"mandatory\"` or leave `level` out")]
    RouteAuthenticationLevel,
    #[error("bad `admin.metrics_listen` address `{given}`: {reason} (write `IPv4:port` or `[IPv6]:port`)")]
    BadMetricsListen { given: String, reason: String },
    #[error("bad `admin.group` `{given}`: write a group name or a numeric group id")]
    BadAdminGroup { given: String },
    #[error("cannot read the tenants directory {path}: {reason}")]
    TenantsDirUnreadable { path: String, reason: String },
    #[error("cannot read the tenant file: {reason}")]
    TenantFileUnreadable { reason: String },
    #[error("a tenant file holds one tenant, but this one has {count} `[[tenants]]` tables")]
    TenantFileTenants { count: usize },
    #[error("domain `{domain}` belongs to tenant `{tenant}`, but this file holds tenant `{file_tenant}` (one tenant per file)")]
    ForeignTenant {
        domain: String,
        tenant: String,
        file_tenant: String,
    },
    #[error("`{key}` belongs in the main configuration file, not in a tenant file")]
    NotInTenantFile { key: String },
    #[error(transparent)]
    Cluster(#[from] ClusterConfigError),
    #[error("bad `server.postmaster` address `{given}`: {reason} (write `local@domain`)")]
    BadPostmaster { given: String, reason: String },
}

/// `line N`, or `FILE line N` when the first definition is in another file.
fn first_at(file: &Option<String>, line: usize) -> String {
    match file {
        Some(file) => format!("{file} line {line}"),
        None => format!("line {line}"),
    }
}

impl ConfigErrorKind {
    /// The other file a duplicate's first definition is in, if any.
    pub(crate) fn first_file(&self) -> Option<&str> {
        match self {
            ConfigErrorKind::DuplicateDomain { first_file, .. }
            | ConfigErrorKind::DuplicateRelaySource { first_file, .. }
            | ConfigErrorKind::DuplicateTenant { first_file, .. }
            | ConfigErrorKind::DuplicateUser { first_file, .. } => first_file.as_deref(),
            _ => None,
        }
    }
}

/// Every problem found in one configuration file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read configuration file {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(ConfigErrors),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a = 1\nbé = 2\n";
        let cases = [(0, 1, 1), (4, 1, 5), (6, 2, 1), (9, 2, 3), (99, 3, 1)];
        for (offset, line, column) in cases {
            assert_eq!(
                Location::of_offset(text, offset),
                Location { line, column },
                "{offset}"
            );
        }
    }
}

/// What is wrong in `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterConfigError {
    #[error("`cluster.redis` is required in `[cluster]` (e.g. `redis://10.0.0.5:6379`)")]
    NoRedis,
    #[error("bad `cluster.redis` URL `{given}`: {reason} (write `redis://[user:password@]host[:port][/db]` or `rediss://...` for TLS)")]
    BadRedisUrl { given: String, reason: String },
    #[error("bad network `{given}` in `cluster.peers`: {reason} (write an address or a CIDR block such as `10.0.5.0/24`)")]
    BadPeer { given: String, reason: String },
    #[error("bad `cluster.node` `{given}`: write 1 to 64 letters, digits, `.`, `-` or `_`")]
    BadNodeName { given: String },
    #[error("`{key}` is {given}: at most 750ms, so that a Redis outage is noticed within 1 s")]
    TimeoutTooLong { key: &'static str, given: String },
    #[error("bad limit for `{key}`: {given}: write {expected}, or `\"local:N\"` for a limit each node keeps alone")]
    BadLimit {
        key: String,
        given: String,
        expected: &'static str,
    },
    #[error("`cluster.tenants.{name}` names no configured `[[tenants]]` entry")]
    UnknownTenant { name: String },
    #[error("`cluster.ca_file` is set but `cluster.redis` is not a `rediss://` (TLS) URL")]
    CaFileWithoutTls,
    #[error("bad destination `{given}` in `cluster.destinations`: write a lowercase domain name or host")]
    BadDestination { given: String },
}
