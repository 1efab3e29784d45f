//! `[[pools]]`: servers, balancing, retries, outlier ejection, overload limits and active
//! health checks.

use super::{positive, Errors, UniqueNames};
use crate::config::*;
use crate::spec::*;
use crate::units::ByteSize;
use http::{HeaderName, HeaderValue};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_IDLE_PER_SERVER: usize = 256;
const DEFAULT_BUDGET_WINDOW: Duration = Duration::from_secs(10);
const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(25);
const DEFAULT_BUFFER_BODY: u64 = 64 << 10;
const MAX_BUFFER_BODY: u64 = 16 << 20;

pub(super) fn pools(specs: &[PoolSpec], base_dir: &Path, errs: &mut Errors) -> Vec<Pool> {
    let mut names = UniqueNames::new(
        "pool",
        "name",
        "give the pool a name",
        "pool names must be unique",
    );
    specs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let at = format!("pools[{i}]");
            names.check(&at, &p.name, errs);
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
        client_cert: super::tls::origin_client_cert(&format!("{at}.tls"), t, base_dir, errs),
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
        max_connections: p.max_connections.map(|n| {
            count(
                &format!("{at}.max_connections"),
                n,
                1,
                MAX_CONNECTIONS,
                errs,
            )
        }),
        retry_after: p.retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
        panic_threshold: in_range(
            &format!("{at}.panic_threshold"),
            p.panic_threshold,
            DEFAULT_PANIC_THRESHOLD,
            100,
            errs,
        ),
        health: p
            .health
            .as_ref()
            .map(|h| health(&format!("{at}.health"), h, errs)),
    }
}

const MAX_CONNECTIONS: u64 = 1_000_000;
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Envoy's default: below half the servers healthy, balance over all.
const DEFAULT_PANIC_THRESHOLD: u32 = 50;
const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_HEALTHY_AFTER: u32 = 2;
const DEFAULT_UNHEALTHY_AFTER: u32 = 3;
const MAX_THRESHOLD: u32 = 100;

/// A count in `min..=max`, reported at `path` otherwise.
fn count(path: &str, n: i64, min: u64, max: u64, errs: &mut Errors) -> usize {
    match u64::try_from(n).ok().filter(|n| (min..=max).contains(n)) {
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => {
            errs.add(
                path,
                format!("{n} is out of range"),
                &format!("use {min} to {max}"),
            );
            usize::try_from(min.max(1)).unwrap_or(1)
        }
    }
}

/// A duration in `min..=max`, reported at `path` otherwise.
pub(super) fn duration_in(
    path: &str,
    value: Option<Duration>,
    default: Duration,
    (min, max, range): (Duration, Duration, &str),
    errs: &mut Errors,
) -> Duration {
    let d = value.unwrap_or(default);
    if !(min..=max).contains(&d) {
        errs.add(
            path,
            format!(
                "{} is out of range",
                humantime_serde::re::humantime::format_duration(d)
            ),
            &format!("use {range}"),
        );
        return default;
    }
    d
}

fn threshold(path: &str, value: Option<i64>, default: u32, errs: &mut Errors) -> u32 {
    let n = value.map_or(u64::from(default), |v| {
        count(path, v, 1, u64::from(MAX_THRESHOLD), errs) as u64
    });
    u32::try_from(n).unwrap_or(default)
}

/// The check a pool named by a steered DNS name gets when it has none of its own.
pub(super) fn default_tcp_check() -> HealthCheck {
    HealthCheck {
        kind: CheckKind::Tcp,
        interval: DEFAULT_CHECK_INTERVAL,
        timeout: DEFAULT_CHECK_TIMEOUT,
        healthy_after: DEFAULT_HEALTHY_AFTER,
        unhealthy_after: DEFAULT_UNHEALTHY_AFTER,
    }
}

fn health(at: &str, h: &HealthSpec, errs: &mut Errors) -> HealthCheck {
    let interval = duration_in(
        &format!("{at}.interval"),
        h.interval,
        DEFAULT_CHECK_INTERVAL,
        (
            Duration::from_millis(10),
            Duration::from_secs(3600),
            "10ms to 1h",
        ),
        errs,
    );
    let timeout = duration_in(
        &format!("{at}.timeout"),
        h.timeout,
        DEFAULT_CHECK_TIMEOUT,
        (
            Duration::from_millis(1),
            Duration::from_secs(60),
            "1ms to 60s",
        ),
        errs,
    );
    let kind = match h.kind.as_deref().unwrap_or("http") {
        "http" => http_check(at, h, errs),
        "tcp" => {
            for (key, given) in [
                ("path", h.path.is_some()),
                ("expect", h.expect.is_some()),
                ("host", h.host.is_some()),
            ] {
                if given {
                    errs.add(
                        format!("{at}.{key}"),
                        format!("{key} applies to HTTP checks only"),
                        "remove it, or set kind = \"http\"",
                    );
                }
            }
            CheckKind::Tcp
        }
        other => {
            errs.add(
                format!("{at}.kind"),
                format!("unknown check kind {other:?}"),
                "use \"http\" or \"tcp\"",
            );
            CheckKind::Tcp
        }
    };
    HealthCheck {
        kind,
        interval,
        timeout,
        healthy_after: threshold(
            &format!("{at}.healthy_after"),
            h.healthy_after,
            DEFAULT_HEALTHY_AFTER,
            errs,
        ),
        unhealthy_after: threshold(
            &format!("{at}.unhealthy_after"),
            h.unhealthy_after,
            DEFAULT_UNHEALTHY_AFTER,
            errs,
        ),
    }
}

fn http_check(at: &str, h: &HealthSpec, errs: &mut Errors) -> CheckKind {
    let path = h.path.clone().unwrap_or_else(|| "/".into());
    if !path.starts_with('/') || http::uri::PathAndQuery::try_from(path.as_str()).is_err() {
        errs.add(
            format!("{at}.path"),
            format!("invalid check path {path:?}"),
            "write an absolute path such as \"/healthz\"",
        );
    }
    let expect = match h.expect.as_deref() {
        None => (200, 399),
        Some(text) => status_range(text).unwrap_or_else(|| {
            errs.add(
                format!("{at}.expect"),
                format!("invalid status range {text:?}"),
                "write a status \"200\" or a range \"200-399\" (100 to 599)",
            );
            (200, 399)
        }),
    };
    let host = h.host.as_ref().and_then(|text| {
        let v = HeaderValue::from_str(text)
            .ok()
            .filter(|_| !text.is_empty());
        if v.is_none() {
            errs.add(
                format!("{at}.host"),
                format!("invalid Host value {text:?}"),
                "write a host name, optionally with a port",
            );
        }
        v
    });
    CheckKind::Http { path, expect, host }
}

/// `"200"` or `"200-399"`, within 100..=599.
fn status_range(text: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (lo.trim().parse().ok()?, hi.trim().parse().ok()?),
        None => {
            let s = text.trim().parse().ok()?;
            (s, s)
        }
    };
    ((100..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some((lo, hi))
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
    let retry_after = p.retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
    retry_after_seconds(&format!("{at}.retry_after"), retry_after, errs);
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

pub(super) fn in_range(
    path: &str,
    value: Option<i64>,
    default: u32,
    max: u32,
    errs: &mut Errors,
) -> u32 {
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
        buffer_body: match spec.buffer_body {
            None => DEFAULT_BUFFER_BODY,
            Some(ByteSize(n)) if n <= MAX_BUFFER_BODY => n,
            Some(ByteSize(n)) => {
                errs.add(
                    format!("{at}.buffer_body"),
                    format!("{n} bytes is more than the 16MiB allowed"),
                    "buffer at most 16MiB per request; larger bodies are streamed and not retried",
                );
                DEFAULT_BUFFER_BODY
            }
        },
    }
}

pub(super) fn server_addr(path: &str, text: &str, errs: &mut Errors) -> Option<ServerAddr> {
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

/// A `Retry-After` value: whole seconds from 1s to 1h.
pub(super) fn retry_after_seconds(path: &str, d: Duration, errs: &mut Errors) {
    let whole = d.subsec_nanos() == 0;
    if !whole || !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&d) {
        errs.add(
            path,
            "must be whole seconds from 1s to 1h",
            "it is sent as Retry-After in seconds, e.g. \"1s\" or \"30s\"",
        );
    }
}
