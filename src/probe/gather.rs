//! The I/O side of the probe: DNS (MX, addresses, TLSA with DNSSEC status,
//! the `_mta-sts` TXT record), the MTA-STS policy over HTTPS, and one SMTP
//! session per MX address (EHLO, STARTTLS, EHLO, QUIT; never MAIL). The
//! DANE plans come from [`crate::dane::resolve_destination`], the policy
//! parsing from [`crate::mta_sts`], the sessions from the delivery SMTP
//! client ([`crate::smtp::client::Connection`]) with the recording
//! [`ProbeVerifier`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::capture::ProbeVerifier;
use super::facts::{HostFacts, ProbeFacts, SessionFacts, SessionOutcome, StsFacts};
use crate::dane::{resolve_destination, tlsa_for_host, DaneLevel, DanePlan};
use crate::dns::{LookupFailure, MxLookup, Resolver, ResolverError, ResolverSettings};
use crate::mta_sts::txt::{parse_txt_records, txt_name};
use crate::mta_sts::verify::VerifierError;
use crate::mta_sts::{
    webpki_verifier, DiscoveryFailure, HttpsFetcherConfig, HttpsPolicyFetcher, Policy,
    PolicyFetcher, StsTxtSource, TrustRoots, TxtLookupError, TxtProblem,
};
use crate::policy::MinTlsVersion;
use crate::smtp::client::{
    ClientConfig, ClientError, Connection, Peer, Stage, Timeouts, TlsAuthentication, TlsParams,
    TlsRequirement,
};

/// What the probe needs from the configuration.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// `[dns]`.
    pub resolver: ResolverSettings,
    /// `[delivery] smtp_port`: the port connected to on MX hosts.
    pub smtp_port: u16,
    /// `[mta_sts] https_port`.
    pub https_port: u16,
    /// Mozilla roots plus `[mta_sts] ca_file`.
    pub roots: TrustRoots,
    /// Our name in EHLO (`[server] hostname`).
    pub helo_name: String,
    /// Bound on each SMTP stage and on the policy fetch.
    pub timeout: Duration,
}

/// Why the probe could not run, or the domain cannot receive mail.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("`{0}` is not a domain name")]
    InvalidDomain(String),
    #[error("{domain}: the domain does not exist (NXDOMAIN, DNSSEC {dnssec})")]
    NoSuchDomain { domain: String, dnssec: String },
    #[error("{domain}: the domain has no MX and no address records")]
    NoMailDomain { domain: String },
    #[error("{domain}: the domain publishes a null MX (RFC 7505): it accepts no mail")]
    NullMx { domain: String },
    #[error("{domain}: MX lookup failed: {failure}")]
    MxLookupFailed {
        domain: String,
        failure: LookupFailure,
    },
    #[error("DNS resolver: {0}")]
    Resolver(#[from] ResolverError),
    #[error("cannot read [mta_sts] ca_file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error(transparent)]
    Roots(#[from] VerifierError),
    #[error("MTA-STS policy fetcher: {0}")]
    Fetcher(rustls::Error),
}

/// The trust roots for WebPKI: the Mozilla roots plus the PEM
/// certificates of `ca_file`.
pub(crate) fn trust_roots(ca_file: Option<&Path>) -> Result<TrustRoots, ProbeError> {
    let mut roots = TrustRoots::default();
    if let Some(path) = ca_file {
        let error = |reason: String| ProbeError::CaFile {
            path: path.to_owned(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| error(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error(e.to_string()))?;
        if certs.is_empty() {
            return Err(error("no CERTIFICATE block".to_string()));
        }
        roots.extra = certs;
    }
    Ok(roots)
}

/// Probes `domain`: DNS, MTA-STS, and a session with every MX address.
pub async fn gather(settings: &ProbeSettings, domain: &str) -> Result<ProbeFacts, ProbeError> {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if domain.is_empty()
        || domain.contains(['@', ' ', '/', ':'])
        || rustls::pki_types::ServerName::try_from(domain.as_str()).is_err()
    {
        return Err(ProbeError::InvalidDomain(domain));
    }
    let resolver = Arc::new(Resolver::new(&settings.resolver)?);
    let mx = resolver.mx(&domain).await;
    match &mx {
        MxLookup::Hosts { .. } | MxLookup::Implicit { .. } => {}
        MxLookup::NullMx { .. } => return Err(ProbeError::NullMx { domain }),
        MxLookup::NoMailDomain {
            nxdomain: true,
            dnssec,
        } => {
            return Err(ProbeError::NoSuchDomain {
                domain,
                dnssec: dnssec.to_string(),
            })
        }
        MxLookup::NoMailDomain { .. } => return Err(ProbeError::NoMailDomain { domain }),
        MxLookup::Failed(failure) => {
            return Err(ProbeError::MxLookupFailed {
                domain,
                failure: failure.clone(),
            })
        }
    }
    let webpki = webpki_verifier(&settings.roots)?;
    let fetcher = HttpsPolicyFetcher::new(
        &HttpsFetcherConfig {
            roots: settings.roots.clone(),
            port: settings.https_port,
            timeout: settings.timeout,
        },
        resolver.clone(),
    )
    .map_err(ProbeError::Fetcher)?;

    let (dane_opportunistic, dane_mandatory, mta_sts) = futures_util::join!(
        resolve_destination(&resolver, DaneLevel::Opportunistic, &domain),
        resolve_destination(&resolver, DaneLevel::Mandatory, &domain),
        sts_facts(resolver.as_ref(), &fetcher, &domain),
    );

    let mut client = ClientConfig::new(settings.helo_name.clone());
    client.timeouts = Timeouts::uniform(settings.timeout);
    client.pipelining = false;
    let client = Arc::new(client);

    let hosts = join_all(mx.hosts().into_iter().map(|host| {
        let resolver = resolver.clone();
        let webpki = webpki.clone();
        let client = client.clone();
        let plan = dane_opportunistic
            .mx
            .iter()
            .find(|p| p.host == host)
            .map(|p| p.plan.clone());
        async move {
            let addresses = resolver.addresses(&host.exchange).await;
            let tlsa = tlsa_for_host(&resolver, &host.exchange, &addresses).await;
            let sessions = join_all(addresses.lookup.records().iter().map(|ip| {
                session(
                    &host.exchange,
                    SocketAddr::new(*ip, settings.smtp_port),
                    plan.as_ref(),
                    webpki.clone(),
                    client.clone(),
                )
            }))
            .await;
            HostFacts {
                host,
                addresses,
                tlsa,
                sessions,
            }
        }
    }))
    .await;

    Ok(ProbeFacts {
        domain,
        mx,
        dane_opportunistic,
        dane_mandatory,
        mta_sts,
        hosts,
        smtp_port: settings.smtp_port,
    })
}

/// The `_mta-sts` TXT record and, when there is one, the policy.
async fn sts_facts(
    txt_source: &dyn StsTxtSource,
    fetcher: &dyn PolicyFetcher,
    domain: &str,
) -> StsFacts {
    let name = txt_name(domain);
    let txt = match txt_source.lookup_txt(&name).await {
        Ok(records) => parse_txt_records(&records).map_err(TxtProblem::Invalid),
        Err(TxtLookupError::NoRecords { .. }) => Err(TxtProblem::Absent),
        Err(TxtLookupError::Failed { reason, .. }) => Err(TxtProblem::LookupFailed(reason)),
    };
    let mut ignored_fields = Vec::new();
    let policy = match &txt {
        Err(_) => None,
        Ok(_) => Some(match fetcher.fetch(domain).await {
            Err(e) => Err(DiscoveryFailure::Fetch(e)),
            Ok(body) => match Policy::parse_noting(&body) {
                Ok((policy, ignored)) => {
                    ignored_fields = ignored;
                    Ok(policy)
                }
                Err(error) => Err(DiscoveryFailure::Invalid {
                    domain: domain.to_string(),
                    error,
                }),
            },
        }),
    };
    StsFacts {
        txt,
        policy,
        ignored_fields,
    }
}

/// One session: EHLO, STARTTLS when offered, EHLO, QUIT.
async fn session(
    mx_host: &str,
    addr: SocketAddr,
    plan: Option<&DanePlan>,
    webpki: Arc<WebPkiServerVerifier>,
    client: Arc<ClientConfig>,
) -> SessionFacts {
    let dane = plan.and_then(|p| p.verifier(&crate::tls::provider()));
    let sni = plan.and_then(DanePlan::sni).unwrap_or(mx_host).to_string();
    let verifier = Arc::new(ProbeVerifier::new(mx_host, webpki, dane));
    // "Required" so that the client hands the verifier to rustls; it
    // accepts every certificate and only records, and TlsAuthentication::None
    // says so. Nothing but EHLO and QUIT follows.
    let requirement = TlsRequirement::RequireVerified {
        verifier: verifier.clone(),
        kind: TlsAuthentication::None,
    };
    let outcome = match TlsParams::new(requirement, MinTlsVersion::Any, &sni) {
        Err(e) => SessionOutcome::Failed {
            detail: format!("{sni} is not usable as TLS server name: {e}"),
        },
        Ok(params) => {
            let peer = Peer {
                mx_host: mx_host.to_string(),
                addr,
                local: None,
            };
            match Connection::connect(peer, &params, client).await {
                Ok(connection) => {
                    let achieved = connection.achieved().clone();
                    connection.quit().await;
                    match achieved.tls_version {
                        Some(version) => SessionOutcome::Tls {
                            version,
                            cipher: achieved.cipher,
                            certificate: verifier.check(),
                        },
                        // Unreachable under a required mode; say what we know.
                        None => SessionOutcome::StartTlsNotOffered,
                    }
                }
                Err(ClientError::TlsNotOffered { .. }) => SessionOutcome::StartTlsNotOffered,
                Err(ClientError::Rejected {
                    stage: Stage::StartTls,
                    reply,
                    ..
                }) => SessionOutcome::StartTlsRefused {
                    reply: reply.to_string(),
                },
                Err(ClientError::TlsHandshakeFailed { source, .. }) => {
                    SessionOutcome::HandshakeFailed {
                        detail: source.to_string(),
                        certificate: verifier.check(),
                    }
                }
                Err(e) => SessionOutcome::Failed {
                    detail: e.to_string(),
                },
            }
        }
    };
    SessionFacts { addr, sni, outcome }
}
