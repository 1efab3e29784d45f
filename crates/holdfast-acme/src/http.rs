//! The ACME client's HTTP: instant-acme's `HttpClient` over hyper (HTTP/1.1) and
//! tokio-rustls with the ring provider, one connection per request (an order is a handful of
//! requests a day). Trust is `ca_file` when given (a private or test CA such as pebble),
//! else the system store. Every step is bounded: connect, handshake, the whole exchange, and
//! the answer's size.

use crate::AcmeError;
use bytes::Bytes;
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Limited};
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// A directory, an order or a certificate chain is a few kilobytes.
const MAX_ANSWER_BYTES: usize = 1 << 20;
const MAX_CA_FILE_BYTES: u64 = 1 << 20;

/// The HTTP client one name set's account talks to its CA with.
pub(crate) struct AcmeHttp {
    tls: tokio_rustls::TlsConnector,
}

impl AcmeHttp {
    pub fn new(ca_file: Option<&Path>) -> Result<AcmeHttp, AcmeError> {
        let roots = roots(ca_file)?;
        let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| AcmeError::Certificate(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(AcmeHttp {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    async fn exchange(&self, req: Request<BodyWrapper<Bytes>>) -> Result<BytesResponse, String> {
        let (mut parts, body) = req.into_parts();
        let uri = parts.uri.clone();
        if uri.scheme_str() != Some("https") {
            return Err(format!("{uri}: the ACME server must be reached over https"));
        }
        let host = uri.host().ok_or_else(|| format!("{uri}: no host"))?;
        let port = uri.port_u16().unwrap_or(443);
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((host, port)),
        )
        .await
        .map_err(|_| format!("{host}:{port}: connect timed out"))?
        .map_err(|e| format!("{host}:{port}: {e}"))?;
        let name = ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        )
        .map_err(|e| format!("{host}: {e}"))?;
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, self.tls.connect(name, tcp))
            .await
            .map_err(|_| format!("{host}:{port}: TLS handshake timed out"))?
            .map_err(|e| format!("{host}:{port}: TLS: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("{host}:{port}: {e}"))?;
        let driver = tokio::spawn(conn);
        // Origin-form target and a Host header, as an origin server expects.
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        parts.uri = uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
        if let Ok(v) = header::HeaderValue::from_str(&authority) {
            parts.headers.insert(header::HOST, v);
        }
        let req = Request::from_parts(parts, body);
        let answer = tokio::time::timeout(EXCHANGE_TIMEOUT, async {
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let (parts, body) = resp.into_parts();
            let bytes = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>(BytesResponse {
                parts,
                body: Box::new(bytes),
            })
        })
        .await;
        driver.abort();
        answer.map_err(|_| format!("{uri}: no answer within {EXCHANGE_TIMEOUT:?}"))?
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let tls = self.tls.clone();
        Box::pin(async move {
            AcmeHttp { tls }
                .exchange(req)
                .await
                .map_err(|e| instant_acme::Error::Other(e.into()))
        })
    }
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, AcmeError> {
    let mut store = RootCertStore::empty();
    let Some(path) = ca_file else {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = store.add(cert);
        }
        if store.is_empty() {
            return Err(AcmeError::Certificate(
                "no system CA certificates to trust the ACME server with (install ca-certificates, or set ca_file)".into(),
            ));
        }
        return Ok(store);
    };
    let file_err = |what: String| AcmeError::File {
        path: path.to_path_buf(),
        what,
    };
    let pem = holdfast_artifact::read_bounded(path, MAX_CA_FILE_BYTES)
        .map_err(|e| file_err(e.to_string()))?
        .content;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| file_err(format!("not a PEM certificate: {e}")))?;
        store
            .add(cert)
            .map_err(|e| file_err(format!("not a usable CA certificate: {e}")))?;
    }
    if store.is_empty() {
        return Err(file_err("no CA certificate in the file".into()));
    }
    Ok(store)
}
