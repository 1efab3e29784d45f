//! `[[limits]]`: local rate limits — unique names, a known key, positive rates, routes that
//! exist.

use super::pool::duration_in;
use super::Errors;
use crate::config::*;
use crate::spec::*;
use http::HeaderName;
use std::collections::HashSet;
use std::time::Duration;

const MAX_REQUESTS: u64 = 1_000_000;
const DEFAULT_MAX_KEYS: usize = 100_000;
const MAX_MAX_KEYS: u64 = 10_000_000;

pub(super) fn limits(specs: &[LimitSpec], routes: &[RouteSpec], errs: &mut Errors) -> Vec<Limit> {
    let mut seen = HashSet::new();
    specs
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let at = format!("limits[{i}]");
            if l.name.is_empty() {
                errs.add(format!("{at}.name"), "empty name", "give the limit a name");
            } else if !seen.insert(l.name.as_str()) {
                errs.add(
                    format!("{at}.name"),
                    format!("duplicate limit name {:?}", l.name),
                    "limit names must be unique: they label metrics and RateLimit headers",
                );
            }
            limit(&at, l, routes, errs)
        })
        .collect()
}

fn limit(at: &str, l: &LimitSpec, routes: &[RouteSpec], errs: &mut Errors) -> Limit {
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
    let mut indices = Vec::new();
    for (j, name) in l.routes.iter().flatten().enumerate() {
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
                    &format!("use one of {known:?}, or leave routes out to limit every route"),
                );
            }
        }
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
