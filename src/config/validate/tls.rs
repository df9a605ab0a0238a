//! `[tls]`: the STARTTLS certificates, default and by SNI name.

use super::*;

impl Validator<'_> {
    pub(super) fn tls(&mut self, raw: &RawConfig, base_dir: Option<&Path>) -> TlsConfig {
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
}
