//! `sealpost queue drain` through the real binaries on loopback: node A
//! (its downstream unreachable, so its mail waits) hands its queue to
//! node B, whose deliveries go to a sink. Every message arrives once,
//! nothing stays behind; a drain goes on when its CLI is killed, and one
//! interrupted by SIGKILL of node A and run again loses nothing (at most the message in flight arrives twice);
//! a client outside B's `[cluster] peers` cannot use the transfer
//! extension; DSN parameters, REQUIRETLS, the accepted policy, the tenant
//! and the arrival time survive the transfer.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sealpost_queue::{
    AcceptedPolicy, Attempt, Authentication, Body, ListFilter, LocalCause, NewCopy, NewRecipient,
    NewTransaction, Queue, Reason, RetryPolicy, Status, TlsRequest,
};
use support::sealpost::{free_port, greet, run_cli, server_head, Sealpost, NO_DNS};
use support::smtp::{accept_all, code, command, TestSmtpServer};

const DOMAIN: &str = "dest.test";

/// A node whose `dest.test` mail goes to `downstream`, trusting `peers`.
fn node(downstream: std::net::SocketAddr, peers: &str) -> Sealpost {
    let cluster = match peers {
        "" => String::new(),
        peers => format!("[cluster]\npeers = [{peers}]\n\n"),
    };
    Sealpost::start(|port| {
        format!(
            "{}{NO_DNS}\n{cluster}\
             [[domains]]\nname = \"{DOMAIN}\"\ntenant = \"acme\"\n\
             route = {{ hosts = [\"{downstream}\"] }}\n",
            server_head(port)
        )
    })
}

/// A node whose downstream is a closed port: its mail waits.
fn stuck_node() -> Sealpost {
    let closed: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    node(closed, "")
}

fn copy(n: usize) -> NewCopy {
    NewCopy {
        tenant: "acme".into(),
        mail_from: format!("sender{n}@origin.test"),
        mail_params: Vec::new(),
        recipients: vec![NewRecipient {
            address: format!("user{n}@{DOMAIN}"),
            destination: format!("inbound:{DOMAIN}"),
            params: Vec::new(),
        }],
        policy: AcceptedPolicy {
            level: "opportunistic".into(),
            min_tls: "any".into(),
            explanation: "test".into(),
        },
        tls_request: TlsRequest::None,
        arrived_at: SystemTime::now(),
        trace: "Received: from origin.test by node-a.test; now\r\n".into(),
    }
}

fn body(tag: &str) -> Body {
    Body::Memory(format!("Subject: drain {tag}\r\n\r\nbody {tag}\r\n").into_bytes())
}

/// Stops `node`, stores `copies` in its queue, starts it again.
fn fill(node: &mut Sealpost, copies: Vec<(NewCopy, String)>) {
    node.stop();
    {
        let queue = node.open_queue();
        let pending: Vec<_> = copies
            .into_iter()
            .map(|(copy, tag)| {
                let t = NewTransaction {
                    copies: vec![copy],
                    body: body(&tag),
                };
                queue.enqueue_transaction(t).expect("enqueue")
            })
            .collect();
        for durable in pending {
            durable.wait().expect("durable");
        }
    }
    node.spawn();
}

/// As [`fill`], with every copy already deferred for an hour, so that
/// the node does not try it before the drain (a REQUIRETLS message to a
/// route fails at its first attempt: routes are not authenticated).
fn fill_deferred(node: &mut Sealpost, copies: Vec<(NewCopy, String)>) {
    node.stop();
    {
        let queue = node.open_queue();
        for (copy, tag) in copies {
            let t = NewTransaction {
                copies: vec![copy],
                body: body(&tag),
            };
            queue
                .enqueue_transaction(t)
                .expect("enqueue")
                .wait()
                .expect("durable");
        }
        let policy = RetryPolicy {
            first_retry: Duration::from_secs(3600),
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let now = SystemTime::now();
        for lease in queue.take_due_any(now, 1_000).expect("take") {
            let attempt = Attempt {
                at: now,
                mx_host: None,
                ip: None,
                tls_version: None,
                cipher: None,
                authentication: Authentication::None,
                reply_or_reason: Reason::local(
                    LocalCause::ConnectionFailed,
                    Status(4, 4, 1),
                    "test: waits for the drain",
                ),
            };
            queue
                .record_attempt(lease, &[], attempt, &policy)
                .expect("deferred");
        }
    }
    node.spawn();
}

fn stored(node: &mut Sealpost) -> Vec<sealpost_queue::MessageInfo> {
    node.stop();
    let queue: Queue = node.open_queue();
    let page = queue
        .list(&ListFilter::default(), None, 10_000)
        .expect("list");
    page.items
}

/// How many times each `drain N` subject reached the sink.
fn arrivals(sink: &TestSmtpServer) -> BTreeMap<usize, usize> {
    let mut seen = BTreeMap::new();
    for m in sink.received() {
        let text = String::from_utf8_lossy(&m.body);
        let tag = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: drain "))
            .and_then(|t| t.trim().parse::<usize>().ok())
            .expect("a test message");
        *seen.entry(tag).or_insert(0) += 1;
    }
    seen
}

async fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}

async fn drain_cli(node: &Sealpost, args: Vec<String>) -> (Option<i32>, String, String) {
    let config = node.config_path();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&config, &args)
    })
    .await
    .expect("the CLI ran")
}

fn drain_args(to: std::net::SocketAddr, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "queue".to_string(),
        "drain".into(),
        "--to".into(),
        to.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_of_2000_messages_delivers_each_once_and_leaves_nothing() {
    const TOTAL: usize = 2_000;
    let sink = TestSmtpServer::start("sink.test", None, Arc::new(accept_all)).await;
    let b = node(sink.addr, "\"127.0.0.1/32\"");
    let mut a = stuck_node();
    fill(
        &mut a,
        (0..TOTAL).map(|n| (copy(n), n.to_string())).collect(),
    );

    let started = Instant::now();
    let (code, out, err) = drain_cli(&a, drain_args(b.smtp, &[])).await;
    // A figure for the report, not a limit.
    eprintln!("drained {TOTAL} messages in {:?}", started.elapsed());
    assert_eq!(code, Some(0), "{out}\n{err}\n{}", a.log());
    assert!(
        out.contains(&format!("{TOTAL} messages handed over")),
        "{out}"
    );
    assert!(
        wait_until(Duration::from_secs(120), || sink.received().len() >= TOTAL).await,
        "{} of {TOTAL} at the sink",
        sink.received().len()
    );
    let seen = arrivals(&sink);
    assert_eq!(seen.len(), TOTAL);
    assert!(
        seen.values().all(|n| *n == 1),
        "duplicates without an interruption"
    );
    // Node B's trace line above node A's.
    let first = String::from_utf8_lossy(&sink.received()[0].body).into_owned();
    let a_line = first
        .find("by node-a.test")
        .expect("node A's Received line");
    let b_line = first
        .find("by mx.sealpost.test")
        .expect("node B's Received line");
    assert!(b_line < a_line, "{first}");
    assert!(stored(&mut a).is_empty(), "nothing stays on node A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_cut_by_sigkill_and_run_again_loses_nothing() {
    const TOTAL: usize = 2_000;
    let sink = TestSmtpServer::start("sink.test", None, Arc::new(accept_all)).await;
    let b = node(sink.addr, "\"127.0.0.1/32\"");
    let mut a = stuck_node();
    fill(
        &mut a,
        (0..TOTAL).map(|n| (copy(n), n.to_string())).collect(),
    );

    // The CLI following the drain is killed: the drain goes on in node A.
    let mut cli = std::process::Command::new(support::sealpost::BIN)
        .arg("--config")
        .arg(a.config_path())
        .args(drain_args(b.smtp, &[]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the CLI starts");
    assert!(
        wait_until(Duration::from_secs(60), || sink.received().len() >= 100).await,
        "the drain makes progress"
    );
    cli.kill().expect("kill the CLI");
    cli.wait().expect("reap the CLI");
    let at_cli_kill = sink.received().len();
    assert!(
        wait_until(Duration::from_secs(60), || sink.received().len()
            >= at_cli_kill + 200)
        .await,
        "the drain goes on without its CLI"
    );
    // Then node A itself is killed mid-drain.
    a.kill();
    let cut = arrivals(&sink).len();
    assert!(cut < TOTAL, "the drain was cut short ({cut} arrived)");
    a.spawn();
    let (code, out, err) = drain_cli(&a, drain_args(b.smtp, &[])).await;
    assert_eq!(code, Some(0), "{out}\n{err}\n{}", a.log());
    assert!(
        wait_until(Duration::from_secs(120), || arrivals(&sink).len() >= TOTAL).await,
        "{} of {TOTAL} distinct messages at the sink",
        arrivals(&sink).len()
    );
    let seen = arrivals(&sink);
    assert_eq!(seen.len(), TOTAL);
    let twice = seen.values().filter(|n| **n == 2).count();
    assert!(seen.values().all(|n| *n <= 2), "{seen:?}");
    // Only what was in flight at the kill can come twice.
    assert!(twice <= 2, "{twice} messages arrived twice");
    assert!(stored(&mut a).is_empty(), "nothing stays on node A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_outside_the_peers_cannot_transfer() {
    let sink = TestSmtpServer::start("sink.test", None, Arc::new(accept_all)).await;
    let b = node(sink.addr, "\"192.0.2.0/24\"");
    let (mut tcp, ehlo) = greet(b.smtp).await;
    assert!(
        !ehlo.lines.iter().any(|l| l.contains("XSEALPOST-TRANSFER")),
        "{ehlo:?}"
    );
    let reply = command(&mut tcp, "MAIL FROM:<a@origin.test> XSEALPOST-TRANSFER=e30").await;
    assert_eq!(code(&reply), "555 5.5.4", "{reply:?}");

    let mut a = stuck_node();
    fill(&mut a, (0..3).map(|n| (copy(n), n.to_string())).collect());
    let (code, out, err) = drain_cli(&a, drain_args(b.smtp, &[])).await;
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(err.contains("[cluster] peers"), "{err}");
    assert_eq!(stored(&mut a).len(), 3, "node A keeps its messages");
    assert!(sink.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsn_parameters_requiretls_policy_and_arrival_survive_the_transfer() {
    // Node B's downstream is closed too: the message stays in its queue.
    let closed: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut b = node(closed, "\"127.0.0.1/32\"");
    let mut a = stuck_node();
    let arrived = SystemTime::now() - Duration::from_secs(3600);
    let mut original = copy(7);
    original.mail_params = vec!["RET=HDRS".into(), "ENVID=env+2D7".into()];
    original.recipients[0].params = vec![
        "NOTIFY=FAILURE,DELAY".into(),
        "ORCPT=rfc822;user7@dest.test".into(),
    ];
    original.tls_request = TlsRequest::RequireTls;
    // Outbound to a domain whose DNS fails here, so that node B defers it
    // (a REQUIRETLS message to a route fails at once: routes are not
    // authenticated) and keeps it to be looked at.
    original.recipients[0].address = "user7@far.test".into();
    original.recipients[0].destination = "far.test".into();
    original.policy.level = "mandatory".into();
    original.policy.min_tls = "1.2".into();
    original.arrived_at = arrived;
    fill_deferred(&mut a, vec![(original.clone(), "7".into())]);

    let (code, out, err) = drain_cli(&a, drain_args(b.smtp, &[])).await;
    assert_eq!(code, Some(0), "{out}\n{err}\n{}", a.log());
    let left = stored(&mut a);
    assert!(left.is_empty(), "{left:?}\n{out}\n{}", a.log());

    let on_b = stored(&mut b);
    assert_eq!(on_b.len(), 1, "{on_b:?}");
    let m = &on_b[0];
    assert_eq!(m.tenant, "acme");
    assert_eq!(m.mail_from, original.mail_from);
    assert_eq!(m.mail_params, original.mail_params);
    assert_eq!(m.tls_request, TlsRequest::RequireTls);
    assert_eq!(
        (m.policy.level.as_str(), m.policy.min_tls.as_str()),
        ("mandatory", "1.2")
    );
    let ms = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis()
    };
    assert_eq!(ms(m.arrived_at), ms(arrived));
    let r = &m.recipients[0];
    assert_eq!(r.address, "user7@far.test");
    assert_eq!(r.destination, "far.test");
    assert_eq!(r.params, original.recipients[0].params);
}
