//! Data-path metrics. Label sets are resolved once per config generation (`RouteMetrics`),
//! so a request only touches atomics: no map look-ups, no locks, no allocation.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Every word a server's state can be (`state::server_state`), the label values of
/// `holdfast_upstream_server_state`.
pub(crate) const SERVER_STATES: [&str; 5] = ["up", "unknown", "failing", "ejected", "down"];

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The label value used for requests that matched no route.
pub const NO_ROUTE: &str = "(none)";

pub struct Metrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    upstream_requests: IntCounterVec,
    upstream_duration: HistogramVec,
    upstream_errors: IntCounterVec,
    ejections: IntCounterVec,
    healthy: prometheus::IntGaugeVec,
    server_state: prometheus::IntGaugeVec,
    retries: IntCounterVec,
    retry_budget_exhausted: IntCounterVec,
    overload_rejected: IntCounterVec,
    failovers: IntCounterVec,
    pub(crate) bad_requests: IntCounterVec,
    pub(crate) connections: IntCounter,
    pub(crate) connections_active: IntGauge,
    pub(crate) connections_idle_released: IntGauge,
    pub(crate) connections_capped: IntCounter,
    pub(crate) tls_handshake_errors: IntCounter,
    /// `holdfast_tls_ocsp_*`: stapling fetches and how long each staple has left.
    pub(crate) ocsp: crate::tls::OcspMetrics,
    pub(crate) access_log_dropped: IntCounter,
    pub(crate) cache: crate::cache_metrics::CacheMetrics,
    pub(crate) quic: crate::h3::metrics::QuicMetrics,
    /// Requests by the client's protocol: HTTP/1.0, HTTP/1.1, HTTP/2, HTTP/3.
    protocols: [IntCounter; 4],
}

/// Counters for one route, resolved when the state is built.
#[derive(Clone)]
pub(crate) struct RouteMetrics {
    by_class: [IntCounter; 5],
    duration: Histogram,
}

impl RouteMetrics {
    pub(crate) fn observe(&self, status: u16, seconds: f64) {
        let class = usize::from(status / 100).saturating_sub(1);
        if let Some(c) = self.by_class.get(class) {
            c.inc();
        }
        self.duration.observe(seconds);
    }
}

/// Counters for one pool, resolved when the state is built.
#[derive(Clone)]
pub(crate) struct PoolMetrics {
    pub(crate) retry_succeeded: IntCounter,
    pub(crate) retry_failed: IntCounter,
    pub(crate) budget_exhausted: IntCounter,
    pub(crate) overload_rejected: IntCounter,
}

/// Counters for one upstream server, resolved when the state is built.
#[derive(Clone)]
pub(crate) struct ServerMetrics {
    by_class: [IntCounter; 5],
    duration: Histogram,
    pub(crate) connect_errors: IntCounter,
    pub(crate) timeouts: IntCounter,
    pub(crate) other_errors: IntCounter,
    pub(crate) ejections: IntCounter,
    pub(crate) healthy: IntGauge,
}

impl ServerMetrics {
    pub(crate) fn observe(&self, status: u16, seconds: f64) {
        let class = usize::from(status / 100).saturating_sub(1);
        if let Some(c) = self.by_class.get(class) {
            c.inc();
        }
        self.duration.observe(seconds);
    }
}

fn classes(vec: &IntCounterVec, prefix: &[&str]) -> [IntCounter; 5] {
    ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| {
        let mut labels: Vec<&str> = prefix.to_vec();
        labels.push(class);
        vec.with_label_values(&labels)
    })
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Metrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "holdfast_http_requests_total",
                    "Requests answered by the edge, by route and status class.",
                ),
                &["route", "status_class"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "holdfast_http_request_duration_seconds",
                    "Time from request head to the end of the response body, by route.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["route"],
            )?,
            upstream_requests: IntCounterVec::new(
                Opts::new(
                    "holdfast_upstream_requests_total",
                    "Responses received from origin servers, by pool, server and status class.",
                ),
                &["pool", "server", "status_class"],
            )?,
            upstream_duration: HistogramVec::new(
                HistogramOpts::new(
                    "holdfast_upstream_request_duration_seconds",
                    "Time from sending the request to the origin to its response head.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["pool"],
            )?,
            upstream_errors: IntCounterVec::new(
                Opts::new(
                    "holdfast_upstream_errors_total",
                    "Failed exchanges with origin servers, by kind (connect, timeout, protocol).",
                ),
                &["pool", "server", "kind"],
            )?,
            ejections: IntCounterVec::new(
                Opts::new(
                    "holdfast_upstream_ejections_total",
                    "Times a server was ejected for consecutive failures (outlier detection).",
                ),
                &["pool", "server"],
            )?,
            healthy: prometheus::IntGaugeVec::new(
                Opts::new(
                    "holdfast_upstream_healthy",
                    "1 while a server may be picked, 0 while its active checks hold it down or \
                     it is ejected (as of the scrape).",
                ),
                &["pool", "server"],
            )?,
            server_state: prometheus::IntGaugeVec::new(
                Opts::new(
                    "holdfast_upstream_server_state",
                    "1 for the state the data path holds a server in (up, unknown, failing, \
                     ejected, down; the word /status shows), 0 for the others (as of the scrape).",
                ),
                &["pool", "server", "state"],
            )?,
            retries: IntCounterVec::new(
                Opts::new(
                    "holdfast_upstream_retries_total",
                    "Retries on another server, by pool and outcome (succeeded: the retry's \
                     response was returned; failed: it failed too).",
                ),
                &["pool", "outcome"],
            )?,
            retry_budget_exhausted: IntCounterVec::new(
                Opts::new(
                    "holdfast_upstream_retry_budget_exhausted_total",
                    "Retries a pool's retry budget refused.",
                ),
                &["pool"],
            )?,
            overload_rejected: IntCounterVec::new(
                Opts::new(
                    "holdfast_upstream_overload_rejected_total",
                    "Requests answered 503 by the edge because the pool was at max_concurrent \
                     with a full queue.",
                ),
                &["pool"],
            )?,
            failovers: IntCounterVec::new(
                Opts::new(
                    "holdfast_pool_failover_total",
                    "Changes of the pool a route sends to along its failover chain \
                     (to=\"fallback\": the fallback response).",
                ),
                &["route", "from", "to"],
            )?,
            bad_requests: IntCounterVec::new(
                Opts::new(
                    "holdfast_http_bad_requests_total",
                    "Requests refused by the edge before routing, by reason.",
                ),
                &["reason"],
            )?,
            connections: IntCounter::new(
                "holdfast_http_connections_total",
                "Client connections accepted.",
            )?,
            connections_active: IntGauge::new(
                "holdfast_http_connections_active",
                "Client connections open now.",
            )?,
            connections_idle_released: IntGauge::new(
                "holdfast_http_connections_idle_released",
                "Open HTTP/1 connections idle past edge.idle_release_after, holding only their socket.",
            )?,
            connections_capped: IntCounter::new(
                "holdfast_http_connections_capped_total",
                "Times the edge stopped accepting because edge.max_connections were open.",
            )?,
            tls_handshake_errors: IntCounter::new(
                "holdfast_tls_handshake_errors_total",
                "TLS handshakes with clients that failed or timed out.",
            )?,
            ocsp: crate::tls::OcspMetrics::new(registry)?,
            access_log_dropped: IntCounter::new(
                "holdfast_access_log_dropped_total",
                "Access-log lines dropped because the writer could not keep up.",
            )?,
            cache: crate::cache_metrics::CacheMetrics::new(registry)?,
            quic: crate::h3::metrics::QuicMetrics::new(registry)?,
            protocols: {
                let by = IntCounterVec::new(
                    Opts::new(
                        "holdfast_http_protocol_requests_total",
                        "Requests answered by the edge, by the client's protocol.",
                    ),
                    &["protocol"],
                )?;
                registry.register(Box::new(by.clone()))?;
                ["HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/3"].map(|p| by.with_label_values(&[p]))
            },
        };
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.upstream_requests.clone()))?;
        registry.register(Box::new(m.upstream_duration.clone()))?;
        registry.register(Box::new(m.upstream_errors.clone()))?;
        registry.register(Box::new(m.ejections.clone()))?;
        registry.register(Box::new(m.healthy.clone()))?;
        registry.register(Box::new(m.server_state.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.retry_budget_exhausted.clone()))?;
        registry.register(Box::new(m.overload_rejected.clone()))?;
        registry.register(Box::new(m.failovers.clone()))?;
        registry.register(Box::new(m.bad_requests.clone()))?;
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.connections_active.clone()))?;
        registry.register(Box::new(m.connections_idle_released.clone()))?;
        registry.register(Box::new(m.connections_capped.clone()))?;
        registry.register(Box::new(m.tls_handshake_errors.clone()))?;
        registry.register(Box::new(m.access_log_dropped.clone()))?;
        Ok(m)
    }

    pub(crate) fn route(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            by_class: classes(&self.requests, &[route]),
            duration: self.duration.with_label_values(&[route]),
        }
    }

    pub(crate) fn pool(&self, pool: &str) -> PoolMetrics {
        PoolMetrics {
            retry_succeeded: self.retries.with_label_values(&[pool, "succeeded"]),
            retry_failed: self.retries.with_label_values(&[pool, "failed"]),
            budget_exhausted: self.retry_budget_exhausted.with_label_values(&[pool]),
            overload_rejected: self.overload_rejected.with_label_values(&[pool]),
        }
    }

    pub(crate) fn server(&self, pool: &str, server: &str) -> ServerMetrics {
        ServerMetrics {
            by_class: classes(&self.upstream_requests, &[pool, server]),
            duration: self.upstream_duration.with_label_values(&[pool]),
            connect_errors: self
                .upstream_errors
                .with_label_values(&[pool, server, "connect"]),
            timeouts: self
                .upstream_errors
                .with_label_values(&[pool, server, "timeout"]),
            other_errors: self
                .upstream_errors
                .with_label_values(&[pool, server, "protocol"]),
            ejections: self.ejections.with_label_values(&[pool, server]),
            healthy: self.healthy.with_label_values(&[pool, server]),
        }
    }

    /// Set `holdfast_upstream_server_state`: 1 for `state`, 0 for the other words.
    pub(crate) fn set_server_state(&self, pool: &str, server: &str, state: &str) {
        for word in SERVER_STATES {
            self.server_state
                .with_label_values(&[pool, server, word])
                .set(i64::from(word == state));
        }
    }

    pub(crate) fn failovers(&self) -> IntCounterVec {
        self.failovers.clone()
    }

    /// The counter the access-log writer bumps when it drops lines.
    pub fn access_log_dropped(&self) -> IntCounter {
        self.access_log_dropped.clone()
    }

    pub(crate) fn count_protocol(&self, version: http::Version) {
        let i = match version {
            http::Version::HTTP_09 | http::Version::HTTP_10 => 0,
            http::Version::HTTP_2 => 2,
            http::Version::HTTP_3 => 3,
            _ => 1,
        };
        if let Some(c) = self.protocols.get(i) {
            c.inc();
        }
    }

    pub(crate) fn bad_request(&self, reason: &str) {
        self.bad_requests.with_label_values(&[reason]).inc();
    }
}
