//! What a connection achieved (TLS version, cipher, authentication, why it
//! runs in cleartext), and whether it may carry another message: a pooled
//! connection is reused only for a message whose [`TlsParams`] it
//! satisfies (issue 8, connection reuse).

use std::net::SocketAddr;

use rustls::pki_types::ServerName;
use rustls::ProtocolVersion;

use super::tls::{CleartextReason, TlsAuthentication, TlsParams};

/// What a connection achieved, for logs, the attempt record and the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Achieved {
    pub mx_host: String,
    pub peer: SocketAddr,
    /// The server name used for SNI and verification.
    pub server_name: String,
    pub tls_version: Option<ProtocolVersion>,
    /// The negotiated cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: Option<String>,
    pub authentication: TlsAuthentication,
    /// Set when `tls_version` is `None`.
    pub cleartext_reason: Option<CleartextReason>,
}

/// Why a pooled connection cannot carry a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReuseRefusal {
    #[error("connection to {mx_host} has no TLS, the message requires it")]
    NoTls { mx_host: String },
    #[error("connection to {mx_host} runs {negotiated:?}, below the minimum {minimum}")]
    BelowMinimum {
        mx_host: String,
        negotiated: ProtocolVersion,
        minimum: &'static str,
    },
    #[error("connection to {mx_host} is authenticated by {achieved:?}, the message requires {required:?}")]
    Authentication {
        mx_host: String,
        achieved: TlsAuthentication,
        required: TlsAuthentication,
    },
    #[error("connection to {mx_host} verified name {achieved}, the message requires {required}")]
    ServerName {
        mx_host: String,
        achieved: String,
        required: String,
    },
}

impl Achieved {
    /// Whether this connection may carry a message with `params`: TLS
    /// present and at or above the minimum when required, the same kind of
    /// authentication for the same server name when verified. Opportunistic
    /// and cleartext messages may use any connection.
    pub(crate) fn reuse_for(&self, params: &TlsParams) -> Result<(), ReuseRefusal> {
        if !params.requirement.requires_tls() {
            return Ok(());
        }
        let mx_host = self.mx_host.clone();
        let Some(negotiated) = self.tls_version else {
            return Err(ReuseRefusal::NoTls { mx_host });
        };
        if !params.min_version.accepts(negotiated) {
            return Err(ReuseRefusal::BelowMinimum {
                mx_host,
                negotiated,
                minimum: params.min_version.as_str(),
            });
        }
        let required = params.requirement.authentication();
        if required != TlsAuthentication::None {
            if self.authentication != required {
                return Err(ReuseRefusal::Authentication {
                    mx_host,
                    achieved: self.authentication,
                    required,
                });
            }
            let wanted = server_name_text(&params.server_name);
            if !self.server_name.eq_ignore_ascii_case(&wanted) {
                return Err(ReuseRefusal::ServerName {
                    mx_host,
                    achieved: self.server_name.clone(),
                    required: wanted,
                });
            }
        }
        Ok(())
    }

    /// Whether a REQUIRETLS message may go over this connection: TLS is
    /// up and the server was authenticated (DANE or WebPKI, RFC 8689
    /// section 4.2.1). REQUIRETLS in the server's EHLO is the
    /// transaction's check.
    pub fn carries_requiretls(&self) -> bool {
        self.tls_version.is_some() && self.authentication != TlsAuthentication::None
    }

    /// `reuse_for(params).is_ok()`.
    pub fn satisfies(&self, params: &TlsParams) -> bool {
        self.reuse_for(params).is_ok()
    }
}

pub(crate) fn server_name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => String::new(),
    }
}
