//! HTTP/3 to clients (`edge.h3_listen`): an `h3` + `quinn` client trusting a test CA sends
//! GET, POST with a body, a large (streamed) response, a cached response, a rule-blocked
//! route, a challenged route, a request that fails over from a dead pool, and requests in
//! flight at an origin that then resets them (they finish on the next pool), all through the same phases as
//! HTTP/1.1 and HTTP/2 (the origin sees HTTP/1.1 with `Via: 3 holdfast`); TLS responses
//! advertise HTTP/3 (`Alt-Svc`) unless the route says not to; garbage datagrams and a flood
//! of connection attempts from one address leave the edge serving; and ngtcp2's
//! `gtlsclient`, a client we did not write, fetches a page.

use crate::support::*;
use bytes::{Buf, Bytes};
use http::{Request, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls::{self, RootCertStore};

const H3_EDGE: &str = r#"
[edge]
listen = ["{edge}"]
tls_listen = ["{edge}"]
h3_listen = ["{edge}"]
h3 = { {h3} }
threads = 1
access_log = "off"

[[edge.tls]]
cert = "site.pem"
key = "site.key"

[admin]
listen = "{admin}"

[[pools]]
name = "app"
servers = ["{origin}"]

[[pools]]
name = "dead"
servers = ["{dead}"]

[[pools]]
name = "gate"
servers = ["{gate}"]

[[rules]]
id = "no-probes"
expr = 'request.path.startsWith("/wp-admin")'
action = "block"
status = 451

[[rules]]
id = "guard-protected"
expr = 'request.path.startsWith("/protected")'
action = "challenge"

[[routes]]
name = "cached"
match = { path_prefix = "/cached" }
pool = "app"
cache = { enabled = true }

[[routes]]
name = "failover"
match = { path_prefix = "/failover" }
pools = ["dead", "app"]

[[routes]]
name = "inflight"
match = { path_prefix = "/inflight" }
pools = ["gate", "app"]

[[routes]]
name = "quiet"
match = { path_prefix = "/quiet" }
pool = "app"
alt_svc = false

[[routes]]
name = "site"
match = {}
pool = "app"
"#;

const BIG: usize = 1 << 20;

/// An origin: `/echo` answers the request body, `/big` 1 MiB, `/cached` a cacheable page,
/// anything else `hello`.
pub(crate) async fn origin() -> Origin {
    Origin::start(handler(|req: Request<hyper::body::Incoming>| async move {
        use http_body_util::BodyExt;
        let path = req.uri().path().to_string();
        match path.as_str() {
            "/echo" => ok(req.into_body().collect().await.unwrap().to_bytes()),
            "/big" => ok(Bytes::from(vec![b'x'; BIG])),
            "/cached" => {
                let mut resp = ok("stored");
                resp.headers_mut()
                    .insert("cache-control", "max-age=60".parse().unwrap());
                resp
            }
            _ => ok("hello"),
        }
    }))
    .await
}

pub(crate) fn start_edge(origin: &Origin, per_ip: u32) -> (Edge, TestCa) {
    start_edge_with(origin, &format!("max_connections_per_ip = {per_ip}"))
}

/// The edge with `edge.h3 = { <h3> }`.
pub(crate) fn start_edge_with(origin: &Origin, h3: &str) -> (Edge, TestCa) {
    start_edge_gated(origin, h3, dead_addr())
}

/// The edge with `edge.h3 = { <h3> }` and `gate` as the server of pool "gate" (route
/// `/inflight`, which fails over to pool "app").
fn start_edge_gated(origin: &Origin, h3: &str, gate: SocketAddr) -> (Edge, TestCa) {
    let ca = TestCa::new("Holdfast test CA");
    let leaf = ca.leaf(&["example.com"]);
    let edge = Edge::start_in_dir(
        H3_EDGE,
        &[
            ("origin", origin.addr.to_string()),
            ("dead", dead_addr().to_string()),
            ("h3", h3.to_string()),
            ("gate", gate.to_string()),
        ],
        |dir| leaf.write(dir, "site"),
    );
    (edge, ca)
}

pub(crate) fn h3_addr(edge: &Edge) -> SocketAddr {
    edge.running().h3_addrs[0]
}

/// QUIC client TLS trusting `ca`, offering ALPN `h3`.
pub(crate) fn client_crypto(ca: &TestCa) -> Arc<quinn::crypto::rustls::QuicClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap())
}

/// A QUIC client endpoint trusting `ca`, offering ALPN `h3`.
pub(crate) fn client_endpoint(ca: &TestCa) -> quinn::Endpoint {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(client_crypto(ca)));
    endpoint
}

/// `client_endpoint` whose first round trip is assumed to take 10 ms (quinn's default,
/// 333 ms, suits the Internet): on loopback a lost handshake packet is then sent again
/// within tens of milliseconds, and a run of losses backs off from there, not from a second.
pub(crate) fn loopback_client_endpoint(ca: &TestCa) -> quinn::Endpoint {
    let mut transport = quinn::TransportConfig::default();
    transport.initial_rtt(std::time::Duration::from_millis(10));
    let mut config = quinn::ClientConfig::new(client_crypto(ca));
    config.transport_config(std::sync::Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config);
    endpoint
}

pub(crate) type Sender = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// An HTTP/3 connection to the edge, its driver running in the background.
pub(crate) async fn h3_connect(endpoint: &quinn::Endpoint, addr: SocketAddr) -> Sender {
    let conn = endpoint
        .connect(addr, "example.com")
        .unwrap()
        .await
        .unwrap();
    let (mut driver, sender) = h3::client::new(h3_quinn::Connection::new(conn))
        .await
        .unwrap();
    tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    sender
}

pub(crate) struct H3Got {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

pub(crate) async fn h3_request(
    sender: &mut Sender,
    method: &str,
    path: &str,
    body: &[u8],
) -> H3Got {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("https://example.com{path}"));
    if !body.is_empty() {
        req = req.header("content-length", body.len());
    }
    let mut stream = sender.send_request(req.body(()).unwrap()).await.unwrap();
    if !body.is_empty() {
        stream
            .send_data(Bytes::copy_from_slice(body))
            .await
            .unwrap();
    }
    stream.finish().await.unwrap();
    let resp = stream.recv_response().await.unwrap();
    let mut got = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await.unwrap() {
        while chunk.has_remaining() {
            let part = chunk.chunk();
            got.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    H3Got {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: Bytes::from(got),
    }
}

/// One HTTP/1.1 request over TLS (TCP) to the edge; the response head.
async fn https_head(edge: &Edge, ca: &TestCa, path: &str) -> http::Response<()> {
    use hyper_util::rt::TokioIo;
    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(edge.running().https_addrs[0])
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("example.com").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "example.com")
        .body(Body::default())
        .unwrap();
    let (parts, _) = send.send_request(req).await.unwrap().into_parts();
    http::Response::from_parts(parts, ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_post_and_a_streamed_response_over_http3() {
    let origin = origin().await;
    let (edge, ca) = start_edge(&origin, 256);
    let endpoint = client_endpoint(&ca);
    let mut h3 = within("HTTP/3 handshake", h3_connect(&endpoint, h3_addr(&edge))).await;

    let got = within("GET", h3_request(&mut h3, "GET", "/hello", b"")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, "hello");
    assert!(got.headers.contains_key("x-request-id"));
    assert!(!got.headers.contains_key("alt-svc"), "not on HTTP/3 itself");
    let seen = origin.last();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.headers["via"], "3 holdfast");
    assert_eq!(seen.headers["host"], "example.com");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    // The GET's stream ended with its headers: the origin gets no body framing.
    assert!(!seen.headers.contains_key("transfer-encoding"), "{seen:?}");
    assert!(!seen.headers.contains_key("content-length"), "{seen:?}");

    let body = vec![b'p'; 100_000];
    let got = within("POST", h3_request(&mut h3, "POST", "/echo", &body)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), body.len());
    assert_eq!(origin.last().headers["content-length"], "100000");

    let got = within("big GET", h3_request(&mut h3, "GET", "/big", b"")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), BIG);

    // The same phases: the strict checks refuse a method imitating GET, as on the others.
    let got = within("refused", h3_request(&mut h3, "Get", "/hello", b"")).await;
    assert_eq!(got.status, 400, "{:?}", got.body);

    let metrics = edge.metrics().await;
    let by = |s: &str| metric(&metrics, s).unwrap_or(0.0);
    assert_eq!(
        by("holdfast_http_protocol_requests_total{protocol=\"HTTP/3\"}"),
        4.0,
        "{metrics}"
    );
    assert_eq!(by("holdfast_quic_handshakes_total"), 1.0);
    assert_eq!(by("holdfast_quic_streams_total"), 4.0);
    assert_eq!(by("holdfast_quic_connections_active"), 1.0);
    let status = edge.status().await;
    assert_eq!(
        status["listeners"]["h3"],
        serde_json::json!([h3_addr(&edge).to_string()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_blocked_and_failed_over_requests_over_http3() {
    let origin = origin().await;
    let (edge, ca) = start_edge(&origin, 256);
    let endpoint = client_endpoint(&ca);
    let mut h3 = within("HTTP/3 handshake", h3_connect(&endpoint, h3_addr(&edge))).await;

    let first = within("miss", h3_request(&mut h3, "GET", "/cached", b"")).await;
    let second = within("hit", h3_request(&mut h3, "GET", "/cached", b"")).await;
    assert_eq!((first.status.as_u16(), second.status.as_u16()), (200, 200));
    assert_eq!(second.body, "stored");
    assert_eq!(origin.requests(), 1, "the second came from the cache");
    let cache_status = second.headers["cache-status"].to_str().unwrap();
    assert!(cache_status.contains("hit"), "{cache_status}");

    let blocked = within("blocked", h3_request(&mut h3, "GET", "/wp-admin/x", b"")).await;
    assert_eq!(blocked.status, 451);
    assert_eq!(origin.requests(), 1);

    // The first pool's server is dead: the request moves to the next pool of the chain.
    let moved = within("failover", h3_request(&mut h3, "GET", "/failover", b"")).await;
    assert_eq!(moved.status, 200);
    assert_eq!(moved.body, "hello");
    assert_eq!(origin.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenged_route_answers_the_challenge_over_http3() {
    let origin = origin().await;
    let (edge, ca) = start_edge(&origin, 256);
    let endpoint = client_endpoint(&ca);
    let mut h3 = within("HTTP/3 handshake", h3_connect(&endpoint, h3_addr(&edge))).await;
    let page = within("challenge", h3_request(&mut h3, "GET", "/protected/x", b"")).await;
    assert_eq!(page.status, 403);
    assert!(page.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = String::from_utf8_lossy(&page.body);
    assert!(
        html.contains("action=\"/.holdfast/challenge/verify\""),
        "{html}"
    );
    assert_eq!(
        origin.requests(),
        0,
        "a challenged request never reaches the origin"
    );
    let open = within("open", h3_request(&mut h3, "GET", "/hello", b"")).await;
    assert_eq!(open.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_at_an_origin_that_resets_finish_on_the_next_pool() {
    // The gate origin reads each request head, says so, and resets every connection once
    // released: four requests are in flight there when it fails.
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let gate = {
        let release = release.clone();
        RawOrigin::start(move |mut c| {
            let arrived_tx = arrived_tx.clone();
            let release = release.clone();
            async move {
                c.read_head().await;
                let _ = arrived_tx.send(());
                let _ = release.acquire().await;
                c.stream.set_zero_linger().unwrap();
                drop(c);
            }
        })
        .await
    };
    let origin = origin().await;
    let (edge, ca) = start_edge_gated(&origin, "max_connections_per_ip = 256", gate.addr);
    let endpoint = client_endpoint(&ca);
    let h3 = within("HTTP/3 handshake", h3_connect(&endpoint, h3_addr(&edge))).await;
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let mut sender = h3.clone();
            tokio::spawn(async move { h3_request(&mut sender, "GET", "/inflight", b"").await })
        })
        .collect();
    for _ in 0..4 {
        within("a request at the gate", arrived.recv())
            .await
            .unwrap();
    }
    assert_eq!(origin.requests(), 0);
    release.add_permits(4);
    for r in requests {
        let got = within("failover", r).await.unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(got.body, "hello");
    }
    assert_eq!(origin.requests(), 4, "each went to the next pool once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_responses_advertise_http3_unless_the_route_says_not() {
    let origin = origin().await;
    let (edge, ca) = start_edge(&origin, 256);
    let port = h3_addr(&edge).port();
    let resp = https_head(&edge, &ca, "/hello").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["alt-svc"],
        format!("h3=\":{port}\"; ma=86400")
    );
    let quiet = https_head(&edge, &ca, "/quiet").await;
    assert_eq!(quiet.status(), 200);
    assert!(!quiet.headers().contains_key("alt-svc"));
    // Plain HTTP does not advertise it.
    let plain = get(&edge.url("/hello")).await;
    assert_eq!(plain.header("alt-svc"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_a_flood_of_connection_attempts_leave_the_edge_serving() {
    let origin = origin().await;
    let (edge, ca) = start_edge(&origin, 4);
    let addr = h3_addr(&edge);

    // Garbage datagrams, some shaped like QUIC v1 Initial packets (long header, type 0,
    // version 1, random connection ids and payload).
    let junk = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..2000 {
        let len = 1 + (next() % 1400) as usize;
        let mut packet: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 2 == 0 && len > 8 {
            packet[0] = 0xc0 | (packet[0] & 0x0f);
            packet[1..5].copy_from_slice(&1u32.to_be_bytes());
            packet[5] = 8;
        }
        junk.send_to(&packet, addr).await.unwrap();
    }

    // A flood of real connection attempts from one address: past the per-address cap (4)
    // they are refused, and the edge keeps serving.
    let endpoint = client_endpoint(&ca);
    let attempts: Vec<_> = (0..24)
        .map(|_| {
            let connecting = endpoint.connect(addr, "example.com").unwrap();
            tokio::spawn(connecting)
        })
        .collect();
    let mut open = Vec::new();
    let mut refused = 0;
    for a in attempts {
        match within("a connection attempt", a).await.unwrap() {
            Ok(conn) => open.push(conn),
            Err(quinn::ConnectionError::ConnectionClosed(_)) => refused += 1,
            Err(e) => panic!("unexpected failure: {e}"),
        }
    }
    assert_eq!(open.len(), 4, "the per-address cap");
    assert_eq!(refused, 20);
    let metrics = edge.metrics().await;
    assert_eq!(
        metric(&metrics, "holdfast_quic_refused_total{reason=\"per_ip\"}"),
        Some(20.0),
        "{metrics}"
    );
    // Closing them gives the places back; a new client is served.
    for conn in open {
        conn.close(0u32.into(), b"done");
    }
    eventually(
        "the per-address count to fall",
        Duration::from_secs(10),
        || {
            let edge = &edge;
            async move {
                let m = edge.metrics().await;
                metric(&m, "holdfast_quic_connections_active") == Some(0.0)
            }
        },
    )
    .await;
    let mut h3 = within("HTTP/3 handshake", h3_connect(&endpoint, addr)).await;
    let got = within(
        "GET after the flood",
        h3_request(&mut h3, "GET", "/hello", b""),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, "hello");
    // TCP listeners were never affected.
    assert_eq!(get(&edge.url("/hello")).await.text(), "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ngtcp2_gtlsclient_fetches_a_page_over_http3() {
    let gtlsclient = which("gtlsclient").unwrap_or_else(|| {
        panic!("gtlsclient not found: install Debian's ngtcp2-client (scripts/test does)")
    });
    let origin = origin().await;
    let (edge, ca) = start_edge(&origin, 256);
    let addr = h3_addr(&edge);
    drop(ca); // gtlsclient does not verify certificates; an IP address sends no SNI.
    let out = blocking(move || {
        std::process::Command::new(gtlsclient)
            .args(["--exit-on-all-streams-close", "--quiet", "--timeout=10s"])
            .args(["127.0.0.1", &addr.port().to_string()])
            .arg(format!("https://example.com:{}/hello", addr.port()))
            .env("SSLKEYLOGFILE", "/dev/null")
            .output()
            .unwrap()
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "gtlsclient failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert_eq!(origin.requests(), 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(origin.last().headers["via"], "3 holdfast");
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}
