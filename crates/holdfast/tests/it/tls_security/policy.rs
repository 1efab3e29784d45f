//! The TLS policy of each site: `min_version`, `cipher_suites` and `kx_groups` of an
//! `[[edge.tls]]` table apply to the handshakes its SNI selects, other sites keep rustls's
//! defaults; an unknown name is a config error that names the field and the valid values.
//! Checked with rustls clients and from outside with `openssl s_client`.

use super::{client, client_with, fetch_tls, provider, s_client};
use crate::support::*;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::{self, CipherSuite, NamedGroup, ProtocolVersion};

const EDGE: &str = r#"
[edge]
listen = ["{edge}"]
tls_listen = ["{edge}"]
threads = 1
access_log = "off"

[[edge.tls]]
cert = "default.pem"
key = "default.key"

[[edge.tls]]
names = ["modern.test"]
cert = "modern.pem"
key = "modern.key"
min_version = "1.3"

[[edge.tls]]
names = ["picky.test"]
cert = "picky.pem"
key = "picky.key"
cipher_suites = {suites}
kx_groups = ["secp384r1"]

[admin]
listen = "{admin}"

[[pools]]
name = "primary"
servers = ["{origin}"]

[[routes]]
name = "all"
match = {}
pool = "primary"
"#;

const SUITES: &str =
    r#"["TLS13_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"]"#;

fn vars(origin: &Origin, suites: &str) -> Vec<(&'static str, String)> {
    vec![
        ("origin", origin.addr.to_string()),
        ("suites", suites.to_string()),
    ]
}

async fn start() -> (Edge, Origin, TestCa) {
    let origin = Origin::text("hello").await;
    let ca = TestCa::new("Holdfast test CA");
    let edge = Edge::start_in_dir(EDGE, &vars(&origin, SUITES), |dir| {
        ca.leaf(&["fallback.test"]).write(dir, "default");
        ca.leaf(&["modern.test"]).write(dir, "modern");
        ca.leaf(&["picky.test"]).write(dir, "picky");
    });
    (edge, origin, ca)
}

fn https(edge: &Edge) -> SocketAddr {
    edge.running().https_addrs[0]
}

/// The *ring* provider with only `suites` and `groups` (empty: all).
fn offering(suites: &[CipherSuite], groups: &[NamedGroup]) -> Arc<CryptoProvider> {
    let mut p = ring::default_provider();
    if !suites.is_empty() {
        p.cipher_suites.retain(|s| suites.contains(&s.suite()));
    }
    if !groups.is_empty() {
        p.kx_groups.retain(|g| groups.contains(&g.name()));
    }
    Arc::new(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_1_3_refuses_tls_1_2_on_its_site_only() {
    let (edge, _origin, ca) = start().await;
    let tls12 = Arc::new(client_with(
        &ca,
        None,
        provider(),
        &[&rustls::version::TLS12],
    ));
    let refused = fetch_tls(
        https(&edge),
        "modern.test",
        "modern.test",
        tls12.clone(),
        &[],
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
    let (status, _) = fetch_tls(https(&edge), "fallback.test", "fallback.test", tls12, &[])
        .await
        .unwrap();
    assert_eq!(status, 200, "the default site keeps TLS 1.2");
    let tls = super::handshake(https(&edge), "modern.test", Arc::new(client(&ca, None)))
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );

    // From outside.
    let addr = https(&edge);
    let get = "GET / HTTP/1.1\r\nHost: modern.test\r\nConnection: close\r\n\r\n";
    let (ok, out) = blocking(|| s_client(addr, "modern.test", &["-tls1_2", "-ign_eof"], get));
    assert!(
        !ok,
        "openssl -tls1_2 against min_version 1.3 succeeded: {out}"
    );
    assert!(!out.contains("HTTP/1.1 200"), "{out}");
    let (ok, out) = blocking(|| s_client(addr, "modern.test", &["-tls1_3", "-ign_eof"], get));
    assert!(ok && out.contains("HTTP/1.1 200"), "{out}");
    let get = "GET / HTTP/1.1\r\nHost: fallback.test\r\nConnection: close\r\n\r\n";
    let (ok, out) = blocking(|| s_client(addr, "fallback.test", &["-tls1_2", "-ign_eof"], get));
    assert!(ok && out.contains("HTTP/1.1 200"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cipher_suites_and_groups_are_the_sites_own() {
    let (edge, _origin, ca) = start().await;
    let tls = super::handshake(https(&edge), "picky.test", Arc::new(client(&ca, None)))
        .await
        .unwrap();
    let conn = tls.get_ref().1;
    assert_eq!(
        conn.negotiated_cipher_suite().map(|s| s.suite()),
        Some(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256)
    );
    assert_eq!(
        conn.negotiated_key_exchange_group().map(|g| g.name()),
        Some(NamedGroup::secp384r1)
    );

    let aes_only = offering(
        &[
            CipherSuite::TLS13_AES_128_GCM_SHA256,
            CipherSuite::TLS13_AES_256_GCM_SHA384,
        ],
        &[],
    );
    let x25519_only = offering(&[], &[NamedGroup::X25519]);
    for (what, p) in [("AES only", &aes_only), ("X25519 only", &x25519_only)] {
        let c = Arc::new(client_with(&ca, None, p.clone(), rustls::DEFAULT_VERSIONS));
        let refused = fetch_tls(https(&edge), "picky.test", "picky.test", c.clone(), &[]).await;
        assert!(refused.is_err(), "{what}: {refused:?}");
        let (status, _) = fetch_tls(https(&edge), "fallback.test", "fallback.test", c, &[])
            .await
            .unwrap();
        assert_eq!(
            status, 200,
            "{what}: the default site keeps rustls's defaults"
        );
    }

    // From outside: openssl offering only AES-GCM for TLS 1.3 is refused by picky.test.
    let addr = https(&edge);
    let get = "GET / HTTP/1.1\r\nHost: picky.test\r\nConnection: close\r\n\r\n";
    let aes = [
        "-tls1_3",
        "-ciphersuites",
        "TLS_AES_128_GCM_SHA256",
        "-ign_eof",
    ];
    let (ok, out) = blocking(|| s_client(addr, "picky.test", &aes, get));
    assert!(!ok && !out.contains("HTTP/1.1 200"), "{out}");
    let chacha = [
        "-tls1_3",
        "-ciphersuites",
        "TLS_CHACHA20_POLY1305_SHA256",
        "-ign_eof",
    ];
    let (ok, out) = blocking(|| s_client(addr, "picky.test", &chacha, get));
    assert!(ok && out.contains("HTTP/1.1 200"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_suite_name_is_refused_naming_the_field_and_the_valid_values() {
    let (edge, origin, ca) = start().await;
    edge.rewrite(
        EDGE,
        &vars(&origin, r#"["TLS13_CHACHA20_POLY1305_SHA256", "RC4-MD5"]"#),
    );
    let (generation, errors) = edge.reload_rejected();
    assert_eq!(generation, 1);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert!(e.contains("edge.tls[2].cipher_suites[1]: "), "{e}");
    assert!(e.contains("\"RC4-MD5\""), "{e}");
    assert!(e.contains("\"TLS13_AES_128_GCM_SHA256\""), "{e}");
    // TLS 1.3 only, with only TLS 1.2 suites listed: no handshake could succeed.
    let rewritten = EDGE.replace(
        "min_version = \"1.3\"",
        "min_version = \"1.3\"\ncipher_suites = [\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\"]",
    );
    edge.rewrite(&rewritten, &vars(&origin, SUITES));
    let (_, errors) = edge.reload_rejected();
    assert!(
        errors[0].contains("edge.tls[1].cipher_suites: "),
        "{errors:?}"
    );
    // The running policy is unchanged.
    let tls = super::handshake(https(&edge), "picky.test", Arc::new(client(&ca, None)))
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.negotiated_cipher_suite().map(|s| s.suite()),
        Some(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256)
    );
}
