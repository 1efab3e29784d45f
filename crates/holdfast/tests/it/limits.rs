//! Local rate limits at the edge, through the interfaces issue 7 fixes exactly: the
//! `[[limits]]` entry as written (`name`, `key = "client_ip"`, `requests = 5`, `per = "1s"`,
//! `routes = ["all"]`) is accepted; over the limit the answer is a 429 with `Retry-After` and
//! the `RateLimit` / `RateLimit-Policy` headers (draft-ietf-httpapi-ratelimit-headers), an
//! HTML page for a browser and a JSON body for `Accept: application/json`, and the origin
//! never sees the request. Then: `routes`, shadow mode, the header, cookie and route keys,
//! the kill switch (`POST /modules/limits/...`, `/status`), counts across reloads, and config
//! errors named by key path in `holdfast check`.
//!
//! Nothing here depends on timing. Every limit but the issue's own counts per hour, so none
//! can refill during a test; the issue's `5 per 1s` is checked against a bound on what may
//! pass in the time the requests took (from `Instant`), never against a duration.

use crate::support::*;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The issue's `[[limits]]` entry, exactly as written.
const ISSUE_LIMIT: &str = r#"
[[limits]]
name = "per-ip"
key = "client_ip"
requests = 5
per = "1s"
routes = ["all"]
"#;

/// A `[[limits]]` entry; `extra` lines (`routes`, `shadow`) follow its required keys.
fn limit(name: &str, key: &str, requests: u32, per: &str, extra: &str) -> String {
    format!(
        "\n[[limits]]\nname = \"{name}\"\nkey = \"{key}\"\nrequests = {requests}\n\
         per = \"{per}\"\n{extra}\n"
    )
}

/// An edge with `limits`, then `routes` (`BASIC_POOL` or `TWO_ROUTES`) to `origin`.
fn edge_with(origin: &Origin, limits: &str, routes: &str) -> Edge {
    Edge::start(&template(limits, routes), &origin_var(origin))
}

fn template(limits: &str, routes: &str) -> String {
    edge_config(2, &format!("{limits}{routes}"))
}

fn origin_var(origin: &Origin) -> Vec<(&'static str, String)> {
    vec![("origin", origin.addr.to_string())]
}

/// A second client address (see `get_from`).
fn other_client() -> IpAddr {
    "127.0.0.2".parse().unwrap()
}

const LOCAL: &[(&str, &str)] = &[];

/// One GET through the edge, answered within `LIMIT`.
async fn fetch(edge: &Edge, path: &str, headers: &[(&str, &str)]) -> Got {
    within_limit(get_with(&edge.url(path), headers)).await
}

/// `n` GETs in a row, each of which must be a 200 from the origin.
async fn pass(edge: &Edge, n: usize, path: &str, headers: &[(&str, &str)]) {
    for i in 0..n {
        let got = fetch(edge, path, headers).await;
        assert_eq!(
            got.status,
            200,
            "{path} {headers:?}, request {i}: {}",
            got.text()
        );
        assert_eq!(got.text(), "hello", "{path}: not the origin's answer");
    }
}

/// One GET that must be refused by limit `name`, of `q` requests per `w` seconds (see
/// `assert_limited`).
async fn refused(
    edge: &Edge,
    path: &str,
    headers: &[(&str, &str)],
    name: &str,
    q: u64,
    w: u64,
) -> Got {
    let got = fetch(edge, path, headers).await;
    assert_limited(&got, name, q, w);
    got
}

/// A 429 from the edge for limit `name` of `q` requests per `w` seconds: `Retry-After` in
/// whole seconds, at least 1 and at most the window; `RateLimit: "name";r=0;t=N` with N
/// (seconds until the quota is whole again) from 1 to the window; `RateLimit-Policy:
/// "name";q=Q;w=W`; not cacheable. Returns `Retry-After`.
fn assert_limited(got: &Got, name: &str, q: u64, w: u64) -> u64 {
    assert_eq!(got.status, 429, "{}", got.text());
    let retry_after: u64 = got
        .header("retry-after")
        .unwrap_or_else(|| panic!("a 429 without Retry-After: {:?}", got.headers))
        .parse()
        .unwrap_or_else(|e| panic!("Retry-After is not whole seconds ({e}): {:?}", got.headers));
    assert!(
        (1..=w).contains(&retry_after),
        "Retry-After {retry_after} is not 1..={w}"
    );
    let ratelimit = got
        .header("ratelimit")
        .unwrap_or_else(|| panic!("a 429 without RateLimit: {:?}", got.headers));
    let t: u64 = ratelimit
        .strip_prefix(&format!("\"{name}\";r=0;t="))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("RateLimit {ratelimit:?} is not \"{name}\";r=0;t=N"));
    assert!(
        (1..=w).contains(&t),
        "RateLimit {ratelimit:?}: t is not 1..={w}"
    );
    assert_eq!(
        got.header("ratelimit-policy"),
        Some(format!("\"{name}\";q={q};w={w}").as_str()),
        "{:?}",
        got.headers
    );
    assert_eq!(got.header("cache-control"), Some("no-store"));
    retry_after
}

/// The edge's 429 page for a browser: HTML, naming the status and the request id.
fn assert_html_page(got: &Got) {
    let content_type = got.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let text = got.text();
    assert!(text.contains("429"), "{text}");
    let id = got.header("x-request-id").expect("a request id");
    assert!(text.contains(id), "page names the request id {id}: {text}");
}

/// The edge's 429 for an API client: a JSON body saying 429.
fn assert_json_body(got: &Got) {
    assert_eq!(got.header("content-type"), Some("application/json"));
    let body = got.json();
    assert_eq!(body["status"], 429, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

/// `holdfast_ratelimit_decisions_total{limit,result}`, 0 when not exported.
fn decisions(metrics: &str, limit: &str, result: &str) -> f64 {
    sample(
        metrics,
        "holdfast_ratelimit_decisions_total",
        &[("limit", limit), ("result", result)],
    )
    .unwrap_or(0.0)
}

/// The `/status` entry of limit `name` (in the "limits" module's entry).
fn limit_status(status: &serde_json::Value, name: &str) -> serde_json::Value {
    let module = module_status(status, "limits");
    module["limits"]
        .as_array()
        .unwrap_or_else(|| panic!("the limits module lists no limits: {module}"))
        .iter()
        .find(|l| l["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no limit {name:?} in {module}"))
}

async fn post_ok(edge: &Edge, path: &str) -> serde_json::Value {
    let got = within_limit(post(&edge.admin_url(path))).await;
    assert_eq!(got.status, 200, "POST {path}: {}", got.text());
    got.json()
}

const HTML: &[(&str, &str)] = &[("accept", "text/html")];
const JSON: &[(&str, &str)] = &[("accept", "application/json")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_limit_as_written_passes_five_in_a_row_then_answers_429() {
    let origin = Origin::text("hello").await;
    let edge = edge_with(&origin, ISSUE_LIMIT, BASIC_POOL);

    // Requests in a row until the first 429 (bounded: far more than 5 per second allow).
    let start = Instant::now();
    let mut passed = 0;
    let first_429 = loop {
        assert!(passed < 200, "200 requests in a row and no 429");
        let got = fetch(&edge, "/page", HTML).await;
        match got.status.as_u16() {
            200 => passed += 1,
            429 => break got,
            other => panic!("request {passed}: {other} {}", got.text()),
        }
    };
    let elapsed = start.elapsed();

    // A new client has the whole burst: the first five pass whatever the timing. After that
    // GCRA lets one more through per 200 ms, so at most 5 + elapsed / 200 ms pass (50 ms of
    // margin for the limiter's clock against this one): exactly five when the burst took
    // less than 150 ms, as it does on loopback unless the machine stalls.
    assert!(passed >= 5, "only {passed} passed before a 429");
    let bound = 5 + ((elapsed + Duration::from_millis(50)).as_secs_f64() * 5.0).floor() as usize;
    assert!(
        passed <= bound,
        "{passed} passed in {elapsed:?}; 5 per second allows at most {bound}"
    );
    assert_eq!(origin.requests(), passed, "a 429 must not reach the origin");

    assert_limited(&first_429, "per-ip", 5, 1);
    assert_html_page(&first_429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_exactly_five_reach_the_origin_browsers_get_a_page_apis_json() {
    let origin = Origin::text("hello").await;
    let hourly = limit("per-ip", "client_ip", 5, "1h", r#"routes = ["all"]"#);
    let edge = edge_with(&origin, &hourly, BASIC_POOL);

    pass(&edge, 5, "/page", HTML).await;
    let page = refused(&edge, "/page", HTML, "per-ip", 5, 3600).await;
    assert_html_page(&page);
    let retry_after = assert_limited(&page, "per-ip", 5, 3600);
    // One request costs 1h / 5 = 720 s; the next can pass within that.
    assert!(retry_after <= 720, "Retry-After {retry_after} > 720");
    let json = refused(&edge, "/api", JSON, "per-ip", 5, 3600).await;
    assert_json_body(&json);
    // A POST counts like a GET.
    let posted = within_limit(post(&edge.url("/form"))).await;
    assert_limited(&posted, "per-ip", 5, 3600);
    assert_eq!(
        origin.requests(),
        5,
        "only the five allowed reach the origin"
    );

    // Another client address has its own count.
    for i in 0..5 {
        let got = within_limit(get_from(other_client(), &edge.url("/page"), LOCAL)).await;
        assert_eq!(got.status, 200, "127.0.0.2, request {i}: {}", got.text());
    }
    let got = within_limit(get_from(other_client(), &edge.url("/page"), LOCAL)).await;
    assert_limited(&got, "per-ip", 5, 3600);
    assert_eq!(origin.requests(), 10);

    let metrics = edge.metrics().await;
    assert_eq!(decisions(&metrics, "per-ip", "allowed"), 10.0, "{metrics}");
    assert_eq!(decisions(&metrics, "per-ip", "limited"), 4.0, "{metrics}");
    assert_eq!(decisions(&metrics, "per-ip", "shadow"), 0.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_not_listed_is_not_limited() {
    let origin = Origin::text("hello").await;
    let api_only = limit("api", "client_ip", 3, "1h", r#"routes = ["api"]"#);
    let edge = edge_with(&origin, &api_only, TWO_ROUTES);

    pass(&edge, 3, "/api/a", LOCAL).await;
    refused(&edge, "/api/b", LOCAL, "api", 3, 3600).await;
    pass(&edge, 10, "/page", LOCAL).await;
    refused(&edge, "/api/c", LOCAL, "api", 3, 3600).await;
    assert_eq!(origin.requests(), 13);
    assert_eq!(origin.requests_to("/page"), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_routes_a_limit_covers_every_route_with_one_count_per_key() {
    let origin = Origin::text("hello").await;
    let everywhere = limit("everywhere", "client_ip", 3, "1h", "");
    let edge = edge_with(&origin, &everywhere, TWO_ROUTES);

    pass(&edge, 1, "/api/a", LOCAL).await;
    pass(&edge, 1, "/page", LOCAL).await;
    pass(&edge, 1, "/api/b", LOCAL).await;
    refused(&edge, "/page", LOCAL, "everywhere", 3, 3600).await;
    refused(&edge, "/api/c", LOCAL, "everywhere", 3, 3600).await;
    assert_eq!(origin.requests(), 3);
    let status = limit_status(&edge.status().await, "everywhere");
    assert_eq!(status["routes"], serde_json::json!([]), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_refuses_nothing_and_counts_what_it_would_have_refused() {
    let origin = Origin::text("hello").await;
    let shadow = limit("watch", "client_ip", 2, "1h", "shadow = true");
    let edge = edge_with(&origin, &shadow, BASIC_POOL);

    for i in 0..10 {
        let got = fetch(&edge, "/page", LOCAL).await;
        assert_eq!(got.status, 200, "request {i}: {}", got.text());
        for h in ["retry-after", "ratelimit", "ratelimit-policy"] {
            assert_eq!(got.header(h), None, "a shadow limit shows no {h}");
        }
    }
    assert_eq!(origin.requests(), 10);

    let metrics = edge.metrics().await;
    assert_eq!(decisions(&metrics, "watch", "allowed"), 2.0, "{metrics}");
    assert_eq!(decisions(&metrics, "watch", "shadow"), 8.0, "{metrics}");
    assert_eq!(decisions(&metrics, "watch", "limited"), 0.0, "{metrics}");
    let status = limit_status(&edge.status().await, "watch");
    assert_eq!(status["shadow"], 8, "{status}");
    assert_eq!(status["limited"], 0, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_key_counts_each_value_and_leaves_requests_without_it_alone() {
    let origin = Origin::text("hello").await;
    let per_key = limit("per-key", "header:x-api-key", 2, "1h", "");
    let edge = edge_with(&origin, &per_key, BASIC_POOL);

    pass(&edge, 6, "/free", LOCAL).await;
    let alpha: &[(&str, &str)] = &[("x-api-key", "alpha")];
    let beta: &[(&str, &str)] = &[("x-api-key", "beta")];
    pass(&edge, 2, "/a", alpha).await;
    refused(&edge, "/a", alpha, "per-key", 2, 3600).await;
    pass(&edge, 2, "/b", beta).await;
    refused(&edge, "/b", beta, "per-key", 2, 3600).await;
    refused(&edge, "/a", alpha, "per-key", 2, 3600).await;
    // The header name is case-insensitive; the value is the key.
    refused(&edge, "/a", &[("X-Api-Key", "alpha")], "per-key", 2, 3600).await;
    pass(&edge, 1, "/free", LOCAL).await;
    assert_eq!(origin.requests(), 11);

    let metrics = edge.metrics().await;
    assert_eq!(decisions(&metrics, "per-key", "no_key"), 7.0, "{metrics}");
    assert_eq!(decisions(&metrics, "per-key", "allowed"), 4.0, "{metrics}");
    assert_eq!(decisions(&metrics, "per-key", "limited"), 4.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_key_finds_its_cookie_among_others_and_counts_each_value() {
    let origin = Origin::text("hello").await;
    let per_session = limit("per-session", "cookie:sid", 2, "1h", "");
    let edge = edge_with(&origin, &per_session, BASIC_POOL);

    pass(&edge, 4, "/free", &[("cookie", "theme=dark; lang=en")]).await;
    pass(&edge, 1, "/free", LOCAL).await;
    let alice: &[(&str, &str)] = &[("cookie", "theme=dark; sid=alice; lang=en")];
    let bob: &[(&str, &str)] = &[("cookie", "sid=bob; theme=dark")];
    pass(&edge, 2, "/a", alice).await;
    refused(&edge, "/a", alice, "per-session", 2, 3600).await;
    pass(&edge, 2, "/b", bob).await;
    refused(&edge, "/b", bob, "per-session", 2, 3600).await;
    // The same sid with other cookies around it is the same key.
    refused(
        &edge,
        "/a",
        &[("cookie", "lang=fr; sid=alice")],
        "per-session",
        2,
        3600,
    )
    .await;
    pass(&edge, 1, "/free", &[("cookie", "theme=dark")]).await;
    assert_eq!(origin.requests(), 10);

    let metrics = edge.metrics().await;
    assert_eq!(
        decisions(&metrics, "per-session", "no_key"),
        6.0,
        "{metrics}"
    );
    assert_eq!(
        decisions(&metrics, "per-session", "limited"),
        3.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_key_is_one_count_for_all_clients_of_the_route() {
    let origin = Origin::text("hello").await;
    let per_route = limit("per-route", "route", 3, "1h", "");
    let edge = edge_with(&origin, &per_route, TWO_ROUTES);
    let (one, two) = ("127.0.0.1".parse().unwrap(), other_client());
    let from = |ip: IpAddr, path: &str, headers: &'static [(&'static str, &'static str)]| {
        let url = edge.url(path);
        async move { within_limit(get_from(ip, &url, headers)).await }
    };

    // Three clients (two addresses, one with a key header) share the route's count.
    assert_eq!(from(one, "/api/1", LOCAL).await.status, 200);
    assert_eq!(from(two, "/api/2", LOCAL).await.status, 200);
    assert_eq!(from(one, "/api/3", &[("x-api-key", "k")]).await.status, 200);
    assert_limited(&from(two, "/api/4", LOCAL).await, "per-route", 3, 3600);
    assert_limited(&from(one, "/api/5", LOCAL).await, "per-route", 3, 3600);
    // Another route has a count of its own.
    for path in ["/a", "/b", "/c"] {
        assert_eq!(from(two, path, LOCAL).await.status, 200, "{path}");
    }
    assert_limited(&from(one, "/d", LOCAL).await, "per-route", 3, 3600);
    assert_eq!(origin.requests(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_stops_limiting_and_enable_or_clear_brings_it_back() {
    let origin = Origin::text("hello").await;
    let edge = edge_with(
        &origin,
        &limit("per-ip", "client_ip", 2, "1h", r#"routes = ["all"]"#),
        BASIC_POOL,
    );
    pass(&edge, 2, "/page", LOCAL).await;
    refused(&edge, "/page", LOCAL, "per-ip", 2, 3600).await;

    let module = post_ok(&edge, "/modules/limits/disable").await;
    assert_eq!(module["state"], "disabled", "{module}");
    assert_eq!(module["override"], "disabled", "{module}");
    pass(&edge, 3, "/page", LOCAL).await;
    let status = edge.status().await;
    let module = module_status(&status, "limits");
    assert_eq!(module["state"], "disabled", "{module}");
    assert_eq!(module["override"], "disabled", "{module}");
    assert_eq!(
        module["enabled"], true,
        "the config still says enabled: {module}"
    );

    let module = post_ok(&edge, "/modules/limits/enable").await;
    assert_eq!(module["state"], "ok", "{module}");
    assert_eq!(module["override"], "enabled", "{module}");
    refused(&edge, "/page", LOCAL, "per-ip", 2, 3600).await;

    post_ok(&edge, "/modules/limits/disable").await;
    pass(&edge, 1, "/page", LOCAL).await;
    let module = post_ok(&edge, "/modules/limits/clear").await;
    assert_eq!(module["state"], "ok", "{module}");
    assert_eq!(module["override"], "none", "{module}");
    refused(&edge, "/page", LOCAL, "per-ip", 2, 3600).await;
    assert_eq!(origin.requests(), 6);

    // /status: the module, and each limit's stats.
    let status = edge.status().await;
    let module = module_status(&status, "limits");
    assert_eq!(module["state"], "ok", "{module}");
    let per_ip = limit_status(&status, "per-ip");
    assert_eq!(per_ip["keys"], 1, "one client: {per_ip}");
    assert_eq!(per_ip["limited"], 3, "{per_ip}");
    assert_eq!(per_ip["shadow"], 0, "{per_ip}");
    assert_eq!(per_ip["routes"], serde_json::json!(["all"]), "{per_ip}");
}

/// `BASIC_POOL` with a pool "spare" of `{origin}` before it: nothing about route "all" or
/// the limits changes.
fn with_spare_pool() -> String {
    format!("\n[[pools]]\nname = \"spare\"\nservers = [\"{{origin}}\"]\n{BASIC_POOL}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_counts_of_unchanged_limits_and_restarts_changed_ones() {
    let origin = Origin::text("hello").await;
    let five = limit("per-ip", "client_ip", 5, "1h", r#"routes = ["all"]"#);
    let edge = edge_with(&origin, &five, BASIC_POOL);
    let vars = origin_var(&origin);
    pass(&edge, 5, "/page", LOCAL).await;
    refused(&edge, "/page", LOCAL, "per-ip", 5, 3600).await;

    // The same file again: the same limiter, still over.
    edge.reload_applied();
    refused(&edge, "/page", LOCAL, "per-ip", 5, 3600).await;

    // Something else changes (a new pool); the limit does not.
    edge.rewrite(&template(&five, &with_spare_pool()), &vars);
    edge.reload_applied();
    refused(&edge, "/page", LOCAL, "per-ip", 5, 3600).await;

    // The limit changes: new counts.
    let fifty = limit("per-ip", "client_ip", 50, "1h", r#"routes = ["all"]"#);
    edge.rewrite(&template(&fifty, BASIC_POOL), &vars);
    edge.reload_applied();
    pass(&edge, 50, "/page", LOCAL).await;
    refused(&edge, "/page", LOCAL, "per-ip", 50, 3600).await;
    assert_eq!(origin.requests(), 55);
}

/// A limit names its routes: moving route "all" to another index changes nothing about it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_adds_a_route_before_a_limited_one_keeps_the_counts() {
    let origin = Origin::text("hello").await;
    let five = limit("per-ip", "client_ip", 5, "1h", r#"routes = ["all"]"#);
    let edge = edge_with(&origin, &five, BASIC_POOL);
    pass(&edge, 5, "/page", LOCAL).await;
    refused(&edge, "/page", LOCAL, "per-ip", 5, 3600).await;

    // A new route "health" ahead of "all": route "all" and the limit are as they were.
    let health_route = format!(
        r#"
[[pools]]
name = "spare"
servers = ["{{origin}}"]

[[routes]]
name = "health"
match = {{ path_prefix = "/healthz" }}
pool = "spare"
{BASIC_POOL}"#
    );
    edge.rewrite(&template(&five, &health_route), &origin_var(&origin));
    edge.reload_applied();
    refused(&edge, "/page", LOCAL, "per-ip", 5, 3600).await;
    assert_eq!(origin.requests(), 5);
}

#[test]
fn holdfast_check_accepts_the_issue_limit_and_names_each_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edge.toml");
    let pools = BASIC_POOL.replace("{origin}", "127.0.0.1:9000");
    let config = format!("[edge]\nlisten = [\"127.0.0.1:8080\"]\n{ISSUE_LIMIT}{pools}");
    std::fs::write(&file, &config).unwrap();
    let (code, stdout, stderr) = holdfast_cmd(&[std::ffi::OsStr::new("check"), file.as_os_str()]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.trim_end().ends_with(": ok"), "{stdout}");

    let bad = format!(
        "[edge]\nlisten = [\"127.0.0.1:8080\"]\n{}{}{}{pools}",
        limit("by-ip", "ip", 5, "1s", ""),
        limit("none", "client_ip", 0, "1s", ""),
        limit(
            "elsewhere",
            "client_ip",
            5,
            "1s",
            r#"routes = ["all", "nope"]"#
        ),
    );
    let out = check_errors_of(&bad);
    let key = error_at(&out, "limits[0].key");
    assert!(key.contains("\"ip\""), "{key}");
    error_at(&out, "limits[1].requests");
    let route = error_at(&out, "limits[2].routes[1]");
    assert!(route.contains("\"nope\""), "{route}");
    assert_eq!(out.lines().count(), 3, "one line per error:\n{out}");
}
