//! The inbound listener's I/O on loopback: several addresses (IPv4 and
//! IPv6), connection limits, the command timeout, and STARTTLS with real
//! rustls handshakes whose result reaches the handler.
mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use sealpost::inbound::{
    Body, ConnectionInfo, ConnectionLimits, Listener, SessionHandler, Timeouts, TlsInfo,
};
use sealpost::smtp::{
    Envelope, ForwardPath, MailParams, RcptParams, Reply, ReversePath, SessionConfig, Verdict,
};
use tokio::net::TcpStream;

use support::pki::{self, TestCa};
use support::smtp::{command, read_reply as reply};

/// Accepts everything and remembers what each message's connection looked like.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(ConnectionInfo, Envelope)>>,
}

impl SessionHandler for Recorder {
    fn mail_from(&self, _: &ConnectionInfo, _: &ReversePath, _: &MailParams) -> Verdict {
        Verdict::Accept
    }
    fn rcpt(
        &self,
        _: &ConnectionInfo,
        _: &ReversePath,
        _: usize,
        _: &ForwardPath,
        _: &RcptParams,
    ) -> Verdict {
        Verdict::Accept
    }
    async fn message(&self, conn: &ConnectionInfo, envelope: Envelope, _: Body) -> Verdict {
        self.seen
            .lock()
            .expect("lock")
            .push((conn.clone(), envelope));
        Verdict::AcceptWith(Reply::new(250, (2, 0, 0), "Ok: queued as TEST"))
    }
}

struct Running {
    addrs: Vec<SocketAddr>,
    recorder: Arc<Recorder>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start(
    addrs: &[SocketAddr],
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ConnectionLimits,
    timeouts: Timeouts,
) -> Running {
    let listener = Listener::bind(addrs).await.expect("bind");
    let bound = listener.local_addrs();
    let recorder = Arc::new(Recorder::default());
    let config = Arc::new(SessionConfig {
        hostname: "mx.sealpost.test".into(),
        tls_available: tls.is_some(),
        ..SessionConfig::default()
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handler = recorder.clone();
    tokio::spawn(async move {
        listener
            .serve(handler, config, tls, limits, timeouts, async {
                let _ = stopped.await;
            })
            .await;
    });
    Running {
        addrs: bound,
        recorder,
        stop: Some(stop),
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

#[tokio::test]
async fn serves_every_configured_address_ipv4_and_ipv6() {
    let addrs: Vec<SocketAddr> = vec![loopback(), "[::1]:0".parse().expect("addr")];
    let server = start(
        &addrs,
        None,
        ConnectionLimits::default(),
        Timeouts::default(),
    )
    .await;
    assert_eq!(server.addrs.len(), 2);
    for addr in &server.addrs {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(reply(&mut tcp).await.code, 220, "greeting on {addr}");
        assert_eq!(command(&mut tcp, "QUIT").await.code, 221);
    }
}

#[tokio::test]
async fn a_bind_failure_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let Err(err) = Listener::bind(&[addr]).await else {
        panic!("bound an address in use")
    };
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn connections_over_the_per_ip_limit_get_421() {
    let limits = ConnectionLimits {
        max_connections: 10,
        max_per_ip: 2,
        ..ConnectionLimits::default()
    };
    let server = start(&[loopback()], None, limits, Timeouts::default()).await;
    let addr = server.addrs[0];
    let mut first = TcpStream::connect(addr).await.expect("connect");
    let mut second = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(reply(&mut first).await.code, 220);
    assert_eq!(reply(&mut second).await.code, 220);

    let mut third = TcpStream::connect(addr).await.expect("connect");
    let refused = reply(&mut third).await;
    assert_eq!(
        (refused.code, refused.enhanced.map(|e| e.to_string())),
        (421, Some("4.7.0".into()))
    );

    // Once a connection ends, its place is free again.
    assert_eq!(command(&mut first, "QUIT").await.code, 221);
    drop(first);
    let mut admitted = false;
    for _ in 0..50 {
        let mut next = TcpStream::connect(addr).await.expect("connect");
        if reply(&mut next).await.code == 220 {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        admitted,
        "the freed place was never given to a new connection"
    );
}

#[tokio::test]
async fn the_total_limit_applies_across_addresses() {
    let limits = ConnectionLimits {
        max_connections: 1,
        max_per_ip: 10,
        ..ConnectionLimits::default()
    };
    let server = start(&[loopback()], None, limits, Timeouts::default()).await;
    let mut first = TcpStream::connect(server.addrs[0]).await.expect("connect");
    assert_eq!(reply(&mut first).await.code, 220);
    let mut second = TcpStream::connect(server.addrs[0]).await.expect("connect");
    assert_eq!(reply(&mut second).await.code, 421);
}

#[tokio::test]
async fn an_idle_client_gets_421_after_the_command_timeout() {
    let timeouts = Timeouts {
        command: Duration::from_millis(200),
        ..Timeouts::default()
    };
    let server = start(&[loopback()], None, ConnectionLimits::default(), timeouts).await;
    let mut tcp = TcpStream::connect(server.addrs[0]).await.expect("connect");
    assert_eq!(reply(&mut tcp).await.code, 220);
    let timed_out = reply(&mut tcp).await;
    assert_eq!(timed_out.code, 421);
    assert_eq!(
        timed_out.enhanced.map(|e| e.to_string()),
        Some("4.4.2".into())
    );
}

#[tokio::test]
async fn starttls_hands_the_negotiated_session_to_the_handler() {
    let ca = TestCa::new("sealpost test CA");
    let leaf = ca.issue(&["mx.sealpost.test"]);
    let tls = pki::server_config(&leaf, pki::ALL_VERSIONS);
    let server = start(
        &[loopback()],
        Some(tls),
        ConnectionLimits::default(),
        Timeouts::default(),
    )
    .await;

    for (versions, expected) in [
        (pki::TLS12_ONLY, rustls::ProtocolVersion::TLSv1_2),
        (pki::TLS13_ONLY, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let mut tcp = TcpStream::connect(server.addrs[0]).await.expect("connect");
        assert_eq!(reply(&mut tcp).await.code, 220);
        let ehlo = command(&mut tcp, "EHLO client.test").await;
        assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
        assert_eq!(command(&mut tcp, "STARTTLS").await.code, 220);
        let client = rustls::ClientConfig::builder_with_provider(pki::provider())
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(ca.roots())
            .with_no_client_auth();
        let name = ServerName::try_from("mx.sealpost.test").expect("name");
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .expect("handshake");
        let ehlo = command(&mut tls, "EHLO client.test").await;
        assert!(
            !ehlo.lines.iter().any(|l| l == "STARTTLS"),
            "STARTTLS offered twice"
        );
        assert_eq!(
            command(&mut tls, "MAIL FROM:<a@client.test>").await.code,
            250
        );
        assert_eq!(
            command(&mut tls, "RCPT TO:<b@sealpost.test>").await.code,
            250
        );
        assert_eq!(command(&mut tls, "DATA").await.code, 354);
        let done = command(&mut tls, "Subject: t\r\n\r\nhello\r\n.").await;
        assert_eq!(done.code, 250);

        let seen = server
            .recorder
            .seen
            .lock()
            .expect("lock")
            .pop()
            .expect("a message");
        let info: TlsInfo = seen.0.tls.expect("TLS info");
        assert_eq!(info.version, expected);
        assert!(info.cipher.starts_with("TLS"), "{}", info.cipher);
        assert_eq!(info.sni.as_deref(), Some("mx.sealpost.test"));
        assert_eq!(seen.0.helo.as_deref(), Some("client.test"));
        assert!(seen.1.tls);
    }
}
