//! The TLS listeners' configurations, one per `[[edge.tls]]` table (a *site*): its policy
//! (`policy`), whether it asks clients for a certificate and which CA verifies it, and the
//! shared certificate resolver and session resumption. `accept` reads the ClientHello first
//! and finishes the handshake with the configuration its SNI names (exact, `*.suffix`, then
//! the default table, as the certificate resolver chooses); `TlsPeer` records the site and
//! the verified client certificate's subject for the connection's requests.

use super::policy;
use super::tickets::Resumption;
use crate::ctx::TlsPeer;
use holdfast_config::{ClientAuth, ConfigError, TlsCert, TlsPolicy};
use http::HeaderValue;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::server::{Acceptor, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// ALPN offered on every TLS listener.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

struct Site {
    config: Arc<ServerConfig>,
    /// `Some(required)` when the site asks for client certificates.
    client_auth: Option<bool>,
}

/// One configuration per `[[edge.tls]]` table, chosen by SNI.
pub(crate) struct Sites {
    /// For a name no table lists when no table is the default (the resolver then has no
    /// certificate either): rustls's defaults, no client certificates.
    fallback: Arc<ServerConfig>,
    sites: Box<[Site]>,
    names: NameIndex,
    /// Some table asks for client certificates: connections record a `TlsPeer`, requests
    /// are checked against it.
    pub(crate) checks_clients: bool,
}

impl Sites {
    /// The configuration for a ClientHello without SNI, or with a name no table lists: the
    /// default table's (also the one QUIC listeners take).
    pub(crate) fn default_config(&self) -> Arc<ServerConfig> {
        Arc::clone(self.config_of(self.names.default))
    }

    fn config_of(&self, site: Option<usize>) -> &Arc<ServerConfig> {
        site.and_then(|i| self.sites.get(i))
            .map_or(&self.fallback, |s| &s.config)
    }

    /// The site serving `host` (a name without port), as SNI would pick it.
    pub(crate) fn site_of(&self, host: &str) -> Option<usize> {
        self.names.find(Some(host))
    }

    /// Whether `site` refuses clients without a certificate.
    pub(crate) fn requires_client_cert(&self, site: usize) -> bool {
        self.sites
            .get(site)
            .is_some_and(|s| s.client_auth == Some(true))
    }
}

/// Server names to table indices: exact, then `*.suffix` one label up, then the default.
struct NameIndex {
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
    default: Option<usize>,
}

impl NameIndex {
    fn of(certs: &[TlsCert]) -> Self {
        let mut index = NameIndex {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: None,
        };
        for (i, cert) in certs.iter().enumerate() {
            if cert.names.is_empty() {
                index.default = Some(i);
            }
            for name in &cert.names {
                match name.strip_prefix("*.") {
                    Some(suffix) => index.wildcard.insert(suffix.to_string(), i),
                    None => index.exact.insert(name.clone(), i),
                };
            }
        }
        index
    }

    fn find(&self, name: Option<&str>) -> Option<usize> {
        let Some(name) = name else {
            return self.default;
        };
        let name = name.to_ascii_lowercase();
        if let Some(i) = self.exact.get(&name) {
            return Some(*i);
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .copied()
            .or(self.default)
    }
}

/// Every table's configuration over the shared `resolver` and `resumption`; all errors.
pub(crate) fn build(
    certs: &[TlsCert],
    resolver: Arc<dyn ResolvesServerCert>,
    resumption: &Resumption,
) -> Result<Sites, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut sites = Vec::with_capacity(certs.len());
    for (i, cert) in certs.iter().enumerate() {
        let at = format!("edge.tls[{i}]");
        let made = site_config(
            &cert.policy,
            cert.client_auth.as_ref(),
            &resolver,
            resumption,
            &at,
        );
        match made {
            Ok(config) => sites.push(Site {
                config,
                client_auth: cert.client_auth.as_ref().map(|c| c.required),
            }),
            Err(e) => errors.push(e),
        }
    }
    let fallback = site_config(
        &TlsPolicy::default(),
        None,
        &resolver,
        resumption,
        "edge.tls",
    );
    match fallback {
        Ok(fallback) if errors.is_empty() => Ok(Sites {
            fallback,
            checks_clients: sites.iter().any(|s| s.client_auth.is_some()),
            sites: sites.into_boxed_slice(),
            names: NameIndex::of(certs),
        }),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.push(e);
            Err(errors)
        }
    }
}

fn site_config(
    policy: &TlsPolicy,
    client_auth: Option<&ClientAuth>,
    resolver: &Arc<dyn ResolvesServerCert>,
    resumption: &Resumption,
    at: &str,
) -> Result<Arc<ServerConfig>, ConfigError> {
    let provider = policy::provider(policy, at)?;
    let verifier = client_verifier(client_auth, &provider, at)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(policy::versions(policy))
        .map_err(|e| {
            ConfigError::new(
                at,
                format!("this TLS policy allows no handshake: {e}"),
                "list cipher suites for the TLS versions allowed by min_version",
            )
        })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::clone(resolver));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    resumption.apply(&mut config);
    Ok(Arc::new(config))
}

fn client_verifier(
    client_auth: Option<&ClientAuth>,
    provider: &Arc<CryptoProvider>,
    at: &str,
) -> Result<Arc<dyn ClientCertVerifier>, ConfigError> {
    let Some(auth) = client_auth else {
        return Ok(WebPkiClientVerifier::no_client_auth());
    };
    let at = format!("{at}.client_ca");
    let pem = super::read_pem(&auth.ca, &at)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        if !cert.is_ok_and(|c| roots.add(c).is_ok()) {
            return Err(bad_ca(&auth.ca, &at));
        }
    }
    if roots.is_empty() {
        return Err(bad_ca(&auth.ca, &at));
    }
    let builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
    let builder = if auth.required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder
        .build()
        .map_err(|e| ConfigError::new(at, e.to_string(), "give a PEM file of CA certificates"))
}

fn bad_ca(path: &std::path::Path, at: &str) -> ConfigError {
    ConfigError::new(
        at,
        format!(
            "{}: not a valid PEM file of CA certificates",
            path.display()
        ),
        "give the PEM certificates of the CAs that issue your clients' certificates",
    )
}

/// The server side of a TLS handshake: read the ClientHello, pick the site its SNI names,
/// shake hands with that site's configuration. The `TlsPeer` is `None` when no site asks
/// for client certificates (nothing to check per request).
pub(crate) async fn accept<S>(
    stream: S,
    sites: &Sites,
) -> std::io::Result<(tokio_rustls::server::TlsStream<S>, Option<Arc<TlsPeer>>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = tokio_rustls::LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
    let site = sites.names.find(start.client_hello().server_name());
    let tls = start.into_stream(Arc::clone(sites.config_of(site))).await?;
    let peer = sites.checks_clients.then(|| {
        let subject = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(<[_]>::first)
            .and_then(|leaf| subject_header(leaf));
        Arc::new(TlsPeer { site, subject })
    });
    Ok((tls, peer))
}

/// A certificate's subject as RFC 4514 text (last RDN first, `,` between, `+` inside a
/// multi-valued RDN, specials escaped with `\`, anything but printable ASCII as `\XX`), as a
/// header value. `None` if the certificate does not parse (rustls verified it, so never).
pub(crate) fn subject_header(der: &[u8]) -> Option<HeaderValue> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<_> = cert.subject().iter().collect();
    let mut out = String::new();
    for (n, rdn) in rdns.iter().rev().enumerate() {
        if n > 0 {
            out.push(',');
        }
        for (m, attr) in rdn.iter().enumerate() {
            if m > 0 {
                out.push('+');
            }
            match x509_parser::objects::oid2abbrev(attr.attr_type(), registry) {
                Ok(abbrev) => out.push_str(abbrev),
                Err(_) => out.push_str(&attr.attr_type().to_id_string()),
            }
            out.push('=');
            match attr.as_str() {
                Ok(value) => escape_4514(value, &mut out),
                Err(_) => {
                    out.push('#');
                    for b in attr.attr_value().data.iter() {
                        out.push_str(&format!("{b:02x}"));
                    }
                }
            }
        }
    }
    HeaderValue::from_str(&out).ok()
}

fn escape_4514(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
            out.push(c);
        } else if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(dn: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            params.distinguished_name.push(t.clone(), *v);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_subject_is_rfc_4514_text_last_rdn_first() {
        let der = cert_with(&[
            (rcgen::DnType::CountryName, "FR"),
            (rcgen::DnType::OrganizationName, "Example, Inc."),
            (rcgen::DnType::CommonName, "client.test"),
        ]);
        assert_eq!(
            subject_header(&der).unwrap(),
            "CN=client.test,O=Example\\, Inc.,C=FR"
        );
    }

    #[test]
    fn unprintable_and_special_characters_are_escaped() {
        let der = cert_with(&[(rcgen::DnType::CommonName, " José\r\n=x ")]);
        assert_eq!(
            subject_header(&der).unwrap(),
            "CN=\\ Jos\\C3\\A9\\0D\\0A\\=x\\ "
        );
        assert_eq!(subject_header(b"not a certificate"), None);
    }

    #[test]
    fn names_pick_exact_then_wildcard_then_default() {
        let cert = |names: &[&str]| TlsCert {
            names: names.iter().map(|n| n.to_string()).collect(),
            cert: "c".into(),
            key: "k".into(),
            client_auth: None,
            policy: TlsPolicy::default(),
        };
        let index = NameIndex::of(&[cert(&["a.test"]), cert(&["*.b.test"]), cert(&[])]);
        assert_eq!(index.find(Some("A.test")), Some(0));
        assert_eq!(index.find(Some("x.b.test")), Some(1));
        assert_eq!(index.find(Some("b.test")), Some(2));
        assert_eq!(index.find(Some("y.x.b.test")), Some(2));
        assert_eq!(index.find(None), Some(2));
        let no_default = NameIndex::of(&[cert(&["a.test"])]);
        assert_eq!(no_default.find(Some("other.test")), None);
    }
}
