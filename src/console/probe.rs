//! `probe` on demand from the domain page: what each level would do with
//! one outbound peer now ([`crate::probe`], as `sealpost probe --from`
//! runs it), as the report's text.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;

use crate::config::Config;
use crate::policy::PeerQuery;
use crate::probe::{gather, trust_roots, Configured, ProbeReport, ProbeSettings};

/// Bound on each SMTP stage of a probe and on the policy fetch.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Probes running at once, for all console users together: each one
/// connects to the outside (DNS, SMTP, HTTPS), so signed-in users cannot
/// turn the console into a scanner or pile up sockets.
const AT_ONCE: usize = 4;

static RUNNING: Semaphore = Semaphore::const_new(AT_ONCE);

/// What a probe asked for beyond [`AT_ONCE`] shows instead of a report.
const BUSY: &str =
    "Other probes are running (at most 4 at once for the whole console): try again in a moment.";

/// Probes `peer` (a domain; wildcards cannot be probed) for `managed`.
pub async fn run(config: &Config, managed: &str, peer: &str) -> String {
    run_within(&RUNNING, config, managed, peer).await
}

/// [`run`] when one of `running`'s permits is free; [`BUSY`] otherwise
/// (it never waits: the page answers at once).
async fn run_within(running: &Semaphore, config: &Config, managed: &str, peer: &str) -> String {
    if peer.starts_with("*.") {
        return "A wildcard entry names no one destination: probe one of its domains with `sealpost probe`.".to_owned();
    }
    let Ok(_permit) = running.try_acquire() else {
        tracing::info!(
            managed,
            peer,
            "console probe refused: {AT_ONCE} already running"
        );
        return BUSY.to_owned();
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_probe_beyond_the_limit_is_refused_at_once() {
        // The discard port: every DNS question fails at once.
        let config = Config::parse(
            "[dns]\nnameservers = [\"127.0.0.1:9\"]\n",
            "test.toml",
            None,
        )
        .expect("config");
        let running = Semaphore::new(AT_ONCE);
        let held: Vec<_> = (0..AT_ONCE)
            .map(|_| running.try_acquire().expect("permit"))
            .collect();
        let answer = run_within(&running, &config, "acme.test", "example.invalid").await;
        assert_eq!(answer, BUSY);
        drop(held);
        // With a permit free it runs: the name has no DNS here, so the
        // probe itself reports a failure, not the limit.
        let answer = run_within(&running, &config, "acme.test", "example.invalid").await;
        assert_ne!(answer, BUSY);
        assert_eq!(running.available_permits(), AT_ONCE, "the permit came back");
    }
}
