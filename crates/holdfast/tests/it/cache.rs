//! The shared cache of a route with `cache = { enabled = true }`: hits with `Age` and
//! `Cache-Status`, what is not stored (private, too large), HEAD and Range from a stored
//! GET, conditional requests (ours to the origin, the client's answered from the cache),
//! invalidation by unsafe methods, Vary, stale-while-revalidate, stale on origin failure,
//! coalesced misses. The origin counts what reaches it.

use crate::support::*;
use http::Response;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

fn with(mut r: Response<Body>, headers: &[(&'static str, &'static str)]) -> Response<Body> {
    for (n, v) in headers {
        r.headers_mut()
            .append(*n, http::HeaderValue::from_static(v));
    }
    r
}

/// An origin whose answer depends on the path (see each arm), 503 for everything while
/// `failing` is set.
async fn origin(failing: Arc<AtomicBool>) -> Origin {
    Origin::start(handler(move |req| {
        let failing = failing.load(Ordering::SeqCst);
        async move {
            if failing {
                return status(503, "down");
            }
            let inm = req.headers().get("if-none-match").cloned();
            match req.uri().path() {
                "/fresh" => with(
                    ok("fresh body"),
                    &[("cache-control", "max-age=60"), ("etag", "\"f1\"")],
                ),
                "/private" => with(ok("mine"), &[("cache-control", "private, max-age=60")]),
                "/big" => with(ok(vec![b'x'; 4096]), &[("cache-control", "max-age=60")]),
                "/etag" if inm.as_ref().is_some_and(|v| v == "\"e1\"") => with(
                    status(304, ""),
                    &[
                        ("cache-control", "max-age=0"),
                        ("etag", "\"e1\""),
                        ("x-fresh", "2"),
                    ],
                ),
                "/etag" => with(
                    ok("etag body"),
                    &[
                        ("cache-control", "max-age=0"),
                        ("etag", "\"e1\""),
                        ("x-fresh", "1"),
                    ],
                ),
                "/vary" => {
                    let lang = req.headers().get("accept-language").cloned();
                    let body = if lang.is_some_and(|l| l == "fr") {
                        "bonjour"
                    } else {
                        "hello"
                    };
                    with(
                        ok(body),
                        &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
                    )
                }
                "/swr" => with(
                    ok("swr"),
                    &[("cache-control", "max-age=0, stale-while-revalidate=600")],
                ),
                "/stale" => with(ok("old but good"), &[("cache-control", "max-age=0")]),
                "/revalidate" => with(
                    ok("strict"),
                    &[("cache-control", "max-age=0, must-revalidate")],
                ),
                "/tagged" => with(
                    ok("tagged"),
                    &[
                        ("cache-control", "max-age=60"),
                        ("surrogate-key", "red blue"),
                    ],
                ),
                "/cdn" => with(
                    ok("for the cdn"),
                    &[
                        ("cache-control", "no-store"),
                        ("cdn-cache-control", "max-age=60"),
                    ],
                ),
                "/mine" => with(
                    ok("targeted"),
                    &[
                        ("cdn-cache-control", "max-age=60"),
                        ("holdfast-cache-control", "no-store"),
                    ],
                ),
                _ => ok("other"),
            }
        }
    }))
    .await
}

fn cached(origin: &Origin, cache: &str) -> Edge {
    app_edge(
        2,
        &server_list(&[origin.addr]),
        "",
        &format!("cache = {cache}"),
    )
}

const ON: &str = "{ enabled = true, max_object_size = \"1KiB\", serve_stale_on_error = \"1h\" }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_response_is_served_from_the_cache_with_age_and_cache_status() {
    let origin = origin(Arc::default()).await;
    let edge = cached(&origin, ON);
    let first = get(&edge.url("/fresh")).await;
    assert_eq!(first.text(), "fresh body");
    assert_eq!(
        first.header("cache-status"),
        Some("holdfast; fwd=uri-miss; stored; ttl=60")
    );
    let second = get(&edge.url("/fresh")).await;
    assert_eq!(second.text(), "fresh body");
    let cs = second.header("cache-status").unwrap();
    assert!(cs.starts_with("holdfast; hit; ttl="), "{cs}");
    assert!(second.header("age").is_some());
    assert_eq!(origin.requests(), 1);
    // HEAD and a Range come from the stored GET.
    let head = send(
        http::Request::head(edge.url("/fresh"))
            .body(Body::default())
            .unwrap(),
    )
    .await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some("10"));
    let part = get_with(&edge.url("/fresh"), &[("range", "bytes=0-4")]).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.text(), "fresh");
    assert_eq!(part.header("content-range"), Some("bytes 0-4/10"));
    // The client's conditional is answered by the cache.
    let cond = get_with(&edge.url("/fresh"), &[("if-none-match", "\"f1\"")]).await;
    assert_eq!(cond.status, 304);
    assert_eq!(origin.requests(), 1);
    let status = route_status(&edge.status().await, "all");
    assert_eq!(status["cache"]["hits"], 4, "{status}");
    let text = edge.metrics().await;
    let hits = r#"holdfast_cache_lookups_total{result="hit",route="all"}"#;
    assert_eq!(metric(&text, hits), Some(4.0), "{text}");
    let objects = r#"holdfast_cache_objects{route="all",tier="memory"}"#;
    assert_eq!(metric(&text, objects), Some(1.0), "{text}");
    assert_eq!(status["cache"]["memory_objects"], 1, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_and_oversized_responses_are_not_stored() {
    let origin = origin(Arc::default()).await;
    let edge = cached(&origin, ON);
    for _ in 0..2 {
        let got = get(&edge.url("/private")).await;
        assert_eq!(
            got.header("cache-status"),
            Some("holdfast; fwd=uri-miss; detail=private")
        );
        let big = get(&edge.url("/big")).await;
        assert_eq!(big.body.len(), 4096, "streamed whole");
        assert_eq!(
            big.header("cache-status"),
            Some("holdfast; fwd=uri-miss; detail=too-large")
        );
    }
    assert_eq!(origin.requests(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_response_is_revalidated_and_a_304_updates_it() {
    let origin = origin(Arc::default()).await;
    let edge = cached(&origin, ON);
    let first = get(&edge.url("/etag")).await;
    assert_eq!(first.header("x-fresh"), Some("1"));
    let second = get(&edge.url("/etag")).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.text(), "etag body");
    assert_eq!(
        second.header("x-fresh"),
        Some("2"),
        "headers updated from the 304"
    );
    assert_eq!(
        second.header("cache-status"),
        Some("holdfast; fwd=stale; fwd-status=304; ttl=0")
    );
    assert_eq!(origin.last().headers["if-none-match"], "\"e1\"");
    assert_eq!(origin.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_methods_invalidate_the_target() {
    let origin = origin(Arc::default()).await;
    let edge = cached(&origin, ON);
    get(&edge.url("/fresh")).await;
    get(&edge.url("/fresh")).await;
    assert_eq!(origin.requests(), 1);
    let posted = post(&edge.url("/fresh")).await;
    assert_eq!(posted.header("cache-status"), Some("holdfast; fwd=method"));
    let again = get(&edge.url("/fresh")).await;
    assert_eq!(
        again.header("cache-status"),
        Some("holdfast; fwd=uri-miss; stored; ttl=60")
    );
    assert_eq!(origin.requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_selects_the_variant() {
    let origin = origin(Arc::default()).await;
    let edge = cached(&origin, ON);
    assert_eq!(
        get_with(&edge.url("/vary"), &[("accept-language", "fr")])
            .await
            .text(),
        "bonjour"
    );
    let en = get_with(&edge.url("/vary"), &[("accept-language", "en")]).await;
    assert_eq!(en.text(), "hello");
    assert!(en.header("cache-status").unwrap().contains("fwd=vary-miss"));
    let fr = get_with(&edge.url("/vary"), &[("accept-language", "FR")]).await;
    assert_eq!(fr.text(), "bonjour", "case-normalised");
    assert!(fr.header("cache-status").unwrap().contains("hit"));
    assert_eq!(origin.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let origin = origin(Arc::default()).await;
    let edge = cached(&origin, ON);
    get(&edge.url("/swr")).await;
    let stale = get(&edge.url("/swr")).await;
    assert_eq!(stale.text(), "swr");
    let cs = stale.header("cache-status").unwrap();
    assert!(
        cs.contains("hit") && cs.contains("detail=stale-while-revalidate"),
        "{cs}"
    );
    until_seen(&[&origin], 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_error_is_answered_with_stale_content_where_allowed() {
    let failing = Arc::new(AtomicBool::new(false));
    let origin = origin(Arc::clone(&failing)).await;
    let edge = cached(&origin, ON);
    get(&edge.url("/stale")).await;
    get(&edge.url("/revalidate")).await;
    failing.store(true, Ordering::SeqCst);
    let got = get(&edge.url("/stale")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "old but good");
    let cs = got.header("cache-status").unwrap();
    assert!(
        cs.starts_with("holdfast; fwd=stale; fwd-status=503; ttl="),
        "{cs}"
    );
    assert!(cs.ends_with("detail=stale-if-error"), "{cs}");
    // must-revalidate forbids it: the origin's error goes through.
    assert_eq!(get(&edge.url("/revalidate")).await.status, 503);
    // Nothing stored: the origin's error too.
    assert_eq!(get(&edge.url("/other")).await.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_answer_served_on_an_origin_error_is_not_called_stale() {
    // The client's no-cache sends the request on although the stored answer is fresh; the
    // origin fails. The answer served is fresh: not `fwd=stale`, not stale-if-error, and a
    // stale one served on error never carries a positive ttl.
    let failing = Arc::new(AtomicBool::new(false));
    let origin = origin(Arc::clone(&failing)).await;
    let edge = cached(&origin, ON);
    get(&edge.url("/fresh")).await;
    get(&edge.url("/stale")).await;
    failing.store(true, Ordering::SeqCst);
    let got = get_with(&edge.url("/fresh"), &[("cache-control", "no-cache")]).await;
    assert_eq!(got.text(), "fresh body");
    let cs = got.header("cache-status").unwrap();
    assert!(
        cs.starts_with("holdfast; fwd=request; fwd-status=503; ttl="),
        "{cs}"
    );
    assert!(cs.ends_with("; detail=origin-error"), "{cs}");
    let ttl: i64 = cs
        .split("ttl=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ttl > 0, "{cs}");

    let got = get(&edge.url("/stale")).await;
    let cs = got.header("cache-status").unwrap();
    let ttl: i64 = cs
        .split("ttl=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        ttl <= 0 && cs.contains("fwd=stale") && cs.ends_with("detail=stale-if-error"),
        "{cs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_origin_without_content_is_an_error_page() {
    let edge = app_edge(
        2,
        &server_list(&[dead_addr()]),
        "",
        &format!("cache = {ON}"),
    );
    let got = get(&edge.url("/fresh")).await;
    assert_eq!(got.status, 502);
    assert!(got.text().contains("origin"), "{}", got.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_origin_request() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let (g, c) = (Arc::clone(&gate), Arc::clone(&calls));
    let origin = Origin::start(handler(move |_req| {
        let (g, c) = (Arc::clone(&g), Arc::clone(&c));
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            g.notified().await;
            with(ok("once"), &[("cache-control", "max-age=60")])
        }
    }))
    .await;
    let edge = cached(&origin, ON);
    let url = edge.url("/one");
    let requests: Vec<_> = (0..5).map(|_| spawn_get(url.clone())).collect();
    until_seen(&[&origin], 1).await;
    eventually("4 requests waiting on the first", LIMIT, || async {
        route_status(&edge.status().await, "all")["cache"]["coalesced"] == 4
    })
    .await;
    gate.notify_one();
    let bodies = all_ok(requests, &["once"]).await;
    assert_eq!(bodies.len(), 5);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdn_cache_control_and_the_targeted_field_take_precedence() {
    let origin = origin(Arc::default()).await;
    let cache = "{ enabled = true, targeted_field = \"Holdfast-Cache-Control\" }";
    let edge = cached(&origin, cache);
    get(&edge.url("/cdn")).await;
    let cdn = get(&edge.url("/cdn")).await;
    assert!(
        cdn.header("cache-status").unwrap().contains("hit"),
        "CDN-Cache-Control over no-store"
    );
    assert_eq!(
        cdn.header("cache-control"),
        Some("no-store"),
        "passed on to the client"
    );
    get(&edge.url("/mine")).await;
    let mine = get(&edge.url("/mine")).await;
    assert_eq!(
        mine.header("cache-status"),
        Some("holdfast; fwd=uri-miss; detail=no-store")
    );
    assert_eq!(origin.requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_by_url_tag_and_all_soft_or_hard() {
    let origin = origin(Arc::default()).await;
    let edge = cached(&origin, ON);
    get(&edge.url("/fresh")).await;
    get(&edge.url("/tagged")).await;
    let admin = edge.admin_url("/cache/purge?");
    let purge = |q: &str| {
        let url = format!("{admin}{q}");
        async move { post(&url).await }
    };
    let got = purge("url=127.0.0.1/fresh").await;
    assert_eq!(got.json()["purged"], 1, "{}", got.text());
    let again = get(&edge.url("/fresh")).await;
    assert!(again
        .header("cache-status")
        .unwrap()
        .contains("fwd=uri-miss"));
    // Soft: still stored, but stale — the next request goes to the origin (conditionally
    // had it a validator), and an origin failure could still be answered from it.
    assert_eq!(purge("tag=blue&soft=true").await.json()["purged"], 1);
    let soft = get(&edge.url("/tagged")).await;
    assert!(
        soft.header("cache-status")
            .unwrap()
            .starts_with("holdfast; fwd=stale"),
        "{:?}",
        soft.header("cache-status")
    );
    assert_eq!(purge("prefix=127.0.0.1/t").await.json()["purged"], 1);
    assert_eq!(purge("all=true").await.json()["purged"], 1);
    assert_eq!(purge("url=a&tag=b").await.status, 400);
    assert_eq!(origin.requests(), 4);
    let status = route_status(&edge.status().await, "all");
    assert_eq!(status["cache"]["purged"], 4, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_fetch_holds_others_only_until_the_lock_timeout() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let origin = Origin::start(handler(move |_req| {
        let first = c.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                // The first fetch never finishes.
                std::future::pending::<()>().await;
            }
            with(ok("second"), &[("cache-control", "max-age=60")])
        }
    }))
    .await;
    let edge = cached(&origin, "{ enabled = true, lock_timeout = \"100ms\" }");
    let url = edge.url("/slow");
    let stuck = spawn_get(url.clone());
    until_seen(&[&origin], 1).await;
    let got = within_limit(get(&url)).await;
    assert_eq!(got.text(), "second");
    assert!(got.header("cache-status").unwrap().contains("collapsed"));
    assert!(!stuck.is_finished());
    stuck.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_tier_keeps_objects_across_a_restart() {
    let origin = origin(Arc::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = format!(
        "{{ enabled = true, max_object_size = \"64KiB\", disk = {{ path = {:?}, size = \"1MiB\" }} }}",
        dir.path().display().to_string()
    );
    let mut edge = cached(&origin, &cache);
    get(&edge.url("/fresh")).await;
    eventually("the object written to disk", LIMIT, || async {
        route_status(&edge.status().await, "all")["cache"]["disk_objects"] == 1
    })
    .await;
    blocking(|| edge.stop());
    let edge = cached(&origin, &cache);
    let got = get(&edge.url("/fresh")).await;
    assert_eq!(got.text(), "fresh body");
    assert!(
        got.header("cache-status").unwrap().contains("hit"),
        "{:?}",
        got.header("cache-status")
    );
    assert_eq!(origin.requests(), 1);
    let status = route_status(&edge.status().await, "all");
    assert_eq!(status["cache"]["disk_hits"], 1, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_disk_entry_is_dropped_not_served() {
    let origin = origin(Arc::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = format!(
        "{{ enabled = true, disk = {{ path = {:?} }} }}",
        dir.path().display().to_string()
    );
    let mut edge = cached(&origin, &cache);
    get(&edge.url("/fresh")).await;
    eventually("the object written to disk", LIMIT, || async {
        route_status(&edge.status().await, "all")["cache"]["disk_objects"] == 1
    })
    .await;
    blocking(|| edge.stop());
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let path = file.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 40; // inside the body, before the checksum
        bytes[at] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
    let edge = cached(&origin, &cache);
    let got = get(&edge.url("/fresh")).await;
    assert_eq!(got.text(), "fresh body");
    assert!(got.header("cache-status").unwrap().contains("fwd=uri-miss"));
    assert_eq!(origin.requests(), 2);
    let status = route_status(&edge.status().await, "all");
    assert_eq!(status["cache"]["disk_corrupt"], 1, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_cache_folder_is_a_bypass_not_an_outage() {
    let origin = origin(Arc::default()).await;
    let cache = "{ enabled = true, disk = { path = \"/proc/holdfast-cache\" } }";
    let edge = cached(&origin, cache);
    get(&edge.url("/fresh")).await;
    let got = get(&edge.url("/fresh")).await;
    assert_eq!(got.status, 200);
    assert!(got.header("cache-status").unwrap().contains("hit"));
    let status = route_status(&edge.status().await, "all");
    assert_eq!(status["cache"]["disk"], false, "{status}");
    assert_eq!(status["cache"]["disk_errors"], 1, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_says_what_the_cache_did() {
    let origin = origin(Arc::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let edge = Edge::start(
        &edge_config(2, APP_POOL).replace(
            "access_log = \"off\"",
            &format!("access_log = {:?}", log.display().to_string()),
        ),
        &app_vars(&server_list(&[origin.addr]), "", &format!("cache = {ON}")),
    );
    get(&edge.url("/fresh")).await;
    get(&edge.url("/fresh")).await;
    eventually("two access-log lines", LIMIT, || {
        let n = std::fs::read_to_string(&log).map_or(0, |t| t.lines().count());
        async move { n >= 2 }
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    // Two workers write their own buffers: lines need not be in request order.
    let mut results: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["cache"].to_string())
        .collect();
    results.sort();
    assert_eq!(results, ["\"hit\"", "\"miss\""]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_directives_only_if_cached_and_no_cache() {
    let origin = origin(Arc::default()).await;
    let edge = cached(&origin, ON);
    let cold = get_with(&edge.url("/fresh"), &[("cache-control", "only-if-cached")]).await;
    assert_eq!(cold.status, 504);
    assert_eq!(origin.requests(), 0);
    get(&edge.url("/fresh")).await;
    let warm = get_with(&edge.url("/fresh"), &[("cache-control", "only-if-cached")]).await;
    assert_eq!(warm.status, 200);
    let forced = get_with(&edge.url("/fresh"), &[("cache-control", "no-cache")]).await;
    assert!(forced
        .header("cache-status")
        .unwrap()
        .starts_with("holdfast; fwd=request"));
    assert_eq!(
        origin.last().headers["if-none-match"],
        "\"f1\"",
        "validated, not refetched"
    );
    assert_eq!(origin.requests(), 2);
}

/// `s` percent-encoded for a query value.
fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_url_in_any_form_a_client_sends_finds_the_object() {
    let origin = origin(Arc::default()).await;
    let edge = cached(&origin, ON);
    let port = edge.running().http_addrs[0].port();
    let purge = |url: String| {
        let admin = edge.admin_url(&format!("/cache/purge?url={}", query_value(&url)));
        async move { post(&admin).await.json()["purged"].clone() }
    };
    let forms = [
        "127.0.0.1/fresh?x=1&y=2".to_string(),
        format!("HTTP://127.0.0.1:{port}/a/../fresh?y=2&x=1#top"),
        format!("//127.0.0.1:{port}//fresh?x=1&y=2"),
        "http://127.0.0.1/%66resh?y=2&x=1".to_string(),
    ];
    for form in forms {
        // Stored by a request whose path needs normalising too.
        get(&edge.url("/x/../fresh?x=1&y=2")).await;
        let hit = get(&edge.url("/fresh?y=2&x=1")).await;
        assert!(
            hit.header("cache-status").unwrap().contains("hit"),
            "{form}"
        );
        assert_eq!(purge(form.clone()).await, 1, "{form}");
        let after = get(&edge.url("/fresh?x=1&y=2")).await;
        assert!(
            after
                .header("cache-status")
                .unwrap()
                .contains("fwd=uri-miss"),
            "{form}: {:?}",
            after.header("cache-status")
        );
        assert_eq!(purge(form.clone()).await, 1, "the refetched copy: {form}");
    }
    // Another host is another object, and a URL with no host purges nothing.
    assert_eq!(purge("other.test/fresh?x=1&y=2".into()).await, 0);
    assert_eq!(purge("/fresh?x=1&y=2".into()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_path_on_two_hosts_is_two_objects() {
    let origin = origin(Arc::default()).await;
    let edge = cached(&origin, ON);
    let a = get_with(&edge.url("/fresh"), &[("host", "a.test")]).await;
    assert!(a.header("cache-status").unwrap().contains("fwd=uri-miss"));
    let b = get_with(&edge.url("/fresh"), &[("host", "b.test")]).await;
    assert!(
        b.header("cache-status").unwrap().contains("fwd=uri-miss"),
        "b.test is not answered with a.test's copy: {:?}",
        b.header("cache-status")
    );
    assert_eq!(origin.requests(), 2);
}
