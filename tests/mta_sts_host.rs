//! The hosted MTA-STS policy server on 127.0.0.1, fetched with sealpost's
//! own HTTPS policy fetcher (real rustls handshakes, certificates chosen by
//! SNI from the test CA).
mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{PrivateKeyDer, ServerName};
use sealpost::mta_sts::host::{self, ServeLimits};
use sealpost::mta_sts::txt::parse_txt_records;
use sealpost::mta_sts::{
    mta_sts_record, FetchError, HostedPolicy, HttpsFetcherConfig, HttpsPolicyFetcher, Mode,
    MxPattern, Policy, PolicyFetcher, PolicyHost, StaticHosts, TrustRoots,
};
use sealpost::tls::{certified_key, SniCertResolver};
use support::pki::{Leaf, TestCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn hosted(domain: &str, mode: Mode, mx: &[&str], max_age: u64) -> HostedPolicy {
    HostedPolicy {
        domain: domain.into(),
        mode,
        mx: mx
            .iter()
            .map(|m| MxPattern::parse(m).expect("mx"))
            .collect(),
        max_age,
    }
}

fn key_of(leaf: &Leaf) -> Arc<rustls::sign::CertifiedKey> {
    certified_key(
        leaf.chain.clone(),
        PrivateKeyDer::Pkcs8(leaf.key.clone_key()),
    )
    .expect("key")
}

struct Running {
    addr: SocketAddr,
    host: Arc<PolicyHost>,
    ca: TestCa,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Hosts a.test and b.test (each with its own certificate); c.test has a
/// certificate but no policy.
async fn start(policies: &[HostedPolicy]) -> Running {
    let limits = ServeLimits {
        timeout: Duration::from_secs(5),
        max_connections: 4,
    };
    start_with(policies, limits).await
}

async fn start_with(policies: &[HostedPolicy], limits: ServeLimits) -> Running {
    let ca = TestCa::new("sealpost test CA");
    let resolver = Arc::new(SniCertResolver::default());
    for domain in ["a.test", "b.test", "c.test"] {
        let name = format!("mta-sts.{domain}");
        resolver.insert(&name, key_of(&ca.issue(&[&name])));
    }
    let tls = host::server_config(resolver).expect("server config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let host = Arc::new(PolicyHost::new(policies));
    let task = tokio::spawn(host.clone().serve(listener, tls, limits));
    Running {
        addr,
        host,
        ca,
        task,
    }
}

fn fetcher(running: &Running) -> HttpsPolicyFetcher {
    let localhost = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    let hosts = ["a.test", "b.test", "c.test", "d.test"]
        .map(|d| (format!("mta-sts.{d}"), localhost.clone()));
    let config = HttpsFetcherConfig {
        roots: TrustRoots::only(vec![running.ca.cert.clone()]),
        port: running.addr.port(),
        timeout: Duration::from_secs(5),
    };
    HttpsPolicyFetcher::new(&config, Arc::new(StaticHosts(HashMap::from(hosts)))).expect("fetcher")
}

#[tokio::test]
async fn serves_each_hosted_policy_by_name() {
    let a = hosted(
        "a.test",
        Mode::Enforce,
        &["mx1.a.test", "*.mx.a.test"],
        604800,
    );
    let b = hosted("B.test.", Mode::Testing, &["mail.b.test"], 86400);
    let running = start(&[a.clone(), b.clone()]).await;
    let fetcher = fetcher(&running);

    for expected in [&a, &b] {
        let domain = expected.domain.trim_end_matches('.').to_lowercase();
        let body = fetcher.fetch(&domain).await.expect("policy fetched");
        assert_eq!(Policy::parse(&body), Ok(expected.policy()), "{domain}");
    }
    // c.test has a certificate but no policy: 404.
    let result = fetcher.fetch("c.test").await;
    assert!(
        matches!(result, Err(FetchError::Status { status: 404, .. })),
        "{result:?}"
    );
    // d.test has neither: the handshake is refused (no certificate by SNI).
    let result = fetcher.fetch("d.test").await;
    assert!(matches!(result, Err(FetchError::Tls { .. })), "{result:?}");
}

#[tokio::test]
async fn reload_changes_the_policy_and_its_id() {
    let before = hosted("a.test", Mode::Testing, &["mx1.a.test"], 86400);
    let running = start(std::slice::from_ref(&before)).await;
    let fetcher = fetcher(&running);
    let id_before = parse_txt_records(&[mta_sts_record(&before).value])
        .expect("txt")
        .id;
    assert_eq!(
        Policy::parse(&fetcher.fetch("a.test").await.expect("fetch")).map(|p| p.mode),
        Ok(Mode::Testing)
    );

    let after = hosted("a.test", Mode::Enforce, &["mx1.a.test"], 86400);
    running.host.replace(std::slice::from_ref(&after));
    let id_after = parse_txt_records(&[mta_sts_record(&after).value])
        .expect("txt")
        .id;
    assert_ne!(id_before, id_after);
    assert_eq!(
        Policy::parse(&fetcher.fetch("a.test").await.expect("fetch")),
        Ok(after.policy())
    );
    // Removing the domain: 404 from the next request on.
    running.host.replace(&[]);
    let result = fetcher.fetch("a.test").await;
    assert!(
        matches!(result, Err(FetchError::Status { status: 404, .. })),
        "{result:?}"
    );
}

/// A raw HTTP/1.1 request over TLS (SNI `sni`, any Host header and path).
async fn raw_status(running: &Running, sni: &str, request: &str) -> String {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(running.ca.roots())
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(running.addr)
        .await
        .expect("connect");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(sni.to_string()).expect("name"), tcp)
        .await
        .expect("handshake");
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response);
    let status = text.lines().next().unwrap_or("").to_string();
    let content_type = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-type:"))
        .unwrap_or("")
        .to_string();
    format!("{status} | {content_type}")
}

#[tokio::test]
async fn unknown_hosts_and_paths_get_404() {
    let running = start(&[hosted("a.test", Mode::Enforce, &["mx.a.test"], 3600)]).await;
    let table = [
        (
            "/.well-known/mta-sts.txt",
            "mta-sts.a.test",
            "HTTP/1.1 200 OK",
        ),
        (
            "/.well-known/mta-sts.txt",
            "mta-sts.c.test",
            "HTTP/1.1 404 Not Found",
        ),
        (
            "/.well-known/mta-sts.txt",
            "a.test",
            "HTTP/1.1 404 Not Found",
        ),
        ("/index.html", "mta-sts.a.test", "HTTP/1.1 404 Not Found"),
    ];
    for (path, host_header, want) in table {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n");
        let got = raw_status(&running, "mta-sts.a.test", &request).await;
        assert_eq!(
            got,
            format!("{want} | content-type: text/plain"),
            "{path} {host_header}"
        );
    }
    let post = "POST /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.a.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert!(raw_status(&running, "mta-sts.a.test", post)
        .await
        .starts_with("HTTP/1.1 405"));
}

#[tokio::test]
async fn idle_clients_are_cut_off_and_do_not_block_fetches() {
    let limits = ServeLimits {
        timeout: Duration::from_millis(300),
        max_connections: 2,
    };
    let policy = hosted("a.test", Mode::Enforce, &["mx.a.test"], 3600);
    let running = start_with(std::slice::from_ref(&policy), limits).await;
    // Two clients take every slot and never send a byte.
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(
            tokio::net::TcpStream::connect(running.addr)
                .await
                .expect("connect"),
        );
    }
    let body = fetcher(&running).fetch("a.test").await.expect("fetched");
    assert_eq!(Policy::parse(&body), Ok(policy.policy()));
    // The idle ones were closed by the server.
    for mut stream in idle {
        let mut buf = [0u8; 1];
        assert_eq!(stream.read(&mut buf).await.expect("read"), 0);
    }
}
