//! Route failover chains (`pools = ["primary", "secondary"]`): a route sends to the first
//! pool of its chain that is not down (every server down by active check, or failed
//! `consecutive_failures` times in a row within its ejection period), and back as soon as an
//! earlier pool is not down. Retries move along the chain. `/status` shows each route's
//! chain and active pool; `holdfast_pool_failover_total{route,from,to}` counts the changes.

use crate::support::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An edge whose route "site" fails over from pool "primary" to pool "secondary"; the
/// `*_extra` text follows each pool's `servers` line.
fn start(
    primary: &[SocketAddr],
    primary_extra: &str,
    secondary: &[SocketAddr],
    secondary_extra: &str,
) -> Edge {
    Edge::start(
        &edge_config(2, CHAIN),
        &chain_vars(primary, primary_extra, secondary, secondary_extra, ""),
    )
}

/// Retries enough to try both primary servers and then the secondary pool, with room for
/// every retry in the budget.
const RETRY_ALONG: &str = r#"
[pools.retry]
attempts = 3
min_per_second = 100
"#;

/// `n` GETs sent together; every one must be a 200 with one of `bodies`.
async fn together_ok(url: &str, n: usize, bodies: &[&str]) {
    let requests = (0..n).map(|_| spawn_get(url.to_owned())).collect();
    all_ok(requests, bodies).await;
}

fn failovers(metrics: &str, from: &str, to: &str) -> f64 {
    sample(
        metrics,
        "holdfast_pool_failover_total",
        &[("route", "site"), ("from", from), ("to", to)],
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pool_down_sends_every_request_to_the_next_and_they_come_back() {
    const N: usize = 20;
    let mut p1 = Killable::start(with_checks("p1", |_| 200)).await;
    let mut p2 = Killable::start(with_checks("p2", |_| 200)).await;
    let s = Origin::start(with_checks("s", |_| 200)).await;
    let edge = start(
        &[p1.addr, p2.addr],
        &format!("{RETRY_ALONG}{SHORT_EJECTIONS}{QUICK_CHECKS}"),
        &[s.addr],
        QUICK_CHECKS,
    );
    let url = edge.url("/page");

    let route = route_status(&edge.status().await, "site");
    assert_eq!(route["pools"], serde_json::json!(["primary", "secondary"]));
    assert_eq!(route["active"], "primary", "{route}");
    together_ok(&url, 4, &["p1", "p2"]).await;
    assert_eq!(s.requests_to("/page"), 0);

    // The whole primary pool dies. Requests sent at once, before any check has noticed, are
    // retried along the chain: no client sees an error.
    p1.kill().await;
    p2.kill().await;
    together_ok(&url, N, &["s"]).await;

    // `active` is the pool the route last chose for a request: polled with requests, each
    // of which must succeed on the secondary pool.
    let polled = AtomicUsize::new(0);
    eventually("the route to fail over to secondary", LIMIT, || async {
        let got = within_limit(get(&url)).await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(got.text(), "s");
        polled.fetch_add(1, Ordering::SeqCst);
        active_pool(&edge, "site").await == "secondary"
    })
    .await;
    together_ok(&url, N, &["s"]).await;
    assert_eq!(
        s.requests_to("/page"),
        2 * N + polled.load(Ordering::SeqCst),
        "the secondary pool took every request, each once"
    );
    let metrics = edge.metrics().await;
    assert!(
        failovers(&metrics, "primary", "secondary") >= 1.0,
        "{metrics}"
    );

    // The primary pool comes back: traffic returns to it.
    p1.restart();
    p2.restart();
    let back = || p1.requests_to("/page") + p2.requests_to("/page");
    let before = back();
    eventually("traffic to return to the primary pool", LIMIT, || async {
        let got = within_limit(get(&url)).await;
        assert_eq!(got.status, 200, "{}", got.text());
        back() > before
    })
    .await;
    assert_eq!(active_pool(&edge, "site").await, "primary");
    let at_secondary = s.requests_to("/page");
    // The primary pool takes every request again.
    together_ok(&url, N, &["p1", "p2"]).await;
    assert_eq!(s.requests_to("/page"), at_secondary);
    let metrics = edge.metrics().await;
    assert!(
        failovers(&metrics, "secondary", "primary") >= 1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_failures_alone_take_a_pool_out_of_the_chain() {
    // No active checks. Each primary server fails once in a row (consecutive_failures = 1):
    // the pool is down for the chain, though the ejection cap (50% of 2) ejects only one.
    let (d1, d2) = (dead_addr(), dead_addr());
    let s = Origin::text("s").await;
    let edge = start(
        &[d1, d2],
        "[pools.retry]\nattempts = 2\nmin_per_second = 100\n\n[pools.outlier]\nconsecutive_failures = 1\nbase_ejection = \"1h\"\nmax_ejection = \"1h\"\n",
        &[s.addr],
        "",
    );

    let url = edge.url("/page");
    for i in 0..20 {
        let got = within_limit(get(&url)).await;
        assert_eq!(got.status, 200, "request {i}: {}", got.text());
        assert_eq!(got.text(), "s");
    }
    assert_eq!(s.requests(), 20);
    assert_eq!(active_pool(&edge, "site").await, "secondary");
    let metrics = edge.metrics().await;
    assert_eq!(
        connect_errors(&metrics, "primary", d1) + connect_errors(&metrics, "primary", d2),
        2.0,
        "the first request tried both primary servers; then the pool was out:\n{metrics}"
    );
    assert!(
        failovers(&metrics, "primary", "secondary") >= 1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_every_routes_chain_and_active_pool() {
    let a = Origin::text("a").await;
    let b = Origin::text("b").await;
    let edge = Edge::start(
        &edge_config(
            1,
            r#"
[[pools]]
name = "one"
servers = ["{a}"]

[[pools]]
name = "two"
servers = ["{b}"]

[[routes]]
name = "single"
match = { path_prefix = "/single/" }
pool = "two"

[[routes]]
name = "chain"
match = { path_prefix = "/" }
pools = ["one", "two"]
"#,
        ),
        &[("a", a.addr.to_string()), ("b", b.addr.to_string())],
    );
    assert_eq!(within_limit(get(&edge.url("/single/x"))).await.text(), "b");
    assert_eq!(within_limit(get(&edge.url("/x"))).await.text(), "a");
    let status = edge.status().await;
    for (name, pools, active) in [
        ("single", serde_json::json!(["two"]), "two"),
        ("chain", serde_json::json!(["one", "two"]), "one"),
    ] {
        let route = route_status(&status, name);
        assert_eq!(route["pools"], pools, "{route}");
        assert_eq!(route["active"], active, "{route}");
    }
}

#[test]
fn chain_errors_are_named_by_key_path() {
    let stdout = check_errors_of(
        r#"
[edge]
listen = ["127.0.0.1:8080"]

[[pools]]
name = "a"
servers = ["127.0.0.1:9000"]

[[pools]]
name = "b"
servers = ["127.0.0.1:9001"]

[[routes]]
name = "both"
match = { path_prefix = "/0/" }
pool = "a"
pools = ["a", "b"]

[[routes]]
name = "neither"
match = { path_prefix = "/1/" }

[[routes]]
name = "empty"
match = { path_prefix = "/2/" }
pools = []

[[routes]]
name = "unknown"
match = { path_prefix = "/3/" }
pools = ["a", "x"]

[[routes]]
name = "twice"
match = { path_prefix = "/" }
pools = ["a", "a"]
"#,
    );
    let line = |key: &str| error_at(&stdout, key);
    assert!(
        line("routes[0].pools").contains("give either pool or pools, not both"),
        "{stdout}"
    );
    let neither = line("routes[1].pool");
    assert!(neither.contains("missing pool"), "{stdout}");
    assert!(
        neither.contains(r#"pools = ["primary", "secondary"]"#),
        "{stdout}"
    );
    line("routes[2].pools");
    assert!(
        line("routes[3].pools[1]").contains(r#"unknown pool "x""#),
        "{stdout}"
    );
    assert!(
        line("routes[4].pools[1]").contains(r#"pool "a" appears twice in the chain"#),
        "{stdout}"
    );
}
