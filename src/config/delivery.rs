//! `[delivery]`, `[dns]`, `[mta_sts]` and the `route` of a managed domain:
//! what the delivery engine needs from the configuration. Validated in the
//! same single pass as the rest (see [`super::validate`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sealpost_queue::RetryPolicy;
use toml::Spanned;

use super::error::ConfigErrorKind as Kind;
use super::raw::{RawConfig, RawDomain, RawRoute};
use super::validate::Validator;
use crate::dns::{ResolverSettings, TrustAnchorSource};
use crate::policy::level::UnknownWord;
use crate::policy::{DomainName, MinTlsVersion, SecurityLevel};

/// `[delivery]`: how the engine delivers queued mail.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryConfig {
    /// The port connected to on MX hosts (25; tests and private networks
    /// may use another). TLSA records are still sought at `_25._tcp`.
    pub smtp_port: u16,
    /// Retry schedule and lifetime of queued mail.
    pub retry: RetryPolicy,
    /// Send the sender a delay notice once a message has waited this long
    /// (`None`: never).
    pub delay_warning: Option<Duration>,
    /// Open connections per destination at most.
    pub connections_per_destination: usize,
    /// Messages carried by one connection before it is closed.
    pub messages_per_connection: u32,
    /// Leases of one tenant in flight at most (its share of the engine).
    pub in_flight_per_tenant: usize,
    /// Leases of one tenant in flight to one next hop at most (waiting
    /// for a connection or under way), so a slow destination cannot take
    /// the tenant's whole `in_flight_per_tenant`.
    pub in_flight_per_tenant_destination: usize,
    /// An idle pooled connection is closed after this long.
    pub idle_timeout: Duration,
    /// The first pause of a destination that could not be reached at all;
    /// doubled on each further failure up to `max_destination_backoff`.
    pub destination_backoff: Duration,
    pub max_destination_backoff: Duration,
    /// Overrides every SMTP client timeout (`None`: RFC 5321 4.5.3.2).
    pub command_timeout: Option<Duration>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            smtp_port: 25,
            retry: RetryPolicy::default(),
            delay_warning: None,
            connections_per_destination: 16,
            messages_per_connection: 100,
            in_flight_per_tenant: 1024,
            in_flight_per_tenant_destination: 64,
            idle_timeout: Duration::from_secs(5),
            destination_backoff: Duration::from_secs(60),
            max_destination_backoff: Duration::from_secs(30 * 60),
            command_timeout: None,
        }
    }
}

/// `[dns]`: the resolvers the delivery engine asks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsConfig {
    /// Empty: the `nameserver` lines of `/etc/resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
    /// A DNSKEY file; `None`: the IANA root keys.
    pub trust_anchor: Option<PathBuf>,
}

impl DnsConfig {
    /// The resolver settings, reading `/etc/resolv.conf` when no servers
    /// are configured (and 127.0.0.1:53 when it names none).
    pub(crate) fn resolver_settings(&self) -> ResolverSettings {
        let nameservers = if self.nameservers.is_empty() {
            let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let found = nameservers_of_resolv_conf(&text);
            if found.is_empty() {
                vec![SocketAddr::from(([127, 0, 0, 1], 53))]
            } else {
                found
            }
        } else {
            self.nameservers.clone()
        };
        let mut settings = ResolverSettings::new(nameservers);
        if let Some(path) = &self.trust_anchor {
            settings.trust_anchor = TrustAnchorSource::DnskeyFile(path.clone());
        }
        settings
    }
}

/// The `nameserver` addresses of a resolv.conf text, port 53.
pub(crate) fn nameservers_of_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then_some(())?;
            let ip = words.next()?.split('%').next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// `[mta_sts]`: fetching recipients' MTA-STS policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtaStsClientConfig {
    /// The HTTPS port of `mta-sts.<domain>` (443; tests use another).
    pub https_port: u16,
    /// Extra PEM roots trusted for policy hosts and MX certificates
    /// besides the Mozilla roots (`None`: only those).
    pub ca_file: Option<PathBuf>,
}

impl Default for MtaStsClientConfig {
    fn default() -> Self {
        MtaStsClientConfig {
            https_port: 443,
            ca_file: None,
        }
    }
}

/// One downstream host of a route: a name or an IP address and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteHost {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for RouteHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `route` of a managed domain: where its inbound mail goes (the
/// customer's own servers, tried in order) and with which TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub hosts: Vec<RouteHost>,
    pub tls: RouteTls,
    pub min_tls: MinTlsVersion,
}

/// The TLS a route's hosts get: `level` and `authenticate` together, so
/// that an authenticated route without TLS cannot be written down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteTls {
    /// `level = "opportunistic"` (the default): STARTTLS when offered.
    Opportunistic,
    /// `level = "mandatory"`: TLS required, any certificate.
    Mandatory,
    /// `authenticate = "webpki"`: TLS required and each host's certificate
    /// valid for the host as written in the route (a name, or an IP
    /// address among the certificate's addresses), under the WebPKI roots
    /// plus `[mta_sts] ca_file`. Such a route carries REQUIRETLS mail.
    WebPki,
}

impl RouteTls {
    /// The security level the route's mail is planned and logged under.
    pub fn level(self) -> SecurityLevel {
        match self {
            RouteTls::Opportunistic => SecurityLevel::Opportunistic,
            RouteTls::Mandatory | RouteTls::WebPki => SecurityLevel::Mandatory,
        }
    }
}

/// `route.authenticate`, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Authenticate {
    None,
    WebPki,
}

impl std::str::FromStr for Authenticate {
    type Err = UnknownWord;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Authenticate::None),
            "webpki" => Ok(Authenticate::WebPki),
            other => Err(UnknownWord::new(
                "route authentication",
                other,
                &["none", "webpki"],
            )),
        }
    }
}

/// Routes by managed domain (lowercase name).
pub(crate) type Routes = HashMap<DomainName, Route>;

/// `"30s"`, `"5m"`, `"2h"`, `"5d"` or a number of seconds.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "ms" => return Some(Duration::from_millis(n)),
        _ => return None,
    };
    n.checked_mul(seconds).map(Duration::from_secs)
}

/// `host`, `host:port`, `IPv4:port`, `[IPv6]:port` or a bare IPv6 address.
fn parse_route_host(text: &str) -> Result<RouteHost, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(RouteHost {
            host: addr.ip().to_string(),
            port: addr.port(),
        });
    }
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok(RouteHost {
            host: ip.to_string(),
            port: 25,
        });
    }
    let (name, port) = match text.rsplit_once(':') {
        Some((name, port)) => (
            name,
            port.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("bad port `{port}`"))?,
        ),
        None => (text, 25),
    };
    let name: DomainName = name.parse().map_err(|e| format!("{e}"))?;
    Ok(RouteHost {
        host: name.as_str().to_string(),
        port,
    })
}

impl Validator<'_> {
    pub(super) fn duration(
        &mut self,
        value: &Spanned<String>,
        key: &'static str,
    ) -> Option<Duration> {
        let parsed = parse_duration(value.get_ref()).filter(|d| !d.is_zero());
        if parsed.is_none() {
            self.error(
                &value.span(),
                Kind::BadDuration {
                    key,
                    given: value.get_ref().clone(),
                },
            );
        }
        parsed
    }

    /// A count of 1 or more (an error otherwise).
    pub(super) fn positive(
        &mut self,
        value: &Option<Spanned<i64>>,
        key: &'static str,
    ) -> Option<usize> {
        let value = value.as_ref()?;
        match usize::try_from(*value.get_ref()) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                self.error(
                    &value.span(),
                    Kind::OutOfRange {
                        key,
                        range: "1 or more",
                    },
                );
                None
            }
        }
    }

    pub(super) fn delivery(&mut self, raw: &RawConfig) -> DeliveryConfig {
        let d = &raw.delivery;
        let mut config = DeliveryConfig::default();
        if let Some(port) = d.smtp_port {
            config.smtp_port = port;
        }
        let set = |v: &mut Self, value: &Option<Spanned<String>>, key, into: &mut Duration| {
            if let Some(value) = value {
                if let Some(parsed) = v.duration(value, key) {
                    *into = parsed;
                }
            }
        };
        set(
            self,
            &d.first_retry,
            "delivery.first_retry",
            &mut config.retry.first_retry,
        );
        set(
            self,
            &d.max_retry_interval,
            "delivery.max_retry_interval",
            &mut config.retry.max_interval,
        );
        set(
            self,
            &d.lifetime,
            "delivery.lifetime",
            &mut config.retry.lifetime,
        );
        set(
            self,
            &d.idle_timeout,
            "delivery.idle_timeout",
            &mut config.idle_timeout,
        );
        set(
            self,
            &d.destination_backoff,
            "delivery.destination_backoff",
            &mut config.destination_backoff,
        );
        set(
            self,
            &d.max_destination_backoff,
            "delivery.max_destination_backoff",
            &mut config.max_destination_backoff,
        );
        if let Some(value) = &d.delay_warning {
            config.delay_warning = self.duration(value, "delivery.delay_warning");
        }
        if let Some(value) = &d.command_timeout {
            config.command_timeout = self.duration(value, "delivery.command_timeout");
        }
        if let Some(n) = self.positive(
            &d.connections_per_destination,
            "delivery.connections_per_destination",
        ) {
            config.connections_per_destination = n;
        }
        if let Some(n) = self.positive(&d.in_flight_per_tenant, "delivery.in_flight_per_tenant") {
            config.in_flight_per_tenant = n;
        }
        if let Some(n) = self.positive(
            &d.in_flight_per_tenant_destination,
            "delivery.in_flight_per_tenant_destination",
        ) {
            config.in_flight_per_tenant_destination = n;
        }
        if let Some(n) = self.positive(
            &d.messages_per_connection,
            "delivery.messages_per_connection",
        ) {
            config.messages_per_connection = u32::try_from(n).unwrap_or(u32::MAX);
        }
        config
    }

    /// `[[tenants]] max_in_flight` by tenant name.
    pub(super) fn tenant_limits(&mut self, raw: &RawConfig) -> HashMap<String, usize> {
        let mut limits = HashMap::new();
        for tenant in &raw.tenants {
            if let Some(n) = self.positive(&tenant.max_in_flight, "tenants.max_in_flight") {
                limits.insert(tenant.name.get_ref().trim().to_string(), n);
            }
        }
        limits
    }

    pub(super) fn dns(&mut self, raw: &RawConfig, base_dir: Option<&Path>) -> DnsConfig {
        let mut nameservers = Vec::new();
        for server in &raw.dns.nameservers {
            let text = server.get_ref();
            let parsed = text.parse::<SocketAddr>().or_else(|_| {
                text.parse::<std::net::IpAddr>()
                    .map(|ip| SocketAddr::new(ip, 53))
            });
            match parsed {
                Ok(addr) => nameservers.push(addr),
                Err(_) => self.error(
                    &server.span(),
                    Kind::BadAddress {
                        key: "dns.nameservers",
                        given: text.clone(),
                    },
                ),
            }
        }
        let trust_anchor = raw
            .dns
            .trust_anchor
            .as_ref()
            .map(|p| self.path(p, "dns.trust_anchor", base_dir));
        DnsConfig {
            nameservers,
            trust_anchor,
        }
    }

    pub(super) fn mta_sts_client(
        &mut self,
        raw: &RawConfig,
        base_dir: Option<&Path>,
    ) -> MtaStsClientConfig {
        MtaStsClientConfig {
            https_port: raw.mta_sts.https_port.unwrap_or(443),
            ca_file: raw
                .mta_sts
                .ca_file
                .as_ref()
                .map(|p| self.path(p, "mta_sts.ca_file", base_dir)),
        }
    }

    /// The `[domains.route]` of one file's `domains`, added to `routes`.
    pub(super) fn routes(&mut self, domains: &[Spanned<RawDomain>], routes: &mut Routes) {
        for domain in domains {
            let domain: &RawDomain = domain.get_ref();
            let Some(raw_route) = &domain.route else {
                continue;
            };
            let Ok(name) = domain.name.get_ref().parse::<DomainName>() else {
                // Reported with the domain itself.
                continue;
            };
            if let Some(route) = self.route(raw_route) {
                routes.insert(name, route);
            }
        }
    }

    fn route(&mut self, raw: &RawRoute) -> Option<Route> {
        let mut hosts = Vec::new();
        let mut ok = true;
        for host in raw.hosts.get_ref() {
            match parse_route_host(host.get_ref()) {
                Ok(h) => hosts.push(h),
                Err(reason) => {
                    ok = false;
                    self.error(
                        &host.span(),
                        Kind::BadRouteHost {
                            given: host.get_ref().clone(),
                            reason,
                        },
                    );
                }
            }
        }
        if raw.hosts.get_ref().is_empty() {
            self.error(&raw.hosts.span(), Kind::Empty { key: "route.hosts" });
            ok = false;
        }
        let authenticate = match &raw.authenticate {
            Some(word) => self.word(word)?,
            None => Authenticate::None,
        };
        let level = match &raw.level {
            Some(level) => {
                let parsed: SecurityLevel = self.word(level)?;
                Some((parsed, level.span()))
            }
            None => None,
        };
        // Authenticated hosts need TLS: `mandatory` is implied, and
        // `opportunistic` contradicts it.
        let tls = match (authenticate, level) {
            (_, Some((level, span)))
                if !matches!(
                    level,
                    SecurityLevel::Opportunistic | SecurityLevel::Mandatory
                ) =>
            {
                self.error(&span, Kind::RouteLevel { level });
                return None;
            }
            (Authenticate::WebPki, Some((SecurityLevel::Opportunistic, span))) => {
                self.error(&span, Kind::RouteAuthenticationLevel);
                return None;
            }
            (Authenticate::WebPki, _) => RouteTls::WebPki,
            (Authenticate::None, Some((SecurityLevel::Mandatory, _))) => RouteTls::Mandatory,
            (Authenticate::None, _) => RouteTls::Opportunistic,
        };
        let min_tls = match &raw.min_tls {
            Some(m) => self.word(m)?,
            None => MinTlsVersion::Any,
        };
        ok.then_some(Route {
            hosts,
            tls,
            min_tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("5d"), Some(Duration::from_secs(432_000)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5 weeks"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn route_hosts() {
        let h = |s: &str| parse_route_host(s).map(|h| h.to_string());
        assert_eq!(
            h("mail.customer.example"),
            Ok("mail.customer.example:25".into())
        );
        assert_eq!(
            h("Mail.Customer.Example:2525"),
            Ok("mail.customer.example:2525".into())
        );
        assert_eq!(h("192.0.2.1:26"), Ok("192.0.2.1:26".into()));
        assert_eq!(h("[2001:db8::1]:27"), Ok("[2001:db8::1]:27".into()));
        assert_eq!(h("2001:db8::1"), Ok("[2001:db8::1]:25".into()));
        assert!(h("mail.example:0").is_err());
        assert!(h("mail.example:x").is_err());
        assert!(h("bad name.example").is_err());
    }

    #[test]
    fn resolv_conf() {
        let text = "# generated\nsearch example\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver bogus\n";
        assert_eq!(
            nameservers_of_resolv_conf(text),
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().expect("addr"),
                "[fe80::1]:53".parse().expect("addr"),
            ]
        );
    }
}
