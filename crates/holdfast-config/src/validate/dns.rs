//! `[dns]`: the listener, `[[dns.zones]]` and `[[dns.steered]]`. A steered name must sit in
//! a configured zone and name known pools; pools it names get a TCP health check when they
//! have none of their own (`default_checks`), so the DNS answer always rests on checks.

use super::pool::default_tcp_check;
use super::{listen_addr, overlaps, Errors};
use crate::config::*;
use crate::spec::*;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const DEFAULT_TTL: u32 = 60;
/// RFC 2181 allows 2^31 - 1; a steered answer cached for a week defeats steering anyway.
const MAX_TTL: u32 = 7 * 24 * 3600;
const DEFAULT_FAILOVER_TTL: u32 = 10;
const DEFAULT_HOLD_DOWN: Duration = Duration::from_secs(30);
const DEFAULT_MAX_SHRINK_PERCENT: u32 = 50;
const MAX_WEIGHT: u32 = 1000;
const DEFAULT_PEER_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_millis(500);

pub(super) fn dns(
    spec: Option<&DnsSpec>,
    pools: &[PoolSpec],
    taken: &[(String, SocketAddr)],
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<Dns> {
    let spec = spec?;
    let listen = listen_addr("dns.listen", &spec.listen, errs);
    if let Some(addr) = listen {
        if let Some((path, _)) = taken.iter().find(|(_, b)| overlaps(&addr, b)) {
            errs.add(
                "dns.listen",
                format!("{addr} is also {path}"),
                "give the DNS server an address of its own",
            );
        }
    }
    let zones = zones(&spec.zones, base_dir, errs);
    let mut seen = HashSet::new();
    let steered = spec
        .steered
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let at = format!("dns.steered[{i}]");
            let steered = steered(&at, s, &zones, pools, errs)?;
            if !seen.insert(steered.name.clone()) {
                errs.add(
                    format!("{at}.name"),
                    format!("{:?} is steered twice", steered.name),
                    "list each steered name once",
                );
            }
            Some(steered)
        })
        .collect();
    let peers = peers(spec, errs);
    Some(Dns {
        listen: listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 53))),
        zones,
        steered,
        quorum: quorum(spec, peers.len(), errs),
        peers,
        peer_token: spec.peer_token.clone(),
        peer_interval: super::pool::duration_in(
            "dns.peer_interval",
            spec.peer_interval,
            DEFAULT_PEER_INTERVAL,
            (
                Duration::from_millis(10),
                Duration::from_secs(600),
                "10ms to 10m",
            ),
            errs,
        ),
        peer_timeout: super::pool::duration_in(
            "dns.peer_timeout",
            spec.peer_timeout,
            DEFAULT_PEER_TIMEOUT,
            (
                Duration::from_millis(1),
                Duration::from_secs(60),
                "1ms to 60s",
            ),
            errs,
        ),
    })
}

/// `http://host:port` of each peer's admin plane, without a path.
fn peers(spec: &DnsSpec, errs: &mut Errors) -> Vec<String> {
    let mut out = Vec::new();
    for (i, p) in spec.peers.iter().enumerate() {
        let uri = p.parse::<http::Uri>().ok();
        let ok = uri.as_ref().is_some_and(|u| {
            u.scheme_str() == Some("http")
                && u.authority().is_some()
                && matches!(u.path(), "" | "/")
                && u.query().is_none()
        });
        if !ok {
            errs.add(
                format!("dns.peers[{i}]"),
                format!("invalid peer {p:?}"),
                "write the peer's admin address as \"http://HOST:PORT\" (HTTPS is not supported yet)",
            );
            continue;
        }
        out.push(p.trim_end_matches('/').to_string());
    }
    if !out.is_empty() && spec.peer_token.as_deref().is_none_or(str::is_empty) {
        errs.add(
            "dns.peer_token",
            "peers are listed but no peer_token is set",
            "set the same secret peer_token on every instance; peers present it as a bearer token",
        );
    }
    out
}

/// Default: a majority of the vantage points (peers and this instance).
fn quorum(spec: &DnsSpec, peers: usize, errs: &mut Errors) -> usize {
    let points = peers + 1;
    let majority = points / 2 + 1;
    let Some(q) = spec.quorum else {
        return majority;
    };
    match usize::try_from(q) {
        Ok(q) if (1..=points).contains(&q) => q,
        _ => {
            errs.add(
                "dns.quorum",
                format!("quorum {q} is out of range"),
                &format!("use 1 to {points} (the peers and this instance); leave it out for a majority ({majority})"),
            );
            majority
        }
    }
}

/// Pools named by a steered name without `[pools.health]` are checked by TCP connect.
pub(super) fn default_checks(dns: Option<&Dns>, pools: &mut [Pool]) {
    let Some(dns) = dns else { return };
    for pool in pools.iter_mut().filter(|p| p.health.is_none()) {
        if dns.steered.iter().any(|s| s.pools.contains(&pool.name)) {
            pool.health = Some(default_tcp_check());
        }
    }
}

fn zones(specs: &[DnsZoneSpec], base_dir: &Path, errs: &mut Errors) -> Vec<DnsZone> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, z) in specs.iter().enumerate() {
        let at = format!("dns.zones[{i}]");
        let Some(origin) = dns_name(&format!("{at}.origin"), &z.origin, errs) else {
            continue;
        };
        if !seen.insert(origin.clone()) {
            errs.add(
                format!("{at}.origin"),
                format!("zone {origin:?} is configured twice"),
                "list each zone once",
            );
        }
        if z.file.is_empty() {
            errs.add(
                format!("{at}.file"),
                "empty path",
                "give the path of an RFC 1035 zone file, relative to this config file's folder",
            );
        }
        out.push(DnsZone {
            origin,
            file: base_dir.join(&z.file),
        });
    }
    out
}

fn steered(
    at: &str,
    s: &SteeredSpec,
    zones: &[DnsZone],
    pools: &[PoolSpec],
    errs: &mut Errors,
) -> Option<Steered> {
    let name = dns_name(&format!("{at}.name"), &s.name, errs);
    let zone = name.as_ref().and_then(|name| {
        let zone = zones
            .iter()
            .enumerate()
            .filter(|(_, z)| in_zone(name, &z.origin))
            .max_by_key(|(_, z)| z.origin.len())
            .map(|(i, _)| i);
        if zone.is_none() {
            errs.add(
                format!("{at}.name"),
                format!("{name:?} is in no configured zone"),
                "add a [[dns.zones]] table whose origin contains the name",
            );
        }
        zone
    });
    let policy = match s.policy.as_deref().unwrap_or("failover") {
        "failover" => SteerPolicy::Failover,
        "weighted" => SteerPolicy::Weighted,
        "all-healthy" => SteerPolicy::AllHealthy,
        other => {
            errs.add(
                format!("{at}.policy"),
                format!("unknown policy {other:?}"),
                "use \"failover\", \"weighted\" or \"all-healthy\"",
            );
            SteerPolicy::Failover
        }
    };
    if s.pools.is_empty() {
        errs.add(
            format!("{at}.pools"),
            "no pools",
            "name at least one pool whose servers answer for this name, e.g. pools = [\"primary\", \"secondary\"]",
        );
    }
    let mut named = HashSet::new();
    for (j, p) in s.pools.iter().enumerate() {
        if !pools.iter().any(|q| q.name == *p) {
            errs.add(
                format!("{at}.pools[{j}]"),
                format!("unknown pool {p:?}"),
                "name a pool defined in a [[pools]] table",
            );
        } else if !named.insert(p.as_str()) {
            errs.add(
                format!("{at}.pools[{j}]"),
                format!("pool {p:?} is listed twice"),
                "list each pool once",
            );
        }
    }
    let weights = weights(at, s, policy, errs);
    let ttl = ttl(&format!("{at}.ttl"), s.ttl, DEFAULT_TTL, errs);
    let failover_ttl = ttl_within(at, s.failover_ttl, ttl, errs);
    let when_all_down = match s.when_all_down.as_deref().unwrap_or("last-healthy") {
        "last-healthy" => WhenAllDown::LastHealthy,
        "all" => WhenAllDown::All,
        other => {
            errs.add(
                format!("{at}.when_all_down"),
                format!("unknown choice {other:?}"),
                "use \"last-healthy\" or \"all\"",
            );
            WhenAllDown::LastHealthy
        }
    };
    let max_shrink_percent = super::pool::in_range(
        &format!("{at}.max_shrink_percent"),
        s.max_shrink_percent,
        DEFAULT_MAX_SHRINK_PERCENT,
        100,
        errs,
    );
    let cnames = cnames(at, s, policy, errs);
    Some(Steered {
        cnames,
        name: name?,
        zone: zone?,
        policy,
        pools: s.pools.clone(),
        weights,
        ttl,
        failover_ttl,
        hold_down: s.hold_down.unwrap_or(DEFAULT_HOLD_DOWN),
        when_all_down,
        max_shrink_percent,
    })
}

/// `cname = { pool = "host.provider.example." }`, as one entry per pool.
fn cnames(
    at: &str,
    s: &SteeredSpec,
    policy: SteerPolicy,
    errs: &mut Errors,
) -> Vec<Option<String>> {
    let mut out = vec![None; s.pools.len()];
    if !s.cname.is_empty() && policy == SteerPolicy::AllHealthy {
        errs.add(
            format!("{at}.cname"),
            "CNAME targets need the failover or weighted policy",
            "all-healthy answers several pools at once, and a CNAME cannot stand beside addresses: remove cname or change the policy",
        );
    }
    for (pool, host) in &s.cname {
        let path = format!("{at}.cname.{pool}");
        let Some(i) = s.pools.iter().position(|p| p == pool) else {
            errs.add(
                path,
                format!("{pool:?} is not in this name's pools"),
                "key cname by one of the pools listed in pools",
            );
            continue;
        };
        if let (Some(name), Some(slot)) = (dns_name(&path, host, errs), out.get_mut(i)) {
            *slot = Some(name);
        }
    }
    out
}

fn weights(at: &str, s: &SteeredSpec, policy: SteerPolicy, errs: &mut Errors) -> Vec<u32> {
    let Some(given) = &s.weights else {
        return vec![1; s.pools.len()];
    };
    if policy != SteerPolicy::Weighted {
        errs.add(
            format!("{at}.weights"),
            "weights apply to the weighted policy only",
            "remove weights, or set policy = \"weighted\"",
        );
    }
    if given.len() != s.pools.len() {
        errs.add(
            format!("{at}.weights"),
            format!("{} weights for {} pools", given.len(), s.pools.len()),
            "give one weight per pool, in the order of pools",
        );
    }
    given
        .iter()
        .enumerate()
        .map(|(j, w)| match u32::try_from(*w) {
            Ok(w) if (1..=MAX_WEIGHT).contains(&w) => w,
            _ => {
                errs.add(
                    format!("{at}.weights[{j}]"),
                    format!("weight {w} is out of range"),
                    "use 1 to 1000",
                );
                1
            }
        })
        .collect()
}

fn ttl(path: &str, value: Option<i64>, default: u32, errs: &mut Errors) -> u32 {
    let Some(v) = value else { return default };
    match u32::try_from(v) {
        Ok(t) if (1..=MAX_TTL).contains(&t) => t,
        _ => {
            errs.add(
                path,
                format!("ttl {v} is out of range"),
                "use 1 to 604800 seconds (a week)",
            );
            default
        }
    }
}

fn ttl_within(at: &str, value: Option<i64>, ttl_max: u32, errs: &mut Errors) -> u32 {
    let path = format!("{at}.failover_ttl");
    let t = ttl(&path, value, DEFAULT_FAILOVER_TTL.min(ttl_max), errs);
    if t > ttl_max {
        errs.add(
            path,
            format!("failover_ttl {t} is longer than ttl {ttl_max}"),
            "a name in failover should be cached for less time, not more",
        );
    }
    t
}

/// A DNS name, lower case with the final dot; `None` (and an error) if malformed.
fn dns_name(path: &str, text: &str, errs: &mut Errors) -> Option<String> {
    let name = text.strip_suffix('.').unwrap_or(text);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Some(format!("{}.", name.to_ascii_lowercase()))
    } else {
        errs.add(
            path,
            format!("invalid DNS name {text:?}"),
            "write a name such as \"www.example.test.\": labels of letters, digits, '-' or '_', at most 63 bytes each",
        );
        None
    }
}

/// Is `name` at or below `origin` (both lower case, with the final dot)?
fn in_zone(name: &str, origin: &str) -> bool {
    name == origin || name.ends_with(&format!(".{origin}"))
}
