//! The users that may authenticate, each belonging to one tenant
//! (`[[tenants]] users`). Names match without regard to ASCII case.

use std::collections::HashMap;
use std::sync::Arc;

use super::{decoy_hash, PasswordHash, DEFAULT_ITERATIONS};
use crate::policy::TenantName;

/// One user of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    /// As configured.
    pub name: String,
    pub tenant: TenantName,
    pub hash: PasswordHash,
}

/// Every configured user, by name.
#[derive(Debug, Clone, Default)]
pub struct AuthUsers {
    by_name: HashMap<String, Arc<AuthUser>>,
    /// The largest iteration count of the users' hashes.
    max_iterations: u32,
}

impl AuthUsers {
    /// Adds a user; a user of the same name is kept and returned instead.
    pub fn insert(&mut self, user: AuthUser) -> Result<(), Arc<AuthUser>> {
        let key = user.name.to_ascii_lowercase();
        if let Some(existing) = self.by_name.get(&key) {
            return Err(existing.clone());
        }
        self.max_iterations = self.max_iterations.max(user.hash.iterations());
        self.by_name.insert(key, Arc::new(user));
        Ok(())
    }

    /// What an unknown user name's password is checked against, so that
    /// refusing it costs as much as refusing a known user's wrong password
    /// (no user enumeration by timing): a hash with the largest iteration
    /// count among the configured users. `None` only if hashing fails.
    pub fn decoy(&self) -> Option<PasswordHash> {
        let iterations = match self.max_iterations {
            0 => DEFAULT_ITERATIONS,
            n => n,
        };
        decoy_hash(iterations)
    }

    /// The user of this name (any ASCII case).
    pub fn get(&self, name: &str) -> Option<&Arc<AuthUser>> {
        self.by_name.get(&name.to_ascii_lowercase())
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Every user, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<AuthUser>> + '_ {
        self.by_name.values()
    }

    /// Keeps only the users `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&AuthUser) -> bool) {
        self.by_name.retain(|_, user| keep(user));
    }

    /// Adds a user as configured elsewhere (shared, not copied); a user of
    /// the same name is kept and returned instead.
    pub fn insert_shared(&mut self, user: Arc<AuthUser>) -> Result<(), Arc<AuthUser>> {
        let key = user.name.to_ascii_lowercase();
        if let Some(existing) = self.by_name.get(&key) {
            return Err(existing.clone());
        }
        self.by_name.insert(key, user);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::hash_password;

    fn user(name: &str, iterations: u32) -> AuthUser {
        AuthUser {
            name: name.to_string(),
            tenant: TenantName::new("acme"),
            hash: hash_password(b"pw", iterations).expect("hash"),
        }
    }

    #[test]
    fn the_decoy_costs_as_much_as_the_costliest_configured_user() {
        let mut users = AuthUsers::default();
        assert_eq!(
            users.decoy().map(|d| d.iterations()),
            Some(DEFAULT_ITERATIONS),
            "no users: the default cost"
        );
        users.insert(user("a@acme", 10_000)).expect("new");
        users.insert(user("b@acme", 20_000)).expect("new");
        let decoy = users.decoy().expect("decoy");
        assert_eq!(decoy.iterations(), 20_000);
        assert!(!decoy.verify(b"pw"), "the decoy takes no password");
        assert!(!decoy.verify(b""), "not even an empty one");
    }
}
