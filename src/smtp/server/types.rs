//! The session's interface types: its configuration, the events it asks
//! the I/O layer to act on, the verdicts the caller answers with, and the
//! envelope of a complete message.

use thiserror::Error;

use crate::smtp::address::{ForwardPath, ReversePath};
use crate::smtp::command::{MailParams, RcptParams};
use crate::smtp::data::BdatReceiver;
use crate::smtp::reply::Reply;

/// What a session is allowed to accept; shared by all sessions of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our host name, in the greeting and the EHLO reply.
    pub hostname: String,
    /// Largest message in octets, advertised as SIZE (RFC 1870).
    pub max_message_size: u64,
    /// Recipients per transaction before `452 4.5.3`.
    pub max_recipients: usize,
    /// Errors per session before `421 4.7.0` and close.
    pub max_errors: u32,
    /// Whether the I/O layer can do STARTTLS (a certificate is configured).
    pub tls_available: bool,
    /// Whether AUTH PLAIN and LOGIN are offered (RFC 4954); they are
    /// advertised and accepted only under TLS.
    pub auth_available: bool,
    /// Whether REQUIRETLS (RFC 8689) is offered: advertised after STARTTLS
    /// and accepted on MAIL FROM under TLS. On by default; off only to
    /// play a receiver that lacks it.
    pub requiretls_available: bool,
    /// MAIL/RCPT parameters, besides SIZE, BODY and SMTPUTF8, that are
    /// passed to the caller instead of getting `555` (e.g. `REQUIRETLS`).
    pub extra_params: Vec<String>,
    /// Further EHLO keywords to advertise (e.g. the transfer extension to
    /// a cluster peer, [`crate::smtp::transfer`]).
    pub extensions: Vec<String>,
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            hostname: "localhost".to_string(),
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 20,
            tls_available: false,
            auth_available: false,
            requiretls_available: true,
            extra_params: Vec::new(),
            extensions: Vec::new(),
        }
    }
}

/// One accepted recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub path: ForwardPath,
    pub params: RcptParams,
}

/// How the content was transferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    Data,
    Bdat,
}

/// The transaction being built (after an accepted MAIL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub from: ReversePath,
    pub params: MailParams,
    pub recipients: Vec<Recipient>,
    pub(super) rcpt_attempts: u32,
    pub(super) bdat: Option<BdatReceiver>,
    pub(super) body: Vec<u8>,
}

/// Everything known about a complete message except its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The name given with HELO/EHLO.
    pub helo: String,
    /// EHLO (true) or HELO.
    pub esmtp: bool,
    /// Whether the session was under TLS when the message was sent.
    pub tls: bool,
    pub from: ReversePath,
    pub params: MailParams,
    pub recipients: Vec<Recipient>,
    pub transfer: Transfer,
}

/// What the machine needs the caller to do next.
#[derive(Debug)]
pub enum Event {
    /// Write [`Session::take_output`], then read and call [`Session::receive`].
    NeedInput,
    /// HELO/EHLO was accepted (informational; any transaction was reset).
    Helo { domain: String, esmtp: bool },
    /// Decide on the sender: answer with [`Session::answer`]. Syntax, SIZE,
    /// command order and unsupported parameters were already checked.
    MailFrom {
        from: ReversePath,
        params: MailParams,
    },
    /// Decide on a recipient (relay control, TLS policy, known users):
    /// answer with [`Session::answer`]. [`Session::transaction`] shows the
    /// sender and the recipients accepted so far.
    Rcpt { to: ForwardPath, params: RcptParams },
    /// A complete, valid message. Store it, then [`Session::answer`]: accept
    /// only once it is durable. The transaction ends either way.
    Message { envelope: Envelope, body: Vec<u8> },
    /// AUTH gave credentials (RFC 4954): check them, then
    /// [`Session::answer`]: accept (`235 2.7.0`) or reject (`535 5.7.8`
    /// counts as an error; `454 4.7.0` for a temporary failure).
    Auth { credentials: Credentials },
    /// `220` was queued: write the output, run the TLS handshake on the same
    /// connection, then call [`Session::tls_established`] (or close).
    StartTls,
    /// A limit of [`SessionConfig`] was reached and the refusal is already
    /// in the output (informational: log and count it, then go on).
    LimitReached(SessionLimit),
    /// A decision is outstanding: call [`Session::answer`] first.
    AwaitingAnswer,
    /// Write the output and close the connection.
    Close,
}

/// Which limit of the session a refusal enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionLimit {
    /// `SIZE=` or the content was over `max_message_size`: `552 5.3.4`.
    MessageSize,
    /// A RCPT beyond `max_recipients`: `452 4.5.3`.
    Recipients,
}

/// The SASL mechanisms offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechanism {
    /// RFC 4616.
    Plain,
    /// The obsolete but common LOGIN (username and password prompts).
    Login,
}

/// What a client authenticated with. `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub mechanism: AuthMechanism,
    /// PLAIN's authorization identity when not empty (acting for another
    /// user; a handler normally refuses one that differs from `username`).
    pub authzid: Option<String>,
    pub username: String,
    password: String,
}

impl Credentials {
    pub fn new(
        mechanism: AuthMechanism,
        authzid: Option<String>,
        username: String,
        password: String,
    ) -> Credentials {
        Credentials {
            mechanism,
            authzid,
            username,
            password,
        }
    }

    pub fn password(&self) -> &str {
        &self.password
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The caller's answer to `MailFrom`, `Rcpt`, `Auth` or `Message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accept with the standard reply (`250 2.1.0`, `250 2.1.5`, `250 2.0.0`).
    Accept,
    /// Accept with this (2xx) reply, e.g. `250 2.0.0 Ok: queued as <id>`.
    AcceptWith(Reply),
    /// Refuse with this 4xx/5xx reply. A `421` also closes the session.
    Reject(Reply),
}

/// Misuse of the session API by the I/O layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error("answer given but no decision is outstanding")]
    NotAwaitingAnswer,
    #[error("tls_established called but STARTTLS was not accepted")]
    NotAwaitingTls,
}
