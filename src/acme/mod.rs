//! Certificates for `mta-sts.<managed domain>` from an ACME CA (RFC 8555),
//! so every hosted MTA-STS policy is served with a certificate senders
//! accept, without an operator adding `[[tls.sni]]` entries by hand.
//!
//! - Which names: every enabled managed domain with a hosted policy
//!   (`[domains.mta_sts]`), except names that `[[tls.sni]]` already covers.
//! - Validation: TLS-ALPN-01 (RFC 8737) on the `[mta_sts_host]` listener:
//!   the challenge certificate is handed to the shared
//!   [`SniCertResolver`](crate::tls::SniCertResolver) for the time of the
//!   validation.
//! - Before ordering, `mta-sts.<domain>` must resolve to one of
//!   `[acme] addresses`; a name that points elsewhere is recorded as
//!   `dns-mismatch` (shown by `sealpost dns-records` and in `/metrics`) and
//!   looked at again only after its backoff.
//! - Durability and timing: [`store`] and [`schedule`]. Renewal starts
//!   `renew_before` (30 days) before expiry; failures back off
//!   exponentially; new orders are bounded per hour.
//!
//! The protocol itself is the `instant-acme` crate's; [`http`] is the HTTPS
//! client it talks through (ring, our roots).

pub mod http;
pub(crate) mod http01;
pub mod issue;
pub mod schedule;
pub mod store;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::{Account, NewAccount};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::config::{AcmeConfig, Config};
use crate::dns::Resolver;
use crate::live::LiveConfig;
use crate::metrics::Metrics;
use crate::mta_sts::fetch::policy_host;
use crate::tls::{certified_key_from_pem, SniCertResolver};

pub use schedule::{DomainRecord, State};

pub(crate) use schedule::{Backoff, OrderBudget};
pub use store::AcmeStore;
pub use store::StoreError;

/// The longest the manager sleeps, so names added by a reload are seen.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// The `mta-sts.<domain>` names ACME is responsible for under `config`.
pub(crate) fn managed_hosts(config: &Config) -> Vec<String> {
    let configured: HashSet<&str> = config.tls.sni.iter().map(|(n, _)| n.as_str()).collect();
    let mut hosts: Vec<String> = config
        .hosted_policies()
        .iter()
        .map(|p| policy_host(&p.domain.trim_end_matches('.').to_ascii_lowercase()))
        .filter(|host| !configured.contains(host.as_str()))
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The expiry (unix seconds) of the first certificate of a PEM chain.
pub fn leaf_not_after(chain_pem: &[u8]) -> Option<u64> {
    let leaf = CertificateDer::pem_slice_iter(chain_pem).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    u64::try_from(cert.validity().not_after.timestamp()).ok()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Why the ACME manager cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("the ACME store: {0}")]
    Store(#[from] StoreError),
    #[error("`[acme] ca_file` {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("TLS setup for ACME: {0}")]
    Tls(#[from] rustls::Error),
}

/// Obtains and renews the certificates; see the module docs.
pub(crate) struct AcmeManager {
    live: Arc<LiveConfig>,
    store: AcmeStore,
    resolver: Arc<Resolver>,
    certificates: Arc<SniCertResolver>,
    http01: Arc<http01::Http01Tokens>,
    metrics: Arc<Metrics>,
    records: BTreeMap<String, DomainRecord>,
    budget: Option<OrderBudget>,
    /// The account, with the directory it belongs to.
    account: Option<(String, Account)>,
}

impl AcmeManager {
    /// Loads the stored certificates into `certificates` and the recorded
    /// states; nothing is ordered until [`AcmeManager::run`].
    pub fn load(
        live: Arc<LiveConfig>,
        data_dir: &Path,
        resolver: Arc<Resolver>,
        certificates: Arc<SniCertResolver>,
        metrics: Arc<Metrics>,
    ) -> Result<AcmeManager, AcmeError> {
        let store = AcmeStore::new(data_dir);
        let mut records = store.status()?;
        let config = live.current();
        let renew_before = config
            .acme
            .as_ref()
            .map_or(Duration::from_secs(30 * 86_400), |a| a.renew_before);
        for host in managed_hosts(&config) {
            let Some((chain, key)) = store.certificate(&host)? else {
                continue;
            };
            let path = store.certificate_path(&host);
            match (
                certified_key_from_pem(&chain, &key, &path),
                leaf_not_after(&chain),
            ) {
                (Ok(key), Some(not_after)) => {
                    certificates.insert_acme(&host, key);
                    let record = records
                        .entry(host.clone())
                        .or_insert_with(|| DomainRecord::new(now()));
                    if record.not_after != Some(not_after) || record.state == State::Pending {
                        record.issued(not_after, renew_before);
                    }
                    tracing::info!(%host, not_after, "ACME: stored certificate loaded");
                }
                (Err(e), _) => {
                    tracing::warn!(%host, error = %e, "ACME: stored certificate unusable; a new one is ordered")
                }
                (Ok(_), None) => {
                    tracing::warn!(%host, path = %path.display(), "ACME: stored certificate has no readable expiry; a new one is ordered")
                }
            }
        }
        let manager = AcmeManager {
            live,
            store,
            resolver,
            certificates,
            http01: Arc::default(),
            metrics,
            records,
            budget: None,
            account: None,
        };
        manager.publish();
        Ok(manager)
    }

    /// Binds `[acme] http_listen` (HTTP-01) and serves it in the
    /// background; nothing to do without it.
    pub(crate) async fn listen_http01(&self) -> std::io::Result<()> {
        let Some(acme) = self.live.current().acme.clone() else {
            return Ok(());
        };
        for address in acme.http_listen {
            let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("`[acme] http_listen` {address}: {e}"))
            })?;
            tokio::spawn(self.http01.clone().serve(listener));
            tracing::info!(%address, "ACME HTTP-01 answers served");
        }
        Ok(())
    }

    /// Runs until the task is dropped: each pass acts on the names that
    /// are due, then sleeps until the next one is (at most a minute).
    pub async fn run(mut self) {
        loop {
            // The configuration is let go before the sleep: held across
            // it, a minute's worth of reloads would keep the one replaced
            // first in memory beside the one in force.
            let wait = {
                let config = self.live.current();
                match config.acme.clone() {
                    Some(acme) => self.pass(&config, &acme).await,
                    None => MAX_IDLE,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One pass; returns how long to sleep.
    pub async fn pass(&mut self, config: &Config, acme: &AcmeConfig) -> Duration {
        let hosts = managed_hosts(config);
        for host in &hosts {
            if !self.records.contains_key(host) {
                self.records.insert(host.clone(), DomainRecord::new(now()));
            }
        }
        for host in &hosts {
            if self.records.get(host).is_some_and(|r| r.is_due(now())) {
                self.step(host, acme).await;
                if let Err(e) = self.store.save_status(&self.records) {
                    tracing::error!(error = %e, "ACME: cannot record the domains' state");
                }
                self.publish();
            }
        }
        let next = hosts
            .iter()
            .filter_map(|h| self.records.get(h))
            .map(|r| r.next_attempt)
            .min()
            .unwrap_or(u64::MAX);
        Duration::from_secs(next.saturating_sub(now())).clamp(Duration::from_secs(1), MAX_IDLE)
    }

    /// Acts on one due name: DNS check, order budget, issuance.
    async fn step(&mut self, host: &str, acme: &AcmeConfig) {
        let backoff = Backoff {
            first: acme.retry_first,
            max: acme.retry_max,
        };
        if !acme.addresses.is_empty() {
            let found = self.resolver.addresses(host).await;
            let resolved: Vec<IpAddr> = found.resolved.records().to_vec();
            let record = self
                .records
                .entry(host.to_owned())
                .or_insert_with(|| DomainRecord::new(now()));
            record.resolved = resolved.clone();
            if !resolved.iter().any(|ip| acme.addresses.contains(ip)) {
                let error = if resolved.is_empty() {
                    format!(
                        "{host} does not resolve ({:?}); it must point at this gateway ({})",
                        found.resolved,
                        list(&acme.addresses)
                    )
                } else {
                    format!(
                        "{host} resolves to {}, not to this gateway ({})",
                        list(&resolved),
                        list(&acme.addresses)
                    )
                };
                record.failed(State::DnsMismatch, error.clone(), now(), &backoff);
                tracing::warn!(%host, next_attempt = record.next_attempt, "ACME: not ordering: {error}");
                return;
            }
        }
        let budget = self
            .budget
            .get_or_insert_with(|| OrderBudget::new(acme.orders_per_hour, now() as f64));
        if let Err(wait) = budget.take(now() as f64) {
            if let Some(record) = self.records.get_mut(host) {
                record.next_attempt = now() + wait.as_secs().max(1);
            }
            tracing::info!(%host, wait_seconds = wait.as_secs(), "ACME: order budget spent; waiting ([acme] orders_per_hour)");
            return;
        }
        let outcome = match self.account(acme).await {
            Ok(account) => {
                let responders = issue::Responders {
                    kind: acme.challenge,
                    certificates: &self.certificates,
                    http01: &self.http01,
                };
                issue::issue(&account, host, &responders)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e),
        };
        let outcome = outcome.and_then(|issued| self.install(host, &issued));
        let record = self
            .records
            .entry(host.to_owned())
            .or_insert_with(|| DomainRecord::new(now()));
        match outcome {
            Ok(not_after) => {
                record.issued(not_after, acme.renew_before);
                tracing::info!(%host, not_after, renew_at = record.next_attempt, "ACME: certificate issued and installed");
            }
            Err(error) => {
                record.failed(State::Failed, error.clone(), now(), &backoff);
                tracing::warn!(%host, failures = record.failures, next_attempt = record.next_attempt, "ACME: issuance failed: {error}");
            }
        }
    }

    /// Stores and installs an issued certificate; returns its expiry.
    fn install(&self, host: &str, issued: &issue::Issued) -> Result<u64, String> {
        let path = self.store.certificate_path(host);
        let chain = issued.chain_pem.as_bytes();
        let key = certified_key_from_pem(chain, issued.key_pem.as_bytes(), &path)
            .map_err(|e| format!("the issued certificate is unusable: {e}"))?;
        let not_after = leaf_not_after(chain)
            .ok_or_else(|| "the issued certificate has no readable expiry".to_string())?;
        self.store
            .save_certificate(host, chain, issued.key_pem.as_bytes())
            .map_err(|e| format!("storing the certificate: {e}"))?;
        self.certificates.insert_acme(host, key);
        Ok(not_after)
    }

    /// The account: loaded from the store, or made and stored.
    async fn account(&mut self, acme: &AcmeConfig) -> Result<Account, String> {
        if let Some((directory, account)) = &self.account {
            if *directory == acme.directory {
                return Ok(account.clone());
            }
        }
        let http = http::AcmeHttp::new(roots(acme).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let stored = self
            .store
            .account(&acme.directory)
            .map_err(|e| e.to_string())?;
        let account = match stored {
            Some(credentials) => Account::builder_with_http(Box::new(http))
                .from_credentials(credentials)
                .await
                .map_err(|e| issue::IssueError::Account(e).to_string())?,
            None => {
                let contact: Vec<&str> = acme.contact.iter().map(String::as_str).collect();
                let (account, credentials) = Account::builder_with_http(Box::new(http))
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        acme.directory.clone(),
                        None,
                    )
                    .await
                    .map_err(|e| issue::IssueError::Account(e).to_string())?;
                self.store
                    .save_account(&acme.directory, credentials)
                    .map_err(|e| e.to_string())?;
                tracing::info!(directory = %acme.directory, id = account.id(), "ACME: account created");
                account
            }
        };
        self.account = Some((acme.directory.clone(), account.clone()));
        Ok(account)
    }

    /// The state counts, for `sealpost_acme_domains` (none without
    /// `[acme]`).
    fn publish(&self) {
        let config = self.live.current();
        if config.acme.is_none() {
            self.metrics.set_acme_domains(BTreeMap::new());
            return;
        }
        let mut counts: BTreeMap<&'static str, u64> =
            State::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        let hosts = managed_hosts(&config);
        for host in &hosts {
            let state = self.records.get(host).map_or(State::Pending, |r| r.state);
            *counts.entry(state.as_str()).or_default() += 1;
        }
        self.metrics.set_acme_domains(counts);
    }
}

fn list(addresses: &[IpAddr]) -> String {
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The roots trusted for the ACME directory's HTTPS.
pub fn roots(acme: &AcmeConfig) -> Result<rustls::RootCertStore, AcmeError> {
    let mut roots = rustls::RootCertStore::empty();
    match &acme.ca_file {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let bad = |reason: String| AcmeError::CaFile {
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| bad(e.to_string()))?;
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad("no CERTIFICATE block".into()));
            }
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reload frees the configuration it replaced even while the
    /// manager sleeps between passes (it used to hold it for the whole
    /// sleep: one more 100,000-domain configuration in memory).
    #[tokio::test]
    async fn the_manager_does_not_keep_a_replaced_configuration_while_it_sleeps() {
        let data = tempfile::tempdir().unwrap();
        let config = Config::for_test("[[domains]]\nname = \"old.example\"\ntenant = \"t\"\n");
        let resolver = Arc::new(Resolver::new(&config.dns.resolver_settings()).unwrap());
        let live = Arc::new(LiveConfig::new(config));
        let manager = AcmeManager::load(
            live.clone(),
            data.path(),
            resolver,
            Arc::new(SniCertResolver::default()),
            Arc::new(Metrics::new()),
        )
        .unwrap();
        let running = tokio::spawn(manager.run());
        // The manager has taken the configuration and is asleep.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let first = Arc::downgrade(&live.current());
        live.replace(Config::for_test(""));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while first.upgrade().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the replaced configuration is still held"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        running.abort();
    }
}
