//! TLS for the load tools: a self-signed certificate made at start for the
//! sink, a client that accepts any certificate for the generator (it is a
//! load tool, not a delivery agent).

use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use thiserror::Error;

use sealpost::policy::MinTlsVersion;
use sealpost::tls::provider;

/// Why a TLS configuration could not be made.
#[derive(Debug, Error)]
pub enum TlsSetupError {
    #[error("generating the self-signed certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("building the rustls config: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A server config with a fresh self-signed certificate for `names`.
pub fn self_signed_server_config(
    names: &[&str],
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let certified = rcgen::generate_simple_self_signed(names)?;
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    Ok(Arc::new(config))
}

/// A client config that accepts any server certificate but still checks
/// the handshake signatures (so the session is real TLS work).
pub fn accept_any_client_config() -> Arc<rustls::ClientConfig> {
    sealpost::tls::unauthenticated_client_config(MinTlsVersion::Any)
}
