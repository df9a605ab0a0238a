//! The discarding sink: an SMTP server (sealpost's own session machine) that
//! accepts every message, keeps only its id, and reports how many arrived,
//! how many were duplicates, and when the first and last arrived.
//!
//! A message is identified by its `X-Bench-Id` header (set by the
//! generator), else by its `Message-ID` header.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use super::tls::{self_signed_server_config, TlsSetupError};
use sealpost::inbound::{
    Body, ConnectionInfo, ConnectionLimits, Listener, ListenerError, SessionHandler, Timeouts,
};
use sealpost::smtp::{
    Envelope, ForwardPath, MailParams, RcptParams, Reply, ReversePath, SessionConfig, Verdict,
};

/// How the sink runs.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub listen: SocketAddr,
    /// Offer STARTTLS with a self-signed certificate made at start.
    pub tls_self_signed: bool,
    /// Stop after this many distinct messages.
    pub expect: Option<u64>,
    /// Stop after this long without a new message (counted from the start
    /// until the first one arrives).
    pub idle_timeout: Duration,
}

/// What the sink saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkReport {
    /// Messages accepted, duplicates included.
    pub received: u64,
    /// Distinct ids.
    pub unique: u64,
    /// Messages whose id had been seen before.
    pub duplicates: u64,
    /// Messages without an X-Bench-Id or Message-ID header.
    pub without_id: u64,
    /// Body octets received.
    pub bytes: u64,
    /// Milliseconds since the Unix epoch.
    pub first_receipt_unix_ms: Option<u128>,
    pub last_receipt_unix_ms: Option<u128>,
    /// Why the sink stopped: `expect`, `idle` or `interrupt`.
    pub stopped_by: String,
}

impl SinkReport {
    /// Messages per second between the first and the last receipt.
    pub fn rate(&self) -> f64 {
        match (self.first_receipt_unix_ms, self.last_receipt_unix_ms) {
            (Some(first), Some(last)) if last > first => {
                self.received as f64 * 1000.0 / (last - first) as f64
            }
            _ => 0.0,
        }
    }

    /// One JSON object on one line.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "role": "sink",
            "received": self.received,
            "unique": self.unique,
            "duplicates": self.duplicates,
            "without_id": self.without_id,
            "bytes": self.bytes,
            "first_receipt_unix_ms": self.first_receipt_unix_ms,
            "last_receipt_unix_ms": self.last_receipt_unix_ms,
            "msgs_per_s": (self.rate() * 10.0).round() / 10.0,
            "stopped_by": self.stopped_by,
        })
        .to_string()
    }
}

impl std::fmt::Display for SinkReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "sink stopped by {}", self.stopped_by)?;
        writeln!(
            f,
            "received {} ({} unique, {} duplicates, {} without id), {} bytes",
            self.received, self.unique, self.duplicates, self.without_id, self.bytes
        )?;
        if let (Some(first), Some(last)) = (self.first_receipt_unix_ms, self.last_receipt_unix_ms) {
            writeln!(
                f,
                "first receipt {first} ms, last receipt {last} ms (Unix epoch)"
            )?;
            write!(
                f,
                "{:.1} msgs/s between first and last receipt",
                self.rate()
            )?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Counts {
    seen: HashSet<String>,
    report: SinkReport,
    last_activity: Option<Instant>,
}

struct SinkState {
    counts: Mutex<Counts>,
    done: Notify,
    expect: Option<u64>,
}

impl SinkState {
    fn record(&self, body: &[u8]) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        let c = &mut *counts;
        c.report.received += 1;
        c.report.bytes += body.len() as u64;
        c.report.first_receipt_unix_ms.get_or_insert(now_ms);
        c.report.last_receipt_unix_ms = Some(now_ms);
        c.last_activity = Some(Instant::now());
        match message_id(body) {
            None => c.report.without_id += 1,
            Some(id) => {
                if c.seen.insert(id) {
                    c.report.unique += 1;
                } else {
                    c.report.duplicates += 1;
                }
            }
        }
        if self.expect.is_some_and(|n| c.report.unique >= n) {
            self.done.notify_one();
        }
    }
}

/// The value of `X-Bench-Id`, else of `Message-ID`, from the header section.
pub fn message_id(body: &[u8]) -> Option<String> {
    let end = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(body.len());
    let mut message_id = None;
    for line in body[..end].split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_string();
        if name.eq_ignore_ascii_case("X-Bench-Id") {
            return Some(value);
        }
        if name.eq_ignore_ascii_case("Message-ID") {
            message_id = Some(value);
        }
    }
    message_id
}

/// A bound sink, ready to run.
pub struct Sink {
    listener: Listener,
    options: SinkOptions,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Bind(#[from] ListenerError),
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
}

impl Sink {
    /// Binds the listener and makes the certificate.
    pub async fn bind(options: SinkOptions) -> Result<Sink, SinkError> {
        let listener = Listener::bind(&[options.listen]).await?;
        let tls = if options.tls_self_signed {
            Some(self_signed_server_config(&[
                "localhost",
                "sink.bench.invalid",
            ])?)
        } else {
            None
        };
        Ok(Sink {
            listener,
            options,
            tls,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener
            .local_addrs()
            .first()
            .copied()
            .ok_or_else(|| std::io::Error::other("the sink is not bound"))
    }

    /// Accepts connections until `expect` messages, the idle timeout, or
    /// Ctrl-C; then reports.
    pub async fn run(self) -> SinkReport {
        let shared = Arc::new(SinkState {
            counts: Mutex::new(Counts::default()),
            done: Notify::new(),
            expect: self.options.expect,
        });
        let config = Arc::new(SessionConfig {
            hostname: "sink.bench.invalid".into(),
            max_message_size: 64 * 1024 * 1024,
            max_recipients: 1000,
            max_errors: 20,
            tls_available: self.tls.is_some(),
            auth_available: false,
            requiretls_available: true,
            extra_params: Vec::new(),
            extensions: Vec::new(),
        });
        // A load tool: every connection is welcome.
        let limits = ConnectionLimits {
            max_connections: 100_000,
            max_per_ip: 100_000,
            ..ConnectionLimits::default()
        };
        let started = Instant::now();
        let idle = self.options.idle_timeout;
        let stopped_by = Mutex::new("interrupt");
        let stop = async {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            let why = loop {
                tokio::select! {
                    _ = shared.done.notified() => break "expect",
                    _ = tokio::signal::ctrl_c() => break "interrupt",
                    _ = tick.tick() => {
                        let last = shared.counts.lock().ok().and_then(|c| c.last_activity).unwrap_or(started);
                        if last.elapsed() >= idle {
                            break "idle";
                        }
                    }
                }
            };
            *stopped_by.lock().unwrap_or_else(|e| e.into_inner()) = why;
        };
        self.listener
            .serve(
                shared.clone(),
                config,
                self.tls,
                limits,
                Timeouts::default(),
                stop,
            )
            .await;
        let mut report = shared
            .counts
            .lock()
            .map(|c| c.report.clone())
            .unwrap_or_default();
        report.stopped_by = stopped_by
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .to_string();
        report
    }
}

/// The sink takes every sender and recipient and discards every message.
impl SessionHandler for SinkState {
    fn mail_from(&self, _: &ConnectionInfo, _: &ReversePath, _: &MailParams) -> Verdict {
        Verdict::Accept
    }

    fn rcpt(
        &self,
        _: &ConnectionInfo,
        _: &ReversePath,
        _: usize,
        _: &ForwardPath,
        _: &RcptParams,
    ) -> Verdict {
        Verdict::Accept
    }

    async fn message(&self, _: &ConnectionInfo, _: Envelope, body: Body) -> Verdict {
        // The sink never spools: every body is in memory.
        let Body::Memory(body) = body else {
            return Verdict::Reject(Reply::new(451, (4, 3, 0), "unexpected spooled body"));
        };
        self.record(&body);
        Verdict::AcceptWith(Reply::new(250, (2, 0, 0), "Ok: discarded"))
    }
}

#[cfg(test)]
mod tests {
    use super::message_id;

    #[test]
    fn finds_the_id_header() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (
                b"Subject: x\r\nX-Bench-Id: r-1-2\r\n\r\nbody",
                Some("r-1-2"),
            ),
            (
                b"x-bench-id:  r-3 \r\nMessage-ID: <m@x>\r\n\r\n",
                Some("r-3"),
            ),
            (
                b"Message-ID: <m@x>\r\n\r\nX-Bench-Id: in-body\r\n",
                Some("<m@x>"),
            ),
            (b"Subject: none\r\n\r\nX-Bench-Id: in-body\r\n", None),
        ];
        for (body, want) in cases {
            assert_eq!(message_id(body).as_deref(), *want);
        }
    }
}
