//! HTTP/3 under bad input: malformed datagrams (random bytes, truncated and garbled QUIC
//! long headers, an Initial of an unknown version), a flood of Initial packets from one
//! address past the Retry threshold and `edge.h3.max_connections_per_ip`, more concurrent
//! requests than `edge.h3.max_streams`, and malformed HTTP/3 frames on a request stream.
//! Each time the edge answers as `docs/tls.md` says, counts it in `holdfast_quic_*`, and a
//! real HTTP/3 client is served afterwards. The flood and the malformed packets are made
//! with `quinn-proto`'s client state machine (real Initial packets, sent by the test over a
//! plain UDP socket, never answered).

use crate::h3::{
    client_crypto, client_endpoint, h3_addr, h3_connect, h3_request, origin, start_edge,
    start_edge_with,
};
use crate::support::*;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::UdpSocket;

/// The edge's Retry threshold (handshakes in flight on one endpoint; `docs/tls.md`).
const RETRY_ABOVE: u64 = 64;

/// QUIC client state machines (no sockets): their first Initial datagrams, built for real.
struct Initials {
    endpoint: quinn_proto::Endpoint,
    config: quinn_proto::ClientConfig,
    server: SocketAddr,
    /// Kept so the attempts' state lives as long as the test (nothing is fed back to them).
    conns: Vec<quinn_proto::Connection>,
}

impl Initials {
    fn new(ca: &TestCa, server: SocketAddr) -> Initials {
        let config = quinn_proto::ClientConfig::new(client_crypto(ca));
        let endpoint = quinn_proto::Endpoint::new(
            Arc::new(quinn_proto::EndpointConfig::default()),
            None,
            false,
            None,
        );
        Initials {
            endpoint,
            config,
            server,
            conns: Vec::new(),
        }
    }

    /// A new connection attempt's first datagram (an Initial with a ClientHello, padded to
    /// 1200 bytes).
    fn next(&mut self) -> Vec<u8> {
        let now = Instant::now();
        let (_, mut conn) = self
            .endpoint
            .connect(now, self.config.clone(), self.server, "example.com")
            .unwrap();
        let mut buf = Vec::new();
        let t = conn.poll_transmit(now, 1, &mut buf).unwrap();
        buf.truncate(t.size);
        self.conns.push(conn);
        buf
    }
}

/// A xorshift generator: the same "random" bytes every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

async fn counter(edge: &Edge, sample: &str) -> u64 {
    metric(&edge.metrics().await, sample).unwrap_or(0.0) as u64
}

/// Wait (bounded) until `sample` reads `n`, then check it reads exactly `n`.
async fn until_metric(edge: &Edge, sample: &str, n: u64) {
    eventually(&format!("{sample} = {n}"), LIMIT, || async {
        counter(edge, sample).await >= n
    })
    .await;
    assert_eq!(counter(edge, sample).await, n, "{sample}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_malformed_datagrams_are_dropped_and_a_client_is_served() {
    let origin = origin().await;
    let (edge, ca) = start_edge(&origin, 256);
    let addr = h3_addr(&edge);
    let mut initials = Initials::new(&ca, addr);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let junk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut sent = 0usize;

    // Random datagrams of every size, and random short-header packets.
    for _ in 0..300 {
        let len = 1 + (rng.next() % 1500) as usize;
        junk.send_to(&rng.bytes(len), addr).await.unwrap();
        sent += 1;
    }
    // Long headers cut short: the first byte only, the version cut, a connection-id length
    // larger than what follows, a header without its payload.
    for cut in [
        &[0xc0u8][..],
        &[0xc0, 0, 0],
        &[0xc0, 0, 0, 0, 1],
        &[0xc0, 0, 0, 0, 1, 20, 1, 2, 3],
        &[0xc0, 0, 0, 0, 1, 255, 1, 2, 3],
        &[0xc0, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 8],
    ] {
        junk.send_to(cut, addr).await.unwrap();
        sent += 1;
    }
    // Real Initials, truncated at every interesting length and garbled in the header (the
    // connection-id lengths, the token length, the length field) and in the payload.
    for cut in [1, 5, 6, 7, 14, 22, 40, 100, 600, 1199] {
        let mut p = initials.next();
        p.truncate(cut);
        junk.send_to(&p, addr).await.unwrap();
        sent += 1;
    }
    for at in [5usize, 14, 15, 23, 24, 25, 26, 300, 1100] {
        let mut p = initials.next();
        p[at] ^= 0xff;
        junk.send_to(&p, addr).await.unwrap();
        sent += 1;
    }
    // An Initial whose declared length is longer than the datagram (length field is the
    // two bytes after the empty token: byte 24 and 25 with 8-byte ids).
    let mut p = initials.next();
    p[24] = 0x7f;
    p[25] = 0xff;
    junk.send_to(&p, addr).await.unwrap();
    sent += 1;
    assert!(sent > 300);

    // A valid-looking Initial of an unknown version: the edge answers Version Negotiation
    // (RFC 9000 §6) listing version 1, and keeps no state.
    let probe = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut p = initials.next();
    p[1..5].copy_from_slice(&0x1a2a_3a4au32.to_be_bytes());
    // Sent again if no answer comes: the junk above can fill the edge's receive buffer on a
    // loaded machine, and a lost datagram is not the edge's fault (clients retransmit too).
    let mut buf = vec![0u8; 2048];
    let mut answer = None;
    for _ in 0..20 {
        probe.send_to(&p, addr).await.unwrap();
        let wait = std::time::Duration::from_secs(1);
        if let Ok(got) = tokio::time::timeout(wait, probe.recv_from(&mut buf)).await {
            answer = Some(got.unwrap());
            break;
        }
    }
    let (n, from) = answer.expect("version negotiation: no answer to 20 probes");
    assert_eq!(from, addr);
    let vn = &buf[..n];
    assert!(vn[0] & 0x80 != 0, "a long header");
    assert_eq!(vn[1..5], [0, 0, 0, 0], "version 0: Version Negotiation");
    let dcid_len = vn[5] as usize;
    let scid_len = vn[6 + dcid_len] as usize;
    // The edge echoes our connection ids swapped: its DCID is the Initial's SCID.
    let (our_dcid_len, our_scid_len) = (p[5] as usize, p[6 + p[5] as usize] as usize);
    assert_eq!((dcid_len, scid_len), (our_scid_len, our_dcid_len));
    let versions: Vec<u32> = vn[7 + dcid_len + scid_len..]
        .chunks(4)
        .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
        .collect();
    assert!(versions.contains(&1), "{versions:x?}");

    // None of it made a connection, and a real client is served; the TCP side too.
    let endpoint = client_endpoint(&ca);
    let mut h3 = within("HTTP/3 handshake", h3_connect(&endpoint, addr)).await;
    let got = within("GET", h3_request(&mut h3, "GET", "/hello", b"")).await;
    assert_eq!((got.status.as_u16(), &got.body[..]), (200, &b"hello"[..]));
    // The junk went through the same socket queue before the client's datagrams.
    assert_eq!(counter(&edge, "holdfast_quic_connections_total").await, 1);
    assert_eq!(counter(&edge, "holdfast_quic_handshakes_total").await, 1);
    assert_eq!(get(&edge.url("/hello")).await.text(), "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_an_initial_flood_is_retried_refused_and_counted() {
    const PER_IP: u64 = 70;
    const FLOOD: u64 = 96;
    const CLIENTS: u64 = 12;
    let origin = origin().await;
    let (edge, ca) = start_edge(&origin, PER_IP as u32);
    let addr = h3_addr(&edge);

    // The flood: real Initial packets from one address, whose handshakes are never
    // completed (they stay in flight for the edge's 10 s handshake bound, well past the
    // end of this test's steps). Sent in bursts of 16; each burst is waited for until the
    // edge has either started a handshake or sent a Retry for every attempt in it.
    let flood = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let received = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (flood, received) = (Arc::clone(&flood), Arc::clone(&received));
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = flood.recv(&mut buf).await {
                received.fetch_add(n, Ordering::SeqCst);
            }
        })
    };
    let mut initials = Initials::new(&ca, addr);
    let mut flood_bytes = 0usize;
    let mut sent = 0u64;
    while sent < FLOOD {
        for _ in 0..16 {
            let p = initials.next();
            flood_bytes += p.len();
            flood.send_to(&p, addr).await.unwrap();
            sent += 1;
        }
        eventually("the edge to take the burst", LIMIT, || async {
            let m = edge.metrics().await;
            let c = metric(&m, "holdfast_quic_connections_total").unwrap_or(0.0);
            let r = metric(&m, "holdfast_quic_retries_total").unwrap_or(0.0);
            (c + r) as u64 >= sent
        })
        .await;
    }
    // The first 64 attempts started handshakes; with 64 in flight, every later one was
    // answered with a Retry (no handshake spent on an unproven address).
    until_metric(&edge, "holdfast_quic_connections_total", RETRY_ABOVE).await;
    until_metric(&edge, "holdfast_quic_retries_total", FLOOD - RETRY_ABOVE).await;
    assert_eq!(counter(&edge, "holdfast_quic_handshakes_total").await, 0);
    // Anti-amplification: before validation the edge sent at most 3x what it received.
    let answered = received.load(Ordering::SeqCst);
    assert!(answered > 0);
    assert!(
        answered <= 3 * flood_bytes,
        "{answered} bytes sent for {flood_bytes} received"
    );

    // Real clients from the same address while the flood's handshakes are in flight: each
    // is sent a Retry, comes back with the token (validated), and is then admitted until the
    // address holds max_connections_per_ip connections; the rest are refused.
    let endpoint = client_endpoint(&ca);
    let attempts: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(endpoint.connect(addr, "example.com").unwrap()))
        .collect();
    let mut open = Vec::new();
    let mut refused = 0;
    for a in attempts {
        match within("a connection attempt", a).await.unwrap() {
            Ok(conn) => open.push(conn),
            Err(quinn::ConnectionError::ConnectionClosed(close)) => {
                assert_eq!(
                    close.error_code,
                    quinn::TransportErrorCode::CONNECTION_REFUSED
                );
                refused += 1;
            }
            Err(e) => panic!("unexpected failure: {e}"),
        }
    }
    let admitted = PER_IP - RETRY_ABOVE;
    assert_eq!(open.len() as u64, admitted, "the per-address cap");
    assert_eq!(refused, CLIENTS - admitted);
    until_metric(
        &edge,
        "holdfast_quic_retries_total",
        FLOOD - RETRY_ABOVE + CLIENTS,
    )
    .await;
    until_metric(
        &edge,
        "holdfast_quic_refused_total{reason=\"per_ip\"}",
        CLIENTS - admitted,
    )
    .await;
    until_metric(&edge, "holdfast_quic_handshakes_total", admitted).await;
    until_metric(&edge, "holdfast_quic_connections_total", PER_IP).await;

    // Once those close, a legitimate client is served (validated by a Retry, as the flood's
    // handshakes are still in flight), and so is TCP.
    for conn in open {
        conn.close(0u32.into(), b"done");
    }
    eventually("the clients' places to be given back", LIMIT, || async {
        counter(&edge, "holdfast_quic_connections_active").await == RETRY_ABOVE
    })
    .await;
    let mut h3 = within("HTTP/3 handshake", h3_connect(&endpoint, addr)).await;
    let got = within(
        "GET after the flood",
        h3_request(&mut h3, "GET", "/hello", b""),
    )
    .await;
    assert_eq!((got.status.as_u16(), &got.body[..]), (200, &b"hello"[..]));
    assert_eq!(
        counter(&edge, "holdfast_quic_retries_total").await,
        FLOOD - RETRY_ABOVE + CLIENTS + 1
    );
    assert_eq!(get(&edge.url("/hello")).await.text(), "hello");

    // The flood's handshakes are given up at the handshake bound, and their places freed.
    eventually("the flood's handshakes to time out", LIMIT, || async {
        let m = edge.metrics().await;
        metric(&m, "holdfast_quic_handshake_errors_total") == Some(RETRY_ABOVE as f64)
            && metric(&m, "holdfast_quic_connections_active") == Some(1.0)
    })
    .await;
    reader.abort();
}

/// An origin whose `/gated` answers wait until the test opens the gate, keeping count of
/// how many wait at once (and the most ever).
struct Gate {
    waiting: AtomicUsize,
    most: AtomicUsize,
    open: tokio::sync::watch::Sender<bool>,
}

async fn gated_origin() -> (Origin, Arc<Gate>) {
    let gate = Arc::new(Gate {
        waiting: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
        open: tokio::sync::watch::channel(false).0,
    });
    let g = Arc::clone(&gate);
    let origin = Origin::start(handler(move |req| {
        let g = Arc::clone(&g);
        async move {
            if req.uri().path() == "/gated" {
                let now = g.waiting.fetch_add(1, Ordering::SeqCst) + 1;
                g.most.fetch_max(now, Ordering::SeqCst);
                let mut open = g.open.subscribe();
                let _ = open.wait_for(|o| *o).await;
                g.waiting.fetch_sub(1, Ordering::SeqCst);
            }
            ok("hello")
        }
    }))
    .await;
    (origin, gate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_requests_past_max_streams_wait_for_a_stream_and_are_all_served() {
    const MAX_STREAMS: usize = 4;
    const REQUESTS: usize = 12;
    let (origin, gate) = gated_origin().await;
    let (edge, ca) = start_edge_with(&origin, &format!("max_streams = {MAX_STREAMS}"));
    let endpoint = client_endpoint(&ca);
    let h3 = within("HTTP/3 handshake", h3_connect(&endpoint, h3_addr(&edge))).await;

    let requests: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let mut h3 = h3.clone();
            tokio::spawn(async move { h3_request(&mut h3, "GET", "/gated", b"").await })
        })
        .collect();
    // The client may have max_streams requests open; the rest wait for stream credit.
    eventually("max_streams requests at the origin", LIMIT, || async {
        gate.waiting.load(Ordering::SeqCst) >= MAX_STREAMS
    })
    .await;
    assert_eq!(
        counter(&edge, "holdfast_quic_streams_total").await,
        MAX_STREAMS as u64
    );
    // Opening the gate frees streams; every request is served, none failed.
    gate.open.send_replace(true);
    for (i, r) in requests.into_iter().enumerate() {
        let got = within(&format!("request {i}"), r).await.unwrap();
        assert_eq!(
            (got.status.as_u16(), &got.body[..]),
            (200, &b"hello"[..]),
            "{i}"
        );
    }
    assert_eq!(
        gate.most.load(Ordering::SeqCst),
        MAX_STREAMS,
        "never more at once"
    );
    assert_eq!(origin.requests(), REQUESTS);
    assert_eq!(
        counter(&edge, "holdfast_quic_streams_total").await,
        REQUESTS as u64
    );
    assert_eq!(
        counter(
            &edge,
            "holdfast_http_protocol_requests_total{protocol=\"HTTP/3\"}"
        )
        .await,
        REQUESTS as u64
    );
}

/// The QPACK field section `:method GET, :scheme https, :path /, :authority example.com`
/// (static table references; the authority as a literal with a name reference).
fn qpack_get() -> Vec<u8> {
    let mut block = vec![0x00, 0x00, 0xd1, 0xd7, 0xc1, 0x50, 11];
    block.extend_from_slice(b"example.com");
    block
}

/// A frame: type, length (QUIC varints), payload.
fn frame(ty: u64, payload: &[u8]) -> Vec<u8> {
    let mut f = varint(ty);
    f.extend(varint(payload.len() as u64));
    f.extend_from_slice(payload);
    f
}

fn varint(v: u64) -> Vec<u8> {
    match v {
        0..=63 => vec![v as u8],
        64..=16383 => ((v as u16) | 0x4000).to_be_bytes().to_vec(),
        16384..=1_073_741_823 => ((v as u32) | 0x8000_0000).to_be_bytes().to_vec(),
        _ => (v | 0xc000_0000_0000_0000).to_be_bytes().to_vec(),
    }
}

/// What a client writing `bytes` on a request stream sees: how its stream ended, then
/// whether a well-formed request on the same connection is answered (`None`) or the edge
/// closed the connection (its HTTP/3 error code).
async fn raw_request(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    bytes: Vec<u8>,
) -> (String, Option<u64>) {
    let conn = endpoint
        .connect(addr, "example.com")
        .unwrap()
        .await
        .unwrap();
    // HTTP/3's control stream first, with empty SETTINGS, as a client sends it.
    let mut control = conn.open_uni().await.unwrap();
    let mut first = vec![0x00];
    first.extend(frame(0x04, &[]));
    control.write_all(&first).await.unwrap();
    let seen = stream_request(&conn, bytes).await;
    let then = stream_request(&conn, frame(0x01, &qpack_get())).await;
    if then.starts_with("response") && then.contains("hello") {
        return (seen, None);
    }
    let code = match conn.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => close.error_code.into_inner(),
        other => panic!("the edge did not close with an HTTP/3 error: {other}"),
    };
    (seen, Some(code))
}

async fn stream_request(conn: &quinn::Connection, bytes: Vec<u8>) -> String {
    let (mut send, mut recv) = match conn.open_bi().await {
        Ok(s) => s,
        Err(e) => return format!("error {e}"),
    };
    // The edge may close the stream or connection before all of it is written.
    let _ = send.write_all(&bytes).await;
    let _ = send.finish();
    match recv.read_to_end(1 << 20).await {
        Ok(b) => format!("response {:?}", Bytes::from(b)),
        Err(e) => format!("error {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_malformed_frames_end_their_stream_or_connection_and_others_are_served() {
    let origin = origin().await;
    let (edge, ca) = start_edge(&origin, 256);
    let addr = h3_addr(&edge);
    let endpoint = client_endpoint(&ca);
    // A client that is served before, during and after.
    let mut good = within("HTTP/3 handshake", h3_connect(&endpoint, addr)).await;
    assert_eq!(
        within("GET", h3_request(&mut good, "GET", "/hello", b""))
            .await
            .status,
        200
    );

    // A well-formed request written by hand gets its answer (the harness is right).
    let hand_made = raw_request(&endpoint, addr, frame(0x01, &qpack_get()));
    let (fine, closed) = within("a hand-made request", hand_made).await;
    assert!(fine.contains("hello") && closed.is_none(), "{fine}");

    let mut rng = Rng(0x0123_4567_89ab_cdef);
    // A field line with a literal name `x` and a 200 KiB value (over max_header_bytes).
    let mut big = qpack_get();
    big.extend([0x21, b'x', 0x7f]);
    let mut n = 200 * 1024 - 127;
    while n >= 128 {
        big.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    big.push(n as u8);
    big.extend(std::iter::repeat_n(b'v', 200 * 1024));
    const FRAME_ERROR: u64 = 0x106;
    const FRAME_UNEXPECTED: u64 = 0x105;
    const QPACK_DECOMPRESSION_FAILED: u64 = 0x200;
    let cases: Vec<(&str, Vec<u8>, Option<u64>)> = vec![
        // Read as frames, the last of which the end of the stream cuts short.
        ("garbage", rng.bytes(64), Some(FRAME_ERROR)),
        (
            "a HEADERS frame of garbage",
            frame(0x01, &rng.bytes(40)),
            Some(QPACK_DECOMPRESSION_FAILED),
        ),
        (
            "a truncated HEADERS frame",
            frame(0x01, &qpack_get())[..8].to_vec(),
            Some(FRAME_ERROR),
        ),
        (
            "DATA before HEADERS",
            frame(0x00, b"hello"),
            Some(FRAME_UNEXPECTED),
        ),
        (
            "SETTINGS on a request stream",
            frame(0x04, &[]),
            Some(FRAME_UNEXPECTED),
        ),
        // Too large a field section is the request's problem only: 431, connection kept.
        ("an oversized HEADERS frame", frame(0x01, &big), None),
    ];
    let mut closed = 0;
    for (what, bytes, code) in cases {
        let (seen, got) = within(what, raw_request(&endpoint, addr, bytes)).await;
        assert_eq!(
            got, code,
            "{what}: the connection's end (the stream saw {seen})"
        );
        if code.is_some() {
            closed += 1;
        } else {
            // A HEADERS frame (h3's 431, counted below as header_too_large) and the end.
            assert!(seen.starts_with("response b\"\\x01"), "{what}: {seen}");
        }
        // The edge's other connections are unaffected.
        let got = within("GET", h3_request(&mut good, "GET", "/hello", b"")).await;
        assert_eq!(got.status, 200, "after {what}");
    }
    let m = edge.metrics().await;
    assert_eq!(
        metric(&m, "holdfast_http_bad_requests_total{reason=\"malformed\"}"),
        Some(closed as f64),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "holdfast_http_bad_requests_total{reason=\"header_too_large\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "holdfast_quic_connections_active"),
        Some(1.0),
        "{m}"
    );
    // The good client's 7, the hand-made pair, the follow-up after the 431: nothing else.
    assert_eq!(
        origin.requests(),
        1 + 6 + 2 + 1,
        "no malformed request reached the origin"
    );
}
