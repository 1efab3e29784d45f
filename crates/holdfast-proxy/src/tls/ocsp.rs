//! OCSP stapling (RFC 6960, RFC 6066 `status_request`). For each site whose leaf certificate
//! names an OCSP responder (Authority Information Access) and whose chain carries the issuer,
//! a background task asks the responder (HTTP POST, `http://` only, as responders are), checks
//! the answer (a successful basic response, status good for this certificate's serial and
//! issuer, `thisUpdate` not in the future, `nextUpdate` not past, signed by the issuer or by a
//! responder certificate the issuer signed for OCSP signing), and staples it: the resolver hands
//! out a copy of the site's `CertifiedKey` with `ocsp` set. Handshakes never wait for any of it.
//!
//! Refresh at half the validity window; on failure back off (1 min doubling to 1 h) and keep a
//! staple that is still valid; a staple past its `nextUpdate` is dropped (also checked at each
//! handshake). The last good response is cached in `state_dir/ocsp/` (0600) and loaded at start
//! if still valid.

mod der;

use arc_swap::ArcSwapOption;
use der::{Reader, Tlv};
use http_body_util::{BodyExt, Full, Limited};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};
use tokio_rustls::rustls::sign::CertifiedKey;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

/// Responses larger than this are refused (from the network and from the cache).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// One fetch (connect, send, read) gives up after this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MIN_BACKOFF: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Refresh no more often than this, whatever the responder's window.
const MIN_REFRESH: Duration = Duration::from_secs(60);
/// How often a site without a responder (or without a certificate yet) is looked at again:
/// an ACME site's certificate changes under it.
const RECHECK: Duration = Duration::from_secs(600);

// DER contents of the object identifiers used here.
const OID_SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
const OID_OCSP_BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];
const OID_AD_OCSP: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];
const OID_RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const OID_RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const OID_RSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

/// Why a response was not stapled.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OcspError {
    #[error("responder {url}: {what}")]
    Fetch { url: String, what: String },
    #[error("not a well-formed OCSP response")]
    Malformed,
    #[error("responder answered status {0} (not successful)")]
    Unsuccessful(u8),
    #[error("not a basic OCSP response")]
    NotBasic,
    #[error("the response is for another certificate")]
    OtherCertificate,
    #[error("the certificate is revoked")]
    Revoked,
    #[error("the responder does not know the certificate")]
    Unknown,
    #[error("the response is not valid now (thisUpdate in the future or nextUpdate past)")]
    OutOfWindow,
    #[error("the response's signature is not the issuer's or a delegated responder's")]
    BadSignature,
}

impl OcspError {
    /// The `result` label of `holdfast_tls_ocsp_fetches_total`.
    fn label(&self) -> &'static str {
        match self {
            OcspError::Fetch { .. } => "unreachable",
            OcspError::Revoked => "revoked",
            _ => "invalid",
        }
    }
}

/// What a certificate's OCSP request needs, and what its answer is checked against.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub url: String,
    serial: Vec<u8>,
    name_hash: Vec<u8>,
    key_hash: Vec<u8>,
    /// The issuer's SubjectPublicKeyInfo (DER).
    issuer_spki: Vec<u8>,
    issuer_subject: Vec<u8>,
}

impl Target {
    /// The leaf's responder and the issuer (the chain's second certificate); `None` when the
    /// leaf names no `http://` responder or the chain has no issuer.
    pub(crate) fn of(key: &CertifiedKey) -> Option<Target> {
        Target::from_chain(key.cert.first()?, key.cert.get(1)?)
    }

    /// The same from the leaf's and the issuer's DER.
    pub(crate) fn from_chain(leaf_der: &[u8], issuer_der: &[u8]) -> Option<Target> {
        let (_, leaf) = X509Certificate::from_der(leaf_der).ok()?;
        let (_, issuer) = X509Certificate::from_der(issuer_der).ok()?;
        let url = leaf.extensions().iter().find_map(|ext| {
            let ParsedExtension::AuthorityInfoAccess(aia) = ext.parsed_extension() else {
                return None;
            };
            aia.accessdescs
                .iter()
                .find_map(|d| match d.access_location {
                    GeneralName::URI(u) if d.access_method.as_bytes() == OID_AD_OCSP => {
                        u.starts_with("http://").then(|| u.to_string())
                    }
                    _ => None,
                })
        })?;
        let sha1 = |b: &[u8]| {
            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, b)
                .as_ref()
                .to_vec()
        };
        Some(Target {
            url,
            serial: leaf.raw_serial().to_vec(),
            name_hash: sha1(issuer.subject().as_raw()),
            key_hash: sha1(&issuer.public_key().subject_public_key.data),
            issuer_spki: issuer.public_key().raw.to_vec(),
            issuer_subject: issuer.subject().as_raw().to_vec(),
        })
    }

    /// The DER OCSPRequest for this certificate (one request, no nonce, no signature).
    pub(crate) fn request(&self) -> Vec<u8> {
        use der::{tlv, INTEGER, NULL, OCTET_STRING, OID, SEQUENCE};
        let alg = tlv(SEQUENCE, &[tlv(OID, OID_SHA1), tlv(NULL, &[])].concat());
        let cert_id = tlv(
            SEQUENCE,
            &[
                alg,
                tlv(OCTET_STRING, &self.name_hash),
                tlv(OCTET_STRING, &self.key_hash),
                tlv(INTEGER, &self.serial),
            ]
            .concat(),
        );
        let request = tlv(SEQUENCE, &cert_id);
        let list = tlv(SEQUENCE, &request);
        let tbs = tlv(SEQUENCE, &list);
        tlv(SEQUENCE, &tbs)
    }

    /// Check `response` (DER OCSPResponse) for this certificate at `now`; its window (a
    /// response without `nextUpdate` is taken as valid for twice `RECHECK` from `thisUpdate`).
    pub(crate) fn check(&self, response: &[u8], now: SystemTime) -> Result<Window, OcspError> {
        use der::*;
        let m = || OcspError::Malformed;
        let mut top = Reader(Reader(response).take(SEQUENCE).ok_or_else(m)?.value);
        let status = top.take(ENUMERATED).ok_or_else(m)?;
        match status.value {
            [0] => {}
            [s] => return Err(OcspError::Unsuccessful(*s)),
            _ => return Err(m()),
        }
        let bytes = top.take(0xa0).ok_or_else(m)?;
        let mut rb = Reader(Reader(bytes.value).take(SEQUENCE).ok_or_else(m)?.value);
        if rb.take(OID).ok_or_else(m)?.value != OID_OCSP_BASIC {
            return Err(OcspError::NotBasic);
        }
        let basic = rb.take(OCTET_STRING).ok_or_else(m)?;
        let mut basic = Reader(Reader(basic.value).take(SEQUENCE).ok_or_else(m)?.value);
        let tbs = basic.take(SEQUENCE).ok_or_else(m)?;
        let sig_alg = basic.take(SEQUENCE).ok_or_else(m)?;
        let signature = basic.take(BIT_STRING).ok_or_else(m)?;
        let certs = basic.optional(0xa0);
        self.check_signature(tbs.raw, sig_alg, signature, certs)?;

        let mut data = Reader(tbs.value);
        data.optional(0xa0); // version
        data.any().ok_or_else(m)?; // responderID
        data.take(GENERALIZED_TIME).ok_or_else(m)?; // producedAt
        let mut responses = Reader(data.take(SEQUENCE).ok_or_else(m)?.value);
        while !responses.is_empty() {
            let single = responses.take(SEQUENCE).ok_or_else(m)?;
            let mut single = Reader(single.value);
            let cert_id = single.take(SEQUENCE).ok_or_else(m)?;
            if !self.is_this(cert_id)? {
                continue;
            }
            let status = single.any().ok_or_else(m)?;
            match status.tag {
                0x80 => {}
                0xa1 => return Err(OcspError::Revoked),
                0x82 => return Err(OcspError::Unknown),
                _ => return Err(m()),
            }
            let this_update = single.take(GENERALIZED_TIME).ok_or_else(m)?;
            let this_update = generalized_time(this_update.value).ok_or_else(m)?;
            let next_update = match single.optional(0xa0) {
                Some(n) => {
                    let t = Reader(n.value).take(GENERALIZED_TIME).ok_or_else(m)?;
                    generalized_time(t.value).ok_or_else(m)?
                }
                None => this_update + 2 * RECHECK,
            };
            // A little slack for clocks: a thisUpdate up to 5 minutes ahead is accepted.
            if this_update > now + Duration::from_secs(300)
                || next_update <= now
                || next_update <= this_update
            {
                return Err(OcspError::OutOfWindow);
            }
            return Ok(Window {
                this_update,
                next_update,
            });
        }
        Err(OcspError::OtherCertificate)
    }

    /// Whether a response's CertID is this certificate's (SHA-1 CertIDs, as requested).
    fn is_this(&self, cert_id: Tlv<'_>) -> Result<bool, OcspError> {
        use der::*;
        let m = || OcspError::Malformed;
        let mut id = Reader(cert_id.value);
        let alg = id.take(SEQUENCE).ok_or_else(m)?;
        let oid = Reader(alg.value).take(OID).ok_or_else(m)?;
        let name = id.take(OCTET_STRING).ok_or_else(m)?;
        let key = id.take(OCTET_STRING).ok_or_else(m)?;
        let serial = id.take(INTEGER).ok_or_else(m)?;
        Ok(oid.value == OID_SHA1
            && name.value == self.name_hash.as_slice()
            && key.value == self.key_hash.as_slice()
            && serial.value == self.serial.as_slice())
    }

    /// The response is signed by the issuer, or by a certificate in `certs` that the issuer
    /// signed and that may sign OCSP responses (id-kp-OCSPSigning).
    fn check_signature(
        &self,
        tbs: &[u8],
        alg: Tlv<'_>,
        signature: Tlv<'_>,
        certs: Option<Tlv<'_>>,
    ) -> Result<(), OcspError> {
        let sig = signature.value.split_first().map(|(_, s)| s);
        let sig = sig.ok_or(OcspError::Malformed)?;
        if verify(&self.issuer_spki, alg, tbs, sig) {
            return Ok(());
        }
        let Some(certs) = certs else {
            return Err(OcspError::BadSignature);
        };
        let list = Reader(certs.value).take(der::SEQUENCE);
        let mut list = Reader(list.ok_or(OcspError::Malformed)?.value);
        while let Some(cert) = list.any() {
            if self.delegate_verifies(cert.raw, tbs, alg, sig) {
                return Ok(());
            }
        }
        Err(OcspError::BadSignature)
    }

    fn delegate_verifies(&self, cert: &[u8], tbs: &[u8], alg: Tlv<'_>, sig: &[u8]) -> bool {
        let Ok((_, delegate)) = X509Certificate::from_der(cert) else {
            return false;
        };
        let may_sign = delegate
            .extended_key_usage()
            .ok()
            .flatten()
            .is_some_and(|e| e.value.ocsp_signing);
        if !may_sign || delegate.issuer().as_raw() != self.issuer_subject.as_slice() {
            return false;
        }
        // The delegate's own certificate, signed by the issuer.
        let mut outer = Reader(cert);
        let Some(seq) = outer.take(der::SEQUENCE) else {
            return false;
        };
        let mut parts = Reader(seq.value);
        let (Some(cert_tbs), Some(cert_alg), Some(cert_sig)) = (
            parts.take(der::SEQUENCE),
            parts.take(der::SEQUENCE),
            parts.take(der::BIT_STRING),
        ) else {
            return false;
        };
        let Some((_, cert_sig)) = cert_sig.value.split_first() else {
            return false;
        };
        verify(&self.issuer_spki, cert_alg, cert_tbs.raw, cert_sig)
            && verify(delegate.public_key().raw, alg, tbs, sig)
    }
}

/// Whether `sig` over `message` verifies with the key in `spki` under the signature
/// algorithm `alg` (an AlgorithmIdentifier).
fn verify(spki: &[u8], alg: Tlv<'_>, message: &[u8], sig: &[u8]) -> bool {
    use ring::signature as s;
    let Some(oid) = Reader(alg.value).take(der::OID) else {
        return false;
    };
    let Some(info) = Reader(spki).take(der::SEQUENCE) else {
        return false;
    };
    let mut info = Reader(info.value);
    let (Some(key_alg), Some(key)) = (info.take(der::SEQUENCE), info.take(der::BIT_STRING)) else {
        return false;
    };
    let Some((_, key)) = key.value.split_first() else {
        return false;
    };
    let mut key_alg = Reader(key_alg.value);
    key_alg.take(der::OID);
    let curve = key_alg.optional(der::OID).map(|c| c.value);
    let algorithm: &dyn s::VerificationAlgorithm = match (oid.value, curve) {
        (OID_RSA_SHA256, _) => &s::RSA_PKCS1_2048_8192_SHA256,
        (OID_RSA_SHA384, _) => &s::RSA_PKCS1_2048_8192_SHA384,
        (OID_RSA_SHA512, _) => &s::RSA_PKCS1_2048_8192_SHA512,
        (OID_ECDSA_SHA256, Some(OID_P256)) => &s::ECDSA_P256_SHA256_ASN1,
        (OID_ECDSA_SHA256, Some(OID_P384)) => &s::ECDSA_P384_SHA256_ASN1,
        (OID_ECDSA_SHA384, Some(OID_P256)) => &s::ECDSA_P256_SHA384_ASN1,
        (OID_ECDSA_SHA384, Some(OID_P384)) => &s::ECDSA_P384_SHA384_ASN1,
        (OID_ED25519, _) => &s::ED25519,
        _ => return false,
    };
    s::UnparsedPublicKey::new(algorithm, key)
        .verify(message, sig)
        .is_ok()
}

/// A checked response's validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub this_update: SystemTime,
    pub next_update: SystemTime,
}

impl Window {
    /// When to ask again: halfway through the window (not sooner than `MIN_REFRESH`).
    fn refresh_at(&self, now: SystemTime) -> SystemTime {
        let half = self
            .next_update
            .duration_since(self.this_update)
            .unwrap_or_default()
            / 2;
        (self.this_update + half).max(now + MIN_REFRESH)
    }
}

/// Ask `url` (plain HTTP) with `request` (DER) by POST; the answer's body, bounded.
pub(crate) async fn fetch(url: &str, request: Vec<u8>) -> Result<Vec<u8>, OcspError> {
    let err = |what: String| OcspError::Fetch {
        url: url.to_string(),
        what,
    };
    let uri: http::Uri = url.parse().map_err(|e| err(format!("bad URL: {e}")))?;
    let host = uri.host().ok_or_else(|| err("no host".into()))?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let authority = uri
        .authority()
        .map_or_else(|| host.clone(), |a| a.as_str().to_string());
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let work = async {
        let host_port = (host.trim_start_matches('[').trim_end_matches(']'), port);
        let stream = tokio::net::TcpStream::connect(host_port)
            .await
            .map_err(|e| err(format!("connect: {e}")))?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| err(e.to_string()))?;
        let driver = tokio::spawn(conn);
        let req = http::Request::post(path)
            .header(http::header::HOST, authority)
            .header(http::header::CONTENT_TYPE, "application/ocsp-request")
            .header(http::header::ACCEPT, "application/ocsp-response")
            .body(Full::new(bytes::Bytes::from(request)))
            .map_err(|e| err(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| err(format!("reading the answer: {e}")))?
            .to_bytes();
        driver.abort();
        if !status.is_success() {
            return Err(err(format!("HTTP status {status}")));
        }
        Ok(body.to_vec())
    };
    tokio::time::timeout(FETCH_TIMEOUT, work)
        .await
        .map_err(|_| err(format!("no answer within {FETCH_TIMEOUT:?}")))?
}

/// A stapled copy of a site's certificate.
#[derive(Debug)]
struct Staple {
    /// The certificate the response is for (compared by pointer with the site's current one).
    base: Arc<CertifiedKey>,
    stapled: Arc<CertifiedKey>,
    next_update: SystemTime,
}

/// One site's stapling state.
#[derive(Debug, Default)]
struct SiteStaple {
    current: ArcSwapOption<Staple>,
    responder: ArcSwapOption<String>,
}

/// Every site's staple, read by the resolver at each handshake.
#[derive(Debug)]
pub(crate) struct Staples {
    sites: Box<[SiteStaple]>,
    names: Box<[String]>,
    /// Dropped with the sites: the stapling tasks then stop.
    closing: tokio::sync::watch::Sender<()>,
}

/// One site on `/status`.
#[derive(Debug, Serialize)]
pub struct OcspStatus {
    pub site: String,
    pub responder: Option<String>,
    pub stapled: bool,
    pub next_update: Option<String>,
}

impl Staples {
    pub(crate) fn new(names: Vec<String>) -> Staples {
        Staples {
            sites: names.iter().map(|_| SiteStaple::default()).collect(),
            names: names.into_boxed_slice(),
            closing: tokio::sync::watch::channel(()).0,
        }
    }

    /// Resolves (with an error) once these staples are dropped.
    pub(crate) fn closed(&self) -> tokio::sync::watch::Receiver<()> {
        self.closing.subscribe()
    }

    /// `base` with its staple, when the staple is for `base` and not past its `nextUpdate`.
    pub(crate) fn apply(&self, site: usize, base: Arc<CertifiedKey>) -> Arc<CertifiedKey> {
        let Some(s) = self.sites.get(site) else {
            return base;
        };
        match &*s.current.load() {
            Some(st) if Arc::ptr_eq(&st.base, &base) && st.next_update > SystemTime::now() => {
                Arc::clone(&st.stapled)
            }
            _ => base,
        }
    }

    fn set(&self, site: usize, base: &Arc<CertifiedKey>, der: Vec<u8>, window: Window) {
        let Some(s) = self.sites.get(site) else {
            return;
        };
        let mut stapled = CertifiedKey::clone(base);
        stapled.ocsp = Some(der);
        s.current.store(Some(Arc::new(Staple {
            base: Arc::clone(base),
            stapled: Arc::new(stapled),
            next_update: window.next_update,
        })));
    }

    /// Drop the site's staple if it is past its `nextUpdate` or for another certificate.
    fn drop_stale(&self, site: usize, base: Option<&Arc<CertifiedKey>>, now: SystemTime) {
        if let Some(s) = self.sites.get(site) {
            let stale = s.current.load().as_ref().is_some_and(|st| {
                st.next_update <= now || base.is_none_or(|b| !Arc::ptr_eq(&st.base, b))
            });
            if stale {
                s.current.store(None);
            }
        }
    }

    fn next_update(&self, site: usize) -> Option<SystemTime> {
        let s = self.sites.get(site)?;
        let st = s.current.load();
        st.as_ref()
            .map(|st| st.next_update)
            .filter(|t| *t > SystemTime::now())
    }

    /// Each site: its responder, whether it is stapled, and until when.
    pub(crate) fn status(&self) -> Vec<OcspStatus> {
        self.names
            .iter()
            .zip(self.sites.iter())
            .enumerate()
            .map(|(i, (name, s))| {
                let next = self.next_update(i);
                OcspStatus {
                    site: name.clone(),
                    responder: s.responder.load().as_deref().cloned(),
                    stapled: next.is_some(),
                    next_update: next.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                }
            })
            .collect()
    }

    /// Set `holdfast_tls_ocsp_staple_expiry_seconds` for every stapled site (0 otherwise).
    pub(crate) fn refresh_gauges(&self, metrics: &OcspMetrics) {
        let now = SystemTime::now();
        for (i, name) in self.names.iter().enumerate() {
            let left = self
                .next_update(i)
                .and_then(|t| t.duration_since(now).ok())
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            metrics.expiry.with_label_values(&[name]).set(left);
        }
    }
}

/// `holdfast_tls_ocsp_*`.
#[derive(Debug, Clone)]
pub(crate) struct OcspMetrics {
    fetches: IntCounterVec,
    expiry: IntGaugeVec,
}

impl OcspMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = OcspMetrics {
            fetches: IntCounterVec::new(
                Opts::new(
                    "holdfast_tls_ocsp_fetches_total",
                    "OCSP responses fetched for stapling, by result (ok, unreachable, invalid, revoked).",
                ),
                &["result"],
            )?,
            expiry: IntGaugeVec::new(
                Opts::new(
                    "holdfast_tls_ocsp_staple_expiry_seconds",
                    "Seconds until a site's stapled OCSP response passes its nextUpdate (0: none stapled).",
                ),
                &["site"],
            )?,
        };
        registry.register(Box::new(m.fetches.clone()))?;
        registry.register(Box::new(m.expiry.clone()))?;
        Ok(m)
    }
}

/// What the stapling task of one site needs.
pub(crate) struct Stapler {
    pub site: usize,
    pub staples: Weak<Staples>,
    /// The site's current certificate (a file's, or ACME's as it is now).
    pub certificate: Box<dyn Fn() -> Option<Arc<CertifiedKey>> + Send + Sync>,
    pub cache_dir: Option<PathBuf>,
    pub metrics: OcspMetrics,
    pub closed: tokio::sync::watch::Receiver<()>,
}

impl Stapler {
    /// Run until the site's generation is gone (its `Staples` dropped).
    pub(crate) async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        let mut loaded_for: Option<Vec<u8>> = None;
        loop {
            let Some(wait) = self.round(&mut backoff, &mut loaded_for).await else {
                return;
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                // Only an error comes (the sender never sends): the sites are gone.
                _ = self.closed.changed() => return,
            }
        }
    }

    /// One look at the site; how long to wait before the next, `None` to stop.
    async fn round(
        &self,
        backoff: &mut Duration,
        loaded_for: &mut Option<Vec<u8>>,
    ) -> Option<Duration> {
        let staples = self.staples.upgrade()?;
        let now = SystemTime::now();
        let base = (self.certificate)();
        staples.drop_stale(self.site, base.as_ref(), now);
        let site = staples.sites.get(self.site)?;
        let Some((base, target)) = base.and_then(|b| Target::of(&b).map(|t| (b, t))) else {
            site.responder.store(None);
            return Some(RECHECK);
        };
        site.responder.store(Some(Arc::new(target.url.clone())));
        let cache = self.cache_path(&base);
        let leaf = base.cert.first().map(|c| c.to_vec());
        // At start (and for a new certificate), take a still-valid cached response first.
        if *loaded_for != leaf {
            *loaded_for = leaf;
            if let Some((der, window)) = cache.as_deref().and_then(|p| load(p, &target, now)) {
                staples.set(self.site, &base, der, window);
                return Some(until(window.refresh_at(now), now));
            }
        }
        drop(staples);
        let result = match fetch(&target.url, target.request()).await {
            Ok(der) => target.check(&der, SystemTime::now()).map(|w| (der, w)),
            Err(e) => Err(e),
        };
        let staples = self.staples.upgrade()?;
        let now = SystemTime::now();
        match result {
            Ok((der, window)) => {
                self.metrics.fetches.with_label_values(&["ok"]).inc();
                if let Some(path) = &cache {
                    if let Err(e) = write_private(path, &der) {
                        tracing::warn!(path = %path.display(), error = %e, "could not cache the OCSP response");
                    }
                }
                staples.set(self.site, &base, der, window);
                *backoff = MIN_BACKOFF;
                Some(until(window.refresh_at(now), now))
            }
            Err(e) => {
                self.metrics.fetches.with_label_values(&[e.label()]).inc();
                tracing::warn!(site = %self.site, error = %e, "OCSP response not stapled; a still-valid staple keeps serving");
                let wait = *backoff;
                *backoff = (*backoff * 2).min(MAX_BACKOFF);
                // Wake when the staple expires, if sooner, to drop it.
                let expiry = staples
                    .next_update(self.site)
                    .map_or(wait, |t| until(t, now).max(Duration::from_secs(1)));
                Some(wait.min(expiry))
            }
        }
    }

    fn cache_path(&self, base: &CertifiedKey) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let leaf = base.cert.first()?;
        let digest = ring::digest::digest(&ring::digest::SHA256, leaf);
        let name: String = digest
            .as_ref()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        Some(dir.join(format!("{name}.der")))
    }
}

fn until(t: SystemTime, now: SystemTime) -> Duration {
    t.duration_since(now).unwrap_or_default()
}

/// A cached response, if it is still valid for `target`.
fn load(path: &Path, target: &Target, now: SystemTime) -> Option<(Vec<u8>, Window)> {
    let bytes = holdfast_artifact::read_bounded(path, MAX_RESPONSE_BYTES as u64)
        .ok()?
        .content;
    let window = target.check(&bytes, now).ok()?;
    Some((bytes, window))
}

/// Write `bytes` to `path` whole (through a temporary file), readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    struct Ca {
        pem: String,
        key_pem: String,
        issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A leaf for `www.test` naming `url` as its responder (none: no AIA), with its chain.
    fn leaf(ca: &Ca, url: Option<&str>) -> (CertifiedKey, String) {
        let mut params = rcgen::CertificateParams::new(vec!["www.test".to_string()]).unwrap();
        if let Some(url) = url {
            let oid = der::tlv(der::OID, OID_AD_OCSP);
            let access = der::tlv(
                der::SEQUENCE,
                &[oid, der::tlv(0x86, url.as_bytes())].concat(),
            );
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 5, 5, 7, 1, 1],
                    der::tlv(der::SEQUENCE, &access),
                ));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        let ca_der = CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap();
        let key_der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let certified = CertifiedKey::from_der(
            vec![cert.der().clone(), ca_der],
            key_der,
            &tokio_rustls::rustls::crypto::ring::default_provider(),
        )
        .unwrap();
        (certified, cert.pem())
    }

    use tokio_rustls::rustls::pki_types::pem::PemObject;

    #[test]
    fn the_fuzzing_probe_checks_as_the_stapler_does() {
        let ca = ca("probe CA");
        let (key, _) = leaf(&ca, Some("http://127.0.0.1:9/"));
        let target = Target::of(&key).unwrap();
        let response = respond(&ca, &target, "V");
        let (leaf_der, issuer_der) = (key.cert.first().unwrap(), key.cert.get(1).unwrap());
        let probe = crate::fuzzing::OcspProbe::new(leaf_der, issuer_der).unwrap();
        assert_eq!(probe.request(), target.request());
        let now = SystemTime::now();
        let window = target.check(&response, now).unwrap();
        let got = probe.check(&response, now).unwrap();
        assert_eq!(got, (window.this_update, window.next_update));
        assert!(probe.check(b"\x30\x03\x0a\x01\x00", now).is_err());
        let (plain, _) = leaf(&ca, None);
        let plain_leaf = plain.cert.first().unwrap();
        assert!(crate::fuzzing::OcspProbe::new(plain_leaf, issuer_der).is_none());
    }

    /// `openssl ocsp` answering `target.request()` (our encoder) as `ca`'s responder, with
    /// `status` (`V` valid, `R` revoked) for the leaf.
    fn respond(ca: &Ca, target: &Target, status: &str) -> Vec<u8> {
        respond_as(ca, (&ca.pem, &ca.key_pem), target, status)
    }

    /// `respond`, signed by `signer` (certificate and key PEM).
    fn respond_as(ca: &Ca, signer: (&str, &str), target: &Target, status: &str) -> Vec<u8> {
        let dir = std::env::temp_dir().join(format!(
            "holdfast-ocsp-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
        std::fs::write(dir.join("signer.pem"), signer.0).unwrap();
        std::fs::write(dir.join("signer.key"), signer.1).unwrap();
        std::fs::write(dir.join("req.der"), target.request()).unwrap();
        let serial: String = target
            .serial
            .iter()
            .skip_while(|b| **b == 0)
            .map(|b| format!("{b:02X}"))
            .collect();
        let revoked = if status == "R" { "250101000000Z" } else { "" };
        std::fs::write(
            dir.join("index.txt"),
            format!("{status}\t391231235959Z\t{revoked}\t{serial}\tunknown\t/CN=www.test\n"),
        )
        .unwrap();
        let out = std::process::Command::new("openssl")
            .current_dir(&dir)
            .args([
                "ocsp",
                "-index",
                "index.txt",
                "-CA",
                "ca.pem",
                "-rsigner",
                "signer.pem",
                "-rkey",
                "signer.key",
                "-reqin",
                "req.der",
                "-respout",
                "resp.der",
                "-ndays",
                "1",
            ])
            .output()
            .expect("openssl is needed for this test");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let der = std::fs::read(dir.join("resp.der")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        der
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::SeqCst)
    }

    #[test]
    fn the_responder_and_issuer_come_from_the_certificate() {
        let ca = ca("Test CA");
        let (key, _) = leaf(&ca, Some("http://127.0.0.1:9/ocsp"));
        let target = Target::of(&key).unwrap();
        assert_eq!(target.url, "http://127.0.0.1:9/ocsp");
        let (none, _) = leaf(&ca, None);
        assert!(Target::of(&none).is_none(), "no AIA");
        let mut alone = key.clone();
        alone.cert.truncate(1);
        assert!(Target::of(&alone).is_none(), "no issuer in the chain");
        let (https, _) = leaf(&ca, Some("https://ocsp.test/"));
        assert!(Target::of(&https).is_none(), "only http:// responders");
    }

    #[test]
    fn a_response_is_checked_for_window_certificate_status_and_signer() {
        let ca1 = ca("Test CA");
        let (key, _) = leaf(&ca1, Some("http://127.0.0.1:9/"));
        let target = Target::of(&key).unwrap();
        let good = respond(&ca1, &target, "V");
        let now = SystemTime::now();
        let window = target.check(&good, now).unwrap();
        assert!(window.next_update > now && window.this_update <= now + MIN_REFRESH);
        // Refresh halfway through the window.
        let at = window.refresh_at(window.this_update);
        assert!(at > window.this_update && at < window.next_update);
        // Past nextUpdate: refused.
        let later = window.next_update + Duration::from_secs(1);
        assert!(matches!(
            target.check(&good, later),
            Err(OcspError::OutOfWindow)
        ));
        // Another certificate of the same CA: not ours.
        let (other, _) = leaf(&ca1, Some("http://127.0.0.1:9/"));
        let other = Target::of(&other).unwrap();
        assert!(matches!(
            other.check(&good, now),
            Err(OcspError::OtherCertificate)
        ));
        // Signed by someone else (a response of another CA, checked as from ca1).
        let ca2 = ca("Other CA");
        let (foreign, _) = leaf(&ca2, Some("http://127.0.0.1:9/"));
        let foreign = respond(&ca2, &Target::of(&foreign).unwrap(), "V");
        assert!(matches!(
            target.check(&foreign, now),
            Err(OcspError::BadSignature)
        ));
        assert!(matches!(
            target.check(&respond(&ca1, &target, "R"), now),
            Err(OcspError::Revoked)
        ));
        assert!(matches!(
            target.check(b"garbage", now),
            Err(OcspError::Malformed)
        ));
        // tryLater (3), unsigned.
        assert!(matches!(
            target.check(&[0x30, 0x03, 0x0a, 0x01, 0x03], now),
            Err(OcspError::Unsuccessful(3))
        ));
        // Every truncation of a good response is refused without a panic.
        for n in 0..good.len() {
            assert!(target.check(good.get(..n).unwrap(), now).is_err());
        }
    }

    /// A responder certificate issued by `ca`, with id-kp-OCSPSigning or without.
    fn delegate(ca: &Ca, may_sign: bool) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "OCSP responder");
        params.extended_key_usages = if may_sign {
            vec![rcgen::ExtendedKeyUsagePurpose::OcspSigning]
        } else {
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth]
        };
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_delegated_responder_must_be_the_issuers_and_for_ocsp_signing() {
        let ca1 = ca("Test CA");
        let (key, _) = leaf(&ca1, Some("http://127.0.0.1:9/"));
        let target = Target::of(&key).unwrap();
        let now = SystemTime::now();
        let (pem, key_pem) = delegate(&ca1, true);
        let signed = respond_as(&ca1, (&pem, &key_pem), &target, "V");
        assert!(target.check(&signed, now).is_ok());
        let (pem, key_pem) = delegate(&ca1, false);
        let signed = respond_as(&ca1, (&pem, &key_pem), &target, "V");
        assert!(matches!(
            target.check(&signed, now),
            Err(OcspError::BadSignature)
        ));
        // Marked for OCSP signing, but by another CA.
        let ca2 = ca("Other CA");
        let (pem, key_pem) = delegate(&ca2, true);
        let signed = respond_as(&ca1, (&pem, &key_pem), &target, "V");
        assert!(matches!(
            target.check(&signed, now),
            Err(OcspError::BadSignature)
        ));
    }

    #[test]
    fn a_staple_serves_its_certificate_until_next_update_and_is_then_dropped() {
        let ca = ca("Test CA");
        let (key, _) = leaf(&ca, Some("http://127.0.0.1:9/"));
        let target = Target::of(&key).unwrap();
        let der = respond(&ca, &target, "V");
        let now = SystemTime::now();
        let window = target.check(&der, now).unwrap();
        let base = Arc::new(key);
        let staples = Staples::new(vec!["www.test".into()]);
        assert!(staples.apply(0, Arc::clone(&base)).ocsp.is_none());
        staples.set(0, &base, der.clone(), window);
        assert_eq!(staples.apply(0, Arc::clone(&base)).ocsp, Some(der.clone()));
        assert!(staples.status().first().unwrap().stapled);
        // Another certificate for the site (an ACME renewal): not stapled with this one.
        let (renewed, _) = leaf(&ca, Some("http://127.0.0.1:9/"));
        assert!(staples.apply(0, Arc::new(renewed)).ocsp.is_none());
        // Still valid: kept.
        staples.drop_stale(0, Some(&base), now);
        assert!(staples.apply(0, Arc::clone(&base)).ocsp.is_some());
        // Past nextUpdate: dropped.
        staples.drop_stale(0, Some(&base), window.next_update);
        assert!(staples.apply(0, Arc::clone(&base)).ocsp.is_none());
        assert!(!staples.status().first().unwrap().stapled);
        // An expired staple is not served even before the task drops it.
        let expired = Window {
            this_update: now - Duration::from_secs(7200),
            next_update: now - Duration::from_secs(1),
        };
        staples.set(0, &base, der, expired);
        assert!(staples.apply(0, Arc::clone(&base)).ocsp.is_none());
    }

    #[test]
    fn the_cache_is_owner_only_and_loaded_only_while_valid() {
        let ca = ca("Test CA");
        let (key, _) = leaf(&ca, Some("http://127.0.0.1:9/"));
        let target = Target::of(&key).unwrap();
        let der = respond(&ca, &target, "V");
        let dir = std::env::temp_dir().join(format!(
            "holdfast-ocsp-cache-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        let path = dir.join("ocsp").join("leaf.der");
        write_private(&path, &der).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let now = SystemTime::now();
        let (loaded, window) = load(&path, &target, now).unwrap();
        assert_eq!(loaded, der);
        assert!(load(&path, &target, window.next_update).is_none());
        std::fs::write(&path, vec![0u8; MAX_RESPONSE_BYTES + 1]).unwrap();
        assert!(load(&path, &target, now).is_none(), "bounded read");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
