//! `sealpost serve` end to end: the real binary on loopback with a
//! configuration of managed domains, a real STARTTLS handshake, relay
//! control, the inbound TLS policy, and `250` only after the message is in
//! the queue (the queue is reopened after the server stops and the message
//! is found there with its Received header; a client that drops mid-DATA
//! leaves nothing behind).
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use sealpost_queue::ListFilter;

use support::sealpost::{before_tls, greet, server_head, starttls, Sealpost, NO_DNS};
use support::smtp::{code, command, data, mail_rcpt};

/// The relay and policy configuration most tests use.
fn start_relay_test() -> Sealpost {
    Sealpost::start(|port| {
        format!(
            r#"
{head}
{NO_DNS}
[defaults]
outbound = {{ level = "opportunistic" }}
inbound = {{ level = "opportunistic" }}

[[domains]]
name = "open.example"
tenant = "acme"

[[domains]]
name = "strict.example"
tenant = "bank"
inbound.default = {{ level = "mandatory", min_tls = "1.2" }}

[[domains.inbound.peers]]
peer = "127.0.0.0/8"
level = "mandatory"
min_tls = "1.3"

[[domains]]
name = "off.example"
tenant = "acme"
enabled = false

# The test client connects from 127.0.0.1: a relay source of acme.
[[tenants]]
name = "acme"
relay_sources = ["127.0.0.0/8"]
"#,
            head = server_head(port)
        )
    })
}

#[tokio::test]
async fn serve_applies_relay_control_and_the_inbound_policy_and_queues_durably() {
    let mut server = start_relay_test();

    // Plaintext session from 127.0.0.1.
    let (mut tcp, ehlo) = greet(server.smtp).await;
    assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    assert_eq!(
        command(&mut tcp, "MAIL FROM:<alice@sender.test>")
            .await
            .code,
        250
    );
    let table = [
        ("RCPT TO:<bob@elsewhere.test>", "554 5.7.1"), // not managed: no relay
        ("RCPT TO:<bob@off.example>", "554 5.7.1"),    // disabled domain
        ("RCPT TO:<bob@strict.example>", "530 5.7.0"), // mandatory peer, no TLS
        ("RCPT TO:<bob@open.example>", "250 2.1.5"),
    ];
    for (line, want) in table {
        assert_eq!(code(&command(&mut tcp, line).await), want, "{line}");
    }
    let done = data(&mut tcp, "Subject: plain\r\n\r\nhello").await;
    assert_eq!(done.code, 250, "{done:?}");
    let queued_plain = done.lines[0]
        .rsplit(' ')
        .next()
        .expect("queue id")
        .to_string();

    // Outbound: a relay source of acme, with one of acme's sender domains,
    // may relay to any recipient; a foreign sender domain may not.
    assert_eq!(
        code(
            &mail_rcpt(
                &mut tcp,
                "MAIL FROM:<carol@open.example>",
                "RCPT TO:<dave@elsewhere.test>"
            )
            .await
        ),
        "250 2.1.5"
    );
    let done = data(&mut tcp, "Subject: out\r\n\r\nhello").await;
    assert_eq!(done.code, 250, "{done:?}");
    assert_eq!(
        code(
            &mail_rcpt(
                &mut tcp,
                "MAIL FROM:<eve@off.example>",
                "RCPT TO:<dave@elsewhere.test>"
            )
            .await
        ),
        "554 5.7.1"
    );
    assert_eq!(command(&mut tcp, "RSET").await.code, 250);
    assert_eq!(command(&mut tcp, "QUIT").await.code, 221);

    // TLS 1.2 is below the 1.3 the 127.0.0.0/8 entry asks for.
    let mut tls12 = starttls(server.smtp, support::pki::TLS12_ONLY).await;
    let refused = mail_rcpt(
        &mut tls12,
        "MAIL FROM:<alice@sender.test>",
        "RCPT TO:<bob@strict.example>",
    )
    .await;
    assert_eq!(code(&refused), "530 5.7.0");
    assert!(refused.lines[0].contains("TLSv1.2"), "{refused:?}");

    // TLS 1.3 meets it.
    let mut tls13 = starttls(server.smtp, support::pki::TLS13_ONLY).await;
    assert_eq!(
        mail_rcpt(
            &mut tls13,
            "MAIL FROM:<alice@sender.test>",
            "RCPT TO:<bob@strict.example>"
        )
        .await
        .code,
        250
    );
    let done = data(&mut tls13, "Subject: secure\r\n\r\nhello").await;
    assert_eq!(done.code, 250, "{done:?}");
    drop(tls13);
    drop(tls12);

    // A client that drops the connection in the middle of DATA.
    let (mut dropped, _) = greet(server.smtp).await;
    assert_eq!(
        mail_rcpt(
            &mut dropped,
            "MAIL FROM:<alice@sender.test>",
            "RCPT TO:<carol@open.example>"
        )
        .await
        .code,
        250
    );
    assert_eq!(command(&mut dropped, "DATA").await.code, 354);
    {
        use tokio::io::AsyncWriteExt;
        dropped
            .write_all(b"Subject: cut short\r\n\r\nthe first half")
            .await
            .expect("write");
    }
    drop(dropped);

    server.stop();
    let queue = server.open_queue();
    let page = queue
        .list(&ListFilter::default(), None, 10)
        .expect("list the queue");
    // Exactly the three completed messages: nothing of the dropped one.
    assert_eq!(page.items.len(), 3, "{:?}", page.items);
    let plain = page
        .items
        .iter()
        .find(|m| m.id.to_string() == queued_plain)
        .expect("the plaintext message is in the queue");
    assert_eq!(plain.tenant, "acme");
    let outbound = page
        .items
        .iter()
        .find(|m| {
            m.recipients
                .iter()
                .any(|r| r.address == "dave@elsewhere.test")
        })
        .expect("the outbound message is in the queue");
    assert_eq!(outbound.tenant, "acme");
    assert_eq!(outbound.recipients[0].destination, "elsewhere.test");
    assert!(
        outbound.policy.explanation.contains("outbound"),
        "{:?}",
        outbound.policy
    );
    let secure = page
        .items
        .iter()
        .find(|m| m.tenant == "bank")
        .expect("the TLS message is in the queue");
    assert_eq!(secure.policy.level, "mandatory");
    assert_eq!(secure.policy.min_tls, "1.3");
    let body = queue.message_body(secure.id).expect("body");
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.starts_with("Received: from client.test ([127.0.0.1])"),
        "{text}"
    );
    assert!(text.contains("with ESMTPS (TLSv1.3) tls TLS13_"), "{text}");
    assert!(text.ends_with("Subject: secure\r\n\r\nhello\r\n"), "{text}");
}

/// STARTTLS as `sni`, trusting only `ca`; the certificate the server showed.
async fn presented(addr: SocketAddr, ca: &support::pki::TestCa, sni: &str) -> Vec<u8> {
    let tcp = before_tls(addr).await;
    let config = rustls::ClientConfig::builder_with_provider(support::pki::provider())
        .with_protocol_versions(support::pki::ALL_VERSIONS)
        .expect("versions")
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    let name = ServerName::try_from(sni.to_string()).expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("a certificate valid for the name under the test CA");
    tls.get_ref().1.peer_certificates().expect("certificates")[0].to_vec()
}

#[tokio::test]
async fn configured_certificates_are_chosen_by_sni_and_reloaded_on_sighup() {
    let ca = support::pki::TestCa::new("sealpost test CA");
    let first = ca.issue(&["mx.sealpost.test"]);
    let second = ca.issue(&["mx2.sealpost.test"]);
    let renewed = ca.issue(&["mx.sealpost.test"]);
    let certs = tempfile::tempdir().expect("tempdir");
    let file = |name: &str| certs.path().join(name);
    std::fs::write(file("mx.crt"), first.cert_pem.clone() + &ca.cert_pem).expect("write");
    std::fs::write(file("mx.key"), &first.key_pem).expect("write");
    std::fs::write(file("mx2.crt"), &second.cert_pem).expect("write");
    std::fs::write(file("mx2.key"), &second.key_pem).expect("write");
    let dir = certs.path().display().to_string();
    let mut server = Sealpost::start(|port| {
        format!(
            r#"
{head}
[tls]
certificate = "{dir}/mx.crt"
key = "{dir}/mx.key"

[[tls.sni]]
name = "mx2.sealpost.test"
certificate = "{dir}/mx2.crt"
key = "{dir}/mx2.key"
"#,
            head = server_head(port)
        )
    });

    assert_eq!(
        presented(server.smtp, &ca, "mx.sealpost.test").await,
        first.cert.to_vec()
    );
    assert_eq!(
        presented(server.smtp, &ca, "mx2.sealpost.test").await,
        second.cert.to_vec()
    );

    // Renewal: new files, SIGHUP, new handshakes get the new certificate.
    std::fs::write(file("mx.crt"), &renewed.cert_pem).expect("write");
    std::fs::write(file("mx.key"), &renewed.key_pem).expect("write");
    server.signal("-HUP");
    let mut now_presented = Vec::new();
    for _ in 0..100 {
        now_presented = presented(server.smtp, &ca, "mx.sealpost.test").await;
        if now_presented == renewed.cert.to_vec() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        now_presented,
        renewed.cert.to_vec(),
        "the renewed certificate after SIGHUP"
    );

    // A broken file on reload keeps the certificates in use.
    std::fs::write(file("mx.key"), "not a key").expect("write");
    server.signal("-HUP");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        presented(server.smtp, &ca, "mx.sealpost.test").await,
        renewed.cert.to_vec()
    );
    assert_eq!(
        presented(server.smtp, &ca, "mx2.sealpost.test").await,
        second.cert.to_vec()
    );
    server.stop();
}

/// The warnings `config check` prints (valid but risky settings) are also
/// logged by `serve` when the configuration is put in force: at start and
/// at each reload.
#[tokio::test(flavor = "multi_thread")]
async fn serve_logs_configuration_warnings_at_start_and_reload() {
    let server = Sealpost::start(|port| {
        format!(
            "{head}\n{NO_DNS}\n[[domains]]\nname = \"a.example\"\ntenant = \"t\"\n\
             inbound.default = {{ level = \"mandatory\" }}\n\
             [[domains.inbound.peers]]\npeer = \"partner.example\"\nlevel = \"opportunistic\"\n",
            head = server_head(port)
        )
    });
    let warned = |s: &Sealpost| {
        s.events("configuration warning")
            .iter()
            .filter(|e| {
                e["warning"]
                    .as_str()
                    .is_some_and(|w| w.contains("partner.example"))
            })
            .count()
    };
    assert!(server.wait_for(Duration::from_secs(10), |s| warned(s) == 1));
    server.signal("-HUP");
    assert!(server.wait_for(Duration::from_secs(10), |s| warned(s) == 2));
}

#[test]
fn a_second_server_on_the_same_data_dir_stops_naming_the_first() {
    let first = Sealpost::start(|port| format!("{}\n{NO_DNS}", server_head(port)));
    let data = first.dir.path().join("data");
    let second = first.dir.path().join("second.toml");
    let head = server_head(support::sealpost::free_port()).replace(
        "data_dir = \"data\"",
        &format!("data_dir = {:?}", data.display().to_string()),
    );
    std::fs::write(&second, format!("{head}\n{NO_DNS}")).expect("write config");

    let (code, stderr) = support::sealpost::run_to_exit(&second);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("queue store at {}", data.join("queue").display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("is another sealpost serving this data_dir?"),
        "{stderr}"
    );
    // The first server is untouched.
    assert!(std::net::TcpStream::connect(first.smtp).is_ok());
}
