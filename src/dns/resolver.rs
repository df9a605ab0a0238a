//! The resolver: hickory-resolver with DNSSEC validation in-process, our
//! own TTL cache with single flight in front of it, and the mail-specific
//! lookups (MX with null and implicit MX, addresses, TLSA, TXT).

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::dnssec::{Proof, TrustAnchors};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::TokioResolver;

use super::answer::{
    AddressLookup, DnssecStatus, Lookup, LookupFailure, MxHost, MxLookup, TlsaLookup, TlsaRecord,
};
use super::cache::SingleFlightCache;
use super::settings::{ResolverSettings, TrustAnchorSource};

/// Longest time any answer is cached, whatever its TTL says.
const MAX_CACHE_TTL: Duration = Duration::from_secs(86_400);

/// Why a resolver could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    #[error("no nameservers configured")]
    NoNameservers,
    #[error("cannot read DNSSEC trust anchor file {path}: {reason}")]
    TrustAnchor { path: String, reason: String },
    #[error("cannot build the DNS resolver: {0}")]
    Build(String),
}

/// Counters for tests and the admin socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolverStats {
    /// Lookups that went upstream (cache misses that were not shared).
    pub upstream_lookups: u64,
    /// Answers currently cached.
    pub cached: usize,
}

/// One cached answer, still in hickory's record types.
#[derive(Debug)]
struct RawAnswer {
    lookup: Lookup<RData>,
    /// Owner name of the records after following CNAMEs.
    canonical: Option<Name>,
}

/// A validating resolver for mail delivery. Cheap to share behind an `Arc`.
pub struct Resolver {
    inner: TokioResolver,
    cache: SingleFlightCache<(String, RecordType), RawAnswer>,
    upstream_lookups: Arc<AtomicU64>,
}

impl Resolver {
    /// Build a resolver; it validates every answer against the trust anchor.
    pub fn new(settings: &ResolverSettings) -> Result<Resolver, ResolverError> {
        if settings.nameservers.is_empty() {
            return Err(ResolverError::NoNameservers);
        }
        let servers = settings
            .nameservers
            .iter()
            .map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        let config = ResolverConfig::from_parts(None, Vec::new(), servers);

        let anchors = match &settings.trust_anchor {
            TrustAnchorSource::IanaRoot => TrustAnchors::default(),
            TrustAnchorSource::DnskeyFile(path) => {
                TrustAnchors::from_file(path).map_err(|err| ResolverError::TrustAnchor {
                    path: path.display().to_string(),
                    reason: err.to_string(),
                })?
            }
        };

        let mut options = ResolverOpts::default();
        options.validate = true;
        options.timeout = settings.timeout;
        options.attempts = settings.attempts.max(1);
        // Our own cache sits in front; hickory's would only hide TTLs.
        options.cache_size = 0;
        options.use_hosts_file = ResolveHosts::Never;
        options.preserve_intermediates = true;
        options.ndots = 0;

        let inner = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(options)
            .with_trust_anchor(Arc::new(anchors))
            .build()
            .map_err(|err| ResolverError::Build(err.to_string()))?;
        Ok(Resolver {
            inner,
            cache: SingleFlightCache::new(settings.cache_size),
            upstream_lookups: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn stats(&self) -> ResolverStats {
        ResolverStats {
            upstream_lookups: self.upstream_lookups.load(Ordering::Relaxed),
            cached: self.cache.len(),
        }
    }

    /// Forget all cached answers.
    pub fn clear_cache(&self) {
        self.cache.clear();
    }

    async fn query(&self, name: &str, record_type: RecordType) -> Arc<RawAnswer> {
        let key = (normalize(name), record_type);
        let parsed = Name::from_str(&format!("{}.", key.0));
        let resolver = self.inner.clone();
        let counter = self.upstream_lookups.clone();
        self.cache
            .get_or_fetch(key, move || async move {
                let name = match parsed {
                    Ok(name) => name,
                    Err(err) => {
                        let failure = LookupFailure::Other(format!("invalid name: {err}"));
                        return (failed(failure), Duration::ZERO);
                    }
                };
                counter.fetch_add(1, Ordering::Relaxed);
                classify(record_type, resolver.lookup(name, record_type).await)
            })
            .await
    }

    /// The mail hosts of `domain` (RFC 5321 section 5.1, RFC 7505).
    pub async fn mx(&self, domain: &str) -> MxLookup {
        let answer = self.query(domain, RecordType::MX).await;
        match &answer.lookup {
            Lookup::Records { records, dnssec } => {
                let mut null_mx = false;
                let mut hosts: Vec<MxHost> = records
                    .iter()
                    .filter_map(|rdata| match rdata {
                        RData::MX(mx) => Some(MxHost {
                            preference: mx.preference,
                            exchange: display_name(&mx.exchange),
                        }),
                        _ => None,
                    })
                    .filter(|host| {
                        // RFC 7505 section 3: "." as exchange; alongside
                        // real MX records it is ignored (section 4.3).
                        let is_null = host.exchange.is_empty();
                        null_mx |= is_null;
                        !is_null
                    })
                    .collect();
                if hosts.is_empty() && null_mx {
                    return MxLookup::NullMx { dnssec: *dnssec };
                }
                hosts.sort_by_key(|host| host.preference);
                MxLookup::Hosts {
                    hosts,
                    dnssec: *dnssec,
                }
            }
            Lookup::NoData { dnssec } => {
                // The implicit MX needs an address of either family; DANE
                // judges the host's addresses again, strictly.
                let addresses = self.addresses(domain).await;
                match addresses.resolved {
                    Lookup::Records { .. } => MxLookup::Implicit {
                        host: MxHost {
                            preference: 0,
                            exchange: normalize(domain),
                        },
                        dnssec: *dnssec,
                    },
                    Lookup::NoData { .. } => MxLookup::NoMailDomain {
                        nxdomain: false,
                        dnssec: *dnssec,
                    },
                    Lookup::NxDomain { .. } => MxLookup::NoMailDomain {
                        nxdomain: true,
                        dnssec: *dnssec,
                    },
                    Lookup::Failed(failure) => MxLookup::Failed(failure),
                }
            }
            Lookup::NxDomain { dnssec } => MxLookup::NoMailDomain {
                nxdomain: true,
                dnssec: *dnssec,
            },
            Lookup::Failed(failure) => MxLookup::Failed(failure.clone()),
        }
    }

    /// A records of `host`.
    pub async fn a(&self, host: &str) -> Lookup<IpAddr> {
        self.address_family(host, RecordType::A).await.0
    }

    /// AAAA records of `host`.
    pub async fn aaaa(&self, host: &str) -> Lookup<IpAddr> {
        self.address_family(host, RecordType::AAAA).await.0
    }

    async fn address_family(
        &self,
        host: &str,
        record_type: RecordType,
    ) -> (Lookup<IpAddr>, Option<Name>) {
        let answer = self.query(host, record_type).await;
        let lookup = answer.lookup.clone().map(|rdata| match rdata {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        });
        (flatten(lookup), answer.canonical.clone())
    }

    /// A and AAAA of `host` together, with the name CNAMEs led to.
    pub async fn addresses(&self, host: &str) -> AddressLookup {
        let (v4, v6) = futures_util::future::join(
            self.address_family(host, RecordType::A),
            self.address_family(host, RecordType::AAAA),
        )
        .await;
        let canonical =
            v4.1.or(v6.1)
                .map(|name| display_name(&name))
                .unwrap_or_else(|| normalize(host));
        AddressLookup {
            host: normalize(host),
            canonical,
            lookup: v4.0.clone().merge(v6.0.clone()),
            resolved: v4.0.merge_resolved(v6.0),
        }
    }

    /// TLSA records at `_<port>._tcp.<host>`, CNAMEs at that name followed
    /// (RFC 7672 section 2.2.3). `host` becomes the TLSA base domain.
    pub async fn tlsa(&self, host: &str, port: u16) -> TlsaLookup {
        let base_domain = normalize(host);
        let tlsa_name = format!("_{port}._tcp.{base_domain}");
        let answer = self.query(&tlsa_name, RecordType::TLSA).await;
        let lookup = answer.lookup.clone().map(|rdata| match rdata {
            RData::TLSA(tlsa) => Some(TlsaRecord {
                usage: u8::from(tlsa.cert_usage),
                selector: u8::from(tlsa.selector),
                matching: u8::from(tlsa.matching),
                data: tlsa.cert_data,
            }),
            _ => None,
        });
        TlsaLookup {
            base_domain,
            tlsa_name,
            lookup: flatten(lookup),
        }
    }

    /// TXT records of `name`, each record's strings concatenated into one
    /// string (RFC 8461 section 3.1, RFC 7208 section 3.3). Bytes that are
    /// not UTF-8 are replaced, which makes such a record fail to parse as
    /// an MTA-STS or TLS-RPT record, as it should.
    pub async fn txt(&self, name: &str) -> Lookup<String> {
        let answer = self.query(name, RecordType::TXT).await;
        flatten(answer.lookup.clone().map(|rdata| match rdata {
            RData::TXT(txt) => {
                let bytes: Vec<u8> = txt
                    .txt_data
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect();
                Some(String::from_utf8_lossy(&bytes).into_owned())
            }
            _ => None,
        }))
    }
}

/// Drop records of other types; none left means NODATA.
fn flatten<T>(lookup: Lookup<Option<T>>) -> Lookup<T> {
    match lookup {
        Lookup::Records { records, dnssec } => {
            let records: Vec<T> = records.into_iter().flatten().collect();
            if records.is_empty() {
                Lookup::NoData { dnssec }
            } else {
                Lookup::Records { records, dnssec }
            }
        }
        Lookup::NoData { dnssec } => Lookup::NoData { dnssec },
        Lookup::NxDomain { dnssec } => Lookup::NxDomain { dnssec },
        Lookup::Failed(failure) => Lookup::Failed(failure),
    }
}

fn failed(failure: LookupFailure) -> RawAnswer {
    RawAnswer {
        lookup: Lookup::Failed(failure),
        canonical: None,
    }
}

/// Lower case, no trailing dot: how names appear in results and keys.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn display_name(name: &Name) -> String {
    normalize(&name.to_ascii())
}

fn proof_status(proof: Proof) -> DnssecStatus {
    match proof {
        Proof::Secure => DnssecStatus::Secure,
        Proof::Insecure => DnssecStatus::Insecure,
        // Indeterminate cannot happen with validation on; treat it (and
        // anything new) as the unsafe case.
        _ => DnssecStatus::Bogus,
    }
}

/// Turn hickory's answer into ours, with the time it may be cached.
fn classify(
    record_type: RecordType,
    result: Result<hickory_resolver::lookup::Lookup, NetError>,
) -> (RawAnswer, Duration) {
    match result {
        Ok(lookup) => positive(record_type, lookup.answers()),
        Err(NetError::Dns(DnsError::NoRecordsFound(no_records))) => negative(&no_records),
        Err(NetError::Dns(DnsError::Nsec {
            response, proof, ..
        })) => {
            let dnssec = proof_status(proof);
            if dnssec == DnssecStatus::Bogus {
                return (failed(LookupFailure::Bogus), Duration::ZERO);
            }
            let lookup = if response.response_code == ResponseCode::NXDomain {
                Lookup::NxDomain { dnssec }
            } else {
                Lookup::NoData { dnssec }
            };
            let answer = RawAnswer {
                lookup,
                canonical: None,
            };
            (answer, Duration::ZERO)
        }
        Err(NetError::Dns(DnsError::DnssecBogus)) => (failed(LookupFailure::Bogus), Duration::ZERO),
        Err(NetError::Dns(DnsError::ResponseCode(code))) => {
            let failure = match code {
                ResponseCode::ServFail => LookupFailure::ServFail,
                ResponseCode::Refused => LookupFailure::Refused,
                other => LookupFailure::Other(format!("response code {other}")),
            };
            (failed(failure), Duration::ZERO)
        }
        Err(NetError::Timeout) => (failed(LookupFailure::Timeout), Duration::ZERO),
        Err(other) => (
            failed(LookupFailure::Other(other.to_string())),
            Duration::ZERO,
        ),
    }
}

/// A positive answer: the records of the asked type (CNAMEs followed).
///
/// The status starts unknown: it is `Secure` only when every record used,
/// CNAMEs included, validated as secure. An answer with no record of the
/// asked type is NODATA without a denial proof, so never `Secure`.
fn positive(record_type: RecordType, answers: &[Record]) -> (RawAnswer, Duration) {
    let mut dnssec: Option<DnssecStatus> = None;
    let mut ttl = u32::MAX;
    let mut records = Vec::new();
    let mut canonical = None;
    for record in answers {
        let kind = record.record_type();
        if kind != record_type && kind != RecordType::CNAME {
            continue;
        }
        // A CNAME chain is only as secure as its weakest link.
        let proof = proof_status(record.proof);
        dnssec = Some(dnssec.map_or(proof, |d| d.weakest(proof)));
        ttl = ttl.min(record.ttl);
        if kind == record_type {
            records.push(record.data.clone());
            canonical = Some(record.name.clone());
        }
    }
    if dnssec == Some(DnssecStatus::Bogus) {
        return (failed(LookupFailure::Bogus), Duration::ZERO);
    }
    let lookup = if records.is_empty() {
        Lookup::NoData {
            dnssec: DnssecStatus::Insecure,
        }
    } else {
        Lookup::Records {
            records,
            dnssec: dnssec.unwrap_or(DnssecStatus::Insecure),
        }
    };
    let ttl = Duration::from_secs(u64::from(ttl)).min(MAX_CACHE_TTL);
    (RawAnswer { lookup, canonical }, ttl)
}

/// A negative answer (NODATA or NXDOMAIN) after validation.
///
/// The status starts unknown: it is `Secure` only with proof of the
/// denial, an NSEC or NSEC3 record that validated as secure (the
/// validator passes a negative answer on only when such records deny the
/// name asked). A signed SOA alone proves nothing about the name.
fn negative(no_records: &NoRecords) -> (RawAnswer, Duration) {
    let mut secure = false;
    let mut bogus = false;
    let authorities = no_records
        .authorities
        .iter()
        .flat_map(|records| records.iter());
    for record in authorities {
        let kind = record.record_type();
        if !matches!(kind, RecordType::SOA | RecordType::NSEC | RecordType::NSEC3) {
            continue;
        }
        match proof_status(record.proof) {
            DnssecStatus::Secure => secure |= kind != RecordType::SOA,
            DnssecStatus::Insecure => {}
            DnssecStatus::Bogus => bogus = true,
        }
    }
    if bogus {
        return (failed(LookupFailure::Bogus), Duration::ZERO);
    }
    let dnssec = if secure {
        DnssecStatus::Secure
    } else {
        DnssecStatus::Insecure
    };
    // RFC 2308 section 5: negative TTL is min(SOA TTL, SOA MINIMUM).
    let ttl = no_records
        .soa
        .as_ref()
        .map(|soa| soa.ttl.min(soa.data.minimum))
        .or(no_records.negative_ttl)
        .unwrap_or(0);
    let lookup = if no_records.response_code == ResponseCode::NXDomain {
        Lookup::NxDomain { dnssec }
    } else {
        Lookup::NoData { dnssec }
    };
    let answer = RawAnswer {
        lookup,
        canonical: None,
    };
    (
        answer,
        Duration::from_secs(u64::from(ttl)).min(MAX_CACHE_TTL),
    )
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use hickory_resolver::proto::dnssec::rdata::{DNSSECRData, NSEC};
    use hickory_resolver::proto::op::Query;
    use hickory_resolver::proto::rr::rdata::{A, CNAME, SOA};

    use super::*;

    fn name(text: &str) -> Name {
        Name::from_str(text).expect("test name")
    }

    fn with_proof(mut record: Record, proof: Proof) -> Record {
        record.proof = proof;
        record
    }

    fn a(owner: &str, proof: Proof) -> Record {
        let rdata = RData::A(A(Ipv4Addr::new(192, 0, 2, 1)));
        with_proof(Record::from_rdata(name(owner), 300, rdata), proof)
    }

    fn cname(owner: &str, target: &str, proof: Proof) -> Record {
        let rdata = RData::CNAME(CNAME(name(target)));
        with_proof(Record::from_rdata(name(owner), 300, rdata), proof)
    }

    fn soa(proof: Proof) -> Record<SOA> {
        let data = SOA::new(
            name("ns.example.test."),
            name("hostmaster.example.test."),
            1,
            3600,
            600,
            86400,
            300,
        );
        let mut record = Record::from_rdata(name("example.test."), 300, data);
        record.proof = proof;
        record
    }

    fn nsec(proof: Proof) -> Record {
        let data = NSEC::new(name("z.example.test."), [RecordType::MX]);
        let rdata = RData::DNSSEC(DNSSECRData::NSEC(data));
        with_proof(
            Record::from_rdata(name("mx.example.test."), 300, rdata),
            proof,
        )
    }

    fn no_records(code: ResponseCode, soa: Record<SOA>, more: Vec<Record>) -> NoRecords {
        let query = Query::query(name("mx.example.test."), RecordType::A);
        let mut answer = NoRecords::new(query, code);
        let mut authorities = vec![soa.clone().into_record_of_rdata()];
        authorities.extend(more);
        answer.authorities = Some(Arc::from(authorities));
        answer.soa = Some(Box::new(soa));
        answer
    }

    #[test]
    fn a_positive_answer_is_secure_only_when_every_record_used_is() {
        use DnssecStatus::*;
        let table: Vec<(&str, Vec<Record>, Lookup<()>)> = vec![
            (
                "secure A",
                vec![a("mx.example.test.", Proof::Secure)],
                Lookup::Records {
                    records: vec![()],
                    dnssec: Secure,
                },
            ),
            (
                "insecure A",
                vec![a("mx.example.test.", Proof::Insecure)],
                Lookup::Records {
                    records: vec![()],
                    dnssec: Insecure,
                },
            ),
            (
                "secure CNAME to an insecure A",
                vec![
                    cname("mx.example.test.", "host.other.test.", Proof::Secure),
                    a("host.other.test.", Proof::Insecure),
                ],
                Lookup::Records {
                    records: vec![()],
                    dnssec: Insecure,
                },
            ),
            (
                "no records at all: no proof of anything",
                vec![],
                Lookup::NoData { dnssec: Insecure },
            ),
            (
                "only a secure CNAME: NODATA without a denial proof",
                vec![cname(
                    "mx.example.test.",
                    "host.example.test.",
                    Proof::Secure,
                )],
                Lookup::NoData { dnssec: Insecure },
            ),
            (
                "a bogus link",
                vec![a("mx.example.test.", Proof::Bogus)],
                Lookup::Failed(LookupFailure::Bogus),
            ),
        ];
        for (what, answers, want) in table {
            let (answer, _) = positive(RecordType::A, &answers);
            assert_eq!(answer.lookup.clone().map(|_| ()), want, "{what}");
        }
    }

    #[test]
    fn a_denial_is_secure_only_with_a_validated_nsec_proof() {
        use DnssecStatus::*;
        let table = [
            (
                "signed SOA, no NSEC",
                no_records(ResponseCode::NoError, soa(Proof::Secure), vec![]),
                Lookup::NoData { dnssec: Insecure },
            ),
            (
                "signed SOA and NSEC",
                no_records(
                    ResponseCode::NoError,
                    soa(Proof::Secure),
                    vec![nsec(Proof::Secure)],
                ),
                Lookup::NoData { dnssec: Secure },
            ),
            (
                "NXDOMAIN with a secure NSEC",
                no_records(
                    ResponseCode::NXDomain,
                    soa(Proof::Secure),
                    vec![nsec(Proof::Secure)],
                ),
                Lookup::NxDomain { dnssec: Secure },
            ),
            (
                "unsigned zone",
                no_records(ResponseCode::NXDomain, soa(Proof::Insecure), vec![]),
                Lookup::NxDomain { dnssec: Insecure },
            ),
            (
                "bogus NSEC",
                no_records(
                    ResponseCode::NoError,
                    soa(Proof::Secure),
                    vec![nsec(Proof::Bogus)],
                ),
                Lookup::Failed(LookupFailure::Bogus),
            ),
        ];
        for (what, answer, want) in table {
            let (answer, _) = negative(&answer);
            assert_eq!(answer.lookup.clone().map(|_| ()), want, "{what}");
        }
    }
}
