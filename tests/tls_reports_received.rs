//! Receiving TLS reports (RFC 8460) through the real `sealpost serve`:
//! `POST https://mta-sts.<domain>/tlsrpt` on the MTA-STS host takes
//! gzipped and plain JSON reports for hosted domains, refuses a gzip bomb
//! (413), other media types (415), reports about another domain (400) and
//! domains it does not host (404), stores each report once per tenant, and
//! `sealpost tls-reports received` sums them per sending organization and
//! failure type, also after a restart. A report mailed to the domain's
//! TLSRPT address (`multipart/report`, gzip in base64) is stored instead
//! of relayed; other mail to that address is queued as usual.
mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use support::pki::TestCa;
use support::sealpost::{free_port, greet, http_answer, run_cli, server_head, Sealpost, NO_DNS};
use support::smtp::{command, data, mail_rcpt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(port: u16, https: u16) -> String {
    format!(
        r#"{head}
{NO_DNS}
[mta_sts_host]
listen = ["127.0.0.1:{https}"]

[tls]
certificate = "mta-sts.crt"
key = "mta-sts.key"

[[domains]]
name = "a.test"
tenant = "alpha"
mta_sts = {{ mode = "enforce", mx = ["mx.a.test"] }}

[[domains]]
name = "b.test"
tenant = "beta"
mta_sts = {{ mode = "testing", mx = ["mx.b.test"] }}
"#,
        head = server_head(port)
    )
}

fn report(organization: &str, id: &str, domain: &str, failures: &[(&str, u64)]) -> String {
    let details: Vec<serde_json::Value> = failures
        .iter()
        .map(|(kind, n)| {
            serde_json::json!({
                "result-type": kind,
                "sending-mta-ip": "192.0.2.7",
                "receiving-mx-hostname": format!("mx.{domain}"),
                "failed-session-count": n
            })
        })
        .collect();
    let failed: u64 = failures.iter().map(|(_, n)| n).sum();
    serde_json::json!({
        "organization-name": organization,
        "date-range": {"start-datetime": "2026-12-01T00:00:00Z", "end-datetime": "2026-12-01T23:59:59Z"},
        "contact-info": "tlsrpt@sender.example",
        "report-id": id,
        "policies": [{
            "policy": {"policy-type": "sts", "policy-string": ["version: STSv1", "mode: enforce"], "policy-domain": domain, "mx-host": [format!("mx.{domain}")]},
            "summary": {"total-successful-session-count": 10, "total-failure-session-count": failed},
            "failure-details": details
        }]
    })
    .to_string()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// POSTs `body` to `https://<host>/tlsrpt` at `addr`, trusting `ca`: the
/// status code and the body of the answer.
async fn post(
    ca: &TestCa,
    addr: SocketAddr,
    host: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let config = rustls::ClientConfig::builder_with_provider(support::pki::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS to the MTA-STS host");
    let head = format!(
        "POST /tlsrpt HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.expect("write");
    // The server may answer and close before reading a refused body.
    let _ = tls.write_all(body).await;
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    http_answer(&String::from_utf8_lossy(&answer))
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_are_received_checked_stored_and_summed() {
    let ca = TestCa::new("sealpost test CA");
    let leaf = ca.issue(&["mta-sts.a.test", "mta-sts.b.test", "mta-sts.c.test"]);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("mta-sts.crt"),
        leaf.cert_pem.clone() + &ca.cert_pem,
    )
    .expect("write");
    std::fs::write(dir.path().join("mta-sts.key"), &leaf.key_pem).expect("write");
    let https = free_port();
    let mut server = Sealpost::start_in(dir, |port| config(port, https));
    let addr: SocketAddr = format!("127.0.0.1:{https}").parse().expect("addr");
    assert!(
        server.wait_for(Duration::from_secs(10), |_| std::net::TcpStream::connect(
            addr
        )
        .is_ok())
    );

    let gz = "application/tlsrpt+gzip";
    let json = "application/tlsrpt+json";
    let first = report(
        "Sender-X",
        "x-1",
        "a.test",
        &[("starttls-not-supported", 3), ("certificate-expired", 1)],
    );
    let table: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("mta-sts.a.test", gz, gzip(first.as_bytes()), 200),
        // The same report again: accepted, stored once.
        ("mta-sts.a.test", gz, gzip(first.as_bytes()), 200),
        (
            "mta-sts.a.test",
            json,
            report(
                "Sender-X",
                "x-2",
                "a.test",
                &[("starttls-not-supported", 2)],
            )
            .into_bytes(),
            200,
        ),
        (
            "mta-sts.a.test",
            gz,
            gzip(report("Sender-Y", "y-1", "a.test", &[]).as_bytes()),
            200,
        ),
        (
            "mta-sts.b.test",
            json,
            report("Sender-X", "x-3", "b.test", &[("validation-failure", 5)]).into_bytes(),
            200,
        ),
        // 32 MiB of JSON padding gzips to about 32 KiB: refused after
        // 8 MiB of decompression.
        (
            "mta-sts.a.test",
            gz,
            gzip(&vec![b' '; 32 * 1024 * 1024]),
            413,
        ),
        // More than 1 MiB as sent.
        ("mta-sts.a.test", json, vec![b' '; 2 * 1024 * 1024], 413),
        (
            "mta-sts.a.test",
            "application/json",
            first.clone().into_bytes(),
            415,
        ),
        (
            "mta-sts.a.test",
            json,
            report("Sender-Z", "z-1", "b.test", &[]).into_bytes(),
            400,
        ),
        (
            "mta-sts.a.test",
            json,
            b"{\"not\": \"a report\"}".to_vec(),
            400,
        ),
        (
            "mta-sts.c.test",
            json,
            report("Sender-Z", "z-2", "c.test", &[]).into_bytes(),
            404,
        ),
    ];
    for (host, content_type, body, want) in &table {
        let (status, answer) = post(&ca, addr, host, content_type, body).await;
        assert_eq!(
            status,
            *want,
            "{host} {content_type} {} octets: {answer}",
            body.len()
        );
    }

    // By mail, to the default TLSRPT address of a.test.
    let mailed = gzip(report("Sender-M", "m-1", "a.test", &[("dnssec-invalid", 4)]).as_bytes());
    let (mut smtp, _) = greet(server.smtp).await;
    let rcpt = mail_rcpt(
        &mut smtp,
        "MAIL FROM:<reports@sender.example>",
        "RCPT TO:<tlsrpt@a.test>",
    )
    .await;
    assert_eq!(rcpt.code, 250, "{rcpt:?}");
    let stored = data(&mut smtp, &report_mail(&mailed)).await;
    assert_eq!(
        (stored.code, stored.text()),
        (250, "Ok: TLS report stored".to_string()),
        "{stored:?}"
    );
    let rcpt = mail_rcpt(
        &mut smtp,
        "MAIL FROM:<someone@sender.example>",
        "RCPT TO:<tlsrpt@a.test>",
    )
    .await;
    assert_eq!(rcpt.code, 250, "{rcpt:?}");
    let relayed = data(&mut smtp, "Subject: a question\r\n\r\nnot a report").await;
    assert!(relayed.text().starts_with("Ok: queued as"), "{relayed:?}");
    assert_eq!(command(&mut smtp, "QUIT").await.code, 221);

    let expect_summary = |server: &Sealpost| {
        let (code, text, stderr) = run_cli(
            &server.config_path(),
            &["tls-reports", "received", "--json"],
        );
        assert_eq!(code, Some(0), "{stderr}");
        let answer: serde_json::Value = serde_json::from_str(&text).expect("json");
        let rows = answer["received"].as_array().expect("rows").clone();
        let summary: Vec<(String, String, u64, u64, serde_json::Value)> = rows
            .iter()
            .map(|r| {
                (
                    r["tenant"].as_str().unwrap_or_default().to_string(),
                    r["organization"].as_str().unwrap_or_default().to_string(),
                    r["reports"].as_u64().unwrap_or_default(),
                    r["failed_sessions"].as_u64().unwrap_or_default(),
                    r["failures"].clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "alpha".into(),
                    "Sender-M".into(),
                    1,
                    4,
                    serde_json::json!({"dnssec-invalid": 4}),
                ),
                (
                    "alpha".into(),
                    "Sender-X".into(),
                    2,
                    6,
                    serde_json::json!({"certificate-expired": 1, "starttls-not-supported": 5})
                ),
                (
                    "alpha".into(),
                    "Sender-Y".into(),
                    1,
                    0,
                    serde_json::json!({})
                ),
                (
                    "beta".into(),
                    "Sender-X".into(),
                    1,
                    5,
                    serde_json::json!({"validation-failure": 5})
                ),
            ]
        );
        let (code, text, _) = run_cli(&server.config_path(), &["tls-reports", "received"]);
        assert_eq!(code, Some(0));
        assert!(
            text.contains("certificate-expired=1,starttls-not-supported=5"),
            "{text}"
        );
    };
    expect_summary(&server);
    // Durable: the same after a restart.
    server.stop();
    server.spawn();
    expect_summary(&server);
}

/// A report as RFC 8460 section 5.3 mails it: `multipart/report`, the
/// gzipped JSON in base64 lines.
fn report_mail(gzipped: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(gzipped);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "From: reports@sender.example\r\nTo: tlsrpt@a.test\r\nSubject: Report Domain: a.test\r\n\
         TLS-Report-Domain: a.test\r\nTLS-Report-Submitter: sender.example\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n boundary=\"=b1\"\r\n\r\n\
         --=b1\r\nContent-Type: text/plain\r\n\r\nThis is an aggregate TLS report.\r\n\
         --=b1\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"sender.example!a.test!1!2!m-1.json.gz\"\r\n\r\n\
         {}\r\n--=b1--",
        lines.join("\r\n")
    )
}
