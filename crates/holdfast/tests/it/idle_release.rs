//! Idle HTTP/1 connections give their state back (`edge.idle_release_after`) and are set up
//! again by their next byte, with nothing changed on the wire: the next request on a
//! released connection (plain and TLS) and pipelined requests are answered on the same
//! connection; a half-sent head, a request waiting at a slow origin and a response paused
//! mid-body are never cut by a release. The `holdfast_http_connections_idle_released` gauge
//! shows the released connections.

use crate::support::*;
use http::Request;
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

const RELEASE: &str = r#"idle_release_after = "50ms""#;
const GAUGE: &str = "holdfast_http_connections_idle_released";

fn start(origin: SocketAddr) -> Edge {
    Edge::start(
        &edge_config_with(1, RELEASE, BASIC_POOL),
        &[("origin", origin.to_string())],
    )
}

fn plain(edge: &Edge) -> SocketAddr {
    edge.running().http_addrs[0]
}

async fn released(edge: &Edge) -> f64 {
    metric(&edge.metrics().await, GAUGE).unwrap_or(-1.0)
}

async fn until_released(edge: &Edge, n: f64) {
    eventually(
        &format!("{n} connections released"),
        Duration::from_secs(10),
        || async { released(edge).await == n },
    )
    .await;
}

/// Read one HTTP/1.1 response with a `Content-Length` from `s`: its head and body.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> (String, String) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = within("a response head", s.read_u8()).await.unwrap();
        head.push(b);
    }
    let head = String::from_utf8(head).unwrap();
    let len: usize = head_header(&head, "content-length")
        .unwrap()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    within("a response body", s.read_exact(&mut body))
        .await
        .unwrap();
    (head, String::from_utf8(body).unwrap())
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, path: &str) -> (String, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: idle.test\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    read_response(s).await
}

/// Make sure at least two of the edge's 50 ms idle checks have passed since now: a second
/// connection is released, used, and released again. It stays open (released) until the
/// returned stream is dropped.
async fn two_idle_periods(edge: &Edge, already: f64) -> tokio::net::TcpStream {
    let mut other = tokio::net::TcpStream::connect(plain(edge)).await.unwrap();
    assert!(exchange(&mut other, "/other")
        .await
        .0
        .starts_with("HTTP/1.1 200"));
    until_released(edge, already + 1.0).await;
    assert!(exchange(&mut other, "/other")
        .await
        .0
        .starts_with("HTTP/1.1 200"));
    until_released(edge, already + 1.0).await;
    other
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_connection_serves_its_next_requests_on_the_same_socket() {
    let origin = Origin::text("ok").await;
    let edge = start(origin.addr);
    let mut s = tokio::net::TcpStream::connect(plain(&edge)).await.unwrap();
    let (head, body) = exchange(&mut s, "/first").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "ok");
    until_released(&edge, 1.0).await;

    let (head, body) = exchange(&mut s, "/second").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head_header(&head, "connection").is_none(), "{head}");
    assert_eq!(body, "ok");
    assert_eq!(origin.last().uri.path(), "/second");
    until_released(&edge, 1.0).await;

    // Two requests in one write, after a release: both answered, in order.
    s.write_all(
        b"GET /a HTTP/1.1\r\nHost: idle.test\r\n\r\nGET /b HTTP/1.1\r\nHost: idle.test\r\n\r\n",
    )
    .await
    .unwrap();
    for _ in 0..2 {
        let (head, body) = read_response(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, "ok");
    }
    assert_eq!(origin.requests(), 4);
    drop(s);
    until_released(&edge, 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_head_survives_idle_periods() {
    let origin = Origin::text("ok").await;
    let edge = start(origin.addr);
    let mut s = tokio::net::TcpStream::connect(plain(&edge)).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: idle")
        .await
        .unwrap();
    until_released(&edge, 1.0).await;
    let _other = two_idle_periods(&edge, 1.0).await;
    assert_eq!(
        released(&edge).await,
        2.0,
        "released with its half head kept"
    );
    s.write_all(b".test\r\n\r\n").await.unwrap();
    let (head, body) = read_response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "ok");
    assert_eq!(origin.last().uri.path(), "/slow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_at_the_origin_is_not_cut() {
    let go = Arc::new(Notify::new());
    let origin = {
        let go = go.clone();
        Origin::start(handler(move |req: Request<Incoming>| {
            let go = go.clone();
            async move {
                if req.uri().path() == "/wait" {
                    go.notified().await;
                    return ok("late");
                }
                ok("ok")
            }
        }))
        .await
    };
    let edge = start(origin.addr);
    let mut s = tokio::net::TcpStream::connect(plain(&edge)).await.unwrap();
    // Pipelined behind a quick one: no byte is read after the first response ends, so only
    // the request in flight keeps the connection from being released.
    s.write_all(b"GET /first HTTP/1.1\r\nHost: idle.test\r\n\r\nGET /wait HTTP/1.1\r\nHost: idle.test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await.1, "ok");
    eventually(
        "the second request at the origin",
        Duration::from_secs(10),
        || async { origin.requests() == 2 },
    )
    .await;
    let _other = two_idle_periods(&edge, 0.0).await;
    assert_eq!(
        released(&edge).await,
        1.0,
        "the waiting connection is not released"
    );
    go.notify_one();
    let (head, body) = read_response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head_header(&head, "connection").is_none(),
        "kept alive: {head}"
    );
    assert_eq!(body, "late");
    assert_eq!(exchange(&mut s, "/after").await.1, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_paused_mid_body_is_not_cut() {
    let go = Arc::new(Notify::new());
    let origin = {
        let go = go.clone();
        RawOrigin::start(move |mut c| {
            let go = go.clone();
            async move {
                // any number of requests: /pause sends half its body until told, others "ok"
                loop {
                    let (head, _) = c.read_request().await;
                    if head.starts_with("GET /pause ") {
                        c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nabc")
                            .await;
                        go.notified().await;
                        c.write(b"def").await;
                    } else {
                        c.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                }
            }
        })
        .await
    };
    let edge = start(origin.addr);
    let mut s = tokio::net::TcpStream::connect(plain(&edge)).await.unwrap();
    s.write_all(b"GET /pause HTTP/1.1\r\nHost: idle.test\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(within("the head", s.read_u8()).await.unwrap());
    }
    let mut first = [0u8; 3];
    within("the first bytes", s.read_exact(&mut first))
        .await
        .unwrap();
    assert_eq!(&first, b"abc");
    let _other = two_idle_periods(&edge, 0.0).await;
    assert_eq!(
        released(&edge).await,
        1.0,
        "the paused connection is not released"
    );
    go.notify_one();
    let mut rest = [0u8; 3];
    within("the rest of the body", s.read_exact(&mut rest))
        .await
        .unwrap();
    assert_eq!(&rest, b"def");
    assert_eq!(exchange(&mut s, "/after").await.1, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_tls_connection_serves_its_next_request() {
    let origin = Origin::text("ok").await;
    let ca = TestCa::new("idle release CA");
    let leaf = ca.leaf(&["idle.test"]);
    let edge = Edge::start_in_dir(
        &format!(
            r#"
[edge]
listen = []
tls_listen = ["{{edge}}"]
threads = 1
access_log = "off"
{RELEASE}

[[edge.tls]]
cert = "leaf.pem"
key = "leaf.key"

[admin]
listen = "{{admin}}"
{BASIC_POOL}"#
        ),
        &[("origin", origin.addr.to_string())],
        |dir| leaf.write(dir, "leaf"),
    );
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(edge.running().https_addrs[0])
        .await
        .unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("idle.test").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(exchange(&mut tls, "/one").await.1, "ok");
    until_released(&edge, 1.0).await;
    let (head, body) = exchange(&mut tls, "/two").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "ok");
    assert_eq!(origin.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_never_gives_a_slow_head_more_time() {
    // A head dripped a byte every 300 ms: each pause releases the connection and each byte
    // sets hyper up again, with a new header timer of its own. The head's limit (1 s) must
    // still run from its first byte: the edge closes it long before the drip ends.
    let origin = Origin::text("ok").await;
    let edge = Edge::start(
        &edge_config_with(
            1,
            &format!("{RELEASE}\nclient_header_timeout = \"1s\""),
            BASIC_POOL,
        ),
        &[("origin", origin.addr.to_string())],
    );
    let mut s = tokio::net::TcpStream::connect(plain(&edge)).await.unwrap();
    let head = b"GET /drip HTTP/1.1\r\nHost: idle.test\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut sent = 0;
    for byte in head {
        if s.write_all(&[*byte]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        sent < head.len(),
        "the edge let a {}-byte head drip for {} s",
        head.len(),
        head.len() * 3 / 10
    );
    let mut rest = Vec::new();
    let _ = within("the close", s.read_to_end(&mut rest)).await;
    assert!(
        rest.is_empty(),
        "closed unanswered: {}",
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(origin.requests(), 0);
    let metrics = edge.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"holdfast_http_bad_requests_total{reason="header_timeout"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
}

/// A binary upgrade's drain answers the next request of every open keep-alive connection
/// (with `Connection: close`) instead of closing it under a request on its way: whichever of
/// the worker's tasks wakes first on the stop, each connection knows it is a drain. Held and
/// released connections alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_answers_the_next_request_of_every_keep_alive_connection() {
    let origin = Origin::text("ok").await;
    for release in ["0s", "50ms"] {
        let keys = format!("idle_release_after = \"{release}\"\ndrain_timeout = \"10s\"");
        let mut edge = Edge::start(
            &edge_config_with(1, &keys, BASIC_POOL),
            &[("origin", origin.addr.to_string())],
        );
        let addr = plain(&edge);
        let mut conns = Vec::new();
        for _ in 0..4 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (head, _) = exchange(&mut s, "/before").await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            conns.push(s);
        }
        if release != "0s" {
            until_released(&edge, 4.0).await;
        }
        let drained = edge.drain_in_background();
        // The listener closes once the worker saw the stop.
        eventually("the listener closed", Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(addr).await.is_err()
        })
        .await;
        for (i, s) in conns.iter_mut().enumerate() {
            let (head, body) = exchange(s, "/during").await;
            assert!(
                head.starts_with("HTTP/1.1 200"),
                "release {release}, conn {i}: {head}"
            );
            assert_eq!(head_header(&head, "connection"), Some("close"), "{head}");
            assert_eq!(body, "ok");
        }
        tokio::task::spawn_blocking(move || drained.join().unwrap())
            .await
            .unwrap();
    }
}
