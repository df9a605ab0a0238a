//! Phase two: one pass over the raw file that checks every value, builds
//! the typed [`Config`] and its [`PolicySnapshot`], and collects every
//! error with its position instead of stopping at the first.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use toml::Spanned;

use super::error::{
    ConfigError, ConfigErrorKind as Kind, ConfigErrors, ConfigWarning, ConfigWarningKind, Location,
};
use super::raw::RawOneOrMany;
use super::raw::{RawConfig, RawDirection, RawDomain, RawDomainSection, RawRule};
use super::recipients::RecipientList;
use super::sections;
use super::{
    AdminConfig, CertificatePaths, Config, DomainMtaSts, ListenerConfig, LoggingConfig,
    MtaStsHostConfig, ServerConfig, TlsConfig,
};
use crate::auth::{AuthUser, AuthUsers, PasswordHash};
use crate::logging::{self, LogFormat};
use crate::mta_sts::policy::MAX_AGE_LIMIT;
use crate::mta_sts::{tlsrpt_record, HostedPolicy, Mode, MxPattern};
use crate::policy::level::UnknownWord;
use crate::policy::{
    BuildError, Defaults, Direction, DirectionPolicy, DomainName, ManagedDomain, MinTlsVersion,
    PeerEntry, PeerMatcher, PolicyRule, PolicySnapshot, RelaySources, TenantName,
};

const DEFAULT_HOSTNAME: &str = "localhost";
const DEFAULT_DATA_DIR: &str = "data";
const DEFAULT_LISTENER: &str = "127.0.0.1:2525";
const DEFAULT_ADMIN_SOCKET: &str = "admin.sock";
const DEFAULT_LOG_LEVEL: &str = "info";
/// One week, as RFC 8461 section 3.2 suggests ("weeks or greater").
const DEFAULT_MTA_STS_MAX_AGE: u64 = 604_800;

pub(super) fn parse(
    text: &str,
    file: &str,
    base_dir: Option<&Path>,
) -> Result<Config, ConfigErrors> {
    let raw = read_raw(text, file)?;
    let mut v = Validator {
        file,
        text,
        errors: Vec::new(),
        warnings: Vec::new(),
        tenant_names: HashMap::new(),
        peer_names: HashSet::new(),
    };
    let server = v.server(&raw, base_dir);
    let listeners = v.listeners(&raw);
    let admin_socket = raw
        .admin
        .socket
        .as_ref()
        .map(|s| v.path(s, "admin.socket", base_dir));
    let admin_group = v.admin_group(&raw);
    let metrics_listen = v.metrics_listen(&raw);
    let logging = v.logging(&raw);
    let policy = v.policy(&raw);
    let relay = v.relay_sources(&raw);
    let recipients = v.recipient_lists(&raw, base_dir);
    let mta_sts_host = v.mta_sts_host(&raw);
    let hosted_mta_sts = v.hosted_mta_sts(&raw);
    let users = v.auth_users(&raw);
    let tls = v.tls(&raw, base_dir);
    let delivery = v.delivery(&raw);
    let dns = v.dns(&raw, base_dir);
    let mta_sts = v.mta_sts_client(&raw, base_dir);
    let routes = v.routes(&raw);
    let tenant_limits = v.tenant_limits(&raw);
    let limits = v.limits(&raw);
    let tenant_quotas = v.tenant_quotas(&raw, limits.queue_quota);
    let cluster = v.cluster(&raw, server.as_ref().map(|s| s.hostname.as_str()), base_dir);
    if !v.errors.is_empty() {
        // The configuration file's errors first, then those of the files it names.
        v.errors.sort_by_key(|e| (e.file != file, e.location));
        return Err(ConfigErrors(v.errors));
    }
    match (server, policy) {
        (Some(server), Some(policy)) => Ok(Config {
            source: file.to_owned(),
            admin: AdminConfig {
                socket: admin_socket.unwrap_or_else(|| server.data_dir.join(DEFAULT_ADMIN_SOCKET)),
                group: admin_group,
                metrics_listen,
            },
            server,
            listeners,
            logging,
            tenant_domains: Arc::new(tenant_domains(&policy)),
            policy: Arc::new(policy),
            relay: Arc::new(relay),
            recipients,
            mta_sts_host,
            hosted_mta_sts,
            users: Arc::new(users),
            tls,
            delivery,
            dns,
            mta_sts,
            routes: Arc::new(routes),
            tenant_limits: Arc::new(tenant_limits),
            limits,
            tenant_quotas: Arc::new(tenant_quotas),
            cluster,
            warnings: v.warnings,
        }),
        // Not reached: a part is missing only when its error was recorded above.
        _ => Err(ConfigErrors(Vec::new())),
    }
}

/// Phase one: the file as written. A file with domain sections is read in
/// sections (see [`sections`]): the same result with a fraction of the
/// memory, and on every core.
fn read_raw(text: &str, file: &str) -> Result<RawConfig, ConfigErrors> {
    let syntax = |e: toml::de::Error, base: usize| ConfigError {
        file: file.to_owned(),
        location: e.span().map(|s| Location::of_offset(text, base + s.start)),
        kind: Kind::Syntax(e.message().trim().to_owned()),
    };
    let whole = || toml::from_str::<RawConfig>(text).map_err(|e| ConfigErrors(vec![syntax(e, 0)]));
    let Some(sections) = sections::split(text).filter(|s| !s.domains.is_empty()) else {
        return whole();
    };
    let prelude = toml::from_str::<RawConfig>(&sections.prelude);
    let domains = read_domain_sections(text, &sections.domains);
    match (prelude, domains) {
        // `domains = [...]` besides `[[domains]]`: let the whole read say why.
        (Ok(raw), _) if !raw.domains.is_empty() => whole(),
        (Ok(mut raw), Ok(domains)) => {
            raw.domains = domains;
            Ok(raw)
        }
        (Err(e), Ok(_)) => Err(ConfigErrors(vec![syntax(e, 0)])),
        (Ok(_), Err((e, base))) => Err(ConfigErrors(vec![syntax(e, base)])),
        // The first in the file, as a whole read would report.
        (Err(a), Err((b, base))) => {
            let (a, b) = (syntax(a, 0), syntax(b, base));
            Err(ConfigErrors(vec![
                if b.location < a.location && b.location.is_some() {
                    b
                } else {
                    a
                },
            ]))
        }
    }
}

/// Fewer domain sections than this per thread are not worth a thread.
const SECTIONS_PER_THREAD: usize = 512;

/// Deserializes the domain sections, in order, one contiguous run per
/// core; the first error in file order, with its section's offset.
fn read_domain_sections(
    text: &str,
    ranges: &[Range<usize>],
) -> Result<Vec<Spanned<RawDomain>>, (toml::de::Error, usize)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = ranges.len().div_ceil(threads).max(SECTIONS_PER_THREAD);
    if ranges.len() <= per_thread {
        return read_section_run(text, ranges);
    }
    std::thread::scope(|scope| {
        let runs: Vec<_> = ranges
            .chunks(per_thread)
            .map(|run| scope.spawn(move || read_section_run(text, run)))
            .collect();
        let mut all = Vec::with_capacity(ranges.len());
        for run in runs {
            match run.join() {
                Ok(domains) => all.append(&mut domains?),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(all)
    })
}

fn read_section_run(
    text: &str,
    ranges: &[Range<usize>],
) -> Result<Vec<Spanned<RawDomain>>, (toml::de::Error, usize)> {
    let mut domains = Vec::with_capacity(ranges.len());
    for range in ranges {
        let section: RawDomainSection =
            toml::from_str(&text[range.clone()]).map_err(|e| (e, range.start))?;
        domains.extend(section.domains.into_iter().map(|d| {
            let span = d.span();
            let shifted = span.start + range.start..span.end + range.start;
            Spanned::new(shifted, d.into_inner().shift(range.start))
        }));
    }
    Ok(domains)
}

/// Each tenant's enabled managed domains, sorted.
fn tenant_domains(
    policy: &crate::policy::PolicySnapshot,
) -> std::collections::HashMap<String, Arc<[String]>> {
    let mut by_tenant: std::collections::HashMap<String, Vec<String>> =
        std::collections::HashMap::new();
    for domain in policy.domains().iter().filter(|d| d.enabled) {
        by_tenant
            .entry(domain.tenant.as_str().to_string())
            .or_default()
            .push(domain.name.as_str().to_string());
    }
    by_tenant
        .into_iter()
        .map(|(tenant, mut domains)| {
            domains.sort();
            (tenant, Arc::from(domains))
        })
        .collect()
}

/// Positions of the values a policy build error may point back to.
struct DomainSpans {
    name: Range<usize>,
    outbound: DirectionSpans,
    inbound: DirectionSpans,
}

#[derive(Default)]
struct DirectionSpans {
    default_level: Option<Range<usize>>,
    /// (peer, level) per entry kept in the model, in model order.
    peers: Vec<(Range<usize>, Range<usize>)>,
}

impl DomainSpans {
    fn direction(&self, direction: Direction) -> &DirectionSpans {
        match direction {
            Direction::Outbound => &self.outbound,
            Direction::Inbound => &self.inbound,
        }
    }
}

pub(super) struct Validator<'a> {
    file: &'a str,
    text: &'a str,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigWarning>,
    /// One shared name per tenant, however many domains it has.
    tenant_names: HashMap<String, TenantName>,
    /// Peer domains and wildcards, shared by every domain naming them.
    peer_names: HashSet<DomainName>,
}

impl Validator<'_> {
    fn tenant_name(&mut self, name: &str) -> TenantName {
        if let Some(known) = self.tenant_names.get(name) {
            return known.clone();
        }
        let tenant = TenantName::new(name);
        self.tenant_names.insert(name.to_owned(), tenant.clone());
        tenant
    }

    /// `matcher` with its name shared with earlier entries naming the same.
    fn shared_peer_name(&mut self, matcher: PeerMatcher) -> PeerMatcher {
        let share = |names: &mut HashSet<DomainName>, name: DomainName| match names.get(&name) {
            Some(known) => known.clone(),
            None => {
                names.insert(name.clone());
                name
            }
        };
        match matcher {
            PeerMatcher::Domain(name) => PeerMatcher::Domain(share(&mut self.peer_names, name)),
            PeerMatcher::Wildcard(name) => PeerMatcher::Wildcard(share(&mut self.peer_names, name)),
            other => other,
        }
    }

    pub(super) fn error(&mut self, span: &Range<usize>, kind: Kind) {
        self.errors
            .push(ConfigError::at(self.file, self.text, span, kind));
    }

    fn line(&self, span: &Range<usize>) -> usize {
        Location::of_offset(self.text, span.start).line
    }

    pub(super) fn word<T: FromStr<Err = UnknownWord>>(
        &mut self,
        value: &Spanned<String>,
    ) -> Option<T> {
        match value.get_ref().parse() {
            Ok(word) => Some(word),
            Err(e) => {
                self.error(&value.span(), Kind::UnknownWord(e));
                None
            }
        }
    }

    pub(super) fn path(
        &mut self,
        value: &Spanned<String>,
        key: &'static str,
        base_dir: Option<&Path>,
    ) -> PathBuf {
        if value.get_ref().is_empty() {
            self.error(&value.span(), Kind::Empty { key });
        }
        let path = Path::new(value.get_ref());
        match base_dir {
            Some(base) if path.is_relative() => base.join(path),
            _ => path.to_owned(),
        }
    }

    fn server(&mut self, raw: &RawConfig, base_dir: Option<&Path>) -> Option<ServerConfig> {
        let hostname = match &raw.server.hostname {
            Some(h) => h.get_ref().parse().map_err(|reason| {
                self.error(
                    &h.span(),
                    Kind::BadDomain {
                        given: h.get_ref().clone(),
                        reason,
                    },
                )
            }),
            None => DomainName::from_str(DEFAULT_HOSTNAME).map_err(|_| ()),
        };
        let data_dir = match &raw.server.data_dir {
            Some(d) => self.path(d, "server.data_dir", base_dir),
            None => base_dir.map_or_else(
                || PathBuf::from(DEFAULT_DATA_DIR),
                |b| b.join(DEFAULT_DATA_DIR),
            ),
        };
        let postmaster = raw.server.postmaster.as_ref().and_then(|p| {
            let given = p.get_ref().trim();
            let parsed = crate::smtp::address::parse_mailbox(given)
                .map_err(|e| e.to_string())
                .and_then(|m| match m.host.domain_lowercase() {
                    Some(_) => Ok(m),
                    None => Err("the domain must be a name, not an address literal".into()),
                });
            match parsed {
                Ok(mailbox) => Some(mailbox),
                Err(reason) => {
                    self.error(
                        &p.span(),
                        Kind::BadPostmaster {
                            given: given.to_string(),
                            reason,
                        },
                    );
                    None
                }
            }
        });
        Some(ServerConfig {
            hostname: hostname.ok()?,
            data_dir,
            postmaster,
        })
    }

    /// `[admin] group`: a group name or a numeric id (whether the group
    /// exists is checked when the socket is created).
    fn admin_group(&mut self, raw: &RawConfig) -> Option<String> {
        let group = raw.admin.group.as_ref()?;
        let name = group.get_ref().trim();
        if name.is_empty() {
            self.error(&group.span(), Kind::Empty { key: "admin.group" });
            return None;
        }
        if name.contains(|c: char| c == ':' || c.is_whitespace() || c.is_control()) {
            self.error(
                &group.span(),
                Kind::BadAdminGroup {
                    given: name.to_string(),
                },
            );
            return None;
        }
        Some(name.to_string())
    }

    /// `[admin] metrics_listen`: the read-only metrics listener.
    fn metrics_listen(&mut self, raw: &RawConfig) -> Option<SocketAddr> {
        let given = raw.admin.metrics_listen.as_ref()?;
        match given.get_ref().trim().parse::<SocketAddr>() {
            Ok(address) => Some(address),
            Err(e) => {
                self.error(
                    &given.span(),
                    Kind::BadMetricsListen {
                        given: given.get_ref().clone(),
                        reason: e.to_string(),
                    },
                );
                None
            }
        }
    }

    fn tls(&mut self, raw: &RawConfig, base_dir: Option<&Path>) -> TlsConfig {
        let tls = &raw.tls;
        let default = match (&tls.certificate, &tls.key) {
            (Some(certificate), Some(key)) => Some(CertificatePaths {
                certificate: self.path(certificate, "tls.certificate", base_dir),
                key: self.path(key, "tls.key", base_dir),
            }),
            (Some(certificate), None) => {
                self.error(
                    &certificate.span(),
                    Kind::Unpaired {
                        given: "tls.certificate",
                        missing: "tls.key",
                    },
                );
                None
            }
            (None, Some(key)) => {
                self.error(
                    &key.span(),
                    Kind::Unpaired {
                        given: "tls.key",
                        missing: "tls.certificate",
                    },
                );
                None
            }
            (None, None) => None,
        };
        let mut sni: Vec<(DomainName, CertificatePaths)> = Vec::new();
        let mut seen: Vec<(DomainName, Range<usize>)> = Vec::new();
        for entry in &tls.sni {
            let name = match entry.name.get_ref().parse::<DomainName>() {
                Ok(name) => name,
                Err(reason) => {
                    self.error(
                        &entry.name.span(),
                        Kind::BadDomain {
                            given: entry.name.get_ref().clone(),
                            reason,
                        },
                    );
                    continue;
                }
            };
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                let first_line = self.line(first);
                self.error(
                    &entry.name.span(),
                    Kind::DuplicateSniName {
                        name: name.to_string(),
                        first_line,
                    },
                );
                continue;
            }
            seen.push((name.clone(), entry.name.span()));
            let paths = CertificatePaths {
                certificate: self.path(&entry.certificate, "tls.sni.certificate", base_dir),
                key: self.path(&entry.key, "tls.sni.key", base_dir),
            };
            sni.push((name, paths));
        }
        TlsConfig { default, sni }
    }

    /// `[[tenants]] users`: names unique across tenants, hashes parsed.
    fn auth_users(&mut self, raw: &RawConfig) -> AuthUsers {
        let mut users = AuthUsers::default();
        let mut lines: Vec<(String, Range<usize>)> = Vec::new();
        for tenant in &raw.tenants {
            let tenant_name = tenant.name.get_ref().trim();
            for user in &tenant.users {
                let name = user.name.get_ref();
                let reason = if name.is_empty() {
                    Some("it is empty")
                } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    Some("spaces and control characters are not allowed")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    self.error(
                        &user.name.span(),
                        Kind::BadUserName {
                            given: name.clone(),
                            reason,
                        },
                    );
                }
                let hash = PasswordHash::parse(user.password_hash.get_ref()).map_err(|e| {
                    self.error(
                        &user.password_hash.span(),
                        Kind::BadPasswordHash {
                            reason: e.to_string(),
                        },
                    )
                });
                let (Ok(hash), None) = (hash, reason) else {
                    continue;
                };
                if tenant_name.is_empty() {
                    continue; // reported with the tenant
                }
                let inserted = users.insert(AuthUser {
                    name: name.clone(),
                    tenant: TenantName::new(tenant_name),
                    hash,
                });
                match inserted {
                    Ok(()) => lines.push((name.to_ascii_lowercase(), user.name.span())),
                    Err(first) => {
                        let first_line = lines
                            .iter()
                            .find(|(n, _)| *n == name.to_ascii_lowercase())
                            .map_or(0, |(_, span)| self.line(span));
                        self.error(
                            &user.name.span(),
                            Kind::DuplicateUser {
                                name: name.clone(),
                                first_tenant: first.tenant.as_str().to_string(),
                                first_line,
                            },
                        );
                    }
                }
            }
        }
        users
    }

    /// `[mta_sts_host]`: the policy server's listen addresses.
    fn mta_sts_host(&mut self, raw: &RawConfig) -> MtaStsHostConfig {
        let mut listen: Vec<(SocketAddr, Range<usize>)> = Vec::new();
        for given in &raw.mta_sts_host.listen {
            let address = match given.get_ref().parse::<SocketAddr>() {
                Ok(address) => address,
                Err(e) => {
                    self.error(
                        &given.span(),
                        Kind::BadListenAddress {
                            given: given.get_ref().clone(),
                            reason: e.to_string(),
                        },
                    );
                    continue;
                }
            };
            if let Some((_, first)) = listen.iter().find(|(a, _)| *a == address) {
                let first_line = self.line(first);
                self.error(
                    &given.span(),
                    Kind::DuplicateListener {
                        address: address.to_string(),
                        first_line,
                    },
                );
                continue;
            }
            listen.push((address, given.span()));
        }
        MtaStsHostConfig {
            listen: listen.into_iter().map(|(a, _)| a).collect(),
        }
    }

    /// Every `[domains.mta_sts]`: mode, mx patterns, max_age (RFC 8461
    /// section 3.2) and the TLSRPT destinations (RFC 8460 section 3).
    fn hosted_mta_sts(&mut self, raw: &RawConfig) -> HashMap<String, DomainMtaSts> {
        let mut hosted = HashMap::new();
        for domain in &raw.domains {
            let domain = domain.get_ref();
            let Some(sts) = &domain.mta_sts else {
                continue;
            };
            let table_span = sts.span();
            let sts = sts.get_ref();
            let mode = match sts.mode.get_ref().as_str() {
                "enforce" => Some(Mode::Enforce),
                "testing" => Some(Mode::Testing),
                "none" => Some(Mode::None),
                other => {
                    self.error(
                        &sts.mode.span(),
                        Kind::UnknownWord(UnknownWord::new(
                            "MTA-STS mode",
                            other,
                            &["enforce", "testing", "none"],
                        )),
                    );
                    None
                }
            };
            let mut mx = Vec::with_capacity(sts.mx.len());
            for pattern in &sts.mx {
                match MxPattern::parse(pattern.get_ref()) {
                    Ok(p) => mx.push(p),
                    Err(e) => self.error(
                        &pattern.span(),
                        Kind::BadMxPattern {
                            reason: e.to_string(),
                        },
                    ),
                }
            }
            if let Some(mode) = mode {
                if sts.mx.is_empty() && mode != Mode::None {
                    self.error(
                        &table_span,
                        Kind::NoMxPatterns {
                            mode: mode.to_string(),
                        },
                    );
                }
            }
            let max_age = match &sts.max_age {
                None => Some(DEFAULT_MTA_STS_MAX_AGE),
                Some(given) => match u64::try_from(*given.get_ref()) {
                    Ok(age) if age <= MAX_AGE_LIMIT => Some(age),
                    _ => {
                        self.error(
                            &given.span(),
                            Kind::BadMaxAge {
                                given: *given.get_ref(),
                            },
                        );
                        None
                    }
                },
            };
            // A bad domain name is reported with the policy.
            let Ok(name) = domain.name.get_ref().parse::<DomainName>() else {
                continue;
            };
            let (tlsrpt, tlsrpt_is_default) = match &sts.tlsrpt {
                None => (vec![format!("mailto:tlsrpt@{name}")], true),
                Some(given) => {
                    let list = match given.get_ref() {
                        RawOneOrMany::One(uri) => vec![uri.clone()],
                        RawOneOrMany::Many(uris) => uris.clone(),
                    };
                    if let Err(e) = tlsrpt_record(name.as_str(), &list) {
                        self.error(
                            &given.span(),
                            Kind::BadTlsRpt {
                                reason: e.to_string(),
                            },
                        );
                    }
                    (list, false)
                }
            };
            if let (Some(mode), Some(max_age)) = (mode, max_age) {
                hosted.insert(
                    name.as_str().to_string(),
                    DomainMtaSts {
                        policy: HostedPolicy {
                            domain: name.as_str().to_string(),
                            mode,
                            mx,
                            max_age,
                        },
                        tlsrpt,
                        tlsrpt_is_default,
                    },
                );
            }
        }
        hosted
    }

    /// Reads every `[[domains]] recipients` file. A domain whose name is
    /// bad is skipped here (its error is recorded with the policy).
    fn recipient_lists(
        &mut self,
        raw: &RawConfig,
        base_dir: Option<&Path>,
    ) -> HashMap<String, Arc<RecipientList>> {
        let mut lists = HashMap::new();
        for domain in &raw.domains {
            let domain = domain.get_ref();
            let Some(file) = &domain.recipients else {
                continue;
            };
            let path = self.path(file, "domains.recipients", base_dir);
            let Ok(name) = domain.name.get_ref().parse::<DomainName>() else {
                continue;
            };
            if file.get_ref().is_empty() {
                continue;
            }
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) => {
                    self.error(
                        &file.span(),
                        Kind::RecipientsUnreadable {
                            path: path.display().to_string(),
                            reason: e.to_string(),
                        },
                    );
                    continue;
                }
            };
            match RecipientList::parse(&path, &text, name.as_str()) {
                Ok(list) => {
                    lists.insert(name.as_str().to_string(), Arc::new(list));
                }
                Err(bad_lines) => {
                    for bad in bad_lines {
                        self.errors.push(ConfigError {
                            file: path.display().to_string(),
                            location: Some(Location {
                                line: bad.line,
                                column: bad.column,
                            }),
                            kind: Kind::BadRecipient {
                                given: bad.given,
                                reason: bad.reason,
                            },
                        });
                    }
                }
            }
        }
        lists
    }

    fn relay_sources(&mut self, raw: &RawConfig) -> RelaySources {
        let mut relay = RelaySources::default();
        // By name and by network: a scan of the earlier ones would be
        // quadratic in the number of tenants.
        let mut tenants: HashMap<String, Range<usize>> = HashMap::new();
        let mut sources: HashMap<IpNet, (String, Range<usize>)> = HashMap::new();
        for tenant in &raw.tenants {
            let name = tenant.name.get_ref().trim();
            if name.is_empty() {
                self.error(
                    &tenant.name.span(),
                    Kind::Empty {
                        key: "tenants.name",
                    },
                );
                continue;
            }
            if let Some(first) = tenants.get(name) {
                let first_line = self.line(first);
                self.error(
                    &tenant.name.span(),
                    Kind::DuplicateTenant {
                        name: name.to_string(),
                        first_line,
                    },
                );
                continue;
            }
            tenants.insert(name.to_string(), tenant.name.span());
            for source in &tenant.relay_sources {
                let given = source.get_ref().trim();
                let net = match given.parse::<IpNet>() {
                    Ok(net) if net.trunc() == net => Ok(net),
                    Ok(net) => Err(format!(
                        "host bits are set (the network is {})",
                        net.trunc()
                    )),
                    Err(_) => given
                        .parse::<IpAddr>()
                        .map(IpNet::from)
                        .map_err(|e| e.to_string()),
                };
                let net = match net {
                    Ok(net) => net,
                    Err(reason) => {
                        self.error(
                            &source.span(),
                            Kind::BadRelaySource {
                                given: given.to_string(),
                                reason,
                            },
                        );
                        continue;
                    }
                };
                if let Some((first_tenant, first)) = sources.get(&net) {
                    let (first_tenant, first_line) = (first_tenant.clone(), self.line(first));
                    self.error(
                        &source.span(),
                        Kind::DuplicateRelaySource {
                            source_net: net.to_string(),
                            first_tenant,
                            first_line,
                        },
                    );
                    continue;
                }
                sources.insert(net, (name.to_string(), source.span()));
                relay.insert(net, TenantName::new(name));
            }
        }
        relay
    }

    fn listeners(&mut self, raw: &RawConfig) -> Vec<ListenerConfig> {
        let Some(list) = &raw.listeners else {
            return DEFAULT_LISTENER
                .parse()
                .map(|address| vec![ListenerConfig { address }])
                .unwrap_or_default();
        };
        if list.get_ref().is_empty() {
            self.error(&list.span(), Kind::NoListeners);
        }
        let mut seen: Vec<(SocketAddr, Range<usize>)> = Vec::new();
        let mut out = Vec::new();
        for listener in list.get_ref() {
            let raw_addr = &listener.get_ref().address;
            match raw_addr.get_ref().parse::<SocketAddr>() {
                Ok(address) => {
                    if let Some((_, first)) = seen.iter().find(|(a, _)| *a == address) {
                        let first_line = self.line(first);
                        self.error(
                            &raw_addr.span(),
                            Kind::DuplicateListener {
                                address: address.to_string(),
                                first_line,
                            },
                        );
                    } else {
                        seen.push((address, raw_addr.span()));
                        out.push(ListenerConfig { address });
                    }
                }
                Err(e) => self.error(
                    &raw_addr.span(),
                    Kind::BadListenAddress {
                        given: raw_addr.get_ref().clone(),
                        reason: e.to_string(),
                    },
                ),
            }
        }
        out
    }

    fn logging(&mut self, raw: &RawConfig) -> LoggingConfig {
        let format = match &raw.logging.format {
            Some(f) => self.word(f).unwrap_or_default(),
            None => LogFormat::default(),
        };
        let level = match &raw.logging.level {
            Some(l) => {
                if let Err(logging::LoggingError::BadFilter { given, reason }) =
                    logging::parse_filter(l.get_ref())
                {
                    self.error(&l.span(), Kind::BadLogLevel { given, reason });
                }
                l.get_ref().clone()
            }
            None => DEFAULT_LOG_LEVEL.to_owned(),
        };
        LoggingConfig { format, level }
    }

    /// A rule and the span of its level; `None` after recording errors.
    fn rule(&mut self, raw: &RawRule) -> Option<(PolicyRule, Range<usize>)> {
        let level = self.word(&raw.level);
        let min_tls = match &raw.min_tls {
            Some(m) => self.word(m),
            None => Some(MinTlsVersion::Any),
        };
        Some((PolicyRule::new(level?, min_tls?), raw.level.span()))
    }

    fn policy(&mut self, raw: &RawConfig) -> Option<PolicySnapshot> {
        let mut defaults = Defaults::default();
        let mut default_spans = [None, None];
        for (direction, rule) in [
            (Direction::Outbound, &raw.defaults.outbound),
            (Direction::Inbound, &raw.defaults.inbound),
        ] {
            if let Some((rule, span)) = rule.as_ref().and_then(|r| self.rule(r)) {
                match direction {
                    Direction::Outbound => defaults.outbound = rule,
                    Direction::Inbound => defaults.inbound = rule,
                }
                default_spans[direction_slot(direction)] = Some(span);
            }
        }
        let mut domains = Vec::with_capacity(raw.domains.len());
        let mut spans = Vec::with_capacity(raw.domains.len());
        for raw_domain in &raw.domains {
            if let Some((domain, domain_spans)) = self.domain(raw_domain.get_ref()) {
                domains.push(domain);
                spans.push(domain_spans);
            }
        }
        self.weak_sender_domain_peers(&defaults, &domains, &spans);
        match PolicySnapshot::build(defaults, domains) {
            Ok(snapshot) => Some(snapshot),
            Err(build_errors) => {
                for e in build_errors {
                    self.build_error(e, &spans, &default_spans);
                }
                None
            }
        }
    }

    /// Warns about every enabled inbound entry for a sender domain (exact or
    /// wildcard) whose rule is weaker than its domain's inbound default: a
    /// lower level or a lower minimum TLS version. The `MAIL FROM` domain is
    /// a claim, so such an entry lets anyone claiming it skip the default.
    fn weak_sender_domain_peers(
        &mut self,
        defaults: &Defaults,
        domains: &[ManagedDomain],
        spans: &[DomainSpans],
    ) {
        for (domain, spans) in domains.iter().zip(spans) {
            let default = domain.inbound.default.unwrap_or(defaults.inbound);
            for (entry, (peer_span, _)) in domain.inbound.peers.iter().zip(&spans.inbound.peers) {
                let weaker =
                    entry.rule.level < default.level || entry.rule.min_tls < default.min_tls;
                if entry.enabled && !entry.matcher.is_address() && weaker {
                    self.warnings.push(ConfigWarning {
                        file: self.file.to_owned(),
                        location: Location::of_offset(self.text, peer_span.start),
                        kind: ConfigWarningKind::WeakSenderDomainPeer {
                            domain: domain.name.clone(),
                            peer: entry.matcher.clone(),
                            entry: entry.rule,
                            default,
                        },
                    });
                }
            }
        }
    }

    fn domain(&mut self, raw: &RawDomain) -> Option<(ManagedDomain, DomainSpans)> {
        let name = raw.name.get_ref().parse::<DomainName>().map_err(|reason| {
            self.error(
                &raw.name.span(),
                Kind::BadDomain {
                    given: raw.name.get_ref().clone(),
                    reason,
                },
            )
        });
        if raw.tenant.get_ref().trim().is_empty() {
            self.error(
                &raw.tenant.span(),
                Kind::Empty {
                    key: "domains.tenant",
                },
            );
        }
        let (outbound, outbound_spans) = self.direction(&raw.outbound, Direction::Outbound);
        let (inbound, inbound_spans) = self.direction(&raw.inbound, Direction::Inbound);
        let domain = ManagedDomain {
            name: name.ok()?,
            tenant: self.tenant_name(raw.tenant.get_ref()),
            enabled: raw.enabled.unwrap_or(true),
            outbound,
            inbound,
        };
        let spans = DomainSpans {
            name: raw.name.span(),
            outbound: outbound_spans,
            inbound: inbound_spans,
        };
        Some((domain, spans))
    }

    fn direction(
        &mut self,
        raw: &RawDirection,
        direction: Direction,
    ) -> (DirectionPolicy, DirectionSpans) {
        let mut policy = DirectionPolicy::default();
        let mut spans = DirectionSpans::default();
        if let Some((rule, span)) = raw.default.as_ref().and_then(|r| self.rule(r)) {
            policy.default = Some(rule);
            spans.default_level = Some(span);
        }
        for peer in &raw.peers {
            let matcher = peer
                .peer
                .get_ref()
                .parse::<PeerMatcher>()
                .map_err(|reason| {
                    self.error(
                        &peer.peer.span(),
                        Kind::BadPeer {
                            given: peer.peer.get_ref().clone(),
                            direction,
                            reason,
                        },
                    )
                });
            let level = self.word(&peer.level);
            let min_tls = match &peer.min_tls {
                Some(m) => self.word(m),
                None => Some(MinTlsVersion::Any),
            };
            if let (Ok(matcher), Some(level), Some(min_tls)) = (matcher, level, min_tls) {
                policy.peers.push(PeerEntry {
                    matcher: self.shared_peer_name(matcher),
                    rule: PolicyRule::new(level, min_tls),
                    enabled: peer.enabled.unwrap_or(true),
                });
                spans.peers.push((peer.peer.span(), peer.level.span()));
            }
        }
        (policy, spans)
    }

    fn build_error(
        &mut self,
        e: BuildError,
        spans: &[DomainSpans],
        default_spans: &[Option<Range<usize>>; 2],
    ) {
        let (span, kind) = match e {
            BuildError::DuplicateDomain {
                name,
                first,
                second,
            } => (
                spans[second].name.clone(),
                Kind::DuplicateDomain {
                    name: name.to_string(),
                    first_line: self.line(&spans[first].name),
                },
            ),
            BuildError::DuplicatePeer {
                domain,
                domain_name,
                direction,
                peer,
                first,
                second,
            } => {
                let peers = &spans[domain].direction(direction).peers;
                (
                    peers[second].0.clone(),
                    Kind::DuplicatePeer {
                        domain: domain_name.to_string(),
                        direction,
                        peer,
                        first_line: self.line(&peers[first].0),
                    },
                )
            }
            BuildError::LevelNotAllowed {
                domain,
                direction,
                peer,
                rule,
            } => {
                let span = match (domain, peer) {
                    (None, _) => default_spans[direction_slot(direction)].clone(),
                    (Some(d), None) => spans[d].direction(direction).default_level.clone(),
                    (Some(d), Some(p)) => Some(spans[d].direction(direction).peers[p].1.clone()),
                };
                (
                    span.unwrap_or(0..0),
                    Kind::LevelNotAllowed {
                        level: rule.level,
                        direction,
                    },
                )
            }
            BuildError::AddressPeerOutbound {
                domain,
                peer_index,
                peer,
            } => (
                spans[domain].outbound.peers[peer_index].0.clone(),
                Kind::AddressPeerOutbound { peer },
            ),
        };
        self.error(&span, kind);
    }
}

fn direction_slot(direction: Direction) -> usize {
    match direction {
        Direction::Outbound => 0,
        Direction::Inbound => 1,
    }
}
