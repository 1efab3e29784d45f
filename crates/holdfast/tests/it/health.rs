//! Active health checks (`[pools.health]`): every server is checked on its own thread,
//! first at once, then every `interval`; HTTP checks pass on a status within `expect`, TCP
//! checks on a connect. A server starts `unknown` (used like `up`), turns `up` on its first
//! pass, `down` after `unhealthy_after` failures in a row and `up` again after
//! `healthy_after` passes in a row; results alternating inside those thresholds change
//! nothing. A `down` server is not picked. `/status` shows each server's `health`, `since`
//! and `last_check`; `holdfast_upstream_healthy` is 1 while a server may be picked.
//!
//! Tests wait for the origins' own check counters (or for `/status`), never for time.

use crate::support::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// An edge with one pool "app" of `servers` (in that order); `pool` is written after the
/// pool's `servers` line (pool keys first, then its `[pools.*]` tables).
fn start(servers: &[SocketAddr], pool: &str) -> Edge {
    app_edge(2, &server_list(servers), pool, "")
}

/// A `[pools.health]` table checking `HEALTHZ`, with `lines` added.
fn http_checks(lines: &str) -> String {
    format!("[pools.health]\npath = \"{HEALTHZ}\"\n{lines}\n")
}

async fn health(edge: &Edge, addr: SocketAddr) -> String {
    let entry = edge.server("app", addr).await;
    entry["health"]
        .as_str()
        .unwrap_or_else(|| panic!("health is not a string: {entry}"))
        .to_owned()
}

/// Wait (bounded) until server `addr` shows `want` on `/status`.
async fn wait_health(edge: &Edge, addr: SocketAddr, want: &str) {
    eventually(&format!("{addr} to be {want}"), LIMIT, || async {
        health(edge, addr).await == want
    })
    .await;
}

/// `at` must be an RFC 3339 time.
fn assert_time(entry: &serde_json::Value, at: &serde_json::Value) {
    let text = at
        .as_str()
        .unwrap_or_else(|| panic!("not a time string: {at} in {entry}"));
    humantime::parse_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339 ({e}): {entry}"));
}

// --- a server dying and coming back -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_mid_load_costs_no_request_and_comes_back() {
    const N: usize = 20;
    // Server a holds page requests at the gate, so some are in progress when it is killed;
    // its checks pass until then.
    let gate = Gate::new();
    let held = gate.clone();
    let mut a = Killable::start(handler(move |req| {
        let gate = held.clone();
        async move {
            if req.uri().path() == HEALTHZ {
                status(200, "check")
            } else {
                gate.wait().await;
                ok("a")
            }
        }
    }))
    .await;
    let b = Origin::start(with_checks("b", |_| 200)).await;
    // Checks every 2s, two failures to turn down: passive ejection (on the first failure)
    // comes first. Retries on connect failures and resets (the defaults), with room for all.
    let edge = start(
        &[a.addr, b.addr],
        &format!(
            "{}\n[pools.outlier]\nconsecutive_failures = 1\nbase_ejection = \"3s\"\nmax_ejection = \"3s\"\n\n[pools.retry]\nattempts = 1\nmin_per_second = 100\n",
            http_checks("interval = \"2s\"\ntimeout = \"1s\"\nhealthy_after = 2\nunhealthy_after = 2")
        ),
    );
    // The first checks run at start.
    wait_health(&edge, a.addr, "up").await;
    wait_health(&edge, b.addr, "up").await;

    let url = edge.url("/page");
    let wave: Vec<_> = (0..N).map(|_| spawn_get(url.clone())).collect();
    eventually("every request to reach an origin", LIMIT, || async {
        a.requests_to("/page") + b.requests_to("/page") >= N
    })
    .await;
    let held_at_a = a.requests_to("/page");
    assert!(held_at_a >= 1, "round robin sent some requests to a");

    // Kill a with those requests in progress: they are retried on b.
    a.kill().await;
    gate.open();
    all_ok(wave, &["b"]).await;
    assert_eq!(
        b.requests_to("/page"),
        N,
        "b took its own share and a's {held_at_a} retried requests"
    );

    // While a is dead, a second wave: no error either.
    let wave: Vec<_> = (0..N).map(|_| spawn_get(url.clone())).collect();
    all_ok(wave, &["b"]).await;
    assert_eq!(b.requests_to("/page"), 2 * N);

    // Passive ejection saw it first; the 2s checks have not failed twice yet.
    let entry = edge.server("app", a.addr).await;
    assert_eq!(entry["health"], "ejected", "{entry}");
    assert!(
        entry["ejections"].as_u64().is_some_and(|n| n >= 1),
        "{entry}"
    );
    let metrics = edge.metrics().await;
    assert!(ejections_total(&metrics, "app", a.addr) >= 1.0, "{metrics}");
    assert_eq!(healthy(&metrics, "app", a.addr), Some(0.0), "{metrics}");
    assert_eq!(healthy(&metrics, "app", b.addr), Some(1.0), "{metrics}");

    // Later, the active checks turn it down.
    wait_health(&edge, a.addr, "down").await;
    let entry = edge.server("app", a.addr).await;
    assert_eq!(entry["last_check"]["ok"], false, "{entry}");
    assert_time(&entry, &entry["last_check"]["at"]);
    assert_time(&entry, &entry["since"]);
    assert_eq!(
        healthy(&edge.metrics().await, "app", a.addr),
        Some(0.0),
        "a down server may not be picked"
    );
    assert_eq!(health(&edge, b.addr).await, "up");

    // Back on the same port: two passing checks bring it up, and it takes requests again.
    a.restart();
    wait_health(&edge, a.addr, "up").await;
    let entry = edge.server("app", a.addr).await;
    assert_eq!(entry["last_check"]["ok"], true, "{entry}");
    assert_eq!(entry["last_check"]["result"], "200", "{entry}");
    assert_eq!(healthy(&edge.metrics().await, "app", a.addr), Some(1.0));
    let before = a.requests_to("/page");
    eventually("a to serve a page again", LIMIT, || async {
        let got = within_limit(get(&url)).await;
        assert_eq!(got.status, 200, "{}", got.text());
        a.requests_to("/page") > before
    })
    .await;
}

// --- thresholds -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_checks_inside_the_thresholds_change_nothing() {
    // pass, fail, pass, fail, ...: never two failures in a row.
    let origin = Origin::start(with_checks("page", |n| if n % 2 == 0 { 200 } else { 500 })).await;
    let edge = start(&[origin.addr], QUICK_CHECKS);

    let observed = Mutex::new(Vec::new());
    eventually("8 checks at the origin", LIMIT, || async {
        let h = health(&edge, origin.addr).await;
        observed.lock().unwrap().push(h);
        origin.requests_to(HEALTHZ) >= 8
    })
    .await;
    let observed = observed.into_inner().unwrap();
    assert!(
        observed.iter().all(|h| h == "unknown" || h == "up"),
        "the server never left up: {observed:?}"
    );
    assert_eq!(health(&edge, origin.addr).await, "up", "{observed:?}");
    assert_eq!(
        healthy(&edge.metrics().await, "app", origin.addr),
        Some(1.0),
        "{observed:?}"
    );
    let got = within_limit(get(&edge.url("/page"))).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_server_needs_healthy_after_passes_in_a_row() {
    // fail, fail (down), then pass, fail, pass, fail, ...; then only passes.
    let all_pass = Arc::new(AtomicBool::new(false));
    let passing = all_pass.clone();
    let origin = Origin::start(with_checks("page", move |n| {
        if passing.load(Ordering::SeqCst) || (n >= 2 && n % 2 == 0) {
            200
        } else {
            500
        }
    }))
    .await;
    let edge = start(&[origin.addr], QUICK_CHECKS);

    wait_health(&edge, origin.addr, "down").await;
    let base = origin.requests_to(HEALTHZ);
    let observed = Mutex::new(Vec::new());
    eventually("8 more checks at the origin", LIMIT, || async {
        let h = health(&edge, origin.addr).await;
        observed.lock().unwrap().push(h);
        origin.requests_to(HEALTHZ) >= base + 8
    })
    .await;
    let observed = observed.into_inner().unwrap();
    assert!(
        observed.iter().all(|h| h == "down"),
        "one pass at a time does not bring it up: {observed:?}"
    );
    assert_eq!(
        healthy(&edge.metrics().await, "app", origin.addr),
        Some(0.0)
    );

    all_pass.store(true, Ordering::SeqCst);
    wait_health(&edge, origin.addr, "up").await;
    assert_eq!(
        healthy(&edge.metrics().await, "app", origin.addr),
        Some(1.0)
    );
}

/// An origin whose checks fail (503): the first two at once, the later ones only once `gate`
/// is open. `answered` counts the checks it has answered; page requests get 200 `body`.
async fn failing_checks(body: &'static str, gate: &Gate, answered: Arc<AtomicUsize>) -> Origin {
    let gate = gate.clone();
    let arrived = Arc::new(AtomicUsize::new(0));
    Origin::start(handler(move |req| {
        let (gate, answered) = (gate.clone(), answered.clone());
        let n = (req.uri().path() == HEALTHZ).then(|| arrived.fetch_add(1, Ordering::SeqCst));
        async move {
            match n {
                None => ok(body),
                Some(n) => {
                    if n >= 2 {
                        gate.wait().await;
                    }
                    answered.fetch_add(1, Ordering::SeqCst);
                    status(503, "failing")
                }
            }
        }
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_unhealthy_after_failures_the_servers_are_still_used() {
    let gate = Gate::new();
    let (a_checks, b_checks) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let a = failing_checks("a", &gate, a_checks.clone()).await;
    let b = failing_checks("b", &gate, b_checks.clone()).await;
    // The third check waits at the gate, well within its timeout.
    let edge = start(
        &[a.addr, b.addr],
        &http_checks("interval = \"50ms\"\ntimeout = \"30s\"\nunhealthy_after = 3"),
    );

    eventually("two failed checks on each server", LIMIT, || async {
        a_checks.load(Ordering::SeqCst) >= 2 && b_checks.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert_eq!(
        a_checks.load(Ordering::SeqCst),
        2,
        "the gate holds the third"
    );
    assert_eq!(
        b_checks.load(Ordering::SeqCst),
        2,
        "the gate holds the third"
    );
    for addr in [a.addr, b.addr] {
        eventually("the failed checks on /status", LIMIT, || async {
            edge.server("app", addr).await["last_check"]["ok"] == false
        })
        .await;
        let entry = edge.server("app", addr).await;
        assert_eq!(
            entry["health"], "unknown",
            "two failures of three, and no pass yet: {entry}"
        );
    }
    let metrics = edge.metrics().await;
    assert_eq!(healthy(&metrics, "app", a.addr), Some(1.0), "{metrics}");
    assert_eq!(healthy(&metrics, "app", b.addr), Some(1.0), "{metrics}");

    // Requests still go to both servers, which serve them.
    let url = edge.url("/page");
    for _ in 0..4 {
        let got = within_limit(get(&url)).await;
        assert_eq!(got.status, 200, "{}", got.text());
    }
    assert!(a.requests_to("/page") >= 1, "a is still used");
    assert!(b.requests_to("/page") >= 1, "b is still used");

    // The third failure turns each down.
    gate.open();
    wait_health(&edge, a.addr, "down").await;
    wait_health(&edge, b.addr, "down").await;
    let metrics = edge.metrics().await;
    assert_eq!(healthy(&metrics, "app", a.addr), Some(0.0), "{metrics}");
    assert_eq!(healthy(&metrics, "app", b.addr), Some(0.0), "{metrics}");
    // No fallback and no other pool: with every server down the pool is used anyway.
    let got = within_limit(get(&url)).await;
    assert_eq!(got.status, 200, "{}", got.text());

    // The spec's `last_check.result`: the status answered ("503"), or an error text when
    // there was no answer.
    let entry = edge.server("app", a.addr).await;
    assert_eq!(entry["last_check"]["result"], "503", "{entry}");
}

// --- what a check is --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_check_passes_only_on_an_expected_status() {
    // Both answer 200 to everything; pool "strict" expects 204, pool "plain" 200.
    let strict = Origin::text("strict").await;
    let plain = Origin::text("plain").await;
    let edge = Edge::start(
        &edge_config(
            2,
            r#"
[[pools]]
name = "app"
servers = ["{strict}"]

[pools.health]
path = "/healthz"
expect = "204"
interval = "50ms"
unhealthy_after = 2

[[pools]]
name = "plain"
servers = ["{plain}"]

[pools.health]
path = "/healthz"
expect = "200"
interval = "50ms"
unhealthy_after = 2

[[routes]]
name = "plain"
match = { path_prefix = "/plain/" }
pool = "plain"

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "app"
"#,
        ),
        &[
            ("strict", strict.addr.to_string()),
            ("plain", plain.addr.to_string()),
        ],
    );

    let observed = Mutex::new(Vec::new());
    eventually("the 204 check to turn the server down", LIMIT, || async {
        let h = health(&edge, strict.addr).await;
        observed.lock().unwrap().push(h.clone());
        h == "down"
    })
    .await;
    let observed = observed.into_inner().unwrap();
    assert!(
        !observed.iter().any(|h| h == "up"),
        "a 200 never passes a check expecting 204: {observed:?}"
    );
    assert!(strict.requests_to(HEALTHZ) >= 2);
    let entry = edge.server("app", strict.addr).await;
    assert_eq!(entry["last_check"]["ok"], false, "{entry}");
    assert_eq!(
        healthy(&edge.metrics().await, "app", strict.addr),
        Some(0.0),
        "{entry}"
    );

    // The same answer passes a check expecting 200.
    let status = edge.status().await;
    let entry = server_status(&status, "plain", &plain.addr.to_string());
    assert!(plain.requests_to(HEALTHZ) >= 1);
    assert_eq!(entry["health"], "up", "{entry}");
    assert_eq!(entry["last_check"]["ok"], true, "{entry}");
    let metrics = edge.metrics().await;
    assert_eq!(
        healthy(&metrics, "plain", plain.addr),
        Some(1.0),
        "{metrics}"
    );

    // The spec's `last_check.result`: the status answered ("200"), or an error text when
    // there was no answer.
    let entry = edge.server("app", strict.addr).await;
    assert_eq!(entry["last_check"]["result"], "200", "{entry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_check_against_a_dead_port_turns_the_server_down() {
    let dead = dead_addr();
    let one = Origin::text("one").await;
    let two = Origin::text("two").await;
    let edge = start(
        &[dead, one.addr, two.addr],
        "[pools.retry]\nattempts = 0\n\n[pools.health]\nkind = \"tcp\"\ninterval = \"50ms\"\nunhealthy_after = 2\n",
    );

    wait_health(&edge, dead, "down").await;
    wait_health(&edge, one.addr, "up").await;
    wait_health(&edge, two.addr, "up").await;
    let entry = edge.server("app", dead).await;
    assert_eq!(entry["last_check"]["ok"], false, "{entry}");
    let metrics = edge.metrics().await;
    assert_eq!(healthy(&metrics, "app", dead), Some(0.0), "{metrics}");
    assert_eq!(healthy(&metrics, "app", one.addr), Some(1.0), "{metrics}");
    assert_eq!(healthy(&metrics, "app", two.addr), Some(1.0), "{metrics}");
    assert_eq!(
        one.requests() + two.requests(),
        0,
        "a TCP check sends no request"
    );

    // Without retries, every request is one attempt: none goes to the down server.
    let url = edge.url("/page");
    for i in 0..12 {
        let got = within_limit(get(&url)).await;
        assert_eq!(got.status, 200, "request {i}: {}", got.text());
    }
    assert_eq!(one.requests() + two.requests(), 12);
    let metrics = edge.metrics().await;
    assert_eq!(
        connect_errors(&metrics, "app", dead),
        0.0,
        "no request was sent to the down server:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_checks_send_the_path_and_the_host() {
    // Host: `host` if given, else the pool's host_header, else the server address as written.
    let (a, b, c) = (
        Origin::text("a").await,
        Origin::text("b").await,
        Origin::text("c").await,
    );
    let edge = Edge::start(
        &edge_config(
            2,
            r#"
[[pools]]
name = "a"
servers = ["{a}"]

[pools.health]
path = "/healthz"
interval = "50ms"

[[pools]]
name = "b"
servers = ["{b}"]
host_header = "pool.example"

[pools.health]
path = "/check/b"
interval = "50ms"

[[pools]]
name = "c"
servers = ["{c}"]
host_header = "pool.example"

[pools.health]
interval = "50ms"
host = "check.example"

[[routes]]
name = "b"
match = { path_prefix = "/b/" }
pool = "b"

[[routes]]
name = "c"
match = { path_prefix = "/c/" }
pool = "c"

[[routes]]
name = "a"
match = { path_prefix = "/" }
pool = "a"
"#,
        ),
        &[
            ("a", a.addr.to_string()),
            ("b", b.addr.to_string()),
            ("c", c.addr.to_string()),
        ],
    );

    eventually("a check at every origin", LIMIT, || async {
        a.requests() >= 1 && b.requests() >= 1 && c.requests() >= 1
    })
    .await;
    let host = |o: &Origin| {
        let seen = o.seen.lock().unwrap()[0].clone();
        assert_eq!(seen.method, "GET");
        (
            seen.uri.to_string(),
            seen.headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned),
        )
    };
    assert_eq!(host(&a), ("/healthz".to_owned(), Some(a.addr.to_string())));
    assert_eq!(
        host(&b),
        ("/check/b".to_owned(), Some("pool.example".to_owned()))
    );
    assert_eq!(
        host(&c),
        ("/".to_owned(), Some("check.example".to_owned())),
        "the default path is /"
    );
    drop(edge);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_health_checks_servers_are_only_checked_by_traffic() {
    // No [pools.health]: no check requests, and servers stay up (passive health only).
    let origin = Origin::text("page").await;
    let edge = start(&[origin.addr], "");
    for _ in 0..3 {
        let got = within_limit(get(&edge.url("/page"))).await;
        assert_eq!(got.status, 200);
    }
    let entry = edge.server("app", origin.addr).await;
    assert_eq!(entry["health"], "up", "{entry}");
    assert!(entry["last_check"].is_null(), "{entry}");
    assert_eq!(origin.requests(), 3, "no check requests");
    assert_eq!(origin.requests_to("/page"), 3);
}

// --- configuration errors ---------------------------------------------------------------

#[test]
fn check_and_capacity_keys_are_validated_with_their_paths() {
    let stdout = check_errors_of(
        r#"
[edge]
listen = ["127.0.0.1:8080"]

[[pools]]
name = "a"
servers = ["127.0.0.1:9000"]
max_connections = 0
panic_threshold = 101

[pools.health]
path = "healthz"
expect = "2xx"
interval = "5ms"
timeout = "61s"
healthy_after = 0
unhealthy_after = 101

[pools.retry]
buffer_body = "17MiB"

[[pools]]
name = "b"
servers = ["127.0.0.1:9001"]
max_connections = 1000001

[pools.health]
kind = "udp"

[[pools]]
name = "c"
servers = ["127.0.0.1:9002"]

[pools.health]
kind = "tcp"
path = "/healthz"

[[routes]]
name = "a"
match = { path_prefix = "/a/" }
pool = "a"

[[routes]]
name = "b"
match = { path_prefix = "/b/" }
pool = "b"

[[routes]]
name = "c"
match = { path_prefix = "/" }
pool = "c"
"#,
    );
    let line = |key: &str| error_at(&stdout, key);
    for key in [
        "pools[0].max_connections",
        "pools[0].panic_threshold",
        "pools[0].health.path",
        "pools[0].health.expect",
        "pools[0].health.interval",
        "pools[0].health.timeout",
        "pools[0].health.healthy_after",
        "pools[0].health.unhealthy_after",
        "pools[0].retry.buffer_body",
        "pools[1].max_connections",
        "pools[1].health.kind",
        "pools[2].health.path",
    ] {
        line(key);
    }
    assert!(
        line("pools[0].health.healthy_after").contains("use 1 to 100"),
        "{stdout}"
    );
    assert!(
        line("pools[1].health.kind").contains(r#"use "http" or "tcp""#),
        "{stdout}"
    );
    assert!(
        line("pools[0].health.expect").contains(r#"write a status "200" or a range "200-399""#),
        "{stdout}"
    );
    assert!(
        line("pools[0].max_connections").contains("1000000"),
        "{stdout}"
    );
}
