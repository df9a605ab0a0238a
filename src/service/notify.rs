//! The systemd notify protocol (`sd_notify(3)`), through the `sd-notify`
//! crate: one datagram to the Unix socket named by `NOTIFY_SOCKET`. Without
//! that variable (not started by systemd, or not `Type=notify`) every call
//! does nothing. A failed send is logged and otherwise ignored: the service
//! manager's view is advisory, the mail flow must not depend on it.
//!
//! What sealpost sends, and when:
//!
//! | state | when |
//! |---|---|
//! | `READY=1` + `STATUS=` | the queue is open, the listeners and the admin socket are bound, the delivery engine runs; again after each reload |
//! | `RELOADING=1` + `MONOTONIC_USEC=` | a reload begins (SIGHUP or `POST /reload`) |
//! | `STOPPING=1` + `STATUS=` | SIGTERM or SIGINT: the graceful stop begins |
//! | `WATCHDOG=1` | from the delivery engine's loop (`super::heartbeat`) |

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// The service is up; `status` says what it serves.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload begins; [`ready`] follows when it ended (either way).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// The graceful stop begins.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// A free-form status line (`systemctl status` shows it).
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// The watchdog keep-alive.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}
