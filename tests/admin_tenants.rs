//! Live changes to tenants through the admin API and the CLI, against the
//! real `sealpost serve` with `[server] tenants_dir`: a change is seen by
//! the next SMTP session and by the next delivery attempt of queued mail;
//! it is written to the tenant's file with its comments kept, validated
//! like the file (errors with field paths), recorded in the audit log with
//! the caller's uid; concurrent edits are serialized and a stale version is
//! refused with 409; a broken tenant file keeps its tenant's previous
//! policy at reload while the other tenants' changes apply.
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use sealpost::admin::client::{AdminClient, Answer};
use serde_json::Value;

use support::dns::TestDns;
use support::outbound::{deferred_events, delivered_event, dest_dns, dest_mx, submit, Mx, GATEWAY};
use support::sealpost::{dns_section, free_port, run_cli, Sealpost};
use support::smtp::{accept_all, command, read_reply};

const ACME: &str = "# acme's domains: kept by every change\n[[domains]]\nname = \"acme.test\"\ntenant = \"acme\"\n";
const BETA: &str = "[[tenants]]\nname = \"beta\"\n\n[[domains]]\nname = \"beta.test\"\ntenant = \"beta\"\n[domains.outbound.default]\nlevel = \"mandatory\"\n";

fn config(listen: u16, mx_port: u16, dns: &TestDns) -> String {
    format!(
        r#"
[server]
hostname = "{GATEWAY}"
data_dir = "data"
tenants_dir = "tenants.d"

[[listeners]]
address = "127.0.0.1:{listen}"

[delivery]
smtp_port = {mx_port}
first_retry = "1s"
max_retry_interval = "2s"
destination_backoff = "1s"
max_destination_backoff = "1s"

{dns}
[[tenants]]
name = "acme"
relay_sources = ["127.0.0.0/8"]
"#,
        dns = dns_section(&dns.settings()),
    )
}

struct Setup {
    sealpost: Sealpost,
    mx: Mx,
    _dns: TestDns,
}

async fn setup() -> Setup {
    let dns = dest_dns().await;
    let port = free_port();
    let mx = dest_mx(port, None, Arc::new(accept_all)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("tenants.d")).expect("mkdir");
    std::fs::write(dir.path().join("tenants.d/acme.toml"), ACME).expect("write");
    std::fs::write(dir.path().join("tenants.d/beta.toml"), BETA).expect("write");
    let sealpost = Sealpost::start_in(dir, |listen| config(listen, port, &dns));
    Setup {
        sealpost,
        mx,
        _dns: dns,
    }
}

fn socket(sealpost: &Sealpost) -> std::path::PathBuf {
    sealpost.path("data/admin.sock")
}

fn cli(sealpost: &Sealpost, args: &[&str]) -> (Option<i32>, String, String) {
    run_cli(&sealpost.config_path(), args)
}

fn ok(sealpost: &Sealpost, args: &[&str]) -> String {
    let (code, out, err) = cli(sealpost, args);
    assert_eq!(code, Some(0), "sealpost {args:?}: {out}{err}");
    out
}

fn ok_json(sealpost: &Sealpost, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&ok(sealpost, &all)).expect("JSON")
}

async fn call(socket: &Path, method: Method, path: &str, body: &str) -> Answer {
    AdminClient::new(socket, Duration::from_secs(30))
        .request(method, path, Some(body.as_bytes().to_vec()))
        .await
        .expect("the admin socket answers")
}

fn json(answer: &Answer) -> Value {
    serde_json::from_slice(&answer.body).expect("JSON")
}

/// MAIL and RCPT in a new plaintext session: the RCPT reply code.
async fn rcpt_code(sealpost: &Sealpost, from: &str, to: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(sealpost.smtp)
        .await
        .expect("connect");
    read_reply(&mut stream).await;
    command(&mut stream, "EHLO client.test").await;
    let mail = command(&mut stream, &format!("MAIL FROM:<{from}>")).await;
    assert_eq!(mail.code, 250, "{mail:?}");
    let rcpt = command(&mut stream, &format!("RCPT TO:<{to}>")).await;
    command(&mut stream, "QUIT").await;
    rcpt.code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_through_the_api_reaches_the_next_session_and_delivery_attempt() {
    let Setup {
        sealpost,
        mx,
        _dns: _keep,
    } = setup().await;
    // new.test is not managed yet: relaying from it is refused.
    assert_eq!(
        rcpt_code(&sealpost, "a@new.test", "one@dest.test").await,
        554
    );

    let out = ok(
        &sealpost,
        &["domains", "add", "new.test", "--tenant", "acme"],
    );
    assert!(out.contains("domains add: done in"), "{out}");
    // The next session sees it.
    assert_eq!(
        rcpt_code(&sealpost, "a@new.test", "one@dest.test").await,
        250
    );
    submit(sealpost.smtp, "a@new.test", "one@dest.test").await;
    let delivered = delivered_event(&sealpost, "one@dest.test").await;
    assert_eq!(delivered["tls"].as_str(), None, "{delivered}");

    // Mandatory TLS for dest.test: its MX has no STARTTLS, mail waits.
    ok(
        &sealpost,
        &[
            "peers",
            "add",
            "dest.test",
            "--domain",
            "new.test",
            "--direction",
            "outbound",
            "--level",
            "mandatory",
        ],
    );
    submit(sealpost.smtp, "a@new.test", "two@dest.test").await;
    let deferred = deferred_events(&sealpost, "two@dest.test", 1).await;
    let mails_before = mx.mails();
    assert!(
        deferred[0].to_string().contains("STARTTLS"),
        "{deferred:#?}"
    );

    // Back to opportunistic: the next attempt of the queued message delivers.
    ok(
        &sealpost,
        &[
            "peers",
            "edit",
            "dest.test",
            "--domain",
            "new.test",
            "--direction",
            "outbound",
            "--level",
            "opportunistic",
        ],
    );
    delivered_event(&sealpost, "two@dest.test").await;
    assert!(mx.mails() > mails_before);

    // The file: comments kept, the changes in it, loadable as a whole.
    let file = std::fs::read_to_string(sealpost.path("tenants.d/acme.toml")).expect("read");
    assert!(file.starts_with(ACME), "{file}");
    assert!(
        file.contains("name = \"new.test\"\ntenant = \"acme\""),
        "{file}"
    );
    assert!(
        file.contains("peer = \"dest.test\"\nlevel = \"opportunistic\""),
        "{file}"
    );
    let (code, out, err) = cli(&sealpost, &["config", "check"]);
    assert_eq!(code, Some(0), "{out}{err}");

    // The audit log: three changes by this user, with before and after.
    let audit = ok_json(&sealpost, &["audit", "--tenant", "acme"]);
    let records = audit["records"].as_array().expect("records");
    let changes: Vec<&str> = records
        .iter()
        .filter_map(|r| r["change"].as_str())
        .collect();
    assert_eq!(changes, ["domains add", "peers add", "peers edit"]);
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    assert!(
        records
            .iter()
            .all(|r| r["uid"].as_u64() == Some(u64::from(uid))),
        "{audit:#}"
    );
    assert!(records[0]["before"].is_null(), "{audit:#}");
    assert!(records[2]["before"]
        .as_str()
        .is_some_and(|b| b.contains("level = \"mandatory\"")));
    assert!(records[2]["after"]
        .as_str()
        .is_some_and(|a| a.contains("level = \"opportunistic\"")));
    let text = ok(&sealpost, &["audit"]);
    assert!(
        text.contains(&format!("uid={uid} tenant=acme peers edit new.test")),
        "{text}"
    );

    // Listing through the CLI.
    let peers = ok_json(
        &sealpost,
        &[
            "peers",
            "list",
            "--domain",
            "new.test",
            "--direction",
            "outbound",
        ],
    );
    assert_eq!(peers["peers"][0]["level"], "opportunistic");
    let tenant = ok_json(&sealpost, &["tenants", "acme"]);
    assert_eq!(
        tenant["domains"].as_array().map(Vec::len),
        Some(2),
        "{tenant:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_are_validated_like_the_file_and_stale_versions_refused() {
    let Setup {
        sealpost,
        _dns: _keep,
        ..
    } = setup().await;
    let socket = socket(&sealpost);
    let before = std::fs::read_to_string(sealpost.path("tenants.d/acme.toml")).expect("read");

    // A bad level: 422 with the file, line, field path and the same text
    // as `config check`; nothing written.
    let answer = call(
        &socket,
        Method::POST,
        "/domains/acme.test/peers/outbound",
        r#"{"peer": "bank.test", "level": "sometimes"}"#,
    )
    .await;
    assert_eq!(answer.status, 422, "{}", answer.error_text());
    let body = json(&answer);
    let error = &body["errors"][0];
    assert_eq!(
        error["field"], "domains[0].outbound.peers[0].level",
        "{body:#}"
    );
    assert!(error["file"]
        .as_str()
        .is_some_and(|f| f.ends_with("tenants.d/acme.toml")));
    assert_eq!(error["line"], 8, "{body:#}");
    assert!(error["text"]
        .as_str()
        .is_some_and(|t| t.contains("unknown security level `sometimes`")));
    let (code, _, err) = cli(
        &sealpost,
        &[
            "peers",
            "add",
            "bank.test",
            "--domain",
            "acme.test",
            "--direction",
            "outbound",
            "--level",
            "sometimes",
        ],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("(field domains[0].outbound.peers[0].level)"),
        "{err}"
    );

    // A domain another tenant's file holds: both places named.
    let answer = call(
        &socket,
        Method::POST,
        "/domains",
        r#"{"name": "acme.test", "tenant": "beta"}"#,
    )
    .await;
    assert_eq!(answer.status, 422, "{}", answer.error_text());
    let text = answer.error_text();
    assert!(
        text.contains("tenants.d/beta.toml:") && text.contains("tenants.d/acme.toml line 3"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(sealpost.path("tenants.d/acme.toml")).expect("read"),
        before
    );

    // Versions: an edit based on a stale one is refused, not lost.
    let version = ok_json(&sealpost, &["tenants", "acme"])["version"]
        .as_str()
        .expect("version")
        .to_owned();
    let first = call(
        &socket,
        Method::POST,
        "/domains/acme.test/disable",
        &format!(r#"{{"version": "{version}"}}"#),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.error_text());
    let second = call(
        &socket,
        Method::POST,
        "/domains/acme.test/enable",
        &format!(r#"{{"version": "{version}"}}"#),
    )
    .await;
    assert_eq!(second.status, 409, "{}", second.error_text());
    assert!(second
        .error_text()
        .contains(json(&first)["version"].as_str().expect("new version")));
    let (code, _, err) = cli(
        &sealpost,
        &["domains", "enable", "acme.test", "--if-version", &version],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("changed"), "{err}");

    // Concurrent edits of one tenant: serialized, none lost.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let socket = socket.clone();
            tokio::spawn(async move {
                let body = format!(r#"{{"peer": "p{i}.test", "level": "mandatory"}}"#);
                call(
                    &socket,
                    Method::POST,
                    "/domains/acme.test/peers/outbound",
                    &body,
                )
                .await
            })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        let answer = task.await.expect("task");
        assert_eq!(answer.status, 200, "{}", answer.error_text());
        versions.push(json(&answer)["generation"].as_u64().expect("generation"));
    }
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 8, "each change is its own generation");
    let peers = json(
        &call(
            &socket,
            Method::GET,
            "/domains/acme.test/peers/outbound",
            "",
        )
        .await,
    );
    assert_eq!(
        peers["peers"].as_array().map(Vec::len),
        Some(8),
        "{peers:#}"
    );
    let file = std::fs::read_to_string(sealpost.path("tenants.d/acme.toml")).expect("read");
    assert_eq!(
        (0..8)
            .filter(|i| file.contains(&format!("\"p{i}.test\"")))
            .count(),
        8,
        "{file}"
    );
    assert!(file.starts_with(ACME), "{file}");
    let audit = json(&call(&socket, Method::GET, "/audit?tenant=acme&limit=100", "").await);
    assert_eq!(
        audit["records"].as_array().map(Vec::len),
        Some(9),
        "{audit:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_tenant_file_keeps_its_previous_policy_at_reload() {
    let Setup {
        sealpost,
        _dns: _keep,
        ..
    } = setup().await;
    // beta's file broken, acme's changed well, a new tenant's file added.
    std::fs::write(
        sealpost.path("tenants.d/beta.toml"),
        BETA.replace("\"mandatory\"", "\"sometimes\""),
    )
    .expect("write");
    std::fs::write(
        sealpost.path("tenants.d/acme.toml"),
        format!("{ACME}enabled = false\n"),
    )
    .expect("write");
    std::fs::write(
        sealpost.path("tenants.d/gamma.toml"),
        "[[domains]]\nname = \"gamma.test\"\ntenant = \"gamma\"\n",
    )
    .expect("write");
    let (code, out, err) = cli(&sealpost, &["reload"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("configuration reloaded"), "{out}{err}");
    assert!(
        err.contains("tenants.d/beta.toml:8:9: unknown security level `sometimes`"),
        "{err}"
    );
    assert!(
        err.contains("previous version of those tenants stays in force"),
        "{err}"
    );
    let socket = socket(&sealpost);
    let beta = json(&call(&socket, Method::GET, "/domains/beta.test", "").await);
    assert_eq!(
        beta["outbound"]["default"]["level"], "mandatory",
        "{beta:#}"
    );
    let acme = json(&call(&socket, Method::GET, "/domains/acme.test", "").await);
    assert_eq!(acme["enabled"], false, "{acme:#}");
    assert_eq!(
        call(&socket, Method::GET, "/domains/gamma.test", "")
            .await
            .status,
        200
    );
    // A change through the API to the broken tenant is refused: the file
    // on disk is not the one in force.
    let answer = call(&socket, Method::POST, "/domains/beta.test/disable", "").await;
    assert_eq!(answer.status, 409, "{}", answer.error_text());
    assert!(
        answer.error_text().contains("changed on disk"),
        "{}",
        answer.error_text()
    );
    // Fixed, the next reload applies it.
    std::fs::write(
        sealpost.path("tenants.d/beta.toml"),
        BETA.replace("\"mandatory\"", "\"mandatory-dane\""),
    )
    .expect("write");
    ok(&sealpost, &["reload"]);
    let beta = json(&call(&socket, Method::GET, "/domains/beta.test", "").await);
    assert_eq!(
        beta["outbound"]["default"]["level"], "mandatory-dane",
        "{beta:#}"
    );
}
