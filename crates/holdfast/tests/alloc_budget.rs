//! Allocations per proxied request, held to a budget (issue 16, goal 2). A counting global
//! allocator — hence a test binary of its own — counts every allocation made outside this
//! test's own thread, i.e. by the edge (its worker, the access-log writer, the admin plane),
//! while `REQUESTS` requests go through the real edge, started from a config like
//! `bench/run.sh`'s (access log, metrics and request ids on, one route, one pool), to an
//! origin served on this thread. Client and origin run on this thread and are not counted.
//! Run with `--nocapture` to see the figure.

// A failing test is the point (clippy.toml's allow-*-in-tests covers only `#[test]` functions).
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Allocations (including reallocations) per proxied request allowed: 12.02 measured on
/// 2026-12-07 (bench/README.md "Allocations"). Lower it when you win; never raise it to pass.
const BUDGET_PER_REQUEST: f64 = 12.5;
const WARMUP: usize = 200;
const REQUESTS: usize = 2000;
const BODY: usize = 1024;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static REALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the test's own thread: what it allocates is the client's and origin's.
    static NOT_COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    NOT_COUNTED.try_with(|c| !c.get()).unwrap_or(true)
}

// SAFETY: every call is passed on unchanged to the system allocator (the counts do not depend
// on which allocator serves them, and valgrind's dhat sees the system one: run it on this
// binary to find the call sites); the counting
// touches only atomics and a const-initialised thread-local, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            REALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(
                new_size.saturating_sub(layout.size()) as u64,
                Ordering::Relaxed,
            );
        }
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy)]
struct Counts {
    allocs: u64,
    reallocs: u64,
    bytes: u64,
}

fn counts() -> Counts {
    Counts {
        allocs: ALLOCS.load(Ordering::SeqCst),
        reallocs: REALLOCS.load(Ordering::SeqCst),
        bytes: BYTES.load(Ordering::SeqCst),
    }
}

/// The origin: 200 with a 1 KiB body to everything, HTTP/1.1 keep-alive.
async fn origin(listener: tokio::net::TcpListener) {
    let body = Bytes::from(vec![b'x'; BODY]);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let body = body.clone();
        let svc = service_fn(move |_req: Request<Incoming>| {
            let body = body.clone();
            async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
        });
        tokio::task::spawn_local(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// `n` requests one after another on one keep-alive connection, each body read whole.
async fn send(sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>, n: usize) {
    for i in 0..n {
        sender.ready().await.unwrap();
        let req = Request::get("/1k")
            .header(http::header::HOST, "bench.test")
            .body(Empty::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), BODY, "request {i}");
    }
}

#[test]
fn allocations_per_proxied_request_stay_within_budget() {
    NOT_COUNTED.with(|c| c.set(true));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let origin_addr = std_listener.local_addr().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let access_log = dir.path().join("access.log");
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[edge]
listen = ["127.0.0.1:0"]
threads = 1
access_log = "{}"

[admin]
listen = "127.0.0.1:0"

[[pools]]
name = "origin"
servers = ["{origin_addr}"]

[[routes]]
name = "all"
match = {{ path_prefix = "/" }}
pool = "origin"
"#,
            access_log.display()
        ),
    )
    .unwrap();
    let running = holdfast::Running::start(holdfast::ConfigSource::File(config)).unwrap();
    let edge: SocketAddr = running.http_addrs[0];

    let (before, after) = local.block_on(&rt, async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        tokio::task::spawn_local(origin(listener));
        let stream = tokio::net::TcpStream::connect(edge).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::task::spawn_local(conn);
        // Warm-up: the origin connection, buffers, thread-locals and the access log's
        // calendar second are made once, not per request.
        send(&mut sender, WARMUP).await;
        let before = counts();
        send(&mut sender, REQUESTS).await;
        (before, counts())
    });
    running.shutdown();

    let lines = std::fs::read_to_string(&access_log)
        .unwrap()
        .lines()
        .count();
    assert_eq!(
        lines,
        WARMUP + REQUESTS,
        "the access log was on for every request"
    );
    let n = REQUESTS as f64;
    let allocs = (after.allocs - before.allocs) as f64 / n;
    let reallocs = (after.reallocs - before.reallocs) as f64 / n;
    let bytes = (after.bytes - before.bytes) as f64 / n;
    let per_request = allocs + reallocs;
    eprintln!(
        "edge allocations per proxied request: {per_request:.2} ({allocs:.2} allocations + \
         {reallocs:.2} reallocations, {bytes:.0} bytes), budget {BUDGET_PER_REQUEST}"
    );
    // A counter that saw nothing counts nothing: the edge does allocate per request.
    assert!(
        per_request >= 1.0,
        "the counting allocator saw no edge work"
    );
    assert!(
        per_request <= BUDGET_PER_REQUEST,
        "{per_request:.2} allocations per proxied request, over the budget of \
         {BUDGET_PER_REQUEST}: find the new ones (valgrind --tool=dhat, or bench/README.md \
         \"Allocations\")"
    );
}
