//! The TLS listeners' configurations, one per `[[edge.tls]]` table and one per
//! `[[edge.acme]]` table (a *site*; the ACME ones numbered after the files'): its policy
//! (`policy`), whether it asks clients for a certificate and which CA verifies it, and the
//! shared certificate resolver and session resumption. One `NameIndex` picks the site for
//! a server name (exact — a file's names and the ACME names —, then `*.suffix`, then the
//! default table, else the first ACME table): `accept` reads the ClientHello first and
//! finishes the handshake with that site's configuration, and the resolver (shared by every
//! site and by the QUIC listeners) serves that site's certificate — a file's, or what the
//! ACME `CertStore` serves for the name set now (a placeholder until the first issuance, then
//! each renewal, without a reload). A ClientHello offering ALPN `acme-tls/1` is a
//! `tls-alpn-01` validation (RFC 8737): it gets the challenge configuration (that protocol
//! only, the challenge certificate for its name, else no handshake). `TlsPeer` records the
//! site and the verified client certificate's subject for the connection's requests.

use super::policy;
use super::tickets::Resumption;
use crate::ctx::TlsPeer;
use holdfast_acme::{CertStore, ACME_TLS_ALPN};
use holdfast_config::{AcmeCert, AcmeChallenge, ClientAuth, ConfigError, TlsCert, TlsPolicy};
use http::HeaderValue;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::server::{
    Acceptor, ClientHello, ResolvesServerCert, WebPkiClientVerifier,
};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{version, RootCertStore, ServerConfig};

/// ALPN offered on every TLS listener.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

struct Site {
    config: Arc<ServerConfig>,
    /// `Some(required)` when the site asks for client certificates.
    client_auth: Option<bool>,
}

/// One configuration per `[[edge.tls]]` and `[[edge.acme]]` table, chosen by SNI.
pub(crate) struct Sites {
    /// For a name no table lists when no table is the default (the resolver then has no
    /// certificate either): rustls's defaults, no client certificates.
    fallback: Arc<ServerConfig>,
    sites: Box<[Site]>,
    names: Arc<NameIndex>,
    /// With an `[[edge.acme]]` table using `tls-alpn-01`: what a validation shakes hands with.
    acme_challenge: Option<Arc<ServerConfig>>,
    /// Some table asks for client certificates: connections record a `TlsPeer`, requests
    /// are checked against it.
    pub(crate) checks_clients: bool,
    /// Every site's certificate (and OCSP staple).
    resolver: Arc<SiteResolver>,
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

    /// Each site's OCSP staple, for `/status`.
    pub(crate) fn ocsp_status(&self) -> Vec<super::OcspStatus> {
        self.resolver.staples.status()
    }

    pub(crate) fn refresh_ocsp_gauges(&self, metrics: &super::OcspMetrics) {
        self.resolver.staples.refresh_gauges(metrics);
    }

    /// Start stapling OCSP responses for the sites whose certificates name a responder: one
    /// thread (its own current-thread runtime, off the data path) that ends once these sites
    /// are no longer used by any configuration. Responses are cached in `cache_dir`.
    pub(crate) fn start_ocsp(
        &self,
        cache_dir: Option<std::path::PathBuf>,
        metrics: &super::OcspMetrics,
    ) -> std::io::Result<()> {
        let staplers: Vec<_> = (0..self.resolver.certs.len())
            .map(|site| {
                let resolver = Arc::downgrade(&self.resolver);
                super::ocsp::Stapler {
                    site,
                    staples: Arc::downgrade(&self.resolver.staples),
                    certificate: Box::new(move || resolver.upgrade()?.certificate(site)),
                    cache_dir: cache_dir.clone(),
                    metrics: metrics.clone(),
                    closed: self.resolver.staples.closed(),
                }
            })
            .collect();
        if staplers.is_empty() {
            return Ok(());
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("holdfast-ocsp".into())
            .spawn(move || {
                runtime.block_on(futures_util::future::join_all(
                    staplers.into_iter().map(super::ocsp::Stapler::run),
                ))
            })
            .map(drop)
    }

    /// Whether `site` refuses clients without a certificate.
    pub(crate) fn requires_client_cert(&self, site: usize) -> bool {
        self.sites
            .get(site)
            .is_some_and(|s| s.client_auth == Some(true))
    }
}

/// Server names to site indices: exact, then `*.suffix` one label up, then the default.
#[derive(Debug)]
struct NameIndex {
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
    default: Option<usize>,
}

impl NameIndex {
    /// The files' tables are sites `0..certs.len()`, the ACME tables the ones after. ACME
    /// names are exact names (no wildcards; none is also a file's, the config checks); the
    /// default is the file without names, else the first ACME table.
    fn of(certs: &[TlsCert], acme: &[AcmeCert]) -> Self {
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
        for (j, set) in acme.iter().enumerate() {
            let i = certs.len() + j;
            for name in &set.domains {
                index.exact.entry(name.clone()).or_insert(i);
            }
        }
        if index.default.is_none() && !acme.is_empty() {
            index.default = Some(certs.len());
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

/// What one site serves.
#[derive(Debug)]
enum SiteCert {
    /// An `[[edge.tls]]` table's files (`None`: they did not load, and the build fails).
    File(Option<Arc<CertifiedKey>>),
    /// An `[[edge.acme]]` table's: what the store serves for this name (the set's first) now.
    Acme(String),
}

/// The certificate for a ClientHello: the site its SNI names, as `accept` picks it, and that
/// site's certificate. One for every site's configuration and the QUIC listeners.
#[derive(Debug)]
struct SiteResolver {
    names: Arc<NameIndex>,
    certs: Box<[SiteCert]>,
    /// `[[edge.acme]]`'s certificates (shared across generations; `None`: no ACME, or
    /// `holdfast check`, which serves nothing).
    acme: Option<Arc<CertStore>>,
    /// The sites' OCSP staples, applied to the certificate each handshake gets.
    staples: Arc<super::ocsp::Staples>,
}

impl SiteResolver {
    fn certificate(&self, site: usize) -> Option<Arc<CertifiedKey>> {
        match self.certs.get(site)? {
            SiteCert::File(key) => key.clone(),
            SiteCert::Acme(name) => self.acme.as_ref()?.certificate(name),
        }
    }
}

impl ResolvesServerCert for SiteResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let site = self.names.find(hello.server_name())?;
        let base = self.certificate(site)?;
        Some(self.staples.apply(site, base))
    }
}

/// `tls-alpn-01`: the challenge certificate for the name being validated, while an order
/// waits for it; otherwise no certificate, so no handshake.
#[derive(Debug)]
struct ChallengeResolver(Arc<CertStore>);

impl ResolvesServerCert for ChallengeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.alpn_challenge(hello.server_name()?)
    }
}

/// Every site's configuration over one resolver and `resumption`; all errors. `keys` are the
/// files' certificates, one per `certs` entry; `acme` the store the ACME sites serve from.
pub(crate) fn build(
    certs: &[TlsCert],
    keys: Vec<Option<Arc<CertifiedKey>>>,
    acme_sets: &[AcmeCert],
    acme: Option<&Arc<CertStore>>,
    resumption: &Resumption,
) -> Result<Sites, Vec<ConfigError>> {
    let names = Arc::new(NameIndex::of(certs, acme_sets));
    let files = keys.into_iter().map(SiteCert::File);
    let ordered = acme_sets
        .iter()
        .map(|set| SiteCert::Acme(set.domains.first().cloned().unwrap_or_default()));
    let site_names = certs
        .iter()
        .map(|c| {
            if c.names.is_empty() {
                "default".to_string()
            } else {
                c.names.join(",")
            }
        })
        .chain(acme_sets.iter().map(|a| a.domains.join(",")))
        .collect();
    let site_resolver = Arc::new(SiteResolver {
        names: Arc::clone(&names),
        certs: files.chain(ordered).collect(),
        acme: acme.cloned(),
        staples: Arc::new(super::ocsp::Staples::new(site_names)),
    });
    let resolver: Arc<dyn ResolvesServerCert> = Arc::clone(&site_resolver) as _;
    let tables = certs
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("edge.tls[{i}]"), &c.policy, c.client_auth.as_ref()));
    let sets = acme_sets
        .iter()
        .enumerate()
        .map(|(j, a)| (format!("edge.acme[{j}]"), &a.policy, a.client_auth.as_ref()));
    let mut errors = Vec::new();
    let mut sites = Vec::with_capacity(certs.len() + acme_sets.len());
    for (at, policy, client_auth) in tables.chain(sets) {
        match site_config(policy, client_auth, &resolver, resumption, &at) {
            Ok(config) => sites.push(Site {
                config,
                client_auth: client_auth.map(|c| c.required),
            }),
            Err(e) => errors.push(e),
        }
    }
    let alpn_01 = acme_sets
        .iter()
        .any(|s| s.challenge == AcmeChallenge::TlsAlpn01);
    let acme_challenge = match acme.filter(|_| alpn_01).map(challenge_config) {
        None => None,
        Some(Ok(config)) => Some(config),
        Some(Err(e)) => {
            errors.push(e);
            None
        }
    };
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
            names,
            acme_challenge,
            resolver: site_resolver,
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

/// The configuration a `tls-alpn-01` validation shakes hands with: ALPN `acme-tls/1` only,
/// TLS 1.2 or 1.3 (RFC 8737 §4), the challenge certificate, no client certificates, no
/// resumption.
fn challenge_config(store: &Arc<CertStore>) -> Result<Arc<ServerConfig>, ConfigError> {
    let mut config = ServerConfig::builder_with_provider(super::provider())
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .map_err(|e| ConfigError::new("edge.acme", e.to_string(), ""))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ChallengeResolver(Arc::clone(store))));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Whether a ClientHello offers ALPN `acme-tls/1`: a `tls-alpn-01` validation.
fn offers_acme_tls(hello: &ClientHello<'_>) -> bool {
    hello
        .alpn()
        .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN))
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
/// for client certificates (nothing to check per request). A `tls-alpn-01` validation shakes
/// hands with the challenge configuration instead; its stream's ALPN is `acme-tls/1`, and
/// the handshake was the whole answer (the caller closes it).
pub(crate) async fn accept<S>(
    stream: S,
    sites: &Sites,
) -> std::io::Result<(tokio_rustls::server::TlsStream<S>, Option<Arc<TlsPeer>>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = tokio_rustls::LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
    let hello = start.client_hello();
    if let Some(challenge) = sites.acme_challenge.as_ref() {
        if offers_acme_tls(&hello) {
            let tls = start.into_stream(Arc::clone(challenge)).await?;
            return Ok((tls, None));
        }
    }
    let site = sites.names.find(hello.server_name());
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
        let index = NameIndex::of(&[cert(&["a.test"]), cert(&["*.b.test"]), cert(&[])], &[]);
        assert_eq!(index.find(Some("A.test")), Some(0));
        assert_eq!(index.find(Some("x.b.test")), Some(1));
        assert_eq!(index.find(Some("b.test")), Some(2));
        assert_eq!(index.find(Some("y.x.b.test")), Some(2));
        assert_eq!(index.find(None), Some(2));
        let no_default = NameIndex::of(&[cert(&["a.test"])], &[]);
        assert_eq!(no_default.find(Some("other.test")), None);
    }

    fn acme(domains: &[&str]) -> AcmeCert {
        AcmeCert {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            contact: None,
            directory: holdfast_config::LETS_ENCRYPT_DIRECTORY.to_string(),
            challenge: AcmeChallenge::Http01,
            ca_file: None,
            client_auth: None,
            policy: TlsPolicy::default(),
        }
    }

    #[test]
    fn acme_names_are_sites_after_the_files_exact_before_wildcards() {
        let cert = |names: &[&str]| TlsCert {
            names: names.iter().map(|n| n.to_string()).collect(),
            cert: "c".into(),
            key: "k".into(),
            client_auth: None,
            policy: TlsPolicy::default(),
        };
        let files = [cert(&["a.test"]), cert(&["*.b.test"])];
        let sets = [acme(&["x.b.test", "y.test"]), acme(&["z.test"])];
        let index = NameIndex::of(&files, &sets);
        assert_eq!(index.find(Some("a.test")), Some(0));
        assert_eq!(index.find(Some("X.b.test")), Some(2));
        assert_eq!(index.find(Some("w.b.test")), Some(1));
        assert_eq!(index.find(Some("z.test")), Some(3));
        // No file without names: the first ACME table is the default.
        assert_eq!(index.find(Some("other.test")), Some(2));
        assert_eq!(index.find(None), Some(2));
        let with_default = NameIndex::of(&[cert(&[])], &sets);
        assert_eq!(with_default.find(Some("other.test")), Some(0));
        assert_eq!(with_default.find(Some("z.test")), Some(2));
    }
}
