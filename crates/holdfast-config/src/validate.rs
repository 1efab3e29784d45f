//! `Spec` -> `Config`: every semantic check, collecting all errors with their key paths.
//! Defaults live here too, next to the checks that bound them.

use crate::config::*;
use crate::error::ConfigError;
use crate::spec::*;
use http::{HeaderName, HeaderValue};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_IDLE_PER_SERVER: usize = 256;
const DEFAULT_MAX_HEADER_BYTES: u64 = 32 << 10;
/// hyper's smallest read buffer; headers must fit in it.
const MIN_MAX_HEADER_BYTES: u64 = 8 << 10;
const MAX_MAX_HEADER_BYTES: u64 = 1 << 20;
const DEFAULT_MAX_HEADERS: usize = 100;
const MAX_MAX_HEADERS: usize = 1000;
const DEFAULT_MAX_REQUEST_BODY: u64 = 100 << 20;
const MAX_THREADS: usize = 1024;
const DEFAULT_BUDGET_WINDOW: Duration = Duration::from_secs(10);
const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(25);

#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>, hint: &str) {
        self.0.push(ConfigError::new(path, message, hint));
    }
}

pub fn validate(spec: Spec, base_dir: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut errs = Errors::default();
    let edge = edge(&spec.edge, base_dir, &mut errs);
    let admin_listen = admin_listen(spec.admin.as_ref(), &mut errs);
    check_listener_overlap(&spec.edge, admin_listen, &mut errs);
    let admin = Admin {
        listen: admin_listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9901))),
    };
    let pools = pools(&spec.pools, base_dir, &mut errs);
    let routes = routes(&spec.routes, &spec.pools, &mut errs);
    if errs.0.is_empty() {
        Ok(Config {
            edge,
            admin,
            pools,
            routes,
        })
    } else {
        Err(errs.0)
    }
}

fn listen_addr(path: &str, text: &str, errs: &mut Errors) -> Option<SocketAddr> {
    match text.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.add(
                path,
                format!("invalid listen address {text:?}"),
                "write an IP address and port, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\"",
            );
            None
        }
    }
}

fn positive(path: &str, d: Option<Duration>, default: Duration, errs: &mut Errors) -> Duration {
    match d {
        Some(d) if d.is_zero() => {
            errs.add(
                path,
                "must be greater than zero",
                "write a duration such as \"5s\" or \"250ms\"",
            );
            default
        }
        Some(d) => d,
        None => default,
    }
}

fn edge(spec: &EdgeSpec, base_dir: &Path, errs: &mut Errors) -> Edge {
    let listen: Vec<SocketAddr> = spec
        .listen
        .iter()
        .enumerate()
        .filter_map(|(i, a)| listen_addr(&format!("edge.listen[{i}]"), a, errs))
        .collect();
    let tls_listen: Vec<SocketAddr> = spec
        .tls_listen
        .iter()
        .enumerate()
        .filter_map(|(i, a)| listen_addr(&format!("edge.tls_listen[{i}]"), a, errs))
        .collect();
    if spec.listen.is_empty() && spec.tls_listen.is_empty() {
        errs.add(
            "edge.listen",
            "no listener configured",
            "add at least one address, e.g. listen = [\"127.0.0.1:8080\"]",
        );
    }
    let tls = tls_certs(spec, base_dir, errs);
    let threads = match spec.threads {
        None => None,
        Some(n) if n >= 1 && n as u64 <= MAX_THREADS as u64 => usize::try_from(n).ok(),
        Some(n) => {
            errs.add(
                "edge.threads",
                format!("{n} is out of range"),
                "use 1 to 1024, or leave it out for one worker per core",
            );
            None
        }
    };
    let access_log = match spec.access_log.as_deref() {
        None | Some("stdout") => AccessLog::Stdout,
        Some("off") => AccessLog::Off,
        Some("") => {
            errs.add(
                "edge.access_log",
                "empty path",
                "use \"stdout\", \"off\" or a file path",
            );
            AccessLog::Off
        }
        Some(p) => AccessLog::File(base_dir.join(p)),
    };
    let limits = limits(spec, errs);
    Edge {
        listen,
        tls_listen,
        tls,
        threads,
        h2c: spec.h2c,
        forwarded: spec.forwarded,
        access_log,
        limits,
        client_header_timeout: positive(
            "edge.client_header_timeout",
            spec.client_header_timeout,
            DEFAULT_CLIENT_HEADER_TIMEOUT,
            errs,
        ),
        shutdown_grace: spec.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE),
    }
}

fn limits(spec: &EdgeSpec, errs: &mut Errors) -> Limits {
    let header_bytes = spec
        .max_header_bytes
        .map_or(DEFAULT_MAX_HEADER_BYTES, |b| b.0);
    if !(MIN_MAX_HEADER_BYTES..=MAX_MAX_HEADER_BYTES).contains(&header_bytes) {
        errs.add(
            "edge.max_header_bytes",
            format!("{header_bytes} bytes is out of range"),
            "use 8KiB to 1MiB",
        );
    }
    let max_headers = match spec.max_headers {
        None => DEFAULT_MAX_HEADERS,
        Some(n) if n >= 1 && n as u64 <= MAX_MAX_HEADERS as u64 => {
            usize::try_from(n).unwrap_or(DEFAULT_MAX_HEADERS)
        }
        Some(n) => {
            errs.add(
                "edge.max_headers",
                format!("{n} is out of range"),
                "use 1 to 1000",
            );
            DEFAULT_MAX_HEADERS
        }
    };
    let body = spec
        .max_request_body
        .map_or(DEFAULT_MAX_REQUEST_BODY, |b| b.0);
    if body == 0 {
        errs.add(
            "edge.max_request_body",
            "must be greater than zero",
            "write a size such as \"10MiB\"",
        );
    }
    Limits {
        max_header_bytes: usize::try_from(header_bytes).unwrap_or(usize::MAX),
        max_headers,
        max_request_body: body,
    }
}

fn tls_certs(spec: &EdgeSpec, base_dir: &Path, errs: &mut Errors) -> Vec<TlsCert> {
    if !spec.tls_listen.is_empty() && spec.tls.is_empty() {
        errs.add(
            "edge.tls",
            "tls_listen is set but no certificate is configured",
            "add an [[edge.tls]] table with cert and key",
        );
    }
    if spec.tls_listen.is_empty() && !spec.tls.is_empty() {
        errs.add(
            "edge.tls_listen",
            "certificates are configured but no TLS listener",
            "add tls_listen = [\"127.0.0.1:8443\"] or remove the [[edge.tls]] tables",
        );
    }
    let mut seen = HashSet::new();
    let mut defaults = 0;
    let mut out = Vec::new();
    for (i, t) in spec.tls.iter().enumerate() {
        if t.names.is_empty() {
            defaults += 1;
            if defaults == 2 {
                errs.add(
                    format!("edge.tls[{i}].names"),
                    "a second default certificate (no names)",
                    "give this certificate its server names",
                );
            }
        }
        let mut names = Vec::new();
        for (j, n) in t.names.iter().enumerate() {
            let path = format!("edge.tls[{i}].names[{j}]");
            if let Some(n) = host_pattern(&path, n, errs) {
                let key = n.to_string();
                if !seen.insert(key.clone()) {
                    errs.add(
                        path,
                        format!("server name {key:?} is given to two certificates"),
                        "each name may appear on one certificate only",
                    );
                }
                names.push(key);
            }
        }
        for (field, v) in [("cert", &t.cert), ("key", &t.key)] {
            if v.is_empty() {
                errs.add(
                    format!("edge.tls[{i}].{field}"),
                    "empty path",
                    "give the path of a PEM file",
                );
            }
        }
        out.push(TlsCert {
            names,
            cert: base_dir.join(&t.cert),
            key: base_dir.join(&t.key),
        });
    }
    out
}

/// A host name or `*.suffix` pattern, lower-cased; `None` (and an error) if malformed.
fn host_pattern<'a>(path: &str, text: &'a str, errs: &mut Errors) -> Option<HostPattern<'a>> {
    let (wild, name) = match text.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if valid {
        Some(HostPattern { wild, name })
    } else {
        errs.add(
            path,
            format!("invalid host name {text:?}"),
            "write a DNS name such as \"example.com\" or \"*.example.com\" (no port, no scheme)",
        );
        None
    }
}

struct HostPattern<'a> {
    wild: bool,
    name: &'a str,
}

impl std::fmt::Display for HostPattern<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.name.to_ascii_lowercase();
        if self.wild {
            write!(f, "*.{name}")
        } else {
            f.write_str(&name)
        }
    }
}

fn admin_listen(spec: Option<&AdminSpec>, errs: &mut Errors) -> Option<SocketAddr> {
    let text = spec.map_or(DEFAULT_ADMIN_LISTEN, |a| a.listen.as_str());
    listen_addr("admin.listen", text, errs)
}

fn overlaps(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Paths name the entries as written: addresses that do not parse (already reported) are
/// skipped without shifting the indices of the others. `admin` is `None` if it did not parse.
fn check_listener_overlap(edge: &EdgeSpec, admin: Option<SocketAddr>, errs: &mut Errors) {
    fn parsed(field: &str, list: &[String]) -> Vec<(String, SocketAddr)> {
        list.iter()
            .enumerate()
            .filter_map(|(i, a)| Some((format!("edge.{field}[{i}]"), a.parse().ok()?)))
            .collect()
    }
    let mut all = parsed("listen", &edge.listen);
    all.extend(parsed("tls_listen", &edge.tls_listen));
    for (i, (path, addr)) in all.iter().enumerate() {
        if let Some(admin) = admin.filter(|a| overlaps(addr, a)) {
            errs.add(
                "admin.listen",
                format!("{admin} is also the data listener {path}"),
                "the admin plane must have its own address: change admin.listen",
            );
        }
        if let Some((first, _)) = all.iter().take(i).find(|(_, b)| overlaps(addr, b)) {
            errs.add(
                path.clone(),
                format!("{addr} is already used by {first}"),
                "list each listen address once",
            );
        }
    }
}

fn pools(specs: &[PoolSpec], base_dir: &Path, errs: &mut Errors) -> Vec<Pool> {
    let mut seen = HashSet::new();
    specs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let at = format!("pools[{i}]");
            if p.name.is_empty() {
                errs.add(format!("{at}.name"), "empty name", "give the pool a name");
            } else if !seen.insert(p.name.as_str()) {
                errs.add(
                    format!("{at}.name"),
                    format!("duplicate pool name {:?}", p.name),
                    "pool names must be unique",
                );
            }
            pool(&at, p, base_dir, errs)
        })
        .collect()
}

fn pool(at: &str, p: &PoolSpec, base_dir: &Path, errs: &mut Errors) -> Pool {
    if p.servers.is_empty() {
        errs.add(
            format!("{at}.servers"),
            format!("pool {:?} has no servers", p.name),
            "list at least one origin, e.g. servers = [\"127.0.0.1:9000\"]",
        );
    }
    let mut servers = Vec::new();
    let mut weights = Vec::new();
    for (j, s) in p.servers.iter().enumerate() {
        let Some(addr) = server_addr(&format!("{at}.servers[{j}]"), s.address(), errs) else {
            continue;
        };
        servers.push(addr);
        let weight = match s.weight() {
            None => 1,
            Some(w) => match u32::try_from(w)
                .ok()
                .filter(|w| (1..=MAX_WEIGHT).contains(w))
            {
                Some(w) => w,
                None => {
                    errs.add(
                        format!("{at}.servers[{j}].weight"),
                        format!("{w} is out of range"),
                        "use 1 to 1000",
                    );
                    1
                }
            },
        };
        weights.push(weight);
    }
    let balance = balance(at, p, errs);
    let host_header = p.host_header.as_ref().and_then(|h| {
        let v = HeaderValue::from_str(h).ok().filter(|_| !h.is_empty());
        if v.is_none() {
            errs.add(
                format!("{at}.host_header"),
                format!("invalid Host value {h:?}"),
                "write a host name, optionally with a port",
            );
        }
        v
    });
    let max_idle_per_server = match p.max_idle_per_server {
        None => DEFAULT_MAX_IDLE_PER_SERVER,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| *n <= 65_536)
            .unwrap_or_else(|| {
                errs.add(
                    format!("{at}.max_idle_per_server"),
                    format!("{n} is out of range"),
                    "use 0 to 65536",
                );
                DEFAULT_MAX_IDLE_PER_SERVER
            }),
    };
    let tls = p.tls.as_ref().map(|t| UpstreamTls {
        sni: t.sni.clone(),
        ca_file: t.ca_file.as_ref().map(|f| base_dir.join(f)),
        verify: t.verify,
    });
    Pool {
        name: p.name.clone(),
        servers,
        weights,
        balance,
        host_header,
        http2: p.http2,
        tls,
        max_idle_per_server,
        idle_timeout: positive(
            &format!("{at}.idle_timeout"),
            p.idle_timeout,
            DEFAULT_IDLE_TIMEOUT,
            errs,
        ),
        retry: retry(&format!("{at}.retry"), &p.retry, errs),
        overload: overload(at, p, errs),
        outlier: outlier(&format!("{at}.outlier"), &p.outlier, errs),
    }
}

fn outlier(at: &str, spec: &OutlierSpec, errs: &mut Errors) -> Outlier {
    let base = spec.base_ejection.unwrap_or(Duration::from_secs(30));
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&base) {
        errs.add(
            format!("{at}.base_ejection"),
            "out of range",
            "use 1s to 1h",
        );
    }
    let max = spec
        .max_ejection
        .unwrap_or(Duration::from_secs(300).max(base));
    if max < base {
        errs.add(
            format!("{at}.max_ejection"),
            "shorter than base_ejection",
            "make max_ejection at least as long as base_ejection",
        );
    } else if max > Duration::from_secs(24 * 3600) {
        errs.add(
            format!("{at}.max_ejection"),
            "out of range",
            "use at most 24h",
        );
    }
    Outlier {
        consecutive_failures: in_range(
            &format!("{at}.consecutive_failures"),
            spec.consecutive_failures,
            5,
            1000,
            errs,
        ),
        base_ejection: base,
        max_ejection: max,
        max_ejection_percent: in_range(
            &format!("{at}.max_ejection_percent"),
            spec.max_ejection_percent,
            50,
            100,
            errs,
        ),
    }
}

const MAX_ADMISSION: u64 = 1_000_000;
const MAX_WEIGHT: u32 = 1000;

fn balance(at: &str, p: &PoolSpec, errs: &mut Errors) -> Balance {
    let hash_key = p.hash_key.as_deref().map(|k| {
        let key = match k {
            "client_ip" => Some(HashKey::ClientIp),
            "path" => Some(HashKey::Path),
            "host" => Some(HashKey::Host),
            other => other
                .strip_prefix("header:")
                .and_then(|h| HeaderName::from_bytes(h.trim().as_bytes()).ok())
                .map(HashKey::Header),
        };
        if key.is_none() {
            errs.add(
                format!("{at}.hash_key"),
                format!("unknown hash key {k:?}"),
                "use \"client_ip\", \"path\", \"host\" or \"header:<name>\"",
            );
        }
        key
    });
    match p.balance.as_deref() {
        None | Some("round_robin") | Some("least_request") if hash_key.is_some() => {
            errs.add(
                format!("{at}.hash_key"),
                "set without balance = \"hash\"",
                "remove it, or set balance = \"hash\"",
            );
            Balance::RoundRobin
        }
        None | Some("round_robin") => Balance::RoundRobin,
        Some("least_request") => Balance::LeastRequest,
        Some("hash") => match hash_key {
            Some(Some(key)) => Balance::Hash(key),
            Some(None) => Balance::RoundRobin,
            None => {
                errs.add(
                    format!("{at}.hash_key"),
                    "required with balance = \"hash\"",
                    "set hash_key = \"client_ip\", \"path\", \"host\" or \"header:<name>\"",
                );
                Balance::RoundRobin
            }
        },
        Some(other) => {
            errs.add(
                format!("{at}.balance"),
                format!("unknown balance {other:?}"),
                "use \"round_robin\", \"least_request\" or \"hash\"",
            );
            Balance::RoundRobin
        }
    }
}

fn overload(at: &str, p: &PoolSpec, errs: &mut Errors) -> Option<Overload> {
    let count = |key: &str, v: i64, min: u64, errs: &mut Errors| -> usize {
        match u64::try_from(v)
            .ok()
            .filter(|v| (min..=MAX_ADMISSION).contains(v))
        {
            Some(v) => usize::try_from(v).unwrap_or(usize::MAX),
            None => {
                errs.add(
                    format!("{at}.{key}"),
                    format!("{v} is out of range"),
                    &format!("use {min} to {MAX_ADMISSION}"),
                );
                0
            }
        }
    };
    let retry_after = p.retry_after.unwrap_or(Duration::from_secs(1));
    let whole = retry_after.subsec_nanos() == 0;
    if !whole || !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&retry_after) {
        errs.add(
            format!("{at}.retry_after"),
            "must be whole seconds from 1s to 1h",
            "it is sent as Retry-After in seconds, e.g. \"1s\" or \"30s\"",
        );
    }
    let Some(max_concurrent) = p.max_concurrent else {
        if p.max_queued.is_some() {
            errs.add(
                format!("{at}.max_queued"),
                "set without max_concurrent",
                "a queue only forms behind a concurrency limit: set max_concurrent too",
            );
        }
        return None;
    };
    Some(Overload {
        max_concurrent: count("max_concurrent", max_concurrent, 1, errs),
        max_queued: p.max_queued.map_or(0, |q| count("max_queued", q, 0, errs)),
        retry_after,
    })
}

fn in_range(path: &str, value: Option<i64>, default: u32, max: u32, errs: &mut Errors) -> u32 {
    match value {
        None => default,
        Some(v) => match u32::try_from(v).ok().filter(|v| *v <= max) {
            Some(v) => v,
            None => {
                errs.add(
                    path,
                    format!("{v} is out of range"),
                    &format!("use 0 to {max}"),
                );
                default
            }
        },
    }
}

fn retry_on(at: &str, names: Option<&[String]>, errs: &mut Errors) -> RetryOn {
    let Some(names) = names else {
        return RetryOn {
            connect: true,
            reset: true,
            ..RetryOn::default()
        };
    };
    let mut on = RetryOn::default();
    for (i, name) in names.iter().enumerate() {
        match name.as_str() {
            "connect" => on.connect = true,
            "reset" => on.reset = true,
            "timeout" => on.timeout = true,
            code => match code.parse::<u16>() {
                Ok(c) if (500..=599).contains(&c) => {
                    if !on.statuses.contains(&c) {
                        on.statuses.push(c);
                    }
                }
                _ => errs.add(
                    format!("{at}.on[{i}]"),
                    format!("unknown retry condition {name:?}"),
                    "use \"connect\", \"reset\", \"timeout\" or a status code \"500\" to \"599\"",
                ),
            },
        }
    }
    on
}

fn retry(at: &str, spec: &RetrySpec, errs: &mut Errors) -> RetryPolicy {
    let window = spec.budget_window.unwrap_or(DEFAULT_BUDGET_WINDOW);
    if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&window) {
        errs.add(
            format!("{at}.budget_window"),
            format!(
                "{} is out of range",
                humantime_serde::re::humantime::format_duration(window)
            ),
            "use 1s to 60s",
        );
    }
    let backoff = positive(
        &format!("{at}.backoff"),
        spec.backoff,
        DEFAULT_RETRY_BACKOFF,
        errs,
    );
    if backoff > Duration::from_secs(10) {
        errs.add(
            format!("{at}.backoff"),
            "longer than 10s",
            "a retry that waits longer than that is no help to the client: use at most 10s",
        );
    }
    RetryPolicy {
        attempts: in_range(&format!("{at}.attempts"), spec.attempts, 1, 10, errs),
        on: retry_on(at, spec.on.as_deref(), errs),
        non_idempotent: spec.non_idempotent,
        budget_percent: in_range(
            &format!("{at}.budget_percent"),
            spec.budget_percent,
            20,
            100,
            errs,
        ),
        min_per_second: in_range(
            &format!("{at}.min_per_second"),
            spec.min_per_second,
            10,
            10_000,
            errs,
        ),
        budget_window: window,
        backoff,
    }
}

fn server_addr(path: &str, text: &str, errs: &mut Errors) -> Option<ServerAddr> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        if a.port() != 0 {
            return Some(ServerAddr::Ip(a));
        }
    }
    let parsed = text.rsplit_once(':').and_then(|(host, port)| {
        let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
        let ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        ok.then(|| ServerAddr::Name {
            host: host.to_ascii_lowercase(),
            port,
        })
    });
    if parsed.is_none() {
        errs.add(
            path,
            format!("invalid server address {text:?}"),
            "write host:port, e.g. \"127.0.0.1:9000\" or \"origin.internal:443\" (port 1-65535)",
        );
    }
    parsed
}

fn routes(specs: &[RouteSpec], pools: &[PoolSpec], errs: &mut Errors) -> Vec<Route> {
    if specs.is_empty() {
        errs.add(
            "routes",
            "no routes defined",
            "add a [[routes]] table with name, match and pool",
        );
    }
    let mut seen = HashSet::new();
    specs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("routes[{i}]");
            if r.name.is_empty() {
                errs.add(format!("{at}.name"), "empty name", "give the route a name");
            } else if !seen.insert(r.name.as_str()) {
                errs.add(
                    format!("{at}.name"),
                    format!("duplicate route name {:?}", r.name),
                    "route names must be unique",
                );
            }
            route(&at, r, pools, errs)
        })
        .collect()
}

fn route(at: &str, r: &RouteSpec, pools: &[PoolSpec], errs: &mut Errors) -> Route {
    let pool = pools
        .iter()
        .position(|p| p.name == r.pool)
        .unwrap_or_else(|| {
            let known: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
            errs.add(
                format!("{at}.pool"),
                format!("unknown pool {:?}", r.pool),
                &format!("define it under [[pools]] or use one of {known:?}"),
            );
            0
        });
    let path_prefix = r.matcher.path_prefix.clone().unwrap_or_else(|| "/".into());
    if !path_prefix.starts_with('/') {
        errs.add(
            format!("{at}.match.path_prefix"),
            format!("{path_prefix:?} does not start with '/'"),
            "write an absolute path prefix such as \"/api/\"",
        );
    }
    let hosts = r
        .matcher
        .host
        .as_ref()
        .map_or(&[][..], |h| h.as_slice())
        .iter()
        .enumerate()
        .filter_map(|(j, h)| {
            let p = host_pattern(&format!("{at}.match.host[{j}]"), h, errs)?;
            let name = p.name.to_ascii_lowercase();
            Some(if p.wild {
                HostMatch::Suffix(format!(".{name}"))
            } else {
                HostMatch::Exact(name)
            })
        })
        .collect();
    let t = &r.timeouts;
    let timeouts = Timeouts {
        connect: positive(
            &format!("{at}.timeouts.connect"),
            t.connect,
            DEFAULT_CONNECT_TIMEOUT,
            errs,
        ),
        read: positive(
            &format!("{at}.timeouts.read"),
            t.read,
            DEFAULT_READ_TIMEOUT,
            errs,
        ),
        total: t
            .total
            .map(|d| positive(&format!("{at}.timeouts.total"), Some(d), d, errs)),
    };
    Route {
        name: r.name.clone(),
        hosts,
        path_prefix,
        pool,
        timeouts,
        request_headers: header_ops(&format!("{at}.request_headers"), &r.request_headers, errs),
        response_headers: header_ops(&format!("{at}.response_headers"), &r.response_headers, errs),
    }
}

fn header_name(path: &str, n: &str, errs: &mut Errors) -> Option<HeaderName> {
    let parsed = HeaderName::from_bytes(n.as_bytes()).ok();
    if parsed.is_none() {
        errs.add(
            path,
            format!("invalid header name {n:?}"),
            "use letters, digits and '-' only",
        );
    }
    parsed
}

fn header_pairs(
    at: &str,
    map: &std::collections::BTreeMap<String, String>,
    errs: &mut Errors,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for (n, v) in map {
        let path = format!("{at}.{n}");
        let Some(name) = header_name(&path, n, errs) else {
            continue;
        };
        match HeaderValue::from_str(v) {
            Ok(v) => out.push((name, v)),
            Err(_) => errs.add(
                path,
                format!("invalid header value {v:?}"),
                "use visible ASCII characters only (no line breaks)",
            ),
        }
    }
    out
}

fn header_ops(at: &str, spec: &HeaderOpsSpec, errs: &mut Errors) -> HeaderOps {
    let remove = spec
        .remove
        .iter()
        .enumerate()
        .filter_map(|(i, n)| header_name(&format!("{at}.remove[{i}]"), n, errs))
        .collect();
    HeaderOps {
        remove,
        set: header_pairs(&format!("{at}.set"), &spec.set, errs),
        add: header_pairs(&format!("{at}.add"), &spec.add, errs),
    }
}
