//! Server certificates: loading PEM files, the self-signed certificate made
//! at first start when none is configured, and selection by SNI (used by the
//! SMTP listener's STARTTLS and the MTA-STS policy host). Certificates are
//! replaced in place, so a reload needs no restart.
//!
//! Three sources, in order: certificates named in the configuration
//! (`[[tls.sni]]`), certificates obtained by ACME (`src/acme`, kept apart so
//! a reload of the configured ones leaves them alone), then the default. A
//! TLS-ALPN-01 validation (RFC 8737 section 3: the client offers only the
//! `acme-tls/1` protocol) gets the pending challenge certificate for its
//! name, or no certificate at all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found ({detail})")]
    NoCertificate { path: PathBuf, detail: String },
    #[error("{path}: no PEM private key found ({detail})")]
    NoKey { path: PathBuf, detail: String },
    #[error(
        "{cert} and {key}: the key does not match the certificate or is unsupported: {source}"
    )]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Picks a certificate by the SNI host name (exact, case-insensitive); no
/// match (or no SNI) gets the default, and without one the handshake fails.
#[derive(Debug, Default)]
pub struct SniCertResolver {
    named: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    default: RwLock<Option<Arc<CertifiedKey>>>,
    /// Certificates obtained by ACME, by host name.
    acme: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    /// Pending TLS-ALPN-01 challenge certificates, by host name.
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

/// The ALPN protocol of TLS-ALPN-01 validations (RFC 8737 section 6.2).
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

impl SniCertResolver {
    /// Adds (or replaces) the certificate for a host name (exact match).
    pub fn insert(&self, host: &str, key: Arc<CertifiedKey>) {
        self.named
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_ascii_lowercase(), key);
    }
    /// Replaces every certificate at once (a reload): clients see either the
    /// old set or the new one, never a mix.
    pub fn replace(
        &self,
        named: Vec<(String, Arc<CertifiedKey>)>,
        default: Option<Arc<CertifiedKey>>,
    ) {
        let named: HashMap<String, Arc<CertifiedKey>> = named
            .into_iter()
            .map(|(host, key)| (host.to_ascii_lowercase(), key))
            .collect();
        let mut names = self.named.write().unwrap_or_else(|e| e.into_inner());
        let mut fallback = self.default.write().unwrap_or_else(|e| e.into_inner());
        *names = named;
        *fallback = default;
    }

    #[cfg(test)]
    pub(crate) fn set_default(&self, key: Option<Arc<CertifiedKey>>) {
        *self.default.write().unwrap_or_else(|e| e.into_inner()) = key;
    }

    /// Adds (or replaces) a certificate obtained by ACME for `host`; a
    /// configured `[[tls.sni]]` certificate for the same name still wins.
    pub(crate) fn insert_acme(&self, host: &str, key: Arc<CertifiedKey>) {
        self.acme
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_ascii_lowercase(), key);
    }

    /// Serves `key` to TLS-ALPN-01 validations of `host` (`None` removes it).
    pub(crate) fn set_challenge(&self, host: &str, key: Option<Arc<CertifiedKey>>) {
        let mut challenges = self.challenges.write().unwrap_or_else(|e| e.into_inner());
        match key {
            Some(key) => challenges.insert(host.to_ascii_lowercase(), key),
            None => challenges.remove(&host.to_ascii_lowercase()),
        };
    }
}

impl SniCertResolver {
    /// The certificate for a requested host name: its own, else the default.
    pub(crate) fn by_name(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let found = self
            .named
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&host.to_ascii_lowercase())
            .cloned();
        found
            .or_else(|| {
                self.acme
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&host.to_ascii_lowercase())
                    .cloned()
            })
            .or_else(|| self.fallback())
    }

    /// When each certificate expires (the leaf's `notAfter`, Unix
    /// seconds), by SNI name and `default`, for the expiry gauge.
    pub(crate) fn expiries(&self) -> Vec<crate::metrics::CertificateExpiry> {
        let not_after = |key: &CertifiedKey| {
            key.end_entity_cert()
                .ok()
                .and_then(|leaf| super::certinfo::CertInfo::parse(leaf).not_after)
                .map(|t| t.0)
        };
        let mut out: Vec<_> = self
            .named
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|(name, key)| {
                Some(crate::metrics::CertificateExpiry {
                    name: name.clone(),
                    not_after: not_after(key)?,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(at) = self.fallback().as_deref().and_then(not_after) {
            out.push(crate::metrics::CertificateExpiry {
                name: "default".to_string(),
                not_after: at,
            });
        }
        out
    }

    fn fallback(&self) -> Option<Arc<CertifiedKey>> {
        self.default
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for SniCertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let only_acme = hello.alpn().is_some_and(|offered| {
            let offered: Vec<&[u8]> = offered.collect();
            !offered.is_empty() && offered.iter().all(|p| *p == ACME_TLS_ALPN)
        });
        if only_acme {
            // RFC 8737 section 3: the challenge certificate or nothing.
            let name = hello.server_name()?.to_ascii_lowercase();
            let challenges = self.challenges.read().unwrap_or_else(|e| e.into_inner());
            return challenges.get(&name).cloned();
        }
        match hello.server_name() {
            Some(name) => self.by_name(name),
            None => self.fallback(),
        }
    }
}

/// A certificate chain (leaf first) and its key, checked to match.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, rustls::Error> {
    let provider = rustls::crypto::ring::default_provider();
    Ok(Arc::new(CertifiedKey::from_der(chain, key, &provider)?))
}

/// The self-signed TLS-ALPN-01 certificate for `host` (RFC 8737 section 3):
/// the name as its only SAN and the critical `acmeIdentifier` extension
/// holding the SHA-256 digest of the key authorization.
pub(crate) fn acme_challenge_key(
    host: &str,
    key_authorization_digest: &[u8],
) -> Result<Arc<CertifiedKey>, CertError> {
    let mut params = rcgen::CertificateParams::new(vec![host.to_owned()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(
        key_authorization_digest,
    )];
    let key_pair = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key_pair)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    // Not `certified_key`: its key check parses the certificate with
    // webpki, which refuses the critical acmeIdentifier extension.
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|source| CertError::Mismatch {
            cert: PathBuf::from(format!("<acme challenge for {host}>")),
            key: PathBuf::from(format!("<acme challenge for {host}>")),
            source,
        })?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signer,
    )))
}

/// A PEM chain (leaf first) and PEM key held in memory, as ACME returns
/// them; `origin` names them in errors.
pub(crate) fn certified_key_from_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
    origin: &Path,
) -> Result<Arc<CertifiedKey>, CertError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::NoCertificate {
            path: origin.to_owned(),
            detail: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            path: origin.to_owned(),
            detail: "no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::NoKey {
        path: origin.to_owned(),
        detail: e.to_string(),
    })?;
    certified_key(chain, key).map_err(|source| CertError::Mismatch {
        cert: origin.to_owned(),
        key: origin.to_owned(),
        source,
    })
}

/// Loads a PEM certificate chain (leaf first) and its PEM private key.
pub(crate) fn load_pem(cert_path: &Path, key_path: &Path) -> Result<Arc<CertifiedKey>, CertError> {
    let cert_pem = std::fs::read(cert_path).map_err(|source| CertError::Read {
        path: cert_path.to_owned(),
        source,
    })?;
    let key_pem = std::fs::read(key_path).map_err(|source| CertError::Read {
        path: key_path.to_owned(),
        source,
    })?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::NoCertificate {
            path: cert_path.to_owned(),
            detail: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            path: cert_path.to_owned(),
            detail: "the file holds no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| CertError::NoKey {
        path: key_path.to_owned(),
        detail: e.to_string(),
    })?;
    certified_key(chain, key).map_err(|source| CertError::Mismatch {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        source,
    })
}

/// The certificate sealpost presents when none is configured: made once for
/// `hostname` and kept in `dir` (`self-signed.crt`, `self-signed.key`), so
/// it stays the same across restarts (peers that pin it, or DANE-EE records
/// published for it, keep working).
pub(crate) fn self_signed_in(dir: &Path, hostname: &str) -> Result<Arc<CertifiedKey>, CertError> {
    let cert_path = dir.join("self-signed.crt");
    let key_path = dir.join("self-signed.key");
    if cert_path.exists() && key_path.exists() {
        return load_pem(&cert_path, &key_path);
    }
    std::fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let made = rcgen::generate_simple_self_signed(vec![hostname.to_owned()])?;
    write_private(&key_path, made.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, made.cert.pem()).map_err(|source| CertError::Write {
        path: cert_path.clone(),
        source,
    })?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    certified_key(vec![made.cert.der().clone()], key).map_err(|source| CertError::Mismatch {
        cert: cert_path,
        key: key_path,
        source,
    })
}

/// Writes a private key readable by its owner only.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    write().map_err(|source| CertError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_signed_certificate_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = self_signed_in(dir.path(), "mx.example.test").expect("made");
        let again = self_signed_in(dir.path(), "mx.example.test").expect("loaded");
        assert_eq!(first.cert, again.cert);
        let mode = std::fs::metadata(dir.path().join("self-signed.key"))
            .expect("key file")
            .permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, "not pem").expect("write");
        std::fs::write(&key, "not pem").expect("write");
        let Err(err) = load_pem(&cert, &key) else {
            panic!("a file without PEM blocks loaded")
        };
        let err = err.to_string();
        assert!(err.contains("c.pem"), "{err}");
        let Err(missing) = load_pem(&dir.path().join("absent.pem"), &key) else {
            panic!("a missing file loaded")
        };
        let missing = missing.to_string();
        assert!(missing.contains("absent.pem"), "{missing}");
    }

    #[test]
    fn sni_picks_the_named_certificate_else_the_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = self_signed_in(&dir.path().join("a"), "a.example").expect("a");
        let b = self_signed_in(&dir.path().join("b"), "b.example").expect("b");
        let resolver = SniCertResolver::default();
        resolver.insert("A.example", a.clone());
        assert!(resolver.by_name("a.example").is_some());
        assert!(resolver.by_name("b.example").is_none());
        resolver.set_default(Some(b.clone()));
        assert_eq!(
            resolver.by_name("b.example").map(|k| k.cert.clone()),
            Some(b.cert.clone())
        );
    }
}
