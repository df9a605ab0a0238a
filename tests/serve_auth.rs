//! SMTP AUTH through the real binary: `sealpost hash-password` makes the
//! hash, `[[tenants]] users` holds it; AUTH is offered and accepted only
//! after STARTTLS; a session authenticated as a tenant's user may relay
//! outbound mail with that tenant's sender domains and no others; bad
//! credentials get `535 5.7.8`.
mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sealpost_queue::ListFilter;

use support::sealpost::{greet, server_head, starttls, Sealpost, BIN, NO_DNS};
use support::smtp::{code, command, data, mail_rcpt};

/// `sealpost hash-password` with `input` on standard input.
fn hash_password(input: &str) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(["hash-password", "--iterations", "10000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sealpost");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write the password");
    child.wait_with_output().expect("hash-password ends")
}

#[tokio::test]
async fn an_authenticated_session_relays_for_its_tenant_only() {
    let output = hash_password("s3cret pass\n");
    assert!(output.status.success(), "{output:?}");
    let hash = String::from_utf8(output.stdout).expect("utf-8");
    let hash = hash.trim().to_string();
    assert!(hash.starts_with("pbkdf2-sha256$10000$"), "{hash}");
    let empty = hash_password("");
    assert_eq!(empty.status.code(), Some(1));

    let mut server = Sealpost::start(|port| {
        format!(
            r#"
{head}
{NO_DNS}

[[domains]]
name = "acme.example"
tenant = "acme"

[[domains]]
name = "globex.example"
tenant = "globex"

# No relay sources: only AUTH lets 127.0.0.1 relay.
[[tenants]]
name = "acme"
users = [{{ name = "relay@acme", password_hash = "{hash}" }}]
"#,
            head = server_head(port)
        )
    });

    // Plaintext: not offered, not accepted.
    let (mut tcp, ehlo) = greet(server.smtp).await;
    assert!(
        !ehlo.lines.iter().any(|l| l.starts_with("AUTH")),
        "{ehlo:?}"
    );
    let plain = STANDARD.encode(b"\0relay@acme\0s3cret pass");
    assert_eq!(
        code(&command(&mut tcp, &format!("AUTH PLAIN {plain}")).await),
        "538 5.7.11"
    );
    drop(tcp);

    let mut tls = starttls(server.smtp, support::pki::ALL_VERSIONS).await;
    let ehlo = command(&mut tls, "EHLO client.test").await;
    assert!(
        ehlo.lines.iter().any(|l| l == "AUTH PLAIN LOGIN"),
        "{ehlo:?}"
    );
    // Not yet authenticated: no relay.
    assert_eq!(
        code(
            &mail_rcpt(
                &mut tls,
                "MAIL FROM:<alice@acme.example>",
                "RCPT TO:<bob@elsewhere.test>"
            )
            .await
        ),
        "554 5.7.1"
    );
    assert_eq!(command(&mut tls, "RSET").await.code, 250);

    let wrong = STANDARD.encode(b"\0relay@acme\0wrong");
    let table = [
        (format!("AUTH PLAIN {wrong}"), "535 5.7.8"),
        (
            format!(
                "AUTH PLAIN {}",
                STANDARD.encode(b"\0nobody@acme\0s3cret pass")
            ),
            "535 5.7.8",
        ),
        ("AUTH LOGIN".to_string(), "334"),
        (STANDARD.encode("relay@acme"), "334"),
        (STANDARD.encode("s3cret pass"), "235 2.7.0"),
    ];
    for (line, want) in table {
        assert_eq!(code(&command(&mut tls, &line).await), want, "{line}");
    }

    // Authenticated: acme's sender domain relays anywhere, globex's does not.
    assert_eq!(
        code(
            &mail_rcpt(
                &mut tls,
                "MAIL FROM:<alice@acme.example> AUTH=<>",
                "RCPT TO:<bob@elsewhere.test>"
            )
            .await
        ),
        "250 2.1.5"
    );
    let done = data(&mut tls, "Subject: relayed\r\n\r\nhello").await;
    assert_eq!(done.code, 250, "{done:?}");
    assert_eq!(
        code(
            &mail_rcpt(
                &mut tls,
                "MAIL FROM:<eve@globex.example>",
                "RCPT TO:<bob@elsewhere.test>"
            )
            .await
        ),
        "554 5.7.1"
    );
    assert_eq!(command(&mut tls, "QUIT").await.code, 221);
    drop(tls);

    server.stop();
    let queue = server.open_queue();
    let page = queue
        .list(&ListFilter::default(), None, 10)
        .expect("list the queue");
    assert_eq!(page.items.len(), 1, "{:?}", page.items);
    assert_eq!(page.items[0].tenant, "acme");
    assert_eq!(page.items[0].recipients[0].destination, "elsewhere.test");
}
