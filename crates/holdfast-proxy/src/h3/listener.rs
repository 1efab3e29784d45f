//! The HTTP/3 listeners: one UDP socket and one `quinn` endpoint per `h3_listen` address, all
//! on one thread of their own (`holdfast-quic`, a single-threaded runtime like each TCP
//! worker). One endpoint per address, not one per worker: with `SO_REUSEPORT` the kernel
//! spreads datagrams by address, and a client whose address changes (NAT rebinding,
//! migration) would land on an endpoint that does not know its connection.
//!
//! Each connection attempt is admitted here: refused without a certificate, answered with a
//! Retry (address validation) while many handshakes are in flight, refused past
//! `edge.h3.max_connections_per_ip`, else accepted with the QUIC settings of the current
//! `State` (certificates from the TLS listeners' resolver, ALPN `h3`, `edge.h3` limits), so a
//! reload changes certificates and limits for new connections. QUIC's anti-amplification
//! limit (3× before validation) is quinn's and always on.

use super::admission::{Handshaking, PerIp};
use super::connection;
use crate::state::State;
use arc_swap::ArcSwap;
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Endpoint, EndpointConfig, IdleTimeout, ServerConfig, TransportConfig, VarInt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::rustls;

/// Handshakes in flight on one endpoint above which a client must prove its address (Retry)
/// before the edge spends a handshake on it.
const RETRY_ABOVE_HANDSHAKES: usize = 64;
/// Unidirectional streams a client may open: HTTP/3's control and QPACK streams, and a few
/// for reserved (grease) stream types.
const MAX_UNI_STREAMS: u32 = 16;
/// How often an endpoint looks for a new `State` between connection attempts.
const CONFIG_CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long a closing endpoint waits for its connections to say goodbye.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The UDP sockets, with the addresses they have (port 0 resolved).
pub(crate) struct H3Sockets {
    sockets: Vec<(SocketAddr, std::net::UdpSocket)>,
}

impl H3Sockets {
    /// Sockets bound by `bind` or inherited (a binary upgrade, systemd).
    pub(crate) fn new(sockets: Vec<std::net::UdpSocket>) -> std::io::Result<H3Sockets> {
        let sockets = sockets
            .into_iter()
            .map(|s| {
                // An inherited socket may come blocking; the endpoint needs it not to.
                s.set_nonblocking(true)?;
                Ok((s.local_addr()?, s))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(H3Sockets { sockets })
    }

    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|(a, _)| *a).collect()
    }
}

/// Bind an HTTP/3 address now, so a busy port is reported at start.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Start the HTTP/3 thread serving `sockets`; `None` if there are none. At shutdown each
/// endpoint stops admitting and lets its connections finish within `grace` (set by a binary
/// upgrade's drain: `edge.drain_timeout`), else `edge.shutdown_grace`.
pub(crate) fn start(
    sockets: H3Sockets,
    states: Arc<ArcSwap<State>>,
    shutdown: watch::Receiver<bool>,
    grace: Arc<OnceLock<Duration>>,
) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    if sockets.sockets.is_empty() {
        return Ok(None);
    }
    let thread = std::thread::Builder::new()
        .name("holdfast-quic".into())
        .spawn(move || run(sockets, states, shutdown, grace))?;
    Ok(Some(thread))
}

fn run(
    sockets: H3Sockets,
    states: Arc<ArcSwap<State>>,
    shutdown: watch::Receiver<bool>,
    grace: Arc<OnceLock<Duration>>,
) {
    // Origin connections made here share worker 0's idle lists.
    crate::upstream::set_worker_slot(0);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the HTTP/3 runtime");
            return;
        }
    };
    rt.block_on(async move {
        let mut loops = JoinSet::new();
        for (addr, socket) in sockets.sockets {
            let runtime = Arc::new(quinn::TokioRuntime);
            match Endpoint::new(EndpointConfig::default(), None, socket, runtime) {
                Ok(endpoint) => {
                    let stop = (shutdown.clone(), Arc::clone(&grace));
                    loops.spawn(accept_loop(endpoint, Arc::clone(&states), stop));
                }
                Err(e) => tracing::error!(%addr, error = %e, "cannot start the HTTP/3 endpoint"),
            }
        }
        let logs = Arc::clone(&states);
        let flusher = tokio::spawn(crate::access_log::flusher(move || {
            logs.load().access_log.clone()
        }));
        while loops.join_next().await.is_some() {}
        flusher.abort();
        if let Some(log) = &states.load().access_log {
            log.flush_local();
        }
    });
}

pub(crate) async fn accept_loop(
    endpoint: Endpoint,
    states: Arc<ArcSwap<State>>,
    (mut shutdown, grace): (watch::Receiver<bool>, Arc<OnceLock<Duration>>),
) {
    let mut configs = Configs::default();
    let per_ip = PerIp::default();
    let handshaking = Arc::new(AtomicUsize::new(0));
    let mut conns = JoinSet::new();
    // Without a server configuration quinn drops every attempt unseen: set it now, and look
    // for a new generation (reload, certificates arriving later) on a short tick.
    configs.current(&states.load(), &endpoint);
    let mut tick = tokio::time::interval(CONFIG_CHECK_EVERY);
    loop {
        // Shutdown first: once it is signalled no further attempt is admitted (after an
        // upgrade they are the new process's).
        let incoming = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            i = endpoint.accept() => i,
            _ = tick.tick() => {
                configs.current(&states.load(), &endpoint);
                continue;
            }
        };
        let Some(incoming) = incoming else { break };
        while conns.try_join_next().is_some() {}
        let state = states.load_full();
        let quic = &state.metrics.quic;
        let Some(config) = configs.current(&state, &endpoint) else {
            quic.refused("no_certificate");
            incoming.refuse();
            continue;
        };
        let validated = incoming.remote_address_validated();
        if must_retry(
            handshaking.load(Ordering::Relaxed),
            validated,
            incoming.may_retry(),
        ) {
            match incoming.retry() {
                Ok(()) => quic.retries.inc(),
                Err(e) => e.into_incoming().refuse(),
            }
            continue;
        }
        let limit = state.config.edge.h3.max_connections_per_ip;
        let Some(slot) = per_ip.take(incoming.remote_address().ip(), limit) else {
            quic.refused("per_ip");
            incoming.refuse();
            continue;
        };
        let zero_rtt = state.config.edge.h3.zero_rtt;
        let start = connection::Start {
            config,
            zero_rtt,
            states: Arc::clone(&states),
            shutdown: shutdown.clone(),
            handshaking: Handshaking::enter(&handshaking),
            slot,
        };
        conns.spawn(connection::serve(incoming, start));
    }
    // Stop admitting (new attempts get no answer), then let connections finish their
    // requests within the grace period (each sent GOAWAY by its own task). After a binary
    // upgrade the new process reads the same socket: until this endpoint is gone, datagrams
    // are read by whichever process reads first, so some of the new process's arrive here
    // and are dropped (an Initial gets no answer, a packet of an unknown connection a
    // stateless reset under this process's key, which its client ignores) and are sent
    // again; some of this process's connections' go there and are dropped likewise.
    endpoint.set_server_config(None);
    let grace = grace
        .get()
        .copied()
        .unwrap_or_else(|| states.load().config.edge.shutdown_grace);
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        conns.abort_all();
    }
    endpoint.close(VarInt::from_u32(0), b"shutting down");
    let _ = tokio::time::timeout(CLOSE_WAIT, endpoint.wait_idle()).await;
}

/// Whether to answer an attempt with a Retry: only while the endpoint is busy with
/// handshakes, and only once per client (a retried attempt arrives validated).
fn must_retry(handshaking: usize, validated: bool, may_retry: bool) -> bool {
    handshaking >= RETRY_ABOVE_HANDSHAKES && !validated && may_retry
}

/// The QUIC server configuration of the current `State`, rebuilt when the generation changes
/// (a reload may bring new certificates or `edge.h3` limits). The handshake token key stays
/// the endpoint's for its lifetime, so Retry tokens survive a reload.
#[derive(Default)]
struct Configs {
    generation: Option<u64>,
    base: Option<ServerConfig>,
    current: Option<Arc<ServerConfig>>,
}

impl Configs {
    fn current(&mut self, state: &State, endpoint: &Endpoint) -> Option<Arc<ServerConfig>> {
        if self.generation == Some(state.generation) {
            return self.current.clone();
        }
        self.generation = Some(state.generation);
        self.current = match server_config(state, self.base.as_ref()) {
            Ok(config) => {
                endpoint.set_server_config(Some(config.clone()));
                self.base = Some(config.clone());
                Some(Arc::new(config))
            }
            Err(e) => {
                tracing::warn!(error = %e, "HTTP/3 is not served: no usable certificate");
                None
            }
        };
        self.current.clone()
    }
}

/// Why no QUIC server configuration could be built.
#[derive(Debug, thiserror::Error)]
pub enum QuicConfigError {
    #[error("no TLS certificate is configured")]
    NoCertificate,
    #[error("TLS 1.3 for QUIC: {0}")]
    Tls(#[from] rustls::Error),
    #[error("QUIC: {0}")]
    Cipher(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("edge.h3.idle_timeout: {0}")]
    IdleTimeout(#[from] quinn::VarIntBoundsExceeded),
}

fn server_config(
    state: &State,
    base: Option<&ServerConfig>,
) -> Result<ServerConfig, QuicConfigError> {
    let tls = state.tls.as_ref().ok_or(QuicConfigError::NoCertificate)?;
    quic_server_config(Arc::clone(&tls.cert_resolver), &state.config.edge.h3, base)
}

/// The QUIC server configuration for `edge.h3` with certificates from `resolver`: TLS 1.3
/// only, ALPN `h3`, early data as `zero_rtt` says, the stream limits and idle timeout.
/// `base` (the endpoint's previous configuration) keeps its handshake token key.
pub(crate) fn quic_server_config(
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
    h3: &holdfast_config::H3,
    base: Option<&ServerConfig>,
) -> Result<ServerConfig, QuicConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    crypto.alpn_protocols = vec![b"h3".to_vec()];
    // quinn accepts early data only with the QUIC value (all of it) or none.
    crypto.max_early_data_size = if h3.zero_rtt { u32::MAX } else { 0 };
    let crypto = Arc::new(QuicServerConfig::try_from(crypto)?);
    let mut config = match base {
        Some(base) => {
            let mut c = base.clone();
            c.crypto = crypto;
            c
        }
        None => ServerConfig::with_crypto(crypto),
    };
    let mut transport = TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(h3.max_streams))
        .max_concurrent_uni_streams(VarInt::from_u32(MAX_UNI_STREAMS))
        .max_idle_timeout(Some(IdleTimeout::try_from(h3.idle_timeout)?));
    config.transport = Arc::new(transport);
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_unvalidated_attempts_while_busy() {
        assert!(!must_retry(0, false, true));
        assert!(!must_retry(RETRY_ABOVE_HANDSHAKES - 1, false, true));
        assert!(must_retry(RETRY_ABOVE_HANDSHAKES, false, true));
        assert!(!must_retry(RETRY_ABOVE_HANDSHAKES, true, true));
        assert!(!must_retry(RETRY_ABOVE_HANDSHAKES, false, false));
    }
}
