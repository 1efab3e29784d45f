//! The cache phase of a route with `cache`: answer from the store when a stored response
//! may be used (`hit`, or stale while one background refresh runs), else forward —
//! coalescing concurrent misses of a key behind one fetch, conditionally when the stored
//! response has validators — and then freshen on 304, serve stale on an origin failure
//! where allowed, or store the new response while it streams to the client. Unsafe methods
//! invalidate the target URI and same-origin `Location`/`Content-Location`. The RFC rules
//! themselves live in `holdfast-cache`; this module only moves requests and bodies.

use crate::body::{ClientBody, ResponseBody, Tap};
use crate::ctx::{CacheResult, RequestCtx};
use crate::error::ProxyError;
use crate::phases::{headers, upstream};
use crate::state::{RouteRt, State};
use bytes::{Bytes, BytesMut};
use holdfast_cache::store::{self, FillLock};
use holdfast_cache::{
    key, policy, vary, Cache, CacheStatus, Entry, Fwd, Lock, RequestDirectives, Use, CACHE_STATUS,
};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use std::sync::Arc;
use std::time::SystemTime;

pub(crate) async fn handle(
    state: &Arc<State>,
    route: &RouteRt,
    cache: &Arc<Cache>,
    req: Request<ClientBody>,
    ctx: &mut RequestCtx,
) -> Result<Response<ResponseBody>, ProxyError> {
    let resp = lookup_or_fetch(state, route, cache, req, ctx).await;
    if let Ok(r) = &resp {
        ctx.cache.result = r.headers().get(&CACHE_STATUS).map(|v| result(v.as_bytes()));
    }
    resp
}

/// The access log's one word for the last `Cache-Status` member (ours).
fn result(status: &[u8]) -> CacheResult {
    let ours = status.rsplit(|b| *b == b',').next().unwrap_or(status);
    let has = |needle: &[u8]| ours.windows(needle.len()).any(|w| w == needle);
    if has(b"stale-while-revalidate") || has(b"stale-if-error") {
        CacheResult::Stale
    } else if has(b"; hit") {
        CacheResult::Hit
    } else if has(b"fwd-status=304") {
        CacheResult::Revalidated
    } else if has(b"fwd=method") {
        CacheResult::Pass
    } else {
        CacheResult::Miss
    }
}

async fn lookup_or_fetch(
    state: &Arc<State>,
    route: &RouteRt,
    cache: &Arc<Cache>,
    req: Request<ClientBody>,
    ctx: &mut RequestCtx,
) -> Result<Response<ResponseBody>, ProxyError> {
    let method = req.method().clone();
    if method != Method::GET && method != Method::HEAD {
        return forward_unsafe(state, route, cache, req, ctx).await;
    }
    let key = key::of_request(
        &cache.config.key,
        ctx.conn.tls,
        ctx.host_name(),
        ctx.path.as_str(),
    );
    let directives = RequestDirectives::parse(req.headers());
    let now = SystemTime::now();
    let (mut found, uri_known) = lookup(cache, &key, req.headers());
    if !uri_known && cache.store.disk.is_some() {
        found = from_disk(cache, &key, req.headers()).await;
    }
    if let Some(entry) = &found {
        match entry.usable(&directives, now) {
            Use::Serve => {
                cache.stats().count_hit();
                let status = CacheStatus::hit(entry.freshness.ttl(now));
                return Ok(from_entry(entry, &method, req.headers(), now, &status));
            }
            Use::ServeStale => {
                cache.stats().count_swr();
                if entry.claim_refresh() {
                    spawn_refresh(state, route.name.clone(), cache, &key, entry, &req, ctx);
                }
                let status =
                    CacheStatus::hit(entry.freshness.ttl(now)).detail("stale-while-revalidate");
                return Ok(from_entry(entry, &method, req.headers(), now, &status));
            }
            Use::Validate => {}
        }
    }
    if directives.only_if_cached {
        return Ok(only_if_cached());
    }
    let mut lock = None;
    let mut collapsed = false;
    if found.is_none() && method == Method::GET {
        match cache.store.lock(&key) {
            Lock::Leader(l) => lock = Some(l),
            Lock::Wait(rx) => {
                cache.stats().count_coalesced();
                collapsed = true;
                if store::wait(rx, cache.config.lock_timeout).await {
                    let now = SystemTime::now();
                    let (again, _) = lookup(cache, &key, req.headers());
                    if let Some(e) = again.filter(|e| e.usable(&directives, now) == Use::Serve) {
                        cache.stats().count_hit();
                        let mut status = CacheStatus::hit(e.freshness.ttl(now));
                        status.collapsed = true;
                        return Ok(from_entry(&e, &method, req.headers(), now, &status));
                    }
                }
            }
        }
    }
    let fwd = match (&found, uri_known) {
        _ if directives.no_cache => Fwd::Request,
        (Some(_), _) => Fwd::Stale,
        (None, true) => Fwd::VaryMiss,
        (None, false) => Fwd::UriMiss,
    };
    let fetch = Fetch {
        cache,
        key,
        found,
        lock,
        fwd,
        collapsed,
    };
    fetch.run(state, route, req, ctx).await
}

/// The stored variant of `key` whose selecting request values match, and whether the URI
/// had any variant at all (for `fwd=vary-miss`).
fn lookup(cache: &Cache, key: &str, req: &HeaderMap) -> (Option<Arc<Entry>>, bool) {
    let Some(variants) = cache.store.get(key) else {
        return (None, false);
    };
    let found = variants
        .iter()
        .rev()
        .find(|e| vary::matches(&e.selected, req))
        .cloned();
    (found, true)
}

/// The disk tier's copy of `key`, read on the blocking pool (never on a worker thread);
/// only when it matches this request's selecting values.
async fn from_disk(cache: &Arc<Cache>, key: &str, req: &HeaderMap) -> Option<Arc<Entry>> {
    let (c, k) = (Arc::clone(cache), key.to_owned());
    let loaded = tokio::task::spawn_blocking(move || c.store.load_from_disk(&k, &c.options));
    loaded
        .await
        .ok()
        .flatten()
        .filter(|e| vary::matches(&e.selected, req))
}

struct Fetch<'c> {
    cache: &'c Arc<Cache>,
    key: String,
    found: Option<Arc<Entry>>,
    lock: Option<FillLock>,
    fwd: Fwd,
    collapsed: bool,
}

impl Fetch<'_> {
    async fn run(
        self,
        state: &Arc<State>,
        route: &RouteRt,
        req: Request<ClientBody>,
        ctx: &mut RequestCtx,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        let client_headers = parts.headers.clone();
        let method = parts.method.clone();
        let client_conditional = client_headers.contains_key(header::IF_NONE_MATCH)
            || client_headers.contains_key(header::IF_MODIFIED_SINCE);
        let validating = self
            .found
            .as_ref()
            .filter(|e| e.has_validator() && e.status == StatusCode::OK && !client_conditional);
        if let Some(e) = validating {
            add_validators(&mut parts.headers, e);
        }
        if method == Method::GET {
            // A full response is fetched and stored; the range is cut from it.
            parts.headers.remove(header::RANGE);
            parts.headers.remove(header::IF_RANGE);
        }
        let validated = validating.is_some();
        let request_time = SystemTime::now();
        let req = Request::from_parts(parts, Some(body));
        let result = upstream::forward(state, route, req, ctx).await;
        let now = SystemTime::now();
        match result {
            Err(e) => match self.stale_on_error(&method, &client_headers, now, None) {
                Some(resp) => Ok(resp),
                None => Err(e),
            },
            Ok(resp) if is_origin_error(resp.status()) => {
                let code = resp.status().as_u16();
                match self.stale_on_error(&method, &client_headers, now, Some(code)) {
                    Some(stale) => Ok(stale),
                    None => Ok(with_status(resp, &self.status())),
                }
            }
            Ok(resp) if resp.status() == StatusCode::NOT_MODIFIED && validated => {
                Ok(self.freshen(resp, &method, &client_headers, (request_time, now)))
            }
            Ok(resp) => Ok(self.store(resp, &method, &client_headers, (request_time, now))),
        }
    }

    fn status(&self) -> CacheStatus {
        let mut s = CacheStatus::fwd(self.fwd);
        s.collapsed = self.collapsed;
        s
    }

    /// RFC 5861 `stale-if-error` and the route's `serve_stale_on_error`.
    fn stale_on_error(
        &self,
        method: &Method,
        req: &HeaderMap,
        now: SystemTime,
        code: Option<u16>,
    ) -> Option<Response<ResponseBody>> {
        let entry = self.found.as_ref()?;
        if !entry.freshness.usable_on_error(&self.cache.options, now) {
            return None;
        }
        let ttl = entry.freshness.ttl(now);
        // Still fresh by its own lifetime (the client's directives sent the request on):
        // not stale, so not labelled or counted as stale-if-error.
        let mut status = if ttl > 0 {
            CacheStatus::fwd(Fwd::Request).detail("origin-error")
        } else {
            self.cache.stats().count_stale_if_error();
            CacheStatus::fwd(Fwd::Stale).detail("stale-if-error")
        };
        status.fwd_status = code;
        status.ttl = Some(ttl);
        Some(from_entry(entry, method, req, now, &status))
    }

    /// §4.3.4: a 304 to our conditional request updates the stored headers and freshness.
    fn freshen(
        &self,
        resp: Response<ResponseBody>,
        method: &Method,
        req: &HeaderMap,
        times: (SystemTime, SystemTime),
    ) -> Response<ResponseBody> {
        let stats = self.cache.stats();
        stats.count_revalidation();
        stats.count_not_modified();
        let Some(old) = &self.found else {
            return resp;
        };
        let mut headers = old.headers.clone();
        for (name, value) in resp.headers() {
            if !matches!(
                *name,
                header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::CONTENT_RANGE
            ) && name != CACHE_STATUS
            {
                headers.insert(name.clone(), value.clone());
            }
        }
        let (d, targeted) = policy::response_directives(&headers, &self.cache.options);
        let fresh = policy::freshness(
            old.status,
            &headers,
            d,
            targeted,
            times,
            &self.cache.options,
        );
        let entry = Arc::new(Entry::new(
            old.status,
            headers,
            old.body.clone(),
            fresh,
            old.selected.clone(),
        ));
        let keep = entry.keep_for(&self.cache.options);
        self.cache.store.insert(&self.key, Arc::clone(&entry), keep);
        let now = times.1;
        let mut status = CacheStatus::fwd(self.fwd);
        status.fwd_status = Some(304);
        status.ttl = Some(entry.freshness.ttl(now));
        from_entry(&entry, method, req, now, &status)
    }

    /// A new response: stored while it streams when the policy allows and it fits.
    fn store(
        self,
        resp: Response<ResponseBody>,
        method: &Method,
        req: &HeaderMap,
        times: (SystemTime, SystemTime),
    ) -> Response<ResponseBody> {
        let cache = self.cache;
        if self.found.is_some() {
            cache.stats().count_revalidation();
        } else {
            cache.stats().count_miss();
        }
        let mut status = self.status();
        let opts = &cache.options;
        let verdict = policy::storable(method, req, resp.status(), resp.headers(), times, opts);
        let fresh = match verdict {
            Ok(f) => f,
            Err(why) => {
                status.detail = Some(why.as_str());
                return with_status(resp, &status);
            }
        };
        let max = cache.config.max_object_size;
        let length = headers::content_length(resp.headers());
        if length.is_some_and(|n| n > max) {
            cache.stats().count_too_large();
            status.detail = Some("too-large");
            return with_status(resp, &status);
        }
        let mut headers = resp.headers().clone();
        headers.remove(&CACHE_STATUS);
        let selected = vary::select(resp.headers(), &cache.config.key.headers, req);
        status.stored = true;
        status.ttl = Some(fresh.ttl(times.1));
        let fill = Fill {
            cache: Arc::clone(cache),
            key: self.key,
            status: resp.status(),
            headers,
            fresh,
            selected,
            buf: BytesMut::with_capacity(length.unwrap_or(0) as usize),
            max,
            _lock: self.lock,
        };
        let mut resp = with_status(resp, &status);
        resp.body_mut().set_tap(Box::new(fill));
        resp
    }
}

/// Copies the body as it streams to the client and stores the entry at its end.
struct Fill {
    cache: Arc<Cache>,
    key: String,
    status: StatusCode,
    headers: HeaderMap,
    fresh: holdfast_cache::Freshness,
    selected: vary::Selected,
    buf: BytesMut,
    max: u64,
    // Held until the entry is stored (or the fill is given up): waiters then look again.
    _lock: Option<FillLock>,
}

impl Tap for Fill {
    fn data(&mut self, data: &Bytes) -> bool {
        if (self.buf.len() + data.len()) as u64 > self.max {
            self.cache.stats().count_too_large();
            return false;
        }
        self.buf.extend_from_slice(data);
        true
    }

    fn end(self: Box<Self>) {
        let Fill {
            cache,
            key,
            status,
            headers,
            fresh,
            selected,
            buf,
            ..
        } = *self;
        let entry = Entry::new(status, headers, buf.freeze(), fresh, selected);
        let keep = entry.keep_for(&cache.options);
        cache.store.insert(&key, Arc::new(entry), keep);
        cache.stats().count_stored();
    }
}

fn is_origin_error(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

fn add_validators(headers: &mut HeaderMap, entry: &Entry) {
    if let Some(etag) = entry.headers.get(header::ETAG) {
        headers.insert(header::IF_NONE_MATCH, etag.clone());
    }
    if let Some(lm) = entry.headers.get(header::LAST_MODIFIED) {
        headers.insert(header::IF_MODIFIED_SINCE, lm.clone());
    }
}

fn with_status(mut resp: Response<ResponseBody>, status: &CacheStatus) -> Response<ResponseBody> {
    resp.headers_mut().append(&CACHE_STATUS, status.to_header());
    resp
}

fn from_entry(
    entry: &Entry,
    method: &Method,
    req: &HeaderMap,
    now: SystemTime,
    status: &CacheStatus,
) -> Response<ResponseBody> {
    let served = holdfast_cache::respond(entry, method, req, now);
    let mut resp = Response::new(ResponseBody::full(served.body));
    *resp.status_mut() = served.status;
    *resp.headers_mut() = served.headers;
    with_status(resp, status)
}

/// §5.2.1.7: nothing stored may answer and the client forbids asking the origin.
fn only_if_cached() -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full("not in cache\n"));
    *resp.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    with_status(
        resp,
        &CacheStatus::fwd(Fwd::UriMiss).detail("only-if-cached"),
    )
}

/// Unsafe methods go to the origin; a non-error answer invalidates the target URI and the
/// same-origin `Location` and `Content-Location` (RFC 9111 §4.4).
async fn forward_unsafe(
    state: &Arc<State>,
    route: &RouteRt,
    cache: &Cache,
    req: Request<ClientBody>,
    ctx: &mut RequestCtx,
) -> Result<Response<ResponseBody>, ProxyError> {
    let safe = req.method().is_safe();
    let resp = upstream::forward(state, route, req.map(Some), ctx).await?;
    let ok = resp.status().is_success() || resp.status().is_redirection();
    if !safe && ok {
        let host = ctx.host_name().to_owned();
        let cfg = &cache.config.key;
        let tls = ctx.conn.tls;
        cache
            .store
            .invalidate(&key::of_request(cfg, tls, &host, ctx.path.as_str()));
        for field in [header::LOCATION, header::CONTENT_LOCATION] {
            let target = resp.headers().get(field).and_then(|v| v.to_str().ok());
            if let Some(path) = target.and_then(|t| same_origin_path(t, &host)) {
                // Stored under the normalised path, as every request is.
                let normal = http::uri::PathAndQuery::try_from(path).ok().and_then(|pq| {
                    // As in purge.rs: computing a key takes no risk.
                    let keep = holdfast_config::EncodedSlashes::Keep;
                    crate::phases::path::normalise(&pq, keep).ok().flatten()
                });
                let path = normal.as_ref().map_or(path, |pq| pq.as_str());
                cache
                    .store
                    .invalidate(&key::of_request(cfg, tls, &host, path));
            }
        }
        cache.stats().count_invalidation();
    }
    Ok(with_status(resp, &CacheStatus::fwd(Fwd::Method)))
}

/// The path of a `Location`-like reference when it names the request's own origin.
fn same_origin_path<'a>(target: &'a str, host: &str) -> Option<&'a str> {
    if target.starts_with('/') && !target.starts_with("//") {
        return Some(target);
    }
    let rest = target
        .strip_prefix("https://")
        .or_else(|| target.strip_prefix("http://"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let name = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    name.eq_ignore_ascii_case(host)
        .then_some(if path.is_empty() { "/" } else { path })
}

/// `stale-while-revalidate`: one conditional fetch in the background; its result replaces
/// the entry (or freshens it on 304). Failures leave the stale entry as it was.
fn spawn_refresh(
    state: &Arc<State>,
    route_name: Arc<str>,
    cache: &Arc<Cache>,
    key: &str,
    entry: &Arc<Entry>,
    req: &Request<ClientBody>,
    ctx: &RequestCtx,
) {
    let mut builder = Request::builder().method(Method::GET).uri(ctx.path.clone());
    if let Some(h) = builder.headers_mut() {
        for (name, value) in req.headers() {
            if !matches!(
                *name,
                header::RANGE
                    | header::IF_RANGE
                    | header::IF_NONE_MATCH
                    | header::IF_MODIFIED_SINCE
                    | header::CACHE_CONTROL
                    | header::CONTENT_LENGTH
            ) {
                h.append(name.clone(), value.clone());
            }
        }
    }
    let Ok(refresh) = builder.body(()) else {
        entry.release_refresh();
        return;
    };
    let state = Arc::clone(state);
    let cache = Arc::clone(cache);
    let entry = Arc::clone(entry);
    let key = key.to_owned();
    let mut rctx = RequestCtx::new(&refresh, ctx.conn.clone());
    rctx.route.index = ctx.route.index;
    tokio::spawn(async move {
        let Some(route) = state.routes.iter().find(|r| *r.name == *route_name) else {
            entry.release_refresh();
            return;
        };
        let fetch = Fetch {
            cache: &cache,
            key,
            found: Some(Arc::clone(&entry)),
            lock: None,
            fwd: Fwd::Stale,
            collapsed: false,
        };
        let (mut parts, ()) = refresh.into_parts();
        add_validators(&mut parts.headers, &entry);
        let client = parts.headers.clone();
        let request_time = SystemTime::now();
        let req = Request::from_parts(parts, None);
        let result = upstream::forward(&state, route, req, &mut rctx).await;
        let times = (request_time, SystemTime::now());
        match result {
            Ok(resp) if resp.status() == StatusCode::NOT_MODIFIED => {
                drop(fetch.freshen(resp, &Method::GET, &client, times));
            }
            Ok(resp) if !is_origin_error(resp.status()) => {
                let resp = fetch.store(resp, &Method::GET, &client, times);
                // Read it through so the fill stores it.
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            }
            _ => {}
        }
        entry.release_refresh();
    });
}

#[cfg(test)]
mod tests {
    use super::result;

    #[test]
    fn one_word_per_cache_status() {
        assert_eq!(result(b"holdfast; hit; ttl=5").as_str(), "hit");
        assert_eq!(
            result(b"holdfast; hit; ttl=-5; detail=stale-while-revalidate").as_str(),
            "stale"
        );
        assert_eq!(
            result(b"holdfast; fwd=stale; fwd-status=503; detail=stale-if-error").as_str(),
            "stale"
        );
        assert_eq!(
            result(b"holdfast; fwd=stale; fwd-status=304; ttl=60").as_str(),
            "revalidated"
        );
        assert_eq!(
            result(b"origin-cache; hit, holdfast; fwd=uri-miss; stored").as_str(),
            "miss"
        );
        assert_eq!(result(b"holdfast; fwd=method").as_str(), "pass");
    }
}
