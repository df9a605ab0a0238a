//! The admin API and the queue CLI against the real `sealpost serve`: a
//! queue with mail submitted over SMTP plus one message already deferred
//! by a refusing receiver (written into the queue before the server
//! starts, as the delivery engine records it), then every endpoint, every
//! CLI command, the socket file's permissions and exclusivity, reload with
//! a bad and then a good configuration, metrics parsed line by line, and
//! bad input answered with 4xx JSON errors.
mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use hyper::Method;
use sealpost::admin::client::{AdminClient, Answer};
use sealpost_queue::{
    AcceptedPolicy, Attempt, Authentication, NewMessage, NewRecipient, Outcome, Queue,
    QueueOptions, RetryPolicy,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::daemon::{self, submit, Daemon, BIN};

const GREYLISTED: &str = "451 4.7.1 greylisted, try again later";

/// The test configuration; `admin` is added to `[admin]`, `extra` at the end.
fn config(port: u16, socket: &Path, admin: &str, extra: &str) -> String {
    format!(
        r#"
[server]
hostname = "mx.sealpost.test"
data_dir = "data"

[[listeners]]
address = "127.0.0.1:{port}"

[admin]
socket = "{}"
{admin}
[[domains]]
name = "open.example"
tenant = "acme"

[[domains]]
name = "strict.example"
tenant = "bank"

[[tenants]]
name = "acme"
relay_sources = ["127.0.0.0/8"]
{extra}"#,
        socket.display()
    )
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
                    reason: GREYLISTED.into(),
                },
            )],
            Attempt {
                at: SystemTime::now(),
                mx_host: Some("mx1.refusing.test".into()),
                ip: Some("192.0.2.25".into()),
                tls_version: Some("TLSv1.3".into()),
                cipher: Some("TLS13_AES_256_GCM_SHA384".into()),
                authentication: Authentication::Dane,
                reply_or_reason: GREYLISTED.into(),
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

struct Setup {
    dir: tempfile::TempDir,
    socket: PathBuf,
    daemon: Daemon,
    deferred: String,
    inbound: String,
    outbound: String,
}

async fn setup(admin: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("run/admin.sock");
    let deferred = deferred_message(dir.path());
    let daemon = Daemon::start(dir.path(), "sealpost.toml", |port| {
        config(port, &socket, admin, "")
    });
    let inbound = submit(
        daemon.addr,
        "alice@sender.test",
        &["bob@open.example"],
        "inbound",
    )
    .await;
    let outbound = submit(
        daemon.addr,
        "carol@open.example",
        &["erin@faraway.test"],
        "outbound",
    )
    .await;
    Setup {
        dir,
        socket,
        daemon,
        deferred,
        inbound,
        outbound,
    }
}

#[tokio::test]
async fn the_admin_api_answers_every_endpoint() {
    let metrics_port = daemon::free_port();
    let mut s = setup(&format!("metrics_listen = \"127.0.0.1:{metrics_port}\"")).await;
    let c = client(&s.socket);

    // The socket file: private to the server's user.
    let mode = std::fs::metadata(&s.socket)
        .expect("the socket exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Summary.
    let summary = get(&c, "/queue/summary").await;
    assert_eq!(summary["messages"], 3, "{summary}");
    assert_eq!(summary["recipients_by_state"]["queued"], 2, "{summary}");
    assert_eq!(summary["recipients_by_state"]["deferred"], 1, "{summary}");
    assert_eq!(summary["messages_by_tenant"]["acme"], 3, "{summary}");
    assert_eq!(
        summary["recipients_by_destination"]["refusing.test"], 1,
        "{summary}"
    );
    assert_eq!(summary["oldest"]["id"], s.deferred.as_str(), "{summary}");
    assert!(summary["oldest"]["age_seconds"].as_u64() >= Some(7000));
    assert_eq!(summary["top_defer_reasons"][0]["reason"], GREYLISTED);
    assert_eq!(summary["top_defer_reasons"][0]["recipients"], 1);
    assert_eq!(summary["defer_scan_complete"], true);

    // Listing, filters and cursor pages.
    let all = get(&c, "/queue/messages").await;
    assert_eq!(
        ids(&all),
        vec![s.deferred.clone(), s.inbound.clone(), s.outbound.clone()]
    );
    assert!(all["next_cursor"].is_null());
    let mut walked = Vec::new();
    let mut path = "/queue/messages?limit=1".to_string();
    for _ in 0..10 {
        let page = get(&c, &path).await;
        walked.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => path = format!("/queue/messages?limit=1&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(walked, ids(&all));
    let filters = [
        ("tenant=acme", vec![&s.deferred, &s.inbound, &s.outbound]),
        ("tenant=bank", vec![]),
        ("domain=open.example", vec![&s.inbound]),
        ("recipient=erin%40faraway.test", vec![&s.outbound]),
        (
            "sender=carol%40open.example",
            vec![&s.deferred, &s.outbound],
        ),
        ("state=deferred", vec![&s.deferred]),
        ("state=queued", vec![&s.inbound, &s.outbound]),
        ("reason=GREYLISTED", vec![&s.deferred]),
        ("min_age=1h", vec![&s.deferred]),
        ("min_age=3h", vec![]),
    ];
    for (query, want) in filters {
        let page = get(&c, &format!("/queue/messages?{query}")).await;
        let want: Vec<String> = want.into_iter().cloned().collect();
        assert_eq!(ids(&page), want, "{query}");
    }
    let listed = &all["messages"][0];
    assert_eq!(listed["recipients"][0]["state"], "deferred");
    assert_eq!(listed["recipients"][0]["last_reason"], GREYLISTED);

    // One message: envelope, recipient states, attempts with TLS details,
    // the accepted policy and the effective one.
    let shown = get(&c, &format!("/queue/messages/{}", s.deferred)).await;
    assert_eq!(shown["mail_from"], "carol@open.example");
    assert_eq!(shown["tenant"], "acme");
    let rcpt = &shown["recipients"][0];
    assert_eq!(rcpt["address"], "dave@refusing.test");
    assert_eq!(rcpt["state"], "deferred");
    assert!(rcpt["next_attempt_ms"].as_u64().is_some());
    let attempt = &rcpt["attempts"][0];
    assert_eq!(attempt["mx_host"], "mx1.refusing.test");
    assert_eq!(attempt["tls_version"], "TLSv1.3");
    assert_eq!(attempt["cipher"], "TLS13_AES_256_GCM_SHA384");
    assert_eq!(attempt["authentication"], "dane");
    assert_eq!(attempt["result"], "deferred");
    assert_eq!(attempt["reason"], GREYLISTED);
    assert_eq!(shown["accepted_policy"]["level"], "opportunistic");
    assert_eq!(
        shown["accepted_policy"]["explanation"],
        "outbound default for open.example"
    );
    assert_eq!(shown["effective_policy"]["direction"], "outbound");
    assert_eq!(shown["effective_policy"]["managed_domain"], "open.example");
    let inbound = get(&c, &format!("/queue/messages/{}", s.inbound)).await;
    assert_eq!(
        inbound["recipients"][0]["destination"],
        "inbound:open.example"
    );
    assert!(inbound["effective_policy"].is_null());
    assert!(inbound["accepted_policy"]["explanation"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));

    // Actions on one message.
    let one = |id: &str, action: &str| format!("/queue/messages/{id}/{action}");
    assert_eq!(post(&c, &one(&s.inbound, "hold"), "").await["touched"], 1);
    assert_eq!(post(&c, &one(&s.inbound, "hold"), "").await["touched"], 0);
    let held = get(&c, "/queue/messages?state=held").await;
    assert_eq!(ids(&held), vec![s.inbound.clone()]);
    assert_eq!(
        post(&c, &one(&s.inbound, "release"), "").await["touched"],
        1
    );
    assert_eq!(post(&c, &one(&s.deferred, "retry"), "").await["touched"], 1);
    let bounced = post(
        &c,
        &one(&s.outbound, "bounce"),
        r#"{"bounce_reason": "cancelled by the customer"}"#,
    )
    .await;
    assert_eq!(bounced["touched"], 1);
    let failed = get(&c, &format!("/queue/messages/{}", s.outbound)).await;
    assert_eq!(failed["recipients"][0]["state"], "failed");

    // Actions on a filter; one that matches everything needs confirm_all.
    let held = post(&c, "/queue/actions/hold", r#"{"tenant": "acme"}"#).await;
    assert_eq!(held["touched"], 2, "the failed one has nothing to hold");
    let released = post(&c, "/queue/actions/release", r#"{"state": "held"}"#).await;
    assert_eq!(released["touched"], 2);
    assert_eq!(
        refused(&c, Method::POST, "/queue/actions/delete", Some("{}")).await,
        400
    );
    assert_eq!(
        refused(&c, Method::POST, "/queue/actions/delete", None).await,
        400
    );
    let deleted = post(&c, "/queue/actions/delete", r#"{"domain": "open.example"}"#).await;
    assert_eq!(deleted["touched"], 1);
    assert_eq!(
        ids(&get(&c, "/queue/messages").await),
        vec![s.deferred.clone(), s.outbound.clone()]
    );
    assert_eq!(
        post(&c, &one(&s.outbound, "delete"), "").await["touched"],
        1
    );
    assert_eq!(
        ids(&get(&c, "/queue/messages").await),
        vec![s.deferred.clone()]
    );

    // Destinations: none until the delivery engine runs; queued counts.
    let destinations = get(&c, "/destinations").await;
    assert_eq!(destinations["destinations"], Value::Array(Vec::new()));
    assert_eq!(destinations["queued_recipients"]["refusing.test"], 1);
    assert_eq!(
        refused(&c, Method::POST, "/destinations/refusing.test/flush", None).await,
        404
    );

    // Tenants: domains from the configuration, counters from the metrics.
    let tenants = get(&c, "/tenants").await;
    let list = tenants["tenants"].as_array().expect("tenants");
    let acme = list.iter().find(|t| t["name"] == "acme").expect("acme");
    assert_eq!(acme["domains"][0]["name"], "open.example");
    assert_eq!(acme["received"], 2);
    assert_eq!(acme["queued_messages"], 1);
    let bank = list.iter().find(|t| t["name"] == "bank").expect("bank");
    assert_eq!(bank["domains"][0]["name"], "strict.example");
    assert_eq!(bank["received"], 0);

    // Policy explain: the same answer as the CLI.
    let explained = get(
        &c,
        "/policy/explain?from=carol%40open.example&to=x%40gmail.com",
    )
    .await;
    let cli = Command::new(BIN)
        .args([
            "--config",
            s.daemon.config.to_str().expect("utf-8"),
            "policy",
            "explain",
            "--from",
            "carol@open.example",
            "--to",
            "x@gmail.com",
            "--json",
        ])
        .output()
        .expect("sealpost runs");
    let cli: Value = serde_json::from_slice(&cli.stdout).expect("CLI JSON");
    assert_eq!(explained, cli);
    assert_eq!(
        refused(&c, Method::GET, "/policy/explain?from=a%40b.example", None).await,
        400
    );
    assert_eq!(
        refused(
            &c,
            Method::GET,
            "/policy/explain?from=a%40open.example&to=b%40c.example&direction=sideways",
            None
        )
        .await,
        400
    );

    // Metrics: on the socket and on the TCP listener, every line parses.
    let answer = call(&c, Method::GET, "/metrics", None).await;
    assert_eq!(answer.status, 200);
    let text = String::from_utf8(answer.body).expect("UTF-8");
    let samples = assert_prometheus_text(&text);
    assert_eq!(
        sample(
            &samples,
            "sealpost_messages_received_total{tenant=\"acme\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&samples, "sealpost_queue_recipients{state=\"deferred\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&samples, "sealpost_queue_recipients{state=\"failed\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &samples,
            "sealpost_delivery_latency_seconds_bucket{le=\"+Inf\"}"
        ),
        Some(0.0)
    );
    assert_eq!(sample(&samples, "sealpost_config_generation"), Some(1.0));
    let tcp = tcp_request(metrics_port, "GET /metrics HTTP/1.1").await;
    assert!(tcp.starts_with("HTTP/1.1 200"), "{tcp}");
    let body = tcp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    assert_prometheus_text(body);
    assert!(body.contains("sealpost_messages_received_total{tenant=\"acme\"} 2"));
    let tcp = tcp_request(metrics_port, "POST /metrics HTTP/1.1").await;
    assert!(tcp.starts_with("HTTP/1.1 405"), "{tcp}");
    let tcp = tcp_request(metrics_port, "GET /queue/summary HTTP/1.1").await;
    assert!(tcp.starts_with("HTTP/1.1 404"), "{tcp}");

    // Bad input: 4xx with a JSON error, and the server keeps answering.
    let unknown = "00000000000000ff";
    let bad = [
        (
            Method::GET,
            "/queue/messages/not-an-id".to_string(),
            None,
            400,
        ),
        (Method::GET, format!("/queue/messages/{unknown}"), None, 404),
        (Method::POST, one(unknown, "hold"), None, 404),
        (Method::POST, one(&s.deferred, "explode"), None, 404),
        (
            Method::POST,
            one(&s.deferred, "hold"),
            Some("{not json"),
            400,
        ),
        (
            Method::POST,
            one(&s.deferred, "hold"),
            Some(r#"{"bounce_reason": "x"}"#),
            400,
        ),
        (Method::GET, "/queue/messages?state=lost".into(), None, 400),
        (Method::GET, "/queue/messages?colour=red".into(), None, 400),
        (
            Method::GET,
            "/queue/messages?min_age=soon".into(),
            None,
            400,
        ),
        (Method::GET, "/queue/messages?limit=0".into(), None, 400),
        (Method::GET, "/queue/messages?cursor=zz".into(), None, 400),
        (
            Method::GET,
            "/queue/messages?recipient=a%40b.example&domain=b.example".into(),
            None,
            400,
        ),
        (Method::GET, "/queue/messages?tenant=%zz".into(), None, 400),
        (
            Method::POST,
            "/queue/actions/hold".into(),
            Some("[1, 2"),
            400,
        ),
        (
            Method::POST,
            "/queue/actions/hold".into(),
            Some(r#"{"tenant": "acme", "colour": "red"}"#),
            400,
        ),
        (
            Method::POST,
            "/queue/actions/hold".into(),
            Some(r#"{"state": "lost"}"#),
            400,
        ),
        (
            Method::POST,
            "/queue/actions/hold".into(),
            Some(r#"{"confirm_all": "yes"}"#),
            400,
        ),
        (Method::GET, "/nowhere".into(), None, 404),
        (Method::DELETE, "/queue/summary".into(), None, 405),
        (Method::GET, "/reload".into(), None, 405),
    ];
    for (method, path, body, status) in bad {
        assert_eq!(
            refused(&c, method.clone(), &path, body).await,
            status,
            "{method} {path} {body:?}"
        );
    }
    let huge = format!("{{\"tenant\": \"{}\"}}", "a".repeat(100_000));
    assert_eq!(
        refused(&c, Method::POST, "/queue/actions/hold", Some(&huge)).await,
        413
    );

    // The same cap without a Content-Length (chunked), and garbage instead
    // of HTTP: refused, the server carries on.
    let mut chunked =
        b"POST /queue/actions/hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(format!("{:x}\r\n", 30_000).as_bytes());
        chunked.extend(std::iter::repeat_n(b' ', 30_000));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_request(&s.socket, &chunked).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"error\""), "{answer}");
    let answer = raw_request(&s.socket, b"\x16\x03\x01 not http at all\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    // A client that sends half a request and stalls does not block others.
    let mut stalled = tokio::net::UnixStream::connect(&s.socket)
        .await
        .expect("connect");
    stalled
        .write_all(b"GET /queue/summary HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut stalled_body = tokio::net::UnixStream::connect(&s.socket)
        .await
        .expect("connect");
    stalled_body
        .write_all(
            b"POST /queue/actions/hold HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ten",
        )
        .await
        .expect("write");
    assert_eq!(get(&c, "/queue/summary").await["messages"], 1);
    drop(stalled);
    drop(stalled_body);

    // SIGTERM: the socket file goes away with the server.
    s.daemon.stop();
    assert!(!s.socket.exists(), "the socket file is removed at shutdown");
    drop(s.dir);
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

#[tokio::test]
async fn reload_refuses_a_bad_configuration_and_keeps_the_one_in_force() {
    let s = setup("").await;
    let c = client(&s.socket);
    let explain = "/policy/explain?from=x%40peer.test&to=y%40new.example";
    let before = get(&c, explain).await;
    assert_eq!(before["resolution"]["tenant"], Value::Null, "{before}");

    // A bad file: 422 with every error, the old configuration stays.
    std::fs::write(
        &s.daemon.config,
        "[[domains]]\nname = \"new.example\"\ntenant = \"acme\"\ninbound.default = { level = \"sometimes\" }\n",
    )
    .expect("write");
    let answer = call(&c, Method::POST, "/reload", None).await;
    assert_eq!(answer.status, 422, "{}", answer.error_text());
    let body: Value = serde_json::from_slice(&answer.body).expect("JSON");
    let errors = body["errors"].as_array().expect("errors");
    assert!(
        errors.iter().any(|e| e
            .as_str()
            .is_some_and(|e| e.contains(":4:") && e.contains("sometimes"))),
        "{body}"
    );
    assert_eq!(get(&c, explain).await, before);
    let metrics = call(&c, Method::GET, "/metrics", None).await;
    assert!(String::from_utf8_lossy(&metrics.body).contains("sealpost_config_generation 1\n"));

    // A good one: 200 with the report, the new domain is in force.
    let socket = s.socket.clone();
    let port = s.daemon.addr.port();
    std::fs::write(
        &s.daemon.config,
        config(
            port,
            &socket,
            "",
            "\n[[domains]]\nname = \"new.example\"\ntenant = \"newco\"\n",
        ),
    )
    .expect("write");
    let report = post(&c, "/reload", "").await;
    assert_eq!(report["generation"], 2, "{report}");
    assert_eq!(report["managed_domains"], 3);
    let after = get(&c, explain).await;
    assert_eq!(after["resolution"]["tenant"], "newco", "{after}");
    let tenants = get(&c, "/tenants").await;
    assert!(tenants["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .any(|t| t["name"] == "newco" && t["domains"][0]["name"] == "new.example"));
}

#[tokio::test]
async fn the_socket_is_exclusive_and_a_stale_file_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("admin.sock");
    let other = tempfile::tempdir().expect("tempdir");
    let mut first = Daemon::start(dir.path(), "a.toml", |port| config(port, &socket, "", ""));
    assert_eq!(get(&client(&socket), "/queue/summary").await["messages"], 0);

    // A second server on the same socket (its own data directory) refuses
    // to start and leaves the first one's socket alone.
    let second = other.path().join("b.toml");
    std::fs::write(&second, config(daemon::free_port(), &socket, "", "")).expect("write");
    let (code, stderr) = daemon::wait_for_exit(daemon::spawn(&second, Stdio::piped()));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
    assert_eq!(get(&client(&socket), "/queue/summary").await["messages"], 0);

    // The first crashes: its socket file stays behind, stale; the next
    // server replaces it, here for the members of a group (our own).
    first.crash();
    assert!(socket.exists());
    let gid = std::fs::metadata(other.path()).expect("stat").gid();
    let _third = Daemon::start(other.path(), "c.toml", |port| {
        config(port, &socket, &format!("group = \"{gid}\""), "")
    });
    assert_eq!(get(&client(&socket), "/queue/summary").await["messages"], 0);
    let meta = std::fs::metadata(&socket).expect("stat");
    assert_eq!(
        (meta.permissions().mode() & 0o777, meta.gid()),
        (0o660, gid)
    );

    // A path that is not a socket is never replaced.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").expect("write");
    let fourth = dir.path().join("d.toml");
    std::fs::write(&fourth, config(daemon::free_port(), &file, "", "")).expect("write");
    let (code, stderr) = daemon::wait_for_exit(daemon::spawn(&fourth, Stdio::piped()));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("not a socket"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "keep me");
}

/// `sealpost --config <config> <args>`.
fn sealpost(config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the sealpost binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Exit 0; standard output.
fn ok(config: &Path, args: &[&str]) -> String {
    let (code, stdout, stderr) = sealpost(config, args);
    assert_eq!(code, Some(0), "{args:?}: {stdout}{stderr}");
    stdout
}

fn ok_json(config: &Path, args: &[&str]) -> Value {
    let stdout = ok(config, args);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

#[tokio::test]
async fn the_cli_shows_and_acts_on_the_queue_of_the_running_server() {
    let mut s = setup("").await;
    let cfg = s.daemon.config.clone();

    let summary = ok(&cfg, &["queue", "summary"]);
    assert!(summary.contains("messages: 3"), "{summary}");
    assert!(summary.contains(&s.deferred), "{summary}");
    assert!(summary.contains(GREYLISTED), "{summary}");
    assert!(
        summary
            .lines()
            .any(|l| l.split_whitespace().eq(["queued", "2"])),
        "{summary}"
    );
    assert_eq!(
        ok_json(&cfg, &["queue", "summary", "--json"])["messages"],
        3
    );

    let list = ok(&cfg, &["queue", "list"]);
    assert!(list.starts_with("ID "), "{list}");
    for id in [&s.deferred, &s.inbound, &s.outbound] {
        assert!(list.contains(id.as_str()), "{id} in {list}");
    }
    let page = ok_json(
        &cfg,
        &["queue", "list", "--domain", "open.example", "--json"],
    );
    assert_eq!(ids(&page), vec![s.inbound.clone()]);
    let first = ok(&cfg, &["queue", "list", "--limit", "1"]);
    assert!(
        first.contains(&format!("more: --cursor {}", s.deferred)),
        "{first}"
    );
    let second = ok_json(
        &cfg,
        &[
            "queue",
            "list",
            "--limit",
            "1",
            "--cursor",
            &s.deferred,
            "--json",
        ],
    );
    assert_eq!(ids(&second), vec![s.inbound.clone()]);
    let filtered = ok_json(
        &cfg,
        &[
            "queue",
            "list",
            "--state",
            "deferred",
            "--min-age",
            "1h",
            "--reason",
            "greylist",
            "--sender",
            "carol@open.example",
            "--tenant",
            "acme",
            "--json",
        ],
    );
    assert_eq!(ids(&filtered), vec![s.deferred.clone()]);

    let shown = ok(&cfg, &["queue", "show", &s.deferred]);
    for want in [
        "carol@open.example",
        "dave@refusing.test",
        "mx1.refusing.test [192.0.2.25]",
        "TLSv1.3 TLS13_AES_256_GCM_SHA384, authenticated: dane",
        GREYLISTED,
        "outbound default for open.example",
    ] {
        assert!(shown.contains(want), "{want} in {shown}");
    }
    let shown = ok_json(&cfg, &["queue", "show", &s.inbound, "--json"]);
    assert_eq!(shown["recipients"][0]["address"], "bob@open.example");

    assert_eq!(ok(&cfg, &["queue", "hold", &s.inbound]), "1 message held\n");
    assert_eq!(
        ok_json(&cfg, &["queue", "release", "--state", "held", "--json"])["touched"],
        1
    );
    assert_eq!(
        ok(&cfg, &["queue", "retry", &s.deferred]),
        "1 message scheduled for retry now\n"
    );
    assert_eq!(
        ok(
            &cfg,
            &[
                "queue",
                "bounce",
                &s.outbound,
                "--bounce-reason",
                "cancelled"
            ]
        ),
        "1 message bounced\n"
    );
    assert_eq!(
        ok(
            &cfg,
            &["queue", "hold", "--recipient", "dave@refusing.test"]
        ),
        "1 message held\n"
    );

    // Refusals: everything without --all, an unknown id, a bad filter,
    // an id together with a filter (a usage error).
    let (code, _, stderr) = sealpost(&cfg, &["queue", "delete"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--all"), "{stderr}");
    let (code, _, stderr) = sealpost(&cfg, &["queue", "show", "00000000000000ff"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no message 00000000000000ff"), "{stderr}");
    let (code, _, stderr) = sealpost(&cfg, &["queue", "list", "--state", "lost"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("unknown state `lost`"), "{stderr}");
    let (code, _, _) = sealpost(&cfg, &["queue", "delete", &s.deferred, "--tenant", "acme"]);
    assert_eq!(code, Some(2));

    let destinations = ok(&cfg, &["destinations"]);
    assert!(
        destinations.contains("the delivery engine reports no destinations"),
        "{destinations}"
    );
    assert!(destinations.contains("refusing.test"), "{destinations}");
    assert_eq!(
        ok_json(&cfg, &["destinations", "--json"])["queued_recipients"]["refusing.test"],
        1
    );

    let reloaded = ok(&cfg, &["reload"]);
    assert!(reloaded.contains("generation 2"), "{reloaded}");
    assert_eq!(ok_json(&cfg, &["reload", "--json"])["generation"], 3);
    let good = std::fs::read_to_string(&cfg).expect("read");
    std::fs::write(
        &cfg,
        format!("{good}\n[defaults]\noutbound = {{ level = \"never\" }}\n"),
    )
    .expect("write");
    // The broken file is also the CLI's own configuration: name the socket.
    let socket = s.socket.to_str().expect("utf-8");
    let (code, _, stderr) = sealpost(&cfg, &["reload", "--socket", socket]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("refused") && stderr.contains("never"),
        "{stderr}"
    );
    std::fs::write(&cfg, good).expect("write");

    // --socket instead of the configuration's path.
    let deleted = ok(&cfg, &["queue", "delete", "--all", "--socket", socket]);
    assert_eq!(deleted, "3 messages deleted\n");

    // Not running: a clear message and exit 1.
    s.daemon.stop();
    let (code, _, stderr) = sealpost(&cfg, &["queue", "summary"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("sealpost is not running"), "{stderr}");
    let (code, _, stderr) = sealpost(&cfg, &["reload"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("sealpost is not running"), "{stderr}");
}
