//! The SMTP client's STARTTLS handling on 127.0.0.1 with real rustls
//! handshakes: opportunistic and required TLS, a STARTTLS-stripping proxy,
//! minimum versions, certificate verification, the cleartext retry.

mod support;

use std::sync::Arc;

use rustls::ProtocolVersion;
use sealpost::policy::MinTlsVersion;
use sealpost::smtp::client::{
    CleartextReason, ClientError, Connection, Stage, TlsAuthentication, TlsRequirement,
};
use support::client::*;
use support::pki::{self, TestCa};
use support::proxy::{Tamper, TamperProxy};
use support::smtp::accept_all;

#[tokio::test]
async fn starttls_opportunistic() {
    let s = server(Some(tls_server(pki::ALL_VERSIONS)), Arc::new(accept_all)).await;
    let p = params(TlsRequirement::Opportunistic, MinTlsVersion::Tls12);
    let mut conn = Connection::connect(peer(s.server.addr), &p, config())
        .await
        .expect("connect");
    let a = conn.achieved().clone();
    assert_eq!(a.tls_version, Some(ProtocolVersion::TLSv1_3));
    assert!(
        a.cipher.as_deref().is_some_and(|c| c.starts_with("TLS13_")),
        "{a:?}"
    );
    assert_eq!(a.authentication, TlsAuthentication::None);
    assert!(
        conn.capabilities().is_some_and(|c| !c.starttls),
        "EHLO again after TLS"
    );
    assert!(all_delivered(&send_one(&mut conn, &rcpts(&["bob"])).await));
    conn.quit().await;
    assert_eq!(
        s.server.received()[0].tls_version.as_deref(),
        Some("TLSv1_3")
    );
}

#[tokio::test]
async fn required_tls_not_offered_sends_nothing() {
    let s = server(None, Arc::new(accept_all)).await;
    let p = params(TlsRequirement::RequireUnauthenticated, MinTlsVersion::Any);
    let err = Connection::connect(peer(s.server.addr), &p, config())
        .await
        .expect_err("no TLS");
    assert!(matches!(err, ClientError::TlsNotOffered { .. }), "{err}");
    s.assert_nothing_sent();
}

#[tokio::test]
async fn stripping_proxy_required_sends_no_byte_of_mail() {
    let s = server(Some(tls_server(pki::ALL_VERSIONS)), Arc::new(accept_all)).await;
    let proxy = TamperProxy::start(s.server.addr, Tamper::strip(&["STARTTLS"])).await;
    let p = params(TlsRequirement::RequireUnauthenticated, MinTlsVersion::Any);
    let err = Connection::connect(peer(proxy.addr), &p, config())
        .await
        .expect_err("stripped");
    assert!(matches!(err, ClientError::TlsNotOffered { .. }), "{err}");
    s.assert_nothing_sent();
    let sent = proxy.client_text();
    assert!(sent.starts_with("EHLO client.test\r\n"), "{sent:?}");
    assert!(!sent.contains("MAIL") && !sent.contains("RCPT") && !sent.contains("secret"));
}

#[tokio::test]
async fn stripping_proxy_opportunistic_delivers_in_cleartext() {
    let s = server(Some(tls_server(pki::ALL_VERSIONS)), Arc::new(accept_all)).await;
    let proxy = TamperProxy::start(s.server.addr, Tamper::strip(&["STARTTLS"])).await;
    let p = params(TlsRequirement::Opportunistic, MinTlsVersion::Any);
    let mut conn = Connection::connect(peer(proxy.addr), &p, config())
        .await
        .expect("connect");
    assert_eq!(conn.achieved().tls_version, None);
    assert!(all_delivered(&send_one(&mut conn, &rcpts(&["bob"])).await));
    conn.quit().await;
    assert_eq!(s.server.received()[0].tls_version, None);
}

#[tokio::test]
async fn below_minimum_version() {
    let s = server(Some(tls_server(pki::TLS12_ONLY)), Arc::new(accept_all)).await;
    // Required: fails after the handshake, before MAIL.
    let p = params(TlsRequirement::RequireUnauthenticated, MinTlsVersion::Tls13);
    let err = Connection::connect(peer(s.server.addr), &p, config())
        .await
        .expect_err("1.2");
    assert!(
        matches!(
            err,
            ClientError::TlsBelowMinimum {
                negotiated: ProtocolVersion::TLSv1_2,
                ..
            }
        ),
        "{err}"
    );
    s.assert_nothing_sent();
    // Opportunistic: the TLS 1.2 session counts as no TLS; reconnect in cleartext.
    let p = params(TlsRequirement::Opportunistic, MinTlsVersion::Tls13);
    let mut conn = Connection::connect(peer(s.server.addr), &p, config())
        .await
        .expect("connect");
    assert_eq!(conn.achieved().tls_version, None);
    assert_eq!(
        conn.achieved().cleartext_reason,
        Some(CleartextReason::BelowMinimum {
            negotiated: ProtocolVersion::TLSv1_2
        })
    );
    assert!(all_delivered(&send_one(&mut conn, &rcpts(&["bob"])).await));
    conn.quit().await;
    let got = s.server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].tls_version, None);
    // Minimum 1.2 accepts the same server under TLS.
    let p = params(TlsRequirement::RequireUnauthenticated, MinTlsVersion::Tls12);
    let conn = Connection::connect(peer(s.server.addr), &p, config())
        .await
        .expect("connect");
    assert_eq!(conn.achieved().tls_version, Some(ProtocolVersion::TLSv1_2));
    conn.quit().await;
}

#[tokio::test]
async fn verified_tls() {
    let ca = TestCa::new("Test CA");
    let leaf = ca.issue(&[MX]);
    let s = server(
        Some(pki::server_config(&leaf, pki::ALL_VERSIONS)),
        Arc::new(accept_all),
    )
    .await;
    // A verifier trusting another CA rejects the certificate: nothing sent,
    // and no cleartext retry is offered.
    let other = TestCa::new("Other CA");
    let p = params(webpki_verifier(&other), MinTlsVersion::Any);
    let err = Connection::connect(peer(s.server.addr), &p, config())
        .await
        .expect_err("reject");
    assert!(
        matches!(
            err,
            ClientError::TlsHandshakeFailed {
                retry_cleartext_allowed: false,
                ..
            }
        ),
        "{err}"
    );
    assert!(p.cleartext_retry().is_none());
    s.assert_nothing_sent();
    // The right CA: authenticated by WebPKI.
    let p = params(webpki_verifier(&ca), MinTlsVersion::Tls13);
    let mut conn = Connection::connect(peer(s.server.addr), &p, config())
        .await
        .expect("connect");
    assert_eq!(conn.achieved().authentication, TlsAuthentication::WebPki);
    assert!(conn.achieved().satisfies(&p));
    assert!(all_delivered(&send_one(&mut conn, &rcpts(&["bob"])).await));
    conn.quit().await;
}

#[tokio::test]
async fn failed_handshake_opportunistic_retries_in_cleartext() {
    let s = server(Some(tls_server(pki::ALL_VERSIONS)), Arc::new(accept_all)).await;
    let tamper = Tamper {
        break_tls: true,
        ..Tamper::default()
    };
    let proxy = TamperProxy::start(s.server.addr, tamper).await;
    let p = params(TlsRequirement::Opportunistic, MinTlsVersion::Any);
    let err = Connection::connect(peer(proxy.addr), &p, config())
        .await
        .expect_err("broken");
    assert!(err.retry_cleartext_allowed(), "{err}");
    let retry = p.cleartext_retry().expect("allowed under opportunistic");
    let mut conn = Connection::connect(peer(proxy.addr), &retry, config())
        .await
        .expect("retry");
    assert_eq!(
        conn.achieved().cleartext_reason,
        Some(CleartextReason::Retry)
    );
    assert!(all_delivered(&send_one(&mut conn, &rcpts(&["bob"])).await));
    conn.quit().await;
    assert_eq!(s.server.received().len(), 1);
    // The same break under a required mode: error without retry.
    let p = params(TlsRequirement::RequireUnauthenticated, MinTlsVersion::Any);
    let err = Connection::connect(peer(proxy.addr), &p, config())
        .await
        .expect_err("broken");
    assert!(!err.retry_cleartext_allowed(), "{err}");
    assert_eq!(s.mails(), 1);
}

fn starttls_script(line: &str, starttls_reply: &'static [u8]) -> &'static [u8] {
    match line {
        "" => b"220 fake.test\r\n",
        l if l.starts_with("EHLO") => b"250-fake.test\r\n250 STARTTLS\r\n",
        "STARTTLS" => starttls_reply,
        "QUIT" => b"221 bye\r\n",
        _ => b"250 ok\r\n",
    }
}

#[tokio::test]
async fn starttls_response_injection_is_refused() {
    let (addr, seen, task) =
        fake_server(|l| starttls_script(l, b"220 go ahead\r\n250 injected\r\n")).await;
    let p = params(TlsRequirement::Opportunistic, MinTlsVersion::Any);
    let err = Connection::connect(peer(addr), &p, config())
        .await
        .expect_err("injected");
    assert!(
        matches!(err, ClientError::StartTlsInjection { .. }),
        "{err}"
    );
    task.abort();
    assert!(!seen
        .lock()
        .expect("lock")
        .iter()
        .any(|l| l.starts_with("MAIL")));
}

#[tokio::test]
async fn starttls_refused_by_server() {
    // Required: fail without MAIL.
    let (addr, seen, task) =
        fake_server(|l| starttls_script(l, b"454 4.7.0 TLS not available\r\n")).await;
    let p = params(TlsRequirement::RequireUnauthenticated, MinTlsVersion::Any);
    let err = Connection::connect(peer(addr), &p, config())
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, ClientError::Rejected { stage: Stage::StartTls, reply, .. } if reply.code == 454),
        "{err}"
    );
    task.await.expect("server");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen, ["EHLO client.test", "STARTTLS", "QUIT"]);
    // Opportunistic: carry on in cleartext.
    let (addr, _, task) =
        fake_server(|l| starttls_script(l, b"454 4.7.0 TLS not available\r\n")).await;
    let p = params(TlsRequirement::Opportunistic, MinTlsVersion::Any);
    let conn = Connection::connect(peer(addr), &p, config())
        .await
        .expect("cleartext");
    assert_eq!(
        conn.achieved().cleartext_reason,
        Some(CleartextReason::StartTlsRefused)
    );
    conn.quit().await;
    task.abort();
}

/// RFC 8689 section 4.2.1: a REQUIRETLS message never goes over a
/// connection whose TLS is not authenticated (encrypted or not, pooled or
/// new), and over an authenticated one its MAIL FROM carries REQUIRETLS.
#[tokio::test]
async fn requiretls_only_over_an_authenticated_connection() {
    use sealpost::smtp::client::{Delivery, MessageRefusal, OutboundMessage};
    let ca = TestCa::new("Test CA");
    let leaf = ca.issue(&[MX]);
    let s = server(
        Some(pki::server_config(&leaf, pki::ALL_VERSIONS)),
        Arc::new(accept_all),
    )
    .await;
    let from = sender();
    let to = rcpts(&["bob"]);
    let message = OutboundMessage {
        from: &from,
        to: &to,
        body: BODY,
        requiretls: true,
    };
    // Encrypted, certificate not checked: refused, nothing sent.
    let p = params(TlsRequirement::Opportunistic, MinTlsVersion::Any);
    let mut conn = Connection::connect(peer(s.server.addr), &p, config())
        .await
        .expect("connect");
    assert!(conn.achieved().tls_version.is_some());
    assert_eq!(
        conn.send(&message).await.expect("send"),
        Delivery::Refused(MessageRefusal::RequireTlsUnauthenticated)
    );
    conn.quit().await;
    s.assert_nothing_sent();
    // Authenticated by WebPKI, REQUIRETLS advertised: sent with it.
    let p = params(webpki_verifier(&ca), MinTlsVersion::Any);
    let mut conn = Connection::connect(peer(s.server.addr), &p, config())
        .await
        .expect("connect");
    assert!(conn.achieved().carries_requiretls());
    match conn.send(&message).await.expect("send") {
        Delivery::Attempted(outcomes) => assert!(all_delivered(&outcomes)),
        Delivery::Refused(why) => panic!("refused: {why}"),
    }
    conn.quit().await;
    let got = s.server.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].envelope.params.requiretls);
}
