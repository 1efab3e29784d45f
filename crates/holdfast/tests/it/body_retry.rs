//! Retrying requests with a body. On a route with `request_buffering = false`, the pool's
//! `[pools.retry] buffer_body` alone decides: a body up to it (default 64KiB; chunked too)
//! is kept in memory, so the request can be re-sent whole to another server;
//! larger bodies are streamed and never retried; `buffer_body = "0"` keeps none. On a route
//! that buffers (the default), every body read whole (up to `edge.request_buffer`, chunked
//! ones too) can be re-sent.
//!
//! Round robin alternates between the two servers (a retry takes a turn too), so of two
//! requests sent one after the other that are not retried, exactly one goes to the failing
//! server: the counts below are exact whatever server the pool starts with.

use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// An edge with one pool "app" of `servers` and a route that streams bodies (no request
/// buffering); `retry` is added to its `[pools.retry]`, which leaves room for every retry in
/// the budget.
fn start(servers: &[SocketAddr], retry: &str) -> Edge {
    let retry = format!("[pools.retry]\nmin_per_second = 100\n{retry}");
    app_edge(
        2,
        &server_list(servers),
        &retry,
        "request_buffering = false",
    )
}

/// An origin that reads every request body whole, keeps it, and answers 200 with its length.
async fn recording() -> (Origin, Arc<Mutex<Vec<Bytes>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    let origin = Origin::start(handler(move |req| {
        let kept = kept.clone();
        async move {
            match req.into_body().collect().await {
                Ok(body) => {
                    let body = body.to_bytes();
                    let len = body.len();
                    kept.lock().unwrap().push(body);
                    ok(len.to_string())
                }
                Err(e) => status(400, e.to_string()),
            }
        }
    }))
    .await;
    (origin, bodies)
}

/// A failing server: "connect" (refused) or "reset" (RST after the request head); what keeps
/// it running.
async fn failing(kind: &str) -> (SocketAddr, Option<RawOrigin>) {
    match kind {
        "connect" => (dead_addr(), None),
        "reset" => {
            let o = resetting().await;
            (o.addr, Some(o))
        }
        other => panic!("unknown failure {other}"),
    }
}

/// A request with `body` and its `Content-Length`.
async fn send_body(method: &str, url: &str, body: Bytes) -> Got {
    within_limit(send(
        Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/octet-stream")
            .body(Full::new(body))
            .unwrap(),
    ))
    .await
}

/// The statuses of two `method` requests sent one after the other, with bodies of `len`
/// pattern bytes (seeds `seed` and `seed + 1`).
async fn send_two(method: &str, url: &str, len: usize, seed: u64) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..2 {
        let got = send_body(method, url, pattern_bytes(len, seed + i)).await;
        statuses.push(got.status.as_u16());
    }
    statuses
}

/// Of two requests, one failed (502) and one succeeded, in either order: the one sent to the
/// failing server was not retried.
fn assert_one_failed(statuses: &[u16], why: &str) {
    let mut sorted = statuses.to_vec();
    sorted.sort_unstable();
    assert_eq!(sorted, [200, 502], "{why}: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_put_is_retried_with_its_whole_body() {
    for kind in ["connect", "reset"] {
        let (bad, _keep) = failing(kind).await;
        let (live, bodies) = recording().await;
        // Default buffer_body: 64KiB.
        let edge = start(&[bad, live.addr], "");
        let url = edge.url("/upload");

        let sent: Vec<Bytes> = (0..4).map(|i| pattern_bytes(1000, i + 1)).collect();
        for (i, body) in sent.iter().enumerate() {
            let got = send_body("PUT", &url, body.clone()).await;
            assert_eq!(got.status, 200, "{kind}: request {i}: {}", got.text());
            assert_eq!(got.text(), "1000", "{kind}: request {i}");
        }
        assert_eq!(
            *bodies.lock().unwrap(),
            sent,
            "{kind}: the live origin got every body, whole, once"
        );
        assert!(live.seen.lock().unwrap().iter().all(|s| s.method == "PUT"));
        let metrics = edge.metrics().await;
        let retried = retries(&metrics, "app", "succeeded");
        assert!(
            retried >= 1.0,
            "{kind}: PUTs sent first to the failing server were retried:\n{metrics}"
        );
        assert_eq!(retries(&metrics, "app", "failed"), 0.0, "{metrics}");
        if kind == "connect" {
            assert_eq!(
                retried,
                connect_errors(&metrics, "app", bad),
                "one successful retry per refused connection:\n{metrics}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_up_to_buffer_body_is_retried_a_larger_one_is_not() {
    let bad = resetting().await;
    let (live, bodies) = recording().await;
    let edge = start(&[bad.addr, live.addr], "buffer_body = \"1KiB\"");
    let url = edge.url("/upload");

    // Exactly 1KiB: kept, so both PUTs succeed.
    for i in 0..2 {
        let got = send_body("PUT", &url, pattern_bytes(1024, i + 1)).await;
        assert_eq!(got.status, 200, "request {i}: {}", got.text());
    }
    assert_eq!(bodies.lock().unwrap().len(), 2);

    // One byte more: streamed, so the PUT sent first to the resetting server fails.
    let statuses = send_two("PUT", &url, 1025, 10).await;
    assert_one_failed(&statuses, "a body over buffer_body is streamed");
    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies.len(), 3, "the failed PUT was not sent again");
    assert_eq!(bodies[2].len(), 1025);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_still_goes_elsewhere_after_a_connect_failure() {
    // A body over `buffer_body` is streamed, but after a connect failure none of it was read
    // yet: the request goes to another server whole.
    let dead = dead_addr();
    let (live, bodies) = recording().await;
    let edge = start(&[dead, live.addr], "buffer_body = \"1KiB\"");
    let url = edge.url("/upload");

    let mut statuses = Vec::new();
    let mut sent = Vec::new();
    for i in 0..2 {
        let body = pattern_bytes(4096, i + 1);
        sent.push(body.clone());
        statuses.push(send_body("PUT", &url, body).await.status.as_u16());
    }
    assert_eq!(statuses, [200, 200]);
    let got = bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    for body in &sent {
        assert!(got.iter().any(|b| b == body), "every body arrived whole");
    }
    assert_eq!(live.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_within_buffer_body_is_retried_a_larger_one_is_not() {
    let bad = resetting().await;
    let (live, bodies) = recording().await;
    let edge = start(&[bad.addr, live.addr], "buffer_body = \"1KiB\"");
    let addr = edge.running().http_addrs[0];
    let chunked = |body: &str| {
        format!(
            "PUT /upload HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
    };

    // 100 bytes, no length declared: read whole (it ended within 1KiB) and kept.
    let small = "x".repeat(100);
    for i in 0..2 {
        let got = within_limit(raw_exchange(addr, chunked(&small).as_bytes())).await;
        assert_eq!(got.status, 200, "request {i}: {}", got.head);
    }
    // 2KiB: past buffer_body while it was read, so it streamed and is not sent again.
    let large = "y".repeat(2048);
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let got = within_limit(raw_exchange(addr, chunked(&large).as_bytes())).await;
        statuses.push(got.status);
    }
    assert_one_failed(&statuses, "a chunked body over buffer_body is streamed");
    let bodies = bodies.lock().unwrap();
    assert_eq!(
        bodies.len(),
        3,
        "{:?}",
        bodies.iter().map(|b| b.len()).collect::<Vec<_>>()
    );
    assert_eq!(bodies[0], small.as_bytes());
    assert_eq!(bodies[2], large.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_body_0_keeps_no_body() {
    let bad = resetting().await;
    let (live, bodies) = recording().await;
    let edge = start(&[bad.addr, live.addr], "buffer_body = \"0\"");
    let url = edge.url("/upload");

    let statuses = send_two("PUT", &url, 100, 1).await;
    assert_one_failed(&statuses, "buffer_body = 0 keeps no body");
    assert_eq!(bodies.lock().unwrap().len(), 1);
    assert_eq!(live.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffered_post_is_retried_only_when_non_idempotent_is_set() {
    let bad = resetting().await;
    let (live, bodies) = recording().await;
    let edge = start(&[bad.addr, live.addr], "");
    let url = edge.url("/submit");
    let statuses = send_two("POST", &url, 100, 1).await;
    assert_one_failed(&statuses, "a POST is not retried after it reached a server");
    assert_eq!(bodies.lock().unwrap().len(), 1);

    let bad = resetting().await;
    let (live, bodies) = recording().await;
    let edge = start(&[bad.addr, live.addr], "non_idempotent = true");
    let url = edge.url("/submit");
    let sent: Vec<Bytes> = (0..2).map(|i| pattern_bytes(100, i + 1)).collect();
    for (i, body) in sent.iter().enumerate() {
        let got = send_body("POST", &url, body.clone()).await;
        assert_eq!(got.status, 200, "request {i}: {}", got.text());
    }
    assert_eq!(*bodies.lock().unwrap(), sent);
    assert!(live.seen.lock().unwrap().iter().all(|s| s.method == "POST"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_request_buffering_chunked_and_larger_bodies_are_retried_whole() {
    let bad = resetting().await;
    let (live, bodies) = recording().await;
    let retry = "[pools.retry]\nmin_per_second = 100\nbuffer_body = \"1KiB\"";
    let edge = app_edge(2, &server_list(&[bad.addr, live.addr]), retry, "");
    let addr = edge.running().http_addrs[0];

    // Chunked: read whole before the origin is contacted, so both succeed.
    let body = "x".repeat(100);
    let request = format!(
        "PUT /upload HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n64\r\n{body}\r\n0\r\n\r\n"
    );
    for i in 0..2 {
        let got = within_limit(raw_exchange(addr, request.as_bytes())).await;
        assert_eq!(got.status, 200, "request {i}: {}", got.head);
    }
    // Over buffer_body, within request_buffer (1MiB): also kept and re-sent.
    let url = edge.url("/upload");
    let sent: Vec<Bytes> = (0..2).map(|i| pattern_bytes(4096, i + 1)).collect();
    for (i, b) in sent.iter().enumerate() {
        let got = send_body("PUT", &url, b.clone()).await;
        assert_eq!(got.status, 200, "request {i}: {}", got.text());
    }
    let bodies = bodies.lock().unwrap();
    assert_eq!(
        bodies.len(),
        4,
        "every request reached the live server once"
    );
    assert_eq!(bodies[0], body.as_bytes());
    assert_eq!(bodies[2..], sent[..]);
}
