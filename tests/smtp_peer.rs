//! The loopback test SMTP peer (`tests/support/smtp.rs`) with real rustls
//! handshakes: it records what the generator delivers over STARTTLS, and
//! plaintext pipelined after STARTTLS is never executed.
mod support;

use std::sync::Arc;

use sealpost::smtp::{Reply, ReplyParser};
use sealpost_bench::{send, SendOptions};
use support::pki::{self, TestCa};
use support::smtp::{accept_all, TestSmtpServer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

async fn reply<S: AsyncRead + Unpin>(stream: &mut S, parser: &mut ReplyParser) -> Reply {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(reply) = parser.next_reply() {
            return reply.expect("valid reply");
        }
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "server closed");
        parser.push(&buf[..n]);
    }
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    parser: &mut ReplyParser,
    line: &str,
) -> Reply {
    stream.write_all(line.as_bytes()).await.expect("write");
    reply(stream, parser).await
}

#[tokio::test]
async fn records_messages_delivered_over_starttls() {
    let ca = TestCa::new("peer test CA");
    let tls = pki::server_config(&ca.issue(&["mx.peer.test"]), pki::TLS13_ONLY);
    let server = TestSmtpServer::start("mx.peer.test", Some(tls), Arc::new(accept_all)).await;
    let report = send::run(SendOptions {
        to: server.addr,
        connections: 2,
        messages_per_connection: 3,
        size: 2048,
        starttls: true,
        from: "a@sender.test".into(),
        rcpt: "b@peer.test".into(),
        ehlo: "client.test".into(),
        run_id: "peer".into(),
    })
    .await
    .expect("load runs");
    assert_eq!(
        (report.accepted, report.failed_connections),
        (6, 0),
        "{report}"
    );
    let received = server.received();
    assert_eq!(received.len(), 6);
    for message in &received {
        assert_eq!(message.tls_version.as_deref(), Some("TLSv1_3"));
        assert!(message.envelope.tls);
        assert_eq!(
            message.envelope.recipients[0].path.to_string(),
            "<b@peer.test>"
        );
        assert!(message.body.windows(11).any(|w| w == b"X-Bench-Id:"));
    }
}

#[tokio::test]
async fn plaintext_pipelined_after_starttls_is_discarded() {
    let ca = TestCa::new("peer test CA");
    let tls = pki::server_config(&ca.issue(&["mx.peer.test"]), pki::ALL_VERSIONS);
    let server = TestSmtpServer::start("mx.peer.test", Some(tls), Arc::new(accept_all)).await;
    let mut plain = TcpStream::connect(server.addr).await.expect("connect");
    let mut parser = ReplyParser::new();
    assert_eq!(reply(&mut plain, &mut parser).await.code, 220);
    let ehlo = command(&mut plain, &mut parser, "EHLO attacker.test\r\n").await;
    assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"));
    let ready = command(
        &mut plain,
        &mut parser,
        "STARTTLS\r\nMAIL FROM:<inject@x.test>\r\n",
    )
    .await;
    assert_eq!(ready.to_string(), "220 2.0.0 Ready to start TLS");
    assert_eq!(parser.buffered(), 0);

    let client = rustls::ClientConfig::builder_with_provider(pki::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("mx.peer.test").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, plain)
        .await
        .expect("handshake: no plaintext reply was mixed in");
    let mut parser = ReplyParser::new();
    // The injected MAIL was not run: the session needs EHLO again.
    let mail = command(&mut tls, &mut parser, "MAIL FROM:<a@b.test>\r\n").await;
    assert_eq!(
        (mail.code, mail.enhanced.map(|e| e.to_string())),
        (503, Some("5.5.1".into()))
    );
    let ehlo = command(&mut tls, &mut parser, "EHLO client.test\r\n").await;
    assert!(!ehlo.lines.iter().any(|l| l == "STARTTLS"));
    assert_eq!(
        command(&mut tls, &mut parser, "MAIL FROM:<a@b.test>\r\n")
            .await
            .code,
        250
    );
    assert_eq!(command(&mut tls, &mut parser, "QUIT\r\n").await.code, 221);
}

#[tokio::test]
async fn refused_recipients_are_counted_and_nothing_is_stored() {
    let refuse = |ask: support::smtp::Ask<'_>| match ask {
        support::smtp::Ask::Rcpt(_) => {
            sealpost::smtp::Verdict::Reject(Reply::new(554, (5, 7, 1), "Relay access denied"))
        }
        other => accept_all(other),
    };
    let config = sealpost::smtp::SessionConfig {
        hostname: "mx.peer.test".into(),
        max_errors: 100,
        ..Default::default()
    };
    let server = TestSmtpServer::start_with_config(config, None, Arc::new(refuse)).await;
    let report = send::run(SendOptions {
        to: server.addr,
        connections: 1,
        messages_per_connection: 3,
        size: 1024,
        starttls: false,
        from: "a@sender.test".into(),
        rcpt: "b@elsewhere.test".into(),
        ehlo: "client.test".into(),
        run_id: "refused".into(),
    })
    .await
    .expect("load runs");
    assert_eq!(
        (
            report.sent,
            report.accepted,
            report.rejected,
            report.failed_connections
        ),
        (0, 0, 3, 0),
        "{report}"
    );
    assert!(server.received().is_empty());
}
