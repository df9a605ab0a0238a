//! Helpers for end-to-end tests of outbound delivery through the real
//! `sealpost serve`: receiving MX hosts on 127.0.0.x that count MAIL
//! commands, a tenant server's submission (relay from 127.0.0.1), the
//! `delivery attempt` log events by recipient, and a configuration with a
//! fast retry schedule pointing at the test DNS.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealpost::smtp::SessionConfig;
use serde_json::Value;

use super::dns::TestDns;
use super::sealpost::{dns_section, free_port, Sealpost};
use super::smtp::{accept_all, Ask, Decide, Received, TestSmtpServer};

/// How long one expectation may take.
pub const WAIT: Duration = Duration::from_secs(20);
/// sealpost's host name (EHLO, DSN Reporting-MTA).
pub const GATEWAY: &str = "gw.sealpost.test";

/// A receiving MX on its own loopback address; counts MAIL commands, so a
/// test can prove that no transaction was ever started.
pub struct Mx {
    pub server: TestSmtpServer,
    mails: Arc<AtomicUsize>,
}

impl Mx {
    pub async fn start(
        ip: Ipv4Addr,
        port: u16,
        name: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
        decide: Arc<Decide>,
    ) -> Mx {
        let config = SessionConfig {
            hostname: name.to_string(),
            ..SessionConfig::default()
        };
        Mx::start_with_config(ip, port, config, tls, decide).await
    }

    /// [`Mx::start`] with a chosen session config (e.g. a size limit).
    pub async fn start_with_config(
        ip: Ipv4Addr,
        port: u16,
        config: SessionConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        decide: Arc<Decide>,
    ) -> Mx {
        let mails = Arc::new(AtomicUsize::new(0));
        let count = mails.clone();
        let wrapped: Arc<Decide> = Arc::new(move |ask: Ask<'_>| {
            if matches!(ask, Ask::Mail(_)) {
                count.fetch_add(1, Ordering::SeqCst);
            }
            decide(ask)
        });
        let server =
            TestSmtpServer::start_on(SocketAddr::new(IpAddr::V4(ip), port), config, tls, wrapped)
                .await;
        Mx { server, mails }
    }

    pub fn received(&self) -> Vec<Received> {
        self.server.received()
    }

    pub fn mails(&self) -> usize {
        self.mails.load(Ordering::SeqCst)
    }
}

/// The test DNS of a test with one destination: `dest.test`, whose only
/// MX `mx.dest.test` is at 127.0.0.2 (see [`dest_mx`]).
pub async fn dest_dns() -> TestDns {
    TestDns::builder()
        .mx("dest.test", 10, "mx.dest.test")
        .a("mx.dest.test", loopback(2))
        .start()
        .await
}

/// `mx.dest.test`, the MX of [`dest_dns`], on 127.0.0.2 at `port`.
pub async fn dest_mx(port: u16, tls: Option<Arc<rustls::ServerConfig>>, decide: Arc<Decide>) -> Mx {
    Mx::start(loopback(2), port, "mx.dest.test", tls, decide).await
}

/// STARTTLS for an MX named `name`: a self-signed certificate for it,
/// offering the TLS `versions` (`pki::ALL_VERSIONS`, `pki::TLS12_ONLY`).
pub fn self_signed_tls(
    name: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Option<Arc<rustls::ServerConfig>> {
    Some(super::pki::server_config(
        &super::pki::self_signed(&[name]),
        versions,
    ))
}

/// The tenant's own server `mail.acme.test` (on 127.0.0.1), accepting
/// everything: where DSNs to acme.test senders arrive.
pub async fn home_mx() -> Mx {
    Mx::start(
        Ipv4Addr::LOCALHOST,
        free_port(),
        "mail.acme.test",
        None,
        Arc::new(accept_all),
    )
    .await
}

/// The `[[domains]]` table of `acme.test` (tenant `acme`) with outbound
/// `level`, its inbound mail routed to `home` (see [`home_mx`]).
pub fn acme_routed_to(level: &str, home: &Mx) -> String {
    format!(
        r#"
[[domains]]
name = "acme.test"
tenant = "acme"
outbound.default = {{ level = "{level}" }}
route = {{ hosts = ["{}"] }}
"#,
        home.server.addr
    )
}

pub fn loopback(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// Polls `done` (async-friendly) for at most `limit`.
pub async fn until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `delivery attempt` events for recipient `to`.
pub fn attempts(sealpost: &Sealpost, to: &str) -> Vec<Value> {
    sealpost
        .events("delivery attempt")
        .into_iter()
        .filter(|e| e["to"].as_str() == Some(to))
        .collect()
}

pub fn with_result(sealpost: &Sealpost, to: &str, result: &str) -> Vec<Value> {
    attempts(sealpost, to)
        .into_iter()
        .filter(|e| e["result"].as_str() == Some(result))
        .collect()
}

/// Waits for the `delivered` event of `to` and returns it.
pub async fn delivered_event(sealpost: &Sealpost, to: &str) -> Value {
    let found = until(WAIT, || !with_result(sealpost, to, "delivered").is_empty()).await;
    assert!(
        found,
        "{to} was not delivered within {WAIT:?}; its attempts: {:#?}",
        attempts(sealpost, to)
    );
    with_result(sealpost, to, "delivered").remove(0)
}

/// Waits until `to` has been deferred `times` times and returns those
/// events; fails if it was ever delivered or failed.
pub async fn deferred_events(sealpost: &Sealpost, to: &str, times: usize) -> Vec<Value> {
    let found = until(WAIT, || {
        with_result(sealpost, to, "deferred").len() >= times
    })
    .await;
    let all = attempts(sealpost, to);
    assert!(found, "{to}: fewer than {times} deferrals: {all:#?}");
    assert!(
        all.iter().all(|e| e["result"].as_str() == Some("deferred")),
        "{to} must only ever be deferred: {all:#?}"
    );
    with_result(sealpost, to, "deferred")
}

/// Relays one message through sealpost as the tenant's server would (from
/// 127.0.0.1, a relay source); returns the queue id from the 250 reply.
pub async fn submit(sealpost: SocketAddr, from: &str, to: &str) -> String {
    submit_to(sealpost, from, &[to]).await
}

/// [`submit`] with several recipients (sealpost must accept them).
pub async fn submit_to(sealpost: SocketAddr, from: &str, to: &[&str]) -> String {
    let list = to.join(", ");
    let body = format!(
        "From: <{from}>\r\nTo: {list}\r\nSubject: delivery level test\r\n\r\nHello {list}.\r\n"
    );
    super::sealpost::submit(sealpost, from, to, body.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("sealpost refused {from} -> {list}: {e}"))
}

/// The common part of sealpost's configuration: listening on `listen`,
/// MX hosts on `mx_port`, the test DNS, tenant `acme` relaying from
/// 127.0.0.0/8, fast retries; `extra` adds tables (domains, `[mta_sts]`).
pub fn base_config(listen: u16, mx_port: u16, dns: &TestDns, extra: &str) -> String {
    config_with_delivery(listen, mx_port, dns, &[], extra)
}

/// [`base_config`] with `[delivery]` keys replaced or added, as TOML
/// values (`("idle_timeout", "\"1s\"")`).
pub fn config_with_delivery(
    listen: u16,
    mx_port: u16,
    dns: &TestDns,
    delivery: &[(&str, &str)],
    extra: &str,
) -> String {
    let mut keys: Vec<(String, String)> = [
        ("smtp_port", mx_port.to_string()),
        ("first_retry", "\"1s\"".into()),
        ("max_retry_interval", "\"2s\"".into()),
        ("destination_backoff", "\"1s\"".into()),
        ("max_destination_backoff", "\"1s\"".into()),
        ("command_timeout", "\"10s\"".into()),
        ("idle_timeout", "\"30s\"".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (key, value) in delivery {
        match keys.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.to_string(),
            None => keys.push((key.to_string(), value.to_string())),
        }
    }
    let delivery: String = keys.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    format!(
        r#"
[server]
hostname = "{GATEWAY}"
data_dir = "data"

[[listeners]]
address = "127.0.0.1:{listen}"

[delivery]
{delivery}
{dns}
[[tenants]]
name = "acme"
relay_sources = ["127.0.0.0/8"]

{extra}
"#,
        dns = dns_section(&dns.settings()),
    )
}

/// Today's UTC day as TLS reports name it (`2026-12-06`).
pub fn utc_today() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    sealpost::tlsrpt::session::utc_day(now)
}
