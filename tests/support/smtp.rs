//! Test SMTP peers.
//!
//! - [`run_script`]: drives the sans-IO [`Session`] in memory with byte
//!   segments (what a client sends before waiting), answering its events
//!   with a closure, and records replies and messages.
//! - [`TestSmtpServer`]: a receiving SMTP server on 127.0.0.1 (optional
//!   STARTTLS with a `pki.rs` certificate) that records envelopes and
//!   bodies, answering MAIL/RCPT/DATA from a scriptable closure; for the
//!   delivery engine's tests. [`TestSmtpServer::start_slow`] waits before
//!   answering each message's data, like a slow or tarpitting receiver.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use sealpost::inbound::{
    Body, ConnectionInfo, ConnectionLimits, Listener, SessionHandler, Timeouts,
};
use sealpost::smtp::{
    Envelope, Event, ForwardPath, MailParams, RcptParams, Reply, ReplyParser, ReversePath, Session,
    SessionConfig, Verdict,
};

/// The event a [`Decide`] closure is asked about.
#[derive(Debug, Clone)]
pub enum Ask<'a> {
    Mail(&'a sealpost::smtp::ReversePath),
    Rcpt(&'a sealpost::smtp::ForwardPath),
    Message(&'a Envelope, &'a [u8]),
}

/// Answers the session's questions.
pub type Decide = dyn Fn(Ask<'_>) -> Verdict + Send + Sync;

/// Accepts everything, with a queue id on messages.
pub fn accept_all(ask: Ask<'_>) -> Verdict {
    match ask {
        Ask::Message(..) => Verdict::AcceptWith(Reply::new(250, (2, 0, 0), "Ok: queued as TEST")),
        _ => Verdict::Accept,
    }
}

/// What a scripted session did.
#[derive(Debug, Default)]
pub struct Transcript {
    pub replies: Vec<Reply>,
    pub messages: Vec<(Envelope, Vec<u8>)>,
    pub tls_handshakes: u32,
    pub closed: bool,
    /// The limits the session reported reaching, in order.
    pub limits: Vec<sealpost::smtp::SessionLimit>,
}

impl Transcript {
    /// Each reply as `CODE` or `CODE X.Y.Z`.
    pub fn codes(&self) -> Vec<String> {
        self.replies
            .iter()
            .map(|r| match r.enhanced {
                Some(e) => format!("{} {e}", r.code),
                None => r.code.to_string(),
            })
            .collect()
    }
}

/// Runs `segments` through a new session. Each segment is what the client
/// sends before it waits; `split` cuts every segment into pieces fed one at
/// a time (the result must not depend on it). A STARTTLS accepted inside a
/// segment drops the rest of that segment (plaintext sent before the
/// handshake) and the handshake "succeeds" before the next segment.
pub fn run_script(
    config: SessionConfig,
    segments: &[Vec<u8>],
    split: &dyn Fn(&[u8]) -> Vec<Vec<u8>>,
    decide: &Decide,
) -> Transcript {
    let mut session = Session::new(Arc::new(config));
    let mut transcript = Transcript::default();
    let mut parser = ReplyParser::new();
    let mut tls_pending = false;
    'segments: for segment in segments {
        if tls_pending {
            session.tls_established().expect("awaiting TLS");
            transcript.tls_handshakes += 1;
            tls_pending = false;
        }
        for piece in split(segment) {
            session.receive(&piece);
            let stop = pump(&mut session, decide, &mut transcript);
            parser.push(&session.take_output());
            while let Some(reply) = parser.next_reply() {
                transcript.replies.push(reply.expect("server reply parses"));
            }
            match stop {
                Stop::NeedInput => {}
                Stop::StartTls => {
                    tls_pending = true;
                    continue 'segments;
                }
                Stop::Close => {
                    transcript.closed = true;
                    break 'segments;
                }
            }
        }
    }
    if !transcript.closed {
        // Drain any replies that need no input (e.g. a final close).
        if let Stop::Close = pump(&mut session, decide, &mut transcript) {
            transcript.closed = true;
        }
        parser.push(&session.take_output());
        while let Some(reply) = parser.next_reply() {
            transcript.replies.push(reply.expect("server reply parses"));
        }
    }
    transcript
}

enum Stop {
    NeedInput,
    StartTls,
    Close,
}

fn pump(session: &mut Session, decide: &Decide, transcript: &mut Transcript) -> Stop {
    loop {
        match session.next_event() {
            Event::NeedInput => return Stop::NeedInput,
            Event::Helo { .. } => {}
            Event::MailFrom { from, .. } => {
                session.answer(decide(Ask::Mail(&from))).expect("pending");
            }
            Event::Rcpt { to, .. } => {
                session.answer(decide(Ask::Rcpt(&to))).expect("pending");
            }
            Event::Message { envelope, body } => {
                let verdict = decide(Ask::Message(&envelope, &body));
                transcript.messages.push((envelope, body));
                session.answer(verdict).expect("pending");
            }
            Event::Auth { .. } => {
                // The scripted peer knows no users.
                let refuse = Reply::new(535, (5, 7, 8), "Authentication credentials invalid");
                session.answer(Verdict::Reject(refuse)).expect("pending");
            }
            Event::LimitReached(limit) => transcript.limits.push(limit),
            Event::StartTls => return Stop::StartTls,
            Event::AwaitingAnswer => panic!("every event was answered"),
            Event::Close => return Stop::Close,
        }
    }
}

/// A message the test server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub envelope: Envelope,
    pub body: Vec<u8>,
    /// The TLS version in use, if any (e.g. `TLSv1_3`).
    pub tls_version: Option<String>,
    /// The connection it came on (one id per accepted connection).
    pub conn_id: u64,
}

/// A receiving SMTP server on 127.0.0.1 for tests of SMTP clients.
pub struct TestSmtpServer {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestSmtpServer {
    /// Starts listening on 127.0.0.1 (a free port). With `tls`, STARTTLS is
    /// offered with that config (see `pki::server_config`).
    pub async fn start(
        hostname: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
        decide: Arc<Decide>,
    ) -> TestSmtpServer {
        let config = SessionConfig {
            hostname: hostname.to_string(),
            ..SessionConfig::default()
        };
        TestSmtpServer::start_with_config(config, tls, decide).await
    }

    /// Like [`TestSmtpServer::start`] with a chosen session config (size
    /// limit, recipients per message, ...); `tls_available` follows `tls`.
    /// Connections run on sealpost's own listener and connection driver.
    pub async fn start_with_config(
        config: SessionConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        decide: Arc<Decide>,
    ) -> TestSmtpServer {
        let localhost: SocketAddr = "127.0.0.1:0".parse().expect("address");
        TestSmtpServer::start_on(localhost, config, tls, decide).await
    }

    /// Accepts everything in cleartext, but answers each message's data
    /// only after `delay` (other commands at once).
    pub async fn start_slow(hostname: &str, delay: std::time::Duration) -> TestSmtpServer {
        let config = SessionConfig {
            hostname: hostname.to_string(),
            ..SessionConfig::default()
        };
        let localhost: SocketAddr = "127.0.0.1:0".parse().expect("address");
        TestSmtpServer::serve(localhost, config, None, Arc::new(accept_all), delay).await
    }

    /// Like [`TestSmtpServer::start_with_config`] on a chosen address (MX
    /// hosts on 127.0.0.2, 127.0.0.3, ... sharing one port).
    pub async fn start_on(
        address: SocketAddr,
        config: SessionConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        decide: Arc<Decide>,
    ) -> TestSmtpServer {
        TestSmtpServer::serve(address, config, tls, decide, std::time::Duration::ZERO).await
    }

    async fn serve(
        address: SocketAddr,
        config: SessionConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        decide: Arc<Decide>,
        delay: std::time::Duration,
    ) -> TestSmtpServer {
        let listener = Listener::bind(&[address])
            .await
            .unwrap_or_else(|e| panic!("bind {address}: {e:?}"));
        let addr = listener.local_addrs()[0];
        let received = Arc::new(Mutex::new(Vec::new()));
        let config = Arc::new(SessionConfig {
            tls_available: tls.is_some(),
            ..config
        });
        let handler = Arc::new(Scripted {
            decide,
            store: received.clone(),
            delay,
        });
        let task = tokio::spawn(listener.serve(
            handler,
            config,
            tls,
            ConnectionLimits::default(),
            Timeouts::default(),
            std::future::pending(),
        ));
        TestSmtpServer {
            addr,
            received,
            task,
        }
    }

    /// Messages received so far, in order of completion.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

impl Drop for TestSmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers with the test's closure and records accepted messages.
struct Scripted {
    decide: Arc<Decide>,
    store: Arc<Mutex<Vec<Received>>>,
    /// Waited before answering a message's data.
    delay: std::time::Duration,
}

impl SessionHandler for Scripted {
    fn mail_from(&self, _: &ConnectionInfo, from: &ReversePath, _: &MailParams) -> Verdict {
        (self.decide)(Ask::Mail(from))
    }

    fn rcpt(
        &self,
        _: &ConnectionInfo,
        _: &ReversePath,
        _: usize,
        to: &ForwardPath,
        _: &RcptParams,
    ) -> Verdict {
        (self.decide)(Ask::Rcpt(to))
    }

    async fn message(&self, conn: &ConnectionInfo, envelope: Envelope, body: Body) -> Verdict {
        let body = match body.into_bytes() {
            Ok(body) => body,
            Err(e) => return Verdict::Reject(Reply::new(451, (4, 3, 0), e.to_string())),
        };
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let verdict = (self.decide)(Ask::Message(&envelope, &body));
        if matches!(verdict, Verdict::Accept | Verdict::AcceptWith(_)) {
            self.store.lock().expect("lock").push(Received {
                envelope,
                body,
                tls_version: conn.tls.as_ref().map(|t| format!("{:?}", t.version)),
                conn_id: conn.id,
            });
        }
        verdict
    }
}

/// Reads one complete reply from a raw client connection (30 s at most).
pub async fn read_reply<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Reply {
    use tokio::io::AsyncReadExt;
    let mut parser = ReplyParser::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(reply) = parser.next_reply() {
            return reply.expect("well-formed reply");
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), stream.read(&mut buf))
            .await
            .expect("reply in time")
            .expect("read");
        assert!(n > 0, "connection closed before a reply");
        parser.push(&buf[..n]);
    }
}

/// Sends one command line (CRLF added) and reads its reply.
pub async fn command<S>(stream: &mut S, line: &str) -> Reply
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .expect("write");
    read_reply(stream).await
}

/// A reply as `CODE` or `CODE X.Y.Z`, for tables.
pub fn code(reply: &Reply) -> String {
    match reply.enhanced {
        Some(e) => format!("{} {e}", reply.code),
        None => reply.code.to_string(),
    }
}

/// `mail` (a whole `MAIL FROM:` line, expecting 250), then `rcpt` (a
/// whole `RCPT TO:` line): the RCPT reply.
pub async fn mail_rcpt<S>(stream: &mut S, mail: &str, rcpt: &str) -> Reply
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let answer = command(stream, mail).await;
    assert_eq!(answer.code, 250, "{mail}: {answer:?}");
    command(stream, rcpt).await
}

/// `DATA` (expecting 354), then `message` and the closing dot: the reply
/// to the message.
pub async fn data<S>(stream: &mut S, message: &str) -> Reply
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    assert_eq!(command(stream, "DATA").await.code, 354);
    command(stream, &format!("{message}\r\n.")).await
}
