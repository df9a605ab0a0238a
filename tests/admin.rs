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
mod support;

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

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_answers_every_endpoint() {
    let metrics_port = free_port();
    let mut s = setup(&format!("metrics_listen = \"127.0.0.1:{metrics_port}\"")).await;
    let c = client(&s.socket);

    // The socket file: private to the server's user.
    let mode = std::fs::metadata(&s.socket)
        .expect("the socket exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Summary: everything deferred, for three reasons.
    let summary = get(&c, "/queue/summary").await;
    assert_eq!(summary["messages"], 3, "{summary}");
    assert_eq!(summary["recipients_by_state"]["deferred"], 3, "{summary}");
    for state in ["queued", "active", "held", "failed"] {
        assert_eq!(
            summary["recipients_by_state"][state].as_u64().unwrap_or(0),
            0,
            "{state}: {summary}"
        );
    }
    assert_eq!(summary["messages_by_tenant"]["acme"], 3, "{summary}");
    for destination in ["refusing.test", "inbound:open.example", "faraway.test"] {
        assert_eq!(
            summary["recipients_by_destination"][destination], 1,
            "{destination}: {summary}"
        );
    }
    assert_eq!(summary["oldest"]["id"], s.deferred.as_str(), "{summary}");
    assert!(summary["oldest"]["age_seconds"].as_u64() >= Some(7000));
    let reasons = summary["top_defer_reasons"].as_array().expect("reasons");
    assert_eq!(reasons.len(), 3, "{summary}");
    let reason_count = |want: &dyn Fn(&str) -> bool| {
        reasons
            .iter()
            .filter(|r| r["reason"].as_str().is_some_and(want))
            .map(|r| r["recipients"].as_u64().expect("count"))
            .sum::<u64>()
    };
    assert_eq!(reason_count(&|r| r == GREYLISTED), 1, "{summary}");
    assert_eq!(reason_count(&|r| r == REFUSED_BY_RECEIVER), 1, "{summary}");
    assert_eq!(
        reason_count(&|r| r.contains(FARAWAY_DNS_FAILED)),
        1,
        "{summary}"
    );
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
        ("state=deferred", vec![&s.deferred, &s.inbound, &s.outbound]),
        ("state=queued", vec![]),
        ("reason=GREYLISTED", vec![&s.deferred, &s.inbound]),
        ("reason=said%3A%20451", vec![&s.inbound]),
        ("reason=faraway.test", vec![&s.outbound]),
        ("min_age=1h", vec![&s.deferred]),
        ("min_age=3h", vec![]),
    ];
    for (query, want) in filters {
        let page = get(&c, &format!("/queue/messages?{query}")).await;
        let want: Vec<String> = want.into_iter().cloned().collect();
        assert_eq!(ids(&page), want, "{query}");
    }
    let listed = &all["messages"];
    assert_eq!(listed[0]["recipients"][0]["state"], "deferred");
    assert_eq!(listed[0]["recipients"][0]["last_reason"], GREYLISTED);
    assert_eq!(listed[1]["recipients"][0]["attempts"], 1);
    assert_eq!(
        listed[1]["recipients"][0]["last_reason"],
        REFUSED_BY_RECEIVER
    );

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
    let rcpt = &inbound["recipients"][0];
    assert_eq!(rcpt["destination"], "inbound:open.example");
    assert_eq!(rcpt["state"], "deferred");
    // At least the first retry (5 minutes, less jitter) away.
    let now_ms = u64::try_from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms");
    assert!(
        rcpt["next_attempt_ms"].as_u64() > Some(now_ms + 60_000),
        "{inbound}"
    );
    let attempt = &rcpt["attempts"][0];
    assert_eq!(attempt["ip"], "127.0.0.1", "{inbound}");
    assert!(attempt["tls_version"].is_null(), "{inbound}");
    assert_eq!(attempt["result"], "deferred", "{inbound}");
    assert_eq!(attempt["reason"], REFUSED_BY_RECEIVER, "{inbound}");
    assert!(inbound["effective_policy"].is_null());
    assert!(inbound["accepted_policy"]["explanation"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
    let outbound = get(&c, &format!("/queue/messages/{}", s.outbound)).await;
    let attempt = &outbound["recipients"][0]["attempts"][0];
    assert!(attempt["ip"].is_null(), "no host was reached: {outbound}");
    assert!(
        attempt["reason"]
            .as_str()
            .is_some_and(|r| r.contains(FARAWAY_DNS_FAILED)),
        "{outbound}"
    );

    // Metrics of those attempts: two deferred for acme, the TLS outcome of
    // each connection tried (the metrics follow the queue's record).
    let first_attempts = [
        ("sealpost_messages_deferred_total{tenant=\"acme\"}", 2.0),
        (
            "sealpost_tls_outcomes_total{level=\"opportunistic\",outcome=\"plaintext\"}",
            1.0,
        ),
        (
            "sealpost_tls_outcomes_total{level=\"opportunistic\",outcome=\"refused\"}",
            1.0,
        ),
    ];
    let deadline = Instant::now() + WAIT;
    let mut samples = scrape(&c).await;
    while first_attempts
        .iter()
        .any(|(series, n)| sample(&samples, series) != Some(*n))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        samples = scrape(&c).await;
    }
    for (series, n) in first_attempts {
        assert_eq!(sample(&samples, series), Some(n), "{series}: {samples:?}");
    }

    // Actions on one message. Released and retried mail is due at once:
    // the engine attempts it again and it is deferred again.
    let one = |id: &str, action: &str| format!("/queue/messages/{id}/{action}");
    assert_eq!(post(&c, &one(&s.inbound, "hold"), "").await["touched"], 1);
    assert_eq!(post(&c, &one(&s.inbound, "hold"), "").await["touched"], 0);
    let held = get(&c, "/queue/messages?state=held").await;
    assert_eq!(ids(&held), vec![s.inbound.clone()]);
    assert_eq!(
        post(&c, &one(&s.inbound, "release"), "").await["touched"],
        1
    );
    let again = deferred_again(&c, &s.inbound, 1).await;
    assert_eq!(
        again["recipients"][0]["attempts"][1]["reason"],
        REFUSED_BY_RECEIVER
    );
    assert_eq!(post(&c, &one(&s.deferred, "retry"), "").await["touched"], 1);
    let again = deferred_again(&c, &s.deferred, 1).await;
    assert!(
        again["recipients"][0]["attempts"][1]["reason"]
            .as_str()
            .is_some_and(|r| r.contains(REFUSING_DNS_FAILED)),
        "{again}"
    );
    let bounced = post(
        &c,
        &one(&s.outbound, "bounce"),
        r#"{"bounce_reason": "cancelled by the customer"}"#,
    )
    .await;
    assert_eq!(bounced["touched"], 1);
    // The engine queues the DSN to carol (open.example, by its route: the
    // refusing receiver defers it) and the bounced message is done.
    let dsn = dsn_deferred(&c, &s.outbound).await;
    assert_eq!(
        refused(&c, Method::POST, &one(&s.outbound, "hold"), None).await,
        404
    );

    // Actions on a filter; one that matches everything needs confirm_all.
    let held = post(&c, "/queue/actions/hold", r#"{"tenant": "acme"}"#).await;
    assert_eq!(held["touched"], 3, "the deferred one, inbound and the DSN");
    let before: Vec<(String, usize)> = {
        let mut v = Vec::new();
        for id in [&s.deferred, &s.inbound, &dsn] {
            let m = get(&c, &format!("/queue/messages/{id}")).await;
            v.push((id.clone(), attempts(&m)));
        }
        v
    };
    let released = post(&c, "/queue/actions/release", r#"{"state": "held"}"#).await;
    assert_eq!(released["touched"], 3);
    for (id, n) in &before {
        deferred_again(&c, id, *n).await;
    }
    // refusing.test is paused after its failed lookup: its mail is
    // deferred without a try.
    let again = get(&c, &format!("/queue/messages/{}", s.deferred)).await;
    assert!(
        again["recipients"][0]["attempts"][2]["reason"]
            .as_str()
            .is_some_and(
                |r| r.starts_with("destination paused until") && r.contains(REFUSING_DNS_FAILED)
            ),
        "{again}"
    );
    assert_eq!(
        refused(&c, Method::POST, "/queue/actions/delete", Some("{}")).await,
        400
    );
    assert_eq!(
        refused(&c, Method::POST, "/queue/actions/delete", None).await,
        400
    );
    assert_eq!(post(&c, &one(&dsn, "delete"), "").await["touched"], 1);
    let deleted = post(&c, "/queue/actions/delete", r#"{"domain": "open.example"}"#).await;
    assert_eq!(deleted["touched"], 1);
    assert_eq!(
        ids(&get(&c, "/queue/messages").await),
        vec![s.deferred.clone()]
    );

    // Destinations: the engine's, with the queued counts.
    let destinations = get(&c, "/destinations").await;
    let rows = destinations["destinations"].as_array().expect("rows");
    let row = |name: &str| {
        rows.iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {destinations}"))
    };
    let inbound_row = row("inbound:open.example");
    let route_ip = s.peers.receiver.addr.ip().to_string();
    assert_eq!(
        inbound_row["mx_hosts"],
        serde_json::json!([route_ip]),
        "{destinations}"
    );
    assert!(inbound_row["last_error"].is_null(), "{destinations}");
    assert!(inbound_row["backoff_until"].is_null(), "{destinations}");
    for (name, error) in [
        ("faraway.test", FARAWAY_DNS_FAILED),
        ("refusing.test", REFUSING_DNS_FAILED),
    ] {
        let row = row(name);
        assert!(
            row["last_error"]
                .as_str()
                .is_some_and(|e| e.contains(error)),
            "{destinations}"
        );
        assert!(row["backoff_until"].as_u64().is_some(), "{destinations}");
        assert_eq!(row["mx_hosts"], serde_json::json!([]), "{destinations}");
    }
    assert_eq!(destinations["queued_recipients"]["refusing.test"], 1);
    assert_eq!(
        destinations["queued_recipients"]
            .as_object()
            .map(|q| q.len()),
        Some(1),
        "{destinations}"
    );
    // A flush clears the backoff (and closes idle connections).
    let flushed = post(&c, "/destinations/refusing.test/flush", "").await;
    assert_eq!(flushed["flushed"], "refusing.test");
    wait_get(&c, "/destinations", |d| {
        d["destinations"].as_array().is_some_and(|rows| {
            rows.iter()
                .any(|r| r["name"] == "refusing.test" && r["backoff_until"].is_null())
        })
    })
    .await;
    assert_eq!(
        refused(&c, Method::POST, "/destinations/nowhere.test/flush", None).await,
        404
    );

    // Tenants: domains from the configuration, counters from the metrics
    // (which follow the queue's record of each attempt).
    let tenants = wait_get(&c, "/tenants", |t| {
        t["tenants"]
            .as_array()
            .is_some_and(|l| l.iter().any(|t| t["name"] == "acme" && t["deferred"] == 7))
    })
    .await;
    let list = tenants["tenants"].as_array().expect("tenants");
    let acme = list.iter().find(|t| t["name"] == "acme").expect("acme");
    assert_eq!(acme["domains"][0]["name"], "open.example");
    assert_eq!(acme["received"], 2);
    assert_eq!(acme["queued_messages"], 1);
    assert_eq!(acme["bounced"], 1, "{acme}");
    // Deferred attempts: the first two, the release of inbound, the retry,
    // the DSN's, then inbound's and the DSN's after the release of all
    // three (refusing.test was paused: no attempt).
    assert_eq!(acme["deferred"], 7, "{acme}");
    assert_eq!(acme["delivered"], 0, "{acme}");
    // Its tenant actor published the configured limit.
    assert_eq!(acme["max_in_flight"], 3, "{acme}");
    let bank = list.iter().find(|t| t["name"] == "bank").expect("bank");
    assert_eq!(bank["domains"][0]["name"], "strict.example");
    assert_eq!(bank["received"], 0);

    // Policy explain: the same answer as the CLI.
    let explained = get(
        &c,
        "/policy/explain?from=carol%40open.example&to=x%40gmail.com",
    )
    .await;
    let (_, cli, _) = run_cli(
        &s.sealpost.config_path(),
        &[
            "policy",
            "explain",
            "--from",
            "carol@open.example",
            "--to",
            "x@gmail.com",
            "--json",
        ],
    );
    let cli: Value = serde_json::from_str(&cli).expect("CLI JSON");
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
    for (series, n) in [
        ("sealpost_messages_bounced_total{tenant=\"acme\"}", 1.0),
        ("sealpost_messages_deferred_total{tenant=\"acme\"}", 7.0),
        (
            "sealpost_tls_outcomes_total{level=\"opportunistic\",outcome=\"plaintext\"}",
            5.0,
        ),
        (
            "sealpost_tls_outcomes_total{level=\"opportunistic\",outcome=\"refused\"}",
            2.0,
        ),
    ] {
        assert_eq!(sample(&samples, series), Some(n), "{series}");
    }
    assert_eq!(
        sample(
            &samples,
            "sealpost_messages_delivered_total{tenant=\"acme\"}"
        ),
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
    s.sealpost.stop();
    assert!(!s.socket.exists(), "the socket file is removed at shutdown");
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

#[tokio::test(flavor = "multi_thread")]
async fn reload_refuses_a_bad_configuration_and_keeps_the_one_in_force() {
    let s = setup("").await;
    let c = client(&s.socket);
    let config_path = s.sealpost.config_path();
    let explain = "/policy/explain?from=x%40peer.test&to=y%40new.example";
    let before = get(&c, explain).await;
    assert_eq!(before["resolution"]["tenant"], Value::Null, "{before}");

    // A bad file: 422 with every error, the old configuration stays.
    std::fs::write(
        &config_path,
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
    std::fs::write(
        &config_path,
        s.peers.config(
            s.sealpost.smtp.port(),
            &s.socket,
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

#[tokio::test(flavor = "multi_thread")]
async fn the_socket_is_exclusive_and_a_stale_file_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("admin.sock");
    let mut first = Sealpost::start(|port| config(port, &socket, NO_DNS, None, "", ""));
    assert_eq!(get(&client(&socket), "/queue/summary").await["messages"], 0);

    // A second server on the same socket (its own data directory) refuses
    // to start and leaves the first one's socket alone.
    let other = tempfile::tempdir().expect("tempdir");
    let second = other.path().join("sealpost.toml");
    std::fs::write(&second, config(free_port(), &socket, NO_DNS, None, "", "")).expect("write");
    let (code, stderr) = run_to_exit(&second);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
    assert_eq!(get(&client(&socket), "/queue/summary").await["messages"], 0);

    // The first crashes: its socket file stays behind, stale; the next
    // server replaces it, here for the members of a group (our own).
    first.kill();
    assert!(socket.exists());
    let gid = std::fs::metadata(other.path()).expect("stat").gid();
    let _third = Sealpost::start(|port| {
        config(
            port,
            &socket,
            NO_DNS,
            None,
            &format!("group = \"{gid}\""),
            "",
        )
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
    let fourth = other.path().join("fourth.toml");
    std::fs::write(&fourth, config(free_port(), &file, NO_DNS, None, "", "")).expect("write");
    let (code, stderr) = run_to_exit(&fourth);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("not a socket"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "keep me");
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

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_shows_and_acts_on_the_queue_of_the_running_server() {
    let mut s = setup("").await;
    let cfg = s.sealpost.config_path();
    let c = client(&s.socket);

    let summary = ok(&cfg, &["queue", "summary"]);
    assert!(summary.contains("messages: 3"), "{summary}");
    assert!(summary.contains(&s.deferred), "{summary}");
    assert!(summary.contains(GREYLISTED), "{summary}");
    assert!(summary.contains(REFUSED_BY_RECEIVER), "{summary}");
    assert!(
        summary
            .lines()
            .any(|l| l.split_whitespace().eq(["deferred", "3"])),
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
    let deferred = ok_json(&cfg, &["queue", "list", "--state", "deferred", "--json"]);
    assert_eq!(
        ids(&deferred),
        vec![s.deferred.clone(), s.inbound.clone(), s.outbound.clone()]
    );

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
    let shown = ok(&cfg, &["queue", "show", &s.inbound]);
    assert!(shown.contains(REFUSED_BY_RECEIVER), "{shown}");
    let shown = ok_json(&cfg, &["queue", "show", &s.inbound, "--json"]);
    assert_eq!(shown["recipients"][0]["address"], "bob@open.example");
    assert_eq!(
        shown["recipients"][0]["attempts"][0]["reason"],
        REFUSED_BY_RECEIVER
    );

    // Released and retried mail is attempted again and deferred again.
    assert_eq!(ok(&cfg, &["queue", "hold", &s.inbound]), "1 message held\n");
    assert_eq!(
        ok_json(&cfg, &["queue", "release", "--state", "held", "--json"])["touched"],
        1
    );
    deferred_again(&c, &s.inbound, 1).await;
    assert_eq!(
        ok(&cfg, &["queue", "retry", &s.deferred]),
        "1 message scheduled for retry now\n"
    );
    deferred_again(&c, &s.deferred, 1).await;
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
    let dsn = dsn_deferred(&c, &s.outbound).await;
    let shown = ok(&cfg, &["queue", "show", &dsn]);
    assert!(shown.contains("carol@open.example"), "{shown}");
    assert_eq!(
        ok(
            &cfg,
            &["queue", "hold", "--recipient", "dave@refusing.test"]
        ),
        "1 message held\n"
    );

    // Refusals: everything without --all, an unknown id, a bad filter,
    // an id together with a filter (a usage error).
    let (code, _, stderr) = run_cli(&cfg, &["queue", "delete"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--all"), "{stderr}");
    let (code, _, stderr) = run_cli(&cfg, &["queue", "show", "00000000000000ff"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no message 00000000000000ff"), "{stderr}");
    let (code, _, stderr) = run_cli(&cfg, &["queue", "show", &s.outbound]);
    assert_eq!(code, Some(1), "bounced and done");
    assert!(
        stderr.contains(&format!("no message {}", s.outbound)),
        "{stderr}"
    );
    let (code, _, stderr) = run_cli(&cfg, &["queue", "list", "--state", "lost"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("unknown state `lost`"), "{stderr}");
    let (code, _, _) = run_cli(&cfg, &["queue", "delete", &s.deferred, "--tenant", "acme"]);
    assert_eq!(code, Some(2));

    // The engine's destinations, with the queued counts.
    let destinations = ok(&cfg, &["destinations"]);
    assert!(destinations.starts_with("DESTINATION "), "{destinations}");
    let route_ip = s.peers.receiver.addr.ip().to_string();
    let row = |name: &str| -> Vec<&str> {
        destinations
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} in {destinations}"))
            .split_whitespace()
            .collect()
    };
    // DESTINATION QUEUED MX ...: inbound and the DSN by the route.
    assert_eq!(
        row("inbound:open.example")[..3],
        ["inbound:open.example", "2", route_ip.as_str()],
        "{destinations}"
    );
    for (name, error) in [
        ("faraway.test", FARAWAY_DNS_FAILED),
        ("refusing.test", REFUSING_DNS_FAILED),
    ] {
        let line = row(name).join(" ");
        assert!(
            line.contains(" more ") && line.contains(error),
            "backoff and last error of {name} in {destinations}"
        );
    }
    let json = ok_json(&cfg, &["destinations", "--json"]);
    assert_eq!(json["queued_recipients"]["refusing.test"], 1, "{json}");
    let names: Vec<&str> = json["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    for name in ["inbound:open.example", "faraway.test", "refusing.test"] {
        assert!(names.contains(&name), "{name} in {json}");
    }

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
    let (code, _, stderr) = run_cli(&cfg, &["reload", "--socket", socket]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("refused") && stderr.contains("never"),
        "{stderr}"
    );
    std::fs::write(&cfg, good).expect("write");

    // --socket instead of the configuration's path: the held one, inbound
    // and the DSN.
    let deleted = ok(&cfg, &["queue", "delete", "--all", "--socket", socket]);
    assert_eq!(deleted, "3 messages deleted\n");

    // Not running: a clear message and exit 1.
    s.sealpost.stop();
    let (code, _, stderr) = run_cli(&cfg, &["queue", "summary"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("sealpost is not running"), "{stderr}");
    let (code, _, stderr) = run_cli(&cfg, &["reload"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("sealpost is not running"), "{stderr}");
}
