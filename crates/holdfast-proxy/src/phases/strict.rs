//! The front door (RFC 9112, RFC 9110, RFC 9113 §8): the first phase, before reserved paths,
//! routing, modules, limits and the cache. It refuses what hyper's parser lets through but an
//! origin could read differently — a missing, repeated or malformed `Host`, a `Host` that
//! disagrees with the absolute-form target or `:authority`, target forms that do not fit the
//! method, `CONNECT`, a `Transfer-Encoding` other than exactly `chunked`, header names that
//! look like framing or routing headers — and normalises the rest into one form: the path
//! (`phases::path`), `Content-Length` digits, names with `_` dropped (nginx's
//! `underscores_in_headers off`), `Upgrade: h2c` and `HTTP2-Settings` removed. It reads only
//! what hyper already parsed: one pass over the header names, no allocation unless something
//! must change. See `docs/security.md` for the table of decisions.

use super::path;
use crate::ctx::RequestCtx;
use crate::error::ProxyError;
pub(crate) use crate::refusal::Refusal;
use crate::state::State;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Version};

static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Check `req` and normalise it in place (and `ctx`'s host and path with it); count and
/// return the refusal otherwise.
pub(crate) fn check<B>(
    state: &State,
    req: &mut Request<B>,
    ctx: &mut RequestCtx,
) -> Result<(), ProxyError> {
    inspect(req, ctx, state.config.edge.encoded_slashes).map_err(|r| {
        state.metrics.bad_request(r.reason());
        ProxyError::Refused(r)
    })
}

pub(crate) fn inspect<B>(
    req: &mut Request<B>,
    ctx: &mut RequestCtx,
    slashes: holdfast_config::EncodedSlashes,
) -> Result<(), Refusal> {
    if req.method() == Method::CONNECT {
        return Err(Refusal::Connect);
    }
    if imitates_standard_method(req.method().as_str()) {
        return Err(Refusal::MethodCase);
    }
    let target_host = target(req)?;
    let scan = scan_headers(req.headers())?;
    host(req, &scan, target_host)?;
    if target_host.is_some() && !req.headers().contains_key(header::HOST) {
        // HTTP/2 without `host`: the origin (HTTP/1.1) gets `:authority` as its one Host.
        // (`ctx.host` was taken from the target already.)
        if let Some(h) = ctx.host.clone() {
            req.headers_mut().insert(header::HOST, h);
        }
    }
    if scan.needs_edit {
        edit_headers(req.headers_mut());
    }
    if let Some(pq) = req.uri().path_and_query() {
        if let Some(normal) = path::normalise(pq, slashes).map_err(Refusal::Path)? {
            set_path(req, normal.clone());
            ctx.path = normal;
        }
    }
    Ok(())
}

/// The request-target form (RFC 9112 §3.2): origin-form, absolute-form with `http`/`https`
/// and no userinfo, or `*` for `OPTIONS`. Returns the target's authority, if it has one: the
/// Host it implies.
fn target<B>(req: &Request<B>) -> Result<Option<&str>, Refusal> {
    let uri = req.uri();
    let path = uri.path();
    if path == "*" {
        return if req.method() == Method::OPTIONS && uri.authority().is_none() {
            Ok(None)
        } else {
            Err(Refusal::TargetForm)
        };
    }
    if let Some(scheme) = uri.scheme_str() {
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(Refusal::TargetScheme);
        }
    }
    let Some(authority) = uri.authority() else {
        return if path.starts_with('/') {
            Ok(None)
        } else {
            Err(Refusal::TargetForm)
        };
    };
    // Authority-form (`host:port`) is for CONNECT only, refused above.
    if uri.scheme().is_none() || !path.starts_with('/') {
        return Err(Refusal::TargetForm);
    }
    if authority.as_str().contains('@') {
        return Err(Refusal::TargetUserinfo);
    }
    if !valid_host(authority.as_str().as_bytes()) {
        return Err(Refusal::HostInvalid);
    }
    Ok(Some(authority.as_str()))
}

/// `get`, `Post`: not the standard method (RFC 9110 §9.1: methods are case-sensitive), but
/// read as it by origins that fold case — past rules written for `GET` or `POST`.
fn imitates_standard_method(m: &str) -> bool {
    const STANDARD: &[&str] = &[
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    m.bytes().any(|b| b.is_ascii_lowercase()) && STANDARD.iter().any(|s| s.eq_ignore_ascii_case(m))
}

/// What one pass over the header names found.
#[derive(Default)]
struct Scan {
    hosts: u8,
    /// A header must go (`_` in its name, `HTTP2-Settings`, `Upgrade: h2c`) or be rewritten
    /// (`Content-Length` with leading zeros).
    needs_edit: bool,
}

fn scan_headers(headers: &HeaderMap) -> Result<Scan, Refusal> {
    let mut scan = Scan::default();
    let mut te = 0u8;
    for (name, value) in headers {
        if name == header::HOST {
            scan.hosts = scan.hosts.saturating_add(1);
        } else if name == header::TRANSFER_ENCODING {
            te = te.saturating_add(1);
            // hyper accepts any list ending in `chunked`; the edge re-frames the body, so a
            // coding before it would reach the origin undeclared.
            let v = value.to_str().map_err(|_| Refusal::TransferEncoding)?;
            if te > 1 || !v.trim().eq_ignore_ascii_case("chunked") {
                return Err(Refusal::TransferEncoding);
            }
        } else if name == header::CONTENT_LENGTH {
            // hyper accepts leading zeros; other parsers read them as octal or refuse them.
            scan.needs_edit |= value.len() > 1 && value.as_bytes().first() == Some(&b'0');
        } else if name == header::UPGRADE {
            scan.needs_edit |= is_h2c(value);
        } else if name == HTTP2_SETTINGS {
            scan.needs_edit = true;
        } else if name.as_str().as_bytes().contains(&b'_') {
            if is_lookalike(name.as_str()) {
                return Err(Refusal::LookalikeHeader);
            }
            scan.needs_edit = true;
        }
    }
    Ok(scan)
}

fn is_h2c(value: &HeaderValue) -> bool {
    value.to_str().map_or(true, |v| {
        v.split(',').any(|t| t.trim().eq_ignore_ascii_case("h2c"))
    })
}

/// A name with `_` that reads as a header the edge or the origin frames or routes by once
/// `_` is taken for `-` (as CGI, PHP and some frameworks do).
fn is_lookalike(name: &str) -> bool {
    const GUARDED: &[&str] = &[
        "content-length",
        "transfer-encoding",
        "host",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "keep-alive",
        "proxy-connection",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
        "x-request-id",
        "content-type",
        "content-encoding",
    ];
    name.contains('_')
        && GUARDED.iter().any(|g| {
            g.len() == name.len()
                && g.bytes()
                    .zip(name.bytes())
                    .all(|(a, b)| a == b || (a == b'-' && b == b'_'))
        })
}

/// Exactly one valid Host (RFC 9112 §3.2): required for HTTP/1.x (the edge speaks HTTP/1.1
/// to origins, so HTTP/1.0 needs one too) unless the target or `:authority` names the host;
/// never more than one; equal to the target's host when both are sent.
fn host<B>(req: &Request<B>, scan: &Scan, target_host: Option<&str>) -> Result<(), Refusal> {
    if scan.hosts > 1 {
        return Err(Refusal::HostRepeated);
    }
    let sent = req.headers().get(header::HOST);
    match (sent, target_host) {
        (None, None) => Err(Refusal::HostMissing),
        (None, Some(_)) if !matches!(req.version(), Version::HTTP_2 | Version::HTTP_3) => {
            Err(Refusal::HostMissing)
        }
        (None, Some(_)) => Ok(()),
        (Some(h), t) => {
            if !valid_host(h.as_bytes()) {
                return Err(Refusal::HostInvalid);
            }
            match t {
                Some(t) if !same_host(h.as_bytes(), t.as_bytes(), req.uri().scheme_str()) => {
                    Err(Refusal::HostMismatch)
                }
                _ => Ok(()),
            }
        }
    }
}

/// `uri-host [":" port]` (RFC 3986 §3.2.2): a registered name of letters, digits, `-`, `.`
/// and `_`, an IPv4 address, or a bracketed IPv6 address; a port of 1–5 digits ≤ 65535.
/// Refused: empty, userinfo, lists, whitespace, percent-escapes, other bytes.
pub(crate) fn valid_host(h: &[u8]) -> bool {
    let (name, port) = split_port(h);
    let name_ok = match name {
        [b'[', inner @ .., b']'] => {
            !inner.is_empty()
                && inner
                    .iter()
                    .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        }
        _ => {
            !name.is_empty()
                && name.len() <= 253
                && name
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        }
    };
    name_ok && port.is_none_or(valid_port)
}

fn valid_port(p: &[u8]) -> bool {
    !p.is_empty()
        && p.len() <= 5
        && p.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(p)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .is_some_and(|n| n <= 65535)
}

/// Split `host[:port]`; an IPv6 literal keeps its brackets. A name with more than one `:`
/// outside brackets keeps them all in the name (and fails the name check).
fn split_port(h: &[u8]) -> (&[u8], Option<&[u8]>) {
    let end_of_name = if h.first() == Some(&b'[') {
        h.iter().position(|&b| b == b']').map_or(h.len(), |i| i + 1)
    } else {
        match h.iter().filter(|&&b| b == b':').count() {
            1 => h.iter().position(|&b| b == b':').unwrap_or(h.len()),
            _ => h.len(),
        }
    };
    let (name, rest) = h.split_at(end_of_name.min(h.len()));
    match rest {
        [] => (name, None),
        [b':', port @ ..] => (name, Some(port)),
        // Bytes after `]` that are not a port.
        _ => (h, None),
    }
}

/// Host names compared without case, ports with the scheme's default filled in.
fn same_host(a: &[u8], b: &[u8], scheme: Option<&str>) -> bool {
    let default: &[u8] = match scheme {
        Some(s) if s.eq_ignore_ascii_case("https") => b"443",
        _ => b"80",
    };
    let (an, ap) = split_port(a);
    let (bn, bp) = split_port(b);
    an.eq_ignore_ascii_case(bn) && ap.unwrap_or(default) == bp.unwrap_or(default)
}

/// The rare edits: drop `_` names, `HTTP2-Settings` and an `Upgrade` offering `h2c`
/// (RFC 9113 §3.1 retired the h2c upgrade; tunnelling it would hand the client a connection
/// to the origin past the edge); write `Content-Length` without leading zeros.
fn edit_headers(headers: &mut HeaderMap) {
    while let Some(name) = headers
        .keys()
        .find(|n| n.as_str().as_bytes().contains(&b'_'))
        .cloned()
    {
        headers.remove(&name);
    }
    headers.remove(&HTTP2_SETTINGS);
    if headers.get_all(header::UPGRADE).iter().any(is_h2c) {
        headers.remove(header::UPGRADE);
    }
    // hyper parsed it as plain digits already (and kept only the first of equal copies).
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if let Some(n) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
}

fn set_path<B>(req: &mut Request<B>, pq: http::uri::PathAndQuery) {
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.path_and_query = Some(pq);
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in [
            "example.com",
            "example.com:8080",
            "a-b.c_d.example",
            "127.0.0.1",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:443",
            "localhost:65535",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            ":80",
            "example.com:",
            "example.com:65536",
            "example.com:080x",
            "user@example.com",
            "a.example,b.example",
            "a.example b.example",
            "a.example:80:80",
            "exa%6Dple.com",
            "[::1]x",
            "[]",
            "[::1",
            "example.com\t",
            "ex\u{e9}.com",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn same_host_fills_default_ports() {
        assert!(same_host(b"Example.COM", b"example.com:80", Some("http")));
        assert!(same_host(b"example.com:443", b"example.com", Some("https")));
        assert!(!same_host(b"example.com:443", b"example.com", Some("http")));
        assert!(!same_host(b"a.example", b"b.example", None));
    }

    #[test]
    fn methods_imitating_standard_ones() {
        assert!(imitates_standard_method("get"));
        assert!(imitates_standard_method("Post"));
        assert!(!imitates_standard_method("GET"));
        assert!(!imitates_standard_method("PROPFIND"));
        assert!(!imitates_standard_method("purge"));
    }

    #[test]
    fn lookalikes() {
        assert!(is_lookalike("content_length"));
        assert!(is_lookalike("transfer_encoding"));
        assert!(is_lookalike("x_forwarded_for"));
        assert!(is_lookalike("x-forwarded_for"));
        assert!(!is_lookalike("x_custom"));
        assert!(!is_lookalike("content-length"));
    }
}
