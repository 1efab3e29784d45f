//! `edge.trusted_proxies`: a trusted peer's `X-Forwarded-For` names the client (here seen
//! through a per-client rate limit); an untrusted peer's is ignored.

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
