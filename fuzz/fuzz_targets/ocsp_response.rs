//! The OCSP response check (what a responder answers, before the edge staples it): never a
//! panic on any bytes; a response accepted has a window that holds the check's time, and an
//! accepted response is one the issuer (or its delegate) signed — which mutated bytes cannot
//! forge, so acceptance of a mutant is itself a finding.
#![no_main]

use holdfast_proxy::fuzzing::OcspProbe;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A CA and a leaf naming an OCSP responder (AuthorityInfoAccess), made once per process.
fn probe() -> Option<&'static OcspProbe> {
    static PROBE: OnceLock<Option<OcspProbe>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let ca_key = rcgen::KeyPair::generate().ok()?;
            let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).ok()?;
            ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca.distinguished_name
                .push(rcgen::DnType::CommonName, "fuzz CA");
            let ca_cert = ca.self_signed(&ca_key).ok()?;
            let issuer = rcgen::Issuer::new(ca, ca_key);
            let mut leaf = rcgen::CertificateParams::new(vec!["example.com".to_string()]).ok()?;
            // AuthorityInfoAccess ::= SEQUENCE OF SEQUENCE { id-ad-ocsp, [6] IA5String url }
            let der = |tag: u8, content: &[u8]| [&[tag, content.len() as u8][..], content].concat();
            let oid = der(0x06, &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01]);
            let access = der(0x30, &[oid, der(0x86, b"http://127.0.0.1:9/")].concat());
            leaf.custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 5, 5, 7, 1, 1],
                    der(0x30, &access),
                ));
            let leaf_key = rcgen::KeyPair::generate().ok()?;
            let leaf_cert = leaf.signed_by(&leaf_key, &issuer).ok()?;
            OcspProbe::new(leaf_cert.der(), ca_cert.der())
        })
        .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let probe = probe().expect("the fuzz certificates are made");
    assert!(!probe.request().is_empty());
    let now = UNIX_EPOCH + Duration::from_secs(1_780_000_000);
    if let Ok((this_update, next_update)) = probe.check(data, now) {
        panic!("a response nobody signed was accepted: {this_update:?}..{next_update:?}");
    }
    let _ = SystemTime::now();
});
