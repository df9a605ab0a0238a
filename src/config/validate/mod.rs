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
    PeerEntry, PeerMatcher, PolicyRule, PolicySnapshot, RelaySources, SnapshotBuilder, TenantName,
};

mod domains;
pub(super) mod incremental;
mod mta_sts;
mod policy;
mod recipients;
mod tenant_file;
mod tenants;
mod tls;

use domains::DomainChecks;
use policy::{tenant_domains, DomainParts};

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
    // What the load builds lives apart from the server's other values and
    // from the model in force (`crate::memory::in_load_arena`).
    crate::memory::in_load_arena(|| parse_tree_here(text, file, base_dir, tenants))
}

/// [`parse_tree`]'s work, in the arena it chose.
fn parse_tree_here(
    text: &str,
    file: &str,
    base_dir: Option<&Path>,
    tenants: Tenants<'_>,
) -> Result<Config, ConfigErrors> {
    let main_file = read_main(text, file)?;
    let main = Source {
        base: 0,
        name: file.to_owned(),
        text,
    };
    let dir_value = match tenants {
        Tenants::Skip => None,
        _ => main_file.raw.server.tenants_dir.clone(),
    };
    let Some(dir_value) = dir_value else {
        return build(main_file, vec![main], base_dir, &[]).map(|(config, _)| config);
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
                // A syntax error in the main file is its only error, as
                // when its sections were read before the directory.
                let sections = &main_file.sections;
                if let Some(syntax) = first_section_error(file, text, sections, usize::MAX) {
                    return Err(ConfigErrors(vec![syntax]));
                }
                return Err(ConfigErrors(vec![ConfigError::at(
                    file,
                    text,
                    &dir_value.span(),
                    Kind::TenantsDirUnreadable {
                        path: dir.display().to_string(),
                        reason: e.to_string(),
                    },
                )]));
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
        let errors = match build(main_file.clone(), vec![main], base_dir, &files) {
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

/// Validates the main file (its domain sections read here, see
/// [`MainFile`]) with the tenant files added; the configuration and the
/// tenant each file holds.
fn build<'a>(
    main: MainFile<'_>,
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
    };
    // At least one domain per domain section and per tenant file.
    let expected = main.raw.domains.len() + main.sections.len() + files.len();
    let mut domains = v.domain_checks(&main.raw, base_dir, expected);
    v.check_domains(&mut domains, &main.raw.domains);
    // A syntax error in a domain section is the file's only error.
    let mut raw_domains = v.main_file_sections(&mut domains, &main)?;
    domains.end_file();
    let mut raw = main.raw;
    let file_tenants = v.tenant_files(&mut raw, files, &mut domains, &mut raw_domains);
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
    let domains::CheckedDomains {
        policy,
        hosted_mta_sts,
        recipients,
        routes,
    } = v.checked_domains(domains);
    let relay = v.relay_sources(&raw);
    let mta_sts_host = v.mta_sts_host(&raw);
    let users = v.auth_users(&raw);
    let tls = v.tls(&raw, base_dir);
    let delivery = v.delivery(&raw);
    let dns = v.dns(&raw, base_dir);
    let mta_sts = v.mta_sts_client(&raw, base_dir);
    let tenant_limits = v.tenant_limits(&raw);
    let limits = v.limits(&raw);
    let acme = v.acme(&raw, base_dir);
    let tls_reports = v.tls_reports(&raw);
    let tenant_quotas = v.tenant_quotas(&raw, limits.queue_quota);
    let peers = v.cluster_peers(&raw);
    let cluster = v.cluster(&raw, server.as_ref().map(|s| s.hostname.as_str()), base_dir);
    let console = v.console(&raw);
    let console_users = v.console_users(&raw);
    release(raw, raw_domains);
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

/// More domains than this: the raw parse is dropped on a thread of its
/// own ([`crate::memory::drop_in_background`]).
const DROP_IN_BACKGROUND_DOMAINS: usize = 4_096;

/// Frees a checked raw parse and the raw domains read apart from it (the
/// main file's sections, the tenant files'): a large one on a thread of
/// its own, so that a start does not wait for its frees (100,000 domains:
/// about 120 ms).
fn release(raw: RawConfig, read_apart: Vec<Vec<Spanned<RawDomain>>>) {
    let domains = raw.domains.len() + read_apart.iter().map(Vec::len).sum::<usize>();
    if domains > DROP_IN_BACKGROUND_DOMAINS {
        crate::memory::drop_in_background((raw, read_apart));
    }
}

/// Phase one: the main file as written. A file with domain sections (see
/// [`sections`]) is read without them: [`build`] reads them on the other
/// cores while it checks each one (the same result as a whole read, with a
/// fraction of the memory).
#[derive(Clone)]
pub(super) struct MainFile<'t> {
    raw: RawConfig,
    text: &'t str,
    /// The domain sections, still to be read.
    sections: Vec<Range<usize>>,
}

/// The first syntax error, in file order, of the domain `sections` of
/// `text` (the file `file`) that start before `before`; the sections are
/// read on every core.
fn first_section_error(
    file: &str,
    text: &str,
    sections: &[Range<usize>],
    before: usize,
) -> Option<ConfigError> {
    let candidates = &sections[..sections.partition_point(|range| range.start < before)];
    let runs = parallel::in_runs(candidates, SECTIONS_PER_THREAD, |run| {
        (run.iter()).find_map(|range| read_section(text, range).err())
    });
    let (e, base) = runs.into_iter().flatten().next()?;
    Some(syntax_error(file, text, &e, base))
}

/// Reads the main file `text` (named `file` in errors): its prelude
/// deserialized, its domain sections found (not yet read); or its first
/// syntax error, which is then its only error.
fn read_main<'t>(text: &'t str, file: &str) -> Result<MainFile<'t>, ConfigErrors> {
    let whole = || match toml::from_str::<RawConfig>(text) {
        Ok(raw) => Ok(MainFile {
            raw,
            text,
            sections: Vec::new(),
        }),
        Err(e) => Err(ConfigErrors(vec![syntax_error(file, text, &e, 0)])),
    };
    let Some(sections) = sections::split(text).filter(|s| !s.domains.is_empty()) else {
        return whole();
    };
    match toml::from_str::<RawConfig>(&sections.prelude) {
        // `domains = [...]` besides `[[domains]]`: let the whole read say why.
        Ok(raw) if !raw.domains.is_empty() => whole(),
        Ok(raw) => Ok(MainFile {
            raw,
            text,
            sections: sections.domains,
        }),
        // The first error in the file, as a whole read would report: the
        // prelude's, or one of a domain section before it (one with a
        // place: a section's error without one does not come first).
        Err(e) => {
            let prelude = syntax_error(file, text, &e, 0);
            let before = e.span().map_or(0, |s| s.start);
            let section = first_section_error(file, text, &sections.domains, before)
                .filter(|e| e.location.is_some());
            Err(ConfigErrors(vec![section.unwrap_or(prelude)]))
        }
    }
}

/// A syntax error of the file `file` holding `text`, at `base` plus the
/// error's offset in the part of the text that was read.
fn syntax_error(file: &str, text: &str, e: &toml::de::Error, base: usize) -> ConfigError {
    ConfigError {
        file: file.to_owned(),
        location: e.span().map(|s| Location::of_offset(text, base + s.start)),
        kind: Kind::Syntax(e.message().trim().to_owned()),
    }
}

/// Fewer domain sections than this per thread are not worth a thread.
const SECTIONS_PER_THREAD: usize = 512;

/// One domain section's domains, their spans in the file's offsets; the
/// error, with the section's offset.
fn read_section(
    text: &str,
    range: &Range<usize>,
) -> Result<Vec<Spanned<RawDomain>>, (toml::de::Error, usize)> {
    let section: RawDomainSection =
        toml::from_str(&text[range.clone()]).map_err(|e| (e, range.start))?;
    Ok((section.domains.into_iter())
        .map(|d| {
            let span = d.span();
            let shifted = span.start + range.start..span.end + range.start;
            Spanned::new(shifted, d.into_inner().shift(range.start))
        })
        .collect())
}

impl Validator<'_> {
    /// Reads the main file's domain sections on the other cores and checks
    /// each one's domains into `checks` as it comes; the raw domains (to
    /// be freed), or the first syntax error, which is then the only error
    /// (as a whole read of the file would have it).
    fn main_file_sections(
        &mut self,
        checks: &mut DomainChecks<'_>,
        main: &MainFile<'_>,
    ) -> Result<Vec<Vec<Spanned<RawDomain>>>, ConfigErrors> {
        let mut read = Vec::with_capacity(main.sections.len());
        let mut failed = None;
        parallel::streamed(
            &main.sections,
            SECTIONS_PER_THREAD,
            |range| read_section(main.text, range),
            |section| match (section, &failed) {
                (_, Some(_)) => {}
                (Ok(domains), None) => {
                    self.check_domains(checks, &domains);
                    read.push(domains);
                }
                (Err((e, base)), None) => {
                    failed = Some(syntax_error(&self.sources[0].name, main.text, &e, base));
                }
            },
        );
        match failed {
            Some(error) => Err(ConfigErrors(vec![error])),
            None => Ok(read),
        }
    }
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
