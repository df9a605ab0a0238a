//! ACME certificates for hosted MTA-STS through the real binary and a real
//! ACME server (pebble, started on loopback): `sealpost serve` with
//! `[acme]` orders `mta-sts.<domain>` over TLS-ALPN-01 on its
//! `[mta_sts_host]` listener; a sender's HTTPS fetch of the policy
//! validates the chain against pebble's root; a name that points elsewhere
//! is reported (status, `dns-records`, `/metrics`) and not ordered; a
//! challenge that fails is recorded with the CA's reason and backed off; a
//! restart keeps the certificates without new orders; a stored certificate
//! near expiry is renewed; HTTP-01 on `[acme] http_listen` works too.
mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sealpost::acme::{leaf_not_after, AcmeStore, DomainRecord, State};
use sealpost::mta_sts::{
    HttpsFetcherConfig, HttpsPolicyFetcher, Mode, Policy, PolicyFetcher, StaticHosts, TrustRoots,
};
use support::dns::TestDns;
use support::pebble::Pebble;
use support::pki::TestCa;
use support::sealpost::{dns_section, free_port, run_cli, server_head, Sealpost};

const RETRY_FIRST: u64 = 3600;

fn config(
    smtp: u16,
    sts: u16,
    metrics: u16,
    dns: &TestDns,
    pebble: &Pebble,
    domains: &[&str],
) -> String {
    let mut text = format!(
        r#"{head}
[admin]
metrics_listen = "127.0.0.1:{metrics}"

{dns}
[mta_sts_host]
listen = ["127.0.0.1:{sts}"]

[acme]
directory = "{directory}"
ca_file = "{ca}"
contact = ["mailto:postmaster@sealpost.test"]
addresses = ["127.0.0.1", "127.0.0.2"]
retry_first = "{RETRY_FIRST}s"
"#,
        head = server_head(smtp),
        dns = dns_section(&dns.settings()),
        directory = pebble.directory,
        ca = pebble.https_ca.display(),
    );
    for domain in domains {
        text.push_str(&format!(
            "\n[[domains]]\nname = \"{domain}\"\ntenant = \"t\"\n\n[domains.mta_sts]\nmode = \"enforce\"\nmx = [\"mx.{domain}\"]\n"
        ));
    }
    text
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn status(server: &Sealpost) -> std::collections::BTreeMap<String, DomainRecord> {
    AcmeStore::new(&server.path("data"))
        .status()
        .unwrap_or_default()
}

/// Waits until every name has left `pending` (bounded, not timed).
fn wait_settled(server: &Sealpost, pebble: &Pebble, hosts: &[&str]) {
    let settled = server.wait_for(Duration::from_secs(90), |s| {
        let status = status(s);
        hosts
            .iter()
            .all(|h| status.get(*h).is_some_and(|r| r.state != State::Pending))
    });
    assert!(
        settled,
        "ACME did not settle: {:?}\n{}\npebble:\n{}",
        status(server),
        server.log(),
        pebble.log()
    );
}

/// sealpost's own MTA-STS fetcher, as a sending MTA runs it, trusting only
/// pebble's root.
async fn fetch_policy(
    root: rustls::pki_types::CertificateDer<'static>,
    sts: u16,
    domain: &str,
) -> Result<Mode, String> {
    let hosts = HashMap::from([(
        format!("mta-sts.{domain}"),
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    )]);
    let fetcher = HttpsPolicyFetcher::new(
        &HttpsFetcherConfig {
            roots: TrustRoots::only(vec![root]),
            port: sts,
            timeout: Duration::from_secs(5),
        },
        Arc::new(StaticHosts(hosts)),
    )
    .expect("fetcher");
    fetcher
        .fetch(domain)
        .await
        .map_err(|e| e.to_string())
        .and_then(|body| {
            Policy::parse(&body)
                .map(|p| p.mode)
                .map_err(|e| e.to_string())
        })
}

async fn metrics(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("metrics listener");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn issuance_mismatch_failed_challenge_and_restart() {
    let sts = free_port();
    let dns = TestDns::builder()
        .a("mta-sts.good.test", Ipv4Addr::LOCALHOST)
        .a("mta-sts.elsewhere.test", Ipv4Addr::new(192, 0, 2, 1))
        // Counts as this gateway, but nothing listens there: the CA's
        // validation connection is refused.
        .a("mta-sts.broken.test", Ipv4Addr::new(127, 0, 0, 2))
        .start()
        .await;
    let pebble = Pebble::start(sts, dns.addr);
    let metrics_port = free_port();
    let domains = ["good.test", "elsewhere.test", "broken.test"];
    let hosts = [
        "mta-sts.good.test",
        "mta-sts.elsewhere.test",
        "mta-sts.broken.test",
    ];
    let mut server =
        Sealpost::start(|smtp| config(smtp, sts, metrics_port, &dns, &pebble, &domains));
    wait_settled(&server, &pebble, &hosts);
    let before = now();
    let status = status(&server);

    // Issued, stored, served; a sender validates it against pebble's root.
    let good = &status["mta-sts.good.test"];
    assert_eq!(good.state, State::Valid, "{status:?}");
    let store = AcmeStore::new(&server.path("data"));
    let (chain, _) = store
        .certificate("mta-sts.good.test")
        .expect("read")
        .expect("stored");
    assert_eq!(leaf_not_after(&chain), good.not_after);
    let renew_at = good.not_after.expect("expiry") - 30 * 86_400;
    assert_eq!(good.next_attempt, renew_at, "renewal 30 days before expiry");
    let root = pebble.issuing_root().await;
    assert_eq!(
        fetch_policy(root.clone(), sts, "good.test").await,
        Ok(Mode::Enforce)
    );
    // Without a certificate of their own, the others fail validation.
    assert!(fetch_policy(root.clone(), sts, "broken.test")
        .await
        .is_err());

    // Pointing elsewhere: recorded, not ordered, backed off.
    let elsewhere = &status["mta-sts.elsewhere.test"];
    assert_eq!(elsewhere.state, State::DnsMismatch, "{status:?}");
    assert_eq!(
        elsewhere.resolved,
        vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))]
    );
    assert!(
        elsewhere.next_attempt + 5 >= before + RETRY_FIRST,
        "{elsewhere:?}"
    );
    assert!(store
        .certificate("mta-sts.elsewhere.test")
        .expect("read")
        .is_none());
    let (code, text, stderr) = run_cli(&server.config_path(), &["dns-records", "elsewhere.test"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        text.contains("; warning: mta-sts.elsewhere.test does not point at this gateway")
            && text.contains("192.0.2.1"),
        "{text}"
    );
    let (_, good_text, _) = run_cli(&server.config_path(), &["dns-records", "good.test"]);
    assert!(!good_text.contains("warning"), "{good_text}");

    // A failed challenge: the CA's reason, one failure, backed off.
    let broken = &status["mta-sts.broken.test"];
    assert_eq!(broken.state, State::Failed, "{status:?}");
    assert_eq!(broken.failures, 1);
    let error = broken.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("could not validate mta-sts.broken.test"),
        "{error}"
    );
    assert!(error.contains("127.0.0.2"), "{error}");
    assert!(
        broken.next_attempt + 5 >= before + RETRY_FIRST,
        "{broken:?}"
    );
    assert!(store
        .certificate("mta-sts.broken.test")
        .expect("read")
        .is_none());

    let text = metrics(metrics_port).await;
    for line in [
        "sealpost_acme_domains{state=\"valid\"} 1",
        "sealpost_acme_domains{state=\"dns-mismatch\"} 1",
        "sealpost_acme_domains{state=\"failed\"} 1",
        "sealpost_acme_domains{state=\"pending\"} 0",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }

    // Restart: the same certificate is served at once, nothing is ordered
    // again, the backoffs hold.
    server.stop();
    server.spawn();
    let served = served_leaf(sts, "mta-sts.good.test").await;
    let stored_leaf = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::pem_slice_iter(&chain)
            .next()
            .expect("leaf")
            .expect("pem")
    };
    assert_eq!(served, stored_leaf);
    assert_eq!(
        fetch_policy(root, sts, "good.test").await,
        Ok(Mode::Enforce)
    );
    assert_eq!(self::status(&server), status);
    let issued = server.events("ACME: certificate issued and installed");
    assert_eq!(issued.len(), 1, "{}", server.log());
    assert_eq!(server.events("ACME: stored certificate loaded").len(), 1);
}

/// The leaf certificate the MTA-STS host presents for `name`.
async fn served_leaf(port: u16, name: &str) -> rustls::pki_types::CertificateDer<'static> {
    let config = sealpost::tls::unauthenticated_client_config(sealpost::policy::MinTlsVersion::Any);
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = tokio::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect");
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
    let tls = connector
        .connect(server_name, tcp)
        .await
        .expect("handshake");
    tls.get_ref().1.peer_certificates().expect("certificates")[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_certificate_near_expiry_is_renewed() {
    let sts = free_port();
    let dns = TestDns::builder()
        .a("mta-sts.renew.test", Ipv4Addr::LOCALHOST)
        .start()
        .await;
    let pebble = Pebble::start(sts, dns.addr);
    // A certificate from another CA, expiring in ten days.
    let dir = tempfile::tempdir().expect("tempdir");
    let old_ca = TestCa::new("the previous CA");
    let expiring = old_ca.issue_with(&["mta-sts.renew.test"], |p| {
        p.not_after = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(now() + 10 * 86_400);
    });
    let store = AcmeStore::new(&dir.path().join("data"));
    store
        .save_certificate(
            "mta-sts.renew.test",
            expiring.cert_pem.as_bytes(),
            expiring.key_pem.as_bytes(),
        )
        .expect("seed");
    let old_not_after = leaf_not_after(expiring.cert_pem.as_bytes()).expect("expiry");
    let metrics_port = free_port();
    let server = Sealpost::start_in(dir, |smtp| {
        config(smtp, sts, metrics_port, &dns, &pebble, &["renew.test"])
    });
    let renewed = server.wait_for(Duration::from_secs(90), |s| {
        status(s)
            .get("mta-sts.renew.test")
            .is_some_and(|r| r.state == State::Valid && r.not_after != Some(old_not_after))
    });
    assert!(
        renewed,
        "{:?}\n{}\n{}",
        status(&server),
        server.log(),
        pebble.log()
    );
    assert_eq!(server.events("ACME: stored certificate loaded").len(), 1);
    let record = &status(&server)["mta-sts.renew.test"];
    assert!(
        record.not_after.expect("expiry") > now() + 30 * 86_400,
        "{record:?}"
    );
    let root = pebble.issuing_root().await;
    assert_eq!(
        fetch_policy(root, sts, "renew.test").await,
        Ok(Mode::Enforce)
    );
    let (chain, _) = store
        .certificate("mta-sts.renew.test")
        .expect("read")
        .expect("stored");
    assert_ne!(chain, expiring.cert_pem.as_bytes());
}

#[tokio::test(flavor = "multi_thread")]
async fn http_01_on_the_http_listener() {
    let (sts, http) = (free_port(), free_port());
    let dns = TestDns::builder()
        .a("mta-sts.plain.test", Ipv4Addr::LOCALHOST)
        .start()
        .await;
    let pebble = Pebble::start_with(free_port(), http, dns.addr);
    let metrics_port = free_port();
    let server = Sealpost::start(|smtp| {
        config(smtp, sts, metrics_port, &dns, &pebble, &["plain.test"]).replace(
            "[acme]\n",
            &format!("[acme]\nchallenge = \"http-01\"\nhttp_listen = [\"127.0.0.1:{http}\"]\n"),
        )
    });
    wait_settled(&server, &pebble, &["mta-sts.plain.test"]);
    let record = &status(&server)["mta-sts.plain.test"];
    assert_eq!(record.state, State::Valid, "{record:?}\n{}", server.log());
    assert!(!server.events("ACME HTTP-01 validation served").is_empty());
    let root = pebble.issuing_root().await;
    assert_eq!(
        fetch_policy(root, sts, "plain.test").await,
        Ok(Mode::Enforce)
    );
}
