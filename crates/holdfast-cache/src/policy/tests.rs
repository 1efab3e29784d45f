//! Unit tests of the policy, and a property test against a small reference model written
//! from the RFC 9111 text (§3, §4.2.1, §4.2.2, §4.2.4, §5.2).

use super::*;
use http::HeaderValue;
use proptest::prelude::*;
use std::time::{Duration, UNIX_EPOCH};

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn hdrs(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn opts() -> Options {
    Options {
        heuristic: true,
        ..Options::default()
    }
}

fn store(resp: &[(&str, &str)]) -> Result<Freshness, NotStorable> {
    storable(
        &Method::GET,
        &HeaderMap::new(),
        StatusCode::OK,
        &hdrs(resp),
        (t(0), t(0)),
        &opts(),
    )
}

#[test]
fn s_maxage_beats_max_age_beats_expires() {
    let date = httpdate::fmt_http_date(t(0));
    let exp = httpdate::fmt_http_date(t(500));
    let f = store(&[
        ("cache-control", "max-age=10, s-maxage=20"),
        ("date", &date),
        ("expires", &exp),
    ]);
    assert_eq!(f.unwrap().lifetime, 20);
    let f = store(&[
        ("cache-control", "max-age=10"),
        ("date", &date),
        ("expires", &exp),
    ]);
    assert_eq!(f.unwrap().lifetime, 10);
    let f = store(&[("date", &date), ("expires", &exp)]);
    assert_eq!(f.unwrap().lifetime, 500);
}

#[test]
fn invalid_expires_is_already_expired() {
    let f = store(&[("expires", "0"), ("etag", "\"a\"")]).unwrap();
    assert_eq!(f.lifetime, 0);
}

#[test]
fn age_header_and_delay_count() {
    let date = httpdate::fmt_http_date(t(0));
    let resp = hdrs(&[
        ("cache-control", "max-age=100"),
        ("age", "30"),
        ("date", &date),
    ]);
    let f = storable(
        &Method::GET,
        &HeaderMap::new(),
        StatusCode::OK,
        &resp,
        (t(0), t(2)),
        &opts(),
    )
    .unwrap();
    // corrected_initial_age = max(apparent 2, 30 + delay 2) = 32.
    assert_eq!(f.age(t(2)), 32);
    assert_eq!(f.ttl(t(12)), 100 - 42);
}

#[test]
fn heuristic_only_for_allowed_statuses_and_configurable() {
    let date = httpdate::fmt_http_date(t(1000));
    let lm = httpdate::fmt_http_date(t(0));
    let resp = hdrs(&[("date", &date), ("last-modified", &lm)]);
    let ok = storable(
        &Method::GET,
        &HeaderMap::new(),
        StatusCode::OK,
        &resp,
        (t(1000), t(1000)),
        &opts(),
    );
    assert_eq!(ok.unwrap().lifetime, 100);
    let found = storable(
        &Method::GET,
        &HeaderMap::new(),
        StatusCode::FOUND,
        &resp,
        (t(1000), t(1000)),
        &opts(),
    );
    assert_eq!(found, Err(NotStorable::NotCacheable));
    let off = Options::default();
    let ok = storable(
        &Method::GET,
        &HeaderMap::new(),
        StatusCode::OK,
        &resp,
        (t(1000), t(1000)),
        &off,
    );
    assert_eq!(ok.unwrap().lifetime, 0, "stored for validation only");
}

#[test]
fn refusals() {
    assert_eq!(
        store(&[("cache-control", "no-store, max-age=5")]),
        Err(NotStorable::NoStore)
    );
    assert_eq!(
        store(&[("cache-control", "private, max-age=5")]),
        Err(NotStorable::Private)
    );
    assert_eq!(
        store(&[("cache-control", "max-age=5"), ("set-cookie", "a=b")]),
        Err(NotStorable::SetCookie)
    );
    assert_eq!(
        store(&[("cache-control", "max-age=5"), ("vary", "accept, *")]),
        Err(NotStorable::VaryStar)
    );
    assert_eq!(store(&[]), Err(NotStorable::Useless));
    let post = storable(
        &Method::POST,
        &HeaderMap::new(),
        StatusCode::OK,
        &hdrs(&[("cache-control", "max-age=5")]),
        (t(0), t(0)),
        &opts(),
    );
    assert_eq!(post, Err(NotStorable::Method));
}

#[test]
fn authorization_needs_explicit_permission() {
    let req = hdrs(&[("authorization", "Basic eA==")]);
    let st = |cc: &str| {
        storable(
            &Method::GET,
            &req,
            StatusCode::OK,
            &hdrs(&[("cache-control", cc)]),
            (t(0), t(0)),
            &opts(),
        )
    };
    assert_eq!(st("max-age=60"), Err(NotStorable::Authorization));
    assert!(st("max-age=60, public").is_ok());
    assert!(st("s-maxage=60").is_ok());
    assert!(st("max-age=60, must-revalidate").is_ok());
}

#[test]
fn targeted_fields_take_precedence_and_drop_expires() {
    let date = httpdate::fmt_http_date(t(0));
    let exp = httpdate::fmt_http_date(t(500));
    let resp = hdrs(&[
        ("cache-control", "no-store"),
        ("cdn-cache-control", "max-age=30"),
        ("date", &date),
        ("expires", &exp),
    ]);
    let f = storable(
        &Method::GET,
        &HeaderMap::new(),
        StatusCode::OK,
        &resp,
        (t(0), t(0)),
        &opts(),
    )
    .unwrap();
    assert_eq!(f.lifetime, 30);
    let mut o = opts();
    o.targeted_field = Some(HeaderName::from_static("holdfast-cache-control"));
    let mut resp = resp;
    resp.insert(
        "holdfast-cache-control",
        HeaderValue::from_static("no-store"),
    );
    let r = storable(
        &Method::GET,
        &HeaderMap::new(),
        StatusCode::OK,
        &resp,
        (t(0), t(0)),
        &o,
    );
    assert_eq!(r, Err(NotStorable::NoStore));
}

#[test]
fn request_directives_decide_use() {
    let f = store(&[("cache-control", "max-age=100, stale-while-revalidate=50")]).unwrap();
    let rd = |cc: &str| RequestDirectives::parse(&hdrs(&[("cache-control", cc)]));
    assert_eq!(f.usable(&rd(""), t(10)), Use::Serve);
    assert_eq!(f.usable(&rd("no-cache"), t(10)), Use::Validate);
    assert_eq!(f.usable(&rd("max-age=5"), t(10)), Use::Validate);
    assert_eq!(f.usable(&rd("min-fresh=95"), t(10)), Use::Validate);
    assert_eq!(f.usable(&rd(""), t(120)), Use::ServeStale);
    assert_eq!(f.usable(&rd(""), t(200)), Use::Validate);
    assert_eq!(f.usable(&rd("max-stale=150"), t(200)), Use::Serve);
    assert_eq!(f.usable(&rd("max-stale"), t(100_000)), Use::Serve);
}

#[test]
fn revalidation_directives_forbid_stale() {
    for cc in [
        "max-age=1, must-revalidate",
        "max-age=1, proxy-revalidate",
        "s-maxage=1",
        "max-age=1, no-cache",
    ] {
        let f = store(&[("cache-control", cc), ("etag", "\"x\"")]).unwrap();
        let rd = RequestDirectives::parse(&hdrs(&[("cache-control", "max-stale=1000")]));
        assert_eq!(f.usable(&rd, t(10)), Use::Validate, "{cc}");
        let o = Options {
            stale_on_error: 1000,
            ..opts()
        };
        assert!(!f.usable_on_error(&o, t(10)), "{cc}");
    }
}

#[test]
fn stale_if_error_and_operator_ceiling() {
    let f = store(&[("cache-control", "max-age=10, stale-if-error=20")]).unwrap();
    assert!(f.usable_on_error(&opts(), t(30)));
    assert!(!f.usable_on_error(&opts(), t(31)));
    let o = Options {
        stale_on_error: 100,
        ..opts()
    };
    assert!(f.usable_on_error(&o, t(110)));
    assert!(!f.usable_on_error(&o, t(111)));
}

// ---- The reference model, written from the RFC text. ----

#[derive(Debug, Clone)]
struct Case {
    max_age: Option<u16>,
    s_maxage: Option<u16>,
    no_store: bool,
    no_cache: bool,
    private: bool,
    public: bool,
    must_revalidate: bool,
    /// Expires relative to Date; `Some(None)` is an invalid date.
    expires: Option<Option<u16>>,
    last_modified_before: Option<u16>,
    etag: bool,
    status: u16,
    authorization: bool,
    heuristic: bool,
    age_at_request: u16,
    req_no_cache: bool,
    req_max_age: Option<u16>,
    req_max_stale: Option<u16>,
    req_min_fresh: Option<u16>,
}

/// §3: storable; §4.2.1/§4.2.2: lifetime. `None` = not stored.
fn model_lifetime(c: &Case) -> Option<u64> {
    if c.no_store || c.private || ![200, 203, 204, 301, 302, 404, 410, 500, 503].contains(&c.status)
    {
        return None;
    }
    if c.authorization && !(c.public || c.s_maxage.is_some() || c.must_revalidate) {
        return None;
    }
    let by_default = [200, 203, 204, 301, 404, 410].contains(&c.status);
    let explicit = c.max_age.is_some() || c.s_maxage.is_some() || c.expires.is_some();
    if !explicit && !c.public && !by_default {
        return None;
    }
    let lifetime = match (c.s_maxage, c.max_age, c.expires) {
        (Some(s), _, _) => u64::from(s),
        (None, Some(m), _) => u64::from(m),
        (None, None, Some(Some(e))) => u64::from(e),
        (None, None, Some(None)) => 0,
        (None, None, None) => match (c.heuristic, c.last_modified_before) {
            (true, Some(lm)) => u64::from(lm) / 10,
            _ => 0,
        },
    };
    if lifetime == 0 && !c.etag && c.last_modified_before.is_none() {
        return None;
    }
    Some(lifetime)
}

/// §4.2 and §5.2.1: reuse without contacting the origin?
fn model_serves(c: &Case, lifetime: u64) -> bool {
    let age = u64::from(c.age_at_request);
    if c.no_cache || c.req_no_cache {
        return false;
    }
    if let Some(m) = c.req_max_age {
        if age > u64::from(m) {
            return false;
        }
    }
    if age < lifetime {
        return c
            .req_min_fresh
            .is_none_or(|f| lifetime - age >= u64::from(f));
    }
    let may_be_stale = !(c.must_revalidate || c.s_maxage.is_some()) && c.req_min_fresh.is_none();
    may_be_stale
        && c.req_max_stale
            .is_some_and(|s| age - lifetime <= u64::from(s))
}

fn render(c: &Case) -> (HeaderMap, HeaderMap) {
    let mut cc = Vec::new();
    if let Some(m) = c.max_age {
        cc.push(format!("max-age={m}"));
    }
    if let Some(s) = c.s_maxage {
        cc.push(format!("s-maxage={s}"));
    }
    for (on, d) in [
        (c.no_store, "no-store"),
        (c.no_cache, "no-cache"),
        (c.private, "private"),
        (c.public, "public"),
        (c.must_revalidate, "must-revalidate"),
    ] {
        if on {
            cc.push(d.to_string());
        }
    }
    let mut resp = HeaderMap::new();
    if !cc.is_empty() {
        resp.insert(
            CACHE_CONTROL,
            HeaderValue::from_str(&cc.join(", ")).unwrap(),
        );
    }
    resp.insert(
        http::header::DATE,
        HeaderValue::from_str(&httpdate::fmt_http_date(t(100_000))).unwrap(),
    );
    match c.expires {
        Some(Some(e)) => {
            resp.insert(
                http::header::EXPIRES,
                HeaderValue::from_str(&httpdate::fmt_http_date(t(100_000 + u64::from(e)))).unwrap(),
            );
        }
        Some(None) => {
            resp.insert(http::header::EXPIRES, HeaderValue::from_static("-1"));
        }
        None => {}
    }
    if let Some(lm) = c.last_modified_before {
        resp.insert(
            http::header::LAST_MODIFIED,
            HeaderValue::from_str(&httpdate::fmt_http_date(t(100_000 - u64::from(lm)))).unwrap(),
        );
    }
    if c.etag {
        resp.insert(http::header::ETAG, HeaderValue::from_static("\"v1\""));
    }
    let mut req = HeaderMap::new();
    if c.authorization {
        req.insert(AUTHORIZATION, HeaderValue::from_static("Bearer x"));
    }
    let mut rcc = Vec::new();
    if c.req_no_cache {
        rcc.push("no-cache".to_string());
    }
    if let Some(m) = c.req_max_age {
        rcc.push(format!("max-age={m}"));
    }
    if let Some(m) = c.req_max_stale {
        rcc.push(format!("max-stale={m}"));
    }
    if let Some(m) = c.req_min_fresh {
        rcc.push(format!("min-fresh={m}"));
    }
    if !rcc.is_empty() {
        req.insert(
            CACHE_CONTROL,
            HeaderValue::from_str(&rcc.join(", ")).unwrap(),
        );
    }
    (req, resp)
}

fn small() -> impl Strategy<Value = Option<u16>> {
    prop::option::of(0u16..400)
}

prop_compose! {
    fn case()(
        (max_age, s_maxage, no_store, no_cache, private, public, must_revalidate) in
            (small(), prop::option::weighted(0.2, 0u16..400), prop::bool::weighted(0.1), prop::bool::weighted(0.1), prop::bool::weighted(0.1), any::<bool>(), prop::bool::weighted(0.2)),
        (expires, last_modified_before, etag, status) in
            (prop::option::of(prop::option::weighted(0.8, 0u16..400)), prop::option::of(0u16..4000), any::<bool>(), prop::sample::select(vec![200u16, 203, 204, 301, 302, 404, 410, 500, 503, 206, 299])),
        (authorization, heuristic, age_at_request) in (prop::bool::weighted(0.2), any::<bool>(), 0u16..800),
        (req_no_cache, req_max_age, req_max_stale, req_min_fresh) in
            (prop::bool::weighted(0.1), prop::option::weighted(0.2, 0u16..400), prop::option::weighted(0.3, 0u16..400), prop::option::weighted(0.2, 0u16..400)),
    ) -> Case {
        Case { max_age, s_maxage, no_store, no_cache, private, public, must_revalidate, expires,
               last_modified_before, etag, status, authorization, heuristic, age_at_request,
               req_no_cache, req_max_age, req_max_stale, req_min_fresh }
    }
}

proptest! {
    #[test]
    fn policy_agrees_with_the_reference_model(c in case()) {
        let (req, resp) = render(&c);
        let o = Options { heuristic: c.heuristic, ..Options::default() };
        let status = StatusCode::from_u16(c.status).unwrap();
        let got = storable(&Method::GET, &req, status, &resp, (t(100_000), t(100_000)), &o);
        let want = model_lifetime(&c);
        prop_assert_eq!(got.as_ref().ok().map(|f| f.lifetime), want, "storable/lifetime {:?} -> {:?}", c, got);
        if let (Ok(f), Some(lifetime)) = (got, want) {
            let now = t(100_000 + u64::from(c.age_at_request));
            let serves = f.usable(&RequestDirectives::parse(&req), now) == Use::Serve;
            prop_assert_eq!(serves, model_serves(&c, lifetime), "usable {:?}", c);
        }
    }
}
