//! Sending the daily reports (RFC 8460 sections 3 to 5): once a UTC day,
//! after midnight with jitter ([`run_daily`]), or at once through the admin
//! socket (`sealpost tls-reports send-now`), every report of a finished
//! day not sent yet is built, gzipped, and sent to each `rua` of the
//! policy domain's `_smtp._tls` TXT record: by mail through sealpost's
//! own queue, or by HTTPS POST. A failed POST is tried again on the
//! schedule of [`retry_after`] (the state kept with the report, so a
//! restart keeps it); the other `rua` destinations (a `mailto:`) are used
//! whatever the POST did (section 5: each destination gets the report).
//! What each try did is kept with the report (`sealpost tls-reports
//! list`). The clock is passed in.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sealpost_queue::{
    AcceptedPolicy, Body, NewMessage, NewRecipient, NewTransaction, Queue, TlsRequest,
};
use serde::{Deserialize, Serialize};

use super::daily::{Daily, DailyError, ReportKey, Retry, SentRecord};
use super::https::HttpsPoster;
use super::outgoing::{self, Rua, Submitter};
use super::session::{utc_day, SessionResult};
use crate::dns::{Lookup, Resolver};
use crate::live::LiveConfig;
use crate::policy::PeerQuery;

/// The time, injectable for tests.
pub trait Clock: Send + Sync {
    /// Unix seconds now.
    fn now(&self) -> u64;
}

/// The system's clock.
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        crate::date::unix_seconds(SystemTime::now())
    }
}

/// The waits, in minutes, before the second, third and fourth POST of a
/// report to one HTTPS `rua`: a receiver that is down for a few hours
/// still gets the day's report, and one that stays down is not asked
/// forever.
const RETRY_MINUTES: [u64; 3] = [15, 60, 240];

/// How many times a report is POSTed to one HTTPS `rua` at most.
pub(crate) const HTTPS_TRIES: u32 = RETRY_MINUTES.len() as u32 + 1;

/// The wait before the next POST after `tries` failed ones (`None`: no
/// more tries).
pub(crate) fn retry_after(tries: u32) -> Option<Duration> {
    let index = usize::try_from(tries.checked_sub(1)?).ok()?;
    RETRY_MINUTES
        .get(index)
        .map(|minutes| Duration::from_secs(minutes * 60))
}

/// [`Reporter::next_retry`] when no retry is waiting.
const NO_RETRY: u64 = u64::MAX;

/// The text kept for one try of an HTTPS `rua` (`tries`: this one
/// included), and the retry to keep, if one is left.
fn https_try(
    rua: &str,
    result: Result<(), String>,
    tries: u32,
    now: u64,
) -> (String, Option<Retry>) {
    let of = format!("try {tries} of {HTTPS_TRIES}");
    match result {
        Ok(()) => (format!("sent ({of})"), None),
        Err(e) => match retry_after(tries) {
            Some(wait) => {
                let next_at = now + wait.as_secs();
                let text = format!(
                    "failed: {e} ({of}; next try at {})",
                    crate::date::rfc3339(next_at)
                );
                let retry = Retry {
                    rua: rua.to_string(),
                    tries,
                    next_at,
                };
                (text, Some(retry))
            }
            None => (format!("failed: {e} ({of}; given up)"), None),
        },
    }
}

/// What `sealpost tls-reports list` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// Reports sent (or tried), oldest first.
    pub sent: Vec<SentRecord>,
    /// Reports with sessions counted and not sent yet (today's included).
    pub pending: Vec<ReportKey>,
}

/// Records sessions and sends reports (see the module docs).
pub struct Reporter {
    daily: Daily,
    live: Arc<LiveConfig>,
    queue: Arc<Queue>,
    resolver: Arc<Resolver>,
    poster: Option<HttpsPoster>,
    /// One run at a time (the daily one, or `send-now`).
    running: tokio::sync::Mutex<()>,
    /// When the earliest HTTPS retry is due ([`NO_RETRY`]: none), kept
    /// here so that the daily loop's minute check reads no store.
    retry_at: std::sync::atomic::AtomicU64,
}

impl Reporter {
    pub fn new(
        daily: Daily,
        live: Arc<LiveConfig>,
        queue: Arc<Queue>,
        resolver: Arc<Resolver>,
        poster: Option<HttpsPoster>,
    ) -> Reporter {
        let reporter = Reporter {
            daily,
            live,
            queue,
            resolver,
            poster,
            running: tokio::sync::Mutex::new(()),
            retry_at: std::sync::atomic::AtomicU64::new(NO_RETRY),
        };
        reporter.refresh_next_retry();
        reporter
    }

    /// Whether mail from `mail_from` is report mail (never counted).
    pub(crate) fn is_report_mail(&self, mail_from: &str) -> bool {
        let config = self.live.current();
        let sender = config.tls_reports.sender(config.server.hostname.as_str());
        mail_from.eq_ignore_ascii_case(&sender)
    }

    /// Counts one session (blocking: a sled write, no fsync). Errors are
    /// logged: reporting never stops delivery.
    pub fn record(&self, result: &SessionResult) {
        if !self.live.current().tls_reports.send {
            return;
        }
        if let Err(e) = self.daily.record(result) {
            tracing::warn!(error = %e, "counting a session for TLS reports failed");
        }
    }

    /// Makes the counts durable (at shutdown).
    pub fn flush(&self) {
        if let Err(e) = self.daily.flush() {
            tracing::warn!(error = %e, "flushing the TLS report counts failed");
        }
    }

    /// What was sent and what is pending.
    pub fn listing(&self, now: u64) -> Result<Listing, DailyError> {
        Ok(Listing {
            sent: self.daily.sent()?,
            pending: self.daily.pending(&utc_day(now + 86_400))?,
        })
    }

    /// One report: as sent, or as it would be sent now.
    pub fn show(&self, key: &ReportKey) -> Result<Option<String>, DailyError> {
        if let Some(sent) = self.daily.sent()?.into_iter().find(|s| &s.key == key) {
            return Ok(sent.report);
        }
        let policies = self.daily.policies(key)?;
        if policies.is_empty() {
            return Ok(None);
        }
        let report = outgoing::build(key, &self.submitter(&key.tenant), policies);
        Ok(Some(outgoing::gzip(&report).0))
    }

    fn submitter(&self, tenant: &str) -> Submitter {
        let config = self.live.current();
        let hostname = config.server.hostname.as_str();
        let (organization, contact) = config.tls_reports.identity(tenant, hostname);
        Submitter {
            organization,
            contact,
            domain: hostname.to_string(),
            sender: config.tls_reports.sender(hostname),
        }
    }

    /// Sends every report of a day before today's (`include_today`: and
    /// today's, which is then final) not sent yet, then prunes what is
    /// past retention. Returns what was done.
    pub(crate) async fn send_due(
        &self,
        now: u64,
        include_today: bool,
    ) -> Result<Vec<SentRecord>, DailyError> {
        let _one = self.running.lock().await;
        let before = utc_day(if include_today { now + 86_400 } else { now });
        let mut done = Vec::new();
        for key in self.daily.pending(&before)? {
            if let Some(record) = self.send_one(&key, now).await? {
                self.daily.mark_sent(&record)?;
                done.push(record);
            }
        }
        done.extend(self.retry_due_locked(now).await?);
        self.prune(now);
        self.refresh_next_retry();
        Ok(done)
    }

    /// POSTs again every report whose HTTPS retry is due at `now`;
    /// returns the records so updated.
    pub(crate) async fn retry_due(&self, now: u64) -> Result<Vec<SentRecord>, DailyError> {
        let _one = self.running.lock().await;
        let done = self.retry_due_locked(now).await;
        self.refresh_next_retry();
        done
    }

    async fn retry_due_locked(&self, now: u64) -> Result<Vec<SentRecord>, DailyError> {
        let mut done = Vec::new();
        for mut record in self.daily.sent()? {
            if !record.retries.iter().any(|r| r.next_at <= now) {
                continue;
            }
            let Some(report) = record.report.as_deref() else {
                // Kept without its text (never so written): nothing to send.
                tracing::warn!(domain = %record.key.domain, day = %record.key.day, "TLS report retry without its report text; dropped");
                record.retries.clear();
                self.daily.mark_sent(&record)?;
                continue;
            };
            let gzipped = outgoing::gzip_json(report);
            let mut kept = Vec::new();
            for retry in std::mem::take(&mut record.retries) {
                if retry.next_at > now {
                    kept.push(retry);
                    continue;
                }
                let tries = retry.tries + 1;
                let result = self.post(&retry.rua, gzipped.clone()).await;
                let (text, again) = https_try(&retry.rua, result, tries, now);
                tracing::info!(domain = %record.key.domain, tenant = %record.key.tenant, day = %record.key.day, rua = %retry.rua, result = %text, "TLS report POST tried again");
                record.deliveries.push((retry.rua, text));
                kept.extend(again);
            }
            record.retries = kept;
            self.daily.mark_sent(&record)?;
            done.push(record);
        }
        Ok(done)
    }

    /// When the next HTTPS retry is due, if one is.
    pub(crate) fn next_retry(&self) -> Option<u64> {
        let at = self.retry_at.load(std::sync::atomic::Ordering::Acquire);
        (at != NO_RETRY).then_some(at)
    }

    /// Reads the earliest retry from the store (at start, and after each
    /// run that may have added or used one).
    fn refresh_next_retry(&self) {
        let at = match self.daily.sent() {
            Ok(sent) => sent
                .iter()
                .flat_map(|record| record.retries.iter().map(|r| r.next_at))
                .min()
                .unwrap_or(NO_RETRY),
            Err(e) => {
                tracing::warn!(error = %e, "reading the TLS reports' retries failed");
                NO_RETRY
            }
        };
        self.retry_at
            .store(at, std::sync::atomic::Ordering::Release);
    }

    async fn post(&self, url: &str, gzipped: Vec<u8>) -> Result<(), String> {
        match &self.poster {
            Some(poster) => poster.post(url, gzipped).await.map_err(|e| e.to_string()),
            None => Err("no HTTPS client (no trust roots)".to_string()),
        }
    }

    /// `None`: the TXT lookup failed; tried again at the next run.
    async fn send_one(&self, key: &ReportKey, now: u64) -> Result<Option<SentRecord>, DailyError> {
        let name = format!("_smtp._tls.{}", key.domain);
        let rua = match self.resolver.txt(&name).await {
            Lookup::Records { records, .. } => outgoing::rua_of(&records),
            Lookup::NoData { .. } | Lookup::NxDomain { .. } => Vec::new(),
            Lookup::Failed(e) => {
                tracing::info!(domain = %key.domain, error = %e, "TLSRPT record lookup failed; the report waits for the next run");
                return Ok(None);
            }
        };
        let submitter = self.submitter(&key.tenant);
        let report = outgoing::build(key, &submitter, self.daily.policies(key)?);
        let (json, gzipped) = outgoing::gzip(&report);
        let mut deliveries = Vec::new();
        let mut retries = Vec::new();
        if rua.is_empty() {
            deliveries.push(("none".to_string(), format!("no TLSRPT record at {name}")));
        }
        for destination in rua {
            let result = match &destination {
                Rua::Mail(to) => {
                    let body = outgoing::mail(key, &submitter, &report, &gzipped, to, now);
                    let queued = self.enqueue(key, &submitter, to, body).await;
                    queued.unwrap_or_else(|e| format!("failed: {e}"))
                }
                Rua::Https(url) => {
                    let posted = self.post(url, gzipped.clone()).await;
                    let (text, again) = https_try(url, posted, 1, now);
                    retries.extend(again);
                    text
                }
            };
            tracing::info!(domain = %key.domain, tenant = %key.tenant, day = %key.day, rua = %destination, %result, "TLS report sent");
            deliveries.push((destination.to_string(), result));
        }
        Ok(Some(SentRecord {
            key: key.clone(),
            at: now,
            deliveries,
            report: Some(json),
            retries,
        }))
    }

    /// Queues the report mail to `to` (RFC 8689 `TLS-Required: No`).
    async fn enqueue(
        &self,
        key: &ReportKey,
        submitter: &Submitter,
        to: &str,
        body: Vec<u8>,
    ) -> Result<String, String> {
        let config = self.live.current();
        let domain = to
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        let resolution = config.policy.resolve(
            "",
            PeerQuery::Outbound {
                recipient_domain: &domain,
            },
        );
        let message = NewMessage {
            tenant: key.tenant.clone(),
            mail_from: submitter.sender.clone(),
            mail_params: Vec::new(),
            recipients: vec![NewRecipient {
                address: to.to_string(),
                destination: domain,
                params: Vec::new(),
            }],
            policy: AcceptedPolicy {
                level: resolution.level.to_string(),
                min_tls: resolution.min_tls.to_string(),
                explanation: format!("TLS report: {resolution}"),
            },
            body: Vec::new(),
            arrived_at: SystemTime::now(),
        };
        let (mut copy, _) = message.into_copy(String::new());
        copy.tls_request = TlsRequest::TlsOptional;
        let queue = self.queue.clone();
        let stored = tokio::task::spawn_blocking(move || {
            queue
                .enqueue_transaction(NewTransaction {
                    copies: vec![copy],
                    body: Body::Memory(body),
                })?
                .wait()
        })
        .await
        .map_err(|e| e.to_string())?;
        match stored {
            Ok(ids) => Ok(format!(
                "queued as {}",
                ids.first().map(ToString::to_string).unwrap_or_default()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Forgets sent reports, counts and received reports past
    /// `[tls_reports] retention_days`.
    pub fn prune(&self, now: u64) {
        let config = self.live.current();
        let keep = u64::from(config.tls_reports.retention_days) * 86_400;
        let from = now.saturating_sub(keep);
        match self.daily.prune(&utc_day(from)) {
            Ok(0) => {}
            Ok(n) => tracing::info!(entries = n, "old TLS report counts pruned"),
            Err(e) => tracing::warn!(error = %e, "pruning TLS report counts failed"),
        }
        let received = super::ReportStore::new(&config.server.data_dir);
        match received.prune(from) {
            Ok(0) => {}
            Ok(n) => tracing::info!(reports = n, "old received TLS reports pruned"),
            Err(e) => tracing::warn!(error = %e, "pruning received TLS reports failed"),
        }
    }
}

/// The next daily run after `now`: the next midnight UTC plus `jitter`
/// times `fraction` (0 to 1).
pub(crate) fn next_run(now: u64, jitter: Duration, fraction: f64) -> u64 {
    let midnight = (now / 86_400 + 1) * 86_400;
    midnight + (jitter.as_secs_f64() * fraction.clamp(0.0, 1.0)) as u64
}

fn random_fraction() -> f64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    f64::from(u32::from_be_bytes(bytes)) / f64::from(u32::MAX)
}

/// Sends the reports once a day after midnight UTC, with jitter, for as
/// long as the returned future runs. Looks at `clock` every `poll` (a
/// minute in `sealpost serve`), so a clock that jumps (or a test's) is
/// followed. The first run's time is taken from `clock` when this is
/// called, not when the future first runs.
pub fn run_daily(
    reporter: Arc<Reporter>,
    clock: Arc<dyn Clock>,
    poll: Duration,
) -> impl std::future::Future<Output = ()> + Send {
    let jitter = reporter.live.current().tls_reports.jitter;
    let mut at = next_run(clock.now(), jitter, random_fraction());
    async move {
        loop {
            // Woken early for a failed POST's next try.
            while clock.now() < at {
                let sending = reporter.live.current().tls_reports.send;
                if sending && reporter.next_retry().is_some_and(|due| due <= clock.now()) {
                    if let Err(e) = reporter.retry_due(clock.now()).await {
                        tracing::warn!(error = %e, "trying TLS report POSTs again failed");
                    }
                }
                let left = Duration::from_secs(at.saturating_sub(clock.now()));
                tokio::time::sleep(left.min(poll)).await;
            }
            reporter.flush();
            if reporter.live.current().tls_reports.send {
                match reporter.send_due(clock.now(), false).await {
                    Ok(done) => tracing::info!(reports = done.len(), "daily TLS reports done"),
                    Err(e) => tracing::warn!(error = %e, "daily TLS reports failed"),
                }
            } else {
                reporter.prune(clock.now());
            }
            let jitter = reporter.live.current().tls_reports.jitter;
            at = next_run(clock.now(), jitter, random_fraction());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_post_is_tried_again_a_bounded_number_of_times() {
        let minutes = |m: u64| Some(Duration::from_secs(m * 60));
        // (tries so far, the wait before the next)
        let table = [
            (0, None),
            (1, minutes(15)),
            (2, minutes(60)),
            (3, minutes(240)),
            (4, None),
            (9, None),
        ];
        for (tries, wait) in table {
            assert_eq!(retry_after(tries), wait, "after {tries} tries");
        }
        let now = 1_767_225_600;
        let url = "https://r.test/x";
        let (text, retry) = https_try(url, Err("HTTP 503".into()), 1, now);
        assert_eq!(
            text,
            "failed: HTTP 503 (try 1 of 4; next try at 2026-01-01T00:15:00Z)"
        );
        assert_eq!(
            retry,
            Some(Retry {
                rua: url.into(),
                tries: 1,
                next_at: now + 900
            })
        );
        let (text, retry) = https_try(url, Err("HTTP 503".into()), 4, now);
        assert_eq!(text, "failed: HTTP 503 (try 4 of 4; given up)");
        assert_eq!(retry, None);
        assert_eq!(
            https_try(url, Ok(()), 2, now),
            ("sent (try 2 of 4)".to_string(), None)
        );
    }

    #[test]
    fn the_daily_run_is_after_midnight_within_the_jitter() {
        let day = 1_459_468_800;
        let hour = Duration::from_secs(3600);
        assert_eq!(next_run(day + 10, hour, 0.0), day + 86_400);
        assert_eq!(next_run(day + 10, hour, 1.0), day + 86_400 + 3600);
        assert_eq!(next_run(day, hour, 0.5), day + 86_400 + 1800);
        let f = random_fraction();
        assert!((0.0..=1.0).contains(&f));
    }
}
