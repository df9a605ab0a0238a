//! A real ACME server for tests: Debian's `pebble` (installed by
//! `.ci/run`), started on loopback with a configuration and HTTPS
//! certificate made here, validating challenges against the given ports
//! and resolving names with the given DNS server (the test's own).
//! `PEBBLE_VA_NOSLEEP=1` drops its random validation delays and
//! `PEBBLE_WFE_NONCEREJECT=0` its random nonce rejections.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pki::TestCa;
use super::sealpost::free_port;

pub struct Pebble {
    child: Child,
    pub dir: tempfile::TempDir,
    /// `https://127.0.0.1:<port>/dir`
    pub directory: String,
    /// The CA of pebble's own HTTPS certificate (PEM file), for `[acme] ca_file`.
    pub https_ca: PathBuf,
    https_ca_cert: TestCa,
    management: SocketAddr,
}

impl Pebble {
    /// Starts pebble; TLS-ALPN-01 is validated on `tls_port`, names are
    /// resolved with `dns`.
    pub fn start(tls_port: u16, dns: SocketAddr) -> Pebble {
        Pebble::start_with(tls_port, free_port(), dns)
    }

    /// As [`Pebble::start`], with HTTP-01 validated on `http_port`.
    pub fn start_with(tls_port: u16, http_port: u16, dns: SocketAddr) -> Pebble {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new("pebble test HTTPS CA");
        let leaf = ca.issue(&["127.0.0.1", "localhost"]);
        std::fs::write(dir.path().join("cert.pem"), &leaf.cert_pem).expect("write");
        std::fs::write(dir.path().join("key.pem"), &leaf.key_pem).expect("write");
        let https_ca = dir.path().join("https-ca.pem");
        std::fs::write(&https_ca, &ca.cert_pem).expect("write");
        let (port, management) = (free_port(), free_port());
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": dir.path().join("cert.pem"),
                "privateKey": dir.path().join("key.pem"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("write");
        let log = std::fs::File::create(dir.path().join("pebble.log")).expect("log");
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .arg("-dnsserver")
            .arg(dns.to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start pebble (apt-get install pebble)");
        let pebble = Pebble {
            child,
            directory: format!("https://127.0.0.1:{port}/dir"),
            https_ca,
            https_ca_cert: ca,
            management: SocketAddr::from(([127, 0, 0, 1], management)),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
            || std::net::TcpStream::connect(pebble.management).is_err()
        {
            assert!(
                Instant::now() < deadline,
                "pebble did not start:\n{}",
                pebble.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        pebble
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// The root pebble issues under (made at its start), from its
    /// management interface.
    pub async fn issuing_root(&self) -> rustls::pki_types::CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        let pem = self.management_get("/roots/0").await;
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("root PEM")
    }

    async fn management_get(&self, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let config = rustls::ClientConfig::builder_with_provider(super::pki::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(self.https_ca_cert.roots())
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(self.management)
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let mut tls = connector.connect(name, tcp).await.expect("TLS to pebble");
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response).await;
        let response = String::from_utf8_lossy(&response).to_string();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or("");
        body.to_string()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
