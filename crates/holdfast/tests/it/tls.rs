//! TLS on both sides. Listeners: the certificate is chosen by SNI (exact, `*.` wildcard, then
//! the default), ALPN picks HTTP/2 or HTTP/1.1, TLS 1.2 and 1.3 are accepted, and a reload
//! with broken key material keeps the certificates in use. Origins: a pool's `tls` table
//! verifies the origin against its CA (a wrong CA is a 502) and can speak HTTP/2.
//! Certificates are made at run time with `rcgen`; no key is committed.

use crate::support::*;
use bytes::Bytes;
use http::{Request, Version};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, ProtocolVersion, RootCertStore, ServerConfig,
    SignatureScheme,
};

const TLS_EDGE: &str = r#"
[edge]
listen = ["{edge}"]
tls_listen = ["{edge}"]
threads = 1
access_log = "off"

# The default certificate: no names.
[[edge.tls]]
cert = "default.pem"
key = "default.key"

[[edge.tls]]
names = ["example.com"]
cert = "example.pem"
key = "example.key"

[[edge.tls]]
names = ["*.example.org"]
cert = "org.pem"
key = "org.key"

[admin]
listen = "{admin}"

[[pools]]
name = "primary"
servers = ["{origin}"]

[[routes]]
name = "all"
match = {}
pool = "primary"
"#;

/// The certificates the TLS edge serves, and the CA that issued them.
struct Certs {
    ca: TestCa,
    default: Leaf,
    example: Leaf,
    org: Leaf,
}

impl Certs {
    fn new() -> Certs {
        let ca = TestCa::new("Holdfast test CA");
        Certs {
            default: ca.leaf(&["fallback.test"]),
            example: ca.leaf(&["example.com"]),
            org: ca.leaf(&["*.example.org"]),
            ca,
        }
    }

    fn write(&self, dir: &Path) {
        self.default.write(dir, "default");
        self.example.write(dir, "example");
        self.org.write(dir, "org");
        std::fs::write(dir.join("ca.pem"), &self.ca.pem).unwrap();
    }
}

/// An edge whose files (certificates first, then the config) are written into a new folder.
fn tls_edge(certs: &Certs, origin: &Origin) -> Edge {
    Edge::start_in_dir(TLS_EDGE, &[("origin", origin.addr.to_string())], |dir| {
        certs.write(dir)
    })
}

fn https_addr(edge: &Edge) -> SocketAddr {
    edge.running().https_addrs[0]
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn roots(ca: &TestCa) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    roots
}

/// A client trusting `ca`, offering `alpn`, limited to `versions` (all safe ones if empty).
fn client_config(
    ca: &TestCa,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider());
    let builder = if versions.is_empty() {
        builder.with_safe_default_protocol_versions().unwrap()
    } else {
        builder.with_protocol_versions(versions).unwrap()
    };
    let mut config = builder
        .with_root_certificates(roots(ca))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Accepts any server certificate: for looking at which one the default is, whatever name
/// the client asked for.
#[derive(Debug)]
pub(crate) struct AcceptAny(pub(crate) Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn accept_any_config() -> Arc<ClientConfig> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
        .with_no_client_auth();
    Arc::new(config)
}

/// Connect and complete a TLS handshake, sending `sni` (a DNS name) or none (an IP address).
async fn connect(
    addr: SocketAddr,
    sni: &str,
    config: Arc<ClientConfig>,
) -> TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake with SNI {sni:?}: {e}"))
}

fn served_cert(tls: &TlsStream<tokio::net::TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// One HTTP/1.1 request on an established stream.
async fn h1_get<S>(io: S, uri: &str) -> (http::Response<()>, Bytes)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(uri)
        .header("host", "example.com")
        .body(Body::default())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    (
        http::Response::from_parts(parts, ()),
        body.collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_exact_then_wildcard_then_default_certificate() {
    let origin = Origin::text("hello").await;
    let certs = Certs::new();
    let edge = tls_edge(&certs, &origin);
    let addr = https_addr(&edge);
    let verified = client_config(&certs.ca, &[], &[]);

    // Verified against the CA, so each is also a valid chain for the name asked.
    let exact = connect(addr, "example.com", verified.clone()).await;
    assert_eq!(served_cert(&exact), certs.example.der);
    let wild = connect(addr, "a.example.org", verified.clone()).await;
    assert_eq!(served_cert(&wild), certs.org.der);
    let fallback = connect(addr, "fallback.test", verified).await;
    assert_eq!(served_cert(&fallback), certs.default.der);

    let any = accept_any_config();
    for sni in [
        "unknown.test",
        "example.org",
        "deep.a.example.org",
        "www.example.com",
    ] {
        let tls = connect(addr, sni, any.clone()).await;
        assert_eq!(served_cert(&tls), certs.default.der, "SNI {sni}");
    }
    // An IP address sends no SNI at all.
    let tls = connect(addr, "127.0.0.1", any).await;
    assert_eq!(served_cert(&tls), certs.default.der, "no SNI");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_h2_is_served_as_http2_to_an_http1_origin_over_https() {
    let origin = Origin::text("hello").await;
    let certs = Certs::new();
    let edge = tls_edge(&certs, &origin);
    let config = client_config(&certs.ca, &[b"h2", b"http/1.1"], &[]);
    let tls = connect(https_addr(&edge), "example.com", config).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    for path in ["/one", "/two"] {
        let req = Request::get(format!("https://example.com{path}"))
            .body(Body::default())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.version(), Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().contains_key("x-request-id"));
        assert_eq!(
            resp.into_body().collect().await.unwrap().to_bytes(),
            "hello"
        );
        let seen = origin.last();
        assert_eq!(seen.uri.path(), path);
        assert_eq!(seen.version, Version::HTTP_11);
        assert_eq!(seen.headers["x-forwarded-proto"], "https");
        assert_eq!(seen.headers["host"], "example.com");
        assert_eq!(seen.headers["via"], "2 holdfast");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_http1_and_no_alpn_are_served_as_http1() {
    let origin = Origin::text("hello").await;
    let certs = Certs::new();
    let edge = tls_edge(&certs, &origin);
    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let config = client_config(&certs.ca, alpn, &[]);
        let tls = connect(https_addr(&edge), "example.com", config).await;
        let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        assert_eq!(negotiated, alpn.first().map(|p| p.to_vec()));
        let (resp, body) = h1_get(tls, "/h1").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), Version::HTTP_11);
        assert_eq!(body, "hello");
        assert_eq!(origin.last().headers["x-forwarded-proto"], "https");
    }
    // The plain listener next to it still says http.
    assert_eq!(get(&edge.url("/plain")).await.text(), "hello");
    assert_eq!(origin.last().headers["x-forwarded-proto"], "http");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_and_1_3_are_both_accepted() {
    let origin = Origin::text("hello").await;
    let certs = Certs::new();
    let edge = tls_edge(&certs, &origin);
    let versions = [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ];
    for (version, expected) in versions {
        let config = client_config(&certs.ca, &[b"http/1.1"], &[version]);
        let tls = connect(https_addr(&edge), "example.com", config).await;
        assert_eq!(tls.get_ref().1.protocol_version(), Some(expected));
        let (resp, body) = h1_get(tls, "/").await;
        assert_eq!(resp.status(), 200, "{expected:?}");
        assert_eq!(body, "hello");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_broken_key_material_keeps_the_old_certificate() {
    let origin = Origin::text("hello").await;
    let certs = Certs::new();
    let edge = tls_edge(&certs, &origin);
    let dir = edge.dir.path().to_path_buf();
    let config = client_config(&certs.ca, &[], &[]);
    let served = || async {
        let tls = connect(https_addr(&edge), "example.com", config.clone()).await;
        served_cert(&tls)
    };
    assert_eq!(served().await, certs.example.der);

    let other = certs.ca.leaf(&["other.example"]);
    let breakages: [(&str, &str, &str); 3] = [
        ("not a key at all", "garbage\n", "edge.tls[1].key"),
        (
            "the key of another certificate",
            &other.key_pem,
            "edge.tls[1].key",
        ),
        ("an empty key file", "", "edge.tls[1].key"),
    ];
    for (what, key, at) in breakages {
        std::fs::write(dir.join("example.key"), key).unwrap();
        let (generation, errors) = edge.reload_rejected();
        assert_eq!(generation, 1);
        assert_eq!(errors.len(), 1, "{what}: {errors:?}");
        assert!(
            errors[0].contains(&format!(": {at}: ")),
            "{what}: {errors:?}"
        );
        assert_eq!(
            served().await,
            certs.example.der,
            "{what}: the old certificate stays"
        );
    }
    std::fs::remove_file(dir.join("example.pem")).unwrap();
    let (_, errors) = edge.reload_rejected();
    assert!(errors[0].contains(": edge.tls[1].cert: "), "{errors:?}");
    assert_eq!(served().await, certs.example.der);

    // A good pair rotates the certificate.
    let rotated = certs.ca.leaf(&["example.com"]);
    rotated.write(&dir, "example");
    assert_eq!(edge.reload_applied(), 2);
    assert_eq!(served().await, rotated.der);
    assert_ne!(rotated.der, certs.example.der);
}

/// An origin served over TLS with `leaf`, offering `alpn`; records each request's version.
struct TlsOrigin {
    addr: SocketAddr,
    versions: Arc<Mutex<Vec<Version>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TlsOrigin {
    async fn start(leaf: &Leaf, alpn: &[&[u8]]) -> TlsOrigin {
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der.clone()], key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let versions = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let seen = versions.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
                    _ = &mut stopped => break,
                };
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(
                        move |req: Request<hyper::body::Incoming>| {
                            seen.lock().unwrap().push(req.version());
                            async move { Ok::<_, std::convert::Infallible>(ok("from the TLS origin")) }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        TlsOrigin {
            addr,
            versions,
            _stop: stop,
        }
    }

    fn versions(&self) -> Vec<Version> {
        self.versions.lock().unwrap().clone()
    }
}

const TLS_POOL: &str = r#"
[[pools]]
name = "secure"
servers = ["{origin}"]
http2 = {http2}

[pools.tls]
ca_file = "{ca}"
sni = "{sni}"

[[routes]]
name = "all"
match = {}
pool = "secure"
"#;

fn pool_vars(origin: &TlsOrigin, ca: &str, sni: &str, http2: bool) -> Vec<(&'static str, String)> {
    vec![
        ("origin", origin.addr.to_string()),
        ("ca", ca.to_string()),
        ("sni", sni.to_string()),
        ("http2", http2.to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_pool_verifies_the_origin_against_its_ca() {
    let ca = TestCa::new("Holdfast test CA");
    let stranger = TestCa::new("Some other CA");
    let origin = TlsOrigin::start(&ca.leaf(&["origin.test"]), &[b"h2", b"http/1.1"]).await;
    let edge = Edge::start_in_dir(
        &edge_config(1, TLS_POOL),
        &pool_vars(&origin, "ca.pem", "origin.test", false),
        |dir| {
            std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
            std::fs::write(dir.join("stranger.pem"), &stranger.pem).unwrap();
        },
    );
    let got = get(&edge.url("/")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.text(), "from the TLS origin");
    assert_eq!(origin.versions(), vec![Version::HTTP_11]);

    let refused = [
        (
            "an origin certificate from another CA",
            "stranger.pem",
            "origin.test",
        ),
        (
            "a name the certificate does not carry",
            "ca.pem",
            "wrong.test",
        ),
    ];
    for (n, (what, ca_file, sni)) in refused.into_iter().enumerate() {
        edge.rewrite(
            &edge_config(1, TLS_POOL),
            &pool_vars(&origin, ca_file, sni, false),
        );
        assert_eq!(edge.reload_applied(), n as u64 + 2);
        let got = get_with(&edge.url("/"), &[("accept", "application/json")]).await;
        assert_eq!(got.status, 502, "{what}: {}", got.text());
        assert_eq!(got.json()["failed"], "origin", "{what}");
        assert_eq!(
            got.json()["detail"],
            "the TLS handshake with the origin failed",
            "{what}"
        );
    }
    assert_eq!(
        origin.versions().len(),
        1,
        "no request reached the origin unverified"
    );
    // Server counters belong to the generation: this one saw the name mismatch.
    let status = edge.status().await;
    let server = &status["pools"][0]["servers"][0];
    assert_eq!(server["failures"], 1, "{status}");
    let last_error = server["last_error"].as_str().unwrap();
    assert!(
        last_error.contains("not valid for name \"wrong.test\""),
        "{last_error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_pool_with_http2_speaks_h2_to_the_origin() {
    let ca = TestCa::new("Holdfast test CA");
    let origin = TlsOrigin::start(&ca.leaf(&["origin.test"]), &[b"h2", b"http/1.1"]).await;
    let edge = Edge::start_in_dir(
        &edge_config(1, TLS_POOL),
        &pool_vars(&origin, "ca.pem", "origin.test", true),
        |dir| {
            std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
        },
    );
    for _ in 0..3 {
        let got = get(&edge.url("/h2")).await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(got.text(), "from the TLS origin");
    }
    assert_eq!(origin.versions(), vec![Version::HTTP_2; 3]);
}
