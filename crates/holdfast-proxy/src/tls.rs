//! TLS material: the listeners' certificate files and the client configuration for TLS
//! origins (with the pool's client certificate, for authenticated origin pulls). Key files
//! are read through `holdfast-artifact`; a broken or mismatched pair is a build error, so a
//! reload keeps the previous certificates. The sites (one per `[[edge.tls]]` and per
//! `[[edge.acme]]` table: SNI choice, certificate, policy, client certificates, the
//! `tls-alpn-01` answer) are in `sites`, their policy in `policy`, session resumption in
//! `tickets`.

pub(crate) mod ocsp;
mod policy;
mod sites;
mod tickets;

pub(crate) use ocsp::OcspMetrics;
pub use ocsp::OcspStatus;
pub(crate) use sites::{accept, Sites};
pub(crate) use tickets::Resumption;
pub use tickets::{fresh_ticket_key, FleetTicketKeys, RingError, SharedTicketKey};

use holdfast_acme::CertStore;
use holdfast_config::{AcmeCert, ClientCertFiles, ConfigError, TlsCert, UpstreamTls};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// Certificate and key files larger than this are refused.
const MAX_PEM_BYTES: u64 = 1 << 20;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn read_pem(path: &Path, at: &str) -> Result<Vec<u8>, ConfigError> {
    holdfast_artifact::read_bounded(path, MAX_PEM_BYTES)
        .map(|s| s.content)
        .map_err(|e| {
            ConfigError::new(
                at,
                format!("{}: {e}", path.display()),
                "fix the file (a running edge keeps its current certificates until a reload reads a good one)",
            )
        })
}

fn load_certified_key(cert: &TlsCert, at: &str) -> Result<CertifiedKey, Vec<ConfigError>> {
    let files = ClientCertFiles {
        cert: cert.cert.clone(),
        key: cert.key.clone(),
    };
    let (chain, key) = load_pair(&files, ("cert", "key"), at)?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        vec![ConfigError::new(
            format!("{at}.key"),
            format!(
                "{} does not fit {}: {e}",
                cert.key.display(),
                cert.cert.display()
            ),
            "use the private key that belongs to this certificate",
        )]
    })
}

/// A certificate chain and its private key from PEM files; `fields` name the two keys
/// (`cert`/`key`, `client_cert`/`client_key`) under `at` for errors.
fn load_pair(
    files: &ClientCertFiles,
    fields: (&str, &str),
    at: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Vec<ConfigError>> {
    // Read both files before giving up, so a missing cert and a missing key are both reported.
    let (cert_pem, key_pem) = match (
        read_pem(&files.cert, &format!("{at}.{}", fields.0)),
        read_pem(&files.key, &format!("{at}.{}", fields.1)),
    ) {
        (Ok(c), Ok(k)) => (c, k),
        (c, k) => return Err(c.err().into_iter().chain(k.err()).collect()),
    };
    parse_pair(files, fields, at, &cert_pem, &key_pem).map_err(|e| vec![e])
}

fn parse_pair(
    cert: &ClientCertFiles,
    (cert_field, key_field): (&str, &str),
    at: &str,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ConfigError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            ConfigError::new(
                format!("{at}.{cert_field}"),
                format!("{}: not a PEM certificate chain: {e}", cert.cert.display()),
                "give a PEM file with one or more CERTIFICATE blocks",
            )
        })?;
    if chain.is_empty() {
        return Err(ConfigError::new(
            format!("{at}.{cert_field}"),
            format!("{}: no certificate found", cert.cert.display()),
            "give a PEM file with one or more CERTIFICATE blocks",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        ConfigError::new(
            format!("{at}.{key_field}"),
            format!("{}: no usable private key: {e}", cert.key.display()),
            "give a PEM file with a PRIVATE KEY block (PKCS#8, PKCS#1 or SEC1)",
        )
    })?;
    Ok((chain, key))
}

/// A certificate file's names (comma-separated, `default` for none) and its `notAfter`.
pub(crate) type CertExpiry = (String, SystemTime);

/// The listeners' TLS configurations: one per `[[edge.tls]]` table and per `[[edge.acme]]`
/// table (`sites`), all over one certificate resolver (the files' keys loaded here, the ACME
/// ones read live from `acme`) and the edge's session resumption. Each file's expiry is added
/// to `expiry`.
pub(crate) fn server_config(
    certs: &[TlsCert],
    acme_sets: &[AcmeCert],
    acme: Option<&Arc<CertStore>>,
    resumption: &Resumption,
    expiry: &mut Vec<CertExpiry>,
) -> Result<Sites, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut keys = Vec::with_capacity(certs.len());
    for (i, cert) in certs.iter().enumerate() {
        let key = match load_certified_key(cert, &format!("edge.tls[{i}]")) {
            Ok(k) => Arc::new(k),
            Err(mut e) => {
                errors.append(&mut e);
                keys.push(None);
                continue;
            }
        };
        if let Some(not_after) = key
            .end_entity_cert()
            .ok()
            .and_then(holdfast_acme::not_after)
        {
            let names = if cert.names.is_empty() {
                "default".to_string()
            } else {
                cert.names.join(",")
            };
            expiry.push((names, not_after));
        }
        keys.push(Some(key));
    }
    match sites::build(certs, keys, acme_sets, acme, resumption) {
        Ok(sites) if errors.is_empty() => Ok(sites),
        Ok(_) => Err(errors),
        Err(mut more) => {
            errors.append(&mut more);
            Err(errors)
        }
    }
}

/// Client configuration for a TLS pool: trust the pool's CA file, else the system store;
/// present the pool's client certificate, if it has one.
pub(crate) fn client_config(
    tls: &UpstreamTls,
    http2: bool,
    at: &str,
) -> Result<Arc<ClientConfig>, Vec<ConfigError>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| vec![ConfigError::new(at, e.to_string(), "")])?;
    let builder = if tls.verify {
        builder.with_root_certificates(roots(tls, at).map_err(|e| vec![e])?)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    };
    let mut config = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let (chain, key) = load_pair(files, ("client_cert", "client_key"), at)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                vec![ConfigError::new(
                    format!("{at}.client_key"),
                    format!(
                        "{} does not fit {}: {e}",
                        files.key.display(),
                        files.cert.display()
                    ),
                    "use the private key that belongs to this certificate",
                )]
            })?
        }
    };
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

fn roots(tls: &UpstreamTls, at: &str) -> Result<RootCertStore, ConfigError> {
    let mut store = RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let pem = read_pem(path, &format!("{at}.ca_file"))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let added = cert.ok().map(|c| store.add(c).is_ok()).unwrap_or(false);
                if !added {
                    return Err(ConfigError::new(
                        format!("{at}.ca_file"),
                        format!("{}: not a valid PEM CA certificate", path.display()),
                        "give a PEM file of CA certificates",
                    ));
                }
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = store.add(cert);
            }
        }
    }
    if store.is_empty() {
        return Err(ConfigError::new(
            format!("{at}.ca_file"),
            "no trusted CA certificates",
            "set ca_file, install the system CA store, or set verify = false",
        ));
    }
    Ok(store)
}

/// `verify = false`: accept any origin certificate (signatures are still checked).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
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
