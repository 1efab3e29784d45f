//! `edge.trusted_proxies`: a trusted peer's `X-Forwarded-For` (or `Forwarded`, or PROXY
//! protocol header) names the client (here seen through a per-client rate limit and what the
//! origin is told); an untrusted peer's is ignored.

use crate::support::*;

const LIMIT: &str = r#"
[[limits]]
name = "one-per-client"
key = "client_ip"
requests = 1
per = "1h"
"#;

async fn status_as(edge: &Edge, forwarded_for: &str) -> u16 {
    get_with(&edge.url("/"), &[("x-forwarded-for", forwarded_for)])
        .await
        .status
        .as_u16()
}

fn edge(origin: std::net::SocketAddr, edge_keys: &str) -> Edge {
    Edge::start(
        &edge_config_with(1, edge_keys, &format!("{BASIC_POOL}{LIMIT}")),
        &[("origin", origin.to_string())],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_count() {
    let origin = Origin::text("ok").await;
    let edge = edge(origin.addr, "trusted_proxies = [\"127.0.0.0/8\"]");
    assert_eq!(status_as(&edge, "198.51.100.1").await, 200);
    assert_eq!(status_as(&edge, "198.51.100.1").await, 429);
    assert_eq!(status_as(&edge, "198.51.100.2").await, 200);
    // A client cannot pick its address: only the entry nearest the trusted hop counts.
    assert_eq!(status_as(&edge, "203.0.113.50, 198.51.100.1").await, 429);
    assert_eq!(origin.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_an_untrusted_peer_the_header_is_ignored() {
    let origin = Origin::text("ok").await;
    let edge = edge(origin.addr, "trusted_proxies = [\"10.0.0.0/8\"]");
    assert_eq!(status_as(&edge, "198.51.100.1").await, 200);
    assert_eq!(status_as(&edge, "198.51.100.2").await, 429);
    assert_eq!(origin.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_forwarded_chosen_a_trusted_peer_names_the_client_in_rfc_7239_form() {
    let origin = Origin::text("ok").await;
    let edge = edge(
        origin.addr,
        "trusted_proxies = [\"127.0.0.0/8\"]\nclient_ip_header = \"forwarded\"",
    );
    let as_fwd = |v: &'static str| {
        let url = edge.url("/");
        async move { get_with(&url, &[("forwarded", v)]).await.status.as_u16() }
    };
    assert_eq!(as_fwd("for=198.51.100.1;proto=https").await, 200);
    assert_eq!(as_fwd("for=\"198.51.100.1:4711\"").await, 429);
    assert_eq!(as_fwd("for=\"[2001:db8::1]\"").await, 200);
    // X-Forwarded-For is not what this edge reads: all of these are the peer, 127.0.0.1.
    assert_eq!(status_as(&edge, "198.51.100.7").await, 200);
    assert_eq!(status_as(&edge, "198.51.100.8").await, 429);
    assert_eq!(origin.requests(), 3);
}

fn proxied_request(header: &str, path: &str) -> Vec<u8> {
    format!("{header}GET {path} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

fn proxy_protocol_edge(origin: std::net::SocketAddr, trusted: &str) -> Edge {
    edge(
        origin,
        &format!("trusted_proxies = [\"{trusted}\"]\nproxy_protocol = true"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_protocol_header_is_the_client_everywhere() {
    let origin = Origin::text("ok").await;
    let edge = proxy_protocol_edge(origin.addr, "127.0.0.0/8");
    let addr = edge.running().http_addrs[0];
    let v1 = "PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\n";
    let first = raw(addr, &proxied_request(v1, "/a")).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // The origin is told the proxied client, not the balancer.
    assert_eq!(
        origin.last().headers["x-forwarded-for"].to_str().unwrap(),
        "192.0.2.7"
    );
    // The same client again is over its limit; another one (v2 header) is not.
    let again = raw(addr, &proxied_request(v1, "/b")).await;
    assert!(again.starts_with("HTTP/1.1 429"), "{again}");
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[198, 51, 100, 9, 127, 0, 0, 1, 0x1f, 0x90, 0, 80]);
    v2.extend_from_slice(&proxied_request("", "/c"));
    let other = raw(addr, &v2).await;
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    assert_eq!(
        origin.last().headers["x-forwarded-for"].to_str().unwrap(),
        "198.51.100.9"
    );
    assert_eq!(origin.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_valid_proxy_header_the_connection_is_closed_and_counted() {
    let origin = Origin::text("ok").await;
    let edge = proxy_protocol_edge(origin.addr, "127.0.0.0/8");
    let addr = edge.running().http_addrs[0];
    assert_eq!(raw(addr, &proxied_request("", "/")).await, "");
    let garbage = "PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n";
    assert_eq!(raw(addr, &proxied_request(garbage, "/")).await, "");
    assert_eq!(origin.requests(), 0);
    // Counted as the connection closes, so possibly just after the client saw it close.
    let sample = r#"holdfast_http_bad_requests_total{reason="proxy_protocol"}"#;
    eventually(
        "both refusals counted",
        std::time::Duration::from_secs(10),
        || async { metric(&edge.metrics().await, sample) == Some(2.0) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peers_proxy_header_is_read_and_ignored() {
    let origin = Origin::text("ok").await;
    let edge = proxy_protocol_edge(origin.addr, "10.0.0.0/8");
    let addr = edge.running().http_addrs[0];
    let first = raw(
        addr,
        &proxied_request("PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\n", "/"),
    )
    .await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert_eq!(
        origin.last().headers["x-forwarded-for"].to_str().unwrap(),
        "127.0.0.1"
    );
    // Another claimed client is still the same peer: over the limit.
    let second = raw(
        addr,
        &proxied_request("PROXY TCP4 192.0.2.8 127.0.0.1 5555 80\r\n", "/"),
    )
    .await;
    assert!(second.starts_with("HTTP/1.1 429"), "{second}");
}
