//! `holdfast demo`, started in-process as `main.rs` does (every port 0): each step of the
//! printed tour, run as the command it prints would — pages, timeouts and origin failures;
//! failover to origin b when a is stopped from the admin plane, the fallback page with both
//! down, and back; the cache, the rate limit, the rule, the challenge's JSON; the 18 Nov 2025
//! replay rejected with traffic unaffected; the steered DNS name following the healthy
//! origin.

use crate::support::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use http::Request;
use std::net::{IpAddr, SocketAddr};

struct Demo {
    demo: Option<holdfast::demo::Demo>,
}

impl Demo {
    fn start() -> Demo {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let addrs = holdfast::demo::DemoAddrs {
            listen: any,
            admin: any,
            dns: any,
        };
        let demo = holdfast::demo::Demo::start(&addrs)
            .unwrap_or_else(|e| panic!("demo did not start: {e}"));
        Demo { demo: Some(demo) }
    }

    fn demo(&self) -> &holdfast::demo::Demo {
        self.demo.as_ref().unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.demo().running().http_addrs[0])
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.demo().running().admin_addr)
    }

    fn origin_ip(&self, name: &str) -> IpAddr {
        self.demo().tour().origin_addr(name).unwrap().ip()
    }

    async fn status(&self) -> serde_json::Value {
        get(&self.admin_url("/status")).await.json()
    }

    /// `curl -X POST ADMIN/demo/origins/NAME/ACTION`.
    async fn switch(&self, name: &str, action: &str) {
        let got = post(&self.admin_url(&format!("/demo/origins/{name}/{action}"))).await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(got.json()["running"], action == "start", "{}", got.text());
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(d) = self.demo.take() {
            d.shutdown();
        }
    }
}

/// The A answer for `name` from the demo's DNS server, over UDP.
async fn resolve(dns: SocketAddr, name: &str) -> Vec<IpAddr> {
    let mut m = Message::new(9, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&m.to_vec().unwrap(), dns).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = within("a DNS answer", sock.recv(&mut buf)).await.unwrap();
    let r = Message::from_vec(&buf[..n]).unwrap();
    r.answers
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_pages_timeouts_failures_and_status() {
    let demo = blocking(Demo::start);

    let home = get(&demo.url("/")).await;
    assert_eq!(home.status, 200);
    assert!(
        home.text().contains("<h1>Holdfast demo origin</h1>"),
        "{}",
        home.text()
    );
    assert_eq!(home.header("x-served-by"), Some("holdfast-demo"));
    assert_eq!(home.header("x-demo-origin"), Some("a"));
    assert!(home.header("x-request-id").is_some());
    assert_eq!(get(&demo.url("/about")).await.status, 200);

    let within = get(&demo.url("/slow?ms=10")).await;
    assert_eq!(within.status, 200);
    assert!(
        within.text().contains("Answered after 10 ms"),
        "{}",
        within.text()
    );
    let slow = get_with(
        &demo.url("/slow?ms=3000"),
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(slow.status, 504, "{}", slow.text());
    assert_eq!(slow.json()["failed"], "origin");
    assert_eq!(
        slow.json()["request_id"],
        slow.header("x-request-id").unwrap()
    );

    let failing = get(&demo.url("/fail?status=503")).await;
    assert_eq!(failing.status, 503);
    assert!(
        failing.text().contains("Failing on demand"),
        "{}",
        failing.text()
    );

    let down = get(&demo.url("/down/")).await;
    assert_eq!(down.status, 502);
    let page = down.text();
    assert!(page.contains("<h1>502 Bad Gateway</h1>"), "{page}");
    assert!(
        page.contains(down.header("x-request-id").unwrap()),
        "{page}"
    );

    let status = demo.status().await;
    assert_eq!(status["config"]["source"], "(embedded demo config)");
    assert_eq!(status["config"]["generation"], 1);
    let pools: Vec<&str> = status["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(pools, ["origin-a", "origin-b", "nowhere"]);
    assert_eq!(status["demo"]["origins"][0]["running"], true, "{status}");
    assert_eq!(
        artifact_status(&status, "bot-features")["active"]["version"],
        1
    );

    // The embedded configuration reloads like a file.
    let reload = post(&demo.admin_url("/reload")).await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert_eq!(reload.json()["generation"], 2);
    drop(blocking(|| demo));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_tours_the_cache_the_limit_the_rule_and_the_challenge() {
    let demo = blocking(Demo::start);

    // The cache: a miss, then a hit.
    let first = get(&demo.url("/cached")).await;
    let second = get(&demo.url("/cached")).await;
    let cs = |g: &Got| g.header("cache-status").unwrap_or("").to_string();
    assert!(cs(&first).contains("fwd=uri-miss"), "{}", cs(&first));
    assert!(cs(&second).contains("hit"), "{}", cs(&second));

    // The limit: 3 a minute, then 429 with Retry-After.
    let mut limited = Vec::new();
    for _ in 0..4 {
        limited.push(get(&demo.url("/limited")).await);
    }
    let codes: Vec<u16> = limited.iter().map(|g| g.status.as_u16()).collect();
    assert_eq!(codes, [200, 200, 200, 429]);
    let retry: u64 = limited[3].header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");

    // The rule.
    assert_eq!(get(&demo.url("/wp-login.php")).await.status, 403);

    // The challenge: a browser gets the page, an API client JSON naming its request id.
    let page = get_with(&demo.url("/protected/"), &[("accept", "text/html")]).await;
    assert_eq!(page.status, 403);
    assert!(
        page.text().contains("/.holdfast/challenge/verify"),
        "{}",
        page.text()
    );
    let api = get_with(&demo.url("/protected/"), &[("accept", "application/json")]).await;
    assert_eq!(api.status, 403, "{}", api.text());
    let json = api.json();
    assert_eq!(json["reason"], "no_cookie", "{json}");
    assert_eq!(json["request_id"], api.header("x-request-id").unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_origins_from_the_admin_plane_fails_over_then_serves_the_fallback() {
    let demo = blocking(Demo::start);
    let dns = demo
        .demo()
        .running()
        .dns_addr
        .expect("the demo's DNS server");
    let (a_ip, b_ip) = (demo.origin_ip("a"), demo.origin_ip("b"));
    let served_by = |g: &Got| g.header("x-demo-origin").map(str::to_owned);
    eventually("www.demo.test to answer origin a", LIMIT, || async {
        resolve(dns, holdfast::demo::STEERED_NAME).await == [a_ip]
    })
    .await;
    assert_eq!(served_by(&get(&demo.url("/")).await).as_deref(), Some("a"));
    let page = get(&demo.admin_url("/")).await.text();
    assert!(page.contains("action=\"/demo/origins/a/stop\""), "{page}");

    // Origin a stopped: no error; origin b answers at once, then the route fails over.
    demo.switch("a", "stop").await;
    let got = get(&demo.url("/")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(served_by(&got).as_deref(), Some("b"));
    // `active` is where the latest request went: each try sends one.
    eventually("the site route to fail over to origin-b", LIMIT, || async {
        let got = get(&demo.url("/")).await;
        assert_eq!(got.status, 200, "{}", got.text());
        route_status(&demo.status().await, "site")["active"] == "origin-b"
    })
    .await;
    if b_ip != a_ip {
        eventually("www.demo.test to answer origin b", LIMIT, || async {
            resolve(dns, holdfast::demo::STEERED_NAME).await == [b_ip]
        })
        .await;
    }
    let page = get(&demo.admin_url("/")).await.text();
    assert!(page.contains("action=\"/demo/origins/a/start\""), "{page}");
    assert!(
        page.contains("route site failed over to pool origin-b"),
        "{page}"
    );

    // Both down: the fallback page, from the edge.
    demo.switch("b", "stop").await;
    let fallback = get(&demo.url("/")).await;
    assert_eq!(fallback.status, 503, "{}", fallback.text());
    assert!(
        fallback.text().contains("Down for maintenance"),
        "{}",
        fallback.text()
    );
    assert_eq!(fallback.header("retry-after"), Some("10"));
    eventually("the site route to serve its fallback", LIMIT, || async {
        assert_eq!(get(&demo.url("/")).await.status, 503);
        route_status(&demo.status().await, "site")["active"] == "fallback"
    })
    .await;

    // The page's button is a plain form: a browser posting it goes back to the page.
    let form = send(
        Request::post(demo.admin_url("/demo/origins/a/start"))
            .header("accept", "text/html,application/xhtml+xml")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::default())
            .unwrap(),
    )
    .await;
    assert_eq!(form.status, 303, "{}", form.text());
    assert_eq!(form.header("location"), Some("/"));
    demo.switch("b", "start").await;
    eventually("origin a to serve the site again", LIMIT, || async {
        let got = get(&demo.url("/")).await;
        got.status == 200
            && served_by(&got).as_deref() == Some("a")
            && route_status(&demo.status().await, "site")["active"] == "origin-a"
    })
    .await;
    eventually("www.demo.test to answer origin a again", LIMIT, || async {
        resolve(dns, holdfast::demo::STEERED_NAME).await == [a_ip]
    })
    .await;

    // What is not an origin or an action.
    let got = post(&demo.admin_url("/demo/origins/c/stop")).await;
    assert_eq!(got.status, 404, "{}", got.text());
    assert!(
        got.text().contains("\"a\""),
        "names the origins: {}",
        got.text()
    );
    assert_eq!(
        post(&demo.admin_url("/demo/origins/a/pause")).await.status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nov_18_replay_is_rejected_the_last_good_file_kept_and_traffic_unaffected() {
    let demo = blocking(Demo::start);
    let before = artifact_status(&demo.status().await, "bot-features");
    assert_eq!(before["active"]["version"], 1, "{before}");

    let replay = post(&demo.admin_url("/demo/replay")).await;
    assert_eq!(replay.status, 200, "{}", replay.text());
    let replay = replay.json();
    assert!(
        replay["entries"].as_u64().unwrap() > replay["max_features"].as_u64().unwrap(),
        "{replay}"
    );
    assert_eq!(
        replay["artifact"]["last_rejection"]["reason"], "capacity",
        "the answer carries the verdict: {replay}"
    );

    let status = demo.status().await;
    let artifact = artifact_status(&status, "bot-features");
    assert_eq!(artifact["active"]["version"], 1, "{artifact}");
    assert_eq!(artifact["active"]["source"], "file", "{artifact}");
    assert_eq!(artifact["rejections"], 1, "{artifact}");
    assert_eq!(status["demo"]["replays"], 1, "{status}");
    // The file on disk is the bad one; traffic does not notice.
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(demo.demo().tour().feature_file()).unwrap()).unwrap();
    assert_eq!(
        on_disk["features"].as_array().unwrap().len() as u64,
        replay["entries"]
    );
    assert_eq!(on_disk["version"], 2);
    for path in ["/", "/about", "/cached"] {
        let got = get(&demo.url(path)).await;
        assert_eq!(got.status, 200, "{path}: {}", got.text());
    }
    let page = get(&demo.admin_url("/")).await.text();
    assert!(
        page.contains("artifact bot-features rejected its last file (capacity"),
        "{page}"
    );

    // Again from the page's button (a browser's form): rejected again, back to the page.
    let form = send(
        Request::post(demo.admin_url("/demo/replay"))
            .header("accept", "text/html")
            .body(Body::default())
            .unwrap(),
    )
    .await;
    assert_eq!(form.status, 303, "{}", form.text());
    let artifact = artifact_status(&demo.status().await, "bot-features");
    assert_eq!(artifact["rejections"], 2, "{artifact}");
    assert_eq!(artifact["active"]["version"], 1, "{artifact}");
    assert_eq!(get(&demo.url("/")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_tour_names_each_step_and_its_command() {
    let demo = blocking(Demo::start);
    let tour = demo.demo().instructions();
    let dns = demo.demo().running().dns_addr.unwrap();
    let admin = demo.demo().running().admin_addr;
    for part in [
        format!("http://{admin}/   (live"),
        format!("curl -s -X POST http://{admin}/demo/origins/a/stop"),
        format!("curl -s -X POST http://{admin}/demo/origins/b/stop"),
        format!("curl -s -X POST http://{admin}/demo/replay"),
        format!("dig @{} -p {} www.demo.test. A", dns.ip(), dns.port()),
        "fallback page".to_string(),
        "/cached | grep -i cache-status".to_string(),
        "/limited".to_string(),
        "429 + Retry-After".to_string(),
        "/wp-login.php".to_string(),
        "accept: application/json".to_string(),
        "/protected/".to_string(),
        "18 Nov 2025".to_string(),
    ] {
        assert!(tour.contains(&part), "{part:?} in {tour}");
    }
}

/// Not the demo: its controls answer 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_controls_are_only_in_the_demo() {
    let origin = Origin::text("hello").await;
    let edge = Edge::start(
        &edge_config(1, BASIC_POOL),
        &[("origin", origin.addr.to_string())],
    );
    let got = post(&edge.admin_url("/demo/replay")).await;
    assert_eq!(got.status, 404, "{}", got.text());
    assert!(edge.status().await.get("demo").is_none());
}
