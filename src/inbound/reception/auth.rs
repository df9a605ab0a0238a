//! SMTP AUTH (RFC 4954) against `[[tenants]] users`: bounded PBKDF2
//! checks on the blocking pool, the same cost for unknown users.

use tracing::{info, warn};

use super::Reception;
use crate::inbound::ConnectionInfo;
use crate::smtp::{Credentials, Reply, Verdict};

/// Password checks that may run at the same time.
pub(super) const CONCURRENT_AUTH_CHECKS: usize = 2;

/// AUTH attempts waiting for a check slot at most; beyond that the client
/// is told to try later (`454 4.7.0`, RFC 4954 section 6) instead of
/// queueing without bound behind a flood.
const WAITING_AUTH_CHECKS: usize = 32;

fn auth_refusal() -> Verdict {
    Verdict::Reject(Reply::new(
        535,
        (5, 7, 8),
        "Authentication credentials invalid",
    ))
}

impl Reception {
    /// SMTP AUTH against `[[tenants]] users`. The PBKDF2 check runs on the
    /// blocking pool; an unknown user, a failed check, or PLAIN acting for
    /// another identity (authzid) all get `535 5.7.8`.
    pub(super) async fn authenticate(
        &self,
        conn: &ConnectionInfo,
        credentials: Credentials,
    ) -> Verdict {
        use std::sync::atomic::Ordering;
        let config = self.live.current();
        let user = config.users.get(&credentials.username).cloned();
        let other_identity = credentials
            .authzid
            .as_deref()
            .is_some_and(|z| !z.eq_ignore_ascii_case(&credentials.username));
        // Every refusal costs one password check, known user or not.
        let hash = match &user {
            Some(user) => user.hash.clone(),
            None => match config.users.decoy() {
                Some(decoy) => decoy,
                None => return auth_refusal(),
            },
        };
        if self.auth_waiting.fetch_add(1, Ordering::AcqRel) >= WAITING_AUTH_CHECKS {
            self.auth_waiting.fetch_sub(1, Ordering::AcqRel);
            warn!(conn = conn.id, peer = %conn.peer, "SMTP AUTH deferred: too many checks waiting");
            return Verdict::Reject(Reply::new(
                454,
                (4, 7, 0),
                "Temporary authentication failure, try again later",
            ));
        }
        let slot = self.auth_checks.acquire().await;
        self.auth_waiting.fetch_sub(1, Ordering::AcqRel);
        let Ok(_slot) = slot else {
            return auth_refusal(); // never closed
        };
        let password = credentials.password().as_bytes().to_vec();
        let valid = tokio::task::spawn_blocking(move || hash.verify(&password))
            .await
            .unwrap_or(false);
        match user {
            None => {
                info!(conn = conn.id, peer = %conn.peer, user = %credentials.username, "SMTP AUTH refused: unknown user");
                auth_refusal()
            }
            Some(user) if other_identity => {
                info!(conn = conn.id, peer = %conn.peer, user = %user.name, "SMTP AUTH refused: acting for another identity is not supported");
                auth_refusal()
            }
            Some(user) if valid => {
                info!(conn = conn.id, peer = %conn.peer, user = %user.name, tenant = %user.tenant, "SMTP AUTH succeeded");
                Verdict::Accept
            }
            Some(user) => {
                info!(conn = conn.id, peer = %conn.peer, user = %user.name, "SMTP AUTH refused: wrong password");
                auth_refusal()
            }
        }
    }
}
