//! `sealpost serve` as a child process for end-to-end tests: a temporary
//! directory holding the configuration file (and whatever else the test
//! writes there), a free loopback port for the SMTP listener, signals, and
//! a clean stop. Dropping a [`Server`] kills and reaps the child.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use sealpost::tls::Unauthenticated;
use tokio::net::TcpStream;

use super::smtp::{command, read_reply};

const BIN: &str = env!("CARGO_BIN_EXE_sealpost");

/// A running `sealpost serve`.
pub struct Server {
    pub child: Child,
    /// The SMTP listener.
    pub addr: SocketAddr,
    /// Holds `sealpost.toml`; relative paths in it are relative to here.
    pub dir: tempfile::TempDir,
}

/// A loopback port free at the time of the call.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Waits (bounded) until something accepts TCP connections on `addr`.
pub fn wait_listening(addr: SocketAddr) -> bool {
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

impl Server {
    /// Starts `sealpost serve` on the configuration `config(port)` makes,
    /// `port` being the SMTP listener's.
    pub fn start_with(config: impl Fn(u16) -> String) -> Server {
        Server::start_in(tempfile::tempdir().expect("tempdir"), config)
    }

    /// As [`Server::start_with`], in a directory the test has prepared
    /// (files the configuration names, such as recipients lists).
    pub fn start_in(dir: tempfile::TempDir, config: impl Fn(u16) -> String) -> Server {
        let port = free_port();
        let config = config(port);
        let path = dir.path().join("sealpost.toml");
        std::fs::write(&path, config).expect("write config");
        let child = Command::new(BIN)
            .args(["--config", path.to_str().expect("utf-8"), "serve"])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sealpost");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        // From here on, Drop kills and reaps the child whatever happens.
        let server = Server { child, addr, dir };
        assert!(
            wait_listening(addr),
            "sealpost did not start listening on {addr}"
        );
        server
    }

    /// The configuration file.
    pub fn config_path(&self) -> std::path::PathBuf {
        self.dir.path().join("sealpost.toml")
    }

    /// Sends a signal by name (`-HUP`, `-TERM`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([name, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "sealpost exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("sealpost did not stop on SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects, says EHLO, upgrades with STARTTLS (any certificate, these
/// TLS versions) and says EHLO again.
pub async fn starttls(
    addr: SocketAddr,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(read_reply(&mut tcp).await.code, 220);
    command(&mut tcp, "EHLO client.test").await;
    assert_eq!(command(&mut tcp, "STARTTLS").await.code, 220);
    let config = rustls::ClientConfig::builder_with_provider(super::pki::provider())
        .with_protocol_versions(versions)
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Unauthenticated::new()))
        .with_no_client_auth();
    let name = ServerName::try_from("mx.sealpost.test").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake with sealpost");
    assert_eq!(command(&mut tls, "EHLO client.test").await.code, 250);
    tls
}
