//! Why the inbound side refused a client or a message because of a limit:
//! one enum, so the log line, the `/metrics` counter
//! (`sealpost_smtp_refusals_total{reason=...}`) and the docs use the same
//! names. The reply itself is made where the decision is taken.

use crate::smtp::SessionLimit;

/// A limit that made sealpost refuse, or cut short, what a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// `[limits] max_connections` connections were open: `421 4.7.0`.
    Connections,
    /// `[limits] max_connections_per_ip` connections were open from the
    /// client's address or IPv6 prefix: `421 4.7.0`.
    ConnectionsPerIp,
    /// The connection lived `[limits] session_deadline`: `421 4.4.2`.
    SessionDeadline,
    /// The client did not take a reply within `[limits] write_timeout`:
    /// the connection is closed (no reply can reach it).
    WriteTimeout,
    /// `SIZE=` or the content over `[limits] max_message_size`: `552 5.3.4`.
    MessageSize,
    /// A RCPT beyond `[limits] max_recipients`: `452 4.5.3`.
    Recipients,
    /// More `Received:` fields than `[limits] max_received_headers`:
    /// `554 5.4.6`.
    MailLoop,
    /// Mail to the postmaster with no `[server] postmaster` to take it:
    /// `550 5.1.1`.
    Postmaster,
    /// The recipient's tenant has its `max_queue_messages` or
    /// `max_queue_bytes` queued: `452 4.3.1`.
    TenantQueue,
    /// The queue's file system is below `[limits] min_free_disk`:
    /// `452 4.3.1`.
    DiskReserve,
}

impl Refusal {
    /// Every reason, in the order `/metrics` lists them.
    pub const ALL: [Refusal; 10] = [
        Refusal::Connections,
        Refusal::ConnectionsPerIp,
        Refusal::SessionDeadline,
        Refusal::WriteTimeout,
        Refusal::MessageSize,
        Refusal::Recipients,
        Refusal::MailLoop,
        Refusal::Postmaster,
        Refusal::TenantQueue,
        Refusal::DiskReserve,
    ];

    /// The `reason` label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Connections => "max_connections",
            Refusal::ConnectionsPerIp => "max_connections_per_ip",
            Refusal::SessionDeadline => "session_deadline",
            Refusal::WriteTimeout => "write_timeout",
            Refusal::MessageSize => "max_message_size",
            Refusal::Recipients => "max_recipients",
            Refusal::MailLoop => "mail_loop",
            Refusal::Postmaster => "no_postmaster",
            Refusal::TenantQueue => "tenant_queue_quota",
            Refusal::DiskReserve => "min_free_disk",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<SessionLimit> for Refusal {
    fn from(limit: SessionLimit) -> Refusal {
        match limit {
            SessionLimit::MessageSize => Refusal::MessageSize,
            SessionLimit::Recipients => Refusal::Recipients,
        }
    }
}
