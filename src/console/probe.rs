//! `probe` on demand from the domain page: what each level would do with
//! one outbound peer now ([`crate::probe`], as `sealpost probe --from`
//! runs it), as the report's text.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::policy::PeerQuery;
use crate::probe::{gather, trust_roots, Configured, ProbeReport, ProbeSettings};

/// Bound on each SMTP stage of a probe and on the policy fetch.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Probes `peer` (a domain; wildcards cannot be probed) for `managed`.
pub async fn run(config: &Config, managed: &str, peer: &str) -> String {
    if peer.starts_with("*.") {
        return "A wildcard entry names no one destination: probe one of its domains with `sealpost probe`.".to_owned();
    }
    let roots = match trust_roots(config.mta_sts.ca_file.as_deref()) {
        Ok(roots) => roots,
        Err(e) => return format!("The probe could not run: {e}"),
    };
    let settings = ProbeSettings {
        resolver: config.dns.resolver_settings(),
        smtp_port: config.delivery.smtp_port,
        https_port: config.mta_sts.https_port,
        roots,
        helo_name: config.server.hostname.as_str().to_string(),
        timeout: config
            .delivery
            .command_timeout
            .unwrap_or(TIMEOUT)
            .min(TIMEOUT),
    };
    let resolution = config.policy.resolve(
        managed,
        PeerQuery::Outbound {
            recipient_domain: peer,
        },
    );
    let facts = match gather(&settings, peer).await {
        Ok(facts) => facts,
        Err(e) => return format!("{e}"),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let configured = Configured {
        managed_domain: managed.to_owned(),
        resolution,
    };
    ProbeReport::new(&facts, Some(configured), now).to_string()
}
