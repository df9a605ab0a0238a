//! Configuration: a TOML file turned into a validated [`Config`] in two
//! phases (STYLE item 11). [`raw`] deserializes the file as written, with
//! unknown keys denied; [`validate`] checks every value once and produces
//! the typed model, collecting every error (file, line, column, reason).
//! TOML syntax, unknown keys and wrong value types stop the first phase at
//! the first such error; everything else is reported all at once.
//!
//! Keys and defaults: `docs/configuration.md`.

mod acme;
mod cluster;
mod console;
mod delivery;
pub mod edit;
mod error;
mod limits;
mod raw;
mod recipients;
mod sections;
pub mod split;
mod tenant_files;
mod tls_reports;
mod validate;

#[cfg(test)]
mod incremental_tests;
#[cfg(test)]
mod tenant_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) use acme::{AcmeChallenge, AcmeConfig};
pub use cluster::{ClusterConfig, ConnectionLimit, RateLimit, Scope, MAX_CLUSTER_TIMEOUT};
pub(crate) use console::{ConsoleConfig, ConsoleRole, ConsoleUsers};
pub(crate) use delivery::{DeliveryConfig, DnsConfig, MtaStsClientConfig, Route, RouteTls, Routes};
#[cfg(test)]
pub(crate) use error::{ConfigError, ConfigErrorKind, Location};
pub(crate) use error::{ConfigErrors, ConfigWarning, LoadError};
pub(crate) use limits::{LimitsConfig, QueueQuota, MAX_MESSAGE_SIZE_LIMIT};
pub use recipients::RecipientList;
pub(crate) use tenant_files::{version_of, write_atomically, TenantFiles};
pub(crate) use tls_reports::TlsReportsConfig;

use crate::auth::AuthUsers;
use crate::logging::LogFormat;
use crate::mta_sts::HostedPolicy;
use crate::policy::{DomainName, PolicySnapshot, RelaySources};

/// The configuration `sealpost` runs on when no `--config` is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../examples/default.toml");

/// The name errors use for [`EMBEDDED_DEFAULT`].
pub(crate) const EMBEDDED_DEFAULT_NAME: &str = "<embedded default>";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from: a path, or `<embedded default>`.
    pub source: String,
    pub server: ServerConfig,
    /// At least one, no two with the same address.
    pub listeners: Vec<ListenerConfig>,
    pub admin: AdminConfig,
    pub logging: LoggingConfig,
    /// The TLS peer policy: share this `Arc`, replace it on reload.
    pub policy: Arc<PolicySnapshot>,
    /// `[[tenants]]` relay sources: who may relay outbound mail.
    pub relay: Arc<RelaySources>,
    /// `[[domains]] recipients`: the valid recipients of the managed
    /// domains that list them, by lowercase domain name. A domain without
    /// an entry accepts any local part.
    pub recipients: HashMap<String, Arc<RecipientList>>,
    /// `[mta_sts_host]`: where hosted MTA-STS policies are served.
    pub mta_sts_host: MtaStsHostConfig,
    /// `[domains.mta_sts]`: the hosted MTA-STS policies, by lowercase
    /// managed domain name (disabled domains included; see
    /// [`Config::hosted_policies`]).
    pub hosted_mta_sts: HashMap<String, DomainMtaSts>,
    /// `[[tenants]] users`: who may relay after SMTP AUTH (RFC 4954).
    pub users: Arc<AuthUsers>,
    /// `[tls]`: the STARTTLS certificates.
    pub tls: TlsConfig,
    /// `[delivery]`
    pub delivery: DeliveryConfig,
    /// `[dns]`
    pub dns: DnsConfig,
    /// `[mta_sts]`: fetching recipients' policies.
    pub mta_sts: MtaStsClientConfig,
    /// The `route` of each managed domain that has one.
    pub routes: Arc<Routes>,
    /// `[[tenants]] max_in_flight` by tenant name.
    pub tenant_limits: Arc<std::collections::HashMap<String, usize>>,
    /// Each tenant's enabled managed domains (A-labels, sorted), indexed
    /// once per configuration so the engine never walks every domain.
    pub tenant_domains: Arc<std::collections::HashMap<String, Arc<[String]>>>,
    /// `[limits]`: what clients of the SMTP listener may take.
    pub limits: LimitsConfig,
    /// `[acme]`: certificates for the hosted policies' `mta-sts` names.
    pub acme: Option<AcmeConfig>,
    /// `[tls_reports]`: the daily TLS reports sent, retention.
    pub tls_reports: TlsReportsConfig,
    /// `[[tenants]]` queue quotas that differ from `[limits]`.
    pub tenant_quotas: Arc<std::collections::HashMap<String, QueueQuota>>,
    /// `[server] tenants_dir`'s files as read (empty without one).
    pub tenant_files: Arc<TenantFiles>,
    /// `[cluster]`: `None` runs the node alone (nothing shared).
    pub cluster: Option<ClusterConfig>,
    /// `[cluster] peers`: the nodes that may hand this node their queue
    /// with the transfer extension (`docs/cluster.md`); empty: none.
    pub peers: Vec<ipnet::IpNet>,
    /// `[console]`: the web console (`None`: off).
    pub console: Option<ConsoleConfig>,
    /// Who may sign in to the console: `[[console.operators]]` and each
    /// tenant's `console_admins` (read again at reload).
    pub console_users: Arc<ConsoleUsers>,
    /// Valid but risky settings, in file order (`sealpost config check`).
    pub warnings: Vec<ConfigWarning>,
}

/// `[mta_sts_host]`: the HTTPS server of hosted MTA-STS policies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MtaStsHostConfig {
    /// Empty: no policy is served.
    pub listen: Vec<SocketAddr>,
}

/// `[domains.mta_sts]`: the MTA-STS policy sealpost hosts for a managed
/// domain (RFC 8461), and the TLSRPT destinations to publish (RFC 8460).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainMtaSts {
    pub policy: HostedPolicy,
    /// `rua` URIs (`mailto:` or `https:`), checked.
    pub tlsrpt: Vec<String>,
    /// No `tlsrpt` was configured: `tlsrpt` holds the default,
    /// `mailto:tlsrpt@<domain>`.
    pub tlsrpt_is_default: bool,
}

/// A PEM certificate chain and its PEM private key, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePaths {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// `[tls]`: what the SMTP listener presents after STARTTLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// For clients that ask for no other name; `None`: a self-signed
    /// certificate made at first start and kept in the data directory.
    pub default: Option<CertificatePaths>,
    /// Certificates chosen by the SNI host name the client asks for.
    pub sni: Vec<(DomainName, CertificatePaths)>,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The name used in the SMTP greeting and EHLO.
    pub hostname: DomainName,
    /// Queue and caches live here; a relative path in a file is relative to
    /// that file's directory (to the working directory for the embedded default).
    pub data_dir: PathBuf,
    /// Where mail to the bare `<postmaster>` and to `postmaster@<hostname>`
    /// goes (`None`: it is refused, unless the host name is an enabled
    /// managed domain).
    pub postmaster: Option<crate::smtp::Mailbox>,
    /// One file per tenant in this directory (relative: to the file's
    /// directory).
    pub tenants_dir: Option<PathBuf>,
}

/// One `[[listeners]]` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerConfig {
    pub address: SocketAddr,
}

/// `[admin]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// The admin API's Unix socket.
    pub socket: PathBuf,
    /// A group (name or numeric id) whose members may use the socket: it is
    /// then created with mode 0660 and that group; without it, mode 0600.
    pub group: Option<String>,
    /// A read-only TCP listener that serves only `GET /metrics`.
    pub metrics_listen: Option<SocketAddr>,
}

/// `[logging]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    pub format: LogFormat,
    /// A checked `EnvFilter` directive list, e.g. `info`.
    pub level: String,
}

impl Config {
    /// Parses and validates configuration text. `source` names it in errors;
    /// `base_dir` anchors relative paths (`None`: the working directory).
    pub fn parse(
        text: &str,
        source: &str,
        base_dir: Option<&Path>,
    ) -> Result<Config, ConfigErrors> {
        validate::parse(text, source, base_dir)
    }

    /// The queue quota of `tenant`: its own, else `[limits]`'.
    pub(crate) fn queue_quota(&self, tenant: &str) -> QueueQuota {
        self.tenant_quotas
            .get(tenant)
            .copied()
            .unwrap_or(self.limits.queue_quota)
    }

    /// The policies the MTA-STS host serves: one per enabled managed
    /// domain with `[domains.mta_sts]`.
    pub(crate) fn hosted_policies(&self) -> Vec<HostedPolicy> {
        let mut policies: Vec<HostedPolicy> = self
            .hosted_mta_sts
            .iter()
            .filter(|(domain, _)| self.policy.domain(domain).is_some_and(|d| d.enabled))
            .map(|(_, hosted)| hosted.policy.clone())
            .collect();
        policies.sort_by(|a, b| a.domain.cmp(&b.domain));
        policies
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, LoadError> {
        let text = read(path)?;
        Config::parse(&text, &path.display().to_string(), base_of(path)).map_err(LoadError::Invalid)
    }

    /// The main file alone, its `[server] tenants_dir` unread: for
    /// commands that only need the server-wide settings (the admin
    /// socket), which must work while a tenant file is broken.
    pub(crate) fn load_main(path: &Path) -> Result<Config, LoadError> {
        let text = read(path)?;
        validate::parse_tree(
            &text,
            &path.display().to_string(),
            base_of(path),
            validate::Tenants::Skip,
        )
        .map_err(LoadError::Invalid)
    }

    /// Reads the configuration file again, for a reload of `running`: the
    /// main file must be valid as a whole, but a tenant file that changed
    /// and has errors keeps its version in `running` in force (its errors
    /// are in `tenant_files.kept_previous`), and tenant files whose stamp
    /// did not change are not read again.
    ///
    /// When only a few tenant files changed (and the main file did not),
    /// only they are validated, with the main file, and the running
    /// configuration's other parts are shared (`validate::incremental`).
    pub fn reload(path: &Path, running: &Config) -> Result<Config, LoadError> {
        let text = read(path)?;
        let same_source = running.source == path.display().to_string();
        if same_source {
            if let Some(config) = validate::incremental::reload(running, &text, base_of(path)) {
                return Ok(config);
            }
        }
        let previous = same_source.then_some(running.tenant_files.as_ref());
        validate::parse_tree(
            &text,
            &path.display().to_string(),
            base_of(path),
            validate::Tenants::Scan { previous },
        )
        .map_err(LoadError::Invalid)
    }

    /// `running` with the tenant file at `path` holding `text` (created if
    /// absent), validated as a load would (the main file is read again):
    /// an edit through the admin API, before it is written. While the main
    /// file is unchanged, only that file is validated with it, and the
    /// other tenants' parts are shared (`validate::incremental`).
    pub(crate) fn with_tenant_file(
        running: &Config,
        path: &Path,
        text: &str,
    ) -> Result<Config, LoadError> {
        let main = Path::new(&running.source);
        let main_text = read(main)?;
        if let Some(config) =
            validate::incremental::edit(running, &main_text, base_of(main), path, text)
        {
            return Ok(config);
        }
        validate::parse_tree(
            &main_text,
            &running.source,
            base_of(main),
            validate::Tenants::Edit {
                in_force: &running.tenant_files,
                path,
                text,
            },
        )
        .map_err(LoadError::Invalid)
    }

    /// The embedded default configuration ([`EMBEDDED_DEFAULT`]).
    pub fn embedded_default() -> Result<Config, ConfigErrors> {
        Config::parse(EMBEDDED_DEFAULT, EMBEDDED_DEFAULT_NAME, None)
    }

    /// For unit tests: `text` parsed as `test.toml` with no base
    /// directory, panicking with every error.
    #[cfg(test)]
    pub(crate) fn for_test(text: &str) -> Config {
        match Config::parse(text, "test.toml", None) {
            Ok(config) => config,
            Err(errors) => panic!("{errors}"),
        }
    }

    /// `load(path)` or, without a path, the embedded default.
    pub(crate) fn load_or_default(path: Option<&Path>) -> Result<Config, LoadError> {
        match path {
            Some(path) => Config::load(path),
            None => Config::embedded_default().map_err(LoadError::Invalid),
        }
    }
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The directory relative paths in the file at `path` start from.
fn base_of(path: &Path) -> Option<&Path> {
    path.parent().filter(|p| !p.as_os_str().is_empty())
}
