//! Proxy header semantics (RFC 9110 §7.6), as the origin and the client see them:
//! hop-by-hop headers dropped both ways, `Via` appended both ways, `X-Forwarded-*` (and
//! `Forwarded` when enabled) toward the origin, `Host` kept or replaced by the pool, the
//! route's own header changes, and one request id shared by client, edge and origin.

use crate::support::*;
use http::Request;

const EDGE: &str = r#"
[[pools]]
name = "primary"
servers = ["{origin}"]
{extra_pool}

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "primary"
{extra_route}
"#;

fn start(origin: &Origin, extra_edge: &str, extra_pool: &str, extra_route: &str) -> Edge {
    Edge::start(
        &edge_config_with(1, "{extra_edge}", EDGE),
        &[
            ("origin", origin.addr.to_string()),
            ("extra_edge", extra_edge.to_string()),
            ("extra_pool", extra_pool.to_string()),
            ("extra_route", extra_route.to_string()),
        ],
    )
}

fn all(headers: &http::HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_request_headers_do_not_reach_the_origin() {
    let origin = Origin::text("ok").await;
    let edge = start(&origin, "", "", "");
    let req = Request::get(edge.url("/hop"))
        .header("connection", "X-Client-Secret")
        .header("connection", "x-second-named")
        .header("x-client-secret", "s3cret")
        .header("x-second-named", "also hop-by-hop")
        .header("keep-alive", "timeout=5")
        .header("te", "gzip")
        .header("proxy-connection", "keep-alive")
        .header("upgrade", "websocket")
        .header("x-end-to-end", "kept")
        .body(Body::default())
        .unwrap();
    let got = send(req).await;
    assert_eq!(got.status, 200);
    let seen = origin.last().headers;
    for name in [
        "connection",
        "x-client-secret",
        "x-second-named",
        "keep-alive",
        "te",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(
            !seen.contains_key(name),
            "{name} reached the origin: {seen:?}"
        );
    }
    assert_eq!(seen["x-end-to-end"], "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn te_trailers_is_the_one_te_value_passed_on() {
    // `TE: trailers` is what gRPC clients send; dropping it breaks them behind a proxy.
    let origin = Origin::text("ok").await;
    let edge = start(&origin, "", "", "");
    let got = get_with(&edge.url("/"), &[("te", "trailers")]).await;
    assert_eq!(got.status, 200);
    assert_eq!(origin.last().headers["te"], "trailers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_response_headers_do_not_reach_the_client() {
    let origin = Origin::start(handler(|_req| async {
        let mut resp = ok("from origin");
        let h = resp.headers_mut();
        h.insert("connection", "X-Origin-Secret".parse().unwrap());
        h.insert("x-origin-secret", "s3cret".parse().unwrap());
        h.insert("keep-alive", "timeout=5, max=100".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert("upgrade", "h2c".parse().unwrap());
        h.insert("x-end-to-end", "kept".parse().unwrap());
        resp
    }))
    .await;
    let edge = start(&origin, "", "", "");
    let got = get(&edge.url("/")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "from origin");
    for name in [
        "connection",
        "x-origin-secret",
        "keep-alive",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(
            !got.headers.contains_key(name),
            "{name} reached the client: {:?}",
            got.headers
        );
    }
    assert_eq!(got.header("x-end-to-end"), Some("kept"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_is_appended_in_both_directions() {
    let origin = Origin::start(handler(|_req| async {
        let mut resp = ok("ok");
        resp.headers_mut()
            .insert("via", "1.1 origin-cache".parse().unwrap());
        resp
    }))
    .await;
    let edge = start(&origin, "", "", "");
    let got = get_with(&edge.url("/"), &[("via", "1.0 corporate-proxy")]).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        all(&origin.last().headers, "via"),
        ["1.0 corporate-proxy, 1.1 holdfast"]
    );
    assert_eq!(all(&got.headers, "via"), ["1.1 origin-cache, 1.1 holdfast"]);

    // Without an earlier hop, the edge's own entry is the whole header.
    let got = get(&edge.url("/")).await;
    assert_eq!(all(&origin.last().headers, "via"), ["1.1 holdfast"]);
    assert_eq!(got.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_headers_describe_the_client_hop() {
    let origin = Origin::text("ok").await;
    let edge = start(&origin, "", "", "");

    let got = get_with(&edge.url("/"), &[("host", "shop.example:8080")]).await;
    assert_eq!(got.status, 200);
    let seen = origin.last().headers;
    assert_eq!(all(&seen, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "shop.example:8080");

    // An existing chain is extended, not replaced; a client's claimed proto and host are not
    // believed.
    let got = get_with(
        &edge.url("/"),
        &[
            ("host", "shop.example"),
            ("x-forwarded-for", "203.0.113.7, 198.51.100.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
        ],
    )
    .await;
    assert_eq!(got.status, 200);
    let seen = origin.last().headers;
    assert_eq!(
        all(&seen, "x-forwarded-for"),
        ["203.0.113.7, 198.51.100.2, 127.0.0.1"]
    );
    assert_eq!(all(&seen, "x-forwarded-proto"), ["http"]);
    assert_eq!(all(&seen, "x-forwarded-host"), ["shop.example"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_is_sent_only_when_enabled() {
    let origin = Origin::text("ok").await;
    let off = start(&origin, "", "", "");
    let got = get_with(&off.url("/"), &[("host", "shop.example")]).await;
    assert_eq!(got.status, 200);
    assert!(
        !origin.last().headers.contains_key("forwarded"),
        "{:?}",
        origin.last().headers
    );
    drop(off);

    let on = start(&origin, "forwarded = true", "", "");
    let got = get_with(&on.url("/"), &[("host", "shop.example")]).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        all(&origin.last().headers, "forwarded"),
        [r#"for=127.0.0.1;proto=http;host="shop.example""#]
    );

    // An earlier proxy's element is kept and ours appended.
    let got = get_with(
        &on.url("/"),
        &[("host", "shop.example"), ("forwarded", "for=192.0.2.60")],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        all(&origin.last().headers, "forwarded"),
        [r#"for=192.0.2.60, for=127.0.0.1;proto=http;host="shop.example""#]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_is_kept_unless_the_pool_sets_one() {
    let origin = Origin::text("ok").await;
    let keep = start(&origin, "", "", "");
    let got = get_with(&keep.url("/"), &[("host", "www.example.test")]).await;
    assert_eq!(got.status, 200);
    assert_eq!(all(&origin.last().headers, "host"), ["www.example.test"]);
    drop(keep);

    let replace = start(&origin, "", r#"host_header = "app.internal:9000""#, "");
    let got = get_with(&replace.url("/"), &[("host", "www.example.test")]).await;
    assert_eq!(got.status, 200);
    let seen = origin.last().headers;
    assert_eq!(all(&seen, "host"), ["app.internal:9000"]);
    assert_eq!(
        seen["x-forwarded-host"], "www.example.test",
        "the client's host is still passed on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_header_changes_apply_both_ways() {
    let origin = Origin::start(handler(|_req| async {
        let mut resp = ok("ok");
        let h = resp.headers_mut();
        h.insert("server", "origin/1.0".parse().unwrap());
        h.insert("x-served-by", "origin".parse().unwrap());
        h.insert("strict-transport-security", "max-age=0".parse().unwrap());
        resp
    }))
    .await;
    let route = r#"
[routes.request_headers]
set = { "X-Env" = "prod", "X-Forwarded-Proto" = "https" }
add = { "X-Tag" = "edge" }
remove = ["X-Internal-Token"]

[routes.response_headers]
set = { "Strict-Transport-Security" = "max-age=31536000" }
add = { "X-Served-By" = "holdfast" }
remove = ["Server"]
"#;
    let edge = start(&origin, "", "", route);
    let got = get_with(
        &edge.url("/"),
        &[
            ("x-env", "dev"),
            ("x-tag", "client"),
            ("x-internal-token", "leak"),
        ],
    )
    .await;
    assert_eq!(got.status, 200);
    let seen = origin.last().headers;
    assert_eq!(all(&seen, "x-env"), ["prod"], "set replaces");
    assert_eq!(all(&seen, "x-tag"), ["client", "edge"], "add appends");
    assert!(!seen.contains_key("x-internal-token"), "remove removes");
    assert_eq!(
        all(&seen, "x-forwarded-proto"),
        ["https"],
        "route changes apply after the edge's own headers"
    );

    assert!(!got.headers.contains_key("server"));
    assert_eq!(
        all(&got.headers, "strict-transport-security"),
        ["max-age=31536000"]
    );
    assert_eq!(all(&got.headers, "x-served-by"), ["origin", "holdfast"]);
}

/// (id the origin saw, id the client got back) for a request carrying `sent`.
async fn ids(edge: &Edge, origin: &Origin, sent: Option<&str>) -> (String, String) {
    let headers: Vec<(&str, &str)> = sent.map(|id| ("x-request-id", id)).into_iter().collect();
    let got = get_with(&edge.url("/"), &headers).await;
    assert_eq!(got.status, 200);
    let seen = origin.last().headers;
    assert_eq!(seen.get_all("x-request-id").iter().count(), 1);
    assert_eq!(got.headers.get_all("x-request-id").iter().count(), 1);
    (
        seen["x-request-id"].to_str().unwrap().to_string(),
        got.header("x-request-id").unwrap().to_string(),
    )
}

fn is_well_formed(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(&c))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_formed_request_id_is_kept_end_to_end() {
    let origin = Origin::text("ok").await;
    let edge = start(&origin, "", "", "");
    let (at_origin, at_client) = ids(&edge, &origin, Some("req-42.a:b_c")).await;
    assert_eq!(at_origin, "req-42.a:b_c");
    assert_eq!(at_client, "req-42.a:b_c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_id_is_replaced_end_to_end() {
    let origin = Origin::text("ok").await;
    let edge = start(&origin, "", "", "");
    let too_long = "a".repeat(129);
    for bad in ["<script>alert(1)</script>", "has space", too_long.as_str()] {
        let (at_origin, at_client) = ids(&edge, &origin, Some(bad)).await;
        assert_ne!(at_origin, bad);
        assert!(is_well_formed(&at_origin), "{at_origin:?}");
        assert_eq!(at_origin, at_client, "origin and client see the same id");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_request_id_is_generated_and_unique() {
    let origin = Origin::text("ok").await;
    let edge = start(&origin, "", "", "");
    let (a_origin, a_client) = ids(&edge, &origin, None).await;
    let (b_origin, b_client) = ids(&edge, &origin, None).await;
    assert!(is_well_formed(&a_origin), "{a_origin:?}");
    assert_eq!(a_origin, a_client);
    assert_eq!(b_origin, b_client);
    assert_ne!(a_origin, b_origin, "each request gets its own id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_cannot_change_the_request_id_the_client_sees() {
    let origin = Origin::start(handler(|_req| async {
        let mut resp = ok("ok");
        resp.headers_mut()
            .insert("x-request-id", "origin-made".parse().unwrap());
        resp
    }))
    .await;
    let edge = start(&origin, "", "", "");
    let (at_origin, at_client) = ids(&edge, &origin, Some("client-1")).await;
    assert_eq!(at_origin, "client-1");
    assert_eq!(at_client, "client-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_client_is_named_in_via() {
    let origin = Origin::text("ok").await;
    let edge = start(&origin, "", "", "");
    let got = raw_exchange(
        edge.running().http_addrs[0],
        b"GET /old HTTP/1.0\r\nhost: old.example\r\nkeep-alive: timeout=5\r\n\r\n",
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.head);
    assert_eq!(got.text(), "ok");
    let seen = origin.last();
    assert_eq!(
        seen.version,
        http::Version::HTTP_11,
        "the origin is spoken to in HTTP/1.1"
    );
    assert_eq!(all(&seen.headers, "via"), ["1.0 holdfast"]);
    assert!(!seen.headers.contains_key("keep-alive"));
}
