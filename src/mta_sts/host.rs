//! Hosting MTA-STS for managed domains (RFC 8461 section 3.2, 3.3; RFC 8460
//! section 3): an HTTPS server answering
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt` with each hosted
//! domain's policy as `text/plain`, the certificate chosen by SNI, and the
//! DNS records the domain must publish (`_mta-sts` with an `id` derived from
//! the policy content, and the `_smtp._tls` TLSRPT record).
//!
//! Routing ([`PolicyHost::respond`]) is a pure function of the Host header,
//! method and path; [`PolicyHost::serve`] is the hyper + rustls edge. With
//! a report receiver set, `POST /tlsrpt` takes TLS reports for the hosted
//! domain (RFC 8460 section 5.4, `crate::tlsrpt`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, HOST};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::tls::SniCertResolver;

use super::fetch::{policy_host, WELL_KNOWN_PATH};
use super::policy::{Mode, MxPattern, Policy};

/// One managed domain's hosted policy, as configuration gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedPolicy {
    /// The policy domain (any case, trailing dot allowed).
    pub domain: String,
    pub mode: Mode,
    pub mx: Vec<MxPattern>,
    pub max_age: u64,
}

impl HostedPolicy {
    pub fn policy(&self) -> Policy {
        Policy {
            mode: self.mode,
            max_age: self.max_age,
            mx: self.mx.clone(),
        }
    }

    /// The body served (canonical rendering, LF line ends).
    pub fn body(&self) -> String {
        self.policy().render()
    }

    /// The TXT `id`: 32 hex digits of the SHA-256 of the served body, so it
    /// changes exactly when the policy changes (RFC 8461 section 3.1 asks
    /// for a new id with every new policy).
    pub fn policy_id(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.body().as_bytes());
        digest.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn domain(&self) -> String {
        let d = self.domain.strip_suffix('.').unwrap_or(&self.domain);
        d.to_ascii_lowercase()
    }
}

/// A DNS record to publish, in zone-file terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtRecordToPublish {
    /// Fully qualified, with the trailing dot.
    pub name: String,
    pub value: String,
}

impl fmt::Display for TxtRecordToPublish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} IN TXT \"{}\"", self.name, self.value)
    }
}

/// `_mta-sts.<domain>. IN TXT "v=STSv1; id=<id>"` (RFC 8461 section 3.1).
pub fn mta_sts_record(policy: &HostedPolicy) -> TxtRecordToPublish {
    TxtRecordToPublish {
        name: format!("_mta-sts.{}.", policy.domain()),
        value: format!("v=STSv1; id={}", policy.policy_id()),
    }
}

/// A TLSRPT `rua` destination that cannot be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsRptError {
    #[error("TLSRPT needs at least one rua destination")]
    NoDestination,
    #[error("TLSRPT rua {uri:?}: {why}")]
    BadUri { uri: String, why: &'static str },
}

/// `_smtp._tls.<domain>. IN TXT "v=TLSRPTv1; rua=<uri>,<uri>"` (RFC 8460
/// section 3). Each destination is a `mailto:` or `https:` URI; commas,
/// semicolons and whitespace must already be percent-encoded.
pub(crate) fn tlsrpt_record(
    domain: &str,
    rua: &[String],
) -> Result<TxtRecordToPublish, TlsRptError> {
    if rua.is_empty() {
        return Err(TlsRptError::NoDestination);
    }
    for uri in rua {
        let bad = |why| TlsRptError::BadUri {
            uri: uri.clone(),
            why,
        };
        let lower = uri.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("mailto:")
            .or_else(|| lower.strip_prefix("https://"))
            .ok_or_else(|| bad("must start with mailto: or https://"))?;
        if rest.is_empty() {
            return Err(bad("nothing after the scheme"));
        }
        if uri
            .bytes()
            .any(|b| b == b',' || b == b';' || b == b'"' || !(0x21..0x7f).contains(&b))
        {
            return Err(bad(
                "commas, semicolons, quotes, spaces and non-ASCII must be percent-encoded",
            ));
        }
    }
    let domain = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    Ok(TxtRecordToPublish {
        name: format!("_smtp._tls.{domain}."),
        value: format!("v=TLSRPTv1; rua={}", rua.join(",")),
    })
}

/// The policies served, by policy host name (`mta-sts.<domain>`).
#[derive(Default)]
pub struct PolicyHost {
    bodies: RwLock<HashMap<String, Bytes>>,
    reports: RwLock<Option<Arc<crate::tlsrpt::Receiver>>>,
}

impl fmt::Debug for PolicyHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyHost")
            .field("bodies", &self.bodies)
            .finish_non_exhaustive()
    }
}

/// The host name of a Host header: a port and a trailing dot removed,
/// lower case.
fn host_name(host: &str) -> String {
    let name = host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            name
        } else {
            host
        }
    });
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// A routing decision, before it becomes an HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAnswer {
    /// 200 `text/plain` with the policy (HEAD: no body).
    Policy { body: Bytes, head: bool },
    /// 404: unknown host or path.
    NotFound,
    /// 405: the policy path with a method other than GET or HEAD.
    MethodNotAllowed,
}

impl PolicyHost {
    pub fn new(policies: &[HostedPolicy]) -> PolicyHost {
        let host = PolicyHost::default();
        host.replace(policies);
        host
    }

    /// Replaces the hosted set (configuration reload); takes effect for the
    /// next request.
    pub fn replace(&self, policies: &[HostedPolicy]) {
        let table = policies
            .iter()
            .map(|p| (policy_host(&p.domain()), Bytes::from(p.body())))
            .collect();
        *self.bodies.write().unwrap_or_else(|e| e.into_inner()) = table;
    }

    /// Routes one request. `host` is the Host header (a port is ignored).
    pub fn respond(&self, host: Option<&str>, method: &Method, path: &str) -> HostAnswer {
        let Some(host) = host else {
            return HostAnswer::NotFound;
        };
        let name = host_name(host);
        let body = self
            .bodies
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&name)
            .cloned();
        match body {
            Some(body) if path == WELL_KNOWN_PATH => match *method {
                Method::GET => HostAnswer::Policy { body, head: false },
                Method::HEAD => HostAnswer::Policy { body, head: true },
                _ => HostAnswer::MethodNotAllowed,
            },
            _ => HostAnswer::NotFound,
        }
    }

    /// Takes TLS reports on `POST /tlsrpt` from now on.
    pub(crate) fn set_report_receiver(&self, receiver: Arc<crate::tlsrpt::Receiver>) {
        *self.reports.write().unwrap_or_else(|e| e.into_inner()) = Some(receiver);
    }

    /// `POST /tlsrpt`: a TLS report for the hosted domain of `host`.
    async fn receive_report(
        &self,
        host: Option<String>,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Response<Full<Bytes>> {
        use http_body_util::BodyExt;
        let text = |status: u16, body: String| {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() =
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            response
        };
        let receiver = self
            .reports
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let hosted = host
            .as_deref()
            .map(host_name)
            .filter(|name| {
                self.bodies
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains_key(name)
            })
            .and_then(|name| name.strip_prefix("mta-sts.").map(str::to_string));
        let (Some(receiver), Some(domain)) = (receiver, hosted) else {
            return text(404, "not found\n".into());
        };
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let limit = receiver.limits().received;
        let body = match http_body_util::Limited::new(request.into_body(), limit)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(e) => {
                let refused =
                    crate::tlsrpt::ReceiveError::Report(crate::tlsrpt::ReportError::TooLarge {
                        limit,
                    });
                tracing::info!(%domain, error = %e, "TLS report refused while reading");
                return text(refused.status(), format!("{refused}\n"));
            }
        };
        let received = tokio::task::spawn_blocking(move || {
            receiver.receive(&domain, content_type.as_deref(), &body, "https")
        })
        .await;
        match received {
            Ok(Ok(_)) => text(200, "report accepted\n".into()),
            Ok(Err(e)) => {
                tracing::info!(error = %e, "TLS report refused");
                text(e.status(), format!("{e}\n"))
            }
            Err(_) => text(500, "internal error\n".into()),
        }
    }

    fn http_response(answer: HostAnswer) -> Response<Full<Bytes>> {
        let text = |status: StatusCode, body: &'static str| {
            let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
            *response.status_mut() = status;
            response
        };
        let mut response = match answer {
            HostAnswer::Policy { body, head } => {
                let mut r = Response::new(Full::new(if head { Bytes::new() } else { body }));
                r.headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                r
            }
            HostAnswer::NotFound => text(StatusCode::NOT_FOUND, "not found\n"),
            HostAnswer::MethodNotAllowed => {
                let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                r.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
                r
            }
        };
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        response
    }

    /// Serves HTTPS on `listener` until the task is dropped or aborted.
    /// One request per connection (a policy fetch needs no keep-alive);
    /// each connection, handshake included, must finish within
    /// `limits.timeout`; at most `limits.max_connections` are served at once
    /// (further clients wait in the listen backlog).
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        tls: Arc<rustls::ServerConfig>,
        limits: ServeLimits,
    ) -> std::io::Result<()> {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return Ok(()); // the semaphore is never closed
            };
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: note it, keep serving.
                    tracing::warn!(error = %e, "MTA-STS policy host: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let host = self.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let connection = async {
                    let mut tls = match acceptor.accept(tcp).await {
                        Ok(tls) => tls,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "MTA-STS policy host: TLS failed");
                            return;
                        }
                    };
                    if tls.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) {
                        // A TLS-ALPN-01 validation: the handshake was the
                        // answer; no application data (RFC 8737 section 3).
                        tracing::info!(%peer, "MTA-STS policy host: ACME TLS-ALPN-01 validation served");
                        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                        return;
                    }
                    let service = hyper::service::service_fn(move |request| {
                        let host = host.clone();
                        async move {
                            let host_header = request
                                .headers()
                                .get(HOST)
                                .and_then(|h| h.to_str().ok())
                                .map(str::to_string);
                            if request.method() == Method::POST
                                && request.uri().path() == crate::tlsrpt::HTTPS_PATH
                            {
                                let response = host.receive_report(host_header, request).await;
                                return Ok::<_, Infallible>(response);
                            }
                            let answer = host.respond(
                                host_header.as_deref(),
                                request.method(),
                                request.uri().path(),
                            );
                            Ok(PolicyHost::http_response(answer))
                        }
                    });
                    let served = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(limits.timeout)
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                    if let Err(e) = served {
                        tracing::debug!(%peer, error = %e, "MTA-STS policy host: HTTP error");
                    }
                };
                if tokio::time::timeout(limits.timeout, connection)
                    .await
                    .is_err()
                {
                    tracing::debug!(%peer, "MTA-STS policy host: connection timed out");
                }
            });
        }
    }
}

/// Bounds on the policy host's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Whole-connection bound: handshake, request and response.
    pub timeout: Duration,
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

/// The rustls server config of the policy host (ring, TLS 1.2 and 1.3,
/// ALPN http/1.1, and `acme-tls/1` for TLS-ALPN-01 validations of the
/// certificates obtained by ACME; certificates from `resolver`).
pub fn server_config(
    resolver: Arc<SniCertResolver>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec(), crate::tls::ACME_TLS_ALPN.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mta_sts::txt::parse_txt_records;

    fn hosted(domain: &str, mode: Mode) -> HostedPolicy {
        HostedPolicy {
            domain: domain.into(),
            mode,
            mx: vec![MxPattern::parse("*.example.org").expect("mx")],
            max_age: 86400,
        }
    }

    #[test]
    fn routing_table() {
        let host = PolicyHost::new(&[hosted("Example.ORG.", Mode::Enforce)]);
        let path = WELL_KNOWN_PATH;
        let table: &[(Option<&str>, Method, &str, &str)] = &[
            (Some("mta-sts.example.org"), Method::GET, path, "policy"),
            (Some("MTA-STS.Example.org:443"), Method::GET, path, "policy"),
            (Some("mta-sts.example.org."), Method::HEAD, path, "head"),
            (Some("mta-sts.example.org"), Method::POST, path, "405"),
            (Some("mta-sts.example.org"), Method::GET, "/", "404"),
            (
                Some("mta-sts.example.org"),
                Method::GET,
                "/.well-known/mta-sts.txt/x",
                "404",
            ),
            (Some("example.org"), Method::GET, path, "404"),
            (Some("mta-sts.other.org"), Method::GET, path, "404"),
            (None, Method::GET, path, "404"),
        ];
        for (host_header, method, path, want) in table {
            let got = match host.respond(*host_header, method, path) {
                HostAnswer::Policy { head: false, body } => {
                    assert_eq!(
                        Policy::parse(std::str::from_utf8(&body).expect("utf8")).map(|p| p.mode),
                        Ok(Mode::Enforce)
                    );
                    "policy"
                }
                HostAnswer::Policy { head: true, .. } => "head",
                HostAnswer::NotFound => "404",
                HostAnswer::MethodNotAllowed => "405",
            };
            assert_eq!(got, *want, "{host_header:?} {method} {path}");
        }
    }

    #[test]
    fn txt_id_follows_the_policy() {
        let a = hosted("example.org", Mode::Testing);
        let record = mta_sts_record(&a);
        assert_eq!(record.name, "_mta-sts.example.org.");
        let id = parse_txt_records(std::slice::from_ref(&record.value))
            .expect("valid record")
            .id;
        assert_eq!(id.len(), 32);
        assert_eq!(mta_sts_record(&a.clone()), record, "same policy, same id");
        let mut b = a.clone();
        b.mode = Mode::Enforce;
        assert_ne!(mta_sts_record(&b).value, record.value);
        let mut c = a.clone();
        c.max_age += 1;
        assert_ne!(mta_sts_record(&c).value, record.value);
        let mut d = a.clone();
        d.mx.push(MxPattern::parse("backup.example.net").expect("mx"));
        assert_ne!(mta_sts_record(&d).value, record.value);
        assert!(record
            .to_string()
            .starts_with("_mta-sts.example.org. IN TXT \"v=STSv1; id="));
    }

    #[test]
    fn tlsrpt_records() {
        let rua = vec![
            "mailto:tlsrpt@example.org".to_string(),
            "https://reports.example.org/tlsrpt".to_string(),
        ];
        let record = tlsrpt_record("Example.org.", &rua).expect("record");
        assert_eq!(record.name, "_smtp._tls.example.org.");
        assert_eq!(
            record.value,
            "v=TLSRPTv1; rua=mailto:tlsrpt@example.org,https://reports.example.org/tlsrpt"
        );
        assert_eq!(tlsrpt_record("a.b", &[]), Err(TlsRptError::NoDestination));
        for bad in [
            "ftp://x",
            "mailto:",
            "mailto:a@b,c@d",
            "mailto:a b@c",
            "http://x",
        ] {
            assert!(
                matches!(
                    tlsrpt_record("a.b", &[bad.to_string()]),
                    Err(TlsRptError::BadUri { .. })
                ),
                "{bad}"
            );
        }
    }
}
