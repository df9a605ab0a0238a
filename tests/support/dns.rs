//! An authoritative DNS server inside the test process (hickory-server on
//! 127.0.0.1, UDP and TCP on one port) serving a DNSSEC-signed test TLD
//! whose key is the resolver's trust anchor. No DNS leaves the process.
//!
//! ```ignore
//! let dns = TestDns::builder()
//!     .mx("example.test", 10, "mx.example.test")
//!     .a("mx.example.test", Ipv4Addr::LOCALHOST)
//!     .tlsa("_25._tcp.mx.example.test", 3, 1, 1, &digest)
//!     .insecure_zone("plain.test")          // unsigned delegation
//!     .bogus_zone("broken.test")            // DS does not match its key
//!     .bad_signature("mx.example.test", RecordType::A) // tampered RRset
//!     .servfail("down.example.test")        // answers SERVFAIL
//!     .silent("slow.example.test")          // never answers (timeout)
//!     .nsec3_zone("hashed.test")            // NSEC3 denial
//!     .start()
//!     .await;
//! dns.set("_mta-sts.example.test", RecordType::TXT, vec![txt]).await; // change live
//! let resolver = sealpost::dns::Resolver::new(&dns.settings())?;
//! ```
//!
//! Zones: the TLD `test.` is signed (Ed25519, NSEC) and is the trust
//! anchor. Names under a zone declared with `insecure_zone` live in an
//! unsigned child zone delegated without DS (so they validate as
//! insecure); names under `bogus_zone` live in a child signed with a key
//! other than the one its DS names (so they validate as bogus). Every other
//! name lives in `test.` itself and is secure.
//!
//! Traps worked around (hickory 0.26.3): each zone gets its own catalog and
//! a DS query for a zone apex is answered from the parent's catalog
//! (a catalog holding both would answer DS from the child); only NSEC is
//! used (positive answers from an NSEC3 zone validate as bogus); a
//! `servfail` name should also have records so that the zone is consistent.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::dnssec::NxProofKind;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::proto::dnssec::crypto::Ed25519SigningKey;
use hickory_server::proto::dnssec::rdata::{DNSSECRData, DNSKEY, DS};
use hickory_server::proto::dnssec::{DigestType, DnssecSigner, Nsec3HashAlgorithm, SigningKey};
use hickory_server::proto::op::{Header, HeaderCounts, ResponseCode};
use hickory_server::proto::rr::rdata::{
    tlsa::{CertUsage, Matching, Selector},
    A, AAAA, CNAME, MX, NS, SOA, TLSA, TXT,
};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{
    AxfrPolicy, Catalog, DnssecZoneHandler, MessageResponseBuilder, ZoneType,
};
use hickory_server::Server;
use sealpost::dns::{ResolverSettings, TrustAnchorSource};

/// The signed test TLD; its key is the trust anchor.
pub const TLD: &str = "test";
/// TTL of every test record.
pub const TTL: u32 = 300;

#[derive(Clone, Copy, PartialEq, Eq)]
enum ZoneKind {
    Secure,
    SecureNsec3,
    Insecure,
    Bogus,
}

/// Collects records and zone arrangements, then starts the server.
#[derive(Default)]
pub struct TestDnsBuilder {
    records: Vec<Record>,
    children: Vec<(Name, ZoneKind)>,
    servfail: Vec<LowerName>,
    servfail_types: Vec<(LowerName, RecordType)>,
    silent: Vec<LowerName>,
    tampered: Vec<(Name, RecordType)>,
}

fn name(text: &str) -> Name {
    let fqdn = format!("{}.", text.trim_end_matches('.'));
    Name::from_str(&fqdn).unwrap_or_else(|err| panic!("bad test name {text}: {err}"))
}

impl TestDnsBuilder {
    /// Add any record (its name decides which zone it lands in).
    pub fn record(mut self, record: Record) -> Self {
        self.records.push(record);
        self
    }

    fn rdata(self, owner: &str, rdata: RData) -> Self {
        self.record(Record::from_rdata(name(owner), TTL, rdata))
    }

    pub fn mx(self, domain: &str, preference: u16, exchange: &str) -> Self {
        self.rdata(domain, RData::MX(MX::new(preference, name(exchange))))
    }

    /// RFC 7505 null MX: `0 .`
    pub fn null_mx(self, domain: &str) -> Self {
        self.rdata(domain, RData::MX(MX::new(0, Name::root())))
    }

    pub fn a(self, host: &str, addr: Ipv4Addr) -> Self {
        self.rdata(host, RData::A(A(addr)))
    }

    pub fn aaaa(self, host: &str, addr: Ipv6Addr) -> Self {
        self.rdata(host, RData::AAAA(AAAA(addr)))
    }

    pub fn cname(self, alias: &str, target: &str) -> Self {
        self.rdata(alias, RData::CNAME(CNAME(name(target))))
    }

    /// One TXT record made of `strings` (several strings of one record).
    pub fn txt(self, owner: &str, strings: &[&str]) -> Self {
        let strings = strings.iter().map(|s| s.to_string()).collect();
        self.rdata(owner, RData::TXT(TXT::new(strings)))
    }

    /// A TLSA record at `owner` (e.g. `_25._tcp.mx.example.test`).
    pub fn tlsa(self, owner: &str, usage: u8, selector: u8, matching: u8, data: &[u8]) -> Self {
        let tlsa = TLSA::new(
            CertUsage::from(usage),
            Selector::from(selector),
            Matching::from(matching),
            data.to_vec(),
        );
        self.rdata(owner, RData::TLSA(tlsa))
    }

    /// Serve `zone` (a child of `test.`) unsigned, delegated without DS:
    /// its names validate as insecure.
    pub fn insecure_zone(mut self, zone: &str) -> Self {
        self.children.push((name(zone), ZoneKind::Insecure));
        self
    }

    /// Serve `zone` signed with a key its DS does not name: every answer
    /// from it validates as bogus.
    pub fn bogus_zone(mut self, zone: &str) -> Self {
        self.children.push((name(zone), ZoneKind::Bogus));
        self
    }

    /// Serve a signed child zone with its own key and a matching DS, to
    /// test a real chain of trust below the TLD.
    pub fn secure_zone(mut self, zone: &str) -> Self {
        self.children.push((name(zone), ZoneKind::Secure));
        self
    }

    /// Serve a signed child zone that proves denial with NSEC3 (SHA-1, no
    /// salt, 0 iterations). Use it for NXDOMAIN/NODATA tests: hickory
    /// 0.26.3 judged positive answers from NSEC3 zones bogus.
    pub fn nsec3_zone(mut self, zone: &str) -> Self {
        self.children.push((name(zone), ZoneKind::SecureNsec3));
        self
    }

    /// Never answer queries for `owner`: the resolver times out.
    pub fn silent(mut self, owner: &str) -> Self {
        self.silent.push(LowerName::new(&name(owner)));
        self
    }

    /// Answer SERVFAIL to every query for `owner`.
    pub fn servfail(mut self, owner: &str) -> Self {
        self.servfail.push(LowerName::new(&name(owner)));
        self
    }

    /// Answer SERVFAIL to queries for `owner` of `record_type` only (e.g.
    /// AAAA failing while A resolves).
    pub fn servfail_type(mut self, owner: &str, record_type: RecordType) -> Self {
        self.servfail_types
            .push((LowerName::new(&name(owner)), record_type));
        self
    }

    /// After signing, change the data of the `owner`/`record_type` RRset
    /// (which must exist) but keep its signatures: a bad signature.
    pub fn bad_signature(mut self, owner: &str, record_type: RecordType) -> Self {
        self.tampered.push((name(owner), record_type));
        self
    }

    /// Build the zones, sign them, and serve them on 127.0.0.1.
    pub async fn start(self) -> TestDns {
        let tld = name(TLD);
        let tld_signer = new_signer(&tld);
        let tld_key = tld_signer.key().to_public_key().expect("TLD public key");

        let mut zones: Vec<(Name, ZoneKind, Vec<Record>)> =
            vec![(tld.clone(), ZoneKind::Secure, Vec::new())];
        for (child, kind) in &self.children {
            zones.push((child.clone(), *kind, Vec::new()));
        }
        for record in self.records {
            let index = zone_index(&zones, &record.name);
            zones[index].2.push(record);
        }

        let mut catalogs = Vec::new();
        let mut parent_extra = Vec::new();
        for (origin, kind, records) in zones.iter().skip(1) {
            // Delegation in the parent; DS for signed children.
            let ns_name = Name::from_str(&format!("ns.{origin}")).expect("ns name");
            parent_extra.push(Record::from_rdata(
                origin.clone(),
                TTL,
                RData::NS(NS(ns_name.clone())),
            ));
            parent_extra.push(Record::from_rdata(
                ns_name,
                TTL,
                RData::A(A(Ipv4Addr::LOCALHOST)),
            ));
            let signer = match kind {
                ZoneKind::Insecure => None,
                ZoneKind::Secure | ZoneKind::SecureNsec3 | ZoneKind::Bogus => {
                    let signer = new_signer(origin);
                    let published = if *kind == ZoneKind::Bogus {
                        // The DS names a key the zone is not signed with.
                        new_signer(origin).key().to_public_key().expect("decoy key")
                    } else {
                        signer.key().to_public_key().expect("child key")
                    };
                    let ds = DS::from_key(&published, origin, DigestType::SHA256).expect("DS");
                    parent_extra.push(Record::from_rdata(
                        origin.clone(),
                        TTL,
                        RData::DNSSEC(DNSSECRData::DS(ds)),
                    ));
                    Some(signer)
                }
            };
            let proof = match kind {
                ZoneKind::Insecure => None,
                ZoneKind::SecureNsec3 => Some(NxProofKind::Nsec3 {
                    algorithm: Nsec3HashAlgorithm::SHA1,
                    salt: Arc::from(Vec::new()),
                    iterations: 0,
                    opt_out: false,
                }),
                ZoneKind::Secure | ZoneKind::Bogus => Some(NxProofKind::Nsec),
            };
            let signed = signer.is_some();
            let handler = build_zone(origin, records.clone(), signer, proof, &self.tampered);
            catalogs.push((LowerName::new(origin), Arc::new(handler), signed));
        }
        let mut tld_records = zones[0].2.clone();
        tld_records.extend(parent_extra);
        let tld_handler = build_zone(
            &tld,
            tld_records,
            Some(tld_signer),
            Some(NxProofKind::Nsec),
            &self.tampered,
        );
        catalogs.insert(0, (LowerName::new(&tld), Arc::new(tld_handler), true));

        let handlers: Vec<ZoneEntry> = catalogs.clone();
        let router = Router {
            zones: catalogs
                .into_iter()
                .map(|(origin, handler, _)| {
                    let mut catalog = Catalog::new();
                    catalog.upsert(origin.clone(), vec![handler]);
                    (origin, catalog)
                })
                .collect(),
            servfail: self.servfail,
            servfail_types: self.servfail_types,
            silent: self.silent,
        };

        let (server, addr) = serve(router).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let anchor_path = dir.path().join("trust-anchor.dnskey");
        let dnskey = DNSKEY::from_key(&tld_key);
        std::fs::write(&anchor_path, format!("{tld} {TTL} IN DNSKEY {dnskey}\n"))
            .expect("write trust anchor");
        let mut settings = ResolverSettings::new(vec![addr]);
        settings.trust_anchor = TrustAnchorSource::DnskeyFile(anchor_path);
        settings.timeout = Duration::from_secs(2);
        settings.attempts = 1;
        TestDns {
            addr,
            settings,
            zones: handlers,
            _dir: dir,
            _server: server,
        }
    }
}

/// The running server; dropping it stops serving.
pub struct TestDns {
    pub addr: SocketAddr,
    settings: ResolverSettings,
    zones: Vec<ZoneEntry>,
    _dir: tempfile::TempDir,
    _server: Server<Router>,
}

impl TestDns {
    pub fn builder() -> TestDnsBuilder {
        TestDnsBuilder::default()
    }

    /// Resolver settings pointing at this server with the TLD key as the
    /// trust anchor (written to a DNSKEY file, as an operator would).
    pub fn settings(&self) -> ResolverSettings {
        self.settings.clone()
    }

    /// Replace the `owner`/`record_type` RRset while serving (empty `rdata`
    /// deletes it) and re-sign its zone, e.g. to change an MTA-STS TXT id
    /// mid-test. Resolvers cache answers for their TTL: use a fresh
    /// resolver or `clear_cache()` to see the change.
    pub async fn set(&self, owner: &str, record_type: RecordType, rdata: Vec<RData>) {
        let owner = name(owner);
        let lower = LowerName::new(&owner);
        let (_, zone, signed) = self
            .zones
            .iter()
            .filter(|(origin, _, _)| origin.zone_of(&lower))
            .max_by_key(|(origin, _, _)| origin.num_labels())
            .unwrap_or_else(|| panic!("{owner} is not under the test TLD"));
        zone.records_mut()
            .await
            .remove(&RrKey::new(lower.clone(), record_type));
        let serial = zone.serial().await;
        for data in rdata {
            let record = Record::from_rdata(owner.clone(), TTL, data);
            assert!(zone.upsert(record, serial).await, "update {owner}");
        }
        if *signed {
            zone.secure_zone().await.expect("re-sign zone");
        }
    }

    /// A fresh resolver (empty cache) using [`TestDns::settings`].
    pub fn resolver(&self) -> sealpost::dns::Resolver {
        sealpost::dns::Resolver::new(&self.settings).expect("resolver")
    }
}

/// A zone's origin, its handler, and whether it is signed.
type ZoneEntry = (
    LowerName,
    Arc<InMemoryZoneHandler<TokioRuntimeProvider>>,
    bool,
);

fn new_signer(zone: &Name) -> DnssecSigner {
    let pkcs8 = Ed25519SigningKey::generate_pkcs8().expect("generate key");
    let key = Ed25519SigningKey::from_pkcs8(&pkcs8).expect("load key");
    let public = key.to_public_key().expect("public key");
    DnssecSigner::new(
        DNSKEY::from_key(&public),
        Box::new(key),
        zone.clone(),
        Duration::from_secs(86_400),
    )
}

/// The zone a name belongs to: the longest origin that contains it.
fn zone_index(zones: &[(Name, ZoneKind, Vec<Record>)], owner: &Name) -> usize {
    zones
        .iter()
        .enumerate()
        .filter(|(_, (origin, _, _))| origin.zone_of(owner))
        .max_by_key(|(_, (origin, _, _))| origin.num_labels())
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("{owner} is not under the test TLD"))
}

fn build_zone(
    origin: &Name,
    records: Vec<Record>,
    signer: Option<DnssecSigner>,
    nx_proof: Option<NxProofKind>,
    tampered: &[(Name, RecordType)],
) -> InMemoryZoneHandler<TokioRuntimeProvider> {
    let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
        nx_proof,
    );
    let ns_name = Name::from_str(&format!("ns.{origin}")).expect("ns name");
    let hostmaster = Name::from_str(&format!("hostmaster.{origin}")).expect("rname");
    let soa = SOA::new(ns_name.clone(), hostmaster, 1, 3600, 600, 86_400, TTL);
    let serial = 1;
    assert!(zone.upsert_mut(
        Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)),
        serial
    ));
    zone.upsert_mut(
        Record::from_rdata(origin.clone(), TTL, RData::NS(NS(ns_name.clone()))),
        serial,
    );
    zone.upsert_mut(
        Record::from_rdata(ns_name, TTL, RData::A(A(Ipv4Addr::LOCALHOST))),
        serial,
    );
    for record in records {
        assert!(zone.upsert_mut(record, serial), "insert into {origin}");
    }
    if let Some(signer) = signer {
        zone.add_zone_signing_key_mut(signer).expect("add key");
        zone.secure_zone_mut().expect("sign zone");
    }
    for (owner, record_type) in tampered.iter().filter(|(owner, _)| origin.zone_of(owner)) {
        let key = RrKey::new(LowerName::new(owner), *record_type);
        let rrset = zone
            .records_get_mut()
            .get_mut(&key)
            .unwrap_or_else(|| panic!("bad_signature: no {record_type} at {owner}"));
        let mut changed = (**rrset).clone();
        let records = changed
            .records_without_rrsigs()
            .map(|record| {
                let mut record = record.clone();
                record.data = corrupt(&record.data);
                record
            })
            .collect();
        changed.set_records(records);
        *rrset = Arc::new(changed);
    }
    zone
}

/// A plausible but different value, so the old RRSIG no longer fits.
fn corrupt(rdata: &RData) -> RData {
    match rdata {
        RData::A(A(addr)) => {
            let [a, b, c, d] = addr.octets();
            RData::A(A(Ipv4Addr::new(a, b, c, d ^ 1)))
        }
        RData::AAAA(AAAA(addr)) => {
            let mut octets = addr.octets();
            octets[15] ^= 1;
            RData::AAAA(AAAA(Ipv6Addr::from(octets)))
        }
        RData::MX(mx) => RData::MX(MX::new(mx.preference.wrapping_add(1), mx.exchange.clone())),
        RData::TLSA(tlsa) => {
            let mut data = tlsa.cert_data.clone();
            if let Some(first) = data.first_mut() {
                *first ^= 0xff;
            }
            RData::TLSA(TLSA::new(
                tlsa.cert_usage,
                tlsa.selector,
                tlsa.matching,
                data,
            ))
        }
        RData::TXT(_) => RData::TXT(TXT::new(vec!["tampered".to_string()])),
        other => panic!("bad_signature does not know how to alter {other:?}"),
    }
}

/// Sends each query to the catalog of the zone it belongs to, DS queries
/// for a zone apex to the parent's, and SERVFAIL for the chosen names.
struct Router {
    zones: Vec<(LowerName, Catalog)>,
    servfail: Vec<LowerName>,
    servfail_types: Vec<(LowerName, RecordType)>,
    silent: Vec<LowerName>,
}

impl Router {
    fn catalog_for(&self, owner: &LowerName, record_type: RecordType) -> &Catalog {
        let mut containing: Vec<&(LowerName, Catalog)> = self
            .zones
            .iter()
            .filter(|(origin, _)| origin.zone_of(owner))
            .collect();
        containing.sort_by_key(|(origin, _)| std::cmp::Reverse(origin.num_labels()));
        let pick = match containing.as_slice() {
            [own, parent, ..] if record_type == RecordType::DS && own.0 == *owner => parent,
            [own, ..] => own,
            [] => &self.zones[0],
        };
        &pick.1
    }
}

#[async_trait::async_trait]
impl RequestHandler for Router {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let query = request.queries.queries().first().cloned();
        if let Some(query) = &query {
            if self.silent.contains(query.name()) {
                return ResponseInfo::from(Header {
                    metadata: request.metadata,
                    counts: HeaderCounts::default(),
                });
            }
            let servfail_type = self
                .servfail_types
                .iter()
                .any(|(owner, kind)| owner == query.name() && *kind == query.query_type());
            if servfail_type || self.servfail.contains(query.name()) {
                let response = MessageResponseBuilder::new(&request.queries, None)
                    .error_msg(&request.metadata, ResponseCode::ServFail);
                return response_handle
                    .send_response(response)
                    .await
                    .expect("send SERVFAIL");
            }
        }
        let catalog = match &query {
            Some(query) => self.catalog_for(query.name(), query.query_type()),
            None => &self.zones[0].1,
        };
        catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

/// Bind UDP and TCP on the same loopback port and start serving.
async fn serve(router: Router) -> (Server<Router>, SocketAddr) {
    for _ in 0..20 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind UDP");
        let addr = udp.local_addr().expect("UDP address");
        let Ok(tcp) = tokio::net::TcpListener::bind(addr).await else {
            continue;
        };
        let mut server = Server::new(router);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        return (server, addr);
    }
    panic!("no loopback port free for both UDP and TCP");
}
