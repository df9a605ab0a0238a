//! Console sessions and sign-in limits.
//!
//! A session is a random 256-bit token in a cookie (`Secure`, `HttpOnly`,
//! `SameSite=Strict`) naming a server-side entry: the user, a CSRF token
//! that every form carries, and the time of its last use. A session unused
//! for `[console] idle_timeout` ends. Signing in always makes a new token
//! (the one that carried the sign-in form is dropped), so a token planted
//! before sign-in is worth nothing after it.
//!
//! Sign-in attempts are limited per user name and per client address:
//! after [`MAX_FAILURES`] failures within [`FAILURE_WINDOW`] further
//! attempts are refused until the window has passed. An unknown user costs
//! the same password derivation as a known one (see `routes::sign_in`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use crate::config::ConsoleRole;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "sealpost_console";

/// Failed sign-ins per user name, and per client address, within
/// [`FAILURE_WINDOW`] before sign-in is refused for them.
pub(crate) const MAX_FAILURES: usize = 5;

/// How long a failed sign-in counts.
pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Most sessions kept at once (the oldest idle one goes first).
const MAX_SESSIONS: usize = 10_000;

/// A fresh random token: 32 bytes as 64 hex digits.
pub fn token() -> Option<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Who a session belongs to (`None`: not signed in yet, only the sign-in
/// form's CSRF token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub user: String,
    pub role: ConsoleRole,
}

#[derive(Debug, Clone)]
struct Entry {
    who: Option<SignedIn>,
    csrf: String,
    last_used: Instant,
}

/// A session as a request sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub token: String,
    pub who: Option<SignedIn>,
    pub csrf: String,
}

/// Every live session.
#[derive(Debug)]
pub(crate) struct Sessions {
    idle_timeout: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Sessions {
    pub fn new(idle_timeout: Duration) -> Sessions {
        Sessions {
            idle_timeout,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves whole entries behind.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session of `token` if it exists and was used within the idle
    /// timeout; marks it used now.
    pub fn get(&self, token: &str) -> Option<Session> {
        let mut entries = self.lock();
        let now = Instant::now();
        let entry = entries.get_mut(token)?;
        if now.duration_since(entry.last_used) > self.idle_timeout {
            entries.remove(token);
            return None;
        }
        entry.last_used = now;
        Some(Session {
            token: token.to_owned(),
            who: entry.who.clone(),
            csrf: entry.csrf.clone(),
        })
    }

    /// A new session for `who` (`None`: an anonymous one that only
    /// carries the sign-in form's CSRF token); `replaces` is ended.
    pub fn create(&self, who: Option<SignedIn>, replaces: Option<&str>) -> Option<Session> {
        let csrf = token()?;
        let token = token()?;
        let mut entries = self.lock();
        if let Some(old) = replaces {
            entries.remove(old);
        }
        let now = Instant::now();
        entries.retain(|_, e| now.duration_since(e.last_used) <= self.idle_timeout);
        if entries.len() >= MAX_SESSIONS {
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(t, _)| t.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            token.clone(),
            Entry {
                who: who.clone(),
                csrf: csrf.clone(),
                last_used: now,
            },
        );
        Some(Session { token, who, csrf })
    }

    /// Ends the session of `token`.
    pub fn end(&self, token: &str) {
        self.lock().remove(token);
    }
}

/// Compares two secrets in time independent of where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Failed sign-ins by user name and by address.
#[derive(Debug, Default)]
pub(crate) struct SignInLimits {
    failures: Mutex<HashMap<Key, Vec<Instant>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(IpAddr),
}

impl SignInLimits {
    fn keys(user: &str, address: IpAddr) -> [Key; 2] {
        [Key::User(user.to_ascii_lowercase()), Key::Address(address)]
    }

    /// Whether `user` from `address` may try now.
    pub fn allowed(&self, user: &str, address: IpAddr) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        Self::keys(user, address).iter().all(|key| {
            let Some(times) = failures.get_mut(key) else {
                return true;
            };
            times.retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
            times.len() < MAX_FAILURES
        })
    }

    /// Counts a failure for `user` and for `address`.
    pub fn failed(&self, user: &str, address: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() > 100_000 {
            let now = Instant::now();
            failures.retain(|_, times| {
                times.retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
                !times.is_empty()
            });
        }
        for key in Self::keys(user, address) {
            failures.entry(key).or_default().push(Instant::now());
        }
    }

    /// A successful sign-in clears the user's failures (not the address's).
    pub fn succeeded(&self, user: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(&Key::User(user.to_ascii_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> SignedIn {
        SignedIn {
            user: "alice".into(),
            role: ConsoleRole::Operator,
        }
    }

    #[test]
    fn sessions_rotate_and_expire() {
        let sessions = Sessions::new(Duration::from_millis(200));
        let anonymous = sessions.create(None, None).expect("session");
        assert_eq!(anonymous.token.len(), 64);
        let signed = sessions
            .create(Some(admin()), Some(&anonymous.token))
            .expect("session");
        assert_ne!(signed.token, anonymous.token);
        assert_ne!(signed.csrf, anonymous.csrf);
        assert!(sessions.get(&anonymous.token).is_none(), "rotated away");
        assert_eq!(
            sessions.get(&signed.token).expect("live").who,
            Some(admin())
        );
        std::thread::sleep(Duration::from_millis(300));
        assert!(sessions.get(&signed.token).is_none(), "idle timeout");
        let other = sessions.create(Some(admin()), None).expect("session");
        sessions.end(&other.token);
        assert!(sessions.get(&other.token).is_none());
    }

    #[test]
    fn failures_limit_per_user_and_per_address() {
        let limits = SignInLimits::default();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..MAX_FAILURES {
            assert!(limits.allowed("Alice", a));
            limits.failed("Alice", a);
        }
        assert!(!limits.allowed("alice", b), "per user, any address");
        assert!(!limits.allowed("bob", a), "per address, any user");
        assert!(limits.allowed("bob", b));
        limits.succeeded("bob");
        assert!(!limits.allowed("alice", b));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
