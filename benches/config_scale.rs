//! How sealpost copes with many managed domains (issue 17): generates a
//! configuration of 100,000 domains over 10,000 tenants (200,000 outbound
//! and 100,000 inbound peer entries) and runs the real `sealpost` binary on
//! it, measuring
//! - `config check`: wall time and peak RSS;
//! - `serve`: time until the SMTP listener accepts a connection, and RSS at
//!   rest;
//! - `reload` through the admin socket: the time of each of 10 reloads,
//!   and RSS after them;
//! - with one file per tenant, one tenant's change: through the API and
//!   by editing its file and reloading, each as the `sealpost` CLI's wall
//!   time (a process start included) and as the server's share (the
//!   request on the admin socket from this process, median of 10);
//!
//! Run with `cargo bench --bench config_scale` (release build); set
//! `SEALPOST_SCALE_DOMAINS` / `SEALPOST_SCALE_TENANTS` for other sizes. In test mode
//! (`cargo test --all-targets`) it runs the same steps on 200 domains.
//! Figures: `docs/benchmarks.md`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sealpost_bench::config_gen::{self, ScaleOptions};

const SEALPOST: &str = env!("CARGO_BIN_EXE_sealpost");
/// The longest the benchmark waits for the listener (a bound, not a goal).
const LISTEN_WAIT_LIMIT: Duration = Duration::from_secs(300);

fn env_u32(name: &str) -> Option<u32> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let scale = ScaleOptions {
        domains: env_u32("SEALPOST_SCALE_DOMAINS").unwrap_or(if full { 100_000 } else { 200 }),
        tenants: env_u32("SEALPOST_SCALE_TENANTS").unwrap_or(if full { 10_000 } else { 20 }),
    };
    let settle = if full {
        Duration::from_secs(2)
    } else {
        Duration::from_millis(100)
    };
    println!(
        "config_scale: {} domains, {} tenants, {} outbound and {} inbound peer entries",
        scale.domains,
        scale.tenants,
        2 * scale.domains,
        scale.domains
    );
    run(&scale, settle);
}

fn run(scale: &ScaleOptions, settle: Duration) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_port();
    let socket = dir.path().join("admin.sock");
    let main = config_gen::main_section(
        &format!("127.0.0.1:{port}"),
        &dir.path().join("data").display().to_string(),
        &socket.display().to_string(),
    );
    let started = Instant::now();
    let config = dir.path().join("sealpost.toml");
    std::fs::write(&config, config_gen::single_file(&main, scale)).expect("write configuration");
    println!(
        "\n{:.1} MB of TOML, generated in {:.2} s",
        std::fs::metadata(&config).map_or(0, |m| m.len()) as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    let (check_time, check_peak) = run_measured(&config, &["config", "check"]);
    println!(
        "config check        {:>8.3} s   peak RSS {:>7.1} MB",
        check_time.as_secs_f64(),
        kib_to_mb(check_peak)
    );

    let mut serve = serve_and_reload(&config, &socket, port, settle);
    let _ = serve.kill();
    let _ = serve.wait();

    split_layout(&config, &socket, port, settle);
}

/// Starts `sealpost serve` on `config`, prints the time until it listens
/// and its RSS at rest, then the time of 10 reloads with nothing changed
/// and the RSS after them; the server is left running.
fn serve_and_reload(config: &Path, socket: &Path, port: u16, settle: Duration) -> Child {
    let started = Instant::now();
    let mut serve = Command::new(SEALPOST)
        .arg("--config")
        .arg(config)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sealpost serve");
    let listening = wait_for_listener(&mut serve, port);
    let to_listen = started.elapsed();
    if !listening {
        let _ = serve.kill();
        let _ = serve.wait();
        panic!("sealpost serve did not listen on port {port}");
    }
    std::thread::sleep(settle);
    let rest = rss_kib(serve.id());
    println!(
        "serve: listening    {:>8.3} s   RSS at rest {:>7.1} MB",
        to_listen.as_secs_f64(),
        kib_to_mb(rest)
    );
    let mut times = Vec::new();
    for _ in 0..10 {
        times.push(reload(socket));
    }
    std::thread::sleep(settle);
    let after = rss_kib(serve.id());
    let (min, max) = min_max(&times);
    println!(
        "reload x10          {:>8.3} s   (min {:.3} s, max {:.3} s)   RSS after {:>7.1} MB ({:+.1} % of rest), peak {:.1} MB",
        mean(&times),
        min,
        max,
        kib_to_mb(after),
        percent(after, rest),
        kib_to_mb(hwm_kib(serve.id()))
    );
    serve
}

/// The same configuration split into a main file and one file per tenant
/// (`sealpost config split`): check, serve, 10 reloads with nothing
/// changed, and one tenant's change, through the admin API and by editing
/// its file and reloading.
fn split_layout(config: &Path, socket: &Path, port: u16, settle: Duration) {
    let (split_time, _) = run_measured(config, &["config", "split"]);
    println!(
        "\none file per tenant (`config split`: {:.3} s)",
        split_time.as_secs_f64()
    );
    let (check_time, check_peak) = run_measured(config, &["config", "check"]);
    println!(
        "config check        {:>8.3} s   peak RSS {:>7.1} MB",
        check_time.as_secs_f64(),
        kib_to_mb(check_peak)
    );
    let mut serve = serve_and_reload(config, socket, port, settle);
    // One tenant's change through the admin API (the CLI's wall time).
    let started = Instant::now();
    let output = Command::new(SEALPOST)
        .args([
            "peers",
            "add",
            "new-partner.example",
            "--domain",
            "d000000.customer.example",
        ])
        .args([
            "--direction",
            "outbound",
            "--level",
            "mandatory",
            "--socket",
        ])
        .arg(socket)
        .output()
        .expect("run sealpost peers add");
    let api_time = started.elapsed();
    assert!(
        output.status.success(),
        "peers add failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The same by editing the tenant's file, then a reload.
    let file = config.with_file_name("tenants.d").join("tenant00000.toml");
    let mut text = std::fs::read_to_string(&file).expect("read the tenant file");
    text = text.replace("new-partner.example", "newer-partner.example");
    std::fs::write(&file, text).expect("write the tenant file");
    let file_time = reload(socket);
    println!(
        "one tenant's change {:>8.3} s through the API, {:.3} s by its file and a reload (CLI)",
        api_time.as_secs_f64(),
        file_time
    );
    // The server's share: the request alone, on the admin socket.
    let mut api = Vec::new();
    let mut by_file = Vec::new();
    for round in 0..10 {
        let body = format!(r#"{{"peer": "partner-{round}.example", "level": "mandatory"}}"#);
        api.push(admin_request(
            socket,
            "POST",
            "/domains/d000000.customer.example/peers/outbound",
            &body,
        ));
        let text = std::fs::read_to_string(&file).expect("read the tenant file");
        let edited = text.replace(
            &format!("edited-{round}.example"),
            &format!("edited-{}.example", round + 1),
        );
        let edited = if edited == text {
            text.replace("newer-partner.example", "edited-1.example")
        } else {
            edited
        };
        std::fs::write(&file, edited).expect("write the tenant file");
        by_file.push(admin_request(socket, "POST", "/reload", ""));
    }
    println!(
        "one tenant's change {:>8.3} s through the API, {:.3} s by its file and a reload (server's share, median of 10; max {:.3} s, {:.3} s)",
        median(&mut api),
        median(&mut by_file),
        min_max(&api).1,
        min_max(&by_file).1,
    );
    let _ = serve.kill();
    let _ = serve.wait();
}

/// Runs `sealpost --config CONFIG ARGS...`, which must succeed; returns its
/// wall time and peak RSS (KiB, from `wait4`).
// The child is reaped by `wait4` (for its resource usage), not `Child::wait`.
#[allow(clippy::zombie_processes)]
fn run_measured(config: &Path, args: &[&str]) -> (Duration, u64) {
    let started = Instant::now();
    let child = Command::new(SEALPOST)
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sealpost");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in; `pid` is our child,
    // not yet waited for.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    assert_eq!(waited, pid, "wait4 on sealpost");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "sealpost {args:?} failed (status {status})"
    );
    (elapsed, usage.ru_maxrss.max(0) as u64)
}

/// One `sealpost reload` through the admin socket; its wall time in seconds.
fn reload(socket: &Path) -> f64 {
    let started = Instant::now();
    let output = Command::new(SEALPOST)
        .arg("reload")
        .arg("--socket")
        .arg(socket)
        .output()
        .expect("run sealpost reload");
    assert!(
        output.status.success(),
        "reload failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed().as_secs_f64()
}

/// One request on the admin socket, which must answer 200; its time in
/// seconds, from connecting to the end of the answer.
fn admin_request(socket: &Path, method: &str, path: &str, body: &str) -> f64 {
    let started = Instant::now();
    let mut stream = UnixStream::connect(socket).expect("connect to the admin socket");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: sealpost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write the request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{method} {path} failed: {answer}"
    );
    elapsed
}

fn wait_for_listener(child: &mut Child, port: u16) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + LISTEN_WAIT_LIMIT;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_ok() {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A field of `/proc/PID/status` in KiB (0 if unreadable).
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

fn hwm_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM:")
}

fn kib_to_mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn percent(value: u64, base: u64) -> f64 {
    if base == 0 {
        return 0.0;
    }
    (value as f64 - base as f64) * 100.0 / base as f64
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, 0.0_f64), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}
