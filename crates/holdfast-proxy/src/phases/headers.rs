//! Proxy header rules (RFC 9110 §7.6): hop-by-hop headers and those named in `Connection`
//! are removed both ways, `Via` is appended, `X-Forwarded-*` (and optionally `Forwarded`) are
//! set toward the origin, then the route's own header changes apply.

use crate::ctx::RequestCtx;
use crate::state::RouteRt;
use holdfast_config::HeaderOps;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Remove hop-by-hop headers. For a protocol upgrade, `Upgrade` survives and `Connection`
/// is re-set to `upgrade` so the next hop sees the request it must act on.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for name in named {
            if !(upgrade && name == header::UPGRADE) {
                headers.remove(&name);
            }
        }
        headers.remove(header::CONNECTION);
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::TRAILER);
    if headers
        .get(header::TE)
        .is_some_and(|te| te.as_bytes() != b"trailers")
    {
        headers.remove(header::TE);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

fn append_value(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    let joined = match headers.get(name).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => format!("{prev}, {value}"),
        _ => value.to_string(),
    };
    if let Ok(v) = HeaderValue::try_from(joined) {
        headers.insert(name.clone(), v);
    }
}

fn via(version: Version) -> &'static str {
    match version {
        Version::HTTP_2 => "2 holdfast",
        Version::HTTP_10 => "1.0 holdfast",
        _ => "1.1 holdfast",
    }
}

pub(crate) fn apply_ops(headers: &mut HeaderMap, ops: &HeaderOps) {
    if ops.is_empty() {
        return;
    }
    for name in &ops.remove {
        headers.remove(name);
    }
    for (name, value) in &ops.set {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in &ops.add {
        headers.append(name.clone(), value.clone());
    }
}

pub(crate) struct RequestRewrite<'a> {
    pub route: &'a RouteRt,
    pub forwarded: bool,
    pub upgrade: bool,
}

/// Rewrite the client's request head for the origin.
pub(crate) fn rewrite_request(
    parts: &mut http::request::Parts,
    ctx: &RequestCtx,
    rw: &RequestRewrite<'_>,
) {
    let client_version = parts.version;
    let headers = &mut parts.headers;
    remove_hop_by_hop(headers, rw.upgrade);
    // The edge answers `Expect: 100-continue` itself (hyper sends 100 when the body is read).
    headers.remove(header::EXPECT);
    let client_ip = ctx.conn.client.ip().to_string();
    append_value(headers, &X_FORWARDED_FOR, &client_ip);
    let proto = if ctx.conn.tls { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(host) = &ctx.host {
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
        if !headers.contains_key(header::HOST) {
            // An HTTP/2 client sends :authority instead of Host; HTTP/1.1 origins need Host.
            headers.insert(header::HOST, host.clone());
        }
    }
    if rw.forwarded {
        let for_ = match ctx.conn.client.ip() {
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("\"[{ip}]\""),
        };
        let host = ctx
            .host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .map(|h| format!(";host=\"{h}\""))
            .unwrap_or_default();
        append_value(
            headers,
            &FORWARDED,
            &format!("for={for_};proto={proto}{host}"),
        );
    }
    append_value(headers, &header::VIA, via(client_version));
    if let Some(host) = &rw.route.pool.host_header {
        headers.insert(header::HOST, host.clone());
    }
    apply_ops(headers, &rw.route.request_headers);
    headers.insert(crate::request_id::HEADER, ctx.request_id.clone());
}

/// Rewrite the origin's response head for the client.
pub(crate) fn rewrite_response(parts: &mut http::response::Parts, route: &RouteRt) {
    let upgrade = parts.status == http::StatusCode::SWITCHING_PROTOCOLS;
    let origin_version = parts.version;
    remove_hop_by_hop(&mut parts.headers, upgrade);
    append_value(&mut parts.headers, &header::VIA, via(origin_version));
    apply_ops(&mut parts.headers, &route.response_headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h, false);
        assert!(h.get("x-secret").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get(header::TE).is_none());
        assert!(h.get("x-kept").is_some());
    }

    #[test]
    fn keeps_upgrade_for_upgrades() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(
            h.get(header::UPGRADE).map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        assert_eq!(
            h.get(header::CONNECTION).map(|v| v.as_bytes()),
            Some(&b"upgrade"[..])
        );
    }

    #[test]
    fn appends_to_existing_lists() {
        let mut h = HeaderMap::new();
        h.insert(header::VIA, HeaderValue::from_static("1.1 cdn"));
        append_value(&mut h, &header::VIA, "1.1 holdfast");
        assert_eq!(
            h.get(header::VIA).map(|v| v.as_bytes()),
            Some(&b"1.1 cdn, 1.1 holdfast"[..])
        );
    }
}
