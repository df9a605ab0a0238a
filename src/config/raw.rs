//! Phase one: the configuration file as written. Every table denies unknown
//! keys; values whose position an error may need to name are `Spanned`, and
//! words (levels, versions, names) stay strings until validation, so that a
//! bad one is reported with its line together with every other problem.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    pub listeners: Option<Spanned<Vec<Spanned<RawListener>>>>,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub logging: RawLogging,
    #[serde(default)]
    pub defaults: RawDefaults,
    #[serde(default)]
    pub domains: Vec<Spanned<RawDomain>>,
    #[serde(default)]
    pub tenants: Vec<RawTenant>,
    #[serde(default)]
    pub mta_sts_host: RawMtaStsHost,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub delivery: RawDelivery,
    #[serde(default)]
    pub dns: RawDns,
    #[serde(default)]
    pub mta_sts: RawMtaStsClient,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub acme: RawAcme,
    #[serde(default)]
    pub tls_reports: RawTlsReports,
    pub cluster: Option<Spanned<RawCluster>>,
    pub console: Option<Spanned<RawConsole>>,
}

/// `[limits]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub max_message_size: Option<Spanned<i64>>,
    pub max_recipients: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
    pub max_connections_per_ip: Option<Spanned<i64>>,
    pub ipv6_prefix: Option<Spanned<i64>>,
    pub session_deadline: Option<Spanned<String>>,
    pub write_timeout: Option<Spanned<String>>,
    pub max_received_headers: Option<Spanned<i64>>,
    pub max_queue_messages: Option<Spanned<i64>>,
    pub max_queue_bytes: Option<Spanned<i64>>,
    pub min_free_disk: Option<Spanned<i64>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelivery {
    pub smtp_port: Option<u16>,
    pub first_retry: Option<Spanned<String>>,
    pub max_retry_interval: Option<Spanned<String>>,
    pub lifetime: Option<Spanned<String>>,
    pub delay_warning: Option<Spanned<String>>,
    pub connections_per_destination: Option<Spanned<i64>>,
    pub messages_per_connection: Option<Spanned<i64>>,
    pub in_flight_per_tenant: Option<Spanned<i64>>,
    pub in_flight_per_tenant_destination: Option<Spanned<i64>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub destination_backoff: Option<Spanned<String>>,
    pub max_destination_backoff: Option<Spanned<String>>,
    pub command_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    #[serde(default)]
    pub nameservers: Vec<Spanned<String>>,
    pub trust_anchor: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMtaStsClient {
    pub https_port: Option<u16>,
    pub ca_file: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub hosts: Spanned<Vec<Spanned<String>>>,
    pub level: Option<Spanned<String>>,
    pub min_tls: Option<Spanned<String>>,
    pub authenticate: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub certificate: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    #[serde(default)]
    pub sni: Vec<RawSniCertificate>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSniCertificate {
    pub name: Spanned<String>,
    pub certificate: Spanned<String>,
    pub key: Spanned<String>,
}

/// `[mta_sts_host]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMtaStsHost {
    #[serde(default)]
    pub listen: Vec<Spanned<String>>,
}

/// `[domains.mta_sts]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDomainMtaSts {
    pub mode: Spanned<String>,
    #[serde(default)]
    pub mx: Vec<Spanned<String>>,
    pub max_age: Option<Spanned<i64>>,
    pub tlsrpt: Option<Spanned<RawOneOrMany>>,
}

/// A string, or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum RawOneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    pub name: Spanned<String>,
    #[serde(default)]
    pub relay_sources: Vec<Spanned<String>>,
    /// Users that may relay after SMTP AUTH.
    #[serde(default)]
    pub users: Vec<RawUser>,
    /// The tenant's administrators in the web console (`[console]`).
    #[serde(default)]
    pub console_admins: Vec<RawUser>,
    /// This tenant's deliveries under way at most.
    pub max_in_flight: Option<Spanned<i64>>,
    /// This tenant's queue quota (over `[limits]`).
    pub max_queue_messages: Option<Spanned<i64>>,
    pub max_queue_bytes: Option<Spanned<i64>>,
}

/// One `[[tenants]] users` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    pub name: Spanned<String>,
    pub password_hash: Spanned<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub hostname: Option<Spanned<String>>,
    pub data_dir: Option<Spanned<String>>,
    /// Where mail to the bare `<postmaster>` and `postmaster@<hostname>` goes.
    pub postmaster: Option<Spanned<String>>,
    /// One file per tenant in this directory (`super::tenant_files`).
    pub tenants_dir: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub address: Spanned<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub socket: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub metrics_listen: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogging {
    pub format: Option<Spanned<String>>,
    pub level: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub outbound: Option<RawRule>,
    pub inbound: Option<RawRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub level: Spanned<String>,
    pub min_tls: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDomain {
    pub name: Spanned<String>,
    pub tenant: Spanned<String>,
    pub enabled: Option<bool>,
    /// A file of valid recipients, relative to the configuration file.
    pub recipients: Option<Spanned<String>>,
    /// The MTA-STS policy sealpost hosts for the domain.
    pub mta_sts: Option<Spanned<RawDomainMtaSts>>,
    #[serde(default)]
    pub outbound: RawDirection,
    #[serde(default)]
    pub inbound: RawDirection,
    pub route: Option<RawRoute>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDirection {
    pub default: Option<RawRule>,
    #[serde(default)]
    pub peers: Vec<RawPeer>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPeer {
    pub peer: Spanned<String>,
    pub level: Spanned<String>,
    pub min_tls: Option<Spanned<String>>,
    pub enabled: Option<bool>,
}

/// One domain section of a file read in sections (`super::sections`): a
/// `[[domains]]` table and the tables under it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDomainSection {
    #[serde(default)]
    pub domains: Vec<Spanned<RawDomain>>,
}

/// One file of `[server] tenants_dir`: one tenant and its domains.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenantFile {
    #[serde(default)]
    pub tenants: Vec<RawTenant>,
    #[serde(default)]
    pub domains: Vec<Spanned<RawDomain>>,
}

impl RawTenantFile {
    /// Moves every span `by` bytes later (see [`RawDomain::shift`]).
    pub(super) fn shift(self, by: usize) -> Self {
        RawTenantFile {
            tenants: self.tenants.into_iter().map(|t| t.shift(by)).collect(),
            domains: self
                .domains
                .into_iter()
                .map(|d| {
                    let span = d.span();
                    Spanned::new(span.start + by..span.end + by, d.into_inner().shift(by))
                })
                .collect(),
        }
    }
}

impl RawTenant {
    fn shift(self, by: usize) -> Self {
        RawTenant {
            name: shifted(self.name, by),
            relay_sources: self
                .relay_sources
                .into_iter()
                .map(|s| shifted(s, by))
                .collect(),
            users: self.users.into_iter().map(|u| u.shift(by)).collect(),
            console_admins: (self.console_admins.into_iter())
                .map(|u| u.shift(by))
                .collect(),
            max_in_flight: shifted_opt(self.max_in_flight, by),
            max_queue_messages: shifted_opt(self.max_queue_messages, by),
            max_queue_bytes: shifted_opt(self.max_queue_bytes, by),
        }
    }
}

impl RawUser {
    fn shift(self, by: usize) -> Self {
        RawUser {
            name: shifted(self.name, by),
            password_hash: shifted(self.password_hash, by),
        }
    }
}

/// `value` with its span moved `by` bytes later.
fn shifted<T>(value: Spanned<T>, by: usize) -> Spanned<T> {
    let span = value.span();
    Spanned::new(span.start + by..span.end + by, value.into_inner())
}

fn shifted_opt<T>(value: Option<Spanned<T>>, by: usize) -> Option<Spanned<T>> {
    value.map(|v| shifted(v, by))
}

impl RawRule {
    fn shift(self, by: usize) -> Self {
        RawRule {
            level: shifted(self.level, by),
            min_tls: shifted_opt(self.min_tls, by),
        }
    }
}

impl RawDirection {
    fn shift(self, by: usize) -> Self {
        RawDirection {
            default: self.default.map(|r| r.shift(by)),
            peers: self
                .peers
                .into_iter()
                .map(|p| RawPeer {
                    peer: shifted(p.peer, by),
                    level: shifted(p.level, by),
                    min_tls: shifted_opt(p.min_tls, by),
                    enabled: p.enabled,
                })
                .collect(),
        }
    }
}

impl RawDomain {
    /// Moves every span `by` bytes later: a section's offsets become the
    /// file's.
    pub(super) fn shift(self, by: usize) -> Self {
        RawDomain {
            name: shifted(self.name, by),
            tenant: shifted(self.tenant, by),
            enabled: self.enabled,
            recipients: shifted_opt(self.recipients, by),
            mta_sts: self.mta_sts.map(|sts| {
                let span = sts.span();
                let sts = sts.into_inner();
                let sts = RawDomainMtaSts {
                    mode: shifted(sts.mode, by),
                    mx: sts.mx.into_iter().map(|m| shifted(m, by)).collect(),
                    max_age: shifted_opt(sts.max_age, by),
                    tlsrpt: shifted_opt(sts.tlsrpt, by),
                };
                Spanned::new(span.start + by..span.end + by, sts)
            }),
            outbound: self.outbound.shift(by),
            inbound: self.inbound.shift(by),
            route: self.route.map(|route| {
                let span = route.hosts.span();
                let hosts = route
                    .hosts
                    .into_inner()
                    .into_iter()
                    .map(|h| shifted(h, by))
                    .collect();
                RawRoute {
                    hosts: Spanned::new(span.start + by..span.end + by, hosts),
                    level: shifted_opt(route.level, by),
                    min_tls: shifted_opt(route.min_tls, by),
                    authenticate: shifted_opt(route.authenticate, by),
                }
            }),
        }
    }
}

/// `[acme]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcme {
    pub directory: Option<Spanned<String>>,
    #[serde(default)]
    pub contact: Vec<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    #[serde(default)]
    pub addresses: Vec<Spanned<String>>,
    pub renew_before: Option<Spanned<String>>,
    pub orders_per_hour: Option<Spanned<i64>>,
    pub retry_first: Option<Spanned<String>>,
    pub retry_max: Option<Spanned<String>>,
    pub challenge: Option<Spanned<String>>,
    #[serde(default)]
    pub http_listen: Vec<Spanned<String>>,
}

/// `[tls_reports]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTlsReports {
    pub send: Option<bool>,
    pub organization_name: Option<String>,
    pub contact_info: Option<String>,
    pub sender: Option<Spanned<String>>,
    pub jitter: Option<Spanned<String>>,
    pub retention_days: Option<Spanned<i64>>,
    #[serde(default)]
    pub tenants: std::collections::BTreeMap<String, RawTlsReportsTenant>,
}

/// `[tls_reports.tenants.<name>]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTlsReportsTenant {
    pub organization_name: Option<String>,
    pub contact_info: Option<String>,
}

/// `[cluster]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub redis: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub node: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub node_ttl: Option<Spanned<String>>,
    pub lease_ttl: Option<Spanned<String>>,
    /// Networks of the nodes that may hand this node their queue.
    #[serde(default)]
    pub peers: Vec<Spanned<String>>,
    pub connections_per_destination: Option<Spanned<RawLimit>>,
    pub tenant_messages_per_second: Option<Spanned<RawLimit>>,
    pub tenant_destination_messages_per_second: Option<Spanned<RawLimit>>,
    #[serde(default)]
    pub destinations: BTreeMap<String, Spanned<RawLimit>>,
    #[serde(default)]
    pub tenants: BTreeMap<String, Spanned<RawClusterTenant>>,
}

/// `[cluster.tenants.NAME]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClusterTenant {
    pub messages_per_second: Option<Spanned<RawLimit>>,
    pub destination_messages_per_second: Option<Spanned<RawLimit>>,
}

/// A number, or `"local:N"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum RawLimit {
    Integer(i64),
    Float(f64),
    Text(String),
}

/// `[console]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsole {
    #[serde(default)]
    pub listen: Vec<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub operators: Vec<RawUser>,
}
