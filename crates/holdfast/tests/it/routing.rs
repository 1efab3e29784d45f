//! Routing: host (exact, wildcard) and path prefix, first match wins, no match is a 404 page.

use crate::support::*;

const ROUTES: &str = r#"
[[pools]]
name = "api"
servers = ["{api}"]

[[pools]]
name = "www"
servers = ["{www}"]

[[pools]]
name = "wild"
servers = ["{wild}"]

[[routes]]
name = "api"
match = { path_prefix = "/api/", host = "example.com" }
pool = "api"

[[routes]]
name = "wildcard"
match = { host = "*.example.org" }
pool = "wild"

[[routes]]
name = "www"
match = { path_prefix = "/", host = ["example.com", "www.example.com"] }
pool = "www"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_prefix_pick_the_first_matching_route() {
    let api = Origin::text("api").await;
    let www = Origin::text("www").await;
    let wild = Origin::text("wild").await;
    let edge = Edge::start(
        &edge_config(1, ROUTES),
        &[
            ("api", api.addr.to_string()),
            ("www", www.addr.to_string()),
            ("wild", wild.addr.to_string()),
        ],
    );
    let at = |host: &'static str, path: &str| {
        let url = edge.url(path);
        async move { get_with(&url, &[("host", host)]).await.text() }
    };
    assert_eq!(at("example.com", "/api/users").await, "api");
    assert_eq!(at("EXAMPLE.com:8080", "/api/users").await, "api");
    assert_eq!(at("example.com", "/apix").await, "www");
    assert_eq!(at("www.example.com", "/api/users").await, "www");
    assert_eq!(at("a.example.org", "/anything").await, "wild");
    assert_eq!(at("deep.a.example.org", "/").await, "wild");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_matching_route_is_a_404_page_from_the_edge() {
    let api = Origin::text("api").await;
    let edge = Edge::start(
        &edge_config(1, ROUTES),
        &[
            ("api", api.addr.to_string()),
            ("www", dead_addr().to_string()),
            ("wild", dead_addr().to_string()),
        ],
    );
    let got = get_with(&edge.url("/"), &[("host", "example.org")]).await;
    assert_eq!(got.status, 404);
    let id = got.header("x-request-id").unwrap().to_string();
    assert!(
        got.text().contains(&id),
        "page names the request id: {}",
        got.text()
    );
    assert!(got.text().contains("edge"));
    let json = get_with(
        &edge.url("/"),
        &[("host", "other.net"), ("accept", "application/json")],
    )
    .await;
    assert_eq!(json.status, 404);
    assert_eq!(json.json()["failed"], "edge");
    assert_eq!(json.json()["status"], 404);
    assert_eq!(api.requests(), 0);
}
