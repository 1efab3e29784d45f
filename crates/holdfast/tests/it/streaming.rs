//! Bodies stream through the edge, byte-exact and without being buffered whole: large
//! bodies both ways (HTTP/1.1 with a length, chunked, and h2c), request bodies past
//! `request_buffer` or on routes that do not buffer (and gRPC), a response the origin only
//! finishes after the client saw its start, `Expect: 100-continue`, and protocol upgrades
//! tunnelled byte for byte after `101 Switching Protocols`.

use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

const BIG: usize = 8 << 20;

const EDGE: &str = r#"
[[pools]]
name = "primary"
servers = ["{origin}"]

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "primary"
"#;

fn start_with(origin: std::net::SocketAddr, h2c: bool) -> Edge {
    Edge::start(
        &edge_config_with(1, "h2c = {h2c}\nshutdown_grace = \"1s\"", EDGE),
        &[("origin", origin.to_string()), ("h2c", h2c.to_string())],
    )
}

fn start(origin: std::net::SocketAddr) -> Edge {
    start_with(origin, false)
}

/// Echoes the request body back.
async fn echo_origin() -> Origin {
    Origin::start(handler(|req: Request<Incoming>| async move {
        match req.into_body().collect().await {
            Ok(body) => ok(body.to_bytes()),
            Err(e) => status(500, format!("body failed: {e}")),
        }
    }))
    .await
}

/// Compare without printing megabytes on failure.
fn assert_same(got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "body length");
    let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "bodies differ from byte {first_diff:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_intact() {
    let origin = echo_origin().await;
    let edge = start(origin.addr);
    let body = pattern_bytes(BIG, 1);
    let req = Request::post(edge.url("/echo"))
        .body(Body::new(body.clone()))
        .unwrap();
    let got = within_limit(send(req)).await;
    assert_eq!(got.status, 200);
    assert_same(&got.body, &body);
    assert_eq!(
        origin.last().headers["content-length"],
        BIG.to_string().as_str()
    );
}

type ChunkStream =
    StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

/// A request body fed chunk by chunk through the returned sender; its length is unknown,
/// so it goes out chunked.
fn channel_body() -> (mpsc::Sender<Bytes>, ChunkStream) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok(Frame::data(chunk)), rx))
    });
    (tx, StreamBody::new(Box::pin(stream) as _))
}

/// An HTTP/1.1 client connection to `addr`, for bodies the pooled test client cannot send.
async fn h1_client(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<ChunkStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_of_unknown_length_streams_through_intact() {
    let origin = echo_origin().await;
    let edge = start(origin.addr);
    let body = pattern_bytes(BIG, 2);
    let (tx, req_body) = channel_body();
    let mut sender = h1_client(edge.running().http_addrs[0]).await;
    let req = Request::post("/upload")
        .header("host", "edge.test")
        .body(req_body)
        .unwrap();
    let feed = {
        let body = body.clone();
        tokio::spawn(async move {
            for chunk in body.chunks(100_000) {
                tx.send(Bytes::copy_from_slice(chunk)).await.unwrap();
            }
        })
    };
    let resp = within_limit(sender.send_request(req)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let got = within_limit(resp.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    feed.await.unwrap();
    assert_same(&got, &body);
    let seen = origin.last().headers;
    assert!(!seen.contains_key("content-length"), "{seen:?}");
    assert_eq!(seen["transfer-encoding"], "chunked");
}

/// Sends `first`, waits until the origin has it, then sends the rest: an edge that held the
/// body back would deadlock here (and time out). The origin answers with the length it got.
async fn body_reaches_the_origin_before_the_client_has_sent_it_all(
    edge_keys: &str,
    route: &str,
    content_type: &str,
    first: Bytes,
) {
    let first_arrived = Arc::new(Notify::new());
    let origin = {
        let first_arrived = first_arrived.clone();
        Origin::start(handler(move |req: Request<Incoming>| {
            let first_arrived = first_arrived.clone();
            async move {
                let mut body = req.into_body();
                let mut total = 0;
                while let Some(frame) = body.frame().await {
                    let Ok(frame) = frame else {
                        return status(500, "body failed");
                    };
                    if total == 0 {
                        first_arrived.notify_one();
                    }
                    total += frame.data_ref().map_or(0, |d| d.len());
                }
                ok(total.to_string())
            }
        }))
        .await
    };
    let config = edge_config_with(1, edge_keys, &format!("{EDGE}{route}\n"));
    let edge = Edge::start(&config, &[("origin", origin.addr.to_string())]);
    let (tx, req_body) = channel_body();
    let mut sender = h1_client(edge.running().http_addrs[0]).await;
    let req = Request::post("/upload")
        .header("host", "edge.test")
        .header("content-type", content_type)
        .body(req_body)
        .unwrap();
    let response = tokio::spawn(async move { sender.send_request(req).await });
    let want = first.len() + 13;
    tx.send(first).await.unwrap();
    within_limit(first_arrived.notified()).await;
    tx.send(Bytes::from_static(b"-and-the-rest")).await.unwrap();
    drop(tx);
    let resp = within_limit(response).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let total = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(total, want.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_route_without_request_buffering_the_body_streams_at_once() {
    let first = Bytes::from_static(b"first");
    body_reaches_the_origin_before_the_client_has_sent_it_all(
        "",
        "request_buffering = false",
        "text/plain",
        first,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_unknown_length_over_request_buffer_streams_on() {
    // The first 2 KiB cross `request_buffer`: what was read goes first, the rest follows.
    let first = Bytes::from(vec![b'x'; 2048]);
    body_reaches_the_origin_before_the_client_has_sent_it_all(
        "request_buffer = \"1KiB\"",
        "",
        "text/plain",
        first,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_bodies_are_never_held_back() {
    // A gRPC stream is a conversation: the client may wait for an answer before it sends more.
    let first = Bytes::from_static(b"first");
    body_reaches_the_origin_before_the_client_has_sent_it_all(
        "",
        "",
        "application/grpc+proto",
        first,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_response_reaches_the_client_before_the_origin_has_sent_it_all() {
    // The origin sends the rest only after the client has seen the first chunk.
    let client_saw_first = Arc::new(Notify::new());
    let origin = {
        let go = client_saw_first.clone();
        RawOrigin::start(move |mut c| {
            let go = go.clone();
            async move {
                c.read_request().await;
                c.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
                    .await;
                go.notified().await;
                c.write(b"9\r\n-the-rest\r\n0\r\n\r\n").await;
                c.read_to_end().await;
            }
        })
        .await
    };
    let edge = start(origin.addr);
    let resp = within_limit(client().get(edge.url("/").parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = within_limit(body.frame()).await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "first");
    client_saw_first.notify_one();
    let rest = within_limit(body.collect()).await.unwrap().to_bytes();
    assert_eq!(rest, "-the-rest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_stream_large_bodies_both_ways_intact() {
    let origin = echo_origin().await;
    let edge = start_with(origin.addr, true);
    let tcp = tokio::net::TcpStream::connect(edge.running().http_addrs[0])
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let body = pattern_bytes(BIG, 3);
    let req = Request::post(edge.url("/h2"))
        .body(Body::new(body.clone()))
        .unwrap();
    let resp = within_limit(sender.send_request(req)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let got = within_limit(resp.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_same(&got, &body);
    assert_eq!(
        origin.last().headers["via"],
        "2 holdfast",
        "the origin learns the client spoke HTTP/2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_gets_100_then_the_final_response() {
    let origin = echo_origin().await;
    let edge = start(origin.addr);
    let mut c = RawConn::connect(edge.running().http_addrs[0]).await;
    c.write(
        b"POST /upload HTTP/1.1\r\nhost: edge.test\r\ncontent-length: 11\r\nexpect: 100-continue\r\n\r\n",
    )
    .await;
    let interim = within_limit(c.read_head()).await;
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue"),
        "the client is told to send the body: {interim:?}"
    );
    c.write(b"hello world").await;
    let resp = within_limit(c.read_response()).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert_eq!(resp.text(), "hello world");
    assert!(
        !origin.last().headers.contains_key("expect"),
        "the edge answered the expectation itself"
    );
}

/// An origin that accepts `Upgrade: echo`: it greets, then answers every read with the same
/// bytes upper-cased, until the client closes.
async fn upgrade_origin() -> Origin {
    Origin::start(handler(|mut req: Request<Incoming>| async move {
        if req.headers().get("upgrade").is_none_or(|u| u != "echo") {
            return ok("plain response");
        }
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let mut io = TokioIo::new(on_upgrade.await.unwrap());
            io.write_all(b"hello from origin\n").await.unwrap();
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = io.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                io.write_all(&buf[..n].to_ascii_uppercase()).await.unwrap();
            }
        });
        let mut resp = status(101, "");
        resp.headers_mut()
            .insert("upgrade", "echo".parse().unwrap());
        resp.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        resp
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_is_tunnelled_both_ways_after_101() {
    let origin = upgrade_origin().await;
    let edge = start(origin.addr);
    let mut c = RawConn::connect(edge.running().http_addrs[0]).await;
    c.write(
        b"GET /tunnel HTTP/1.1\r\nhost: edge.test\r\nconnection: Upgrade\r\nupgrade: echo\r\n\r\n",
    )
    .await;
    let head = within_limit(c.read_head()).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(head_header(&head, "upgrade"), Some("echo"));
    assert!(head_header(&head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("upgrade")));

    let seen = origin.last().headers;
    assert_eq!(seen["upgrade"], "echo");
    assert_eq!(seen["connection"], "upgrade");

    assert_eq!(c.read_exact(18).await, b"hello from origin\n");
    for msg in [&b"ping"[..], b"more bytes", &[b'x'; 30_000]] {
        c.write(msg).await;
        assert_eq!(c.read_exact(msg.len()).await, msg.to_ascii_uppercase());
    }
    // Closing our side closes the tunnel: the origin stops, and we see its close.
    c.stream.shutdown().await.unwrap();
    assert_eq!(within_limit(c.read_to_end()).await, b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_the_origin_declines_is_an_ordinary_response() {
    let origin = upgrade_origin().await;
    let edge = start(origin.addr);
    let mut c = RawConn::connect(edge.running().http_addrs[0]).await;
    c.write(
        b"GET / HTTP/1.1\r\nhost: edge.test\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    )
    .await;
    let resp = within_limit(c.read_response()).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert_eq!(resp.text(), "plain response");
    assert_eq!(resp.header("upgrade"), None);

    // The connection is still an ordinary HTTP/1.1 connection.
    c.write(b"GET /again HTTP/1.1\r\nhost: edge.test\r\n\r\n")
        .await;
    let again = within_limit(c.read_response()).await;
    assert_eq!(again.status, 200, "{}", again.head);
    assert_eq!(again.text(), "plain response");
}
