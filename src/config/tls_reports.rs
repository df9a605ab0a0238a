//! `[tls_reports]`: the TLS reports (RFC 8460) sealpost sends about its
//! outbound sessions, once a UTC day, and how long sent and received
//! reports are kept. Each tenant may name its own organization and
//! contact (`[tls_reports.tenants.<name>]`); the rest take the server's.
//! See `docs/tls-reports.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::error::ConfigErrorKind as Kind;
use super::raw::RawConfig;
use super::validate::Validator;

/// One tenant's (or the server's) name in its reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportingIdentity {
    /// `organization-name`; `None`: the server's default.
    pub organization_name: Option<String>,
    /// `contact-info`; `None`: the server's default.
    pub contact_info: Option<String>,
}

/// `[tls_reports]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsReportsConfig {
    /// Record sessions and send the daily reports (default true).
    pub send: bool,
    /// The server's default organization name and contact (default: the
    /// server's hostname and `postmaster@<hostname>`).
    pub default: ReportingIdentity,
    /// The report mail's sender (default `tlsrpt-noreply@<hostname>`).
    /// Mail from this sender is never counted in a report.
    pub sender: Option<String>,
    /// The daily run starts at a random moment within this after
    /// midnight UTC (default 1 hour).
    pub jitter: Duration,
    /// Received and sent reports are kept this many days (default 90).
    pub retention_days: u32,
    /// Per tenant overrides, by tenant name.
    pub tenants: BTreeMap<String, ReportingIdentity>,
}

impl Default for TlsReportsConfig {
    fn default() -> Self {
        TlsReportsConfig {
            send: true,
            default: ReportingIdentity::default(),
            sender: None,
            jitter: Duration::from_secs(3600),
            retention_days: 90,
            tenants: BTreeMap::new(),
        }
    }
}

impl TlsReportsConfig {
    /// The organization name and contact for `tenant`'s reports, the
    /// server's hostname filling what nobody set.
    pub(crate) fn identity(&self, tenant: &str, hostname: &str) -> (String, String) {
        let own = self.tenants.get(tenant);
        let pick = |f: fn(&ReportingIdentity) -> &Option<String>| {
            own.and_then(|i| f(i).clone())
                .or_else(|| f(&self.default).clone())
        };
        (
            pick(|i| &i.organization_name).unwrap_or_else(|| hostname.to_string()),
            pick(|i| &i.contact_info).unwrap_or_else(|| format!("postmaster@{hostname}")),
        )
    }

    /// The envelope sender and `From:` of report mail.
    pub fn sender(&self, hostname: &str) -> String {
        self.sender
            .clone()
            .unwrap_or_else(|| format!("tlsrpt-noreply@{hostname}"))
    }
}

impl Validator<'_> {
    pub(super) fn tls_reports(&mut self, raw: &RawConfig) -> TlsReportsConfig {
        let r = &raw.tls_reports;
        let mut config = TlsReportsConfig::default();
        if let Some(send) = r.send {
            config.send = send;
        }
        config.default = ReportingIdentity {
            organization_name: r.organization_name.clone(),
            contact_info: r.contact_info.clone(),
        };
        if let Some(sender) = &r.sender {
            if !sender.get_ref().contains('@') {
                self.error(
                    &sender.span(),
                    Kind::OutOfRange {
                        key: "tls_reports.sender",
                        range: "a mail address (local@domain)",
                    },
                );
            }
            config.sender = Some(sender.get_ref().clone());
        }
        if let Some(d) = r
            .jitter
            .as_ref()
            .and_then(|v| self.duration(v, "tls_reports.jitter"))
        {
            config.jitter = d;
        }
        if let Some(days) = &r.retention_days {
            match u32::try_from(*days.get_ref()) {
                Ok(n) if n >= 1 => config.retention_days = n,
                _ => self.error(
                    &days.span(),
                    Kind::OutOfRange {
                        key: "tls_reports.retention_days",
                        range: "a count of 1 or more days",
                    },
                ),
            }
        }
        for (tenant, identity) in &r.tenants {
            config.tenants.insert(
                tenant.clone(),
                ReportingIdentity {
                    organization_name: identity.organization_name.clone(),
                    contact_info: identity.contact_info.clone(),
                },
            );
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigErrors};
    use super::*;

    #[test]
    fn defaults_tenant_overrides_and_bad_values() {
        let config = Config::for_test("");
        assert_eq!(config.tls_reports, TlsReportsConfig::default());
        let text = "[tls_reports]\norganization_name = \"Gateway Inc\"\ncontact_info = \"mailto:tls@gw.example\"\nretention_days = 30\njitter = \"5m\"\n[tls_reports.tenants.acme]\norganization_name = \"Acme\"\n";
        let config = Config::for_test(text);
        let reports = &config.tls_reports;
        assert_eq!(reports.retention_days, 30);
        assert_eq!(reports.jitter, Duration::from_secs(300));
        assert_eq!(
            reports.identity("acme", "mx.gw.example"),
            ("Acme".to_string(), "mailto:tls@gw.example".to_string())
        );
        assert_eq!(
            reports.identity("other", "mx.gw.example"),
            (
                "Gateway Inc".to_string(),
                "mailto:tls@gw.example".to_string()
            )
        );
        assert_eq!(
            TlsReportsConfig::default().identity("x", "mx.gw.example"),
            (
                "mx.gw.example".to_string(),
                "postmaster@mx.gw.example".to_string()
            )
        );
        let text = "[tls_reports]\nsender = \"nobody\"\nretention_days = 0\n";
        let Err(ConfigErrors(errors)) = Config::parse(text, "t.toml", None) else {
            panic!("bad [tls_reports] accepted")
        };
        let lines: Vec<usize> = errors
            .iter()
            .filter_map(|e| e.location.map(|l| l.line))
            .collect();
        assert_eq!(lines, vec![2, 3], "{errors:?}");
    }
}
