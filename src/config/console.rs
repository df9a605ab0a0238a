//! `[console]`: the web console (`docs/console.md`), an HTTPS listener for
//! operators and tenants' administrators. Off unless `listen` is set.
//!
//! ```toml
//! [console]
//! listen = ["0.0.0.0:8443"]
//! idle_timeout = "30m"
//! [[console.operators]]
//! name = "ops"
//! password_hash = "pbkdf2-sha256$600000$...$..."
//! ```
//!
//! A tenant's administrators are in its `[[tenants]]` table (its tenant
//! file): `console_admins = [{ name = "...", password_hash = "..." }]`.
//! Hashes are those of SMTP AUTH (`sealpost hash-password`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use super::error::ConfigErrorKind as Kind;
use super::raw::{RawConfig, RawUser};
use super::validate::Validator;
use crate::auth::PasswordHash;
use crate::policy::TenantName;

/// The idle time after which a console session ends, unless configured.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// `[console]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// The HTTPS addresses (bound at start; a reload keeps them).
    pub listen: Vec<SocketAddr>,
    /// A session unused this long ends.
    pub idle_timeout: Duration,
}

/// What a console user may see and change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConsoleRole {
    /// Every tenant, and the defaults for unspecified domains.
    Operator,
    /// Only this tenant's domains, peers, queue and audit records.
    TenantAdmin(TenantName),
}

impl ConsoleRole {
    /// Whether this role may see `tenant`'s data.
    pub(crate) fn may_see(&self, tenant: &str) -> bool {
        match self {
            ConsoleRole::Operator => true,
            ConsoleRole::TenantAdmin(own) => own.as_str() == tenant,
        }
    }
}

/// One console user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleUser {
    pub name: String,
    pub role: ConsoleRole,
    pub hash: PasswordHash,
}

/// Every console user by name (ASCII case ignored).
#[derive(Debug, Clone, Default)]
pub struct ConsoleUsers {
    by_name: HashMap<String, Arc<ConsoleUser>>,
}

impl ConsoleUsers {
    pub fn get(&self, name: &str) -> Option<&Arc<ConsoleUser>> {
        self.by_name.get(&name.to_ascii_lowercase())
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<ConsoleUser>> {
        self.by_name.values()
    }

    /// The most iterations of any user's hash: what checking a password
    /// for a user who does not exist must cost, so that the answer's time
    /// does not tell which names exist.
    pub(crate) fn max_iterations(&self) -> u32 {
        (self.by_name.values())
            .map(|u| u.hash.iterations())
            .max()
            .unwrap_or(crate::auth::DEFAULT_ITERATIONS)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// These users with the tenant admins of `tenants` replaced by those
    /// `other` has for them (a change to a few tenant files); `None` when a
    /// name would then be taken twice (the full validation names both).
    pub(super) fn with_tenants_from(
        &self,
        other: &ConsoleUsers,
        tenants: &std::collections::HashSet<String>,
    ) -> Option<ConsoleUsers> {
        let of_tenants = |user: &ConsoleUser| match &user.role {
            ConsoleRole::Operator => false,
            ConsoleRole::TenantAdmin(t) => tenants.contains(t.as_str()),
        };
        let mut merged = self.clone();
        merged.by_name.retain(|_, user| !of_tenants(user));
        for (key, user) in &other.by_name {
            if of_tenants(user) && merged.by_name.insert(key.clone(), user.clone()).is_some() {
                return None;
            }
        }
        Some(merged)
    }
}

impl Validator<'_> {
    pub(super) fn console(&mut self, raw: &RawConfig) -> Option<ConsoleConfig> {
        let console = raw.console.as_ref()?.get_ref();
        let mut listen: Vec<(SocketAddr, Range<usize>)> = Vec::new();
        for given in &console.listen {
            match given.get_ref().parse::<SocketAddr>() {
                Ok(address) => match listen.iter().find(|(a, _)| *a == address) {
                    Some((_, first)) => {
                        let (_, first_line) = self.first_at(first, &given.span());
                        self.error(
                            &given.span(),
                            Kind::DuplicateListener {
                                address: address.to_string(),
                                first_line,
                            },
                        )
                    }
                    None => listen.push((address, given.span())),
                },
                Err(e) => self.error(
                    &given.span(),
                    Kind::BadListenAddress {
                        given: given.get_ref().clone(),
                        reason: e.to_string(),
                    },
                ),
            }
        }
        let idle_timeout = match &console.idle_timeout {
            Some(value) => self.duration(value, "console.idle_timeout")?,
            None => DEFAULT_IDLE_TIMEOUT,
        };
        if listen.is_empty() {
            return None;
        }
        Some(ConsoleConfig {
            listen: listen.into_iter().map(|(a, _)| a).collect(),
            idle_timeout,
        })
    }

    /// `[[console.operators]]` and every tenant's `console_admins`: names
    /// unique across all of them, hashes parsed.
    pub(super) fn console_users(&mut self, raw: &RawConfig) -> ConsoleUsers {
        let mut users = ConsoleUsers::default();
        let mut spans: HashMap<String, Range<usize>> = HashMap::new();
        let operators = raw.console.as_ref().map(|c| &c.get_ref().operators);
        for user in operators.into_iter().flatten() {
            self.console_user(&mut users, &mut spans, user, ConsoleRole::Operator);
        }
        for tenant in &raw.tenants {
            let name = tenant.name.get_ref().trim();
            if name.is_empty() {
                continue; // reported with the tenant
            }
            for user in &tenant.console_admins {
                let role = ConsoleRole::TenantAdmin(TenantName::new(name));
                self.console_user(&mut users, &mut spans, user, role);
            }
        }
        users
    }

    fn console_user(
        &mut self,
        users: &mut ConsoleUsers,
        spans: &mut HashMap<String, Range<usize>>,
        user: &RawUser,
        role: ConsoleRole,
    ) {
        let name = user.name.get_ref();
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.error(
                &user.name.span(),
                Kind::BadUserName {
                    given: name.clone(),
                    reason: "it is empty or has spaces or control characters",
                },
            );
            return;
        }
        let hash = match PasswordHash::parse(user.password_hash.get_ref()) {
            Ok(hash) => hash,
            Err(e) => {
                self.error(
                    &user.password_hash.span(),
                    Kind::BadPasswordHash {
                        reason: e.to_string(),
                    },
                );
                return;
            }
        };
        let key = name.to_ascii_lowercase();
        if let Some(first) = spans.get(&key) {
            let (first_file, first_line) = self.first_at(first, &user.name.span());
            let first_tenant = match &users.by_name[&key].role {
                ConsoleRole::Operator => "(console operators)".to_owned(),
                ConsoleRole::TenantAdmin(t) => t.as_str().to_owned(),
            };
            self.error(
                &user.name.span(),
                Kind::DuplicateUser {
                    name: name.clone(),
                    first_tenant,
                    first_line,
                    first_file,
                },
            );
            return;
        }
        spans.insert(key.clone(), user.name.span());
        users.by_name.insert(
            key,
            Arc::new(ConsoleUser {
                name: name.clone(),
                role,
                hash,
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConsoleRole};

    fn hash() -> String {
        crate::auth::hash_password(b"pw", crate::auth::MIN_ITERATIONS)
            .expect("hash")
            .to_string()
    }

    #[test]
    fn the_console_is_off_unless_it_listens() {
        let config = Config::for_test("");
        assert!(config.console.is_none());
        assert!(config.console_users.is_empty());
        let config = Config::for_test("[console]\nidle_timeout = \"5m\"\n");
        assert!(config.console.is_none(), "no listen: off");
        let config = Config::for_test("[console]\nlisten = [\"127.0.0.1:8443\"]\n");
        let console = config.console.expect("on");
        assert_eq!(console.listen, ["127.0.0.1:8443".parse().expect("addr")]);
        assert_eq!(console.idle_timeout, super::DEFAULT_IDLE_TIMEOUT);
    }

    #[test]
    fn operators_and_tenant_admins_get_their_roles() {
        let h = hash();
        let config = Config::for_test(&format!(
            "[console]\nlisten = [\"127.0.0.1:8443\"]\noperators = [{{ name = \"ops\", password_hash = \"{h}\" }}]\n\
             [[tenants]]\nname = \"acme\"\nconsole_admins = [{{ name = \"Alice\", password_hash = \"{h}\" }}]\n"
        ));
        let users = &config.console_users;
        assert_eq!(users.len(), 2);
        assert_eq!(users.get("OPS").expect("ops").role, ConsoleRole::Operator);
        let alice = users.get("alice").expect("alice");
        assert!(alice.role.may_see("acme") && !alice.role.may_see("beta"));
        assert!(alice.hash.verify(b"pw"));
        assert_eq!(users.max_iterations(), crate::auth::MIN_ITERATIONS);
    }

    #[test]
    fn bad_console_settings_are_reported_with_their_lines() {
        let h = hash();
        let text = format!(
            "[console]\nlisten = [\"nowhere\", \"127.0.0.1:1\", \"127.0.0.1:1\"]\nidle_timeout = \"soon\"\n\
             operators = [{{ name = \"ops\", password_hash = \"{h}\" }}, {{ name = \"x\", password_hash = \"md5\" }}]\n\
             [[tenants]]\nname = \"acme\"\nconsole_admins = [{{ name = \"OPS\", password_hash = \"{h}\" }}]\n"
        );
        let errors = match Config::parse(&text, "test.toml", None) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.0,
        };
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let all = texts.join("\n");
        for want in [
            "test.toml:2:11: bad listener address `nowhere`",
            "configured twice (first at line 2)",
            "console.idle_timeout",
            "bad password hash",
            "user `OPS` is configured twice",
        ] {
            assert!(all.contains(want), "{want}:\n{all}");
        }
    }
}
