//! The daemon the console tests sign in to: `sealpost serve` with
//! `[console]` on a free loopback port, its certificate from `[tls]`
//! (issued by a test CA the clients trust), an operator in the main file
//! and one administrator per tenant in the tenant files.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::support::pki::TestCa;
use super::support::sealpost::{free_port, Sealpost};

pub const OPERATOR: (&str, &str) = ("ops", "operator password");
pub const ALICE: (&str, &str) = ("alice", "alice's password");
pub const BOB: (&str, &str) = ("bob", "bob's password");

/// The console's host name (in its certificate).
pub const CONSOLE_NAME: &str = "console.sealpost.test";

pub struct Console {
    pub sealpost: Sealpost,
    pub addr: SocketAddr,
    pub ca: TestCa,
}

fn hash(password: &str) -> String {
    sealpost::auth::hash_password(password.as_bytes(), sealpost::auth::MIN_ITERATIONS)
        .expect("hash")
        .to_string()
}

pub fn acme_file() -> String {
    format!(
        "[[tenants]]\nname = \"acme\"\nrelay_sources = [\"127.0.0.0/8\"]\nconsole_admins = [{{ name = \"{}\", password_hash = \"{}\" }}]\n\n# acme's domain\n[[domains]]\nname = \"acme.test\"\ntenant = \"acme\"\n",
        ALICE.0,
        hash(ALICE.1)
    )
}

pub fn beta_file() -> String {
    format!(
        "[[tenants]]\nname = \"beta\"\nconsole_admins = [{{ name = \"{}\", password_hash = \"{}\" }}]\n\n[[domains]]\nname = \"beta.test\"\ntenant = \"beta\"\n[[domains.outbound.peers]]\npeer = \"secret-partner.example\"\nlevel = \"mandatory\"\n",
        BOB.0,
        hash(BOB.1)
    )
}

/// Starts the daemon; `extra` is added to the main file (e.g. `[dns]`,
/// `[delivery]`), `idle` is `[console] idle_timeout`.
pub fn start(extra: &str, idle: &str) -> Console {
    let ca = TestCa::new("sealpost console test CA");
    let leaf = ca.issue(&[CONSOLE_NAME]);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("console.crt"), &leaf.cert_pem).expect("cert");
    std::fs::write(dir.path().join("console.key"), &leaf.key_pem).expect("key");
    std::fs::create_dir(dir.path().join("tenants.d")).expect("mkdir");
    std::fs::write(dir.path().join("tenants.d/acme.toml"), acme_file()).expect("acme");
    std::fs::write(dir.path().join("tenants.d/beta.toml"), beta_file()).expect("beta");
    let console_port = free_port();
    let operator_hash = hash(OPERATOR.1);
    let sealpost = Sealpost::start_in(dir, |listen| {
        format!(
            r#"[server]
hostname = "mx.sealpost.test"
data_dir = "data"
tenants_dir = "tenants.d"

[[listeners]]
address = "127.0.0.1:{listen}"

[tls]
certificate = "console.crt"
key = "console.key"

[console]
listen = ["127.0.0.1:{console_port}"]
idle_timeout = "{idle}"
[[console.operators]]
name = "{op}"
password_hash = "{operator_hash}"

{extra}
"#,
            op = OPERATOR.0,
        )
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], console_port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the console did not listen:\n{}",
            sealpost.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Console { sealpost, addr, ca }
}

impl Console {
    pub fn client(&self) -> super::client::Client {
        super::client::Client::new(self.addr, self.ca.roots())
    }

    pub fn tenant_file(&self, tenant: &str) -> String {
        std::fs::read_to_string(self.sealpost.path(&format!("tenants.d/{tenant}.toml")))
            .expect("tenant file")
    }

    /// The audit log's lines.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.sealpost.path("data/audit.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit JSON"))
            .collect()
    }
}
