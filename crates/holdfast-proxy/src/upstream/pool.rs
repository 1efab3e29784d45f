//! `Pool` and `Server`: the runtime form of a `[[pools]]` table. Idle HTTP/1.1 connections
//! are kept per worker thread (no cross-thread wake-ups, uncontended locks), bounded by
//! `max_idle_per_server` and `idle_timeout`; an HTTP/2 connection is shared per worker.

use super::Balancer;
use crate::body::RequestBody;
use crate::metrics::{PoolMetrics, ServerMetrics};
use holdfast_config::{Outlier, Overload, RetryPolicy};

use hyper::client::conn::{http1, http2};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tower::retry::budget::{Budget, TpsBudget};

thread_local! {
    static WORKER_SLOT: Cell<usize> = const { Cell::new(0) };
}

/// Called once by each worker thread so pools can keep per-worker idle lists.
pub(crate) fn set_worker_slot(slot: usize) {
    WORKER_SLOT.with(|s| s.set(slot));
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) struct UpstreamTls {
    pub connector: TlsConnector,
}

pub(crate) struct Pool {
    pub name: Arc<str>,
    pub servers: Box<[Arc<Server>]>,
    pub balancer: Balancer,
    pub outlier: Outlier,
    /// The latest end of any server's ejection (`now_nanos` scale): while it is in the past,
    /// picking needs no look at ejections at all.
    ejections_end: AtomicU64,
    pub host_header: Option<http::HeaderValue>,
    pub tls: Option<UpstreamTls>,
    pub http2: bool,
    pub retry: RetryPolicy,
    /// Caps retries to a share of requests (Finagle/Linkerd style), so retries never
    /// multiply the load on a failing origin.
    pub budget: Arc<RetryBudget>,
    pub metrics: PoolMetrics,
    /// Concurrency limit and queue; `None` is unlimited (and costs nothing per request).
    pub admission: Option<Arc<Admission>>,
}

/// Requests per deposit into the budget: depositing on every request would take the
/// budget's mutex and read the clock each time; the share per deposit is scaled to match.
const REQUESTS_PER_DEPOSIT: u64 = 16;

/// A pool's retry budget (tower's `TpsBudget`), fed once every `REQUESTS_PER_DEPOSIT`
/// requests with a share scaled by the same factor.
pub(crate) struct RetryBudget {
    budget: TpsBudget,
    requests: AtomicU64,
}

impl RetryBudget {
    /// The validated ranges are within `TpsBudget`'s; clamp anyway, it asserts on them.
    pub fn new(retry: &RetryPolicy) -> Self {
        let window = retry
            .budget_window
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        let share = (retry.budget_percent.min(100) as f32) / 100.0;
        let per_deposit = share * REQUESTS_PER_DEPOSIT as f32;
        RetryBudget {
            budget: TpsBudget::new(window, retry.min_per_second.min(1_000_000), per_deposit),
            requests: AtomicU64::new(0),
        }
    }

    pub fn record_request(&self) {
        if self
            .requests
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(REQUESTS_PER_DEPOSIT)
        {
            self.budget.deposit();
        }
    }

    pub fn try_retry(&self) -> bool {
        self.budget.withdraw()
    }
}

/// Slots for requests in flight to a pool, and a bounded queue for a free slot. A slot is
/// held from sending until the response body ends (the permit travels in the body).
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
    max_queued: usize,
    /// `Retry-After` for the 503, in seconds.
    pub retry_after: http::HeaderValue,
}

/// Leaves the queue when dropped, also when the waiting request is cancelled.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new(limits: &Overload) -> Self {
        let secs = limits.retry_after.as_secs().max(1);
        Admission {
            slots: Arc::new(Semaphore::new(
                limits.max_concurrent.min(Semaphore::MAX_PERMITS),
            )),
            queued: AtomicUsize::new(0),
            max_queued: limits.max_queued,
            retry_after: http::HeaderValue::from(secs),
        }
    }

    /// A slot now, or after waiting in the queue until `deadline`; `None` means answer 503.
    pub async fn admit(&self, deadline: Instant) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Some(permit);
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let _in_queue = Queued(&self.queued);
        let wait = Arc::clone(&self.slots).acquire_owned();
        tokio::time::timeout_at(deadline.into(), wait)
            .await
            .ok()?
            .ok()
    }
}

impl Pool {
    pub fn new(parts: PoolParts) -> Self {
        // Servers carried over a reload may still be ejected.
        let ejections_end = parts
            .servers
            .iter()
            .map(|s| s.ejected_until.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        Pool {
            name: parts.name,
            servers: parts.servers.into_boxed_slice(),
            balancer: parts.balancer,
            outlier: parts.outlier,
            ejections_end: AtomicU64::new(ejections_end),
            host_header: parts.host_header,
            tls: parts.tls,
            http2: parts.http2,
            retry: parts.retry,
            budget: parts.budget,
            metrics: parts.metrics,
            admission: parts.admission,
        }
    }

    /// The server for this attempt, by the pool's balancer, skipping those already `tried`
    /// for this request and those ejected while others remain (if every server that could be
    /// picked is ejected, they are used anyway: panic mode). `key` is the request's hash key.
    pub fn pick(&self, tried: &[usize], key: u64) -> Option<(usize, &Arc<Server>)> {
        // No ejection ever (the usual case): no clock read at all.
        let end = self.ejections_end.load(Ordering::Relaxed);
        let now = if end == 0 { 0 } else { now_nanos() };
        let i = if end <= now {
            self.balancer.pick(&self.servers, tried, key)
        } else {
            let mut excluded = tried.to_vec();
            for (i, s) in self.servers.iter().enumerate() {
                if s.is_ejected(now) && !excluded.contains(&i) {
                    excluded.push(i);
                }
            }
            if excluded.len() < self.servers.len() {
                self.balancer.pick(&self.servers, &excluded, key)
            } else {
                self.balancer.pick(&self.servers, tried, key)
            }
        }?;
        self.servers.get(i).map(|s| (i, s))
    }

    /// Count an attempt's outcome for outlier detection; may eject the server.
    pub fn record_outcome(&self, server: &Server, failed: bool) {
        let never_ejected = server.ejected_until.load(Ordering::Relaxed) == 0;
        if !failed && never_ejected {
            server.consecutive_failures.store(0, Ordering::Relaxed);
            return;
        }
        let now = now_nanos();
        if server.is_ejected(now) {
            // Answers while ejected (panic mode) do not count: the server comes back with a
            // clean count when its ejection ends.
            return;
        }
        if server.metrics.healthy.get() == 0 {
            server.metrics.healthy.set(1);
        }
        if !failed {
            server.consecutive_failures.store(0, Ordering::Relaxed);
            return;
        }
        let threshold = self.outlier.consecutive_failures;
        let count = server.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if threshold == 0 || count < threshold {
            return;
        }
        let cap = self.servers.len() * self.outlier.max_ejection_percent as usize / 100;
        let ejected = self.servers.iter().filter(|s| s.is_ejected(now)).count();
        if ejected >= cap {
            return;
        }
        let times = server.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let length = self
            .outlier
            .base_ejection
            .saturating_mul(times)
            .min(self.outlier.max_ejection);
        let until = now.saturating_add(u64::try_from(length.as_nanos()).unwrap_or(u64::MAX));
        server.ejected_until.store(until, Ordering::Relaxed);
        server.consecutive_failures.store(0, Ordering::Relaxed);
        self.ejections_end.fetch_max(until, Ordering::Relaxed);
        server.metrics.ejections.inc();
        server.metrics.healthy.set(0);
        tracing::warn!(pool = %self.name, server = %server.label, ejected_for = ?length, "server ejected after consecutive failures");
    }
}

/// What `Pool::new` is built from.
pub(crate) struct PoolParts {
    pub name: Arc<str>,
    pub servers: Vec<Arc<Server>>,
    pub host_header: Option<http::HeaderValue>,
    pub tls: Option<UpstreamTls>,
    pub http2: bool,
    pub retry: RetryPolicy,
    pub budget: Arc<RetryBudget>,
    pub metrics: PoolMetrics,
    pub admission: Option<Arc<Admission>>,
    pub balancer: Balancer,
    pub outlier: Outlier,
}

/// Nanoseconds since the first call in this process: a monotonic clock that fits an atomic.
pub(crate) fn now_nanos() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Counts a request in flight to a server until dropped (with the response body).
pub(crate) struct InFlight(Arc<Server>);

impl InFlight {
    pub fn new(server: &Arc<Server>) -> Self {
        server.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(server))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Idle {
    sender: http1::SendRequest<RequestBody>,
    since: Instant,
}

#[derive(Default)]
struct Slot {
    idle: Vec<Idle>,
    h2: Option<http2::SendRequest<RequestBody>>,
}

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
    consecutive_failures: AtomicU32,
    /// End of the current ejection (`now_nanos` scale); 0 when never ejected.
    ejected_until: AtomicU64,
    ejections: AtomicU32,
    pub sni: Option<ServerName<'static>>,
    pub metrics: ServerMetrics,
    slots: Box<[Mutex<Slot>]>,
    max_idle: usize,
    idle_timeout: Duration,
    requests: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<(SystemTime, String)>>,
}

/// A connection ready to carry one request.
pub(crate) enum Conn {
    H1(http1::SendRequest<RequestBody>),
    H2(http2::SendRequest<RequestBody>),
}

/// Hands an HTTP/1.1 connection back to its server's idle list once the response body ended.
pub(crate) struct Release {
    server: Arc<Server>,
    sender: http1::SendRequest<RequestBody>,
}

impl Release {
    pub fn release(self) {
        self.server.put_idle(self.sender);
    }
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
        metrics.healthy.set(1);
        Server {
            addr,
            addr_text: Arc::from(addr.to_string()),
            hash_id: super::stable_hash(&[label.as_bytes()]),
            label,
            weight,
            in_flight: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            sni,
            metrics,
            slots: (0..workers.max(1))
                .map(|_| Mutex::new(Slot::default()))
                .collect(),
            max_idle,
            idle_timeout,
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    fn slot(&self) -> Option<&Mutex<Slot>> {
        let i = WORKER_SLOT.with(Cell::get);
        self.slots.get(i % self.slots.len().max(1))
    }

    /// An idle HTTP/1.1 connection of this worker, or the worker's HTTP/2 connection.
    pub fn checkout(&self) -> Option<Conn> {
        let slot = self.slot()?;
        let mut slot = lock(slot);
        if let Some(h2) = &slot.h2 {
            if !h2.is_closed() {
                return Some(Conn::H2(h2.clone()));
            }
            slot.h2 = None;
        }
        while let Some(idle) = slot.idle.pop() {
            if idle.since.elapsed() <= self.idle_timeout && !idle.sender.is_closed() {
                return Some(Conn::H1(idle.sender));
            }
        }
        None
    }

    /// Keep a new HTTP/2 connection for this worker's later requests.
    pub fn keep_h2(&self, sender: &http2::SendRequest<RequestBody>) {
        if let Some(slot) = self.slot() {
            lock(slot).h2 = Some(sender.clone());
        }
    }

    fn put_idle(&self, sender: http1::SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        if let Some(slot) = self.slot() {
            let mut slot = lock(slot);
            if slot.idle.len() < self.max_idle {
                slot.idle.push(Idle {
                    sender,
                    since: Instant::now(),
                });
            }
        }
    }

    pub fn release_for(self: &Arc<Self>, conn: Conn) -> Option<Release> {
        match conn {
            Conn::H1(sender) => Some(Release {
                server: Arc::clone(self),
                sender,
            }),
            Conn::H2(_) => None,
        }
    }

    pub fn record_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_failure(&self, what: &dyn std::fmt::Display) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_error) = Some((SystemTime::now(), what.to_string()));
    }

    pub fn idle_count(&self) -> usize {
        self.slots.iter().map(|s| lock(s).idle.len()).sum()
    }

    pub fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    pub fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// When the current ejection ends, if the server is ejected now.
    pub fn ejected_until(&self) -> Option<SystemTime> {
        let now = now_nanos();
        let until = self.ejected_until.load(Ordering::Relaxed);
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
