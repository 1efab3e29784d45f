//! `[[limits]]`: rate limits — unique names, a known key, positive rates, routes that
//! exist, a scope (`global` needs `[redis]`); and `[redis]` itself.

use super::pool::duration_in;
use super::{Errors, UniqueNames};
use crate::config::*;
use crate::spec::*;
use http::HeaderName;
use std::time::Duration;

const MAX_REQUESTS: u64 = 1_000_000;
const DEFAULT_MAX_KEYS: usize = 100_000;
const MAX_MAX_KEYS: u64 = 10_000_000;

const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);
const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// `[redis]`: a `redis://HOST:PORT` or `unix:///path` URL, a per-call timeout and a sync
/// interval, both bounded.
pub(super) fn redis(spec: Option<&RedisSpec>, errs: &mut Errors) -> Option<Redis> {
    let spec = spec?;
    redis_url(&spec.url, errs);
    let timeout = duration_in(
        "redis.timeout",
        spec.timeout,
        DEFAULT_REDIS_TIMEOUT,
        (
            Duration::from_millis(1),
            Duration::from_secs(5),
            "1ms to 5s: the longest one call may take before the limits fall back to local",
        ),
        errs,
    );
    let sync_interval = duration_in(
        "redis.sync_interval",
        spec.sync_interval,
        DEFAULT_SYNC_INTERVAL,
        (
            Duration::from_millis(10),
            Duration::from_secs(10),
            "10ms to 10s",
        ),
        errs,
    );
    Some(Redis {
        url: spec.url.clone(),
        timeout,
        sync_interval,
    })
}

fn redis_url(url: &str, errs: &mut Errors) {
    let hint = "write \"redis://HOST:PORT\", e.g. \"redis://127.0.0.1:6379\", or \
                \"unix:///path/to/redis.sock\"";
    if let Some(rest) = url.strip_prefix("redis://") {
        let ok = rest.rsplit_once(':').is_some_and(|(host, port)| {
            let host_ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
            host_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            errs.add("redis.url", format!("invalid Redis address {url:?}"), hint);
        }
    } else if let Some(path) = url.strip_prefix("unix://") {
        if !path.starts_with('/') || path.len() < 2 || path.contains(['?', '#']) {
            errs.add(
                "redis.url",
                format!("{url:?} does not name an absolute socket path"),
                hint,
            );
        }
    } else {
        errs.add("redis.url", format!("unsupported Redis URL {url:?}"), hint);
    }
}

pub(super) fn limits(
    specs: &[LimitSpec],
    routes: &[RouteSpec],
    have_redis: bool,
    errs: &mut Errors,
) -> Vec<Limit> {
    let mut names = UniqueNames::new(
        "limit",
        "name",
        "give the limit a name",
        "limit names must be unique: they label metrics and RateLimit headers",
    );
    specs
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let at = format!("limits[{i}]");
            names.check(&at, &l.name, errs);
            limit(&at, l, routes, have_redis, errs)
        })
        .collect()
}

fn limit(
    at: &str,
    l: &LimitSpec,
    routes: &[RouteSpec],
    have_redis: bool,
    errs: &mut Errors,
) -> Limit {
    let scope = match l.scope.as_deref() {
        None | Some("local") => LimitScope::Local,
        Some("global") => {
            if !have_redis {
                errs.add(
                    format!("{at}.scope"),
                    "a global limit needs a [redis] table",
                    "add [redis] with url = \"redis://HOST:PORT\" or \"unix:///path\", \
                     or use scope = \"local\"",
                );
            }
            LimitScope::Global
        }
        Some(other) => {
            errs.add(
                format!("{at}.scope"),
                format!("unknown scope {other:?}"),
                "use \"local\" (each instance counts on its own) or \"global\" (shared through [redis])",
            );
            LimitScope::Local
        }
    };
    let requests = count(&format!("{at}.requests"), l.requests, 1, MAX_REQUESTS, errs);
    let per = duration_in(
        &format!("{at}.per"),
        Some(l.per),
        Duration::from_secs(1),
        (
            Duration::from_millis(1),
            Duration::from_secs(24 * 3600),
            "1ms to 24h",
        ),
        errs,
    );
    let burst = l.burst.map_or(requests, |b| {
        count(&format!("{at}.burst"), b, 1, MAX_REQUESTS, errs)
    });
    let max_keys = l.max_keys.map_or(DEFAULT_MAX_KEYS, |n| {
        usize::try_from(count(&format!("{at}.max_keys"), n, 2, MAX_MAX_KEYS, errs))
            .unwrap_or(DEFAULT_MAX_KEYS)
    });
    let indices =
        super::route::route_indices(at, l.routes.as_deref(), routes, "limit every route", errs);
    if l.rules_only && l.routes.is_some() {
        errs.add(
            format!("{at}.routes"),
            "a rules_only limit is applied by rules, not by route",
            "remove routes (scope the rate_limit rule with its own routes instead)",
        );
    }
    Limit {
        name: l.name.clone(),
        key: key(&format!("{at}.key"), &l.key, errs),
        requests,
        per,
        burst,
        routes: indices,
        shadow: l.shadow,
        max_keys,
        scope,
        rules_only: l.rules_only,
    }
}

fn key(path: &str, text: &str, errs: &mut Errors) -> LimitKey {
    let hint =
        "use \"client_ip\", \"client_prefix\", \"route\", \"header:NAME\" or \"cookie:NAME\"";
    match text {
        "client_ip" => return LimitKey::ClientIp,
        "client_prefix" => return LimitKey::ClientPrefix,
        "route" => return LimitKey::Route,
        _ => {}
    }
    if let Some(name) = text.strip_prefix("header:") {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => return LimitKey::Header(h),
            Err(_) => errs.add(path, format!("invalid header name {name:?}"), hint),
        }
    } else if let Some(name) = text.strip_prefix("cookie:") {
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if ok {
            return LimitKey::Cookie(name.to_string());
        }
        errs.add(path, format!("invalid cookie name {name:?}"), hint);
    } else {
        errs.add(path, format!("unknown key {text:?}"), hint);
    }
    LimitKey::ClientIp
}

/// A count in `min..=max` as u32, reported at `path` otherwise.
fn count(path: &str, n: i64, min: u64, max: u64, errs: &mut Errors) -> u32 {
    match u64::try_from(n).ok().filter(|n| (min..=max).contains(n)) {
        Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
        None => {
            errs.add(
                path,
                format!("{n} is out of range"),
                &format!("use {min} to {max}"),
            );
            u32::try_from(min.max(1)).unwrap_or(1)
        }
    }
}
