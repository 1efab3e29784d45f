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

// Hop-by-hop headers present in a head, as bits: found in one pass over the names so the
// common case (none, or only `Connection: keep-alive`) costs no hash look-ups.
const HAS_CONNECTION: u8 = 1;
const HAS_KEEP_ALIVE: u8 = 1 << 1;
const HAS_PROXY_CONNECTION: u8 = 1 << 2;
const HAS_TRANSFER_ENCODING: u8 = 1 << 3;
const HAS_TRAILER: u8 = 1 << 4;
const HAS_TE: u8 = 1 << 5;
const HAS_UPGRADE: u8 = 1 << 6;

/// The body length a head declares in `Content-Length`, if it is one decimal number; `None`
/// when absent or unreadable (the one parser of it on the data path).
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

fn hop_by_hop_present(headers: &HeaderMap) -> u8 {
    headers.keys().fold(0, |bits, name| {
        bits | if name == header::CONNECTION {
            HAS_CONNECTION
        } else if name == header::TRANSFER_ENCODING {
            HAS_TRANSFER_ENCODING
        } else if name == header::TRAILER {
            HAS_TRAILER
        } else if name == header::TE {
            HAS_TE
        } else if name == header::UPGRADE {
            HAS_UPGRADE
        } else if name == KEEP_ALIVE {
            HAS_KEEP_ALIVE
        } else if name == PROXY_CONNECTION {
            HAS_PROXY_CONNECTION
        } else {
            0
        }
    })
}

/// Header names listed in `Connection`, except the tokens that name no header.
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut named = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        for token in value.to_str().unwrap_or("").split(',') {
            let token = token.trim();
            if token.is_empty()
                || token.eq_ignore_ascii_case("close")
                || token.eq_ignore_ascii_case("keep-alive")
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                named.push(name);
            }
        }
    }
    named
}

/// Remove hop-by-hop headers. For a protocol upgrade, `Upgrade` survives and `Connection`
/// is re-set to `upgrade` so the next hop sees the request it must act on.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let present = hop_by_hop_present(headers);
    if present & HAS_CONNECTION != 0 {
        for name in connection_named(headers) {
            if !(upgrade && name == header::UPGRADE) {
                headers.remove(&name);
            }
        }
        headers.remove(header::CONNECTION);
    }
    if present & HAS_KEEP_ALIVE != 0 {
        headers.remove(&KEEP_ALIVE);
    }
    if present & HAS_PROXY_CONNECTION != 0 {
        headers.remove(&PROXY_CONNECTION);
    }
    if present & HAS_TRANSFER_ENCODING != 0 {
        headers.remove(header::TRANSFER_ENCODING);
    }
    if present & HAS_TRAILER != 0 {
        headers.remove(header::TRAILER);
    }
    // `TE: trailers` is end-to-end in practice (gRPC needs it); other codings are not.
    if present & HAS_TE != 0
        && headers
            .get(header::TE)
            .is_some_and(|te| te.as_bytes() != b"trailers")
    {
        headers.remove(header::TE);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if present & HAS_UPGRADE != 0 {
        headers.remove(header::UPGRADE);
    }
}

/// Append `value` to a comma-separated list header, or set it if absent (no formatting or
/// allocation in that common case).
fn append_value(headers: &mut HeaderMap, name: &HeaderName, value: HeaderValue) {
    match headers.entry(name) {
        header::Entry::Vacant(e) => {
            e.insert(value);
        }
        header::Entry::Occupied(mut e) => {
            let prev = e.get().as_bytes();
            if prev.is_empty() {
                e.insert(value);
                return;
            }
            let mut joined = Vec::with_capacity(prev.len() + 2 + value.len());
            joined.extend_from_slice(prev);
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(value.as_bytes());
            if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
                e.insert(v);
            }
        }
    }
}

fn via(version: Version) -> HeaderValue {
    HeaderValue::from_static(match version {
        Version::HTTP_2 => "2 holdfast",
        Version::HTTP_3 => "3 holdfast",
        Version::HTTP_10 => "1.0 holdfast",
        _ => "1.1 holdfast",
    })
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
    /// The `Host` of the pool the request goes to first, if it sets one.
    pub pool_host: Option<&'a HeaderValue>,
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
    if client_version == Version::HTTP_3 {
        // The edge speaks HTTP/1.1 or HTTP/2 to origins (hyper's HTTP/1.1 client refuses a
        // request marked HTTP/3); `Via` still names the client's protocol.
        parts.version = Version::HTTP_11;
    }
    let headers = &mut parts.headers;
    remove_hop_by_hop(headers, rw.upgrade);
    // The edge answers `Expect: 100-continue` itself (hyper sends 100 when the body is read).
    headers.remove(header::EXPECT);
    append_value(headers, &X_FORWARDED_FOR, ctx.conn.client_ip.clone());
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
        if let Ok(v) = HeaderValue::try_from(format!("for={for_};proto={proto}{host}")) {
            append_value(headers, &FORWARDED, v);
        }
    }
    append_value(headers, &header::VIA, via(client_version));
    if let Some(host) = rw.pool_host {
        headers.insert(header::HOST, host.clone());
    }
    // The modules' headers replace any the client sent under the same names.
    for (name, value) in &ctx.module_headers {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in &ctx.module_header_edits {
        match value {
            Some(v) => {
                headers.insert(name.clone(), v.clone());
            }
            None => {
                headers.remove(name);
            }
        }
    }
    apply_ops(headers, &rw.route.request_headers);
    headers.insert(crate::request_id::HEADER, ctx.request_id.clone());
}

/// A retry moved to another pool of the chain: send that pool's `Host` (a provider's name),
/// or the client's if the pool sets none; a `Host` rule of the route's own wins over both.
pub(crate) fn set_pool_host(headers: &mut HeaderMap, host: Option<&HeaderValue>, route: &RouteRt) {
    let ops = &route.request_headers;
    let route_sets_host = ops.remove.contains(&header::HOST)
        || ops
            .set
            .iter()
            .chain(ops.add.iter())
            .any(|(n, _)| n == header::HOST);
    if route_sets_host {
        return;
    }
    if let Some(host) = host {
        headers.insert(header::HOST, host.clone());
    }
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
    fn content_length_is_one_decimal_number() {
        let length = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_static(v));
            content_length(&h)
        };
        assert_eq!(length("0"), Some(0));
        assert_eq!(length("18446744073709551615"), Some(u64::MAX));
        assert_eq!(length("18446744073709551616"), None);
        assert_eq!(length("12, 12"), None);
        assert_eq!(length("-1"), None);
        assert_eq!(length(""), None);
        assert_eq!(content_length(&HeaderMap::new()), None);
    }

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
        append_value(
            &mut h,
            &header::VIA,
            HeaderValue::from_static("1.1 holdfast"),
        );
        assert_eq!(
            h.get(header::VIA).map(|v| v.as_bytes()),
            Some(&b"1.1 cdn, 1.1 holdfast"[..])
        );
    }
}
