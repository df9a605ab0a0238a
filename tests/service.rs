//! sealpost as a service, through the real binary: the health endpoints
//! on the metrics listener (ready, and not ready once the disk reserve is
//! crossed), the systemd notify messages on a real `NOTIFY_SOCKET`
//! (`READY=1`, `WATCHDOG=1`, `RELOADING=1`, `STOPPING=1`), and the
//! graceful stop under load: every message that got `250` is delivered,
//! in the stopped run or after the restart.
mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::sealpost::{free_port, http_get, server_head, Sealpost, NO_DNS};
use support::smtp::{accept_all, Ask, TestSmtpServer};

fn health_config(port: u16, metrics: u16, limits: &str) -> String {
    format!(
        "{head}\n{NO_DNS}\n[admin]\nmetrics_listen = \"127.0.0.1:{metrics}\"\n\n{limits}",
        head = server_head(port)
    )
}

/// Polls `GET path` until it answers `want` (10 s at most).
fn until_status(addr: SocketAddr, path: &str, want: u16) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http_get(addr, path);
        if status == want || Instant::now() >= deadline {
            return (status, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn failing_checks(body: &str) -> Vec<String> {
    let value: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    value["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == false)
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn ready_until_the_disk_reserve_is_crossed() {
    let metrics_port = free_port();
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let mut sealpost = Sealpost::start(|port| health_config(port, metrics_port, ""));

    let (status, body) = http_get(metrics, "/healthz/live");
    assert_eq!(
        (status, body.contains("\"live\": true")),
        (200, true),
        "{body}"
    );
    let (status, body) = until_status(metrics, "/healthz/ready", 200);
    assert_eq!(status, 200, "{body}");
    assert!(failing_checks(&body).is_empty(), "{body}");
    assert!(!sealpost.path("data/queue/.ready-probe").exists());

    // A reserve no disk has: not ready, and only the disk check says so.
    let port = sealpost.smtp.port();
    let huge = "[limits]\nmin_free_disk = 9223372036854775807\n";
    std::fs::write(
        sealpost.config_path(),
        health_config(port, metrics_port, huge),
    )
    .expect("write config");
    sealpost.signal("-HUP");
    let (status, body) = until_status(metrics, "/healthz/ready", 503);
    assert_eq!(status, 503, "{body}");
    assert_eq!(failing_checks(&body), ["disk"], "{body}");
    assert!(body.contains("below the reserve"), "{body}");
    // Liveness is not readiness.
    assert_eq!(http_get(metrics, "/healthz/live").0, 200);

    // A reserve the disk keeps: ready again.
    let small = "[limits]\nmin_free_disk = 1\n";
    std::fs::write(
        sealpost.config_path(),
        health_config(port, metrics_port, small),
    )
    .expect("write config");
    sealpost.signal("-HUP");
    let (status, body) = until_status(metrics, "/healthz/ready", 200);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("octets free, reserve 1"), "{body}");

    // The metrics listener stays read-only.
    assert_eq!(http_get(metrics, "/queue/summary").0, 404);
    sealpost.stop();
}

/// The datagrams received on `socket` within `limit`, until one holds
/// `until` (each datagram as its text).
fn datagrams_until(socket: &UnixDatagram, until: &str, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = text.lines().any(|l| l == until);
            seen.push(text);
            if done {
                break;
            }
        }
    }
    seen
}

fn has_line(datagrams: &[String], line: &str) -> bool {
    datagrams.iter().any(|d| d.lines().any(|l| l == line))
}

#[test]
fn systemd_hears_ready_watchdog_reloading_and_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    let notify = socket_path.to_str().expect("UTF-8 path").to_string();
    // A watchdog of 1 s: WATCHDOG=1 at least every 0.5 s.
    let mut sealpost = Sealpost::start_with_env(
        dir,
        |port| format!("{}\n{NO_DNS}", server_head(port)),
        &[("NOTIFY_SOCKET", &notify), ("WATCHDOG_USEC", "1000000")],
    );

    let started = datagrams_until(&socket, "READY=1", Duration::from_secs(10));
    assert!(has_line(&started, "READY=1"), "{started:?}");
    let status = started
        .iter()
        .flat_map(|d| d.lines())
        .find(|l| l.starts_with("STATUS="))
        .expect("a STATUS= with READY=1");
    assert!(
        status.contains(&sealpost.smtp.to_string()),
        "{status} names the listener"
    );

    // The delivery engine's loop feeds the watchdog.
    let mut fed = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while fed < 3 && Instant::now() < deadline {
        let seen = datagrams_until(&socket, "WATCHDOG=1", Duration::from_secs(2));
        if has_line(&seen, "WATCHDOG=1") {
            fed += 1;
        }
    }
    assert!(fed >= 3, "WATCHDOG=1 seen {fed} times in 5 s");

    // SIGHUP: RELOADING=1 with the monotonic clock, then READY=1.
    sealpost.signal("-HUP");
    let reload = datagrams_until(&socket, "READY=1", Duration::from_secs(10));
    let reloading = reload
        .iter()
        .find(|d| d.lines().any(|l| l == "RELOADING=1"))
        .unwrap_or_else(|| panic!("RELOADING=1 in {reload:?}"));
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("MONOTONIC_USEC in {reloading:?}"));
    assert!(usec > 0);
    let reloading_at = reload
        .iter()
        .position(|d| d == reloading)
        .expect("found above");
    assert!(
        reload[reloading_at..]
            .iter()
            .any(|d| d.lines().any(|l| l == "READY=1")),
        "READY=1 after RELOADING=1: {reload:?}"
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    sealpost.signal("-TERM");
    let stopping = datagrams_until(&socket, "STOPPING=1", Duration::from_secs(10));
    assert!(has_line(&stopping, "STOPPING=1"), "{stopping:?}");
    assert_eq!(sealpost.wait_exit(Duration::from_secs(30)), Some(true));
}

/// One reply, or `None` when the connection ended or failed first.
async fn try_reply(tcp: &mut tokio::net::TcpStream) -> Option<sealpost::smtp::Reply> {
    use tokio::io::AsyncReadExt;
    let mut parser = sealpost::smtp::ReplyParser::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(reply) = parser.next_reply() {
            return reply.ok();
        }
        let read = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut buf)).await;
        match read {
            Ok(Ok(n)) if n > 0 => parser.push(&buf[..n]),
            _ => return None,
        }
    }
}

/// Sends `line` and reads the reply (`None`: the connection ended).
async fn try_command(tcp: &mut tokio::net::TcpStream, line: &str) -> Option<sealpost::smtp::Reply> {
    use tokio::io::AsyncWriteExt;
    tcp.write_all(format!("{line}\r\n").as_bytes()).await.ok()?;
    try_reply(tcp).await
}

/// What one load client saw.
#[derive(Debug, Default)]
struct Load {
    /// Subjects of the messages that got `250`.
    accepted: Vec<String>,
    /// A transaction ended without a reply (the connection was cut).
    cut: bool,
    /// Between transactions, sealpost said `421` (it is stopping) or
    /// closed the connection (a `421` sent while the client was writing
    /// its next command may be lost to the reset of the close).
    ended_between_transactions: bool,
}

/// One client: sends messages with unique subjects on one connection
/// until sealpost says `421` or the connection ends (400 at most).
async fn client_load(addr: SocketAddr, client: usize) -> Load {
    use tokio::io::AsyncWriteExt;
    let mut load = Load::default();
    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
        return load;
    };
    match try_reply(&mut tcp).await {
        Some(greeting) if greeting.code == 220 => {}
        _ => return load,
    }
    match try_command(&mut tcp, "EHLO load.test").await {
        Some(ehlo) if ehlo.code == 250 => {}
        _ => return load,
    }
    for n in 0..400 {
        let subject = format!("load-{client}-{n}");
        // Between transactions a stop answers 421 at once (or closes).
        match try_command(&mut tcp, "MAIL FROM:<load@sender.test>").await {
            Some(r) if r.code == 250 => {}
            Some(r) if r.code == 421 => {
                load.ended_between_transactions = true;
                return load;
            }
            Some(r) => panic!("MAIL: {r:?}"),
            None => {
                load.ended_between_transactions = true;
                return load;
            }
        }
        // From here on a transaction is open: it must end with a reply.
        let rcpt = try_command(&mut tcp, &format!("RCPT TO:<{subject}@open.test>")).await;
        let Some(rcpt) = rcpt else {
            load.cut = true;
            return load;
        };
        assert_eq!(rcpt.code, 250, "{rcpt:?}");
        let Some(go) = try_command(&mut tcp, "DATA").await else {
            load.cut = true;
            return load;
        };
        assert_eq!(go.code, 354, "{go:?}");
        // The message in two writes, a pause between: a stop may well
        // come in the middle of one.
        let text = format!("Subject: {subject}\r\n\r\nline one\r\n");
        if tcp.write_all(text.as_bytes()).await.is_err() {
            load.cut = true;
            return load;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if tcp.write_all(b"line two\r\n.\r\n").await.is_err() {
            load.cut = true;
            return load;
        }
        match try_reply(&mut tcp).await {
            Some(r) if r.code == 250 => load.accepted.push(subject),
            Some(r) => panic!("end of DATA: {r:?}"),
            None => {
                load.cut = true;
                return load;
            }
        }
    }
    let _ = try_command(&mut tcp, "QUIT").await;
    load
}

fn subjects(received: &[support::smtp::Received]) -> BTreeSet<String> {
    received
        .iter()
        .filter_map(|r| {
            let text = String::from_utf8_lossy(&r.body);
            text.lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_loses_nothing() {
    // A slow downstream server: deliveries are under way at the stop.
    let slow = Arc::new(|ask: Ask<'_>| {
        if let Ask::Message(..) = ask {
            std::thread::sleep(Duration::from_millis(30));
        }
        accept_all(ask)
    });
    let downstream = TestSmtpServer::start("downstream.test", None, slow).await;
    let route = downstream.addr;
    let sealpost = Arc::new(Mutex::new(Sealpost::start(move |port| {
        format!(
            r#"{head}
{NO_DNS}
[delivery]
first_retry = "1s"
max_retry_interval = "2s"
connections_per_destination = 4

[[domains]]
name = "open.test"
tenant = "t"
route = {{ hosts = ["{route}"], level = "opportunistic" }}
"#,
            head = server_head(port)
        )
    })));
    let addr = sealpost.lock().expect("lock").smtp;

    // Eight clients, each on its own connection, until the stop.
    let clients: Vec<_> = (0..8).map(|c| tokio::spawn(client_load(addr, c))).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while subjects(&downstream.received()).len() < 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sealpost.lock().expect("lock").signal("-TERM");
    let stop_began = Instant::now();
    let mut accepted = BTreeSet::new();
    for client in clients {
        let load = client.await.expect("client task");
        assert!(!load.cut, "a transaction was cut without a reply: {load:?}");
        assert!(
            load.ended_between_transactions,
            "the stop ended every session between transactions: {load:?}"
        );
        accepted.extend(load.accepted);
    }
    let exited = tokio::task::spawn_blocking({
        let sealpost = sealpost.clone();
        move || {
            sealpost
                .lock()
                .expect("lock")
                .wait_exit(Duration::from_secs(40))
        }
    })
    .await
    .expect("wait");
    assert_eq!(exited, Some(true), "clean exit after SIGTERM");
    let took = stop_began.elapsed();
    assert!(took < Duration::from_secs(35), "the stop took {took:?}");
    assert!(accepted.len() >= 20, "{} accepted", accepted.len());
    {
        let sealpost = sealpost.lock().expect("lock");
        let log = sealpost.log();
        assert!(log.contains("stopped accepting SMTP connections"), "{log}");
        assert!(log.contains("sealpost stopped"), "{log}");
        // Deliveries under way finished within the grace: none was cut.
        assert!(!log.contains("attempts cut short"), "{log}");
        // The sessions ended once their transactions did, long before the
        // drain's bound.
        assert!(log.contains("every SMTP session ended"), "{log}");
        // New connections are refused once it stopped.
        assert!(std::net::TcpStream::connect(addr).is_err());
    }
    let before_restart = subjects(&downstream.received()).len();

    // Restart on the same queue: whatever was not delivered goes now.
    sealpost.lock().expect("lock").spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered = subjects(&downstream.received());
        let missing: Vec<&String> = accepted.difference(&delivered).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} accepted messages never delivered, e.g. {:?}",
            missing.len(),
            missing.first()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "accepted {}, delivered before the restart {before_restart}, after {}",
        accepted.len(),
        subjects(&downstream.received()).len()
    );
    let mut sealpost = sealpost.lock().expect("lock");
    sealpost.stop();
    let queue = sealpost.open_queue();
    let counts = queue.counts();
    let unfinished: u64 = counts
        .by_state
        .iter()
        .filter(|(state, _)| !state.is_final())
        .map(|(_, n)| *n)
        .sum();
    assert_eq!(unfinished, 0, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_stuck_at_the_stop_gets_421_after_the_drain() {
    use tokio::io::AsyncWriteExt;
    let mut sealpost = Sealpost::start(|port| {
        format!(
            "{}\n{NO_DNS}\n[[domains]]\nname = \"open.test\"\ntenant = \"t\"\n",
            server_head(port)
        )
    });
    let mut idle = tokio::net::TcpStream::connect(sealpost.smtp)
        .await
        .expect("connect");
    assert_eq!(try_reply(&mut idle).await.map(|r| r.code), Some(220));
    let mut stuck = tokio::net::TcpStream::connect(sealpost.smtp)
        .await
        .expect("connect");
    assert_eq!(try_reply(&mut stuck).await.map(|r| r.code), Some(220));
    for (line, want) in [
        ("EHLO stuck.test", 250),
        ("MAIL FROM:<a@sender.test>", 250),
        ("RCPT TO:<b@open.test>", 250),
        ("DATA", 354),
    ] {
        let reply = try_command(&mut stuck, line).await.expect("reply");
        assert_eq!(reply.code, want, "{line}: {reply:?}");
    }
    stuck
        .write_all(b"Subject: never finished\r\n\r\nhalf a message\r\n")
        .await
        .expect("write");

    sealpost.signal("-TERM");
    let began = Instant::now();
    // Between transactions: told at once.
    let told = try_reply(&mut idle).await.expect("421 to the idle session");
    assert_eq!(
        (told.code, told.enhanced.map(|e| e.to_string())),
        (421, Some("4.3.2".into()))
    );
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    // In a transaction: until the drain ends, then told too.
    let told = try_reply(&mut stuck)
        .await
        .expect("421 to the stuck session");
    let waited = began.elapsed();
    assert_eq!(told.code, 421, "{told:?}");
    let drain = sealpost::server::SMTP_DRAIN;
    assert!(
        waited + Duration::from_secs(1) >= drain && waited < drain + Duration::from_secs(4),
        "told after {waited:?}, drain {drain:?}"
    );
    let exited = tokio::task::spawn_blocking(move || {
        let exited = sealpost.wait_exit(Duration::from_secs(30));
        (exited, sealpost)
    })
    .await
    .expect("wait");
    assert_eq!(exited.0, Some(true));
    let queue = exited.1.open_queue();
    assert_eq!(
        queue.counts().by_tenant.values().sum::<u64>(),
        0,
        "nothing half-received is queued"
    );
}
