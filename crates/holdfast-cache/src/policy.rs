//! The shared-cache rules of RFC 9111 (and the RFC 5861 extensions): may a response be
//! stored (§3), how long is it fresh (§4.2.1, heuristics §4.2.2 only where allowed), how old
//! is it (§4.2.3), and may a stored response answer this request (§4.2, §5.2.1) or an
//! error (RFC 5861 §4, within what §4.2.4 allows). Pure functions of headers and times: no
//! I/O, no clock of its own.

use crate::directives::{delta_seconds, RequestDirectives, ResponseDirectives};
use http::header::{HeaderMap, HeaderName, AUTHORIZATION, CACHE_CONTROL};
use http::{Method, StatusCode};
use std::time::{Duration, SystemTime};

/// RFC 9213's own targeted field.
pub static CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");

/// Heuristic freshness is at most a day, as most caches cap it.
const HEURISTIC_CAP: u64 = 86_400;

/// The operator's choices that the RFC leaves to the cache.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Heuristic freshness for responses with no explicit lifetime (§4.2.2).
    pub heuristic: bool,
    /// Seconds past freshness a response may be served when the origin fails, even without
    /// `stale-if-error` from the origin (never where §4.2.4 forbids stale responses).
    pub stale_on_error: u64,
    /// A targeted field (RFC 9213) checked before `CDN-Cache-Control`.
    pub targeted_field: Option<HeaderName>,
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    Method,
    Status,
    NoStore,
    Private,
    Authorization,
    SetCookie,
    VaryStar,
    /// Nothing in the response allows storing it (§3: no explicit lifetime, `public` or
    /// heuristically cacheable status).
    NotCacheable,
    /// Storable, but fresh for no time and without a validator: useless to keep.
    Useless,
}

impl NotStorable {
    /// For `Cache-Status`'s `detail`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotStorable::Method => "method",
            NotStorable::Status => "status",
            NotStorable::NoStore => "no-store",
            NotStorable::Private => "private",
            NotStorable::Authorization => "authorization",
            NotStorable::SetCookie => "set-cookie",
            NotStorable::VaryStar => "vary-star",
            NotStorable::NotCacheable => "not-cacheable",
            NotStorable::Useless => "no-lifetime",
        }
    }
}

/// The freshness facts of a stored response, in whole seconds as the RFC counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    pub lifetime: u64,
    pub corrected_initial_age: u64,
    pub response_time: SystemTime,
    pub directives: ResponseDirectives,
}

/// What a stored response may do for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Serve it: fresh, or stale within the request's `max-stale`.
    Serve,
    /// Serve it stale and refresh it in the background (`stale-while-revalidate`).
    ServeStale,
    /// Ask the origin first (conditionally when it has validators).
    Validate,
}

/// The directives that govern this cache: the first targeted field with directives (the
/// configured one, then `CDN-Cache-Control`), else `Cache-Control`. The bool says whether
/// a targeted field was used (then `Expires` is ignored, RFC 9213 §2.2).
pub fn response_directives(headers: &HeaderMap, opts: &Options) -> (ResponseDirectives, bool) {
    let targeted = opts
        .targeted_field
        .iter()
        .chain(std::iter::once(&CDN_CACHE_CONTROL));
    for field in targeted {
        if ResponseDirectives::present(headers, field) {
            return (ResponseDirectives::parse(headers, field), true);
        }
    }
    (ResponseDirectives::parse(headers, &CACHE_CONTROL), false)
}

/// §3: may a shared cache store this response to this request? On success, its freshness.
pub fn storable(
    method: &Method,
    req: &HeaderMap,
    status: StatusCode,
    resp: &HeaderMap,
    times: (SystemTime, SystemTime),
    opts: &Options,
) -> Result<Freshness, NotStorable> {
    if method != Method::GET {
        return Err(NotStorable::Method);
    }
    if RequestDirectives::parse(req).no_store {
        return Err(NotStorable::NoStore);
    }
    let (d, targeted) = response_directives(resp, opts);
    if !understood(status) {
        return Err(NotStorable::Status);
    }
    // `must-understand` with an understood status overrides `no-store` (§5.2.2.3).
    if d.no_store && !d.must_understand {
        return Err(NotStorable::NoStore);
    }
    if d.private {
        return Err(NotStorable::Private);
    }
    if req.contains_key(AUTHORIZATION) && !(d.public || d.s_maxage.is_some() || d.must_revalidate) {
        return Err(NotStorable::Authorization);
    }
    if resp.contains_key(http::header::SET_COOKIE) {
        return Err(NotStorable::SetCookie);
    }
    if vary_star(resp) {
        return Err(NotStorable::VaryStar);
    }
    let expires = !targeted && resp.contains_key(http::header::EXPIRES);
    let explicit = d.max_age.is_some() || d.s_maxage.is_some() || expires || d.invalid_age;
    if !(explicit || d.public || heuristically_cacheable(status)) {
        return Err(NotStorable::NotCacheable);
    }
    let fresh = freshness(status, resp, d, targeted, times, opts);
    let validator =
        resp.contains_key(http::header::ETAG) || resp.contains_key(http::header::LAST_MODIFIED);
    if fresh.lifetime == 0 && !validator && fresh.stale_ceiling(opts) == 0 {
        return Err(NotStorable::Useless);
    }
    Ok(fresh)
}

/// Status codes this cache understands well enough to store (§3): final, not partial, not
/// a 304 (which only updates).
pub fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203
            | 204
            | 300
            | 301
            | 302
            | 303
            | 307
            | 308
            | 400
            | 403
            | 404
            | 405
            | 410
            | 414
            | 451
            | 500
            | 501
            | 502
            | 503
            | 504
    )
}

/// §4.2.2: statuses that are heuristically cacheable (RFC 9110 §15.1), less 206.
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

pub fn vary_star(resp: &HeaderMap) -> bool {
    resp.get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim() == "*"))
}

fn date(headers: &HeaderMap, name: http::header::HeaderName) -> Option<SystemTime> {
    let v = headers.get(name)?.to_str().ok()?;
    httpdate::parse_http_date(v).ok()
}

fn secs_between(later: SystemTime, earlier: SystemTime) -> u64 {
    later.duration_since(earlier).map_or(0, |d| d.as_secs())
}

/// §4.2.1 and §4.2.3 for a response received at `response_time` to a request sent at
/// `request_time`.
pub fn freshness(
    status: StatusCode,
    resp: &HeaderMap,
    d: ResponseDirectives,
    targeted: bool,
    (request_time, response_time): (SystemTime, SystemTime),
    opts: &Options,
) -> Freshness {
    let date_value = date(resp, http::header::DATE).unwrap_or(response_time);
    let lifetime = if d.invalid_age {
        0
    } else if let Some(s) = d.s_maxage {
        s
    } else if let Some(m) = d.max_age {
        m
    } else if !targeted && resp.contains_key(http::header::EXPIRES) {
        // An invalid date (e.g. "0") means already expired (§5.3).
        date(resp, http::header::EXPIRES).map_or(0, |e| secs_between(e, date_value))
    } else if opts.heuristic && (d.public || heuristically_cacheable(status)) {
        date(resp, http::header::LAST_MODIFIED).map_or(0, |lm| {
            (secs_between(date_value, lm) / 10).min(HEURISTIC_CAP)
        })
    } else {
        0
    };
    let age_value = resp
        .get(http::header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| delta_seconds(v.trim()))
        .unwrap_or(0);
    let apparent_age = secs_between(response_time, date_value);
    let response_delay = secs_between(response_time, request_time);
    let corrected_age_value = age_value.saturating_add(response_delay);
    Freshness {
        lifetime,
        corrected_initial_age: apparent_age.max(corrected_age_value),
        response_time,
        directives: d,
    }
}

impl Freshness {
    /// `current_age` (§4.2.3).
    pub fn age(&self, now: SystemTime) -> u64 {
        self.corrected_initial_age
            .saturating_add(secs_between(now, self.response_time))
    }

    /// Seconds of freshness left; negative when stale.
    pub fn ttl(&self, now: SystemTime) -> i64 {
        let age = i64::try_from(self.age(now)).unwrap_or(i64::MAX);
        i64::try_from(self.lifetime)
            .unwrap_or(i64::MAX)
            .saturating_sub(age)
    }

    pub fn is_fresh(&self, now: SystemTime) -> bool {
        self.lifetime > self.age(now)
    }

    /// §4.2.4: the response forbids serving it stale (`must-revalidate`, `proxy-revalidate`,
    /// `s-maxage` — which implies `proxy-revalidate` for a shared cache — and `no-cache`).
    pub fn stale_forbidden(&self) -> bool {
        let d = &self.directives;
        d.must_revalidate || d.proxy_revalidate || d.s_maxage.is_some() || d.no_cache
    }

    /// How stale it may be served when the origin fails (RFC 5861 §4 plus the operator's
    /// ceiling), in seconds.
    pub fn stale_ceiling(&self, opts: &Options) -> u64 {
        if self.stale_forbidden() {
            return 0;
        }
        self.directives
            .stale_if_error
            .unwrap_or(0)
            .max(opts.stale_on_error)
    }

    /// How long to keep it: fresh life plus every window in which it may still be served
    /// or revalidated.
    pub fn keep_for(&self, opts: &Options, validator: bool) -> Duration {
        let swr = if self.stale_forbidden() {
            0
        } else {
            self.directives.stale_while_revalidate.unwrap_or(0)
        };
        let stale = swr.max(self.stale_ceiling(opts));
        // With a validator a stale entry still saves a full fetch: keep it a while.
        let revalidate = if validator {
            self.lifetime.max(3600)
        } else {
            0
        };
        let remaining = self.lifetime.saturating_sub(self.corrected_initial_age);
        Duration::from_secs(remaining.saturating_add(stale.max(revalidate)))
    }

    /// §4.2 and §5.2.1: may this stored response answer a request with these directives?
    pub fn usable(&self, req: &RequestDirectives, now: SystemTime) -> Use {
        let d = &self.directives;
        if d.no_cache || d.invalid_age || req.no_cache {
            return Use::Validate;
        }
        let age = self.age(now);
        if req.max_age.is_some_and(|m| age > m) {
            return Use::Validate;
        }
        if self.lifetime > age {
            let left = self.lifetime - age;
            if req.min_fresh.is_some_and(|f| left < f) {
                return Use::Validate;
            }
            return Use::Serve;
        }
        if self.stale_forbidden() || req.min_fresh.is_some() {
            return Use::Validate;
        }
        let staleness = age - self.lifetime;
        if req.max_stale.is_some_and(|s| staleness <= s) {
            return Use::Serve;
        }
        if d.stale_while_revalidate.is_some_and(|s| staleness <= s) {
            return Use::ServeStale;
        }
        Use::Validate
    }

    /// RFC 5861 §4: may it answer in place of an origin error?
    pub fn usable_on_error(&self, opts: &Options, now: SystemTime) -> bool {
        let age = self.age(now);
        age < self.lifetime || age - self.lifetime <= self.stale_ceiling(opts)
    }
}

#[cfg(test)]
mod tests;
