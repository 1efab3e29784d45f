//! Origin keep-alive: connections are reused across requests, bounded by
//! `max_idle_per_server`; an origin's `Connection: close` is honoured; a pooled connection
//! the origin closed is replaced without the client noticing; and a connection whose
//! response was not read to the end is never handed to the next request.

use crate::support::*;
use http::Request;
use hyper::body::Incoming;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const EDGE: &str = r#"
[[pools]]
name = "primary"
servers = ["{origin}"]
{pool}

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "primary"
"#;

fn start(origin: std::net::SocketAddr, pool: &str) -> Edge {
    Edge::start(
        &edge_config(1, EDGE),
        &[("origin", origin.to_string()), ("pool", pool.to_string())],
    )
}

fn count(c: &AtomicUsize) -> usize {
    c.load(Ordering::SeqCst)
}

async fn idle_connections(edge: &Edge, origin: std::net::SocketAddr) -> u64 {
    let status = edge.status().await;
    server_status(&status, "primary", &origin.to_string())["idle_connections"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_connections_are_reused_across_requests() {
    let origin = Origin::text("ok").await;
    let edge = start(origin.addr, "");
    for i in 0..100 {
        let got = get(&edge.url(&format!("/{i}"))).await;
        assert_eq!(got.status, 200);
    }
    assert_eq!(origin.requests(), 100);
    let conns = count(&origin.connections);
    assert!(
        conns <= 2,
        "100 sequential requests used {conns} origin connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_idle_per_server_zero_turns_reuse_off() {
    let origin = Origin::text("ok").await;
    let edge = start(origin.addr, "max_idle_per_server = 0");
    for _ in 0..5 {
        assert_eq!(get(&edge.url("/")).await.status, 200);
    }
    assert_eq!(count(&origin.connections), 5);
    assert_eq!(idle_connections(&edge, origin.addr).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_bounded_by_max_idle_per_server() {
    // The first BURST requests wait for each other inside the origin, so they are certainly
    // concurrent and each needs its own origin connection.
    const BURST: usize = 8;
    let barrier = Arc::new(tokio::sync::Barrier::new(BURST));
    let arrived = Arc::new(AtomicUsize::new(0));
    let origin = {
        let (barrier, arrived) = (barrier.clone(), arrived.clone());
        Origin::start(handler(move |_req: Request<Incoming>| {
            let (barrier, arrived) = (barrier.clone(), arrived.clone());
            async move {
                if arrived.fetch_add(1, Ordering::SeqCst) < BURST {
                    barrier.wait().await;
                }
                ok("ok")
            }
        }))
        .await
    };
    let edge = start(origin.addr, "max_idle_per_server = 2");
    let burst = (0..BURST).map(|i| {
        let url = edge.url(&format!("/burst/{i}"));
        async move { get(&url).await.status }
    });
    let statuses = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::future::join_all(burst),
    )
    .await
    .expect("the burst did not complete");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(count(&origin.connections), BURST);

    eventually(
        "connections returned to the pool",
        Duration::from_secs(5),
        || async { idle_connections(&edge, origin.addr).await >= 2 },
    )
    .await;
    assert_eq!(
        idle_connections(&edge, origin.addr).await,
        2,
        "only max_idle_per_server connections are kept"
    );

    // The two kept connections serve the next requests; the rest were closed.
    for _ in 0..4 {
        assert_eq!(get(&edge.url("/after")).await.status, 200);
    }
    assert_eq!(count(&origin.connections), BURST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_from_the_origin_is_honoured() {
    let origin = Origin::start(handler(|_req| async {
        let mut resp = ok("closing");
        resp.headers_mut()
            .insert("connection", "close".parse().unwrap());
        resp
    }))
    .await;
    let edge = start(origin.addr, "");
    for _ in 0..10 {
        let got = get(&edge.url("/")).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.text(), "closing");
        assert!(
            got.header("connection").is_none(),
            "hop-by-hop, not passed on"
        );
    }
    assert_eq!(origin.requests(), 10, "no request was sent twice");
    assert_eq!(
        count(&origin.connections),
        10,
        "no request was sent on a connection the origin was closing"
    );
}

/// An origin that answers one request per connection with a keep-alive response (no
/// `Connection: close`), then closes the connection, as an origin with a short keep-alive
/// timeout does.
async fn one_shot_origin(requests: Arc<AtomicUsize>) -> RawOrigin {
    RawOrigin::start(move |mut c| {
        let requests = requests.clone();
        async move {
            c.read_request().await;
            requests.fetch_add(1, Ordering::SeqCst);
            c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            drop(c);
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_origin_closes_after_answering_are_replaced() {
    // Whether the edge notices the close before the next request or only when it tries the
    // pooled connection, the client must not see an error and the origin must not see a
    // request twice.
    let requests = Arc::new(AtomicUsize::new(0));
    let origin = one_shot_origin(requests.clone()).await;
    let edge = start(origin.addr, "");
    for i in 0..20 {
        let got = get(&edge.url("/")).await;
        assert_eq!(got.status, 200, "request {i}: {}", got.text());
        assert_eq!(got.text(), "ok");
    }
    assert_eq!(count(&requests), 20);
    assert_eq!(count(&origin.connections), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_origin_closed_while_idle_is_replaced() {
    let requests = Arc::new(AtomicUsize::new(0));
    let close_idle = Arc::new(tokio::sync::Notify::new());
    let origin = {
        let (requests, close_idle) = (requests.clone(), close_idle.clone());
        RawOrigin::start(move |mut c| {
            let (requests, close_idle) = (requests.clone(), close_idle.clone());
            async move {
                c.read_request().await;
                requests.fetch_add(1, Ordering::SeqCst);
                c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst")
                    .await;
                // Idle now, in the edge's pool; close when the test says so.
                close_idle.notified().await;
            }
        })
        .await
    };
    let edge = start(origin.addr, "");
    assert_eq!(get(&edge.url("/")).await.text(), "first");
    eventually(
        "the connection is pooled",
        Duration::from_secs(5),
        || async { idle_connections(&edge, origin.addr).await == 1 },
    )
    .await;
    close_idle.notify_one();

    let got = get(&edge.url("/")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.text(), "first");
    assert_eq!(count(&requests), 2);
    assert_eq!(count(&origin.connections), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_the_client_abandoned_does_not_poison_the_pool() {
    let big = pattern_bytes(4 << 20, 9);
    let origin = {
        let big = big.clone();
        Origin::start(handler(move |req: Request<Incoming>| {
            let big = big.clone();
            async move {
                if req.uri().path() == "/big" {
                    ok(big)
                } else {
                    ok("small")
                }
            }
        }))
        .await
    };
    let edge = start(origin.addr, "");
    {
        let resp = client()
            .get(edge.url("/big").parse().unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        // Dropped here, with almost all of its body unread.
    }
    for _ in 0..5 {
        let got = get(&edge.url("/small")).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.text(), "small");
    }
    assert_eq!(origin.requests(), 6);
}

/// An origin whose keep-alive ends exactly when a second request arrives on a connection: it
/// reads that request and closes without answering. Counts every request it reads.
async fn closes_on_second_request(requests: Arc<AtomicUsize>) -> RawOrigin {
    RawOrigin::start(move |mut c| {
        let requests = requests.clone();
        async move {
            c.read_request().await;
            requests.fetch_add(1, Ordering::SeqCst);
            c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst")
                .await;
            c.read_request().await;
            requests.fetch_add(1, Ordering::SeqCst);
            drop(c);
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_request_the_origin_closed_on_is_retried_on_a_new_connection() {
    let requests = Arc::new(AtomicUsize::new(0));
    let origin = closes_on_second_request(requests.clone()).await;
    let edge = start(origin.addr, "");
    assert_eq!(get(&edge.url("/")).await.text(), "first");
    eventually(
        "the connection is pooled",
        Duration::from_secs(5),
        || async { idle_connections(&edge, origin.addr).await == 1 },
    )
    .await;

    // Sent on the pooled connection, which the origin closes unanswered: a GET without a
    // body can safely go again, on a new connection.
    let got = get(&edge.url("/")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.text(), "first");
    assert_eq!(count(&origin.connections), 2);
    assert_eq!(
        count(&requests),
        3,
        "once on each connection, plus the lost one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_body_the_origin_closed_on_is_not_sent_twice() {
    let requests = Arc::new(AtomicUsize::new(0));
    let origin = closes_on_second_request(requests.clone()).await;
    let edge = start(origin.addr, "");
    assert_eq!(get(&edge.url("/")).await.text(), "first");
    eventually(
        "the connection is pooled",
        Duration::from_secs(5),
        || async { idle_connections(&edge, origin.addr).await == 1 },
    )
    .await;

    let post = Request::post(edge.url("/order"))
        .body(Body::new(bytes::Bytes::from_static(b"buy one")))
        .unwrap();
    let got = send(post).await;
    assert_eq!(got.status, 502, "{}", got.text());
    assert_eq!(
        count(&origin.connections),
        1,
        "no second connection was tried"
    );
    assert_eq!(count(&requests), 2, "the POST reached the origin once");
}
