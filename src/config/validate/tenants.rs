//! `[[tenants]]`: relay sources and SMTP AUTH users, unique across tenants.

use super::*;

impl Validator<'_> {
    /// `[[tenants]] users`: names unique across tenants, hashes parsed.
    pub(super) fn auth_users(&mut self, raw: &RawConfig) -> AuthUsers {
        let mut users = AuthUsers::default();
        let mut lines: Vec<(String, Range<usize>)> = Vec::new();
        for tenant in &raw.tenants {
            let tenant_name = tenant.name.get_ref().trim();
            for user in &tenant.users {
                let name = user.name.get_ref();
                let reason = if name.is_empty() {
                    Some("it is empty")
                } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    Some("spaces and control characters are not allowed")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    self.error(
                        &user.name.span(),
                        Kind::BadUserName {
                            given: name.clone(),
                            reason,
                        },
                    );
                }
                let hash = PasswordHash::parse(user.password_hash.get_ref()).map_err(|e| {
                    self.error(
                        &user.password_hash.span(),
                        Kind::BadPasswordHash {
                            reason: e.to_string(),
                        },
                    )
                });
                let (Ok(hash), None) = (hash, reason) else {
                    continue;
                };
                if tenant_name.is_empty() {
                    continue; // reported with the tenant
                }
                let inserted = users.insert(AuthUser {
                    name: name.clone(),
                    tenant: TenantName::new(tenant_name),
                    hash,
                });
                match inserted {
                    Ok(()) => lines.push((name.to_ascii_lowercase(), user.name.span())),
                    Err(first) => {
                        let first_span = lines
                            .iter()
                            .find(|(n, _)| *n == name.to_ascii_lowercase())
                            .map_or(0..0, |(_, span)| span.clone());
                        let (first_file, first_line) =
                            self.first_at(&first_span, &user.name.span());
                        self.error(
                            &user.name.span(),
                            Kind::DuplicateUser {
                                name: name.clone(),
                                first_tenant: first.tenant.as_str().to_string(),
                                first_line,
                                first_file,
                            },
                        );
                    }
                }
            }
        }
        users
    }

    pub(super) fn relay_sources<'r>(&mut self, raw: &'r RawConfig) -> RelaySources {
        let mut relay = RelaySources::default();
        // By name and by network: a scan of the earlier ones would be
        // quadratic in the number of tenants.
        let mut tenants: HashMap<&'r str, Range<usize>> = HashMap::with_capacity(raw.tenants.len());
        let mut sources: HashMap<IpNet, (&'r str, Range<usize>)> = HashMap::new();
        for tenant in &raw.tenants {
            let name = tenant.name.get_ref().trim();
            if name.is_empty() {
                self.error(
                    &tenant.name.span(),
                    Kind::Empty {
                        key: "tenants.name",
                    },
                );
                continue;
            }
            if let Some(first) = tenants.get(name) {
                let (first_file, first_line) = self.first_at(first, &tenant.name.span());
                self.error(
                    &tenant.name.span(),
                    Kind::DuplicateTenant {
                        name: name.to_string(),
                        first_line,
                        first_file,
                    },
                );
                continue;
            }
            tenants.insert(name, tenant.name.span());
            for source in &tenant.relay_sources {
                let given = source.get_ref().trim();
                let net = match given.parse::<IpNet>() {
                    Ok(net) if net.trunc() == net => Ok(net),
                    Ok(net) => Err(format!(
                        "host bits are set (the network is {})",
                        net.trunc()
                    )),
                    Err(_) => given
                        .parse::<IpAddr>()
                        .map(IpNet::from)
                        .map_err(|e| e.to_string()),
                };
                let net = match net {
                    Ok(net) => net,
                    Err(reason) => {
                        self.error(
                            &source.span(),
                            Kind::BadRelaySource {
                                given: given.to_string(),
                                reason,
                            },
                        );
                        continue;
                    }
                };
                if let Some((first_tenant, first)) = sources.get(&net) {
                    let first_tenant = first_tenant.to_string();
                    let (first_file, first_line) = self.first_at(first, &source.span());
                    self.error(
                        &source.span(),
                        Kind::DuplicateRelaySource {
                            source_net: net.to_string(),
                            first_tenant,
                            first_line,
                            first_file,
                        },
                    );
                    continue;
                }
                sources.insert(net, (name, source.span()));
                relay.insert(net, self.tenant_name(name));
            }
        }
        relay
    }
}
