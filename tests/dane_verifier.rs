//! The DANE verifier in real rustls handshakes on loopback: DANE-EE
//! ignores names and expiry, DANE-TA checks the chain, the name and the
//! validity period, and a stolen certificate (right certificate, wrong
//! key) never passes.
mod support;

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use sealpost::dane::{
    association_data, dane_failure, usability, DaneFailure, DaneVerifier, Matching, Selector, Usage,
};
use sealpost::dns::TlsaRecord;
use sealpost::policy::MinTlsVersion;
use support::dane_tls::{chain_config, handshake, stolen_certificate_config, TlsPeer};
use support::pki::{self, Leaf, TestCa, ALL_VERSIONS, TLS12_ONLY, TLS13_ONLY};

const MX: &str = "mx.example.test";
const DOMAIN: &str = "example.test";

fn record(usage: u8, selector: u8, matching: u8, cert: &CertificateDer<'_>) -> TlsaRecord {
    let sel = if selector == 0 {
        Selector::Cert
    } else {
        Selector::Spki
    };
    let mat = match matching {
        0 => Matching::Full,
        1 => Matching::Sha256,
        _ => Matching::Sha512,
    };
    TlsaRecord {
        usage,
        selector,
        matching,
        data: association_data(cert, sel, mat).expect("association data"),
    }
}

fn verifier(records: &[TlsaRecord]) -> Arc<DaneVerifier> {
    let usable = records
        .iter()
        .map(|r| usability(r).expect("usable record"))
        .collect();
    Arc::new(DaneVerifier::new(
        usable,
        vec![MX.to_string(), DOMAIN.to_string()],
        &pki::provider(),
    ))
}

/// Handshake against a server with `config`; the verifier's outcome.
async fn attempt(
    config: Arc<rustls::ServerConfig>,
    records: &[TlsaRecord],
) -> (Result<rustls::ProtocolVersion, String>, Arc<DaneVerifier>) {
    let peer = TlsPeer::start(config).await;
    let verifier = verifier(records);
    let client = client_config(verifier.clone(), MinTlsVersion::Any).expect("client config");
    let result = handshake(peer.addr, client, MX)
        .await
        .map_err(|err| err.to_string());
    (result, verifier)
}

#[tokio::test]
async fn dane_ee_accepts_expired_and_wrong_name_certificates() {
    let ca = TestCa::new("unrelated CA");
    let leaves: [(&str, Leaf); 3] = [
        ("expired", ca.issue_expired(&[MX])),
        ("wrong name", ca.issue(&["other.invalid"])),
        ("self-signed", pki::self_signed(&["whatever.invalid"])),
    ];
    for (what, leaf) in &leaves {
        for (selector, matching) in [(1, 1), (0, 1), (1, 2), (0, 2), (1, 0), (0, 0)] {
            let rec = record(3, selector, matching, &leaf.cert);
            let (result, verifier) = attempt(
                pki::server_config(leaf, ALL_VERSIONS),
                std::slice::from_ref(&rec),
            )
            .await;
            assert!(result.is_ok(), "{what} 3 {selector} {matching}: {result:?}");
            let matched = verifier.outcome().expect("ran").expect("matched");
            assert_eq!(matched.usage, Usage::DaneEe);
            assert_eq!(matched.record, rec);
            assert_eq!(matched.depth, 0);
        }
    }
}

#[tokio::test]
async fn dane_ee_mismatch_fails_the_handshake_with_a_dane_reason() {
    let leaf = pki::self_signed(&[MX]);
    let other = pki::self_signed(&[MX]);
    let peer = TlsPeer::start(pki::server_config(&leaf, ALL_VERSIONS)).await;
    let verifier = verifier(&[record(3, 1, 1, &other.cert)]);
    let client = client_config(verifier.clone(), MinTlsVersion::Any).expect("client");
    let err = handshake(peer.addr, client, MX)
        .await
        .expect_err("must fail");
    let tls = err.tls().expect("rustls error");
    assert_eq!(
        dane_failure(tls),
        Some(&DaneFailure::NoMatch { records: 1 })
    );
    assert_eq!(
        verifier.outcome(),
        Some(Err(DaneFailure::NoMatch { records: 1 }))
    );
}

#[tokio::test]
async fn dane_ta_accepts_a_chain_to_the_anchor_with_a_reference_name() {
    let ca = TestCa::new("DANE TA");
    for name in [MX, DOMAIN] {
        let leaf = ca.issue(&[name]);
        for (selector, matching) in [(0, 1), (1, 1), (0, 2), (1, 0)] {
            let rec = record(2, selector, matching, &ca.cert);
            let (result, verifier) = attempt(
                pki::server_config(&leaf, ALL_VERSIONS),
                std::slice::from_ref(&rec),
            )
            .await;
            assert!(
                result.is_ok(),
                "leaf for {name}, 2 {selector} {matching}: {result:?}"
            );
            let matched = verifier.outcome().expect("ran").expect("matched");
            assert_eq!(matched.usage, Usage::DaneTa);
            assert_eq!(matched.depth, 1);
            assert_eq!(matched.matched_name.as_deref(), Some(name));
        }
    }
    // A wildcard in the left-most label matches the MX host.
    let wildcard = ca.issue(&["*.example.test"]);
    let (result, _) = attempt(
        pki::server_config(&wildcard, ALL_VERSIONS),
        &[record(2, 0, 1, &ca.cert)],
    )
    .await;
    assert!(result.is_ok(), "wildcard: {result:?}");
}

#[tokio::test]
async fn dane_ta_refuses_wrong_names_missing_anchors_and_expired_leaves() {
    let ca = TestCa::new("DANE TA");
    let ta = record(2, 0, 1, &ca.cert);

    let wrong_name = ca.issue(&["mx.other.test"]);
    let (result, verifier) = attempt(
        pki::server_config(&wrong_name, ALL_VERSIONS),
        std::slice::from_ref(&ta),
    )
    .await;
    assert!(result.is_err());
    assert!(matches!(
        verifier.outcome(),
        Some(Err(DaneFailure::NameMismatch { .. }))
    ));

    // The server sends only its leaf: the TA is not in the chain.
    let leaf = ca.issue(&[MX]);
    let (result, verifier) = attempt(
        chain_config(vec![leaf.cert.clone()], &leaf),
        std::slice::from_ref(&ta),
    )
    .await;
    assert!(result.is_err());
    assert_eq!(
        verifier.outcome(),
        Some(Err(DaneFailure::NoMatch { records: 1 }))
    );

    // The leaf's validity period is checked under DANE-TA.
    let expired = ca.issue_expired(&[MX]);
    let (result, verifier) = attempt(
        pki::server_config(&expired, ALL_VERSIONS),
        std::slice::from_ref(&ta),
    )
    .await;
    assert!(result.is_err());
    match verifier.outcome() {
        Some(Err(DaneFailure::TaChainInvalid { record, reason })) => {
            assert_eq!(record, ta);
            assert!(reason.contains("Expired"), "{reason}");
        }
        other => panic!("expected TaChainInvalid, got {other:?}"),
    }

    // A chain that names the TA but was issued by another CA.
    let other_ca = TestCa::new("other CA");
    let forged = other_ca.issue(&[MX]);
    let chain = vec![forged.cert.clone(), ca.cert.clone()];
    let (result, verifier) = attempt(chain_config(chain, &forged), &[ta]).await;
    assert!(result.is_err());
    assert!(matches!(
        verifier.outcome(),
        Some(Err(DaneFailure::TaChainInvalid { .. }))
    ));
}

#[tokio::test]
async fn dane_ta_leaf_matching_is_not_dane_ee() {
    // A 2 x x record that matches the leaf itself does not authenticate:
    // DANE-TA names a trust anchor above the leaf.
    let ca = TestCa::new("CA");
    let leaf = ca.issue(&[MX]);
    let (result, verifier) = attempt(
        pki::server_config(&leaf, ALL_VERSIONS),
        &[record(2, 0, 1, &leaf.cert)],
    )
    .await;
    assert!(result.is_err());
    assert!(matches!(
        verifier.outcome(),
        Some(Err(DaneFailure::NoMatch { .. }))
    ));
}

/// The server presents the certificate the TLSA record names but does not
/// hold its key: the handshake signature check must fail it, in TLS 1.3
/// and TLS 1.2, for DANE-EE and DANE-TA alike.
#[tokio::test]
async fn stolen_certificate_fails_the_handshake() {
    let ca = TestCa::new("CA");
    let victim = ca.issue(&[MX]);
    let thief = ca.issue(&[MX]);
    let records = [
        vec![record(3, 1, 1, &victim.cert)],
        vec![record(2, 0, 1, &ca.cert)],
    ];
    for versions in [TLS13_ONLY, TLS12_ONLY] {
        for recs in &records {
            let config = stolen_certificate_config(&victim, &thief, versions);
            let (result, verifier) = attempt(config, recs).await;
            let err = result.expect_err("stolen certificate must not pass");
            // The certificate itself matched; the signature did not.
            assert!(verifier.outcome().expect("ran").is_ok());
            assert!(
                err.contains("signature") || err.contains("Signature"),
                "{err}"
            );
        }
    }
    // Control: the victim's own server passes with the same records.
    let (result, _) = attempt(pki::server_config(&victim, ALL_VERSIONS), &records[0]).await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn minimum_version_is_honoured() {
    let leaf = pki::self_signed(&[MX]);
    let peer = TlsPeer::start(pki::server_config(&leaf, TLS12_ONLY)).await;
    let rec = record(3, 1, 1, &leaf.cert);
    let client =
        client_config(verifier(std::slice::from_ref(&rec)), MinTlsVersion::Tls13).expect("client");
    assert!(handshake(peer.addr, client, MX).await.is_err());
    let client = client_config(verifier(&[rec]), MinTlsVersion::Tls12).expect("client");
    assert_eq!(
        handshake(peer.addr, client, MX).await.expect("TLS 1.2"),
        rustls::ProtocolVersion::TLSv1_2
    );
}

/// Root -> intermediate -> leaf, made with rcgen directly (the shared test
/// CA issues leaves only).
fn three_level_chain() -> (CertificateDer<'static>, CertificateDer<'static>, Leaf) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_params = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
    };
    let root_key = KeyPair::generate().expect("root key");
    let root_params = ca_params("root");
    let root = root_params.self_signed(&root_key).expect("root");
    let root_issuer = Issuer::new(root_params, root_key);
    let mid_key = KeyPair::generate().expect("intermediate key");
    let mid_params = ca_params("intermediate");
    let mid = mid_params
        .signed_by(&mid_key, &root_issuer)
        .expect("intermediate");
    let mid_issuer = Issuer::new(mid_params, mid_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf_params = CertificateParams::new(vec![MX.to_string()]).expect("leaf params");
    leaf_params.use_authority_key_identifier_extension = true;
    let leaf = leaf_params.signed_by(&leaf_key, &mid_issuer).expect("leaf");
    let leaf = Leaf {
        cert: leaf.der().clone(),
        key: rustls::pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
        chain: vec![leaf.der().clone(), mid.der().clone(), root.der().clone()],
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    };
    (root.der().clone(), mid.der().clone(), leaf)
}

#[tokio::test]
async fn dane_ta_works_at_any_depth_of_the_chain() {
    let (root, mid, leaf) = three_level_chain();
    for (anchor, depth) in [(&root, 2), (&mid, 1)] {
        let rec = record(2, 1, 1, anchor);
        let (result, verifier) = attempt(
            pki::server_config(&leaf, ALL_VERSIONS),
            std::slice::from_ref(&rec),
        )
        .await;
        assert!(result.is_ok(), "anchor at depth {depth}: {result:?}");
        let matched = verifier.outcome().expect("ran").expect("matched");
        assert_eq!((matched.usage, matched.depth), (Usage::DaneTa, depth));
    }
    // Without the intermediate the root cannot be reached.
    let chain = vec![leaf.cert.clone(), root.clone()];
    let (result, verifier) = attempt(chain_config(chain, &leaf), &[record(2, 0, 1, &root)]).await;
    assert!(result.is_err());
    assert!(matches!(
        verifier.outcome(),
        Some(Err(DaneFailure::TaChainInvalid { .. }))
    ));
}

/// A rustls client config (as any TLS client would build one) using `verifier`, limited to the protocol
/// versions `min_version` allows, with the ring provider.
fn client_config(
    verifier: Arc<DaneVerifier>,
    min_version: MinTlsVersion,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(min_version.rustls_versions())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(config)
}
