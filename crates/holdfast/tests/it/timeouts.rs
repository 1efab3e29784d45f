//! Route timeouts: `read` bounds each wait for the origin (the response head, then every
//! body chunk), `total` bounds the whole exchange, `connect` bounds connection set-up. A
//! timeout before the head is a 504 page blaming the origin; one inside the body cuts the
//! response, so the client can tell it is incomplete. Origins here are slow on purpose (they
//! sleep); the tests themselves only wait for responses, bounded by `LIMIT`.

use crate::support::*;
use http_body_util::BodyExt;
use std::time::Duration;

/// Edges stop within a second, though origins here never answer.
const SHUTDOWN_GRACE: &str = "shutdown_grace = \"1s\"";

const EDGE: &str = r#"
[[pools]]
name = "primary"
servers = ["{origin}"]

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "primary"
timeouts = {timeouts}
"#;

fn start(origin: std::net::SocketAddr, timeouts: &str) -> Edge {
    Edge::start(
        &edge_config_with(1, SHUTDOWN_GRACE, EDGE),
        &[
            ("origin", origin.to_string()),
            ("timeouts", timeouts.to_string()),
        ],
    )
}

fn assert_origin_timeout_page(got: &Got) {
    assert_eq!(got.status, 504, "{}", got.text());
    let id = got.header("x-request-id").unwrap();
    assert!(
        got.text().contains(id),
        "page names the request id: {}",
        got.text()
    );
    assert!(
        got.text().contains("origin"),
        "page blames the origin: {}",
        got.text()
    );
}

/// Read a response body frame by frame: (bytes received, whether it ended cleanly).
async fn drain(body: hyper::body::Incoming) -> (usize, bool) {
    let mut body = body;
    let mut n = 0;
    loop {
        match body.frame().await {
            None => return (n, true),
            Some(Err(_)) => return (n, false),
            Some(Ok(f)) => n += f.data_ref().map_or(0, |d| d.len()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_timeout_before_the_head_is_a_504_from_the_edge() {
    let origin = Origin::start(handler(|_req| async {
        tokio::time::sleep(FOREVER).await;
        ok("too late")
    }))
    .await;
    let edge = start(origin.addr, r#"{ read = "200ms" }"#);
    let got = within_limit(get(&edge.url("/slow"))).await;
    assert_origin_timeout_page(&got);
    assert_eq!(origin.requests(), 1, "the request did reach the origin");

    let metrics = edge.metrics().await;
    let sample = format!(
        r#"holdfast_upstream_errors_total{{kind="timeout",pool="primary",server="{}"}}"#,
        origin.addr
    );
    assert_eq!(metric(&metrics, &sample), Some(1.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_timeout_page_is_json_when_asked() {
    let origin = Origin::start(handler(|_req| async {
        tokio::time::sleep(FOREVER).await;
        ok("too late")
    }))
    .await;
    let edge = start(origin.addr, r#"{ read = "200ms" }"#);
    let got = within_limit(get_with(&edge.url("/"), &[("accept", "application/json")])).await;
    assert_eq!(got.status, 504);
    let json = got.json();
    assert_eq!(json["failed"], "origin");
    assert_eq!(json["status"], 504);
    assert_eq!(json["request_id"], got.header("x-request-id").unwrap());
}

/// An origin that sends a head promising `len` bytes, then `sent` of them, then stalls.
async fn stalling_origin(len: usize, sent: usize) -> RawOrigin {
    RawOrigin::start(move |mut c| async move {
        c.read_request().await;
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n");
        c.write(head.as_bytes()).await;
        c.write(&vec![b'x'; sent]).await;
        tokio::time::sleep(FOREVER).await;
        drop(c);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_timeout_inside_the_body_cuts_the_response() {
    let origin = stalling_origin(100_000, 1000).await;
    let edge = start(origin.addr, r#"{ read = "300ms" }"#);
    let resp = within_limit(client().get(edge.url("/").parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the head arrived in time");
    let (received, complete) = within_limit(drain(resp.into_body())).await;
    assert!(
        !complete,
        "a stalled body must not look complete to the client"
    );
    assert_eq!(received, 1000, "what the origin sent was passed on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_timeout_inside_a_chunked_body_cuts_the_response() {
    let origin = RawOrigin::start(|mut c| async move {
        c.read_request().await;
        c.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .await;
        tokio::time::sleep(FOREVER).await;
        drop(c);
    })
    .await;
    let edge = start(origin.addr, r#"{ read = "300ms" }"#);
    let resp = within_limit(client().get(edge.url("/").parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (received, complete) = within_limit(drain(resp.into_body())).await;
    assert!(
        !complete,
        "a stalled chunked body must not end with a last chunk"
    );
    assert_eq!(received, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_timeout_cuts_a_slow_drip_the_read_timeout_allows() {
    // One byte every 50ms for 10s: every gap is far inside `read`, the whole is far beyond
    // `total`.
    let origin = RawOrigin::start(|mut c| async move {
        c.read_request().await;
        c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 200\r\n\r\n")
            .await;
        for _ in 0..200 {
            c.write(b".").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let edge = start(origin.addr, r#"{ read = "5s", total = "600ms" }"#);
    let resp = within_limit(client().get(edge.url("/").parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (received, complete) = within_limit(drain(resp.into_body())).await;
    assert!(!complete, "the total deadline must cut the body");
    assert!(received < 200, "received {received} of 200 bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_timeout_also_bounds_the_wait_for_the_head() {
    let origin = Origin::start(handler(|_req| async {
        tokio::time::sleep(FOREVER).await;
        ok("too late")
    }))
    .await;
    let edge = start(origin.addr, r#"{ read = "1h", total = "300ms" }"#);
    let got = within_limit(get(&edge.url("/"))).await;
    assert_origin_timeout_page(&got);
}

/// An origin that sends `body` a byte at a time, `gap` apart, after a head declaring its length.
async fn dripping_origin(body: &'static [u8], gap: Duration) -> RawOrigin {
    RawOrigin::start(move |mut c| async move {
        c.read_request().await;
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
        c.write(head.as_bytes()).await;
        for b in body {
            tokio::time::sleep(gap).await;
            c.write(&[*b]).await;
        }
        c.read_to_end().await;
    })
    .await
}

/// `body` dripped by the origin through an edge with `timeouts` arrives whole.
async fn assert_dripped_body_arrives(body: &'static [u8], gap: Duration, timeouts: &str) {
    let origin = dripping_origin(body, gap).await;
    let edge = start(origin.addr, timeouts);
    let got = within_limit(get(&edge.url("/"))).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text().as_bytes(), body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_origin_within_its_timeouts_is_not_cut() {
    // The counterpart of the tests above: gaps and total well inside the limits.
    let gap = Duration::from_millis(20);
    assert_dripped_body_arrives(b"hello", gap, r#"{ read = "5s", total = "8s" }"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_keeps_coming_for_longer_than_the_read_timeout_is_not_cut() {
    // The read timeout counts from the last chunk, not from the first wait: 8 chunks 100ms
    // apart take ~800ms, over twice `read`, and every gap is well inside it. (The edge's timer
    // is not moved per chunk; when it fires after progress it is set again from the last.)
    let gap = Duration::from_millis(100);
    assert_dripped_body_arrives(b"12345678", gap, r#"{ read = "350ms", total = "10s" }"#).await;
}

/// A loopback listener whose connects hang: its accept queue (backlog 0, so one connection)
/// is full and never drained, so Linux drops further SYNs and the connecting side keeps
/// retransmitting. Returns the listener and the connections that filled the queue; both
/// must be kept alive for as long as connects should hang.
async fn unanswered_listener() -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    // Fill until a connect does not complete promptly: that proves SYNs are now dropped.
    for _ in 0..8 {
        match tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => fillers.push(s),
            Ok(Err(e)) => panic!("filling the accept queue failed: {e}"),
            Err(_) => return (listener, fillers),
        }
    }
    panic!("connects to a full accept queue kept completing; cannot make a connect hang here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_is_a_504_from_the_edge() {
    let (listener, _fillers) = unanswered_listener().await;
    let addr = listener.local_addr().unwrap();
    let edge = start(addr, r#"{ connect = "200ms" }"#);
    let got = within_limit(get(&edge.url("/"))).await;
    assert_origin_timeout_page(&got);
    let status = edge.status().await;
    let server = server_status(&status, "primary", &addr.to_string());
    assert_eq!(server["failures"], 1, "{server}");
}

const TLS_POOL: &str = r#"
[[pools]]
name = "primary"
servers = ["{origin}"]

[pools.tls]
verify = false

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "primary"
timeouts = { connect = "300ms" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_bounds_a_tls_handshake_that_never_finishes() {
    // Accepts TCP, never answers the ClientHello: connection set-up hangs after the TCP
    // connect, still inside what `connect` bounds.
    let origin = RawOrigin::start(|mut c| async move {
        c.read_to_end().await;
    })
    .await;
    let edge = Edge::start(
        &edge_config_with(1, SHUTDOWN_GRACE, TLS_POOL),
        &[("origin", origin.addr.to_string())],
    );
    let got = within_limit(get(&edge.url("/"))).await;
    assert_origin_timeout_page(&got);
    assert_eq!(
        origin.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

/// An origin that reads the whole request body, then answers with its length.
async fn counting_origin() -> Origin {
    Origin::start(handler(
        |req: http::Request<hyper::body::Incoming>| async move {
            match req.into_body().collect().await {
                Ok(body) => ok(body.to_bytes().len().to_string()),
                Err(e) => status(500, format!("body failed: {e}")),
            }
        },
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_that_keeps_moving_is_not_cut_by_the_read_timeout() {
    // The client (slow on purpose) takes ~1.8s in all, each gap far inside `read` = 1s. The
    // origin waits for the whole body before answering, as most do: the read timeout is
    // about the origin's silence, not the client's upload time.
    let origin = counting_origin().await;
    let edge = start(origin.addr, r#"{ read = "1s" }"#);
    let mut c = RawConn::connect(edge.running().http_addrs[0]).await;
    c.write(b"POST /upload HTTP/1.1\r\nhost: edge.test\r\ncontent-length: 60\r\n\r\n")
        .await;
    for _ in 0..6 {
        c.write(b"0123456789").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let got = within_limit(c.read_response()).await;
    assert_eq!(got.status, 200, "{}\n{}", got.head, got.text());
    assert_eq!(got.text(), "60");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_mid_upload_gets_408_and_the_origin_is_not_blamed() {
    let origin = counting_origin().await;
    let edge = start(origin.addr, r#"{ read = "300ms" }"#);
    let mut c = RawConn::connect(edge.running().http_addrs[0]).await;
    c.write(
        b"POST /upload HTTP/1.1\r\nhost: edge.test\r\ncontent-length: 100\r\n\r\nonly part of it",
    )
    .await;
    let got = within_limit(c.read_response()).await;
    assert_eq!(got.status, 408, "{}\n{}", got.head, got.text());
    assert!(got.text().contains("client"), "{}", got.text());

    let status = edge.status().await;
    let server = server_status(&status, "primary", &origin.addr.to_string());
    assert_eq!(server["failures"], 0, "{server}");
    let metrics = edge.metrics().await;
    let sample = r#"holdfast_http_bad_requests_total{reason="body_timeout"}"#;
    assert_eq!(metric(&metrics, sample), Some(1.0), "{metrics}");
}
