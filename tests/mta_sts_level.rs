//! The `mta-sts` level end to end on loopback: the policy comes from the
//! cache (in-memory TXT, real HTTPS policy host), each MX is a small SMTP
//! peer that may offer STARTTLS, the handshake runs real rustls with the
//! MTA-STS WebPKI verifier, and the verdict comes from `decide_mx`.
//! (Full SMTP delivery waits for the delivery engine.)
mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use sealpost::mta_sts::{
    decide_domain, decide_mx, plan_mx, webpki_verifier, BounceCheck, CertOutcome, CertProblem,
    DomainVerdict, HttpsFetcherConfig, HttpsPolicyFetcher, ManualClock, Mode, MxFacts, MxFailure,
    MxPlan, MxVerdict, OpportunisticWhy, Policy, PolicyCache, PolicyStore, StaticHosts,
    StsCertVerifier, TrustRoots,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
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

/// Reads one (possibly multi-line) reply; returns its lines.
async fn reply<S: AsyncRead + Unpin>(conn: &mut BufReader<S>) -> Vec<String> {
    let mut lines = Vec::new();
    for _ in 0..32 {
        let mut line = String::new();
        conn.read_line(&mut line).await.expect("read reply");
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line.trim_end().to_string());
        if last {
            return lines;
        }
    }
    panic!("reply too long");
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut BufReader<S>, command: &str) {
    conn.get_mut()
        .write_all(format!("{command}\r\n").as_bytes())
        .await
        .expect("send");
}

/// What the engine will do for one MX under the `mta-sts` level: plan, connect,
/// EHLO, STARTTLS with the policy's verifier, and decide.
/// Returns the verdict and whether a TLS session was established.
async fn attempt(
    policy: Option<&Policy>,
    mx: &str,
    addr: SocketAddr,
    roots: &TrustRoots,
) -> (MxVerdict, bool) {
    let mode = match plan_mx(policy, mx) {
        MxPlan::Skip(failure) => return (MxVerdict::Skip(failure), false),
        MxPlan::RequireWebPki => Mode::Enforce,
        MxPlan::TestWebPki { .. } => Mode::Testing,
        MxPlan::Opportunistic => Mode::None,
    };
    let mut conn = BufReader::new(TcpStream::connect(addr).await.expect("connect"));
    assert!(reply(&mut conn).await[0].starts_with("220"));
    send(&mut conn, "EHLO client.test").await;
    let ehlo = reply(&mut conn).await;
    let starttls_offered = ehlo.iter().any(|l| l[4..].eq_ignore_ascii_case("STARTTLS"));
    let mut facts = MxFacts {
        starttls_offered,
        certificate: None,
    };
    let mut secured = false;
    if starttls_offered {
        send(&mut conn, "STARTTLS").await;
        assert!(reply(&mut conn).await[0].starts_with("220"));
        let verifier = StsCertVerifier::new(webpki_verifier(roots).expect("verifier"), mode);
        let config = verifier.client_config().expect("client config");
        let name = ServerName::try_from(mx.to_string()).expect("mx name");
        match tokio_rustls::TlsConnector::from(config)
            .connect(name, conn.into_inner())
            .await
        {
            Ok(session) => {
                let mut secure = BufReader::new(session);
                send(&mut secure, "EHLO client.test").await;
                secured = reply(&mut secure).await[0].starts_with("250");
                send(&mut secure, "QUIT").await;
                facts.certificate = verifier.outcome();
            }
            Err(e) => {
                facts.certificate = Some(
                    verifier
                        .outcome()
                        .unwrap_or(CertOutcome::HandshakeFailed(e.to_string())),
                );
            }
        }
    } else {
        send(&mut conn, "QUIT").await;
    }
    (decide_mx(policy, mx, &facts), secured)
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
    let cert_failure = |mx: &str, problem| MxFailure::Certificate {
        mx: mx.to_string(),
        problem,
    };
    let mx = "mx1.example.test";
    let stranger = "mx.elsewhere.test";
    // (policy mode or None for no policy, MX name, its certificate, verdict, TLS up?)
    let table: Vec<(Option<&str>, &str, Cert, MxVerdict, bool)> = vec![
        (
            None,
            mx,
            Cert::SelfSigned,
            MxVerdict::Opportunistic(OpportunisticWhy::NoPolicy),
            true,
        ),
        (
            Some("none"),
            stranger,
            Cert::SelfSigned,
            MxVerdict::Opportunistic(OpportunisticWhy::ModeNone),
            true,
        ),
        (
            Some("enforce"),
            mx,
            Cert::Valid,
            MxVerdict::DeliverWebPki {
                mode: Mode::Enforce,
            },
            true,
        ),
        (
            Some("testing"),
            mx,
            Cert::Valid,
            MxVerdict::DeliverWebPki {
                mode: Mode::Testing,
            },
            true,
        ),
        (
            Some("enforce"),
            stranger,
            Cert::Valid,
            MxVerdict::Skip(MxFailure::NotInPolicy {
                mx: stranger.into(),
            }),
            false,
        ),
        (
            Some("enforce"),
            mx,
            Cert::NoStartTls,
            MxVerdict::Skip(MxFailure::StartTlsNotOffered { mx: mx.into() }),
            false,
        ),
        (
            Some("enforce"),
            mx,
            Cert::WrongName,
            MxVerdict::Skip(cert_failure(mx, CertProblem::HostMismatch)),
            false,
        ),
        (
            Some("enforce"),
            mx,
            Cert::Expired,
            MxVerdict::Skip(cert_failure(mx, CertProblem::Expired)),
            false,
        ),
        (
            Some("enforce"),
            mx,
            Cert::SelfSigned,
            MxVerdict::Skip(cert_failure(mx, CertProblem::NotTrusted)),
            false,
        ),
        (
            Some("testing"),
            mx,
            Cert::SelfSigned,
            MxVerdict::Opportunistic(OpportunisticWhy::TestingFailure(cert_failure(
                mx,
                CertProblem::NotTrusted,
            ))),
            true,
        ),
        (
            Some("testing"),
            mx,
            Cert::NoStartTls,
            MxVerdict::Opportunistic(OpportunisticWhy::TestingFailure(
                MxFailure::StartTlsNotOffered { mx: mx.into() },
            )),
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
        if matches!(verdict, MxVerdict::Skip(MxFailure::NotInPolicy { .. })) {
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
    match decide_domain(DOMAIN, &verdicts) {
        DomainVerdict::Defer { failures, .. } => {
            let types: Vec<_> = failures.iter().map(|f| f.tlsrpt_result_type()).collect();
            assert_eq!(
                types,
                ["certificate-host-mismatch", "starttls-not-supported"]
            );
        }
        other => panic!("{other:?}"),
    }
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
