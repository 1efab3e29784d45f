//! `[[edge.acme]]` against a real ACME server: Debian's `pebble` (with `pebble-challtestsrv`
//! as its DNS server, answering 127.0.0.1 for every name), started by each test on free
//! ports of 127.0.0.1, validating for real (`PEBBLE_VA_ALWAYS_VALID=0`) against the edge's
//! own listeners. Covered: issuance by `http-01` and by `tls-alpn-01`, the new certificate
//! served over TLS (verified by a rustls client against pebble's root), renewal of
//! short-lived certificates on schedule, a failed order (pebble down) that keeps the
//! certificate serving and says so on `/status` and in metrics, a restart that serves the
//! stored certificate with pebble gone, the placeholder while no CA answers, a challenge the
//! CA cannot validate, an expired certificate that keeps serving while the CA is down, an
//! ACME table as a TLS site (its client certificates and policy, beside `[[edge.tls]]`
//! sites), and the edge-owned challenge path. A missing `pebble` fails the test and names its package
//! (`scripts/test` installs it).

use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

const NAMES: [&str; 2] = ["shop.acme.test", "www.acme.test"];

fn tool(name: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{name} is missing: install the Debian package {package} (scripts/test does)")
    })
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port free for both UDP and TCP (a DNS server takes both).
fn free_dns_port() -> u16 {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP")
}

fn wait_for_port(what: &str, port: u16, child: &mut Child) {
    let until = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(
            std::time::Instant::now() < until,
            "{what} did not listen on port {port} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// pebble and its DNS server; both are killed on drop.
pub(crate) struct Pebble {
    pebble: Child,
    dns: Child,
    port: u16,
    management: u16,
    /// The CA pebble's own HTTPS certificate chains to (the edge's `ca_file`).
    pub(crate) wfe_ca: TestCa,
    _dir: tempfile::TempDir,
}

impl Pebble {
    /// pebble validating on the edge's `http_port` / `tls_port`; certificates valid for
    /// `validity` seconds (pebble's default when `None`).
    pub(crate) fn start(http_port: u16, tls_port: u16, validity: Option<u64>) -> Pebble {
        let pebble_bin = tool("pebble", "pebble");
        let dns_bin = tool("pebble-challtestsrv", "pebble");
        let dir = tempfile::tempdir().unwrap();
        let wfe_ca = TestCa::new("pebble WFE test CA");
        wfe_ca.leaf(&["localhost"]).write(dir.path(), "wfe");
        let port = free_port();
        let management = free_port();
        let dns_port = free_dns_port();
        let dns_management = free_port();
        let validity = validity.map_or(String::new(), |v| {
            format!(",\n    \"certificateValidityPeriod\": {v}")
        });
        let config = format!(
            r#"{{
  "pebble": {{
    "listenAddress": "127.0.0.1:{port}",
    "managementListenAddress": "127.0.0.1:{management}",
    "certificate": "{dir}/wfe.pem",
    "privateKey": "{dir}/wfe.key",
    "httpPort": {http_port},
    "tlsPort": {tls_port},
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false{validity}
  }}
}}"#,
            dir = dir.path().display(),
        );
        std::fs::write(dir.path().join("pebble.json"), config).unwrap();
        let mut dns = Command::new(dns_bin)
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args([
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-defaultIPv6",
                "",
            ])
            .args(["-defaultIPv4", "127.0.0.1"])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port("pebble-challtestsrv", dns_management, &mut dns);
        let mut pebble = Command::new(pebble_bin)
            .arg("-config")
            .arg(dir.path().join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port("pebble", port, &mut pebble);
        wait_for_port("pebble management", management, &mut pebble);
        Pebble {
            pebble,
            dns,
            port,
            management,
            wfe_ca,
            _dir: dir,
        }
    }

    pub(crate) fn directory(&self) -> String {
        format!("https://localhost:{}/dir", self.port)
    }

    /// pebble's issuing root, from its management interface (made anew at each start).
    pub(crate) async fn root(&self) -> CertificateDer<'static> {
        let mut roots = RootCertStore::empty();
        roots.add(self.wfe_ca.der.clone()).unwrap();
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let addr: SocketAddr = ([127, 0, 0, 1], self.management).into();
        let tls = handshake(addr, "localhost", Arc::new(config))
            .await
            .unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("/roots/0")
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let pem = resp.into_body().collect().await.unwrap().to_bytes();
        CertificateDer::from_pem_slice(&pem).unwrap()
    }

    fn stop(&mut self) {
        let _ = self.pebble.kill();
        let _ = self.pebble.wait();
        let _ = self.dns.kill();
        let _ = self.dns.wait();
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

async fn handshake(
    addr: SocketAddr,
    sni: &str,
    config: Arc<ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, std::io::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// A client that verifies the edge's chain against `root` (pebble's), for `sni`.
fn verifying(root: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn any_cert() -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(crate::tls::AcceptAny(provider())))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The leaf the edge serves for `sni`, verified against `root`; `None` if the handshake or
/// the verification fails.
pub(crate) async fn served_leaf(
    addr: SocketAddr,
    sni: &str,
    root: &CertificateDer<'static>,
) -> Option<CertificateDer<'static>> {
    let tls = handshake(addr, sni, verifying(root)).await.ok()?;
    let chain = tls.get_ref().1.peer_certificates()?;
    assert!(
        chain.len() >= 2,
        "the edge sends the leaf and pebble's intermediate"
    );
    Some(chain[0].clone().into_owned())
}

/// The leaf the edge serves for `sni`, whatever it is.
async fn any_leaf(addr: SocketAddr, sni: &str) -> CertificateDer<'static> {
    let tls = handshake(addr, sni, any_cert()).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

pub(crate) fn subject_cn(cert: &CertificateDer<'_>) -> String {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, c) = X509Certificate::from_der(cert.as_ref()).unwrap();
    let cn = c
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_string();
    cn
}

/// An edge with one `[[edge.acme]]` set for `NAMES`, listening on the given ports, with
/// pebble's WFE CA as `ca_file`.
struct AcmeEdge {
    http: u16,
    https: u16,
}

impl AcmeEdge {
    fn ports() -> AcmeEdge {
        AcmeEdge {
            http: free_port(),
            https: free_port(),
        }
    }

    fn config(&self, directory: &str, challenge: &str, origin: SocketAddr) -> String {
        self.config_with(directory, challenge, origin, "", "")
    }

    /// `config` with more keys on the `[[edge.acme]]` table and more tables after it.
    fn config_with(
        &self,
        directory: &str,
        challenge: &str,
        origin: SocketAddr,
        acme_keys: &str,
        tables: &str,
    ) -> String {
        let names = NAMES.map(|n| format!("\"{n}\"")).join(", ");
        format!(
            r#"
[edge]
listen = ["127.0.0.1:{http}"]
tls_listen = ["127.0.0.1:{https}"]
threads = 1
access_log = "off"
state_dir = "state"

[[edge.acme]]
domains = [{names}]
contact = "mailto:ops@acme.test"
directory = "{directory}"
challenge = "{challenge}"
ca_file = "wfe-ca.pem"
{acme_keys}
{tables}

[admin]
listen = "127.0.0.1:0"

[[pools]]
name = "app"
servers = ["{origin}"]

[[routes]]
name = "all"
match = {{ path_prefix = "/" }}
pool = "app"
"#,
            http = self.http,
            https = self.https,
        )
    }

    fn https(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.https).into()
    }

    /// Start in `dir` (kept by the caller across restarts), trusting `wfe_ca_pem`.
    fn start(&self, dir: &Path, config: &str, wfe_ca_pem: &str) -> holdfast::Running {
        std::fs::write(dir.join("wfe-ca.pem"), wfe_ca_pem).unwrap();
        let path = dir.join("edge.toml");
        std::fs::write(&path, config).unwrap();
        holdfast::Running::start(holdfast::ConfigSource::File(path))
            .unwrap_or_else(|e| panic!("edge did not start: {e}"))
    }
}

async fn status_of(admin: SocketAddr) -> serde_json::Value {
    get(&format!("http://{admin}/status")).await.json()["acme"][0].clone()
}

async fn metrics_of(admin: SocketAddr) -> String {
    get(&format!("http://{admin}/metrics")).await.text()
}

/// Wait until the edge serves a certificate for every name that verifies against `root`
/// and differs from `before`; returns it.
async fn issued(
    edge: &AcmeEdge,
    root: &CertificateDer<'static>,
    before: Option<&CertificateDer<'static>>,
    within: Duration,
    admin: SocketAddr,
) -> CertificateDer<'static> {
    let until = std::time::Instant::now() + within;
    loop {
        if let Some(leaf) = served_leaf(edge.https(), NAMES[0], root).await {
            if Some(&leaf) != before {
                for name in NAMES {
                    let again = served_leaf(edge.https(), name, root).await;
                    assert_eq!(
                        again.as_ref(),
                        Some(&leaf),
                        "{name} gets the same certificate"
                    );
                }
                return leaf;
            }
        }
        assert!(
            std::time::Instant::now() < until,
            "no new certificate within {within:?}; /status: {}",
            status_of(admin).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run_http_challenge_flow(challenge: &str) {
    let origin = Origin::text("from the origin").await;
    let edge = AcmeEdge::ports();
    let pebble = Pebble::start(edge.http, edge.https, None);
    let root = pebble.root().await;
    let dir = tempfile::tempdir().unwrap();
    let running = edge.start(
        dir.path(),
        &edge.config(&pebble.directory(), challenge, origin.addr),
        &pebble.wfe_ca.pem,
    );
    let admin = running.admin_addr;
    let leaf = issued(&edge, &root, None, Duration::from_secs(60), admin).await;
    assert!(!subject_cn(&leaf).contains("placeholder"));
    let status = status_of(admin).await;
    assert_eq!(status["certificate"], "issued", "{status}");
    assert_eq!(status["challenge"], challenge);
    assert!(status["days_left"].as_f64().unwrap() > 300.0, "{status}");
    assert_eq!(status["failures"], 0);
    let metrics = metrics_of(admin).await;
    assert_eq!(
        metric(&metrics, r#"holdfast_acme_orders_total{result="issued"}"#),
        Some(1.0),
        "{metrics}"
    );
    let expiry = metric(
        &metrics,
        &format!(
            r#"holdfast_tls_certificate_expiry_seconds{{names="{}"}}"#,
            NAMES.join(",")
        ),
    )
    .unwrap();
    assert!(expiry > 300.0 * 86_400.0, "{expiry}");
    // The certificate and the account are stored, owner-only.
    let files: Vec<_> = std::fs::read_dir(dir.path().join("state/acme"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f:?}");
    }
    // Requests still reach the origin over the new certificate's TLS.
    let tls = handshake(edge.https(), NAMES[1], verifying(&root))
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(
            http::Request::get("/")
                .header("host", NAMES[1])
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "from the origin"
    );
    blocking(|| running.shutdown());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_issues_a_certificate_the_edge_then_serves() {
    run_http_challenge_flow("http-01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_01_issues_a_certificate_the_edge_then_serves() {
    run_http_challenge_flow("tls-alpn-01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_certificate_is_renewed_before_it_expires() {
    let origin = Origin::text("ok").await;
    let edge = AcmeEdge::ports();
    // 30 s certificates: renewal is due at about 20 s.
    let pebble = Pebble::start(edge.http, edge.https, Some(30));
    let root = pebble.root().await;
    let dir = tempfile::tempdir().unwrap();
    let running = edge.start(
        dir.path(),
        &edge.config(&pebble.directory(), "http-01", origin.addr),
        &pebble.wfe_ca.pem,
    );
    let admin = running.admin_addr;
    let first = issued(&edge, &root, None, Duration::from_secs(60), admin).await;
    let status = status_of(admin).await;
    assert!(status["days_left"].as_f64().unwrap() < 0.01, "{status}");
    assert!(status["next_order_at"].is_string(), "{status}");
    let second = issued(&edge, &root, Some(&first), Duration::from_secs(60), admin).await;
    assert_ne!(first, second);
    let metrics = metrics_of(admin).await;
    assert!(
        metric(&metrics, r#"holdfast_acme_orders_total{result="issued"}"#).unwrap() >= 2.0,
        "{metrics}"
    );
    blocking(|| running.shutdown());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_renewal_keeps_the_certificate_and_a_restart_serves_the_stored_one() {
    let origin = Origin::text("ok").await;
    let edge = AcmeEdge::ports();
    let mut pebble = Pebble::start(edge.http, edge.https, None);
    let root = pebble.root().await;
    let dir = tempfile::tempdir().unwrap();
    let config = edge.config(&pebble.directory(), "http-01", origin.addr);
    let running = edge.start(dir.path(), &config, &pebble.wfe_ca.pem);
    let admin = running.admin_addr;
    let leaf = issued(&edge, &root, None, Duration::from_secs(60), admin).await;

    // The CA goes away; a renewal now fails, and nothing that serves changes.
    pebble.stop();
    assert!(running.acme_renew_now());
    eventually(
        "the failed order on /status",
        Duration::from_secs(60),
        || async { status_of(admin).await["failures"] == 1 },
    )
    .await;
    let status = status_of(admin).await;
    assert_eq!(status["certificate"], "issued", "{status}");
    assert!(
        status["last_error"].as_str().unwrap().contains("localhost"),
        "{status}"
    );
    assert!(status["last_error_at"].is_string(), "{status}");
    assert!(status["days_left"].as_f64().unwrap() > 300.0, "{status}");
    let metrics = metrics_of(admin).await;
    assert_eq!(
        metric(&metrics, r#"holdfast_acme_orders_total{result="failed"}"#),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        served_leaf(edge.https(), NAMES[0], &root).await,
        Some(leaf.clone())
    );
    blocking(|| running.shutdown());

    // A restart with the CA still gone serves the stored certificate from the first handshake.
    let running = edge.start(dir.path(), &config, &pebble.wfe_ca.pem);
    assert_eq!(
        served_leaf(edge.https(), NAMES[0], &root).await,
        Some(leaf.clone())
    );
    assert_eq!(served_leaf(edge.https(), NAMES[1], &root).await, Some(leaf));
    let status = status_of(running.admin_addr).await;
    assert_eq!(status["certificate"], "issued", "{status}");
    blocking(|| running.shutdown());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_ca_the_placeholder_serves_and_status_says_so() {
    let mut origin = Origin::text("from the origin").await;
    let edge = AcmeEdge::ports();
    let dead = dead_addr();
    let wfe_ca = TestCa::new("nobody");
    let dir = tempfile::tempdir().unwrap();
    let directory = format!("https://localhost:{}/dir", dead.port());
    let running = edge.start(
        dir.path(),
        &edge.config(&directory, "tls-alpn-01", origin.addr),
        &wfe_ca.pem,
    );
    let admin = running.admin_addr;
    let leaf = any_leaf(edge.https(), NAMES[1]).await;
    assert!(
        subject_cn(&leaf).contains("placeholder"),
        "{}",
        subject_cn(&leaf)
    );
    // A client without SNI gets it too (the first set is the default).
    let tls = handshake(edge.https(), "127.0.0.1", any_cert())
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.peer_certificates().unwrap()[0], leaf);
    eventually(
        "the first order failed",
        Duration::from_secs(30),
        || async { status_of(admin).await["failures"].as_u64() >= Some(1) },
    )
    .await;
    let status = status_of(admin).await;
    assert_eq!(status["certificate"], "placeholder", "{status}");
    assert!(status["not_after"].is_null(), "{status}");
    assert!(status["last_error"].is_string(), "{status}");
    // The edge owns the http-01 path: an unknown token is its 404, never the origin's.
    let got = get(&format!(
        "http://127.0.0.1:{}/.well-known/acme-challenge/nothing-here",
        edge.http
    ))
    .await;
    assert_eq!(got.status, 404);
    assert_eq!(origin.requests(), 0);
    // Other paths still reach the origin.
    let got = get(&format!("http://127.0.0.1:{}/.well-known/other", edge.http)).await;
    assert_eq!(got.text(), "from the origin");
    origin.stop();
    blocking(|| running.shutdown());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_ca_file_stops_the_start_and_names_the_key() {
    let edge = AcmeEdge::ports();
    let dir = tempfile::tempdir().unwrap();
    let config = edge.config("https://localhost:1/dir", "http-01", dead_addr());
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, &config).unwrap();
    std::fs::write(dir.path().join("wfe-ca.pem"), "not a certificate").unwrap();
    let err = holdfast::Running::start(holdfast::ConfigSource::File(path))
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(text.contains("edge.acme[0].ca_file"), "{text}");
    assert!(text.contains("edge.toml"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_the_ca_cannot_validate_fails_the_order_and_the_placeholder_stays() {
    let mut origin = Origin::text("from the origin").await;
    let edge = AcmeEdge::ports();
    // pebble validates on ports where nothing listens: every challenge fails.
    let pebble = Pebble::start(free_port(), free_port(), None);
    let dir = tempfile::tempdir().unwrap();
    let running = edge.start(
        dir.path(),
        &edge.config(&pebble.directory(), "http-01", origin.addr),
        &pebble.wfe_ca.pem,
    );
    let admin = running.admin_addr;
    eventually(
        "the failed order on /status",
        Duration::from_secs(60),
        || async { status_of(admin).await["failures"].as_u64() >= Some(1) },
    )
    .await;
    let status = status_of(admin).await;
    assert_eq!(status["certificate"], "placeholder", "{status}");
    assert!(status["last_error"].is_string(), "{status}");
    let metrics = metrics_of(admin).await;
    assert!(
        metric(&metrics, r#"holdfast_acme_orders_total{result="failed"}"#) >= Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, r#"holdfast_acme_orders_total{result="issued"}"#),
        Some(0.0),
        "{metrics}"
    );
    // The placeholder still answers every name, and requests still reach the origin.
    for name in NAMES {
        let leaf = any_leaf(edge.https(), name).await;
        assert!(subject_cn(&leaf).contains("placeholder"), "{name}");
    }
    let tls = handshake(edge.https(), NAMES[0], any_cert()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(
            http::Request::get("/")
                .header("host", NAMES[0])
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    origin.stop();
    blocking(|| running.shutdown());
}

fn not_after(cert: &CertificateDer<'_>) -> std::time::SystemTime {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, c) = X509Certificate::from_der(cert.as_ref()).unwrap();
    let secs = u64::try_from(c.validity().not_after.timestamp()).unwrap();
    std::time::UNIX_EPOCH + Duration::from_secs(secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_keeps_serving_while_the_ca_is_down_and_after_a_restart() {
    let origin = Origin::text("ok").await;
    let edge = AcmeEdge::ports();
    // 8 s certificates: they expire while the test watches.
    let mut pebble = Pebble::start(edge.http, edge.https, Some(8));
    let root = pebble.root().await;
    let dir = tempfile::tempdir().unwrap();
    let config = edge.config(&pebble.directory(), "http-01", origin.addr);
    let running = edge.start(dir.path(), &config, &pebble.wfe_ca.pem);
    let admin = running.admin_addr;
    issued(&edge, &root, None, Duration::from_secs(60), admin).await;
    // The CA goes away; what serves now is the last good certificate.
    pebble.stop();
    let leaf = any_leaf(edge.https(), NAMES[0]).await;
    assert!(!subject_cn(&leaf).contains("placeholder"));
    let expiry = not_after(&leaf);
    // Wait for the wall clock to pass notAfter (the edge is not told anything).
    eventually(
        "the certificate's notAfter to pass",
        Duration::from_secs(60),
        || async { std::time::SystemTime::now() > expiry + Duration::from_secs(1) },
    )
    .await;
    // Renewals fail (the CA is down), and the expired certificate is still what serves:
    // never a placeholder, never no certificate.
    assert!(running.acme_renew_now());
    eventually(
        "a failed renewal on /status",
        Duration::from_secs(60),
        || async { status_of(admin).await["failures"].as_u64() >= Some(1) },
    )
    .await;
    assert_eq!(any_leaf(edge.https(), NAMES[0]).await, leaf);
    assert_eq!(any_leaf(edge.https(), NAMES[1]).await, leaf);
    let status = status_of(admin).await;
    assert_eq!(status["certificate"], "issued", "{status}");
    assert!(status["days_left"].as_f64().unwrap() <= 0.0, "{status}");
    let metrics = metrics_of(admin).await;
    let left = metric(
        &metrics,
        &format!(
            r#"holdfast_tls_certificate_expiry_seconds{{names="{}"}}"#,
            NAMES.join(",")
        ),
    )
    .unwrap();
    assert!(left < 0.0, "{metrics}");
    blocking(|| running.shutdown());

    // A restart with the CA still gone serves the stored, expired certificate.
    let running = edge.start(dir.path(), &config, &pebble.wfe_ca.pem);
    assert_eq!(any_leaf(edge.https(), NAMES[0]).await, leaf);
    let status = status_of(running.admin_addr).await;
    assert_eq!(status["certificate"], "issued", "{status}");
    blocking(|| running.shutdown());
}

/// A client trusting `root` (pebble's) for the edge, presenting `cert`, with `versions`.
fn client_with_cert(
    root: &CertificateDer<'static>,
    cert: Option<&Leaf>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match cert {
        None => builder.with_no_client_auth(),
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![leaf.der.clone()],
                tokio_rustls::rustls::pki_types::PrivateKeyDer::from_pem_slice(
                    leaf.key_pem.as_bytes(),
                )
                .unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One request for `/` with `host` over a TLS connection made with `config` for `sni`: the
/// status, or why the handshake or the exchange failed.
async fn get_over(
    addr: SocketAddr,
    sni: &str,
    host: &str,
    config: Arc<ClientConfig>,
) -> Result<http::StatusCode, String> {
    let tls = handshake(addr, sni, config)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    Ok(resp.status())
}

/// An `[[edge.acme]]` table is a TLS site like an `[[edge.tls]]` one: its names are chosen by
/// SNI before a file's wildcard, its `client_auth` and `min_version` apply to their
/// handshakes, and the CA's validation still passes (the `http-01` path before the
/// client-certificate check, the `tls-alpn-01` handshake with the challenge configuration).
async fn run_acme_site_flow(challenge: &str) {
    let origin = Origin::text("from the origin").await;
    let edge = AcmeEdge::ports();
    let pebble = Pebble::start(edge.http, edge.https, None);
    let root = pebble.root().await;
    let dir = tempfile::tempdir().unwrap();
    let clients = TestCa::new("clients");
    std::fs::write(dir.path().join("clients-ca.pem"), &clients.pem).unwrap();
    let files = TestCa::new("files");
    files.leaf(&["*.acme.test"]).write(dir.path(), "wildcard");
    let config = edge.config_with(
        &pebble.directory(),
        challenge,
        origin.addr,
        "client_auth = \"require\"\nclient_ca = \"clients-ca.pem\"\nmin_version = \"1.3\"\n",
        "[[edge.tls]]\nnames = [\"*.acme.test\"]\ncert = \"wildcard.pem\"\nkey = \"wildcard.key\"\n",
    );
    let running = edge.start(dir.path(), &config, &pebble.wfe_ca.pem);
    let admin = running.admin_addr;
    issued(&edge, &root, None, Duration::from_secs(60), admin).await;
    let status = status_of(admin).await;
    assert_eq!(status["certificate"], "issued", "{status}");
    assert_eq!(status["challenge"], challenge);

    let alice = clients.client("alice");
    let tls13 = &[&rustls::version::TLS13];
    let tls12 = &[&rustls::version::TLS12];
    // With a certificate from client_ca: served.
    let got = get_over(
        edge.https(),
        NAMES[0],
        NAMES[0],
        client_with_cert(&root, Some(&alice), tls13),
    )
    .await;
    assert_eq!(got, Ok(http::StatusCode::OK));
    // Without one: refused (TLS 1.3 shows it on the first read).
    let got = get_over(
        edge.https(),
        NAMES[1],
        NAMES[1],
        client_with_cert(&root, None, tls13),
    )
    .await;
    assert!(got.is_err(), "{got:?}");
    // Below the table's min_version: no handshake.
    let got = handshake(
        edge.https(),
        NAMES[0],
        client_with_cert(&root, Some(&alice), tls12),
    )
    .await;
    assert!(got.is_err());
    // Another name under the wildcard gets the file's site: its certificate, no client
    // certificate asked; but a request for an ACME name on that connection is 421.
    let other = any_leaf(edge.https(), "other.acme.test").await;
    assert_eq!(subject_cn(&other), "*.acme.test");
    let got = get_over(
        edge.https(),
        "other.acme.test",
        "other.acme.test",
        any_cert(),
    )
    .await;
    assert_eq!(got, Ok(http::StatusCode::OK));
    let got = get_over(edge.https(), "other.acme.test", NAMES[0], any_cert()).await;
    assert_eq!(got, Ok(http::StatusCode::MISDIRECTED_REQUEST));
    blocking(|| running.shutdown());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acme_table_is_a_tls_site_validated_by_http_01() {
    run_acme_site_flow("http-01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acme_table_is_a_tls_site_validated_by_tls_alpn_01() {
    run_acme_site_flow("tls-alpn-01").await;
}
