//! `Server`: one origin server of a pool — its address, weight and TLS name, its idle
//! connections (`conns.rs`), the count of requests in flight to it (`InFlight`, also the
//! `max_connections` cap), its passive record (`outlier.rs`) and active-check verdict
//! (`health.rs`), and counters for `/status`. A response body holds the in-flight count until
//! it ends and tells the server through `OriginHook`, the only thing the body knows of it.

use super::balance::{stable_hash, Candidate};
use super::conns::{Conn, IdleConns};
use super::health::{Checked, HealthState};
use super::outlier::{now_nanos, usable, Member, Passive};
use crate::body::{OriginHook, OriginLease, RequestBody};
use crate::metrics::ServerMetrics;
use holdfast_common::lock;
use hyper::client::conn::{http1, http2};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::rustls::pki_types::ServerName;

/// One origin server of a pool.
pub(crate) struct Server {
    pub addr: SocketAddr,
    /// `addr` formatted once, for access-log lines.
    pub addr_text: Arc<str>,
    /// The address as the operator wrote it.
    pub label: Arc<str>,
    pub weight: u32,
    /// Stable hash of `label`, for rendezvous hashing.
    pub hash_id: u64,
    in_flight: AtomicUsize,
    passive: Passive,
    pub health: HealthState,
    pub sni: Option<ServerName<'static>>,
    pub metrics: ServerMetrics,
    conns: IdleConns,
    requests: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<(SystemTime, String)>>,
}

impl Server {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        addr: SocketAddr,
        label: Arc<str>,
        weight: u32,
        sni: Option<ServerName<'static>>,
        metrics: ServerMetrics,
        workers: usize,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Self {
        Server {
            addr,
            addr_text: Arc::from(addr.to_string()),
            hash_id: stable_hash(&[label.as_bytes()]),
            label,
            weight,
            in_flight: AtomicUsize::new(0),
            passive: Passive::default(),
            health: HealthState::new(),
            sni,
            metrics,
            conns: IdleConns::new(workers, max_idle, idle_timeout),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// An idle HTTP/1.1 connection of this worker, or the worker's HTTP/2 connection.
    pub fn checkout(&self) -> Option<Conn> {
        self.conns.checkout()
    }

    /// Keep a new HTTP/2 connection for this worker's later requests.
    pub fn keep_h2(&self, sender: &http2::SendRequest<RequestBody>) {
        self.conns.keep_h2(sender);
    }

    pub fn record_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_failure(&self, what: &dyn std::fmt::Display) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_error) = Some((SystemTime::now(), what.to_string()));
    }

    pub fn idle_count(&self) -> usize {
        self.conns.count()
    }

    /// The server's health as shown on `/status`, and since when it has held. Without active
    /// checks (`checked` false) the passive view is all there is: `up` unless ejected.
    pub fn health_view(&self, checked: bool) -> (&'static str, SystemTime) {
        let now = now_nanos();
        let at = |nanos: u64| {
            let wall = SystemTime::now();
            if nanos <= now {
                wall - Duration::from_nanos(now - nanos)
            } else {
                wall + Duration::from_nanos(nanos - now)
            }
        };
        let until = self.passive.ejected_until();
        if until > now {
            return ("ejected", at(self.passive.ejected_from()));
        }
        let verdict = match self.health.verdict() {
            Checked::Unknown if !checked => Checked::Up,
            v => v,
        };
        let mut since = self.health.since();
        if verdict != Checked::Down && until != 0 {
            // Back from an ejection that ended after the checks' last verdict.
            since = since.max(at(until));
        }
        (verdict.as_str(), since)
    }

    /// 1 while the server may be picked outside panic mode, for the `healthy` gauge.
    pub fn refresh_gauge(&self) {
        self.metrics
            .healthy
            .set(i64::from(usable(self, now_nanos())));
    }

    pub fn ejections(&self) -> u32 {
        self.passive.ejections()
    }

    /// Tripped by consecutive failures and no success since: the pool's failover chain
    /// counts it as failing, ejected or not.
    pub fn is_tripped(&self) -> bool {
        self.passive.is_tripped(now_nanos())
    }

    /// When the current ejection ends, if the server is ejected now.
    pub fn ejected_until(&self) -> Option<SystemTime> {
        let now = now_nanos();
        let until = self.passive.ejected_until();
        (until > now).then(|| SystemTime::now() + Duration::from_nanos(until - now))
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<(SystemTime, String)> {
        lock(&self.last_error).clone()
    }
}

impl Candidate for Server {
    fn weight(&self) -> u32 {
        self.weight
    }

    fn in_flight(&self) -> usize {
        Server::in_flight(self)
    }

    fn hash_id(&self) -> u64 {
        self.hash_id
    }
}

impl Member for Server {
    fn passive(&self) -> &Passive {
        &self.passive
    }

    fn held_down(&self) -> bool {
        self.health.is_down()
    }
}

/// A response body from this server ended: its connection goes back to the idle list, and
/// the request leaves the in-flight count.
impl OriginHook for Server {
    fn reuse(&self, conn: http1::SendRequest<RequestBody>) {
        self.conns.put(conn);
    }

    fn done(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a request in flight to a server until dropped, or until the response body it was
/// handed to ends (`into_lease`).
pub(crate) struct InFlight(Option<Arc<Server>>);

impl InFlight {
    /// Count a request in, unless the server already has `cap` in flight.
    pub fn enter(server: &Arc<Server>, cap: Option<usize>) -> Option<Self> {
        match cap {
            None => {
                server.in_flight.fetch_add(1, Ordering::Relaxed);
            }
            Some(cap) => {
                server
                    .in_flight
                    .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                        (n < cap).then_some(n + 1)
                    })
                    .ok()?;
            }
        }
        Some(InFlight(Some(Arc::clone(server))))
    }

    /// Hand the count to a response body: it ends with the body (`OriginHook::done`), which
    /// also gives `conn` back to the server's idle list if the whole body arrived.
    pub fn into_lease(
        mut self,
        conn: Option<http1::SendRequest<RequestBody>>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Option<OriginLease> {
        let server: Arc<dyn OriginHook> = self.0.take()?;
        Some(OriginLease {
            hook: server,
            conn,
            _slot: slot,
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(server) = self.0.take() {
            server.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Arc<Server> {
        let registry = prometheus::Registry::new();
        let metrics = crate::metrics::Metrics::new(&registry).unwrap();
        Arc::new(Server::new(
            "127.0.0.1:1".parse().unwrap(),
            Arc::from("127.0.0.1:1"),
            1,
            None,
            metrics.server("p", "127.0.0.1:1"),
            1,
            4,
            Duration::from_secs(60),
        ))
    }

    #[test]
    fn in_flight_counts_until_dropped_and_respects_the_cap() {
        let s = server();
        let a = InFlight::enter(&s, Some(2)).unwrap();
        let b = InFlight::enter(&s, Some(2)).unwrap();
        assert_eq!(s.in_flight(), 2);
        assert!(InFlight::enter(&s, Some(2)).is_none(), "at max_connections");
        assert_eq!(s.in_flight(), 2, "a refused entry counts nothing");
        drop(a);
        assert_eq!(s.in_flight(), 1);
        let c = InFlight::enter(&s, None).unwrap();
        drop((b, c));
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn a_lease_holds_the_count_until_the_body_ends() {
        let s = server();
        let lease = InFlight::enter(&s, None).unwrap().into_lease(None, None);
        assert_eq!(s.in_flight(), 1, "handing over counts the request once");
        drop(lease);
        assert_eq!(s.in_flight(), 0);
    }
}
