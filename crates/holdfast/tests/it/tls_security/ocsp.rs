//! OCSP stapling over real TLS: a leaf whose Authority Information Access names a responder
//! on loopback (a tiny in-process HTTP server answering a response that `openssl ocsp` made
//! from the test CA at run time) gets the response stapled, seen by a rustls client and by
//! `openssl s_client -status`, cached in `state_dir` (0600) and loaded by the next start with
//! the responder gone; a responder that is down, answers garbage or answers for another
//! certificate leaves handshakes fine and unstapled, and is counted. The time window (an
//! expired response dropped, never loaded) is unit-tested with a clock in `holdfast-proxy`'s
//! `tls::ocsp`.

use super::{client, handshake, s_client};
use crate::support::*;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};

const EDGE: &str = r#"
[edge]
listen = ["{edge}"]
tls_listen = ["{edge}"]
threads = 1
access_log = "off"
state_dir = "{state}"
{extra}

[[edge.tls]]
cert = "default.pem"
key = "default.key"

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

/// An OCSP responder on loopback answering whatever `answer` holds, counting requests.
struct Responder {
    addr: SocketAddr,
    answer: Arc<Mutex<Vec<u8>>>,
    asked: Arc<AtomicUsize>,
}

impl Responder {
    async fn start() -> Responder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(Vec::new()));
        let asked = Arc::new(AtomicUsize::new(0));
        let (a, n) = (answer.clone(), asked.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (a, n) = (a.clone(), n.clone());
                let service = hyper::service::service_fn(move |_req| {
                    n.fetch_add(1, Ordering::SeqCst);
                    let body = a.lock().unwrap().clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/ocsp-response")
                                .body(Full::new(bytes::Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Responder {
            addr,
            answer,
            asked,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn answer(&self, der: Vec<u8>) {
        *self.answer.lock().unwrap() = der;
    }
}

fn run_openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("openssl is needed for this test: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A good OCSP response for `leaf` signed by `ca`, valid for a day, made by `openssl ocsp`.
fn ocsp_response(ca: &TestCa, leaf: &Leaf) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ca.pem"), &ca.pem).unwrap();
    std::fs::write(d.join("ca.key"), ca.key_pem()).unwrap();
    std::fs::write(d.join("leaf.pem"), &leaf.cert_pem).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf.der).unwrap();
    let serial: String = cert
        .raw_serial()
        .iter()
        .skip_while(|b| **b == 0)
        .map(|b| format!("{b:02X}"))
        .collect();
    std::fs::write(
        d.join("index.txt"),
        format!("V\t391231235959Z\t\t{serial}\tunknown\t/CN=www.test\n"),
    )
    .unwrap();
    run_openssl(
        d,
        &[
            "ocsp",
            "-issuer",
            "ca.pem",
            "-cert",
            "leaf.pem",
            "-no_nonce",
            "-reqout",
            "req.der",
        ],
    );
    run_openssl(
        d,
        &[
            "ocsp",
            "-index",
            "index.txt",
            "-CA",
            "ca.pem",
            "-rsigner",
            "ca.pem",
            "-rkey",
            "ca.key",
            "-reqin",
            "req.der",
            "-respout",
            "resp.der",
            "-ndays",
            "1",
        ],
    );
    std::fs::read(d.join("resp.der")).unwrap()
}

/// The edge's certificate file: the leaf, then the CA (the issuer the request names).
fn write_chain(dir: &Path, ca: &TestCa, leaf: &Leaf) {
    std::fs::write(
        dir.join("default.pem"),
        format!("{}{}", leaf.cert_pem, ca.pem),
    )
    .unwrap();
    std::fs::write(dir.join("default.key"), &leaf.key_pem).unwrap();
}

fn vars(origin: &Origin, state: &Path, extra: &str) -> Vec<(&'static str, String)> {
    vec![
        ("origin", origin.addr.to_string()),
        ("state", state.display().to_string()),
        ("extra", extra.to_string()),
    ]
}

/// The usual WebPKI verification of the edge's certificate, keeping the stapled OCSP
/// response rustls hands it.
#[derive(Debug)]
struct Recording {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl rustls::client::danger::ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = ocsp_response.to_vec();
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The OCSP response a rustls client got in a handshake with the edge (empty: none); the
/// handshake itself must succeed.
async fn stapled(edge: &Edge, ca: &TestCa) -> Vec<u8> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(super::roots(ca)),
        super::provider(),
    )
    .build()
    .unwrap();
    let mut config = client(ca, None);
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(Recording {
            inner,
            seen: seen.clone(),
        }));
    handshake(edge.running().https_addrs[0], "www.test", Arc::new(config))
        .await
        .unwrap();
    let got = seen.lock().unwrap().clone();
    got
}

async fn fetches(edge: &Edge, result: &str) -> f64 {
    let sample = format!("holdfast_tls_ocsp_fetches_total{{result=\"{result}\"}}");
    metric(&edge.metrics().await, &sample).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_response_is_stapled_cached_and_loaded_at_the_next_start() {
    let origin = Origin::text("hello").await;
    let state = tempfile::tempdir().unwrap();
    let responder = Responder::start().await;
    let ca = TestCa::new("Holdfast test CA");
    let leaf = ca.leaf_with_ocsp(&["www.test"], &responder.url());
    let good = ocsp_response(&ca, &leaf);
    responder.answer(good.clone());
    let edge = Edge::start_in_dir(EDGE, &vars(&origin, state.path(), ""), |dir| {
        write_chain(dir, &ca, &leaf)
    });
    eventually("the staple", Duration::from_secs(20), || async {
        stapled(&edge, &ca).await == good
    })
    .await;
    assert!(fetches(&edge, "ok").await >= 1.0);
    let left = metric(
        &edge.metrics().await,
        "holdfast_tls_ocsp_staple_expiry_seconds{site=\"default\"}",
    )
    .unwrap();
    assert!(left > 0.0, "{left}");
    let status = edge.status().await;
    let site = &status["ocsp"][0];
    assert_eq!(site["site"], "default", "{status}");
    assert_eq!(site["stapled"], true, "{status}");
    assert_eq!(site["responder"], responder.url().as_str(), "{status}");
    assert!(site["next_update"].is_string(), "{status}");

    // From outside: openssl asks for the status and sees the response.
    let addr = edge.running().https_addrs[0];
    let (_, out) = blocking(|| s_client(addr, "www.test", &["-status"], ""));
    assert!(out.contains("OCSP Response Status: successful"), "{out}");

    // The response is cached, owner-only; a new edge on the same state_dir, with the
    // responder answering nothing useful, staples the cached one at once.
    let cache = state.path().join("ocsp");
    let files: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(std::fs::read(&files[0]).unwrap(), good);

    responder.answer(b"garbage".to_vec());
    blocking(|| drop(edge));
    let second = Edge::start_in_dir(EDGE, &vars(&origin, state.path(), ""), |dir| {
        write_chain(dir, &ca, &leaf)
    });
    // Loaded before the first fetch: the very first handshake may already carry it.
    eventually("the cached staple", Duration::from_secs(20), || async {
        stapled(&second, &ca).await == good
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responder_that_is_down_leaves_handshakes_unstapled_and_is_counted() {
    let origin = Origin::text("hello").await;
    let state = tempfile::tempdir().unwrap();
    // A port that was free a moment ago and is closed now: connections are refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let ca = TestCa::new("Holdfast test CA");
    let leaf = ca.leaf_with_ocsp(&["www.test"], &url);
    let edge = Edge::start_in_dir(EDGE, &vars(&origin, state.path(), ""), |dir| {
        write_chain(dir, &ca, &leaf)
    });
    eventually(
        "a failed fetch counted",
        Duration::from_secs(20),
        || async { fetches(&edge, "unreachable").await >= 1.0 },
    )
    .await;
    assert!(stapled(&edge, &ca).await.is_empty());
    let tls = handshake(
        edge.running().https_addrs[0],
        "www.test",
        Arc::new(client(&ca, None)),
    )
    .await
    .unwrap();
    let (status, body) = super::request(tls, "www.test", "/", &[]).await.unwrap();
    assert_eq!((status.as_u16(), &body[..]), (200, &b"hello"[..]));
    assert_eq!(edge.status().await["ocsp"][0]["stapled"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_or_a_response_for_another_certificate_is_not_stapled() {
    let origin = Origin::text("hello").await;
    let state = tempfile::tempdir().unwrap();
    let responder = Responder::start().await;
    let ca = TestCa::new("Holdfast test CA");
    let leaf = ca.leaf_with_ocsp(&["www.test"], &responder.url());
    let other = ca.leaf_with_ocsp(&["www.test"], &responder.url());
    for (answer, what) in [
        (b"not an OCSP response".to_vec(), "garbage"),
        (ocsp_response(&ca, &other), "another serial"),
    ] {
        responder.answer(answer);
        let before = responder.asked.load(Ordering::SeqCst);
        let edge = Edge::start_in_dir(EDGE, &vars(&origin, state.path(), ""), |dir| {
            write_chain(dir, &ca, &leaf)
        });
        eventually(what, Duration::from_secs(20), || async {
            fetches(&edge, "invalid").await >= 1.0
        })
        .await;
        assert!(responder.asked.load(Ordering::SeqCst) > before, "{what}");
        assert!(stapled(&edge, &ca).await.is_empty(), "{what}");
        assert_eq!(edge.status().await["ocsp"][0]["stapled"], false, "{what}");
        blocking(|| drop(edge));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_stapling_off_nothing_is_asked() {
    let origin = Origin::text("hello").await;
    let state = tempfile::tempdir().unwrap();
    let responder = Responder::start().await;
    let ca = TestCa::new("Holdfast test CA");
    let leaf = ca.leaf_with_ocsp(&["www.test"], &responder.url());
    responder.answer(ocsp_response(&ca, &leaf));
    let edge = Edge::start_in_dir(
        EDGE,
        &vars(&origin, state.path(), "ocsp_stapling = false"),
        |dir| write_chain(dir, &ca, &leaf),
    );
    assert!(stapled(&edge, &ca).await.is_empty());
    assert_eq!(edge.status().await["ocsp"], serde_json::json!([]));
    blocking(|| drop(edge));
    assert_eq!(responder.asked.load(Ordering::SeqCst), 0);
}
