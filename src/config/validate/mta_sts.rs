//! `[mta_sts_host]` and `[domains.mta_sts]`: the hosted MTA-STS policies.

use super::*;

impl Validator<'_> {
    /// `[mta_sts_host]`: the policy server's listen addresses.
    pub(super) fn mta_sts_host(&mut self, raw: &RawConfig) -> MtaStsHostConfig {
        let mut listen: Vec<(SocketAddr, Range<usize>)> = Vec::new();
        for given in &raw.mta_sts_host.listen {
            let address = match given.get_ref().parse::<SocketAddr>() {
                Ok(address) => address,
                Err(e) => {
                    self.error(
                        &given.span(),
                        Kind::BadListenAddress {
                            given: given.get_ref().clone(),
                            reason: e.to_string(),
                        },
                    );
                    continue;
                }
            };
            if let Some((_, first)) = listen.iter().find(|(a, _)| *a == address) {
                let first_line = self.line(first);
                self.error(
                    &given.span(),
                    Kind::DuplicateListener {
                        address: address.to_string(),
                        first_line,
                    },
                );
                continue;
            }
            listen.push((address, given.span()));
        }
        MtaStsHostConfig {
            listen: listen.into_iter().map(|(a, _)| a).collect(),
        }
    }

    /// The `[domains.mta_sts]` of one file's `domains`, added to `hosted`:
    /// mode, mx patterns, max_age (RFC 8461 section 3.2) and the TLSRPT
    /// destinations (RFC 8460 section 3).
    pub(super) fn hosted_mta_sts(
        &mut self,
        domains: &[Spanned<RawDomain>],
        hosted: &mut HashMap<String, DomainMtaSts>,
    ) {
        for domain in domains {
            let domain = domain.get_ref();
            let Some(sts) = &domain.mta_sts else {
                continue;
            };
            let table_span = sts.span();
            let sts = sts.get_ref();
            let mode = match sts.mode.get_ref().as_str() {
                "enforce" => Some(Mode::Enforce),
                "testing" => Some(Mode::Testing),
                "none" => Some(Mode::None),
                other => {
                    self.error(
                        &sts.mode.span(),
                        Kind::UnknownWord(UnknownWord::new(
                            "MTA-STS mode",
                            other,
                            &["enforce", "testing", "none"],
                        )),
                    );
                    None
                }
            };
            let mut mx = Vec::with_capacity(sts.mx.len());
            for pattern in &sts.mx {
                match MxPattern::parse(pattern.get_ref()) {
                    Ok(p) => mx.push(p),
                    Err(e) => self.error(
                        &pattern.span(),
                        Kind::BadMxPattern {
                            reason: e.to_string(),
                        },
                    ),
                }
            }
            if let Some(mode) = mode {
                if sts.mx.is_empty() && mode != Mode::None {
                    self.error(
                        &table_span,
                        Kind::NoMxPatterns {
                            mode: mode.to_string(),
                        },
                    );
                }
            }
            let max_age = match &sts.max_age {
                None => Some(DEFAULT_MTA_STS_MAX_AGE),
                Some(given) => match u64::try_from(*given.get_ref()) {
                    Ok(age) if age <= MAX_AGE_LIMIT => Some(age),
                    _ => {
                        self.error(
                            &given.span(),
                            Kind::BadMaxAge {
                                given: *given.get_ref(),
                            },
                        );
                        None
                    }
                },
            };
            // A bad domain name is reported with the policy.
            let Ok(name) = domain.name.get_ref().parse::<DomainName>() else {
                continue;
            };
            let (tlsrpt, tlsrpt_is_default) = match &sts.tlsrpt {
                None => (vec![format!("mailto:tlsrpt@{name}")], true),
                Some(given) => {
                    let list = match given.get_ref() {
                        RawOneOrMany::One(uri) => vec![uri.clone()],
                        RawOneOrMany::Many(uris) => uris.clone(),
                    };
                    if let Err(e) = tlsrpt_record(name.as_str(), &list) {
                        self.error(
                            &given.span(),
                            Kind::BadTlsRpt {
                                reason: e.to_string(),
                            },
                        );
                    }
                    (list, false)
                }
            };
            if let (Some(mode), Some(max_age)) = (mode, max_age) {
                hosted.insert(
                    name.as_str().to_string(),
                    DomainMtaSts {
                        policy: HostedPolicy {
                            domain: name.as_str().to_string(),
                            mode,
                            mx,
                            max_age,
                        },
                        tlsrpt,
                        tlsrpt_is_default,
                    },
                );
            }
        }
    }
}
