//! Certificates as the edge holds them: an issued chain and key parsed into a rustls
//! `CertifiedKey` with its validity and names; the self-signed placeholder served until the
//! first issuance; the `tls-alpn-01` challenge certificate (RFC 8737); a fresh key and CSR.

use crate::AcmeError;
use rcgen::{CertificateParams, CustomExtension, DistinguishedName, DnType, KeyPair};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::sign::CertifiedKey;

/// An issued certificate: what is served, and what renewal and `/status` need to know.
#[derive(Clone)]
pub(crate) struct Issued {
    pub key: Arc<CertifiedKey>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The DNS names of the leaf's subjectAltName, lower-cased.
    pub names: Vec<String>,
    /// The leaf, for an ACME Renewal Information look-up.
    pub leaf: CertificateDer<'static>,
}

impl Issued {
    /// Parse a PEM file holding the chain (leaf first) and its private key.
    pub fn from_pem(pem: &[u8]) -> Result<Issued, AcmeError> {
        let bad = |what: String| AcmeError::Certificate(what);
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("not a PEM certificate chain: {e}")))?;
        let leaf = chain
            .first()
            .cloned()
            .ok_or_else(|| bad("no certificate in the file".into()))?;
        let key = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| bad(format!("no usable private key: {e}")))?;
        let (not_before, not_after, names) = validity(&leaf)?;
        let key = CertifiedKey::from_der(chain, key, &ring::default_provider())
            .map_err(|e| bad(format!("the key does not fit the certificate: {e}")))?;
        Ok(Issued {
            key: Arc::new(key),
            not_before,
            not_after,
            names,
            leaf,
        })
    }

    /// Whether the certificate names every one of `domains`.
    pub fn covers(&self, domains: &[String]) -> bool {
        domains.iter().all(|d| self.names.iter().any(|n| n == d))
    }
}

fn validity(leaf: &CertificateDer<'_>) -> Result<(SystemTime, SystemTime, Vec<String>), AcmeError> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| AcmeError::Certificate(format!("cannot parse the certificate: {e}")))?;
    let at = |t: i64| {
        u64::try_from(t)
            .map(|s| UNIX_EPOCH + Duration::from_secs(s))
            .unwrap_or(UNIX_EPOCH)
    };
    let validity = cert.validity();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    Ok((
        at(validity.not_before.timestamp()),
        at(validity.not_after.timestamp()),
        names,
    ))
}

fn rcgen_err(e: rcgen::Error) -> AcmeError {
    AcmeError::Certificate(e.to_string())
}

/// A certificate made here with its own key. Not `CertifiedKey::from_der`: its consistency
/// check parses the certificate with webpki, which refuses the `tls-alpn-01` certificate's
/// critical acmeIdentifier extension (the validating CA, not rustls, reads that one).
fn certified(cert: &rcgen::Certificate, key: &KeyPair) -> Result<CertifiedKey, AcmeError> {
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = ring::default_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| AcmeError::Certificate(e.to_string()))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

/// A self-signed certificate for `domains`, served until the CA issues the real one.
pub(crate) fn placeholder(domains: &[String]) -> Result<CertifiedKey, AcmeError> {
    let mut params = CertificateParams::new(domains.to_vec()).map_err(rcgen_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        "Holdfast placeholder (ACME certificate pending)",
    );
    params.distinguished_name = dn;
    let key = KeyPair::generate().map_err(rcgen_err)?;
    let cert = params.self_signed(&key).map_err(rcgen_err)?;
    certified(&cert, &key)
}

/// A self-signed certificate and its key as PEM text (a fleet member's TLS listener serves
/// one before the fleet's first version gives it certificates).
pub fn placeholder_pem(domains: &[String]) -> Result<(String, String), AcmeError> {
    let mut params = CertificateParams::new(domains.to_vec()).map_err(rcgen_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        "Holdfast placeholder (no fleet version yet)",
    );
    params.distinguished_name = dn;
    let key = KeyPair::generate().map_err(rcgen_err)?;
    let cert = params.self_signed(&key).map_err(rcgen_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The `tls-alpn-01` answer for `name`: self-signed, its only name `name`, and the critical
/// acmeIdentifier extension holding the SHA-256 digest of the key authorization.
pub(crate) fn alpn_challenge(name: &str, digest: &[u8]) -> Result<CertifiedKey, AcmeError> {
    let mut params = CertificateParams::new(vec![name.to_string()]).map_err(rcgen_err)?;
    params.distinguished_name = DistinguishedName::new();
    params
        .custom_extensions
        .push(CustomExtension::new_acme_identifier(digest));
    let key = KeyPair::generate().map_err(rcgen_err)?;
    let cert = params.self_signed(&key).map_err(rcgen_err)?;
    certified(&cert, &key)
}

/// A new private key and a CSR naming `domains` (the first as subject).
pub(crate) fn key_and_csr(domains: &[String]) -> Result<(KeyPair, Vec<u8>), AcmeError> {
    let mut params = CertificateParams::new(domains.to_vec()).map_err(rcgen_err)?;
    let mut dn = DistinguishedName::new();
    if let Some(first) = domains.first() {
        dn.push(DnType::CommonName, first.as_str());
    }
    params.distinguished_name = dn;
    let key = KeyPair::generate().map_err(rcgen_err)?;
    let csr = params.serialize_request(&key).map_err(rcgen_err)?;
    Ok((key, csr.der().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_of(domains: &[&str]) -> String {
        let names: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        format!("{}{}", cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_chain_and_key_file_parses_with_its_names_and_validity() {
        let issued = Issued::from_pem(pem_of(&["a.test", "WWW.a.test"]).as_bytes()).unwrap();
        assert_eq!(issued.names, ["a.test", "www.a.test"]);
        assert!(issued.covers(&["www.a.test".into()]));
        assert!(!issued.covers(&["b.test".into()]));
        assert!(issued.not_after > issued.not_before);
    }

    #[test]
    fn a_file_without_a_key_or_certificate_is_refused() {
        let pem = pem_of(&["a.test"]);
        let cert_only: String = pem.split("-----BEGIN PRIVATE KEY").next().unwrap().into();
        assert!(matches!(
            Issued::from_pem(cert_only.as_bytes()),
            Err(AcmeError::Certificate(m)) if m.contains("private key")
        ));
        assert!(Issued::from_pem(b"garbage").is_err());
    }

    #[test]
    fn the_alpn_challenge_certificate_carries_the_critical_acme_identifier() {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let key = alpn_challenge("a.test", &[7u8; 32]).unwrap();
        let der = key.cert[0].as_ref();
        let (_, cert) = X509Certificate::from_der(der).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        // DER OCTET STRING of the 32-byte digest.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &[7u8; 32]);
    }

    #[test]
    fn a_csr_and_key_are_made_for_the_names() {
        let (key, csr) = key_and_csr(&["a.test".into(), "www.a.test".into()]).unwrap();
        assert!(!csr.is_empty());
        assert!(key.serialize_pem().contains("PRIVATE KEY"));
    }
}
