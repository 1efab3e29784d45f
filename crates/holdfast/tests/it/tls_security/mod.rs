//! TLS a security team signs off on, each over real TLS: authenticated origin pulls
//! (`origin_pulls`), client certificates on listeners (`client_certs`), the per-site policy
//! (`policy`, checked with rustls and from outside with `openssl s_client`), and session
//! resumption (`resumption`). Certificates are made at run time with `rcgen`.

mod client_certs;
mod ocsp;
mod origin_pulls;
mod policy;
mod resumption;

use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

pub fn roots(ca: &TestCa) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    roots
}

/// A client trusting `ca`, presenting `cert` if given, speaking HTTP/1.1.
pub fn client(ca: &TestCa, cert: Option<&Leaf>) -> ClientConfig {
    client_with(ca, cert, provider(), rustls::DEFAULT_VERSIONS)
}

/// `client` with its own crypto provider (suites, groups) and versions.
pub fn client_with(
    ca: &TestCa,
    cert: Option<&Leaf>,
    provider: Arc<CryptoProvider>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConfig {
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots(ca));
    let mut config = match cert {
        None => builder.with_no_client_auth(),
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![leaf.der.clone()],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// A TLS handshake with `addr` sending `sni`; the error as text if it fails.
pub async fn handshake(
    addr: SocketAddr,
    sni: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    within(
        "a TLS handshake",
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|e| e.to_string())
}

/// One HTTP/1.1 request for `path` with `host` and extra `headers` on an established
/// stream; the error as text if the connection fails (a client certificate refused after a
/// TLS 1.3 handshake shows here).
pub async fn request<S>(
    io: S,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(http::StatusCode, Bytes), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let exchange = async {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = Request::get(path).header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = send
            .send_request(req.body(Body::default()).unwrap())
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok((status, body.to_bytes()))
    };
    within("an HTTP exchange", exchange).await
}

/// Connect with `sni`, then send one request for `host`: the status and body, or why the
/// handshake or the exchange failed.
pub async fn fetch_tls(
    addr: SocketAddr,
    sni: &str,
    host: &str,
    config: Arc<ClientConfig>,
    headers: &[(&str, &str)],
) -> Result<(http::StatusCode, Bytes), String> {
    let tls = handshake(addr, sni, config).await?;
    request(tls, host, "/", headers).await
}

/// `openssl s_client` against `addr` with `sni` and extra `args`, given `input` on stdin:
/// (it succeeded, its stdout and stderr). Fails the test with a clear message if openssl is
/// missing (`scripts/test` installs it).
pub fn s_client(addr: SocketAddr, sni: &str, args: &[&str], input: &str) -> (bool, String) {
    use std::io::Write as _;
    let connect = addr.to_string();
    // `timeout` bounds the run: s_client waits for the server to close (`-ign_eof`).
    let mut child = std::process::Command::new("timeout")
        .args([
            "20",
            "openssl",
            "s_client",
            "-connect",
            &connect,
            "-servername",
            sni,
        ])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("openssl is needed for this test (scripts/test installs it): {e}")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
