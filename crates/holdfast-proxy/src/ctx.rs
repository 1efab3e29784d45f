//! `RequestCtx`: what the phases learn about one request, each phase writing its own part.
//! It outlives the handler inside the response body, where it becomes the access-log line.

use http::{HeaderValue, Method, Request};
use std::net::SocketAddr;
use std::time::Instant;

/// Whether an edge-made answer should be JSON (defined beside the modules' types, so the
/// challenge's pages make the same choice as the error pages).
pub use holdfast_modules::wants_json;

/// Facts about the client connection, fixed for its lifetime.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub client: SocketAddr,
    /// The client's IP as a header value, formatted once per connection for
    /// `X-Forwarded-For`.
    pub client_ip: HeaderValue,
    pub tls: bool,
}

impl ConnInfo {
    pub fn new(client: SocketAddr, tls: bool) -> Self {
        let client_ip = HeaderValue::try_from(client.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown"));
        ConnInfo {
            client,
            client_ip,
            tls,
        }
    }
}

/// A TLS connection's site and client: which `[[edge.tls]]` (or, numbered after those,
/// `[[edge.acme]]`) table its SNI chose (`None`: no table, no default) and the subject of
/// the client certificate that table's CA verified.
/// Only when some table asks for client certificates; then each request of the connection
/// carries it as an extension (`Arc<TlsPeer>`), not in `ConnInfo`, so the request future of
/// every other edge stays its size (`service::tests::handle_future_stays_small`).
#[derive(Debug)]
pub struct TlsPeer {
    pub site: Option<usize>,
    /// RFC 4514 text (`CN=client,O=Example`), ready for a header.
    pub subject: Option<HeaderValue>,
}

pub struct RequestCtx {
    pub conn: ConnInfo,
    pub start: Instant,
    pub request_id: HeaderValue,
    pub method: Method,
    /// The client's protocol (`HTTP/1.1`, `HTTP/2`, `HTTP/3`) for the access log and metrics.
    pub version: http::Version,
    pub host: Option<HeaderValue>,
    pub path: http::uri::PathAndQuery,
    pub wants_json: bool,
    pub route: RouteCtx,
    pub upstream: UpstreamCtx,
    pub cache: CacheCtx,
    pub status: u16,
    /// Headers the modules add to the origin request; the first inline, so running the bot
    /// module costs no allocation.
    pub module_headers: smallvec::SmallVec<[(http::HeaderName, HeaderValue); 1]>,
    /// The rules' `set_header` (`Some`) and `remove_header` (`None`), in order, applied after
    /// `module_headers`.
    pub module_header_edits: Vec<(http::HeaderName, Option<HeaderValue>)>,
}

/// Written by `phases::route`.
#[derive(Default)]
pub struct RouteCtx {
    pub index: Option<usize>,
}

/// Written by `phases::upstream`.
#[derive(Default)]
pub struct UpstreamCtx {
    /// The origin server's address, formatted (it goes into the access log).
    pub server: Option<std::sync::Arc<str>>,
    /// Request sent to the origin until its response head arrived.
    pub duration: Option<std::time::Duration>,
}

/// Written by `phases::cache` (routes with a cache only).
#[derive(Default)]
pub struct CacheCtx {
    /// For the access log.
    pub result: Option<CacheResult>,
}

/// How the cache answered (one byte: the context lives in every request's future).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Stale,
    Revalidated,
    Miss,
    Pass,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Stale => "stale",
            CacheResult::Revalidated => "revalidated",
            CacheResult::Miss => "miss",
            CacheResult::Pass => "pass",
        }
    }
}

impl RequestCtx {
    pub fn new<B>(req: &Request<B>, conn: ConnInfo) -> Self {
        let headers = req.headers();
        let mut request_id = headers
            .get(&crate::request_id::HEADER)
            .filter(|v| crate::request_id::is_well_formed(v))
            .cloned()
            .unwrap_or_else(crate::request_id::generate);
        // Unique per request, so never worth an HPACK table entry: marked sensitive, HTTP/2
        // sends it as a literal "never indexed" (as nginx sends its headers) instead of
        // filling the connection's table with ids, which evicts the headers that repeat
        // and makes each response walk the ids already there. (No effect on HTTP/1.)
        request_id.set_sensitive(true);
        let wants_json = wants_json(headers);
        let host = match req.uri().authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => headers.get(http::header::HOST).cloned(),
        };
        RequestCtx {
            conn,
            start: Instant::now(),
            request_id,
            method: req.method().clone(),
            version: req.version(),
            host,
            path: req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
            wants_json,
            route: RouteCtx::default(),
            upstream: UpstreamCtx::default(),
            cache: CacheCtx::default(),
            status: 0,
            module_headers: smallvec::SmallVec::new(),
            module_header_edits: Vec::new(),
        }
    }

    /// The request's host name: no port, as sent (callers compare case-insensitively).
    pub fn host_name(&self) -> &str {
        let host = self
            .host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        strip_port(host)
    }
}

/// On bytes, not `str` patterns: it runs for every request (routing, the cache key), and the
/// generic pattern search cost several times the plain loop.
fn strip_port(host: &str) -> &str {
    let bytes = host.as_bytes();
    if bytes.first() == Some(&b'[') {
        return match bytes.iter().position(|&b| b == b']') {
            Some(end) => host.get(1..end).unwrap_or(host),
            None => host,
        };
    }
    match bytes.iter().rposition(|&b| b == b':') {
        Some(colon)
            if bytes
                .get(colon + 1..)
                .is_some_and(|port| port.iter().all(u8::is_ascii_digit)) =>
        {
            host.get(..colon).unwrap_or(host)
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::{strip_port, wants_json, ConnInfo, RequestCtx};

    /// HTTP/2 must never put request ids in its HPACK table (one per response would evict
    /// the headers that repeat): the id is sensitive, whether generated or the client's.
    #[test]
    fn request_ids_are_never_indexed() {
        let conn = ConnInfo::new(([127, 0, 0, 1], 1).into(), false);
        let fresh = RequestCtx::new(&http::Request::new(()), conn.clone());
        assert!(fresh.request_id.is_sensitive());
        let sent = http::Request::builder()
            .header("x-request-id", "client-id-1")
            .body(())
            .unwrap();
        let kept = RequestCtx::new(&sent, conn);
        assert_eq!(kept.request_id, "client-id-1");
        assert!(kept.request_id.is_sensitive());
    }

    #[test]
    fn json_for_api_clients_only() {
        let accept = |v: &'static str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::ACCEPT, http::HeaderValue::from_static(v));
            wants_json(&h)
        };
        assert!(accept("application/json"));
        assert!(accept("application/problem+json, */*"));
        assert!(!accept(
            "text/html,application/xhtml+xml,application/json;q=0.9"
        ));
        assert!(!accept("*/*"));
        assert!(!wants_json(&http::HeaderMap::new()));
    }

    #[test]
    fn strips_ports() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("[::1]"), "::1");
        assert_eq!(strip_port("[::1"), "[::1");
        assert_eq!(strip_port("example.com:"), "example.com");
        assert_eq!(strip_port("example.com:8a"), "example.com:8a");
        assert_eq!(strip_port("a:b:80"), "a:b");
        assert_eq!(strip_port(""), "");
    }
}
