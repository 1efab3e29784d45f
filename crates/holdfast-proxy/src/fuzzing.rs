//! The front door's parsers without sockets, for `fuzz/` and tests: the client address from
//! `X-Forwarded-For`/`Forwarded`, the PROXY protocol header read from a byte slice, the path
//! normalisation and the strict request checks, each as the data path calls it; the HTTP/3
//! listener's QUIC server configuration (`quic_server_config`), and the listener itself on an
//! in-memory network with a client (`H3Exchange`); the OCSP response check (`OcspProbe`).
//! Not used by the server.

use crate::ctx::{ConnInfo, RequestCtx};
use arc_swap::ArcSwap;
use holdfast_config::ClientIpHeader;
use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{HeaderMap, Request};
use ipnet::IpNet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::watch;

/// The client's address as `client_ip` finds it behind `trusted` proxies.
pub fn client_ip(
    trusted: &[IpNet],
    which: ClientIpHeader,
    peer: IpAddr,
    headers: &HeaderMap,
) -> IpAddr {
    crate::client_ip::client_ip(trusted, which, peer, headers)
}

/// The PROXY header at the start of `input` from `peer`: the client address and every byte
/// after the header, or the rejection as text.
pub fn proxy_header(
    input: &[u8],
    peer: SocketAddr,
    trusted: &[IpNet],
) -> Result<(SocketAddr, Vec<u8>), String> {
    use tokio::io::AsyncReadExt;
    let read = async {
        let (client, mut rest) = crate::proxy_protocol::accept(input, peer, trusted)
            .await
            .map_err(|e| e.to_string())?;
        let mut after = Vec::new();
        rest.read_to_end(&mut after)
            .await
            .map_err(|e| e.to_string())?;
        Ok((client, after))
    };
    ready(read).unwrap_or_else(|| Err("reading a byte slice did not complete".to_string()))
}

/// The normalised path and query (`None`: already normal), or why it is refused.
pub fn normalise_path(pq: &PathAndQuery) -> Result<Option<PathAndQuery>, &'static str> {
    crate::phases::path::normalise(pq, holdfast_config::EncodedSlashes::Refuse)
        .map_err(|e| e.as_str())
}

/// `uri-host [":" port]` as the front door accepts it.
pub fn valid_host(host: &[u8]) -> bool {
    crate::phases::strict::valid_host(host)
}

/// The front door on `req` (normalised in place): the host and path the later phases see,
/// or the refusal's `reason` label.
pub fn front_door<B>(
    req: &mut Request<B>,
) -> Result<(Option<HeaderValue>, PathAndQuery), &'static str> {
    let conn = ConnInfo::new(SocketAddr::from(([192, 0, 2, 1], 40000)), false);
    let mut ctx = RequestCtx::new(req, conn);
    let slashes = holdfast_config::EncodedSlashes::Refuse;
    crate::phases::strict::inspect(req, &mut ctx, slashes).map_err(|r| r.reason())?;
    Ok((ctx.host, ctx.path))
}

pub use crate::h3::QuicConfigError;

/// The QUIC server configuration the HTTP/3 listeners build for `h3` (TLS 1.3, ALPN `h3`,
/// stream limits, idle timeout, early data), serving one certificate chain (DER) with its
/// PKCS#8 key (DER).
pub fn quic_server_config(
    chain: Vec<Vec<u8>>,
    key_pkcs8: Vec<u8>,
    h3: &holdfast_config::H3,
) -> Result<quinn::ServerConfig, QuicConfigError> {
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::rustls::sign::CertifiedKey;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8));
    let key = tokio_rustls::rustls::crypto::ring::sign::any_supported_type(&key)?;
    let chain = chain.into_iter().map(CertificateDer::from).collect();
    let certified = Arc::new(CertifiedKey::new(chain, key));
    crate::h3::quic_server_config(Arc::new(OneCertificate(certified)), h3, None)
}

#[derive(Debug)]
struct OneCertificate(Arc<tokio_rustls::rustls::sign::CertifiedKey>);

impl tokio_rustls::rustls::server::ResolvesServerCert for OneCertificate {
    fn resolve(
        &self,
        _: tokio_rustls::rustls::server::ClientHello<'_>,
    ) -> Option<Arc<tokio_rustls::rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// A `State` for `text` (a whole configuration file, relative paths against `base`), as a
/// start builds it but without modules (so no rules, limits, bot or challenge) or access log.
pub fn state_from_toml(text: &str, base: &std::path::Path) -> Result<crate::State, String> {
    let join = |errors: Vec<holdfast_config::ConfigError>| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    let config = Arc::new(holdfast_config::parse(text, base).map_err(join)?);
    let registry = prometheus::Registry::new();
    let metrics = Arc::new(crate::Metrics::new(&registry).map_err(|e| e.to_string())?);
    crate::State::build(crate::StateInputs {
        config,
        generation: 1,
        metrics,
        access_log: None,
        workers: 1,
        modules: Vec::new(),
        previous: None,
        acme: None,
        ticket_keys: None,
    })
    .map_err(join)
}

/// How long one `H3Exchange::exchange` may take before it counts as unanswered.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(5);

/// The HTTP/3 listener's accept loop (admission, connections, requests through
/// `service::handle`) serving `State` on an in-memory network, and a QUIC client on the same
/// network: no sockets, one thread.
pub struct H3Exchange {
    runtime: tokio::runtime::Runtime,
    client: quinn::Endpoint,
    server: SocketAddr,
    stop: watch::Sender<bool>,
}

impl H3Exchange {
    /// Start the listener on `state`, which needs a TLS certificate (the client trusts any).
    pub fn start(state: crate::State) -> std::io::Result<H3Exchange> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let network = Arc::new(crate::h3::memory::Network::default());
        let server = SocketAddr::from(([192, 0, 2, 1], 443));
        let client_addr = SocketAddr::from(([192, 0, 2, 2], 40000));
        let (stop, shutdown) = watch::channel(false);
        let states = Arc::new(ArcSwap::from_pointee(state));
        let client = runtime.block_on(async {
            let endpoint = quinn::Endpoint::new_with_abstract_socket(
                quinn::EndpointConfig::default(),
                None,
                network.socket(server),
                Arc::new(quinn::TokioRuntime),
            )?;
            let stop = (shutdown, Arc::new(std::sync::OnceLock::new()));
            tokio::spawn(crate::h3::accept_loop(endpoint, states, stop));
            let mut client = quinn::Endpoint::new_with_abstract_socket(
                quinn::EndpointConfig::default(),
                None,
                network.socket(client_addr),
                Arc::new(quinn::TokioRuntime),
            )?;
            client.set_default_client_config(trusting_client().map_err(std::io::Error::other)?);
            Ok::<_, std::io::Error>(client)
        })?;
        Ok(H3Exchange {
            runtime,
            client,
            server,
            stop,
        })
    }

    /// One new connection: `control` written on a unidirectional stream (if any), `request`
    /// on a request stream, both ended; the bytes of the response stream until it ends, or
    /// how the stream or connection ended instead. `Err` only if nothing came back within
    /// `EXCHANGE_LIMIT` (the edge neither answered nor closed).
    pub fn exchange(
        &self,
        control: &[u8],
        request: &[u8],
    ) -> Result<Result<Vec<u8>, String>, String> {
        let one = async {
            let conn = match self.client.connect(self.server, "example.com") {
                Ok(connecting) => match connecting.await {
                    Ok(conn) => conn,
                    Err(e) => return Err(format!("handshake: {e}")),
                },
                Err(e) => return Err(format!("connect: {e}")),
            };
            let mut uni = None;
            if !control.is_empty() {
                if let Ok(mut s) = conn.open_uni().await {
                    let _ = s.write_all(control).await;
                    uni = Some(s);
                }
            }
            let got = match conn.open_bi().await {
                Ok((mut send, mut recv)) => {
                    let _ = send.write_all(request).await;
                    let _ = send.finish();
                    recv.read_to_end(1 << 20).await.map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            drop(uni);
            conn.close(0u32.into(), b"");
            got
        };
        self.runtime.block_on(async {
            tokio::time::timeout(EXCHANGE_LIMIT, one)
                .await
                .map_err(|_| "no answer".to_string())
        })
    }
}

impl Drop for H3Exchange {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// A QUIC client offering ALPN `h3` that accepts any certificate (in-memory peers only).
fn trusting_client() -> Result<quinn::ClientConfig, String> {
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(TrustAnything(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

#[derive(Debug)]
struct TrustAnything(Arc<tokio_rustls::rustls::crypto::CryptoProvider>);

impl tokio_rustls::rustls::client::danger::ServerCertVerifier for TrustAnything {
    fn verify_server_cert(
        &self,
        _: &tokio_rustls::rustls::pki_types::CertificateDer<'_>,
        _: &[tokio_rustls::rustls::pki_types::CertificateDer<'_>],
        _: &tokio_rustls::rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: tokio_rustls::rustls::pki_types::UnixTime,
    ) -> Result<tokio_rustls::rustls::client::danger::ServerCertVerified, tokio_rustls::rustls::Error>
    {
        Ok(tokio_rustls::rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &tokio_rustls::rustls::pki_types::CertificateDer<'_>,
        _: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        tokio_rustls::rustls::Error,
    > {
        Ok(tokio_rustls::rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &tokio_rustls::rustls::pki_types::CertificateDer<'_>,
        _: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        tokio_rustls::rustls::Error,
    > {
        Ok(tokio_rustls::rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<tokio_rustls::rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Polls `fut` to completion with a no-op waker; `None` if it is still pending after many
/// polls (a byte slice never is).
fn ready<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..10_000 {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
    }
    None
}

/// The check an OCSP responder's answer goes through before it is stapled, for one
/// certificate (a leaf naming an `http://` responder, and its issuer).
pub struct OcspProbe(crate::tls::ocsp::Target);

impl OcspProbe {
    /// `None` when the leaf names no `http://` responder or either certificate does not parse.
    pub fn new(leaf_der: &[u8], issuer_der: &[u8]) -> Option<OcspProbe> {
        crate::tls::ocsp::Target::from_chain(leaf_der, issuer_der).map(OcspProbe)
    }

    /// Checks `response` (DER) at `now`: its validity window, or why it was refused.
    pub fn check(
        &self,
        response: &[u8],
        now: std::time::SystemTime,
    ) -> Result<(std::time::SystemTime, std::time::SystemTime), String> {
        self.0
            .check(response, now)
            .map(|w| (w.this_update, w.next_update))
            .map_err(|e| e.to_string())
    }

    /// The DER request the edge sends for this certificate.
    pub fn request(&self) -> Vec<u8> {
        self.0.request()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn each_entry_answers_as_the_data_path_does() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: SocketAddr = "10.1.1.1:40000".parse().unwrap();
        let (client, rest) = proxy_header(
            b"PROXY TCP4 192.0.2.7 10.0.0.9 5555 80\r\nGET",
            peer,
            &trusted,
        )
        .unwrap();
        assert_eq!(client, "192.0.2.7:5555".parse().unwrap());
        assert_eq!(rest, b"GET");
        assert!(proxy_header(b"GET / HTTP/1.1\r\n", peer, &trusted).is_err());

        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "198.51.100.1".parse().unwrap());
        let ip = client_ip(&trusted, ClientIpHeader::XForwardedFor, peer.ip(), &h);
        assert_eq!(ip, "198.51.100.1".parse::<IpAddr>().unwrap());

        let pq = PathAndQuery::from_static("/x/../wp-admin");
        assert_eq!(normalise_path(&pq).unwrap().unwrap().as_str(), "/wp-admin");
        assert!(normalise_path(&PathAndQuery::from_static("/a%2fb")).is_err());

        let mut req = Request::builder()
            .uri("/%77p-admin")
            .header("host", "example.com")
            .body(())
            .unwrap();
        let (host, path) = front_door(&mut req).unwrap();
        assert_eq!(host.unwrap(), "example.com");
        assert_eq!(path.as_str(), "/wp-admin");
        let mut bad = Request::builder().uri("/").body(()).unwrap();
        assert_eq!(front_door(&mut bad), Err("host_missing"));
        assert!(valid_host(b"example.com:80") && !valid_host(b"a b"));
    }

    #[test]
    fn the_h3_listener_answers_in_memory_and_its_quic_config_builds() {
        let cert = rcgen::generate_simple_self_signed(vec!["example.com".to_string()]).unwrap();
        let key = cert.signing_key.serialize_der();
        let h3 = holdfast_config::H3 {
            max_streams: 10,
            idle_timeout: Duration::from_secs(5),
            zero_rtt: false,
            max_connections_per_ip: 8,
        };
        let config = quic_server_config(vec![cert.cert.der().to_vec()], key.clone(), &h3);
        assert!(config.is_ok());
        assert!(quic_server_config(vec![], b"not a key".to_vec(), &h3).is_err());

        let dir = std::env::temp_dir().join(format!("holdfast-h3-fuzzing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("site.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.join("site.key"), cert.signing_key.serialize_pem()).unwrap();
        let text = r#"
[edge]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
h3_listen = ["127.0.0.1:0"]
access_log = "off"
[[edge.tls]]
cert = "site.pem"
key = "site.key"
[[pools]]
name = "app"
servers = ["127.0.0.1:9"]
[[routes]]
name = "all"
match = {}
pool = "app"
"#;
        let state = state_from_toml(text, &dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let edge = H3Exchange::start(state).unwrap();
        // GET https://example.com/ (QPACK static references and one literal): the edge
        // answers (a HEADERS frame first), here 502 from the dead origin.
        let mut get = vec![0x01, 18, 0x00, 0x00, 0xd1, 0xd7, 0xc1, 0x50, 11];
        get.extend_from_slice(b"example.com");
        let answer = edge.exchange(&[0x00, 0x04, 0x00], &get).unwrap().unwrap();
        assert_eq!(answer.first(), Some(&0x01), "{answer:?}");
        // DATA first: the connection is closed with H3_FRAME_UNEXPECTED.
        let refused = edge.exchange(&[], &[0x00, 0x01, b'x']).unwrap();
        assert!(refused.is_err(), "{refused:?}");
    }
}
