//! `[edge] h3_listen` and `h3 = { … }`: the HTTP/3 (QUIC, UDP) listeners and their limits.
//! HTTP/3 uses the TLS listeners' certificates, so it needs `tls_listen` (whose checks make
//! sure there is a certificate).

use super::{listen_addr, overlaps, Errors};
use crate::config::H3;
use crate::spec::EdgeSpec;
use std::net::SocketAddr;
use std::time::Duration;

const DEFAULT_MAX_STREAMS: u32 = 100;
const MAX_MAX_STREAMS: i64 = 10_000;
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 256;
const MAX_MAX_CONNECTIONS_PER_IP: i64 = 1_000_000;

pub(super) fn h3(spec: &EdgeSpec, errs: &mut Errors) -> (Vec<SocketAddr>, H3) {
    let listen = h3_listen(spec, errs);
    let Some(h3) = &spec.h3 else {
        return (listen, H3::default());
    };
    if spec.h3_listen.is_empty() {
        errs.add(
            "edge.h3",
            "HTTP/3 settings are given but no HTTP/3 listener",
            "add h3_listen = [\"0.0.0.0:443\"] or remove edge.h3",
        );
    }
    let max_streams = match h3.max_streams {
        None => DEFAULT_MAX_STREAMS,
        Some(n) if (1..=MAX_MAX_STREAMS).contains(&n) => {
            u32::try_from(n).unwrap_or(DEFAULT_MAX_STREAMS)
        }
        Some(n) => {
            errs.add(
                "edge.h3.max_streams",
                format!("{n} is out of range"),
                "use 1 to 10000 concurrent requests per connection; the default is 100",
            );
            DEFAULT_MAX_STREAMS
        }
    };
    let idle_timeout = match h3.idle_timeout {
        None => DEFAULT_IDLE_TIMEOUT,
        Some(d) if !d.is_zero() && d <= MAX_IDLE_TIMEOUT => d,
        Some(d) => {
            errs.add(
                "edge.h3.idle_timeout",
                format!("{d:?} is out of range"),
                "use a duration from 1ms to 10m; the default is \"30s\"",
            );
            DEFAULT_IDLE_TIMEOUT
        }
    };
    let max_connections_per_ip = match h3.max_connections_per_ip {
        None => DEFAULT_MAX_CONNECTIONS_PER_IP,
        Some(n) if (1..=MAX_MAX_CONNECTIONS_PER_IP).contains(&n) => {
            u32::try_from(n).unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_IP)
        }
        Some(n) => {
            errs.add(
                "edge.h3.max_connections_per_ip",
                format!("{n} is out of range"),
                "use 1 to 1000000 connections per client address; the default is 256",
            );
            DEFAULT_MAX_CONNECTIONS_PER_IP
        }
    };
    let settings = H3 {
        max_streams,
        idle_timeout,
        zero_rtt: h3.zero_rtt.unwrap_or(false),
        max_connections_per_ip,
    };
    (listen, settings)
}

fn h3_listen(spec: &EdgeSpec, errs: &mut Errors) -> Vec<SocketAddr> {
    if !spec.h3_listen.is_empty() && spec.tls_listen.is_empty() {
        errs.add(
            "edge.h3_listen",
            "HTTP/3 listeners need the TLS listeners' certificates, and there is no tls_listen",
            "add tls_listen (TCP, for HTTP/1.1 and HTTP/2 clients, which learn of HTTP/3 from its Alt-Svc) and [[edge.tls]]",
        );
    }
    let mut out: Vec<(usize, SocketAddr)> = Vec::new();
    for (i, text) in spec.h3_listen.iter().enumerate() {
        let path = format!("edge.h3_listen[{i}]");
        let Some(addr) = listen_addr(&path, text, errs) else {
            continue;
        };
        if let Some((first, _)) = out.iter().find(|(_, b)| overlaps(&addr, b)) {
            errs.add(
                path,
                format!("{addr} is already used by edge.h3_listen[{first}]"),
                "list each listen address once",
            );
            continue;
        }
        out.push((i, addr));
    }
    out.into_iter().map(|(_, a)| a).collect()
}

impl Default for H3 {
    fn default() -> Self {
        H3 {
            max_streams: DEFAULT_MAX_STREAMS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            zero_rtt: false,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
        }
    }
}
