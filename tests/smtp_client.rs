//! The SMTP client's transactions against `TestSmtpServer` and scripted
//! servers on 127.0.0.1: delivery, per-recipient replies, PIPELINING,
//! several messages per connection, HELO fallback, timeouts.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sealpost::policy::MinTlsVersion;
use sealpost::smtp::client::{
    CleartextReason, ClientConfig, ClientError, Connection, Delivery, MessageRefusal,
    OutboundMessage, RecipientOutcome, Stage, Timeouts, TlsRequirement,
};
use sealpost::smtp::{BodyType, ForwardPath, Reply, Verdict};
use support::client::*;
use support::pki::{self, TestCa};
use support::proxy::{Tamper, TamperProxy};
use support::smtp::{accept_all, Ask, Decide};

#[tokio::test]
async fn plain_delivery() {
    let s = server(None, Arc::new(accept_all)).await;
    let p = params(TlsRequirement::Opportunistic, MinTlsVersion::Any);
    let mut conn = Connection::connect(peer(s.server.addr), &p, config())
        .await
        .expect("connect");
    let a = conn.achieved().clone();
    assert_eq!(a.tls_version, None);
    assert_eq!(a.cleartext_reason, Some(CleartextReason::NotOffered));
    assert!(all_delivered(&send_one(&mut conn, &rcpts(&["bob"])).await));
    conn.quit().await;
    let got = s.server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, BODY, "dot-stuffing undone by the receiver");
    assert_eq!(got[0].tls_version, None);
    assert_eq!(got[0].envelope.from, sender());
    assert_eq!(got[0].envelope.params.size, Some(BODY.len() as u64));
    assert_eq!(got[0].envelope.params.body, None, "7-bit body: no BODY=");
}

#[tokio::test]
async fn eight_bit_and_smtputf8_parameters_reach_the_server() {
    let s = server(Some(tls_server(pki::ALL_VERSIONS)), Arc::new(accept_all)).await;
    let p = params(TlsRequirement::Opportunistic, MinTlsVersion::Any);
    let mut conn = Connection::connect(peer(s.server.addr), &p, config())
        .await
        .expect("connect");
    let from = sender();
    let to = vec![ForwardPath::Mailbox(mailbox("jörg"))];
    let body = b"Subject: caf\xc3\xa9\r\n\r\n\xc3\xa9t\xc3\xa9\r\n";
    let msg = OutboundMessage {
        from: &from,
        to: &to,
        body,
        requiretls: false,
    };
    let Delivery::Attempted(outcomes) = conn.send(&msg).await.expect("send") else {
        panic!("refused");
    };
    assert!(all_delivered(&outcomes));
    conn.quit().await;
    let got = s.server.received();
    assert_eq!(got[0].body, body);
    assert_eq!(got[0].envelope.params.body, Some(BodyType::EightBitMime));
    assert!(got[0].envelope.params.smtputf8);
}

#[tokio::test]
async fn helo_fallback_when_ehlo_is_refused() {
    // A minimal old server: 502 to EHLO, 250 to HELO and the rest.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let Ok((s, _)) = listener.accept().await else {
            return;
        };
        let (r, mut w) = s.into_split();
        let mut lines = BufReader::new(r).lines();
        let _ = w.write_all(b"220 old.test\r\n").await;
        let mut in_data = false;
        while let Ok(Some(line)) = lines.next_line().await {
            log.lock().expect("lock").push(line.clone());
            let reply: &[u8] = if in_data {
                if line != "." {
                    continue;
                }
                in_data = false;
                b"250 queued\r\n"
            } else if line.starts_with("EHLO") {
                b"502 command not implemented\r\n"
            } else if line.starts_with("DATA") {
                in_data = true;
                b"354 go\r\n"
            } else if line.starts_with("QUIT") {
                b"221 bye\r\n"
            } else {
                b"250 ok\r\n"
            };
            let _ = w.write_all(reply).await;
        }
    });
    // Opportunistic: no extensions, so cleartext; plain MAIL without SIZE.
    let p = params(TlsRequirement::Opportunistic, MinTlsVersion::Any);
    let mut conn = Connection::connect(peer(addr), &p, config())
        .await
        .expect("connect");
    assert!(conn.capabilities().is_none());
    assert!(all_delivered(&send_one(&mut conn, &rcpts(&["a"])).await));
    conn.quit().await;
    task.await.expect("server task");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen[0], "EHLO client.test");
    assert_eq!(seen[1], "HELO client.test");
    assert_eq!(seen[2], "MAIL FROM:<alice@src.test>");
    assert_eq!(seen.last().map(String::as_str), Some("QUIT"));
}

#[test]
fn connection_futures_are_send() {
    fn is_send<T: Send>(_: &T) {}
    let p = params(TlsRequirement::Opportunistic, MinTlsVersion::Any);
    let fut = Connection::connect(peer("127.0.0.1:9".parse().expect("addr")), &p, config());
    is_send(&fut);
    fn send_future_is_send(c: &mut Connection, m: &OutboundMessage<'_>) {
        let fut = c.send(m);
        is_send(&fut);
    }
    let _ = send_future_is_send;
}

fn by_local_part(ask: Ask<'_>) -> Verdict {
    match ask {
        Ask::Rcpt(ForwardPath::Mailbox(m)) if m.local_part == "temp" => {
            Verdict::Reject(Reply::new(450, (4, 2, 1), "mailbox busy"))
        }
        Ask::Rcpt(ForwardPath::Mailbox(m)) if m.local_part == "perm" => {
            Verdict::Reject(Reply::new(550, (5, 1, 1), "no such user"))
        }
        other => accept_all(other),
    }
}

#[tokio::test]
async fn mixed_recipient_replies() {
    let s = server(None, Arc::new(by_local_part)).await;
    let p = params(TlsRequirement::Opportunistic, MinTlsVersion::Any);
    let mut conn = Connection::connect(peer(s.server.addr), &p, config())
        .await
        .expect("connect");
    let outcomes = send_one(&mut conn, &rcpts(&["ok", "temp", "perm"])).await;
    conn.quit().await;
    assert!(matches!(&outcomes[0], RecipientOutcome::Delivered(r) if r.code == 250));
    assert!(matches!(&outcomes[1], RecipientOutcome::TempFail(r) if r.code == 450));
    assert!(
        matches!(&outcomes[2], RecipientOutcome::PermFail(r) if r.code == 550 && r.text() == "no such user")
    );
    let got = s.server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].envelope.recipients.len(), 1);
}

#[tokio::test]
async fn temporary_failure_on_mail_then_next_message() {
    let refuse_first = Arc::new(Mutex::new(true));
    let flag = refuse_first.clone();
    let decide: Arc<Decide> = Arc::new(move |ask: Ask<'_>| match ask {
        Ask::Mail(_) if std::mem::replace(&mut *flag.lock().expect("lock"), false) => {
            Verdict::Reject(Reply::new(451, (4, 3, 0), "try later"))
        }
        other => accept_all(other),
    });
    let s = server(None, decide).await;
    let p = params(TlsRequirement::Opportunistic, MinTlsVersion::Any);
    let mut conn = Connection::connect(peer(s.server.addr), &p, config())
        .await
        .expect("connect");
    let outcomes = send_one(&mut conn, &rcpts(&["a", "b"])).await;
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, RecipientOutcome::TempFail(r) if r.code == 451)));
    assert!(s.server.received().is_empty());
    assert!(conn.is_usable());
    assert!(all_delivered(&send_one(&mut conn, &rcpts(&["a"])).await));
    conn.quit().await;
    assert_eq!(s.server.received().len(), 1);
}

#[tokio::test]
async fn pipelining_on_and_off() {
    let s = server(None, Arc::new(by_local_part)).await;
    for pipelining in [true, false] {
        let strip: &[&str] = if pipelining { &[] } else { &["PIPELINING"] };
        let proxy = TamperProxy::start(s.server.addr, Tamper::strip(strip)).await;
        let p = params(TlsRequirement::Opportunistic, MinTlsVersion::Any);
        let mut conn = Connection::connect(peer(proxy.addr), &p, config())
            .await
            .expect("connect");
        assert_eq!(conn.capabilities().map(|c| c.pipelining), Some(pipelining));
        let outcomes = send_one(&mut conn, &rcpts(&["ok", "perm", "ok2"])).await;
        conn.quit().await;
        assert!(matches!(outcomes[0], RecipientOutcome::Delivered(_)));
        assert!(matches!(outcomes[1], RecipientOutcome::PermFail(_)));
        assert!(matches!(outcomes[2], RecipientOutcome::Delivered(_)));
        let chunks: Vec<String> = proxy
            .client_chunks()
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        let together = chunks.iter().any(|c| {
            c.contains("MAIL FROM") && c.matches("RCPT TO").count() == 3 && c.ends_with("DATA\r\n")
        });
        let mixed = chunks
            .iter()
            .any(|c| c.contains("MAIL FROM") && c.contains("RCPT TO"));
        if pipelining {
            assert!(together, "one write with MAIL, RCPTs and DATA: {chunks:?}");
        } else {
            assert!(!mixed, "each command waits for its reply: {chunks:?}");
        }
    }
    assert_eq!(s.server.received().len(), 2);
}

#[tokio::test]
async fn several_messages_on_one_connection() {
    let s = server(Some(tls_server(pki::ALL_VERSIONS)), Arc::new(accept_all)).await;
    let p = params(TlsRequirement::RequireUnauthenticated, MinTlsVersion::Tls13);
    let mut conn = Connection::connect(peer(s.server.addr), &p, config())
        .await
        .expect("connect");
    for i in 0..3 {
        let to = rcpts(&[&format!("r{i}")]);
        assert!(all_delivered(&send_one(&mut conn, &to).await));
    }
    assert_eq!(conn.transactions(), 3);
    // A message needing DANE may not reuse this connection.
    let dane = params(webpki_verifier(&TestCa::new("x")), MinTlsVersion::Any);
    assert!(!conn.achieved().satisfies(&dane));
    assert!(conn.achieved().satisfies(&p));
    conn.quit().await;
    let got = s.server.received();
    assert_eq!(got.len(), 3);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.envelope.recipients.len(), 1);
        assert_eq!(
            r.envelope.recipients[0].path,
            ForwardPath::Mailbox(mailbox(&format!("r{i}")))
        );
        assert_eq!(r.tls_version.as_deref(), Some("TLSv1_3"));
    }
}

#[tokio::test]
async fn rset_between_messages() {
    let s = server(None, Arc::new(accept_all)).await;
    let proxy = TamperProxy::start(s.server.addr, Tamper::default()).await;
    let p = params(TlsRequirement::Opportunistic, MinTlsVersion::Any);
    let mut conn = Connection::connect(peer(proxy.addr), &p, config())
        .await
        .expect("connect");
    for _ in 0..3 {
        assert!(all_delivered(&send_one(&mut conn, &rcpts(&["a"])).await));
    }
    conn.quit().await;
    let text = proxy.client_text();
    assert_eq!(text.matches("RSET\r\n").count(), 2, "{text}");
    assert!(text.ends_with("QUIT\r\n"));
}

#[tokio::test]
async fn eight_bit_refused_without_8bitmime_is_local() {
    // The test server advertises 8BITMIME; strip it.
    let s = server(None, Arc::new(accept_all)).await;
    let proxy = TamperProxy::start(s.server.addr, Tamper::strip(&["8BITMIME"])).await;
    let p = params(TlsRequirement::Opportunistic, MinTlsVersion::Any);
    let mut conn = Connection::connect(peer(proxy.addr), &p, config())
        .await
        .expect("connect");
    let from = sender();
    let to = rcpts(&["a"]);
    let msg = OutboundMessage {
        from: &from,
        to: &to,
        body: b"Subject: caf\xc3\xa9\r\n\r\nx\r\n",
        requiretls: false,
    };
    let got = conn.send(&msg).await.expect("send");
    assert_eq!(got, Delivery::Refused(MessageRefusal::EightBitUnsupported));
    assert!(conn.is_usable());
    conn.quit().await;
    assert_eq!(s.mails(), 0);
}

#[tokio::test]
async fn stalled_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s); // never greet
        }
    });
    let mut c = ClientConfig::new("client.test");
    c.timeouts = Timeouts::uniform(Duration::from_millis(200));
    let p = params(TlsRequirement::Opportunistic, MinTlsVersion::Any);
    let err = Connection::connect(peer(addr), &p, Arc::new(c))
        .await
        .expect_err("stall");
    assert!(
        matches!(
            err,
            ClientError::Timeout {
                stage: Stage::Greeting,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.peer().addr, addr);
    hold.abort();
}

#[tokio::test]
async fn stall_after_data_times_out_and_connection_is_unusable() {
    // A server that greets, answers EHLO/MAIL/RCPT/DATA, then never answers
    // the end of data.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let Ok((s, _)) = listener.accept().await else {
            return;
        };
        let (r, mut w) = s.into_split();
        let mut lines = BufReader::new(r).lines();
        let _ = w.write_all(b"220 stall.test\r\n").await;
        let mut in_data = false;
        while let Ok(Some(line)) = lines.next_line().await {
            if in_data {
                continue; // swallow the body and the final dot
            }
            let reply: &[u8] = if line.starts_with("EHLO") {
                b"250 stall.test\r\n"
            } else if line.starts_with("DATA") {
                in_data = true;
                b"354 go\r\n"
            } else {
                b"250 ok\r\n"
            };
            let _ = w.write_all(reply).await;
        }
    });
    let mut c = ClientConfig::new("client.test");
    c.timeouts = Timeouts::uniform(Duration::from_millis(300));
    let p = params(TlsRequirement::Opportunistic, MinTlsVersion::Any);
    let mut conn = Connection::connect(peer(addr), &p, Arc::new(c))
        .await
        .expect("connect");
    let from = sender();
    let to = rcpts(&["a"]);
    let msg = OutboundMessage {
        from: &from,
        to: &to,
        body: BODY,
        requiretls: false,
    };
    let err = conn.send(&msg).await.expect_err("stall");
    assert!(
        matches!(
            err,
            ClientError::Timeout {
                stage: Stage::Body,
                ..
            }
        ),
        "{err}"
    );
    assert!(!conn.is_usable());
    task.abort();
}
