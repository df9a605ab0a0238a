//! The load generator: many concurrent SMTP connections (tokio tasks), each
//! sending a number of messages of a given size, with STARTTLS on request
//! and PIPELINING (MAIL, RCPT and DATA in one write) when the server offers
//! it. Every message carries a unique `X-Bench-Id` header for the sink.
//!
//! Latency is the time from writing the end of data (`<CRLF>.<CRLF>`) to
//! reading the final reply.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::pki_types::ServerName;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::tls::{accept_any_client_config, TlsSetupError};
use sealpost::smtp::{EhloCapabilities, Reply, ReplyError, ReplyParser};
use sealpost::tls::MaybeTls;

/// How the generator runs.
#[derive(Debug, Clone)]
pub struct SendOptions {
    pub to: SocketAddr,
    pub connections: usize,
    pub messages_per_connection: usize,
    /// Approximate message size in octets (headers included).
    pub size: usize,
    pub starttls: bool,
    pub from: String,
    /// Recipients of every message, comma-separated.
    pub rcpt: String,
    pub ehlo: String,
    /// Prefix of every X-Bench-Id, so runs can be told apart.
    pub run_id: String,
}

/// What the generator measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SendReport {
    /// Messages whose data was sent completely.
    pub sent: u64,
    /// Messages answered with 2xx after the data.
    pub accepted: u64,
    /// Messages refused at MAIL, RCPT, DATA or after the data.
    pub rejected: u64,
    /// Connections that ended with an error.
    pub failed_connections: u64,
    /// The first connection error, for the operator.
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub start_unix_ms: u128,
    pub end_unix_ms: u128,
    /// Sorted latencies of accepted messages.
    pub latencies: Vec<Duration>,
}

impl SendReport {
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.accepted as f64 / secs
        } else {
            0.0
        }
    }

    /// Nearest-rank percentile of the latencies (`p` in 0..=100).
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    fn ms(d: Duration) -> f64 {
        (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
    }

    /// One JSON object on one line.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "role": "send",
            "sent": self.sent,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "failed_connections": self.failed_connections,
            "first_error": self.first_error,
            "elapsed_s": (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "msgs_per_s": (self.rate() * 10.0).round() / 10.0,
            "latency_ms": {
                "p50": Self::ms(self.percentile(50.0)),
                "p90": Self::ms(self.percentile(90.0)),
                "p99": Self::ms(self.percentile(99.0)),
                "max": Self::ms(self.latencies.last().copied().unwrap_or_default()),
            },
            "start_unix_ms": self.start_unix_ms,
            "end_unix_ms": self.end_unix_ms,
        })
        .to_string()
    }
}

impl std::fmt::Display for SendReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "sent {}, accepted {}, rejected {}, failed connections {}",
            self.sent, self.accepted, self.rejected, self.failed_connections
        )?;
        if let Some(e) = &self.first_error {
            writeln!(f, "first error: {e}")?;
        }
        writeln!(
            f,
            "{:.1} msgs/s accepted over {:.3} s",
            self.rate(),
            self.elapsed.as_secs_f64()
        )?;
        write!(
            f,
            "latency end-of-data to reply: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            Self::ms(self.percentile(50.0)),
            Self::ms(self.percentile(90.0)),
            Self::ms(self.percentile(99.0)),
            Self::ms(self.latencies.last().copied().unwrap_or_default())
        )
    }
}

/// Why a connection stopped early.
#[derive(Debug, Error)]
pub enum SendError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("server closed the connection")]
    Closed,
    #[error("bad reply: {0}")]
    Reply(#[from] ReplyError),
    #[error("unexpected reply to {command}: {reply}")]
    Unexpected { command: &'static str, reply: Reply },
    #[error("server does not offer STARTTLS")]
    NoStartTls,
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Runs the whole load and reports.
pub async fn run(options: SendOptions) -> Result<SendReport, SendError> {
    let tls = if options.starttls {
        Some(accept_any_client_config())
    } else {
        None
    };
    let options = Arc::new(options);
    let filler = Arc::new(filler(options.size));
    let start_unix_ms = unix_ms();
    let started = Instant::now();
    let tasks: Vec<_> = (0..options.connections)
        .map(|conn| {
            let (options, tls, filler) = (options.clone(), tls.clone(), filler.clone());
            tokio::spawn(async move {
                let mut stats = ConnStats::default();
                let result = connection(conn, &options, tls, &filler, &mut stats).await;
                (stats, result)
            })
        })
        .collect();
    let mut report = SendReport {
        start_unix_ms,
        ..SendReport::default()
    };
    for task in tasks {
        let (stats, result) = match task.await {
            Ok(done) => done,
            Err(e) => (
                ConnStats::default(),
                Err(SendError::Io(std::io::Error::other(e))),
            ),
        };
        report.sent += stats.sent;
        report.accepted += stats.accepted;
        report.rejected += stats.rejected;
        report.latencies.extend(stats.latencies);
        if let Err(e) = result {
            report.failed_connections += 1;
            report.first_error.get_or_insert_with(|| e.to_string());
        }
    }
    report.elapsed = started.elapsed();
    report.end_unix_ms = unix_ms();
    report.latencies.sort_unstable();
    Ok(report)
}

#[derive(Default)]
struct ConnStats {
    sent: u64,
    accepted: u64,
    rejected: u64,
    latencies: Vec<Duration>,
}

/// Body lines after the headers, about `size` octets in all. No line starts
/// with a dot, so no stuffing is needed.
fn filler(size: usize) -> Vec<u8> {
    let line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tem\r\n";
    let target = size.saturating_sub(300);
    let mut body = Vec::with_capacity(target + line.len());
    while body.len() < target {
        body.extend_from_slice(line);
    }
    body
}

struct Client {
    stream: MaybeTls,
    parser: ReplyParser,
    buf: Vec<u8>,
}

impl Client {
    async fn reply(&mut self) -> Result<Reply, SendError> {
        loop {
            if let Some(reply) = self.parser.next_reply() {
                return Ok(reply?);
            }
            let n = self.stream.read(&mut self.buf).await?;
            if n == 0 {
                return Err(SendError::Closed);
            }
            self.parser.push(&self.buf[..n]);
        }
    }

    async fn expect(&mut self, command: &'static str, class: u16) -> Result<Reply, SendError> {
        let reply = self.reply().await?;
        if reply.code / 100 != class {
            return Err(SendError::Unexpected { command, reply });
        }
        Ok(reply)
    }

    async fn ehlo(&mut self, name: &str) -> Result<EhloCapabilities, SendError> {
        self.stream
            .write_all(format!("EHLO {name}\r\n").as_bytes())
            .await?;
        let reply = self.expect("EHLO", 2).await?;
        EhloCapabilities::parse(&reply).ok_or(SendError::Unexpected {
            command: "EHLO",
            reply,
        })
    }
}

async fn connection(
    conn: usize,
    options: &SendOptions,
    tls: Option<Arc<rustls::ClientConfig>>,
    filler: &[u8],
    stats: &mut ConnStats,
) -> Result<(), SendError> {
    let tcp = TcpStream::connect(options.to)
        .await
        .map_err(|source| SendError::Connect {
            addr: options.to,
            source,
        })?;
    tcp.set_nodelay(true)?;
    let mut client = Client {
        stream: MaybeTls::Plain(tcp),
        parser: ReplyParser::new(),
        buf: vec![0u8; 16 * 1024],
    };
    client.expect("greeting", 2).await?;
    let mut caps = client.ehlo(&options.ehlo).await?;
    if let Some(tls) = tls {
        if !caps.starttls {
            return Err(SendError::NoStartTls);
        }
        client.stream.write_all(b"STARTTLS\r\n").await?;
        client.expect("STARTTLS", 2).await?;
        let plain = client.stream.into_plain()?;
        let name = ServerName::IpAddress(options.to.ip().into());
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, plain)
            .await?;
        client = Client {
            stream: MaybeTls::Client(Box::new(stream)),
            parser: ReplyParser::new(),
            buf: client.buf,
        };
        caps = client.ehlo(&options.ehlo).await?;
    }
    let rcpts: Vec<&str> = options.rcpt.split(',').map(str::trim).collect();
    let rcpt_lines: String = rcpts.iter().map(|r| format!("RCPT TO:<{r}>\r\n")).collect();
    let envelope = format!("MAIL FROM:<{}>\r\n{rcpt_lines}DATA\r\n", options.from);
    let mut message = Vec::with_capacity(filler.len() + 512);
    for m in 0..options.messages_per_connection {
        let id = format!("{}-{conn}-{m}", options.run_id);
        if caps.pipelining {
            client.stream.write_all(envelope.as_bytes()).await?;
        } else {
            client
                .stream
                .write_all(format!("MAIL FROM:<{}>\r\n", options.from).as_bytes())
                .await?;
        }
        let mail = client.reply().await?;
        let mut rcpt_ok = false;
        if caps.pipelining || mail.is_positive() {
            for r in &rcpts {
                if !caps.pipelining {
                    client
                        .stream
                        .write_all(format!("RCPT TO:<{r}>\r\n").as_bytes())
                        .await?;
                }
                rcpt_ok |= client.reply().await?.is_positive();
            }
        }
        if !caps.pipelining && rcpt_ok {
            client.stream.write_all(b"DATA\r\n").await?;
        }
        let data = if caps.pipelining || rcpt_ok {
            Some(client.reply().await?)
        } else {
            None
        };
        if data.as_ref().is_none_or(|r| r.code != 354) {
            stats.rejected += 1;
            if mail.is_positive() {
                client.stream.write_all(b"RSET\r\n").await?;
                client.expect("RSET", 2).await?;
            }
            continue;
        }
        message.clear();
        message.extend_from_slice(
            format!(
                "From: <{from}>\r\nTo: <{rcpt}>\r\nSubject: sealpost-bench {id}\r\n\
                 Message-ID: <{id}@sealpost-bench.invalid>\r\nX-Bench-Id: {id}\r\n\r\n",
                from = options.from,
                rcpt = rcpts.join(">, <"),
            )
            .as_bytes(),
        );
        message.extend_from_slice(filler);
        message.extend_from_slice(b".\r\n");
        client.stream.write_all(&message).await?;
        let sent_at = Instant::now();
        stats.sent += 1;
        let reply = client.reply().await?;
        if reply.is_positive() {
            stats.accepted += 1;
            stats.latencies.push(sent_at.elapsed());
        } else {
            stats.rejected += 1;
        }
    }
    client.stream.write_all(b"QUIT\r\n").await?;
    let _ = client.reply().await;
    Ok(())
}
