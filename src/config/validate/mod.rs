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
use super::tenant_files::{self, TenantFile, TenantFiles};
use super::{
    AdminConfig, CertificatePaths, Config, DomainMtaSts, ListenerConfig, LoggingConfig,
    MtaStsHostConfig, ServerConfig, TlsConfig,
};
use crate::auth::{AuthUser, AuthUsers, PasswordHash};
use crate::logging::{self, LogFormat};
use crate::mta_sts::policy::MAX_AGE_LIMIT;
use crate::mta_sts::{tlsrpt_record, HostedPolicy, Mode, MxPattern};
use crate::parallel;
use crate::policy::level::UnknownWord;
use crate::policy::{
    BuildError, Defaults, Direction, DirectionPolicy, DomainName, ManagedDomain, MinTlsVersion,
    PeerEntry, PeerMatcher, PolicyRule, PolicySnapshot, RelaySources, TenantName,
};

pub(super) mod incremental;
mod mta_sts;
mod policy;
mod recipients;
mod tenant_file;
mod tenants;
mod tls;

use policy::tenant_domains;

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
    parse_tree(text, file, base_dir, Tenants::Scan { previous: None })
}

/// Where the tenant files come from (see [`parse_tree`]).
pub(super) enum Tenants<'a> {
    /// Leave `[server] tenants_dir` unread (the main file alone).
    Skip,
    /// Read `[server] tenants_dir`. With `previous` (a reload), a file
    /// whose stamp is unchanged is not read again, and a changed file
    /// with errors is replaced by its version in `previous` (or left out
    /// if it is new); its errors are kept in `TenantFiles::kept_previous`.
    Scan { previous: Option<&'a TenantFiles> },
    /// The files of `in_force`, with `path`'s text replaced by `text`
    /// (created if absent): an edit through the admin API, validated
    /// before it is written.
    Edit {
        in_force: &'a TenantFiles,
        path: &'a Path,
        text: &'a str,
    },
}

/// The main file and, with `[server] tenants_dir`, every tenant file.
pub(super) fn parse_tree(
    text: &str,
    file: &str,
    base_dir: Option<&Path>,
    tenants: Tenants<'_>,
) -> Result<Config, ConfigErrors> {
    let raw = read_raw(text, file)?;
    let main = Source {
        base: 0,
        name: file.to_owned(),
        text,
    };
    let dir_value = match tenants {
        Tenants::Skip => None,
        _ => raw.server.tenants_dir.clone(),
    };
    let Some(dir_value) = dir_value else {
        return build(raw, vec![main], base_dir, &[]).map(|(config, _)| config);
    };
    let dir = match base_dir {
        Some(base) if Path::new(dir_value.get_ref()).is_relative() => {
            base.join(dir_value.get_ref())
        }
        _ => PathBuf::from(dir_value.get_ref()),
    };
    let (mut files, previous) = match tenants {
        Tenants::Skip => (Vec::new(), None),
        Tenants::Scan { previous } => match tenant_files::scan(&dir, previous) {
            Ok(files) => (files, previous),
            Err(e) => {
                return Err(ConfigErrors(vec![ConfigError::at(
                    file,
                    text,
                    &dir_value.span(),
                    Kind::TenantsDirUnreadable {
                        path: dir.display().to_string(),
                        reason: e.to_string(),
                    },
                )]))
            }
        },
        Tenants::Edit {
            in_force,
            path,
            text,
        } => {
            let mut files: Vec<TenantFile> =
                in_force.files.iter().map(|(f, _)| f.clone()).collect();
            let edited = TenantFile {
                path: path.to_owned(),
                stamp: None,
                text: Arc::from(text),
            };
            match files.iter_mut().find(|f| f.path == path) {
                Some(f) => *f = edited,
                None => {
                    files.push(edited);
                    files.sort_by(|a, b| a.path.cmp(&b.path));
                }
            }
            (files, None)
        }
    };
    let mut kept_previous = Vec::new();
    loop {
        let main = Source {
            base: 0,
            name: file.to_owned(),
            text,
        };
        let errors = match build(raw.clone(), vec![main], base_dir, &files) {
            Ok((mut config, tenants)) => {
                let mut tenant_files = TenantFiles::new(
                    Some(dir),
                    files.into_iter().zip(tenants).collect(),
                    kept_previous,
                );
                tenant_files.main_version = Some(tenant_files::version_of(text));
                config.tenant_files = Arc::new(tenant_files);
                return Ok(config);
            }
            Err(errors) => errors,
        };
        // A reload: the changed tenant files the errors name keep their
        // previous version; any other error refuses the whole reload.
        let Some(previous) = previous else {
            return Err(errors);
        };
        // An error is the changed file's it is in; a duplicate whose
        // second place is in an unchanged file is the changed first one's.
        let changed: Vec<(usize, String)> = (0..files.len())
            .filter(|&i| tenant_files::changed(&files[i], Some(previous)))
            .map(|i| (i, files[i].name()))
            .collect();
        let index_of = |name: &str| changed.iter().find(|(_, n)| n == name).map(|(i, _)| *i);
        let mut blamed: Vec<usize> = errors
            .0
            .iter()
            .filter_map(|e| index_of(&e.file).or_else(|| e.kind.first_file().and_then(index_of)))
            .collect();
        blamed.sort_unstable();
        blamed.dedup();
        if blamed.is_empty() {
            return Err(errors);
        }
        for &i in blamed.iter().rev() {
            let name = files[i].name();
            kept_previous.extend(
                (errors.0.iter())
                    .filter(|e| e.file == name || e.kind.first_file() == Some(name.as_str()))
                    .cloned(),
            );
            match tenant_files::previous_version(&files[i].path, Some(previous)) {
                Some(known) => files[i] = known,
                None => {
                    files.remove(i);
                }
            }
        }
    }
}

/// Validates the main file's `raw` with the tenant files added; the
/// configuration and the tenant each file holds.
fn build<'a>(
    mut raw: RawConfig,
    mut sources: Vec<Source<'a>>,
    base_dir: Option<&Path>,
    files: &'a [TenantFile],
) -> Result<(Config, Vec<Option<String>>), ConfigErrors> {
    let file = sources[0].name.clone();
    // Each tenant file gets its own offsets, after the previous file's.
    let mut base = sources[0].text.len() + 1;
    for tenant_file in files {
        sources.push(Source {
            base,
            name: tenant_file.name(),
            text: &tenant_file.text,
        });
        base += tenant_file.text.len() + 1;
    }
    let mut v = Validator {
        sources: &sources,
        errors: Vec::new(),
        warnings: Vec::new(),
        tenant_names: HashMap::new(),
        peer_names: HashSet::new(),
        part_sizes: vec![raw.domains.len()],
    };
    let file_tenants = v.tenant_files(&mut raw, files);
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
    let acme = v.acme(&raw, base_dir);
    let tls_reports = v.tls_reports(&raw);
    let tenant_quotas = v.tenant_quotas(&raw, limits.queue_quota);
    let peers = v.cluster_peers(&raw);
    let cluster = v.cluster(&raw, server.as_ref().map(|s| s.hostname.as_str()), base_dir);
    let console = v.console(&raw);
    let console_users = v.console_users(&raw);
    if !v.errors.is_empty() {
        // The main file's errors first, then the tenant files' in name
        // order, then those of the files they name.
        let order = |name: &str| sources.iter().position(|s| s.name == name);
        v.errors
            .sort_by_key(|e| (order(&e.file).unwrap_or(usize::MAX), e.location));
        v.errors.dedup();
        return Err(ConfigErrors(v.errors));
    }
    match (server, policy) {
        (Some(server), Some(policy)) => Ok((
            Config {
                source: file,
                tenant_files: Arc::default(),
                admin: AdminConfig {
                    socket: admin_socket
                        .unwrap_or_else(|| server.data_dir.join(DEFAULT_ADMIN_SOCKET)),
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
                acme,
                tls_reports,
                tenant_quotas: Arc::new(tenant_quotas),
                cluster,
                peers,
                console,
                console_users: Arc::new(console_users),
                warnings: v.warnings,
            },
            file_tenants,
        )),
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
    let runs = parallel::in_runs(ranges, SECTIONS_PER_THREAD, |run| {
        read_section_run(text, run)
    });
    let mut all = Vec::with_capacity(ranges.len());
    for run in runs {
        all.append(&mut run?);
    }
    Ok(all)
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

/// A file a configuration is read from, placed at `base` in one offset
/// space shared by all of them: a span names one place in one file.
pub(super) struct Source<'a> {
    base: usize,
    name: String,
    text: &'a str,
}

pub(super) struct Validator<'a> {
    /// By `base`, the main file first.
    sources: &'a [Source<'a>],
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigWarning>,
    /// One shared name per tenant, however many domains it has.
    tenant_names: HashMap<String, TenantName>,
    /// Peer domains and wildcards, shared by every domain naming them.
    peer_names: HashSet<DomainName>,
    /// How many `raw.domains` each file holds, the main file first: the
    /// policy snapshot's partitions.
    part_sizes: Vec<usize>,
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
        self.errors.push(ConfigError {
            file: self.source_of(span.start).name.clone(),
            location: Some(self.location(span)),
            kind,
        });
    }

    fn line(&self, span: &Range<usize>) -> usize {
        self.location(span).line
    }

    /// The source holding `offset`.
    fn source_of(&self, offset: usize) -> &Source<'_> {
        let after = self.sources.partition_point(|s| s.base <= offset);
        &self.sources[after.saturating_sub(1)]
    }

    /// Where `span` starts, in its own file.
    fn location(&self, span: &Range<usize>) -> Location {
        let source = self.source_of(span.start);
        Location::of_offset(source.text, span.start - source.base)
    }

    /// The line of an earlier definition at `first`, and its file when
    /// that is not the file of `second`.
    pub(super) fn first_at(
        &self,
        first: &Range<usize>,
        second: &Range<usize>,
    ) -> (Option<String>, usize) {
        let file = self.source_of(first.start);
        let other = (file.base != self.source_of(second.start).base).then(|| file.name.clone());
        (other, self.line(first))
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
        let tenants_dir = raw
            .server
            .tenants_dir
            .as_ref()
            .map(|d| self.path(d, "server.tenants_dir", base_dir));
        Some(ServerConfig {
            tenants_dir,
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
}
