//! TLS material: the listeners' certificates (chosen by SNI, exact name, then an ACME name
//! set's, then `*.suffix`, then the default, then the first ACME set's; a `tls-alpn-01`
//! validation gets its challenge certificate) and the client configuration for TLS origins. Key files are read through
//! `holdfast-artifact`; a broken or mismatched pair is a build error, so a reload keeps the
//! previous certificates.

use holdfast_acme::{CertStore, ACME_TLS_ALPN};
use holdfast_config::{ConfigError, TlsCert, UpstreamTls};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
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
    // Read both files before giving up, so a missing cert and a missing key are both reported.
    let (cert_pem, key_pem) = match (
        read_pem(&cert.cert, &format!("{at}.cert")),
        read_pem(&cert.key, &format!("{at}.key")),
    ) {
        (Ok(c), Ok(k)) => (c, k),
        (c, k) => return Err(c.err().into_iter().chain(k.err()).collect()),
    };
    parse_certified_key(cert, at, &cert_pem, &key_pem).map_err(|e| vec![e])
}

fn parse_certified_key(
    cert: &TlsCert,
    at: &str,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<CertifiedKey, ConfigError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            ConfigError::new(
                format!("{at}.cert"),
                format!("{}: not a PEM certificate chain: {e}", cert.cert.display()),
                "give a PEM file with one or more CERTIFICATE blocks",
            )
        })?;
    if chain.is_empty() {
        return Err(ConfigError::new(
            format!("{at}.cert"),
            format!("{}: no certificate found", cert.cert.display()),
            "give a PEM file with one or more CERTIFICATE blocks",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        ConfigError::new(
            format!("{at}.key"),
            format!("{}: no usable private key: {e}", cert.key.display()),
            "give a PEM file with a PRIVATE KEY block (PKCS#8, PKCS#1 or SEC1)",
        )
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        ConfigError::new(
            format!("{at}.key"),
            format!(
                "{} does not fit {}: {e}",
                cert.key.display(),
                cert.cert.display()
            ),
            "use the private key that belongs to this certificate",
        )
    })
}

/// Picks a certificate by SNI: exact name, then an ACME set's, then wildcard, then the
/// default (a file's, else the first ACME set's).
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    /// `[[edge.acme]]`'s certificates and challenges (shared across generations).
    acme: Option<Arc<CertStore>>,
}

impl SniResolver {
    fn fallback(&self) -> Option<Arc<CertifiedKey>> {
        self.default
            .clone()
            .or_else(|| self.acme.as_ref()?.default_certificate())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(acme) = &self.acme {
            // RFC 8737: a validation offers only `acme-tls/1` and gets the challenge
            // certificate for its name, or no handshake.
            if hello
                .alpn()
                .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN))
            {
                return acme.alpn_challenge(hello.server_name()?);
            }
        }
        let Some(name) = hello.server_name() else {
            return self.fallback();
        };
        let name = name.to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return Some(Arc::clone(k));
        }
        if let Some(k) = self.acme.as_ref().and_then(|a| a.certificate(&name)) {
            return Some(k);
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(k) = self.wildcard.get(parent) {
                return Some(Arc::clone(k));
            }
        }
        self.fallback()
    }
}

/// A certificate file's names (comma-separated, `default` for none) and its `notAfter`.
pub(crate) type CertExpiry = (String, SystemTime);

/// The listeners' TLS configuration: TLS 1.2 and 1.3, ALPN `h2` and `http/1.1` (and
/// `acme-tls/1` with `[[edge.acme]]`). Each file's expiry is added to `expiry`.
pub(crate) fn server_config(
    certs: &[TlsCert],
    acme: Option<&Arc<CertStore>>,
    expiry: &mut Vec<CertExpiry>,
) -> Result<Arc<ServerConfig>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut resolver = SniResolver {
        exact: HashMap::new(),
        wildcard: HashMap::new(),
        default: None,
        acme: acme.cloned(),
    };
    for (i, cert) in certs.iter().enumerate() {
        let key = match load_certified_key(cert, &format!("edge.tls[{i}]")) {
            Ok(k) => Arc::new(k),
            Err(mut e) => {
                errors.append(&mut e);
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
        if cert.names.is_empty() {
            resolver.default = Some(Arc::clone(&key));
        }
        for name in &cert.names {
            match name.strip_prefix("*.") {
                Some(suffix) => resolver
                    .wildcard
                    .insert(suffix.to_string(), Arc::clone(&key)),
                None => resolver.exact.insert(name.clone(), Arc::clone(&key)),
            };
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| vec![ConfigError::new("edge.tls", e.to_string(), "")])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if acme.is_some() {
        // Last: a client offering h2 or http/1.1 as well gets those, never a challenge.
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Ok(Arc::new(config))
}

/// Client configuration for a TLS pool: trust the pool's CA file, else the system store.
pub(crate) fn client_config(
    tls: &UpstreamTls,
    http2: bool,
    at: &str,
) -> Result<Arc<ClientConfig>, ConfigError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ConfigError::new(at, e.to_string(), ""))?;
    let mut config = if tls.verify {
        builder
            .with_root_certificates(roots(tls, at)?)
            .with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
            .with_no_client_auth()
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
