//! TLS on the admin listener (`[admin] tls_cert`, `tls_key`), optionally asking every client
//! for a certificate signed by `client_ca`: without one the handshake fails, before any
//! route runs. Connections are served by hyper with the same router as plain HTTP.

use axum::Router;
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

/// Why the admin TLS settings cannot be used; the binary names the key.
#[derive(Debug, thiserror::Error)]
pub enum AdminTlsError {
    #[error("admin.tls_cert: no certificate in the PEM file ({0})")]
    Cert(String),
    #[error("admin.tls_key: no usable private key in the PEM file ({0})")]
    Key(String),
    #[error("admin.client_ca: no usable CA certificate in the PEM file ({0})")]
    ClientCa(String),
    #[error("admin.tls_cert: the certificate and key do not make a TLS configuration ({0})")]
    Config(String),
}

/// The server configuration from the PEM contents.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<Arc<ServerConfig>, AdminTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| AdminTlsError::Cert(e.to_string()))?;
    if certs.is_empty() {
        return Err(AdminTlsError::Cert("empty".into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| AdminTlsError::Key(e.to_string()))?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| AdminTlsError::Config(e.to_string()))?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(pem) {
                let ca = ca.map_err(|e| AdminTlsError::ClientCa(e.to_string()))?;
                roots
                    .add(ca)
                    .map_err(|e| AdminTlsError::ClientCa(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(AdminTlsError::ClientCa("empty".into()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| AdminTlsError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| AdminTlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accept TLS connections until `stopped`; each is served on its own task.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    config: Arc<ServerConfig>,
    app: Router,
    stopped: impl std::future::Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::pin!(stopped);
    loop {
        let accepted = tokio::select! {
            () = &mut stopped => return,
            a = listener.accept() => a,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            // A client without an acceptable certificate ends here, in the handshake.
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
        });
    }
}
