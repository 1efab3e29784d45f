//! The challenge wiring without a server: plan (keys read, nothing written), start (a
//! generated key kept in `state_dir`, owner-only), keep vs new across reloads, the gate's
//! answers (page, JSON, pass, fail-open on critical routes, the `closed` 403), the
//! reserved paths, and the typed status.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;
use holdfast_modules::ModuleMetrics;
use std::net::{IpAddr, Ipv4Addr};

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
const OTHER_KEY: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n";

/// A config with one challenge rule on every route; `edge` and `challenge` add lines.
fn config(dir: &Path, edge: &str, challenge: &str) -> Config {
    let text = format!(
        "[edge]\nlisten = [\"127.0.0.1:8080\"]\n{edge}\n\
         [[pools]]\nname = \"p\"\nservers = [\"127.0.0.1:9000\"]\n\
         [[routes]]\nname = \"shop\"\nmatch = {{ path_prefix = \"/\" }}\npool = \"p\"\n\
         [[routes]]\nname = \"status\"\nmatch = {{ path_prefix = \"/status\" }}\npool = \"p\"\ncritical = true\n\
         [challenge]\n{challenge}\n\
         [[rules]]\nid = \"guard\"\nexpr = 'request.path.startsWith(\"/\")'\naction = \"challenge\"\n"
    );
    holdfast_config::parse(&text, dir).unwrap()
}

fn kind() -> ChallengeKind {
    let registry = prometheus::Registry::new();
    let modules = ModuleMetrics::new(&registry).unwrap();
    ChallengeKind::new(&registry, &modules).unwrap()
}

fn start(
    kind: &ChallengeKind,
    config: &Config,
    previous: Option<&ChallengeRunning>,
) -> Start<ChallengePlan, ChallengeRunning> {
    let plan = kind.plan(config).unwrap().unwrap();
    kind.start(plan, previous, &Links::default())
}

fn new(kind: &ChallengeKind, config: &Config) -> ChallengeRunning {
    match start(kind, config, None) {
        Start::New(r) => r,
        Start::Keep(_) => panic!("kept without a previous instance"),
    }
}

const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

fn view<'a>(headers: &'a HeaderMap, route: &'a str) -> RequestView<'a> {
    RequestView {
        method: &http::Method::GET,
        version: http::Version::HTTP_11,
        headers,
        path: "/cart",
        query: Some("x=1"),
        client_ip: IP,
        tls: false,
        route,
    }
}

const ASK: ChallengeAsk = ChallengeAsk {
    difficulty: 4,
    nojs: true,
};

fn edge_request<'a>(
    method: &'a http::Method,
    path: &'a str,
    headers: &'a HeaderMap,
    body: &'a [u8],
) -> EdgeRequest<'a> {
    EdgeRequest {
        method,
        path,
        query: None,
        headers,
        client_ip: IP,
        tls: true,
        body,
    }
}

#[test]
fn the_plan_reads_keys_and_reports_them_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let kind = kind();
    // No challenge rule: nothing to plan.
    let plain = holdfast_config::parse(
        "[edge]\nlisten = [\"127.0.0.1:8080\"]\n[[pools]]\nname = \"p\"\nservers = [\"127.0.0.1:9000\"]\n[[routes]]\nname = \"r\"\nmatch = {}\npool = \"p\"\n",
        dir.path(),
    )
    .unwrap();
    assert!(kind.plan(&plain).unwrap().is_none());

    let missing = config(dir.path(), "", "keys = \"none.keys\"");
    let errors = kind.plan(&missing).err().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "challenge.keys");
    assert!(errors[0].message.contains("none.keys"), "{}", errors[0]);

    // A damaged generated key in state_dir: the plan says so (a start would fail on it).
    std::fs::create_dir(dir.path().join("state")).unwrap();
    std::fs::write(dir.path().join("state/challenge-key"), "not hex\n").unwrap();
    let damaged = config(dir.path(), "state_dir = \"state\"", "");
    let errors = kind.plan(&damaged).err().unwrap();
    assert_eq!(errors[0].path, "edge.state_dir");
    assert!(errors[0].message.contains("challenge-key"), "{}", errors[0]);
    assert!(errors[0].hint.contains("delete it"), "{}", errors[0]);
}

#[test]
fn a_generated_key_is_written_by_the_start_only_and_read_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), "state_dir = \"state\"", "");
    let key_file = dir.path().join("state/challenge-key");
    let kind = kind();
    let plan = kind.plan(&c).unwrap().unwrap();
    assert!(!key_file.exists(), "a plan writes nothing");
    let Start::New(first) = kind.start(plan, None, &Links::default()) else {
        panic!("not new");
    };
    assert!(key_file.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(first.key_source, key_file.display().to_string());
    // Another process (a new kind, no previous instance) signs with the same key.
    let second = new(&self::kind(), &c);
    assert!(first.keys() == second.keys());
}

#[test]
fn a_reload_keeps_an_unchanged_challenge_and_a_rotated_key_file_makes_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.keys"), KEY).unwrap();
    let c = config(dir.path(), "", "keys = \"c.keys\"");
    let kind = kind();
    let first = new(&kind, &c);
    assert!(matches!(start(&kind, &c, Some(&first)), Start::Keep(_)));
    std::fs::write(dir.path().join("c.keys"), format!("{OTHER_KEY}{KEY}")).unwrap();
    let Start::New(rotated) = start(&kind, &c, Some(&first)) else {
        panic!("a rotated key file was kept");
    };
    assert_eq!(rotated.keys().count(), 2);

    // Without state_dir, a changed setting keeps the in-memory generated key, so pass
    // cookies stay valid across the reload.
    let generated = config(dir.path(), "", "");
    let a = new(&kind, &generated);
    let harder = config(dir.path(), "", "difficulty = 20");
    let Start::New(b) = start(&kind, &harder, Some(&a)) else {
        panic!("a changed setting was kept");
    };
    assert!(a.keys() == b.keys());
    assert_eq!(b.key_source, "generated (in memory)");
}

#[test]
fn the_gate_passes_a_valid_cookie_and_answers_everyone_else() {
    let dir = tempfile::tempdir().unwrap();
    let running = new(&kind(), &config(dir.path(), "", ""));
    // No cookie: the page, with its own CSP.
    let headers = HeaderMap::new();
    let ModuleAction::Respond(page) = running.check(&view(&headers, "shop"), ASK) else {
        panic!("no page");
    };
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.headers.contains_key(header::CONTENT_SECURITY_POLICY));
    assert!(page.body.contains(REQUEST_ID_MARK));
    // An API client: JSON.
    let mut api = HeaderMap::new();
    api.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let ModuleAction::Respond(json) = running.check(&view(&api, "shop"), ASK) else {
        panic!("no JSON");
    };
    assert_eq!(json.headers[header::CONTENT_TYPE], "application/json");
    // A valid cookie passes.
    let cookie = running.signer().cookie(IP, b"", SystemTime::now());
    let mut with = HeaderMap::new();
    with.insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("holdfast_challenge={cookie}")).unwrap(),
    );
    assert_eq!(running.check(&view(&with, "shop"), ASK), ModuleAction::Pass);
    // A forged one is refused and counted.
    let mut forged = HeaderMap::new();
    forged.insert(
        header::COOKIE,
        HeaderValue::from_static("holdfast_challenge=c1.x.y"),
    );
    assert!(matches!(
        running.check(&view(&forged, "shop"), ASK),
        ModuleAction::Respond(_)
    ));

    let status = serde_json::to_value(running.status()).unwrap();
    assert_eq!(status["name"], "challenge");
    assert_eq!(status["challenge"]["issued"]["html"], 2, "{status}");
    assert_eq!(status["challenge"]["issued"]["json"], 1, "{status}");
    assert_eq!(status["challenge"]["passed_by_cookie"], 1, "{status}");
    assert_eq!(
        status["challenge"]["critical_routes"][0], "status",
        "{status}"
    );
}

#[test]
fn a_failing_check_fails_open_on_critical_routes_and_closed_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let running = new(&kind(), &config(dir.path(), "", ""));
    running.set_fault(true);
    let headers = HeaderMap::new();
    assert_eq!(
        running.check(&view(&headers, "status"), ASK),
        ModuleAction::Pass
    );
    let ModuleAction::Respond(page) = running.check(&view(&headers, "shop"), ASK) else {
        panic!("a failing check let a request through on a route that is not critical");
    };
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("could not run"), "{}", page.body);
    let status = running.status();
    assert_eq!(status.challenge.fail_open, 1);

    // `fail_policy = "open"`: everyone passes while it fails.
    let open = new(&kind(), &config(dir.path(), "", "fail_policy = \"open\""));
    open.set_fault(true);
    assert_eq!(open.check(&view(&headers, "shop"), ASK), ModuleAction::Pass);
}

#[test]
fn the_reserved_paths_answer_only_what_they_should() {
    let dir = tempfile::tempdir().unwrap();
    let running = new(&kind(), &config(dir.path(), "", ""));
    assert_eq!(ChallengeGate::reserved_prefix(&running), PREFIX);
    let headers = HeaderMap::new();
    let get = http::Method::GET;
    let post = http::Method::POST;
    let r = running.answer(&edge_request(&get, VERIFY_PATH, &headers, b""));
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers[header::ALLOW], "POST");
    let r = running.answer(&edge_request(
        &get,
        "/.holdfast/challenge/other",
        &headers,
        b"",
    ));
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A wrong solution: refused, counted, with a same-host way back.
    let r = running.answer(&edge_request(
        &post,
        VERIFY_PATH,
        &headers,
        b"c=p1.bad&n=1&to=https%3A%2F%2Fevil.example%2F",
    ));
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("href=\"/\""), "{}", r.body);
    // Back without the cookie: the loop page, counted.
    let r = running.answer(&edge_request(&get, RETURN_PATH, &headers, b""));
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let status = running.status();
    assert_eq!(status.challenge.loop_pages, 1);
    assert_eq!(status.challenge.rejected["forged"], 1);
}

#[test]
fn the_nojs_form_posted_early_is_told_what_is_left_of_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let running = new(&kind(), &config(dir.path(), "", "nojs_wait = \"10s\""));
    let headers = HeaderMap::new();
    let post = http::Method::POST;
    // A form issued 7 s ago: 3 s of the 10 s wait are left.
    let issued = SystemTime::now() - std::time::Duration::from_secs(7);
    let token = running.signer().nojs_token(IP, issued);
    let body = format!("t={token}&to=/cart");
    let r = running.answer(&edge_request(&post, NOJS_PATH, &headers, body.as_bytes()));
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    let retry: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=3).contains(&retry),
        "Retry-After {retry}, 3 s were left"
    );
    assert!(
        r.body.contains(&format!("Wait {retry} second")),
        "{}",
        r.body
    );
    // Just issued: the whole wait is left (rounded up, never more).
    let fresh = running.signer().nojs_token(IP, SystemTime::now());
    let body = format!("t={fresh}&to=/cart");
    let r = running.answer(&edge_request(&post, NOJS_PATH, &headers, body.as_bytes()));
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((9..=10).contains(&retry), "Retry-After {retry} of 10");
}

#[test]
fn the_json_answers_name_the_request_id_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let running = new(&kind(), &config(dir.path(), "", ""));
    let mut api = HeaderMap::new();
    api.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let ModuleAction::Respond(no_cookie) = running.check(&view(&api, "shop"), ASK) else {
        panic!("no JSON");
    };
    assert!(
        no_cookie.body.contains(REQUEST_ID_MARK),
        "{:?}",
        no_cookie.body
    );
    let post = http::Method::POST;
    let bad = running.answer(&edge_request(
        &post,
        VERIFY_PATH,
        &api,
        b"c=p1.bad&n=1&to=/cart",
    ));
    assert!(bad.body.contains(REQUEST_ID_MARK), "{:?}", bad.body);
    let parse = |body: &str| -> serde_json::Value {
        serde_json::from_str(&body.replace(REQUEST_ID_MARK, "id-1")).unwrap()
    };
    let (no_cookie, bad) = (parse(&no_cookie.body), parse(&bad.body));
    assert_eq!(no_cookie["request_id"], "id-1");
    assert_eq!(bad["request_id"], "id-1");
    assert_eq!(bad["reason"], "forged");
    assert_ne!(no_cookie["detail"], bad["detail"], "{bad}");
}
