//! The status page's static snapshot: `index.html` and `status.json` written to
//! `export_dir` and/or `PUT` to `export_put` after every change, so the page can be hosted
//! away from this machine. A failing export never affects serving: it is logged, counted in
//! `holdfast_status_page_exports_total{target,result="failed"}` and shown on `/status`.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioIo;
use prometheus::{IntCounterVec, Opts, Registry};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// How long one `PUT` may take.
const PUT_TIMEOUT: Duration = Duration::from_secs(10);

/// The last export's outcome, for `/status` and the operator page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportState {
    /// RFC 3339 time of the last export that fully succeeded.
    pub last_ok: Option<String>,
    /// RFC 3339 time and message of the last failure.
    pub last_error_at: Option<String>,
    pub last_error: Option<String>,
    /// Whether the last attempt failed (cleared by the next success).
    pub failing: bool,
    pub exports: u64,
    pub failures: u64,
}

pub struct Exporter {
    dir: Option<PathBuf>,
    put: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
    /// For an `https://` `export_put`: the trusted CAs (`export_ca_file`, else the system's).
    tls: Option<Arc<ClientConfig>>,
    counter: IntCounterVec,
}

/// Why the export cannot start; each names its key.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Metrics(#[from] prometheus::Error),
    #[error("status_page.export_ca_file: {0}: {1} (give a PEM file of CA certificates)")]
    CaFile(PathBuf, String),
    #[error(
        "status_page.export_put: no trusted CA certificates on this system for an https:// \
         URL (install the system CA store, e.g. Debian's ca-certificates, or set export_ca_file)"
    )]
    NoRoots,
}

/// The rustls client configuration for `https://` exports: the CAs in `ca_file` (PEM), or
/// the system's trusted roots (`rustls-native-certs`).
pub fn client_tls(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, ExportError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = holdfast_artifact::read_bounded(path, 1 << 20)
                .map_err(|e| ExportError::CaFile(path.to_path_buf(), e.to_string()))?
                .content;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.map_err(|e| ExportError::CaFile(path.to_path_buf(), e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| ExportError::CaFile(path.to_path_buf(), e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ExportError::CaFile(
                    path.to_path_buf(),
                    "no certificate in the file".into(),
                ));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(ExportError::NoRoots);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ExportError::CaFile(PathBuf::new(), e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Exporter {
    pub fn new(
        dir: Option<PathBuf>,
        put: Option<String>,
        ca_file: Option<&Path>,
        registry: &Registry,
    ) -> Result<Exporter, ExportError> {
        let tls = match &put {
            Some(url) if url.starts_with("https://") => Some(client_tls(ca_file)?),
            _ => None,
        };
        let counter = IntCounterVec::new(
            Opts::new(
                "holdfast_status_page_exports_total",
                "Status page snapshot exports, by target (dir, put) and result (ok, failed).",
            ),
            &["target", "result"],
        )?;
        registry.register(Box::new(counter.clone()))?;
        for target in ["dir", "put"] {
            for result in ["ok", "failed"] {
                counter.with_label_values(&[target, result]);
            }
        }
        Ok(Exporter {
            dir,
            put,
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
            tls,
            counter,
        })
    }

    pub fn enabled(&self) -> bool {
        self.dir.is_some() || self.put.is_some()
    }

    /// Write and send both files; every failure, as `target: message`.
    pub async fn export(&self, html: &str, json: &[u8]) -> Vec<String> {
        let mut errors = Vec::new();
        if let Some(dir) = &self.dir {
            let written = write_dir(dir.clone(), html.as_bytes().to_vec(), json.to_vec()).await;
            self.count("dir", &written);
            if let Err(e) = written {
                errors.push(format!("export_dir {}: {e}", dir.display()));
            }
        }
        if let Some(base) = &self.put {
            let mut sent = self
                .put_one(
                    &format!("{base}index.html"),
                    "text/html; charset=utf-8",
                    html.as_bytes(),
                )
                .await;
            if sent.is_ok() {
                sent = self
                    .put_one(&format!("{base}status.json"), "application/json", json)
                    .await;
            }
            self.count("put", &sent);
            if let Err(e) = sent {
                errors.push(format!("export_put {base}: {e}"));
            }
        }
        errors
    }

    fn count(&self, target: &str, result: &Result<(), String>) {
        let word = if result.is_ok() { "ok" } else { "failed" };
        self.counter.with_label_values(&[target, word]).inc();
    }

    async fn put_one(&self, url: &str, content_type: &str, body: &[u8]) -> Result<(), String> {
        let body = Full::new(Bytes::copy_from_slice(body));
        let status = match &self.tls {
            Some(tls) => {
                tokio::time::timeout(PUT_TIMEOUT, put_tls(tls, url, content_type, body)).await
            }
            None => {
                let req = http::Request::put(url)
                    .header(http::header::CONTENT_TYPE, content_type)
                    .body(body)
                    .map_err(|e| e.to_string())?;
                tokio::time::timeout(PUT_TIMEOUT, async {
                    self.client
                        .request(req)
                        .await
                        .map(|r| r.status())
                        .map_err(|e| e.to_string())
                })
                .await
            }
        }
        .map_err(|_| format!("PUT {url}: no answer within {PUT_TIMEOUT:?}"))?
        .map_err(|e| format!("PUT {url}: {e}"))?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("PUT {url}: answered {status}"))
        }
    }
}

/// One `PUT` over TLS on a connection of its own (an export is rare: after a change).
async fn put_tls(
    tls: &Arc<ClientConfig>,
    url: &str,
    content_type: &str,
    body: Full<Bytes>,
) -> Result<http::StatusCode, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let authority = uri.authority().ok_or("no host in the URL")?.clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(443);
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = http::Request::put(path)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::CONTENT_TYPE, content_type)
        .body(body)
        .map_err(|e| e.to_string())?;
    let status = send
        .send_request(req)
        .await
        .map(|r| r.status())
        .map_err(|e| e.to_string());
    conn.abort();
    status
}

async fn write_dir(dir: PathBuf, html: Vec<u8>, json: Vec<u8>) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create the folder: {e}"))?;
        // The page first: whoever sees the new status.json finds the page of that state too.
        holdfast_artifact::write_atomic(&dir.join("index.html"), &html)
            .map_err(|e| format!("index.html: {e}"))?;
        holdfast_artifact::write_atomic(&dir.join("status.json"), &json)
            .map_err(|e| format!("status.json: {e}"))
    })
    .await
    .map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use std::sync::Mutex;

    /// A CA made here and a server certificate it signed for 127.0.0.1 (cert PEM, key PEM).
    fn ca_and_leaf() -> (String, String, String) {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "export test CA");
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let mut leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        leaf.extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        (ca_cert.pem(), cert.pem(), key.serialize_pem())
    }

    /// An HTTPS server on 127.0.0.1:0 that records each PUT (path, body) and answers 200.
    async fn tls_store(cert: &str, key: &str) -> (SocketAddrAndLog, tokio::task::JoinHandle<()>) {
        let config = crate::tls::server_config(cert.as_bytes(), key.as_bytes(), None).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let seen = Arc::clone(&log);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let Ok(tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let seen = Arc::clone(&seen);
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let seen = Arc::clone(&seen);
                        async move {
                            use http_body_util::BodyExt;
                            let path = req.uri().path().to_string();
                            let host = req.headers().get(http::header::HOST).cloned();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            assert!(host.is_some(), "a Host header");
                            seen.lock()
                                .unwrap()
                                .push((path, String::from_utf8_lossy(&body).into_owned()));
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::new(),
                            )))
                        }
                    });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service),
                );
            }
        });
        ((addr, log), task)
    }

    type SocketAddrAndLog = (std::net::SocketAddr, Arc<Mutex<Vec<(String, String)>>>);

    #[tokio::test]
    async fn an_https_put_is_checked_against_the_ca_file_and_sent() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = ca_and_leaf();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca).unwrap();
        let ((addr, log), server) = tls_store(&cert, &key).await;
        let url = format!("https://{addr}/status/");
        let exporter =
            Exporter::new(None, Some(url.clone()), Some(&ca_file), &Registry::new()).unwrap();
        let errors = exporter
            .export("<p>page</p>", b"{\"overall\":\"operational\"}")
            .await;
        assert!(errors.is_empty(), "{errors:?}");
        let seen = log.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                ("/status/index.html".to_string(), "<p>page</p>".to_string()),
                (
                    "/status/status.json".to_string(),
                    "{\"overall\":\"operational\"}".to_string()
                ),
            ]
        );
        assert_eq!(exporter.counter.with_label_values(&["put", "ok"]).get(), 1);

        // A server whose certificate this CA did not sign: refused, counted, nothing sent.
        let (_, other_cert, other_key) = ca_and_leaf();
        let ((other, other_log), other_server) = tls_store(&other_cert, &other_key).await;
        let exporter = Exporter::new(
            None,
            Some(format!("https://{other}/status/")),
            Some(&ca_file),
            &Registry::new(),
        )
        .unwrap();
        let errors = exporter.export("<p>page</p>", b"{}").await;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("TLS"), "{errors:?}");
        assert!(other_log.lock().unwrap().is_empty());
        assert_eq!(
            exporter.counter.with_label_values(&["put", "failed"]).get(),
            1
        );
        server.abort();
        other_server.abort();
    }

    #[test]
    fn a_bad_ca_file_is_named_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, "not a certificate").unwrap();
        let err = Exporter::new(
            None,
            Some("https://127.0.0.1:1/status/".into()),
            Some(&ca_file),
            &Registry::new(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("status_page.export_ca_file"), "{err}");
        assert!(err.contains("ca.pem"), "{err}");
        let missing = dir.path().join("missing.pem");
        let err = client_tls(Some(&missing)).err().unwrap().to_string();
        assert!(err.contains("missing.pem"), "{err}");
    }
}
