//! The real `sealpost` binary as a child process: started on a config in a
//! temporary directory, logging JSON to a file the test can search,
//! stopped with SIGTERM, killed with SIGKILL and restarted on the same
//! data directory; [`run_to_exit`] for a `serve` expected to refuse to
//! start.

use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sealpost");

/// A free TCP port on 127.0.0.1 for a server the test starts (sealpost,
/// pebble, redis), which binds it itself.
///
/// The ports come from below the kernel's ephemeral range (32768-60999 by
/// default). A port that bind(0) handed out and the test released could be
/// taken by any outgoing connection, or handed out again, before the server
/// binds it. Each call takes the next port of a sequence that starts at an
/// offset from the process id; a port found in use is skipped.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static TAKEN: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(613) % SPAN;
    loop {
        let n = TAKEN.fetch_add(1, Ordering::Relaxed);
        assert!(n < SPAN, "every port from {LOW} on was handed out");
        let port = (LOW + (start + n) % SPAN) as u16;
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub struct Sealpost {
    child: Option<Child>,
    /// The SMTP listener.
    pub smtp: SocketAddr,
    pub dir: tempfile::TempDir,
    /// Extra environment for `serve` (e.g. `NOTIFY_SOCKET`).
    pub env: Vec<(String, String)>,
}

impl Sealpost {
    /// Writes `config(smtp_port)` to `sealpost.toml` in a new temporary
    /// directory (relative paths in it land there) and starts `serve`.
    pub fn start(config: impl Fn(u16) -> String) -> Sealpost {
        Sealpost::start_in(tempfile::tempdir().expect("tempdir"), config)
    }

    /// As [`Sealpost::start`], in a directory the test has prepared (files
    /// the configuration names, such as recipients lists or certificates).
    pub fn start_in(dir: tempfile::TempDir, config: impl Fn(u16) -> String) -> Sealpost {
        Sealpost::start_with_env(dir, config, &[])
    }

    /// As [`Sealpost::start_in`], with `env` added to `serve`'s environment.
    pub fn start_with_env(
        dir: tempfile::TempDir,
        config: impl Fn(u16) -> String,
        env: &[(&str, &str)],
    ) -> Sealpost {
        let port = free_port();
        std::fs::write(dir.path().join("sealpost.toml"), config(port)).expect("write config");
        let mut sealpost = Sealpost {
            child: None,
            smtp: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        sealpost.spawn();
        sealpost
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("sealpost.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("sealpost.log")
    }

    /// Starts `serve` again (after [`Sealpost::kill`] or [`Sealpost::stop`]).
    pub fn spawn(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let child = Command::new(BIN)
            .args(["--config"])
            .arg(self.config_path())
            .args(["--log-format", "json", "--log-level", "info", "serve"])
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start sealpost");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(self.smtp).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("sealpost exited with {status}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("sealpost did not listen on {}:\n{}", self.smtp, self.log());
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    /// Sends a signal by name (`-HUP`, `-TERM`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([name, &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits (at most `limit`) for `serve` to exit by itself, e.g. after
    /// [`Sealpost::signal`] with `-TERM`: whether it exited with status 0.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<bool> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(status.success(), "sealpost exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        panic!("sealpost did not stop on SIGTERM");
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The JSON log events whose message is `message`, as their `fields`.
    pub fn events(&self, message: &str) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|event| event.get("fields").cloned())
            .filter(|fields| fields.get("message").and_then(|m| m.as_str()) == Some(message))
            .collect()
    }

    /// Waits until `done(self)` holds (polling), at most `limit`.
    pub fn wait_for(&self, limit: Duration, done: impl Fn(&Sealpost) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if done(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// The queue under `data/queue`, opened by the test (after
    /// [`Sealpost::stop`]: sled allows one process at a time).
    pub fn open_queue(&self) -> sealpost_queue::Queue {
        sealpost_queue::Queue::open(
            self.path("data/queue"),
            sealpost_queue::QueueOptions::default(),
        )
        .expect("reopen the queue")
    }
}

impl Drop for Sealpost {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `sealpost --config <config> <args>` run to its end (without
/// `RUST_LOG`): its exit code, standard output and standard error.
pub fn run_cli(config: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
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

/// `sealpost --config <config> serve` expected to exit by itself (a
/// refused start): its exit code and standard error (human log format),
/// waiting 10 seconds at most.
pub fn run_to_exit(config: &std::path::Path) -> (Option<i32>, String) {
    use std::io::Read;
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sealpost");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            return (status.code(), stderr);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("sealpost did not exit by itself");
}

/// `[dns]` for a test DNS server: its address and trust anchor file.
pub fn dns_section(settings: &sealpost::dns::ResolverSettings) -> String {
    let servers: Vec<String> = settings
        .nameservers
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect();
    let anchor = match &settings.trust_anchor {
        sealpost::dns::TrustAnchorSource::DnskeyFile(path) => {
            format!("trust_anchor = \"{}\"\n", path.display())
        }
        sealpost::dns::TrustAnchorSource::IanaRoot => String::new(),
    };
    format!("[dns]\nnameservers = [{}]\n{anchor}", servers.join(", "))
}

/// The start of a test configuration: `[server]` named `mx.sealpost.test`
/// with its data in `data/` (relative to the test directory), and one
/// `[[listeners]]` on 127.0.0.1:`port`.
pub fn server_head(port: u16) -> String {
    format!(
        "[server]\nhostname = \"mx.sealpost.test\"\ndata_dir = \"data\"\n\n\
         [[listeners]]\naddress = \"127.0.0.1:{port}\"\n"
    )
}

/// `[dns]` pointing at a closed local port: nothing leaves the machine,
/// but a lookup fails only after the resolver's timeout (15 s): for mail
/// that needs DNS, use a `dns::TestDns` (e.g. with `servfail`).
pub const NO_DNS: &str = "[dns]\nnameservers = [\"127.0.0.1:9\"]\n";

/// Submits one message to sealpost at `addr` with sealpost's own client
/// (STARTTLS when offered); `Ok(queue id)` on 250, else the reply or error.
pub async fn submit(
    addr: SocketAddr,
    from: &str,
    to: &[&str],
    body: &[u8],
) -> Result<String, String> {
    use sealpost::smtp::address::{parse_forward_path, parse_reverse_path};
    use sealpost::smtp::client::{
        ClientConfig, Connection, Delivery, OutboundMessage, Peer, RecipientOutcome, Timeouts,
        TlsParams, TlsRequirement,
    };
    let mut config = ClientConfig::new("submitter.test");
    config.timeouts = Timeouts::uniform(Duration::from_secs(30));
    let params = TlsParams::new(
        TlsRequirement::Opportunistic,
        sealpost::policy::MinTlsVersion::Any,
        "localhost",
    )
    .map_err(|e| e.to_string())?;
    let peer = Peer {
        mx_host: "sealpost".into(),
        addr,
        local: None,
    };
    let mut conn = Connection::connect(peer, &params, std::sync::Arc::new(config))
        .await
        .map_err(|e| e.to_string())?;
    let from = parse_reverse_path(&format!("<{from}>")).map_err(|e| e.to_string())?;
    let to: Vec<_> = to
        .iter()
        .map(|t| parse_forward_path(&format!("<{t}>")).expect("test address"))
        .collect();
    let sent = conn
        .send(&OutboundMessage {
            from: &from,
            to: &to,
            body,
            requiretls: false,
        })
        .await
        .map_err(|e| e.to_string())?;
    conn.quit().await;
    match sent {
        Delivery::Attempted(outcomes) => match outcomes.first() {
            Some(RecipientOutcome::Delivered(reply)) => Ok(reply
                .text()
                .rsplit(' ')
                .next()
                .unwrap_or_default()
                .to_string()),
            Some(other) => Err(other.reply().to_string()),
            None => Err("no outcome".into()),
        },
        Delivery::Refused(why) => Err(why.to_string()),
    }
}

/// Connects to sealpost at `addr` in plaintext, expects the 220 greeting
/// and says `EHLO client.test` (expecting 250): the connection and the
/// EHLO reply (its extension lines).
pub async fn greet(addr: SocketAddr) -> (tokio::net::TcpStream, sealpost::smtp::Reply) {
    use super::smtp::{command, read_reply};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    assert_eq!(read_reply(&mut tcp).await.code, 220);
    let ehlo = command(&mut tcp, "EHLO client.test").await;
    assert_eq!(ehlo.code, 250, "{ehlo:?}");
    (tcp, ehlo)
}

/// [`greet`], then `STARTTLS` (expecting 220): the connection, ready for
/// the client's TLS handshake.
pub async fn before_tls(addr: SocketAddr) -> tokio::net::TcpStream {
    let (mut tcp, _) = greet(addr).await;
    assert_eq!(super::smtp::command(&mut tcp, "STARTTLS").await.code, 220);
    tcp
}

/// Connects to sealpost at `addr`, says EHLO, upgrades with STARTTLS
/// (any certificate; these TLS versions) and says EHLO again.
pub async fn starttls(
    addr: SocketAddr,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use super::smtp::command;
    let tcp = before_tls(addr).await;
    let config = rustls::ClientConfig::builder_with_provider(super::pki::provider())
        .with_protocol_versions(versions)
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(
            std::sync::Arc::new(sealpost::tls::Unauthenticated::new()),
        )
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("mx.sealpost.test").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake with sealpost");
    assert_eq!(command(&mut tls, "EHLO client.test").await.code, 250);
    tls
}

/// `GET path` over HTTP/1.1 on `addr`: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect to the metrics listener");
    tcp.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    use std::io::{Read, Write};
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: sealpost\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).expect("read");
    http_answer(&answer)
}

/// The status code and the body of an HTTP/1.1 answer read whole.
pub fn http_answer(answer: &str) -> (u16, String) {
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
