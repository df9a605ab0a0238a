//! SMTP timeouts from RFC 5321 section 4.5.3.2. The protocol code has no
//! clock: the I/O layer applies these around its reads and replies (the
//! server calls [`super::Session::timed_out`] when one fires).

use std::time::Duration;

/// Client: waiting for the 220 greeting (4.5.3.2.1).
pub(crate) const INITIAL_220: Duration = Duration::from_secs(5 * 60);
/// Client: waiting for the reply to MAIL (4.5.3.2.2).
pub const MAIL: Duration = Duration::from_secs(5 * 60);
/// Client: waiting for the reply to each RCPT (4.5.3.2.3).
pub const RCPT: Duration = Duration::from_secs(5 * 60);
/// Client: waiting for the 354 after DATA (4.5.3.2.4).
pub(crate) const DATA_INITIATION: Duration = Duration::from_secs(2 * 60);
/// Client: each send of a data block (4.5.3.2.5).
pub(crate) const DATA_BLOCK: Duration = Duration::from_secs(3 * 60);
/// Client: waiting for the reply after `<CRLF>.<CRLF>` (4.5.3.2.6).
pub(crate) const DATA_TERMINATION: Duration = Duration::from_secs(10 * 60);
/// Server: waiting for the next command or the next piece of data (4.5.3.2.7).
pub(crate) const SERVER: Duration = Duration::from_secs(5 * 60);
