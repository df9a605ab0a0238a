//! The users that may authenticate, each belonging to one tenant
//! (`[[tenants]] users`). Names match without regard to ASCII case.

use std::collections::HashMap;
use std::sync::Arc;

use super::PasswordHash;
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
}

impl AuthUsers {
    /// Adds a user; a user of the same name is kept and returned instead.
    pub fn insert(&mut self, user: AuthUser) -> Result<(), Arc<AuthUser>> {
        let key = user.name.to_ascii_lowercase();
        if let Some(existing) = self.by_name.get(&key) {
            return Err(existing.clone());
        }
        self.by_name.insert(key, Arc::new(user));
        Ok(())
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
