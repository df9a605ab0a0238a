//! The HTTPS policy fetcher against a real hyper + rustls server on
//! 127.0.0.1, with certificates from the test CA (RFC 8461 section 3.3).
mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use sealpost::mta_sts::fetch::MAX_POLICY_BYTES;
use sealpost::mta_sts::{
    FetchError, HttpsFetcherConfig, HttpsPolicyFetcher, Policy, PolicyFetcher, StaticHosts,
    TrustRoots,
};
use support::https::{HttpsServer, Reply};
use support::pki::{self, Leaf, TestCa};

const DOMAIN: &str = "example.test";
const HOST: &str = "mta-sts.example.test";
const POLICY: &str = "version: STSv1\nmode: enforce\nmx: *.example.test\nmax_age: 86400\n";

fn loopback_hosts() -> Arc<StaticHosts> {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    Arc::new(StaticHosts(HashMap::from([(
        HOST.to_string(),
        vec![localhost],
    )])))
}

fn fetcher(ca: &TestCa, port: u16, timeout: Duration) -> HttpsPolicyFetcher {
    let config = HttpsFetcherConfig {
        roots: TrustRoots::only(vec![ca.cert.clone()]),
        port,
        timeout,
    };
    HttpsPolicyFetcher::new(&config, loopback_hosts()).expect("fetcher")
}

/// Serves `reply` at the well-known path of the policy host, 404 elsewhere.
async fn policy_server(leaf: &Leaf, reply: Reply) -> HttpsServer {
    HttpsServer::start(
        pki::server_config(leaf, pki::ALL_VERSIONS),
        move |host, path| {
            if host == HOST && path == "/.well-known/mta-sts.txt" {
                reply.clone()
            } else {
                Reply::status(404)
            }
        },
    )
    .await
}

fn with_type(content_type: Option<&str>, body: &[u8]) -> Reply {
    Reply::Full {
        status: 200,
        headers: content_type
            .map(|t| vec![("content-type", t.to_string())])
            .unwrap_or_default(),
        body: body.to_vec(),
    }
}

#[tokio::test]
async fn fetch_outcomes_table() {
    let ca = TestCa::new("sealpost test CA");
    let leaf = ca.issue(&[HOST]);
    let exact = "#".repeat(MAX_POLICY_BYTES - POLICY.len()) + "\n" + POLICY;
    let exact = exact[1..].to_string();
    assert_eq!(exact.len(), MAX_POLICY_BYTES);
    let redirect = Reply::Full {
        status: 301,
        headers: vec![("location", "https://elsewhere.test/p.txt".into())],
        body: Vec::new(),
    };
    type Check = fn(&Result<String, FetchError>) -> bool;
    let table: Vec<(&str, Reply, Check)> = vec![
        ("200 text/plain", Reply::text(POLICY), |r| {
            r.as_deref().is_ok_and(|b| Policy::parse(b).is_ok())
        }),
        (
            "text/plain with charset",
            with_type(Some("Text/Plain; charset=utf-8"), POLICY.as_bytes()),
            |r| r.is_ok(),
        ),
        ("exactly 64 KiB", Reply::text(&exact), |r| {
            r.as_ref().is_ok_and(|b| b.len() == MAX_POLICY_BYTES)
        }),
        ("404", Reply::status(404), |r| {
            matches!(r, Err(FetchError::Status { status: 404, .. }))
        }),
        ("500", Reply::status(500), |r| {
            matches!(r, Err(FetchError::Status { status: 500, .. }))
        }),
        ("204 is not 200", Reply::status(204), |r| {
            matches!(r, Err(FetchError::Status { status: 204, .. }))
        }),
        ("redirect not followed", redirect, |r| {
            matches!(r, Err(FetchError::Redirect { status: 301, location: Some(l), .. })
                if l == "https://elsewhere.test/p.txt")
        }),
        (
            "text/html refused",
            with_type(Some("text/html"), POLICY.as_bytes()),
            |r| matches!(r, Err(FetchError::ContentType { found: Some(t), .. }) if t == "text/html"),
        ),
        (
            "no content type refused",
            with_type(None, POLICY.as_bytes()),
            |r| matches!(r, Err(FetchError::ContentType { found: None, .. })),
        ),
        (
            "64 KiB + 1 refused",
            Reply::text(&format!("{exact}#")),
            |r| matches!(r, Err(FetchError::TooLarge { .. })),
        ),
        ("endless body: reading stops", Reply::Endless, |r| {
            matches!(r, Err(FetchError::TooLarge { .. }))
        }),
        (
            "not UTF-8",
            with_type(Some("text/plain"), b"version: STSv1\xff\n"),
            |r| matches!(r, Err(FetchError::NotUtf8 { .. })),
        ),
        // Wrong content with the right type: fetched, then refused by the parser.
        (
            "HTML served as text/plain",
            Reply::text("<html><body>It works!</body></html>"),
            |r| r.as_deref().is_ok_and(|b| Policy::parse(b).is_err()),
        ),
        (
            "slow server: timeout",
            Reply::Delayed(Duration::from_secs(30), Box::new(Reply::text(POLICY))),
            |r| matches!(r, Err(FetchError::Timeout { .. })),
        ),
    ];
    for (name, reply, check) in table {
        let server = policy_server(&leaf, reply).await;
        let result = fetcher(&ca, server.port(), Duration::from_millis(500))
            .fetch(DOMAIN)
            .await;
        assert!(check(&result), "{name}: {result:?}");
        assert_eq!(server.hits(), 1, "{name}: exactly one request");
    }
}

#[tokio::test]
async fn certificate_must_be_valid_for_the_policy_host() {
    let ca = TestCa::new("sealpost test CA");
    let cases = [
        ("wrong name", ca.issue(&["www.example.test"])),
        ("parent name only", ca.issue(&[DOMAIN])),
        ("expired", ca.issue_expired(&[HOST])),
        ("self-signed", pki::self_signed(&[HOST])),
    ];
    for (name, leaf) in cases {
        let server = policy_server(&leaf, Reply::text(POLICY)).await;
        let result = fetcher(&ca, server.port(), Duration::from_secs(5))
            .fetch(DOMAIN)
            .await;
        match &result {
            Err(e @ FetchError::Certificate { host, .. }) => {
                assert_eq!(host, HOST, "{name}");
                assert_eq!(e.tlsrpt_result_type(), "sts-webpki-invalid", "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(
            server.hits(),
            0,
            "{name}: no request after a bad certificate"
        );
    }
}

#[tokio::test]
async fn unreachable_and_unknown_hosts() {
    let ca = TestCa::new("sealpost test CA");
    // A port nobody listens on: bind, note the port, close.
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let result = fetcher(&ca, port, Duration::from_secs(5))
        .fetch(DOMAIN)
        .await;
    assert!(
        matches!(result, Err(FetchError::Connect { .. })),
        "{result:?}"
    );
    let result = fetcher(&ca, port, Duration::from_secs(5))
        .fetch("unknown.test")
        .await;
    assert!(
        matches!(&result, Err(FetchError::Resolve { host, .. }) if host == "mta-sts.unknown.test"),
        "{result:?}"
    );
    let result = fetcher(&ca, port, Duration::from_secs(5))
        .fetch("bad domain")
        .await;
    assert!(
        matches!(result, Err(FetchError::InvalidHost { .. })),
        "{result:?}"
    );
}
