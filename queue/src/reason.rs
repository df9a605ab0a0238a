//! Why a delivery attempt ended as it did, as one typed value: the queue
//! keeps it with every attempt and every recipient's outcome, and the DSN
//! (RFC 3464), the logs, the admin socket and the metrics all render this
//! same value. Nothing reads a reason back from its text.
//!
//! The serde form is stable (an object tagged by `kind`, kebab-case names).
//! Records written before reasons were typed hold a plain string where a
//! reason now stands: they still read, as [`Reason::Legacy`], shown as
//! they were written and given the generic status of their outcome.

use std::fmt;
use std::net::IpAddr;
use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serialize};

use crate::types::to_ms;

/// An RFC 3463 enhanced status code, `class.subject.detail` (e.g. 5.1.1);
/// stored as `[5, 1, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Status(pub u8, pub u16, pub u16);

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// What went wrong locally (before or beside the remote server's reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalCause {
    /// The domain publishes a null MX (RFC 7505).
    NullMx,
    /// The domain does not exist, or has neither MX nor address records.
    NoMailDomain,
    /// A DNS lookup (MX, address, TLSA) failed or was bogus.
    DnsFailure,
    /// No host of the destination has an address to connect to.
    NoAddress,
    /// A managed domain's inbound mail has no downstream route configured.
    NoRoute,
    /// The connection could not be opened, or was lost before the message.
    ConnectionFailed,
    /// The server did not answer in time.
    Timeout,
    /// The server answered something that is not SMTP.
    ProtocolError,
    /// The server rejected the session (greeting, EHLO, STARTTLS).
    SessionRejected,
    /// STARTTLS is required and the server does not offer it.
    TlsNotOffered,
    /// The negotiated TLS version is below the configured minimum.
    TlsBelowMinimum,
    /// The TLS handshake failed.
    TlsHandshakeFailed,
    /// Bytes were injected after STARTTLS (a possible attack).
    StartTlsInjection,
    /// The TLS parameters of a host could not be built (bad name, no roots).
    TlsSetup,
    /// The server would not take this message as it is (e.g. its size).
    MessageRefused,
    /// The connection failed after the body was sent: fate unknown.
    ConnectionLostAfterBody,
    /// A queued address no longer parses.
    BadAddress,
    /// The policy the message was accepted under cannot be read.
    BadPolicy,
    /// An operator bounced the message.
    Operator,
    /// The message asked for REQUIRETLS (RFC 8689) and this host cannot
    /// carry it: its TLS is not authenticated, or it does not advertise
    /// REQUIRETLS.
    RequireTls,
}

impl LocalCause {
    /// The stable name (as stored, and as a metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            LocalCause::NullMx => "null-mx",
            LocalCause::NoMailDomain => "no-mail-domain",
            LocalCause::DnsFailure => "dns-failure",
            LocalCause::NoAddress => "no-address",
            LocalCause::NoRoute => "no-route",
            LocalCause::ConnectionFailed => "connection-failed",
            LocalCause::Timeout => "timeout",
            LocalCause::ProtocolError => "protocol-error",
            LocalCause::SessionRejected => "session-rejected",
            LocalCause::TlsNotOffered => "tls-not-offered",
            LocalCause::TlsBelowMinimum => "tls-below-minimum",
            LocalCause::TlsHandshakeFailed => "tls-handshake-failed",
            LocalCause::StartTlsInjection => "starttls-injection",
            LocalCause::TlsSetup => "tls-setup",
            LocalCause::MessageRefused => "message-refused",
            LocalCause::ConnectionLostAfterBody => "connection-lost-after-body",
            LocalCause::BadAddress => "bad-address",
            LocalCause::BadPolicy => "bad-policy",
            LocalCause::Operator => "operator",
            LocalCause::RequireTls => "requiretls",
        }
    }
}

/// A TLS authentication failure in the RFC 8460 section 4.3 vocabulary
/// (the `result-type` of TLS reports), shared by DANE and MTA-STS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsFailure {
    StarttlsNotSupported,
    CertificateHostMismatch,
    CertificateExpired,
    CertificateNotTrusted,
    ValidationFailure,
    TlsaInvalid,
    DnssecInvalid,
    /// `mandatory-dane` and the MX host has no DNSSEC-validated usable
    /// TLSA records (RFC 8460 section 4.3).
    DaneRequired,
    StsPolicyFetchError,
    StsPolicyInvalid,
    StsWebpkiInvalid,
}

impl TlsFailure {
    /// The RFC 8460 name.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsFailure::StarttlsNotSupported => "starttls-not-supported",
            TlsFailure::CertificateHostMismatch => "certificate-host-mismatch",
            TlsFailure::CertificateExpired => "certificate-expired",
            TlsFailure::CertificateNotTrusted => "certificate-not-trusted",
            TlsFailure::ValidationFailure => "validation-failure",
            TlsFailure::TlsaInvalid => "tlsa-invalid",
            TlsFailure::DnssecInvalid => "dnssec-invalid",
            TlsFailure::DaneRequired => "dane-required",
            TlsFailure::StsPolicyFetchError => "sts-policy-fetch-error",
            TlsFailure::StsPolicyInvalid => "sts-policy-invalid",
            TlsFailure::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }
}

/// Where a failure happened: the host and the address tried, when one was,
/// and the local address the connection came from, when one was made
/// (a TLS report's `sending-mta-ip`; not part of the text shown).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Place {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<IpAddr>,
}

impl Place {
    pub fn none() -> Place {
        Place::default()
    }
    pub fn host(host: &str) -> Place {
        Place {
            host: Some(host.to_string()),
            ip: None,
            local: None,
        }
    }
    pub fn at(host: &str, ip: IpAddr) -> Place {
        Place {
            host: Some(host.to_string()),
            ip: Some(ip),
            local: None,
        }
    }

    /// The same place, tried from the local address `local`.
    pub fn from_local(self, local: Option<IpAddr>) -> Place {
        Place { local, ..self }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, &self.ip) {
            (Some(host), Some(ip)) => write!(f, "{host} [{ip}]: "),
            (Some(host), None) => write!(f, "{host}: "),
            (None, Some(ip)) => write!(f, "[{ip}]: "),
            (None, None) => Ok(()),
        }
    }
}

/// Why an attempt ended as it did (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reason {
    /// The remote server's reply: `host [ip] said: 550 5.1.1 text`.
    Remote {
        host: String,
        ip: IpAddr,
        code: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<Status>,
        /// The reply's text lines, joined by a space.
        text: String,
    },
    /// A local cause, with the RFC 3463 status its DSN gives.
    Local {
        cause: LocalCause,
        status: Status,
        #[serde(flatten)]
        place: Place,
        detail: String,
    },
    /// DANE (RFC 7672) refused the host or the destination.
    Dane {
        failure: TlsFailure,
        #[serde(flatten)]
        place: Place,
        detail: String,
    },
    /// An MTA-STS enforce policy (RFC 8461) refused the host or the
    /// destination.
    MtaSts {
        failure: TlsFailure,
        #[serde(flatten)]
        place: Place,
        detail: String,
    },
    /// Held back without an attempt: the destination is paused until
    /// `until` because of `cause`.
    Paused {
        #[serde(with = "crate::types::ms_time")]
        until: SystemTime,
        cause: Box<Reason>,
    },
    /// The queue could not read what the attempt needs.
    Queue { detail: String },
    /// Several hosts each failed for their own reason, in the order tried
    /// (grouped and given a status by the last one).
    Hosts { each: Vec<Reason> },
    /// A reason recorded before reasons were typed, as it was written.
    Legacy { text: String },
}

/// The part of a reason that groups it with others of the same cause
/// (`top defer reasons`, metrics): never its text, times or hosts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ReasonGroup {
    /// `remote`, `local`, `dane`, `mta-sts`, `paused`, `queue`, `legacy`,
    /// or `paused/<kind>` for a pause.
    pub kind: String,
    /// The cause within the kind: the reply code and status, the local
    /// cause, the RFC 8460 result type, or (legacy) the text itself.
    pub cause: String,
}

impl Reason {
    /// A local cause with its status and no host.
    pub fn local(cause: LocalCause, status: Status, detail: impl Into<String>) -> Reason {
        Reason::Local {
            cause,
            status,
            place: Place::none(),
            detail: detail.into(),
        }
    }

    /// An operator's bounce, with the reason they gave (RFC 3463 5.0.0:
    /// other or undefined status).
    pub fn operator(why: &str) -> Reason {
        Reason::local(LocalCause::Operator, Status(5, 0, 0), why)
    }

    /// The reasons of several hosts as one (one alone stays itself).
    pub fn hosts(mut each: Vec<Reason>) -> Reason {
        if each.len() == 1 {
            if let Some(one) = each.pop() {
                return one;
            }
        }
        Reason::Hosts { each }
    }

    /// The same reason, its place tried from the local address `local`
    /// (reasons without a place are returned as they are).
    pub fn with_local(self, local: Option<IpAddr>) -> Reason {
        match self {
            Reason::Local {
                cause,
                status,
                place,
                detail,
            } => Reason::Local {
                cause,
                status,
                place: place.from_local(local),
                detail,
            },
            Reason::Dane {
                failure,
                place,
                detail,
            } => Reason::Dane {
                failure,
                place: place.from_local(local),
                detail,
            },
            Reason::MtaSts {
                failure,
                place,
                detail,
            } => Reason::MtaSts {
                failure,
                place: place.from_local(local),
                detail,
            },
            other => other,
        }
    }

    /// The stable name of the variant (as stored in `kind`; a metrics
    /// label); several hosts' reasons are named by the last one.
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::Remote { .. } => "remote",
            Reason::Local { .. } => "local",
            Reason::Dane { .. } => "dane",
            Reason::MtaSts { .. } => "mta-sts",
            Reason::Paused { .. } => "paused",
            Reason::Queue { .. } => "queue",
            Reason::Hosts { each } => each.last().map_or("hosts", Reason::kind),
            Reason::Legacy { .. } => "legacy",
        }
    }

    /// What groups this reason with others of the same cause.
    pub fn group(&self) -> ReasonGroup {
        let (kind, cause) = match self {
            Reason::Remote { code, status, .. } => (
                "remote".to_string(),
                match status {
                    Some(status) => format!("{code} {status}"),
                    None => code.to_string(),
                },
            ),
            Reason::Local { cause, .. } => ("local".into(), cause.as_str().into()),
            Reason::Dane { failure, .. } => ("dane".into(), failure.as_str().into()),
            Reason::MtaSts { failure, .. } => ("mta-sts".into(), failure.as_str().into()),
            Reason::Paused { cause, .. } => {
                let inner = cause.group();
                (format!("paused/{}", inner.kind), inner.cause)
            }
            Reason::Queue { .. } => ("queue".into(), "queue".into()),
            Reason::Hosts { each } => match each.last() {
                Some(last) => return last.group(),
                None => ("hosts".into(), "none".into()),
            },
            Reason::Legacy { text } => ("legacy".into(), text.clone()),
        };
        ReasonGroup { kind, cause }
    }

    /// The RFC 3463 status of this reason, if it carries one.
    pub fn status(&self) -> Option<Status> {
        match self {
            Reason::Remote { status, .. } => *status,
            Reason::Local { status, .. } => Some(*status),
            // RFC 3463 X.7.5: cryptographic failure; RFC 7672 section 2.2.
            Reason::Dane { .. } | Reason::MtaSts { .. } => Some(Status(4, 7, 5)),
            Reason::Paused { cause, .. } => cause.status(),
            // X.3.0: other or undefined mail system status.
            Reason::Queue { .. } => Some(Status(4, 3, 0)),
            Reason::Hosts { each } => each.last().and_then(Reason::status),
            Reason::Legacy { .. } => None,
        }
    }

    /// The remote host and reply, when the server answered.
    pub fn remote(&self) -> Option<(&str, u16, Option<Status>, &str)> {
        match self {
            Reason::Remote {
                host,
                code,
                status,
                text,
                ..
            } => Some((host, *code, *status, text)),
            Reason::Paused { cause, .. } => cause.remote(),
            _ => None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Remote {
                host,
                ip,
                code,
                status,
                text,
            } => {
                write!(f, "{host} [{ip}] said: {code}")?;
                if let Some(status) = status {
                    write!(f, " {status}")?;
                }
                if !text.is_empty() {
                    write!(f, " {text}")?;
                }
                Ok(())
            }
            Reason::Local { place, detail, .. } => write!(f, "{place}{detail}"),
            Reason::Dane { place, detail, .. } => {
                write!(f, "{place}DANE authentication failed: {detail}")
            }
            Reason::MtaSts { place, detail, .. } => write!(f, "{place}MTA-STS enforce: {detail}"),
            Reason::Paused { until, cause } => write!(
                f,
                "destination paused until {} after: {cause}",
                Utc(to_ms(*until) / 1000)
            ),
            Reason::Queue { detail } => write!(f, "queue: {detail}"),
            Reason::Hosts { each } => {
                for (i, reason) in each.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{reason}")?;
                }
                Ok(())
            }
            Reason::Legacy { text } => f.write_str(text),
        }
    }
}

/// Unix seconds as `2026-12-06T04:05:06Z` (RFC 3339, UTC).
struct Utc(u64);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (days, secs) = (self.0 / 86_400, self.0 % 86_400);
        // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

/// Reads a reason as stored now, or as a plain string written before
/// reasons were typed ([`Reason::Legacy`]).
pub(crate) fn stored<'de, D: Deserializer<'de>>(d: D) -> Result<Reason, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Text(String),
        Typed(Reason),
    }
    Ok(match Stored::deserialize(d)? {
        Stored::Text(text) => Reason::Legacy { text },
        Stored::Typed(reason) => reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn remote() -> Reason {
        Reason::Remote {
            host: "mx1.example.net".into(),
            ip: "192.0.2.25".parse().expect("ip"),
            code: 550,
            status: Some(Status(5, 1, 1)),
            text: "no such user".into(),
        }
    }

    #[test]
    fn reasons_render_as_people_read_them() {
        assert_eq!(
            remote().to_string(),
            "mx1.example.net [192.0.2.25] said: 550 5.1.1 no such user"
        );
        let local = Reason::Local {
            cause: LocalCause::TlsNotOffered,
            status: Status(4, 7, 10),
            place: Place::at("mx1.example.net", "192.0.2.25".parse().expect("ip")),
            detail: "STARTTLS not offered".into(),
        };
        assert_eq!(
            local.to_string(),
            "mx1.example.net [192.0.2.25]: STARTTLS not offered"
        );
    }

    #[test]
    fn the_stored_form_is_stable() {
        let json = serde_json::to_value(remote()).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"kind": "remote", "host": "mx1.example.net", "ip": "192.0.2.25",
                "code": 550, "status": [5, 1, 1], "text": "no such user"})
        );
        let paused = Reason::Paused {
            until: epoch_plus(1_000),
            cause: Box::new(Reason::local(
                LocalCause::ConnectionFailed,
                Status(4, 4, 1),
                "connection refused",
            )),
        };
        let json = serde_json::to_value(&paused).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"kind": "paused", "until": 1_000_000,
                "cause": {"kind": "local", "cause": "connection-failed", "status": [4, 4, 1],
                          "detail": "connection refused"}})
        );
        let back: Reason = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, paused);
    }

    fn epoch_plus(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn pause_times_read_as_utc_dates() {
        assert_eq!(Utc(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Utc(951_782_400).to_string(), "2000-02-29T00:00:00Z");
        assert_eq!(Utc(1_796_529_543).to_string(), "2026-12-06T03:59:03Z");
    }

    #[test]
    fn old_string_reasons_still_read() {
        #[derive(Deserialize)]
        struct Holder {
            #[serde(deserialize_with = "stored")]
            reason: Reason,
        }
        let old: Holder =
            serde_json::from_str(r#"{"reason": "mx [192.0.2.1] said: 451 4.7.1 later"}"#)
                .expect("old form");
        assert_eq!(
            old.reason,
            Reason::Legacy {
                text: "mx [192.0.2.1] said: 451 4.7.1 later".into()
            }
        );
        let new: Holder =
            serde_json::from_value(serde_json::json!({ "reason": remote() })).expect("new form");
        assert_eq!(new.reason, remote());
    }

    #[test]
    fn pauses_group_by_cause_not_by_time() {
        let pause = |secs| Reason::Paused {
            until: epoch_plus(secs),
            cause: Box::new(Reason::Local {
                cause: LocalCause::ConnectionFailed,
                status: Status(4, 4, 1),
                place: Place::at("mx1.example.net", "192.0.2.25".parse().expect("ip")),
                detail: format!("connection refused ({secs})"),
            }),
        };
        assert_ne!(pause(1).to_string(), pause(2).to_string());
        assert_eq!(pause(1).group(), pause(2).group());
        assert_eq!(pause(1).group().kind, "paused/local");
        assert_eq!(pause(1).group().cause, "connection-failed");
    }
}
