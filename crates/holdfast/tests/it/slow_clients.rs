//! Slow and idle clients are bounded by `edge.client_header_timeout` (here 1 s): a head sent
//! a byte at a time, a connection that never sends anything and a keep-alive connection left
//! idle after its request are all closed by the edge, unanswered, and counted as
//! `holdfast_http_bad_requests_total{reason="header_timeout"}` (the idle ones are not bad
//! requests and are not counted). A head that arrives in time is answered. The clients drip
//! bytes on their own task; the tests only wait for the edge to close, bounded by `LIMIT`.
//! (The 60 s stall limit on writes to a client that stopped reading is tested in
//! `holdfast-proxy/src/send_timeout.rs`; `bench/hostile.sh` measures all of them end to end.)

use crate::support::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn start(origin: SocketAddr) -> Edge {
    app_edge_with(origin, "client_header_timeout = \"1s\"")
}

fn app_edge_with(origin: SocketAddr, edge_keys: &str) -> Edge {
    Edge::start(
        &edge_config_with(1, edge_keys, APP_POOL),
        &app_vars(&server_list(&[origin]), "", ""),
    )
}

fn edge_addr(edge: &Edge) -> SocketAddr {
    edge.running().http_addrs[0]
}

/// Everything the edge sends until it closes the connection (within `LIMIT`).
async fn until_closed(s: &mut tokio::net::tcp::OwnedReadHalf) -> Vec<u8> {
    within("the edge closing the connection", async {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
}

/// A request head whose header lines take `lines` × 20 bytes.
fn long_head(lines: usize) -> Vec<u8> {
    let mut head = b"GET / HTTP/1.1\r\nHost: slow.test\r\n".to_vec();
    for i in 0..lines {
        head.extend_from_slice(format!("X-Pad-{i:03}: aaaaaaaaaa\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Writes `bytes` one at a time, `pause` apart, until done or the edge closes.
fn drip(mut w: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>, pause: Duration) {
    tokio::spawn(async move {
        for b in bytes {
            if w.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(pause).await;
        }
    });
}

async fn header_timeouts(edge: &Edge) -> f64 {
    metric(
        &edge.metrics().await,
        r#"holdfast_http_bad_requests_total{reason="header_timeout"}"#,
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_a_byte_at_a_time_is_cut_at_the_header_timeout() {
    let origin = Origin::text("answered").await;
    let edge = start(origin.addr);
    let (mut r, w) = TcpStream::connect(edge_addr(&edge))
        .await
        .unwrap()
        .into_split();
    // 50 lines of 20 bytes at a byte every 20 ms: 20 s, far past the 1 s limit.
    drip(w, long_head(50), Duration::from_millis(20));

    let got = until_closed(&mut r).await;
    assert!(
        !String::from_utf8_lossy(&got).contains("answered"),
        "a head that never completed was answered: {}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(origin.requests(), 0, "the origin saw the request");
    eventually("the header timeout counted", LIMIT, || async {
        header_timeouts(&edge).await >= 1.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_arrives_in_time_is_answered() {
    let origin = Origin::text("answered").await;
    // The same drip (a byte every 20 ms) with a limit it fits in (the head takes ~2 s).
    let edge = app_edge_with(origin.addr, "client_header_timeout = \"15s\"");
    let (mut r, w) = TcpStream::connect(edge_addr(&edge))
        .await
        .unwrap()
        .into_split();
    let mut head = long_head(3);
    head.splice(
        head.len() - 2..head.len() - 2,
        b"Connection: close\r\n".iter().copied(),
    );
    drip(w, head, Duration::from_millis(20));

    let got = String::from_utf8_lossy(&until_closed(&mut r).await).into_owned();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.ends_with("answered"), "{got}");
    assert_eq!(header_timeouts(&edge).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed() {
    let origin = Origin::text("answered").await;
    let edge = start(origin.addr);
    let (mut r, _w) = TcpStream::connect(edge_addr(&edge))
        .await
        .unwrap()
        .into_split();

    let got = until_closed(&mut r).await;
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert_eq!(origin.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let origin = Origin::text("answered").await;
    let edge = start(origin.addr);
    let (mut r, mut w) = TcpStream::connect(edge_addr(&edge))
        .await
        .unwrap()
        .into_split();
    w.write_all(b"GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n")
        .await
        .unwrap();

    // The response, then nothing more: the connection stays idle until the edge closes it.
    let got = String::from_utf8_lossy(&until_closed(&mut r).await).into_owned();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(
        got.ends_with("answered"),
        "one response, then the close: {got}"
    );
    assert_eq!(origin.requests(), 1);
}

/// `edge.max_connections`: at the cap the edge stops accepting; a client beyond it waits in
/// the backlog and is served as soon as one connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_connections_the_next_client_waits_for_a_free_place() {
    let origin = Origin::text("ok").await;
    let edge = app_edge_with(origin.addr, "max_connections = 2");
    let addr = edge_addr(&edge);
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    let capped = |text: &str| metric(text, "holdfast_http_connections_capped_total");
    eventually("the edge to reach its cap", LIMIT, || async {
        capped(&edge.metrics().await).unwrap_or(0.0) >= 1.0
    })
    .await;
    // The admin plane is not a data listener: it still answers at the cap.
    let text = edge.metrics().await;
    assert_eq!(
        metric(&text, "holdfast_http_connections_active"),
        Some(2.0),
        "{text}"
    );
    // The third connects (the kernel's backlog) and sends its request, but is not accepted.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let text = edge.metrics().await;
    assert_eq!(
        metric(&text, "holdfast_http_connections_total"),
        Some(2.0),
        "{text}"
    );
    drop(first);
    let (mut read, _write) = third.into_split();
    let answer = String::from_utf8_lossy(&until_closed(&mut read).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
