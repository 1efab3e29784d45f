//! `Pool` and `Server`: the runtime form of a `[[pools]]` table. Idle HTTP/1.1 connections
//! are kept per worker thread (no cross-thread wake-ups, uncontended locks), bounded by
//! `max_idle_per_server` and `idle_timeout`; an HTTP/2 connection is shared per worker.

use super::health::{Checked, HealthState};
use super::Balancer;
use crate::body::RequestBody;
use crate::metrics::{PoolMetrics, ServerMetrics};
use holdfast_config::{HealthCheck, Outlier, Overload, RetryPolicy};
use std::borrow::Cow;

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

/// A poisoned lock is still usable: the data it guards stays consistent (counters, lists).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
    /// The latest end of any server's ejection or trip (`now_nanos` scale): while it is in
    /// the past, picking needs no look at ejections at all.
    ejections_end: AtomicU64,
    /// Servers the active checks hold down, recounted by the checker on every change.
    down_servers: AtomicUsize,
    pub panic_threshold: u32,
    pub max_connections: Option<usize>,
    /// `Retry-After` on a 503 the pool's limits cause.
    pub retry_after: http::HeaderValue,
    pub health: Option<HealthCheck>,
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
            .map(|s| s.tripped_until.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        let pool = Pool {
            name: parts.name,
            servers: parts.servers.into_boxed_slice(),
            balancer: parts.balancer,
            outlier: parts.outlier,
            ejections_end: AtomicU64::new(ejections_end),
            down_servers: AtomicUsize::new(0),
            panic_threshold: parts.panic_threshold,
            max_connections: parts.max_connections,
            retry_after: parts.retry_after,
            health: parts.health,
            host_header: parts.host_header,
            tls: parts.tls,
            http2: parts.http2,
            retry: parts.retry,
            budget: parts.budget,
            metrics: parts.metrics,
            admission: parts.admission,
        };
        pool.recount_down();
        pool
    }

    /// Which servers to leave out of this pick: those already `tried` for the request, and
    /// those ejected or down while enough others remain. When fewer than `panic_threshold`
    /// percent of the servers are healthy, only `tried` (panic mode: balance over all rather
    /// than overload the few).
    fn excluded<'t>(&self, tried: &'t [usize]) -> Cow<'t, [usize]> {
        let end = self.ejections_end.load(Ordering::Relaxed);
        let down = self.down_servers.load(Ordering::Relaxed);
        if end == 0 && down == 0 {
            // No ejection ever and no server down (the usual case): no clock read at all.
            return Cow::Borrowed(tried);
        }
        let now = now_nanos();
        if end <= now && down == 0 {
            return Cow::Borrowed(tried);
        }
        let unusable: Vec<usize> = (0..self.servers.len())
            .filter(|i| self.servers.get(*i).is_some_and(|s| !s.usable(now)))
            .collect();
        let n = self.servers.len();
        let healthy = n - unusable.len();
        if healthy == 0 || healthy * 100 < self.panic_threshold as usize * n {
            return Cow::Borrowed(tried);
        }
        let mut excluded = tried.to_vec();
        excluded.extend(unusable.into_iter().filter(|i| !tried.contains(i)));
        if excluded.len() >= n {
            // Every healthy server was tried: the rest may still answer.
            return Cow::Borrowed(tried);
        }
        Cow::Owned(excluded)
    }

    /// The server for this attempt, by the pool's balancer (see `excluded`), with its
    /// in-flight count taken. A server at `max_connections` is passed over for another.
    pub fn pick(&self, tried: &[usize], key: u64) -> Picked<'_> {
        let mut excluded = self.excluded(tried);
        let n = self.servers.len();
        for _ in 0..=n {
            if excluded.len() >= n && !excluded.is_empty() && self.max_connections.is_some() {
                return Picked::Full;
            }
            let Some(i) = self.balancer.pick(&self.servers, &excluded, key) else {
                return Picked::Empty;
            };
            let Some(server) = self.servers.get(i) else {
                return Picked::Empty;
            };
            match InFlight::enter(server, self.max_connections) {
                Some(in_flight) => return Picked::Server(i, server, in_flight),
                None => excluded.to_mut().push(i),
            }
        }
        Picked::Full
    }

    /// Whether an untried server that is healthy remains (a retry may stay in this pool).
    pub fn has_untried_usable(&self, tried: &[usize]) -> bool {
        let now = now_nanos();
        self.servers
            .iter()
            .enumerate()
            .any(|(i, s)| !tried.contains(&i) && s.usable(now))
    }

    /// Whether the whole pool is down for a failover chain: every server held down by its
    /// active checks or failing passively (ejected, or tripped past the ejection cap).
    pub fn is_down(&self) -> bool {
        let end = self.ejections_end.load(Ordering::Relaxed);
        let down = self.down_servers.load(Ordering::Relaxed);
        if end == 0 && down == 0 {
            return false;
        }
        let now = now_nanos();
        if end <= now && down == 0 {
            return false;
        }
        self.servers
            .iter()
            .all(|s| s.health.is_down() || s.tripped_until.load(Ordering::Relaxed) > now)
    }

    /// The checker changed a server's verdict: recount, and end a passive ejection when the
    /// server passes its checks again.
    pub(crate) fn health_changed(&self, server: &Server, verdict: Checked) {
        if verdict == Checked::Up {
            server.ejected_until.store(0, Ordering::Relaxed);
            server.tripped_until.store(0, Ordering::Relaxed);
            server.consecutive_failures.store(0, Ordering::Relaxed);
        }
        self.recount_down();
    }

    fn recount_down(&self) {
        let down = self.servers.iter().filter(|s| s.health.is_down()).count();
        self.down_servers.store(down, Ordering::Relaxed);
    }

    /// Count an attempt's outcome for outlier detection; may trip or eject the server.
    pub fn record_outcome(&self, server: &Server, failed: bool) {
        if !failed {
            if server.consecutive_failures.load(Ordering::Relaxed) != 0 {
                server.consecutive_failures.store(0, Ordering::Relaxed);
            }
            if server.tripped_until.load(Ordering::Relaxed) != 0 && !server.is_ejected(now_nanos())
            {
                server.tripped_until.store(0, Ordering::Relaxed);
            }
            return;
        }
        let now = now_nanos();
        if server.is_ejected(now) {
            // Answers while ejected (panic mode) do not count: the server comes back with a
            // clean count when its ejection ends.
            return;
        }
        let threshold = self.outlier.consecutive_failures;
        let count = server.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if threshold == 0 || count < threshold {
            return;
        }
        server.consecutive_failures.store(0, Ordering::Relaxed);
        let times = server.ejections.load(Ordering::Relaxed).saturating_add(1);
        let length = self
            .outlier
            .base_ejection
            .saturating_mul(times)
            .min(self.outlier.max_ejection);
        let until = now.saturating_add(u64::try_from(length.as_nanos()).unwrap_or(u64::MAX));
        // Tripped: the pool counts it as failing for its failover chain, even where the
        // ejection cap keeps it in the pool's rotation.
        server.tripped_until.store(until, Ordering::Relaxed);
        self.ejections_end.fetch_max(until, Ordering::Relaxed);
        let cap = self.servers.len() * self.outlier.max_ejection_percent as usize / 100;
        let ejected = self.servers.iter().filter(|s| s.is_ejected(now)).count();
        if ejected >= cap {
            tracing::debug!(pool = %self.name, server = %server.label, "server failing, not ejected: max_ejection_percent reached");
            return;
        }
        server.ejections.fetch_add(1, Ordering::Relaxed);
        server.ejected_from.store(now, Ordering::Relaxed);
        server.ejected_until.store(until, Ordering::Relaxed);
        server.metrics.ejections.inc();
        tracing::warn!(pool = %self.name, server = %server.label, ejected_for = ?length, "server ejected after consecutive failures");
    }
}

/// The outcome of `Pool::pick`.
pub(crate) enum Picked<'p> {
    Server(usize, &'p Arc<Server>, InFlight),
    /// Every server that could be picked is at `max_connections`.
    Full,
    /// The pool has no servers.
    Empty,
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
    pub panic_threshold: u32,
    pub max_connections: Option<usize>,
    pub retry_after: http::HeaderValue,
    pub health: Option<HealthCheck>,
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
    /// Count a request in, unless the server already has `cap` in flight.
    fn enter(server: &Arc<Server>, cap: Option<usize>) -> Option<Self> {
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
        Some(InFlight(Arc::clone(server)))
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
    /// Start of the latest ejection (`now_nanos` scale).
    ejected_from: AtomicU64,
    /// End of the latest trip (failures reached the threshold, ejected or not): until then
    /// the server counts as failing for the pool's failover chain; a success clears it.
    tripped_until: AtomicU64,
    ejections: AtomicU32,
    pub health: HealthState,
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
        Server {
            addr,
            addr_text: Arc::from(addr.to_string()),
            hash_id: super::stable_hash(&[label.as_bytes()]),
            label,
            weight,
            in_flight: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejected_from: AtomicU64::new(0),
            tripped_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            health: HealthState::new(),
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

    /// May be picked outside panic mode: not held down by checks, not ejected.
    fn usable(&self, now: u64) -> bool {
        !self.health.is_down() && !self.is_ejected(now)
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
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until > now {
            return ("ejected", at(self.ejected_from.load(Ordering::Relaxed)));
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
            .set(i64::from(self.usable(now_nanos())));
    }

    pub fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// Tripped by consecutive failures and no success since: the pool's failover chain
    /// counts it as failing, ejected or not.
    pub fn is_tripped(&self) -> bool {
        self.tripped_until.load(Ordering::Relaxed) > now_nanos()
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
