//! `holdfast demo`, started in-process as `main.rs` does: the embedded configuration in
//! front of the demo origin shows a page, a timeout, an origin failure passed through, an
//! unreachable origin, and the admin plane.

use crate::support::*;

struct Demo {
    running: Option<holdfast::Running>,
    // Dropped after the edge: the origin stops last.
    _origin: holdfast::demo::DemoOrigin,
}

impl Demo {
    fn start() -> Demo {
        let origin = holdfast::demo::DemoOrigin::start().unwrap();
        let any = "127.0.0.1:0".parse().unwrap();
        let source = holdfast::demo::config(any, any, origin.addr).unwrap();
        let running =
            holdfast::Running::start(source).unwrap_or_else(|e| panic!("demo did not start: {e}"));
        Demo {
            running: Some(running),
            _origin: origin,
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "http://{}{path}",
            self.running.as_ref().unwrap().http_addrs[0]
        )
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.as_ref().unwrap().admin_addr)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
        }
    }
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

    let failing = get(&demo.url("/fail?status=503")).await;
    assert_eq!(failing.status, 503);
    assert!(
        failing.text().contains("Failing on demand"),
        "passed through from the origin: {}",
        failing.text()
    );

    let down = get(&demo.url("/down/")).await;
    assert_eq!(down.status, 502);
    let page = down.text();
    assert!(page.contains("<h1>502 Bad Gateway</h1>"), "{page}");
    assert!(page.contains("Failed: <b>origin</b>"), "{page}");
    assert!(
        page.contains(down.header("x-request-id").unwrap()),
        "{page}"
    );

    let status = get(&demo.admin_url("/status")).await;
    assert_eq!(status.status, 200);
    let status = status.json();
    assert_eq!(status["config"]["source"], "(embedded demo config)");
    assert_eq!(status["config"]["generation"], 1);
    let pools: Vec<&str> = status["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(pools, ["demo-origin", "nowhere"]);

    // The embedded configuration reloads like a file.
    let reload = post(&demo.admin_url("/reload")).await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert_eq!(reload.json()["generation"], 2);
    drop(blocking(|| demo));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_tours_failover_cache_limits_and_rules() {
    let demo = blocking(Demo::start);

    // The failover chain: "nowhere" refuses; every request is still served by the next
    // pool, and after a few failures in a row the route fails over for good.
    eventually(
        "the route failed over",
        std::time::Duration::from_secs(10),
        || async {
            let got = within_limit(get(&demo.url("/failover/"))).await;
            assert_eq!(got.status, 200, "{}", got.text());
            route_status(&get(&demo.admin_url("/status")).await.json(), "failover")["active"]
                == "demo-origin"
        },
    )
    .await;
    let page = get(&demo.admin_url("/")).await.text();
    assert!(
        page.contains("route failover failed over to pool demo-origin"),
        "{page}"
    );

    // The cache: a miss, then a hit.
    let first = get(&demo.url("/cached")).await;
    let second = get(&demo.url("/cached")).await;
    assert!(
        first
            .header("cache-status")
            .unwrap()
            .contains("fwd=uri-miss"),
        "{:?}",
        first.header("cache-status")
    );
    assert!(
        second.header("cache-status").unwrap().contains("hit"),
        "{:?}",
        second.header("cache-status")
    );

    // The limit: 3 a minute, then 429 with Retry-After.
    let mut limited = Vec::new();
    for _ in 0..4 {
        limited.push(get(&demo.url("/limited")).await);
    }
    let codes: Vec<u16> = limited.iter().map(|g| g.status.as_u16()).collect();
    assert_eq!(codes, [200, 200, 200, 429]);
    assert!(limited[3].header("retry-after").is_some());

    // The rule.
    assert_eq!(get(&demo.url("/wp-login.php")).await.status, 403);

    let tour = holdfast::demo::instructions(
        demo.running.as_ref().unwrap().http_addrs[0],
        demo.running.as_ref().unwrap().admin_addr,
    );
    for path in [
        "/failover/",
        "/cached",
        "/limited",
        "/wp-login.php",
        "operator page",
    ] {
        assert!(tour.contains(path), "{path} in {tour}");
    }
}
