//! The TLS keys beyond certificate files: client certificates on listeners (`client_auth`,
//! `client_ca`, `edge.client_cert_header`), the policy of each `[[edge.tls]]` table,
//! `edge.session_tickets`, and a pool's certificate for its origins (`client_cert`,
//! `client_key`). Suite and group names are checked by the proxy, which knows the provider.

use crate::{accept, check_errors, edge_with, pool_with};
use expect_test::expect;
use holdfast_config::{ClientAuth, ClientCertFiles, TlsVersion};
use std::time::Duration;

const TLS: &str = r#"
tls_listen = ["127.0.0.1:8443"]
"#;

fn edge_tls(table: &str, edge_keys: &str) -> String {
    edge_with(&format!(
        "{TLS}{edge_keys}\n[[edge.tls]]\ncert = \"c.pem\"\nkey = \"k.pem\"\n{table}"
    ))
}

#[test]
fn client_auth_policy_and_tickets_are_read() {
    let config = accept(&edge_tls(
        r#"
client_auth = "optional"
client_ca = "clients.pem"
min_version = "1.3"
cipher_suites = ["TLS13_AES_128_GCM_SHA256"]
kx_groups = ["X25519"]
"#,
        "client_cert_header = \"X-Client-Subject\"\nsession_tickets = { rotate = \"1h\" }",
    ));
    let edge = &config.edge;
    let t = &edge.tls[0];
    assert_eq!(
        t.client_auth,
        Some(ClientAuth {
            required: false,
            ca: "/etc/holdfast/clients.pem".into()
        })
    );
    assert_eq!(t.policy.min_version, TlsVersion::Tls13);
    assert_eq!(t.policy.cipher_suites, ["TLS13_AES_128_GCM_SHA256"]);
    assert_eq!(t.policy.kx_groups, ["X25519"]);
    assert_eq!(
        edge.client_cert_header.as_ref().unwrap(),
        "x-client-subject"
    );
    assert!(edge.session_tickets.enabled);
    assert_eq!(edge.session_tickets.rotate, Duration::from_secs(3600));
}

#[test]
fn defaults_ask_nothing_of_clients_and_keep_rustls_defaults() {
    let config = accept(&edge_tls("", ""));
    let t = &config.edge.tls[0];
    assert_eq!(t.client_auth, None);
    assert_eq!(t.policy, Default::default());
    assert_eq!(config.edge.client_cert_header, None);
    assert!(config.edge.session_tickets.enabled);
    assert_eq!(
        config.edge.session_tickets.rotate,
        Duration::from_secs(12 * 3600)
    );
    assert!(config.edge.ocsp_stapling, "OCSP stapling is on by default");
}

#[test]
fn ocsp_stapling_can_be_turned_off() {
    let config = accept(&edge_tls("", "ocsp_stapling = false"));
    assert!(!config.edge.ocsp_stapling);
}

#[test]
fn client_auth_needs_a_known_mode_and_a_ca() {
    check_errors(
        &edge_tls("client_auth = \"sometimes\"\nclient_ca = \"ca.pem\"", ""),
        expect![[r#"
            edge.tls[0].client_auth: unknown mode "sometimes" (use "require" or "optional")
        "#]],
    );
    check_errors(
        &edge_tls("client_auth = \"require\"", ""),
        expect![[r#"
            edge.tls[0].client_ca: client_auth needs the CA that issues the client certificates (set client_ca to a PEM file of CA certificates)
        "#]],
    );
    check_errors(
        &edge_tls("client_ca = \"ca.pem\"", ""),
        expect![[r#"
            edge.tls[0].client_ca: client_ca is set but client_auth is not (add client_auth = "require" (or "optional"), or remove client_ca)
        "#]],
    );
}

#[test]
fn policy_values_are_checked() {
    check_errors(
        &edge_tls(
            "min_version = \"1.1\"\ncipher_suites = []\nkx_groups = []",
            "",
        ),
        expect![[r#"
            edge.tls[0].min_version: unsupported TLS version "1.1" (use "1.2" or "1.3" (older versions are not offered))
            edge.tls[0].cipher_suites: an empty list would allow no handshake at all (list at least one name, or leave the key out for rustls's defaults)
            edge.tls[0].kx_groups: an empty list would allow no handshake at all (list at least one name, or leave the key out for rustls's defaults)
        "#]],
    );
}

#[test]
fn client_cert_header_must_be_a_name_and_have_a_use() {
    check_errors(
        &edge_tls("", "client_cert_header = \"X Client\""),
        expect![[r#"
            edge.client_cert_header: "X Client" is not a header name (use a name such as "X-Client-Subject")
            edge.client_cert_header: no [[edge.tls]] or [[edge.acme]] table asks for client certificates, so it would never be sent (set client_auth and client_ca on a certificate, or remove client_cert_header)
        "#]],
    );
}

#[test]
fn ticket_rotation_is_bounded() {
    check_errors(
        &edge_tls("", "session_tickets = { rotate = \"10s\" }"),
        expect![[r#"
            edge.session_tickets.rotate: 10s is out of range (use 1m to 3d 12h (a ticket is accepted for two periods, at most 7 days))
        "#]],
    );
    let off = accept(&edge_tls("", "session_tickets = { enabled = false }"));
    assert!(!off.edge.session_tickets.enabled);
}

#[test]
fn a_pool_client_certificate_needs_both_files() {
    let config = accept(&pool_with(
        "[pools.tls]\nclient_cert = \"edge.pem\"\nclient_key = \"edge.key\"",
    ));
    assert_eq!(
        config.pools[0].tls.as_ref().unwrap().client_cert,
        Some(ClientCertFiles {
            cert: "/etc/holdfast/edge.pem".into(),
            key: "/etc/holdfast/edge.key".into(),
        })
    );
    check_errors(
        &pool_with("[pools.tls]\nclient_cert = \"edge.pem\""),
        expect![[r#"
            pools[0].tls.client_key: client_cert and client_key go together (give both PEM files (the certificate chain and its private key), or neither)
        "#]],
    );
    check_errors(
        &pool_with("[pools.tls]\nclient_key = \"edge.key\""),
        expect![[r#"
            pools[0].tls.client_cert: client_cert and client_key go together (give both PEM files (the certificate chain and its private key), or neither)
        "#]],
    );
}
