//! Bad requests are refused by the edge with a 4xx, counted in
//! `holdfast_http_bad_requests_total{reason}`, and never reach the origin: heads that are too
//! large or have too many fields, malformed request lines and headers, absurd or invalid
//! `Content-Length`, and bodies over `max_request_body` (declared, or found while streaming).
//! Each limit also has its "just inside" counterpart, which is served.

use crate::support::*;
use std::time::Duration;

const EDGE: &str = r#"
[edge]
listen = ["{edge}"]
threads = 1
access_log = "off"
h2c = {h2c}
max_header_bytes = "8KiB"
max_headers = 10
max_request_body = "1KiB"

[admin]
listen = "{admin}"

[[pools]]
name = "primary"
servers = ["{origin}"]

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "primary"
"#;

/// An origin that echoes the request body (and says how long it was).
async fn echo_origin() -> Origin {
    Origin::start(handler(
        |req: http::Request<hyper::body::Incoming>| async move {
            use http_body_util::BodyExt;
            match req.into_body().collect().await {
                Ok(body) => ok(body.to_bytes()),
                Err(e) => status(500, format!("body failed: {e}")),
            }
        },
    ))
    .await
}

fn start_with(origin: &Origin, h2c: bool) -> Edge {
    Edge::start(
        EDGE,
        &[
            ("origin", origin.addr.to_string()),
            ("h2c", h2c.to_string()),
        ],
    )
}

fn start(origin: &Origin) -> Edge {
    start_with(origin, false)
}

fn addr(edge: &Edge) -> std::net::SocketAddr {
    edge.running().http_addrs[0]
}

/// Wait until the edge has counted `n` bad requests for `reason` (counting happens when the
/// connection ends, just after the client got its answer), then check it stays exact.
async fn assert_bad_requests(edge: &Edge, reason: &str, n: f64) {
    let sample = &format!(r#"holdfast_http_bad_requests_total{{reason="{reason}"}}"#);
    let last = &std::sync::Mutex::new(None);
    eventually(
        &format!("{n} bad requests counted for {reason}"),
        Duration::from_secs(5),
        || async move {
            let now = metric(&edge.metrics().await, sample);
            *last.lock().unwrap() = now;
            now.is_some_and(|v| v >= n)
        },
    )
    .await;
    let last = *last.lock().unwrap();
    assert_eq!(last, Some(n), "counted more than expected for {reason}");
}

fn with_header_bytes(total: usize) -> Vec<u8> {
    let start = b"GET /big HTTP/1.1\r\nhost: edge.test\r\nx-fill: ";
    let end = b"\r\n\r\n";
    let fill = total - start.len() - end.len();
    let mut req = start.to_vec();
    req.extend(std::iter::repeat_n(b'a', fill));
    req.extend_from_slice(end);
    req
}

async fn oversized_headers_are_431(h2c: bool) {
    let origin = echo_origin().await;
    let edge = start_with(&origin, h2c);
    let inside = raw_exchange(addr(&edge), &with_header_bytes(7 * 1024)).await;
    assert_eq!(
        inside.status, 200,
        "a head inside the limit is served: {}",
        inside.head
    );

    let over = raw_exchange(addr(&edge), &with_header_bytes(9 * 1024)).await;
    assert_eq!(over.status, 431, "{}", over.head);
    assert_bad_requests(&edge, "header_too_large", 1.0).await;
    assert_eq!(
        origin.requests(),
        1,
        "only the request inside the limit reached the origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_with_431() {
    oversized_headers_are_431(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_with_431_when_h2c_is_on() {
    // With `h2c`, plain connections are served by a protocol-sniffing server; the HTTP/1.1
    // limits must be the same as without it.
    oversized_headers_are_431(true).await;
}

fn with_fields(n: usize) -> Vec<u8> {
    let mut req = b"GET /many HTTP/1.1\r\nhost: edge.test\r\n".to_vec();
    for i in 1..n {
        req.extend_from_slice(format!("x-field-{i}: {i}\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req
}

async fn too_many_headers_are_431(h2c: bool) {
    let origin = echo_origin().await;
    let edge = start_with(&origin, h2c);
    let inside = raw_exchange(addr(&edge), &with_fields(10)).await;
    assert_eq!(
        inside.status, 200,
        "ten fields are allowed: {}",
        inside.head
    );

    let over = raw_exchange(addr(&edge), &with_fields(11)).await;
    assert_eq!(over.status, 431, "{}", over.head);
    assert_bad_requests(&edge, "header_too_large", 1.0).await;
    assert_eq!(origin.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_header_fields_are_refused_with_431() {
    too_many_headers_are_431(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_header_fields_are_refused_with_431_when_h2c_is_on() {
    too_many_headers_are_431(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_heads_are_refused_with_400() {
    let origin = echo_origin().await;
    let edge = start(&origin);
    let malformed: &[&[u8]] = &[
        b"GET / HTTP/1.1 trailing-junk\r\nhost: edge.test\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nhost: edge.test\r\n\r\n",
        b"\x01\x02\x03 binary\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost edge.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: edge.test\r\nbad header: x\r\n\r\n",
    ];
    for req in malformed {
        let got = raw_exchange(addr(&edge), req).await;
        assert_eq!(
            got.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(req),
            got.head
        );
    }
    assert_bad_requests(&edge, "malformed", malformed.len() as f64).await;
    assert_eq!(origin.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_limit_is_refused_with_413() {
    let origin = echo_origin().await;
    let edge = start(&origin);
    let body = "x".repeat(1024);
    let inside =
        format!("POST /up HTTP/1.1\r\nhost: edge.test\r\ncontent-length: 1024\r\n\r\n{body}");
    let got = raw_exchange(addr(&edge), inside.as_bytes()).await;
    assert_eq!(
        got.status, 200,
        "a body of exactly the limit is served: {}",
        got.head
    );
    assert_eq!(got.body.len(), 1024);

    let over =
        format!("POST /up HTTP/1.1\r\nhost: edge.test\r\ncontent-length: 1025\r\n\r\n{body}x");
    let got = raw_exchange(addr(&edge), over.as_bytes()).await;
    assert_eq!(got.status, 413, "{}", got.head);
    let id = got.header("x-request-id").unwrap();
    assert!(got.text().contains(id), "{}", got.text());
    assert!(
        got.text().contains("client"),
        "the page says the client's side failed: {}",
        got.text()
    );

    // An absurd but well-formed length is refused the same way, before any body is sent.
    let absurd = b"POST /up HTTP/1.1\r\nhost: edge.test\r\ncontent-length: 1000000000000\r\n\r\n";
    let got = raw_exchange(addr(&edge), absurd).await;
    assert_eq!(got.status, 413, "{}", got.head);

    assert_bad_requests(&edge, "body_too_large", 2.0).await;
    assert_eq!(
        origin.requests(),
        1,
        "only the body inside the limit reached the origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_with_a_body_over_the_limit_gets_413_and_no_100() {
    let origin = echo_origin().await;
    let edge = start(&origin);
    let mut c = RawConn::connect(addr(&edge)).await;
    c.write(b"PUT /up HTTP/1.1\r\nhost: edge.test\r\ncontent-length: 50000000\r\nexpect: 100-continue\r\n\r\n")
        .await;
    let got = c.read_response().await;
    assert_eq!(
        got.status, 413,
        "the final answer comes first, without 100 Continue: {}",
        got.head
    );
    assert_eq!(origin.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_content_lengths_are_refused_with_400() {
    let origin = echo_origin().await;
    let edge = start(&origin);
    let invalid: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nhost: edge.test\r\ncontent-length: abc\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: edge.test\r\ncontent-length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: edge.test\r\ncontent-length: 99999999999999999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: edge.test\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nhost: edge.test\r\ncontent-length: 3, 4\r\n\r\nabcd",
    ];
    for req in invalid {
        let got = raw_exchange(addr(&edge), req).await;
        assert_eq!(
            got.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(req),
            got.head
        );
    }
    assert_bad_requests(&edge, "malformed", invalid.len() as f64).await;
    assert_eq!(origin.requests(), 0);
}

fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out =
        b"POST /stream HTTP/1.1\r\nhost: edge.test\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for c in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_inside_the_limit_is_streamed_to_the_origin() {
    let origin = echo_origin().await;
    let edge = start(&origin);
    let body = pattern_bytes(1024, 7);
    let got = raw_exchange(addr(&edge), &chunked(&body, 100)).await;
    assert_eq!(got.status, 200, "{}", got.head);
    assert_eq!(got.body, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_cut_and_refused_with_413() {
    // A chunked body's size is known only as it streams: the origin may already have the
    // head and the first chunks when the limit is crossed. The edge then aborts the origin
    // request (the origin never sees a complete body) and answers the client 413 itself.
    let origin = echo_origin().await;
    let edge = start(&origin);
    let body = pattern_bytes(4096, 7);
    let got = raw_exchange(addr(&edge), &chunked(&body, 512)).await;
    assert_eq!(got.status, 413, "{}: {}", got.head, got.text());
    assert!(got.text().contains("client"), "{}", got.text());
    assert_bad_requests(&edge, "body_too_large", 1.0).await;

    let status = edge.status().await;
    let server = server_status(&status, "primary", &origin.addr.to_string());
    assert_eq!(
        server["failures"], 0,
        "a client's oversized body is not the origin's failure: {server}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunked_body_is_refused_with_400_and_not_blamed_on_the_origin() {
    // As above, the origin may have seen the head and the first chunk; the bad chunk size is
    // found mid-stream.
    let origin = echo_origin().await;
    let edge = start(&origin);
    let req = b"POST /stream HTTP/1.1\r\nhost: edge.test\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\nnot a chunk\r\n0\r\n\r\n";
    let got = raw_exchange(addr(&edge), req).await;
    assert_eq!(got.status, 400, "{}: {}", got.head, got.text());
    assert!(got.text().contains("client"), "{}", got.text());
    assert_bad_requests(&edge, "malformed", 1.0).await;

    let status = edge.status().await;
    let server = server_status(&status, "primary", &origin.addr.to_string());
    assert_eq!(server["failures"], 0, "{server}");
}
