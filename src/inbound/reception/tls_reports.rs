//! TLS reports mailed to a hosted domain's TLSRPT address (RFC 8460
//! section 5.3), stored for its tenant instead of relayed.

use std::sync::Arc;

use tracing::{info, warn};

use super::Reception;
use crate::config::Config;
use crate::inbound::{Body, ConnectionInfo};
use crate::smtp::{Envelope, ForwardPath, Reply};

impl Reception {
    /// TLS reports mailed to a hosted domain's `mailto:` TLSRPT destination
    /// (RFC 8460 section 5.3) are stored for its tenant (`crate::tlsrpt`)
    /// instead of relayed: those recipients are taken out of `envelope`.
    /// A message that holds no acceptable report (or is too large to be
    /// one) stays addressed to them and is relayed like any other, so
    /// nothing is lost. `Some(250)` when no recipient is left.
    pub(super) async fn take_tls_reports(
        &self,
        config: &Config,
        conn: &ConnectionInfo,
        envelope: &mut Envelope,
        body: &Body,
    ) -> Option<Reply> {
        use crate::tlsrpt::mail::{report_address_domain, report_part};
        let mut domains: Vec<String> = envelope
            .recipients
            .iter()
            .filter_map(|r| match &r.path {
                ForwardPath::Mailbox(m) => report_address_domain(config, m),
                ForwardPath::Postmaster => None,
            })
            .collect();
        if domains.is_empty() {
            return None;
        }
        domains.sort();
        domains.dedup();
        let part = match body {
            Body::Memory(bytes) => report_part(bytes),
            Body::Spooled(_) => None,
        };
        let Some((encoding, report)) = part else {
            info!(
                conn = conn.id,
                ?domains,
                "mail to a TLSRPT address holds no TLS report: relayed as usual"
            );
            return None;
        };
        let content_type = match encoding {
            crate::tlsrpt::Encoding::Gzip => "application/tlsrpt+gzip",
            crate::tlsrpt::Encoding::Json => "application/tlsrpt+json",
        };
        let receiver = Arc::new(crate::tlsrpt::Receiver::new(self.live.clone()));
        let report = Arc::new(report);
        let mut stored = Vec::new();
        for domain in domains {
            let (receiver, report, name) = (receiver.clone(), report.clone(), domain.clone());
            let result = tokio::task::spawn_blocking(move || {
                receiver.receive(&name, Some(content_type), &report, "mail")
            })
            .await;
            match result {
                Ok(Ok(_)) => stored.push(domain),
                Ok(Err(e)) => {
                    info!(conn = conn.id, %domain, error = %e, "mailed TLS report refused: relayed as usual")
                }
                Err(e) => {
                    warn!(conn = conn.id, %domain, error = %e, "storing a mailed TLS report failed")
                }
            }
        }
        envelope.recipients.retain(|r| match &r.path {
            ForwardPath::Mailbox(m) => {
                report_address_domain(config, m).is_none_or(|d| !stored.contains(&d))
            }
            ForwardPath::Postmaster => true,
        });
        envelope
            .recipients
            .is_empty()
            .then(|| Reply::new(250, (2, 0, 0), "Ok: TLS report stored"))
    }
}
