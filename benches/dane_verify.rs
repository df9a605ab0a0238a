//! What DANE verification costs per handshake.
//!
//! - `match/*`: `authenticate_chain` alone (DANE-EE 3 1 1: SPKI hash;
//!   DANE-TA 2 0 1: hash, webpki path building to the anchor, name check).
//! - `handshake/*`: a complete in-memory TLS 1.3 handshake (ECDSA P-256
//!   keys, no sockets) with the DANE verifier, against the same handshake
//!   with rustls' WebPKI verifier, so the difference is the verifier's cost.
//!
//! Run: `cargo bench --bench dane_verify`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use sealpost::dane::{
    association_data, authenticate_chain, usability, DaneVerifier, Matching, Selector, UsableTlsa,
};
use sealpost::dns::TlsaRecord;

const MX: &str = "mx.example.test";

struct Pki {
    ca: CertificateDer<'static>,
    leaf: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "bench CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf_params = CertificateParams::new(vec![MX.to_string()]).expect("leaf params");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).expect("leaf");
    Pki {
        ca: ca.der().clone(),
        leaf: leaf.der().clone(),
        key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
    }
}

fn tlsa(
    usage: u8,
    selector: Selector,
    matching: Matching,
    cert: &CertificateDer<'_>,
) -> UsableTlsa {
    let record = TlsaRecord {
        usage,
        selector: if selector == Selector::Cert { 0 } else { 1 },
        matching: if matching == Matching::Sha256 { 1 } else { 2 },
        data: association_data(cert, selector, matching).expect("data"),
    };
    usability(&record).expect("usable")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// One in-memory TLS 1.3 handshake.
fn handshake(client: &Arc<rustls::ClientConfig>, server: &Arc<rustls::ServerConfig>) {
    let name = ServerName::try_from(MX).expect("name");
    let mut c = rustls::ClientConnection::new(client.clone(), name).expect("client");
    let mut s = rustls::ServerConnection::new(server.clone()).expect("server");
    let mut buf = Vec::new();
    for _ in 0..10 {
        if !c.is_handshaking() && !s.is_handshaking() {
            return;
        }
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).expect("client write");
        }
        let mut slice = buf.as_slice();
        while !slice.is_empty() {
            s.read_tls(&mut slice).expect("server read");
        }
        s.process_new_packets().expect("server process");
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).expect("server write");
        }
        let mut slice = buf.as_slice();
        while !slice.is_empty() {
            c.read_tls(&mut slice).expect("client read");
        }
        c.process_new_packets().expect("client process");
    }
    assert!(!c.is_handshaking(), "handshake did not finish");
}

fn bench(c: &mut Criterion) {
    let pki = pki();
    let algorithms = provider().signature_verification_algorithms;
    let names = vec![MX.to_string(), "example.test".to_string()];
    let chain = vec![pki.leaf.clone(), pki.ca.clone()];
    let ee = vec![tlsa(3, Selector::Spki, Matching::Sha256, &pki.leaf)];
    let ta = vec![tlsa(2, Selector::Cert, Matching::Sha256, &pki.ca)];
    let now = UnixTime::now();

    c.bench_function("match/dane-ee-3-1-1", |b| {
        b.iter(|| authenticate_chain(&ee, &names, &chain, now, &algorithms).expect("match"))
    });
    c.bench_function("match/dane-ta-2-0-1", |b| {
        b.iter(|| authenticate_chain(&ta, &names, &chain, now, &algorithms).expect("match"))
    });

    let server = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain.clone(), PrivateKeyDer::Pkcs8(pki.key.clone_key()))
            .expect("server cert"),
    );
    let client_with = |verifier: Arc<dyn ServerCertVerifier>| {
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("versions")
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth(),
        )
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).expect("root");
    let webpki =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .expect("webpki verifier");
    let clients = [
        ("handshake/webpki", client_with(webpki)),
        (
            "handshake/dane-ee-3-1-1",
            client_with(Arc::new(DaneVerifier::new(
                ee.clone(),
                names.clone(),
                &provider(),
            ))),
        ),
        (
            "handshake/dane-ta-2-0-1",
            client_with(Arc::new(DaneVerifier::new(
                ta.clone(),
                names.clone(),
                &provider(),
            ))),
        ),
    ];
    for (name, client) in &clients {
        c.bench_function(name, |b| b.iter(|| handshake(client, &server)));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
