//! Per-pool overload protection: `max_concurrent` requests in flight to a pool (all its
//! servers, from sending until the response body ends), `max_queued` more waiting for a free
//! slot, and beyond that an immediate 503 made by the edge, with `Retry-After`, that never
//! reaches the origin and is counted in `holdfast_upstream_overload_rejected_total`.
//! Origins hang at a `Gate` the test opens; "at once" means before the gate is opened, far
//! within `LIMIT`, while the route's read timeout (60s) is what a queued request would wait.

use crate::support::*;
use futures_util::future::Either;
use http::Request;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The pools and routes of `start`'s edge; route "quick" (`/quick/`) has a 300ms read
/// timeout.
const POOLS: &str = r#"
[[pools]]
name = "app"
servers = [{servers}]
{limits}

[[pools]]
name = "other"
servers = ["{other}"]

[[routes]]
name = "other"
match = { path_prefix = "/other/" }
pool = "other"

[[routes]]
name = "quick"
match = { path_prefix = "/quick/" }
pool = "app"
timeouts = { read = "300ms" }

[[routes]]
name = "app"
match = { path_prefix = "/" }
pool = "app"
"#;

/// An edge whose pool "app" has `servers` and the pool keys `limits`; `/other/` goes to a
/// second, unlimited pool served by `other`.
fn start(servers: &[SocketAddr], other: SocketAddr, limits: &str) -> Edge {
    Edge::start(
        &edge_config_with(2, "shutdown_grace = \"1s\"", POOLS),
        &[
            ("servers", server_list(servers)),
            ("other", other.to_string()),
            ("limits", limits.to_string()),
        ],
    )
}

/// With every slot taken and room for one more in the queue, two requests sent together:
/// the queue takes one of them and the other is answered 503 at once. The client cannot
/// tell which of the two the edge saw first, so whichever is answered first must be the
/// 503, and the other must still be waiting; it is returned.
async fn one_queued_one_turned_away(a: JoinHandle<Got>, b: JoinHandle<Got>) -> JoinHandle<Got> {
    let (answered, waiting) = match within(
        "one of two requests for one place in the queue",
        futures_util::future::select(a, b),
    )
    .await
    {
        Either::Left((got, other)) | Either::Right((got, other)) => (got, other),
    };
    assert_overload_page(&answered.unwrap(), "1");
    assert!(
        !waiting.is_finished(),
        "the queued request waits for a slot"
    );
    waiting
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_is_a_503_at_once_that_never_reaches_the_origin() {
    let gate = Gate::new();
    let origin = gated_origin(&gate, "slow").await;
    let other = Origin::text("other").await;
    let edge = start(&[origin.addr], other.addr, "max_concurrent = 10");

    let hanging: Vec<_> = (0..10)
        .map(|i| spawn_get(edge.url(&format!("/hang/{i}"))))
        .collect();
    until_seen(&[&origin], 10).await;

    // The gate is still closed: this answer cannot have waited for a slot to free.
    let got = within("the 11th request", get(&edge.url("/eleventh"))).await;
    assert_overload_page(&got, "1");
    assert!(
        hanging.iter().all(|h| !h.is_finished()),
        "the 10 requests still hang at the origin"
    );
    assert_eq!(
        origin.requests(),
        10,
        "the origin never saw the 11th request"
    );

    // The limit is the pool's: another pool is served as usual meanwhile.
    let elsewhere = within("a request to another pool", get(&edge.url("/other/x"))).await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.text());
    assert_eq!(elsewhere.text(), "other");

    let metrics = edge.metrics().await;
    assert_eq!(overload_rejected(&metrics, "app"), Some(1.0), "{metrics}");
    assert!(
        matches!(overload_rejected(&metrics, "other"), None | Some(0.0)),
        "{metrics}"
    );

    gate.open();
    all_ok(hanging, &["slow"]).await;
    assert_eq!(origin.requests(), 10);

    // Every slot was given back when its response ended.
    let after = within("a request after the 10 ended", get(&edge.url("/after"))).await;
    assert_eq!(after.status, 200, "{}", after.text());
    assert_eq!(after.text(), "slow");
    assert_eq!(origin.requests(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_is_held_until_the_response_body_ends() {
    let gate = Gate::new();
    // Sends the head and half the body, waits at the gate, then sends the rest. One request
    // per connection, so `connections` counts the requests the origin saw.
    let origin = {
        let gate = gate.clone();
        RawOrigin::start(move |mut c| {
            let gate = gate.clone();
            async move {
                c.read_request().await;
                c.write(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\nconnection: close\r\n\r\nfirst-",
                )
                .await;
                gate.wait().await;
                c.write(b"second").await;
            }
        })
        .await
    };
    let other = Origin::text("other").await;
    let edge = start(&[origin.addr], other.addr, "max_concurrent = 1");

    let resp = within(
        "the response head",
        client().request(
            Request::get(edge.url("/stream"))
                .body(Body::default())
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = within("the first half of the body", body.frame())
        .await
        .expect("a body frame")
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(first, "first-");

    // The head has been passed on, but the body has not ended: the slot is still taken.
    let got = within(
        "a request while the body streams",
        get(&edge.url("/second")),
    )
    .await;
    assert_overload_page(&got, "1");
    assert_eq!(
        origin.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    gate.open();
    let rest = within("the rest of the body", body.collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(rest, "second");

    let got = within("a request after the body ended", get(&edge.url("/third"))).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.text(), "first-second");
    assert_eq!(
        origin.connections.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_request_waits_for_a_slot_and_one_beyond_the_queue_is_turned_away() {
    let gate = Gate::new();
    let origin = gated_origin(&gate, "slow").await;
    let other = Origin::text("other").await;
    let edge = start(
        &[origin.addr],
        other.addr,
        "max_concurrent = 1\nmax_queued = 1",
    );

    let running = spawn_get(edge.url("/running"));
    until_seen(&[&origin], 1).await;

    // Two more: the queue takes one of them and the other is answered 503 at once.
    let waiting = one_queued_one_turned_away(
        spawn_get(edge.url("/second")),
        spawn_get(edge.url("/third")),
    )
    .await;
    assert!(!running.is_finished(), "the first request still hangs");
    assert_eq!(origin.requests(), 1, "the queued request was not sent yet");
    let metrics = edge.metrics().await;
    assert_eq!(overload_rejected(&metrics, "app"), Some(1.0), "{metrics}");

    gate.open();
    all_ok(vec![running, waiting], &["slow"]).await;
    assert_eq!(
        origin.requests(),
        2,
        "the queued request was sent once a slot was free"
    );
    let metrics = edge.metrics().await;
    assert_eq!(overload_rejected(&metrics, "app"), Some(1.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_request_waits_at_most_the_read_timeout_then_gets_a_503() {
    let gate = Gate::new();
    let origin = gated_origin(&gate, "slow").await;
    let other = Origin::text("other").await;
    let edge = start(
        &[origin.addr],
        other.addr,
        "max_concurrent = 1\nmax_queued = 1",
    );

    // Held by the "app" route (read timeout 60s).
    let running = spawn_get(edge.url("/running"));
    until_seen(&[&origin], 1).await;

    // The "quick" route (read timeout 300ms) shares the pool: its request queues, then gives up.
    let started = Instant::now();
    let got = within(
        "a queued request on a route with a short read timeout",
        get(&edge.url("/quick/q")),
    )
    .await;
    let waited = started.elapsed();
    assert_overload_page(&got, "1");
    assert!(
        waited >= Duration::from_millis(250),
        "the request waited in the queue first (answered after {waited:?})"
    );
    assert_eq!(
        origin.requests(),
        1,
        "the timed-out request never reached the origin"
    );

    // It left the queue: of the next two requests, one is queued again (not both turned away).
    let queued = one_queued_one_turned_away(
        spawn_get(edge.url("/queued")),
        spawn_get(edge.url("/probe")),
    )
    .await;

    gate.open();
    all_ok(vec![running, queued], &["slow"]).await;
    assert_eq!(origin.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_503_is_json_for_json_clients_and_carries_the_configured_retry_after() {
    let gate = Gate::new();
    let origin = gated_origin(&gate, "slow").await;
    let other = Origin::text("other").await;
    let edge = start(
        &[origin.addr],
        other.addr,
        "max_concurrent = 1\nretry_after = \"30s\"",
    );
    let running = spawn_get(edge.url("/running"));
    until_seen(&[&origin], 1).await;

    let got = within(
        "a JSON request over the limit",
        get_with(&edge.url("/api"), &[("accept", "application/json")]),
    )
    .await;
    assert_eq!(got.status, 503, "{}", got.text());
    assert_eq!(got.header("retry-after"), Some("30"));
    let content_type = got.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body = got.json();
    assert_eq!(body["status"], 503, "{body}");
    assert_eq!(body["failed"], "edge", "{body}");
    let id = got.header("x-request-id").expect("a request id");
    assert_eq!(body["request_id"], id, "{body}");

    let html = within("an HTML request over the limit", get(&edge.url("/page"))).await;
    assert_overload_page(&html, "30");
    assert_eq!(origin.requests(), 1);

    gate.open();
    all_ok(vec![running], &["slow"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_rejections_never_reaches_the_origin() {
    let gate = Gate::new();
    let origin = gated_origin(&gate, "slow").await;
    let other = Origin::text("other").await;
    let edge = start(&[origin.addr], other.addr, "max_concurrent = 10");
    let hanging: Vec<_> = (0..10)
        .map(|i| spawn_get(edge.url(&format!("/hang/{i}"))))
        .collect();
    until_seen(&[&origin], 10).await;

    within("200 requests over the limit", async {
        for i in 0..200 {
            let got = get(&edge.url(&format!("/burst/{i}"))).await;
            assert_eq!(got.status, 503, "request {i}: {}", got.text());
            assert_eq!(got.header("retry-after"), Some("1"), "request {i}");
        }
    })
    .await;
    assert_eq!(
        origin.requests(),
        10,
        "no rejected request reached the origin"
    );
    assert!(hanging.iter().all(|h| !h.is_finished()));
    let metrics = edge.metrics().await;
    assert_eq!(overload_rejected(&metrics, "app"), Some(200.0), "{metrics}");

    gate.open();
    all_ok(hanging, &["slow"]).await;
    let after = within("a request after the burst", get(&edge.url("/after"))).await;
    assert_eq!(after.status, 200, "{}", after.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_covers_all_the_pools_servers_together() {
    let gate = Gate::new();
    let a = gated_origin(&gate, "a").await;
    let b = gated_origin(&gate, "b").await;
    let other = Origin::text("other").await;
    let edge = start(&[a.addr, b.addr], other.addr, "max_concurrent = 2");

    let first = spawn_get(edge.url("/1"));
    let second = spawn_get(edge.url("/2"));
    eventually("both requests to reach the origins", LIMIT, || async {
        a.requests() + b.requests() >= 2
    })
    .await;
    // Servers are used in turn, so each has a request and room for more of its own.
    assert_eq!((a.requests(), b.requests()), (1, 1));

    let got = within("a third request", get(&edge.url("/3"))).await;
    assert_overload_page(&got, "1");
    assert_eq!(
        a.requests() + b.requests(),
        2,
        "neither server saw the third request"
    );

    gate.open();
    for r in [first, second] {
        let got = within("a held request", r).await.unwrap();
        assert_eq!(got.status, 200, "{}", got.text());
    }
}
