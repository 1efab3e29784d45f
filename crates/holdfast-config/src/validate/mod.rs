//! `Spec` -> `Config`: every semantic check, collecting all errors with their key paths.
//! Defaults live here too, next to the checks that bound them. Pools (`pool`) and routes
//! (`route`) have modules of their own.

use crate::config::*;
use crate::error::ConfigError;
use crate::spec::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
const DEFAULT_CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_IDLE_RELEASE_AFTER: Duration = Duration::from_secs(1);
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// `edge.max_connections` when not set.
const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_HEADER_BYTES: u64 = 32 << 10;
/// hyper's smallest read buffer; headers must fit in it.
const MIN_MAX_HEADER_BYTES: u64 = 8 << 10;
const MAX_MAX_HEADER_BYTES: u64 = 1 << 20;
const DEFAULT_MAX_HEADERS: usize = 100;
const MAX_MAX_HEADERS: usize = 1000;
const DEFAULT_MAX_REQUEST_BODY: u64 = 100 << 20;
/// nginx buffers every body (`proxy_request_buffering on`), spilling to disk past 16 KiB;
/// Holdfast keeps up to this much in memory and streams the rest (64 KiB: what
/// `retry.buffer_body` keeps too; 100,000 connections holding one each is 6.4 GB).
const DEFAULT_REQUEST_BUFFER: u64 = 64 << 10;
const MAX_THREADS: usize = 1024;

#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>, hint: &str) {
        self.0.push(ConfigError::new(path, message, hint));
    }
}

/// The names (or ids) of one kind of table: each present and unique.
struct UniqueNames<'a> {
    kind: &'static str,
    key: &'static str,
    empty_hint: &'static str,
    unique_hint: &'static str,
    seen: std::collections::HashSet<&'a str>,
}

impl<'a> UniqueNames<'a> {
    fn new(
        kind: &'static str,
        key: &'static str,
        empty_hint: &'static str,
        unique_hint: &'static str,
    ) -> Self {
        UniqueNames {
            kind,
            key,
            empty_hint,
            unique_hint,
            seen: std::collections::HashSet::new(),
        }
    }

    /// Report `name` of the table at `at` if it is empty or was seen before.
    fn check(&mut self, at: &str, name: &'a str, errs: &mut Errors) {
        let path = format!("{at}.{}", self.key);
        if name.is_empty() {
            errs.add(path, format!("empty {}", self.key), self.empty_hint);
        } else if !self.seen.insert(name) {
            errs.add(
                path,
                format!("duplicate {} {} {name:?}", self.kind, self.key),
                self.unique_hint,
            );
        }
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
    let admin_auth = admin_auth(spec.admin.as_ref(), base_dir, &mut errs);
    let mut pools = pool::pools(&spec.pools, base_dir, &mut errs);
    let routes = route::routes(&spec.routes, &spec.pools, base_dir, &mut errs);
    let modules = modules::modules(&spec.modules, base_dir, &mut errs);
    let redis = limits::redis(spec.redis.as_ref(), &mut errs);
    let limits = limits::limits(&spec.limits, &spec.routes, redis.is_some(), &mut errs);
    let ip_lists = ip_lists::ip_lists(&spec.ip_lists, base_dir, &mut errs);
    let rule_lists = ip_lists::rule_lists(&spec.rule_lists, base_dir, &mut errs);
    let list_names: Vec<&str> = spec.ip_lists.iter().map(|l| l.name.as_str()).collect();
    let rules = rules::rules(
        &spec.rules,
        &spec.routes,
        &list_names,
        &spec.limits,
        &mut errs,
    );
    modules::ja4h_readers(&rules, &modules, &mut errs);
    let challenge = challenge::challenge(spec.challenge.as_ref(), base_dir, &mut errs);
    let rules = challenge::resolve_difficulty(rules, challenge.difficulty);
    let dns = dns::dns(
        spec.dns.as_ref(),
        &spec.pools,
        &taken_addrs(&spec.edge, admin_listen),
        base_dir,
        &mut errs,
    );
    let status_page = status_page::status_page(
        spec.status_page.as_ref(),
        &spec,
        dns.as_ref(),
        &taken_addrs(&spec.edge, admin_listen),
        base_dir,
        &mut errs,
    );
    dns::default_checks(dns.as_ref(), &mut pools);
    let fleet = fleet::fleet(
        spec.fleet.as_ref(),
        spec.edge.state_dir.as_deref(),
        &mut errs,
    );
    if errs.0.is_empty() {
        Ok(Config {
            edge,
            admin,
            pools,
            routes,
            modules,
            limits,
            redis,
            rules,
            challenge,
            ip_lists,
            rule_lists,
            dns,
            fleet,
            admin_auth,
            status_page,
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
    let acme = acme::acme(spec, base_dir, errs);
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
    if spec.proxy_protocol && spec.trusted_proxies.is_empty() {
        errs.add(
            "edge.proxy_protocol",
            "a PROXY protocol header is believed only from a trusted peer, and none is listed",
            "list the load balancers that send it in edge.trusted_proxies, e.g. [\"10.0.0.0/8\"]",
        );
    }
    let (h3_listen, h3) = h3::h3(spec, errs);
    Edge {
        listen,
        tls_listen,
        tls,
        acme,
        h3_listen,
        h3,
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
        idle_release_after: spec
            .idle_release_after
            .unwrap_or(DEFAULT_IDLE_RELEASE_AFTER),
        shutdown_grace: spec.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        drain_timeout: spec.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT),
        trusted_proxies: spec
            .trusted_proxies
            .iter()
            .enumerate()
            .filter_map(|(i, text)| {
                trusted_proxy(&format!("edge.trusted_proxies[{i}]"), text, errs)
            })
            .collect(),
        client_ip_header: client_ip_header(spec.client_ip_header.as_deref(), errs),
        proxy_protocol: spec.proxy_protocol,
        max_connections: match spec.max_connections {
            None => DEFAULT_MAX_CONNECTIONS,
            Some(n) if (1..=10_000_000).contains(&n) => n as usize,
            Some(n) => {
                errs.add(
                    "edge.max_connections",
                    format!("{n} is out of range"),
                    "use 1 to 10000000 with an open-files limit (LimitNOFILE) above it, or leave it out for 100000",
                );
                DEFAULT_MAX_CONNECTIONS
            }
        },
        encoded_slashes: match spec.encoded_slashes.as_deref() {
            None | Some("refuse") => EncodedSlashes::Refuse,
            Some("keep") => EncodedSlashes::Keep,
            Some(other) => {
                errs.add(
                    "edge.encoded_slashes",
                    format!("unknown value {other:?}"),
                    "use \"refuse\" to answer 400 to %2F and %5C in paths (the default), or \"keep\" to forward them still encoded",
                );
                EncodedSlashes::Refuse
            }
        },
        client_cert_header: tls::client_cert_header(spec, errs),
        session_tickets: tls::session_tickets(spec, errs),
        ocsp_stapling: spec.ocsp_stapling.unwrap_or(true),
        state_dir: spec.state_dir.as_deref().and_then(|d| {
            if d.is_empty() {
                errs.add(
                    "edge.state_dir",
                    "empty path",
                    "name a folder Holdfast may write, e.g. \"/var/lib/holdfast\", or leave it out",
                );
                return None;
            }
            Some(base_dir.join(d))
        }),
    }
}

fn client_ip_header(text: Option<&str>, errs: &mut Errors) -> ClientIpHeader {
    match text.map(str::to_ascii_lowercase).as_deref() {
        None | Some("x-forwarded-for") => ClientIpHeader::XForwardedFor,
        Some("forwarded") => ClientIpHeader::Forwarded,
        Some(other) => {
            errs.add(
                "edge.client_ip_header",
                format!("unknown header {other:?}"),
                "use \"x-forwarded-for\" or \"forwarded\" (RFC 7239)",
            );
            ClientIpHeader::XForwardedFor
        }
    }
}

/// `"10.0.0.0/8"`, `"2001:db8::/32"`, or one address (`"192.0.2.7"`: a /32 or /128).
fn trusted_proxy(path: &str, text: &str, errs: &mut Errors) -> Option<ipnet::IpNet> {
    let parsed = text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    });
    if parsed.is_none() {
        errs.add(
            path,
            format!("invalid address or network {text:?}"),
            "write an IP address or a CIDR network, e.g. \"10.0.0.0/8\" or \"2001:db8::/32\"",
        );
    }
    parsed.map(|n| n.trunc())
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
    // More than the largest body accepted would never be used: the smaller of the two.
    let request_buffer = spec
        .request_buffer
        .map_or(DEFAULT_REQUEST_BUFFER, |b| b.0)
        .min(body);
    Limits {
        max_header_bytes: usize::try_from(header_bytes).unwrap_or(usize::MAX),
        max_headers,
        max_request_body: body,
        request_buffer,
    }
}

fn tls_certs(spec: &EdgeSpec, base_dir: &Path, errs: &mut Errors) -> Vec<TlsCert> {
    if !spec.tls_listen.is_empty() && spec.tls.is_empty() && spec.acme.is_empty() {
        errs.add(
            "edge.tls",
            "tls_listen is set but no certificate is configured",
            "add an [[edge.tls]] table with cert and key, or an [[edge.acme]] table with the domains",
        );
    }
    if spec.tls_listen.is_empty() && !spec.tls.is_empty() {
        errs.add(
            "edge.tls_listen",
            "certificates are configured but no TLS listener",
            "add tls_listen = [\"127.0.0.1:8443\"] or remove the [[edge.tls]] tables",
        );
    }
    let mut seen = HashMap::new();
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
                match seen.get(&key) {
                    Some(&first) if first == i => errs.add(
                        path,
                        format!("server name {key:?} is listed twice on this certificate"),
                        "list each name once",
                    ),
                    Some(&first) => errs.add(
                        path,
                        format!(
                            "server name {key:?} is given to two certificates (also edge.tls[{first}])"
                        ),
                        "each name may appear on one certificate only",
                    ),
                    None => {
                        seen.insert(key.clone(), i);
                    }
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
        let at = format!("edge.tls[{i}]");
        out.push(TlsCert {
            names,
            cert: base_dir.join(&t.cert),
            key: base_dir.join(&t.key),
            client_auth: tls::client_auth(&at, &t.site_keys(), base_dir, errs),
            policy: tls::policy(&at, &t.site_keys(), errs),
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

fn admin_auth(spec: Option<&AdminSpec>, base_dir: &Path, errs: &mut Errors) -> AdminAuth {
    let token_file = spec.and_then(|a| a.token_file.as_deref()).and_then(|f| {
        if f.is_empty() {
            errs.add(
                "admin.token_file",
                "empty path",
                "name a file holding the token (e.g. \"/etc/holdfast/admin.token\"), or leave it out",
            );
            return None;
        }
        Some(base_dir.join(f))
    });
    let path = |key: &str, v: Option<&String>, errs: &mut Errors| {
        let v = v?;
        if v.is_empty() {
            errs.add(
                format!("admin.{key}"),
                "empty path",
                "name a PEM file, or leave the key out",
            );
            return None;
        }
        Some(base_dir.join(v))
    };
    let cert = path("tls_cert", spec.and_then(|a| a.tls_cert.as_ref()), errs);
    let key = path("tls_key", spec.and_then(|a| a.tls_key.as_ref()), errs);
    let client_ca = path("client_ca", spec.and_then(|a| a.client_ca.as_ref()), errs);
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(AdminTls {
            cert,
            key,
            client_ca,
        }),
        (None, None) => {
            if client_ca.is_some() {
                errs.add(
                    "admin.client_ca",
                    "client certificates need TLS on the admin listener",
                    "set admin.tls_cert and admin.tls_key too",
                );
            }
            None
        }
        (Some(_), None) => {
            errs.add(
                "admin.tls_key",
                "missing: admin.tls_cert is set",
                "set both, or neither",
            );
            None
        }
        (None, Some(_)) => {
            errs.add(
                "admin.tls_cert",
                "missing: admin.tls_key is set",
                "set both, or neither",
            );
            None
        }
    };
    AdminAuth { token_file, tls }
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

/// Every TCP address already taken by a data listener or the admin plane, with its key path.
fn taken_addrs(edge: &EdgeSpec, admin: Option<SocketAddr>) -> Vec<(String, SocketAddr)> {
    let mut all: Vec<(String, SocketAddr)> = Vec::new();
    for (field, list) in [("listen", &edge.listen), ("tls_listen", &edge.tls_listen)] {
        all.extend(list.iter().enumerate().filter_map(|(i, a)| {
            Some((
                format!("the data listener edge.{field}[{i}]"),
                a.parse().ok()?,
            ))
        }));
    }
    all.extend(admin.map(|a| ("admin.listen".to_string(), a)));
    all
}

mod acme;
mod cache;
mod challenge;
mod dns;
mod fleet;
mod h3;
mod ip_lists;
mod limits;
mod rules;
mod status_page;
mod tls;
pub use rules::{check_rule_expr, check_rule_expr_with, rule_list_entries};
mod modules;
mod pool;
mod route;
