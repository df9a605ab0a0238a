//! How `sealpost serve` takes SIGTERM at the very start. In a file of its
//! own: it starts and stops sealpost in a tight loop, which is best not
//! run beside other tests' servers.
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::sealpost::{free_port, server_head, NO_DNS};

/// A SIGTERM that comes as soon as the SMTP port takes connections (its
/// listener bound, the rest of `serve` still starting) is kept for the
/// graceful stop: the process ends with status 0, not killed by the
/// signal's default action (seen once in CI, from `tests/drain.rs`, which
/// stops a node right after it listens).
#[test]
fn sigterm_right_after_listening_is_a_graceful_stop() {
    for round in 0..5 {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("sealpost.toml");
        let port = free_port();
        std::fs::write(&config, format!("{}\n{NO_DNS}", server_head(port))).expect("config");
        let mut child = std::process::Command::new(support::sealpost::BIN)
            .args(["--config", config.to_str().expect("UTF-8 path"), "serve"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start sealpost");
        let smtp = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(smtp).is_err() {
            assert!(Instant::now() < deadline, "sealpost never listened");
            assert!(
                child.try_wait().expect("wait").is_none(),
                "sealpost ended early"
            );
        }
        // At once (a `kill` process would take a millisecond to start).
        let pid = i32::try_from(child.id()).expect("pid");
        // SAFETY: kill(2) with a pid of our own child and SIGTERM.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let output = child.wait_with_output().expect("wait");
        assert!(
            output.status.success(),
            "round {round}: sealpost ended with {} on a SIGTERM right after listening: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
