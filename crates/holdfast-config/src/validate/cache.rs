//! `routes[].cache`: the shared cache's sizes, stale ceiling, lock timeout, targeted field
//! and key.

use super::Errors;
use crate::config::{CacheConfig, CacheDisk, CacheKey, QueryKey};
use crate::spec::CacheSpec;
use http::HeaderName;
use std::path::Path;
use std::time::Duration;

const DEFAULT_MEMORY: u64 = 64 << 20;
const DEFAULT_MAX_OBJECT: u64 = 8 << 20;
const DEFAULT_DISK: u64 = 1 << 30;
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn cache(
    at: &str,
    spec: Option<&CacheSpec>,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<CacheConfig> {
    let spec = spec?;
    let at = format!("{at}.cache");
    let memory = spec.memory.map_or(DEFAULT_MEMORY, |b| b.0);
    if memory == 0 {
        errs.add(
            format!("{at}.memory"),
            "must be greater than zero",
            "write a size such as \"64MiB\", or set enabled = false",
        );
    }
    let max_object_size = spec
        .max_object_size
        .map_or(DEFAULT_MAX_OBJECT.min(memory), |b| b.0);
    if max_object_size > memory {
        errs.add(
            format!("{at}.max_object_size"),
            format!("{max_object_size} bytes is more than cache.memory ({memory} bytes)"),
            "lower max_object_size or raise memory",
        );
    }
    let lock_timeout = match spec.lock_timeout {
        Some(d) if d.is_zero() => {
            errs.add(
                format!("{at}.lock_timeout"),
                "must be greater than zero",
                "write a duration such as \"5s\"",
            );
            DEFAULT_LOCK_TIMEOUT
        }
        Some(d) => d,
        None => DEFAULT_LOCK_TIMEOUT,
    };
    let targeted_field = spec.targeted_field.as_ref().and_then(|n| {
        let name = HeaderName::from_bytes(n.as_bytes()).ok();
        if name.is_none() {
            errs.add(
                format!("{at}.targeted_field"),
                format!("invalid header name {n:?}"),
                "use a field name such as \"Holdfast-Cache-Control\"",
            );
        }
        name
    });
    let key = key(&at, spec, errs);
    let disk = spec.disk.as_ref().and_then(|d| {
        if d.path.is_empty() {
            errs.add(
                format!("{at}.disk.path"),
                "must not be empty",
                "name a folder for the disk tier, e.g. \"/var/cache/holdfast\"",
            );
            return None;
        }
        let size = d.size.map_or(DEFAULT_DISK, |b| b.0);
        if size < max_object_size {
            errs.add(
                format!("{at}.disk.size"),
                format!("{size} bytes is less than max_object_size ({max_object_size} bytes)"),
                "raise disk.size or lower max_object_size",
            );
        }
        Some(CacheDisk {
            path: base_dir.join(&d.path),
            size,
        })
    });
    if spec.enabled != Some(true) {
        return None;
    }
    Some(CacheConfig {
        memory,
        max_object_size,
        heuristic: spec.heuristic.unwrap_or(true),
        serve_stale_on_error: spec.serve_stale_on_error.unwrap_or_default(),
        lock_timeout,
        targeted_field,
        key,
        disk,
    })
}

fn key(at: &str, spec: &CacheSpec, errs: &mut Errors) -> CacheKey {
    let k = &spec.key;
    if k.host == Some(false) {
        errs.add(
            format!("{at}.key.host"),
            "a cache key without the host lets one site's response answer another's",
            "remove `host = false`: the host (and the scheme) are always part of the key",
        );
    }
    let query = match k.query.as_deref() {
        None | Some("sorted") => QueryKey::Sorted,
        Some("as_sent") => QueryKey::AsSent,
        Some("ignore") => QueryKey::Ignore,
        Some(other) => {
            errs.add(
                format!("{at}.key.query"),
                format!("unknown query mode {other:?}"),
                "use \"sorted\", \"as_sent\" or \"ignore\"",
            );
            QueryKey::Sorted
        }
    };
    let headers = k
        .headers
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let name = HeaderName::from_bytes(n.as_bytes()).ok();
            if name.is_none() {
                errs.add(
                    format!("{at}.key.headers[{i}]"),
                    format!("invalid header name {n:?}"),
                    "use letters, digits and '-' only",
                );
            }
            name
        })
        .collect();
    CacheKey {
        host: true,
        query,
        ignore_query: k.ignore_query.clone(),
        headers,
    }
}
