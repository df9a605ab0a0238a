//! The `mta-sts` level on loopback through the functions delivery runs:
//! the policy comes from the cache (in-memory TXT, real HTTPS policy
//! host), each MX is a small SMTP peer that may offer STARTTLS, the host's
//! TLS comes from `delivery::decision::mta_sts_host`, sealpost's SMTP
//! client connects with the hop's parameters (the MTA-STS WebPKI verifier
//! under enforce), and `delivery::decision::connection_verdict` decides.
mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sealpost::dane::{DanePlan, NoDaneReason};
use sealpost::delivery::decision::{
    connection_verdict, mta_sts_host, ConnectionEvent, ConnectionVerdict, Hop, HostSkip, NotUsed,
    TlsProblem,
};
use sealpost::mta_sts::{
    webpki_verifier, BounceCheck, CertProblem, HttpsFetcherConfig, HttpsPolicyFetcher, ManualClock,
    MxFailure, Policy, PolicyCache, PolicyStore, StaticHosts, TrustRoots,
};
use sealpost::policy::MinTlsVersion;
use sealpost::smtp::client::{Connection, Peer, TlsAuthentication};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use support::https::{HttpsServer, Reply};
use support::pki::{self, Leaf, TestCa};
use support::sts::MemoryTxt;

const DOMAIN: &str = "example.test";

/// A minimal SMTP peer: greeting, EHLO (with or without STARTTLS),
/// STARTTLS, and EHLO/QUIT inside TLS. Counts connections.
struct MxPeer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MxPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn mx_peer(tls: Option<Arc<rustls::ServerConfig>>) -> MxPeer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let tls = tls.clone();
            tokio::spawn(async move {
                let _ = serve_smtp(tcp, tls).await;
            });
        }
    });
    MxPeer {
        addr,
        connections,
        task,
    }
}

async fn serve_smtp(tcp: TcpStream, tls: Option<Arc<rustls::ServerConfig>>) -> std::io::Result<()> {
    let mut conn = BufReader::new(tcp);
    conn.write_all(b"220 mx.test ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.trim_end().to_ascii_uppercase();
        if verb.starts_with("EHLO") {
            let starttls = if tls.is_some() {
                "250-STARTTLS\r\n"
            } else {
                ""
            };
            let reply = format!("250-mx.test\r\n{starttls}250 8BITMIME\r\n");
            conn.write_all(reply.as_bytes()).await?;
        } else if verb == "STARTTLS" {
            if let Some(config) = &tls {
                conn.write_all(b"220 2.0.0 go ahead\r\n").await?;
                let tcp = conn.into_inner();
                let session = tokio_rustls::TlsAcceptor::from(config.clone())
                    .accept(tcp)
                    .await?;
                let mut secure = BufReader::new(session);
                loop {
                    line.clear();
                    if secure.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line.to_ascii_uppercase().starts_with("QUIT") {
                        return secure.write_all(b"221 bye\r\n").await;
                    }
                    secure.write_all(b"250 mx.test\r\n").await?;
                }
            }
            conn.write_all(b"502 5.5.1 no\r\n").await?;
        } else if verb == "QUIT" {
            return conn.write_all(b"221 bye\r\n").await;
        } else {
            conn.write_all(b"500 5.5.2 what\r\n").await?;
        }
    }
}

/// What the engine does for one MX under the `mta-sts` level (no DANE
/// records): the host's TLS, a connection with its parameters, the
/// verdict. `Err`: the host is not contacted. The bool: a TLS session
/// came up.
async fn attempt(
    policy: Option<&Policy>,
    mx: &str,
    addr: SocketAddr,
    roots: &TrustRoots,
) -> (Result<ConnectionVerdict, HostSkip>, bool) {
    let no_dane = DanePlan::Opportunistic(NoDaneReason::MxInsecure);
    let tls = match mta_sts_host(&no_dane, policy, mx) {
        Ok(tls) => tls,
        Err(skip) => return (Err(skip), false),
    };
    let hop = Hop {
        host: mx.to_string(),
        addresses: vec![addr],
        tls,
        min_tls: MinTlsVersion::Any,
    };
    let webpki = webpki_verifier(roots).expect("verifier");
    let params = hop.params(Some(&webpki)).expect("params");
    let peer = Peer {
        mx_host: mx.to_string(),
        addr,
        local: None,
    };
    match Connection::connect(peer, &params, support::client::config()).await {
        Ok(conn) => {
            let secured = conn.achieved().tls_version.is_some();
            let event = ConnectionEvent::of_session(conn.achieved());
            conn.quit().await;
            (Ok(connection_verdict(&hop, &params, &event)), secured)
        }
        Err(e) => (
            Ok(connection_verdict(
                &hop,
                &params,
                &ConnectionEvent::of_error(&e),
            )),
            false,
        ),
    }
}

struct World {
    ca: TestCa,
    roots: TrustRoots,
    _policy_host: HttpsServer,
    cache: PolicyCache,
    txt: Arc<MemoryTxt>,
    _dir: tempfile::TempDir,
}

/// A policy domain whose policy host serves `body` (None: no TXT record).
async fn world(body: Option<&str>) -> World {
    let ca = TestCa::new("sealpost test CA");
    let roots = TrustRoots::only(vec![ca.cert.clone()]);
    let leaf = ca.issue(&["mta-sts.example.test"]);
    let served = body.unwrap_or("").to_string();
    let policy_host =
        HttpsServer::start(pki::server_config(&leaf, pki::ALL_VERSIONS), move |_, _| {
            Reply::text(&served)
        })
        .await;
    let hosts = StaticHosts(HashMap::from([(
        "mta-sts.example.test".to_string(),
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    )]));
    let config = HttpsFetcherConfig {
        roots: roots.clone(),
        port: policy_host.port(),
        timeout: Duration::from_secs(10),
    };
    let fetcher = Arc::new(HttpsPolicyFetcher::new(&config, Arc::new(hosts)).expect("fetcher"));
    let txt = Arc::new(MemoryTxt::default());
    if body.is_some() {
        txt.publish(DOMAIN, "v1");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = PolicyStore::open(&dir.path().join("mta-sts")).expect("store");
    let cache = PolicyCache::new(
        txt.clone(),
        fetcher,
        store,
        Arc::new(ManualClock::new(1_800_000_000)),
    );
    World {
        ca,
        roots,
        _policy_host: policy_host,
        cache,
        txt,
        _dir: dir,
    }
}

fn policy_text(mode: &str) -> String {
    format!("version: STSv1\nmode: {mode}\nmx: *.example.test\nmax_age: 86400\n")
}

enum Cert {
    Valid,
    WrongName,
    Expired,
    SelfSigned,
    NoStartTls,
}

fn leaf_for(ca: &TestCa, mx: &str, cert: &Cert) -> Option<Leaf> {
    match cert {
        Cert::Valid => Some(ca.issue(&[mx])),
        Cert::WrongName => Some(ca.issue(&["other.example.test"])),
        Cert::Expired => Some(ca.issue_expired(&[mx])),
        Cert::SelfSigned => Some(pki::self_signed(&[mx])),
        Cert::NoStartTls => None,
    }
}

#[tokio::test]
async fn each_outcome_of_the_level() {
    let refused = |failure| Ok(ConnectionVerdict::NotUsed(NotUsed::MtaSts(failure)));
    let cert_failure = |mx: &str, problem| MxFailure::Certificate {
        mx: mx.to_string(),
        problem,
    };
    let tls = |authenticated| {
        Ok(ConnectionVerdict::SendOverTls {
            version: rustls::ProtocolVersion::TLSv1_3,
            authenticated,
        })
    };
    let mx = "mx1.example.test";
    let stranger = "mx.elsewhere.test";
    type Verdict = Result<ConnectionVerdict, HostSkip>;
    // (policy mode or None for no policy, MX name, its certificate, verdict, TLS up?)
    let table: Vec<(Option<&str>, &str, Cert, Verdict, bool)> = vec![
        (
            None,
            mx,
            Cert::SelfSigned,
            tls(TlsAuthentication::None),
            true,
        ),
        (
            Some("none"),
            stranger,
            Cert::SelfSigned,
            tls(TlsAuthentication::None),
            true,
        ),
        (
            Some("enforce"),
            mx,
            Cert::Valid,
            tls(TlsAuthentication::WebPki),
            true,
        ),
        // Testing: opportunistic TLS, the certificate not checked.
        (
            Some("testing"),
            mx,
            Cert::Valid,
            tls(TlsAuthentication::None),
            true,
        ),
        (
            Some("enforce"),
            stranger,
            Cert::Valid,
            Err(HostSkip::MtaSts(MxFailure::NotInPolicy {
                mx: stranger.into(),
            })),
            false,
        ),
        (
            Some("enforce"),
            mx,
            Cert::NoStartTls,
            refused(MxFailure::StartTlsNotOffered { mx: mx.into() }),
            false,
        ),
        (
            Some("enforce"),
            mx,
            Cert::WrongName,
            refused(cert_failure(mx, CertProblem::HostMismatch)),
            false,
        ),
        (
            Some("enforce"),
            mx,
            Cert::Expired,
            refused(cert_failure(mx, CertProblem::Expired)),
            false,
        ),
        (
            Some("enforce"),
            mx,
            Cert::SelfSigned,
            refused(cert_failure(mx, CertProblem::NotTrusted)),
            false,
        ),
        (
            Some("testing"),
            mx,
            Cert::SelfSigned,
            tls(TlsAuthentication::None),
            true,
        ),
        (
            Some("testing"),
            mx,
            Cert::NoStartTls,
            Ok(ConnectionVerdict::SendCleartext(TlsProblem::NotOffered)),
            false,
        ),
    ];
    for (mode, mx, cert, want, want_tls) in table {
        let w = world(mode.map(policy_text).as_deref()).await;
        let lookup = w.cache.policy_for(DOMAIN).await;
        assert_eq!(lookup.mode().map(|m| m.to_string()).as_deref(), mode);
        let tls = leaf_for(&w.ca, mx, &cert).map(|l| pki::server_config(&l, pki::ALL_VERSIONS));
        let peer = mx_peer(tls).await;
        let (verdict, secured) = attempt(lookup.policy(), mx, peer.addr, &w.roots).await;
        assert_eq!(verdict, want, "{mode:?} {mx}");
        assert_eq!(secured, want_tls, "{mode:?} {mx}: TLS session");
        if matches!(
            verdict,
            Err(HostSkip::MtaSts(MxFailure::NotInPolicy { .. }))
        ) {
            assert_eq!(peer.connections.load(Ordering::SeqCst), 0, "no connection");
        }
    }
}

#[tokio::test]
async fn enforce_with_no_valid_mx_defers_and_rechecks_before_bounce() {
    let w = world(Some(&policy_text("enforce"))).await;
    let lookup = w.cache.policy_for(DOMAIN).await;
    let bad_name = mx_peer(Some(pki::server_config(
        &w.ca.issue(&["wrong.example.test"]),
        pki::TLS12_ONLY,
    )))
    .await;
    let plain = mx_peer(None).await;
    let mut verdicts = Vec::new();
    for (mx, peer) in [
        ("mx1.example.test", &bad_name),
        ("mx2.example.test", &plain),
    ] {
        verdicts.push(attempt(lookup.policy(), mx, peer.addr, &w.roots).await.0);
    }
    // No MX may be used: the attempt defers with each host's failure.
    let types: Vec<_> = verdicts
        .iter()
        .map(|v| match v {
            Ok(ConnectionVerdict::NotUsed(NotUsed::MtaSts(failure))) => {
                failure.tlsrpt_result_type()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        types,
        ["certificate-host-mismatch", "starttls-not-supported"]
    );
    let id = lookup.id().expect("id");
    assert!(matches!(
        w.cache.recheck_before_bounce(DOMAIN, id).await,
        BounceCheck::Unchanged(_)
    ));
    // The domain withdrew its TXT record: the cached policy still stands.
    w.txt.remove(DOMAIN);
    assert!(matches!(
        w.cache.recheck_before_bounce(DOMAIN, id).await,
        BounceCheck::Unchanged(_)
    ));
}
