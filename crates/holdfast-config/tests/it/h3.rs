//! `[edge] h3_listen` and `h3 = { … }`: HTTP/3 listeners need the TLS listeners'
//! certificates, addresses are checked among themselves, limits within their ranges, and
//! routes advertise HTTP/3 unless `alt_svc = false`.

use crate::{accept, check_each, check_errors, edge_with, file_with};
use expect_test::expect;
use std::time::Duration;

const TLS: &str = r#"
tls_listen = ["0.0.0.0:443"]
{h3}

[[edge.tls]]
cert = "c.pem"
key = "k.pem"
"#;

fn tls_with(h3: &str) -> String {
    edge_with(&TLS.replace("{h3}", h3))
}

#[test]
fn h3_on_the_tls_port_with_defaults() {
    let config = accept(&tls_with("h3_listen = [\"0.0.0.0:443\", \"[::1]:8443\"]"));
    let edge = &config.edge;
    assert_eq!(edge.h3_listen.len(), 2);
    assert_eq!(edge.h3_listen[0].port(), 443);
    assert_eq!(edge.h3.max_streams, 100);
    assert_eq!(edge.h3.idle_timeout, Duration::from_secs(30));
    assert!(!edge.h3.zero_rtt);
    assert_eq!(edge.h3.max_connections_per_ip, 256);
    assert!(
        config.routes[0].alt_svc,
        "routes advertise HTTP/3 by default"
    );
}

#[test]
fn h3_settings_are_read() {
    let config = accept(&tls_with(
        "h3_listen = [\"127.0.0.1:8443\"]\nh3 = { max_streams = 7, idle_timeout = \"2s\", zero_rtt = true, max_connections_per_ip = 3 }",
    ));
    let h3 = config.edge.h3;
    assert_eq!(h3.max_streams, 7);
    assert_eq!(h3.idle_timeout, Duration::from_secs(2));
    assert!(h3.zero_rtt);
    assert_eq!(h3.max_connections_per_ip, 3);
}

#[test]
fn a_route_may_turn_alt_svc_off() {
    let config = accept(&file_with(
        &TLS.replace("{h3}", "h3_listen = [\"0.0.0.0:443\"]"),
        "",
        "alt_svc = false",
    ));
    assert!(!config.routes[0].alt_svc);
}

#[test]
fn h3_needs_tls_listen() {
    check_errors(
        &edge_with("h3_listen = [\"0.0.0.0:443\"]"),
        expect![[r#"
            edge.h3_listen: HTTP/3 listeners need the TLS listeners' certificates, and there is no tls_listen (add tls_listen (TCP, for HTTP/1.1 and HTTP/2 clients, which learn of HTTP/3 from its Alt-Svc) and [[edge.tls]])
        "#]],
    );
}

#[test]
fn bad_h3_values() {
    check_each(
        tls_with,
        &[
            "h3_listen = [\"example.com:443\"]",
            "h3_listen = [\"0.0.0.0:443\", \"127.0.0.1:443\"]",
            "h3 = { max_streams = 10 }",
            "h3_listen = [\"0.0.0.0:443\"]\nh3 = { max_streams = 0 }",
            "h3_listen = [\"0.0.0.0:443\"]\nh3 = { idle_timeout = \"0s\" }",
            "h3_listen = [\"0.0.0.0:443\"]\nh3 = { idle_timeout = \"1h\" }",
            "h3_listen = [\"0.0.0.0:443\"]\nh3 = { max_connections_per_ip = 0 }",
        ],
        expect![[r#"
            h3_listen = ["example.com:443"]
                edge.h3_listen[0]: invalid listen address "example.com:443" (write an IP address and port, e.g. "127.0.0.1:8080" or "[::1]:8080")
            h3_listen = ["0.0.0.0:443", "127.0.0.1:443"]
                edge.h3_listen[1]: 127.0.0.1:443 is already used by edge.h3_listen[0] (list each listen address once)
            h3 = { max_streams = 10 }
                edge.h3: HTTP/3 settings are given but no HTTP/3 listener (add h3_listen = ["0.0.0.0:443"] or remove edge.h3)
            h3_listen = ["0.0.0.0:443"]
            h3 = { max_streams = 0 }
                edge.h3.max_streams: 0 is out of range (use 1 to 10000 concurrent requests per connection; the default is 100)
            h3_listen = ["0.0.0.0:443"]
            h3 = { idle_timeout = "0s" }
                edge.h3.idle_timeout: 0ns is out of range (use a duration from 1ms to 10m; the default is "30s")
            h3_listen = ["0.0.0.0:443"]
            h3 = { idle_timeout = "1h" }
                edge.h3.idle_timeout: 3600s is out of range (use a duration from 1ms to 10m; the default is "30s")
            h3_listen = ["0.0.0.0:443"]
            h3 = { max_connections_per_ip = 0 }
                edge.h3.max_connections_per_ip: 0 is out of range (use 1 to 1000000 connections per client address; the default is 256)
        "#]],
    );
}
