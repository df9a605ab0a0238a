//! `[cluster]`: a fleet of sealpost nodes sharing limits and state in
//! Redis (see `docs/cluster.md`). Without the section nothing is shared and
//! nothing here is used. Its raw keys are in [`super::raw`],
//! its errors in [`super::error`]; [`super::validate`] calls
//! [`Validator::cluster`] once.
//!
//! A limit is fleet-wide unless written `"local:N"`, which keeps it per
//! node (enforced by each node alone, never shared).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

pub use super::error::ClusterConfigError;
use super::error::ConfigErrorKind as Kind;
use super::raw::{RawConfig, RawLimit};
use super::validate::Validator;

/// Where a limit is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Across the fleet, in Redis (per node, divided, while Redis is out).
    Fleet,
    /// By each node alone (`local:`).
    Node,
}

/// A number of connections, fleet-wide or per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimit {
    pub max: u32,
    pub scope: Scope,
}

/// Messages per second, fleet-wide or per node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub scope: Scope,
}

impl fmt::Display for ConnectionLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scope {
            Scope::Fleet => write!(f, "{}", self.max),
            Scope::Node => write!(f, "local:{}", self.max),
        }
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scope {
            Scope::Fleet => write!(f, "{}/s", self.per_second),
            Scope::Node => write!(f, "local:{}/s", self.per_second),
        }
    }
}

/// One tenant's rates (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TenantRates {
    /// All of the tenant's messages.
    pub messages: Option<RateLimit>,
    /// The tenant's messages to one destination.
    pub per_destination: Option<RateLimit>,
}

/// The validated `[cluster]` (its `Debug` hides the Redis password).
#[derive(Clone, PartialEq)]
pub struct ClusterConfig {
    /// `redis://` or `rediss://` (TLS), with optional `user:password@`.
    pub redis: String,
    /// PEM certificates of the authorities that sign the Redis server's
    /// certificate (`rediss://` only); `None`: the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// This node's name, unique in the fleet (default: `[server] hostname`).
    pub node: String,
    pub connect_timeout: Duration,
    /// The longest one Redis command may take; a slower answer counts as
    /// an outage.
    pub timeout: Duration,
    /// A node not heard of for this long is counted as gone (and shown
    /// as silent).
    pub node_ttl: Duration,
    /// A connection lease not renewed for this long expires (a crashed
    /// node's leases go away by themselves).
    pub lease_ttl: Duration,
    pub connections_per_destination: ConnectionLimit,
    /// Per-destination overrides, by lowercase destination name.
    pub destinations: BTreeMap<String, ConnectionLimit>,
    /// The rates of a tenant without its own entry.
    pub tenant_defaults: TenantRates,
    /// `[cluster.tenants.NAME]`, over the defaults.
    pub tenants: BTreeMap<String, TenantRates>,
}

/// The longest `timeout` accepted: the heartbeat runs every 250 ms, and an
/// outage must be noticed within 1 s.
pub const MAX_CLUSTER_TIMEOUT: Duration = Duration::from_millis(750);

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis", &self.redis_without_password())
            .field("ca_file", &self.ca_file)
            .field("node", &self.node)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("node_ttl", &self.node_ttl)
            .field("lease_ttl", &self.lease_ttl)
            .field(
                "connections_per_destination",
                &self.connections_per_destination,
            )
            .field("destinations", &self.destinations)
            .field("tenant_defaults", &self.tenant_defaults)
            .field("tenants", &self.tenants)
            .finish()
    }
}

impl ClusterConfig {
    /// The Redis URL with its password, if any, as `***` (for logs and
    /// `config check`).
    pub(crate) fn redis_without_password(&self) -> String {
        let Some((scheme, rest)) = self.redis.split_once("://") else {
            return self.redis.clone();
        };
        match rest.rsplit_once('@') {
            Some((user_info, host)) => {
                let user = user_info.split(':').next().unwrap_or("");
                if user_info.contains(':') {
                    format!("{scheme}://{user}:***@{host}")
                } else {
                    format!("{scheme}://{user}@{host}")
                }
            }
            None => self.redis.clone(),
        }
    }

    /// The defaults for a node called `node` on `redis`.
    pub fn new(redis: impl Into<String>, node: impl Into<String>) -> ClusterConfig {
        ClusterConfig {
            redis: redis.into(),
            ca_file: None,
            node: node.into(),
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_millis(300),
            node_ttl: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(30),
            connections_per_destination: ConnectionLimit {
                max: 16,
                scope: Scope::Fleet,
            },
            destinations: BTreeMap::new(),
            tenant_defaults: TenantRates::default(),
            tenants: BTreeMap::new(),
        }
    }

    /// The connection limit of `destination`.
    pub(crate) fn connection_limit(&self, destination: &str) -> ConnectionLimit {
        self.destinations
            .get(&destination.to_ascii_lowercase())
            .copied()
            .unwrap_or(self.connections_per_destination)
    }

    /// The rates of `tenant`.
    pub(crate) fn tenant_rates(&self, tenant: &str) -> TenantRates {
        self.tenants
            .get(tenant)
            .copied()
            .unwrap_or(self.tenant_defaults)
    }
}

impl Validator<'_> {
    /// `[cluster] peers`: the networks of the nodes that may hand this
    /// node their queue (`docs/cluster.md`, "Draining a node"). Empty
    /// without `[cluster]`.
    pub(super) fn cluster_peers(&mut self, raw: &RawConfig) -> Vec<ipnet::IpNet> {
        let Some(c) = raw.cluster.as_ref() else {
            return Vec::new();
        };
        let mut nets = Vec::new();
        for peer in &c.get_ref().peers {
            let given = peer.get_ref().trim();
            let net = match given.parse::<ipnet::IpNet>() {
                Ok(net) if net.trunc() == net => Ok(net),
                Ok(net) => Err(format!(
                    "host bits are set (the network is {})",
                    net.trunc()
                )),
                Err(_) => given
                    .parse::<std::net::IpAddr>()
                    .map(ipnet::IpNet::from)
                    .map_err(|e| e.to_string()),
            };
            match net {
                Ok(net) => nets.push(net),
                Err(reason) => self.error(
                    &peer.span(),
                    Kind::Cluster(ClusterConfigError::BadPeer {
                        given: given.to_string(),
                        reason,
                    }),
                ),
            }
        }
        nets
    }

    /// `[cluster]`, if present. `hostname` is `[server] hostname`, the
    /// default node name.
    pub(super) fn cluster(
        &mut self,
        raw: &RawConfig,
        hostname: Option<&str>,
        base_dir: Option<&Path>,
    ) -> Option<ClusterConfig> {
        let c = raw.cluster.as_ref()?;
        let whole = c.span();
        let c = c.get_ref();
        let redis = match &c.redis {
            Some(url) => {
                let given = url.get_ref().trim().to_owned();
                if let Err(reason) = check_redis_url(&given) {
                    self.error(
                        &url.span(),
                        Kind::Cluster(ClusterConfigError::BadRedisUrl {
                            given: given.clone(),
                            reason,
                        }),
                    );
                }
                given
            }
            // `peers` alone: the node accepts drains, shares nothing.
            None if !c.peers.is_empty() => return None,
            None => {
                self.error(&whole, Kind::Cluster(ClusterConfigError::NoRedis));
                String::new()
            }
        };
        let node = match &c.node {
            Some(n) => {
                let given = n.get_ref().trim().to_owned();
                if !valid_node_name(&given) {
                    self.error(
                        &n.span(),
                        Kind::Cluster(ClusterConfigError::BadNodeName {
                            given: given.clone(),
                        }),
                    );
                }
                given
            }
            None => hostname.unwrap_or("localhost").to_owned(),
        };
        let mut config = ClusterConfig::new(redis, node);
        if let Some(ca) = &c.ca_file {
            if !config.redis.to_ascii_lowercase().starts_with("rediss://") {
                self.error(
                    &ca.span(),
                    Kind::Cluster(ClusterConfigError::CaFileWithoutTls),
                );
            }
            config.ca_file = Some(self.path(ca, "cluster.ca_file", base_dir));
        }
        for (value, key, slot) in [
            (
                &c.connect_timeout,
                "cluster.connect_timeout",
                &mut config.connect_timeout,
            ),
            (&c.timeout, "cluster.timeout", &mut config.timeout),
            (&c.node_ttl, "cluster.node_ttl", &mut config.node_ttl),
            (&c.lease_ttl, "cluster.lease_ttl", &mut config.lease_ttl),
        ] {
            if let Some(value) = value {
                if let Some(d) = self.duration(value, key) {
                    if key == "cluster.timeout" && d > MAX_CLUSTER_TIMEOUT {
                        self.error(
                            &value.span(),
                            Kind::Cluster(ClusterConfigError::TimeoutTooLong {
                                key,
                                given: value.get_ref().clone(),
                            }),
                        );
                    }
                    *slot = d;
                }
            }
        }
        if let Some(limit) = &c.connections_per_destination {
            if let Some(l) = self.connection_limit(limit, "cluster.connections_per_destination") {
                config.connections_per_destination = l;
            }
        }
        for (name, limit) in &c.destinations {
            let key = format!("cluster.destinations.\"{name}\"");
            if !valid_destination(name) {
                self.error(
                    &limit.span(),
                    Kind::Cluster(ClusterConfigError::BadDestination {
                        given: name.clone(),
                    }),
                );
                continue;
            }
            if let Some(l) = self.connection_limit(limit, &key) {
                config.destinations.insert(name.to_ascii_lowercase(), l);
            }
        }
        config.tenant_defaults = TenantRates {
            messages: self.rate_limit(
                &c.tenant_messages_per_second,
                "cluster.tenant_messages_per_second",
            ),
            per_destination: self.rate_limit(
                &c.tenant_destination_messages_per_second,
                "cluster.tenant_destination_messages_per_second",
            ),
        };
        for (name, tenant) in &c.tenants {
            if !raw.tenants.iter().any(|t| t.name.get_ref().trim() == name) {
                self.error(
                    &tenant.span(),
                    Kind::Cluster(ClusterConfigError::UnknownTenant { name: name.clone() }),
                );
            }
            let t = tenant.get_ref();
            let rates = TenantRates {
                messages: self
                    .rate_limit(
                        &t.messages_per_second,
                        &format!("cluster.tenants.{name}.messages_per_second"),
                    )
                    .or(config.tenant_defaults.messages),
                per_destination: self
                    .rate_limit(
                        &t.destination_messages_per_second,
                        &format!("cluster.tenants.{name}.destination_messages_per_second"),
                    )
                    .or(config.tenant_defaults.per_destination),
            };
            config.tenants.insert(name.clone(), rates);
        }
        Some(config)
    }

    fn connection_limit(
        &mut self,
        value: &Spanned<RawLimit>,
        key: &str,
    ) -> Option<ConnectionLimit> {
        let parsed = parse_limit(value.get_ref()).and_then(|(n, scope)| {
            let max = u32::try_from(n as i64)
                .ok()
                .filter(|m| *m >= 1 && (*m as f64) == n)?;
            Some(ConnectionLimit { max, scope })
        });
        if parsed.is_none() {
            self.bad_limit(value, key, "a whole number of connections, 1 or more");
        }
        parsed
    }

    fn rate_limit(&mut self, value: &Option<Spanned<RawLimit>>, key: &str) -> Option<RateLimit> {
        let value = value.as_ref()?;
        let parsed = parse_limit(value.get_ref())
            .filter(|(n, _)| n.is_finite() && *n > 0.0 && *n <= 1_000_000.0)
            .map(|(per_second, scope)| RateLimit { per_second, scope });
        if parsed.is_none() {
            self.bad_limit(
                value,
                key,
                "messages per second, above 0 and at most 1000000",
            );
        }
        parsed
    }

    fn bad_limit(&mut self, value: &Spanned<RawLimit>, key: &str, expected: &'static str) {
        let given = match value.get_ref() {
            RawLimit::Integer(n) => n.to_string(),
            RawLimit::Float(n) => n.to_string(),
            RawLimit::Text(s) => format!("\"{s}\""),
        };
        self.error(
            &value.span(),
            Kind::Cluster(ClusterConfigError::BadLimit {
                key: key.to_owned(),
                given,
                expected,
            }),
        );
    }
}

/// A limit's number and scope, if it is a number or `local:` and a number.
fn parse_limit(raw: &RawLimit) -> Option<(f64, Scope)> {
    match raw {
        RawLimit::Integer(n) => Some((*n as f64, Scope::Fleet)),
        RawLimit::Float(n) => Some((*n, Scope::Fleet)),
        RawLimit::Text(s) => {
            let s = s.trim();
            let (number, scope) = match s.strip_prefix("local:") {
                Some(rest) => (rest.trim(), Scope::Node),
                None => (s, Scope::Fleet),
            };
            number
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .map(|n| (n, scope))
        }
    }
}

/// `Ok` for a `redis://` or `rediss://` URL the client accepts.
fn check_redis_url(url: &str) -> Result<(), String> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("redis" | "rediss") => {}
        _ => return Err("the scheme must be `redis` or `rediss`".into()),
    }
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn valid_node_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn valid_destination(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn errors(text: &str) -> Vec<String> {
        match Config::parse(text, "test.toml", None) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn peers_alone_share_nothing_and_bad_networks_are_named() {
        let config = Config::for_test("[cluster]\npeers = [\"10.0.5.0/24\", \"192.0.2.7\"]\n");
        assert_eq!(config.cluster, None);
        let peers: Vec<String> = config.peers.iter().map(|n| n.to_string()).collect();
        assert_eq!(peers, ["10.0.5.0/24", "192.0.2.7/32"]);
        let got = errors("[cluster]\npeers = [\"10.0.5.1/24\", \"nope\"]\n");
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].contains("host bits are set"), "{}", got[0]);
        assert!(got[1].contains("`nope` in `cluster.peers`"), "{}", got[1]);
    }

    #[test]
    fn without_cluster_nothing_is_shared() {
        assert_eq!(Config::for_test("").cluster, None);
    }

    #[test]
    fn a_full_section_is_read() {
        let config = Config::for_test(
            r#"
[server]
hostname = "mx1.example.net"

[[tenants]]
name = "acme"

[cluster]
redis = "rediss://sealpost:secret@redis.example.net:6380/2"
timeout = "200ms"
node_ttl = "3s"
connections_per_destination = 8
tenant_messages_per_second = 100
tenant_destination_messages_per_second = "local:5"

[cluster.destinations]
"gmail.com" = 40
"small.example" = "local:1"

[cluster.tenants.acme]
messages_per_second = 2.5
"#,
        );
        let c = config.cluster.expect("[cluster]");
        assert_eq!(c.node, "mx1.example.net");
        assert_eq!(
            c.redis_without_password(),
            "rediss://sealpost:***@redis.example.net:6380/2"
        );
        assert!(!format!("{c:?}").contains("secret"));
        assert_eq!(c.timeout, Duration::from_millis(200));
        assert_eq!(c.node_ttl, Duration::from_secs(3));
        assert_eq!(c.connection_limit("GMAIL.com").to_string(), "40");
        assert_eq!(c.connection_limit("small.example").to_string(), "local:1");
        assert_eq!(c.connection_limit("other.example").to_string(), "8");
        let acme = c.tenant_rates("acme");
        assert_eq!(
            acme.messages.map(|r| r.to_string()).as_deref(),
            Some("2.5/s")
        );
        assert_eq!(
            acme.per_destination.map(|r| r.to_string()).as_deref(),
            Some("local:5/s")
        );
        let other = c.tenant_rates("other");
        assert_eq!(
            other.messages.map(|r| r.to_string()).as_deref(),
            Some("100/s")
        );
    }

    #[test]
    fn every_mistake_is_reported_with_its_line() {
        let text = r#"
[[tenants]]
name = "acme"

[cluster]
redis = "http://redis:6379"
node = "mx 1"
timeout = "2s"
connections_per_destination = 0
tenant_messages_per_second = "fast"

[cluster.destinations]
"x.example" = "local:2.5"

[cluster.tenants.nobody]
messages_per_second = 5
"#;
        let got = errors(text);
        let lines: Vec<&str> = got
            .iter()
            .map(|e| e.split(':').nth(1).unwrap_or(""))
            .collect();
        assert_eq!(lines, ["6", "7", "8", "9", "10", "13", "15"], "{got:#?}");
        assert!(
            got[0].contains("scheme must be `redis` or `rediss`"),
            "{}",
            got[0]
        );
        assert!(got[2].contains("at most 750ms"), "{}", got[2]);
        assert!(got[6].contains("names no configured"), "{}", got[6]);
    }

    #[test]
    fn a_ca_file_needs_tls() {
        let got = errors("[cluster]\nredis = \"redis://r:6379\"\nca_file = \"ca.pem\"\n");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("test.toml:3:"), "{}", got[0]);
        assert!(got[0].contains("not a `rediss://`"), "{}", got[0]);
        let config = Config::parse(
            "[cluster]\nredis = \"rediss://r:6379\"\nca_file = \"ca.pem\"\n",
            "test.toml",
            Some(Path::new("/etc/sealpost")),
        )
        .expect("valid");
        let ca = config.cluster.and_then(|c| c.ca_file);
        assert_eq!(ca.as_deref(), Some(Path::new("/etc/sealpost/ca.pem")));
    }

    #[test]
    fn the_redis_url_is_required() {
        let got = errors("[cluster]\nnode = \"a\"\n");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("test.toml:1:"), "{}", got[0]);
        assert!(got[0].contains("`cluster.redis` is required"), "{}", got[0]);
    }
}
