//! Listeners and workers. Each worker thread runs its own single-threaded tokio runtime and
//! accepts on its own `SO_REUSEPORT` socket per listen address (thread-per-core: the kernel
//! spreads connections, nothing is shared on the hot path). A connection is served by hyper:
//! HTTP/1.1 on plain listeners (plus h2c if enabled), HTTP/2 or HTTP/1.1 by ALPN on TLS ones.

use crate::body::ResponseBody;
use crate::ctx::ConnInfo;
use crate::send_timeout::{SendTimeout, CLIENT_SEND_TIMEOUT};
use crate::service::handle;
use crate::state::State;
use arc_swap::ArcSwap;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const ACCESS_LOG_FLUSH_EVERY: Duration = Duration::from_millis(100);
const LISTEN_BACKLOG: i32 = 4096;
/// Smallest read buffer per client connection (hyper's minimum is 8 KiB).
const CLIENT_BUF: usize = 16 << 10;

/// Where the data path listens and how many workers serve it.
#[derive(Debug, Clone)]
pub struct Listeners {
    pub plain: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    pub threads: usize,
}

/// A running data path. `shutdown` stops accepting and lets connections finish within the
/// configured grace period; `join` waits for the workers.
pub struct EdgeHandle {
    pub plain: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl EdgeHandle {
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    pub fn join(self) {
        for w in self.workers {
            let _ = w.join();
        }
    }
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
fn bind_all(
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

/// Bind every listener and start the workers.
pub fn start(listeners: &Listeners, state: Arc<ArcSwap<State>>) -> std::io::Result<EdgeHandle> {
    let n = listeners.threads.max(1);
    let mut per_worker: Vec<Vec<(std::net::TcpListener, bool)>> =
        (0..n).map(|_| Vec::new()).collect();
    let mut bound = |addrs: &[SocketAddr], tls: bool| -> std::io::Result<Vec<SocketAddr>> {
        let mut out = Vec::new();
        for addr in addrs {
            let (actual, sockets) = bind_all(*addr, n)?;
            for (w, s) in per_worker.iter_mut().zip(sockets) {
                w.push((s, tls));
            }
            out.push(actual);
        }
        Ok(out)
    };
    let plain = bound(&listeners.plain, false)?;
    let tls = bound(&listeners.tls, true)?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut workers = Vec::new();
    for (slot, sockets) in per_worker.into_iter().enumerate() {
        let state = Arc::clone(&state);
        let shutdown = shutdown_rx.clone();
        workers.push(
            std::thread::Builder::new()
                .name(format!("holdfast-worker-{slot}"))
                .spawn(move || run_worker(slot, sockets, state, shutdown))?,
        );
    }
    Ok(EdgeHandle {
        plain,
        tls,
        shutdown,
        workers,
    })
}

fn run_worker(
    slot: usize,
    sockets: Vec<(std::net::TcpListener, bool)>,
    state: Arc<ArcSwap<State>>,
    shutdown: watch::Receiver<bool>,
) {
    crate::upstream::set_worker_slot(slot);
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
    rt.block_on(async move {
        let mut loops = JoinSet::new();
        for (socket, tls) in sockets {
            match TcpListener::from_std(socket) {
                Ok(l) => {
                    loops.spawn(accept_loop(l, tls, Arc::clone(&state), shutdown.clone()));
                }
                Err(e) => tracing::error!(error = %e, "cannot register listener"),
            }
        }
        let flusher = tokio::spawn(flush_access_log(Arc::clone(&state)));
        while loops.join_next().await.is_some() {}
        flusher.abort();
        if let Some(log) = &state.load().access_log {
            log.flush_local();
        }
    });
}

async fn flush_access_log(state: Arc<ArcSwap<State>>) {
    let mut tick = tokio::time::interval(ACCESS_LOG_FLUSH_EVERY);
    loop {
        tick.tick().await;
        if let Some(log) = &state.load().access_log {
            log.flush_local();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: bool,
    state: Arc<ArcSwap<State>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                conns.spawn(connection(
                    stream,
                    peer,
                    tls,
                    Arc::clone(&state),
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                // Out of descriptors or similar: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    let grace = state.load().config.edge.shutdown_grace;
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        conns.abort_all();
    }
}

/// Counts an open client connection for as long as it lives.
struct ConnGuard(Arc<State>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.metrics.connections_active.dec();
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: bool,
    states: Arc<ArcSwap<State>>,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let state = states.load_full();
    state.metrics.connections.inc();
    state.metrics.connections_active.inc();
    let _guard = ConnGuard(Arc::clone(&state));
    let edge = &state.config.edge;
    if !edge.proxy_protocol {
        return serve_conn(stream, peer, tls, &state, states, shutdown).await;
    }
    let header = crate::proxy_protocol::accept(stream, peer, &edge.trusted_proxies);
    match tokio::time::timeout(edge.client_header_timeout, header).await {
        Ok(Ok((client, stream))) => serve_conn(stream, client, tls, &state, states, shutdown).await,
        Ok(Err(e)) => {
            tracing::debug!(client = %peer, error = %e, "connection closed");
            state.metrics.bad_request("proxy_protocol");
        }
        Err(_) => state.metrics.bad_request("header_timeout"),
    }
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
    let svc = {
        let states = Arc::clone(&states);
        service_fn(move |req| handle(states.load_full(), info.clone(), req))
    };
    if !tls {
        if !state.config.edge.h2c {
            return serve_h1(TokioIo::new(stream), svc, state, shutdown).await;
        }
        let timeout = state.config.edge.client_header_timeout;
        return match tokio::time::timeout(timeout, crate::h2c::sniff(stream)).await {
            Ok(Ok((true, s))) => serve_h2(TokioIo::new(s), svc, state, shutdown).await,
            Ok(Ok((false, s))) => serve_h1(TokioIo::new(s), svc, state, shutdown).await,
            Ok(Err(e)) => tracing::debug!(%client, error = %e, "connection failed"),
            Err(_) => state.metrics.bad_request("header_timeout"),
        };
    }
    let Some(config) = state.tls.clone() else {
        return;
    };
    let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept).await {
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
        // A tls-alpn-01 validation: the handshake was the answer (RFC 8737 §3).
        return;
    }
    let h2 = alpn == Some(b"h2");
    if h2 {
        serve_h2(TokioIo::new(stream), svc, state, shutdown).await
    } else {
        serve_h1(TokioIo::new(stream), svc, state, shutdown).await
    }
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
        r = conn.as_mut() => return r,
        _ = shutdown.wait_for(|stop| *stop) => graceful(conn.as_mut()),
    }
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

async fn serve_h1<I, S>(io: I, svc: S, state: &State, shutdown: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: EdgeService,
{
    let io = SendTimeout::new(io, CLIENT_SEND_TIMEOUT);
    let conn = http1_builder(state)
        .serve_connection(io, svc)
        .with_upgrades();
    if let Err(e) = until_shutdown(conn, shutdown, |c| c.graceful_shutdown()).await {
        count_error(state, &e);
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
