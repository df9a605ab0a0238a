//! The admin API and the queue CLI against the real `sealpost serve` with
//! its delivery engine running, every peer of the engine in the test
//! process: mail submitted over SMTP and deferred by the engine (inbound
//! mail by a receiver on the domain's route that refuses with 451,
//! outbound mail by a SERVFAIL from the test DNS server), plus one message
//! already deferred with TLS details in its attempt log (written into the
//! queue before the server starts). Then every endpoint and every CLI
//! command, with released and retried mail deferred again and a bounce's
//! DSN queued; the socket file's permissions and exclusivity; reload with
//! a bad and then a good configuration; metrics parsed line by line; bad
//! input answered with 4xx JSON errors.
#[path = "../support/mod.rs"]
mod support;

mod cli;
mod every_endpoint;
mod reload;
mod socket;

use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hyper::Method;
use sealpost::admin::client::{AdminClient, Answer};
use sealpost::smtp::{Reply, Verdict};
use sealpost_queue::{
    AcceptedPolicy, Attempt, Authentication, NewMessage, NewRecipient, Outcome, Queue,
    QueueOptions, Reason, RetryPolicy,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::dns::TestDns;
use support::sealpost::{
    dns_section, free_port, run_cli, run_to_exit, server_head, submit, Sealpost, NO_DNS,
};
use support::smtp::{Ask, TestSmtpServer};

/// The reason recorded for the message written before the server starts,
/// as a record from before typed reasons held it (a plain string).
const GREYLISTED: &str = "451 4.7.1 greylisted, try again later";
/// What the engine records when the refusing receiver answers RCPT.
const REFUSED_BY_RECEIVER: &str =
    "127.0.0.1 [127.0.0.1] said: 451 4.7.1 greylisted, try again later";
/// What the engine records when the MX lookup fails (SERVFAIL).
const FARAWAY_DNS_FAILED: &str = "MX lookup for faraway.test failed";
const REFUSING_DNS_FAILED: &str = "MX lookup for refusing.test failed";
/// How long the engine gets to attempt (and defer) mail.
const WAIT: Duration = Duration::from_secs(20);

/// The test configuration: `[dns]` as given, `open.example` routes to
/// `route` (when given); `admin` is added to `[admin]`, `extra` at the end.
fn config(
    port: u16,
    socket: &Path,
    dns: &str,
    route: Option<SocketAddr>,
    admin: &str,
    extra: &str,
) -> String {
    let route = route
        .map(|addr| format!("route = {{ hosts = [\"{addr}\"] }}\n"))
        .unwrap_or_default();
    format!(
        r#"
{head}
[admin]
socket = "{}"
{admin}
{dns}
[[domains]]
name = "open.example"
tenant = "acme"
{route}
[[domains]]
name = "strict.example"
tenant = "bank"

[[tenants]]
name = "acme"
relay_sources = ["127.0.0.0/8"]
max_in_flight = 3
{extra}"#,
        socket.display(),
        head = server_head(port)
    )
}

/// The peers of the engine, all in the test process: a DNS server whose
/// MX lookups of faraway.test and refusing.test answer SERVFAIL (a
/// temporary failure, at once), and a receiving SMTP server on the route
/// of open.example that refuses every recipient for now (451).
struct Peers {
    dns: TestDns,
    receiver: TestSmtpServer,
}

impl Peers {
    async fn start() -> Peers {
        let dns = TestDns::builder()
            .mx("faraway.test", 10, "mx.faraway.test")
            .servfail("faraway.test")
            .mx("refusing.test", 10, "mx1.refusing.test")
            .servfail("refusing.test")
            .start()
            .await;
        let receiver = TestSmtpServer::start(
            "downstream.open.example",
            None,
            Arc::new(|ask: Ask<'_>| match ask {
                Ask::Rcpt(_) => {
                    Verdict::Reject(Reply::new(451, (4, 7, 1), "greylisted, try again later"))
                }
                _ => Verdict::Accept,
            }),
        )
        .await;
        Peers { dns, receiver }
    }

    /// [`config`] with these peers.
    fn config(&self, port: u16, socket: &Path, admin: &str, extra: &str) -> String {
        let dns = dns_section(&self.dns.settings());
        config(port, socket, &dns, Some(self.receiver.addr), admin, extra)
    }
}

/// Writes one outbound message of tenant `acme` into the queue at
/// `data/queue` and records a deferred attempt for it, as the delivery
/// engine does when the receiver refuses with a temporary error.
fn deferred_message(dir: &Path) -> String {
    let queue = Queue::open(dir.join("data/queue"), QueueOptions::default()).expect("queue");
    let id = queue
        .enqueue(NewMessage {
            tenant: "acme".into(),
            mail_from: "carol@open.example".into(),
            mail_params: Vec::new(),
            recipients: vec![NewRecipient {
                address: "dave@refusing.test".into(),
                destination: "refusing.test".into(),
                params: Vec::new(),
            }],
            policy: AcceptedPolicy {
                level: "opportunistic".into(),
                min_tls: "1.2".into(),
                explanation: "outbound default for open.example".into(),
            },
            body: b"Subject: deferred\r\n\r\nhello\r\n".to_vec(),
            arrived_at: SystemTime::now() - Duration::from_secs(7200),
        })
        .expect("enqueue")
        .wait()
        .expect("durable");
    let lease = queue
        .take_due_any(SystemTime::now(), 10)
        .expect("lease")
        .pop()
        .expect("the message is due");
    queue
        .record_attempt(
            lease,
            &[(
                0,
                Outcome::Deferred {
                    reason: Reason::Legacy {
                        text: GREYLISTED.into(),
                    },
                },
            )],
            Attempt {
                at: SystemTime::now(),
                mx_host: Some("mx1.refusing.test".into()),
                ip: Some("192.0.2.25".into()),
                tls_version: Some("TLSv1.3".into()),
                cipher: Some("TLS13_AES_256_GCM_SHA384".into()),
                authentication: Authentication::Dane,
                reply_or_reason: Reason::Legacy {
                    text: GREYLISTED.into(),
                },
            },
            &RetryPolicy::default(),
        )
        .expect("record the attempt");
    id.to_string()
}

fn client(socket: &Path) -> AdminClient {
    AdminClient::new(socket, Duration::from_secs(30))
}

async fn call(client: &AdminClient, method: Method, path: &str, body: Option<&str>) -> Answer {
    client
        .request(method, path, body.map(|b| b.as_bytes().to_vec()))
        .await
        .expect("the admin socket answers")
}

/// A successful JSON answer.
async fn get(client: &AdminClient, path: &str) -> Value {
    let answer = call(client, Method::GET, path, None).await;
    assert_eq!(answer.status, 200, "GET {path}: {}", answer.error_text());
    serde_json::from_slice(&answer.body).expect("JSON")
}

async fn post(client: &AdminClient, path: &str, body: &str) -> Value {
    let answer = call(client, Method::POST, path, Some(body)).await;
    assert_eq!(answer.status, 200, "POST {path}: {}", answer.error_text());
    serde_json::from_slice(&answer.body).expect("JSON")
}

/// A 4xx answer with a JSON `error`; its status.
async fn refused(client: &AdminClient, method: Method, path: &str, body: Option<&str>) -> u16 {
    let answer = call(client, method.clone(), path, body).await;
    assert!(
        (400..500).contains(&answer.status),
        "{method} {path}: {} {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    let value: Value = serde_json::from_slice(&answer.body).expect("a JSON error body");
    assert!(
        value["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{value}"
    );
    answer.status
}

fn ids(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_string())
        .collect()
}

/// Every line of a Prometheus text exposition: a comment, or
/// `name{labels} value` with a valid name, well-formed labels and a number.
fn assert_prometheus_text(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("a number in {line}")),
        };
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "metric name in {line}"
        );
        if name_end < series.len() {
            let labels = series[name_end..]
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("braces in {line}"));
            // label="value" pairs, values with \\, \" and \n escapes.
            let mut rest = labels;
            while !rest.is_empty() {
                let (label, after) = rest.split_once("=\"").expect("label=\"");
                assert!(
                    label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "label name in {line}"
                );
                let mut chars = after.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => {
                            end = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                let end = end.unwrap_or_else(|| panic!("closing quote in {line}"));
                rest = after[end + 1..]
                    .strip_prefix(',')
                    .unwrap_or(&after[end + 1..]);
            }
        }
        samples.push((series.to_string(), value));
    }
    samples
}

fn sample(samples: &[(String, f64)], series: &str) -> Option<f64> {
    samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v)
}

/// Polls `GET path` every 100 ms until `done` holds of the answer (at most
/// [`WAIT`]); that answer.
async fn wait_get(c: &AdminClient, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = get(c, path).await;
        if done(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "GET {path}: still {value}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Attempts recorded for a message (`GET /queue/messages/{id}`), over all
/// its recipients.
fn attempts(message: &Value) -> usize {
    message["recipients"]
        .as_array()
        .expect("recipients")
        .iter()
        .map(|r| r["attempts"].as_array().map_or(0, Vec::len))
        .sum()
}

fn all_deferred(message: &Value) -> bool {
    message["recipients"]
        .as_array()
        .expect("recipients")
        .iter()
        .all(|r| r["state"] == "deferred")
}

/// Waits until the engine has attempted message `id` again (more than
/// `before` attempts) and deferred it again; the message.
async fn deferred_again(c: &AdminClient, id: &str, before: usize) -> Value {
    wait_get(c, &format!("/queue/messages/{id}"), |m| {
        attempts(m) > before && all_deferred(m)
    })
    .await
}

/// Waits until `GET path` answers 404 (a message gone from the queue).
async fn wait_gone(c: &AdminClient, path: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = call(c, Method::GET, path, None).await;
        if answer.status == 404 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "GET {path}: still {}",
            answer.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After a bounce of a message from carol@open.example: waits until its
/// DSN is queued (to carol, by the route of open.example) and deferred by
/// the refusing receiver, and the bounced message is gone; the DSN's id.
async fn dsn_deferred(c: &AdminClient, bounced: &str) -> String {
    let page = wait_get(c, "/queue/messages?recipient=carol%40open.example", |p| {
        p["messages"].as_array().is_some_and(|m| {
            m.len() == 1
                && m[0]["recipients"][0]["state"] == "deferred"
                && m[0]["recipients"][0]["attempts"].as_u64() >= Some(1)
        })
    })
    .await;
    let dsn = &page["messages"][0];
    assert_eq!(dsn["mail_from"], "", "{dsn}");
    assert_eq!(dsn["tenant"], "acme", "{dsn}");
    assert_eq!(
        dsn["recipients"][0]["destination"], "inbound:open.example",
        "{dsn}"
    );
    assert_eq!(
        dsn["recipients"][0]["last_reason"], REFUSED_BY_RECEIVER,
        "{dsn}"
    );
    wait_gone(c, &format!("/queue/messages/{bounced}")).await;
    dsn["id"].as_str().expect("id").to_string()
}

struct Setup {
    sealpost: Sealpost,
    socket: PathBuf,
    peers: Peers,
    deferred: String,
    inbound: String,
    outbound: String,
}

/// A running server with three deferred messages: `deferred` (written
/// before the start, refused with TLS details), `inbound` (to
/// bob@open.example, refused by the receiver on the domain's route) and
/// `outbound` (to erin@faraway.test, whose MX lookup fails).
async fn setup(admin: &str) -> Setup {
    let peers = Peers::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("run/admin.sock");
    let deferred = deferred_message(dir.path());
    let sealpost = Sealpost::start_in(dir, |port| peers.config(port, &socket, admin, ""));
    let inbound = submit(
        sealpost.smtp,
        "alice@sender.test",
        &["bob@open.example"],
        b"Subject: inbound\r\n\r\nhello\r\n",
    )
    .await
    .expect("inbound mail accepted");
    let outbound = submit(
        sealpost.smtp,
        "carol@open.example",
        &["erin@faraway.test"],
        b"Subject: outbound\r\n\r\nhello\r\n",
    )
    .await
    .expect("outbound mail accepted");
    // The engine attempts both at once and defers them (the first retry
    // is 5 minutes away, so they stay deferred).
    wait_get(&client(&socket), "/queue/summary", |s| {
        s["recipients_by_state"]["deferred"] == 3
    })
    .await;
    Setup {
        sealpost,
        socket,
        peers,
        deferred,
        inbound,
        outbound,
    }
}

/// `GET /metrics`, every line checked; its samples.
async fn scrape(c: &AdminClient) -> Vec<(String, f64)> {
    let answer = call(c, Method::GET, "/metrics", None).await;
    assert_eq!(answer.status, 200);
    assert_prometheus_text(&String::from_utf8(answer.body).expect("UTF-8"))
}

/// Raw bytes to the admin socket; the raw response (until the server
/// closes the connection, or 10 seconds pass).
async fn raw_request(socket: &Path, bytes: &[u8]) -> String {
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    // The server may answer and close before reading everything.
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One request over TCP (connection closed after it); the raw response.
async fn tcp_request(port: u16, request_line: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the metrics listener");
    tcp.write_all(format!("{request_line}\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out))
        .await
        .expect("an answer in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// Exit 0; standard output.
fn ok(config: &Path, args: &[&str]) -> String {
    let (code, stdout, stderr) = run_cli(config, args);
    assert_eq!(code, Some(0), "{args:?}: {stdout}{stderr}");
    stdout
}

fn ok_json(config: &Path, args: &[&str]) -> Value {
    let stdout = ok(config, args);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}
