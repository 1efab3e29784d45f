//! Listeners and workers. Each worker thread runs its own single-threaded tokio runtime and
//! accepts on its own `SO_REUSEPORT` socket per listen address (thread-per-core: the kernel
//! spreads connections, nothing is shared on the hot path). A connection is served by hyper:
//! HTTP/1.1 on plain listeners (plus h2c if enabled), HTTP/2 or HTTP/1.1 by ALPN on TLS ones.

use crate::body::ResponseBody;
use crate::conn_limit::{ConnLimit, ConnSlot};
use crate::ctx::ConnInfo;
use crate::idle::{Activity, Next, StopRule, Watched};
use crate::rewind::Rewind;
use crate::send_timeout::{SendTimeout, CLIENT_SEND_TIMEOUT};
use crate::service::handle;
use crate::state::State;
use arc_swap::ArcSwap;
use futures_util::future::Either;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const LISTEN_BACKLOG: i32 = 4096;
/// While draining after a binary upgrade, how long an HTTP/1 keep-alive connection may still
/// bring a request (answered with `Connection: close`) before an idle one is closed: closing
/// at once would cut requests already on their way (the keep-alive race).
const DRAIN_QUIET: Duration = Duration::from_secs(2);

thread_local! {
    /// The worker's edge's drain grace (`EdgeHandle::drain`), set before its stop is sent: a
    /// task that sees the stop sees whether it is a binary upgrade's drain, whichever task of
    /// the worker woke first.
    static DRAIN_GRACE: std::cell::RefCell<Option<Arc<OnceLock<Duration>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Whether this worker's stop is a binary upgrade's drain (answered only once stopping).
fn draining() -> bool {
    DRAIN_GRACE.with(|g| g.borrow().as_ref().is_some_and(|g| g.get().is_some()))
}
/// Smallest read buffer per client connection (hyper's minimum is 8 KiB).
const CLIENT_BUF: usize = 16 << 10;

/// Where the data path listens and how many workers serve it.
#[derive(Debug, Clone)]
pub struct Listeners {
    pub plain: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    /// UDP addresses for HTTP/3 (`crate::h3`, its own thread).
    pub h3: Vec<SocketAddr>,
    pub threads: usize,
}

/// A running data path. `shutdown` stops accepting and lets connections finish within the
/// configured grace period (`drain`: within the given one); `join` waits for the workers.
pub struct EdgeHandle {
    pub plain: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    pub h3: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    /// Set by `drain`: the grace period to use instead of `edge.shutdown_grace`.
    grace: Arc<OnceLock<Duration>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl EdgeHandle {
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Stop accepting and let open connections finish within `grace` (after a binary
    /// upgrade handed the listeners over: `edge.drain_timeout`).
    pub fn drain(&self, grace: Duration) {
        let _ = self.grace.set(grace);
        self.shutdown();
    }

    pub fn join(self) {
        for w in self.workers {
            let _ = w.join();
        }
    }
}

/// The data path's listening sockets, bound (or inherited) by the caller: per address, one
/// or more sockets of one `SO_REUSEPORT` group.
#[derive(Debug, Default)]
pub struct BoundListeners {
    pub plain: Vec<Vec<std::net::TcpListener>>,
    pub tls: Vec<Vec<std::net::TcpListener>>,
    /// HTTP/3's UDP sockets, one per `edge.h3_listen` address (`bind_h3`, or inherited: a
    /// binary upgrade hands them over like the TCP listeners).
    pub h3: Vec<std::net::UdpSocket>,
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// One socket per worker for `addr`; with port 0 the first socket's port is reused.
pub fn bind_all(
    addr: SocketAddr,
    n: usize,
) -> std::io::Result<(SocketAddr, Vec<std::net::TcpListener>)> {
    let first = bind(addr)?;
    let actual = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(bind(actual)?);
    }
    Ok((actual, all))
}

/// An HTTP/3 listener's UDP socket for `addr` (non-blocking; IPv6 only for an IPv6 address).
pub fn bind_h3(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    crate::h3::bind(addr)
}

/// Bind every listener and start the workers.
pub fn start(listeners: &Listeners, state: Arc<ArcSwap<State>>) -> std::io::Result<EdgeHandle> {
    let n = listeners.threads.max(1);
    let group = |addrs: &[SocketAddr]| -> std::io::Result<Vec<Vec<std::net::TcpListener>>> {
        addrs
            .iter()
            .map(|a| bind_all(*a, n).map(|(_, s)| s))
            .collect()
    };
    let bound = BoundListeners {
        plain: group(&listeners.plain)?,
        tls: group(&listeners.tls)?,
        h3: listeners
            .h3
            .iter()
            .map(|a| bind_h3(*a))
            .collect::<std::io::Result<_>>()?,
    };
    start_bound(bound, n, state)
}

/// Start the workers on sockets bound (or inherited) by the caller. Every socket of an
/// address is accepted on by some worker (a socket of a `SO_REUSEPORT` group nobody accepts
/// on would strand the connections the kernel hashes to it); with fewer sockets than
/// workers, workers share duplicates of them.
pub fn start_bound(
    bound: BoundListeners,
    threads: usize,
    state: Arc<ArcSwap<State>>,
) -> std::io::Result<EdgeHandle> {
    let n = threads.max(1);
    let mut per_worker: Vec<Vec<(std::net::TcpListener, bool)>> =
        (0..n).map(|_| Vec::new()).collect();
    let mut spread =
        |groups: Vec<Vec<std::net::TcpListener>>, tls: bool| -> std::io::Result<Vec<SocketAddr>> {
            let mut out = Vec::new();
            for sockets in groups {
                let Some(first) = sockets.first() else {
                    continue;
                };
                out.push(first.local_addr()?);
                let mut spares = Vec::new();
                for _ in sockets.len()..n {
                    spares.push(
                        sockets
                            .get(spares.len() % sockets.len())
                            .map(|s| s.try_clone()),
                    );
                }
                let all = sockets
                    .into_iter()
                    .map(Ok)
                    .chain(spares.into_iter().flatten());
                for (i, s) in all.enumerate() {
                    if let Some(w) = per_worker.get_mut(i % n) {
                        w.push((s?, tls));
                    }
                }
            }
            Ok(out)
        };
    let plain = spread(bound.plain, false)?;
    let tls = spread(bound.tls, true)?;
    let h3_sockets = crate::h3::H3Sockets::new(bound.h3)?;
    let h3 = h3_sockets.addrs();
    let alt_svc = crate::h3::alt_svc::value(&h3);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let limit = Arc::new(ConnLimit::default());
    let grace = Arc::new(OnceLock::new());
    let mut workers = Vec::new();
    for (slot, sockets) in per_worker.into_iter().enumerate() {
        let state = Arc::clone(&state);
        let shutdown = shutdown_rx.clone();
        let limit = Arc::clone(&limit);
        let grace = Arc::clone(&grace);
        let alt_svc = alt_svc.clone();
        workers.push(
            std::thread::Builder::new()
                .name(format!("holdfast-worker-{slot}"))
                .spawn(move || {
                    crate::h3::alt_svc::set_for_thread(alt_svc);
                    run_worker(slot, sockets, state, limit, shutdown, grace)
                })?,
        );
    }
    workers.extend(crate::h3::start(
        h3_sockets,
        state,
        shutdown_rx,
        Arc::clone(&grace),
    )?);
    Ok(EdgeHandle {
        plain,
        tls,
        h3,
        shutdown,
        grace,
        workers,
    })
}

/// The allocator's trim, if the program gave one (`set_allocator_trim`).
static ALLOCATOR_TRIM: OnceLock<fn()> = OnceLock::new();

/// Give the edge the allocator's trim: a function that gives the calling thread's free memory
/// back to the system. Each worker calls it a second after its connections go idle or time
/// out (`idle::park`), at most once a second; without it, the pages a burst of connections
/// freed stay resident until the allocator is next entered. Set it once, before `start`; the
/// `holdfast` binary gives mimalloc's (`holdfast_alloc::release_free_pages`).
pub fn set_allocator_trim(trim: fn()) {
    let _ = ALLOCATOR_TRIM.set(trim);
}

fn run_worker(
    slot: usize,
    sockets: Vec<(std::net::TcpListener, bool)>,
    state: Arc<ArcSwap<State>>,
    limit: Arc<ConnLimit>,
    shutdown: watch::Receiver<bool>,
    grace: Arc<OnceLock<Duration>>,
) {
    crate::upstream::set_worker_slot(slot);
    DRAIN_GRACE.with(|g| *g.borrow_mut() = Some(Arc::clone(&grace)));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, slot, "cannot start worker runtime");
            return;
        }
    };
    let logs = Arc::clone(&state);
    rt.block_on(async move {
        // Before the first connection: its released waits need the park.
        crate::idle::start_park(shutdown.clone(), STOP_RULE, ALLOCATOR_TRIM.get().copied());
        let mut loops = JoinSet::new();
        for (socket, tls) in sockets {
            match TcpListener::from_std(socket) {
                Ok(l) => {
                    let (state, limit) = (Arc::clone(&state), Arc::clone(&limit));
                    let stop = (shutdown.clone(), Arc::clone(&grace));
                    loops.spawn(accept_loop(l, tls, state, limit, stop));
                }
                Err(e) => tracing::error!(error = %e, "cannot register listener"),
            }
        }
        let current = Arc::clone(&state);
        let flusher = tokio::spawn(crate::access_log::flusher(move || {
            current.load().access_log.clone()
        }));
        let started = std::time::Instant::now();
        while loops.join_next().await.is_some() {}
        // Upgraded connections (WebSocket) run as tasks of their own: they get what is left
        // of the grace period, then end with the runtime.
        let left = stop_grace(&grace, &state).saturating_sub(started.elapsed());
        let _ = tokio::time::timeout(left, crate::phases::exchange::tunnels_closed()).await;
        flusher.abort();
    });
    // The tasks still running end here (their requests' log lines land in this thread's
    // buffer as they are dropped); then the buffer goes to the log.
    drop(rt);
    if let Some(log) = &logs.load().access_log {
        log.flush_local();
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: bool,
    state: Arc<ArcSwap<State>>,
    limit: Arc<ConnLimit>,
    (mut shutdown, grace): (watch::Receiver<bool>, Arc<OnceLock<Duration>>),
) {
    loop {
        let cap = || state.load().config.edge.max_connections;
        let full = || {
            state.load().metrics.connections_capped.inc();
            tracing::warn!(
                open = limit.open(),
                "edge.max_connections reached: not accepting until a connection closes"
            );
        };
        tokio::select! {
            _ = limit.wait_below(cap, full) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                // A task of its own, not in a `JoinSet` (an entry of 64 bytes a connection):
                // the drain below waits for the edge's count of open connections.
                tokio::spawn(connection(
                    stream,
                    peer,
                    tls,
                    Arc::clone(&state),
                    limit.enter(),
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                // Out of descriptors or similar: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    // Only a shutdown ends the loop: an upgrade's drain if `drain` set the grace period.
    drop(listener);
    // Every worker waits for all of the edge's connections (they end together); those still
    // open after the grace end with the worker's runtime.
    let grace = stop_grace(&grace, &state);
    let _ = tokio::time::timeout(grace, limit.all_closed()).await;
}

/// How long open connections may take to finish once accepting stopped: a binary upgrade's
/// `drain_timeout` (set by `drain`), else `edge.shutdown_grace`.
fn stop_grace(grace: &OnceLock<Duration>, state: &ArcSwap<State>) -> Duration {
    match grace.get() {
        Some(drain) => *drain,
        None => state.load().config.edge.shutdown_grace,
    }
}

/// Counts an open client connection for as long as it lives.
struct ConnGuard(Arc<State>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.metrics.connections_active.dec();
    }
}

/// What a connection holds for its whole life, whatever serves it: its place under
/// `edge.max_connections` and its count in `holdfast_http_connections_active`.
struct ConnLife {
    _slot: ConnSlot,
    _guard: ConnGuard,
}

/// One accepted connection, as the future its task runs. A plain HTTP/1 connection (no TLS,
/// no PROXY header, no h2c sniff: the common case) is the HTTP/1 loop's future itself, so its
/// task holds nothing but that loop's state (an `async fn` here would also keep its own
/// arguments beside the loop's, for the connection's whole life); every other kind is boxed,
/// so that it does not size the task of the common one.
fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: bool,
    states: Arc<ArcSwap<State>>,
    slot: ConnSlot,
    shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send {
    let _ = stream.set_nodelay(true);
    let state = states.load_full();
    state.metrics.connections.inc();
    state.metrics.connections_active.inc();
    let life = ConnLife {
        _slot: slot,
        _guard: ConnGuard(Arc::clone(&state)),
    };
    let edge = &state.config.edge;
    if !tls && !edge.proxy_protocol && !edge.h2c {
        let info = ConnInfo::new(peer, false);
        return Either::Left(serve_h1(
            stream,
            states,
            info,
            None,
            state,
            shutdown,
            Some(life),
        ));
    }
    Either::Right(Box::pin(async move {
        let _life = life;
        let edge = &state.config.edge;
        if !edge.proxy_protocol {
            return serve_conn(stream, peer, tls, &state, states, shutdown).await;
        }
        let header = crate::proxy_protocol::accept(stream, peer, &edge.trusted_proxies);
        match tokio::time::timeout(edge.client_header_timeout, header).await {
            Ok(Ok((client, stream))) => {
                serve_conn(stream, client, tls, &state, states, shutdown).await
            }
            Ok(Err(e)) => {
                tracing::debug!(client = %peer, error = %e, "connection closed");
                state.metrics.bad_request("proxy_protocol");
            }
            Err(_) => state.metrics.bad_request("header_timeout"),
        }
    }))
}

/// Serve one client connection (after any PROXY header): sniff h2c or shake hands, then
/// hand it to hyper. `client` is who the connection is from, as far as the edge believes.
async fn serve_conn<S>(
    stream: S,
    client: SocketAddr,
    tls: bool,
    state: &Arc<State>,
    states: Arc<ArcSwap<State>>,
    shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let info = ConnInfo::new(client, tls);
    if !tls {
        if !state.config.edge.h2c {
            let state = Arc::clone(state);
            return serve_h1(stream, states, info, None, state, shutdown, None).await;
        }
        // Boxed: only connections on an `h2c` listener pay for the sniff.
        return Box::pin(serve_h2c(stream, info, state, states, shutdown)).await;
    }
    // Boxed: the handshake and the TLS session would size every connection's task, plain
    // ones too.
    Box::pin(serve_tls(stream, info, state, states, shutdown)).await;
}

/// A plain listener with `edge.h2c`: HTTP/2 with prior knowledge or HTTP/1, by the first bytes.
async fn serve_h2c<S>(
    stream: S,
    info: ConnInfo,
    state: &Arc<State>,
    states: Arc<ArcSwap<State>>,
    shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let client = info.client;
    let timeout = state.config.edge.client_header_timeout;
    match tokio::time::timeout(timeout, Box::pin(crate::h2c::sniff(stream))).await {
        Ok(Ok((true, s))) => {
            let svc = conn_service(states, info, None, None, shutdown.clone());
            Box::pin(serve_h2(TokioIo::new(s), svc, state, shutdown)).await
        }
        Ok(Ok((false, s))) => {
            serve_h1(s, states, info, None, Arc::clone(state), shutdown, None).await
        }
        Ok(Err(e)) => tracing::debug!(%client, error = %e, "connection failed"),
        Err(_) => state.metrics.bad_request("header_timeout"),
    }
}

/// Shake hands on a TLS listener, then serve what ALPN chose.
async fn serve_tls<S>(
    stream: S,
    info: ConnInfo,
    state: &Arc<State>,
    states: Arc<ArcSwap<State>>,
    shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let client = info.client;
    let Some(sites) = state.tls_sites.as_deref() else {
        return;
    };
    let accept = Box::pin(crate::tls::accept(stream, sites));
    let (stream, tls_peer) = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            state.metrics.tls_handshake_errors.inc();
            tracing::debug!(%client, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            state.metrics.tls_handshake_errors.inc();
            return;
        }
    };
    let alpn = stream.get_ref().1.alpn_protocol();
    if alpn == Some(holdfast_acme::ACME_TLS_ALPN) {
        // A tls-alpn-01 validation (`tls::accept`): the handshake was the answer (RFC 8737 §3).
        return;
    }
    if alpn == Some(b"h2") {
        let svc = conn_service(states, info, tls_peer, None, shutdown.clone());
        Box::pin(serve_h2(TokioIo::new(stream), svc, state, shutdown)).await
    } else {
        serve_h1(
            stream,
            states,
            info,
            tls_peer,
            Arc::clone(state),
            shutdown,
            None,
        )
        .await
    }
}

/// The service one connection's requests go to: `handle` on the current generation, with the
/// connection's verified client certificate (if any) on each request; once stopping, each
/// answer is the connection's last (`Connection: close`; HTTP/2 drops the header and ends
/// with GOAWAY instead). On HTTP/1 each request is in flight for `activity` until its
/// response body is dropped (`idle`).
fn conn_service(
    states: Arc<ArcSwap<State>>,
    info: ConnInfo,
    tls_peer: Option<Arc<crate::ctx::TlsPeer>>,
    activity: Option<&Arc<Activity>>,
    stopping: watch::Receiver<bool>,
) -> impl EdgeService {
    let activity = activity.cloned();
    service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        let in_flight = activity.as_ref().map(Activity::begin);
        if let Some(peer) = &tls_peer {
            req.extensions_mut().insert(Arc::clone(peer));
        }
        let answer = handle(states.load_full(), info.clone(), req);
        let stopping = stopping.clone();
        async move {
            let mut resp = answer.await?;
            if let Some(held) = in_flight {
                resp.body_mut().hold(held);
            }
            if *stopping.borrow() {
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, Infallible>(resp)
        }
    })
}

/// Run a connection until it ends; on shutdown, ask it to finish gracefully first.
async fn until_shutdown<C, E>(
    conn: C,
    mut shutdown: watch::Receiver<bool>,
    graceful: impl FnOnce(Pin<&mut C>),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        biased;
        r = conn.as_mut() => return r,
        _ = shutdown.wait_for(|stop| *stop) => {}
    }
    finish(conn, graceful).await
}

/// A connection once the edge stops: draining after an upgrade, a busy connection ends after
/// its next answer (`Connection: close`); only one still idle after `DRAIN_QUIET` is closed.
/// Otherwise it is asked to finish gracefully at once.
async fn finish<C, E>(mut conn: Pin<&mut C>, graceful: impl FnOnce(Pin<&mut C>)) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    if draining() {
        if let Ok(r) = tokio::time::timeout(DRAIN_QUIET, conn.as_mut()).await {
            return r;
        }
    }
    graceful(conn.as_mut());
    conn.await
}

fn count_error(state: &State, e: &hyper::Error) {
    let reason = if e.is_parse_too_large() {
        "header_too_large"
    } else if e.is_parse() || e.is_parse_status() {
        "malformed"
    } else if e.is_timeout() {
        "header_timeout"
    } else {
        tracing::debug!(error = %e, "client connection ended with an error");
        return;
    };
    state.metrics.bad_request(reason);
}

/// The per-connection service: `service::handle` bound to the connection's facts.
trait EdgeService:
    hyper::service::Service<
        http::Request<hyper::body::Incoming>,
        Response = http::Response<ResponseBody>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> EdgeService for S where
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<ResponseBody>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

fn http1_builder(state: &State) -> http1::Builder {
    let edge = &state.config.edge;
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(edge.client_header_timeout)
        .max_buf_size(CLIENT_BUF.max(edge.limits.max_header_bytes))
        .max_header_size(edge.limits.max_header_bytes)
        .max_headers(edge.limits.max_headers);
    b
}

/// Serve HTTP/1 on `stream` until it closes. An idle connection gives hyper's state back
/// after `edge.idle_release_after` and holds only its socket (and any bytes of a head it
/// sent) until its next byte (`idle`). `life`, when given, is held until the connection ends.
fn serve_h1<S>(
    stream: S,
    states: Arc<ArcSwap<State>>,
    info: ConnInfo,
    tls_peer: Option<Arc<crate::ctx::TlsPeer>>,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
    life: Option<ConnLife>,
) -> impl Future<Output = ()> + Send
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Built before the loop's future, which then holds each once: an `async` block keeps what
    // it captures in place, where an `async fn` would keep its arguments twice (as arguments
    // and as the locals they are moved into).
    let activity = Arc::new(Activity::new());
    let mut svc = conn_service(states, info, tls_peer, Some(&activity), shutdown.clone());
    let mut stream = Rewind::new(Vec::new(), stream);
    async move {
        // Captured (and so held) until the connection ends, without a copy of its own.
        let _held = &life;
        loop {
            let watched = Watched::new(stream, Arc::clone(&activity));
            let io = SendTimeout::new(TokioIo::new(watched), CLIENT_SEND_TIMEOUT);
            let mut conn = Box::new(
                http1_builder(&state)
                    .serve_connection(io, svc)
                    .with_upgrades(),
            );
            // After a release mid-head, the head's time limit runs from when it began.
            let head_began = activity.head_began();
            let ran = Box::pin(until_idle(
                &mut *conn,
                &state.config.edge,
                &activity,
                head_began,
                &mut shutdown,
            ));
            match ran.await {
                Run::Ended(Err(e)) => return count_error(&state, &e),
                Run::Ended(Ok(())) => return,
                Run::HeadTimeout => return state.metrics.bad_request("header_timeout"),
                Run::Idle => {}
            }
            // Take it apart (`None` only for an upgraded connection, which has ended); nothing of
            // hyper's may outlive this statement, or the release keeps what it should free.
            let Some((socket, service, head)) = take_apart(conn) else {
                return;
            };
            (stream, svc) = (socket, service);
            let deadline = released(&mut stream, head, &activity, &state.config.edge);
            state.metrics.connections_idle_released.inc();
            let next = crate::idle::next_byte(&mut stream, deadline).await;
            state.metrics.connections_idle_released.dec();
            match next {
                Next::Byte(byte) => {
                    // A head that begins with this byte begins now.
                    activity.mark_read();
                    activity.stamp_head(tokio::time::Instant::now());
                    stream.push(byte);
                }
                Next::TimedOut => return state.metrics.bad_request("header_timeout"),
                Next::Closed => return,
            }
        }
    }
}

/// A connection was taken apart with `head` (bytes of a request head hyper had read, if any)
/// unparsed: they are replayed first when it resumes. Returns until when it may wait for its
/// next byte: nothing moved for a whole `idle_release_after`, so its limit runs from then, or
/// from when a head the client had begun began (stamped by the check that released it).
// A plain function, not part of the loop's future: a local the loop's `async` block had
// borrowed would be kept in it across the wait (24 bytes per released connection).
fn released<S>(
    stream: &mut Rewind<S>,
    head: Vec<u8>,
    activity: &Activity,
    edge: &holdfast_config::Edge,
) -> tokio::time::Instant {
    let quiet_since = tokio::time::Instant::now()
        .checked_sub(edge.idle_release_after)
        .unwrap_or_else(tokio::time::Instant::now);
    if !head.is_empty() {
        activity.mark_read();
        activity.stamp_head(quiet_since);
    }
    stream.replay(head);
    activity.head_began().unwrap_or(quiet_since) + edge.client_header_timeout
}

/// How a released connection's wait ends when the edge stops: draining after an upgrade, it
/// waits `DRAIN_QUIET` more (a request may be on its way), else none.
const STOP_RULE: StopRule = StopRule {
    draining,
    quiet: DRAIN_QUIET,
};

/// A connection's socket, service and the bytes hyper had read but not parsed; hyper's
/// buffers and the rest of its state are freed here.
// Boxed on purpose: taking the box frees its memory here, not at the end of the caller's
// loop iteration (after the released connection's wait).
#[allow(clippy::boxed_local)]
fn take_apart<S, Svc>(
    conn: Box<http1::UpgradeableConnection<SendTimeout<TokioIo<Watched<S>>>, Svc>>,
) -> Option<(Rewind<S>, Svc, Vec<u8>)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    Svc: EdgeService,
{
    let parts = (*conn).into_parts()?;
    let socket = parts.io.into_inner().into_inner().into_inner();
    Some((socket, parts.service, parts.read_buf.to_vec()))
}

/// How a run of hyper on a connection ended.
enum Run<E> {
    Ended(Result<(), E>),
    /// A head begun before a release was not complete by its deadline.
    HeadTimeout,
    /// Nothing moved for a whole `idle_release_after` and nothing is in flight.
    Idle,
}

/// Run `conn` until it ends, or has been releasable with nothing moving for a whole
/// `idle_release_after` (zero: never), or the head that began at `head_began` (before a
/// release) is still not complete after `client_header_timeout`. A stop is handled as
/// `until_shutdown` does.
async fn until_idle<C, E>(
    conn: &mut C,
    edge: &holdfast_config::Edge,
    activity: &Activity,
    head_began: Option<tokio::time::Instant>,
    shutdown: &mut watch::Receiver<bool>,
) -> Run<E>
where
    C: Future<Output = Result<(), E>> + Unpin + GracefulConn,
{
    let after = edge.idle_release_after;
    let head_deadline = head_began.map(|t| t + edge.client_header_timeout);
    // A head found begun at a check began after the check before it, at the earliest.
    let mut checked = tokio::time::Instant::now();
    let far = checked + Duration::from_secs(86_400 * 365);
    let period = if after.is_zero() {
        far
    } else {
        checked + after
    };
    let mut seen = activity.moved();
    let tick = tokio::time::sleep_until(period);
    let mut tick = std::pin::pin!(tick);
    let head = tokio::time::sleep_until(head_deadline.unwrap_or(far));
    let mut head = std::pin::pin!(head);
    loop {
        // Biased: the connection first, as it is what woke the task nearly every time (and
        // no random draw per wake-up).
        tokio::select! {
            biased;
            r = &mut *conn => return Run::Ended(r),
            () = &mut tick => {
                activity.stamp_head(checked);
                checked = tokio::time::Instant::now();
                let moved = activity.moved();
                if moved == seen && activity.releasable() {
                    return Run::Idle;
                }
                seen = moved;
                tick.as_mut().reset(checked + after);
            }
            () = &mut head, if head_deadline.is_some() => {
                if activity.head_began() == head_began {
                    return Run::HeadTimeout;
                }
                head.as_mut().reset(far);
            }
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    Run::Ended(finish(Pin::new(conn), |c| c.get_mut().shutdown_gracefully()).await)
}

/// hyper's HTTP/1 connection, asked to finish (`graceful_shutdown` needs it pinned).
trait GracefulConn {
    fn shutdown_gracefully(&mut self);
}

impl<I, S> GracefulConn for http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown_gracefully(&mut self) {
        Pin::new(self).graceful_shutdown();
    }
}

async fn serve_h2<I, S>(io: I, svc: S, state: &State, shutdown: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: EdgeService,
{
    let limits = &state.config.edge.limits;
    let io = SendTimeout::new(io, CLIENT_SEND_TIMEOUT);
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .serve_connection(io, svc);
    if let Err(e) = until_shutdown(conn, shutdown, |c| c.graceful_shutdown()).await {
        count_error(state, &e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_size<F, Fut>(_: F) -> usize
    where
        F: Fn(
            TcpStream,
            SocketAddr,
            bool,
            Arc<ArcSwap<State>>,
            ConnSlot,
            watch::Receiver<bool>,
        ) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every open client connection is one task of this size, idle or not (a released one
    /// holds little else but its socket): the TLS path, the PROXY header, the h2c sniff,
    /// HTTP/2 and hyper's HTTP/1 connection are boxed while they run, so that they do not
    /// size the task of a plain HTTP/1 connection, and the plain one is the HTTP/1 loop's
    /// own future, not nested `async fn`s that each keep their arguments; a released one
    /// waits in the worker's park (`idle::park`), with no timer of its own. tokio allocates
    /// a task as one cell aligned to 128 bytes: 96 bytes of its own around the future, so a
    /// future of up to 280 bytes takes 384 and one of 281–408 takes 512. (272 bytes in a test
    /// build when this was written; 296 with the released wait's timer, 1,024 with the
    /// nesting, 9,336 before the boxing.)
    #[test]
    fn a_connection_task_stays_small() {
        let size = task_size(connection);
        assert!(size <= 280, "a connection's task is {size} bytes");
    }
}
