//! Authenticated origin pulls: a pool with `[pools.tls] client_cert` and `client_key`
//! presents that certificate to its origins. The origin here requires a client certificate
//! from its own CA (rustls `WebPkiClientVerifier`): with the pool's certificate it answers;
//! with none, or one from another CA, it refuses the handshake and the edge answers 502,
//! blaming the origin, and records the failure on the server.

use super::provider;
use crate::support::*;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::PrivateKeyDer;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::ServerConfig;

/// An HTTPS origin that accepts only clients with a certificate from `clients`; records the
/// subject common name of each client it served.
struct MtlsOrigin {
    addr: SocketAddr,
    served: Arc<Mutex<Vec<String>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl MtlsOrigin {
    async fn start(leaf: &Leaf, clients: &TestCa) -> MtlsOrigin {
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(super::roots(clients)),
            provider(),
        )
        .build()
        .unwrap();
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![leaf.der.clone()],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let record = served.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
                    _ = &mut stopped => break,
                };
                let (acceptor, record) = (acceptor.clone(), record.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let client = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
                    let svc = hyper::service::service_fn(move |_req| {
                        let der = client.clone();
                        let record = record.clone();
                        async move {
                            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
                            record.lock().unwrap().push(cert.subject().to_string());
                            Ok::<_, std::convert::Infallible>(ok("from the mTLS origin"))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        MtlsOrigin {
            addr,
            served,
            _stop: stop,
        }
    }

    fn served(&self) -> Vec<String> {
        self.served.lock().unwrap().clone()
    }
}

const POOL: &str = r#"
[[pools]]
name = "secure"
servers = ["{origin}"]

[pools.tls]
ca_file = "ca.pem"
sni = "origin.test"
{client_cert}

[[routes]]
name = "all"
match = {}
pool = "secure"
"#;

fn vars(origin: &MtlsOrigin, client_cert: &str) -> Vec<(&'static str, String)> {
    vec![
        ("origin", origin.addr.to_string()),
        ("client_cert", client_cert.to_string()),
    ]
}

const WITH_EDGE_CERT: &str = "client_cert = \"edge.pem\"\nclient_key = \"edge.key\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_presents_its_client_certificate_and_the_origin_refuses_anything_else() {
    let ca = TestCa::new("Holdfast test CA");
    let stranger = TestCa::new("Some other CA");
    let origin = MtlsOrigin::start(&ca.leaf(&["origin.test"]), &ca).await;
    let edge = Edge::start_in_dir(
        &edge_config(1, POOL),
        &vars(&origin, WITH_EDGE_CERT),
        |dir| {
            std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
            ca.client("holdfast-edge").write(dir, "edge");
            stranger.client("holdfast-edge").write(dir, "stranger");
        },
    );
    let got = get(&edge.url("/")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.text(), "from the mTLS origin");
    assert_eq!(origin.served(), ["CN=holdfast-edge"]);

    let refused = [
        ("no client certificate", ""),
        (
            "a certificate from another CA",
            "client_cert = \"stranger.pem\"\nclient_key = \"stranger.key\"",
        ),
    ];
    for (n, (what, client_cert)) in refused.into_iter().enumerate() {
        edge.rewrite(&edge_config(1, POOL), &vars(&origin, client_cert));
        assert_eq!(edge.reload_applied(), n as u64 + 2, "{what}");
        let got = get_with(&edge.url("/"), &[("accept", "application/json")]).await;
        assert_eq!(got.status, 502, "{what}: {}", got.text());
        assert_eq!(got.json()["failed"], "origin", "{what}");
        let status = edge.status().await;
        let server = server_status(&status, "secure", &origin.addr.to_string());
        assert!(
            server["failures"].as_u64().unwrap() >= 1,
            "{what}: {server}"
        );
        assert!(server["last_error"].is_string(), "{what}: {server}");
    }
    assert_eq!(origin.served().len(), 1, "the origin served no one else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_key_that_does_not_fit_is_a_config_error() {
    let ca = TestCa::new("Holdfast test CA");
    let origin = MtlsOrigin::start(&ca.leaf(&["origin.test"]), &ca).await;
    let edge = Edge::start_in_dir(
        &edge_config(1, POOL),
        &vars(&origin, WITH_EDGE_CERT),
        |dir| {
            std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
            ca.client("holdfast-edge").write(dir, "edge");
        },
    );
    let other = ca.client("other");
    std::fs::write(edge.dir.path().join("edge.key"), &other.key_pem).unwrap();
    let (_, errors) = edge.reload_rejected();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("pools[0].tls.client_key: ")),
        "{errors:?}"
    );
    std::fs::remove_file(edge.dir.path().join("edge.pem")).unwrap();
    let (_, errors) = edge.reload_rejected();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("pools[0].tls.client_cert: ")),
        "{errors:?}"
    );
    // The running generation keeps its certificate.
    assert_eq!(get(&edge.url("/")).await.status, 200);
}
