//! `State`: everything one config generation needs at run time — routes with their pools
//! resolved, origin addresses resolved, TLS loaded, metric handles looked up. Built off the
//! data path (at start and on reload) and swapped in whole; a request keeps the `State` it
//! started with.

use crate::access_log::AccessLogWriter;
use crate::metrics::{Metrics, RouteMetrics, NO_ROUTE};
use crate::upstream::{
    Admission, Balancer, Chain, CheckTargets, FallbackRt, Pool, PoolParts, RetryBudget, Server,
    UpstreamTls,
};
use holdfast_config::{Config, ConfigError, HeaderOps, HostMatch, ServerAddr, Timeouts};
use serde::Serialize;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ServerConfig;

/// What `State::build` needs besides the config.
pub struct StateInputs {
    pub config: Arc<Config>,
    pub generation: u64,
    pub metrics: Arc<Metrics>,
    /// The writer for access-log lines; `None` (e.g. for `holdfast check`) logs nothing.
    pub access_log: Option<Arc<AccessLogWriter>>,
    /// Number of data-path worker threads (per-worker idle connection lists).
    pub workers: usize,
    /// The per-request decision modules, in the order they run (owned by the caller, which
    /// keeps them, with their artifacts and breakers, across reloads).
    pub modules: Vec<Arc<dyn holdfast_modules::RequestModule>>,
    /// The generation being replaced: servers (with their idle connections and counters),
    /// retry budgets and concurrency slots carry over where their settings did not change.
    pub previous: Option<Arc<State>>,
    /// `[[edge.acme]]`'s certificates and challenges (`None`: no ACME, or `holdfast check`).
    pub acme: Option<Arc<holdfast_acme::CertStore>>,
    /// The session-ticket key ring a fleet shares (`None` without `[fleet]`).
    pub ticket_keys: Option<Arc<crate::tls::FleetTicketKeys>>,
}

pub struct State {
    pub generation: u64,
    pub config: Arc<Config>,
    pub(crate) routes: Box<[RouteRt]>,
    pub(crate) pools: Box<[Arc<Pool>]>,
    pub(crate) tls: Option<Arc<ServerConfig>>,
    /// The TLS listeners' per-site configurations (`tls` is the default site's).
    pub(crate) tls_sites: Option<Arc<crate::tls::Sites>>,
    /// Session resumption, shared by every TLS configuration and kept across reloads.
    pub(crate) tls_resumption: Option<crate::tls::Resumption>,
    /// The ACME certificates and challenges, when `[[edge.acme]]` is configured.
    pub(crate) acme: Option<Arc<holdfast_acme::CertStore>>,
    /// Each certificate file's names and `notAfter` (for the expiry metric).
    cert_expiry: Vec<crate::tls::CertExpiry>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) no_route: RouteMetrics,
    pub(crate) access_log: Option<Arc<AccessLogWriter>>,
    pub(crate) modules: Box<[Arc<dyn holdfast_modules::RequestModule>]>,
}

pub(crate) struct RouteRt {
    pub name: Arc<str>,
    pub hosts: Box<[HostMatch]>,
    pub path_prefix: Box<str>,
    /// The pools in order of preference, and the fallback response.
    pub chain: Chain,
    pub timeouts: Timeouts,
    /// Request bodies are read whole (up to `edge.request_buffer`) before the origin sees them.
    pub request_buffering: bool,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    pub metrics: RouteMetrics,
    /// The route's shared cache (`None`: not cached, and no cost on the data path).
    pub cache: Option<Arc<holdfast_cache::Cache>>,
}

/// A route's failover chain as shown on `/status`.
#[derive(Debug, Serialize)]
pub struct RouteStatus {
    pub name: String,
    pub pools: Vec<String>,
    pub fallback: bool,
    /// The pool the route sends to now, or `fallback`.
    pub active: String,
    /// The route's cache: objects and bytes in memory, and its counters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<RouteCacheStatus>,
}

/// A route's cache as shown on `/status`.
#[derive(Debug, Serialize)]
pub struct RouteCacheStatus {
    pub memory_objects: u64,
    pub memory_bytes: u64,
    pub memory_capacity: u64,
    /// Whether the disk tier is on (`cache.disk` set and its folder usable).
    pub disk: bool,
    /// The counters (hits, misses, stale served, …, disk objects and bytes).
    #[serde(flatten)]
    pub counters: holdfast_cache::StatsSnapshot,
}

impl RouteCacheStatus {
    fn of(cache: &holdfast_cache::Cache) -> Self {
        RouteCacheStatus {
            memory_objects: cache.store.objects(),
            memory_bytes: cache.store.bytes(),
            memory_capacity: cache.config.memory,
            disk: cache.store.disk.is_some(),
            counters: cache.stats().snapshot(),
        }
    }
}

/// A pool as shown on `/status`.
#[derive(Debug, Serialize)]
pub struct PoolStatus {
    pub name: String,
    pub servers: Vec<ServerStatus>,
}

#[derive(Debug, Serialize)]
pub struct ServerStatus {
    pub address: String,
    pub resolved: String,
    /// What the data path believes, worst first: `ejected` (outlier detection) until
    /// `ejected_until`, `down` (active checks), `failing` (tripped by consecutive passive
    /// failures, not ejected: see `last_error`), `unknown` (no check verdict yet, or no
    /// checks and no traffic yet: counts as healthy), `up`. The same word as the
    /// `holdfast_upstream_server_state` gauge.
    pub health: &'static str,
    /// When the current health began (RFC 3339).
    pub since: String,
    pub last_check: Option<LastCheck>,
    pub ejections: u32,
    pub ejected_until: Option<String>,
    pub weight: u32,
    pub in_flight: usize,
    pub requests: u64,
    pub failures: u64,
    pub idle_connections: usize,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LastCheck {
    pub at: String,
    pub ok: bool,
    /// The status code, or why the check failed.
    pub result: String,
}

fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl State {
    pub fn build(inputs: StateInputs) -> Result<State, Vec<ConfigError>> {
        let StateInputs {
            config,
            generation,
            metrics,
            access_log,
            workers,
            modules,
            previous,
            acme,
            ticket_keys,
        } = inputs;
        let mut errors = Vec::new();
        let pools: Vec<Arc<Pool>> = config
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let before = previous.as_deref().and_then(|s| s.pool_named(&p.name));
                build_pool(i, p, before, &metrics, workers, &mut errors)
            })
            .collect();
        let acme = acme.filter(|_| !config.edge.acme.is_empty());
        let mut cert_expiry = Vec::new();
        let tls_resumption = crate::tls::Resumption::new(
            config.edge.session_tickets,
            previous.as_deref().and_then(|s| s.tls_resumption.as_ref()),
            ticket_keys.as_ref(),
        );
        let no_tls = config.edge.tls.is_empty() && config.edge.acme.is_empty();
        let tls_sites = match (&tls_resumption, no_tls) {
            (_, true) => None,
            (None, false) => {
                errors.push(ConfigError::new(
                    "edge.session_tickets",
                    "no random bytes for session ticket keys",
                    "check the system's random source, or set enabled = false",
                ));
                None
            }
            (Some(r), false) => match crate::tls::server_config(
                &config.edge.tls,
                &config.edge.acme,
                acme.as_ref(),
                r,
                &mut cert_expiry,
            ) {
                Ok(t) => Some(Arc::new(t)),
                Err(mut e) => {
                    errors.append(&mut e);
                    None
                }
            },
        };
        let tls = tls_sites.as_deref().map(crate::tls::Sites::default_config);
        // On with the routes whatever failed above: every error is reported together.
        let mut routes = Vec::new();
        for (i, r) in config.routes.iter().enumerate() {
            let fallback = r.fallback.as_ref().and_then(|f| {
                load_fallback(f, &format!("routes[{i}].fallback.file"))
                    .map_err(|e| errors.push(e))
                    .ok()
            });
            let chain: Box<[Arc<Pool>]> = r
                .pools
                .iter()
                .filter_map(|p| pools.get(*p).cloned())
                .collect();
            // A reload that keeps the chain keeps where it sends (no failover counted twice).
            let active = previous
                .as_deref()
                .and_then(|s| s.routes.iter().find(|o| *o.name == *r.name))
                .filter(|o| {
                    o.chain.pools.len() == chain.len()
                        && o.chain.fallback.is_some() == fallback.is_some()
                        && o.chain
                            .pools
                            .iter()
                            .zip(chain.iter())
                            .all(|(a, b)| a.name == b.name)
                })
                .map_or(0, |o| o.chain.active_index());
            let name: Arc<str> = Arc::from(r.name.as_str());
            // The stored objects survive a reload that keeps the route and its memory size.
            let cache = r.cache.clone().map(|c| {
                let before = previous
                    .as_deref()
                    .and_then(|s| s.routes.iter().find(|o| *o.name == *r.name))
                    .and_then(|o| o.cache.as_deref());
                Arc::new(holdfast_cache::Cache::new(c, before))
            });
            routes.push(RouteRt {
                chain: Chain::new(
                    Arc::clone(&name),
                    chain,
                    fallback,
                    active,
                    metrics.failovers(),
                ),
                name,
                hosts: r.hosts.clone().into_boxed_slice(),
                path_prefix: r.path_prefix.clone().into_boxed_str(),
                timeouts: r.timeouts,
                request_buffering: r.request_buffering,
                request_headers: r.request_headers.clone(),
                response_headers: r.response_headers.clone(),
                metrics: metrics.route(&r.name),
                cache,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let access_log =
            access_log.filter(|_| config.edge.access_log != holdfast_config::AccessLog::Off);
        Ok(State {
            generation,
            routes: routes.into_boxed_slice(),
            pools: pools.into_boxed_slice(),
            tls,
            tls_sites,
            tls_resumption,
            acme,
            cert_expiry,
            no_route: metrics.route(NO_ROUTE),
            metrics,
            access_log,
            modules: modules.into_boxed_slice(),
            config,
        })
    }

    /// The servers of the pool `name` with whether the active checks hold each down (for
    /// DNS steering, which answers with healthy servers' addresses); `None`: no such pool.
    pub fn pool_health(&self, name: &str) -> Option<Vec<(std::net::SocketAddr, bool)>> {
        let pool = self.pools.iter().find(|p| &*p.name == name)?;
        Some(
            pool.servers
                .iter()
                .map(|s| (s.addr, s.health.is_down()))
                .collect(),
        )
    }

    pub fn pool_status(&self) -> Vec<PoolStatus> {
        self.pools
            .iter()
            .map(|p| PoolStatus {
                name: p.name.to_string(),
                servers: p
                    .servers
                    .iter()
                    .map(|s| server_status(s, p.health.is_some()))
                    .collect(),
            })
            .collect()
    }

    pub fn route_status(&self) -> Vec<RouteStatus> {
        self.routes
            .iter()
            .map(|r| RouteStatus {
                name: r.name.to_string(),
                pools: r.chain.pools.iter().map(|p| p.name.to_string()).collect(),
                fallback: r.chain.fallback.is_some(),
                active: r.chain.active().to_string(),
                cache: r.cache.as_deref().map(RouteCacheStatus::of),
            })
            .collect()
    }

    /// Purges every cached route's store (`soft`: mark stale instead of removing). Exact
    /// and prefix purges name a URL in any form a client sends (`crate::purge`): with or
    /// without a scheme (without: both), any case of host, a port, the query in any order.
    /// A URL without a host matches nothing. Returns how many URIs matched.
    pub fn purge_cache(&self, what: &holdfast_cache::Purge, soft: bool) -> u64 {
        self.routes
            .iter()
            .filter_map(|r| r.cache.as_deref())
            .flat_map(|c| {
                crate::purge::for_route(&c.config.key, what)
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |p| c.store.purge(&p, soft))
            })
            .sum()
    }

    /// Bring the `holdfast_cache_*` families up to date (before a scrape).
    pub fn refresh_cache_metrics(&self) {
        for r in self.routes.iter() {
            if let Some(cache) = &r.cache {
                self.metrics.cache.refresh(&r.name, cache);
            }
        }
    }

    /// Each certificate file's names (comma-separated; `default` for the one without names)
    /// and its `notAfter`.
    pub fn certificate_expiries(&self) -> &[(String, std::time::SystemTime)] {
        &self.cert_expiry
    }

    /// Bring the `holdfast_upstream_healthy` gauges up to date (before a scrape): ejections
    /// end by the clock, not by an event.
    pub fn refresh_health_gauges(&self) {
        for pool in self.pools.iter() {
            for server in pool.servers.iter() {
                server.refresh_gauge();
                let (word, _) = server_state(server, pool.health.is_some());
                self.metrics
                    .set_server_state(&pool.name, &server.label, word);
            }
        }
    }

    /// A pool of this generation with its configuration, by name.
    fn pool_named(&self, name: &str) -> Option<(&holdfast_config::Pool, &Arc<Pool>)> {
        let i = self.config.pools.iter().position(|p| p.name == name)?;
        Some((self.config.pools.get(i)?, self.pools.get(i)?))
    }

    /// Start OCSP stapling for this generation's TLS sites (`edge.ocsp_stapling`, on by
    /// default): a background thread that ends with the generation. Not for `holdfast check`.
    pub fn start_ocsp(&self) -> std::io::Result<()> {
        match &self.tls_sites {
            Some(sites) if self.config.edge.ocsp_stapling => {
                let dir = self.config.edge.state_dir.as_ref().map(|d| d.join("ocsp"));
                sites.start_ocsp(dir, &self.metrics.ocsp)
            }
            _ => Ok(()),
        }
    }

    /// Each TLS site's OCSP staple (empty without TLS or with stapling off).
    pub fn ocsp_status(&self) -> Vec<crate::tls::OcspStatus> {
        match &self.tls_sites {
            Some(sites) if self.config.edge.ocsp_stapling => sites.ocsp_status(),
            _ => Vec::new(),
        }
    }

    /// Bring `holdfast_tls_ocsp_staple_expiry_seconds` up to date (before a scrape).
    pub fn refresh_ocsp_metrics(&self) {
        if let Some(sites) = &self.tls_sites {
            sites.refresh_ocsp_gauges(&self.metrics.ocsp);
        }
    }

    pub fn has_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// The health checker follows a generation's pools.
impl From<&Arc<State>> for CheckTargets {
    fn from(state: &Arc<State>) -> Self {
        CheckTargets::new(&state.pools)
    }
}

/// The server's state word and since when its underlying verdict holds: the checks' and
/// ejection's view (`health_view`), refined by what passive detection knows.
fn server_state(s: &Server, checked: bool) -> (&'static str, std::time::SystemTime) {
    let (view, since) = s.health_view(checked);
    let word = match view {
        "up" | "unknown" if s.is_tripped() => "failing",
        "up" if !checked && s.requests() == 0 && s.failures() == 0 => "unknown",
        other => other,
    };
    (word, since)
}

fn server_status(s: &Server, checked: bool) -> ServerStatus {
    let last = s.last_error();
    let ejected_until = s.ejected_until();
    let (health, since) = server_state(s, checked);
    ServerStatus {
        address: s.label.to_string(),
        resolved: s.addr.to_string(),
        health,
        since: rfc3339(since),
        last_check: s.health.last_check().map(|c| LastCheck {
            at: rfc3339(c.at),
            ok: c.ok,
            result: c.detail,
        }),
        ejections: s.ejections(),
        ejected_until: ejected_until.map(rfc3339),
        weight: s.weight,
        in_flight: s.in_flight(),
        requests: s.requests(),
        failures: s.failures(),
        idle_connections: s.idle_count(),
        last_error_at: last.as_ref().map(|(t, _)| rfc3339(*t)),
        last_error: last.map(|(_, e)| e),
    }
}

fn load_fallback(f: &holdfast_config::Fallback, at: &str) -> Result<FallbackRt, ConfigError> {
    let bytes = holdfast_artifact::read_bounded(&f.file, holdfast_config::MAX_FALLBACK_BYTES)
        .map_err(|e| {
            ConfigError::new(
                at,
                format!("{}: {e}", f.file.display()),
                "fix the path (relative to the config file's folder) or the file",
            )
        })?
        .content;
    Ok(FallbackRt {
        status: f.status,
        body: bytes::Bytes::from(bytes),
        content_type: f.content_type.clone(),
        retry_after: f
            .retry_after
            .map(|d| http::HeaderValue::from(d.as_secs().max(1))),
    })
}

fn resolve(addr: &ServerAddr) -> std::io::Result<SocketAddr> {
    match addr {
        ServerAddr::Ip(a) => Ok(*a),
        ServerAddr::Name { host, port } => (host.as_str(), *port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("the name has no addresses")),
    }
}

fn build_pool(
    i: usize,
    p: &holdfast_config::Pool,
    before: Option<(&holdfast_config::Pool, &Arc<Pool>)>,
    metrics: &Metrics,
    workers: usize,
    errors: &mut Vec<ConfigError>,
) -> Arc<Pool> {
    let at = format!("pools[{i}]");
    let tls = p.tls.as_ref().and_then(|t| {
        match crate::tls::client_config(t, p.http2, &format!("{at}.tls")) {
            Ok(c) => Some(UpstreamTls {
                connector: tokio_rustls::TlsConnector::from(c),
            }),
            Err(mut e) => {
                errors.append(&mut e);
                None
            }
        }
    });
    let mut servers = Vec::new();
    for (j, s) in p.servers.iter().enumerate() {
        let addr = match resolve(s) {
            Ok(a) => a,
            Err(e) => {
                errors.push(ConfigError::new(
                    format!("{at}.servers[{j}]"),
                    format!("cannot resolve {s}: {e}"),
                    "check the name, or write an IP address",
                ));
                continue;
            }
        };
        let sni = p.tls.as_ref().and_then(|t| {
            let name = match (&t.sni, s) {
                (Some(sni), _) => sni.clone(),
                (None, ServerAddr::Name { host, .. }) => host.clone(),
                (None, ServerAddr::Ip(a)) => a.ip().to_string(),
            };
            ServerName::try_from(name.clone()).ok().or_else(|| {
                errors.push(ConfigError::new(
                    format!("{at}.tls.sni"),
                    format!("{name:?} is not a valid TLS server name"),
                    "write a DNS name",
                ));
                None
            })
        });
        let label = s.to_string();
        let weight = p.weights.get(j).copied().unwrap_or(1);
        // Same server, same connection settings: keep it, with its idle connections and
        // counters, so a reload causes no reconnect storm.
        let kept = before
            .filter(|(q, _)| {
                q.tls == p.tls
                    && q.http2 == p.http2
                    && q.max_idle_per_server == p.max_idle_per_server
                    && q.idle_timeout == p.idle_timeout
            })
            .and_then(|(_, old)| {
                old.servers
                    .iter()
                    .find(|o| *o.label == *label && o.addr == addr && o.weight == weight)
            });
        if let Some(old) = kept {
            servers.push(Arc::clone(old));
            continue;
        }
        servers.push(Arc::new(Server::new(
            addr,
            Arc::from(label.as_str()),
            weight,
            sni,
            metrics.server(&p.name, &label),
            workers,
            p.max_idle_per_server,
            p.idle_timeout,
        )));
    }
    let same_budget = |q: &holdfast_config::Pool| {
        (
            q.retry.budget_percent,
            q.retry.min_per_second,
            q.retry.budget_window,
        ) == (
            p.retry.budget_percent,
            p.retry.min_per_second,
            p.retry.budget_window,
        )
    };
    let budget = match before {
        Some((q, old)) if same_budget(q) => Arc::clone(&old.budget),
        _ => Arc::new(RetryBudget::new(&p.retry)),
    };
    // Unchanged limits keep their slots: requests in flight stay counted across a reload.
    let admission = match before {
        Some((q, old)) if q.overload == p.overload => old.admission.clone(),
        _ => p.overload.as_ref().map(|o| Arc::new(Admission::new(o))),
    };
    Arc::new(Pool::new(PoolParts {
        name: Arc::from(p.name.as_str()),
        servers,
        host_header: p.host_header.clone(),
        tls,
        http2: p.http2,
        retry: p.retry.clone(),
        budget,
        metrics: metrics.pool(&p.name),
        admission,
        balancer: Balancer::new(&p.balance, &p.weights),
        outlier: p.outlier,
        panic_threshold: p.panic_threshold,
        max_connections: p.max_connections,
        retry_after: http::HeaderValue::from(p.retry_after.as_secs().max(1)),
        health: p.health.clone(),
    }))
}
