//! TLS pieces shared by the SMTP listener, the SMTP client, the MTA-STS
//! policy host and the load tools: the one crypto provider (ring), server
//! certificates, what a certificate says (`certinfo`, for the probe's
//! report and certificate expiry), and a stream that is plain or TLS.

pub(crate) mod certinfo;
pub mod certs;
pub mod stream;
pub(crate) mod verify;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use certs::{certified_key, SniCertResolver};

pub(crate) use certs::{
    acme_challenge_key, certified_key_from_pem, load_pem, self_signed_in, CertError, ACME_TLS_ALPN,
};
pub use stream::MaybeTls;
pub(crate) use verify::HandshakeSignatures;
pub use verify::{unauthenticated_client_config, Unauthenticated};

/// The ring crypto provider: sealpost uses no other (no aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
