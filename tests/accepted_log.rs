//! The accepted-message log line (docs/operations.md, "Log lines"): one
//! line per message `sealpost serve` accepts, in its JSON form with the
//! `schema` version and every documented field, through the real binary
//! and a real STARTTLS session.
mod support;

use std::time::Duration;

use support::sealpost::{server_head, submit, Sealpost, NO_DNS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_accepted_message_logs_one_line_with_its_schema() {
    let sealpost = Sealpost::start(|port| {
        format!(
            "{head}\n{NO_DNS}\n[delivery]\nfirst_retry = \"10m\"\n\n\
             [[domains]]\nname = \"open.test\"\ntenant = \"acme\"\n\
             route = {{ hosts = [\"127.0.0.1:9\"] }}\n",
            head = server_head(port)
        )
    });
    let body = b"Subject: logged\r\n\r\nhello\r\n";
    let first = submit(
        sealpost.smtp,
        "alice@sender.test",
        &["b@open.test", "c@open.test"],
        body,
    )
    .await
    .expect("250");
    let second = submit(sealpost.smtp, "", &["d@open.test"], body)
        .await
        .expect("250");
    assert!(sealpost.wait_for(Duration::from_secs(10), |s| s
        .events("message accepted")
        .len()
        == 2));
    let lines = sealpost.events("message accepted");
    assert_eq!(lines.len(), 2, "one line per message: {lines:?}");
    let line = &lines[0];
    assert_eq!(line["schema"], 1, "{line}");
    assert_eq!(line["event"], "accepted", "{line}");
    assert_eq!(line["queue_id"], first.as_str(), "{line}");
    assert_eq!(line["sender"], "<alice@sender.test>", "{line}");
    assert_eq!(line["recipients"], 2, "{line}");
    assert!(
        line["size"]
            .as_u64()
            .is_some_and(|n| n >= body.len() as u64),
        "{line}"
    );
    assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
    assert_eq!(line["tls_version"], "TLSv1.3", "{line}");
    assert!(
        line["tls_cipher"]
            .as_str()
            .is_some_and(|c| c.starts_with("TLS13_")),
        "{line}"
    );
    assert_eq!(line["tenant"], "acme", "{line}");
    assert!(line["conn"].as_u64().is_some(), "{line}");
    let null = &lines[1];
    assert_eq!(null["queue_id"], second.as_str(), "{null}");
    assert_eq!(null["sender"], "<>", "{null}");
    assert_eq!(null["recipients"], 1, "{null}");
}
