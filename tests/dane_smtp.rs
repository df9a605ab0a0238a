//! DANE through sealpost's SMTP client: the destination is planned from the
//! signed test zone (`dane::resolve_destination`), the host's TLS and
//! parameters come from the delivery engine (`delivery::decision`), then
//! the real client connects to a real SMTP receiver on loopback with the
//! DANE verifier, and the engine's `connection_verdict` judges the result.
//! These are the rows of the RFC 7672 table that need an SMTP session:
//! STARTTLS not offered while secure TLSA records exist (never that host),
//! a matching certificate (delivered, DANE-verified), a certificate that
//! does not match (never that host, not even in cleartext).
mod support;

use std::net::Ipv4Addr;
use std::sync::Arc;

use sealpost::dane::{resolve_destination, DaneLevel, DanePlan, DestinationOutcome, SkipReason};
use sealpost::delivery::decision::{
    connection_verdict, dane_host, ConnectionEvent, ConnectionVerdict, Hop, NotUsed,
};
use sealpost::policy::MinTlsVersion;
use sealpost::smtp::client::{ClientError, Connection, Peer, TlsAuthentication, TlsParams};
use support::client::{all_delivered, config, rcpts, send_one, server};
use support::dns::TestDns;
use support::pki::{self, Leaf, ALL_VERSIONS};
use support::smtp::accept_all;

const DOMAIN: &str = "secure.test";
const MX_HOST: &str = "mx.secure.test";

async fn zone(leaf: &Leaf) -> TestDns {
    let data = leaf.tlsa_3_1_1();
    TestDns::builder()
        .mx(DOMAIN, 10, MX_HOST)
        .a(MX_HOST, Ipv4Addr::LOCALHOST)
        .tlsa("_25._tcp.mx.secure.test", 3, 1, 1, &data)
        .start()
        .await
}

/// The plan for the only MX, which must be "authenticate with DANE".
async fn plan(dns: &TestDns) -> DanePlan {
    let destination = resolve_destination(&dns.resolver(), DaneLevel::Mandatory, DOMAIN).await;
    assert_eq!(destination.outcome, DestinationOutcome::Deliver);
    let mx = destination.mx.into_iter().next().expect("one MX");
    assert!(
        matches!(mx.plan, DanePlan::Authenticate { .. }),
        "{:?}",
        mx.plan
    );
    mx.plan
}

/// The engine's hop for the MX under the plan, and its parameters.
fn dane_params(plan: &DanePlan) -> (Hop, TlsParams) {
    let hop = Hop {
        host: MX_HOST.into(),
        addresses: Vec::new(),
        tls: dane_host(plan).expect("a DANE hop"),
        min_tls: MinTlsVersion::Any,
    };
    let params = hop.params(None).expect("params");
    (hop, params)
}

fn peer(addr: std::net::SocketAddr) -> Peer {
    Peer {
        mx_host: MX_HOST.into(),
        addr,
        local: None,
    }
}

#[tokio::test]
async fn starttls_not_offered_while_tlsa_exists_means_never_that_host() {
    let leaf = pki::self_signed(&[MX_HOST]);
    let dns = zone(&leaf).await;
    let plan = plan(&dns).await;
    let receiver = server(None, Arc::new(accept_all)).await;
    let (hop, params) = dane_params(&plan);

    let result = Connection::connect(peer(receiver.server.addr), &params, config()).await;
    let Err(error) = result else {
        panic!("no connection without STARTTLS under DANE");
    };
    assert!(
        matches!(error, ClientError::TlsNotOffered { .. }),
        "{error}"
    );
    assert_eq!(
        connection_verdict(&hop, &params, &ConnectionEvent::of_error(&error)),
        ConnectionVerdict::NotUsed(NotUsed::Dane(SkipReason::StartTlsNotOffered))
    );
    receiver.assert_nothing_sent();
}

#[tokio::test]
async fn a_matching_certificate_is_delivered_dane_verified() {
    let leaf = pki::self_signed(&[MX_HOST]);
    let dns = zone(&leaf).await;
    let plan = plan(&dns).await;
    let receiver = server(
        Some(pki::server_config(&leaf, ALL_VERSIONS)),
        Arc::new(accept_all),
    )
    .await;
    let (hop, params) = dane_params(&plan);

    let mut conn = Connection::connect(peer(receiver.server.addr), &params, config())
        .await
        .expect("DANE-authenticated connection");
    assert_eq!(conn.achieved().authentication, TlsAuthentication::Dane);
    assert!(matches!(
        connection_verdict(&hop, &params, &ConnectionEvent::of_session(conn.achieved())),
        ConnectionVerdict::SendOverTls {
            authenticated: TlsAuthentication::Dane,
            ..
        }
    ));
    let outcomes = send_one(&mut conn, &rcpts(&["bob"])).await;
    assert!(all_delivered(&outcomes), "{outcomes:?}");
    assert_eq!(receiver.server.received().len(), 1);
}

#[tokio::test]
async fn a_certificate_that_does_not_match_is_never_sent_to() {
    let published = pki::self_signed(&[MX_HOST]);
    let presented = pki::self_signed(&[MX_HOST]);
    let dns = zone(&published).await;
    let plan = plan(&dns).await;
    let receiver = server(
        Some(pki::server_config(&presented, ALL_VERSIONS)),
        Arc::new(accept_all),
    )
    .await;
    let (hop, params) = dane_params(&plan);

    let result = Connection::connect(peer(receiver.server.addr), &params, config()).await;
    let Err(error) = result else {
        panic!("the handshake must fail");
    };
    assert!(
        matches!(error, ClientError::TlsHandshakeFailed { .. }),
        "{error}"
    );
    assert!(
        !error.retry_cleartext_allowed(),
        "no cleartext retry under DANE"
    );
    // Never that host, not even in cleartext: the DANE reason, read back
    // from the handshake error as the attempt driver reads it.
    assert!(matches!(
        connection_verdict(&hop, &params, &ConnectionEvent::of_error(&error)),
        ConnectionVerdict::NotUsed(NotUsed::Dane(SkipReason::DaneAuthenticationFailed(_)))
    ));
    receiver.assert_nothing_sent();
}
