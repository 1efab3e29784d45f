//! `[[routes]]`: matching, the failover chain, the fallback response, timeouts and header
//! changes.

use super::{host_pattern, positive, Errors, UniqueNames};
use crate::config::*;
use crate::spec::*;
use http::{HeaderName, HeaderValue};
use std::path::Path;
use std::time::Duration;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) fn routes(
    specs: &[RouteSpec],
    pools: &[PoolSpec],
    base_dir: &Path,
    errs: &mut Errors,
) -> Vec<Route> {
    if specs.is_empty() {
        errs.add(
            "routes",
            "no routes defined",
            "add a [[routes]] table with name, match and pool",
        );
    }
    let mut names = UniqueNames::new(
        "route",
        "name",
        "give the route a name",
        "route names must be unique",
    );
    specs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("routes[{i}]");
            names.check(&at, &r.name, errs);
            route(&at, r, pools, base_dir, errs)
        })
        .collect()
}

fn route(at: &str, r: &RouteSpec, pools: &[PoolSpec], base_dir: &Path, errs: &mut Errors) -> Route {
    let chain = chain(at, r, pools, errs);
    let fallback = r
        .fallback
        .as_ref()
        .map(|f| fallback(&format!("{at}.fallback"), f, base_dir, errs));
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
        pools: chain,
        fallback,
        timeouts,
        request_headers: header_ops(&format!("{at}.request_headers"), &r.request_headers, errs),
        response_headers: header_ops(&format!("{at}.response_headers"), &r.response_headers, errs),
        critical: r.critical,
        alt_svc: r.alt_svc.unwrap_or(true),
        cache: super::cache::cache(at, r.cache.as_ref(), base_dir, errs),
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

/// The failover chain: `pool = "a"` or `pools = ["a", "b"]`, as pool indices.
fn chain(at: &str, r: &RouteSpec, pools: &[PoolSpec], errs: &mut Errors) -> Vec<usize> {
    let (key, names): (&str, &[String]) = match (&r.pool, &r.pools) {
        (Some(_), Some(_)) => {
            errs.add(
                format!("{at}.pools"),
                "give either pool or pools, not both",
                "use pool = \"name\" for one pool, pools = [\"primary\", \"secondary\"] for a failover chain",
            );
            return vec![0];
        }
        (None, None) => {
            errs.add(
                format!("{at}.pool"),
                "missing pool",
                "name a pool: pool = \"...\" or pools = [\"primary\", \"secondary\"]",
            );
            return vec![0];
        }
        (Some(one), None) => ("pool", std::slice::from_ref(one)),
        (None, Some(list)) => ("pools", list),
    };
    if names.is_empty() {
        errs.add(
            format!("{at}.pools"),
            "empty failover chain",
            "list at least one pool, e.g. pools = [\"primary\", \"secondary\"]",
        );
        return vec![0];
    }
    let mut chain = Vec::new();
    for (j, name) in names.iter().enumerate() {
        let path = if key == "pool" {
            format!("{at}.pool")
        } else {
            format!("{at}.pools[{j}]")
        };
        match pools.iter().position(|p| p.name == *name) {
            Some(i) if chain.contains(&i) => errs.add(
                path,
                format!("pool {name:?} appears twice in the chain"),
                "list each pool once, in order of preference",
            ),
            Some(i) => chain.push(i),
            None => {
                let known: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
                errs.add(
                    path,
                    format!("unknown pool {name:?}"),
                    &format!("define it under [[pools]] or use one of {known:?}"),
                );
            }
        }
    }
    if chain.is_empty() {
        chain.push(0);
    }
    chain
}

fn fallback(at: &str, f: &FallbackSpec, base_dir: &Path, errs: &mut Errors) -> Fallback {
    let status = match f.status {
        None => http::StatusCode::SERVICE_UNAVAILABLE,
        Some(code) => u16::try_from(code)
            .ok()
            .filter(|c| (200..=599).contains(c))
            .and_then(|c| http::StatusCode::from_u16(c).ok())
            .unwrap_or_else(|| {
                errs.add(
                    format!("{at}.status"),
                    format!("{code} is out of range"),
                    "use a status from 200 to 599, e.g. 503",
                );
                http::StatusCode::SERVICE_UNAVAILABLE
            }),
    };
    if f.file.is_empty() {
        errs.add(
            format!("{at}.file"),
            "empty file name",
            "name the file to serve, e.g. file = \"maintenance.html\"",
        );
    }
    let file = base_dir.join(&f.file);
    let content_type = match &f.content_type {
        Some(text) => HeaderValue::from_str(text)
            .ok()
            .filter(|_| !text.is_empty())
            .unwrap_or_else(|| {
                errs.add(
                    format!("{at}.content_type"),
                    format!("invalid Content-Type {text:?}"),
                    "write a media type such as \"text/html; charset=utf-8\"",
                );
                HeaderValue::from_static("application/octet-stream")
            }),
        None => HeaderValue::from_static(content_type_for(&file)),
    };
    if let Some(d) = f.retry_after {
        super::pool::retry_after_seconds(&format!("{at}.retry_after"), d, errs);
    }
    let retry_after = f.retry_after;
    Fallback {
        status,
        file,
        content_type,
        retry_after,
    }
}

fn content_type_for(file: &Path) -> &'static str {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The `routes = [...]` of a limit or rule as route indices: each name must exist, once.
/// `everything` says what leaving the list out does, for the hint.
pub(super) fn route_indices(
    at: &str,
    names: Option<&[String]>,
    routes: &[RouteSpec],
    everything: &str,
    errs: &mut Errors,
) -> Vec<usize> {
    let mut indices = Vec::new();
    for (j, name) in names.into_iter().flatten().enumerate() {
        match routes.iter().position(|r| r.name == *name) {
            Some(i) if indices.contains(&i) => errs.add(
                format!("{at}.routes[{j}]"),
                format!("route {name:?} is listed twice"),
                "list each route once",
            ),
            Some(i) => indices.push(i),
            None => {
                let known: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
                errs.add(
                    format!("{at}.routes[{j}]"),
                    format!("unknown route {name:?}"),
                    &format!("use one of {known:?}, or leave routes out to {everything}"),
                );
            }
        }
    }
    indices
}
