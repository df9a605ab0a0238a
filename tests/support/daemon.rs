//! The real `sealpost serve` binary as a test peer: a configuration file
//! and data directory in a temporary directory, a free loopback port for
//! its SMTP listener, and SIGTERM (or a kill on drop) to stop it; plus
//! `submit` to queue a message through its SMTP listener.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::net::TcpStream;

use super::smtp::{command, read_reply};

pub const BIN: &str = env!("CARGO_BIN_EXE_sealpost");

/// A free port on 127.0.0.1 (free when asked; the daemon binds it next).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A running `sealpost serve`.
pub struct Daemon {
    pub child: Child,
    /// The SMTP listener.
    pub addr: SocketAddr,
    pub config: PathBuf,
}

impl Daemon {
    /// Writes `config(port)` to `dir/name` and starts `sealpost serve` on it;
    /// returns once the SMTP listener accepts connections.
    pub fn start(dir: &Path, name: &str, config: impl Fn(u16) -> String) -> Daemon {
        let port = free_port();
        let path = dir.join(name);
        std::fs::write(&path, config(port)).expect("write config");
        let child = spawn(&path, Stdio::null());
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        // From here on, Drop kills and reaps the child whatever happens.
        let daemon = Daemon {
            child,
            addr,
            config: path,
        };
        for _ in 0..400 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return daemon;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("sealpost did not start listening on {addr}");
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(&mut self) {
        signal(&self.child, "-TERM");
        for _ in 0..400 {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "sealpost exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("sealpost did not stop on SIGTERM");
    }

    /// SIGKILL: no cleanup at all (leaves a stale socket file).
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sealpost --config <path> serve`, standard output discarded; pipe
/// standard error only for a daemon expected to exit soon (a long-running
/// one would fill the pipe).
pub fn spawn(config: &Path, stderr: Stdio) -> Child {
    Command::new(BIN)
        .args(["--config", config.to_str().expect("utf-8"), "serve"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start sealpost")
}

/// Sends `name` (e.g. `-HUP`) to the process.
pub fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status();
}

/// Waits (bounded) for a process expected to exit by itself; its exit code
/// and standard error.
pub fn wait_for_exit(mut child: Child) -> (Option<i32>, String) {
    use std::io::Read;
    for _ in 0..400 {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            return (status.code(), stderr);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("sealpost did not exit by itself");
}

/// Submits one plaintext message over SMTP; the queue id from the `250`.
pub async fn submit(addr: SocketAddr, from: &str, to: &[&str], subject: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(read_reply(&mut tcp).await.code, 220);
    assert_eq!(command(&mut tcp, "EHLO client.test").await.code, 250);
    let mail = command(&mut tcp, &format!("MAIL FROM:<{from}>")).await;
    assert_eq!(mail.code, 250, "{mail:?}");
    for rcpt in to {
        let reply = command(&mut tcp, &format!("RCPT TO:<{rcpt}>")).await;
        assert_eq!(reply.code, 250, "RCPT TO:<{rcpt}>: {reply:?}");
    }
    assert_eq!(command(&mut tcp, "DATA").await.code, 354);
    let done = command(&mut tcp, &format!("Subject: {subject}\r\n\r\nhello\r\n.")).await;
    assert_eq!(done.code, 250, "{done:?}");
    let _ = command(&mut tcp, "QUIT").await;
    done.lines[0]
        .rsplit(' ')
        .next()
        .expect("queue id")
        .to_string()
}
