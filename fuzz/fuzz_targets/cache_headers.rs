//! The cache's header parsers: `Cache-Control` (requests and responses), `CDN-Cache-Control`,
//! `Vary`, `Range`, `Age` and HTTP dates. Never a panic, and their contracts: several field
//! lines read as the same lines joined by commas (RFC 9110 §5.3) when no quoted string spans
//! them; a request always matches the secondary key made from itself; a satisfiable range
//! lies within the body and is what is served (status, `Content-Range`, length); a 304 and a
//! HEAD carry no body; a parsed HTTP date formats and parses back to itself.
#![no_main]

use bytes::Bytes;
use holdfast_cache::policy::{self, Options, CDN_CACHE_CONTROL};
use holdfast_cache::serve::parse_range;
use holdfast_cache::{respond, vary, Entry, RequestDirectives, ResponseDirectives};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `name: value` lines; the request's lines, a line `--`, then the response's.
fn maps(text: &str) -> (HeaderMap, HeaderMap) {
    let (req, resp) = text.split_once("\n--\n").unwrap_or((text, ""));
    (map(req), map(resp))
}

fn map(text: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in text.lines().take(32) {
        let Some((n, v)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.trim().as_bytes()),
            HeaderValue::from_str(v.trim()),
        ) {
            h.append(n, v);
        }
    }
    h
}

/// The lines of `name` joined into one, when that must read the same.
fn joined(h: &HeaderMap, name: &HeaderName) -> Option<HeaderMap> {
    let lines: Vec<&str> = h
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if lines.len() < 2
        || h.get_all(name).iter().count() != lines.len()
        || lines.iter().any(|l| l.contains(['"', '\\']))
    {
        return None;
    }
    let mut j = h.clone();
    j.remove(name);
    j.insert(name.clone(), HeaderValue::from_str(&lines.join(", ")).ok()?);
    Some(j)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (req, resp) = maps(text);
    let body_len = data.len() % 64;

    for field in [&header::CACHE_CONTROL, &CDN_CACHE_CONTROL] {
        let d = ResponseDirectives::parse(&resp, field);
        if let Some(j) = joined(&resp, field) {
            assert_eq!(
                ResponseDirectives::parse(&j, field),
                d,
                "{field} lines vs joined"
            );
        }
        if d != ResponseDirectives::default() {
            assert!(ResponseDirectives::present(&resp, field));
        }
    }
    let rd = RequestDirectives::parse(&req);
    if let Some(j) = joined(&req, &header::CACHE_CONTROL) {
        assert_eq!(RequestDirectives::parse(&j), rd, "request lines vs joined");
    }

    // Secondary keys: a request matches the key made from itself.
    let key = [HeaderName::from_static("x-device")];
    let selected = vary::select(&resp, &key, &req);
    assert!(vary::matches(&selected, &req));
    for (name, value) in &selected {
        assert_eq!(vary::normalise(name, &req).as_deref(), value.as_deref());
    }
    let _ = policy::vary_star(&resp);

    // Dates round-trip.
    for name in [
        header::DATE,
        header::EXPIRES,
        header::LAST_MODIFIED,
        header::IF_MODIFIED_SINCE,
    ] {
        for h in [&req, &resp] {
            if let Some(t) = h.get(&name).and_then(|v| v.to_str().ok()) {
                if let Ok(when) = httpdate::parse_http_date(t) {
                    let again = httpdate::fmt_http_date(when);
                    assert_eq!(httpdate::parse_http_date(&again).ok(), Some(when), "{t}");
                }
            }
        }
    }

    // Ranges lie within the body.
    for v in req
        .get_all(header::RANGE)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for len in [0u64, 1, body_len as u64, u64::MAX] {
            if let Some(Some((first, last))) = parse_range(v, len) {
                assert!(first <= last && last < len, "{v} of {len}: {first}-{last}");
            }
        }
    }

    // Storing and serving the response.
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let opts = Options {
        heuristic: true,
        stale_on_error: 60,
        targeted_field: None,
    };
    let status = StatusCode::from_u16(200 + (data.len() as u16 % 8)).unwrap_or(StatusCode::OK);
    let times = (now, now + Duration::from_secs(1));
    let Ok(fresh) = policy::storable(&Method::GET, &req, status, &resp, times, &opts) else {
        return;
    };
    let _ = (
        fresh.ttl(now),
        fresh.is_fresh(now),
        fresh.keep_for(&opts, true),
    );
    let _ = fresh.usable(&rd, now + Duration::from_secs(30));
    let body = Bytes::from(vec![b'x'; body_len]);
    let entry = Entry::new(StatusCode::OK, resp.clone(), body.clone(), fresh, selected);
    for method in [Method::GET, Method::HEAD] {
        let served = respond(&entry, &method, &req, now + Duration::from_secs(2));
        let length = served
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        match served.status {
            StatusCode::NOT_MODIFIED => assert!(served.body.is_empty() && length.is_none()),
            StatusCode::PARTIAL_CONTENT => {
                let cr = served.headers[header::CONTENT_RANGE]
                    .to_str()
                    .expect("ascii");
                let range = cr.strip_prefix("bytes ").expect("bytes unit");
                let (span, total) = range.split_once('/').expect("a total");
                let (a, b) = span.split_once('-').expect("a span");
                let (a, b): (usize, usize) = (a.parse().expect("a"), b.parse().expect("b"));
                assert_eq!(total, body_len.to_string());
                assert!(a <= b && b < body_len);
                assert_eq!(length, Some(b - a + 1));
                if method == Method::GET {
                    assert_eq!(served.body.len(), b - a + 1);
                }
            }
            StatusCode::RANGE_NOT_SATISFIABLE => assert_eq!(length, Some(0)),
            s => {
                assert_eq!(s, StatusCode::OK);
                assert_eq!(length, Some(body_len));
            }
        }
        if method == Method::HEAD {
            assert!(served.body.is_empty());
        }
    }
    let _ = SystemTime::now();
});
