//! Per-pool retries (`[pools.retry]`): a failed exchange is tried again on another server of
//! the pool, for the conditions listed in `on`, only for requests without a body, only for
//! idempotent methods unless `non_idempotent` (connect failures excepted: nothing was sent),
//! and only as far as the pool's retry budget allows, so retries never multiply the load on
//! a failing origin. Retries are counted in `holdfast_upstream_retries_total` and refusals
//! by the budget in `holdfast_upstream_retry_budget_exhausted_total`.

use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use std::net::SocketAddr;
use std::time::Instant;

/// An edge with one pool "app" of `servers` (in that order); `retry` is written after the
/// pool (a `[pools.retry]` table, or "" for none).
fn start(servers: &[SocketAddr], retry: &str) -> Edge {
    start_with_timeouts(servers, retry, "{}")
}

fn start_with_timeouts(servers: &[SocketAddr], retry: &str, timeouts: &str) -> Edge {
    let route = format!("timeouts = {timeouts}");
    app_edge(2, &server_list(servers), retry, &route)
}

/// `holdfast_upstream_retry_budget_exhausted_total{pool="app"}`, 0 when not exported.
fn budget_exhausted(metrics: &str) -> f64 {
    sample(
        metrics,
        "holdfast_upstream_retry_budget_exhausted_total",
        &[("pool", "app")],
    )
    .unwrap_or(0.0)
}

/// An origin that reads the whole request body, then answers 200 with its length.
async fn reading() -> Origin {
    Origin::start(handler(|req| async move {
        use http_body_util::BodyExt;
        match req.into_body().collect().await {
            Ok(body) => ok(body.to_bytes().len().to_string()),
            Err(e) => status(400, e.to_string()),
        }
    }))
    .await
}

/// `n` sequential requests from `make`, each on a new connection; their statuses.
async fn statuses(n: usize, mut make: impl FnMut() -> Request<Body>) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let got = within_limit(send(make())).await;
        out.push(got.status.as_u16());
    }
    out
}

fn count(statuses: &[u16], code: u16) -> usize {
    statuses.iter().filter(|s| **s == code).count()
}

fn get_req(url: &str) -> Request<Body> {
    Request::get(url).body(Body::default()).unwrap()
}

/// A POST without a body (hyper's client sends `content-length: 0`).
fn bodiless_post(url: &str) -> Request<Body> {
    Request::post(url).body(Body::default()).unwrap()
}

// --- connect failures -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_retried_on_the_other_server_by_default() {
    let dead = dead_addr();
    let live = Origin::text("live").await;
    let edge = start(&[dead, live.addr], "[pools.retry]");

    let url = edge.url("/page");
    let got = statuses(40, || get_req(&url)).await;
    assert_eq!(
        count(&got, 200),
        40,
        "every GET is saved by a retry: {got:?}"
    );
    assert_eq!(
        live.requests(),
        40,
        "each request reached the live origin once"
    );

    let metrics = edge.metrics().await;
    let succeeded = retries(&metrics, "app", "succeeded");
    assert!(succeeded > 0.0, "retries are counted:\n{metrics}");
    assert_eq!(
        succeeded,
        connect_errors(&metrics, "app", dead),
        "one successful retry per refused connection:\n{metrics}"
    );
    assert_eq!(retries(&metrics, "app", "failed"), 0.0, "{metrics}");
    assert_eq!(budget_exhausted(&metrics), 0.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retries_a_dead_server_costs_requests() {
    let dead = dead_addr();
    let live = Origin::text("live").await;
    let edge = start(&[dead, live.addr], "[pools.retry]\nattempts = 0");

    let url = edge.url("/page");
    let got = statuses(40, || get_req(&url)).await;
    let failed = count(&got, 502);
    assert!(failed > 0, "requests sent to the dead server fail: {got:?}");
    assert_eq!(failed + count(&got, 200), 40, "{got:?}");
    assert_eq!(live.requests(), count(&got, 200));

    let metrics = edge.metrics().await;
    assert_eq!(retries(&metrics, "app", "succeeded"), 0.0, "{metrics}");
    assert_eq!(retries(&metrics, "app", "failed"), 0.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_retried_for_any_method() {
    // Nothing was sent, so even a POST may go elsewhere with `non_idempotent = false`.
    let dead = dead_addr();
    let live = Origin::text("live").await;
    let edge = start(&[dead, live.addr], "[pools.retry]\nnon_idempotent = false");

    let url = edge.url("/submit");
    let got = statuses(10, || bodiless_post(&url)).await;
    assert_eq!(count(&got, 200), 10, "{got:?}");
    assert_eq!(live.requests(), 10);
    assert!(live.seen.lock().unwrap().iter().all(|s| s.method == "POST"));
    let metrics = edge.metrics().await;
    assert!(retries(&metrics, "app", "succeeded") > 0.0, "{metrics}");
}

// --- resets -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_before_the_response_head_is_retried_for_a_get() {
    let reset = resetting().await;
    let live = Origin::text("live").await;
    let edge = start(&[reset.addr, live.addr], "");

    let url = edge.url("/page");
    let got = statuses(10, || get_req(&url)).await;
    assert_eq!(count(&got, 200), 10, "{got:?}");
    assert!(
        reset.connections.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the resetting server was tried"
    );
    let metrics = edge.metrics().await;
    assert!(retries(&metrics, "app", "succeeded") > 0.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_body_is_not_retried_after_a_reset() {
    // The body is larger than `buffer_body` and `edge.request_buffer` (64 KiB), so it is
    // streamed, not buffered: once the origin has taken part of it, it cannot be sent again.
    // Same pool as above, where a GET is retried.
    let reset = resetting().await;
    let live = reading().await;
    let edge = start(
        &[reset.addr, live.addr],
        "[pools.retry]\nnon_idempotent = true\nbuffer_body = \"32KiB\"",
    );

    let url = edge.url("/upload");
    let body = Bytes::from(vec![b'x'; 96 << 10]);
    let got = statuses(6, || {
        Request::post(&url)
            .header("content-type", "application/octet-stream")
            .body(Full::new(body.clone()))
            .unwrap()
    })
    .await;
    let failed = count(&got, 502);
    assert!(
        failed > 0,
        "a POST sent to the resetting server fails: {got:?}"
    );
    assert_eq!(failed + count(&got, 200), 6, "{got:?}");
    assert_eq!(
        live.requests(),
        count(&got, 200),
        "the other server saw only POSTs sent to it first, no retried ones"
    );
    let metrics = edge.metrics().await;
    assert_eq!(retries(&metrics, "app", "succeeded"), 0.0, "{metrics}");
}

// --- timeouts ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_timeout_is_retried_only_when_listed() {
    let slow = Origin::start(handler(|_req| async {
        tokio::time::sleep(FOREVER).await;
        ok("too late")
    }))
    .await;
    let live = Origin::text("live").await;
    let timeouts = r#"{ read = "300ms" }"#;

    // Default `on` is connect and reset: a timeout is the origin's answer (504).
    let edge = start_with_timeouts(&[slow.addr, live.addr], "", timeouts);
    let url = edge.url("/page");
    let got = statuses(4, || get_req(&url)).await;
    assert!(count(&got, 504) > 0, "{got:?}");
    assert_eq!(count(&got, 504) + count(&got, 200), 4, "{got:?}");

    let retrying = start_with_timeouts(
        &[slow.addr, live.addr],
        "[pools.retry]\non = [\"timeout\"]",
        timeouts,
    );
    let url = retrying.url("/page");
    let got = statuses(4, || get_req(&url)).await;
    assert_eq!(count(&got, 200), 4, "{got:?}");
}

// --- statuses ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_status_is_retried_on_the_other_server() {
    let busy = answering(503, "busy").await;
    let live = Origin::text("live").await;
    let edge = start(&[busy.addr, live.addr], "[pools.retry]\non = [\"503\"]");

    let url = edge.url("/page");
    let got = statuses(40, || get_req(&url)).await;
    assert_eq!(count(&got, 200), 40, "{got:?}");
    assert!(busy.requests() > 0, "the 503 server was tried");
    assert_eq!(live.requests(), 40);

    let metrics = edge.metrics().await;
    assert_eq!(
        retries(&metrics, "app", "succeeded"),
        busy.requests() as f64,
        "one successful retry per 503:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlisted_status_passes_through() {
    // Default `on` has no statuses: a 503 is the origin's answer.
    let busy = answering(503, "busy").await;
    let live = Origin::text("live").await;
    let edge = start(&[busy.addr, live.addr], "");

    let url = edge.url("/page");
    let got = statuses(10, || get_req(&url)).await;
    assert!(count(&got, 503) > 0, "{got:?}");
    assert_eq!(count(&got, 503), busy.requests(), "{got:?}");
    assert_eq!(count(&got, 200), live.requests(), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_not_retried_on_a_status_unless_non_idempotent() {
    let busy = answering(503, "busy").await;
    let live = Origin::text("live").await;
    let edge = start(
        &[busy.addr, live.addr],
        "[pools.retry]\non = [\"503\"]\nnon_idempotent = false",
    );
    let url = edge.url("/submit");
    let got = statuses(6, || bodiless_post(&url)).await;
    assert!(count(&got, 503) > 0, "the 503 passes through: {got:?}");
    assert_eq!(count(&got, 503) + count(&got, 200), 6, "{got:?}");
    assert_eq!(busy.requests(), count(&got, 503));
    assert_eq!(
        live.requests(),
        count(&got, 200),
        "the other server saw no retried POST"
    );

    let busy = answering(503, "busy").await;
    let live = Origin::text("live").await;
    let retrying = start(
        &[busy.addr, live.addr],
        "[pools.retry]\non = [\"503\"]\nnon_idempotent = true",
    );
    let url = retrying.url("/submit");
    let got = statuses(6, || bodiless_post(&url)).await;
    assert_eq!(count(&got, 200), 6, "every POST is retried: {got:?}");
    assert!(busy.requests() > 0, "the 503 server was tried");
    assert_eq!(live.requests(), 6);
    assert!(live.seen.lock().unwrap().iter().all(|s| s.method == "POST"));
}

// --- the budget -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_bounds_the_load_retries_add_to_a_failing_pool() {
    const N: usize = 200;
    const ATTEMPTS: usize = 3;
    const MIN_PER_SECOND: f64 = 1.0;
    const WINDOW_SECS: f64 = 1.0;
    let a = answering(503, "busy").await;
    let b = answering(503, "busy").await;
    let edge = start(
        &[a.addr, b.addr],
        r#"[pools.retry]
on = ["503"]
attempts = 3
budget_percent = 20
min_per_second = 1
budget_window = "1s"
backoff = "1ms"
"#,
    );

    let url = edge.url("/page");
    let began = Instant::now();
    for i in 0..N {
        let got = within_limit(get(&url)).await;
        assert_eq!(got.status, 503, "request {i}: {}", got.text());
        assert_eq!(
            got.text(),
            "busy",
            "request {i}: the origin's answer passes through"
        );
    }
    let elapsed = began.elapsed().as_secs_f64();

    let at_origins = a.requests() + b.requests();
    let retried = at_origins - N;
    // Retries may add 20% of the requests, plus min_per_second over every window the test
    // touched (the reserve comes back as old withdrawals leave the window), plus a little.
    let slack = MIN_PER_SECOND * (elapsed.ceil() + WINDOW_SECS) + 3.0;
    let bound = N as f64 * 1.2 + slack;
    assert!(
        (at_origins as f64) <= bound,
        "{at_origins} requests reached the origins for {N} client requests in {elapsed:.1}s; \
         the budget allows at most {bound:.0} (without it: {})",
        N * (1 + ATTEMPTS)
    );
    assert!(
        retried >= N / 10,
        "retries were made, at about budget_percent of the requests: {retried} for {N}"
    );

    let metrics = edge.metrics().await;
    assert!(budget_exhausted(&metrics) > 0.0, "{metrics}");
    assert_eq!(
        retries(&metrics, "app", "succeeded") + retries(&metrics, "app", "failed"),
        retried as f64,
        "one count per retry attempt:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_retry_attempt_is_counted() {
    // Three servers answering 503, `attempts = 2`: every request is tried on all three (the
    // default budget's reserve covers these few), and both retries of each are counted. The
    // last one's 503 is returned; the first one's is not.
    let servers = [
        answering(503, "busy").await,
        answering(503, "busy").await,
        answering(503, "busy").await,
    ];
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let edge = start(&addrs, "[pools.retry]\non = [\"503\"]\nattempts = 2");

    let url = edge.url("/page");
    for _ in 0..5 {
        let got = within_limit(get(&url)).await;
        assert_eq!(got.status, 503);
        assert_eq!(got.text(), "busy");
    }
    for s in &servers {
        assert_eq!(s.requests(), 5, "each request tried every server once");
    }
    let metrics = edge.metrics().await;
    assert_eq!(
        retries(&metrics, "app", "succeeded") + retries(&metrics, "app", "failed"),
        10.0,
        "two retries for each of five requests:\n{metrics}"
    );
    assert!(
        retries(&metrics, "app", "failed") >= 5.0,
        "the first retry's response was not returned:\n{metrics}"
    );
    assert_eq!(budget_exhausted(&metrics), 0.0, "{metrics}");
}

// --- servers to retry on ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_server_pool_does_not_retry_on_that_server() {
    // Retries go to servers not yet tried for the request (as nginx's next-upstream does):
    // hammering the server that just failed helps no one. This origin fails every other
    // request; its 503s pass through.
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let flaky = Origin::start(handler(move |_req| {
        let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            if n.is_multiple_of(2) {
                status(503, "busy")
            } else {
                ok("fine")
            }
        }
    }))
    .await;
    let edge = start(&[flaky.addr], "[pools.retry]\non = [\"503\"]");

    let url = edge.url("/page");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(within_limit(get(&url)).await.status.as_u16());
    }
    assert_eq!(statuses, [503, 200, 503, 200, 503, 200]);
    assert_eq!(flaky.requests(), 6, "each request was tried once");
    let metrics = edge.metrics().await;
    assert_eq!(
        retries(&metrics, "app", "succeeded") + retries(&metrics, "app", "failed"),
        0.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_stop_when_every_server_was_tried() {
    // Two servers, `attempts = 3`: a request can be tried on each server once, so two tries,
    // not four.
    let a = answering(503, "busy").await;
    let b = answering(503, "busy").await;
    let edge = start(
        &[a.addr, b.addr],
        "[pools.retry]\non = [\"503\"]\nattempts = 3",
    );

    let url = edge.url("/page");
    for i in 0..5 {
        let got = within_limit(get(&url)).await;
        assert_eq!(got.status, 503, "request {i}: {}", got.text());
        assert_eq!(got.text(), "busy");
    }
    assert_eq!(a.requests(), 5, "each request tried both servers once");
    assert_eq!(b.requests(), 5, "each request tried both servers once");
    let metrics = edge.metrics().await;
    assert_eq!(
        retries(&metrics, "app", "failed"),
        5.0,
        "one retry per request, and it failed too:\n{metrics}"
    );
    assert_eq!(retries(&metrics, "app", "succeeded"), 0.0, "{metrics}");
    assert_eq!(budget_exhausted(&metrics), 0.0, "{metrics}");
}
