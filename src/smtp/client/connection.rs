//! The tokio I/O layer: one connection to one address of one MX host.
//!
//! [`Connection::connect`] reads the greeting, sends EHLO (HELO when EHLO
//! gets a 5xx, RFC 5321 section 3.2), applies the [`TlsParams`] through
//! [`plan_starttls`] and [`check_negotiated`], and sends EHLO again over TLS
//! (RFC 3207 section 4.2). It returns only when the connection may carry
//! mail under those parameters: under a required mode every failure is an
//! error raised before any MAIL command. [`Connection::send`] runs one
//! [`Transaction`] (RSET first on a reused connection, RFC 5321 4.1.1.5).
//! Every read has the RFC 5321 section 4.5.3.2 timeout of its stage
//! ([`Timeouts`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::super::ehlo::EhloCapabilities;
use super::super::reply::{Reply, ReplyParser};
use super::super::timeouts;
use super::achieved::Achieved;
use super::error::{ClientError, Peer, Stage};
use super::tls::CleartextReason;
use super::tls::{
    check_negotiated, plan_starttls, rustls_config, NegotiatedPlan, StartTlsPlan,
    TlsAuthentication, TlsParams,
};
use super::transaction::{
    Awaiting, MessageRefusal, OutboundMessage, RecipientOutcome, Step, Transaction,
};

/// Timeouts per stage. The defaults are RFC 5321 section 4.5.3.2; the
/// connect, EHLO, STARTTLS and QUIT ones, which the RFC does not name, are
/// sealpost's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub greeting: Duration,
    pub ehlo: Duration,
    /// The STARTTLS reply and the handshake.
    pub starttls: Duration,
    pub mail: Duration,
    pub rcpt: Duration,
    pub data_initiation: Duration,
    /// Writing the body (applied to the whole write).
    pub data_block: Duration,
    pub data_termination: Duration,
    pub rset: Duration,
    pub quit: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(30),
            greeting: timeouts::INITIAL_220,
            ehlo: timeouts::MAIL,
            starttls: timeouts::DATA_INITIATION,
            mail: timeouts::MAIL,
            rcpt: timeouts::RCPT,
            data_initiation: timeouts::DATA_INITIATION,
            data_block: timeouts::DATA_BLOCK,
            data_termination: timeouts::DATA_TERMINATION,
            rset: timeouts::MAIL,
            quit: Duration::from_secs(30),
        }
    }
}

impl Timeouts {
    /// The same timeout everywhere (for tests).
    pub fn uniform(d: Duration) -> Timeouts {
        Timeouts {
            connect: d,
            greeting: d,
            ehlo: d,
            starttls: d,
            mail: d,
            rcpt: d,
            data_initiation: d,
            data_block: d,
            data_termination: d,
            rset: d,
            quit: d,
        }
    }
}

/// Settings of the client, shared by its connections.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Our name in EHLO/HELO.
    pub helo_name: String,
    pub timeouts: Timeouts,
    /// Use PIPELINING when advertised.
    pub pipelining: bool,
}

impl ClientConfig {
    pub fn new(helo_name: impl Into<String>) -> ClientConfig {
        ClientConfig {
            helo_name: helo_name.into(),
            timeouts: Timeouts::default(),
            pipelining: true,
        }
    }
}

/// What [`Connection::send`] did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The transaction ran: one outcome per recipient, in envelope order.
    Attempted(Vec<RecipientOutcome>),
    /// Not offered to this server (nothing was sent); the connection stays
    /// usable.
    Refused(MessageRefusal),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open SMTP connection, ready for MAIL.
pub struct Connection {
    io: Box<dyn Io>,
    parser: ReplyParser,
    peer: Peer,
    /// `None` after a HELO fallback: no extensions.
    caps: Option<EhloCapabilities>,
    achieved: Achieved,
    config: Arc<ClientConfig>,
    transactions: u32,
    usable: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("achieved", &self.achieved)
            .field("transactions", &self.transactions)
            .field("usable", &self.usable)
            .finish()
    }
}

/// A cleartext channel with its reply parser (before STARTTLS).
struct Channel<S> {
    io: S,
    parser: ReplyParser,
    peer: Peer,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Channel<S> {
    async fn write(
        &mut self,
        bytes: &[u8],
        limit: Duration,
        stage: Stage,
    ) -> Result<(), ClientError> {
        let write = async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        };
        match tokio::time::timeout(limit, write).await {
            Err(_) => Err(ClientError::Timeout {
                peer: self.peer.clone(),
                stage,
            }),
            Ok(Err(source)) => Err(ClientError::Io {
                peer: self.peer.clone(),
                stage,
                source,
            }),
            Ok(Ok(())) => Ok(()),
        }
    }

    async fn read_reply(&mut self, limit: Duration, stage: Stage) -> Result<Reply, ClientError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(reply) = self.parser.next_reply() {
                return reply.map_err(|source| ClientError::BadReply {
                    peer: self.peer.clone(),
                    stage,
                    source,
                });
            }
            let n = match tokio::time::timeout_at(deadline, self.io.read(&mut buf)).await {
                Err(_) => {
                    return Err(ClientError::Timeout {
                        peer: self.peer.clone(),
                        stage,
                    })
                }
                Ok(Err(source)) => {
                    return Err(ClientError::Io {
                        peer: self.peer.clone(),
                        stage,
                        source,
                    })
                }
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                return Err(ClientError::Closed {
                    peer: self.peer.clone(),
                    stage,
                });
            }
            self.parser.push(&buf[..n]);
        }
    }

    async fn command(
        &mut self,
        line: &str,
        limit: Duration,
        stage: Stage,
    ) -> Result<Reply, ClientError> {
        self.write(line.as_bytes(), limit, stage).await?;
        self.read_reply(limit, stage).await
    }

    /// EHLO, or HELO after a 5xx to EHLO. `Ok(None)` means HELO worked.
    async fn hello(
        &mut self,
        config: &ClientConfig,
    ) -> Result<Option<EhloCapabilities>, ClientError> {
        let t = config.timeouts.ehlo;
        let reply = self
            .command(&format!("EHLO {}\r\n", config.helo_name), t, Stage::Ehlo)
            .await?;
        if let Some(caps) = EhloCapabilities::parse(&reply) {
            return Ok(Some(caps));
        }
        if !reply.is_permanent() {
            return Err(self.rejected(Stage::Ehlo, reply));
        }
        let reply = self
            .command(&format!("HELO {}\r\n", config.helo_name), t, Stage::Helo)
            .await?;
        if reply.is_positive() {
            Ok(None)
        } else {
            Err(self.rejected(Stage::Helo, reply))
        }
    }

    fn rejected(&self, stage: Stage, reply: Reply) -> ClientError {
        ClientError::Rejected {
            peer: self.peer.clone(),
            stage,
            reply,
        }
    }

    /// Best-effort QUIT before giving up on a connection.
    async fn quit(&mut self, limit: Duration) {
        if self.write(b"QUIT\r\n", limit, Stage::Quit).await.is_ok() {
            let _ = self.read_reply(limit, Stage::Quit).await;
        }
        let _ = self.io.shutdown().await;
    }
}

/// What one connection attempt ended with.
enum Opened {
    Ready(Box<Connection>),
    /// TLS below the minimum under opportunistic: reconnect in cleartext.
    Reconnect(CleartextReason),
}

impl Connection {
    /// Connects to `peer` and prepares the session under `tls`. Under
    /// opportunistic TLS a session below the minimum version is closed and
    /// replaced by a cleartext one; a failed handshake is returned as
    /// [`ClientError::TlsHandshakeFailed`] with `retry_cleartext_allowed`.
    pub async fn connect(
        peer: Peer,
        tls: &TlsParams,
        config: Arc<ClientConfig>,
    ) -> Result<Connection, ClientError> {
        match Connection::open(&peer, tls, config.clone(), None).await? {
            Opened::Ready(c) => Ok(*c),
            Opened::Reconnect(reason) => {
                match Connection::open(&peer, tls, config, Some(reason)).await? {
                    Opened::Ready(c) => Ok(*c),
                    // Unreachable: a forced cleartext session never negotiates TLS.
                    Opened::Reconnect(_) => Err(ClientError::NotUsable { peer }),
                }
            }
        }
    }

    async fn open(
        peer: &Peer,
        tls: &TlsParams,
        config: Arc<ClientConfig>,
        force_cleartext: Option<CleartextReason>,
    ) -> Result<Opened, ClientError> {
        let t = config.timeouts;
        let tcp = match tokio::time::timeout(t.connect, TcpStream::connect(peer.addr)).await {
            Err(_) => {
                return Err(ClientError::Timeout {
                    peer: peer.clone(),
                    stage: Stage::Connect,
                })
            }
            Ok(Err(source)) => {
                return Err(ClientError::Connect {
                    peer: peer.clone(),
                    source,
                })
            }
            Ok(Ok(s)) => s,
        };
        let _ = tcp.set_nodelay(true);
        // Every error from here on names the local address too.
        let peer = &Peer {
            local: tcp.local_addr().ok(),
            ..peer.clone()
        };
        let mut ch = Channel {
            io: tcp,
            parser: ReplyParser::new(),
            peer: peer.clone(),
        };
        let greeting = ch.read_reply(t.greeting, Stage::Greeting).await?;
        if greeting.code != 220 {
            ch.quit(t.quit).await;
            return Err(ch.rejected(Stage::Greeting, greeting));
        }
        let caps = ch.hello(&config).await?;
        let plan = match force_cleartext {
            Some(reason) => StartTlsPlan::Cleartext(reason),
            None => plan_starttls(tls, caps.as_ref()),
        };
        let mut achieved = Achieved {
            mx_host: peer.mx_host.clone(),
            peer: peer.addr,
            server_name: super::achieved::server_name_text(&tls.server_name),
            tls_version: None,
            cipher: None,
            authentication: TlsAuthentication::None,
            cleartext_reason: None,
        };
        let cleartext = |ch: Channel<TcpStream>, caps, mut achieved: Achieved, reason| {
            achieved.cleartext_reason = Some(reason);
            Opened::Ready(Box::new(Connection {
                io: Box::new(ch.io),
                parser: ch.parser,
                peer: ch.peer,
                caps,
                achieved,
                config: config.clone(),
                transactions: 0,
                usable: true,
            }))
        };
        match plan {
            StartTlsPlan::RefuseNotOffered => {
                ch.quit(t.quit).await;
                return Err(ClientError::TlsNotOffered { peer: peer.clone() });
            }
            StartTlsPlan::Cleartext(reason) => return Ok(cleartext(ch, caps, achieved, reason)),
            StartTlsPlan::Start => {}
        }
        let reply = ch
            .command("STARTTLS\r\n", t.starttls, Stage::StartTls)
            .await?;
        if reply.code != 220 {
            if tls.requirement.requires_tls() {
                ch.quit(t.quit).await;
                return Err(ch.rejected(Stage::StartTls, reply));
            }
            return Ok(cleartext(
                ch,
                caps,
                achieved,
                CleartextReason::StartTlsRefused,
            ));
        }
        // RFC 3207 section 4.2 / CVE-2011-0411: nothing may precede the handshake.
        if ch.parser.buffered() > 0 {
            return Err(ClientError::StartTlsInjection { peer: peer.clone() });
        }
        let rustls = rustls_config(&tls.requirement).map_err(|source| ClientError::TlsConfig {
            peer: peer.clone(),
            source,
        })?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(rustls));
        let retry_cleartext_allowed = !tls.requirement.requires_tls();
        let handshake = connector.connect(tls.server_name.clone(), ch.io);
        let stream = match tokio::time::timeout(t.starttls, handshake).await {
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
            Ok(r) => r,
        }
        .map_err(|source| ClientError::TlsHandshakeFailed {
            peer: peer.clone(),
            source,
            retry_cleartext_allowed,
        })?;
        let (version, cipher) = {
            let session = stream.get_ref().1;
            (
                session.protocol_version(),
                session
                    .negotiated_cipher_suite()
                    .map(|s| format!("{:?}", s.suite())),
            )
        };
        let mut ch = Channel {
            io: stream,
            parser: ReplyParser::new(),
            peer: peer.clone(),
        };
        let Some(version) = version else {
            return Err(ClientError::NotUsable { peer: peer.clone() });
        };
        match check_negotiated(tls, version) {
            NegotiatedPlan::Proceed => {}
            NegotiatedPlan::ReconnectCleartext => {
                ch.quit(t.quit).await;
                return Ok(Opened::Reconnect(CleartextReason::BelowMinimum {
                    negotiated: version,
                }));
            }
            NegotiatedPlan::Refuse => {
                ch.quit(t.quit).await;
                return Err(ClientError::TlsBelowMinimum {
                    peer: peer.clone(),
                    negotiated: version,
                    minimum: tls.min_version.as_str(),
                });
            }
        }
        let caps = ch.hello(&config).await?;
        achieved.tls_version = Some(version);
        achieved.cipher = cipher;
        achieved.authentication = tls.requirement.authentication();
        Ok(Opened::Ready(Box::new(Connection {
            io: Box::new(ch.io),
            parser: ch.parser,
            peer: ch.peer,
            caps,
            achieved,
            config,
            transactions: 0,
            usable: true,
        })))
    }

    /// The server this connection goes to.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// What the connection achieved (TLS version, authentication, peer).
    pub fn achieved(&self) -> &Achieved {
        &self.achieved
    }

    /// The server's EHLO capabilities (`None` after a HELO fallback).
    pub fn capabilities(&self) -> Option<&EhloCapabilities> {
        self.caps.as_ref()
    }

    /// Transactions started on this connection (for messages-per-connection
    /// limits).
    pub fn transactions(&self) -> u32 {
        self.transactions
    }

    /// False once the server closed or an error left the state unknown.
    pub fn is_usable(&self) -> bool {
        self.usable
    }

    fn channel(&mut self) -> Channel<&mut Box<dyn Io>> {
        Channel {
            io: &mut self.io,
            parser: std::mem::take(&mut self.parser),
            peer: self.peer.clone(),
        }
    }

    /// Sends one message. On `Err` the connection is no longer usable and
    /// the recipients' fate is unknown unless the error says otherwise
    /// (treat them as temporary failures).
    pub async fn send(&mut self, message: &OutboundMessage<'_>) -> Result<Delivery, ClientError> {
        self.send_with(message, &[], &[]).await
    }

    /// [`Connection::send`] with parameters added to MAIL (`mail`) and to
    /// each recipient's RCPT (`rcpt`, by recipient), see
    /// [`Transaction::with_params`].
    pub(crate) async fn send_with(
        &mut self,
        message: &OutboundMessage<'_>,
        mail: &[String],
        rcpt: &[Vec<String>],
    ) -> Result<Delivery, ClientError> {
        if !self.usable {
            return Err(ClientError::NotUsable {
                peer: self.peer.clone(),
            });
        }
        if message.requiretls && !self.achieved.carries_requiretls() {
            // RFC 8689 section 4.2.1: never over TLS that is not
            // authenticated (the planner gives such a message no such
            // host; this holds for a pooled connection too).
            return Ok(Delivery::Refused(MessageRefusal::RequireTlsUnauthenticated));
        }
        let caps = self.caps.clone().unwrap_or_default();
        let mut transaction = match Transaction::new(*message, &caps, self.config.pipelining) {
            Ok(t) => t.with_params(mail, rcpt),
            Err(refusal) => return Ok(Delivery::Refused(refusal)),
        };
        let timeouts = self.config.timeouts;
        let reset = self.transactions > 0;
        self.transactions += 1;
        self.usable = false;
        let mut ch = self.channel();
        let result = async {
            if reset {
                let reply = ch.command("RSET\r\n", timeouts.rset, Stage::Rset).await?;
                if !reply.is_positive() {
                    return Err(ch.rejected(Stage::Rset, reply));
                }
            }
            let mut step = transaction.start();
            loop {
                step = match step {
                    Step::Send(bytes) => {
                        let (limit, stage) = match transaction.awaiting() {
                            Some(Awaiting::Body) => (timeouts.data_block, Stage::Body),
                            other => stage_of(other, &timeouts),
                        };
                        ch.write(&bytes, limit, stage).await?;
                        Step::Read
                    }
                    Step::Read => {
                        let (limit, stage) = stage_of(transaction.awaiting(), &timeouts);
                        let reply = ch.read_reply(limit, stage).await?;
                        transaction.on_reply(reply)
                    }
                    Step::Done => break,
                }
            }
            Ok(transaction.server_closing())
        }
        .await;
        self.parser = ch.parser;
        let closing = result?;
        self.usable = !closing;
        Ok(Delivery::Attempted(transaction.outcomes()))
    }

    /// Ends the session with QUIT (RFC 5321 4.1.1.10), best effort.
    pub async fn quit(mut self) {
        let limit = self.config.timeouts.quit;
        let mut ch = self.channel();
        ch.quit(limit).await;
    }
}

fn stage_of(awaiting: Option<Awaiting>, t: &Timeouts) -> (Duration, Stage) {
    match awaiting {
        Some(Awaiting::Mail) | None => (t.mail, Stage::Mail),
        Some(Awaiting::Rcpt(_)) => (t.rcpt, Stage::Rcpt),
        Some(Awaiting::Data) => (t.data_initiation, Stage::Data),
        Some(Awaiting::Body) | Some(Awaiting::Discard) => (t.data_termination, Stage::Body),
    }
}
