//! One QUIC connection: the handshake (bounded like the TLS listeners'), HTTP/3 set-up, then
//! one task per request stream until the client ends the connection, it goes idle
//! (`edge.h3.idle_timeout`, quinn's), or the edge shuts down (GOAWAY, then the requests
//! already accepted finish). A connection lost mid-request drops its requests, as hyper does
//! for a lost TCP connection.

use super::admission::{Handshaking, IpSlot};
use super::request;
use crate::ctx::ConnInfo;
use crate::state::State;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// As for the TLS listeners' handshakes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the listener hands a connection it admitted.
pub(super) struct Start {
    pub config: Arc<quinn::ServerConfig>,
    pub zero_rtt: bool,
    pub states: Arc<ArcSwap<State>>,
    pub shutdown: watch::Receiver<bool>,
    pub handshaking: Handshaking,
    /// Held for the connection's life: its place in the per-address count.
    pub slot: IpSlot,
}

/// Counts an open QUIC connection for as long as it lives.
struct Active(Arc<State>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.metrics.quic.connections_active.dec();
    }
}

pub(super) async fn serve(incoming: quinn::Incoming, start: Start) {
    let Start {
        config,
        zero_rtt,
        states,
        mut shutdown,
        mut handshaking,
        slot: _slot,
    } = start;
    let state = states.load_full();
    let quic = &state.metrics.quic;
    let connecting = match incoming.accept_with(config) {
        Ok(c) => c,
        Err(e) => {
            quic.handshake_errors.inc();
            tracing::debug!(error = %e, "QUIC connection attempt failed");
            return;
        }
    };
    quic.connections.inc();
    quic.connections_active.inc();
    let _active = Active(Arc::clone(&state));
    let Some((conn, early)) = handshake(connecting, zero_rtt, &state).await else {
        return;
    };
    handshaking.done();
    let max_header = u64::try_from(state.config.edge.limits.max_header_bytes).unwrap_or(u64::MAX);
    let mut builder = h3::server::builder();
    builder.max_field_section_size(max_header);
    let h3 = builder.build::<_, bytes::Bytes>(h3_quinn::Connection::new(conn.clone()));
    let mut h3 = match tokio::time::timeout(HANDSHAKE_TIMEOUT, h3).await {
        Ok(Ok(h3)) => h3,
        Ok(Err(e)) => {
            quic.handshake_errors.inc();
            tracing::debug!(error = %e, "HTTP/3 set-up failed");
            return;
        }
        Err(_) => {
            quic.handshake_errors.inc();
            return;
        }
    };
    let info = ConnInfo::new(conn.remote_address(), true);
    let mut requests = JoinSet::new();
    let lost = loop {
        let accepted = tokio::select! {
            a = h3.accept() => Some(a),
            _ = shutdown.wait_for(|stop| *stop) => None,
        };
        let Some(accepted) = accepted else {
            // GOAWAY: the requests already accepted finish, no new ones are taken. Its stream
            // id is the first one not processed: one past the last accepted (`shutdown(0)`
            // would name the last accepted itself, telling the client it was not processed).
            break h3.shutdown(1).await.is_err();
        };
        while requests.try_join_next().is_some() {}
        match accepted {
            Ok(Some(resolver)) => {
                state.metrics.quic.streams.inc();
                requests.spawn(request::serve(
                    resolver,
                    Arc::clone(&states),
                    info.clone(),
                    early.clone(),
                ));
            }
            Ok(None) => break false,
            Err(e) => {
                tracing::debug!(client = %info.client, error = %e, "HTTP/3 connection ended");
                break !e.is_h3_no_error();
            }
        }
    };
    if lost {
        requests.abort_all();
    }
    while requests.join_next().await.is_some() {}
    quic.lost_packets.inc_by(conn.stats().path.lost_packets);
    drop(h3);
}

/// Complete the handshake. With 0-RTT on, the connection is usable at once (early data), and
/// the flag it returns stays set until the handshake completes: requests read while it is set
/// arrived as early data.
async fn handshake(
    connecting: quinn::Connecting,
    zero_rtt: bool,
    state: &State,
) -> Option<(quinn::Connection, Option<Arc<AtomicBool>>)> {
    let quic = &state.metrics.quic;
    let connecting = if zero_rtt {
        match connecting.into_0rtt() {
            Ok((conn, accepted)) => {
                let pending = Arc::new(AtomicBool::new(true));
                let flag = Arc::clone(&pending);
                tokio::spawn(async move {
                    accepted.await;
                    flag.store(false, Ordering::Relaxed);
                });
                quic.handshakes.inc();
                return Some((conn, Some(pending)));
            }
            Err(connecting) => connecting,
        }
    } else {
        connecting
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => {
            quic.handshakes.inc();
            Some((conn, None))
        }
        Ok(Err(e)) => {
            quic.handshake_errors.inc();
            tracing::debug!(error = %e, "QUIC handshake failed");
            None
        }
        Err(_) => {
            quic.handshake_errors.inc();
            None
        }
    }
}
