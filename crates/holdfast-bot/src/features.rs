//! The request features a feature file can weigh: a fixed set ([`Feature`], computed for every
//! scored request into a stack array) and three parameterised families ([`Family`]) so real
//! feature files can be large.
//!
//! Fixed features and their scaling (every value is finite and small):
//!
//! | name | value |
//! |---|---|
//! | `header_count` | number of header fields (each value counts), capped at 100 |
//! | `header_order_browser` | 1 if `user-agent`, `accept`, `accept-language` and `accept-encoding` are all present and `user-agent` comes before `accept`, which comes before both others (the order browsers send; curl and most libraries differ) |
//! | `ua_is_browser` | 1 if the user agent starts with `Mozilla/5.0`, names a browser engine (`Chrome/`, `Firefox/`, `Safari/`, `Edg/`) and no crawler, headless or tool token |
//! | `ua_is_tool` | 1 if the user agent names an HTTP tool or library (curl, wget, python-requests, python-urllib, Go-http-client, okhttp, Java, libwww-perl, HTTPie, axios, node-fetch, aiohttp, httpx, Scrapy, PostmanRuntime, Apache-HttpClient, Guzzle, PowerShell) |
//! | `ua_missing` | 1 if there is no `user-agent` header |
//! | `ua_length` | user-agent length in bytes / 100, capped at 5 |
//! | `has_accept` | 1 if `accept` is present |
//! | `has_accept_language` | 1 if `accept-language` is present |
//! | `has_accept_encoding` | 1 if `accept-encoding` is present |
//! | `has_sec_fetch` | 1 if any `sec-fetch-*` header is present |
//! | `has_sec_ch_ua` | 1 if any `sec-ch-ua*` header is present |
//! | `http2` | 1 if the HTTP version is 2 or later |
//! | `http1_0` | 1 if the HTTP version is 1.0 (or 0.9) |
//! | `method_get` | 1 for `GET` and `HEAD` |
//! | `has_cookie` | 1 if `cookie` is present |
//! | `has_referer` | 1 if `referer` is present |
//! | `accept_is_wildcard` | 1 if `accept` is exactly `*/*` |
//! | `path_depth` | number of non-empty path segments, capped at 32 |
//! | `query_length` | query length in bytes / 100, capped at 10 |
//! | `client_rate` | log2(1 + requests of this client address in the current window), 0..=32 (see `rate.rs`) |
//! | `ja4h_browser_like` | 1 if the JA4H `a` section looks like a browser (see [`crate::ja4h::Ja4hA::browser_like`]) |
//! | `tls` | 1 if the request came over TLS |
//!
//! Families (value 1 when they match, else 0):
//! - `header:<name>` — the header is present; the name is matched case-insensitively.
//! - `ua_contains:<token>` — the user agent contains the token, ignoring ASCII case; only
//!   the first [`UA_SCAN_BYTES`] bytes of the user agent are searched. Tokens are 1 to
//!   [`MAX_TOKEN_BYTES`] printable ASCII characters.
//! - `path_prefix:<prefix>` — the path (without the query) starts with the prefix, byte for
//!   byte (not segment-aware: `/admin` matches `/administrator`). Prefixes start with `/` and
//!   are at most [`MAX_TOKEN_BYTES`] bytes without spaces or control characters.

use aho_corasick::{AhoCorasick, MatchKind};
use holdfast_modules::RequestView;
use http::header::{self, HeaderName};
use http::Version;
use std::sync::LazyLock;

/// Whether the JA4H-style fingerprint feeds `ja4h_browser_like` (`[modules.bot] ja4h`).
/// JA4H is FoxIO's, under the FoxIO License 1.1 (no monetisation without an OEM licence; the
/// method is described as patent pending), so it is off unless the operator turns it on; off,
/// the feature's value is 0 and the fingerprint is never computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ja4h {
    #[default]
    Off,
    On,
}

/// One of the fixed request features. The discriminant is the index into the model's weight
/// array and [`RequestFeatures`]' value array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    HeaderCount,
    HeaderOrderBrowser,
    UaIsBrowser,
    UaIsTool,
    UaMissing,
    UaLength,
    HasAccept,
    HasAcceptLanguage,
    HasAcceptEncoding,
    HasSecFetch,
    HasSecChUa,
    Http2,
    Http10,
    MethodGet,
    HasCookie,
    HasReferer,
    AcceptIsWildcard,
    PathDepth,
    QueryLength,
    ClientRate,
    Ja4hBrowserLike,
    Tls,
}

impl Feature {
    /// Number of fixed features.
    pub const COUNT: usize = 22;

    /// Every fixed feature, in index order.
    pub const ALL: [Feature; Feature::COUNT] = [
        Feature::HeaderCount,
        Feature::HeaderOrderBrowser,
        Feature::UaIsBrowser,
        Feature::UaIsTool,
        Feature::UaMissing,
        Feature::UaLength,
        Feature::HasAccept,
        Feature::HasAcceptLanguage,
        Feature::HasAcceptEncoding,
        Feature::HasSecFetch,
        Feature::HasSecChUa,
        Feature::Http2,
        Feature::Http10,
        Feature::MethodGet,
        Feature::HasCookie,
        Feature::HasReferer,
        Feature::AcceptIsWildcard,
        Feature::PathDepth,
        Feature::QueryLength,
        Feature::ClientRate,
        Feature::Ja4hBrowserLike,
        Feature::Tls,
    ];

    /// The name used in feature files.
    pub const fn name(self) -> &'static str {
        match self {
            Feature::HeaderCount => "header_count",
            Feature::HeaderOrderBrowser => "header_order_browser",
            Feature::UaIsBrowser => "ua_is_browser",
            Feature::UaIsTool => "ua_is_tool",
            Feature::UaMissing => "ua_missing",
            Feature::UaLength => "ua_length",
            Feature::HasAccept => "has_accept",
            Feature::HasAcceptLanguage => "has_accept_language",
            Feature::HasAcceptEncoding => "has_accept_encoding",
            Feature::HasSecFetch => "has_sec_fetch",
            Feature::HasSecChUa => "has_sec_ch_ua",
            Feature::Http2 => "http2",
            Feature::Http10 => "http1_0",
            Feature::MethodGet => "method_get",
            Feature::HasCookie => "has_cookie",
            Feature::HasReferer => "has_referer",
            Feature::AcceptIsWildcard => "accept_is_wildcard",
            Feature::PathDepth => "path_depth",
            Feature::QueryLength => "query_length",
            Feature::ClientRate => "client_rate",
            Feature::Ja4hBrowserLike => "ja4h_browser_like",
            Feature::Tls => "tls",
        }
    }

    /// The fixed feature with this name.
    pub fn from_name(name: &str) -> Option<Feature> {
        Feature::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Index into weight and value arrays (`0..COUNT`).
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Longest `ua_contains:` token or `path_prefix:` prefix, in bytes.
pub const MAX_TOKEN_BYTES: usize = 256;
/// How much of the user agent is searched for tokens (bounds the per-request cost).
pub const UA_SCAN_BYTES: usize = 512;

/// A parameterised feature: one family entry of a feature file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Family {
    /// `header:<name>`: the header is present.
    Header(HeaderName),
    /// `ua_contains:<token>`: stored lower-case.
    UaContains(String),
    /// `path_prefix:<prefix>`.
    PathPrefix(String),
}

/// A feature-file name, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureName {
    Fixed(Feature),
    Family(Family),
}

impl FeatureName {
    /// Resolve a name from a feature file; the error says why it is not one.
    pub fn parse(name: &str) -> Result<FeatureName, String> {
        if let Some(f) = Feature::from_name(name) {
            return Ok(FeatureName::Fixed(f));
        }
        if let Some(h) = name.strip_prefix("header:") {
            return HeaderName::from_bytes(h.as_bytes())
                .map(|n| FeatureName::Family(Family::Header(n)))
                .map_err(|_| "not a valid header name".to_owned());
        }
        if let Some(t) = name.strip_prefix("ua_contains:") {
            check_token(t, "token")?;
            return Ok(FeatureName::Family(Family::UaContains(
                t.to_ascii_lowercase(),
            )));
        }
        if let Some(p) = name.strip_prefix("path_prefix:") {
            check_token(p, "prefix")?;
            if !p.starts_with('/') || p.contains(' ') {
                return Err("a path prefix starts with '/' and has no spaces".to_owned());
            }
            return Ok(FeatureName::Family(Family::PathPrefix(p.to_owned())));
        }
        Err("neither a fixed feature nor a family entry".to_owned())
    }

    /// The key two entries collide on: names that mean the same feature (`header:Accept` and
    /// `header:accept`, `ua_contains:Bot` and `ua_contains:bot`) have the same key.
    pub fn key(&self) -> String {
        match self {
            FeatureName::Fixed(f) => f.name().to_owned(),
            FeatureName::Family(Family::Header(h)) => format!("header:{}", h.as_str()),
            FeatureName::Family(Family::UaContains(t)) => format!("ua_contains:{t}"),
            FeatureName::Family(Family::PathPrefix(p)) => format!("path_prefix:{p}"),
        }
    }
}

fn check_token(t: &str, what: &str) -> Result<(), String> {
    if t.is_empty() || t.len() > MAX_TOKEN_BYTES {
        return Err(format!("a {what} is 1 to {MAX_TOKEN_BYTES} bytes"));
    }
    if !t.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(format!("a {what} is printable ASCII"));
    }
    Ok(())
}

/// Tokens that make a user agent an HTTP tool or library (lower-case; searched anywhere in
/// the lower-cased user agent).
const TOOL_TOKENS: [&str; 19] = [
    "curl/",
    "wget/",
    "python-requests/",
    "python-urllib/",
    "go-http-client/",
    "okhttp/",
    "java/",
    "libwww-perl/",
    "httpie/",
    "axios/",
    "node-fetch",
    "aiohttp/",
    "python-httpx/",
    "scrapy/",
    "postmanruntime/",
    "apache-httpclient/",
    "guzzlehttp/",
    "powershell/",
    "libcurl/",
];
/// Browser engine tokens.
const BROWSER_TOKENS: [&str; 4] = ["chrome/", "firefox/", "safari/", "edg/"];
/// Tokens that disqualify a `Mozilla/5.0` user agent from being a browser.
const NOT_BROWSER_TOKENS: [&str; 6] = ["bot", "spider", "crawl", "headless", "slurp", "phantomjs"];

/// Number of class tokens: tool, browser-engine and not-browser tokens, in that order.
pub(crate) const CLASS_TOKEN_COUNT: usize =
    TOOL_TOKENS.len() + BROWSER_TOKENS.len() + NOT_BROWSER_TOKENS.len();

/// The class tokens in pattern-id order (ids `0..CLASS_TOKEN_COUNT`).
pub(crate) fn class_tokens() -> impl Iterator<Item = &'static str> {
    TOOL_TOKENS
        .into_iter()
        .chain(BROWSER_TOKENS)
        .chain(NOT_BROWSER_TOKENS)
}

/// An automaton over the lower-case class tokens, for [`RequestFeatures::compute`]; a model
/// compiles the class tokens together with its own `ua_contains:` tokens instead (one pass).
static CLASS_SEARCH: LazyLock<Option<AhoCorasick>> =
    LazyLock::new(|| ua_automaton(class_tokens()).ok());

/// A case-sensitive automaton reporting every (overlapping) occurrence; patterns are
/// lower-case and the haystack is [`UaLower`].
pub(crate) fn ua_automaton<I, P>(patterns: I) -> Result<AhoCorasick, aho_corasick::BuildError>
where
    I: IntoIterator<Item = P>,
    P: AsRef<[u8]>,
{
    AhoCorasick::builder()
        .match_kind(MatchKind::Standard)
        .build(patterns)
}

/// Which token classes the user agent contains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UaClasses {
    tool: bool,
    browser_engine: bool,
    not_browser: bool,
}

impl UaClasses {
    /// Record a match of class token `id` (`< CLASS_TOKEN_COUNT`).
    pub(crate) fn add(&mut self, id: usize) {
        if id < TOOL_TOKENS.len() {
            self.tool = true;
        } else if id < TOOL_TOKENS.len() + BROWSER_TOKENS.len() {
            self.browser_engine = true;
        } else {
            self.not_browser = true;
        }
    }

    fn of(ua: &UaLower) -> UaClasses {
        let mut c = UaClasses::default();
        if let Some(Ok(matches)) = CLASS_SEARCH
            .as_ref()
            .map(|ac| ac.try_find_overlapping_iter(ua.bytes()))
        {
            for m in matches {
                c.add(m.pattern().as_usize());
            }
        }
        c
    }
}

/// The first [`UA_SCAN_BYTES`] bytes of the user agent, ASCII letters lower-cased (other
/// bytes unchanged), on the stack.
pub(crate) struct UaLower {
    buf: [u8; UA_SCAN_BYTES],
    len: usize,
    /// Length of the whole user agent; `None` when there is none.
    full_len: Option<usize>,
}

impl UaLower {
    pub(crate) fn of(req: &RequestView<'_>) -> UaLower {
        let ua = req.headers.get(header::USER_AGENT).map(|v| v.as_bytes());
        let mut buf = [0u8; UA_SCAN_BYTES];
        let mut len = 0;
        for (d, s) in buf.iter_mut().zip(ua.unwrap_or_default()) {
            *d = s.to_ascii_lowercase();
            len += 1;
        }
        UaLower {
            buf,
            len,
            full_len: ua.map(<[u8]>::len),
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// The fixed features of one request. Built on the stack; nothing is allocated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestFeatures {
    values: [f64; Feature::COUNT],
}

impl RequestFeatures {
    /// Compute every fixed feature. `client_rate` is the count the rate table returned for
    /// this request (0 when the model does not use `client_rate` and the table was not asked);
    /// `ja4h` says whether `ja4h_browser_like` is computed (else 0).
    pub fn compute(req: &RequestView<'_>, client_rate: u32, ja4h: Ja4h) -> RequestFeatures {
        let ua = UaLower::of(req);
        RequestFeatures::compute_with(req, client_rate, ja4h, &ua, UaClasses::of(&ua))
    }

    /// As [`compute`](Self::compute), with the user agent's token classes already found.
    pub(crate) fn compute_with(
        req: &RequestView<'_>,
        client_rate: u32,
        ja4h: Ja4h,
        ua: &UaLower,
        classes: UaClasses,
    ) -> RequestFeatures {
        let h = req.headers;
        let (mut at_ua, mut at_accept, mut at_lang, mut at_enc) = (None, None, None, None);
        let (mut sec_fetch, mut sec_ch_ua) = (false, false);
        for (i, name) in h.keys().enumerate() {
            if name == header::USER_AGENT {
                at_ua = Some(i);
            } else if name == header::ACCEPT {
                at_accept = Some(i);
            } else if name == header::ACCEPT_LANGUAGE {
                at_lang = Some(i);
            } else if name == header::ACCEPT_ENCODING {
                at_enc = Some(i);
            } else {
                let s = name.as_str();
                sec_fetch |= s.starts_with("sec-fetch-");
                sec_ch_ua |= s.starts_with("sec-ch-ua");
            }
        }
        let order_browser = matches!(
            (at_ua, at_accept, at_lang, at_enc),
            (Some(u), Some(a), Some(l), Some(e)) if u < a && a < l && a < e
        );

        let is_tool = classes.tool;
        let is_browser = !is_tool
            && ua.bytes().starts_with(b"mozilla/5.0")
            && classes.browser_engine
            && !classes.not_browser;
        let ua_len = ua.full_len.unwrap_or(0);

        let accept_wildcard = h
            .get(header::ACCEPT)
            .is_some_and(|v| v.as_bytes().trim_ascii() == b"*/*");
        let path_depth = req.path.split('/').filter(|s| !s.is_empty()).count();
        let query_len = req.query.map_or(0, str::len);
        let method_get = req.method == http::Method::GET || req.method == http::Method::HEAD;
        let ja4h_browser = ja4h == Ja4h::On && crate::ja4h::Ja4hA::of(req).browser_like();

        let values = Feature::ALL.map(|f| match f {
            Feature::HeaderCount => capped(h.len(), 100),
            Feature::HeaderOrderBrowser => flag(order_browser),
            Feature::UaIsBrowser => flag(is_browser),
            Feature::UaIsTool => flag(is_tool),
            Feature::UaMissing => flag(ua.full_len.is_none()),
            Feature::UaLength => capped(ua_len, 500) / 100.0,
            Feature::HasAccept => flag(at_accept.is_some()),
            Feature::HasAcceptLanguage => flag(at_lang.is_some()),
            Feature::HasAcceptEncoding => flag(at_enc.is_some()),
            Feature::HasSecFetch => flag(sec_fetch),
            Feature::HasSecChUa => flag(sec_ch_ua),
            Feature::Http2 => flag(req.version >= Version::HTTP_2),
            Feature::Http10 => flag(req.version <= Version::HTTP_10),
            Feature::MethodGet => flag(method_get),
            Feature::HasCookie => flag(h.contains_key(header::COOKIE)),
            Feature::HasReferer => flag(h.contains_key(header::REFERER)),
            Feature::AcceptIsWildcard => flag(accept_wildcard),
            Feature::PathDepth => capped(path_depth, 32),
            Feature::QueryLength => capped(query_len, 1000) / 100.0,
            Feature::ClientRate => (f64::from(client_rate) + 1.0).log2(),
            Feature::Ja4hBrowserLike => flag(ja4h_browser),
            Feature::Tls => flag(req.tls),
        });
        RequestFeatures { values }
    }

    /// The value of one fixed feature.
    pub fn value(&self, f: Feature) -> f64 {
        self.values.get(f.index()).copied().unwrap_or(0.0)
    }

    /// All fixed values, indexed by [`Feature::index`].
    pub fn values(&self) -> &[f64; Feature::COUNT] {
        &self.values
    }
}

impl Family {
    /// Whether this entry matches the request (value 1). The model scores families with
    /// precompiled look-ups that give the same answers; this is the plain definition.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        match self {
            Family::Header(name) => req.headers.contains_key(name),
            Family::UaContains(token) => {
                let ua = req
                    .headers
                    .get(header::USER_AGENT)
                    .map(|v| v.as_bytes())
                    .unwrap_or_default();
                let ua = ua.get(..UA_SCAN_BYTES).unwrap_or(ua);
                let t = token.as_bytes();
                !t.is_empty() && ua.windows(t.len()).any(|w| w.eq_ignore_ascii_case(t))
            }
            Family::PathPrefix(prefix) => req.path.starts_with(prefix.as_str()),
        }
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn capped(n: usize, cap: u32) -> f64 {
    f64::from(u32::try_from(n).unwrap_or(u32::MAX).min(cap))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, Method};
    use std::net::{IpAddr, Ipv4Addr};

    pub(crate) fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        map
    }

    pub(crate) const CURL: &[(&str, &str)] = &[
        ("host", "example.com"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
    ];

    pub(crate) const CHROME: &[(&str, &str)] = &[
        ("host", "example.com"),
        ("connection", "keep-alive"),
        ("sec-ch-ua", "\"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\""),
        ("sec-ch-ua-mobile", "?0"),
        ("sec-ch-ua-platform", "\"Linux\""),
        ("upgrade-insecure-requests", "1"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"),
        ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
        ("sec-fetch-site", "none"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-user", "?1"),
        ("sec-fetch-dest", "document"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("accept-language", "en-US,en;q=0.9"),
        ("cookie", "session=abc; theme=dark"),
    ];

    pub(crate) fn view<'a>(
        method: &'a Method,
        version: Version,
        headers: &'a HeaderMap,
        path: &'a str,
        query: Option<&'a str>,
        tls: bool,
    ) -> RequestView<'a> {
        RequestView {
            method,
            version,
            headers,
            path,
            query,
            client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            tls,
            route: "all",
        }
    }

    #[test]
    fn indices_follow_all() {
        for (i, f) in Feature::ALL.iter().enumerate() {
            assert_eq!(f.index(), i);
            assert_eq!(Feature::from_name(f.name()), Some(*f));
        }
        let mut names: Vec<_> = Feature::ALL.iter().map(|f| f.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Feature::COUNT);
        const { assert!(Feature::COUNT >= 15) };
    }

    #[test]
    fn curl_like_request() {
        let h = headers(CURL);
        let m = Method::GET;
        let req = view(&m, Version::HTTP_11, &h, "/", None, false);
        let x = RequestFeatures::compute(&req, 0, Ja4h::On);
        let expect = [
            (Feature::HeaderCount, 3.0),
            (Feature::HeaderOrderBrowser, 0.0),
            (Feature::UaIsBrowser, 0.0),
            (Feature::UaIsTool, 1.0),
            (Feature::UaMissing, 0.0),
            (Feature::UaLength, 0.1),
            (Feature::HasAccept, 1.0),
            (Feature::HasAcceptLanguage, 0.0),
            (Feature::HasAcceptEncoding, 0.0),
            (Feature::HasSecFetch, 0.0),
            (Feature::HasSecChUa, 0.0),
            (Feature::Http2, 0.0),
            (Feature::Http10, 0.0),
            (Feature::MethodGet, 1.0),
            (Feature::HasCookie, 0.0),
            (Feature::HasReferer, 0.0),
            (Feature::AcceptIsWildcard, 1.0),
            (Feature::PathDepth, 0.0),
            (Feature::QueryLength, 0.0),
            (Feature::ClientRate, 0.0),
            (Feature::Ja4hBrowserLike, 0.0),
            (Feature::Tls, 0.0),
        ];
        assert_eq!(expect.len(), Feature::COUNT);
        for (f, v) in expect {
            assert!(
                (x.value(f) - v).abs() < 1e-9,
                "{}: {} != {v}",
                f.name(),
                x.value(f)
            );
        }
    }

    #[test]
    fn browser_like_request() {
        let h = headers(CHROME);
        let m = Method::GET;
        let req = view(&m, Version::HTTP_11, &h, "/a/b/c", Some("q=rust"), true);
        let x = RequestFeatures::compute(&req, 3, Ja4h::On);
        let expect = [
            (Feature::HeaderCount, 15.0),
            (Feature::HeaderOrderBrowser, 1.0),
            (Feature::UaIsBrowser, 1.0),
            (Feature::UaIsTool, 0.0),
            (Feature::UaMissing, 0.0),
            (Feature::UaLength, 1.01),
            (Feature::HasAccept, 1.0),
            (Feature::HasAcceptLanguage, 1.0),
            (Feature::HasAcceptEncoding, 1.0),
            (Feature::HasSecFetch, 1.0),
            (Feature::HasSecChUa, 1.0),
            (Feature::Http2, 0.0),
            (Feature::Http10, 0.0),
            (Feature::MethodGet, 1.0),
            (Feature::HasCookie, 1.0),
            (Feature::HasReferer, 0.0),
            (Feature::AcceptIsWildcard, 0.0),
            (Feature::PathDepth, 3.0),
            (Feature::QueryLength, 0.06),
            (Feature::ClientRate, 2.0),
            (Feature::Ja4hBrowserLike, 1.0),
            (Feature::Tls, 1.0),
        ];
        for (f, v) in expect {
            assert!(
                (x.value(f) - v).abs() < 1e-9,
                "{}: {} != {v}",
                f.name(),
                x.value(f)
            );
        }
        let ua = Family::UaContains("chrome/124".into());
        assert_eq!(f64::from(u8::from(ua.matches(&req))), 1.0);
        let ua = Family::UaContains("firefox".into());
        assert_eq!(f64::from(u8::from(ua.matches(&req))), 0.0);
        let hdr = Family::Header(HeaderName::from_static("upgrade-insecure-requests"));
        assert_eq!(f64::from(u8::from(hdr.matches(&req))), 1.0);
        assert_eq!(
            f64::from(u8::from(Family::PathPrefix("/a/".into()).matches(&req))),
            1.0
        );
        assert_eq!(
            f64::from(u8::from(Family::PathPrefix("/b".into()).matches(&req))),
            0.0
        );
    }

    #[test]
    fn versions_and_missing_ua() {
        let h = headers(&[("host", "x")]);
        let m = Method::POST;
        let req = view(&m, Version::HTTP_10, &h, "/", None, false);
        let x = RequestFeatures::compute(&req, u32::MAX, Ja4h::On);
        assert_eq!(x.value(Feature::UaMissing), 1.0);
        assert_eq!(x.value(Feature::Http10), 1.0);
        assert_eq!(x.value(Feature::MethodGet), 0.0);
        assert!((x.value(Feature::ClientRate) - 32.0).abs() < 1e-9);
        let req = view(&m, Version::HTTP_2, &h, "/", None, true);
        let x = RequestFeatures::compute(&req, 0, Ja4h::On);
        assert_eq!(x.value(Feature::Http2), 1.0);
        assert_eq!(x.value(Feature::Http10), 0.0);
    }

    #[test]
    fn long_and_non_ascii_user_agents_are_safe() {
        let long = "Mozilla/5.0 ".repeat(200) + "EvilBot";
        let mut h = HeaderMap::new();
        h.insert(header::USER_AGENT, HeaderValue::from_str(&long).unwrap());
        let m = Method::GET;
        let req = view(&m, Version::HTTP_11, &h, "/", None, false);
        let x = RequestFeatures::compute(&req, 0, Ja4h::On);
        assert_eq!(x.value(Feature::UaLength), 5.0);
        // Beyond UA_SCAN_BYTES: not searched.
        assert_eq!(
            f64::from(u8::from(Family::UaContains("evilbot".into()).matches(&req))),
            0.0
        );

        let mut h = HeaderMap::new();
        h.insert(
            header::USER_AGENT,
            HeaderValue::from_bytes(b"Caf\xe9 curl/1.0").unwrap(),
        );
        let req = view(&m, Version::HTTP_11, &h, "/", None, false);
        let x = RequestFeatures::compute(&req, 0, Ja4h::On);
        assert_eq!(x.value(Feature::UaIsTool), 1.0);
    }

    #[test]
    fn names_parse() {
        assert_eq!(
            FeatureName::parse("tls"),
            Ok(FeatureName::Fixed(Feature::Tls))
        );
        let h = FeatureName::parse("header:X-Requested-With").unwrap();
        assert_eq!(h.key(), "header:x-requested-with");
        let u = FeatureName::parse("ua_contains:HeadlessChrome").unwrap();
        assert_eq!(u.key(), "ua_contains:headlesschrome");
        assert!(FeatureName::parse("path_prefix:/wp-admin").is_ok());
        for bad in [
            "nope",
            "header:",
            "header:bad name",
            "ua_contains:",
            "ua_contains:caf\u{e9}",
            "path_prefix:wp-admin",
            "path_prefix:/a b",
            "Header_count",
        ] {
            assert!(FeatureName::parse(bad).is_err(), "{bad}");
        }
        let long = format!("ua_contains:{}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert!(FeatureName::parse(&long).is_err());
    }
}
