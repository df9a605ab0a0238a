//! `[acme]`: certificates for `mta-sts.<managed domain>` obtained and
//! renewed with ACME (RFC 8555), validated with TLS-ALPN-01 (RFC 8737) on
//! the `[mta_sts_host]` listener. Absent: no ACME, certificates come from
//! `[[tls.sni]]` only. See `docs/mta-sts.md`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::ConfigErrorKind as Kind;
use super::raw::RawConfig;
use super::validate::Validator;

/// How the CA validates a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// TLS-ALPN-01 (RFC 8737) on the `[mta_sts_host]` listener (port 443).
    TlsAlpn01,
    /// HTTP-01 (RFC 8555 section 8.3) on `http_listen` (port 80).
    Http01,
}

/// `[acme]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The ACME directory URL (`https://...`).
    pub directory: String,
    /// Account contacts (`mailto:` URIs), sent when the account is made.
    pub contact: Vec<String>,
    /// PEM roots trusted for the directory's HTTPS; `None`: WebPKI roots.
    pub ca_file: Option<PathBuf>,
    /// The public addresses of this gateway's MTA-STS host: a domain whose
    /// `mta-sts` name resolves to none of them is reported, not ordered.
    /// Empty: no check.
    pub addresses: Vec<IpAddr>,
    /// Renew when the certificate expires within this (30 days).
    pub renew_before: Duration,
    /// New orders per hour, all domains together (a token bucket).
    pub orders_per_hour: u32,
    /// The wait after a domain's first failure, doubled after each one.
    pub retry_first: Duration,
    /// The longest wait between two attempts for one domain.
    pub retry_max: Duration,
    /// `tls-alpn-01` (default) or `http-01`.
    pub challenge: AcmeChallenge,
    /// Where HTTP-01 answers are served (required for `http-01`).
    pub http_listen: Vec<std::net::SocketAddr>,
}

impl AcmeConfig {
    pub(crate) fn with_directory(directory: &str) -> AcmeConfig {
        AcmeConfig {
            directory: directory.to_owned(),
            contact: Vec::new(),
            ca_file: None,
            addresses: Vec::new(),
            renew_before: Duration::from_secs(30 * 86_400),
            orders_per_hour: 20,
            retry_first: Duration::from_secs(600),
            retry_max: Duration::from_secs(86_400),
            challenge: AcmeChallenge::TlsAlpn01,
            http_listen: Vec::new(),
        }
    }
}

impl Validator<'_> {
    pub(super) fn acme(&mut self, raw: &RawConfig, base_dir: Option<&Path>) -> Option<AcmeConfig> {
        let a = &raw.acme;
        let directory = a.directory.as_ref()?;
        if !directory.get_ref().starts_with("https://") {
            self.error(
                &directory.span(),
                Kind::OutOfRange {
                    key: "acme.directory",
                    range: "an https:// URL (the ACME directory)",
                },
            );
        }
        let mut config = AcmeConfig::with_directory(directory.get_ref());
        for contact in &a.contact {
            if !contact.get_ref().starts_with("mailto:") {
                self.error(
                    &contact.span(),
                    Kind::OutOfRange {
                        key: "acme.contact",
                        range: "a list of mailto: URIs",
                    },
                );
            }
            config.contact.push(contact.get_ref().clone());
        }
        config.ca_file = a
            .ca_file
            .as_ref()
            .map(|p| self.path(p, "acme.ca_file", base_dir));
        for address in &a.addresses {
            match address.get_ref().parse() {
                Ok(ip) => config.addresses.push(ip),
                Err(_) => self.error(
                    &address.span(),
                    Kind::OutOfRange {
                        key: "acme.addresses",
                        range: "a list of IP addresses (no port)",
                    },
                ),
            }
        }
        let durations = [
            (
                &a.renew_before,
                "acme.renew_before",
                &mut config.renew_before,
            ),
            (&a.retry_first, "acme.retry_first", &mut config.retry_first),
            (&a.retry_max, "acme.retry_max", &mut config.retry_max),
        ];
        for (value, key, into) in durations {
            if let Some(d) = value.as_ref().and_then(|v| self.duration(v, key)) {
                *into = d;
            }
        }
        if let Some(n) = &a.orders_per_hour {
            match u32::try_from(*n.get_ref()) {
                Ok(n) if n >= 1 => config.orders_per_hour = n,
                _ => self.error(
                    &n.span(),
                    Kind::OutOfRange {
                        key: "acme.orders_per_hour",
                        range: "a count of 1 or more",
                    },
                ),
            }
        }
        if let Some(challenge) = &a.challenge {
            match challenge.get_ref().as_str() {
                "tls-alpn-01" => config.challenge = AcmeChallenge::TlsAlpn01,
                "http-01" => config.challenge = AcmeChallenge::Http01,
                _ => self.error(
                    &challenge.span(),
                    Kind::OutOfRange {
                        key: "acme.challenge",
                        range: "`tls-alpn-01` or `http-01`",
                    },
                ),
            }
        }
        for address in &a.http_listen {
            match address.get_ref().parse() {
                Ok(addr) => config.http_listen.push(addr),
                Err(_) => self.error(
                    &address.span(),
                    Kind::OutOfRange {
                        key: "acme.http_listen",
                        range: "a list of IP:port addresses",
                    },
                ),
            }
        }
        if config.challenge == AcmeChallenge::Http01 && config.http_listen.is_empty() {
            if let Some(challenge) = &a.challenge {
                self.error(
                    &challenge.span(),
                    Kind::OutOfRange {
                        key: "acme.challenge",
                        range: "`http-01` only with `http_listen` set",
                    },
                );
            }
        }
        Some(config)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigErrors};
    use super::*;

    #[test]
    fn defaults_and_every_bad_value_reported_with_its_line() {
        let config = Config::for_test("[acme]\ndirectory = \"https://ca.example/dir\"\n");
        assert_eq!(
            config.acme,
            Some(AcmeConfig::with_directory("https://ca.example/dir"))
        );
        assert_eq!(Config::for_test("").acme, None);
        let text = "[acme]\ndirectory = \"http://ca.example/dir\"\ncontact = [\"ops@example\"]\naddresses = [\"192.0.2.1:443\"]\norders_per_hour = 0\nretry_first = \"soon\"\n";
        let Err(ConfigErrors(errors)) = Config::parse(text, "t.toml", None) else {
            panic!("bad [acme] accepted")
        };
        let lines: Vec<usize> = errors
            .iter()
            .filter_map(|e| e.location.map(|l| l.line))
            .collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6], "{errors:?}");
        let text = "[acme]\ndirectory = \"https://ca.example/dir\"\nchallenge = \"http-01\"\n";
        let Err(ConfigErrors(errors)) = Config::parse(text, "t.toml", None) else {
            panic!("http-01 without http_listen accepted")
        };
        assert!(errors[0].to_string().contains("http_listen"), "{errors:?}");
        let text = "[acme]\ndirectory = \"https://ca.example/dir\"\nchallenge = \"http-01\"\nhttp_listen = [\"0.0.0.0:80\"]\n";
        let acme = Config::for_test(text).acme.expect("acme");
        assert_eq!(acme.challenge, AcmeChallenge::Http01);
        assert_eq!(acme.http_listen, vec!["0.0.0.0:80".parse().expect("addr")]);
    }
}
