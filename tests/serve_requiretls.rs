//! REQUIRETLS (RFC 8689) received by `sealpost serve`: the EHLO keyword
//! only under TLS, `MAIL FROM:<..> REQUIRETLS` refused with `530 5.7.10`
//! in a plaintext session and accepted after STARTTLS, and the sender's
//! request (REQUIRETLS, or a `TLS-Required: No` header field) stored with
//! the queued message: shown by the admin socket and found in the queue
//! reopened after the server stops.
mod support;

use sealpost_queue::{ListFilter, TlsRequest};
use support::sealpost::{greet, run_cli, server_head, starttls, Sealpost, NO_DNS};
use support::smtp::{code, command, data, mail_rcpt};

fn queued_id(reply: &sealpost::smtp::Reply) -> String {
    assert_eq!(reply.code, 250, "{reply:?}");
    reply.lines[0]
        .rsplit(' ')
        .next()
        .expect("queue id")
        .to_string()
}

#[tokio::test]
async fn requiretls_is_offered_and_accepted_only_under_tls_and_kept_in_the_queue() {
    let mut server = Sealpost::start(|port| {
        format!(
            "{head}\n{NO_DNS}\n[[domains]]\nname = \"ours.example\"\ntenant = \"acme\"\n",
            head = server_head(port)
        )
    });

    // Plaintext: not advertised, and refused.
    let (mut tcp, ehlo) = greet(server.smtp).await;
    assert!(!ehlo.lines.iter().any(|l| l == "REQUIRETLS"), "{ehlo:?}");
    let refused = command(&mut tcp, "MAIL FROM:<alice@sender.test> REQUIRETLS").await;
    assert_eq!(code(&refused), "530 5.7.10", "{refused:?}");
    // The session goes on: a message with `TLS-Required: No` (and no
    // REQUIRETLS) is accepted and marked.
    let rcpt = mail_rcpt(
        &mut tcp,
        "MAIL FROM:<alice@sender.test>",
        "RCPT TO:<bob@ours.example>",
    )
    .await;
    assert_eq!(rcpt.code, 250, "{rcpt:?}");
    let optional = queued_id(
        &data(
            &mut tcp,
            "Subject: relaxed\r\nTLS-Required: No\r\n\r\nplease deliver anyway",
        )
        .await,
    );
    assert_eq!(command(&mut tcp, "QUIT").await.code, 221);

    // Under TLS: advertised, accepted, kept; the header field is ignored.
    let mut tls = starttls(server.smtp, support::pki::TLS13_ONLY).await;
    let ehlo = command(&mut tls, "EHLO client.test").await;
    assert!(ehlo.lines.iter().any(|l| l == "REQUIRETLS"), "{ehlo:?}");
    let rcpt = mail_rcpt(
        &mut tls,
        "MAIL FROM:<alice@sender.test> REQUIRETLS",
        "RCPT TO:<bob@ours.example>",
    )
    .await;
    assert_eq!(rcpt.code, 250, "{rcpt:?}");
    let required = queued_id(
        &data(
            &mut tls,
            "Subject: secret\r\nTLS-Required: No\r\n\r\nonly over TLS",
        )
        .await,
    );
    let rcpt = mail_rcpt(
        &mut tls,
        "MAIL FROM:<alice@sender.test>",
        "RCPT TO:<bob@ours.example>",
    )
    .await;
    assert_eq!(rcpt.code, 250, "{rcpt:?}");
    let plain = queued_id(&data(&mut tls, "Subject: usual\r\n\r\nhello").await);
    assert_eq!(command(&mut tls, "QUIT").await.code, 221);

    // The admin socket shows it.
    let (status, text, stderr) = run_cli(
        &server.config_path(),
        &["queue", "show", &required, "--json"],
    );
    assert_eq!(status, Some(0), "{stderr}");
    let shown: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(shown["tls_request"], "require-tls", "{shown}");

    // Durable: in the queue after the server stops.
    server.stop();
    let queue = server.open_queue();
    let page = queue.list(&ListFilter::default(), None, 100).expect("list");
    let mut found: Vec<(String, TlsRequest)> = page
        .items
        .iter()
        .map(|m| (m.id.to_string(), m.tls_request))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![
        (optional, TlsRequest::TlsOptional),
        (required, TlsRequest::RequireTls),
        (plain, TlsRequest::None),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(found, want);
}
