//! `Pool`: the runtime form of a `[[pools]]` table — its servers and balancer, and the
//! policies that decide per request: `pick` (balancer over the servers outlier detection and
//! the checks leave in, each pick taking the server's in-flight count within
//! `max_connections`), `record_outcome` (outlier detection), `is_down` (for the route's
//! failover chain), plus the pool's retry policy and budget (`budget.rs`) and concurrency
//! limit (`admission.rs`). Servers, budgets and admission slots carry over reloads.

use super::admission::Admission;
use super::balance::Balancer;
use super::budget::RetryBudget;
use super::health::Checked;
use super::outlier::{Outliers, Tripped};
use super::server::{InFlight, Server};
use crate::metrics::PoolMetrics;
use holdfast_config::{HealthCheck, Outlier, RetryPolicy};
use std::sync::Arc;
use tokio_rustls::TlsConnector;

pub(crate) struct UpstreamTls {
    pub connector: TlsConnector,
}

pub(crate) struct Pool {
    pub name: Arc<str>,
    pub servers: Box<[Arc<Server>]>,
    pub balancer: Balancer,
    outliers: Outliers,
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

impl Pool {
    pub fn new(parts: PoolParts) -> Self {
        let outliers = Outliers::new(parts.outlier, parts.panic_threshold, &parts.servers);
        Pool {
            name: parts.name,
            servers: parts.servers.into_boxed_slice(),
            balancer: parts.balancer,
            outliers,
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
        }
    }

    /// The server for this attempt, by the pool's balancer over the servers not `tried` and
    /// not left out by outlier detection or the checks, with its in-flight count taken. A
    /// server at `max_connections` is passed over for another.
    pub fn pick(&self, tried: &[usize], key: u64) -> Picked<'_> {
        let mut excluded = self.outliers.excluded(&self.servers, tried);
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
        self.outliers.has_untried_usable(&self.servers, tried)
    }

    /// Whether the whole pool is down for a failover chain: every server held down by its
    /// active checks or failing passively (ejected, or tripped past the ejection cap).
    pub fn is_down(&self) -> bool {
        self.outliers.is_down(&self.servers)
    }

    /// The checker changed a server's verdict: recount, and end a passive ejection when the
    /// server passes its checks again.
    pub(crate) fn health_changed(&self, server: &Server, verdict: Checked) {
        self.outliers.health_changed(&self.servers, server, verdict);
    }

    /// Count an attempt's outcome for outlier detection; may trip or eject the server.
    pub fn record_outcome(&self, server: &Server, failed: bool) {
        match self.outliers.record(&self.servers, server, failed) {
            None => {}
            Some(Tripped::AtCap) => {
                tracing::debug!(pool = %self.name, server = %server.label, "server failing, not ejected: max_ejection_percent reached");
            }
            Some(Tripped::Ejected(length)) => {
                server.metrics.ejections.inc();
                tracing::warn!(pool = %self.name, server = %server.label, ejected_for = ?length, "server ejected after consecutive failures");
            }
        }
    }
}

/// A retry policy for tests: `attempts` retries on every failure but statuses, a generous
/// budget, no back-off.
#[cfg(test)]
pub(crate) fn test_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        on: holdfast_config::RetryOn {
            connect: true,
            reset: true,
            timeout: true,
            statuses: vec![503],
        },
        non_idempotent: false,
        budget_percent: 20,
        min_per_second: 100,
        budget_window: std::time::Duration::from_secs(10),
        backoff: std::time::Duration::ZERO,
        buffer_body: 0,
    }
}

/// A pool of `servers` round-robin servers on unused loopback ports, for tests.
#[cfg(test)]
pub(crate) fn test_pool(
    name: &str,
    servers: usize,
    max_connections: Option<usize>,
    retry: RetryPolicy,
) -> Pool {
    use std::time::Duration;
    let registry = prometheus::Registry::new();
    let Ok(metrics) = crate::metrics::Metrics::new(&registry) else {
        unreachable!("a fresh registry takes every family");
    };
    let servers: Vec<Arc<Server>> = (0..servers)
        .map(|i| {
            let label = format!("127.0.0.1:{}", i + 1);
            Arc::new(Server::new(
                std::net::SocketAddr::from(([127, 0, 0, 1], (i + 1) as u16)),
                Arc::from(label.as_str()),
                1,
                None,
                metrics.server(name, &label),
                1,
                4,
                Duration::from_secs(60),
            ))
        })
        .collect();
    Pool::new(PoolParts {
        name: Arc::from(name),
        balancer: Balancer::new(
            &holdfast_config::Balance::RoundRobin,
            &vec![1; servers.len()],
        ),
        servers,
        host_header: None,
        tls: None,
        http2: false,
        budget: Arc::new(RetryBudget::new(&retry)),
        retry,
        metrics: metrics.pool(name),
        admission: None,
        outlier: Outlier {
            consecutive_failures: 2,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 50,
        },
        panic_threshold: 0,
        max_connections,
        retry_after: http::HeaderValue::from_static("1"),
        health: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(servers: usize, max_connections: Option<usize>) -> Pool {
        test_pool("p", servers, max_connections, test_retry(1))
    }

    fn picked(p: &Pool, tried: &[usize]) -> Option<(usize, InFlight)> {
        match p.pick(tried, 0) {
            Picked::Server(i, _, in_flight) => Some((i, in_flight)),
            Picked::Full | Picked::Empty => None,
        }
    }

    #[test]
    fn a_pick_skips_tried_servers() {
        let p = pool(3, None);
        for _ in 0..6 {
            let (i, _) = picked(&p, &[0, 2]).unwrap();
            assert_eq!(i, 1);
        }
    }

    #[test]
    fn servers_at_max_connections_are_passed_over_then_the_pool_is_full() {
        let p = pool(2, Some(1));
        let (a, held_a) = picked(&p, &[]).unwrap();
        let (b, held_b) = picked(&p, &[]).unwrap();
        assert_ne!(a, b, "the busy server was passed over");
        assert!(matches!(p.pick(&[], 0), Picked::Full));
        drop(held_a);
        assert_eq!(picked(&p, &[]).map(|(i, _)| i), Some(a));
        drop(held_b);
    }

    #[test]
    fn an_empty_pool_says_so() {
        assert!(matches!(pool(0, None).pick(&[], 0), Picked::Empty));
    }

    #[test]
    fn an_ejected_server_is_left_out_and_counted() {
        let p = pool(2, None);
        let bad = Arc::clone(&p.servers[0]);
        p.record_outcome(&bad, true);
        p.record_outcome(&bad, true);
        assert_eq!(bad.ejections(), 1);
        assert_eq!(bad.metrics.ejections.get(), 1);
        for _ in 0..4 {
            assert_eq!(picked(&p, &[]).map(|(i, _)| i), Some(1));
        }
        assert!(!p.is_down(), "one healthy server left");
        assert!(!p.has_untried_usable(&[1]));
    }
}
