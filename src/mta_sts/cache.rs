//! Policy discovery with the persisted cache (RFC 8461 sections 3, 5 and
//! 10.3): which policy applies to a recipient domain right now, and why.
//!
//! - A TXT lookup of `_mta-sts.<domain>` is made for every query; when its
//!   `id` equals the cached policy's and that policy has not expired, the
//!   cached policy is used without a fetch.
//! - A different `id`, or no unexpired cached policy, triggers an HTTPS fetch.
//! - A cached policy keeps applying until `expires_at` when the TXT record
//!   vanishes or becomes invalid, when DNS fails, or when a refresh fails
//!   (section 5.1: "if a valid TXT record is found but no policy can be
//!   fetched ... and there is no valid previously cached policy, senders MUST
//!   continue as though the domain has not implemented MTA-STS").
//! - After a failed fetch (network, status, media type, or invalid policy)
//!   that domain is not fetched again for [`RETRY_AFTER_FAILURE`] (5
//!   minutes). This negative cache lives in memory only: a restart may
//!   retry at once, which costs one fetch and loses no policy.
//! - Concurrent queries for one domain are serialised, so they share one
//!   fetch: the later ones find the freshly cached policy (single-flight).
//! - [`PolicyCache::refresh_due`] refreshes policies before they expire
//!   (at half their lifetime, at least daily) and drops expired entries;
//!   [`spawn_refresher`] calls it periodically.
//! - In a fleet ([`PolicyCache::share_with`]), a fetch is preceded by a
//!   look at the policies other nodes fetched (same TXT `id`, not
//!   expired, newer than this node's copy) and followed by publishing
//!   the policy fetched; the sled store stays the durable copy.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use super::fetch::{FetchError, PolicyFetcher};
use super::policy::{Mode, Policy, PolicyError};
use super::shared::SharedPolicies;
use super::store::{CachedPolicy, Clock, PolicyStore, UnixSeconds};
use super::txt::{parse_txt_records, txt_name, StsTxtSource, TxtError, TxtLookupError};

/// How long a domain is not fetched again after a failed fetch.
pub const RETRY_AFTER_FAILURE: u64 = 300;
/// A cached policy is refreshed after half its lifetime, but at least daily.
pub(crate) const MAX_REFRESH_INTERVAL: u64 = 86_400;

/// Why fetching a policy gave no usable policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryFailure {
    #[error(transparent)]
    Fetch(FetchError),
    #[error("mta-sts.{domain}: invalid policy: {error}")]
    Invalid { domain: String, error: PolicyError },
}

impl DiscoveryFailure {
    /// The RFC 8460 `result-type` for a TLS report.
    pub fn tlsrpt_result_type(&self) -> &'static str {
        match self {
            DiscoveryFailure::Fetch(e) => e.tlsrpt_result_type(),
            DiscoveryFailure::Invalid { .. } => "sts-policy-invalid",
        }
    }
}

/// How the policy in effect (or its absence) was arrived at.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LookupReason {
    /// A policy was fetched now (first time, new id, or the cached one expired).
    Fetched,
    /// The TXT id equals the unexpired cached policy's.
    CachedCurrent,
    /// No usable TXT record now; the unexpired cached policy still applies.
    CachedTxtAbsent { txt: TxtProblem },
    /// The TXT id changed but the fetch failed; the cached policy still applies.
    CachedFetchFailed { failure: DiscoveryFailure },
    /// The TXT id changed, but a fetch failed less than 5 minutes ago.
    CachedRetryWait { until: UnixSeconds },
    /// No usable TXT record and no cached policy: no MTA-STS.
    NoPolicy { txt: TxtProblem },
    /// A TXT record exists but the fetch failed; nothing cached: no MTA-STS.
    FetchFailed { failure: DiscoveryFailure },
    /// A fetch failed less than 5 minutes ago; nothing cached: no MTA-STS.
    RetryWait {
        until: UnixSeconds,
        failure: DiscoveryFailure,
    },
}

/// Why the TXT record gave no id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxtProblem {
    Absent,
    Invalid(TxtError),
    LookupFailed(String),
}

impl fmt::Display for TxtProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxtProblem::Absent => f.write_str("no _mta-sts TXT record"),
            TxtProblem::Invalid(e) => write!(f, "invalid _mta-sts TXT record: {e}"),
            TxtProblem::LookupFailed(r) => write!(f, "_mta-sts TXT lookup failed: {r}"),
        }
    }
}

impl fmt::Display for LookupReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupReason::Fetched => f.write_str("policy fetched"),
            LookupReason::CachedCurrent => f.write_str("cached policy is current"),
            LookupReason::CachedTxtAbsent { txt } => write!(f, "{txt}; cached policy applied"),
            LookupReason::CachedFetchFailed { failure } => {
                write!(f, "new policy not fetched ({failure}); cached policy applied")
            }
            LookupReason::CachedRetryWait { until } => write!(
                f,
                "new policy not fetched (last fetch failed, retry after {until}); cached policy applied"
            ),
            LookupReason::NoPolicy { txt } => write!(f, "{txt}; no MTA-STS policy"),
            LookupReason::FetchFailed { failure } => {
                write!(f, "policy fetch failed ({failure}); no MTA-STS policy")
            }
            LookupReason::RetryWait { until, failure } => write!(
                f,
                "policy fetch failed ({failure}), not retried before {until}; no MTA-STS policy"
            ),
        }
    }
}

/// The answer to "which MTA-STS policy applies to this domain now?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLookup {
    pub domain: String,
    /// The policy in effect, if any (possibly mode `none`).
    pub policy: Option<CachedPolicy>,
    pub reason: LookupReason,
}

impl PolicyLookup {
    /// The policy to apply, if any.
    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref().map(|c| &c.policy)
    }
    pub fn mode(&self) -> Option<Mode> {
        self.policy().map(|p| p.mode)
    }
    pub fn id(&self) -> Option<&str> {
        self.policy.as_ref().map(|c| c.id.as_str())
    }
}

/// What a refresh did for one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    Refreshed {
        domain: String,
        id: String,
    },
    Failed {
        domain: String,
        failure: DiscoveryFailure,
    },
    Waiting {
        domain: String,
        until: UnixSeconds,
    },
    /// The entry had expired and was removed.
    Dropped {
        domain: String,
    },
}

impl fmt::Display for RefreshOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefreshOutcome::Refreshed { domain, id } => {
                write!(f, "{domain}: MTA-STS policy refreshed (id {id})")
            }
            RefreshOutcome::Failed { domain, failure } => write!(
                f,
                "{domain}: MTA-STS refresh failed ({failure}); cached policy kept"
            ),
            RefreshOutcome::Waiting { domain, until } => write!(
                f,
                "{domain}: MTA-STS refresh waits until {until} after a failed fetch"
            ),
            RefreshOutcome::Dropped { domain } => {
                write!(f, "{domain}: expired MTA-STS policy removed")
            }
        }
    }
}

/// The answer of [`PolicyCache::recheck_before_bounce`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BounceCheck {
    /// The policy is what the failed attempts used: the bounce stands.
    Unchanged(PolicyLookup),
    /// The policy changed (or is gone): try delivery again instead.
    Changed(PolicyLookup),
}

impl fmt::Display for BounceCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BounceCheck::Unchanged(lookup) => write!(
                f,
                "{}: MTA-STS policy unchanged ({}); the bounce stands",
                lookup.domain, lookup.reason
            ),
            BounceCheck::Changed(lookup) => write!(
                f,
                "{}: MTA-STS policy changed ({}); retry delivery",
                lookup.domain, lookup.reason
            ),
        }
    }
}

/// Policy discovery, fetch and the persisted cache. Share it in an `Arc`.
pub struct PolicyCache {
    txt: Arc<dyn StsTxtSource>,
    fetcher: Arc<dyn PolicyFetcher>,
    store: PolicyStore,
    clock: Arc<dyn Clock>,
    /// Domain -> (retry not before, the failure).
    negative: Mutex<HashMap<String, (UnixSeconds, DiscoveryFailure)>>,
    /// Domain -> the lock held while that domain is being looked up.
    flights: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    /// The fleet's policies, once this node joined one.
    fleet: OnceLock<Arc<dyn SharedPolicies>>,
}

/// Lower case without a trailing dot: the cache key and the name used in
/// `_mta-sts.<domain>` and `mta-sts.<domain>`.
pub(crate) fn normalize_domain(domain: &str) -> String {
    domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase()
}

impl PolicyCache {
    pub fn new(
        txt: Arc<dyn StsTxtSource>,
        fetcher: Arc<dyn PolicyFetcher>,
        store: PolicyStore,
        clock: Arc<dyn Clock>,
    ) -> PolicyCache {
        PolicyCache {
            txt,
            fetcher,
            store,
            clock,
            negative: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
            fleet: OnceLock::new(),
        }
    }

    /// From now on, consult the fleet's policies before fetching and
    /// publish the policies fetched (set once, when the node joins).
    pub fn share_with(&self, fleet: Arc<dyn SharedPolicies>) {
        let _ = self.fleet.set(fleet);
    }

    /// The policy that applies to `domain` now, with the reason.
    pub async fn policy_for(&self, domain: &str) -> PolicyLookup {
        self.lookup(domain, false).await
    }

    /// `bypass_wait`: fetch a new id even within 5 minutes of a failure.
    async fn lookup(&self, domain: &str, bypass_wait: bool) -> PolicyLookup {
        let domain = normalize_domain(domain);
        let flight = self.flight(&domain);
        let _guard = flight.lock().await;

        let now = self.clock.now();
        let fresh = self.cached(&domain).filter(|c| c.is_fresh(now));
        let txt = match self.txt.lookup_txt(&txt_name(&domain)).await {
            Ok(records) => match parse_txt_records(&records) {
                Ok(record) => Ok(record.id),
                Err(TxtError::NoStsRecord) => Err(TxtProblem::Absent),
                Err(e) => Err(TxtProblem::Invalid(e)),
            },
            Err(TxtLookupError::NoRecords { .. }) => Err(TxtProblem::Absent),
            Err(TxtLookupError::Failed { reason, .. }) => Err(TxtProblem::LookupFailed(reason)),
        };
        let (policy, reason) = match (txt, fresh) {
            (Err(txt), Some(cached)) => (Some(cached), LookupReason::CachedTxtAbsent { txt }),
            (Err(txt), None) => (None, LookupReason::NoPolicy { txt }),
            (Ok(id), Some(cached)) if cached.id == id => {
                (Some(cached), LookupReason::CachedCurrent)
            }
            (Ok(id), fresh) => match self.waiting(&domain, now).filter(|_| !bypass_wait) {
                Some((until, failure)) => match fresh {
                    Some(cached) => (Some(cached), LookupReason::CachedRetryWait { until }),
                    None => (None, LookupReason::RetryWait { until, failure }),
                },
                None => match self.fetch_and_store(&domain, &id).await {
                    Ok(entry) => (Some(entry), LookupReason::Fetched),
                    Err(failure) => match fresh {
                        Some(cached) => (Some(cached), LookupReason::CachedFetchFailed { failure }),
                        None => (None, LookupReason::FetchFailed { failure }),
                    },
                },
            },
        };
        tracing::debug!(domain = %domain, reason = %reason, "MTA-STS policy lookup");
        PolicyLookup {
            domain,
            policy,
            reason,
        }
    }

    /// Before the final bounce of a message deferred because no MX passed
    /// an enforced policy, look for a new policy (RFC 8461 section 5.1: a
    /// delivery "MUST NOT be permanently failed until the sender has first
    /// checked for the presence of a new policy"). `used_id` is the id of the
    /// policy the attempts were made under. A new id is fetched even within
    /// 5 minutes of a failed fetch (this check is rare and decisive).
    /// `Changed` unless the enforce policy with `used_id` still applies.
    pub async fn recheck_before_bounce(&self, domain: &str, used_id: &str) -> BounceCheck {
        let lookup = self.lookup(domain, true).await;
        let same = lookup.mode() == Some(Mode::Enforce) && lookup.id() == Some(used_id);
        if same {
            BounceCheck::Unchanged(lookup)
        } else {
            BounceCheck::Changed(lookup)
        }
    }

    /// Refreshes every cached policy past its refresh point and removes
    /// expired ones. Call periodically (see [`spawn_refresher`]).
    pub async fn refresh_due(&self) -> Vec<RefreshOutcome> {
        let now = self.clock.now();
        let mut outcomes = Vec::new();
        for entry in self.store.entries() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::warn!(error = %e, "MTA-STS cache entry skipped");
                    continue;
                }
            };
            if !entry.is_fresh(now) {
                if let Err(e) = self.store.remove(&entry.domain) {
                    tracing::warn!(error = %e, "MTA-STS cache entry not removed");
                }
                outcomes.push(RefreshOutcome::Dropped {
                    domain: entry.domain,
                });
                continue;
            }
            let lifetime = entry.expires_at - entry.fetched_at;
            let refresh_at = entry.fetched_at + (lifetime / 2).min(MAX_REFRESH_INTERVAL);
            if now >= refresh_at {
                outcomes.push(self.refresh_one(&entry).await);
            }
        }
        outcomes
    }

    async fn refresh_one(&self, entry: &CachedPolicy) -> RefreshOutcome {
        let domain = entry.domain.clone();
        let flight = self.flight(&domain);
        let _guard = flight.lock().await;
        let now = self.clock.now();
        // A concurrent lookup may have refreshed it meanwhile.
        if let Some(current) = self.cached(&domain) {
            if current.fetched_at > entry.fetched_at {
                return RefreshOutcome::Refreshed {
                    domain,
                    id: current.id,
                };
            }
        }
        if let Some((until, _)) = self.waiting(&domain, now) {
            return RefreshOutcome::Waiting { domain, until };
        }
        // The id from DNS if there is a valid record; else keep the cached
        // one (a vanished record does not end a cached policy).
        let id = match self.txt.lookup_txt(&txt_name(&domain)).await {
            Ok(records) => parse_txt_records(&records)
                .map(|r| r.id)
                .unwrap_or_else(|_| entry.id.clone()),
            Err(_) => entry.id.clone(),
        };
        match self.fetch_and_store(&domain, &id).await {
            Ok(fresh) => RefreshOutcome::Refreshed {
                domain,
                id: fresh.id,
            },
            Err(failure) => RefreshOutcome::Failed { domain, failure },
        }
    }

    /// The cached entry, whatever its age (a broken entry counts as none).
    pub fn cached(&self, domain: &str) -> Option<CachedPolicy> {
        match self.store.get(domain) {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!(error = %e, "MTA-STS cache entry ignored");
                None
            }
        }
    }

    fn waiting(&self, domain: &str, now: UnixSeconds) -> Option<(UnixSeconds, DiscoveryFailure)> {
        let negative = self.negative.lock().unwrap_or_else(|p| p.into_inner());
        negative
            .get(domain)
            .filter(|(until, _)| now < *until)
            .cloned()
    }

    async fn fetch_and_store(
        &self,
        domain: &str,
        id: &str,
    ) -> Result<CachedPolicy, DiscoveryFailure> {
        if let Some(entry) = self.fetched_by_the_fleet(domain, id).await {
            self.negative
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(domain);
            if let Err(e) = self.store.put(&entry) {
                tracing::warn!(error = %e, "MTA-STS policy not persisted");
            }
            return Ok(entry);
        }
        let result = match self.fetcher.fetch(domain).await {
            Err(e) => Err(DiscoveryFailure::Fetch(e)),
            Ok(text) => Policy::parse_noting(&text)
                .map(|(policy, ignored)| {
                    for field in &ignored {
                        tracing::info!(domain, %field, "MTA-STS policy: repeated field ignored");
                    }
                    let fetched_at = self.clock.now();
                    CachedPolicy {
                        domain: domain.to_string(),
                        id: id.to_string(),
                        expires_at: fetched_at + policy.max_age,
                        policy,
                        text,
                        fetched_at,
                    }
                })
                .map_err(|error| DiscoveryFailure::Invalid {
                    domain: domain.to_string(),
                    error,
                }),
        };
        if let (Ok(entry), Some(fleet)) = (&result, self.fleet.get()) {
            fleet.publish(entry).await;
        }
        let mut negative = self.negative.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(entry) => {
                negative.remove(domain);
                if let Err(e) = self.store.put(entry) {
                    // The policy still applies now; only persistence failed.
                    tracing::warn!(error = %e, "MTA-STS policy not persisted");
                }
            }
            Err(failure) => {
                tracing::info!(domain, error = %failure, "MTA-STS policy fetch failed");
                let now = self.clock.now();
                negative.retain(|_, (until, _)| *until > now);
                negative.insert(
                    domain.to_string(),
                    (self.clock.now() + RETRY_AFTER_FAILURE, failure.clone()),
                );
            }
        }
        result
    }

    /// The policy another node of the fleet fetched for `domain` under
    /// `id`: fresh, and newer than this node's copy (a refresh must not
    /// take back what this node published itself).
    async fn fetched_by_the_fleet(&self, domain: &str, id: &str) -> Option<CachedPolicy> {
        let fleet = self.fleet.get()?;
        let ours = self.cached(domain).map_or(0, |c| c.fetched_at);
        let entry = fleet
            .get(domain, id, self.clock.now())
            .await
            .filter(|e| e.fetched_at > ours)?;
        tracing::info!(
            domain,
            id,
            "MTA-STS policy taken from the fleet's shared cache"
        );
        Some(entry)
    }

    fn flight(&self, domain: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = flights.get(domain).and_then(Weak::upgrade) {
            return existing;
        }
        // Drop the locks nobody holds any more, so the map stays small.
        flights.retain(|_, weak| weak.strong_count() > 0);
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        flights.insert(domain.to_string(), Arc::downgrade(&lock));
        lock
    }
}

/// Runs [`PolicyCache::refresh_due`] every `every` until the task is aborted.
pub(crate) fn spawn_refresher(
    cache: Arc<PolicyCache>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            for outcome in cache.refresh_due().await {
                tracing::debug!(?outcome, "MTA-STS refresh");
            }
        }
    })
}
