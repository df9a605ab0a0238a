//! `[limits]` and the postmaster and mail-loop rules end to end, through
//! the real `sealpost serve` on loopback: SIZE and recipients from the
//! configuration, connections over the total and per-client limits
//! refused with `421 4.7.0` (and new limits applied after a SIGHUP
//! reload), the session deadline (`421 4.4.2`), the write timeout on
//! plaintext and TLS connections whose client never reads, postmaster
//! mail sent on to `[server] postmaster` or refused, and a route that
//! points back at sealpost itself looping until `554 5.4.6`, with the
//! bounce delivered to the sender. Every refusal is checked in `/metrics`.
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use support::outbound::until;
use support::pki::ALL_VERSIONS;
use support::sealpost::{free_port, greet, server_head, Sealpost, NO_DNS};
use support::smtp::{accept_all, code, command, data, mail_rcpt, read_reply, TestSmtpServer};

const WAIT: Duration = Duration::from_secs(30);

/// A sealpost with `[limits]` set to `limits`, one open managed domain,
/// `extra` tables, and a metrics listener; its metrics port.
fn start(limits: &str, extra: &str) -> (Sealpost, u16) {
    let metrics = free_port();
    let sealpost = Sealpost::start(|port| config(port, metrics, limits, extra));
    (sealpost, metrics)
}

fn config(port: u16, metrics: u16, limits: &str, extra: &str) -> String {
    format!(
        "{head}\n{NO_DNS}\n[admin]\nmetrics_listen = \"127.0.0.1:{metrics}\"\n\n\
         [limits]\n{limits}\n\n\
         [[domains]]\nname = \"open.example\"\ntenant = \"acme\"\n\n{extra}",
        head = server_head(port)
    )
}

/// `sealpost_smtp_refusals_total{reason="..."}` from `GET /metrics`.
async fn refusals(metrics_port: u16, reason: &str) -> u64 {
    let mut tcp = TcpStream::connect(("127.0.0.1", metrics_port))
        .await
        .expect("connect to the metrics listener");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out))
        .await
        .expect("metrics in time")
        .expect("read");
    let text = String::from_utf8_lossy(&out);
    let prefix = format!("sealpost_smtp_refusals_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
        .parse()
        .expect("a number")
}

/// Connects from `source` (a loopback address) and reads the first reply.
async fn connect_from(source: &str, to: SocketAddr) -> (TcpStream, String) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("source"))
        .expect("bind the source address");
    let mut tcp = socket.connect(to).await.expect("connect");
    let reply = read_reply(&mut tcp).await;
    (tcp, code(&reply))
}

/// Connects until the greeting is `220` (the start-up probe of the test
/// harness may still hold a slot for a moment): the connection.
async fn admitted(to: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + WAIT;
    loop {
        let (tcp, greeting) = connect_from("127.0.0.1", to).await;
        if greeting == "220" {
            return tcp;
        }
        assert!(Instant::now() < deadline, "never admitted: {greeting}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn size_and_recipient_limits_come_from_the_configuration() {
    let (s, metrics) = start("max_message_size = 2000\nmax_recipients = 2\n", "");
    let (mut tcp, ehlo) = greet(s.smtp).await;
    assert!(ehlo.lines.iter().any(|l| l == "SIZE 2000"), "{ehlo:?}");

    let big = command(&mut tcp, "MAIL FROM:<a@sender.test> SIZE=2001").await;
    assert_eq!(code(&big), "552 5.3.4");
    let answer = mail_rcpt(
        &mut tcp,
        "MAIL FROM:<a@sender.test>",
        "RCPT TO:<b@open.example>",
    )
    .await;
    assert_eq!(code(&answer), "250 2.1.5");
    assert_eq!(
        code(&command(&mut tcp, "RCPT TO:<c@open.example>").await),
        "250 2.1.5"
    );
    assert_eq!(
        code(&command(&mut tcp, "RCPT TO:<d@open.example>").await),
        "452 4.5.3"
    );
    let body = format!(
        "Subject: big\r\n\r\n{}",
        (("x".repeat(70)) + "\r\n").repeat(30)
    );
    assert_eq!(code(&data(&mut tcp, &body).await), "552 5.3.4");

    // Without `[server] postmaster`, the postmaster is refused, not parked.
    let answer = mail_rcpt(
        &mut tcp,
        "MAIL FROM:<a@sender.test>",
        "RCPT TO:<postmaster>",
    )
    .await;
    assert_eq!(code(&answer), "550 5.1.1");
    let answer = command(&mut tcp, "RCPT TO:<Postmaster@mx.sealpost.test>").await;
    assert_eq!(code(&answer), "550 5.1.1");
    assert_eq!(command(&mut tcp, "QUIT").await.code, 221);

    assert_eq!(refusals(metrics, "max_message_size").await, 2);
    assert_eq!(refusals(metrics, "max_recipients").await, 1);
    assert_eq!(refusals(metrics, "no_postmaster").await, 2);
    assert_eq!(refusals(metrics, "mail_loop").await, 0);
    assert!(!s.events("refused: limit reached").is_empty());
}

#[tokio::test]
async fn connections_over_the_limits_get_421_and_a_reload_applies_new_limits() {
    let metrics_port = free_port();
    let limits = "max_connections = 2\nmax_connections_per_ip = 1\n";
    let s = Sealpost::start(|port| config(port, metrics_port, limits, ""));
    let _first = admitted(s.smtp).await;
    let (_second, greeting) = connect_from("127.0.0.1", s.smtp).await;
    assert_eq!(
        greeting, "421 4.7.0",
        "a second connection from one address"
    );
    let (_other, greeting) = connect_from("127.0.0.2", s.smtp).await;
    assert_eq!(greeting, "220", "another address still gets in");
    let (_third, greeting) = connect_from("127.0.0.3", s.smtp).await;
    assert_eq!(greeting, "421 4.7.0", "over the total");
    // At least: the harness's start-up probe may have cost `admitted` a try.
    assert!(refusals(metrics_port, "max_connections_per_ip").await >= 1);
    assert_eq!(refusals(metrics_port, "max_connections").await, 1);

    // A reload raises the limits: new connections get in while the old
    // ones stay open.
    let port = s.smtp.port();
    let raised = "max_connections = 10\nmax_connections_per_ip = 3\n";
    std::fs::write(s.config_path(), config(port, metrics_port, raised, "")).expect("write");
    s.signal("-HUP");
    assert!(
        s.wait_for(WAIT, |s| !s.events("configuration reloaded").is_empty()),
        "no reload:\n{}",
        s.log()
    );
    let (mut again, greeting) = connect_from("127.0.0.1", s.smtp).await;
    assert_eq!(greeting, "220", "the raised per-address limit");
    assert_eq!(command(&mut again, "QUIT").await.code, 221);
    let (_fourth, greeting) = connect_from("127.0.0.4", s.smtp).await;
    assert_eq!(greeting, "220", "the raised total");
}

#[tokio::test]
async fn the_session_deadline_ends_a_connection_that_lives_too_long() {
    let (s, metrics) = start("session_deadline = \"2s\"\n", "");
    let mut tcp = admitted(s.smtp).await;
    assert_eq!(command(&mut tcp, "EHLO client.test").await.code, 250);
    let started = Instant::now();
    // A client that keeps talking is still cut off at the deadline.
    let last = loop {
        let reply = command(&mut tcp, "NOOP").await;
        if reply.code != 250 || started.elapsed() > WAIT {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(code(&last), "421 4.4.2", "{last:?}");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed after the 421");
    assert_eq!(refusals(metrics, "session_deadline").await, 1);
}

/// The client side of the TLS handshake after `220` to STARTTLS (any
/// certificate).
async fn tls_client(tcp: TcpStream) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = rustls::ClientConfig::builder_with_provider(support::pki::provider())
        .with_protocol_versions(ALL_VERSIONS)
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(sealpost::tls::Unauthenticated::new()))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("mx.sealpost.test").expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake with sealpost")
}

/// Sends NOOPs without ever reading the replies, until a write fails (the
/// server closed the connection) or `WAIT` passes: whether it failed.
async fn flood_without_reading<S: AsyncWrite + Unpin>(stream: &mut S) -> bool {
    let batch = "NOOP\r\n".repeat(10_000);
    let flood = async {
        // At most 600 MB: far more than any socket buffer holds.
        for _ in 0..10_000 {
            if stream.write_all(batch.as_bytes()).await.is_err() {
                return true;
            }
        }
        false
    };
    tokio::time::timeout(WAIT, flood).await.unwrap_or(false)
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_by_the_write_timeout_in_plaintext_and_tls() {
    let limits = "max_connections_per_ip = 1\nwrite_timeout = \"1s\"\n";
    let (s, metrics) = start(limits, "");

    let mut plain = admitted(s.smtp).await;
    assert_eq!(command(&mut plain, "EHLO client.test").await.code, 250);
    assert!(
        flood_without_reading(&mut plain).await,
        "plaintext connection never closed"
    );
    drop(plain);
    assert!(
        until(WAIT, || s
            .events("connection closed: the client does not read its replies")
            .len()
            == 1)
        .await
    );

    // The slot is free again: the next client is served, here over TLS.
    let mut tcp = admitted(s.smtp).await;
    assert_eq!(command(&mut tcp, "EHLO client.test").await.code, 250);
    assert_eq!(command(&mut tcp, "STARTTLS").await.code, 220);
    let mut tls = tls_client(tcp).await;
    assert_eq!(command(&mut tls, "EHLO client.test").await.code, 250);
    assert!(
        flood_without_reading(&mut tls).await,
        "TLS connection never closed"
    );
    drop(tls);
    assert!(
        until(WAIT, || s
            .events("connection closed: the client does not read its replies")
            .len()
            == 2)
        .await
    );
    assert_eq!(refusals(metrics, "write_timeout").await, 2);
    let mut last = admitted(s.smtp).await;
    assert_eq!(command(&mut last, "QUIT").await.code, 221);
}

#[tokio::test]
async fn postmaster_mail_goes_to_the_configured_address() {
    let sink = TestSmtpServer::start("downstream.test", None, Arc::new(accept_all)).await;
    let extra = format!(
        "[[domains]]\nname = \"ops.example\"\ntenant = \"ops\"\nroute = {{ hosts = [\"{}\"] }}\n",
        sink.addr
    );
    let metrics = free_port();
    let s = Sealpost::start(|port| {
        config(port, metrics, "", &extra).replacen(
            "[server]\n",
            "[server]\npostmaster = \"ops@ops.example\"\n",
            1,
        )
    });
    let (mut tcp, _) = greet(s.smtp).await;
    let answer = mail_rcpt(
        &mut tcp,
        "MAIL FROM:<a@sender.test>",
        "RCPT TO:<postmaster>",
    )
    .await;
    assert_eq!(code(&answer), "250 2.1.5");
    let answer = command(&mut tcp, "RCPT TO:<POSTMASTER@mx.sealpost.test>").await;
    assert_eq!(code(&answer), "250 2.1.5");
    let queued = data(&mut tcp, "Subject: to the postmaster\r\n\r\nhello").await;
    assert_eq!(queued.code, 250, "{queued:?}");
    assert!(
        until(WAIT, || !sink.received().is_empty()).await,
        "{}",
        s.log()
    );
    let got = sink.received();
    let to: Vec<String> = got[0]
        .envelope
        .recipients
        .iter()
        .map(|r| r.path.to_string())
        .collect();
    assert_eq!(to, ["<ops@ops.example>", "<ops@ops.example>"]);
    assert!(String::from_utf8_lossy(&got[0].body).contains("Subject: to the postmaster"));
    assert_eq!(refusals(metrics, "no_postmaster").await, 0);
}

#[tokio::test]
async fn a_route_back_to_sealpost_loops_until_refused_and_the_sender_gets_the_bounce() {
    let sink = TestSmtpServer::start("downstream.test", None, Arc::new(accept_all)).await;
    let metrics = free_port();
    let s = Sealpost::start(|port| {
        let extra = format!(
            "[delivery]\nfirst_retry = \"1s\"\nmax_retry_interval = \"2s\"\ncommand_timeout = \"10s\"\n\n\
             # A route that points back at sealpost itself.\n\
             [[domains]]\nname = \"loop.example\"\ntenant = \"t\"\nroute = {{ hosts = [\"127.0.0.1:{port}\"] }}\n\n\
             [[domains]]\nname = \"home.example\"\ntenant = \"t\"\nroute = {{ hosts = [\"{}\"] }}\n",
            sink.addr
        );
        config(port, metrics, "max_received_headers = 5\n", &extra)
    });
    let (mut tcp, _) = greet(s.smtp).await;
    let answer = mail_rcpt(
        &mut tcp,
        "MAIL FROM:<alice@home.example>",
        "RCPT TO:<bob@loop.example>",
    )
    .await;
    assert_eq!(code(&answer), "250 2.1.5");
    let queued = data(&mut tcp, "Subject: round and round\r\n\r\nhello").await;
    assert_eq!(queued.code, 250, "{queued:?}");
    assert_eq!(command(&mut tcp, "QUIT").await.code, 221);

    assert!(
        until(WAIT, || !sink.received().is_empty()).await,
        "no bounce reached the sender:\n{}",
        s.log()
    );
    let got = sink.received();
    assert_eq!(got.len(), 1, "one bounce");
    let bounce = &got[0];
    assert_eq!(
        bounce.envelope.recipients[0].path.to_string(),
        "<alice@home.example>"
    );
    assert_eq!(bounce.envelope.from.to_string(), "<>");
    let text = String::from_utf8_lossy(&bounce.body);
    assert!(text.contains("5.4.6"), "{text}");
    assert!(text.contains("round and round"), "{text}");
    assert_eq!(refusals(metrics, "mail_loop").await, 1);
    let loops = s.events("message refused: too many Received headers, a mail loop");
    assert_eq!(loops.len(), 1);
    assert_eq!(loops[0]["hops"], 6);
}

/// One transaction: `MAIL`, `RCPT`, and (when the recipient is accepted)
/// `DATA` with `body`; the code of the last reply. RSET after a refusal.
async fn send(tcp: &mut TcpStream, to: &str, body: &str) -> String {
    let rcpt = mail_rcpt(tcp, "MAIL FROM:<a@sender.test>", &format!("RCPT TO:<{to}>")).await;
    if rcpt.code != 250 {
        assert_eq!(command(tcp, "RSET").await.code, 250);
        return code(&rcpt);
    }
    let done = data(tcp, body).await;
    if done.code != 250 {
        assert_eq!(command(tcp, "RSET").await.code, 250);
    }
    code(&done)
}

/// A tenant at its queue quota gets `452 4.3.1` at RCPT (messages) or at
/// the end of DATA (octets), while other tenants are still accepted; a
/// file system below `min_free_disk` gets it at MAIL. Nothing over a quota
/// is accepted. (Nothing is delivered here: the domains have no MX.)
#[tokio::test(flavor = "multi_thread")]
async fn queue_quotas_and_the_disk_reserve_refuse_with_452_4_3_1() {
    let extra = "[[domains]]\nname = \"globex.example\"\ntenant = \"globex\"\n\n\
                 [[domains]]\nname = \"initech.example\"\ntenant = \"initech\"\n\n\
                 [[tenants]]\nname = \"acme\"\nmax_queue_messages = 2\n\n\
                 [[tenants]]\nname = \"initech\"\nmax_queue_bytes = 3000\n";
    let (s, metrics) = start("", extra);
    let (mut tcp, _) = greet(s.smtp).await;
    let small = "Subject: q\r\n\r\nhello";
    assert_eq!(send(&mut tcp, "bob@open.example", small).await, "250 2.0.0");
    assert_eq!(send(&mut tcp, "bob@open.example", small).await, "250 2.0.0");
    assert_eq!(send(&mut tcp, "bob@open.example", small).await, "452 4.3.1");
    assert_eq!(
        send(&mut tcp, "bob@globex.example", small).await,
        "250 2.0.0"
    );
    // initech: 2,000 octets fit in 3,000; a second message does not, and
    // that is only known at the end of DATA.
    let big = format!(
        "Subject: big\r\n\r\n{}",
        format!("{}\r\n", "x".repeat(98)).repeat(20)
    );
    assert_eq!(
        send(&mut tcp, "bob@initech.example", &big).await,
        "250 2.0.0"
    );
    assert_eq!(
        send(&mut tcp, "bob@initech.example", &big).await,
        "452 4.3.1"
    );
    assert_eq!(refusals(metrics, "tenant_queue_quota").await, 2);
    assert_eq!(refusals(metrics, "min_free_disk").await, 0);
    drop(tcp);

    let (s, metrics) = start("min_free_disk = 9223372036854775807\n", "");
    let (mut tcp, _) = greet(s.smtp).await;
    let refused = command(&mut tcp, "MAIL FROM:<a@sender.test>").await;
    assert_eq!(code(&refused), "452 4.3.1");
    assert_eq!(refusals(metrics, "min_free_disk").await, 1);
}
