//! The inbound SMTP listener: sockets, connection limits, timeouts and
//! STARTTLS around the sans-IO [`crate::smtp::Session`].
//!
//! The connection loop makes no decision of its own: it asks a
//! [`SessionHandler`], so the same loop serves the real server and the
//! benchmark sink. The real server's handler is [`reception`] (TLS peer
//! policy, relay control, valid recipients, one queue transaction before
//! `250`), with [`storage`] (disk reserve, tenant quotas) and [`refusal`]
//! (the replies of limits).

pub mod connection;
pub mod listener;
pub mod reception;
pub mod refusal;
pub mod storage;
pub mod tls_request;
pub mod trace;
pub mod transfer;

use std::future::Future;
use std::net::SocketAddr;

use crate::smtp::{
    Credentials, Envelope, ForwardPath, MailParams, RcptParams, Reply, ReversePath, Verdict,
};
pub use sealpost_queue::{Body, Spool};

/// Content a session holds in memory before it moves it to the handler's
/// spool: with 32 sessions in DATA, at most about 32 x 2 x this is held.
pub const SPILL_BYTES: usize = 1024 * 1024;

pub use connection::{serve_connection, StopSignal, Timeouts};
pub use listener::{
    client_key, ConnectionLimits, ConnectionSettings, Listener, ListenerError, SettingsSource,
    CLOSE_MARGIN, DEFAULT_DRAIN,
};
pub use refusal::Refusal;

/// What the I/O layer knows about a connection, for decisions and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// A number unique within this process, for log correlation.
    pub id: u64,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Set once STARTTLS completed.
    pub tls: Option<TlsInfo>,
    /// The HELO/EHLO name, once given.
    pub helo: Option<String>,
    /// The user name SMTP AUTH succeeded with.
    pub authenticated: Option<String>,
}

/// What a TLS handshake achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    pub version: rustls::ProtocolVersion,
    /// The cipher suite's IANA name, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The host name the client asked for with SNI.
    pub sni: Option<String>,
}

impl TlsInfo {
    /// The version as people write it (`TLSv1.3`).
    pub fn version_name(&self) -> &'static str {
        match self.version {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            rustls::ProtocolVersion::TLSv1_1 => "TLSv1.1",
            rustls::ProtocolVersion::TLSv1_0 => "TLSv1.0",
            _ => "TLS (unknown version)",
        }
    }
}

/// The decisions a session needs. `mail_from` and `rcpt` are synchronous:
/// they read an immutable policy snapshot and answer without a round trip.
/// `message` stores the message and answers only once it is durable.
pub trait SessionHandler: Send + Sync + 'static {
    fn mail_from(&self, conn: &ConnectionInfo, from: &ReversePath, params: &MailParams) -> Verdict;

    /// `accepted` are the recipients accepted so far in this transaction.
    fn rcpt(
        &self,
        conn: &ConnectionInfo,
        from: &ReversePath,
        accepted: usize,
        to: &ForwardPath,
        params: &RcptParams,
    ) -> Verdict;

    fn message(
        &self,
        conn: &ConnectionInfo,
        envelope: Envelope,
        body: Body,
    ) -> impl Future<Output = Verdict> + Send;

    /// Where the content of a large message goes while it arrives, so the
    /// session does not hold it in memory ([`SPILL_BYTES`] at a time). The
    /// default keeps every message in memory.
    fn spool(&self) -> Option<Spool> {
        None
    }

    /// Checks SMTP AUTH credentials (only asked when the session config
    /// offers AUTH). The default knows no users.
    fn auth(
        &self,
        _conn: &ConnectionInfo,
        _credentials: Credentials,
    ) -> impl Future<Output = Verdict> + Send {
        std::future::ready(Verdict::Reject(Reply::new(
            535,
            (5, 7, 8),
            "Authentication credentials invalid",
        )))
    }

    /// A limit refused or cut short this connection (already logged by the
    /// I/O layer); for counters. The default does nothing.
    fn refused(&self, _conn: &ConnectionInfo, _refusal: Refusal) {}
}
