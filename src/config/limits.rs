//! `[limits]`: what one client, and all clients together, may take from the
//! SMTP listener, and the mail-loop limit. Validated in the same single pass
//! as the rest (see [`super::validate`]); read per connection (and per
//! message for `max_received_headers`), so a reload applies to new
//! connections.

use std::collections::HashMap;
use std::time::Duration;

use toml::Spanned;

use super::error::ConfigErrorKind as Kind;
use super::raw::RawConfig;
use super::validate::Validator;

/// The largest `max_message_size` accepted: the queue's body records carry
/// a 32-bit length, and a message is still held in memory while received.
pub(crate) const MAX_MESSAGE_SIZE_LIMIT: u64 = 2 * 1024 * 1024 * 1024;

/// `[limits]`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Largest message in octets, advertised with SIZE (RFC 1870); larger
    /// ones get `552 5.3.4`.
    pub max_message_size: u64,
    /// Recipients per transaction; more get `452 4.5.3` (RFC 5321
    /// section 4.5.3.1.8 asks for at least 100).
    pub max_recipients: usize,
    /// Connections open at once, in total; more get `421 4.7.0`.
    pub max_connections: usize,
    /// Connections open at once from one client address (IPv4) or one
    /// IPv6 prefix of `ipv6_prefix` bits; more get `421 4.7.0`.
    pub max_connections_per_ip: usize,
    /// The IPv6 prefix length clients are counted by (one /64 is usually
    /// one site).
    pub ipv6_prefix: u8,
    /// The longest one connection may live; then `421 4.4.2` and close.
    pub session_deadline: Duration,
    /// The longest one write to a client may wait (a client that does not
    /// read its replies); then the connection is closed.
    pub write_timeout: Duration,
    /// A message that already carries more `Received:` header fields is
    /// refused with `554 5.4.6` (a mail loop, RFC 5321 section 6.3).
    pub max_received_headers: usize,
    /// What one tenant may have queued, unless its `[[tenants]]` entry says
    /// otherwise; beyond it, `452 4.3.1`.
    pub queue_quota: QueueQuota,
    /// Free space the queue's file system keeps: below it, new mail gets
    /// `452 4.3.1` (0: no reserve).
    pub min_free_disk: u64,
}

/// What one tenant may have in the queue at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueQuota {
    /// Messages (one per destination group of a transaction).
    pub messages: u64,
    /// Octets, each message counted at its size as delivered.
    pub bytes: u64,
}

impl Default for QueueQuota {
    fn default() -> Self {
        QueueQuota {
            messages: 1_000_000,
            bytes: 20 * 1024 * 1024 * 1024,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 100,
            max_connections: 1000,
            max_connections_per_ip: 50,
            ipv6_prefix: 64,
            session_deadline: Duration::from_secs(3600),
            write_timeout: Duration::from_secs(300),
            max_received_headers: 50,
            queue_quota: QueueQuota::default(),
            min_free_disk: 100 * 1024 * 1024,
        }
    }
}

impl Validator<'_> {
    pub(super) fn limits(&mut self, raw: &RawConfig) -> LimitsConfig {
        let l = &raw.limits;
        let mut config = LimitsConfig::default();
        if let Some(value) = &l.max_message_size {
            match u64::try_from(*value.get_ref()) {
                Ok(n) if (1..=MAX_MESSAGE_SIZE_LIMIT).contains(&n) => config.max_message_size = n,
                _ => self.error(
                    &value.span(),
                    Kind::OutOfRange {
                        key: "limits.max_message_size",
                        range: "an octet count from 1 to 2147483648 (2 GiB)",
                    },
                ),
            }
        }
        if let Some(n) = self.positive(&l.max_recipients, "limits.max_recipients") {
            config.max_recipients = n;
        }
        if let Some(n) = self.positive(&l.max_connections, "limits.max_connections") {
            config.max_connections = n;
        }
        if let Some(n) = self.positive(&l.max_connections_per_ip, "limits.max_connections_per_ip") {
            config.max_connections_per_ip = n;
        }
        if let Some(value) = &l.ipv6_prefix {
            match u8::try_from(*value.get_ref()) {
                Ok(n) if (1..=128).contains(&n) => config.ipv6_prefix = n,
                _ => self.error(
                    &value.span(),
                    Kind::OutOfRange {
                        key: "limits.ipv6_prefix",
                        range: "a prefix length from 1 to 128",
                    },
                ),
            }
        }
        if let Some(value) = &l.session_deadline {
            if let Some(d) = self.duration(value, "limits.session_deadline") {
                config.session_deadline = d;
            }
        }
        if let Some(value) = &l.write_timeout {
            if let Some(d) = self.duration(value, "limits.write_timeout") {
                config.write_timeout = d;
            }
        }
        if let Some(n) = self.positive(&l.max_received_headers, "limits.max_received_headers") {
            config.max_received_headers = n;
        }
        config.queue_quota = self.queue_quota(
            QueueQuota::default(),
            &l.max_queue_messages,
            &l.max_queue_bytes,
            ("limits.max_queue_messages", "limits.max_queue_bytes"),
        );
        if let Some(n) = self.octets(&l.min_free_disk, "limits.min_free_disk", 0) {
            config.min_free_disk = n;
        }
        config
    }

    /// `[[tenants]] max_queue_messages` / `max_queue_bytes`, over the
    /// `[limits]` defaults, for the tenants that set them.
    pub(super) fn tenant_quotas(
        &mut self,
        raw: &RawConfig,
        default: QueueQuota,
    ) -> HashMap<String, QueueQuota> {
        let mut quotas = HashMap::new();
        for tenant in &raw.tenants {
            if tenant.max_queue_messages.is_none() && tenant.max_queue_bytes.is_none() {
                continue;
            }
            let quota = self.queue_quota(
                default,
                &tenant.max_queue_messages,
                &tenant.max_queue_bytes,
                ("tenants.max_queue_messages", "tenants.max_queue_bytes"),
            );
            quotas.insert(tenant.name.get_ref().trim().to_string(), quota);
        }
        quotas
    }

    fn queue_quota(
        &mut self,
        mut quota: QueueQuota,
        messages: &Option<Spanned<i64>>,
        bytes: &Option<Spanned<i64>>,
        keys: (&'static str, &'static str),
    ) -> QueueQuota {
        if let Some(n) = self.octets(messages, keys.0, 1) {
            quota.messages = n;
        }
        if let Some(n) = self.octets(bytes, keys.1, 1) {
            quota.bytes = n;
        }
        quota
    }

    /// A count of at least `min`, or an error at its line.
    fn octets(&mut self, value: &Option<Spanned<i64>>, key: &'static str, min: u64) -> Option<u64> {
        let value = value.as_ref()?;
        match u64::try_from(*value.get_ref()) {
            Ok(n) if n >= min => Some(n),
            _ => {
                let range = if min == 0 {
                    "a count of 0 or more"
                } else {
                    "a count of 1 or more"
                };
                self.error(&value.span(), Kind::OutOfRange { key, range });
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigErrorKind, ConfigErrors};

    #[test]
    fn limits_are_read_and_default() {
        let config = Config::for_test(
            r#"[server]
postmaster = "Ops@Example.NET"

[limits]
max_message_size = 1048576
max_recipients = 500
max_connections = 20
max_connections_per_ip = 3
ipv6_prefix = 56
session_deadline = "10m"
write_timeout = "30s"
max_received_headers = 30
max_queue_messages = 5000
max_queue_bytes = 1073741824
min_free_disk = 0

[[tenants]]
name = "big"
max_queue_messages = 90000

[[tenants]]
name = "plain"
"#,
        );
        assert_eq!(
            config.limits,
            LimitsConfig {
                max_message_size: 1_048_576,
                max_recipients: 500,
                max_connections: 20,
                max_connections_per_ip: 3,
                ipv6_prefix: 56,
                session_deadline: Duration::from_secs(600),
                write_timeout: Duration::from_secs(30),
                max_received_headers: 30,
                queue_quota: QueueQuota {
                    messages: 5000,
                    bytes: 1 << 30,
                },
                min_free_disk: 0,
            }
        );
        // A tenant's own quota overrides [limits] key by key.
        assert_eq!(
            config.queue_quota("big"),
            QueueQuota {
                messages: 90_000,
                bytes: 1 << 30
            }
        );
        assert_eq!(config.queue_quota("plain"), config.limits.queue_quota);
        assert_eq!(config.queue_quota("unknown"), config.limits.queue_quota);
        let postmaster = config.server.postmaster.expect("postmaster");
        assert_eq!(postmaster.to_string(), "Ops@Example.NET");
        let defaults = Config::for_test("");
        assert_eq!(defaults.limits, LimitsConfig::default());
        assert_eq!(defaults.limits.max_message_size, 52_428_800);
        assert_eq!(defaults.limits.ipv6_prefix, 64);
        assert_eq!(defaults.limits.max_received_headers, 50);
        assert!(defaults.server.postmaster.is_none());
    }

    #[test]
    fn bad_limits_are_reported_together_with_their_lines() {
        let text = r#"[server]
postmaster = "nobody"

[limits]
max_message_size = 0
max_recipients = -1
max_connections = 0
max_connections_per_ip = 0
ipv6_prefix = 129
session_deadline = "forever"
write_timeout = "0s"
max_received_headers = 0
max_queue_messages = 0
max_queue_bytes = -5
min_free_disk = -1
"#;
        let Err(ConfigErrors(errs)) = Config::parse(text, "test.toml", None) else {
            panic!("accepted bad limits");
        };
        let got: Vec<(Option<usize>, String)> =
            errs.iter().map(|e| (e.line(), e.to_string())).collect();
        assert_eq!(errs.len(), 12, "{got:#?}");
        for (i, line) in [2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
            .into_iter()
            .enumerate()
        {
            assert_eq!(errs[i].line(), Some(line), "{got:#?}");
            assert!(errs[i]
                .to_string()
                .starts_with(&format!("test.toml:{line}:")));
        }
        assert!(matches!(
            errs[0].kind,
            ConfigErrorKind::BadPostmaster { .. }
        ));
        assert!(got[1].1.contains("limits.max_message_size"), "{got:?}");
        assert!(got[5].1.contains("limits.ipv6_prefix"), "{got:?}");
        assert!(matches!(errs[6].kind, ConfigErrorKind::BadDuration { .. }));
        assert!(matches!(errs[7].kind, ConfigErrorKind::BadDuration { .. }));
        assert!(got[8].1.contains("limits.max_received_headers"), "{got:?}");
        assert!(got[9].1.contains("limits.max_queue_messages"), "{got:?}");
        assert!(got[10].1.contains("limits.max_queue_bytes"), "{got:?}");
        assert!(got[11].1.contains("limits.min_free_disk"), "{got:?}");
    }

    #[test]
    fn unknown_limit_keys_and_address_literal_postmasters_are_refused() {
        let Err(ConfigErrors(errs)) = Config::parse("[limits]\nmax_size = 10\n", "test.toml", None)
        else {
            panic!("accepted an unknown key");
        };
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line(), Some(2), "{}", errs[0]);
        assert!(matches!(errs[0].kind, ConfigErrorKind::Syntax(_)));
        let Err(ConfigErrors(errs)) = Config::parse(
            "[server]\npostmaster = \"ops@[192.0.2.1]\"\n",
            "test.toml",
            None,
        ) else {
            panic!("accepted an address literal");
        };
        assert!(matches!(
            errs[0].kind,
            ConfigErrorKind::BadPostmaster { .. }
        ));
        let too_big = format!(
            "[limits]\nmax_message_size = {}\n",
            MAX_MESSAGE_SIZE_LIMIT + 1
        );
        assert!(Config::parse(&too_big, "test.toml", None).is_err());
    }
}
