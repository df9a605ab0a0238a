//! The configuration in force while `sealpost serve` runs, swapped as a
//! whole on reload (SIGHUP or the admin socket).
//!
//! Readers take an `Arc<Config>` with [`LiveConfig::current`] and keep it
//! for the unit of work at hand (one SMTP transaction, one delivery
//! attempt), so a reload never changes the rules in the middle of one.
//! A reload ([`crate::server::reload`]) validates the new file completely
//! first; when it has an error
//! the configuration in force stays, and the error is returned to the
//! caller (the admin socket shows it, SIGHUP logs it).
//!
//! Some settings are bound at start (listener addresses, the data
//! directory, the admin socket, the MTA-STS policy host's addresses); a reload that changes them keeps the
//! running values and says so in its [`ReloadReport`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::Config;

/// The configuration in force, replaced atomically.
#[derive(Debug)]
pub struct LiveConfig {
    current: RwLock<Arc<Config>>,
    generation: AtomicU64,
    /// The generation, sent after each replacement (see [`LiveConfig::subscribe`]).
    changes: tokio::sync::watch::Sender<u64>,
}

/// What a successful reload changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReloadReport {
    /// Where the configuration was read from.
    pub source: String,
    /// Counts up by one per successful reload (the start is generation 1).
    pub generation: u64,
    pub managed_domains: usize,
    /// Settings that changed in the file but take effect only at restart.
    pub needs_restart: Vec<&'static str>,
    /// Errors of tenant files whose previous version stays in force (the
    /// other tenants' changes were applied).
    pub tenant_errors: Vec<String>,
}

impl LiveConfig {
    pub fn new(config: Config) -> LiveConfig {
        LiveConfig {
            current: RwLock::new(Arc::new(config)),
            generation: AtomicU64::new(1),
            changes: tokio::sync::watch::Sender::new(1),
        }
    }

    /// Tells its holder about each replacement (the new generation); for
    /// parts that keep state derived from the configuration, such as the
    /// MTA-STS policy host's table. Read the configuration itself with
    /// [`LiveConfig::current`].
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The configuration in force now.
    pub fn current(&self) -> Arc<Config> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            // A writer panicked while holding the lock; the value inside is
            // still a complete configuration (replaced in one assignment).
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// How many configurations have been in force (1 before any reload).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Puts `config` in force, keeping the start-bound settings of the
    /// running one.
    pub fn replace(&self, mut config: Config) -> ReloadReport {
        let mut guard = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let running = guard.clone();
        let mut needs_restart = Vec::new();
        if config.listeners != running.listeners {
            needs_restart.push("listeners");
            config.listeners = running.listeners.clone();
        }
        if config.server.data_dir != running.server.data_dir {
            needs_restart.push("server.data_dir");
            config.server.data_dir = running.server.data_dir.clone();
        }
        if config.admin != running.admin {
            needs_restart.push("admin");
            config.admin = running.admin.clone();
        }
        // The resolver and the MTA-STS fetcher are built at start.
        if config.dns != running.dns {
            needs_restart.push("dns");
            config.dns = running.dns.clone();
        }
        if config.mta_sts != running.mta_sts {
            needs_restart.push("mta_sts");
            config.mta_sts = running.mta_sts.clone();
        }
        if config.delivery.smtp_port != running.delivery.smtp_port {
            needs_restart.push("delivery.smtp_port");
            config.delivery.smtp_port = running.delivery.smtp_port;
        }
        if config.mta_sts_host != running.mta_sts_host {
            needs_restart.push("mta_sts_host");
            config.mta_sts_host = running.mta_sts_host.clone();
        }
        // The console's listeners and idle timeout are set at start (its
        // users are read again).
        if config.console != running.console {
            needs_restart.push("console");
            config.console = running.console.clone();
        }
        // The node joined the fleet at start with these settings.
        if config.cluster != running.cluster {
            needs_restart.push("cluster");
            config.cluster = running.cluster.clone();
        }
        let report = ReloadReport {
            source: config.source.clone(),
            generation: self.generation.fetch_add(1, Ordering::AcqRel) + 1,
            managed_domains: config.policy.domains().len(),
            needs_restart,
            tenant_errors: (config.tenant_files.kept_previous.iter())
                .map(ToString::to_string)
                .collect(),
        };
        let replaced = std::mem::replace(&mut *guard, Arc::new(config));
        drop(guard);
        self.changes.send_replace(report.generation);
        // The configuration replaced is freed on a thread of its own (the
        // last holder of a large one frees 100,000 domains).
        crate::memory::drop_in_background((replaced, running));
        report
    }
}

/// Why a reload was refused (the configuration in force stays): every
/// validation error of the new file, or the certificate that failed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] crate::config::LoadError),
    #[error("the STARTTLS certificate: {0}")]
    Certificate(#[from] crate::tls::CertError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_swaps_policy_and_keeps_start_bound_settings() {
        let live = LiveConfig::new(Config::for_test(
            "[[listeners]]\naddress = \"127.0.0.1:2600\"\n",
        ));
        let before = live.current();
        let report = live.replace(Config::for_test(
            "[[listeners]]\naddress = \"127.0.0.1:2601\"\n\
             [dns]\nnameservers = [\"192.0.2.53\"]\n\
             [[domains]]\nname = \"example.org\"\ntenant = \"t\"\n",
        ));
        assert_eq!(report.generation, 2);
        assert_eq!(report.managed_domains, 1);
        assert_eq!(report.needs_restart, vec!["listeners", "dns"]);
        assert!(live.current().dns.nameservers.is_empty());
        let after = live.current();
        assert_eq!(after.listeners, before.listeners);
        assert!(after.policy.domain("example.org").is_some());
        // The old Arc a reader kept is unchanged.
        assert!(before.policy.domain("example.org").is_none());
    }

    #[test]
    fn subscribers_hear_each_replacement() {
        let live = LiveConfig::new(Config::for_test(""));
        let mut changes = live.subscribe();
        assert!(!changes.has_changed().unwrap_or(true));
        let report = live.replace(Config::for_test(
            "[mta_sts_host]\nlisten = [\"127.0.0.1:8443\"]\n",
        ));
        assert!(changes.has_changed().unwrap_or(false));
        assert_eq!(*changes.borrow_and_update(), 2);
        // The policy host's addresses are bound at start.
        assert_eq!(report.needs_restart, vec!["mta_sts_host"]);
        assert!(live.current().mta_sts_host.listen.is_empty());
    }

    /// The configuration replaced is freed (on a thread of its own) once
    /// no reader holds it, and a reader's copy stays whole meanwhile.
    #[test]
    fn the_configuration_replaced_is_freed_when_no_one_holds_it() {
        let live = LiveConfig::new(Config::for_test(
            "[[domains]]\nname = \"old.example\"\ntenant = \"t\"\n",
        ));
        let reader = live.current();
        let replaced = Arc::downgrade(&reader);
        live.replace(Config::for_test(""));
        assert!(reader.policy.domain("old.example").is_some());
        drop(reader);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while replaced.upgrade().is_some() {
            assert!(std::time::Instant::now() < deadline, "never freed");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(live.current().policy.domain("old.example").is_none());
    }
}
