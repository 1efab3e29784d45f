//! Answering from a stored response: `Age`, HEAD from a stored GET, the client's
//! conditionals (RFC 9110 §13: `If-None-Match`, then `If-Modified-Since`) and a single
//! byte `Range` (with `If-Range`) cut from the stored full body. Multiple ranges get the
//! whole response, which RFC 9110 §14.2 allows.

use crate::entry::Entry;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use std::time::SystemTime;

/// A response made from the cache: status, headers and body.
#[derive(Debug)]
pub struct Served {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub fn respond(entry: &Entry, method: &Method, req: &HeaderMap, now: SystemTime) -> Served {
    let mut headers = entry.headers.clone();
    headers.remove(header::TRANSFER_ENCODING);
    headers.insert(header::AGE, HeaderValue::from(entry.freshness.age(now)));
    let head = method == Method::HEAD;
    if entry.status == StatusCode::OK && not_modified(entry, req) {
        for h in [header::CONTENT_LENGTH, header::CONTENT_RANGE] {
            headers.remove(h);
        }
        return Served {
            status: StatusCode::NOT_MODIFIED,
            headers,
            body: Bytes::new(),
        };
    }
    let len = entry.body.len() as u64;
    let ranged = (entry.status == StatusCode::OK && if_range_holds(entry, req))
        .then(|| req.get(header::RANGE))
        .flatten()
        .and_then(|r| r.to_str().ok())
        .and_then(|r| parse_range(r, len));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let (status, body) = match ranged {
        Some(Some((start, end))) => {
            let cr = format!("bytes {start}-{end}/{len}");
            if let Ok(v) = HeaderValue::try_from(cr) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            let body = entry
                .body
                .get(start as usize..=end as usize)
                .map_or_else(Bytes::new, |s| entry.body.slice_ref(s));
            (StatusCode::PARTIAL_CONTENT, body)
        }
        Some(None) => {
            if let Ok(v) = HeaderValue::try_from(format!("bytes */{len}")) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::RANGE_NOT_SATISFIABLE, Bytes::new())
        }
        None => (entry.status, entry.body.clone()),
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Served {
        status,
        headers,
        body: if head { Bytes::new() } else { body },
    }
}

/// RFC 9110 §13.2.2: `If-None-Match` (weak comparison) decides when present; otherwise
/// `If-Modified-Since` against `Last-Modified` (or `Date`).
fn not_modified(entry: &Entry, req: &HeaderMap) -> bool {
    if req.contains_key(header::IF_NONE_MATCH) {
        let Some(etag) = entry
            .headers
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        return req
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim() == "*" || weak_eq(t.trim(), etag));
    }
    let Some(since) = http_date(req, header::IF_MODIFIED_SINCE) else {
        return false;
    };
    http_date(&entry.headers, header::LAST_MODIFIED)
        .or_else(|| http_date(&entry.headers, header::DATE))
        .is_some_and(|lm| lm <= since)
}

fn weak_eq(a: &str, b: &str) -> bool {
    a.trim_start_matches("W/") == b.trim_start_matches("W/")
}

fn http_date(h: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    httpdate::parse_http_date(h.get(name)?.to_str().ok()?).ok()
}

/// `If-Range`: a strong ETag equal to the stored one, or the exact `Last-Modified`.
fn if_range_holds(entry: &Entry, req: &HeaderMap) -> bool {
    let Some(cond) = req.get(header::IF_RANGE) else {
        return true;
    };
    let cond = cond.as_bytes();
    if cond.starts_with(b"\"") {
        return entry
            .headers
            .get(header::ETAG)
            .is_some_and(|e| e.as_bytes() == cond);
    }
    entry
        .headers
        .get(header::LAST_MODIFIED)
        .is_some_and(|lm| lm.as_bytes() == cond)
}

/// One byte range of a body of `len` bytes: `Some(Some((first, last)))`, `Some(None)` when
/// unsatisfiable, `None` when not a single byte range (then the whole body is sent).
pub fn parse_range(spec: &str, len: u64) -> Option<Option<(u64, u64)>> {
    let ranges = spec.trim().strip_prefix("bytes=")?;
    if ranges.contains(',') {
        return None;
    }
    let (first, last) = ranges.trim().split_once('-')?;
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let range = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let n = num(suffix)?;
            (n > 0 && len > 0).then(|| (len.saturating_sub(n), len - 1))
        }
        (a, "") => {
            let a = num(a)?;
            (a < len).then(|| (a, len - 1))
        }
        (a, b) => {
            let (a, b) = (num(a)?, num(b)?);
            if b < a {
                return None;
            }
            (a < len).then(|| (a, b.min(len - 1)))
        }
    };
    Some(range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directives::ResponseDirectives;
    use crate::policy::Freshness;

    fn entry() -> Entry {
        let mut h = HeaderMap::new();
        h.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        h.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_static("Tue, 15 Nov 1994 12:45:26 GMT"),
        );
        let f = Freshness {
            lifetime: 60,
            corrected_initial_age: 0,
            response_time: SystemTime::now(),
            directives: ResponseDirectives::default(),
        };
        Entry::new(
            StatusCode::OK,
            h,
            Bytes::from_static(b"0123456789"),
            f,
            vec![],
        )
    }

    fn req(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-3", 10), Some(Some((0, 3))));
        assert_eq!(parse_range("bytes=-3", 10), Some(Some((7, 9))));
        assert_eq!(parse_range("bytes=8-", 10), Some(Some((8, 9))));
        assert_eq!(parse_range("bytes=5-100", 10), Some(Some((5, 9))));
        assert_eq!(parse_range("bytes=10-", 10), Some(None));
        assert_eq!(parse_range("bytes=0-1,3-4", 10), None);
        assert_eq!(parse_range("items=0-1", 10), None);
        assert_eq!(parse_range("bytes=3-1", 10), None);
    }

    #[test]
    fn range_from_full_body() {
        let e = entry();
        let s = respond(
            &e,
            &Method::GET,
            &req(&[("range", "bytes=2-4")]),
            SystemTime::now(),
        );
        assert_eq!(s.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(&s.body[..], b"234");
        assert_eq!(s.headers[header::CONTENT_RANGE], "bytes 2-4/10");
        let s = respond(
            &e,
            &Method::GET,
            &req(&[("range", "bytes=2-4"), ("if-range", "\"other\"")]),
            SystemTime::now(),
        );
        assert_eq!(s.status, StatusCode::OK);
        let s = respond(
            &e,
            &Method::GET,
            &req(&[("range", "bytes=20-")]),
            SystemTime::now(),
        );
        assert_eq!(s.status, StatusCode::RANGE_NOT_SATISFIABLE);
    }

    #[test]
    fn conditionals_and_head() {
        let e = entry();
        let now = SystemTime::now();
        assert_eq!(
            respond(
                &e,
                &Method::GET,
                &req(&[("if-none-match", "W/\"v1\"")]),
                now
            )
            .status,
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            respond(&e, &Method::GET, &req(&[("if-none-match", "\"v2\"")]), now).status,
            StatusCode::OK
        );
        // If-None-Match decides when present, even if If-Modified-Since would match.
        let both = req(&[
            ("if-none-match", "\"v2\""),
            ("if-modified-since", "Wed, 16 Nov 1994 12:45:26 GMT"),
        ]);
        assert_eq!(respond(&e, &Method::GET, &both, now).status, StatusCode::OK);
        let ims = req(&[("if-modified-since", "Wed, 16 Nov 1994 12:45:26 GMT")]);
        assert_eq!(
            respond(&e, &Method::GET, &ims, now).status,
            StatusCode::NOT_MODIFIED
        );
        let head = respond(&e, &Method::HEAD, &HeaderMap::new(), now);
        assert!(head.body.is_empty());
        assert_eq!(head.headers[header::CONTENT_LENGTH], "10");
    }
}
