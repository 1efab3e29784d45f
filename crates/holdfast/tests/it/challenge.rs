//! The self-hosted challenge (R12) at the edge: the issue's interface block as written (with
//! no `[challenge]` table: a generated key), the page for browsers (no other host, a
//! `<noscript>` path) and JSON for API clients; a proof of work solved here in Rust → cookie
//! → passes, never re-challenged; wrong solutions and forged, expired, wrong-IP and wrong-UA
//! cookies refused; a cookie from another instance with the shared key file accepted, also
//! after a key rotation; the no-JavaScript flow with a plain HTTP client; the loop page; no
//! open redirect; the kill switch and the fail policy (critical routes fail open); a
//! malformed key file refused at start and by `holdfast check`; the generated key kept in
//! `state_dir` across a restart; headless Chromium solving the page for real.

use crate::support::*;
use holdfast_challenge::{Keys, Settings, Signer};
use http::Request;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// The issue's interface block, exactly as written.
const ISSUE_BLOCK: &str = r#"
[[limits]]
name = "per-ip"
key = "client_ip"
requests = 5
per = "1s"
routes = ["all"]

[[rules]]
id = "block-admin-probe"
expr = 'request.path.startsWith("/wp-admin")'     # CEL
action = "block"

[[rules]]
id = "guard-protected"
expr = 'request.path.startsWith("/protected")'
action = "challenge"
"#;

const KEY_A: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const KEY_B: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";

/// A challenge with a shared key file, a small difficulty and a short no-JS wait; the
/// route "login" (`/protected/login`) is critical. `{challenge}` adds keys to `[challenge]`.
const CHALLENGED: &str = r#"
[challenge]
keys = "challenge.keys"
difficulty = 8
nojs_wait = "1s"
{challenge}

[[rules]]
id = "guard-protected"
expr = 'request.path.startsWith("/protected")'
action = "challenge"

[[pools]]
name = "primary"
servers = ["{origin}"]

[[routes]]
name = "login"
match = { path_prefix = "/protected/login" }
pool = "primary"
critical = true

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "primary"
"#;

const UA: &str = "test-browser/1.0";
const HTML: (&str, &str) = ("accept", "text/html,application/xhtml+xml");

fn challenged_edge(origin: &Origin, keys: &str, extra: &str) -> Edge {
    let keys = keys.to_string();
    Edge::start_in_dir(
        &edge_config(2, CHALLENGED),
        &[
            ("origin", origin.addr.to_string()),
            ("challenge", extra.to_string()),
        ],
        move |dir| std::fs::write(dir.join("challenge.keys"), keys).unwrap(),
    )
}

/// A signer with the test's copy of the key file: "another instance".
fn signer(keys: &str) -> Signer {
    Signer::new(
        Keys::parse(keys).unwrap(),
        Settings {
            cookie_ttl: Duration::from_secs(24 * 3600),
            token_ttl: Duration::from_secs(600),
            ipv4_prefix: 24,
            ipv6_prefix: 64,
            nojs_wait: Duration::from_secs(1),
        },
    )
}

fn localhost() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

async fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Got {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if method == "POST" {
        b = b.header("content-type", "application/x-www-form-urlencoded");
    }
    within_limit(send(b.body(Body::from(body.to_string())).unwrap())).await
}

/// GET as a browser, with the pass cookie if given.
async fn browse(edge: &Edge, path: &str, cookie: Option<&str>) -> Got {
    let mut h = vec![HTML, ("user-agent", UA)];
    let c;
    if let Some(v) = cookie {
        c = format!("holdfast_challenge={v}");
        h.push(("cookie", c.as_str()));
    }
    request("GET", &edge.url(path), &h, "").await
}

/// The value of the hidden input `name` in a page.
fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end]
        .replace("&amp;", "&")
        .replace("&quot;", "\"")
}

fn enc(s: &str) -> String {
    holdfast_challenge::encode_component(s)
}

/// The cookie value a 303 sets, checking its attributes.
fn set_cookie(got: &Got) -> String {
    let c = got
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no cookie: {:?} {}", got.headers, got.text()));
    assert!(c.contains("HttpOnly") && c.contains("Path=/"), "{c}");
    c.strip_prefix("holdfast_challenge=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// Solve the page's proof of work here, post it, follow the return check: the cookie.
async fn solve(edge: &Edge, path: &str) -> String {
    let page = browse(edge, path, None).await;
    assert_eq!(page.status, 403, "{}", page.text());
    let html = page.text();
    let token = field(&html, "c");
    let d: u8 = html
        .split("data-d=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .parse()
        .unwrap();
    let to = field(&html, "to");
    assert_eq!(to, path);
    let nonce = holdfast_challenge::solve(&token, d);
    let got = request(
        "POST",
        &edge.url("/.holdfast/challenge/verify"),
        &[HTML, ("user-agent", UA)],
        &format!("c={}&n={nonce}&to={}", enc(&token), enc(&to)),
    )
    .await;
    assert_eq!(got.status, 303, "{}", got.text());
    let cookie = set_cookie(&got);
    let back = got.header("location").unwrap().to_string();
    assert_eq!(
        back,
        format!("/.holdfast/challenge/return?to={}", enc(path))
    );
    let got = browse(edge, &back, Some(&cookie)).await;
    assert_eq!(got.status, 303, "{}", got.text());
    assert_eq!(got.header("location"), Some(path));
    cookie
}

fn rejected(metrics: &str, reason: &str) -> f64 {
    sample(
        metrics,
        "holdfast_challenge_rejected_total",
        &[("reason", reason)],
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_block_as_written_challenges_browsers_and_answers_apis_with_json() {
    let origin = Origin::text("hello").await;
    let edge = Edge::start(
        &edge_config(2, &format!("{ISSUE_BLOCK}{BASIC_POOL}")),
        &[("origin", origin.addr.to_string())],
    );
    let page = browse(&edge, "/protected/x", None).await;
    assert_eq!(page.status, 403, "{}", page.text());
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let html = page.text();
    assert!(
        html.contains("action=\"/.holdfast/challenge/verify\""),
        "{html}"
    );
    assert!(html.contains("<noscript>") && html.contains("action=\"/.holdfast/challenge/nojs\""));
    assert!(
        html.contains("<script>") && !html.contains(" src="),
        "inline only: {html}"
    );
    for foreign in ["http://", "https://", "//cdn", "src=\"//"] {
        assert!(!html.contains(foreign), "{foreign} in {html}");
    }
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let id = page.header("x-request-id").unwrap();
    assert!(html.contains(id), "the page names the request id");
    assert_eq!(field(&html, "to"), "/protected/x");
    // The default difficulty (16) from the missing [challenge] table.
    assert!(html.contains("data-d=\"16\""), "{html}");

    let api = request(
        "GET",
        &edge.url("/protected/x"),
        &[("accept", "application/json")],
        "",
    )
    .await;
    assert_eq!(api.status, 403);
    let json = api.json();
    assert_eq!(json["reason"], "no_cookie", "{json}");
    assert_eq!(json["error"], "challenge required");
    assert_eq!(
        json["request_id"],
        api.header("x-request-id").unwrap(),
        "the body names the request's own id: {json}"
    );
    assert_eq!(origin.requests(), 0);

    assert_eq!(browse(&edge, "/wp-admin/x", None).await.status, 403);
    assert_eq!(browse(&edge, "/other", None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solved_proof_of_work_sets_a_cookie_that_passes_and_is_never_rechallenged() {
    let origin = Origin::text("protected content").await;
    let edge = challenged_edge(&origin, KEY_A, "");
    let cookie = solve(&edge, "/protected/page?x=1&y=2").await;
    for _ in 0..3 {
        let got = browse(&edge, "/protected/page?x=1&y=2", Some(&cookie)).await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(got.text(), "protected content");
    }
    // An API client with the cookie passes too.
    let got = request(
        "GET",
        &edge.url("/protected/api"),
        &[
            ("accept", "application/json"),
            ("user-agent", UA),
            ("cookie", &format!("other=1; holdfast_challenge={cookie}")),
        ],
        "",
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    let metrics = edge.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "holdfast_challenge_solved_total",
            &[("method", "pow")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "holdfast_challenge_passed_total"),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "holdfast_challenge_issued_total",
            &[("format", "html")]
        ),
        Some(1.0)
    );
    let status = edge.status().await;
    let module = module_status(&status, "challenge");
    assert_eq!(module["challenge"]["passed_by_cookie"], 4, "{module}");
    assert_eq!(module["challenge"]["solved"]["pow"], 1, "{module}");
    assert_eq!(module["challenge"]["key_count"], 1, "{module}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_solution_and_a_tampered_token_are_refused() {
    let origin = Origin::text("protected content").await;
    let edge = challenged_edge(&origin, KEY_A, "");
    let html = browse(&edge, "/protected/x", None).await.text();
    let token = field(&html, "c");
    let bad = (0u32..)
        .map(|n| n.to_string())
        .find(|n| !holdfast_challenge::solves(&token, n, 8))
        .unwrap();
    let verify = edge.url("/.holdfast/challenge/verify");
    let got = request(
        "POST",
        &verify,
        &[HTML, ("user-agent", UA)],
        &format!("c={}&n={bad}&to=/protected/x", enc(&token)),
    )
    .await;
    assert_eq!(got.status, 403, "{}", got.text());
    assert!(got.header("set-cookie").is_none());
    assert!(got.text().contains("bad_solution"), "{}", got.text());
    assert!(
        got.text().contains(got.header("x-request-id").unwrap()),
        "{}",
        got.text()
    );
    // The same wrong answer from an API client: JSON with the real id and its own detail.
    let got = request(
        "POST",
        &verify,
        &[("accept", "application/json"), ("user-agent", UA)],
        &format!("c={}&n={bad}&to=/protected/x", enc(&token)),
    )
    .await;
    assert_eq!(got.status, 403, "{}", got.text());
    let json = got.json();
    assert_eq!(json["reason"], "bad_solution", "{json}");
    assert_eq!(
        json["request_id"],
        got.header("x-request-id").unwrap(),
        "{json}"
    );
    let detail = json["detail"].as_str().unwrap();
    assert!(detail.contains("proof of work"), "{json}");
    assert!(
        !detail.contains("API clients cannot"),
        "the no-cookie text: {json}"
    );
    // A token with its difficulty lowered no longer carries our signature.
    let easier = token.replacen(".8.", ".1.", 1);
    let nonce = holdfast_challenge::solve(&easier, 1);
    let got = request(
        "POST",
        &verify,
        &[("accept", "application/json"), ("user-agent", UA)],
        &format!("c={}&n={nonce}&to=/", enc(&easier)),
    )
    .await;
    assert_eq!(got.status, 403);
    assert_eq!(got.json()["reason"], "forged");
    // A GET on the form endpoint is not an answer.
    let got = request("GET", &verify, &[], "").await;
    assert_eq!(got.status, 405);
    let got = request("POST", &edge.url("/.holdfast/challenge/other"), &[], "").await;
    assert_eq!(got.status, 404);
    // An oversize body is refused before any check.
    let got = request("POST", &verify, &[], &"c=".repeat(10_000)).await;
    assert_eq!(got.status, 413, "{}", got.text());
    let metrics = edge.metrics().await;
    assert_eq!(rejected(&metrics, "bad_solution"), 2.0);
    assert_eq!(rejected(&metrics, "forged"), 1.0);
    assert_eq!(origin.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_wrong_ip_and_wrong_ua_cookies_are_refused() {
    let origin = Origin::text("protected content").await;
    let edge = challenged_edge(&origin, KEY_A, "");
    let ours = signer(KEY_A);
    let now = SystemTime::now();
    let cases = [
        (
            "forged",
            signer(KEY_B).cookie(localhost(), UA.as_bytes(), now),
        ),
        ("forged", "c1.99999999999.AAAA.BBBB.CCCC".to_string()),
        (
            "expired",
            ours.cookie(
                localhost(),
                UA.as_bytes(),
                now - Duration::from_secs(2 * 24 * 3600),
            ),
        ),
        (
            "wrong_ip",
            ours.cookie("10.9.9.9".parse().unwrap(), UA.as_bytes(), now),
        ),
        (
            "wrong_ua",
            ours.cookie(localhost(), b"another-browser", now),
        ),
    ];
    for (reason, cookie) in &cases {
        let got = browse(&edge, "/protected/x", Some(cookie)).await;
        assert_eq!(got.status, 403, "{reason}: {}", got.text());
        assert!(
            got.text().contains("/.holdfast/challenge/verify"),
            "{reason}: a new challenge"
        );
        let api = request(
            "GET",
            &edge.url("/protected/x"),
            &[
                ("accept", "application/json"),
                ("user-agent", UA),
                ("cookie", &format!("holdfast_challenge={cookie}")),
            ],
            "",
        )
        .await;
        assert_eq!(api.status, 403);
        assert_eq!(api.json()["reason"], *reason);
    }
    // The same signer's cookie for this client is good: the refusals were for their reasons.
    let good = ours.cookie(localhost(), UA.as_bytes(), now);
    assert_eq!(browse(&edge, "/protected/x", Some(&good)).await.status, 200);
    // Bound to the /24: from 127.0.1.1 the cookie made for 127.0.0.1 is the wrong address.
    let got = get_from(
        "127.0.1.1".parse().unwrap(),
        &edge.url("/protected/x"),
        &[
            ("accept", "application/json"),
            ("user-agent", UA),
            ("cookie", &format!("holdfast_challenge={good}")),
        ],
    )
    .await;
    assert_eq!(got.status, 403);
    assert_eq!(got.json()["reason"], "wrong_ip");
    let metrics = edge.metrics().await;
    assert_eq!(rejected(&metrics, "forged"), 4.0);
    assert_eq!(rejected(&metrics, "expired"), 2.0);
    assert_eq!(rejected(&metrics, "wrong_ip"), 3.0);
    assert_eq!(rejected(&metrics, "wrong_ua"), 2.0);
    assert_eq!(origin.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_from_another_instance_with_the_shared_key_passes_also_after_rotation() {
    let origin = Origin::text("protected content").await;
    let first = challenged_edge(&origin, KEY_A, "");
    let second = challenged_edge(&origin, KEY_A, "");
    let cookie = solve(&first, "/protected/x").await;
    assert_eq!(
        browse(&second, "/protected/x", Some(&cookie)).await.status,
        200
    );

    // A damaged key file is refused on reload; the running keys stay.
    std::fs::write(second.dir.path().join("challenge.keys"), "00ff\n").unwrap();
    let (_, errors) = second.reload_rejected();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("challenge.keys") && e.contains("at least 32")),
        "{errors:?}"
    );
    assert_eq!(
        browse(&second, "/protected/x", Some(&cookie)).await.status,
        200
    );

    // Rotation on the second instance: a new signing key, the old one second.
    std::fs::write(
        second.dir.path().join("challenge.keys"),
        format!("{KEY_B}\n{KEY_A}\n"),
    )
    .unwrap();
    second.reload_applied();
    assert_eq!(
        browse(&second, "/protected/x", Some(&cookie)).await.status,
        200
    );
    // New cookies are signed with the new key.
    let fresh = solve(&second, "/protected/y").await;
    assert_eq!(
        browse(&second, "/protected/y", Some(&fresh)).await.status,
        200
    );
    let status = second.status().await;
    assert_eq!(
        module_status(&status, "challenge")["challenge"]["key_count"],
        2
    );
    // Only the first instance still lacks the new key: the new cookie is forged there.
    let got = browse(&first, "/protected/y", Some(&fresh)).await;
    assert_eq!(got.status, 403);
    assert_eq!(rejected(&first.metrics().await, "forged"), 1.0);
    // A signer outside both edges with the new key verifies what the second made.
    assert_eq!(
        signer(KEY_B).check_cookie(&fresh, localhost(), UA.as_bytes(), SystemTime::now()),
        Ok(())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_no_javascript_form_passes_after_the_wait_and_not_before() {
    let origin = Origin::text("protected content").await;
    let edge = challenged_edge(&origin, KEY_A, "");
    let html = browse(&edge, "/protected/text", None).await.text();
    let noscript = html
        .split("<noscript>")
        .nth(1)
        .and_then(|s| s.split("</noscript>").next())
        .unwrap();
    assert!(noscript.contains("type=\"submit\""), "{noscript}");
    let token = field(noscript, "t");
    let body = format!("t={}&to={}", enc(&token), enc(&field(noscript, "to")));
    let nojs = edge.url("/.holdfast/challenge/nojs");
    // At once: too early, a page that says wait (with the form again), no cookie.
    let got = request("POST", &nojs, &[HTML, ("user-agent", "w3m/0.5.3")], &body).await;
    assert_eq!(got.status, 429, "{}", got.text());
    assert!(got.header("set-cookie").is_none());
    assert!(got.header("retry-after").is_some());
    assert!(
        got.text().contains("wait") || got.text().contains("Wait"),
        "{}",
        got.text()
    );
    assert_eq!(field(&got.text(), "t"), token);
    // After the wait (1s), the same form passes.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let got = loop {
        let got = request("POST", &nojs, &[HTML, ("user-agent", "w3m/0.5.3")], &body).await;
        if got.status != 429 || std::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(got.status, 303, "{}", got.text());
    let cookie = set_cookie(&got);
    let back = got.header("location").unwrap().to_string();
    let got = request(
        "GET",
        &edge.url(&back),
        &[
            ("user-agent", "w3m/0.5.3"),
            ("cookie", &format!("holdfast_challenge={cookie}")),
        ],
        "",
    )
    .await;
    assert_eq!(got.status, 303);
    assert_eq!(got.header("location"), Some("/protected/text"));
    let got = request(
        "GET",
        &edge.url("/protected/text"),
        &[
            ("user-agent", "w3m/0.5.3"),
            ("cookie", &format!("holdfast_challenge={cookie}")),
        ],
        "",
    )
    .await;
    assert_eq!(got.status, 200);
    let metrics = edge.metrics().await;
    assert!(rejected(&metrics, "too_early") >= 1.0);
    assert_eq!(
        sample(
            &metrics,
            "holdfast_challenge_solved_total",
            &[("method", "nojs")]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_without_the_nojs_path_says_javascript_is_needed() {
    let origin = Origin::text("protected content").await;
    let edge = Edge::start_in_dir(
        &edge_config(
            2,
            &CHALLENGED.replace(
                "action = \"challenge\"",
                "action = \"challenge\"\nnojs = false\ndifficulty = 4",
            ),
        ),
        &[
            ("origin", origin.addr.to_string()),
            ("challenge", String::new()),
        ],
        |dir| std::fs::write(dir.join("challenge.keys"), KEY_A).unwrap(),
    );
    let html = browse(&edge, "/protected/x", None).await.text();
    assert!(html.contains("needs JavaScript"), "{html}");
    assert!(!html.contains("/.holdfast/challenge/nojs"), "{html}");
    assert!(
        html.contains("data-d=\"4\""),
        "the rule's difficulty: {html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_comes_back_without_the_cookie_gets_the_loop_page() {
    let origin = Origin::text("protected content").await;
    let edge = challenged_edge(&origin, KEY_A, "");
    let got = browse(
        &edge,
        "/.holdfast/challenge/return?to=%2Fprotected%2Fx",
        None,
    )
    .await;
    assert_eq!(got.status, 403);
    let html = got.text();
    assert!(html.contains("Cookies seem to be blocked"), "{html}");
    assert!(
        !html.contains("/.holdfast/challenge/verify"),
        "not another challenge"
    );
    assert!(html.contains("href=\"/protected/x\""), "{html}");
    let api = request(
        "GET",
        &edge.url("/.holdfast/challenge/return?to=/protected/x"),
        &[("accept", "application/json")],
        "",
    )
    .await;
    assert_eq!(api.json()["reason"], "cookie_not_returned");
    assert_eq!(
        metric(&edge.metrics().await, "holdfast_challenge_loop_pages_total"),
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_return_target_never_leaves_the_host() {
    let origin = Origin::text("protected content").await;
    let edge = challenged_edge(&origin, KEY_A, "");
    let cookie = solve(&edge, "/protected/x").await;
    let evil = [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "evil.example",
        "javascript:alert(1)",
    ];
    for to in evil {
        let got = browse(
            &edge,
            &format!("/.holdfast/challenge/return?to={}", enc(to)),
            Some(&cookie),
        )
        .await;
        assert_eq!(got.status, 303, "{to}");
        assert_eq!(got.header("location"), Some("/"), "{to}");
    }
    // A solution posted with an outside target still returns to this host only.
    let html = browse(&edge, "/protected/z", None).await.text();
    let token = field(&html, "c");
    let nonce = holdfast_challenge::solve(&token, 8);
    let got = request(
        "POST",
        &edge.url("/.holdfast/challenge/verify"),
        &[HTML, ("user-agent", UA)],
        &format!("c={}&n={nonce}&to={}", enc(&token), enc("//evil.example/x")),
    )
    .await;
    assert_eq!(got.status, 303);
    assert_eq!(
        got.header("location"),
        Some("/.holdfast/challenge/return?to=/")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_challenge_opens_critical_routes_and_follows_its_policy_elsewhere() {
    let origin = Origin::text("protected content").await;
    let edge = challenged_edge(&origin, KEY_A, "");
    assert!(edge.running().fail_challenge(true));
    // Critical route: open.
    let got = browse(&edge, "/protected/login", None).await;
    assert_eq!(got.status, 200, "{}", got.text());
    // Elsewhere the default policy, closed: a 403 from the edge, never a 5xx.
    let got = browse(&edge, "/protected/x", None).await;
    assert_eq!(got.status, 403, "{}", got.text());
    assert!(got.text().contains("could not run"), "{}", got.text());
    let api = request(
        "GET",
        &edge.url("/protected/x"),
        &[("accept", "application/json")],
        "",
    )
    .await;
    assert_eq!(api.status, 403);
    assert_eq!(api.json()["reason"], "challenge_unavailable");
    let metrics = edge.metrics().await;
    assert_eq!(
        metric(&metrics, "holdfast_challenge_fail_open_total"),
        Some(1.0)
    );
    assert!(
        sample(
            &metrics,
            "holdfast_module_errors_total",
            &[("module", "challenge"), ("kind", "injected")]
        )
        .unwrap_or(0.0)
            >= 3.0,
        "{metrics}"
    );
    let status = edge.status().await;
    assert_eq!(module_status(&status, "challenge")["fail_policy"], "closed");

    // With fail_policy = "open" every route passes while it fails.
    let vars = [
        ("origin", origin.addr.to_string()),
        ("challenge", "fail_policy = \"open\"".to_string()),
    ];
    edge.rewrite(&edge_config(2, CHALLENGED), &vars);
    edge.reload_applied();
    assert!(edge.running().fail_challenge(true));
    assert_eq!(browse(&edge, "/protected/x", None).await.status, 200);
    assert!(edge.running().fail_challenge(false));
    assert_eq!(browse(&edge, "/protected/x", None).await.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_turns_the_challenge_off_and_on() {
    let origin = Origin::text("protected content").await;
    let edge = challenged_edge(&origin, KEY_A, "");
    assert_eq!(browse(&edge, "/protected/x", None).await.status, 403);
    let got = within_limit(post(&edge.admin_url("/modules/challenge/disable"))).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(browse(&edge, "/protected/x", None).await.status, 200);
    let status = edge.status().await;
    assert_eq!(module_status(&status, "challenge")["state"], "disabled");
    let got = within_limit(post(&edge.admin_url("/modules/challenge/enable"))).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(browse(&edge, "/protected/x", None).await.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_key_is_kept_in_state_dir_across_a_restart() {
    let origin = Origin::text("protected content").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = edge_config_with(
        2,
        &format!("state_dir = {:?}", state.display().to_string()),
        &format!("{ISSUE_BLOCK}{BASIC_POOL}"),
    )
    .replace("requests = 5", "requests = 1000");
    let path = dir.path().join("edge.toml");
    std::fs::write(
        &path,
        render(&config, &[("origin", origin.addr.to_string())]),
    )
    .unwrap();
    let start = || holdfast::Running::start(holdfast::ConfigSource::File(path.clone())).unwrap();
    let running = start();
    let key_file = state.join("challenge-key");
    let text = std::fs::read_to_string(&key_file).unwrap();
    let keys = Keys::parse(&text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by the owner only: {mode:o}");
    }
    running.shutdown();
    let running = start();
    assert_eq!(
        Keys::parse(&std::fs::read_to_string(&key_file).unwrap()).unwrap(),
        keys
    );
    // A cookie made with that key passes the restarted edge.
    let cookie = Signer::new(
        keys,
        Settings {
            cookie_ttl: Duration::from_secs(3600),
            token_ttl: Duration::from_secs(600),
            ipv4_prefix: 24,
            ipv6_prefix: 64,
            nojs_wait: Duration::from_secs(5),
        },
    )
    .cookie(localhost(), UA.as_bytes(), SystemTime::now());
    let got = request(
        "GET",
        &format!("http://{}/protected/x", running.http_addrs[0]),
        &[
            HTML,
            ("user-agent", UA),
            ("cookie", &format!("holdfast_challenge={cookie}")),
        ],
        "",
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    blocking(move || running.shutdown());
}

#[test]
fn a_malformed_key_file_is_refused_at_start_and_by_check() {
    for (keys, error) in [
        ("0011", "line 1: the key is 2 bytes; at least 32 are needed"),
        ("not hex at all", "line 1: not a hex key"),
        ("# nothing\n", "no key in the file"),
        (&format!("{KEY_A}\n{KEY_B}\n{KEY_A}\n"), "3 keys; at most 2"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("challenge.keys"), keys).unwrap();
        let path = dir.path().join("edge.toml");
        std::fs::write(
            &path,
            render(
                &edge_config(2, CHALLENGED),
                &[
                    ("origin", "127.0.0.1:9".to_string()),
                    ("challenge", String::new()),
                ],
            ),
        )
        .unwrap();
        let err = match holdfast::Running::start(holdfast::ConfigSource::File(path.clone())) {
            Ok(_) => panic!("started with key file {keys:?}"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("challenge.keys") && err.contains(error),
            "{err}"
        );
        let (code, stdout, stderr) =
            holdfast_cmd(&[std::ffi::OsStr::new("check"), path.as_os_str()]);
        assert_eq!(code, Some(1), "{stdout}{stderr}");
        assert!(
            stdout.contains("challenge.keys:") && stdout.contains(error),
            "{stdout}"
        );
    }
    // Too large: read no further than the limit.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("challenge.keys"), "0".repeat(10_000)).unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(
        &path,
        render(
            &edge_config(2, CHALLENGED),
            &[
                ("origin", "127.0.0.1:9".to_string()),
                ("challenge", String::new()),
            ],
        ),
    )
    .unwrap();
    let (code, stdout, _) = holdfast_cmd(&[std::ffi::OsStr::new("check"), path.as_os_str()]);
    assert_eq!(code, Some(1));
    assert!(
        stdout.contains("challenge.keys:") && stdout.contains("larger than"),
        "{stdout}"
    );
}

/// Debian's Chromium, headless, solves the JavaScript challenge: the page's script finds the
/// nonce (WebCrypto: 127.0.0.1 is a secure context), posts it, follows the return check with
/// the cookie and lands on the origin's content. Fails, saying so, where Chromium is not
/// installed (`.ci/run` installs it), as the Redis tests do without `redis-server`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_solves_the_javascript_challenge() {
    let browser = ["chromium", "chromium-browser"].into_iter().find(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(browser) = browser else {
        panic!(
            "chromium is not on PATH: this test needs Debian's chromium package \
             (apt-get install chromium; .ci/run installs it)"
        );
    };
    let origin = Origin::text("protected content, reached by the browser").await;
    let edge = challenged_edge(&origin, KEY_A, "");
    let profile = tempfile::tempdir().unwrap();
    let url = edge.url("/protected/browser?q=1");
    let args = [
        "--headless".to_string(),
        "--no-sandbox".to_string(),
        "--disable-gpu".to_string(),
        "--disable-quic".to_string(),
        "--no-first-run".to_string(),
        "--disable-background-networking".to_string(),
        "--disable-component-update".to_string(),
        "--disable-sync".to_string(),
        format!("--user-data-dir={}", profile.path().display()),
        "--virtual-time-budget=30000".to_string(),
        "--dump-dom".to_string(),
        url,
    ];
    let out = blocking(move || {
        let mut child = std::process::Command::new(browser)
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    });
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("protected content, reached by the browser"),
        "the browser did not get through: {dom}"
    );
    let metrics = edge.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "holdfast_challenge_solved_total",
            &[("method", "pow")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "holdfast_challenge_passed_total"),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "holdfast_challenge_loop_pages_total"),
        Some(0.0)
    );
}

/// A header rule before the challenge rule: a client that passes by cookie gets the edit too
/// (the challenge's outcome carries the effects of the rules before it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_client_keeps_the_effects_of_the_rules_before_the_challenge() {
    let origin = Origin::text("protected content").await;
    let tag_rule = "\n[[rules]]\nid = \"tag\"\nexpr = 'true'\naction = \"set_header\"\n\
                    header = \"x-shield-tag\"\nvalue = \"seen\"\n";
    let edge = challenged_edge(&origin, KEY_A, tag_rule);
    let page = browse(&edge, "/protected/page", None).await;
    assert_eq!(page.status, 403, "{}", page.text());
    assert_eq!(origin.requests(), 0);
    let cookie = solve(&edge, "/protected/page").await;
    let got = browse(&edge, "/protected/page", Some(&cookie)).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(
        origin
            .last()
            .headers
            .get("x-shield-tag")
            .map(|v| v.to_str().unwrap()),
        Some("seen")
    );
    // Off the challenged paths the header rule alone applies.
    let got = browse(&edge, "/open", None).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(
        origin
            .last()
            .headers
            .get("x-shield-tag")
            .map(|v| v.to_str().unwrap()),
        Some("seen")
    );
}
