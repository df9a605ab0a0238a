//! Errors of the SMTP client, each with the MX host, address and stage.

use std::fmt;
use std::net::SocketAddr;

use super::super::reply::{Reply, ReplyError};

/// Where in the session something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    TlsHandshake,
    Rset,
    Mail,
    Rcpt,
    Data,
    /// Sending the body and waiting for the reply after `<CRLF>.<CRLF>`.
    Body,
    Quit,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Stage::Connect => "connect",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::Helo => "HELO",
            Stage::StartTls => "STARTTLS",
            Stage::TlsHandshake => "TLS handshake",
            Stage::Rset => "RSET",
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Data => "DATA",
            Stage::Body => "end of data",
            Stage::Quit => "QUIT",
        };
        f.write_str(s)
    }
}

/// The server a connection talks to, and (once the TCP connection is up)
/// the local address it was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub mx_host: String,
    pub addr: SocketAddr,
    /// Set by the client once connected (a TLS report's `sending-mta-ip`).
    pub local: Option<SocketAddr>,
}

impl Peer {
    /// `mx_host` at `addr`, not connected yet.
    pub fn new(mx_host: impl Into<String>, addr: SocketAddr) -> Peer {
        Peer {
            mx_host: mx_host.into(),
            addr,
            local: None,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.mx_host, self.addr)
    }
}

/// Why a connection failed. After any of these the connection is gone;
/// nothing of a message was accepted unless an outcome said so.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("{peer}: connect failed: {source}")]
    Connect {
        peer: Peer,
        #[source]
        source: std::io::Error,
    },
    #[error("{peer}: timed out at {stage}")]
    Timeout { peer: Peer, stage: Stage },
    #[error("{peer}: I/O error at {stage}: {source}")]
    Io {
        peer: Peer,
        stage: Stage,
        #[source]
        source: std::io::Error,
    },
    #[error("{peer}: connection closed by the server at {stage}")]
    Closed { peer: Peer, stage: Stage },
    #[error("{peer}: malformed reply at {stage}: {source}")]
    BadReply {
        peer: Peer,
        stage: Stage,
        #[source]
        source: ReplyError,
    },
    #[error("{peer}: {stage} refused: {reply}")]
    Rejected {
        peer: Peer,
        stage: Stage,
        reply: Reply,
    },
    #[error("{peer}: TLS required and STARTTLS not offered")]
    TlsNotOffered { peer: Peer },
    #[error("{peer}: TLS handshake failed: {source}")]
    TlsHandshakeFailed {
        peer: Peer,
        #[source]
        source: std::io::Error,
        /// True under opportunistic TLS: the caller may reconnect to the
        /// same MX with [`super::TlsParams::cleartext_retry`].
        retry_cleartext_allowed: bool,
    },
    #[error("{peer}: TLS {negotiated:?} is below the required minimum {minimum}")]
    TlsBelowMinimum {
        peer: Peer,
        negotiated: rustls::ProtocolVersion,
        minimum: &'static str,
    },
    #[error("{peer}: bytes after the STARTTLS reply before the handshake (response injection)")]
    StartTlsInjection { peer: Peer },
    #[error("{peer}: invalid TLS configuration: {source}")]
    TlsConfig {
        peer: Peer,
        #[source]
        source: rustls::Error,
    },
    #[error("{peer}: connection is no longer usable")]
    NotUsable { peer: Peer },
}

impl ClientError {
    /// Whether the caller may retry the same MX in cleartext.
    pub fn retry_cleartext_allowed(&self) -> bool {
        matches!(
            self,
            ClientError::TlsHandshakeFailed {
                retry_cleartext_allowed: true,
                ..
            }
        )
    }

    /// The server's reply, when one caused the error.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            ClientError::Rejected { reply, .. } => Some(reply),
            _ => None,
        }
    }

    /// The MX host and address.
    pub fn peer(&self) -> &Peer {
        match self {
            ClientError::Connect { peer, .. }
            | ClientError::Timeout { peer, .. }
            | ClientError::Io { peer, .. }
            | ClientError::Closed { peer, .. }
            | ClientError::BadReply { peer, .. }
            | ClientError::Rejected { peer, .. }
            | ClientError::TlsNotOffered { peer }
            | ClientError::TlsHandshakeFailed { peer, .. }
            | ClientError::TlsBelowMinimum { peer, .. }
            | ClientError::StartTlsInjection { peer }
            | ClientError::TlsConfig { peer, .. }
            | ClientError::NotUsable { peer } => peer,
        }
    }
}
