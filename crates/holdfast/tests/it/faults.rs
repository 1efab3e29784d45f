//! Injected faults between the edge and its origins: a `Relay` on 127.0.0.1:0 that the edge
//! is pointed at instead of the origin, which forwards each connection with the `Fault` its
//! plan gives that connection — added latency and jitter, loss (the connection dropped at
//! once), a reset in the middle of the response, a peer that accepts and never answers, and
//! every byte written on its own. Each test asserts what the client sees (a 504 within the
//! route's timeouts, retries within the pool's budget, a cut body that ends in an error and
//! not a clean end) and that no connection is leaked (the relay's open connections and the
//! edge's in-flight counts go back to zero, polled within `LIMIT`).

use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the relay does to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward both ways untouched.
    Pass,
    /// Hold every chunk, both ways, for `delay` plus up to `jitter` more (seeded per
    /// connection, so a run is repeatable).
    Latency { delay: Duration, jitter: Duration },
    /// Loss: accept, then reset at once, reading nothing (the edge sees a reset before any
    /// response byte).
    Drop,
    /// Accept, read and discard whatever comes, never answer, until the edge closes.
    BlackHole,
    /// Forward the request; forward `n` bytes of the response, then reset both sides.
    ResetAfter(usize),
    /// Forward both ways one byte per write (partial writes at their smallest).
    Drip,
}

/// A fault-injecting TCP relay in front of `target`.
pub struct Relay {
    pub addr: SocketAddr,
    /// Connections accepted so far (each an attempt by the edge).
    pub accepted: Arc<AtomicUsize>,
    /// Connections open now (accepted and not yet closed by both sides).
    pub open: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// A relay to `target` that gives its n-th connection (from 0) the fault `plan(n)`.
    pub async fn start(
        target: SocketAddr,
        plan: impl Fn(usize) -> Fault + Send + Sync + 'static,
    ) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (acc, op) = (accepted.clone(), open.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((edge_side, _)) = listener.accept().await else {
                    continue;
                };
                let n = acc.fetch_add(1, Ordering::SeqCst);
                op.fetch_add(1, Ordering::SeqCst);
                let guard = OpenGuard(op.clone());
                let fault = plan(n);
                tokio::spawn(async move {
                    relay_one(edge_side, target, fault, n as u64).await;
                    drop(guard);
                });
            }
        });
        Relay {
            addr,
            accepted,
            open,
            accept,
        }
    }

    /// Every connection gets `fault`.
    pub async fn always(target: SocketAddr, fault: Fault) -> Relay {
        Relay::start(target, move |_| fault).await
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Wait (bounded by `LIMIT`) until at most `n` connections are open at the relay.
    pub async fn until_open_at_most(&self, n: usize) {
        let open = self.open.clone();
        eventually(
            &format!("at most {n} connections open at the relay"),
            LIMIT,
            || {
                let open = open.clone();
                async move { open.load(Ordering::SeqCst) <= n }
            },
        )
        .await;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Counts a connection as closed when its relay task ends, however it ends.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn relay_one(edge_side: TcpStream, target: SocketAddr, fault: Fault, seed: u64) {
    match fault {
        Fault::Drop => {
            let _ = edge_side.set_zero_linger();
            drop(edge_side);
        }
        Fault::BlackHole => {
            let mut edge_side = edge_side;
            let mut sink = [0u8; 4096];
            while matches!(edge_side.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        _ => {
            let Ok(origin_side) = TcpStream::connect(target).await else {
                return;
            };
            let _ = edge_side.set_nodelay(true);
            let _ = origin_side.set_nodelay(true);
            if matches!(fault, Fault::ResetAfter(_)) {
                // Closing these sockets sends a reset, not a clean end.
                let _ = edge_side.set_zero_linger();
                let _ = origin_side.set_zero_linger();
            }
            let (edge_read, edge_write) = edge_side.into_split();
            let (origin_read, origin_write) = origin_side.into_split();
            let limit = match fault {
                Fault::ResetAfter(n) => Some(n),
                _ => None,
            };
            let up = pump(edge_read, origin_write, fault, seed, None, false);
            let down = pump(origin_read, edge_write, fault, seed ^ 0x9e37, limit, true);
            // Either side ending ends the connection: the edge never half-closes an HTTP/1.1
            // connection it still wants, and a cut response (`ResetAfter`) resets both.
            tokio::select! {
                _ = up => {}
                _ = down => {}
            }
        }
    }
}

/// Copy `from` to `to` with `fault` applied, at most `limit` bytes. Reading goes on while
/// delayed chunks wait, so an end of stream is seen at once; at the end, what is still
/// delayed is written first only if `flush_at_end` (the response side: an origin that
/// closes after its answer). Ends at end of stream, on an error, or at the limit.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    fault: Fault,
    seed: u64,
    limit: Option<usize>,
    flush_at_end: bool,
) {
    let mut rng = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
    let mut buf = vec![0u8; 16 << 10];
    let mut sent = 0usize;
    let mut delayed: std::collections::VecDeque<(tokio::time::Instant, Vec<u8>)> =
        std::collections::VecDeque::new();
    let mut ended = false;
    loop {
        let due = delayed.front().map(|(at, _)| *at);
        let chunk = tokio::select! {
            r = from.read(&mut buf), if !ended => match r {
                Ok(0) | Err(_) => {
                    ended = true;
                    if !flush_at_end || delayed.is_empty() {
                        break;
                    }
                    continue;
                }
                Ok(n) => {
                    let mut chunk = buf[..n].to_vec();
                    if let Some(limit) = limit {
                        chunk.truncate(limit.saturating_sub(sent + delayed.iter().map(|d| d.1.len()).sum::<usize>()));
                    }
                    if let Fault::Latency { delay, jitter } = fault {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let extra = jitter.as_nanos() as u64;
                        let extra = if extra == 0 { 0 } else { rng % extra };
                        let at = tokio::time::Instant::now() + delay + Duration::from_nanos(extra);
                        delayed.push_back((at, chunk));
                        continue;
                    }
                    chunk
                }
            },
            _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                match delayed.pop_front() {
                    Some((_, chunk)) => chunk,
                    None => continue,
                }
            }
        };
        let written = if fault == Fault::Drip {
            let mut ok = true;
            for b in &chunk {
                if to.write_all(std::slice::from_ref(b)).await.is_err() {
                    ok = false;
                    break;
                }
                let _ = to.flush().await;
            }
            ok
        } else {
            to.write_all(&chunk).await.is_ok()
        };
        if !written {
            return;
        }
        sent += chunk.len();
        if limit.is_some_and(|l| sent >= l) {
            return;
        }
        if ended && delayed.is_empty() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

// ---- Edges in front of relays ----

/// Edges stop within a second, though some peers here never answer.
const SHUTDOWN_GRACE: &str = "shutdown_grace = \"1s\"";

/// An edge with one worker and one pool "app" of `servers`; `pool` goes after the pool's
/// `servers` line, `route` after the route's `pool` line.
fn edge(servers: &[SocketAddr], pool: &str, route: &str) -> Edge {
    Edge::start(
        &edge_config_with(1, SHUTDOWN_GRACE, APP_POOL),
        &app_vars(&server_list(servers), pool, route),
    )
}

/// Wait (bounded) until no request is in flight to any server of pool "app".
async fn until_nothing_in_flight(edge: &Edge) {
    eventually("nothing in flight at the edge", LIMIT, || async {
        let status = edge.status().await;
        let pools = status["pools"].as_array().unwrap().clone();
        pools
            .iter()
            .flat_map(|p| p["servers"].as_array().unwrap().clone())
            .all(|s| s["in_flight"] == 0)
    })
    .await;
}

/// An origin answering 200 with `body` to every request, each exactly once.
async fn origin_of(body: Bytes) -> Origin {
    Origin::start(handler(move |_req| {
        let body = body.clone();
        async move { ok(body) }
    }))
    .await
}

/// Read a response body frame by frame: (bytes received, whether it ended cleanly).
async fn drain(body: hyper::body::Incoming) -> (Vec<u8>, bool) {
    let mut body = body;
    let mut got = Vec::new();
    loop {
        match body.frame().await {
            None => return (got, true),
            Some(Err(_)) => return (got, false),
            Some(Ok(f)) => got.extend_from_slice(f.data_ref().map_or(&[][..], |d| &d[..])),
        }
    }
}

// ---- Latency and jitter ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_and_jitter_within_the_read_timeout_deliver_every_response_whole() {
    let body = pattern_bytes(64 << 10, 7);
    let origin = origin_of(body.clone()).await;
    let relay = Relay::always(
        origin.addr,
        Fault::Latency {
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(20),
        },
    )
    .await;
    let edge = edge(&[relay.addr], "", r#"timeouts = { read = "5s" }"#);
    let requests: Vec<_> = (0..12).map(|_| spawn_get(edge.url("/"))).collect();
    for (i, r) in requests.into_iter().enumerate() {
        let got = within(&format!("request {i}"), r).await.unwrap();
        assert_eq!(got.status, 200, "request {i}: {}", got.text());
        assert!(got.body == body, "request {i}: body differs");
    }
    assert_eq!(
        origin.requests(),
        12,
        "each request reached the origin once"
    );
    until_nothing_in_flight(&edge).await;
    // Idle keep-alive connections may stay open, but never more than one per request made.
    assert!(relay.open.load(Ordering::SeqCst) <= 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_beyond_the_read_timeout_is_a_504_within_the_timeout() {
    let origin = Origin::text("late").await;
    let relay = Relay::always(
        origin.addr,
        Fault::Latency {
            delay: FOREVER,
            jitter: Duration::ZERO,
        },
    )
    .await;
    let edge = edge(&[relay.addr], "", r#"timeouts = { read = "300ms" }"#);
    let started = Instant::now();
    let got = within_limit(get(&edge.url("/"))).await;
    assert_eq!(got.status, 504, "{}", got.text());
    assert!(
        got.text().contains("origin"),
        "blames the origin: {}",
        got.text()
    );
    // Generous: one read timeout, no retry on timeouts by default.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The timed-out connection is closed by the edge, not kept.
    relay.until_open_at_most(0).await;
    until_nothing_in_flight(&edge).await;
}

// ---- A peer that accepts and never answers ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_is_a_504_and_its_connection_is_closed() {
    let origin = Origin::text("unused").await;
    let relay = Relay::always(origin.addr, Fault::BlackHole).await;
    let edge = edge(&[relay.addr], "", r#"timeouts = { read = "300ms" }"#);
    for i in 0..3 {
        let started = Instant::now();
        let got = within_limit(get(&edge.url("/"))).await;
        assert_eq!(got.status, 504, "request {i}: {}", got.text());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        relay.accepted(),
        3,
        "one attempt per request: a timeout is not retried by default"
    );
    assert_eq!(origin.requests(), 0);
    relay.until_open_at_most(0).await;
    until_nothing_in_flight(&edge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_listed_in_retry_on_try_the_other_server_once_within_total() {
    let origin = Origin::text("unused").await;
    let a = Relay::always(origin.addr, Fault::BlackHole).await;
    let b = Relay::always(origin.addr, Fault::BlackHole).await;
    let edge = edge(
        &[a.addr, b.addr],
        "[pools.retry]\nattempts = 3\non = [\"timeout\"]\nbackoff = \"10ms\"",
        r#"timeouts = { read = "300ms" }"#,
    );
    let started = Instant::now();
    let got = within_limit(get(&edge.url("/"))).await;
    assert_eq!(got.status, 504, "{}", got.text());
    // Two servers: one attempt each, however many `attempts` allow.
    assert_eq!((a.accepted(), b.accepted()), (1, 1));
    // Generous: two read timeouts and a back-off.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    a.until_open_at_most(0).await;
    b.until_open_at_most(0).await;
    until_nothing_in_flight(&edge).await;
}

// ---- Loss: connections dropped at once ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_are_retried_on_the_other_server() {
    let origin = Origin::text("through").await;
    let lossy = Relay::always(origin.addr, Fault::Drop).await;
    let good = Relay::always(origin.addr, Fault::Pass).await;
    let edge = edge(&[lossy.addr, good.addr], "", "");
    for i in 0..10 {
        let got = within_limit(get(&edge.url(&format!("/{i}")))).await;
        assert_eq!(got.status, 200, "request {i}: {}", got.text());
        assert_eq!(got.text(), "through");
    }
    assert_eq!(
        origin.requests(),
        10,
        "each request reached the origin once"
    );
    assert!(lossy.accepted() >= 1, "the lossy server was tried");
    let metrics = edge.metrics().await;
    assert_eq!(
        retries(&metrics, "app", "succeeded") as usize,
        lossy.accepted(),
        "every attempt lost at the lossy server was retried once, successfully:\n{metrics}"
    );
    lossy.until_open_at_most(0).await;
    until_nothing_in_flight(&edge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_after_loss_stay_within_the_budget() {
    let origin = Origin::text("unused").await;
    let a = Relay::always(origin.addr, Fault::Drop).await;
    let b = Relay::always(origin.addr, Fault::Drop).await;
    // No share of requests, 1 retry a second over 10 s: at most 10 retries in the window.
    let edge = edge(
        &[a.addr, b.addr],
        "[pools.retry]\nattempts = 5\nbudget_percent = 0\nmin_per_second = 1\nbudget_window = \"10s\"\nbackoff = \"1ms\"",
        "",
    );
    let requests = 30;
    for i in 0..requests {
        let got = within_limit(get(&edge.url("/"))).await;
        assert_eq!(got.status, 502, "request {i}: {}", got.text());
    }
    let metrics = edge.metrics().await;
    let retried = retries(&metrics, "app", "failed") as usize;
    assert!(
        (1..=10).contains(&retried),
        "retries within the budget: {retried}\n{metrics}"
    );
    let exhausted = sample(
        &metrics,
        "holdfast_upstream_retry_budget_exhausted_total",
        &[("pool", "app")],
    )
    .unwrap_or(0.0);
    assert!(exhausted >= 1.0, "the budget refused retries:\n{metrics}");
    // Every attempt is one connection at the relays: the requests, plus the retries.
    assert_eq!(a.accepted() + b.accepted(), requests + retried);
    a.until_open_at_most(0).await;
    b.until_open_at_most(0).await;
    until_nothing_in_flight(&edge).await;
}

// ---- A reset in the middle of the response body ----

/// A raw origin that answers every request with `head` then `body`, then keeps the
/// connection open (the relay cuts it).
async fn raw_answer(head: String, body: Vec<u8>) -> RawOrigin {
    RawOrigin::start(move |mut c| {
        let (head, body) = (head.clone(), body.clone());
        async move {
            c.read_request().await;
            c.write(head.as_bytes()).await;
            c.write(&body).await;
            let _ = c.read_to_end().await;
        }
    })
    .await
}

async fn assert_cut_body_ends_in_an_error(origin: SocketAddr, whole: usize) {
    let relay = Relay::always(origin, Fault::ResetAfter(4096)).await;
    let edge = edge(&[relay.addr], "", r#"timeouts = { read = "5s" }"#);
    let resp = within_limit(client().get(edge.url("/").parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the head arrived before the reset");
    let (got, clean) = within_limit(drain(resp.into_body())).await;
    assert!(
        got.len() < whole,
        "only part of the body: {} of {whole}",
        got.len()
    );
    assert!(
        !clean,
        "a cut body must end in an error, not look complete ({} bytes)",
        got.len()
    );
    relay.until_open_at_most(0).await;
    until_nothing_in_flight(&edge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_body_with_a_length_ends_the_clients_body_with_an_error() {
    let whole = 200_000;
    let origin = raw_answer(
        format!("HTTP/1.1 200 OK\r\ncontent-length: {whole}\r\n\r\n"),
        vec![b'x'; whole],
    )
    .await;
    assert_cut_body_ends_in_an_error(origin.addr, whole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_chunked_body_ends_the_clients_body_with_an_error() {
    let mut body = Vec::new();
    for _ in 0..50 {
        body.extend_from_slice(b"1000\r\n");
        body.extend_from_slice(&[b'y'; 0x1000]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let origin = raw_answer(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_owned(),
        body,
    )
    .await;
    assert_cut_body_ends_in_an_error(origin.addr, 50 * 0x1000).await;
}

// ---- Partial writes: one byte at a time ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_at_a_time_both_ways_delivers_requests_and_responses_whole() {
    // The origin echoes the request body: both directions cross the dripping relay.
    let origin = Origin::start(handler(|req| async move {
        match req.into_body().collect().await {
            Ok(b) => ok(b.to_bytes()),
            Err(e) => status(400, e.to_string()),
        }
    }))
    .await;
    let relay = Relay::always(origin.addr, Fault::Drip).await;
    let edge = edge(&[relay.addr], "", r#"timeouts = { read = "5s" }"#);
    for i in 0..3u64 {
        let sent = pattern_bytes(3000, i + 1);
        let req = Request::post(edge.url("/echo"))
            .body(Full::new(sent.clone()))
            .unwrap();
        let got = within_limit(send(req)).await;
        assert_eq!(got.status, 200, "request {i}: {}", got.text());
        assert!(
            got.body == sent,
            "request {i}: echo differs ({} bytes)",
            got.body.len()
        );
    }
    until_nothing_in_flight(&edge).await;
    // Keep-alive: the one dripping connection carried all three.
    assert_eq!(relay.accepted(), 1);
}

// ---- DNS answers that change ----

/// A server named by host name is resolved when a config generation is built (start, and
/// every reload), through the system resolver, first address; it is not re-resolved while
/// the generation runs (docs/security.md, "Faults"). The relay stands for the origin so the
/// test can count connections: a reload that resolves the name to the same address keeps the
/// server and its idle connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_server_is_resolved_per_generation_and_kept_when_the_answer_is_unchanged() {
    let origin = Origin::text("named").await;
    let relay = Relay::always(origin.addr, Fault::Pass).await;
    let port = relay.addr.port();
    let edge = Edge::start(
        &edge_config_with(1, SHUTDOWN_GRACE, APP_POOL),
        &app_vars(&format!("\"localhost:{port}\""), "", ""),
    );
    let got = within_limit(get(&edge.url("/"))).await;
    assert_eq!((got.status.as_u16(), got.text().as_str()), (200, "named"));
    let server = server_status(&edge.status().await, "app", &format!("localhost:{port}"));
    assert_eq!(server["resolved"], format!("127.0.0.1:{port}"), "{server}");

    edge.reload_applied();
    let got = within_limit(get(&edge.url("/"))).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        relay.accepted(),
        1,
        "same answer after the reload: the server and its idle connection were kept"
    );
    until_nothing_in_flight(&edge).await;
}

/// A name that stops resolving makes the next reload fail (the active generation, with the
/// address it resolved, goes on serving); one that resolves again makes it succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_stops_resolving_rejects_the_reload_and_traffic_goes_on() {
    let origin = Origin::text("still here").await;
    let relay = Relay::always(origin.addr, Fault::Pass).await;
    let port = relay.addr.port();
    let template = edge_config_with(1, SHUTDOWN_GRACE, APP_POOL);
    let edge = Edge::start(
        &template,
        &app_vars(&format!("\"localhost:{port}\""), "", ""),
    );
    // `.invalid` never resolves (RFC 6761 §6.4); the resolver says so without a network.
    edge.rewrite(
        &template,
        &app_vars(&format!("\"gone.invalid:{port}\""), "", ""),
    );
    let (_, errors) = edge.reload_rejected();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("servers[0]") && e.contains("cannot resolve")),
        "{errors:?}"
    );
    let got = within_limit(get(&edge.url("/"))).await;
    assert_eq!(
        (got.status.as_u16(), got.text().as_str()),
        (200, "still here")
    );
    edge.rewrite(
        &template,
        &app_vars(&format!("\"localhost:{port}\""), "", ""),
    );
    edge.reload_applied();
    let got = within_limit(get(&edge.url("/"))).await;
    assert_eq!(got.status, 200);
}
