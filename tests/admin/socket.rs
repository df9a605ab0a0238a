//! The admin socket: exclusive, a stale file replaced, a non-socket kept.

use super::*;

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
