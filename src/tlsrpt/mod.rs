//! Receiving SMTP TLS reports (RFC 8460) for managed domains: other
//! organizations' daily reports about their sessions to our tenants' mail
//! servers, POSTed to `https://mta-sts.<domain>/tlsrpt` on the
//! `[mta_sts_host]` listener (section 5.4; `application/tlsrpt+gzip` or
//! `application/tlsrpt+json`). Each is decoded under hard limits
//! ([`report::Limits`]: 1 MiB as received, 8 MiB of JSON), checked to be
//! about the domain it was sent to, and stored for the domain's tenant
//! ([`store`]) before the answer; `sealpost tls-reports received` (the
//! admin socket's `GET /tls-reports/received`) sums them per tenant,
//! sending organization and failure type.
//!
//! Sending reports (section 4, the other half): every outbound session
//! is counted as a [`session::SessionResult`] in the durable daily
//! aggregate ([`daily`]); once a UTC day the reports are built
//! ([`outgoing`]) and sent by mail through the queue or by HTTPS POST
//! ([`send`], [`https`]).

pub mod daily;
pub mod https;
pub mod mail;
pub(crate) mod outgoing;
pub mod report;
pub mod send;
pub mod session;
pub mod store;

use std::sync::Arc;

use crate::live::LiveConfig;

pub use daily::{Daily, ReportKey, Retry, SentRecord};
pub use report::{decode, Encoding, Limits, Report, ReportError};
pub(crate) use send::SystemClock;
pub use send::{Clock, Listing, Reporter};
pub use session::{PolicySeen, PolicyType, SessionOutcome, SessionResult};
pub(crate) use store::{ReportStore, Stored, StoredReport, SummaryRow};

/// The path of the HTTPS report endpoint on the MTA-STS host.
pub(crate) const HTTPS_PATH: &str = "/tlsrpt";

/// Why a report was not accepted; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("{0} has no hosted MTA-STS policy here")]
    NotHosted(String),
    #[error("Content-Type must be application/tlsrpt+gzip or application/tlsrpt+json")]
    MediaType,
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("the report is about {about}, not {domain}")]
    OtherDomain { domain: String, about: String },
    #[error("storing the report: {0}")]
    Store(#[from] store::StoreError),
}

impl ReceiveError {
    /// The HTTP status answering this refusal.
    pub fn status(&self) -> u16 {
        match self {
            ReceiveError::NotHosted(_) => 404,
            ReceiveError::MediaType => 415,
            ReceiveError::Report(ReportError::TooLarge { .. })
            | ReceiveError::Report(ReportError::TooLargeDecompressed { .. }) => 413,
            ReceiveError::Report(_) | ReceiveError::OtherDomain { .. } => 400,
            ReceiveError::Store(store::StoreError::Full { .. }) => 507,
            ReceiveError::Store(_) => 500,
        }
    }
}

/// Decodes, checks and stores reports for the configuration in force.
pub struct Receiver {
    live: Arc<LiveConfig>,
    limits: Limits,
}

impl Receiver {
    pub fn new(live: Arc<LiveConfig>) -> Receiver {
        Receiver {
            live,
            limits: Limits::default(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// One report sent for `domain` (lower case) `via` `https` or `mail`.
    /// Blocking (decompression, fsync): call it off the async threads.
    pub fn receive(
        &self,
        domain: &str,
        content_type: Option<&str>,
        body: &[u8],
        via: &str,
    ) -> Result<Stored, ReceiveError> {
        let config = self.live.current();
        let tenant = match config.policy.domain(domain) {
            Some(managed) if managed.enabled && config.hosted_mta_sts.contains_key(domain) => {
                managed.tenant.as_str().to_string()
            }
            _ => return Err(ReceiveError::NotHosted(domain.to_string())),
        };
        let encoding = content_type
            .and_then(Encoding::of_media_type)
            .ok_or(ReceiveError::MediaType)?;
        let report = decode(body, encoding, self.limits)?;
        // Every policy must be about this domain: one tenant's endpoint
        // does not take reports on another's.
        if let Some(other) = report.policies.iter().find(|p| {
            !p.policy
                .policy_domain
                .trim_end_matches('.')
                .eq_ignore_ascii_case(domain)
        }) {
            return Err(ReceiveError::OtherDomain {
                domain: domain.to_string(),
                about: other.policy.policy_domain.clone(),
            });
        }
        let organization = report.organization_name.clone();
        let report_id = report.report_id.clone();
        let stored = ReportStore::new(&config.server.data_dir).put(
            &tenant,
            &StoredReport {
                received_at: crate::date::unix_seconds(std::time::SystemTime::now()),
                via: via.to_string(),
                domain: domain.to_string(),
                report,
            },
        )?;
        tracing::info!(%domain, %tenant, %organization, %report_id, via, duplicate = (stored == Stored::Duplicate), "TLS report received");
        Ok(stored)
    }
}
