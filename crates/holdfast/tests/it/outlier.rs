//! Passive health checks (`[pools.outlier]`): a server that fails `consecutive_failures`
//! exchanges in a row (connect failure, close or reset before the response head, read
//! timeout, or a 502, 503 or 504 answer) is ejected: the balancer and retries skip it for
//! `base_ejection` × (times ejected), capped at `max_ejection`, within the pool's
//! `max_ejection_percent`; when every server is ejected the pool uses them anyway. `/status`
//! shows each server's health, ejections and `ejected_until`; `/metrics` exports
//! `holdfast_upstream_ejections_total` and `holdfast_upstream_healthy`.
//!
//! Edges run one worker thread and requests are sent one at a time, with retries off unless
//! a test is about them, so every count below is exact.

use crate::support::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// An ejection that outlasts any test: the server stays out for the whole test.
const LONG: &str = "base_ejection = \"1h\"\nmax_ejection = \"1h\"";

/// An edge with one pool "app" of `servers` (in that order), `retry` and `outlier` lines in
/// its `[pools.retry]` and `[pools.outlier]` tables ("" for the defaults).
fn start(servers: &[SocketAddr], retry: &str, outlier: &str) -> Edge {
    start_with_timeouts(servers, retry, outlier, "{}")
}

fn start_with_timeouts(servers: &[SocketAddr], retry: &str, outlier: &str, timeouts: &str) -> Edge {
    let pool = format!("[pools.retry]\n{retry}\n\n[pools.outlier]\n{outlier}");
    app_edge(
        1,
        &server_list(servers),
        &pool,
        &format!("timeouts = {timeouts}"),
    )
}

/// No retries: each request is one exchange with one server.
const NO_RETRY: &str = "attempts = 0";

/// The status of one GET through the edge.
async fn get_status(edge: &Edge) -> u16 {
    within_limit(get(&edge.url("/page"))).await.status.as_u16()
}

/// The statuses of `n` sequential GETs.
async fn statuses(edge: &Edge, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(get_status(edge).await);
    }
    out
}

fn count(statuses: &[u16], code: u16) -> usize {
    statuses.iter().filter(|s| **s == code).count()
}

/// GETs, one after another (polling at most every 20 ms), until `seen()` reaches `n`, at most
/// `within`. Returns the statuses and the wall-clock times just before and just after the
/// last request, which bracket the moment the edge handled it.
async fn send_until(
    edge: &Edge,
    seen: impl Fn() -> usize,
    n: usize,
    within: Duration,
) -> (Vec<u16>, SystemTime, SystemTime) {
    let until = std::time::Instant::now() + within;
    let mut got = Vec::new();
    loop {
        let before = SystemTime::now();
        got.push(get_status(edge).await);
        let after = SystemTime::now();
        if seen() >= n {
            return (got, before, after);
        }
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting for {n} requests at the server (it has seen {}); statuses: {got:?}",
            seen()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `ejected_until` of a `/status` server entry, which must be an RFC 3339 time.
fn ejected_until(entry: &serde_json::Value) -> SystemTime {
    let text = entry["ejected_until"]
        .as_str()
        .unwrap_or_else(|| panic!("ejected_until is not a string: {entry}"));
    humantime::parse_rfc3339(text)
        .unwrap_or_else(|e| panic!("ejected_until {text:?} is not RFC 3339 ({e}): {entry}"))
}

fn assert_up(entry: &serde_json::Value, ejections: u64) {
    assert_eq!(entry["health"], "up", "{entry}");
    assert_eq!(entry["ejections"], ejections, "{entry}");
    assert!(entry["ejected_until"].is_null(), "{entry}");
}

/// Tripped but kept in rotation by the ejection cap: `failing`, not `up` (issue 17).
fn assert_failing(entry: &serde_json::Value, ejections: u64) {
    assert_eq!(entry["health"], "failing", "{entry}");
    assert_eq!(entry["ejections"], ejections, "{entry}");
    assert!(entry["ejected_until"].is_null(), "{entry}");
}

fn assert_ejected(entry: &serde_json::Value, ejections: u64) {
    assert_eq!(entry["health"], "ejected", "{entry}");
    assert_eq!(entry["ejections"], ejections, "{entry}");
    ejected_until(entry);
}

/// An origin answering 503 while `failing` is set, 200 otherwise.
async fn switchable(failing: Arc<AtomicBool>) -> Origin {
    Origin::start(handler(move |_req| {
        let fail = failing.load(Ordering::SeqCst);
        async move {
            if fail {
                status(503, "failing")
            } else {
                ok("fine")
            }
        }
    }))
    .await
}

// --- ejection ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_failing_in_a_row_is_ejected_and_gets_no_more_requests() {
    let one = Origin::text("one").await;
    let bad = answering(503, "answer").await;
    let two = Origin::text("two").await;
    let edge = start(
        &[one.addr, bad.addr, two.addr],
        NO_RETRY,
        &format!("consecutive_failures = 3\n{LONG}"),
    );

    // Round robin: every third request goes to the failing server. Two failures in a row
    // are not enough.
    let (got, _, _) = send_until(&edge, || bad.requests(), 2, LIMIT).await;
    assert!(
        got.len() <= 6,
        "round robin reaches each server every 3: {got:?}"
    );
    assert_up(&edge.server("app", bad.addr).await, 0);

    let (more, before, after) = send_until(&edge, || bad.requests(), 3, LIMIT).await;
    assert!(more.len() <= 3, "{more:?}");
    let got = [got, more].concat();
    assert_eq!(
        count(&got, 503),
        3,
        "the failing server's answers pass through: {got:?}"
    );
    assert_eq!(count(&got, 200), got.len() - 3, "{got:?}");

    // The third failure ejected it.
    let entry = edge.server("app", bad.addr).await;
    assert_ejected(&entry, 1);
    let until = ejected_until(&entry);
    assert!(
        until > before + Duration::from_secs(3599) && until <= after + Duration::from_secs(3600),
        "ejected for base_ejection (1h): {entry}"
    );
    for good in [one.addr, two.addr] {
        assert_up(&edge.server("app", good).await, 0);
    }

    let (one_before, two_before) = (one.requests(), two.requests());
    let got = statuses(&edge, 30).await;
    assert_eq!(count(&got, 200), 30, "{got:?}");
    assert_eq!(bad.requests(), 3, "an ejected server is not picked");
    assert_eq!(
        one.requests() - one_before + two.requests() - two_before,
        30,
        "the others take every request"
    );
    assert!(one.requests() > one_before && two.requests() > two_before);

    let metrics = edge.metrics().await;
    assert_eq!(ejections_total(&metrics, "app", bad.addr), 1.0, "{metrics}");
    assert_eq!(healthy(&metrics, "app", bad.addr), Some(0.0), "{metrics}");
    for good in [one.addr, two.addr] {
        assert_eq!(ejections_total(&metrics, "app", good), 0.0, "{metrics}");
        assert_eq!(healthy(&metrics, "app", good), Some(1.0), "{metrics}");
    }
    // Still ejected after all those requests.
    assert_ejected(&edge.server("app", bad.addr).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_resets_the_count() {
    // Its own requests alternate 503, 200, 503, 200, ...: never two failures in a row.
    let n = Arc::new(AtomicUsize::new(0));
    let flaky = Origin::start(handler(move |_req| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        async move {
            if i.is_multiple_of(2) {
                status(503, "failing")
            } else {
                ok("fine")
            }
        }
    }))
    .await;
    let good = Origin::text("good").await;
    let edge = start(
        &[flaky.addr, good.addr],
        NO_RETRY,
        &format!("consecutive_failures = 2\nmax_ejection_percent = 100\n{LONG}"),
    );

    let got = statuses(&edge, 40).await;
    assert_eq!(
        flaky.requests(),
        20,
        "the flaky server keeps its share: {got:?}"
    );
    assert_eq!(good.requests(), 20);
    assert_eq!(count(&got, 503), 10, "{got:?}");
    assert_up(&edge.server("app", flaky.addr).await, 0);
    let metrics = edge.metrics().await;
    assert_eq!(
        ejections_total(&metrics, "app", flaky.addr),
        0.0,
        "{metrics}"
    );
    assert_eq!(healthy(&metrics, "app", flaky.addr), Some(1.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_failures_0_never_ejects() {
    let bad = answering(503, "answer").await;
    let good = Origin::text("good").await;
    let edge = start(
        &[bad.addr, good.addr],
        NO_RETRY,
        &format!("consecutive_failures = 0\nmax_ejection_percent = 100\n{LONG}"),
    );

    let got = statuses(&edge, 20).await;
    assert_eq!(bad.requests(), 10, "{got:?}");
    assert_eq!(count(&got, 503), 10, "{got:?}");
    assert_up(&edge.server("app", bad.addr).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_is_five_failures_in_a_row() {
    let bad = answering(503, "answer").await;
    let good = Origin::text("good").await;
    // No [pools.outlier] keys: 5 failures, 30s, at most 50% (1 of 2) ejected.
    let edge = start(&[bad.addr, good.addr], NO_RETRY, "");

    send_until(&edge, || bad.requests(), 4, LIMIT).await;
    assert_up(&edge.server("app", bad.addr).await, 0);
    send_until(&edge, || bad.requests(), 5, LIMIT).await;
    let entry = edge.server("app", bad.addr).await;
    assert_ejected(&entry, 1);

    let got = statuses(&edge, 10).await;
    assert_eq!(count(&got, 200), 10, "{got:?}");
    assert_eq!(bad.requests(), 5);
}

// --- what counts as a failure -----------------------------------------------------------

/// A server failing in one way (`kind`: "connect", "close", "reset", "timeout" or a status
/// code), and what keeps it running.
async fn failing(kind: &str) -> (SocketAddr, Box<dyn std::any::Any + Send>) {
    match kind {
        "connect" => (dead_addr(), Box::new(())),
        "close" => {
            // Reads the request head, then closes the connection (FIN) without answering.
            let o = RawOrigin::start(|mut c| async move {
                c.read_head().await;
                drop(c);
            })
            .await;
            (o.addr, Box::new(o))
        }
        "reset" => {
            // Reads the request head, then resets the connection (RST).
            let o = RawOrigin::start(|mut c| async move {
                c.read_head().await;
                c.stream.set_zero_linger().unwrap();
                drop(c);
            })
            .await;
            (o.addr, Box::new(o))
        }
        "timeout" => {
            let o = Origin::start(handler(|_req| async {
                tokio::time::sleep(FOREVER).await;
                ok("too late")
            }))
            .await;
            (o.addr, Box::new(o))
        }
        code => {
            let o = answering(code.parse().unwrap(), "answer").await;
            (o.addr, Box::new(o))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_failure_counts() {
    for kind in ["connect", "close", "reset", "timeout", "502", "503", "504"] {
        let (bad, _keep) = failing(kind).await;
        let good = Origin::text("good").await;
        let edge = start_with_timeouts(
            &[bad, good.addr],
            NO_RETRY,
            &format!("consecutive_failures = 1\n{LONG}"),
            r#"{ read = "300ms" }"#,
        );

        // Round robin sends one of the first two requests to each server.
        let got = statuses(&edge, 2).await;
        assert_eq!(count(&got, 200), 1, "{kind}: {got:?}");
        assert_ejected(&edge.server("app", bad).await, 1);

        let got = statuses(&edge, 10).await;
        assert_eq!(
            count(&got, 200),
            10,
            "{kind}: the ejected server is skipped: {got:?}"
        );
        assert_eq!(good.requests(), 11, "{kind}");
        let metrics = edge.metrics().await;
        assert_eq!(
            ejections_total(&metrics, "app", bad),
            1.0,
            "{kind}:\n{metrics}"
        );
        assert_eq!(
            healthy(&metrics, "app", bad),
            Some(0.0),
            "{kind}:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_answers_are_not_failures() {
    for code in [500, 501, 505, 404, 429, 302] {
        let other = answering(code, "answer").await;
        let good = Origin::text("good").await;
        let edge = start(
            &[other.addr, good.addr],
            NO_RETRY,
            &format!("consecutive_failures = 1\nmax_ejection_percent = 100\n{LONG}"),
        );

        let got = statuses(&edge, 10).await;
        assert_eq!(count(&got, code), 5, "{code}: {got:?}");
        assert_eq!(other.requests(), 5, "{code}");
        assert_up(&edge.server("app", other.addr).await, 0);
        let metrics = edge.metrics().await;
        assert_eq!(
            ejections_total(&metrics, "app", other.addr),
            0.0,
            "{code}:\n{metrics}"
        );
        assert_eq!(
            healthy(&metrics, "app", other.addr),
            Some(1.0),
            "{code}:\n{metrics}"
        );
    }
}

// --- the cap and panic mode -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_ejection_percent_caps_how_many_are_ejected_at_once() {
    // floor(2 × 50%) = 1: the first server to fail is ejected, the second never is.
    let a = answering(503, "answer").await;
    let b = answering(503, "answer").await;
    let edge = start(
        &[a.addr, b.addr],
        NO_RETRY,
        &format!("consecutive_failures = 1\nmax_ejection_percent = 50\n{LONG}"),
    );

    let got = statuses(&edge, 20).await;
    assert_eq!(count(&got, 503), 20, "{got:?}");
    let (first, second) = if a.requests() == 1 {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_eq!(first.requests(), 1, "ejected after its first failure");
    assert_eq!(second.requests(), 19, "the other keeps getting requests");

    assert_ejected(&edge.server("app", first.addr).await, 1);
    assert_failing(&edge.server("app", second.addr).await, 0);
    let metrics = edge.metrics().await;
    assert_eq!(
        ejections_total(&metrics, "app", first.addr),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        ejections_total(&metrics, "app", second.addr),
        0.0,
        "{metrics}"
    );
    assert_eq!(healthy(&metrics, "app", first.addr), Some(0.0), "{metrics}");
    assert_eq!(
        healthy(&metrics, "app", second.addr),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_server_pool_never_ejects() {
    // floor(1 × 50%) = 0.
    let only = answering(503, "answer").await;
    let edge = start(
        &[only.addr],
        NO_RETRY,
        &format!("consecutive_failures = 1\n{LONG}"),
    );

    let got = statuses(&edge, 10).await;
    assert_eq!(count(&got, 503), 10, "{got:?}");
    assert_eq!(only.requests(), 10);
    // Not ejected, but tripped: the data path counts it as failing (issue 17).
    let entry = edge.server("app", only.addr).await;
    assert_eq!(entry["health"], "failing", "{entry}");
    assert_eq!(entry["ejections"], 0, "{entry}");
    let metrics = edge.metrics().await;
    assert_eq!(
        ejections_total(&metrics, "app", only.addr),
        0.0,
        "{metrics}"
    );
    assert_eq!(healthy(&metrics, "app", only.addr), Some(1.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_server_ejected_requests_still_go_out() {
    // max_ejection_percent = 100 lets both be ejected; then the pool uses them anyway.
    let (a, b) = (dead_addr(), dead_addr());
    let edge = start(
        &[a, b],
        NO_RETRY,
        &format!("consecutive_failures = 1\nmax_ejection_percent = 100\n{LONG}"),
    );

    let got = statuses(&edge, 10).await;
    assert_eq!(
        count(&got, 502),
        10,
        "the edge answers 502, it does not hang: {got:?}"
    );
    for addr in [a, b] {
        let entry = edge.server("app", addr).await;
        assert_eq!(entry["health"], "ejected", "{entry}");
        assert!(
            entry["ejections"].as_u64().is_some_and(|n| n >= 1),
            "{entry}"
        );
        ejected_until(&entry);
    }
    let metrics = edge.metrics().await;
    assert_eq!(
        connect_errors(&metrics, "app", a) + connect_errors(&metrics, "app", b),
        10.0,
        "every request was tried on a server:\n{metrics}"
    );
    for addr in [a, b] {
        assert_eq!(healthy(&metrics, "app", addr), Some(0.0), "{metrics}");
    }
}

// --- the end of an ejection -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejected_server_comes_back_when_its_time_is_up() {
    let failing = Arc::new(AtomicBool::new(true));
    let bad = switchable(failing.clone()).await;
    let good = Origin::text("good").await;
    let edge = start(
        &[bad.addr, good.addr],
        NO_RETRY,
        "consecutive_failures = 1\nbase_ejection = \"1s\"\nmax_ejection = \"1s\"",
    );

    send_until(&edge, || bad.requests(), 1, LIMIT).await;
    assert_ejected(&edge.server("app", bad.addr).await, 1);

    // It answers again; once its second is up the balancer picks it again.
    failing.store(false, Ordering::SeqCst);
    send_until(&edge, || bad.requests(), 2, Duration::from_secs(10)).await;
    assert_up(&edge.server("app", bad.addr).await, 1);
    let metrics = edge.metrics().await;
    assert_eq!(healthy(&metrics, "app", bad.addr), Some(1.0), "{metrics}");
    assert_eq!(ejections_total(&metrics, "app", bad.addr), 1.0, "{metrics}");

    // Back in the rotation, and successes do not eject it.
    let before = bad.requests();
    let got = statuses(&edge, 10).await;
    assert_eq!(count(&got, 200), 10, "{got:?}");
    assert!(bad.requests() - before >= 3, "it takes its share again");
    assert_up(&edge.server("app", bad.addr).await, 1);

    // A failure after that counts again: a second ejection.
    failing.store(true, Ordering::SeqCst);
    let n = bad.requests();
    send_until(&edge, || bad.requests(), n + 1, LIMIT).await;
    assert_ejected(&edge.server("app", bad.addr).await, 2);
    let metrics = edge.metrics().await;
    assert_eq!(ejections_total(&metrics, "app", bad.addr), 2.0, "{metrics}");
    assert_eq!(healthy(&metrics, "app", bad.addr), Some(0.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_ejection_the_count_starts_again() {
    let bad = answering(503, "answer").await;
    let good = Origin::text("good").await;
    let edge = start(
        &[bad.addr, good.addr],
        NO_RETRY,
        "consecutive_failures = 2\nbase_ejection = \"1s\"\nmax_ejection = \"1s\"",
    );

    send_until(&edge, || bad.requests(), 2, LIMIT).await;
    assert_ejected(&edge.server("app", bad.addr).await, 1);

    // Back after 1s: one failure is not two in a row.
    send_until(&edge, || bad.requests(), 3, Duration::from_secs(10)).await;
    assert_up(&edge.server("app", bad.addr).await, 1);
    let metrics = edge.metrics().await;
    assert_eq!(
        healthy(&metrics, "app", bad.addr),
        Some(1.0),
        "up again, though its last answer failed:\n{metrics}"
    );

    // The second failure in a row ejects it again.
    send_until(&edge, || bad.requests(), 4, LIMIT).await;
    assert_ejected(&edge.server("app", bad.addr).await, 2);
    let metrics = edge.metrics().await;
    assert_eq!(healthy(&metrics, "app", bad.addr), Some(0.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_in_panic_mode_do_not_count_after_the_ejection() {
    // Both servers are ejected, then used anyway (panic mode), failing again. When their
    // ejections end they are back with their counts at 0: one failure does not eject them.
    let (a, b) = (dead_addr(), dead_addr());
    let edge = start(
        &[a, b],
        NO_RETRY,
        "consecutive_failures = 2\nmax_ejection_percent = 100\nbase_ejection = \"1s\"\nmax_ejection = \"1s\"",
    );

    // a, b, a (ejected), b (ejected), then 4 more in panic mode.
    let got = statuses(&edge, 8).await;
    assert_eq!(count(&got, 502), 8, "{got:?}");
    let metrics = edge.metrics().await;
    assert_eq!(
        connect_errors(&metrics, "app", a) + connect_errors(&metrics, "app", b),
        8.0,
        "{metrics}"
    );

    eventually("both ejections ended", Duration::from_secs(10), || async {
        let status = edge.status().await;
        [a, b]
            .iter()
            .all(|s| server_status(&status, "app", &s.to_string())["health"] == "up")
    })
    .await;
    let got = statuses(&edge, 1).await;
    assert_eq!(got, [502]);
    for addr in [a, b] {
        assert_up(&edge.server("app", addr).await, 1);
    }
    let metrics = edge.metrics().await;
    assert_eq!(
        connect_errors(&metrics, "app", a) + connect_errors(&metrics, "app", b),
        9.0,
        "{metrics}"
    );
}

/// `until` is `secs` after the moment between `before` and `after` that the edge ejected
/// the server, allowing for `ejected_until` written in whole seconds (rounded down).
fn assert_ejected_for(entry: &serde_json::Value, secs: u64, before: SystemTime, after: SystemTime) {
    let until = ejected_until(entry);
    let d = Duration::from_secs(secs);
    assert!(
        until > before + d - Duration::from_secs(1) && until <= after + d,
        "expected an ejection of {secs}s from {} to {}: {entry}",
        humantime::format_rfc3339_millis(before),
        humantime::format_rfc3339_millis(after),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_ejection_lasts_longer_up_to_max_ejection() {
    // 1s, then 2 × 1s, then 3 × 1s capped at 2s.
    let bad = answering(503, "answer").await;
    let good = Origin::text("good").await;
    let edge = start(
        &[bad.addr, good.addr],
        NO_RETRY,
        "consecutive_failures = 1\nbase_ejection = \"1s\"\nmax_ejection = \"2s\"",
    );

    let (_, before, after) = send_until(&edge, || bad.requests(), 1, LIMIT).await;
    let entry = edge.server("app", bad.addr).await;
    assert_ejected(&entry, 1);
    assert_ejected_for(&entry, 1, before, after);

    // Back after 1s: its next request fails, and the second ejection is twice as long.
    let (_, before, after) = send_until(&edge, || bad.requests(), 2, Duration::from_secs(10)).await;
    let entry = edge.server("app", bad.addr).await;
    assert_ejected(&entry, 2);
    assert_ejected_for(&entry, 2, before, after);

    // The third would be 3s; max_ejection caps it at 2s.
    let (_, before, after) = send_until(&edge, || bad.requests(), 3, Duration::from_secs(10)).await;
    let entry = edge.server("app", bad.addr).await;
    assert_ejected(&entry, 3);
    assert_ejected_for(&entry, 2, before, after);
    assert_eq!(bad.requests(), 3, "one request per return");
    let metrics = edge.metrics().await;
    assert_eq!(ejections_total(&metrics, "app", bad.addr), 3.0, "{metrics}");
}

// --- retries ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_skip_an_ejected_server() {
    let dead = dead_addr();
    let live = Origin::text("live").await;
    // Default retries: once, on connect failures and resets.
    let edge = start(
        &[dead, live.addr],
        "",
        &format!("consecutive_failures = 1\n{LONG}"),
    );

    // The first connect failure is retried on the live server, and ejects the dead one.
    let got = std::sync::Mutex::new(Vec::new());
    eventually("the dead server was tried", LIMIT, || async {
        let status = get_status(&edge).await;
        got.lock().unwrap().push(status);
        connect_errors(&edge.metrics().await, "app", dead) >= 1.0
    })
    .await;
    let got = got.into_inner().unwrap();
    assert_eq!(count(&got, 200), got.len(), "{got:?}");
    assert_ejected(&edge.server("app", dead).await, 1);

    let got = statuses(&edge, 20).await;
    assert_eq!(count(&got, 200), 20, "{got:?}");
    let metrics = edge.metrics().await;
    assert_eq!(
        connect_errors(&metrics, "app", dead),
        1.0,
        "never tried again:\n{metrics}"
    );
    assert_ejected(&edge.server("app", dead).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_goes_to_an_available_server_not_an_ejected_one() {
    // The dead server is ejected first and fills the cap (floor(3 × 50%) = 1). Then the
    // busy server starts answering 503: it cannot be ejected, so it keeps getting requests,
    // and each is retried. Every retry must go to the good server, never to the ejected dead
    // one (which none of those requests has tried yet). Both orders of the servers, so that
    // the round robin's next server after the busy one is the dead one in one of them.
    for order in ["dead, busy, good", "busy, dead, good"] {
        let dead = dead_addr();
        let failing = Arc::new(AtomicBool::new(false));
        let busy = switchable(failing.clone()).await;
        let good = Origin::text("good").await;
        let servers = if order.starts_with("dead") {
            [dead, busy.addr, good.addr]
        } else {
            [busy.addr, dead, good.addr]
        };
        let edge = start(
            &servers,
            "attempts = 2\non = [\"connect\", \"503\"]",
            &format!("consecutive_failures = 1\nmax_ejection_percent = 50\n{LONG}"),
        );

        let got = std::sync::Mutex::new(Vec::new());
        eventually("the dead server was tried", LIMIT, || async {
            let status = get_status(&edge).await;
            got.lock().unwrap().push(status);
            connect_errors(&edge.metrics().await, "app", dead) >= 1.0
        })
        .await;
        let got = got.into_inner().unwrap();
        assert_eq!(count(&got, 200), got.len(), "{order}: {got:?}");
        assert_ejected(&edge.server("app", dead).await, 1);

        failing.store(true, Ordering::SeqCst);
        let (busy_before, good_before) = (busy.requests(), good.requests());
        let got = statuses(&edge, 20).await;
        assert_eq!(
            count(&got, 200),
            20,
            "{order}: every 503 is retried on the good server: {got:?}"
        );
        let busy_now = busy.requests() - busy_before;
        assert!(
            busy_now >= 5,
            "{order}: the busy server keeps getting requests: {busy_now}"
        );
        assert_eq!(
            good.requests() - good_before,
            20,
            "{order}: each request ends at the good server once"
        );
        let metrics = edge.metrics().await;
        assert_eq!(
            connect_errors(&metrics, "app", dead),
            1.0,
            "{order}: no retry went to the ejected server:\n{metrics}"
        );
        assert_failing(&edge.server("app", busy.addr).await, 0);
        assert_ejected(&edge.server("app", dead).await, 1);
    }
}

// --- the state word -----------------------------------------------------------------------

/// `holdfast_upstream_server_state{pool="app",server=addr,state}`.
fn state_gauge(metrics: &str, addr: SocketAddr, state: &str) -> Option<f64> {
    sample(
        metrics,
        "holdfast_upstream_server_state",
        &[
            ("pool", "app"),
            ("server", &addr.to_string()),
            ("state", state),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_server_without_checks_is_failing_not_up() {
    // No active checks, one server that refuses every connection: before any traffic it is
    // `unknown`; once tripped it is `failing` with its last error, on /status and in the
    // state gauge alike. A server that answers is `up`.
    let dead = dead_addr();
    let edge = start(
        &[dead],
        NO_RETRY,
        &format!("consecutive_failures = 2\n{LONG}"),
    );
    let entry = edge.server("app", dead).await;
    assert_eq!(entry["health"], "unknown", "no traffic yet: {entry}");
    let metrics = edge.metrics().await;
    assert_eq!(
        state_gauge(&metrics, dead, "unknown"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(state_gauge(&metrics, dead, "up"), Some(0.0), "{metrics}");

    assert_eq!(statuses(&edge, 1).await, [502]);
    let entry = edge.server("app", dead).await;
    assert_eq!(
        entry["health"], "up",
        "one failure of two is not a trip: {entry}"
    );
    assert_eq!(statuses(&edge, 1).await, [502]);
    let entry = edge.server("app", dead).await;
    assert_eq!(entry["health"], "failing", "{entry}");
    assert!(
        entry["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{entry}"
    );
    let metrics = edge.metrics().await;
    assert_eq!(
        state_gauge(&metrics, dead, "failing"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(state_gauge(&metrics, dead, "up"), Some(0.0), "{metrics}");

    let good = Origin::text("good").await;
    let edge = start(&[good.addr], NO_RETRY, "");
    assert_eq!(statuses(&edge, 1).await, [200]);
    assert_eq!(edge.server("app", good.addr).await["health"], "up");
    let metrics = edge.metrics().await;
    assert_eq!(
        state_gauge(&metrics, good.addr, "up"),
        Some(1.0),
        "{metrics}"
    );
}
