//! SMTP: the protocol code, free of I/O (STYLE.md practice 1): commands
//! and envelope addresses (RFC 5321 section 4.1), replies and enhanced
//! status codes (RFC 5321 section 4.2, RFC 3463), EHLO capabilities, the
//! DATA/BDAT content receivers with the SMTP smuggling defence, and the
//! server session state machine, whose socket, TLS and timers live in
//! [`crate::inbound`]; and [`client`], the delivery client, whose
//! transaction rules are a sans-IO machine (`client::transaction`) driven
//! by a connection that does the socket and TLS I/O. See `docs/smtp.md`.

pub mod address;
pub mod client;
pub mod command;
pub mod data;
pub mod ehlo;
pub mod reply;
pub mod server;
pub mod timeouts;
pub mod transfer;

pub use address::{ForwardPath, Host, Mailbox, ReversePath};
pub use command::CommandError;
pub use command::{parse_command, BodyType, Command, MailParams, RcptParams};
pub use data::{encode_data, ContentError, DataProgress, DataReceiver};
pub use ehlo::EhloCapabilities;
pub use reply::{EnhancedCode, Reply, ReplyError, ReplyParser};
pub(crate) use server::Credentials;
pub use server::{
    Envelope, Event, Recipient, Session, SessionConfig, SessionError, SessionLimit, Transfer,
    Verdict,
};
